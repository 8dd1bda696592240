//! Data-protection requests across real nodes on loopback: an erasure
//! reaches three members and a relay (one member offline at the time),
//! every node confirms it, a stale copy never brings the person back, and
//! after `rapport privacy compact` no byte of the person is left on any
//! node's disk.

mod common;

use std::time::Duration;

use common::{Node, dir_contains, eventually};
use serde_json::Value;

const SPACE: &str = "Acme partners";
const WAIT: Duration = Duration::from_secs(30);
const NAME: &str = "Zelda Quintero";
const EMAIL: &str = "zelda.quintero@example.org";
const PHONE: &str = "+44 20 7946 0123";
const OFFLINE_PHONE: &str = "+44 20 7946 0999";
/// A company's former number, erased as a field: the company stays.
const ACME_PHONE: &str = "+44 20 7946 0888";

/// Whether any byte of the person is in `n`'s data directory.
fn holds_the_person(n: &Node) -> Vec<&'static str> {
    [
        NAME,
        EMAIL,
        PHONE,
        OFFLINE_PHONE,
        ACME_PHONE,
        "Call Zelda about the rollout",
    ]
    .into_iter()
    .filter(|s| dir_contains(&n.dir, s.as_bytes()))
    .collect()
}

fn confirmed(status: &Value) -> usize {
    status[0]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| !n["confirmed"].is_null())
        .count()
}

