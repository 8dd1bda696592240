//! The ingest target: hostile changes offered to a real node through
//! `Repo::apply_remote`, the function every change from a peer goes
//! through (sync sessions call it for each record).
//!
//! An input is one flag byte, then encoded signed changes back to back
//! (each envelope carries its own length, so splicing two inputs makes a
//! batch; a tail that is not a whole envelope is offered as it is). The
//! flags say how much of the mutant to repair before offering it:
//!
//! - `REPAIR`: rewrite each change's Automerge chunk header to fit its
//!   (mutated) contents;
//! - `RESIGN`: sign each change again with the world's key for its actor,
//!   as a member turned hostile would, so that it passes verification and
//!   reaches Automerge and the authorization rules;
//! - `SPACE`: offer the batch for the space document instead of the record.
//!
//! After each input the node must still be consistent (its stored view of
//! the record is what its document says), show the same record and space
//! unless a change was applied, and be usable: a local edit of the record
//! succeeds (checked on every node an input changed; one it left as it was
//! is the template, where the edit was checked once, and takes the next
//! input).

use std::collections::BTreeSet;
use std::path::Path;

use rapport_model::automerge::AutoCommit;
use rapport_model::space::add_member;
use rapport_model::{RecordView, Role, SpaceView};
use rapport_node::ingest::ApplyReport;
use rapport_node::{NodeError, OpenMode, Repo};
use rapport_proto::SignedChange;
use rapport_trust::{DeviceKey, verify_change};

use crate::repair::{self, ENVELOPE_HEADER};
use crate::world::{World, at, member, sign_last};

pub const REPAIR: u8 = 1;
pub const RESIGN: u8 = 2;
pub const SPACE: u8 = 4;

/// Changes offered per input at most (a peer's batch is one record's).
const MAX_BATCH: usize = 16;
/// The data directory inside a node's temporary directory.
const DATA: &str = "data";

/// The input that offers `changes` with `flags`.
pub fn input(flags: u8, changes: &[SignedChange]) -> Vec<u8> {
    let mut out = vec![flags];
    for c in changes {
        out.extend_from_slice(&c.encode());
    }
    out
}

