//! Conflicts between two real nodes, and what a user sees and can do about
//! them through the `rapport` binary: keeping a value settles a conflict on
//! both nodes, first tags added on two nodes merge, and a delete racing an
//! edit or a restore shows in `show` and `timeline` until it is settled.
//!
//! The two nodes are `Repo`s on their own data directories, synced in
//! memory; each is closed before the binary opens its directory.

mod common;

use common::Node;
use rapport_model::{Kind, Member, Role, SpaceId};
use rapport_node::{OpenMode, Repo};
use serde_json::Value;

/// Two data directories: A (Ann Admin, Acme) and B (Bob Field, Northwind),
/// a space of A's with B as writer.
struct Pair {
    a: Node,
    b: Node,
    space: SpaceId,
}

fn open(node: &Node) -> Repo {
    Repo::open(&node.dir, OpenMode::Existing).expect("open")
}

fn sync(a: &Repo, b: &Repo, space: SpaceId) {
    let mut ra = a.replica(b.device_id());
    let mut rb = b.replica(a.device_id());
    rapport_sync::run_in_memory(space, &mut ra, &mut rb).expect("session");
}

impl Pair {
    fn new() -> Pair {
        let (a, b) = (Node::new(), Node::new());
        let ra = Repo::open(&a.dir, OpenMode::Create).expect("open a");
        let rb = Repo::open(&b.dir, OpenMode::Create).expect("open b");
        ra.set_identity(Some("Ann Admin".into()), Some("Acme".into()))
            .expect("identity");
        rb.set_identity(Some("Bob Field".into()), Some("Northwind".into()))
            .expect("identity");
        let shared = ra.create_space("Joint").expect("space");
        ra.add_member(
            shared.id,
            Member {
                device: rb.device_id().to_string(),
                role: Role::Writer,
                user: "Bob Field".into(),
                org: "Northwind".into(),
                added_by: String::new(),
                since: 0,
                addrs: Vec::new(),
            },
        )
        .expect("add b");
        let space = SpaceId::Shared(shared.id);
        sync(&rb, &ra, space);
        Pair { a, b, space }
    }

    /// Syncs the two directories (neither may be open elsewhere).
    fn sync(&self) {
        sync(&open(&self.a), &open(&self.b), self.space);
    }

    /// A company in the space, on both nodes; its id.
    fn company(&self, name: &str) -> String {
        let id = open(&self.a)
            .create(Kind::Company, self.space, &[("name".into(), name.into())])
            .expect("company")
            .id
            .to_string();
        self.sync();
        id
    }
}

fn conflicts(show: &Value) -> &Value {
    &show["conflicts"]
}

#[test]
fn keeping_the_value_that_already_wins_settles_a_conflict_on_both_nodes() {
    let p = Pair::new();
    let id = p.company("Acme");
    p.a.ok(&["edit", &id, "--set", "industry=Steel"]);
    p.b.ok(&["edit", &id, "--set", "industry=Mining"]);
    p.sync();
    let torn = p.a.json(&["show", &id]);
    assert_eq!(
        conflicts(&torn)["industry"].as_array().map(Vec::len),
        Some(2),
        "{torn}"
    );
    let shown = p.a.ok(&["show", &id]);
    assert!(shown.contains("(conflict: also"), "{shown}");
    // The value `show` prints is Automerge's winner: keep exactly that.
    let winner = torn["industry"].as_str().expect("a value").to_string();
    p.a.ok(&["edit", &id, "--set", &format!("industry={winner}")]);
    let kept = p.a.json(&["show", &id]);
    assert!(conflicts(&kept).is_null(), "settled on A: {kept}");
    p.sync();
    let on_b = p.b.json(&["show", &id]);
    assert_eq!(on_b["industry"], winner.as_str());
    assert!(conflicts(&on_b).is_null(), "settled on B: {on_b}");
    assert!(!p.b.ok(&["show", &id]).contains("conflict"));
}

#[test]
fn first_tags_added_on_two_nodes_at_the_same_time_all_show() {
    let p = Pair::new();
    let id = p.company("Globex");
    p.a.ok(&["edit", &id, "--set", "tags=vip"]);
    p.b.ok(&["edit", &id, "--set", "tags=eu,partner"]);
    p.sync();
    for node in [&p.a, &p.b] {
        let v = node.json(&["show", &id]);
        let mut tags: Vec<&str> = v["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        tags.sort_unstable();
        assert_eq!(tags, ["eu", "partner", "vip"], "{v}");
        assert!(conflicts(&v).is_null(), "{v}");
    }
    // Later additions and removals on both nodes merge too.
    p.a.ok(&["edit", &id, "--set", "tags=vip,eu"]);
    p.b.ok(&["edit", &id, "--set", "tags=vip,eu,partner,new"]);
    p.sync();
    let v = p.b.json(&["show", &id]);
    let mut tags: Vec<&str> = v["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["eu", "new", "vip"], "{v}");
}

#[test]
fn a_delete_racing_an_edit_shows_in_show_and_timeline_until_settled() {
    let p = Pair::new();
    let id = p.company("Initech");
    p.a.ok(&["delete", &id]);
    p.b.ok(&["edit", &id, "--set", "industry=Mining"]);
    p.sync();
    for node in [&p.a, &p.b] {
        let shown = node.ok(&["show", &id]);
        assert!(
            shown.contains(
                "Ann Admin (Acme) deleted this record while Bob Field (Northwind) \
                 changed industry at the same time: it stays deleted"
            ),
            "{shown}"
        );
        let json = node.json(&["show", &id]);
        assert_eq!(json["delete_race"]["edits"][0]["fields"][0], "industry");
        let timeline = node.ok(&["timeline", &id]);
        assert!(
            timeline.contains("! made at the same time as a delete by Ann Admin (Acme)"),
            "{timeline}"
        );
        assert!(
            timeline.contains("! made at the same time as edits by Bob Field (Northwind)"),
            "{timeline}"
        );
    }
    // Deleting it again, having seen the edit, settles it everywhere.
    p.a.ok(&["delete", &id]);
    p.sync();
    for node in [&p.a, &p.b] {
        let shown = node.ok(&["show", &id]);
        assert!(shown.contains("[deleted]"), "{shown}");
        assert!(!shown.contains("at the same time"), "{shown}");
    }
}

#[test]
fn a_delete_racing_a_restore_shows_until_settled() {
    let p = Pair::new();
    let id = p.company("Umbrella");
    p.a.ok(&["delete", &id]);
    p.sync();
    // A restores; B, not knowing, restores and deletes again.
    p.a.ok(&["restore", &id]);
    p.b.ok(&["restore", &id]);
    p.b.ok(&["delete", &id]);
    p.sync();
    for node in [&p.a, &p.b] {
        let shown = node.ok(&["show", &id]);
        assert!(
            shown.contains(
                "Bob Field (Northwind) deleted this record while Ann Admin (Acme) restored it at the same time"
            ),
            "{shown}"
        );
        let timeline = node.ok(&["timeline", &id]);
        assert!(
            timeline.contains("! made at the same time as a restore by Ann Admin (Acme)"),
            "{timeline}"
        );
    }
    // Restoring it, whatever Automerge picked, settles it on both nodes.
    p.a.ok(&["restore", &id]);
    p.sync();
    for node in [&p.a, &p.b] {
        let v = node.json(&["show", &id]);
        assert!(v.get("deleted").is_none(), "restored: {v}");
        assert!(v.get("delete_race").is_none(), "settled: {v}");
    }
}
