//! `rapport import` and `rapport export --format csv|vcard|ics|json`, driven as a user
//! would, on files in the layouts other software writes
//! (tests/fixtures/import/README.md says where each comes from), on
//! hostile files, and across a crash and an undo.

mod common;

use std::path::{Path, PathBuf};

use common::Node;
use serde_json::Value;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/import")
        .join(name)
        .display()
        .to_string()
}

fn people(n: &Node) -> Vec<Value> {
    n.json(&["list", "person"])
        .as_array()
        .expect("array")
        .clone()
}

fn by_name<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list:?}"))
}

fn copy_to(n: &Node, name: &str) -> PathBuf {
    let dir = n.dir.parent().expect("parent").to_path_buf();
    let to = dir.join(name);
    std::fs::copy(fixture(name), &to).expect("copy fixture");
    to
}

#[test]
fn an_outlook_export_in_windows_1252_imports_with_its_errors_set_aside() {
    let n = Node::new();
    n.ok(&["init", "--name", "Dana"]);
    let file = copy_to(&n, "outlook.csv");
    let file = file.to_str().expect("path");
    let report = n.json(&["import", file]);
    assert_eq!(report["encoding"], "windows1252");
    assert_eq!(report["counts"]["create"], 3, "{report}");
    assert_eq!(report["counts"]["error"], 1, "{report}");
    assert_eq!(report["counts"]["companies"], 2, "{report}");
    let unmapped: Vec<&str> = report["unmapped"]
        .as_array()
        .expect("unmapped")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(unmapped.contains(&"E-mail Type") && !unmapped.contains(&"Notes"));
    let list = people(&n);
    assert_eq!(list.len(), 3);
    let jose = by_name(&list, "José Müller");
    assert_eq!(jose["title"], "Einkäufer");
    assert_eq!(
        jose["emails"],
        serde_json::json!(["jose.mueller@mueller-soehne.de", "jose@example.org"])
    );
    assert_eq!(
        jose["phones"],
        serde_json::json!(["+49 89 1234567", "+49 171 2345678"])
    );
    assert_eq!(jose["tags"], serde_json::json!(["Kunde", "VIP"]));
    assert!(
        jose["notes"]
            .as_str()
            .is_some_and(|n| n.contains("Wants a quote by Friday")),
        "{jose}"
    );
    let show = n.ok(&["show", "José Müller"]);
    assert!(show.contains("Müller & Söhne GmbH"), "{show}");
    // An e-mail's domain is not taken for the company's (it may be an ISP's).
    let company = n.json(&["show", "Müller & Söhne GmbH"]);
    assert!(company["domain"].is_null(), "{company}");
    // The bad row, as it was, with the reason, ready to fix and import.
    let errors = n.dir.parent().expect("dir").join("outlook.errors.csv");
    let text = std::fs::read_to_string(&errors).expect("error file");
    assert!(
        text.contains("bad@") && text.contains("Rapport error"),
        "{text}"
    );
    assert!(text.contains("E-mail Address: invalid emails"), "{text}");
}

#[test]
fn google_and_hubspot_exports_match_the_same_person_by_email() {
    let n = Node::new();
    n.ok(&["init"]);
    let google = copy_to(&n, "google.csv");
    let out = n.ok(&["import", google.to_str().expect("path")]);
    assert!(out.contains("3 created"), "{out}");
    let list = people(&n);
    let grace = by_name(&list, "Grace Hopper");
    assert_eq!(
        grace["emails"],
        serde_json::json!(["grace@navy.example.mil", "ghopper@yale.example.edu"])
    );
    assert_eq!(grace["title"], "Rear Admiral");
    by_name(&list, "Alan Turing");
    by_name(&list, "李 小龙");

    // HubSpot's file has Grace again, in capitals: she is updated, not doubled.
    let hubspot = copy_to(&n, "hubspot.csv");
    let dry = n.json(&["import", hubspot.to_str().expect("path"), "--dry-run"]);
    assert_eq!(dry["counts"]["create"], 2, "{dry}");
    assert_eq!(dry["counts"]["update"], 1, "{dry}");
    assert_eq!(people(&n).len(), 3, "a dry run writes nothing");
    let rows = dry["rows"].as_array().expect("rows");
    let update = rows
        .iter()
        .find(|r| r["action"] == "update")
        .expect("update");
    assert_eq!(update["number"], 3);
    assert_eq!(update["fields"], serde_json::json!(["title"]));

    let done = n.json(&["import", hubspot.to_str().expect("path")]);
    assert_eq!(done["counts"]["update"], 1, "{done}");
    let list = people(&n);
    assert_eq!(list.len(), 5);
    assert_eq!(by_name(&list, "Grace Hopper")["title"], "Commodore");
    let katherine = n.json(&["show", "Katherine Johnson"]);
    let dorothy = n.json(&["show", "Dorothy Vaughan"]);
    assert_eq!(katherine["company"], dorothy["company"], "one NASA Langley");

    // Undo puts Grace's title back and deletes what HubSpot's file created.
    let id = done["id"].as_str().expect("id").to_string();
    let listed = n.json(&["import", "list"]);
    assert_eq!(listed[0]["id"], id.as_str());
    let undo = n.json(&["import", "undo", &id]);
    assert_eq!(undo["deleted"], 3, "{undo}");
    let list = people(&n);
    assert_eq!(list.len(), 3);
    assert_eq!(by_name(&list, "Grace Hopper")["title"], "Rear Admiral");
    let again = n.fails(&["import", "undo", &id]);
    assert!(again.contains("undone already"), "{again}");
}