/// Splits an input into its flags and the byte strings to offer.
fn split(input: &[u8]) -> (u8, Vec<Vec<u8>>) {
    let Some((&flags, mut rest)) = input.split_first() else {
        return (0, Vec::new());
    };
    let mut items = Vec::new();
    while !rest.is_empty() && items.len() < MAX_BATCH {
        let whole = rest
            .get(ENVELOPE_HEADER - 4..ENVELOPE_HEADER)
            .map(|n| ENVELOPE_HEADER + u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
            .filter(|&len| len <= rest.len())
            .unwrap_or(rest.len());
        let (item, next) = rest.split_at(whole);
        items.push(item.to_vec());
        rest = next;
    }
    (flags, items)
}

/// What the node shows of the world's record and space.
#[derive(Debug, PartialEq)]
struct Snapshot {
    record_heads: Option<Vec<[u8; 32]>>,
    record: Option<RecordView>,
    space_heads: Option<Vec<[u8; 32]>>,
    space: Option<SpaceView>,
}

/// A node (in a temporary directory) that holds the world.
struct Node {
    _tmp: tempfile::TempDir,
    repo: Repo,
}

impl Node {
    /// A new node, given the world's space (with itself added as a
    /// writer by the admin) and the world's record.
    fn new(world: &World) -> Node {
        let tmp = scratch();
        let repo = Repo::open(&tmp.path().join(DATA), OpenMode::Create).expect("open repo");
        let space = world.space();
        let encode = |cs: &[SignedChange]| cs.iter().map(SignedChange::encode).collect();
        let admin = world.admin.device_id();
        let report = repo
            .apply_remote(space, world.space_id, encode(&world.space_changes), admin)
            .expect("apply the space");
        assert_eq!(
            report.applied, 2,
            "the world's space is accepted: {report:?}"
        );

        let mut doc: AutoCommit = world.space_doc.clone();
        let entry = member(
            &world.admin,
            repo.device_id().to_string(),
            Role::Writer,
            "Node",
        );
        add_member(&mut doc, &entry, at(3)).expect("add the node");
        let added = sign_last(&mut doc, &world.admin);
        repo.apply_remote(space, world.space_id, vec![added.encode()], admin)
            .expect("add the node");

        let report = repo
            .apply_remote(
                space,
                world.record,
                encode(&world.record_changes),
                world.writer.device_id(),
            )
            .expect("apply the record");
        assert_eq!(
            report.applied, 1,
            "the world's record is accepted: {report:?}"
        );
        Node { _tmp: tmp, repo }
    }

    /// A copy of the data directory of `template`, which is not open.
    /// Copying is several times faster than setting a node up.
    fn copy_of(template: &Path) -> Node {
        let tmp = scratch();
        copy_dir(template, &tmp.path().join(DATA));
        let repo = Repo::open(&tmp.path().join(DATA), OpenMode::Existing).expect("open copy");
        Node { _tmp: tmp, repo }
    }

    fn snapshot(&self, world: &World) -> Snapshot {
        let store = self.repo.store();
        let space = world.space();
        Snapshot {
            record_heads: store.heads(space, world.record).expect("record heads"),
            record: store.view(world.record).expect("record view"),
            space_heads: store.heads(space, world.space_id).expect("space heads"),
            space: self.repo.space(world.space_id).expect("space view"),
        }
    }

    /// What is stored agrees with itself: the record's view is what its
    /// document says, and the document loads.
    fn check_consistent(&self, world: &World, snap: &Snapshot) {
        let Some(heads) = &snap.record_heads else {
            assert!(snap.record.is_none(), "a view without a document");
            return;
        };
        let mut doc = self.repo.load_doc(world.record).expect("the record loads");
        let mut doc_heads: Vec<[u8; 32]> = doc.get_heads().iter().map(|h| h.0).collect();
        let mut stored = heads.clone();
        doc_heads.sort();
        stored.sort();
        assert_eq!(doc_heads, stored, "stored heads are the document's");
        let read = RecordView::read(&mut doc, world.record, None).expect("the record reads");
        assert_eq!(
            Some(&read),
            snap.record.as_ref(),
            "stored view is the document's"
        );
        assert!(snap.space.is_some(), "the space is still known");
    }

    /// A local edit of the record works, unless the world's state
    /// forbids it (the record was deleted or withdrawn, this node removed,
    /// or accepted fields break a cross-field rule).
    fn check_usable(&self, world: &World, snap: &Snapshot) -> &'static str {
        let edit = [("industry".to_string(), "after the input".to_string())];
        match self.repo.edit(&world.record.to_string(), &edit, &[]) {
            Ok(view) => {
                assert_eq!(view.text("industry"), Some("after the input"));
                "edited"
            }
            Err(NodeError::Deleted { .. }) => "deleted",
            Err(NodeError::Forbidden(_) | NodeError::NotMember(_)) => "forbidden",
            Err(NodeError::Rule(_)) => "rule",
            Err(NodeError::NotFound(_)) if snap.record.is_none() => "withdrawn",
            Err(e) => panic!("a local edit failed after hostile input: {e}"),
        }
    }
}

/// A temporary directory for a node, in memory where the system has a
/// tmpfs at `/dev/shm`: nodes are made and dropped by the thousand, and
/// their syncs to disk would otherwise take most of the time; what the
/// target looks for does not depend on the disk.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let made = if shm.is_dir() {
        tempfile::tempdir_in(shm).or_else(|_| tempfile::tempdir())
    } else {
        tempfile::tempdir()
    };
    made.expect("tempdir")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for entry in std::fs::read_dir(from).expect("read directory").flatten() {
        let (path, dest) = (entry.path(), to.join(entry.file_name()));
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).expect("copy file");
        }
    }
}

/// Offers each input to a node holding the world and nothing else, so that
/// a crash depends on the input alone and its file reproduces it.
pub struct Ingest<'w> {
    world: &'w World,
    /// A node holding the world, closed; copied to make a fresh node.
    template: tempfile::TempDir,
    /// Everything the template holds of the world.
    pristine: Stored,
    /// A node still equal to the template, if the last input left one.
    node: Option<Node>,
}

