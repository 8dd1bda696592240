//! Catch-up between two nodes, as sans-IO state machines.
//!
//! A session syncs one space. The initiator (the node that dialed) and the
//! responder first run range-based set reconciliation (negentropy) over
//! the space's documents, each item being a document id with a digest of
//! its heads: identical spaces finish in one round trip, and the cost
//! otherwise grows with the number of documents that differ, not with the
//! size of the space. Then, for the documents that differ only:
//!
//! ```text
//! I → R  Heads(I's heads)          R → I  Changes(what I lacks), Heads(R's heads)
//! I → R  Changes(what R lacks), then the next Heads chunk ... or Done
//! ```
//!
//! Only one side writes a large message at a time: both writing at once
//! could fill both flow-control windows and deadlock.
//!
//! The state machines never touch a socket, a disk or a clock: messages
//! go in, messages come out, and the node's storage is reached through
//! [`Replica`]. That makes whole sessions testable in one thread.

use std::collections::BTreeSet;

use negentropy::{Id, Negentropy, NegentropyStorageVector};
use rapport_model::{RecordId, SpaceId};
use rapport_proto::wire::{Hash, RecordChanges, RecordHeads, SyncMessage, WireId};
use sha2::{Digest, Sha256};

/// Most reconciliation rounds a session may take before it is abandoned.
pub const MAX_ROUNDS: usize = 64;
/// Negentropy frame limit: larger differences take more rounds instead.
const NEGENTROPY_FRAME: u64 = 512 * 1024;
/// Target size of one `Changes` message.
const CHANGES_BATCH_BYTES: usize = 1 << 20;
/// Records per `Heads` message (keeps each well under the frame limit).
const HEADS_PER_MESSAGE: usize = 10_000;

/// What a session needs from the node's storage and rules.
pub trait Replica {
    /// Every document of `space` with its heads.
    fn items(&self, space: SpaceId) -> Result<Vec<(RecordId, Vec<Hash>)>, String>;
    /// The heads of one document, if this node has it.
    fn heads(&self, space: SpaceId, record: RecordId) -> Result<Option<Vec<Hash>>, String>;
    /// Encoded signed changes of `record` that a peer whose heads are
    /// `peer_heads` lacks (all of them if the peer has none).
    fn changes_for(
        &self,
        space: SpaceId,
        record: RecordId,
        peer_heads: &[Hash],
    ) -> Result<Vec<Vec<u8>>, String>;
    /// Verifies, authorizes and stores changes from the peer. Rejections
    /// are the replica's to count and log; only storage failures are errors.
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
    /// Whether the peer of this session may sync `space` with us.
    fn may_sync(&self, space: SpaceId) -> bool;
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

/// What a state machine wants done after a message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub send: Vec<SyncMessage>,
    /// The session is over (after sending `send`).
    pub finished: bool,
}

/// Counts of one session, for status and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionStats {
    pub rounds: usize,
    pub differing: usize,
    pub changes_sent: usize,
    pub changes_received: usize,
}

/// The negentropy item of a document: creation time, then id and a digest
/// of its sorted heads, so that any change to a document changes its item.
pub fn item_id(record: RecordId, heads: &[Hash]) -> [u8; 32] {
    let mut sorted = heads.to_vec();
    sorted.sort();
    let mut h = Sha256::new();
    for head in &sorted {
        h.update(head);
    }
    let digest = h.finalize();
    let mut id = [0u8; 32];
    id[..16].copy_from_slice(&record.to_bytes());
    id[16..].copy_from_slice(&digest[..16]);
    id
}

fn record_of(item: &[u8; 32]) -> RecordId {
    let mut b = [0u8; 16];
    b.copy_from_slice(&item[..16]);
    RecordId::from_bytes(b)
}