#[test]
fn a_semicolon_file_reads_decimal_commas_and_reports_what_it_cannot_read() {
    let n = Node::new();
    n.ok(&["init"]);
    n.ok(&["company", "add", "Müller & Söhne GmbH"]);
    let file = copy_to(&n, "excel-de-deals.csv");
    let report = n.json(&["import", file.to_str().expect("path"), "--kind", "deal"]);
    assert_eq!(report["delimiter"], ";");
    assert_eq!(report["locale"]["decimal_comma"], true);
    assert_eq!(report["counts"]["create"], 2, "{report}");
    assert_eq!(report["counts"]["error"], 2, "{report}");
    let deals = n.json(&["list", "deal"]);
    let deals = deals.as_array().expect("deals");
    let rollout = deals
        .iter()
        .find(|d| d["title"] == "Rollout Werk Süd")
        .expect("rollout");
    assert_eq!(rollout["amount"], "1234.56");
    assert_eq!(rollout["close"], "2026-12-31");
    let rows = report["rows"].as_array().expect("rows");
    let reasons: Vec<String> = rows
        .iter()
        .filter(|r| r["action"] == "error")
        .map(|r| r["problems"][0].to_string())
        .collect();
    assert!(
        reasons[0].contains("Amount") && reasons[0].contains("1234.56"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("Stage") && reasons[1].contains("träumen"),
        "{reasons:?}"
    );
    // Read with decimal points instead, the third row would import and the
    // first is refused.
    let fixed = n.json(&[
        "import",
        file.to_str().expect("path"),
        "--kind",
        "deal",
        "--decimal",
        "point",
        "--dry-run",
    ]);
    assert_eq!(fixed["counts"]["create"], 2, "{fixed}");
    let failed: Vec<&Value> = fixed["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["action"] == "error")
        .map(|r| &r["number"])
        .collect();
    assert_eq!(failed, [1, 4], "{fixed}");
}

#[test]
fn files_that_are_no_table_are_refused_whole_and_nothing_is_written() {
    let n = Node::new();
    n.ok(&["init"]);
    let dir = n.dir.parent().expect("dir").to_path_buf();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "binary.csv",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec(),
            "binary",
        ),
        (
            "truncated.csv",
            b"Name,Email,Note\nAda,ada@x.org,\"starts here\nand is cut".to_vec(),
            "truncated",
        ),
        (
            "long.csv",
            {
                let mut v = b"Name,Email\n".to_vec();
                v.extend(std::iter::repeat_n(b'x', 50 << 20));
                v
            },
            "KiB long",
        ),
        ("empty.csv", Vec::new(), "empty"),
        (
            "noheader.csv",
            b"Ada Lovelace,ada@x.org\nBob,bob@x.org\n".to_vec(),
            "no column gives the name",
        ),
    ];
    for (name, bytes, says) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        let err = n.fails(&["import", path.to_str().expect("path")]);
        assert!(err.contains(says), "{name}: {err}");
    }
    let err = n.fails(&["import", &fixture("google.csv"), "--map", "Nope=name"]);
    assert!(err.contains("no column `Nope`"), "{err}");
    assert!(people(&n).is_empty());
    assert!(
        n.json(&["import", "list"])
            .as_array()
            .expect("list")
            .is_empty()
    );
}

