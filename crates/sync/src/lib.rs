//! Catch-up between two nodes, as sans-IO state machines.
//!
//! A session syncs one space. The initiator (the node that dialed) and the
//! responder first run range-based set reconciliation (negentropy) over
//! the space's documents, each item being a document id with a digest of
//! its heads: identical spaces finish in one round trip, and the cost
//! otherwise grows with the number of documents that differ, not with the
//! size of the space. Then, for the documents that differ only, in
//! exchanges of at most [`HEADS_PER_MESSAGE`] records each:
//!
//! ```text
//! I → R  Heads(I's heads of the next records, ids strictly increasing)
//! R → I  Changes ... (what I lacks, in bounded pieces), Heads(R's heads of the same records)
//! I → R  Changes ... (what R lacks), then the next Heads ... or Done
//! ```
//!
//! What a side sends is exact only if it holds all of the other's heads:
//! a head it has not seen says nothing of what lies below it. So in the
//! first pass over the differing records the responder sends nothing for a
//! record whose heads from the initiator it does not all hold (its own
//! heads still go back), and the initiator, once it has the responder's
//! changes, sends exactly what the responder lacks if it now holds all of
//! the responder's heads. Records where neither could (both sides edited)
//! the initiator names once more, in a second pass at the end of the
//! session, with a few ancestors of its heads: the responder sends what is
//! not below those it holds, whether or not it holds the heads (nothing
//! stalls), and the initiator, holding the responder's changes by then,
//! sends exactly what it lacks. A record is named at most twice.
//!
//! Only one side writes at a time, and a side's `Heads` (or `Done`) hands
//! the turn over: both writing large messages at once could fill both
//! flow-control windows and deadlock. A side never builds its whole reply:
//! it keeps the records still to answer and the changes of one record, and
//! [`Initiator::poll_send`] / [`Responder::poll_send`] produce one message
//! of at most about [`CHANGES_BATCH_BYTES`] per call. A record's history
//! may take several `Changes` messages, in the order the replica gave it.
//!
//! What a peer may ask is bounded: at most [`HEADS_PER_MESSAGE`] records
//! per `Heads` and [`MAX_RECORDS_PER_SESSION`] per session (second pass
//! included), each record named at most twice (ids strictly increasing
//! within each of at most two passes), a responder's answer naming exactly
//! the records asked, and only records that differ. Anything else is a
//! protocol violation that ends the session.
//!
//! The state machines never touch a socket, a disk or a clock: messages
//! go in, messages come out, and the node's storage is reached through
//! [`Replica`]. That makes whole sessions testable in one thread.
//!
//! When to run a session, and with whom, is [`schedule`]'s to decide: also
//! sans-IO, with time passed in, so the node and the simulation run the
//! same schedule.

use std::collections::{BTreeSet, VecDeque};

use negentropy::{Accumulator, Bound, Fingerprint, Id, Item, Negentropy, NegentropyStorageBase};
use rapport_model::{RecordId, SpaceId};
use rapport_proto::MAX_CHANGE_BYTES;
pub use rapport_proto::items::{ItemSet, SyncItem};
use rapport_proto::wire::{
    Hash, MAX_ADDRESS_ENTRIES, RecordChanges, RecordHeads, SyncMessage, WireId,
};

pub mod schedule;

pub use schedule::{Dial, Outcome, Scheduler, SessionId};

/// Most reconciliation rounds a session may take before it is abandoned.
pub const MAX_ROUNDS: usize = 64;
/// Negentropy frame limit: larger differences take more rounds instead.
const NEGENTROPY_FRAME: u64 = 512 * 1024;
/// Target size of one `Changes` message. A single change larger than this
/// (up to [`MAX_CHANGE_BYTES`]) travels alone, still far below the frame
/// limit.
pub const CHANGES_BATCH_BYTES: usize = 1 << 20;
/// Most records one `Heads` message may name.
pub const HEADS_PER_MESSAGE: usize = 10_000;
/// Target size of one `Heads` message (records with many heads).
const HEADS_BATCH_BYTES: usize = 1 << 20;
/// Most records one session may name. An initiator that found more
/// differing leaves the rest to its next session ([`SessionStats::deferred`]).
pub const MAX_RECORDS_PER_SESSION: usize = 1 << 20;
/// Records a session may name whose heads turn out to equal the
/// responder's (they changed since reconciliation): beyond this many, the
/// peer is naming records that do not differ, and the session ends.
pub const MAX_UNCHANGED_PER_SESSION: usize = 256;
/// Most ancestors [`ancestors_by_doubling`] names: a 2^31-change linear
/// history takes 32.
pub const MAX_ANCESTORS: usize = 32;
/// Ancestors to name beside a document's heads, for a peer that may not
/// know the heads ([`Replica::heads_and_ancestors`]): `history` is every
/// change of the document (hash, dependencies) in an order they apply in.
/// The result is the heads the document had 1, 2, 4, 8, ... changes before
/// its last one, then its first change, without repeats, at most
/// [`MAX_ANCESTORS`] hashes. A peer that holds none of our heads sends
/// what is not below the ones of these it holds: if our histories parted
/// `k` changes before our last, that is what we lack and fewer than `k`
/// changes we have. Heads of a whole earlier state, not single changes,
/// so that a fork after a merge (two heads) costs nothing more.
pub fn ancestors_by_doubling(history: &[(Hash, Vec<Hash>)]) -> Vec<Hash> {
    let len = history.len();
    // The places whose heads to name, earliest first.
    let mut at: Vec<usize> = std::iter::successors(Some(1usize), |b| b.checked_mul(2))
        .take_while(|&back| back < len)
        .map(|back| len - 1 - back)
        .collect();
    let mut out: Vec<Hash> = Vec::new();
    let mut heads: BTreeSet<Hash> = BTreeSet::new();
    let mut cuts: Vec<Vec<Hash>> = Vec::with_capacity(at.len());
    for (i, (hash, deps)) in history.iter().enumerate() {
        if at.is_empty() {
            break;
        }
        for d in deps {
            heads.remove(d);
        }
        heads.insert(*hash);
        if at.last() == Some(&i) {
            at.pop();
            cuts.push(heads.iter().copied().collect());
        }
    }
    // Nearest the end first: they matter most when the cap bites.
    for hash in cuts
        .iter()
        .rev()
        .flatten()
        .chain(history.first().map(|(h, _)| h))
    {
        if out.len() == MAX_ANCESTORS {
            break;
        }
        if !out.contains(hash) {
            out.push(*hash);
        }
    }
    out
}

