//! Organisations, roles and removal, enforced by every node: real
//! `rapport up` processes on loopback.

mod common;

use std::time::Duration;

use common::{
    Node, dir_contains, eventually, write_as_modified_client, write_schema_as_modified_client,
};
use serde_json::Value;

const JOINT: &str = "Acme ↔ Northwind";
const INTERNAL: &str = "Acme internal";
const WAIT: Duration = Duration::from_secs(20);

fn ticket(from: &Node, space: &str, args: &[&str]) -> String {
    let mut all = vec!["space", "invite", space];
    all.extend_from_slice(args);
    from.json(&all)["ticket"]
        .as_str()
        .expect("ticket")
        .to_string()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

fn field(n: &Node, id: &str, name: &str) -> Value {
    n.json(&["show", id])[name].clone()
}

fn titles(n: &Node, kind: &str) -> Vec<String> {
    let mut t: Vec<String> = n
        .json(&["list", kind])
        .as_array()
        .expect("list")
        .iter()
        .map(|r| {
            r["name"]
                .as_str()
                .or(r["title"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    t.sort();
    t
}

fn space_status(n: &Node, space: &str) -> Value {
    let s = n.json(&["status"]);
    s["spaces"]
        .as_object()
        .and_then(|m| m.values().find(|v| v["name"] == space).cloned())
        .unwrap_or(Value::Null)
}

fn removed_devices(n: &Node, space: &str) -> Vec<String> {
    n.json(&["space", "members", space])["removed"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn device(n: &Node) -> String {
    n.json(&["whoami"])["device"]
        .as_str()
        .expect("device")
        .to_string()
}

#[test]
fn partner_organisations_share_one_space_and_a_removed_partner_is_cut_off() {
    let (a1, a2, b) = (Node::new(), Node::new(), Node::new());
    a1.ok(&["init", "--name", "Ann", "--org", "Acme"]);
    a2.ok(&["init", "--name", "Al", "--org", "Acme"]);
    b.ok(&["init", "--name", "Bo", "--org", "Northwind"]);
    let _n1 = a1.start(&[]);
    let _n2 = a2.start(&[]);
    let _nb = b.start(&[]);

    // Acme: an internal space for its two devices, and a joint space with
    // Northwind.
    a1.ok(&["space", "create", INTERNAL]);
    a1.ok(&["space", "create", JOINT]);
    a2.ok(&["space", "join", &ticket(&a1, INTERNAL, &[])]);
    a2.ok(&["space", "join", &ticket(&a1, JOINT, &["--role", "admin"])]);
    b.ok(&[
        "space",
        "join",
        &ticket(&a1, JOINT, &["--org", "Northwind"]),
    ]);

    let secret = a1.json(&["company", "add", "Initech Internal", "--space", INTERNAL]);
    a1.ok(&["company", "add", "Private Prospect Ltd"]);
    let globex = a1.json(&["company", "add", "Globex", "--space", JOINT]);
    let globex = id_of(&globex);
    assert!(
        eventually(WAIT, || a2.run(&["show", &globex]).status.success()),
        "Globex did not reach A2"
    );
    let deal = a2.json(&[
        "deal",
        "add",
        "Globex renewal",
        "--company",
        "Globex",
        "--space",
        JOINT,
        "--amount",
        "5000",
        "--currency",
        "EUR",
    ]);
    let deal = id_of(&deal);
    assert!(
        eventually(WAIT, || b.run(&["show", &deal]).status.success()),
        "the joint deal did not reach B"
    );
    assert!(
        eventually(WAIT, || a2.run(&["show", &id_of(&secret)]).status.success()),
        "A2 did not get the internal record"
    );

    // B sees exactly the shared records, in its CLI and in its files.
    assert_eq!(titles(&b, "company"), vec!["Globex".to_string()]);
    assert_eq!(titles(&b, "deal"), vec!["Globex renewal".to_string()]);
    assert_eq!(
        b.json(&["space", "list"]).as_array().map(Vec::len),
        Some(1),
        "B learned of another space"
    );
    for (what, needle) in [
        ("the internal record", "Initech Internal".to_string()),
        ("its id", id_of(&secret)),
        ("the private record", "Private Prospect Ltd".to_string()),
    ] {
        assert!(
            dir_contains(&a1.dir, needle.as_bytes()),
            "{what} is not in A1's files either"
        );
        assert!(
            !dir_contains(&b.dir, needle.as_bytes()),
            "{what} reached B's files"
        );
    }
    let internal_id = a1
        .json(&["space", "list"])
        .as_array()
        .expect("spaces")
        .iter()
        .find(|s| s["name"] == INTERNAL)
        .map(|s| s["id"].as_str().expect("id").to_string())
        .expect("internal space");
    assert!(
        !dir_contains(&b.dir, internal_id.as_bytes()),
        "the internal space's id reached B"
    );

    // Who is who, as certified by Acme's admin.
    let members = b.json(&["space", "members", JOINT]);
    let orgs: Vec<(String, String, String)> = members["members"]
        .as_object()
        .expect("members")
        .values()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (s("org"), s("user"), s("role"))
        })
        .collect();
    for want in [
        ("Acme", "Ann", "admin"),
        ("Acme", "Al", "admin"),
        ("Northwind", "Bo", "writer"),
    ] {
        let want = (want.0.to_string(), want.1.to_string(), want.2.to_string());
        assert!(orgs.contains(&want), "{want:?} missing from {orgs:?}");
    }
    assert!(
        b.ok(&["whoami"])
            .contains("writer, user Bo of Northwind, certified by Ann (Acme)")
    );

    // Both organisations edit shared records.
    b.ok(&["edit", &globex, "--set", "industry=Chemicals"]);
    a2.ok(&["edit", &deal, "--set", "stage=proposal"]);
    assert!(eventually(WAIT, || field(&a1, &globex, "industry") == "Chemicals"));
    assert!(eventually(WAIT, || field(&b, &deal, "stage") == "proposal"));
    let timeline = a1.ok(&["timeline", &globex]);
    assert!(
        timeline.contains("Bo (Northwind)"),
        "the timeline does not name B's organisation:\n{timeline}"
    );

    // Acme removes Northwind. Every Acme node stops serving B.
    let b_device = device(&b);
    let out = a1.ok(&["space", "remove", JOINT, "Northwind"]);
    assert!(out.contains("Removed"), "{out}");
    assert!(
        eventually(WAIT, || removed_devices(&a2, JOINT).contains(&b_device)),
        "A2 did not learn of the removal"
    );

    // B is told, and its later edits reach nobody.
    assert!(
        eventually(WAIT, || space_status(&b, JOINT)["refused"]
            .as_str()
            .is_some_and(|r| r.contains("you were removed"))),
        "B was not told it was removed: {}",
        space_status(&b, JOINT)
    );
    b.ok(&["edit", &globex, "--set", "phone=+1 555 0199"]);
    // And it receives nothing new.
    a1.ok(&["edit", &globex, "--set", "owner=Ann"]);
    let after = a2.json(&["company", "add", "Hooli", "--space", JOINT]);
    assert!(eventually(WAIT, || field(&a1, &globex, "owner") == "Ann"
        && a1.run(&["show", &id_of(&after)]).status.success()));
    // Several catch-up rounds (every second) go by.
    std::thread::sleep(Duration::from_secs(4));
    for n in [&a1, &a2] {
        assert_eq!(
            field(n, &globex, "phone"),
            Value::Null,
            "B's edit after its removal was applied"
        );
    }
    assert_eq!(
        field(&b, &globex, "owner"),
        Value::Null,
        "B received an edit after its removal"
    );
    assert!(
        !b.run(&["show", &id_of(&after)]).status.success(),
        "B received a record created after its removal"
    );
    assert!(!dir_contains(&b.dir, b"Hooli"));

    // The audit tells the story.
    let audit = a1.ok(&["audit", JOINT]);
    assert!(audit.contains("removed"), "{audit}");
    assert!(
        audit.contains("added") && audit.contains("as writer"),
        "{audit}"
    );
}

#[test]
fn a_readers_edit_is_refused_by_every_node() {
    let (a, c, r) = (Node::new(), Node::new(), Node::new());
    let _na = a.start(&[]);
    let _nc = c.start(&[]);
    a.ok(&["space", "create", JOINT]);
    let acme = id_of(&a.json(&["company", "add", "Acme", "--space", JOINT]));
    c.ok(&["space", "join", &ticket(&a, JOINT, &["--role", "admin"])]);
    r.ok(&["init", "--name", "Rita", "--org", "Auditors"]);
    let mut nr = r.start(&[]);
    r.ok(&["space", "join", &ticket(&a, JOINT, &["--role", "reader"])]);
    // Through C too, so that R can reach both.
    r.ok(&["space", "join", &ticket(&c, JOINT, &["--role", "reader"])]);
    assert!(eventually(WAIT, || r
        .run(&["show", &acme])
        .status
        .success()));

    let err = r.fails(&["edit", &acme, "--set", "industry=Steel"]);
    assert!(err.contains("you are a reader"), "{err}");

    // A modified client writes anyway, with a valid signature.
    nr.stop();
    write_as_modified_client(&r.dir, &acme, "industry", "Hacked", false);
    let _nr = r.start(&[]);
    let refused_everywhere = eventually(Duration::from_secs(30), || {
        [&a, &c].iter().all(|n| {
            n.json(&["audit", JOINT])["rejections"]
                .as_array()
                .is_some_and(|l| {
                    l.iter().any(|x| {
                        x["reason"]
                            .as_str()
                            .is_some_and(|s| s.contains("a reader may not change records"))
                    })
                })
        })
    });
    assert!(
        refused_everywhere,
        "a node did not refuse the reader's change"
    );
    for n in [&a, &c] {
        assert_eq!(field(n, &acme, "industry"), Value::Null);
    }
}

/// W (an admin Acme added) is removed while offline and editing; C, also
/// offline then, meets W before it hears of the removal and builds on one
/// of W's late edits. Once A and C meet, both hold the same record: W's
/// late edit that C built on stays, the one nobody built on is gone.
#[test]
fn a_removal_concurrent_with_the_removed_devices_edits_converges() {
    let (a, w, c) = (Node::new(), Node::new(), Node::new());
    w.ok(&["init", "--name", "Wes", "--org", "Acme"]);
    let mut na = a.start(&[]);
    let mut nw = w.start(&[]);
    let mut nc = c.start(&[]);
    a.ok(&["space", "create", JOINT]);
    let acme = id_of(&a.json(&["company", "add", "Acme", "--space", JOINT]));
    w.ok(&["space", "join", &ticket(&a, JOINT, &["--role", "admin"])]);
    c.ok(&["space", "join", &ticket(&a, JOINT, &[])]);
    // C redeems a ticket of W too: the two learn each other's address.
    c.ok(&["space", "join", &ticket(&w, JOINT, &[])]);
    for n in [&w, &c] {
        assert!(eventually(WAIT, || n
            .run(&["show", &acme])
            .status
            .success()));
    }
    w.ok(&["edit", &acme, "--set", "industry=Steel"]);
    assert!(eventually(WAIT, || field(&a, &acme, "industry") == "Steel"));

    // W and C go offline; A removes W.
    nw.stop();
    nc.stop();
    a.ok(&["space", "remove", JOINT, "Wes"]);
    na.stop();

    // W and C meet while A is away; C builds on W's first late edit.
    let mut nw = w.start(&[]);
    let mut nc = c.start(&[]);
    w.ok(&["edit", &acme, "--set", "phone=+1 555 0100"]);
    assert!(
        eventually(WAIT, || field(&c, &acme, "phone") == "+1 555 0100"),
        "C did not get W's late edit"
    );
    c.ok(&["edit", &acme, "--set", "owner=Cy"]);
    w.ok(&["edit", &acme, "--set", "domain=evil.example"]);
    assert!(
        eventually(WAIT, || field(&c, &acme, "domain") == "evil.example"),
        "C did not get W's second late edit"
    );
    nw.stop();

    // A comes back; A and C converge.
    let _na = a.start(&[]);
    let converged = eventually(Duration::from_secs(30), || {
        let (va, vc) = (a.json(&["show", &acme]), c.json(&["show", &acme]));
        ["industry", "phone", "owner", "domain"]
            .iter()
            .all(|f| va[f] == vc[f])
            && vc["domain"].is_null()
    });
    let (va, vc) = (a.json(&["show", &acme]), c.json(&["show", &acme]));
    assert!(converged, "A and C did not converge:\nA {va}\nC {vc}");
    assert_eq!(va["industry"], "Steel", "an edit A had seen is gone");
    assert_eq!(
        va["phone"], "+1 555 0100",
        "the late edit C built on is gone"
    );
    assert_eq!(va["owner"], "Cy");
    assert!(
        va["domain"].is_null(),
        "a late edit nobody built on was applied"
    );
    nc.stop();
}

#[test]
fn tickets_are_one_time_expiring_bound_to_their_role_and_tamper_evident() {
    let (a, b, c) = (Node::new(), Node::new(), Node::new());
    let _na = a.start(&[]);
    let _nb = b.start(&[]);
    let _nc = c.start(&[]);
    a.ok(&["space", "create", JOINT]);
    let reader_ticket = ticket(&a, JOINT, &["--role", "reader"]);
    b.ok(&["space", "join", &reader_ticket]);
    let me = device(&b);
    let members = a.json(&["space", "members", JOINT]);
    assert_eq!(members["members"][&me]["role"], "reader");

    let spaces_of_c = |c: &Node| c.json(&["space", "list"]).as_array().map(Vec::len);
    let err = c.fails(&["space", "join", &reader_ticket]);
    assert!(err.contains("already used"), "{err}");
    let expired = ticket(&a, JOINT, &["--ttl=-1"]);
    let err = c.fails(&["space", "join", &expired]);
    assert!(err.contains("expired"), "{err}");
    let good = ticket(&a, JOINT, &[]);
    let mut chars: Vec<char> = good.chars().collect();
    let at = chars.len() / 2;
    chars[at] = if chars[at] == 'a' { 'b' } else { 'a' };
    let err = c.fails(&["space", "join", &chars.into_iter().collect::<String>()]);
    assert!(err.contains("damaged"), "{err}");
    assert_eq!(
        spaces_of_c(&c),
        Some(0),
        "a refused ticket granted something"
    );
    // A reader cannot invite anyone.
    let err = b.fails(&["space", "invite", JOINT]);
    assert!(
        err.contains("only its admins manage its membership"),
        "{err}"
    );
    // The intact ticket still works, once, with the role it was made for.
    c.ok(&["space", "join", &good]);
    assert_eq!(
        a.json(&["space", "members", JOINT])["members"][&device(&c)]["role"],
        "writer"
    );
}

fn has_field(n: &Node, kind: &str, name: &str) -> bool {
    n.json(&["fields", kind, "--space", JOINT])
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f["name"] == name))
}

/// Admin A adds a field to a shared space; writer B's node follows: B
/// fills it in and A sees the value. B cannot change the fields; a
/// reader's statement, written by a modified client, is refused by every
/// node, and the field it tried to add exists nowhere.
#[test]
fn an_admins_fields_reach_the_members_and_nobody_else_changes_them() {
    let (a, b, r) = (Node::new(), Node::new(), Node::new());
    let _na = a.start(&[]);
    let _nb = b.start(&[]);
    let mut nr = r.start(&[]);
    let space = id_of(&a.json(&["space", "create", JOINT]));
    b.ok(&["space", "join", &ticket(&a, JOINT, &[])]);
    r.ok(&["space", "join", &ticket(&a, JOINT, &["--role", "reader"])]);

    a.ok(&[
        "schema",
        "field",
        "add",
        "company",
        "tier",
        "--type",
        "choice",
        "--choices",
        "gold,silver",
        "--label",
        "Customer tier",
        "--space",
        JOINT,
    ]);
    assert!(
        eventually(WAIT, || has_field(&b, "company", "tier")),
        "B's node does not know the field A added"
    );
    let err = b.fails(&[
        "company",
        "add",
        "Acme",
        "--space",
        JOINT,
        "--set",
        "tier=platinum",
    ]);
    assert!(err.contains("choose one of gold, silver"), "{err}");
    let acme = id_of(&b.json(&[
        "company",
        "add",
        "Acme",
        "--space",
        JOINT,
        "--set",
        "tier=Gold",
    ]));
    assert!(
        eventually(WAIT, || a.run(&["show", &acme]).status.success()
            && field(&a, &acme, "tier") == "gold"),
        "A does not see the value B typed"
    );
    // A renames the choice: B's record follows, by A's signed edit.
    let renamed = a.ok(&[
        "schema",
        "field",
        "rename-choice",
        "company",
        "tier",
        "gold",
        "platinum",
        "--space",
        JOINT,
    ]);
    assert!(renamed.contains("1 record was rewritten"), "{renamed}");
    assert!(
        eventually(WAIT, || field(&b, &acme, "tier") == "platinum"),
        "B's record does not carry the renamed choice"
    );

    let err = b.fails(&[
        "schema", "field", "add", "company", "mine", "--type", "text", "--space", JOINT,
    ]);
    assert!(err.contains("you are a writer"), "{err}");

    // A modified client of the reader writes a statement anyway.
    assert!(eventually(WAIT, || has_field(&r, "company", "tier")));
    nr.stop();
    write_schema_as_modified_client(
        &r.dir,
        &space,
        r#"{"op":"add_field","kind":"deal","name":"sneaky","type":"text"}"#,
    );
    let _nr = r.start(&[]);
    // Refused on arrival (a rejection) or held and judged (a statement).
    let refused = |n: &Node| {
        let audit = n.json(&["audit", JOINT]);
        let says = |list: &str, key: &str| {
            audit[list].as_array().is_some_and(|l| {
                l.iter().any(|s| {
                    s[key]
                        .as_str()
                        .is_some_and(|v| v.contains("its author is a reader"))
                })
            })
        };
        says("statements", "verdict") || says("rejections", "reason")
    };
    assert!(
        eventually(Duration::from_secs(30), || refused(&a) && refused(&b)),
        "a node did not refuse the reader's statement"
    );
    for n in [&a, &b, &r] {
        assert!(!has_field(n, "deal", "sneaky"), "the reader's field counts");
    }
}
