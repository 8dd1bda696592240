//! The plan, judged directly: documents and signed changes built in
//! memory, no store.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rapport_model::automerge::ROOT;
use rapport_model::automerge::transaction::Transactable;
use rapport_model::space::{new_record_id, new_space_id};
use rapport_model::{FieldValue, Kind, Member, Role};

use super::*;
use crate::DeviceKey;

const ADMIN: u8 = 1;
const WRITER: u8 = 2;
const READER: u8 = 3;

fn key(n: u8) -> DeviceKey {
    DeviceKey::from_secret([n; 32])
}

fn device(n: u8) -> String {
    key(n).device_id().to_string()
}

fn t() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("time")
}

fn member(n: u8, role: Role) -> Member {
    Member {
        device: device(n),
        role,
        user: String::new(),
        org: String::new(),
        added_by: device(ADMIN),
        since: 0,
        addrs: Vec::new(),
    }
}

/// A space of ADMIN's with WRITER and READER, and a record WRITER
/// created in it (the document holding its first change).
struct World {
    view: SpaceView,
    record: RecordId,
    doc: AutoCommit,
    created: Verified,
}

fn world() -> World {
    let space = new_space_id(&key(ADMIN).device_id().0, 1, [0, 0]);
    let members = [
        (ADMIN, Role::Admin),
        (WRITER, Role::Writer),
        (READER, Role::Reader),
    ]
    .into_iter()
    .map(|(n, role)| (device(n), member(n, role)))
    .collect();
    let view = SpaceView {
        id: space,
        name: "Joint".into(),
        topic: Vec::new(),
        members,
        removed: BTreeMap::new(),
        schema: Vec::new(),
        erasures: Vec::new(),
        rebases: Vec::new(),
        receipts: BTreeMap::new(),
    };
    let record = new_record_id(&key(WRITER).device_id().0, 2, [0, 1]);
    let (doc, created) = create(WRITER, SpaceId::Shared(space));
    World {
        view,
        record,
        doc,
        created,
    }
}

/// `author`'s first change of a company in `space` (under whichever id
/// the caller judges it).
fn create(author: u8, space: SpaceId) -> (AutoCommit, Verified) {
    let mut doc = rapport_model::doc::create(
        key(author).device_id().actor_id(),
        Kind::Company,
        space,
        &[("name".into(), FieldValue::Text("Acme".into()))],
        t(),
    )
    .expect("create");
    let change = doc.get_last_local_change().expect("change").clone();
    (doc, signed(author, change))
}

fn signed(author: u8, change: Change) -> Verified {
    (key(author).sign_change(&change).expect("sign"), change)
}

/// `author`'s change of `doc` (which it then holds) setting `key` to `value`
/// at the root.
fn put(doc: &mut AutoCommit, author: u8, key_: &str, value: &str) -> Verified {
    let mut mine = doc.fork().with_actor(key(author).device_id().actor_id());
    mine.put(ROOT, key_, value).expect("put");
    mine.commit();
    let change = mine.get_last_local_change().expect("change").clone();
    doc.apply_changes([change.clone()]).expect("apply");
    signed(author, change)
}

fn input<'a>(
    w: &'a World,
    doc: AutoCommit,
    aside: Vec<Verified>,
    incoming: Vec<Verified>,
    origin: Origin,
) -> Ingest<'a> {
    Ingest {
        space: w.view.id,
        record: w.record,
        view: Some(&w.view),
        doc,
        aside,
        incoming,
        origin,
    }
}

/// Each decision as (arrived now, fate).
fn fates(plan: &Plan) -> Vec<(bool, Fate)> {
    plan.decisions
        .iter()
        .map(|d| (d.new, d.fate.clone()))
        .collect()
}

fn refused(reason: &str) -> Fate {
    Fate::Refused(reason.into())
}