#[test]
fn an_erasure_reaches_every_node_and_leaves_no_byte_behind() {
    let (a, b, c, r) = (Node::new(), Node::new(), Node::new(), Node::new());
    for (n, name) in [(&a, "Ann"), (&b, "Bo"), (&c, "Cy")] {
        n.ok(&["init", "--name", name, "--org", "Acme"]);
    }
    let mut na = a.start(&[]);
    let mut nr = r.start_relay(&[]);
    a.ok(&["space", "create", SPACE]);
    r.ok(&["space", "join", &a.ticket(SPACE, "relay")]);
    let mut nb = b.start(&[]);
    b.ok(&["space", "join", &a.ticket(SPACE, "writer")]);
    let mut nc = c.start(&[]);
    c.ok(&["space", "join", &a.ticket(SPACE, "writer")]);

    let person = a.json(&[
        "person", "add", NAME, "--email", EMAIL, "--phone", PHONE, "--space", SPACE,
    ]);
    let person = person["id"].as_str().expect("id").to_string();
    let acme = a.json(&[
        "company", "add", "Acme", "--phone", ACME_PHONE, "--space", SPACE,
    ]);
    let acme = acme["id"].as_str().expect("id").to_string();
    let deal = a.json(&[
        "deal",
        "add",
        "Rollout",
        "--company",
        "Acme",
        "--contact",
        NAME,
        "--space",
        SPACE,
    ]);
    let deal = deal["id"].as_str().expect("id").to_string();
    let call = a.json(&[
        "activity",
        "add",
        "call",
        "--subject",
        "Call Zelda about the rollout",
        "--about",
        NAME,
        "--space",
        SPACE,
    ]);
    let call = call["id"].as_str().expect("id").to_string();
    for n in [&b, &c, &r] {
        assert!(
            eventually(WAIT, || n.shows(&call) && n.shows(&deal)),
            "{} did not get the records",
            n.dir.display()
        );
    }
    // A backup of B with the person in it: a stale copy for later.
    let stale = b.dir.with_extension("stale.bak");
    b.ok(&["backup", "--out", stale.to_str().expect("utf-8")]);

    // C goes offline and edits the person there.
    nc.stop();
    c.ok(&["edit", &person, "--set", &format!("phones={OFFLINE_PHONE}")]);

    // A writer may not erase; an admin may.
    let refused = b.fails(&["privacy", "erase", NAME, "--reason", "asked"]);
    assert!(refused.contains("admins and privacy officers"), "{refused}");
    let erased = a.json(&[
        "privacy",
        "erase",
        NAME,
        "--with-activities",
        "--reason",
        "request of 2026-11-30, ticket 4411",
    ]);
    let erasure = erased["erasure"].as_str().expect("erasure").to_string();
    assert_eq!(erased["ids"].as_array().map(Vec::len), Some(2), "{erased}");
    assert!(!a.shows(&person) && !a.shows(&call));

    // B and the relay apply it and confirm; C, offline, has not.
    for n in [&b, &r] {
        assert!(
            eventually(WAIT, || !n.shows(&person) && !n.shows(&call)),
            "{} still shows the person",
            n.dir.display()
        );
    }
    assert!(
        eventually(WAIT, || confirmed(
            &a.json(&["privacy", "status", &erasure])
        ) == 3),
        "{}",
        a.ok(&["privacy", "status", &erasure])
    );
    let text = a.ok(&["privacy", "status", &erasure]);
    assert!(
        text.contains("not yet") && text.contains("ticket 4411"),
        "{text}"
    );
    let deal_text = b.ok(&["show", &deal]);
    assert!(deal_text.contains("erased person"), "{deal_text}");
    assert!(!deal_text.contains(NAME), "{deal_text}");

    // C comes back: its offline edit is dropped, and it erases its copy.
    let nc2 = c.start(&[]);
    assert!(
        eventually(WAIT, || !c.shows(&person)),
        "C still shows the person"
    );
    assert!(
        eventually(WAIT, || confirmed(
            &a.json(&["privacy", "status", &erasure])
        ) == 4),
        "{}",
        a.ok(&["privacy", "status", &erasure])
    );
    for n in [&a, &b, &r] {
        assert!(!n.shows(&person), "C's edit brought the person back");
    }
    // The company's former number goes as a field; the company stays.
    let field = a.json(&[
        "privacy",
        "erase",
        "Acme",
        "--field",
        "phone",
        "--reason",
        "former number",
    ]);
    assert_eq!(field["ids"][0], acme.as_str(), "{field}");
    for n in [&a, &b, &c, &r] {
        assert!(
            // (Between dropping its old history and receiving the rebuilt
            // one, a node does not show the company.)
            eventually(WAIT, || {
                let out = n.run(&["--json", "show", &acme]);
                let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                out.status.success() && v["name"] == "Acme" && v["phone"].is_null()
            }),
            "{} still shows the company's number",
            n.dir.display()
        );
    }
    let audit = a.ok(&["audit", SPACE]);
    assert!(
        audit.contains("ticket 4411") && !audit.contains(NAME),
        "{audit}"
    );

    // Until compaction the bytes are still on disk (the journal keeps
    // them); after it, on no node.
    for running in [&mut na, &mut nb, &mut nr] {
        running.stop();
    }
    drop(nc2);
    assert!(
        !holds_the_person(&a).is_empty(),
        "the byte search would find nothing even before compaction: it proves nothing"
    );
    for n in [&a, &b, &c, &r] {
        let out = n.json(&["privacy", "compact"]);
        assert!(out["erased"].as_u64() >= Some(2), "{out}");
        let left = holds_the_person(n);
        assert!(left.is_empty(), "{} still holds {left:?}", n.dir.display());
        assert!(!n.shows(&person));
    }

    // B's backup from before the erasure comes back: restoring it and
    // syncing brings the erasure, not the person.
    let restored = Node::on(b.dir.with_extension("restored"));
    restored.ok(&["restore", stale.to_str().expect("utf-8")]);
    let _na = a.start(&[]);
    let _nr = r.start_relay(&[]);
    let _nd = restored.start(&[]);
    assert!(
        eventually(WAIT, || !restored.shows(&person)),
        "the restored backup kept the person after syncing"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!a.shows(&person), "the stale copy brought the person back");
    assert!(!r.shows(&person), "the stale copy brought the person back");
    let _ = std::fs::remove_file(&stale);
}