fn negentropy_for(
    items: &[(RecordId, Vec<Hash>)],
) -> Result<Negentropy<'static, NegentropyStorageVector>, SyncError> {
    let neg_err = |e: negentropy::Error| SyncError::Protocol(format!("negentropy: {e}"));
    let mut storage = NegentropyStorageVector::with_capacity(items.len());
    for (record, heads) in items {
        storage
            .insert(
                record.unix_ms(),
                Id::from_byte_array(item_id(*record, heads)),
            )
            .map_err(neg_err)?;
    }
    storage.seal().map_err(neg_err)?;
    Negentropy::owned(storage, NEGENTROPY_FRAME).map_err(neg_err)
}

fn space_wire(space: SpaceId) -> Option<WireId> {
    match space {
        SpaceId::Shared(id) => Some(id.to_bytes()),
        SpaceId::Private => None,
    }
}

fn batch_changes(records: Vec<RecordChanges>) -> Vec<SyncMessage> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut size = 0;
    for r in records {
        let len: usize = r.changes.iter().map(Vec::len).sum::<usize>() + 32;
        if size + len > CHANGES_BATCH_BYTES && !batch.is_empty() {
            out.push(SyncMessage::Changes(std::mem::take(&mut batch)));
            size = 0;
        }
        size += len;
        batch.push(r);
    }
    if !batch.is_empty() {
        out.push(SyncMessage::Changes(batch));
    }
    out
}

/// Changes the peer lacks, for each record it sent heads of.
fn changes_for_heads(
    replica: &impl Replica,
    space: SpaceId,
    peer: &[RecordHeads],
) -> Result<Vec<RecordChanges>, SyncError> {
    let mut out = Vec::new();
    for rh in peer {
        let record = RecordId::from_bytes(rh.record);
        let changes = replica
            .changes_for(space, record, &rh.heads)
            .map_err(SyncError::Replica)?;
        if !changes.is_empty() {
            out.push(RecordChanges {
                record: rh.record,
                changes,
            });
        }
    }
    Ok(out)
}

fn apply_all(
    replica: &mut impl Replica,
    space: SpaceId,
    batch: Vec<RecordChanges>,
    stats: &mut SessionStats,
) -> Result<(), SyncError> {
    for rc in batch {
        stats.changes_received += rc.changes.len();
        replica
            .apply(space, RecordId::from_bytes(rc.record), rc.changes)
            .map_err(SyncError::Replica)?;
    }
    replica.flush().map_err(SyncError::Replica)
}

#[derive(Debug, PartialEq, Eq)]
enum InitiatorState {
    Reconciling,
    AwaitingChanges,
    Finished,
}