/// Largest encoded signed change worth sending: the change itself plus its
/// envelope's header (101 bytes). No receiver accepts a larger one.
const MAX_SENDABLE_CHANGE: usize = MAX_CHANGE_BYTES + 1024;
/// What postcard adds around each change and each record of a `Changes`
/// message, at most.
const CHANGE_OVERHEAD: usize = 8;
const RECORD_OVERHEAD: usize = 32;

/// What a session needs from the node's storage and rules.
pub trait Replica {
    /// The reconciliation item of every document of `space` (its id and a
    /// digest of its heads). Called once per session, at its start: a
    /// replica keeps the set ready rather than reading the space for it.
    fn items(&self, space: SpaceId) -> Result<ItemSet, String>;
    /// The heads of one document, if this node has it.
    fn heads(&self, space: SpaceId, record: RecordId) -> Result<Option<Vec<Hash>>, String>;
    /// Encoded signed changes of `record` that a peer whose heads are
    /// `peer_heads` lacks (all of them if the peer has none), in an order
    /// the peer can apply them in (each after its dependencies). Heads this
    /// node does not hold say nothing of what the peer has, so this is
    /// every change not below the *known* ones: exact when all are known,
    /// the whole history when none is.
    fn changes_for(
        &self,
        space: SpaceId,
        record: RecordId,
        peer_heads: &[Hash],
    ) -> Result<Vec<Vec<u8>>, String>;
    /// What [`Replica::changes_for`] gives, but only if this node holds
    /// every one of `peer_heads` (then it is exactly what the peer lacks);
    /// `None` if one of them is new here (the peer has changes this node
    /// has not seen, so it cannot tell what the peer lacks).
    fn changes_if_known(
        &self,
        space: SpaceId,
        record: RecordId,
        peer_heads: &[Hash],
    ) -> Result<Option<Vec<Vec<u8>>>, String>;
    /// The heads of one document, then a few of their ancestors (at most
    /// [`MAX_ANCESTORS`], see [`ancestors_by_doubling`]): for a peer that
    /// does not know the heads, the newest of these it holds bound what it
    /// sends. `None` if this node does not have the document.
    fn heads_and_ancestors(
        &self,
        space: SpaceId,
        record: RecordId,
    ) -> Result<Option<Vec<Hash>>, String> {
        self.heads(space, record)
    }
    /// Verifies, authorizes and stores changes from the peer. Rejections
    /// are the replica's to count and log; only storage failures are errors.
    /// A record's changes may come in several calls, in order.
    fn apply(
        &mut self,
        space: SpaceId,
        record: RecordId,
        changes: Vec<Vec<u8>>,
    ) -> Result<(), String>;
    /// Called after each `Changes` message has been applied: make it durable.
    fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// Applies a whole `Changes` message, durably: each record's changes
    /// with [`Replica::apply`], in order, then [`Replica::flush`]. A
    /// replica may do the same work better with all of them in hand.
    fn apply_message(
        &mut self,
        space: SpaceId,
        records: Vec<(RecordId, Vec<Vec<u8>>)>,
    ) -> Result<(), String> {
        for (record, changes) in records {
            self.apply(space, record, changes)?;
        }
        self.flush()
    }
    /// Whether the peer of this session may sync `space` with us.
    fn may_sync(&self, space: SpaceId) -> bool;
    /// Signed address announcements to pass on to the peer, a member of
    /// `space`: those of the space's members this node holds, its own
    /// included, at most [`MAX_ADDRESS_ENTRIES`].
    fn addresses(&self, _space: SpaceId) -> Result<Vec<Vec<u8>>, String> {
        Ok(Vec::new())
    }
    /// Announcements the peer passed on: the replica verifies each and
    /// keeps what is newer, of members of `space` only. Refusals are the
    /// replica's to count; only storage failures are errors.
    fn learn_addresses(&mut self, _space: SpaceId, _signed: Vec<Vec<u8>>) -> Result<(), String> {
        Ok(())
    }
    /// What to tell a peer that may not. Reveals nothing about the space
    /// unless the replica knows the peer is entitled to know (a removed
    /// member learns it was removed).
    fn refusal_reason(&self, _space: SpaceId) -> String {
        "not a member of this space here".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("peer refused: {0}")]
    Refused(String),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("reconciliation did not finish within {MAX_ROUNDS} rounds")]
    TooManyRounds,
    #[error("local storage: {0}")]
    Replica(String),
}