/// One node, from the command line: consent gates a campaign, objections
/// are listed, the export holds everything put in, a retention rule's dry
/// run erases nothing and its run erases what it listed, and a private
/// person's bytes leave the disk at compaction.
#[test]
fn consent_export_retention_and_a_private_erasure_from_the_command_line() {
    let n = Node::new();
    n.ok(&["init", "--name", "Dana", "--org", "Acme"]);
    n.ok(&[
        "person", "add", NAME, "--email", EMAIL, "--phone", PHONE, "--tag", "lead",
    ]);
    n.ok(&["person", "add", "Yuri Ostrova", "--tag", "lead"]);
    n.ok(&[
        "consent",
        "add",
        NAME,
        "--purpose",
        "email",
        "--source",
        "form",
    ]);
    n.ok(&[
        "consent",
        "add",
        "Yuri Ostrova",
        "--purpose",
        "email",
        "--status",
        "objected",
        "--date",
        "2026-11-02",
        "--source",
        "email",
    ]);
    let refused = n.fails(&[
        "campaign",
        "add",
        "Winter mailing",
        "--channel",
        "email",
        "--member",
        NAME,
        "--member",
        "Yuri Ostrova",
    ]);
    assert!(
        refused.contains("consent to email")
            && refused.contains("Yuri Ostrova (objected on 2026-11-02)"),
        "{refused}"
    );
    n.ok(&["campaign", "add", "Winter mailing", "--channel", "email"]);
    let e = n.fails(&["campaign", "enroll", "Winter mailing", NAME, "Yuri Ostrova"]);
    assert!(e.contains("Yuri Ostrova"), "{e}");
    let e = n.json(&[
        "campaign",
        "enroll",
        "Winter mailing",
        NAME,
        "Yuri Ostrova",
        "--skip-without-consent",
    ]);
    assert_eq!(e["added"].as_array().map(Vec::len), Some(1), "{e}");
    assert_eq!(e["skipped"][0][1], "Yuri Ostrova", "{e}");
    let objections = n.ok(&["privacy", "objections"]);
    assert!(
        objections.contains("Yuri Ostrova: objected email on 2026-11-02 (email)"),
        "{objections}"
    );

    // The export holds the person, their consent and the campaign.
    let out = n.dir.with_extension("export");
    n.ok(&[
        "privacy",
        "export",
        NAME,
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let related = std::fs::read_to_string(out.join("related.json")).expect("related");
    assert!(
        related.contains("Winter mailing") && related.contains("\"purpose\""),
        "{related}"
    );
    let person = std::fs::read_to_string(out.join("person.json")).expect("person");
    assert!(
        person.contains(EMAIL) && person.contains("7946 0123"),
        "{person}"
    );
    std::fs::remove_dir_all(&out).expect("clean");

    // Retention: both leads were active this month, so the dry run lists
    // none (what a rule erases once time has passed is tested on a moved
    // clock in `node::retention`); applying needs a reason.
    n.ok(&[
        "privacy",
        "retention",
        "add",
        "leads",
        "--kind",
        "person",
        "--where",
        "tags=lead",
        "--inactive-months",
        "1",
    ]);
    let rules = n.ok(&["privacy", "retention", "list"]);
    assert!(
        rules.contains("leads: person records where tags=lead"),
        "{rules}"
    );
    let dry = n.json(&["privacy", "retention", "run"]);
    assert_eq!(
        dry[0]["candidates"].as_array().map(Vec::len),
        Some(0),
        "all active: {dry}"
    );
    let refused = n.fails(&["privacy", "retention", "run", "--apply"]);
    assert!(refused.contains("--reason"), "{refused}");

    // A private erasure, then compaction: no byte of the person is left.
    let erased = n.json(&["privacy", "erase", NAME, "--reason", "asked by phone"]);
    assert_eq!(
        erased["ids"].as_array().map(Vec::len),
        Some(2),
        "with her consent: {erased}"
    );
    let campaign = n.ok(&["show", "Winter mailing"]);
    assert!(
        campaign.contains("erased person") && !campaign.contains(NAME),
        "{campaign}"
    );
    assert!(
        dir_contains(&n.dir, EMAIL.as_bytes()),
        "the journal keeps it until compaction"
    );
    n.ok(&["privacy", "compact"]);
    for needle in [NAME, EMAIL, PHONE] {
        assert!(
            !dir_contains(&n.dir, needle.as_bytes()),
            "{needle} is still on disk"
        );
    }
    assert!(
        n.ok(&["show", "Yuri Ostrova"]).contains("Yuri Ostrova"),
        "others stay"
    );
    let status = n.ok(&["privacy", "status"]);
    assert!(status.contains("asked by phone"), "{status}");
}