#[test]
fn a_writers_new_record_is_accepted_and_shown() {
    let w = world();
    let plan = plan(input(
        &w,
        AutoCommit::new(),
        Vec::new(),
        vec![w.created.clone()],
        Origin::Peer,
    ));
    assert_eq!(fates(&plan), [(true, Fate::Judged(Verdict::Accepted))]);
    let settled = plan.settled.expect("settled");
    assert!(settled.changed);
    match settled.document().expect("document") {
        Document::Write(accepted) => {
            assert_eq!(accepted.heads, [w.created.1.hash().0]);
            match &accepted.shown {
                Shown::Record(view) => assert_eq!(view.title(), "Acme"),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_may_not_be_written_is_refused_before_judging() {
    let w = world();
    let mut doc = w.doc.clone();
    let by_reader = put(&mut doc.clone(), READER, "note", "x");
    let moved = put(&mut doc, WRITER, "space", "private");
    let plan = plan(input(
        &w,
        w.doc.clone(),
        Vec::new(),
        vec![by_reader, moved, w.created.clone()],
        Origin::Peer,
    ));
    assert_eq!(
        fates(&plan),
        [
            (true, refused("a reader may not change records")),
            (
                true,
                refused("a change may not move a document to another space")
            ),
            (true, Fate::Duplicate),
        ]
    );
    assert!(plan.settled.is_none(), "nothing joined the judging");
}

/// A record id names its creator: another member's first change under
/// it is refused, except when replayed from this node's own journal
/// (judged when it arrived, by the rules of its time).
#[test]
fn only_the_creator_named_by_the_id_starts_a_record() {
    let w = world();
    let (_, squat) = create(ADMIN, SpaceId::Shared(w.view.id));
    let judge = |origin| {
        fates(&plan(input(
            &w,
            AutoCommit::new(),
            Vec::new(),
            vec![squat.clone()],
            origin,
        )))
    };
    assert_eq!(
        judge(Origin::Peer),
        [(
            true,
            refused("only the record's creator can write its first change")
        )]
    );
    assert_eq!(
        judge(Origin::Journal),
        [(true, Fate::Judged(Verdict::Accepted))]
    );
}

/// A change whose dependency has not arrived waits, and the document
/// stays; once the dependency arrives, both apply.
#[test]
fn a_change_waits_for_its_dependency_then_applies_with_it() {
    let w = world();
    let mut doc = w.doc.clone();
    let first = put(&mut doc, WRITER, "note", "one");
    let second = put(&mut doc, WRITER, "note", "two");

    let plan1 = plan(input(
        &w,
        w.doc.clone(),
        Vec::new(),
        vec![second.clone()],
        Origin::Peer,
    ));
    assert_eq!(fates(&plan1), [(true, Fate::Judged(Verdict::Waiting))]);
    assert!(!plan1.settled.expect("settled").changed);

    let plan2 = plan(input(
        &w,
        w.doc.clone(),
        vec![second.clone()],
        vec![first],
        Origin::Peer,
    ));
    assert_eq!(
        fates(&plan2),
        [
            (false, Fate::Judged(Verdict::Accepted)),
            (true, Fate::Judged(Verdict::Accepted)),
        ]
    );
    let settled = plan2.settled.expect("settled");
    assert_eq!(settled.heads, [second.1.hash()]);
}

/// WRITER was removed with a cutoff naming its creation: its later edit
/// is kept aside, and the accepted heads stay at the creation. Judged
/// again with nothing new, the same plan comes out.
#[test]
fn an_edit_after_the_authors_removal_is_held() {
    let mut w = world();
    let entry = w.view.members.remove(&device(WRITER)).expect("writer");
    let removal = Removal {
        device: device(WRITER),
        by: device(ADMIN),
        at: 3,
        cutoff: vec![(w.record, w.created.1.hash().0)],
    };
    w.view.removed.insert(device(WRITER), (entry, removal));
    let mut doc = w.doc.clone();
    let late = put(&mut doc, WRITER, "note", "late");
    let plan1 = plan(input(
        &w,
        w.doc.clone(),
        Vec::new(),
        vec![late.clone()],
        Origin::Peer,
    ));
    let held = |new| {
        (
            new,
            Fate::Judged(Verdict::Held(format!(
                "written after its author was removed by {}",
                &device(ADMIN)[..8]
            ))),
        )
    };
    assert_eq!(fates(&plan1), [held(true)]);
    let settled = plan1.settled.expect("settled");
    assert!(!settled.changed, "the accepted part is what was stored");
    assert_eq!(settled.heads, [w.created.1.hash()]);

    let again = plan(input(
        &w,
        w.doc.clone(),
        vec![late],
        Vec::new(),
        Origin::Rejudge,
    ));
    assert_eq!(fates(&again), [held(false)]);
}

/// A document of another space refuses everything sent under it.
#[test]
fn a_document_of_another_space_takes_nothing() {
    let w = world();
    let (other, _) = create(WRITER, SpaceId::Private);
    let mut doc = other.clone();
    let edit = put(&mut doc, WRITER, "note", "x");
    let plan = plan(input(&w, other, Vec::new(), vec![edit], Origin::Peer));
    assert_eq!(
        fates(&plan),
        [(true, refused("the document belongs to another space"))]
    );
    assert!(plan.settled.is_none());
}

#[test]
fn a_cutoff_that_gains_a_part_rejudges_only_the_records_it_names() {
    let w = world();
    let writer = device(WRITER);
    let r = |n: u8| new_record_id(&key(WRITER).device_id().0, u64::from(n), [0, n]);
    let mut cut = vec![(r(1), [1; 32]), (r(2), [2; 32]), (r(3), [3; 32])];
    cut.sort();
    let removed = |cutoff: &[(RecordId, Hash)]| {
        let mut v = w.view.clone();
        let entry = v.members.remove(&writer).expect("writer");
        let removal = Removal {
            device: writer.clone(),
            by: device(ADMIN),
            at: 3,
            cutoff: cutoff.to_vec(),
        };
        v.removed.insert(writer.clone(), (entry, removal));
        v
    };
    let (part, full) = (removed(&cut[..1]), removed(&cut));
    assert_eq!(
        rejudge(Some(&part), &full),
        [Rejudge::Records(vec![cut[1].0, cut[2].0])]
    );
    let all_of_it = [Rejudge::AuthoredBy(key(WRITER).device_id().0)];
    assert_eq!(rejudge(Some(&w.view), &part), all_of_it, "a new removal");
    assert_eq!(
        rejudge(Some(&full), &part),
        all_of_it,
        "a cutoff that shrank"
    );
    assert_eq!(rejudge(Some(&full), &full), [], "nothing changed");
}