/// What a node holds of the world: what it shows, and every change it
/// keeps (applied, waiting or held).
#[derive(Debug, PartialEq)]
struct Stored {
    shown: Snapshot,
    record_changes: Vec<Vec<u8>>,
    space_changes: Vec<Vec<u8>>,
}

impl Node {
    fn stored(&self, world: &World) -> Stored {
        let store = self.repo.store();
        Stored {
            shown: self.snapshot(world),
            record_changes: store.change_hashes(world.record).expect("changes"),
            space_changes: store.change_hashes(world.space_id).expect("changes"),
        }
    }
}

impl<'w> Ingest<'w> {
    pub fn new(world: &'w World) -> Self {
        let node = Node::new(world);
        let pristine = node.stored(world);
        let template = node._tmp;
        drop(node.repo);
        let probe = Node::copy_of(&template.path().join(DATA));
        assert_eq!(probe.check_usable(world, &pristine.shown), "edited");
        Ingest {
            world,
            template,
            pristine,
            node: None,
        }
    }

    pub fn exec(&mut self, input: &[u8]) -> String {
        let world = self.world;
        // Copying a node costs more than most inputs, so a node that an
        // input left as it was serves the next one.
        let node = match self.node.take() {
            Some(node) => node,
            None => Node::copy_of(&self.template.path().join(DATA)),
        };
        let (flags, items) = split(input);
        let keys = [&world.writer, &world.admin];
        let items: Vec<Vec<u8>> = items
            .into_iter()
            .map(|item| prepare(flags, item, &keys))
            .collect();
        // Each distinct outcome once: the batch's order and size are noise.
        let outcomes: BTreeSet<String> = items.iter().map(|i| outcome(i)).collect();
        let mut label: String = outcomes.into_iter().collect();
        let offered = items.len();
        let target = if flags & SPACE != 0 {
            world.space_id
        } else {
            world.record
        };

        let report = node
            .repo
            .apply_remote(world.space(), target, items, world.writer.device_id())
            .unwrap_or_else(|e| panic!("apply_remote failed on hostile input: {e}"));
        check_report(&report, offered);
        let after = node.stored(world);
        if report.applied == 0 {
            assert_eq!(
                self.pristine.shown, after.shown,
                "nothing was applied, yet the node shows something else"
            );
        }
        // A node holding exactly what the template holds is the template
        // (the rejection log aside), which is consistent and where a local
        // edit is known to work; any other is checked, and not used again.
        let usable = if after == self.pristine {
            self.node = Some(node);
            "unchanged"
        } else {
            node.check_consistent(world, &after.shown);
            node.check_usable(world, &after.shown)
        };
        // Letters, not counts: the engine drops digits from outcomes.
        let mark = |n: usize, c: char| if n > 0 { c } else { '-' };
        label += &format!(
            " {}{}{} {}{}{}{} {usable}",
            mark(usize::from(flags & REPAIR), 'F'),
            mark(usize::from(flags & RESIGN), 'S'),
            mark(usize::from(flags & SPACE), 'D'),
            mark(report.applied, 'a'),
            mark(report.rejected, 'r'),
            mark(report.pending, 'p'),
            mark(report.held, 'h'),
        );
        label
    }
}

/// Repairs and re-signs one offered change as the flags say.
fn prepare(flags: u8, item: Vec<u8>, keys: &[&DeviceKey]) -> Vec<u8> {
    let Ok(mut signed) = SignedChange::decode(&item) else {
        return item;
    };
    if flags & REPAIR != 0 {
        signed.change = repair::change_chunk(&signed.change);
    }
    if flags & RESIGN != 0
        && let Some(again) = repair::resign(&signed.change, keys)
    {
        signed = again;
    }
    signed.encode()
}

/// Coarsely, how far verification gets with one offered change.
fn outcome(item: &[u8]) -> String {
    match SignedChange::decode(item) {
        Err(_) => "[envelope]".into(),
        Ok(s) => match verify_change(&s) {
            Ok(_) => "[ok]".into(),
            Err(e) => format!("[{e}]"),
        },
    }
}

/// Every change offered is accounted for exactly once.
fn check_report(report: &ApplyReport, offered: usize) {
    let counted =
        report.applied + report.duplicates + report.rejected + report.pending + report.held;
    assert_eq!(counted, offered, "{report:?} for {offered} changes");
}