/// The dialing side of a session.
pub struct Initiator {
    space: SpaceId,
    neg: Negentropy<'static, NegentropyStorageVector>,
    differing: BTreeSet<RecordId>,
    /// `Heads` messages not sent yet: one goes out per answer received, so
    /// that the two sides never both write large messages at once (which
    /// would deadlock on full flow-control windows).
    heads_to_send: Vec<Vec<RecordHeads>>,
    state: InitiatorState,
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
        let mut neg = negentropy_for(&items)?;
        let first = neg
            .initiate()
            .map_err(|e| SyncError::Protocol(format!("negentropy: {e}")))?;
        let me = Initiator {
            space,
            neg,
            differing: BTreeSet::new(),
            heads_to_send: Vec::new(),
            state: InitiatorState::Reconciling,
            stats: SessionStats {
                rounds: 1,
                ..Default::default()
            },
        };
        Ok((
            me,
            vec![
                SyncMessage::Open { space: wire },
                SyncMessage::Reconcile(first),
            ],
        ))
    }

    pub fn is_finished(&self) -> bool {
        self.state == InitiatorState::Finished
    }

    /// Handles one message from the responder.
    pub fn handle(
        &mut self,
        msg: SyncMessage,
        replica: &mut impl Replica,
    ) -> Result<Step, SyncError> {
        match (&self.state, msg) {
            (_, SyncMessage::Refused { reason }) => {
                self.state = InitiatorState::Finished;
                Err(SyncError::Refused(reason))
            }
            (InitiatorState::Reconciling, SyncMessage::Reconcile(m)) => {
                let (mut have, mut need) = (Vec::new(), Vec::new());
                let next = self
                    .neg
                    .reconcile_with_ids(&m, &mut have, &mut need)
                    .map_err(|e| SyncError::Protocol(format!("negentropy: {e}")))?;
                for id in have.iter().chain(&need) {
                    self.differing.insert(record_of(id.as_bytes()));
                }
                if let Some(next) = next {
                    self.stats.rounds += 1;
                    if self.stats.rounds > MAX_ROUNDS {
                        return Err(SyncError::TooManyRounds);
                    }
                    return Ok(Step {
                        send: vec![SyncMessage::Reconcile(next)],
                        finished: false,
                    });
                }
                self.stats.differing = self.differing.len();
                if self.differing.is_empty() {
                    self.state = InitiatorState::Finished;
                    return Ok(Step {
                        send: vec![SyncMessage::Done],
                        finished: true,
                    });
                }
                let mut heads = Vec::with_capacity(self.differing.len());
                for record in &self.differing {
                    heads.push(RecordHeads {
                        record: record.to_bytes(),
                        heads: replica
                            .heads(self.space, *record)
                            .map_err(SyncError::Replica)?
                            .unwrap_or_default(),
                    });
                }
                self.state = InitiatorState::AwaitingChanges;
                self.heads_to_send = heads
                    .chunks(HEADS_PER_MESSAGE)
                    .rev()
                    .map(<[_]>::to_vec)
                    .collect();
                let first = self.heads_to_send.pop().unwrap_or_default();
                Ok(Step {
                    send: vec![SyncMessage::Heads(first)],
                    finished: false,
                })
            }
            (InitiatorState::AwaitingChanges, SyncMessage::Changes(batch)) => {
                apply_all(replica, self.space, batch, &mut self.stats)?;
                Ok(Step::default())
            }
            (InitiatorState::AwaitingChanges, SyncMessage::Heads(theirs)) => {
                if theirs
                    .iter()
                    .any(|h| !self.differing.contains(&RecordId::from_bytes(h.record)))
                {
                    return Err(SyncError::Protocol(
                        "heads of a record that was not asked about".into(),
                    ));
                }
                let changes = changes_for_heads(replica, self.space, &theirs)?;
                self.stats.changes_sent += changes.iter().map(|c| c.changes.len()).sum::<usize>();
                let mut send = batch_changes(changes);
                let finished = match self.heads_to_send.pop() {
                    Some(next) => {
                        send.push(SyncMessage::Heads(next));
                        false
                    }
                    None => {
                        send.push(SyncMessage::Done);
                        self.state = InitiatorState::Finished;
                        true
                    }
                };
                Ok(Step { send, finished })
            }
            (state, msg) => Err(SyncError::Protocol(format!(
                "unexpected {} while {state:?}",
                message_name(&msg)
            ))),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ResponderState {
    AwaitingOpen,
    Reconciling,
    AwaitingChanges,
    Finished,
}

/// The dialed side of a session.
pub struct Responder {
    space: SpaceId,
    neg: Option<Negentropy<'static, NegentropyStorageVector>>,
    asked: BTreeSet<RecordId>,
    state: ResponderState,
    rounds: usize,
    refused: bool,
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
            asked: BTreeSet::new(),
            state: ResponderState::AwaitingOpen,
            rounds: 0,
            refused: false,
            stats: SessionStats::default(),
        }
    }

    pub fn space(&self) -> SpaceId {
        self.space
    }

    pub fn is_finished(&self) -> bool {
        self.state == ResponderState::Finished
    }

    /// Whether the session was refused (the peer may not sync the space).
    pub fn was_refused(&self) -> bool {
        self.refused
    }

    /// Handles one message from the initiator.
    pub fn handle(
        &mut self,
        msg: SyncMessage,
        replica: &mut impl Replica,
    ) -> Result<Step, SyncError> {
        match (&self.state, msg) {
            (ResponderState::AwaitingOpen, SyncMessage::Open { space }) => {
                let space = SpaceId::Shared(RecordId::from_bytes(space));
                self.space = space;
                if !replica.may_sync(space) {
                    self.refused = true;
                    self.state = ResponderState::Finished;
                    return Ok(Step {
                        send: vec![SyncMessage::Refused {
                            reason: replica.refusal_reason(space),
                        }],
                        finished: true,
                    });
                }
                let items = replica.items(space).map_err(SyncError::Replica)?;
                self.neg = Some(negentropy_for(&items)?);
                self.state = ResponderState::Reconciling;
                Ok(Step::default())
            }
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
                Ok(Step {
                    send: vec![SyncMessage::Reconcile(reply)],
                    finished: false,
                })
            }
            (
                ResponderState::Reconciling | ResponderState::AwaitingChanges,
                SyncMessage::Heads(theirs),
            ) => {
                self.stats.differing += theirs.len();
                let changes = changes_for_heads(replica, self.space, &theirs)?;
                self.stats.changes_sent += changes.iter().map(|c| c.changes.len()).sum::<usize>();
                let mut mine = Vec::with_capacity(theirs.len());
                for rh in &theirs {
                    let record = RecordId::from_bytes(rh.record);
                    self.asked.insert(record);
                    mine.push(RecordHeads {
                        record: rh.record,
                        heads: replica
                            .heads(self.space, record)
                            .map_err(SyncError::Replica)?
                            .unwrap_or_default(),
                    });
                }
                let mut send = batch_changes(changes);
                send.push(SyncMessage::Heads(mine));
                self.state = ResponderState::AwaitingChanges;
                Ok(Step {
                    send,
                    finished: false,
                })
            }
            (ResponderState::Reconciling | ResponderState::AwaitingChanges, SyncMessage::Done) => {
                self.state = ResponderState::Finished;
                Ok(Step {
                    send: vec![],
                    finished: true,
                })
            }
            (ResponderState::AwaitingChanges, SyncMessage::Changes(batch)) => {
                if batch
                    .iter()
                    .any(|c| !self.asked.contains(&RecordId::from_bytes(c.record)))
                {
                    return Err(SyncError::Protocol(
                        "changes of a record that was not discussed".into(),
                    ));
                }
                apply_all(replica, self.space, batch, &mut self.stats)?;
                Ok(Step::default())
            }
            (state, msg) => Err(SyncError::Protocol(format!(
                "unexpected {} while {state:?}",
                message_name(&msg)
            ))),
        }
    }
}