/// Counts of one session, for status and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionStats {
    pub rounds: usize,
    pub differing: usize,
    pub changes_sent: usize,
    pub changes_received: usize,
    /// Differing records left for a later session (over
    /// [`MAX_RECORDS_PER_SESSION`]).
    pub deferred: usize,
    /// Records named a second time, at the end of the session: both sides
    /// had changes the other had not seen (the initiator counts them).
    pub named_twice: usize,
}

/// The negentropy id of a document: its id and a digest of its sorted
/// heads, so that any change to a document changes its item (see
/// [`SyncItem`]; its negentropy timestamp is the id's creation time).
pub fn item_id(record: RecordId, heads: &[Hash]) -> [u8; 32] {
    SyncItem::new(record.to_bytes(), heads).id()
}

fn wire_of(item: &[u8; 32]) -> WireId {
    let mut b = [0u8; 16];
    b.copy_from_slice(&item[..16]);
    b
}

/// Negentropy's view of an [`ItemSet`]: the snapshot itself, shared, not
/// a copy. Items are sorted by id, and an id starts with its creation
/// time, so they are in negentropy's order (timestamp, then id).
#[derive(Debug)]
struct ItemStorage(ItemSet);

impl ItemStorage {
    fn item(item: &SyncItem) -> Item {
        Item::with_timestamp_and_id(item.timestamp(), Id::from_byte_array(item.id()))
    }
}

impl NegentropyStorageBase for ItemStorage {
    fn size(&self) -> Result<usize, negentropy::Error> {
        Ok(self.0.len())
    }

    fn get_item(&self, i: usize) -> Result<Option<Item>, negentropy::Error> {
        Ok(self.0.get(i).map(Self::item))
    }

    fn iterate(
        &self,
        begin: usize,
        end: usize,
        cb: &mut dyn FnMut(Item, usize) -> Result<bool, negentropy::Error>,
    ) -> Result<(), negentropy::Error> {
        let items = self.0.get(begin..end).ok_or(negentropy::Error::BadRange)?;
        for (i, item) in items.iter().enumerate() {
            if !cb(Self::item(item), begin + i)? {
                break;
            }
        }
        Ok(())
    }

    fn find_lower_bound(&self, first: usize, last: usize, value: &Bound) -> usize {
        let items = self.0.get(first..last).unwrap_or_default();
        first + items.partition_point(|item| Self::item(item) < value.item)
    }

    /// The default sums every id of the range: O(N) per round in the size
    /// of the space. The snapshot's prefix sums give the same sum in O(1).
    fn fingerprint(&self, begin: usize, end: usize) -> Result<Fingerprint, negentropy::Error> {
        let sum = self
            .0
            .id_sum(begin, end)
            .ok_or(negentropy::Error::BadRange)?;
        let mut acc = Accumulator::new();
        acc.add(&sum)?;
        acc.get_fingerprint((end - begin) as u64)
    }
}

type Reconciler = Negentropy<'static, ItemStorage>;

fn negentropy_for(items: ItemSet) -> Result<Reconciler, SyncError> {
    Negentropy::owned(ItemStorage(items), NEGENTROPY_FRAME)
        .map_err(|e| SyncError::Protocol(format!("negentropy: {e}")))
}

fn space_wire(space: SpaceId) -> Option<WireId> {
    match space {
        SpaceId::Shared(id) => Some(id.to_bytes()),
        SpaceId::Private => None,
    }
}

fn same_heads(a: &[Hash], b: &[Hash]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_unstable();
    a.dedup();
    b.sort_unstable();
    b.dedup();
    a == b
}

/// One side's answer in progress: the records still to answer and the
/// unsent changes of the one being answered. This is all a side holds of
/// a reply, whatever the size of the space or of a record's history.
#[derive(Debug, Default)]
struct Outgoing {
    /// The peer's heads of records still to answer, in the order named.
    queue: VecDeque<RecordHeads>,
    /// The record being answered and its changes not sent yet, in order.
    current: Option<(WireId, VecDeque<Vec<u8>>)>,
}

