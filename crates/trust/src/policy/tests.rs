//! The rules, driven deterministically: seeded scenarios of removals
//! concurrent with the removed device's edits, delivered in many orders.

use super::*;
use jiff::Timestamp;
use rapport_model::automerge::transaction::Transactable;
use rapport_model::automerge::{ActorId, AutoCommit, ObjId, ROOT, ReadDoc, ScalarValue};
use rapport_model::space::{self, Identity, new_space_id};

const A: [u8; 32] = [1; 32];
const W: [u8; 32] = [2; 32];
const C: [u8; 32] = [3; 32];
const R: [u8; 32] = [4; 32];

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

fn hexs(k: &[u8; 32]) -> String {
    hex(k)
}

fn member(device: &[u8; 32], role: Role, by: &[u8; 32]) -> Member {
    Member {
        device: hexs(device),
        role,
        user: format!("user{}", device[0]),
        org: if device[0] == 3 {
            "Northwind".into()
        } else {
            "Acme".into()
        },
        added_by: hexs(by),
        since: 1,
        addrs: Vec::new(),
    }
}

/// `device` removed by `by` at `at`, naming no record change.
fn removal(device: &[u8; 32], by: &[u8; 32], at: i64) -> Removal {
    Removal {
        device: hexs(device),
        by: hexs(by),
        at,
        cutoff: Vec::new(),
    }
}

fn t() -> Timestamp {
    Timestamp::from_second(1_000).expect("time")
}

/// A space created by A, alone.
fn new_space(id: RecordId) -> AutoCommit {
    space::create_space(
        ActorId::from(&A[..]),
        id,
        "Joint",
        &Identity::default(),
        [0; 32],
        t(),
    )
    .expect("space")
}

/// A space created by A with writer W, writer C and reader R.
fn space_with_members(id: RecordId) -> AutoCommit {
    let mut doc = new_space(id);
    for (d, role) in [(W, Role::Writer), (C, Role::Writer), (R, Role::Reader)] {
        space::add_member(&mut doc, &member(&d, role, &A), t()).expect("add");
    }
    doc
}

fn edit(doc: &mut AutoCommit, actor: &[u8; 32], n: usize) -> Change {
    doc.set_actor(ActorId::from(&actor[..]));
    doc.put(ROOT, format!("field{}", actor[0]), n as i64)
        .expect("put");
    doc.commit();
    doc.get_last_local_change().expect("change").clone()
}

/// Everything one scenario produces, and what the rules must conclude.
struct Scenario {
    space_changes: Vec<Change>,
    record_changes: Vec<Change>,
    record: RecordId,
    id: RecordId,
    /// W's record changes that must end up applied.
    w_accepted: BTreeSet<Hash>,
    w_all: BTreeSet<Hash>,
    reader_change: Hash,
}

fn scenario(rng: &mut Rng) -> Scenario {
    let id = new_space_id(&A, 1, [0, 1]);
    let record = RecordId::new(2, [2; 10]);
    let mut space_a = space_with_members(id);
    let mut base = AutoCommit::new().with_actor(ActorId::from(&A[..]));
    base.put(ROOT, "name", "Acme").expect("put");
    base.commit();

    // W edits; A sees the first `seen` of them, then removes W.
    let mut w = base.fork().with_actor(ActorId::from(&W[..]));
    let before = 1 + rng.below(4);
    let after = 1 + rng.below(4);
    let mut w_changes = Vec::new();
    for n in 0..before {
        w_changes.push(edit(&mut w, &W, n));
    }
    let seen = rng.below(before + 1);
    let mut a = base.fork().with_actor(ActorId::from(&A[..]));
    a.apply_changes(w_changes[..seen].iter().cloned())
        .expect("A sees");
    let cutoff = if seen == 0 {
        Vec::new()
    } else {
        vec![(record, w_changes[seen - 1].hash().0)]
    };
    space::remove_members(
        &mut space_a,
        &[Removal {
            device: hexs(&W),
            by: hexs(&A),
            at: 2,
            cutoff,
        }],
        [9; 32],
        t(),
    )
    .expect("remove");
    edit(&mut a, &A, 100);
    // W goes on, not knowing.
    for n in 0..after {
        w_changes.push(edit(&mut w, &W, before + n));
    }
    // C may have built on some of W's changes before hearing of it.
    let mut c = base.fork().with_actor(ActorId::from(&C[..]));
    let built_on = if rng.below(2) == 0 {
        rng.below(w_changes.len() + 1)
    } else {
        0
    };
    c.apply_changes(w_changes[..built_on].iter().cloned())
        .expect("C sees");
    edit(&mut c, &C, 200);
    // The reader writes anyway (a modified client).
    let mut r = base.fork();
    let reader_change = edit(&mut r, &R, 300).hash().0;

    let mut record_changes: Vec<Change> = Vec::new();
    for d in [&mut base, &mut w, &mut a, &mut c, &mut r] {
        for ch in d.get_changes(&[]) {
            if !record_changes.iter().any(|x| x.hash() == ch.hash()) {
                record_changes.push(ch.clone());
            }
        }
    }
    let keep = seen.max(built_on);
    Scenario {
        space_changes: space_a.get_changes(&[]),
        record_changes,
        record,
        id,
        w_accepted: w_changes[..keep].iter().map(|c| c.hash().0).collect(),
        w_all: w_changes.iter().map(|c| c.hash().0).collect(),
        reader_change,
    }
}