#[test]
fn csv_export_imports_back_without_a_map_and_changes_nothing() {
    let n = Node::new();
    n.ok(&["init"]);
    let google = copy_to(&n, "google.csv");
    n.ok(&["import", google.to_str().expect("path")]);
    let out = n.dir.parent().expect("dir").join("export");
    n.ok(&[
        "export",
        "--format",
        "csv",
        "--out",
        out.to_str().expect("path"),
    ]);
    let bytes = std::fs::read(out.join("person.csv")).expect("person.csv");
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "a BOM for spreadsheets");
    let text = String::from_utf8(bytes).expect("utf-8");
    assert!(
        text.contains("id,name,emails,phones,title,company,owner,tags"),
        "{text}"
    );
    assert!(text.contains("US Navy"), "references by title: {text}");
    let again = n.json(&["import", out.join("person.csv").to_str().expect("path")]);
    assert_eq!(again["counts"]["unchanged"], 3, "{again}");
    assert!(again["unmapped"].as_array().expect("unmapped").is_empty());
    // Into an empty node, the same records.
    let m = Node::new();
    m.ok(&["init"]);
    let companies = n.ok(&["export", "company", "--format", "csv"]);
    let cfile = out.join("companies-stdout.csv");
    std::fs::write(&cfile, companies).expect("write");
    m.ok(&["import", cfile.to_str().expect("path"), "--kind", "company"]);
    m.ok(&["import", out.join("person.csv").to_str().expect("path")]);
    let strip = |node: &Node| {
        let mut rows: Vec<(String, Value, Value, Value)> = people(node)
            .iter()
            .map(|p| {
                let company = p["company"]
                    .as_str()
                    .map(|c| node.json(&["show", c])["name"].clone())
                    .unwrap_or(Value::Null);
                (
                    p["name"].to_string(),
                    p["emails"].clone(),
                    p["title"].clone(),
                    company,
                )
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    };
    assert_eq!(strip(&m), strip(&n));
}

#[test]
fn an_import_killed_midway_resumes_without_doubling_anything() {
    let n = Node::new();
    n.ok(&["init"]);
    let dir = n.dir.parent().expect("dir").to_path_buf();
    let path = dir.join("many.csv");
    // Names only: nothing to match by, so only the import log prevents doubles.
    let mut text = String::from("Name,Title\n");
    for i in 0..40_000 {
        text.push_str(&format!("Person {i},Role {}\n", i % 7));
    }
    std::fs::write(&path, &text).expect("write");
    let mut child = n
        .cmd()
        .args(["import", path.to_str().expect("path")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Kill once the first batches are in (or whenever it is done).
    common::eventually(std::time::Duration::from_secs(60), || {
        std::fs::read_dir(n.dir.join("imports"))
            .map(|d| {
                d.flatten().any(|e| {
                    std::fs::read_to_string(e.path())
                        .map(|t| t.matches("\"batch\"").count() >= 2)
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false)
    });
    let _ = child.kill();
    let _ = child.wait();
    let killed = n.json(&["import", "list"]);
    assert_eq!(killed[0]["finished"], false, "killed too late: {killed}");
    let stored = n.json(&["status"])["records"].as_u64().expect("records");
    assert!((1000..40_000).contains(&stored), "{stored}");
    let out = n.ok(&["import", path.to_str().expect("path")]);
    assert_eq!(n.json(&["status"])["records"], 40_000, "{out}");
    let list = n.json(&["import", "list"]);
    assert_eq!(list.as_array().expect("list").len(), 1, "{list}");
    assert_eq!(list[0]["counts"]["create"], 40_000, "{list}");
}

fn ticket(from: &Node, space: &str) -> String {
    from.json(&["space", "invite", space])["ticket"]
        .as_str()
        .expect("ticket")
        .to_string()
}

fn live_people_in(n: &Node) -> usize {
    n.json(&["list", "person"]).as_array().map_or(0, Vec::len)
}

/// An import into a shared space reaches its members; its undo is signed
/// changes that reach them too; and a member importing the same list
/// again, once synced, matches every row instead of doubling it.
#[test]
fn an_import_and_its_undo_reach_the_other_members() {
    const SPACE: &str = "Partners";
    let wait = std::time::Duration::from_secs(30);
    let (a, b) = (Node::new(), Node::new());
    let _na = a.start(&[]);
    let _nb = b.start(&[]);
    a.ok(&["space", "create", SPACE]);
    b.ok(&["space", "join", &ticket(&a, SPACE)]);
    let hubspot = copy_to(&a, "hubspot.csv");
    let hubspot = hubspot.to_str().expect("path");
    let done = a.json(&["import", hubspot, "--space", SPACE]);
    assert_eq!(done["counts"]["create"], 3, "{done}");
    assert!(
        common::eventually(wait, || live_people_in(&b) == 3),
        "B did not get the imported people"
    );
    let nasa = b.json(&["show", "Katherine Johnson"]);
    assert!(nasa["company"].is_string(), "{nasa}");

    // B imports the same file: every row matches what A made.
    let again = b.json(&["import", hubspot, "--space", SPACE]);
    assert_eq!(again["counts"]["create"], 0, "{again}");
    assert_eq!(again["counts"]["unchanged"], 3, "{again}");

    let id = done["id"].as_str().expect("id");
    a.ok(&["import", "undo", id]);
    assert!(
        common::eventually(wait, || live_people_in(&b) == 0),
        "B still lists the people A's undo deleted"
    );
}

fn third_party(name: &str) -> String {
    fixture(&format!("third-party/{name}"))
}

/// Real exports other projects keep as test data (see
/// tests/fixtures/import/README.md): each reads with its encoding, maps
/// its columns, and imports its good rows; placeholder text where a phone
/// number belongs is an error of its row, with the file left whole.
#[test]
fn real_exports_from_outlook_google_and_thunderbird_import() {
    let n = Node::new();
    n.ok(&["init"]);
    let errors = n.dir.parent().expect("dir").join("errors.csv");
    let errors = errors.to_str().expect("path");
    let run = |name: &str| n.json(&["import", &third_party(name), "--errors", errors]);

    // Outlook 2013, German, Windows-1252, rows shorter than the header.
    let de = run("outlook2013-de_windows1252_tine20.csv");
    assert_eq!(de["encoding"], "windows1252");
    assert_eq!(de["counts"]["create"], 2, "{de}");
    let weiss = n.json(&["show", "Cornelius Weiß"]);
    assert_eq!(weiss["title"], "Softwareengineering");
    assert_eq!(weiss["emails"], serde_json::json!(["c.weiss@unittest.de"]));

    // Outlook, English: a Notes cell with newlines (left out), phones joined.
    let en = run("outlook-en_multiline-notes_horde-data.csv");
    assert_eq!(en["counts"]["create"], 1, "{en}");
    let john = n.json(&["show", "John Smith"]);
    assert_eq!(
        john["phones"],
        serde_json::json!(["(123) 555-2222", "(123) 555-3333"])
    );
    // An Outlook row with no name at all is an error of that row.
    let quotes = run("outlook-en_embedded-quotes_horde-data.csv");
    assert_eq!(quotes["counts"]["error"], 1, "{quotes}");

    // Google CSV: five contacts, some with only a phone.
    let google = run("google-csv-legacy_tine20.csv");
    assert_eq!(google["counts"]["create"], 5, "{google}");
    let axel = n.json(&["show", "axel"]);
    assert_eq!(axel["emails"], serde_json::json!(["abc@here.de"]));

    // Google CSV in UTF-16LE: read (its columns map); the developer's
    // placeholder "pager" in a phone column is refused, with the row kept
    // in the error file.
    let utf16 = run("google-csv-legacy_utf16le_roundcube.csv");
    assert_eq!(utf16["encoding"], "utf16-le");
    assert_eq!(utf16["counts"]["error"], 1, "{utf16}");
    let mapped: Vec<&str> = utf16["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["column"].as_str())
        .collect();
    assert!(mapped.contains(&"E-mail 1 - Value"), "{mapped:?}");
    let kept = std::fs::read_to_string(errors).expect("errors");
    assert!(kept.contains("invalid phones `pager`"), "{kept}");

    // Thunderbird: trailing empty column; placeholder phones again.
    let tb = run("thunderbird-csv_roundcube.csv");
    assert_eq!(tb["counts"]["error"], 1, "{tb}");
    assert!(
        tb["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .any(|c| c["column"] == "Primary Email" && c["field"] == "emails")
    );
    assert_eq!(people(&n).len(), 8);
}

/// The records of a node as a user compares them: without ids, spaces
/// and times, references by the title of what they point at.
fn comparable(n: &Node) -> Vec<String> {
    let all = n.json(&["export", "--format", "json"]);
    let all = all.as_array().expect("array");
    let titles: std::collections::HashMap<&str, &str> = all
        .iter()
        .filter_map(|r| {
            let title = ["name", "title", "subject"]
                .iter()
                .find_map(|f| r[*f].as_str())?;
            Some((r["id"].as_str()?, title))
        })
        .collect();
    let named = |v: &Value| match v {
        Value::String(s) => {
            Value::String(titles.get(s.as_str()).unwrap_or(&s.as_str()).to_string())
        }
        other => other.clone(),
    };
    let mut out: Vec<String> = all
        .iter()
        .filter(|r| r["deleted"] != true)
        .map(|r| {
            let mut o = serde_json::Map::new();
            for (k, v) in r.as_object().expect("object") {
                if ["id", "space", "updated"].contains(&k.as_str()) {
                    continue;
                }
                let v = match v {
                    Value::Array(items) => Value::Array(items.iter().map(named).collect()),
                    v => named(v),
                };
                o.insert(k.clone(), v);
            }
            Value::Object(o).to_string()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn real_vcards_from_phones_mail_programs_and_address_books_import() {
    let n = Node::new();
    n.ok(&["init", "--name", "Dana"]);
    let clean = [
        ("android_2.1_quoted-printable_calcard.vcf", 8),
        ("four-cards_roundcube.vcf", 4),
        ("nextcloud-contacts_nextcloud.vcf", 1),
        ("outlook-de_2.1_photo_folkerkinzel.vcf", 1),
        ("outlook-via-webdav_tine20.vcf", 1),
        ("thunderbird-cardbook_3.0_folkerkinzel.vcf", 1),
    ];
    for (file, created) in clean {
        let report = n.json(&["import", &third_party(file)]);
        assert_eq!(report["format"], "vcard", "{file}: {report}");
        assert_eq!(report["counts"]["error"], 0, "{file}: {report}");
        assert_eq!(report["counts"]["create"], created, "{file}: {report}");
    }
    let list = people(&n);
    // Quoted-printable UTF-8 from an Android phone.
    by_name(&list, "Mäx Mustermann");
    // Outlook's vCard 2.1 (German, with a photo, which is not kept).
    let max = by_name(&list, "Herr Max Anderer Mustermann sen.");
    assert_eq!(max["title"], "Musterposition");
    assert_eq!(
        max["emails"],
        serde_json::json!(["max.mustermann@musterfirma.de"])
    );
    assert_eq!(
        max["address"],
        "Musterstrasse 12, Wiesbaden, Hessen, 65201, Deutschland"
    );
    assert_eq!(max["website"], "https://www.musterfirma.de");
    let show = n.ok(&["show", "Herr Max Anderer Mustermann sen."]);
    assert!(show.contains("Musterfirma GmbH"), "{show}");
    // Thunderbird's CardBook: vCard 3.0 with a birthday.
    let emma = by_name(&list, "Emma Musterfrau");
    assert_eq!(emma["birthday"], "2011-03-17");
    // The same address books again: every card with an e-mail matches.
    let again = n.json(&["import", &third_party("outlook-via-webdav_tine20.vcf")]);
    assert_eq!(again["counts"]["unchanged"], 1, "{again}");
    assert_eq!(again["counts"]["create"], 0, "{again}");
    // Apple's address book, anonymised with addresses that are none: the
    // card is reported with the reason and nothing of it is written.
    let before = people(&n).len();
    let errors = n.dir.parent().expect("dir").join("errors.csv");
    let apple = n.json(&[
        "import",
        &third_party("apple-addressbook6_tine20.vcf"),
        "--errors",
        errors.to_str().expect("path"),
    ]);
    assert_eq!(apple["counts"]["error"], 1, "{apple}");
    let reason = apple["rows"][0]["problems"][0]["reason"].to_string();
    assert!(reason.contains("email other"), "{apple}");
    assert_eq!(people(&n).len(), before);
}

#[test]
fn calendars_import_as_meetings_and_tasks_and_the_same_file_again_changes_nothing() {
    let n = Node::new();
    n.ok(&["init", "--name", "Dana"]);
    let google = third_party("google-calendar_calcard.ics");
    let first = n.json(&["import", &google]);
    assert_eq!(first["counts"]["create"], 3, "{first}");
    let again = n.json(&["import", &google]);
    assert_eq!(again["counts"]["unchanged"], 3, "{again}");
    assert_eq!(again["counts"]["create"], 0, "{again}");
    // Google's weekday series keeps its rule, skipped day and zone.
    let brain = n.json(&["show", "Brain Break"]);
    assert_eq!(brain["zone"], "America/Denver", "{brain}");
    assert_eq!(
        brain["repeat"], "FREQ=WEEKLY;BYDAY=FR,MO,TH,TU,WE",
        "{brain}"
    );
    assert_eq!(brain["skip"], serde_json::json!(["2020-10-15"]), "{brain}");
    // A rule with a part nobody knows (`RRULE:AnythingRandom;...`) reads
    // as the rest of it.
    let academic = n.json(&["show", "Academic Time"]);
    assert_eq!(academic["repeat"], brain["repeat"], "{academic}");
    // Apple Calendar and Nextcloud: one event each, read as they are.
    for file in ["apple-macos_radicale.ics", "nextcloud_nextcloud-server.ics"] {
        let r = n.json(&["import", &third_party(file)]);
        assert_eq!(r["counts"]["create"], 1, "{file}: {r}");
        assert_eq!(r["counts"]["error"], 0, "{file}: {r}");
    }
    let apple = n.json(&["show", "ня — 2"]);
    assert_eq!(apple["when"], "2018-04-20T09:00:00Z");
    // Outlook names its zone the Windows way; the time is kept exactly.
    n.json(&["import", &third_party("outlook-12_calcard.ics")]);
    let reboot = n.json(&["show", "Scheduled Reboot"]);
    assert_eq!(reboot["type"], "meeting");
    assert_eq!(reboot["when"], "2008-10-31T01:30:00Z");
    assert_eq!(reboot["ends"], "2008-10-31T01:40:00Z");
    // An old Mozilla calendar: to-dos become tasks; one with a year -001
    // is reported, the others import.
    let errors = n.dir.parent().expect("dir").join("errors.csv");
    let moz = n.json(&[
        "import",
        &third_party("mozilla-calendar_todo_calcard.ics"),
        "--errors",
        errors.to_str().expect("path"),
    ]);
    assert_eq!(moz["counts"]["create"], 9, "{moz}");
    assert_eq!(moz["counts"]["error"], 1, "{moz}");
    assert!(
        moz["rows"][0]["problems"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not a time"))
    );
    // Its yearly to-dos come in once, saying how they repeated.
    let yearly = n.json(&["list", "activity", "--where", "body~=FREQ=YEARLY"]);
    assert_eq!(yearly.as_array().map(Vec::len), Some(3), "{yearly}");
    let dishes = n.json(&["show", "Wash the Dishes"]);
    assert_eq!(dishes["type"], "task");
    assert_eq!(dishes["due"], "2004-12-01");
    assert_eq!(dishes["location"], "Home Kitchen");
}

#[test]
fn a_meeting_links_its_attendees_by_email_and_creates_none() {
    let n = Node::new();
    n.ok(&["init", "--name", "Dana"]);
    n.ok(&[
        "person",
        "add",
        "Ada Lovelace",
        "--email",
        "ada@engines.example",
    ]);
    let dir = n.dir.parent().expect("dir").to_path_buf();
    let ics = dir.join("invite.ics");
    std::fs::write(
        &ics,
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:kickoff-1@example\r\n\
         DTSTART:20260310T090000Z\r\nDTEND:20260310T100000Z\r\nSUMMARY:Kickoff\r\n\
         ATTENDEE;CN=Ada:mailto:ADA@engines.example\r\nATTENDEE:mailto:stranger@elsewhere.example\r\n\
         END:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    .expect("write");
    let text = n.ok(&["import", ics.to_str().expect("path")]);
    assert!(text.contains("stranger@elsewhere.example"), "{text}");
    let kickoff = n.json(&["show", "Kickoff"]);
    let ada = n.json(&["show", "Ada Lovelace"]);
    assert_eq!(kickoff["about"], serde_json::json!([ada["id"]]));
    assert_eq!(people(&n).len(), 1, "no person is made for an attendee");
}

#[test]
fn vcard_ics_and_json_exports_import_into_an_empty_node_with_identical_records() {
    let a = Node::new();
    a.ok(&["init", "--name", "Ana"]);
    a.ok(&["company", "add", "Acme GmbH", "--domain", "acme.example"]);
    a.ok(&[
        "person",
        "add",
        "Ada Lovelace",
        "--email",
        "ada@acme.example, ada@home.example",
        "--phone",
        "+49 30 1234567",
        "--company",
        "Acme GmbH",
        "--title",
        "Countess",
        "--tag",
        "vip, math",
        "--set",
        "address=12 Main St, Berlin",
        "--set",
        "website=https://ada.example",
        "--set",
        "birthday=1815-12-10",
        "--set",
        "notes=Met at the fair; keen.\nCall in May.",
    ]);
    a.ok(&[
        "person",
        "add",
        "Bob Noemail",
        "--phone",
        "+44 20 7946 0000",
    ]);
    a.ok(&[
        "deal",
        "add",
        "Engines",
        "--company",
        "Acme GmbH",
        "--amount",
        "1200.50",
        "--currency",
        "EUR",
        "--contact",
        "Ada Lovelace",
    ]);
    a.ok(&[
        "ticket",
        "add",
        "Broken gear",
        "--company",
        "Acme GmbH",
        "--person",
        "Ada Lovelace",
    ]);
    a.ok(&[
        "campaign",
        "add",
        "Spring",
        "--member",
        "Ada Lovelace",
        "--start",
        "2026-03-01",
    ]);
    a.ok(&[
        "activity",
        "add",
        "meeting",
        "--subject",
        "Review",
        "--when",
        "2026-03-10 09:00",
        "--ends",
        "2026-03-10 10:00",
        "--location",
        "Room 4",
        "--about",
        "Ada Lovelace",
    ]);
    a.ok(&[
        "activity",
        "add",
        "task",
        "--subject",
        "Send offer",
        "--due",
        "2026-03-12",
        "--about",
        "Ada Lovelace",
    ]);
    let dir = a.dir.parent().expect("dir").to_path_buf();

    // JSON: every kind, references and all.
    let json = dir.join("all.json");
    std::fs::write(&json, a.ok(&["export", "--format", "json"])).expect("write");
    let b = Node::new();
    b.ok(&["init", "--name", "Bea"]);
    let report = b.json(&["import", json.to_str().expect("path")]);
    let reports = report.as_array().expect("one report per kind");
    assert_eq!(reports.len(), 6, "{report}");
    assert!(
        reports.iter().all(|r| r["counts"]["error"] == 0),
        "{report}"
    );
    assert_eq!(comparable(&b), comparable(&a));
    // Again: who has an e-mail matches; a person without one has nothing
    // to match by and is made again (as a CRM's import does; `duplicates`
    // finds them).
    let again = b.json(&["import", json.to_str().expect("path"), "--kind", "person"]);
    assert_eq!(again["counts"]["unchanged"], 1, "{again}");
    assert_eq!(again["counts"]["create"], 1, "{again}");

    // vCard: people with every field vCard carries.
    let vcf = dir.join("people.vcf");
    std::fs::write(&vcf, a.ok(&["export", "person", "--format", "vcard"])).expect("write");
    let c = Node::new();
    c.ok(&["init", "--name", "Cem"]);
    let report = c.json(&["import", vcf.to_str().expect("path")]);
    assert_eq!(report["counts"]["create"], 2, "{report}");
    let strip = |p: &Value| {
        let mut p = p.clone();
        for k in ["id", "space", "updated", "company"] {
            p.as_object_mut().expect("object").remove(k);
        }
        p
    };
    let in_a = strip(by_name(&people(&a), "Ada Lovelace"));
    let in_c = strip(by_name(&people(&c), "Ada Lovelace"));
    assert_eq!(in_a, in_c);
    let show = c.ok(&["show", "Ada Lovelace"]);
    assert!(show.contains("Acme GmbH"), "{show}");
    // Back into the node that wrote it: the UIDs are its ids, nothing changes.
    let home = a.json(&["import", vcf.to_str().expect("path")]);
    assert_eq!(home["counts"]["unchanged"], 2, "{home}");

    // iCalendar: the meeting and the task, with the attendee.
    let ics = dir.join("activities.ics");
    std::fs::write(&ics, a.ok(&["export", "activity", "--format", "ics"])).expect("write");
    let home = a.json(&["import", ics.to_str().expect("path")]);
    assert_eq!(home["counts"]["unchanged"], 2, "{home}");
    let report = c.json(&["import", ics.to_str().expect("path")]);
    assert_eq!(report["counts"]["create"], 2, "{report}");
    let review = c.json(&["show", "Review"]);
    assert_eq!(review["when"], a.json(&["show", "Review"])["when"]);
    assert_eq!(review["location"], "Room 4");
    let ada = c.json(&["show", "Ada Lovelace"]);
    assert_eq!(review["about"], serde_json::json!([ada["id"]]));
    let task = c.json(&["show", "Send offer"]);
    assert_eq!(task["due"], "2026-03-12");
    // From C, whose records kept the UIDs: the calendar it writes names
    // the same events.
    let again = c.ok(&["export", "activity", "--format", "ics"]);
    let uids = |text: &str| {
        let mut u: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("UID:"))
            .map(str::to_string)
            .collect();
        u.sort();
        u
    };
    assert_eq!(
        uids(&again),
        uids(&std::fs::read_to_string(&ics).expect("read"))
    );
}

#[test]
fn broken_cards_are_reported_and_the_others_import() {
    let n = Node::new();
    n.ok(&["init"]);
    let dir = n.dir.parent().expect("dir").to_path_buf();
    let cut = dir.join("cut.vcf");
    std::fs::write(
        &cut,
        "BEGIN:VCARD\nVERSION:3.0\nFN:Ada Lovelace\nEMAIL:ada@x.example\nEND:VCARD\n\
         BEGIN:VCARD\nVERSION:3.0\nFN:Bad Mail\nEMAIL:not-an-address\nEND:VCARD\n\
         BEGIN:VCARD\nVERSION:3.0\nFN:Cut Short\n",
    )
    .expect("write");
    let report = n.json(&["import", cut.to_str().expect("path")]);
    assert_eq!(report["counts"]["create"], 1, "{report}");
    assert_eq!(report["counts"]["error"], 2, "{report}");
    let text = report.to_string();
    assert!(
        text.contains("END:VCARD") && text.contains("not-an-address"),
        "{report}"
    );
    assert_eq!(people(&n).len(), 1);
    // Files that are not what they claim: refused whole, nothing written.
    let binary = dir.join("photo.vcf");
    std::fs::write(&binary, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00").expect("write");
    let err = n.fails(&["import", binary.to_str().expect("path")]);
    assert!(err.contains("binary"), "{err}");
    let none = dir.join("notes.ics");
    std::fs::write(&none, "just some text\n").expect("write");
    let err = n.fails(&["import", none.to_str().expect("path")]);
    assert!(err.contains("no events"), "{err}");
    let json = dir.join("broken.json");
    std::fs::write(&json, "[{\"id\": ").expect("write");
    let err = n.fails(&["import", json.to_str().expect("path"), "--kind", "person"]);
    assert!(err.contains("not JSON"), "{err}");
    assert_eq!(people(&n).len(), 1);
}

#[test]
fn duplicates_are_found_after_an_import_and_warned_of_on_create() {
    let n = Node::new();
    n.ok(&["init", "--name", "Dana", "--region", "DE"]);
    let dir = n.dir.parent().expect("dir").to_path_buf();
    let csv = dir.join("fair.csv");
    std::fs::write(
        &csv,
        "Name,Email,Phone,Company\n\
         Ada Lovelace,ada@engines.example,+49 30 1234567,Analytical Engines GmbH\n\
         Ada Lovelace,ada.lovelace@home.example,030 1234567,Analytical Engines GmbH\n\
         Bob Ross,bob@paint.example,+49 40 7654321,Happy Trees Inc.\n",
    )
    .expect("write");
    n.json(&["import", csv.to_str().expect("path")]);
    n.ok(&["company", "add", "Analytical Engines AG"]);
    let found = n.json(&["duplicates"]);
    let found = found.as_array().expect("clusters");
    assert_eq!(found.len(), 2, "{found:?}");
    let people = found
        .iter()
        .find(|c| c["kind"] == "person")
        .expect("people");
    assert_eq!(people["score"], 90, "{people}");
    let reasons = people["reasons"].to_string();
    assert!(reasons.contains("same phone +49301234567"), "{reasons}");
    assert!(reasons.contains("same company"), "{reasons}");
    let companies = found
        .iter()
        .find(|c| c["kind"] == "company")
        .expect("companies");
    assert!(
        companies["reasons"]
            .to_string()
            .contains("same name (analytical engines)")
    );
    // A new record like one already there is warned of, and still made.
    let out = n.run(&[
        "person",
        "add",
        "Robert Ross",
        "--email",
        "BOB@paint.example",
    ]);
    assert!(out.status.success());
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(
        warned.contains("may be the same as Bob Ross") && warned.contains("rapport show"),
        "{warned}"
    );
    assert_eq!(
        n.json(&["duplicates", "person"]).as_array().map(Vec::len),
        Some(2)
    );
    let err = n.fails(&["init", "--region", "Narnia"]);
    assert!(err.contains("country code"), "{err}");
}

/// Two members share a space. A merges a duplicate while B is offline and
/// edits that duplicate; once B is back, both hold the merge and B's edit
/// is on the record kept, not lost with the tombstone. `show` of the
/// merged id lands on the survivor and says so; the undo reaches B too.
#[test]
fn a_merge_reaches_the_other_member_and_carries_over_an_edit_made_offline() {
    const SPACE: &str = "Partners";
    let wait = std::time::Duration::from_secs(30);
    let (a, b) = (Node::new(), Node::new());
    let _na = a.start(&[]);
    let mut nb = b.start(&[]);
    a.ok(&["space", "create", SPACE]);
    b.ok(&["space", "join", &ticket(&a, SPACE)]);
    let ann = a.json(&[
        "person",
        "add",
        "Ann Baker",
        "--email",
        "ann@acme.example",
        "--space",
        SPACE,
    ]);
    let dup = a.json(&[
        "person",
        "add",
        "A. Baker",
        "--phone",
        "+49 30 1234567",
        "--space",
        SPACE,
    ]);
    let (ann, dup) = (
        ann["id"].as_str().expect("id").to_string(),
        dup["id"].as_str().expect("id").to_string(),
    );
    assert!(
        common::eventually(wait, || live_people_in(&b) == 2),
        "B did not get both people"
    );
    nb.stop();

    let merged = a.json(&["merge", &ann, &dup]);
    let merge_id = merged["id"].as_str().expect("merge id").to_string();
    // B, offline, has not heard of the merge and edits the duplicate.
    b.ok(&["edit", &dup, "--set", "title=Head of Finance"]);
    let _nb = b.start(&[]);

    let carried = |n: &Node| {
        let v = n.json(&["show", &ann]);
        v["title"] == "Head of Finance" && v["phones"][0] == "+49 30 1234567"
    };
    assert!(
        common::eventually(wait, || carried(&a) && carried(&b)),
        "the offline edit did not reach the record kept: A {} / B {}",
        a.json(&["show", &ann]),
        b.json(&["show", &ann])
    );
    for n in [&a, &b] {
        assert_eq!(live_people_in(n), 1);
        let shown = n.json(&["show", &dup]);
        assert_eq!(shown["id"], ann.as_str(), "{shown}");
        assert_eq!(shown["merged_from"], dup.as_str(), "{shown}");
        let text = n.ok(&["show", &dup]);
        assert!(text.contains("was merged into this record"), "{text}");
    }

    let listed = a.json(&["merge", "list"]);
    assert_eq!(listed[0]["id"], merge_id.as_str(), "{listed}");
    a.ok(&["merge", "undo", &merge_id]);
    assert!(
        common::eventually(wait, || live_people_in(&b) == 2),
        "B did not get the undo"
    );
    let err = a.fails(&["merge", &ann]);
    assert!(err.contains("at least one record"), "{err}");
}