impl Outgoing {
    /// The next `Changes` message: about [`CHANGES_BATCH_BYTES`] at most (a
    /// single larger change travels alone), a record's changes split
    /// across messages where needed, in the order the replica gave them.
    /// `changes` is asked for each record's changes to send (none is
    /// fine) when its turn comes. `None` when everything has been sent.
    fn next_message(
        &mut self,
        mut changes: impl FnMut(&RecordHeads) -> Result<Vec<Vec<u8>>, SyncError>,
    ) -> Result<Option<Vec<RecordChanges>>, SyncError> {
        let mut batch: Vec<RecordChanges> = Vec::new();
        let mut size = 0;
        loop {
            let Some((record, pending)) = &mut self.current else {
                let Some(rh) = self.queue.pop_front() else {
                    break;
                };
                let changes = changes(&rh)?;
                if !changes.is_empty() {
                    self.current = Some((rh.record, changes.into()));
                }
                continue;
            };
            let mut taken = Vec::new();
            let mut full = false;
            while let Some(change) = pending.front() {
                if change.len() > MAX_SENDABLE_CHANGE {
                    tracing::warn!(
                        record = %RecordId::from_bytes(*record),
                        bytes = change.len(),
                        "not sending a change over the size limit"
                    );
                    pending.pop_front();
                    continue;
                }
                let cost = change.len()
                    + CHANGE_OVERHEAD
                    + if taken.is_empty() { RECORD_OVERHEAD } else { 0 };
                if size > 0 && size + cost > CHANGES_BATCH_BYTES {
                    full = true;
                    break;
                }
                size += cost;
                taken.extend(pending.pop_front());
            }
            if !taken.is_empty() {
                batch.push(RecordChanges {
                    record: *record,
                    changes: taken,
                });
            }
            if pending.is_empty() {
                self.current = None;
            }
            if full {
                break;
            }
        }
        Ok((!batch.is_empty()).then_some(batch))
    }
}

fn changes_in(batch: &[RecordChanges]) -> usize {
    batch.iter().map(|c| c.changes.len()).sum()
}

/// Checks that every record of a `Changes` message was asked about in the
/// current exchange (`asked` is sorted).
fn check_asked(asked: &[WireId], batch: &[RecordChanges]) -> Result<(), SyncError> {
    if batch
        .iter()
        .any(|c| asked.binary_search(&c.record).is_err())
    {
        return Err(SyncError::Protocol(
            "changes of a record that is not being discussed".into(),
        ));
    }
    Ok(())
}

fn apply_all(
    replica: &mut impl Replica,
    space: SpaceId,
    batch: Vec<RecordChanges>,
    stats: &mut SessionStats,
) -> Result<(), SyncError> {
    stats.changes_received += changes_in(&batch);
    let records = batch
        .into_iter()
        .map(|rc| (RecordId::from_bytes(rc.record), rc.changes))
        .collect();
    replica
        .apply_message(space, records)
        .map_err(SyncError::Replica)
}

/// Hands the peer's address announcements to the replica: once per
/// session and side, at most [`MAX_ADDRESS_ENTRIES`].
fn learn_addresses(
    replica: &mut impl Replica,
    space: SpaceId,
    received: &mut bool,
    signed: Vec<Vec<u8>>,
) -> Result<(), SyncError> {
    if std::mem::replace(received, true) {
        return Err(SyncError::Protocol("a second Addresses message".into()));
    }
    if signed.len() > MAX_ADDRESS_ENTRIES {
        return Err(SyncError::Protocol(format!(
            "Addresses with {} announcements (at most {MAX_ADDRESS_ENTRIES})",
            signed.len()
        )));
    }
    replica
        .learn_addresses(space, signed)
        .map_err(SyncError::Replica)
}

/// The `Addresses` message to send a member, if there is anything to say.
fn addresses_for(replica: &impl Replica, space: SpaceId) -> Result<Option<SyncMessage>, SyncError> {
    let mut signed = replica.addresses(space).map_err(SyncError::Replica)?;
    signed.truncate(MAX_ADDRESS_ENTRIES);
    Ok((!signed.is_empty()).then_some(SyncMessage::Addresses(signed)))
}

#[derive(Debug, PartialEq, Eq)]
enum InitiatorState {
    Reconciling,
    /// Our turn: our changes for the last answer, then the next `Heads`
    /// or `Done`.
    Sending,
    /// A `Heads` message is out: the responder's changes, then its heads.
    AwaitingAnswer,
    Finished,
}