/// A node that receives changes one at a time and re-judges after each,
/// as `rapport-node` does; returns what it ends with.
fn deliver(s: &Scenario, order: &[(bool, usize)]) -> (Vec<ChangeHash>, Vec<Verdict>, String) {
    let mut space_doc = AutoCommit::new();
    let mut record_held: Vec<Change> = Vec::new();
    let mut last = (Vec::new(), Vec::new(), String::new());
    for &(is_space, i) in order {
        if is_space {
            space_doc
                .apply_changes([s.space_changes[i].clone()])
                .expect("apply");
        } else {
            record_held.push(s.record_changes[i].clone());
        }
        let membership = evaluate_space(space_doc.document(), s.id);
        let Some(view) = membership.view else {
            continue;
        };
        let mut doc = AutoCommit::new();
        doc.apply_changes(record_held.iter().cloned())
            .expect("apply");
        let metas: Vec<ChangeMeta> = doc.get_changes(&[]).iter().map(ChangeMeta::of).collect();
        let verdicts = judge_record(&metas, &view, s.record);
        let heads = accepted_heads(&metas, &verdicts);
        let kept = doc.fork_at(&heads).expect("fork");
        let values =
            serde_json::to_string(&rapport_model::automerge::AutoSerde::from(&kept)).expect("json");
        let mut sorted: Vec<(Hash, Verdict)> = metas.iter().map(|m| m.hash).zip(verdicts).collect();
        sorted.sort_by_key(|(h, _)| *h);
        last = (heads, sorted.into_iter().map(|(_, v)| v).collect(), values);
    }
    last
}

