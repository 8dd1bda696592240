//! Whole sessions between in-memory replicas, driven message by message.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// A replica whose documents are grow-only sets of opaque changes; a
/// document's heads are its change set. Enough to check that sessions find
/// every difference and move exactly the missing changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Mem {
    docs: BTreeMap<RecordId, BTreeSet<Hash>>,
    member: bool,
}

impl Replica for Mem {
    fn items(&self, _: SpaceId) -> Result<Vec<(RecordId, Vec<Hash>)>, String> {
        Ok(self
            .docs
            .iter()
            .map(|(r, c)| (*r, c.iter().copied().collect()))
            .collect())
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
    let mut to_resp = first;
    while !to_resp.is_empty() {
        let mut to_init = Vec::new();
        for m in to_resp.drain(..) {
            if matches!(m, SyncMessage::Heads(_)) {
                in_flight += 1;
                assert!(in_flight <= 1, "two Heads messages in flight");
            }
            to_init.extend(resp.handle(m, &mut b).expect("responder").send);
        }
        for m in to_init {
            if matches!(m, SyncMessage::Heads(_)) {
                in_flight -= 1;
            }
            to_resp.extend(init.handle(m, &mut a).expect("initiator").send);
        }
    }
    assert!(init.is_finished() && resp.is_finished());
    assert_eq!(a, b);
}
