//! Whole sessions between in-memory replicas, driven message by message.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::*;

/// A replica whose documents are grow-only sets of opaque changes; a
/// document's heads are its change set. Enough to check that sessions find
/// every difference and move exactly the missing changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Mem {
    docs: BTreeMap<RecordId, BTreeSet<Hash>>,
    member: bool,
    /// Address announcements it passes on, and those it was passed.
    addrs: Vec<Vec<u8>>,
    learned: Vec<Vec<u8>>,
}

impl Replica for Mem {
    fn items(&self, _: SpaceId) -> Result<ItemSet, String> {
        Ok(ItemSet::collect(self.docs.iter().map(|(r, c)| {
            let heads: Vec<Hash> = c.iter().copied().collect();
            SyncItem::new(r.to_bytes(), &heads)
        })))
    }
    fn heads(&self, _: SpaceId, r: RecordId) -> Result<Option<Vec<Hash>>, String> {
        Ok(self.docs.get(&r).map(|c| c.iter().copied().collect()))
    }
    fn changes_for(&self, _: SpaceId, r: RecordId, peer: &[Hash]) -> Result<Vec<Vec<u8>>, String> {
        Ok(self
            .docs
            .get(&r)
            .map(|c| {
                c.iter()
                    .filter(|h| !peer.contains(h))
                    .map(|h| h.to_vec())
                    .collect()
            })
            .unwrap_or_default())
    }
    fn changes_if_known(
        &self,
        s: SpaceId,
        r: RecordId,
        peer: &[Hash],
    ) -> Result<Option<Vec<Vec<u8>>>, String> {
        let known = |h: &Hash| self.docs.get(&r).is_some_and(|c| c.contains(h));
        if !peer.iter().all(known) {
            return Ok(None);
        }
        self.changes_for(s, r, peer).map(Some)
    }
    fn apply(&mut self, _: SpaceId, r: RecordId, changes: Vec<Vec<u8>>) -> Result<(), String> {
        let doc = self.docs.entry(r).or_default();
        for c in changes {
            doc.insert(c.try_into().map_err(|_| "bad change".to_string())?);
        }
        Ok(())
    }
    fn may_sync(&self, _: SpaceId) -> bool {
        self.member
    }
    fn addresses(&self, _: SpaceId) -> Result<Vec<Vec<u8>>, String> {
        Ok(self.addrs.clone())
    }
    fn learn_addresses(&mut self, _: SpaceId, signed: Vec<Vec<u8>>) -> Result<(), String> {
        self.learned.extend(signed);
        Ok(())
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn hash(&mut self) -> Hash {
        let mut h = [0u8; 32];
        for chunk in h.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        h
    }
}

fn space() -> SpaceId {
    SpaceId::Shared(RecordId::new(1, [1; 10]))
}

fn replica(n: usize, rng: &mut Rng) -> Mem {
    let mut m = Mem {
        member: true,
        ..Default::default()
    };
    for i in 0..n {
        m.docs.insert(
            RecordId::new(1_000 + i as u64, [i as u8; 10]),
            [rng.hash()].into(),
        );
    }
    m
}

/// Runs a whole session; returns (messages, bytes) exchanged.
fn session(a: &mut Mem, b: &mut Mem) -> Result<(usize, usize), SyncError> {
    run_in_memory(space(), a, b).map(|t| (t.messages, t.bytes))
}

#[test]
fn identical_spaces_cost_one_round_trip_and_few_bytes() {
    let mut rng = Rng(1);
    let mut a = replica(10_000, &mut rng);
    let mut b = a.clone();
    let (messages, bytes) = session(&mut a, &mut b).expect("session");
    // Open + Reconcile, the reply, Done.
    assert_eq!(messages, 4);
    assert!(bytes < 400, "{bytes} bytes for identical spaces");
}

#[test]
fn sessions_converge_and_cost_grows_with_the_difference_not_the_size() {
    for seed in 0..20u64 {
        let mut rng = Rng(seed);
        let base = replica(2_000 + (seed as usize * 97) % 3_000, &mut rng);
        let (mut a, mut b) = (base.clone(), base.clone());
        let keys: Vec<RecordId> = base.docs.keys().copied().collect();
        let changed = 1 + (rng.next() % 20) as usize;
        for _ in 0..changed {
            let r = keys[(rng.next() % keys.len() as u64) as usize];
            let side = if rng.next().is_multiple_of(2) {
                &mut a
            } else {
                &mut b
            };
            side.docs.get_mut(&r).expect("doc").insert(rng.hash());
        }
        // New documents on each side, too.
        a.docs.insert(
            RecordId::new(9_000_000, [seed as u8; 10]),
            [rng.hash()].into(),
        );
        b.docs.insert(
            RecordId::new(9_000_001, [seed as u8; 10]),
            [rng.hash()].into(),
        );
        let (messages, bytes) =
            session(&mut a, &mut b).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(a, b, "seed {seed}: replicas differ after the session");
        assert!(messages <= 16, "seed {seed}: {messages} messages");
        assert!(
            bytes < 40_000,
            "seed {seed}: {bytes} bytes for {changed} changes"
        );
    }
}

#[test]
fn a_peer_that_may_not_sync_gets_nothing() {
    let mut rng = Rng(3);
    let mut a = replica(10, &mut rng);
    let mut b = replica(10, &mut rng);
    b.member = false;
    let before = a.clone();
    let err = session(&mut a, &mut b).expect_err("refused");
    assert!(matches!(err, SyncError::Refused(_)), "{err}");
    assert_eq!(a, before);
}

#[test]
fn out_of_order_messages_are_protocol_errors_not_panics() {
    let mut rng = Rng(4);
    let mut a = replica(5, &mut rng);
    let mut r = Responder::new();
    let err = r
        .handle(SyncMessage::Reconcile(vec![0x61]), &mut a)
        .expect_err("no open");
    assert!(matches!(err, SyncError::Protocol(_)));
    let mut r = Responder::new();
    r.handle(SyncMessage::Open { space: [1; 16] }, &mut a)
        .expect("open");
    assert!(
        r.handle(SyncMessage::Reconcile(b"\x01garbage".to_vec()), &mut a)
            .is_err()
    );
    let (mut i, _) = Initiator::start(space(), &a).expect("start");
    assert!(i.handle(SyncMessage::Changes(vec![]), &mut a).is_err());
}

#[test]
fn the_private_space_is_never_synced() {
    let a = Mem::default();
    assert!(Initiator::start(SpaceId::Private, &a).is_err());
}

#[test]
fn large_differences_travel_in_several_messages() {
    let mut rng = Rng(9);
    let mut a = replica(25_000, &mut rng);
    let mut b = Mem {
        member: true,
        ..Default::default()
    };
    let (messages, _) = session(&mut a, &mut b).expect("session");
    assert_eq!(a, b);
    assert!(messages > 8, "{messages} messages for 25k documents");
}

/// Regression: the initiator once sent every `Heads` chunk at once; over
/// QUIC, both sides then wrote large messages together and a 100k-record
/// initial sync deadlocked on full flow-control windows.
#[test]
fn at_most_one_heads_message_is_in_flight() {
    let mut rng = Rng(11);
    let mut a = Mem {
        member: true,
        ..Default::default()
    };
    let mut b = replica(3 * HEADS_PER_MESSAGE + 5, &mut rng);
    let (mut init, first) = Initiator::start(space(), &a).expect("start");
    let mut resp = Responder::new();
    let mut in_flight = 0usize;
    for m in first {
        resp.handle(m, &mut b).expect("responder");
    }
    loop {
        let mut moved = false;
        while let Some(m) = resp.poll_send(&b).expect("responder") {
            if matches!(m, SyncMessage::Heads(_)) {
                in_flight -= 1;
            }
            init.handle(m, &mut a).expect("initiator");
            moved = true;
        }
        while let Some(m) = init.poll_send(&a).expect("initiator") {
            if matches!(m, SyncMessage::Heads(_)) {
                in_flight += 1;
                assert!(in_flight <= 1, "two Heads messages in flight");
            }
            resp.handle(m, &mut b).expect("responder");
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(init.is_finished() && resp.is_finished());
    assert_eq!(a, b);
}

/// A replica whose documents are linear histories of opaque changes, in
/// the order they must be applied; it counts what a session asks of it.
#[derive(Debug, Default)]
struct Chain {
    docs: BTreeMap<RecordId, Vec<Vec<u8>>>,
    heads_calls: std::cell::Cell<usize>,
    changes_calls: std::cell::Cell<usize>,
    /// Bytes handed out by `changes_for` so far.
    bytes_out: std::cell::Cell<usize>,
}

fn digest(change: &[u8]) -> Hash {
    Sha256::digest(change).into()
}

impl Chain {
    fn with(docs: impl IntoIterator<Item = (RecordId, Vec<Vec<u8>>)>) -> Self {
        Chain {
            docs: docs.into_iter().collect(),
            ..Default::default()
        }
    }
    fn calls(&self) -> usize {
        self.heads_calls.get() + self.changes_calls.get()
    }
}

/// Change `i` of a history: its index, then filler up to `len` bytes.
fn change(record: u8, i: usize, len: usize) -> Vec<u8> {
    let mut c = vec![record; len.max(9)];
    c[..8].copy_from_slice(&(i as u64).to_le_bytes());
    c
}

impl Replica for Chain {
    fn items(&self, _: SpaceId) -> Result<ItemSet, String> {
        Ok(ItemSet::collect(self.docs.iter().map(|(r, c)| {
            let heads: Vec<Hash> = c.last().map(|l| digest(l)).into_iter().collect();
            SyncItem::new(r.to_bytes(), &heads)
        })))
    }
    fn heads(&self, _: SpaceId, r: RecordId) -> Result<Option<Vec<Hash>>, String> {
        self.heads_calls.set(self.heads_calls.get() + 1);
        Ok(self
            .docs
            .get(&r)
            .map(|c| c.last().map(|l| digest(l)).into_iter().collect()))
    }
    fn changes_for(&self, _: SpaceId, r: RecordId, peer: &[Hash]) -> Result<Vec<Vec<u8>>, String> {
        self.changes_calls.set(self.changes_calls.get() + 1);
        let Some(doc) = self.docs.get(&r) else {
            return Ok(Vec::new());
        };
        let from = doc
            .iter()
            .rposition(|c| peer.contains(&digest(c)))
            .map_or(0, |i| i + 1);
        let out = doc[from..].to_vec();
        self.bytes_out
            .set(self.bytes_out.get() + out.iter().map(Vec::len).sum::<usize>());
        Ok(out)
    }
    fn changes_if_known(
        &self,
        s: SpaceId,
        r: RecordId,
        peer: &[Hash],
    ) -> Result<Option<Vec<Vec<u8>>>, String> {
        let doc = self.docs.get(&r).map(Vec::as_slice).unwrap_or_default();
        if !peer.iter().all(|h| doc.iter().any(|c| digest(c) == *h)) {
            return Ok(None);
        }
        self.changes_for(s, r, peer).map(Some)
    }
    fn apply(&mut self, _: SpaceId, r: RecordId, changes: Vec<Vec<u8>>) -> Result<(), String> {
        let doc = self.docs.entry(r).or_default();
        for c in changes {
            // Out of order would be a dependency missing here.
            let i = u64::from_le_bytes(c[..8].try_into().map_err(|_| "short change")?) as usize;
            if i < doc.len() {
                continue;
            }
            if i != doc.len() {
                return Err(format!("change {i} arrived before change {}", doc.len()));
            }
            doc.push(c);
        }
        Ok(())
    }
    fn may_sync(&self, _: SpaceId) -> bool {
        true
    }
}

fn rid(n: u64) -> RecordId {
    RecordId::new(1_000 + n, [n as u8; 10])
}

fn heads_of(records: impl IntoIterator<Item = RecordId>) -> SyncMessage {
    SyncMessage::Heads(
        records
            .into_iter()
            .map(|r| RecordHeads {
                record: r.to_bytes(),
                heads: vec![],
            })
            .collect(),
    )
}

/// A responder past `Open`, as a peer may drive it.
fn opened(replica: &mut Chain) -> Responder {
    let mut r = Responder::new();
    r.handle(
        SyncMessage::Open {
            space: space_wire(space()).expect("shared"),
        },
        replica,
    )
    .expect("open");
    r
}

/// Everything a side has to send now.
fn drain(pull: impl FnMut() -> Result<Option<SyncMessage>, SyncError>) -> Vec<SyncMessage> {
    let mut pull = pull;
    std::iter::from_fn(|| pull().expect("poll_send")).collect()
}

/// Regression: one 4 MiB frame could name the same record ~246k times,
/// and the responder answered each (two replica calls apiece, the whole
/// reply built in memory).
#[test]
fn a_heads_frame_naming_one_record_200k_times_is_refused_before_any_work() {
    let mut b = Chain::with([(rid(1), vec![change(1, 0, 100)])]);
    let mut r = opened(&mut b);
    let msg = heads_of(std::iter::repeat_n(rid(1), 200_000));
    let frame = rapport_proto::wire::encode_frame(&msg).expect("fits one frame");
    let msg = rapport_proto::wire::decode(&frame[4..]).expect("decodes");
    let err = r.handle(msg, &mut b).expect_err("refused");
    assert!(matches!(err, SyncError::Protocol(_)), "{err}");
    assert_eq!(b.calls(), 0, "replica calls for a refused request");
}

#[test]
fn a_record_named_twice_in_a_session_is_refused() {
    // In one message.
    let mut b = Chain::with([(rid(1), vec![change(1, 0, 100)])]);
    let mut r = opened(&mut b);
    let err = r
        .handle(heads_of([rid(1), rid(2), rid(1)]), &mut b)
        .expect_err("refused");
    assert!(matches!(err, SyncError::Protocol(_)), "{err}");
    assert_eq!(b.calls(), 0);
    // In three messages of one session: the second starts the second
    // pass, the third would be a third.
    let mut r = opened(&mut b);
    r.handle(heads_of([rid(1)]), &mut b).expect("first time");
    let sent = drain(|| r.poll_send(&b));
    assert!(matches!(sent.last(), Some(SyncMessage::Heads(h)) if h.len() == 1));
    r.handle(heads_of([rid(1)]), &mut b)
        .expect("second time: the second pass");
    drain(|| r.poll_send(&b));
    let calls = b.calls();
    let err = r
        .handle(heads_of([rid(1)]), &mut b)
        .expect_err("third time");
    assert!(matches!(err, SyncError::Protocol(_)), "{err}");
    assert_eq!(b.calls(), calls);
}

#[test]
fn heads_equal_to_the_responders_own_are_refused_as_not_differing() {
    // A few (a record that a gossip message brought up to date since
    // reconciliation) get an empty answer; naming more ends the session.
    let docs: Vec<(RecordId, Vec<Vec<u8>>)> = (0..=MAX_UNCHANGED_PER_SESSION as u64)
        .map(|n| (RecordId::new(n, [0; 10]), vec![change(n as u8, 0, 100)]))
        .collect();
    let mut b = Chain::with(docs.iter().cloned());
    let mut r = opened(&mut b);
    let same = |range: std::ops::Range<usize>| first_heads(&docs[range]);
    r.handle(same(0..MAX_UNCHANGED_PER_SESSION), &mut b)
        .expect("well-formed");
    let answer = drain(|| r.poll_send(&b));
    assert!(
        answer.iter().all(|m| !matches!(m, SyncMessage::Changes(_))),
        "{answer:?}"
    );
    r.handle(same(MAX_UNCHANGED_PER_SESSION..docs.len()), &mut b)
        .expect("well-formed");
    let err = r.poll_send(&b).expect_err("not differing");
    assert!(matches!(err, SyncError::Protocol(_)), "{err}");
    assert_eq!(b.changes_calls.get(), 0);
}

#[test]
fn a_session_may_name_at_most_the_cap_of_records() {
    let mut b = Chain::default();
    let mut r = opened(&mut b);
    let mut next = 0u64;
    let mut chunk = || {
        let m =
            heads_of((next..next + HEADS_PER_MESSAGE as u64).map(|n| RecordId::new(n, [0; 10])));
        next += HEADS_PER_MESSAGE as u64;
        m
    };
    let err = r
        .handle(
            heads_of((0..=HEADS_PER_MESSAGE as u64).map(|n| RecordId::new(n, [0; 10]))),
            &mut b,
        )
        .expect_err("over the per-message cap");
    assert!(matches!(err, SyncError::Protocol(_)), "{err}");
    for _ in 0..MAX_RECORDS_PER_SESSION / HEADS_PER_MESSAGE {
        r.handle(chunk(), &mut b).expect("under the cap");
        drain(|| r.poll_send(&b));
    }
    let calls = b.calls();
    // Records named again, in the second pass, count too.
    let again = heads_of((0..HEADS_PER_MESSAGE as u64).map(|n| RecordId::new(n, [0; 10])));
    let err = r.handle(again, &mut b).expect_err("over the session cap");
    assert!(matches!(err, SyncError::Protocol(_)), "{err}");
    let err = r.handle(chunk(), &mut b).expect_err("over the session cap");
    assert!(matches!(err, SyncError::Protocol(_)), "{err}");
    assert_eq!(b.calls(), calls);
    assert!(calls <= MAX_RECORDS_PER_SESSION, "{calls} replica calls");
}

#[test]
fn an_answer_naming_other_records_than_asked_is_refused() {
    let docs = (0..3).map(|n| (rid(n), vec![change(n as u8, 0, 10)]));
    let b = Chain::with(docs);
    for answer in [
        vec![rid(0), rid(1), rid(2), rid(2)],
        vec![rid(0), rid(1)],
        vec![rid(0), rid(2), rid(1)],
        vec![rid(0), rid(1), rid(7)],
    ] {
        let mut a = Chain::default();
        let (mut init, first) = Initiator::start(space(), &a).expect("start");
        let mut resp = Responder::new();
        let mut bb = Chain::with(b.docs.clone());
        for m in first {
            resp.handle(m, &mut bb).expect("responder");
        }
        // Reconcile until the initiator names the records.
        loop {
            let m = resp.poll_send(&bb).expect("responder").expect("reply");
            init.handle(m, &mut a).expect("initiator");
            let m = init.poll_send(&a).expect("initiator").expect("next");
            if let SyncMessage::Heads(asked) = &m {
                assert_eq!(asked.len(), 3);
                break;
            }
            resp.handle(m, &mut bb).expect("responder");
        }
        let changes_for_unasked = SyncMessage::Changes(vec![RecordChanges {
            record: rid(9).to_bytes(),
            changes: vec![change(9, 0, 10)],
        }]);
        assert!(init.handle(changes_for_unasked, &mut a).is_err());
        let err = init
            .handle(heads_of(answer.clone()), &mut a)
            .expect_err("wrong answer");
        assert!(matches!(err, SyncError::Protocol(_)), "{answer:?}: {err}");
        assert!(a.docs.is_empty());
    }
}

/// Regression: the responder built the changes of every record named in a
/// request at once (and the initiator every change of the answer).
#[test]
fn a_session_over_many_records_holds_one_batch_and_one_history_at_most() {
    const RECORD: usize = 10 * 10_000;
    let docs = (0..400u64).map(|n| {
        (
            rid(n),
            (0..10).map(|i| change(n as u8, i, 10_000)).collect(),
        )
    });
    // Each side lacks what the other has.
    let mut a = Chain::with(docs.clone().filter(|(r, _)| *r < rid(200)));
    let mut b = Chain::with(docs.filter(|(r, _)| *r >= rid(200)));
    let (mut init, first) = Initiator::start(space(), &a).expect("start");
    let mut resp = Responder::new();
    for m in first {
        resp.handle(m, &mut b).expect("responder");
    }
    let sent = |m: &SyncMessage| match m {
        SyncMessage::Changes(c) => c.iter().flat_map(|r| &r.changes).map(Vec::len).sum(),
        _ => 0,
    };
    let (mut from_a, mut from_b, mut peak) = (0, 0, 0);
    loop {
        let mut moved = false;
        while let Some(m) = resp.poll_send(&b).expect("responder") {
            peak = peak.max(b.bytes_out.get() - from_b);
            from_b += sent(&m);
            init.handle(m, &mut a).expect("initiator");
            moved = true;
        }
        while let Some(m) = init.poll_send(&a).expect("initiator") {
            peak = peak.max(a.bytes_out.get() - from_a);
            from_a += sent(&m);
            resp.handle(m, &mut b).expect("responder");
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(init.is_finished() && resp.is_finished());
    assert_eq!(a.docs, b.docs);
    assert_eq!(a.docs.len(), 400);
    assert!(
        peak <= CHANGES_BATCH_BYTES + RECORD,
        "held {peak} bytes of changes at once"
    );
}

/// Regression: a record's changes always travelled in one message, so a
/// history over the 4 MiB frame could never reach a new member.
#[test]
fn a_record_with_5_mib_of_history_reaches_a_new_member_in_frames_under_the_limit() {
    let history: Vec<Vec<u8>> = (0..50).map(|i| change(1, i, 100 << 10)).collect();
    let mut a = Chain::default();
    let mut b = Chain::with([(rid(1), history.clone())]);
    let traffic = run_in_memory(space(), &mut a, &mut b).expect("session");
    assert_eq!(a.docs.get(&rid(1)), Some(&history));
    assert!(
        traffic.largest <= rapport_proto::wire::MAX_FRAME,
        "{traffic:?}"
    );
    // And the other way round (the initiator's own history).
    let mut c = Chain::default();
    run_in_memory(space(), &mut b, &mut c).expect("session");
    assert_eq!(c.docs.get(&rid(1)), Some(&history));
}

#[test]
fn one_change_near_the_size_limit_travels_alone() {
    let history = vec![
        change(1, 0, 10),
        change(1, 1, MAX_CHANGE_BYTES),
        change(1, 2, MAX_CHANGE_BYTES),
        change(1, 3, 10),
    ];
    let mut a = Chain::default();
    let mut b = Chain::with([(rid(1), history.clone())]);
    let traffic = run_in_memory(space(), &mut a, &mut b).expect("session");
    assert_eq!(a.docs.get(&rid(1)), Some(&history));
    assert!(traffic.largest < MAX_CHANGE_BYTES + 1024, "{traffic:?}");
}

#[test]
fn members_pass_each_other_their_addresses_once_per_session() {
    let mut rng = Rng(7);
    let mut a = replica(50, &mut rng);
    let mut b = a.clone();
    a.addrs = vec![b"a's own".to_vec(), b"c's, relayed by a".to_vec()];
    b.addrs = vec![b"b's own".to_vec()];
    session(&mut a, &mut b).expect("session");
    assert_eq!(a.learned, [b"b's own".to_vec()]);
    assert_eq!(b.learned, a.addrs);
}

#[test]
fn a_refused_peer_is_told_no_addresses() {
    let mut rng = Rng(8);
    let mut a = replica(5, &mut rng);
    let mut b = a.clone();
    b.member = false;
    b.addrs = vec![b"b's own".to_vec()];
    assert!(matches!(
        session(&mut a, &mut b),
        Err(SyncError::Refused(_))
    ));
    assert!(a.learned.is_empty(), "a non-member learned {:?}", a.learned);
}

#[test]
fn a_second_or_oversized_addresses_message_ends_the_session() {
    let mut rng = Rng(9);
    let mut responder_side = replica(5, &mut rng);
    let open = SyncMessage::Open {
        space: space_wire(space()).expect("shared"),
    };
    let mut r = Responder::new();
    r.handle(open.clone(), &mut responder_side).expect("open");
    r.handle(SyncMessage::Addresses(vec![vec![1]]), &mut responder_side)
        .expect("first");
    assert!(matches!(
        r.handle(SyncMessage::Addresses(vec![vec![2]]), &mut responder_side),
        Err(SyncError::Protocol(_))
    ));
    let mut r = Responder::new();
    r.handle(open, &mut responder_side).expect("open");
    let flood = vec![vec![0u8]; MAX_ADDRESS_ENTRIES + 1];
    assert!(matches!(
        r.handle(SyncMessage::Addresses(flood), &mut responder_side),
        Err(SyncError::Protocol(_))
    ));
    // Before Open nothing is learned.
    let mut r = Responder::new();
    assert!(
        r.handle(SyncMessage::Addresses(vec![vec![3]]), &mut responder_side)
            .is_err()
    );
    assert_eq!(responder_side.learned, [vec![1u8]]);
}

/// A replica whose documents are histories that may branch: each change
/// names the changes it depends on, like an Automerge change, and a
/// document keeps its changes in an order they apply in. Enough to see
/// what a session moves when both sides edited a record.
#[derive(Debug, Clone, Default)]
struct Dag {
    docs: BTreeMap<RecordId, Vec<Vec<u8>>>,
    /// Changes it does not take (as a node refuses one, or keeps it
    /// waiting).
    refuse: BTreeSet<Hash>,
    /// Tells its edits apart from another replica's.
    tag: u8,
    edits: u64,
}

/// A change of a [`Dag`]: how many dependencies, their hashes, then a
/// nonce and filler up to 200 bytes.
fn dag_change(deps: &[Hash], tag: u8, nonce: u64) -> Vec<u8> {
    let mut c = vec![deps.len() as u8];
    for d in deps {
        c.extend_from_slice(d);
    }
    c.push(tag);
    c.extend_from_slice(&nonce.to_le_bytes());
    c.resize(c.len().max(200), tag);
    c
}

fn deps_of(change: &[u8]) -> Vec<Hash> {
    change[1..1 + 32 * change[0] as usize]
        .chunks(32)
        .map(|d| d.try_into().expect("32 bytes"))
        .collect()
}

impl Dag {
    fn doc(&self, r: RecordId) -> &[Vec<u8>] {
        self.docs.get(&r).map(Vec::as_slice).unwrap_or_default()
    }
    fn holds(&self, r: RecordId, h: &Hash) -> bool {
        self.doc(r).iter().any(|c| digest(c) == *h)
    }
    fn doc_heads(&self, r: RecordId) -> Vec<Hash> {
        let doc = self.doc(r);
        let below: BTreeSet<Hash> = doc.iter().flat_map(|c| deps_of(c)).collect();
        let mut heads: Vec<Hash> = doc
            .iter()
            .map(|c| digest(c))
            .filter(|h| !below.contains(h))
            .collect();
        heads.sort();
        heads
    }
    /// `n` changes to `r`, each on top of the last.
    fn edit(&mut self, r: RecordId, n: usize) {
        for _ in 0..n {
            self.edits += 1;
            let c = dag_change(&self.doc_heads(r), self.tag, self.edits);
            self.docs.entry(r).or_default().push(c);
        }
    }
    /// The hashes of the document's changes, in any order.
    fn set(&self, r: RecordId) -> BTreeSet<Hash> {
        self.doc(r).iter().map(|c| digest(c)).collect()
    }
    /// Hashes of `r` at or below any of `from`.
    fn below(&self, r: RecordId, from: &[Hash]) -> BTreeSet<Hash> {
        let by_hash: BTreeMap<Hash, &Vec<u8>> =
            self.doc(r).iter().map(|c| (digest(c), c)).collect();
        let mut seen = BTreeSet::new();
        let mut stack: Vec<Hash> = from.to_vec();
        while let Some(h) = stack.pop() {
            if let Some(c) = by_hash.get(&h)
                && seen.insert(h)
            {
                stack.extend(deps_of(c));
            }
        }
        seen
    }
}

impl Replica for Dag {
    fn items(&self, _: SpaceId) -> Result<ItemSet, String> {
        Ok(ItemSet::collect(
            self.docs
                .keys()
                .map(|r| SyncItem::new(r.to_bytes(), &self.doc_heads(*r))),
        ))
    }
    fn heads(&self, _: SpaceId, r: RecordId) -> Result<Option<Vec<Hash>>, String> {
        Ok(self.docs.contains_key(&r).then(|| self.doc_heads(r)))
    }
    fn changes_for(&self, _: SpaceId, r: RecordId, peer: &[Hash]) -> Result<Vec<Vec<u8>>, String> {
        let below = self.below(r, peer);
        Ok(self
            .doc(r)
            .iter()
            .filter(|c| !below.contains(&digest(c)))
            .cloned()
            .collect())
    }
    fn changes_if_known(
        &self,
        s: SpaceId,
        r: RecordId,
        peer: &[Hash],
    ) -> Result<Option<Vec<Vec<u8>>>, String> {
        if !peer.iter().all(|h| self.holds(r, h)) {
            return Ok(None);
        }
        self.changes_for(s, r, peer).map(Some)
    }
    /// As the node does.
    fn heads_and_ancestors(&self, s: SpaceId, r: RecordId) -> Result<Option<Vec<Hash>>, String> {
        let Some(mut out) = self.heads(s, r)? else {
            return Ok(None);
        };
        let history: Vec<(Hash, Vec<Hash>)> = self
            .doc(r)
            .iter()
            .map(|c| (digest(c), deps_of(c)))
            .collect();
        for h in ancestors_by_doubling(&history) {
            if !out.contains(&h) {
                out.push(h);
            }
        }
        Ok(Some(out))
    }
    fn apply(&mut self, _: SpaceId, r: RecordId, changes: Vec<Vec<u8>>) -> Result<(), String> {
        for c in changes {
            let h = digest(&c);
            if self.holds(r, &h) || self.refuse.contains(&h) {
                continue;
            }
            if deps_of(&c).iter().all(|d| self.holds(r, d)) {
                self.docs.entry(r).or_default().push(c);
            }
        }
        Ok(())
    }
    fn may_sync(&self, _: SpaceId) -> bool {
        true
    }
}

/// Two replicas holding the same records: one with a history of 50
/// changes (10 KB), and a few with short ones.
fn shared_history() -> (Dag, Dag) {
    let mut base = Dag::default();
    base.edit(rid(1), 50);
    for n in 2..6 {
        base.edit(rid(n), 3);
    }
    let mut b = base.clone();
    b.tag = 1;
    (base, b)
}

/// Regression: a responder that did not know the initiator's heads (the
/// initiator had edited the record) sent the record's whole history, and
/// so did an initiator that did not know the responder's: 50 changes for
/// one, and 10-14 KB of relay traffic per change in the relay benchmark.
#[test]
fn an_edit_on_top_of_a_long_history_moves_only_the_edit() {
    for (on_initiator, on_responder) in [(1, 0), (0, 1), (3, 0), (0, 3)] {
        let (mut a, mut b) = shared_history();
        a.edit(rid(1), on_initiator);
        b.edit(rid(1), on_responder);
        let t = run_in_memory(space(), &mut a, &mut b).expect("session");
        let case = format!("{on_initiator} on the initiator, {on_responder} on the responder");
        assert_eq!(a.set(rid(1)), b.set(rid(1)), "{case}");
        assert_eq!(t.initiator.changes_sent, on_initiator, "{case}: {t:?}");
        assert_eq!(t.responder.changes_sent, on_responder, "{case}: {t:?}");
        assert_eq!(t.initiator.named_twice, 0, "{case}");
        let moved = 220 * (on_initiator + on_responder);
        assert!(t.bytes < 700 + moved, "{case}: {} bytes", t.bytes);
    }
}

#[test]
fn concurrent_edits_converge_in_one_session_moving_only_the_edits() {
    for (on_initiator, on_responder) in [(1, 1), (2, 3), (1, 20), (2, 2)] {
        let (mut a, mut b) = shared_history();
        a.edit(rid(1), on_initiator);
        b.edit(rid(1), on_responder);
        let t = run_in_memory(space(), &mut a, &mut b).expect("session");
        let case = format!("{on_initiator} on the initiator, {on_responder} on the responder");
        assert_eq!(a.set(rid(1)), b.set(rid(1)), "{case}");
        assert_eq!(a.doc_heads(rid(1)), b.doc_heads(rid(1)), "{case}");
        assert_eq!(a.doc_heads(rid(1)).len(), 2, "{case}");
        assert_eq!(t.initiator.changes_sent, on_initiator, "{case}: {t:?}");
        assert_eq!(t.responder.changes_sent, on_responder, "{case}: {t:?}");
        assert_eq!(t.initiator.named_twice, 1, "{case}");
        let moved = 220 * (on_initiator + on_responder);
        assert!(t.bytes < 1_000 + moved, "{case}: {} bytes", t.bytes);
        // Nothing is left to do.
        let again = run_in_memory(space(), &mut a, &mut b).expect("session");
        assert_eq!(again.messages, 4, "{case}");
        // From there (two heads on both sides), the other way round.
        a.edit(rid(1), on_initiator);
        b.edit(rid(1), on_responder);
        let t = run_in_memory(space(), &mut b, &mut a).expect("session");
        assert_eq!(a.set(rid(1)), b.set(rid(1)), "{case}");
        assert_eq!(
            t.initiator.changes_sent, on_responder,
            "{case}, merged: {t:?}"
        );
        if on_responder <= 2 {
            assert_eq!(
                t.responder.changes_sent, on_initiator,
                "{case}, merged: {t:?}"
            );
        } else {
            assert!(
                t.responder.changes_sent < on_initiator + on_responder,
                "{case}, merged: {t:?}"
            );
        }
    }
    // Further back, the states the initiator names are further apart:
    // what the responder sends beyond its edits is fewer than the
    // initiator's own edits.
    for (on_initiator, on_responder) in [(5, 1), (13, 2), (40, 1)] {
        let (mut a, mut b) = shared_history();
        a.edit(rid(1), on_initiator);
        b.edit(rid(1), on_responder);
        let t = run_in_memory(space(), &mut a, &mut b).expect("session");
        assert_eq!(a.set(rid(1)), b.set(rid(1)));
        assert_eq!(t.initiator.changes_sent, on_initiator, "{t:?}");
        assert!(
            t.responder.changes_sent < on_responder + on_initiator,
            "{on_initiator}/{on_responder}: {t:?}"
        );
    }
}

/// A change the responder does not take (refused, or waiting) leaves it
/// without the initiator's heads in the second pass too: it must send
/// what it has anyway, or the record would never reach the initiator.
#[test]
fn a_change_the_responder_refuses_does_not_stall_the_record() {
    let (mut a, mut b) = shared_history();
    a.edit(rid(1), 1);
    b.edit(rid(1), 2);
    b.refuse = a.doc(rid(1)).iter().map(|c| digest(c)).collect();
    let before = b.set(rid(1));
    for session in 0..3 {
        let t = run_in_memory(space(), &mut a, &mut b).expect("session");
        assert!(a.set(rid(1)).is_superset(&b.set(rid(1))), "{session}");
        assert_eq!(b.set(rid(1)), before, "{session}");
        // Then only the refused change is offered again.
        if session > 0 {
            assert_eq!(t.initiator.changes_sent, 1, "{session}: {t:?}");
            assert_eq!(t.responder.changes_sent, 0, "{session}: {t:?}");
        }
    }
    // And with the roles the other way round.
    let (mut a, mut b) = shared_history();
    a.edit(rid(1), 1);
    b.edit(rid(1), 2);
    a.refuse = b.doc(rid(1)).iter().map(|c| digest(c)).collect();
    let before = a.set(rid(1));
    run_in_memory(space(), &mut b, &mut a).expect("session");
    assert!(b.set(rid(1)).is_superset(&a.set(rid(1))));
    assert_eq!(a.set(rid(1)), before);
}

/// Regression: an initiator that could not take what the responder sent
/// (its changes refused here) sent back the record's whole history.
#[test]
fn changes_the_initiator_refuses_do_not_bring_back_the_whole_history() {
    let (mut a, mut b) = shared_history();
    b.edit(rid(1), 1);
    a.refuse = b.doc(rid(1)).iter().map(|c| digest(c)).collect();
    let t = run_in_memory(space(), &mut a, &mut b).expect("session");
    assert_eq!(t.responder.changes_sent, 1, "{t:?}");
    assert_eq!(t.initiator.changes_sent, 0, "{t:?}");
}

#[test]
fn a_responder_takes_two_passes_at_most_each_in_order() {
    let docs = (0..4).map(|n| (rid(n), vec![change(n as u8, 0, 10)]));
    let mut b = Chain::with(docs);
    let refused = |r: &mut Responder, b: &mut Chain, records: &[u64]| {
        let calls = b.calls();
        let err = r
            .handle(heads_of(records.iter().map(|n| rid(*n))), b)
            .expect_err("refused");
        assert!(matches!(err, SyncError::Protocol(_)), "{records:?}: {err}");
        assert_eq!(
            b.calls(),
            calls,
            "{records:?}: work done for a refused request"
        );
    };
    let taken = |r: &mut Responder, b: &mut Chain, records: &[u64]| {
        r.handle(heads_of(records.iter().map(|n| rid(*n))), b)
            .expect("taken");
        drain(|| r.poll_send(b));
    };
    // Twice in the first pass, in one message.
    let mut r = opened(&mut b);
    refused(&mut r, &mut b, &[0, 1, 0]);
    // A second pass out of order.
    let mut r = opened(&mut b);
    taken(&mut r, &mut b, &[0, 1, 2, 3]);
    refused(&mut r, &mut b, &[2, 1]);
    // A second pass over several messages, then a third.
    let mut r = opened(&mut b);
    taken(&mut r, &mut b, &[0, 1]);
    taken(&mut r, &mut b, &[2, 3]);
    taken(&mut r, &mut b, &[1]);
    taken(&mut r, &mut b, &[2]);
    refused(&mut r, &mut b, &[2]);
    refused(&mut r, &mut b, &[0]);
    taken(&mut r, &mut b, &[3]);
    // A record named twice within the second pass.
    let mut r = opened(&mut b);
    taken(&mut r, &mut b, &[0, 1, 2, 3]);
    refused(&mut r, &mut b, &[0, 1, 1]);
}

#[test]
fn records_named_again_count_against_the_unchanged_cap() {
    let docs: Vec<(RecordId, Vec<Vec<u8>>)> = (0..200u64)
        .map(|n| (RecordId::new(n, [0; 10]), vec![change(n as u8, 0, 100)]))
        .collect();
    let mut b = Chain::with(docs.iter().cloned());
    let mut r = opened(&mut b);
    let same = |range: std::ops::Range<usize>| first_heads(&docs[range]);
    r.handle(same(0..200), &mut b).expect("well-formed");
    drain(|| r.poll_send(&b));
    r.handle(same(0..MAX_UNCHANGED_PER_SESSION - 200), &mut b)
        .expect("well-formed");
    drain(|| r.poll_send(&b));
    r.handle(
        same(MAX_UNCHANGED_PER_SESSION - 200..MAX_UNCHANGED_PER_SESSION - 199),
        &mut b,
    )
    .expect("well-formed");
    let err = r.poll_send(&b).expect_err("not differing");
    assert!(matches!(err, SyncError::Protocol(_)), "{err}");
    assert_eq!(b.changes_calls.get(), 0);
}

#[test]
fn ancestors_are_the_heads_of_earlier_states_by_doubling_steps() {
    let h = |n: u8| [n; 32];
    assert!(ancestors_by_doubling(&[]).is_empty());
    assert_eq!(ancestors_by_doubling(&[(h(0), vec![])]), [h(0)]);
    // A linear history of 20: the changes 1, 2, 4, 8 and 16 before the
    // last, then the first.
    let linear: Vec<(Hash, Vec<Hash>)> = (0..20u8)
        .map(|n| (h(n), n.checked_sub(1).map(h).into_iter().collect()))
        .collect();
    assert_eq!(
        ancestors_by_doubling(&linear),
        [h(18), h(17), h(15), h(11), h(3), h(0)]
    );
    // Two concurrent changes (10 and 11), then their merge (12): one
    // change before the last, the history had two heads.
    let mut merged: Vec<(Hash, Vec<Hash>)> = linear[..10].to_vec();
    merged.push((h(10), vec![h(9)]));
    merged.push((h(11), vec![h(9)]));
    merged.push((h(12), vec![h(10), h(11)]));
    assert_eq!(
        ancestors_by_doubling(&merged),
        [h(10), h(11), h(8), h(4), h(0)]
    );
    // At most MAX_ANCESTORS, the nearest first.
    let wide: Vec<(Hash, Vec<Hash>)> = (0..100u8).map(|n| (h(n), vec![])).collect();
    let got = ancestors_by_doubling(&wide);
    assert_eq!(got.len(), MAX_ANCESTORS);
    assert_eq!(got[..3], [h(0), h(1), h(2)]);
}

/// The items as sessions built them before item sets were kept in memory:
/// a sealed `NegentropyStorageVector` of (creation time, id and SHA-256
/// of the sorted heads). Nodes of either kind must reconcile alike.
fn vector_reconciler(
    docs: &BTreeMap<RecordId, BTreeSet<Hash>>,
) -> Negentropy<'static, negentropy::NegentropyStorageVector> {
    let mut storage = negentropy::NegentropyStorageVector::new();
    for (record, heads) in docs {
        let mut h = Sha256::new();
        for head in heads {
            h.update(head);
        }
        let mut id = [0u8; 32];
        id[..16].copy_from_slice(&record.to_bytes());
        id[16..].copy_from_slice(&h.finalize()[..16]);
        storage
            .insert(record.unix_ms(), Id::from_byte_array(id))
            .expect("insert");
    }
    storage.seal().expect("seal");
    Negentropy::owned(storage, NEGENTROPY_FRAME).expect("negentropy")
}

#[test]
fn item_sets_reconcile_exactly_like_the_sorted_vector_they_replace() {
    for seed in 0..8u64 {
        let mut rng = Rng(seed);
        let mut a = replica(3_000 + seed as usize * 500, &mut rng);
        // Many documents created in the same millisecond, and some far
        // apart, so that ties in time are ordered by id.
        for i in 0..200u64 {
            let mut random = [0u8; 10];
            random[..8].copy_from_slice(&rng.next().to_le_bytes());
            let at = if i % 2 == 0 { 5_000 } else { rng.next() >> 20 };
            a.docs
                .insert(RecordId::new(at, random), [rng.hash()].into());
        }
        let mut b = a.clone();
        let keys: Vec<RecordId> = a.docs.keys().copied().collect();
        let mut expected = BTreeSet::new();
        for _ in 0..(1 + rng.next() % 40) {
            let r = keys[(rng.next() % keys.len() as u64) as usize];
            b.docs.get_mut(&r).expect("doc").insert(rng.hash());
            expected.insert(r.to_bytes());
        }
        b.docs
            .insert(RecordId::new(1, [seed as u8; 10]), [rng.hash()].into());
        expected.insert(RecordId::new(1, [seed as u8; 10]).to_bytes());

        // The same first message, byte for byte.
        let mut new_a = negentropy_for(a.items(space()).expect("items")).expect("neg");
        let first = new_a.initiate().expect("initiate");
        assert_eq!(
            first,
            vector_reconciler(&a.docs).initiate().expect("initiate"),
            "seed {seed}"
        );
        // Either kind of initiator against either kind of responder finds
        // exactly the records that differ.
        for (new_initiator, new_responder) in [(true, true), (true, false), (false, true)] {
            let mut responder_new = negentropy_for(b.items(space()).expect("items")).expect("neg");
            let mut responder_old = vector_reconciler(&b.docs);
            let mut initiator_new = negentropy_for(a.items(space()).expect("items")).expect("neg");
            let mut initiator_old = vector_reconciler(&a.docs);
            let mut msg = if new_initiator {
                initiator_new.initiate()
            } else {
                initiator_old.initiate()
            }
            .expect("initiate");
            let mut found = BTreeSet::new();
            for _ in 0..MAX_ROUNDS {
                let reply = if new_responder {
                    responder_new.reconcile(&msg)
                } else {
                    responder_old.reconcile(&msg)
                }
                .expect("reconcile");
                let (mut have, mut need) = (Vec::new(), Vec::new());
                let next = if new_initiator {
                    initiator_new.reconcile_with_ids(&reply, &mut have, &mut need)
                } else {
                    initiator_old.reconcile_with_ids(&reply, &mut have, &mut need)
                }
                .expect("reconcile");
                found.extend(have.iter().chain(&need).map(|id| wire_of(id.as_bytes())));
                match next {
                    Some(next) => msg = next,
                    None => break,
                }
            }
            assert_eq!(found, expected, "seed {seed}");
        }
    }
}

/// A `Heads` message naming each of `docs` with its first change as head:
/// what the responder holds of single-change documents.
fn first_heads(docs: &[(RecordId, Vec<Vec<u8>>)]) -> SyncMessage {
    SyncMessage::Heads(
        docs.iter()
            .map(|(id, doc)| RecordHeads {
                record: id.to_bytes(),
                heads: vec![digest(&doc[0])],
            })
            .collect(),
    )
}

/// The fingerprints `ItemStorage` answers from prefix sums are the bytes
/// negentropy's own storage computes by summing every item, for any range
/// of any set (seeded), so that peers of either kind agree.
#[test]
fn fingerprints_from_prefix_sums_are_negentropys_own() {
    let mut rng = Rng(0x0f1e_2d3c);
    let mut next = move || rng.next();
    for size in [0usize, 1, 2, 31, 500] {
        let items: Vec<SyncItem> = (0..size)
            .map(|_| {
                let mut record = [0u8; 16];
                record[..8].copy_from_slice(&next().to_be_bytes());
                record[8..].copy_from_slice(&next().to_be_bytes());
                SyncItem::new(record, &[[next() as u8; 32]])
            })
            .collect();
        let set = ItemSet::collect(items);
        let ours = ItemStorage(set.clone());
        let mut theirs = negentropy::NegentropyStorageVector::new();
        for item in set.iter() {
            theirs
                .insert(item.timestamp(), Id::from_byte_array(item.id()))
                .expect("insert");
        }
        theirs.seal().expect("seal");
        for _ in 0..200 {
            let (a, b) = (next() as usize % (size + 1), next() as usize % (size + 1));
            let (begin, end) = (a.min(b), a.max(b));
            assert_eq!(
                ours.fingerprint(begin, end).expect("ours").to_bytes(),
                theirs.fingerprint(begin, end).expect("theirs").to_bytes(),
                "size {size}, {begin}..{end}"
            );
        }
        assert!(
            ours.fingerprint(0, size + 1).is_err(),
            "a range past the end"
        );
    }
}