#[test]
fn removal_concurrent_with_the_removed_devices_edits_converges_in_every_order() {
    let seeds = std::env::var("RAPPORT_POLICY_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30u64);
    for seed in 1..=seeds {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let s = scenario(&mut rng);
        let mut all: Vec<(bool, usize)> = (0..s.space_changes.len())
            .map(|i| (true, i))
            .chain((0..s.record_changes.len()).map(|i| (false, i)))
            .collect();
        let mut outcomes = Vec::new();
        for _ in 0..8 {
            rng.shuffle(&mut all);
            outcomes.push(deliver(&s, &all));
        }
        let first = &outcomes[0];
        for o in &outcomes[1..] {
            assert_eq!(
                o, first,
                "seed {seed}: two delivery orders ended differently"
            );
        }

        // What a user would check: the removed writer's changes past what
        // the admin saw are gone unless C built on them; the reader's edit
        // never applies; A's and C's edits all apply.
        let mut doc = AutoCommit::new();
        doc.apply_changes(s.record_changes.iter().cloned())
            .expect("apply");
        let metas: Vec<ChangeMeta> = doc.get_changes(&[]).iter().map(ChangeMeta::of).collect();
        let mut by_hash: HashMap<Hash, &Verdict> = HashMap::new();
        let mut sorted: Vec<Hash> = metas.iter().map(|m| m.hash).collect();
        sorted.sort();
        for (h, v) in sorted.iter().zip(&first.1) {
            by_hash.insert(*h, v);
        }
        for m in &metas {
            let v = by_hash[&m.hash];
            let expect = if m.hash == s.reader_change {
                false
            } else if s.w_all.contains(&m.hash) {
                s.w_accepted.contains(&m.hash)
            } else {
                true
            };
            assert_eq!(
                v.is_accepted(),
                expect,
                "seed {seed}: change by {} got {v:?}",
                short(&m.author)
            );
        }
    }
}

#[test]
fn a_removed_admin_cannot_act_after_its_removal() {
    // A adds admin B, B adds writer D; A removes B while B, unaware,
    // removes D and adds E. B's late statements never take effect.
    let b = [5u8; 32];
    let d = [6u8; 32];
    let e = [7u8; 32];
    let id = new_space_id(&A, 1, [0, 2]);
    let mut doc = new_space(id);
    space::add_member(&mut doc, &member(&b, Role::Admin, &A), t()).expect("add b");
    let mut at_b = doc.fork().with_actor(ActorId::from(&b[..]));
    space::add_member(&mut at_b, &member(&d, Role::Writer, &b), t()).expect("b adds d");
    doc.merge(&mut at_b).expect("merge");
    space::remove_members(&mut doc, &[removal(&b, &A, 2)], [1; 32], t()).expect("remove b");
    let r = removal(&d, &b, 3);
    space::remove_members(&mut at_b, &[r], [2; 32], t()).expect("b removes d");
    space::add_member(&mut at_b, &member(&e, Role::Writer, &b), t()).expect("b adds e");
    doc.merge(&mut at_b).expect("merge");

    let m = evaluate_space(doc.document(), id);
    let view = m.view.expect("view");
    assert!(view.removed.contains_key(&hexs(&b)));
    assert!(
        view.is_member(&hexs(&d)),
        "D was removed by a removed admin"
    );
    assert!(!view.is_member(&hexs(&e)), "E was added by a removed admin");
    assert_eq!(
        view.topic,
        vec![1; 32],
        "the removed admin's topic is not the space's"
    );
    let held = m
        .log
        .iter()
        .filter(|s| matches!(s.verdict, Verdict::Held(_)))
        .count();
    assert_eq!(held, 2, "{:#?}", m.log);
}

#[test]
fn only_admins_change_membership_and_only_the_creator_starts_a_space() {
    let id = new_space_id(&A, 1, [0, 3]);
    let mut doc = space_with_members(id);
    // Writer W tries to add a member, and to make itself admin.
    let mut at_w = doc.fork().with_actor(ActorId::from(&W[..]));
    space::add_member(&mut at_w, &member(&[8; 32], Role::Writer, &W), t()).expect("w adds");
    doc.merge(&mut at_w).expect("merge");
    // A removes R, whom only A may remove; W may not remove C.
    let mut at_w2 = doc.fork().with_actor(ActorId::from(&W[..]));
    let r = removal(&C, &W, 2);
    space::remove_members(&mut at_w2, &[r], [3; 32], t()).expect("w removes c");
    doc.merge(&mut at_w2).expect("merge");
    let m = evaluate_space(doc.document(), id);
    let view = m.view.expect("view");
    assert!(!view.is_member(&hexs(&[8; 32])));
    assert!(view.is_member(&hexs(&C)));
    let rejected: Vec<&Statement> = m
        .log
        .iter()
        .filter(|s| matches!(s.verdict, Verdict::Rejected(_)))
        .collect();
    assert_eq!(rejected.len(), 2, "{rejected:#?}");
    assert!(format!("{:?}", rejected[0].verdict).contains("only admins"));

    // Someone else's first change for the same space id counts for nothing.
    let mut forged = space::create_space(
        ActorId::from(&W[..]),
        id,
        "Mine",
        &Identity::default(),
        [0; 32],
        t(),
    )
    .expect("forged");
    let m = evaluate_space(forged.document(), id);
    assert!(m.view.is_none());
    assert!(matches!(&m.log[0].verdict, Verdict::Rejected(r) if r.contains("creator")));
}

/// B, an admin, is removed; unaware, it adds E as admin. A reader then
/// builds on that (and on its own refused self-promotion): nothing it
/// builds on makes B's late statement count.
#[test]
fn nobody_can_revive_a_removed_admins_late_statement() {
    let b = [5u8; 32];
    let e = [7u8; 32];
    let x = [9u8; 32];
    let id = new_space_id(&A, 1, [0, 4]);
    let mut doc = new_space(id);
    space::add_member(&mut doc, &member(&b, Role::Admin, &A), t()).expect("add b");
    space::add_member(&mut doc, &member(&R, Role::Reader, &A), t()).expect("add r");
    let mut at_b = doc.fork().with_actor(ActorId::from(&b[..]));
    space::remove_members(&mut doc, &[removal(&b, &A, 2)], [1; 32], t()).expect("remove b");
    space::add_member(&mut at_b, &member(&e, Role::Admin, &b), t()).expect("b adds e");
    let mut at_r = doc.fork().with_actor(ActorId::from(&R[..]));
    space::add_member(&mut at_r, &member(&R, Role::Admin, &A), t()).ok();
    at_r.merge(&mut at_b).expect("merge");
    space::add_member(&mut at_r, &member(&x, Role::Reader, &R), t()).expect("r adds x");
    doc.merge(&mut at_r).expect("merge");
    let view = evaluate_space(doc.document(), id).view.expect("view");
    assert!(
        !view.is_member(&hexs(&e)),
        "a removed admin's late add counted"
    );
    assert!(!view.is_member(&hexs(&x)), "a reader added a member");
    assert_eq!(view.role_of(&hexs(&R)), Some(Role::Reader));

    // B, removed, re-adds R as admin from a state before R's add; R
    // builds on that. Neither counts.
    let id = new_space_id(&A, 1, [0, 5]);
    let mut doc = new_space(id);
    space::add_member(&mut doc, &member(&b, Role::Admin, &A), t()).expect("add b");
    let mut at_b = doc.fork().with_actor(ActorId::from(&b[..]));
    space::add_member(&mut doc, &member(&R, Role::Reader, &A), t()).expect("add r");
    space::remove_members(&mut doc, &[removal(&b, &A, 2)], [1; 32], t()).expect("remove b");
    space::add_member(&mut at_b, &member(&R, Role::Admin, &b), t()).expect("b adds r");
    let mut at_r = at_b.fork().with_actor(ActorId::from(&R[..]));
    space::add_member(&mut at_r, &member(&e, Role::Admin, &R), t()).expect("r adds e");
    doc.merge(&mut at_r).expect("merge");
    let view = evaluate_space(doc.document(), id).view.expect("view");
    assert!(
        !view.is_member(&hexs(&e)),
        "a reader promoted by a removed admin added a member"
    );
}

/// The removal entry of `device` that `owner` created, in `doc` now.
fn entry_of(doc: &AutoCommit, device: &[u8; 32], owner: &[u8; 32]) -> ObjId {
    let removed = match doc.get(ROOT, "removed").expect("get") {
        Some((_, id)) => id,
        None => panic!("no removed map"),
    };
    doc.get_all(&removed, hexs(device))
        .expect("get_all")
        .into_iter()
        .map(|(_, id)| id)
        .find(|id| space::entry_owner(id) == Some(&ActorId::from(&owner[..])))
        .expect("entry")
}

/// Appends one part of a cutoff to `owner`'s entry for `device`, as
/// `space::remove_members` does, written by `actor`.
fn put_part(
    doc: &mut AutoCommit,
    actor: &[u8; 32],
    device: &[u8; 32],
    owner: &[u8; 32],
    k: usize,
    entries: &[(RecordId, Hash)],
) {
    let entry = entry_of(doc, device, owner);
    let bytes: Vec<u8> = entries
        .iter()
        .flat_map(|(r, h)| r.to_bytes().into_iter().chain(h.iter().copied()))
        .collect();
    doc.set_actor(ActorId::from(&actor[..]));
    doc.put(&entry, format!("cutoff.{k}"), ScalarValue::Bytes(bytes))
        .expect("put");
}

fn cut(n: u8) -> (RecordId, Hash) {
    (RecordId::new(10 + u64::from(n), [n; 10]), [n; 32])
}

/// A (the creator) and admin B remove writer D at the same time; B's
/// entry is the one Automerge shows. A's removal counts (A is senior),
/// and so does every part of its cutoff A adds later.
#[test]
fn the_senior_removers_cutoff_parts_count_when_another_admin_removed_the_same_device() {
    let b = [5u8; 32];
    let d = [6u8; 32];
    let id = new_space_id(&A, 1, [0, 6]);
    let mut doc = new_space(id);
    space::add_member(&mut doc, &member(&b, Role::Admin, &A), t()).expect("add b");
    let mut at_b = doc.fork().with_actor(ActorId::from(&b[..]));
    space::add_member(&mut at_b, &member(&d, Role::Writer, &b), t()).expect("b adds d");
    // More operations by B, so that its entry wins Automerge's conflict.
    space::add_member(&mut at_b, &member(&[8; 32], Role::Reader, &b), t()).expect("b adds");
    doc.merge(&mut at_b).expect("merge");
    let ours = Removal {
        cutoff: vec![cut(1)],
        ..removal(&d, &A, 2)
    };
    space::remove_members(&mut doc, &[ours], [1; 32], t()).expect("a removes d");
    let theirs = Removal {
        cutoff: vec![cut(7)],
        ..removal(&d, &b, 3)
    };
    space::remove_members(&mut at_b, &[theirs], [2; 32], t()).expect("b removes d");
    doc.merge(&mut at_b).expect("merge");
    let removed = match doc.get(ROOT, "removed").expect("get") {
        Some((_, id)) => id,
        None => panic!("no removed map"),
    };
    let (_, shown) = doc.get(&removed, hexs(&d)).expect("get").expect("entry");
    assert_eq!(
        space::entry_owner(&shown),
        Some(&ActorId::from(&b[..])),
        "the scenario needs B's entry to be the one shown"
    );
    put_part(&mut doc, &A, &d, &A, 1, &[cut(2), cut(3)]);
    doc.commit();

    let m = evaluate_space(doc.document(), id);
    let view = m.view.expect("view");
    let (_, r) = &view.removed[&hexs(&d)];
    assert_eq!(r.by, hexs(&A));
    assert_eq!(r.cutoff, vec![cut(1), cut(2), cut(3)], "{:#?}", m.log);
}

/// A removes D with a cutoff in parts; admin B, in a change that also
/// renames the space, writes a part of its own past the next missing one.
/// B's change is refused, and when A's next part fills the gap the
/// cutoff is A's alone.
#[test]
fn another_admin_cannot_write_a_part_into_someone_elses_removal() {
    let b = [5u8; 32];
    let d = [6u8; 32];
    let id = new_space_id(&A, 1, [0, 7]);
    let mut doc = new_space(id);
    space::add_member(&mut doc, &member(&b, Role::Admin, &A), t()).expect("add b");
    space::add_member(&mut doc, &member(&d, Role::Writer, &A), t()).expect("add d");
    let ours = Removal {
        cutoff: vec![cut(1)],
        ..removal(&d, &A, 2)
    };
    space::remove_members(&mut doc, &[ours], [1; 32], t()).expect("a removes d");
    put_part(&mut doc, &A, &d, &A, 1, &[cut(2)]);
    doc.commit();
    let mut at_b = doc.fork().with_actor(ActorId::from(&b[..]));
    put_part(&mut at_b, &b, &d, &A, 3, &[cut(9)]);
    at_b.put(ROOT, "name", "Renamed").expect("rename");
    at_b.commit();
    let injected = at_b.get_last_local_change().expect("change").hash().0;
    put_part(&mut doc, &A, &d, &A, 2, &[cut(3)]);
    doc.commit();
    doc.merge(&mut at_b).expect("merge");

    let m = evaluate_space(doc.document(), id);
    assert!(
        matches!(m.verdict(&injected), Some(Verdict::Rejected(_))),
        "{:#?}",
        m.log
    );
    let view = m.view.expect("view");
    assert_eq!(view.name, "Joint");
    let (_, r) = &view.removed[&hexs(&d)];
    assert_eq!(r.cutoff, vec![cut(1), cut(2), cut(3)]);
}

/// Admin B, who never saw A add X, crafts a change whose entry for X
/// replaces A's (it names A's operation as the one it supersedes). Judged
/// against the state B saw, it would be a plain addition; merged, it would
/// turn X from writer into reader, an edit the rules forbid. It is
/// refused for naming an operation its author had not seen.
#[test]
fn a_change_cannot_replace_an_entry_its_author_never_saw() {
    let b = [5u8; 32];
    let x = [6u8; 32];
    let id = new_space_id(&A, 1, [0, 8]);
    let mut doc = new_space(id);
    space::add_member(&mut doc, &member(&b, Role::Admin, &A), t()).expect("add b");
    doc.commit();
    let mut at_b = doc.fork().with_actor(ActorId::from(&b[..]));
    space::add_member(&mut doc, &member(&x, Role::Writer, &A), t()).expect("a adds x");
    doc.commit();
    let members = match doc.get(ROOT, "members").expect("get") {
        Some((_, obj)) => obj,
        None => panic!("no members"),
    };
    let a_entry = match doc.get(&members, hexs(&x)).expect("get") {
        Some((_, ObjId::Id(counter, actor, _))) => legacy::OpId(counter, actor),
        other => panic!("no entry for x: {other:?}"),
    };
    space::add_member(&mut at_b, &member(&x, Role::Reader, &b), t()).expect("b adds x");
    at_b.commit();
    let mut crafted = at_b.get_last_local_change().expect("change").decode();
    let target = hexs(&x);
    for op in &mut crafted.operations {
        if op.key == legacy::Key::Map(target.as_str().into()) {
            op.pred = vec![a_entry.clone()].into();
        }
    }
    let crafted = Change::from(crafted);
    let hash = crafted.hash().0;
    doc.apply_changes([crafted]).expect("apply");

    let m = evaluate_space(doc.document(), id);
    assert!(
        matches!(m.verdict(&hash), Some(Verdict::Rejected(_))),
        "{:#?}",
        m.log
    );
    let view = m.view.expect("view");
    assert_eq!(view.members[&hexs(&x)].role, Role::Writer);
}

fn add_field(kind: rapport_model::Kind, name: &str, ty: &str) -> SchemaChange {
    serde_json::from_value(serde_json::json!({
        "op": "add_field", "kind": kind, "name": name, "type": ty,
    }))
    .expect("statement")
}

/// Admins change the schema; a writer's or reader's statement, one
/// written under another admin's name, and an edit of an entry are
/// refused; concurrent statements of two admins both count, in the same
/// order on every node whatever order they arrived in.
#[test]
fn only_admins_change_the_schema_and_concurrent_statements_converge() {
    use rapport_model::{Kind, Schema};
    let id = new_space_id(&A, 1, [0, 4]);
    let mut doc = space_with_members(id);
    // A makes B (device 5) an admin.
    const B: [u8; 32] = [5; 32];
    space::add_member(&mut doc, &member(&B, Role::Admin, &A), t()).expect("add b");
    let mut at_a = doc.fork().with_actor(ActorId::from(&A[..]));
    let mut at_b = doc.fork().with_actor(ActorId::from(&B[..]));
    let mut at_r = doc.fork().with_actor(ActorId::from(&R[..]));
    let mut at_w = doc.fork().with_actor(ActorId::from(&W[..]));
    // Concurrently: A and B add fields (the same name with another type
    // among them), the reader and the writer try too.
    space::add_schema_change(&mut at_a, &add_field(Kind::Company, "seats", "number"), t())
        .expect("a");
    space::add_schema_change(&mut at_b, &add_field(Kind::Company, "tier", "text"), t()).expect("b");
    space::add_schema_change(&mut at_b, &add_field(Kind::Company, "seats", "text"), t())
        .expect("b2");
    space::add_schema_change(&mut at_r, &add_field(Kind::Deal, "sneaky", "text"), t()).expect("r");
    space::add_schema_change(&mut at_w, &add_field(Kind::Deal, "sneaky2", "text"), t()).expect("w");
    // Both admins add the kind `contract` at once; the writer tries one.
    let kind = |name: &str| {
        serde_json::from_value::<SchemaChange>(serde_json::json!({
            "op": "add_kind", "kind": name,
        }))
        .expect("statement")
    };
    space::add_schema_change(&mut at_a, &kind("contract"), t()).expect("a kind");
    space::add_schema_change(&mut at_b, &kind("contract"), t()).expect("b kind");
    space::add_schema_change(&mut at_w, &kind("project"), t()).expect("w kind");
    // B writes a statement under A's name.
    at_b.put(ROOT, format!("schema.{}.9", hexs(&A)), "{}")
        .expect("forge");
    at_b.commit();

    let mut orders = Vec::new();
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
        let mut merged = doc.fork();
        let mut forks = [at_a.fork(), at_b.fork(), at_r.fork(), at_w.fork()];
        for i in order {
            merged.merge(&mut forks[i]).expect("merge");
        }
        let m = evaluate_space(merged.document(), id);
        let view = m.view.expect("view");
        let refused: Vec<String> = m
            .log
            .iter()
            .filter_map(|s| match &s.verdict {
                Verdict::Rejected(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(refused.len(), 4, "{refused:#?}");
        assert!(
            refused.iter().any(|r| r.contains("its author is a reader")),
            "{refused:?}"
        );
        assert!(
            refused.iter().any(|r| r.contains("its author is a writer")),
            "{refused:?}"
        );
        assert!(
            refused.iter().any(|r| r.contains("in its own name")),
            "{refused:?}"
        );
        let schema = Schema::fold(&view.schema);
        assert!(schema.field(Kind::Company, "tier").is_some());
        assert!(schema.field(Kind::Deal, "sneaky").is_none());
        let kinds: Vec<Kind> = schema.custom_kinds().iter().map(|d| d.kind).collect();
        assert_eq!(
            kinds,
            [Kind::custom("contract").expect("name")],
            "one kind, not the writer's"
        );
        assert_eq!(
            schema.notes.len(),
            1,
            "one `seats` stands: {:?}",
            schema.notes
        );
        orders.push(
            schema
                .custom(Kind::Company)
                .iter()
                .map(|f| (f.name.clone(), f.ty))
                .collect::<Vec<_>>(),
        );
    }
    assert!(orders.windows(2).all(|w| w[0] == w[1]), "{orders:?}");

    // An admin may not edit a statement once written.
    let mut edited = doc.fork().with_actor(ActorId::from(&A[..]));
    edited.merge(&mut at_a).expect("merge");
    let key = format!("schema.{}.0", hexs(&A));
    edited
        .put(
            ROOT,
            key,
            r#"{"op":"retire","kind":"company","name":"seats"}"#,
        )
        .expect("edit");
    edited.commit();
    let m = evaluate_space(edited.document(), id);
    assert!(matches!(
        &m.log.last().expect("log").verdict,
        Verdict::Rejected(r) if r.contains("never edited")
    ));

    // Nor write one padded past the size every node accepts: it would be
    // copied by every node at every later change of the space.
    let mut padded = doc.fork().with_actor(ActorId::from(&A[..]));
    let pad = "x".repeat(rapport_model::custom::MAX_STATEMENT_BYTES);
    padded
        .put(
            ROOT,
            format!("schema.{}.0", hexs(&A)),
            format!(r#"{{"op":"retire","kind":"company","name":"seats","pad":"{pad}"}}"#),
        )
        .expect("pad");
    padded.commit();
    let m = evaluate_space(padded.document(), id);
    assert!(matches!(
        &m.log.last().expect("log").verdict,
        Verdict::Rejected(r) if r.contains("bytes (at most")
    ));
}

/// Every statement a member could write about erasures: an admin's and a
/// privacy officer's erase statements count; a writer's, a reader's, one
/// in another's name, an edit of one, one naming the space itself and
/// one without a reason are refused. Any member confirms an erasure the
/// space holds, in its own name only, once.
#[test]
fn erasures_are_judged_like_membership_and_receipts_are_each_members_own() {
    let id = new_space_id(&A, 1, [0, 9]);
    let mut doc = space_with_members(id);
    const P: [u8; 32] = [6; 32];
    space::add_member(&mut doc, &member(&P, Role::Privacy, &A), t()).expect("add officer");
    let person = rapport_model::space::new_record_id(&W, 2, [1, 1]);
    let statement = |reason: &str, ids: Vec<RecordId>| EraseStatement {
        ids,
        reason: reason.into(),
    };
    let mut at = |actor: &[u8; 32]| doc.fork().with_actor(ActorId::from(&actor[..]));
    let mut by_a = at(&A);
    let erasure =
        space::add_erasure(&mut by_a, &statement("request", vec![person]), t()).expect("a erases");
    let mut by_p = at(&P);
    space::add_erasure(&mut by_p, &statement("request 2", vec![person]), t()).expect("p");
    let mut by_w = at(&W);
    space::add_erasure(&mut by_w, &statement("sneaky", vec![person]), t()).expect("w");
    let mut by_r = at(&R);
    space::add_erasure(&mut by_r, &statement("sneaky", vec![person]), t()).expect("r");
    let mut no_reason = at(&A);
    no_reason
        .put(
            ROOT,
            format!("erase.{}.5", hexs(&A)),
            format!(r#"{{"ids":["{person}"],"reason":" "}}"#),
        )
        .expect("put");
    no_reason.commit();
    let mut the_space = at(&A);
    space::add_erasure(&mut the_space, &statement("leave", vec![id]), t()).expect("space");
    let mut forged = at(&P);
    forged
        .put(
            ROOT,
            format!("erase.{}.7", hexs(&A)),
            format!(r#"{{"ids":["{person}"],"reason":"forged"}}"#),
        )
        .expect("put");
    forged.commit();
    for (fork, why) in [
        (&mut by_w, "its author is a writer"),
        (&mut by_r, "its author is a reader"),
        (&mut no_reason, "gives no reason"),
        (&mut the_space, "a space is left"),
        (&mut forged, "in its own name"),
    ] {
        let m = evaluate_space(fork.document(), id);
        assert!(
            matches!(&m.log.last().expect("log").verdict, Verdict::Rejected(r) if r.contains(why)),
            "{why}: {:?}",
            m.log.last()
        );
        assert!(m.view.expect("view").erasures.is_empty());
    }
    // A field-level erasure (rebase) is an eraser's too.
    let rebase = rapport_model::space::RebaseStatement {
        record: person,
        chain: vec!["ab".repeat(32)],
        fields: vec!["phones".into()],
        reason: "former number".into(),
    };
    let mut rebase_by_w = at(&W);
    space::add_rebase(&mut rebase_by_w, &rebase, t()).expect("w rebase");
    let m = evaluate_space(rebase_by_w.document(), id);
    assert!(
        matches!(&m.log.last().expect("log").verdict, Verdict::Rejected(r) if r.contains("its author is a writer")),
        "{:?}",
        m.log.last()
    );
    // A privacy officer erases records, but rebuilding one's history
    // rewrites what it says: an admin's only.
    let mut rebase_by_p = at(&P);
    space::add_rebase(&mut rebase_by_p, &rebase, t()).expect("p rebase");
    let m = evaluate_space(rebase_by_p.document(), id);
    assert!(
        matches!(&m.log.last().expect("log").verdict, Verdict::Rejected(r) if r.contains("only admins erase a field")),
        "{:?}",
        m.log.last()
    );
    let mut rebase_by_a = at(&A);
    space::add_rebase(&mut rebase_by_a, &rebase, t()).expect("a rebase");
    let view = evaluate_space(rebase_by_a.document(), id)
        .view
        .expect("view");
    assert_eq!(view.rebase_of(person).map(|r| r.chain.len()), Some(1));
    let mut merged = doc.fork();
    merged.merge(&mut by_a).expect("merge");
    merged.merge(&mut by_p).expect("merge");
    let view = evaluate_space(merged.document(), id).view.expect("view");
    assert_eq!(view.erasures.len(), 2);
    assert_eq!(
        view.erasure_of(person).map(|e| e.ids.clone()),
        Some(vec![person])
    );

    // Receipts: the reader confirms; the writer may not confirm in the
    // reader's name, nor confirm an erasure the space does not hold, nor
    // edit a receipt.
    let mut by_reader = merged.fork().with_actor(ActorId::from(&R[..]));
    space::add_receipt(&mut by_reader, &erasure, t()).expect("receipt");
    let view = evaluate_space(by_reader.document(), id).view.expect("view");
    assert!(view.receipts[&erasure].contains_key(&hexs(&R)));
    let mut in_anothers_name = merged.fork().with_actor(ActorId::from(&W[..]));
    in_anothers_name
        .put(
            ROOT,
            format!("receipt.{}.{erasure}", hexs(&R)),
            ScalarValue::Timestamp(1),
        )
        .expect("put");
    in_anothers_name.commit();
    let mut unknown = merged.fork().with_actor(ActorId::from(&W[..]));
    space::add_receipt(&mut unknown, &format!("{}.9", hexs(&A)), t()).expect("receipt");
    let mut edited = by_reader.fork().with_actor(ActorId::from(&R[..]));
    edited
        .put(
            ROOT,
            format!("receipt.{}.{erasure}", hexs(&R)),
            ScalarValue::Timestamp(5),
        )
        .expect("put");
    edited.commit();
    for (fork, why) in [
        (&mut in_anothers_name, "in its own name"),
        (&mut unknown, "does not hold"),
        (&mut edited, "never edited"),
    ] {
        let m = evaluate_space(fork.document(), id);
        assert!(
            matches!(&m.log.last().expect("log").verdict, Verdict::Rejected(r) if r.contains(why)),
            "{why}: {:?}",
            m.log.last()
        );
    }
}