/// The dialing side of a session.
///
/// Drive it like this: send what [`Initiator::start`] returns; then, until
/// [`Initiator::is_finished`], read a message, [`Initiator::handle`] it and
/// send everything [`Initiator::poll_send`] yields.
pub struct Initiator {
    space: SpaceId,
    neg: Reconciler,
    /// Records found to differ and not named yet (in this pass), in wire
    /// order.
    to_name: BTreeSet<WireId>,
    /// Records to name again in the second pass: both sides had changes
    /// the other had not seen, so neither could tell what the other
    /// lacked in the first.
    again: BTreeSet<WireId>,
    /// Whether the first pass is over (`to_name` then holds `again`).
    second_pass: bool,
    /// Records named so far, in both passes.
    named: usize,
    /// The records of the `Heads` message out, in the order named.
    asked: Vec<WireId>,
    /// For each record of `asked`: whether the responder sent changes of
    /// it. In the first pass it does only if it holds all our heads.
    answered: Vec<bool>,
    answer: Outgoing,
    outbox: VecDeque<SyncMessage>,
    state: InitiatorState,
    /// The responder's `Addresses` came.
    addresses_received: bool,
    pub stats: SessionStats,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator")
            .field("space", &self.space)
            .field("state", &self.state)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Initiator {
    /// Starts a session for `space`; returns the first messages to send.
    pub fn start(
        space: SpaceId,
        replica: &impl Replica,
    ) -> Result<(Self, Vec<SyncMessage>), SyncError> {
        let wire = space_wire(space)
            .ok_or_else(|| SyncError::Protocol("the private space is never synced".into()))?;
        let items = replica.items(space).map_err(SyncError::Replica)?;
        let mut neg = negentropy_for(items)?;
        let first = neg
            .initiate()
            .map_err(|e| SyncError::Protocol(format!("negentropy: {e}")))?;
        let me = Initiator {
            space,
            neg,
            to_name: BTreeSet::new(),
            again: BTreeSet::new(),
            second_pass: false,
            named: 0,
            asked: Vec::new(),
            answered: Vec::new(),
            answer: Outgoing::default(),
            outbox: VecDeque::new(),
            state: InitiatorState::Reconciling,
            addresses_received: false,
            stats: SessionStats {
                rounds: 1,
                ..Default::default()
            },
        };
        // Only a member is dialed for a space (the node checks before it
        // dials), so our addresses may go with the opening.
        let mut messages = vec![SyncMessage::Open { space: wire }];
        messages.extend(addresses_for(replica, space)?);
        messages.push(SyncMessage::Reconcile(first));
        Ok((me, messages))
    }

    /// Whether the session is over (`Done` has been handed out).
    pub fn is_finished(&self) -> bool {
        self.state == InitiatorState::Finished
    }

    /// Handles one message from the responder. What to send in return
    /// comes from [`Initiator::poll_send`].
    pub fn handle(
        &mut self,
        msg: SyncMessage,
        replica: &mut impl Replica,
    ) -> Result<(), SyncError> {
        match (&self.state, msg) {
            (_, SyncMessage::Refused { reason }) => {
                self.state = InitiatorState::Finished;
                Err(SyncError::Refused(reason))
            }
            (
                InitiatorState::Reconciling | InitiatorState::AwaitingAnswer,
                SyncMessage::Addresses(signed),
            ) => learn_addresses(replica, self.space, &mut self.addresses_received, signed),
            (InitiatorState::Reconciling, SyncMessage::Reconcile(m)) => {
                let (mut have, mut need) = (Vec::new(), Vec::new());
                let next = self
                    .neg
                    .reconcile_with_ids(&m, &mut have, &mut need)
                    .map_err(|e| SyncError::Protocol(format!("negentropy: {e}")))?;
                for id in have.iter().chain(&need) {
                    self.to_name.insert(wire_of(id.as_bytes()));
                }
                if let Some(next) = next {
                    self.stats.rounds += 1;
                    if self.stats.rounds > MAX_ROUNDS {
                        return Err(SyncError::TooManyRounds);
                    }
                    self.outbox.push_back(SyncMessage::Reconcile(next));
                    return Ok(());
                }
                self.stats.differing = self.to_name.len();
                while self.to_name.len() > MAX_RECORDS_PER_SESSION {
                    self.to_name.pop_last();
                    self.stats.deferred += 1;
                }
                self.state = InitiatorState::Sending;
                Ok(())
            }
            (InitiatorState::AwaitingAnswer, SyncMessage::Changes(batch)) => {
                check_asked(&self.asked, &batch)?;
                for rc in batch.iter().filter(|rc| !rc.changes.is_empty()) {
                    if let Ok(i) = self.asked.binary_search(&rc.record) {
                        self.answered[i] = true;
                    }
                }
                apply_all(replica, self.space, batch, &mut self.stats)
            }
            (InitiatorState::AwaitingAnswer, SyncMessage::Heads(theirs)) => {
                // The answer names exactly the records asked, in order:
                // nothing more (no duplicates, nothing unasked), nothing less.
                if theirs.len() != self.asked.len()
                    || theirs.iter().zip(&self.asked).any(|(h, a)| h.record != *a)
                {
                    return Err(SyncError::Protocol(
                        "the answer does not name the records asked, in order".into(),
                    ));
                }
                self.answer.queue = theirs.into();
                self.state = InitiatorState::Sending;
                Ok(())
            }
            (state, msg) => Err(SyncError::Protocol(format!(
                "unexpected {} while {state:?}",
                message_name(&msg)
            ))),
        }
    }

    /// The next message to send, if any: call until `None` after each
    /// [`Initiator::handle`]. Each is bounded (about
    /// [`CHANGES_BATCH_BYTES`]); the rest of the work stays queued here.
    pub fn poll_send(&mut self, replica: &impl Replica) -> Result<Option<SyncMessage>, SyncError> {
        if let Some(m) = self.outbox.pop_front() {
            return Ok(Some(m));
        }
        if self.state != InitiatorState::Sending {
            return Ok(None);
        }
        let space = self.space;
        let second_pass = self.second_pass;
        let (asked, answered) = (&self.asked, &self.answered);
        let (again, stats) = (&mut self.again, &mut self.stats);
        // Records named twice count against the session's cap too.
        let mut room =
            MAX_RECORDS_PER_SESSION.saturating_sub(self.named + self.to_name.len() + again.len());
        let next = self.answer.next_message(|rh| {
            let record = RecordId::from_bytes(rh.record);
            if second_pass {
                // The responder has what it could send us; whatever it
                // still lacks, this is our last word on the record.
                return replica
                    .changes_for(space, record, &rh.heads)
                    .map_err(SyncError::Replica);
            }
            let i = asked.binary_search(&rh.record).ok();
            if i.is_some_and(|i| answered[i]) {
                // It sent changes, so it held all our heads: it lacks
                // nothing of ours (even if we refused what it sent).
                return Ok(Vec::new());
            }
            match replica
                .changes_if_known(space, record, &rh.heads)
                .map_err(SyncError::Replica)?
            {
                Some(changes) => Ok(changes),
                None if room > 0 => {
                    // Its heads are new here and ours were new there: we
                    // send nothing now and name the record again at the
                    // end, with a few of our ancestors for it to find
                    // where our histories part.
                    room -= 1;
                    again.insert(rh.record);
                    stats.named_twice += 1;
                    Ok(Vec::new())
                }
                None => replica
                    .changes_for(space, record, &rh.heads)
                    .map_err(SyncError::Replica),
            }
        })?;
        if let Some(batch) = next {
            self.stats.changes_sent += changes_in(&batch);
            return Ok(Some(SyncMessage::Changes(batch)));
        }
        // Our part of this exchange is out: name the next records, then
        // those of the second pass, or end.
        if self.to_name.is_empty() && !self.second_pass {
            self.second_pass = true;
            self.to_name = std::mem::take(&mut self.again);
        }
        let mut heads = Vec::new();
        let mut size = 0;
        while heads.len() < HEADS_PER_MESSAGE && size < HEADS_BATCH_BYTES {
            let Some(record) = self.to_name.pop_first() else {
                break;
            };
            let record_id = RecordId::from_bytes(record);
            let mine = if self.second_pass {
                replica.heads_and_ancestors(self.space, record_id)
            } else {
                replica.heads(self.space, record_id)
            }
            .map_err(SyncError::Replica)?
            .unwrap_or_default();
            size += RECORD_OVERHEAD + mine.len() * 32;
            heads.push(RecordHeads {
                record,
                heads: mine,
            });
        }
        if heads.is_empty() {
            self.state = InitiatorState::Finished;
            return Ok(Some(SyncMessage::Done));
        }
        self.named += heads.len();
        self.asked = heads.iter().map(|h| h.record).collect();
        self.answered = vec![false; heads.len()];
        self.state = InitiatorState::AwaitingAnswer;
        Ok(Some(SyncMessage::Heads(heads)))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ResponderState {
    AwaitingOpen,
    Reconciling,
    /// Our turn: our changes for the records asked, then our heads.
    Answering,
    /// Our heads are out: the initiator's changes, then `Heads` or `Done`.
    AwaitingChanges,
    Finished,
}

/// The dialed side of a session.
///
/// Drive it like this: until [`Responder::is_finished`], read a message,
/// [`Responder::handle`] it and send everything [`Responder::poll_send`]
/// yields.
pub struct Responder {
    space: SpaceId,
    neg: Option<Reconciler>,
    outbox: VecDeque<SyncMessage>,
    /// The records of the current exchange, in the order named (sorted).
    asked: Vec<WireId>,
    answer: Outgoing,
    /// Our heads of the records answered so far, sent after our changes.
    mine: Vec<RecordHeads>,
    /// Records named whose heads were ours already.
    unchanged: usize,
    /// Records named in this session (both passes), and the last one.
    named: usize,
    last_named: Option<WireId>,
    /// Whether the initiator has started naming records again.
    second_pass: bool,
    state: ResponderState,
    rounds: usize,
    refused: bool,
    /// The initiator's `Addresses` came.
    addresses_received: bool,
    pub stats: SessionStats,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("space", &self.space)
            .field("state", &self.state)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Default for Responder {
    fn default() -> Self {
        Self::new()
    }
}

impl Responder {
    pub fn new() -> Self {
        Responder {
            space: SpaceId::Private,
            neg: None,
            outbox: VecDeque::new(),
            asked: Vec::new(),
            answer: Outgoing::default(),
            mine: Vec::new(),
            unchanged: 0,
            named: 0,
            last_named: None,
            second_pass: false,
            state: ResponderState::AwaitingOpen,
            rounds: 0,
            refused: false,
            addresses_received: false,
            stats: SessionStats::default(),
        }
    }

    pub fn space(&self) -> SpaceId {
        self.space
    }

    /// Whether the session is over: send what [`Responder::poll_send`]
    /// still yields (a refusal), then close.
    pub fn is_finished(&self) -> bool {
        self.state == ResponderState::Finished
    }

    /// Whether the session was refused (the peer may not sync the space).
    pub fn was_refused(&self) -> bool {
        self.refused
    }

    /// Handles one message from the initiator. What to send in return
    /// comes from [`Responder::poll_send`].
    pub fn handle(
        &mut self,
        msg: SyncMessage,
        replica: &mut impl Replica,
    ) -> Result<(), SyncError> {
        match (&self.state, msg) {
            (ResponderState::AwaitingOpen, SyncMessage::Open { space }) => {
                let space = SpaceId::Shared(RecordId::from_bytes(space));
                self.space = space;
                if !replica.may_sync(space) {
                    self.refused = true;
                    self.state = ResponderState::Finished;
                    self.outbox.push_back(SyncMessage::Refused {
                        reason: replica.refusal_reason(space),
                    });
                    return Ok(());
                }
                let items = replica.items(space).map_err(SyncError::Replica)?;
                self.neg = Some(negentropy_for(items)?);
                self.state = ResponderState::Reconciling;
                // A member now: our addresses go first.
                self.outbox.extend(addresses_for(replica, space)?);
                Ok(())
            }
            (
                ResponderState::Reconciling | ResponderState::AwaitingChanges,
                SyncMessage::Addresses(signed),
            ) => learn_addresses(replica, self.space, &mut self.addresses_received, signed),
            (ResponderState::Reconciling, SyncMessage::Reconcile(m)) => {
                self.rounds += 1;
                if self.rounds > MAX_ROUNDS {
                    return Err(SyncError::TooManyRounds);
                }
                let neg = self
                    .neg
                    .as_mut()
                    .ok_or_else(|| SyncError::Protocol("reconcile before open".into()))?;
                let reply = neg
                    .reconcile(&m)
                    .map_err(|e| SyncError::Protocol(format!("negentropy: {e}")))?;
                self.stats.rounds = self.rounds;
                self.outbox.push_back(SyncMessage::Reconcile(reply));
                Ok(())
            }
            (
                ResponderState::Reconciling | ResponderState::AwaitingChanges,
                SyncMessage::Heads(theirs),
            ) => self.accept_heads(theirs),
            (ResponderState::Reconciling | ResponderState::AwaitingChanges, SyncMessage::Done) => {
                self.state = ResponderState::Finished;
                Ok(())
            }
            (ResponderState::AwaitingChanges, SyncMessage::Changes(batch)) => {
                check_asked(&self.asked, &batch)?;
                apply_all(replica, self.space, batch, &mut self.stats)
            }
            (state, msg) => Err(SyncError::Protocol(format!(
                "unexpected {} while {state:?}",
                message_name(&msg)
            ))),
        }
    }

    /// Checks a request before any work is done for it, and queues it.
    fn accept_heads(&mut self, theirs: Vec<RecordHeads>) -> Result<(), SyncError> {
        if theirs.is_empty() {
            return Err(SyncError::Protocol("Heads naming no record".into()));
        }
        if theirs.len() > HEADS_PER_MESSAGE {
            return Err(SyncError::Protocol(format!(
                "Heads naming {} records (at most {HEADS_PER_MESSAGE})",
                theirs.len()
            )));
        }
        if self.named + theirs.len() > MAX_RECORDS_PER_SESSION {
            return Err(SyncError::Protocol(format!(
                "more than {MAX_RECORDS_PER_SESSION} records named in one session"
            )));
        }
        // Strictly increasing within a pass, and at most two passes: a
        // message that starts at or below the last record named starts the
        // second. So no record is named more than twice, and remembering
        // the last id and the pass is enough to see it.
        let mut last = self.last_named;
        let mut second_pass = self.second_pass;
        if last.is_some_and(|l| theirs[0].record <= l) {
            if second_pass {
                return Err(SyncError::Protocol(format!(
                    "record {} named a third time or out of order",
                    RecordId::from_bytes(theirs[0].record)
                )));
            }
            second_pass = true;
            last = None;
        }
        for rh in &theirs {
            if last.is_some_and(|l| rh.record <= l) {
                return Err(SyncError::Protocol(format!(
                    "record {} named twice in one pass or out of order",
                    RecordId::from_bytes(rh.record)
                )));
            }
            last = Some(rh.record);
        }
        self.last_named = last;
        self.second_pass = second_pass;
        self.named += theirs.len();
        if !second_pass {
            self.stats.differing += theirs.len();
        }
        self.asked = theirs.iter().map(|h| h.record).collect();
        self.mine = Vec::with_capacity(theirs.len());
        self.answer.queue = theirs.into();
        self.state = ResponderState::Answering;
        Ok(())
    }

    /// The next message to send, if any: call until `None` after each
    /// [`Responder::handle`]. Each is bounded (about
    /// [`CHANGES_BATCH_BYTES`]); the rest of the work stays queued here.
    pub fn poll_send(&mut self, replica: &impl Replica) -> Result<Option<SyncMessage>, SyncError> {
        if let Some(m) = self.outbox.pop_front() {
            return Ok(Some(m));
        }
        if self.state != ResponderState::Answering {
            return Ok(None);
        }
        let space = self.space;
        let second_pass = self.second_pass;
        let mine = &mut self.mine;
        let unchanged = &mut self.unchanged;
        let next = self.answer.next_message(|rh| {
            let record = RecordId::from_bytes(rh.record);
            let ours = replica.heads(space, record).map_err(SyncError::Replica)?;
            let Some(ours) = ours else {
                mine.push(RecordHeads {
                    record: rh.record,
                    heads: Vec::new(),
                });
                return Ok(Vec::new());
            };
            if same_heads(&ours, &rh.heads) {
                // It differed when reconciled, and a change that arrived
                // meanwhile (gossip, another session) made it equal: answer
                // with nothing to send. Only a few records can race like
                // that; naming many that do not differ is an attack.
                *unchanged += 1;
                if *unchanged > MAX_UNCHANGED_PER_SESSION {
                    return Err(SyncError::Protocol(format!(
                        "record {record} was named but does not differ, and so were {MAX_UNCHANGED_PER_SESSION} others"
                    )));
                }
                mine.push(RecordHeads {
                    record: rh.record,
                    heads: ours,
                });
                return Ok(Vec::new());
            }
            mine.push(RecordHeads {
                record: rh.record,
                heads: ours,
            });
            if second_pass {
                // Named again: the initiator has sent what it could, and
                // its list holds ancestors of its heads. Whatever we
                // still do not know (a change we refused, or one still
                // waiting), we send what its list allows, so that nothing
                // stalls.
                return replica
                    .changes_for(space, record, &rh.heads)
                    .map_err(SyncError::Replica);
            }
            // The first time: if the initiator has changes we have not
            // seen, we cannot tell what it lacks. We send nothing; our
            // heads tell it where we stand, and it names the record again
            // if it cannot tell either.
            Ok(replica
                .changes_if_known(space, record, &rh.heads)
                .map_err(SyncError::Replica)?
                .unwrap_or_default())
        })?;
        if let Some(batch) = next {
            self.stats.changes_sent += changes_in(&batch);
            return Ok(Some(SyncMessage::Changes(batch)));
        }
        self.state = ResponderState::AwaitingChanges;
        Ok(Some(SyncMessage::Heads(std::mem::take(&mut self.mine))))
    }
}

/// Messages and bytes a session exchanged.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub messages: usize,
    pub bytes: usize,
    /// The largest frame.
    pub largest: usize,
    /// Each side's counts.
    pub initiator: SessionStats,
    pub responder: SessionStats,
}

/// Runs a whole session between two replicas in this thread, passing each
/// message on as soon as it is produced: for tests and simulations (the
/// daemon runs the same state machines over QUIC streams).
pub fn run_in_memory(
    space: SpaceId,
    initiator: &mut impl Replica,
    responder: &mut impl Replica,
) -> Result<Traffic, SyncError> {
    let (mut init, first) = Initiator::start(space, initiator)?;
    let mut resp = Responder::new();
    let mut traffic = Traffic::default();
    let count = |m: &SyncMessage, t: &mut Traffic| -> Result<(), SyncError> {
        let frame = rapport_proto::wire::encode_frame(m)
            .map_err(|e| SyncError::Protocol(format!("cannot send {}: {e}", message_name(m))))?;
        t.messages += 1;
        t.bytes += frame.len();
        t.largest = t.largest.max(frame.len());
        Ok(())
    };
    for m in first {
        if resp.is_finished() {
            break; // a real responder closes the stream here
        }
        count(&m, &mut traffic)?;
        resp.handle(m, responder)?;
    }
    loop {
        let mut moved = false;
        while let Some(m) = resp.poll_send(responder)? {
            count(&m, &mut traffic)?;
            init.handle(m, initiator)?;
            moved = true;
        }
        while let Some(m) = init.poll_send(initiator)? {
            count(&m, &mut traffic)?;
            if !resp.is_finished() {
                resp.handle(m, responder)?;
            }
            moved = true;
        }
        if !moved {
            break;
        }
    }
    if !init.is_finished() || !resp.is_finished() {
        return Err(SyncError::Protocol(
            "the session stopped before it finished".into(),
        ));
    }
    traffic.initiator = init.stats;
    traffic.responder = resp.stats;
    Ok(traffic)
}

fn message_name(m: &SyncMessage) -> &'static str {
    match m {
        SyncMessage::Open { .. } => "Open",
        SyncMessage::Refused { .. } => "Refused",
        SyncMessage::Reconcile(_) => "Reconcile",
        SyncMessage::Heads(_) => "Heads",
        SyncMessage::Changes(_) => "Changes",
        SyncMessage::Done => "Done",
        SyncMessage::Addresses(_) => "Addresses",
    }
}

#[cfg(test)]
mod tests;