/// Messages and bytes a session exchanged.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub messages: usize,
    pub bytes: usize,
}

/// Runs a whole session between two replicas in this thread, passing
/// messages directly: for tests and simulations (the daemon runs the same
/// state machines over QUIC streams).
pub fn run_in_memory(
    space: SpaceId,
    initiator: &mut impl Replica,
    responder: &mut impl Replica,
) -> Result<Traffic, SyncError> {
    let (mut init, first) = Initiator::start(space, initiator)?;
    let mut resp = Responder::new();
    let mut traffic = Traffic::default();
    let count = |m: &SyncMessage, t: &mut Traffic| {
        t.messages += 1;
        t.bytes += rapport_proto::wire::encode_frame(m).map_or(0, |f| f.len());
    };
    let mut to_resp = first;
    loop {
        let mut to_init = Vec::new();
        for m in to_resp.drain(..) {
            if resp.is_finished() {
                break; // a real responder closes the stream here
            }
            count(&m, &mut traffic);
            to_init.extend(resp.handle(m, responder)?.send);
        }
        if to_init.is_empty() {
            break;
        }
        for m in to_init {
            count(&m, &mut traffic);
            to_resp.extend(init.handle(m, initiator)?.send);
        }
        if to_resp.is_empty() {
            break;
        }
    }
    if !init.is_finished() || !resp.is_finished() {
        return Err(SyncError::Protocol(
            "the session stopped before it finished".into(),
        ));
    }
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
    }
}

#[cfg(test)]
mod tests;
