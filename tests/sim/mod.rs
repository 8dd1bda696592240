//! A deterministic simulation of a group of Rapport nodes.
//!
//! Everything runs in one thread, in virtual time: real [`Repo`]s (real
//! sled stores, real signatures, real Automerge, the real rules) talk
//! through the real sans-IO catch-up state machines
//! ([`rapport_sync::Initiator`] / [`rapport_sync::Responder`]), but every
//! message crosses a simulated network that a seeded scheduler controls.
//! Nodes get a virtual clock and a seeded random source
//! ([`rapport_node::env::Environment`]), so a seed replays a run exactly:
//! same keys, ids, timestamps, change hashes, and the same schedule.
//!
//! Each node decides when to catch up with whom through the daemon's own
//! [`rapport_sync::Scheduler`] (periodic rounds, announcements it could not
//! apply, coalescing per peer, retries), on the virtual clock; the
//! simulation only opens the sessions it decides and reports how they
//! ended. A trigger that arrives while its pair's session runs must get a
//! follow-up session (the coalescing rule), and no pair ever runs two
//! sessions at once: the run fails otherwise.
//!
//! What the scheduler does to the network while faults are on: delays every
//! message (so gossip arrives in any order), drops gossip, cuts sessions
//! (a dropped session message is a lost connection: both ends abandon the
//! session), duplicates session messages (the receiver must refuse the
//! out-of-place copy without harm), splits the nodes into two partitions
//! and heals them, and crashes nodes: a crashed node loses everything it
//! held in memory and its sessions, and restarts later from its store (or,
//! a third of the time, with its store destroyed: rebuilt from its journal).
//!
//! The cast: Ann creates the space (admin), Ben is a second admin, Cat a
//! writer, Dan a writer whom Ann removes in the middle of the run (Dan
//! keeps writing; he does not know), Rex a reader who runs a modified
//! client, and Eve, whom Ben adds during the run and who joins from Ben.
//! Rex is also a writer in a second space, "Side", which Cat created and
//! shares with him and Eve. His client injects validly signed record
//! edits, a self-promotion to admin, a schema statement, changes with forged signatures,
//! replays of old changes, edits of the joint space's documents sent under
//! Side (to Cat, or to Eve before she has joined), floods of changes whose
//! dependencies never arrive, and catch-up requests that name a record
//! twice, name too many records, or name records that do not differ (and
//! answers that do not match what an honest initiator asked). In one run
//! of eight, honest writers put two notes of over 512 KiB in one record,
//! so that its history takes more than one catch-up message.
//!
//! Nodes move: a few times per run a member's network changes (a new
//! address generation). A dial (a session, or gossip) to a node at an
//! address older than its current one fails, so the others must learn the
//! new one: from the mover's own announcement, gossiped to the members it
//! knows; from the mover dialing them (a connection shows where it comes
//! from); or passed on by any member at the end of a catch-up session
//! (each side tells the other the newest addresses it knows of the
//! space's members, its own included). Only members learn addresses: a
//! node tells them only to those it counts as members, and takes them only
//! for the members it knows (and its inviter). A node that learns a newer
//! address tells its schedule ([`Scheduler::handle_address_learned`]); a
//! node that moves loses its connections and tells its own schedule
//! ([`Scheduler::handle_network_changed`]).

pub mod check;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use rapport_model::automerge::Change;
use rapport_model::{Edit, FieldValue, Kind, Member, RecordId, Role, SpaceId};
use rapport_node::env::Environment;
use rapport_node::repo::LocalChange;
use rapport_node::{OpenMode, Repo};
use rapport_proto::SignedChange;
use rapport_proto::wire::{self, RecordHeads, SyncMessage};
use rapport_sync::schedule::{self, Config, MAX_FOLLOW_UPS, Outcome, Scheduler, SessionId};
use rapport_sync::{HEADS_PER_MESSAGE, Initiator, Responder, SyncError};
use rapport_trust::{DeviceId, DeviceKey, KeyError};

use crate::common::Rng;

/// Each document of the space with its sorted heads.
pub type Items = Vec<(RecordId, Vec<[u8; 32]>)>;

/// Virtual time starts here (2026-01-01), in Unix milliseconds.
const EPOCH_MS: u64 = 1_767_225_600_000;

/// The nodes' `--sync-interval`: shorter than the daemon's 30 s because
/// the simulated runs are short (20 s of faults); still several times as
/// long as a simulated session, as 30 s is for a real one.
const SYNC_INTERVAL: Duration = Duration::from_secs(5);

fn schedule_config() -> Config {
    Config {
        interval: Some(SYNC_INTERVAL),
        session_timeout: schedule::SESSION_TIMEOUT,
    }
}

/// A node's clock (the world's virtual one) and its own seeded randomness.
struct SimEnv {
    clock: Arc<AtomicU64>,
    rng: Mutex<Rng>,
}

impl Environment for SimEnv {
    fn now(&self) -> Timestamp {
        let ms = EPOCH_MS + self.clock.load(AtomicOrdering::Relaxed);
        Timestamp::from_millisecond(ms as i64).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn fill(&self, buf: &mut [u8]) -> Result<(), KeyError> {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        for chunk in buf.chunks_mut(8) {
            let bytes = rng.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// What a node does in the story.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Creator,
    Admin,
    Writer,
    /// A writer removed mid-run, who keeps writing.
    Removed,
    /// A reader with a modified client.
    Hostile,
    /// A writer added mid-run.
    Late,
}

const CAST: [(&str, Part); 6] = [
    ("Ann", Part::Creator),
    ("Ben", Part::Admin),
    ("Cat", Part::Writer),
    ("Dan", Part::Removed),
    ("Rex", Part::Hostile),
    ("Eve", Part::Late),
];

/// How often each fault happens while faults are on, per mille.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// A gossip message is lost.
    pub gossip_drop: u64,
    /// A gossip message arrives twice.
    pub gossip_dup: u64,
    /// A session message is lost: the connection breaks.
    pub cut: u64,
    /// A session message arrives twice.
    pub dup: u64,
    /// A node crashes at one of its ticks.
    pub crash: u64,
    /// The network splits at a weather event (and heals at another).
    pub partition: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            gossip_drop: 150,
            gossip_dup: 50,
            cut: 15,
            dup: 10,
            crash: 25,
            partition: 400,
        }
    }
}

/// What happened in a run, for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub local_writes: u64,
    pub sessions: u64,
    pub sessions_refused: u64,
    pub sessions_broken: u64,
    pub messages: u64,
    pub bytes: u64,
    pub gossip: u64,
    pub gossip_dropped: u64,
    pub duplicated: u64,
    pub cuts: u64,
    pub crashes: u64,
    /// Crashes that also destroyed the store (rebuilt from the journal).
    pub rebuilds: u64,
    pub partitions: u64,
    /// Injections by the modified client that reached a node.
    pub hostile: u64,
    /// Edits of the joint space's documents Rex sent under Side.
    pub smuggled: u64,
    /// Changes in Rex's floods of changes that wait forever.
    pub flooded: u64,
    /// Catch-up requests (or answers) by Rex that an honest node refused.
    pub bad_requests: u64,
    /// Large notes honest writers saved.
    pub large_notes: u64,
    /// Schema statements admins made (each taking effect where made).
    pub schema_changes: u64,
    /// Times a record's history continued in the next `Changes` message.
    pub split_histories: u64,
    pub dial_failures: u64,
    /// Announcements heard while their pair's session ran, and sessions
    /// that followed a finished one at once (coalesced follow-ups).
    pub coalesced: u64,
    pub follow_ups: u64,
    /// Nodes that moved to a new address.
    pub moves: u64,
    /// Newer addresses nodes learned (announcements, dials, relays).
    pub addresses_learned: u64,
    /// Dials and gossip to an address the node had left.
    pub stale_dials: u64,
    /// Virtual milliseconds from the end of faults to convergence.
    pub converge_ms: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.local_writes += o.local_writes;
        self.sessions += o.sessions;
        self.sessions_refused += o.sessions_refused;
        self.sessions_broken += o.sessions_broken;
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.gossip += o.gossip;
        self.gossip_dropped += o.gossip_dropped;
        self.duplicated += o.duplicated;
        self.cuts += o.cuts;
        self.crashes += o.crashes;
        self.rebuilds += o.rebuilds;
        self.partitions += o.partitions;
        self.hostile += o.hostile;
        self.smuggled += o.smuggled;
        self.flooded += o.flooded;
        self.bad_requests += o.bad_requests;
        self.large_notes += o.large_notes;
        self.schema_changes += o.schema_changes;
        self.split_histories += o.split_histories;
        self.dial_failures += o.dial_failures;
        self.coalesced += o.coalesced;
        self.follow_ups += o.follow_ups;
        self.moves += o.moves;
        self.addresses_learned += o.addresses_learned;
        self.stale_dials += o.stale_dials;
        self.converge_ms = self.converge_ms.max(o.converge_ms);
    }
}

/// A change a node's user was told is saved.
#[derive(Debug, Clone)]
pub struct Acked {
    pub node: usize,
    pub record: RecordId,
    pub hash: [u8; 32],
}

/// A node learned a newer address of a member, and from whom.
#[derive(Debug, Clone, Copy)]
pub struct Learned {
    pub at: u64,
    pub learner: usize,
    pub subject: usize,
    pub teller: usize,
    /// The teller counted the learner a member when it told it.
    pub learner_member: bool,
    /// The teller counted the subject a member (or was the subject).
    pub subject_member: bool,
    /// The learner was ever added to the space by then.
    pub learner_added: bool,
}

struct SimNode {
    name: &'static str,
    part: Part,
    dir: PathBuf,
    env: Arc<SimEnv>,
    repo: Option<Repo>,
    device: DeviceId,
    key: DeviceKey,
    outbox: Arc<Mutex<Vec<LocalChange>>>,
    /// Whom a node that was just added catches up from (its ticket).
    inviter: Option<usize>,
    /// When to catch up with whom: the daemon's schedule, on the virtual
    /// clock; lost in a crash like the rest of its memory.
    sched: Scheduler<usize>,
    /// The earliest wake-up scheduled for `sched`.
    wake_at: Option<u64>,
    /// Per peer: sessions dialed since the pair was last idle in `sched`.
    chain: BTreeMap<usize, usize>,
    /// Its address generation: it moves to a new one.
    addr: u32,
    /// The newest address generation it knows of each node (its address
    /// book, which survives a crash).
    known: Vec<u32>,
}

#[derive(Clone)]
enum Packet {
    /// A node's own signed address announcement.
    Address {
        from: usize,
        addr: u32,
        /// The sender counted the receiver a member when it sent it (for
        /// the check that only members learn addresses).
        member: bool,
    },
    Gossip {
        from: usize,
        record: RecordId,
        heads: Vec<[u8; 32]>,
    },
    Session {
        id: u64,
        to_initiator: bool,
        frame: Vec<u8>,
    },
    /// Changes a modified client pushes at a node, under `space`.
    Inject {
        from: usize,
        space: SpaceId,
        record: RecordId,
        changes: Vec<Vec<u8>>,
    },
    /// A catch-up request (or answer) a modified client makes up.
    BadRequest { from: usize, kind: BadRequest },
}

/// The catch-up messages Rex's client makes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadRequest {
    /// `Heads` naming one record many times.
    Repeated,
    /// `Heads` naming more records than one message may.
    TooMany,
    /// `Heads` naming records with the node's own heads.
    NoDifference,
    /// An answer to an honest initiator's `Heads` that names other records.
    WrongAnswer,
}

enum Event {
    Tick(usize),
    Deliver {
        to: usize,
        packet: Packet,
    },
    /// A node's schedule asked to be woken now.
    Wake(usize),
    Restart(usize),
    Weather,
    RemoveDan,
    AddEve,
    /// A node's network changes: it gets a new address.
    Move(usize),
}

struct Timed {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Timed {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Timed {
    /// Earliest first (the heap is a max-heap).
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

struct Session {
    initiator: usize,
    responder: usize,
    /// The schedule's name for it; `None` for a join, which is dialed
    /// outside the schedule.
    dial: Option<SessionId>,
    /// An announcement from the responder that the initiator could not
    /// apply arrived while this session ran.
    triggered: bool,
    init: Initiator,
    resp: Responder,
    /// Last scheduled delivery per direction (to the responder, to the
    /// initiator): a stream delivers in order.
    last: [u64; 2],
    /// The last record of the last message per direction, if it was a
    /// `Changes` message: a record's history split across messages.
    last_changed: [Option<[u8; 16]>; 2],
}

/// How long a run lasts, in virtual milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Edits, membership changes and faults happen in `0..faulty_ms`.
    pub faulty_ms: u64,
    /// After that, the network is healed and every node is up; the nodes
    /// must converge within this long.
    pub settle_ms: u64,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            faulty_ms: 20_000,
            settle_ms: 60_000,
        }
    }
}

pub struct World {
    rng: Rng,
    clock: Arc<AtomicU64>,
    seq: u64,
    queue: BinaryHeap<Timed>,
    nodes: Vec<SimNode>,
    _tmp: tempfile::TempDir,
    space: RecordId,
    sessions: BTreeMap<u64, Session>,
    next_session: u64,
    /// Partition: the group of each node, while the network is split.
    groups: Option<Vec<u8>>,
    faults: Faults,
    faulty: bool,
    pub stats: Stats,
    pub acked: Vec<Acked>,
    /// Every address a node learned.
    pub learned: Vec<Learned>,
    /// Every signed change that crossed the network, by record.
    pub sent: BTreeSet<(RecordId, Vec<u8>)>,
    /// Changes Rex wrote as Cat (with his own signature), by record.
    forged: Vec<(RecordId, [u8; 32])>,
    /// The second space: Cat's, shared with Rex and Eve as writers.
    side: RecordId,
    /// Edits of the joint space's documents Rex sent under Side.
    pub smuggled: Vec<(RecordId, [u8; 32])>,
    /// Documents Rex flooded with changes that wait forever.
    pub flooded: BTreeSet<RecordId>,
    /// Tells Rex's flooded changes apart.
    flood_seq: u32,
    /// The record honest writers put large notes in, and how many more
    /// they may (two in one run of eight: they cost time).
    big: RecordId,
    large_left: u64,
    dan_removed: bool,
    eve_added: bool,
    /// (initiator, peer) of every dial the schedules made while handling
    /// the current event.
    dialed: Vec<(usize, usize)>,
}

fn now_ms(clock: &AtomicU64) -> u64 {
    clock.load(AtomicOrdering::Relaxed)
}

impl World {
    /// Creates the nodes and the space, with every initial member caught
    /// up: the starting point of every run.
    pub fn new(seed: u64, faults: Faults) -> Result<World, String> {
        let tmp = sim_tempdir()?;
        let clock = Arc::new(AtomicU64::new(0));
        let mut rng = Rng(seed);
        let mut nodes = Vec::new();
        for (i, (name, part)) in CAST.iter().enumerate() {
            let dir = tmp.path().join(name);
            let env = Arc::new(SimEnv {
                clock: clock.clone(),
                rng: Mutex::new(Rng(rng.next() ^ i as u64)),
            });
            let repo =
                Repo::open_in(&dir, OpenMode::Create, env.clone()).map_err(|e| e.to_string())?;
            repo.set_identity(Some((*name).into()), Some("Acme".into()))
                .map_err(|e| e.to_string())?;
            let (_, key) = rapport_node::datadir::load(&dir).map_err(|e| e.to_string())?;
            let outbox: Arc<Mutex<Vec<LocalChange>>> = Arc::default();
            let sink = outbox.clone();
            repo.set_observer(Arc::new(move |c| {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(c)
            }));
            nodes.push(SimNode {
                name,
                part: *part,
                dir,
                env,
                device: repo.device_id(),
                key,
                repo: Some(repo),
                outbox,
                inviter: None,
                sched: Scheduler::new(schedule_config()),
                wake_at: None,
                chain: BTreeMap::new(),
                addr: 0,
                known: vec![0; CAST.len()],
            });
        }
        let ann = nodes[0].repo.as_ref().ok_or("Ann is down")?;
        let space = ann.create_space("Joint").map_err(|e| e.to_string())?.id;
        for (i, role) in [
            (1, Role::Admin),
            (2, Role::Writer),
            (3, Role::Writer),
            (4, Role::Reader),
        ] {
            ann.add_member(space, member(&nodes[i], role))
                .map_err(|e| e.to_string())?;
        }
        let mut initial = Vec::new();
        for n in 0..3 {
            let view = ann
                .create(
                    Kind::Company,
                    SpaceId::Shared(space),
                    &[("name".into(), format!("Initial {n}"))],
                )
                .map_err(|e| e.to_string())?;
            initial.push(view.id);
        }
        // Side: Cat's space, where Rex and Eve are writers.
        let cat = nodes[2].repo.as_ref().ok_or("Cat is down")?;
        let side = cat.create_space("Side").map_err(|e| e.to_string())?.id;
        for i in [4, 5] {
            cat.add_member(side, member(&nodes[i], Role::Writer))
                .map_err(|e| e.to_string())?;
        }
        let mut world = World {
            rng,
            clock,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            _tmp: tmp,
            space,
            sessions: BTreeMap::new(),
            next_session: 0,
            groups: None,
            faults,
            faulty: false,
            stats: Stats::default(),
            acked: Vec::new(),
            learned: Vec::new(),
            sent: BTreeSet::new(),
            forged: Vec::new(),
            side,
            smuggled: Vec::new(),
            flooded: BTreeSet::new(),
            flood_seq: 0,
            big: initial[0],
            large_left: 0,
            dan_removed: false,
            eve_added: false,
            dialed: Vec::new(),
        };
        if world.rng.below(8) == 0 {
            world.large_left = 2;
        }
        // Side's own changes are nobody's acknowledged joint-space writes.
        world.nodes[2]
            .outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        world.collect_local(0);
        for i in 1..5 {
            world.sync_directly(world.space_id(), i, 0)?;
        }
        for i in [4, 5] {
            world.sync_directly(SpaceId::Shared(side), i, 2)?;
        }
        Ok(world)
    }

    fn repo(&self, n: usize) -> Option<&Repo> {
        self.nodes[n].repo.as_ref()
    }

    /// Node `n`'s store, which must be up.
    fn up(&self, n: usize) -> Result<&Repo, String> {
        self.repo(n)
            .ok_or_else(|| format!("{} is down", self.nodes[n].name))
    }

    fn space_id(&self) -> SpaceId {
        SpaceId::Shared(self.space)
    }

    fn now(&self) -> u64 {
        now_ms(&self.clock)
    }

    fn schedule(&mut self, after: u64, event: Event) {
        self.schedule_at(self.now() + after, event);
    }

    fn schedule_at(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Timed {
            at,
            seq: self.seq,
            event,
        });
    }

    /// A whole fault-free session, outside the schedule (setup only).
    fn sync_directly(&mut self, space: SpaceId, a: usize, b: usize) -> Result<(), String> {
        let (ra, rb) = (self.up(a)?, self.up(b)?);
        let mut ia = ra.replica(self.nodes[b].device);
        let mut ib = rb.replica(self.nodes[a].device);
        rapport_sync::run_in_memory(space, &mut ia, &mut ib)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Runs the plan: faults and edits first, then healing until every
    /// node that should agree does. Invariants are checked by the caller
    /// ([`check`]).
    pub fn run(&mut self, plan: Plan) -> Result<(), String> {
        self.faulty = true;
        for n in 0..self.nodes.len() {
            self.start_schedule(n)?;
        }
        for n in 0..self.nodes.len() {
            let first = self.rng.below(1000);
            self.schedule(first, Event::Tick(n));
        }
        let weather = self.rng.range(1000, 4000);
        self.schedule(weather, Event::Weather);
        let remove_at = self.rng.range(plan.faulty_ms / 5, plan.faulty_ms * 7 / 10);
        self.schedule(remove_at, Event::RemoveDan);
        let add_at = self.rng.range(plan.faulty_ms / 10, plan.faulty_ms * 6 / 10);
        self.schedule(add_at, Event::AddEve);
        for _ in 0..self.rng.range(1, 4) {
            let at = self.rng.range(plan.faulty_ms / 10, plan.faulty_ms * 9 / 10);
            let n = self.rng.below(self.nodes.len() as u64) as usize;
            self.schedule(at, Event::Move(n));
        }

        let end = plan.faulty_ms + plan.settle_ms;
        let mut next_check = plan.faulty_ms;
        while let Some(Timed { at, event, .. }) = self.queue.pop() {
            if self.faulty && at >= plan.faulty_ms {
                self.clock.store(plan.faulty_ms, AtomicOrdering::Relaxed);
                self.heal()?;
            }
            if at > end {
                return Err(format!(
                    "nodes did not converge within {} s of the network healing:\n{}",
                    plan.settle_ms / 1000,
                    self.divergence()
                ));
            }
            self.clock
                .store(at.max(self.now()), AtomicOrdering::Relaxed);
            self.handle(event)?;
            if !self.faulty && self.now() >= next_check {
                next_check = self.now() + 100;
                if self.converged()? {
                    self.stats.converge_ms = self.now() - plan.faulty_ms;
                    return Ok(());
                }
            }
        }
        Err("the schedule ran dry".into())
    }

    /// The end of faults: the network heals, every node comes back up.
    fn heal(&mut self) -> Result<(), String> {
        self.faulty = false;
        if self.groups.take().is_some() {
            self.neighbors_up()?;
        }
        for n in 0..self.nodes.len() {
            if self.nodes[n].repo.is_none() {
                self.schedule(0, Event::Restart(n));
            }
        }
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Result<(), String> {
        self.dialed.clear();
        match event {
            Event::Tick(n) => self.tick(n)?,
            Event::Deliver { to, packet } => self.deliver(to, packet)?,
            Event::Wake(n) => self.wake(n)?,
            Event::Restart(n) => self.restart(n)?,
            Event::Weather => self.weather()?,
            Event::RemoveDan => self.remove_dan()?,
            Event::AddEve => self.add_eve()?,
            Event::Move(n) => self.move_node(n)?,
        }
        Ok(())
    }

    // ----- nodes -----------------------------------------------------------

    fn tick(&mut self, n: usize) -> Result<(), String> {
        if self.nodes[n].repo.is_none() {
            return Ok(()); // its restart schedules the next tick
        }
        if self.faulty && self.rng.chance(self.faults.crash) {
            return self.crash(n);
        }
        if self.faulty && self.rng.chance(600) {
            self.local_op(n)?;
        }
        // Catch-up is the schedule's; a node added to the space that has
        // not caught up yet redeems its ticket, which syncs with the
        // inviter directly (as `Node::join` does).
        if self.believed_peers(n).is_empty()
            && let Some(inviter) = self.nodes[n].inviter
            && !self
                .sessions
                .values()
                .any(|s| s.initiator == n && s.dial.is_none())
        {
            self.open_session(n, inviter, None)?;
        }
        let next = self.rng.range(400, 1600);
        self.schedule(next, Event::Tick(n));
        Ok(())
    }

    /// The other members as node `n` knows them.
    fn believed_peers(&self, n: usize) -> Vec<usize> {
        let Some(view) = self
            .repo(n)
            .and_then(|r| r.space(self.space).ok().flatten())
        else {
            return Vec::new();
        };
        (0..self.nodes.len())
            .filter(|&p| p != n && view.is_member(&self.nodes[p].device.to_string()))
            .collect()
    }

    fn crash(&mut self, n: usize) -> Result<(), String> {
        self.stats.crashes += 1;
        self.nodes[n].repo = None;
        self.nodes[n]
            .outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let ids: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.initiator == n || s.responder == n)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.end_session(id, Outcome::Failed)?;
        }
        self.nodes[n].sched = Scheduler::new(schedule_config());
        self.nodes[n].wake_at = None;
        self.nodes[n].chain.clear();
        // A third of the crashes also destroy the store: the node must
        // rebuild it from its journal, and then judge every change as
        // before (the convergence check at the end is the judge).
        if self.rng.below(3) == 0 {
            let store = self.nodes[n].dir.join("store");
            if std::fs::remove_dir_all(&store).is_ok() {
                self.stats.rebuilds += 1;
            }
        }
        let back = self.rng.range(1000, 6000);
        self.schedule(back, Event::Restart(n));
        Ok(())
    }

    fn restart(&mut self, n: usize) -> Result<(), String> {
        if self.nodes[n].repo.is_some() {
            return Ok(());
        }
        let node = &self.nodes[n];
        let repo = Repo::open_in(&node.dir, OpenMode::Existing, node.env.clone())
            .map_err(|e| format!("{} does not open after a crash: {e}", node.name))?;
        let sink = node.outbox.clone();
        repo.set_observer(Arc::new(move |c| {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(c)
        }));
        // Nothing this node acknowledged may be missing after the crash.
        for a in self.acked.iter().filter(|a| a.node == n) {
            if repo
                .store()
                .signed_change(&a.hash)
                .map_err(|e| e.to_string())?
                .is_none()
            {
                return Err(format!(
                    "{} lost its acknowledged change {} of record {} in a crash",
                    node.name,
                    rapport_proto::hex(&a.hash[..6]),
                    a.record
                ));
            }
        }
        self.nodes[n].repo = Some(repo);
        self.start_schedule(n)?;
        // The others see it come back as a gossip neighbour.
        for p in 0..self.nodes.len() {
            if p != n && self.reachable(p, n) {
                let (now, space) = (self.time(), self.space_id());
                self.nodes[p].sched.handle_neighbor_up(space, n, now);
                self.pump(p)?;
            }
        }
        let next = self.rng.range(0, 500);
        self.schedule(next, Event::Tick(n));
        Ok(())
    }

    fn weather(&mut self) -> Result<(), String> {
        if !self.faulty {
            return Ok(());
        }
        if self.groups.is_none() && self.rng.chance(self.faults.partition) {
            let mut groups: Vec<u8> = (0..self.nodes.len())
                .map(|_| self.rng.below(2) as u8)
                .collect();
            groups[0] = 0;
            let last = groups.len() - 1;
            groups[last] = 1;
            self.groups = Some(groups);
            self.stats.partitions += 1;
        } else if self.groups.is_some() && self.rng.chance(500) {
            self.groups = None;
            self.neighbors_up()?;
        }
        let next = self.rng.range(1000, 4000);
        self.schedule(next, Event::Weather);
        Ok(())
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        self.nodes[a].repo.is_some()
            && self.nodes[b].repo.is_some()
            && self.groups.as_ref().is_none_or(|g| g[a] == g[b])
    }

    fn remove_dan(&mut self) -> Result<(), String> {
        let Some(ann) = self.repo(0) else {
            self.schedule(500, Event::RemoveDan);
            return Ok(());
        };
        ann.remove_members(self.space, &self.nodes[3].device.to_string())
            .map_err(|e| format!("Ann could not remove Dan: {e}"))?;
        self.dan_removed = true;
        self.collect_local(0);
        Ok(())
    }

    fn add_eve(&mut self) -> Result<(), String> {
        let Some(ben) = self.repo(1) else {
            self.schedule(500, Event::AddEve);
            return Ok(());
        };
        ben.add_member(self.space, member(&self.nodes[5], Role::Writer))
            .map_err(|e| format!("Ben could not add Eve: {e}"))?;
        self.eve_added = true;
        self.nodes[5].inviter = Some(1);
        self.collect_local(1);
        // Her ticket names Ben where he is now.
        let addr = self.nodes[1].addr;
        if self.nodes[5].known[1] < addr {
            let learner_member = self.believed_peers(1).contains(&5);
            self.learned.push(Learned {
                at: self.now(),
                learner: 5,
                subject: 1,
                teller: 1,
                learner_member,
                subject_member: true,
                learner_added: true,
            });
            self.nodes[5].known[1] = addr;
        }
        Ok(())
    }

    /// Node `n`'s network changes: a new address. Its connections break,
    /// its schedule hears of it, and it announces where it is now to the
    /// members it knows. Only a node that holds the space moves (a node
    /// yet to join has nobody to tell).
    fn move_node(&mut self, n: usize) -> Result<(), String> {
        if !self.faulty || self.nodes[n].repo.is_none() || self.believed_peers(n).is_empty() {
            return Ok(());
        }
        self.stats.moves += 1;
        self.nodes[n].addr += 1;
        let addr = self.nodes[n].addr;
        self.nodes[n].known[n] = addr;
        let ids: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.initiator == n || s.responder == n)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.end_session(id, Outcome::Failed)?;
        }
        let now = self.time();
        self.nodes[n].sched.handle_network_changed(now);
        let members = self.believed_peers(n);
        for &p in &members {
            let member = members.contains(&p);
            self.send_gossip(
                n,
                p,
                Packet::Address {
                    from: n,
                    addr,
                    member,
                },
            );
        }
        self.pump(n)
    }

    /// Node `learner` hears from `teller` that `subject` is at `addr`. It
    /// takes addresses only of the members it knows (and of its inviter),
    /// and tells its schedule of a newer one.
    fn learn(
        &mut self,
        learner: usize,
        subject: usize,
        teller: usize,
        addr: u32,
        learner_member: bool,
    ) -> Result<(), String> {
        if learner == subject
            || self.nodes[learner].known[subject] >= addr
            || self.nodes[learner].repo.is_none()
        {
            return Ok(());
        }
        if !self.believed_peers(learner).contains(&subject)
            && self.nodes[learner].inviter != Some(subject)
        {
            return Ok(());
        }
        let subject_member = subject == teller || self.believed_peers(teller).contains(&subject);
        let learner_added = self.nodes[learner].part != Part::Late || self.eve_added;
        self.learned.push(Learned {
            at: self.now(),
            learner,
            subject,
            teller,
            learner_member,
            subject_member,
            learner_added,
        });
        self.stats.addresses_learned += 1;
        self.nodes[learner].known[subject] = addr;
        let now = self.time();
        self.nodes[learner]
            .sched
            .handle_address_learned(subject, now);
        self.pump(learner)
    }

    /// At the end of a catch-up session, `from` tells `to` the newest
    /// addresses it knows of the space's members (its own included), if
    /// it counts `to` a member.
    fn relay_addresses(&mut self, from: usize, to: usize) -> Result<(), String> {
        if self.nodes[from].repo.is_none() || self.nodes[to].repo.is_none() {
            return Ok(());
        }
        let members = self.believed_peers(from);
        let member = members.contains(&to);
        if !member {
            return Ok(());
        }
        for m in members.into_iter().chain([from]) {
            let addr = self.nodes[from].known[m];
            self.learn(to, m, from, addr, member)?;
        }
        Ok(())
    }

    // ----- what users do ---------------------------------------------------

    fn local_op(&mut self, n: usize) -> Result<(), String> {
        if self.nodes[n].part == Part::Hostile {
            return self.hostile_op(n);
        }
        let space = self.space_id();
        let Some(repo) = self.nodes[n].repo.as_ref() else {
            return Ok(());
        };
        if repo.space(self.space).ok().flatten().is_none() {
            return Ok(()); // not joined yet
        }
        let name = self.nodes[n].name;
        // In some runs, notes of over 512 KiB (below the limit of one
        // change) in the same record, so that its history takes more than
        // one catch-up message.
        if self.large_left > 0 && self.rng.chance(60) {
            self.large_left -= 1;
            let size = self.rng.range(520 << 10, 600 << 10) as usize;
            let mut note = format!("{name} {} ", self.rng.below(1000)).repeat(size / 8 + 1);
            note.truncate(size);
            if repo
                .edit(&self.big.to_string(), &[("address".into(), note)], &[])
                .is_ok()
            {
                self.stats.local_writes += 1;
                self.stats.large_notes += 1;
            }
            self.collect_local(n);
            return Ok(());
        }
        // The record with the large notes is left to them: loading and
        // saving it is what costs the simulation time.
        // (`list` gives either the live or the deleted records: both.)
        let mut companies = repo
            .list(Kind::Company, &[], false)
            .map_err(|e| e.to_string())?;
        companies.extend(
            repo.list(Kind::Company, &[], true)
                .map_err(|e| e.to_string())?,
        );
        companies.retain(|c| c.id != self.big);
        // Admins change the space's fields now and then, concurrently and
        // while apart: the same field added twice (with other choices, or
        // another type), relabelled, retired and restored.
        if matches!(self.nodes[n].part, Part::Creator | Part::Admin) && self.rng.chance(80) {
            let change = SCHEMA_CHANGES[self.rng.below(SCHEMA_CHANGES.len() as u64) as usize]
                .replace("NAME", name);
            let change = serde_json::from_str(&change).map_err(|e| e.to_string())?;
            // Refused when it would take no effect on this node's schema.
            if repo.change_schema(space, change).is_ok() {
                self.stats.local_writes += 1;
                self.stats.schema_changes += 1;
            }
            self.collect_local(n);
            return Ok(());
        }
        let roll = self.rng.below(100);
        let result = if roll < 25 || companies.is_empty() {
            let k = self.rng.below(1000);
            repo.create(
                Kind::Company,
                space,
                &[("name".into(), format!("{name} {k}"))],
            )
            .map(|_| ())
        } else if roll < 30 {
            // A record of the space's own kind, where this node's schema
            // has it (not yet, or retired: refused, as the user would see).
            let contract = Kind::custom("contract").ok_or("a kind name")?;
            let k = self.rng.below(1000);
            repo.create(contract, space, &[("name".into(), format!("{name} {k}"))])
                .map(|_| ())
        } else {
            let target = &companies[self.rng.below(companies.len() as u64) as usize];
            let id = target.id.to_string();
            if roll < 80 {
                let field = ["industry", "owner", "address"][self.rng.below(3) as usize];
                let value = format!("{name} {}", self.rng.below(4));
                repo.edit(&id, &[(field.into(), value)], &[]).map(|_| ())
            } else if roll < 88 {
                // A custom field, if this node's schema has it now.
                let (field, value) = [("seats", "12"), ("tier", "silver"), ("tier", "gold")]
                    [self.rng.below(3) as usize];
                repo.edit(&id, &[(field.into(), value.into())], &[])
                    .map(|_| ())
            } else if target.deleted {
                repo.restore(&id).map(|_| ())
            } else {
                repo.delete(&id).map(|_| ())
            }
        };
        // A refusal (a deleted record, a removal this node heard of) is
        // what the user would see; it acknowledges nothing.
        if result.is_ok() {
            self.stats.local_writes += 1;
        }
        self.collect_local(n);
        Ok(())
    }

    /// Acknowledges node `n`'s new local changes and gossips their heads.
    fn collect_local(&mut self, n: usize) {
        let changes: Vec<LocalChange> = std::mem::take(
            &mut *self.nodes[n]
                .outbox
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        // A change of the space document may add or remove members: the
        // daemon tells its schedule.
        if !changes.is_empty() {
            self.refresh_members(n);
        }
        for c in changes {
            for bytes in &c.changes {
                if let Some(hash) = change_hash(bytes) {
                    self.acked.push(Acked {
                        node: n,
                        record: c.record,
                        hash,
                    });
                }
            }
            for p in self.believed_peers(n) {
                self.gossip(n, p, c.record, c.heads.clone());
            }
        }
    }

    fn gossip(&mut self, from: usize, to: usize, record: RecordId, heads: Vec<[u8; 32]>) {
        self.send_gossip(
            from,
            to,
            Packet::Gossip {
                from,
                record,
                heads,
            },
        );
    }

    /// Sends a gossip message from `from` to `to`, which it reaches only
    /// at the address it is at now.
    fn send_gossip(&mut self, from: usize, to: usize, packet: Packet) {
        self.stats.gossip += 1;
        if self.nodes[from].known[to] < self.nodes[to].addr {
            self.stats.stale_dials += 1;
            return;
        }
        if self.faulty && self.rng.chance(self.faults.gossip_drop) {
            self.stats.gossip_dropped += 1;
            return;
        }
        let copies = if self.faulty && self.rng.chance(self.faults.gossip_dup) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.range(5, 400);
            self.schedule(
                delay,
                Event::Deliver {
                    to,
                    packet: packet.clone(),
                },
            );
        }
    }

    /// Rex's modified client: changes no honest node may apply, and
    /// catch-up requests no honest node may answer.
    fn hostile_op(&mut self, n: usize) -> Result<(), String> {
        let Some(repo) = self.nodes[n].repo.as_ref() else {
            return Ok(());
        };
        let mut companies = repo
            .list(Kind::Company, &[], false)
            .map_err(|e| e.to_string())?;
        companies.retain(|c| c.id != self.big);
        let roll = self.rng.below(100);
        let me = &self.nodes[n];
        let mut forged = None;
        let mut space = self.space_id();
        let mut to = None;
        let (record, changes) = if roll < 25 && !companies.is_empty() {
            // A validly signed edit by a reader.
            let target = companies[self.rng.below(companies.len() as u64) as usize].id;
            let change = signed_edit(repo, &me.key, target, "industry", "defaced")?;
            (target, vec![change.encode()])
        } else if roll < 31 {
            // A self-promotion to admin, validly signed by a non-admin.
            let signed = self_promotion(repo, me, self.space)?;
            (self.space, vec![signed.encode()])
        } else if roll < 37 {
            // A schema statement, validly signed by a non-admin.
            let signed = forged_schema(repo, me, self.space)?;
            (self.space, vec![signed.encode()])
        } else if roll < 50 && !companies.is_empty() {
            // An edit written as Cat, with Rex's signature: it must fail
            // signature verification.
            let target = companies[self.rng.below(companies.len() as u64) as usize].id;
            let cat = self.nodes[2].device;
            let change = edit_as(repo, cat.actor_id(), target, "owner", "forged")?;
            let signature = signed_edit(repo, &me.key, target, "owner", "forged")?.signature;
            forged = Some((target, change.hash().0));
            let envelope = SignedChange {
                author: cat.0,
                signature,
                change: change.raw_bytes().to_vec(),
            };
            (target, vec![envelope.encode()])
        } else if roll < 62 {
            // A replay of an old change.
            if self.sent.is_empty() {
                return Ok(());
            }
            let k = self.rng.below(self.sent.len() as u64) as usize;
            let (record, bytes) = self.sent.iter().nth(k).cloned().ok_or("no change")?;
            (record, vec![bytes])
        } else if roll < 76 {
            // Smuggling: an edit of a joint-space document on top of its
            // heads, validly signed, sent under Side, where Rex may write,
            // to Cat or to Eve (who may not have joined the joint space).
            let target = if companies.is_empty() || self.rng.below(4) == 0 {
                self.space
            } else {
                companies[self.rng.below(companies.len() as u64) as usize].id
            };
            let signed = if target == self.space {
                self_promotion(repo, me, self.space)?
            } else {
                signed_edit(repo, &me.key, target, "industry", "smuggled")?
            };
            let hash = change_hash(&signed.encode()).ok_or("no hash")?;
            self.smuggled.push((target, hash));
            self.stats.smuggled += 1;
            space = SpaceId::Shared(self.side);
            to = Some([2, 5][self.rng.below(2) as usize]);
            (target, vec![signed.encode()])
        } else if roll < 86 {
            // A flood: validly signed changes to the space document or a
            // record, each on dependencies that never arrive.
            let target = if companies.is_empty() || self.rng.below(2) == 0 {
                self.space
            } else {
                companies[self.rng.below(companies.len() as u64) as usize].id
            };
            let template = if target == self.space {
                let mut doc = repo
                    .load_doc(self.space)
                    .map_err(|e| e.to_string())?
                    .with_actor(me.device.actor_id());
                rapport_model::automerge::transaction::Transactable::put(
                    &mut doc,
                    rapport_model::automerge::ROOT,
                    "name",
                    "Flood",
                )
                .map_err(|e| e.to_string())?;
                doc.commit();
                doc.get_last_local_change().ok_or("no change")?
            } else {
                edit_as(repo, me.device.actor_id(), target, "industry", "flood")?
            }
            .decode();
            let count = self.rng.range(50, 300);
            let mut changes = Vec::new();
            for k in 0..count {
                self.flood_seq += 1;
                let mut change = template.clone();
                let mut dep = [0xfe; 32];
                dep[..4].copy_from_slice(&self.flood_seq.to_be_bytes());
                change.deps = vec![rapport_model::automerge::ChangeHash(dep)];
                change.seq += k + 1;
                let signed = me
                    .key
                    .sign_change(&Change::from(change))
                    .map_err(|e| e.to_string())?;
                changes.push(signed.encode());
            }
            self.flooded.insert(target);
            self.stats.flooded += count;
            (target, changes)
        } else {
            // A catch-up request, or answer, an honest node must refuse.
            let kind = match self.rng.below(4) {
                0 => BadRequest::Repeated,
                1 => BadRequest::TooMany,
                2 => BadRequest::NoDifference,
                _ => BadRequest::WrongAnswer,
            };
            let targets: Vec<usize> = (0..self.nodes.len()).filter(|&t| t != n).collect();
            let to = targets[self.rng.below(targets.len() as u64) as usize];
            let delay = self.rng.range(5, 100);
            self.schedule(
                delay,
                Event::Deliver {
                    to,
                    packet: Packet::BadRequest { from: n, kind },
                },
            );
            return Ok(());
        };
        let to = match to {
            Some(to) => to,
            None => {
                let targets: Vec<usize> = (0..self.nodes.len()).filter(|&t| t != n).collect();
                targets[self.rng.below(targets.len() as u64) as usize]
            }
        };
        self.forged.extend(forged);
        let delay = self.rng.range(5, 100);
        for c in &changes {
            self.sent.insert((record, c.clone()));
        }
        self.schedule(
            delay,
            Event::Deliver {
                to,
                packet: Packet::Inject {
                    from: n,
                    space,
                    record,
                    changes,
                },
            },
        );
        Ok(())
    }

    /// Rex's made-up catch-up message `kind` reaches node `to`: the session
    /// must end in a protocol error, before the node does any work for it
    /// (the node keeps serving; the convergence check sees to that).
    fn bad_request(&mut self, from: usize, to: usize, kind: BadRequest) -> Result<(), String> {
        if !self.reachable(from, to) {
            return Ok(());
        }
        let times = self.rng.range(2, 5000) as usize;
        let over = self.rng.range(1, 100) as usize;
        let (Some(victim), Some(rex)) = (self.repo(to), self.repo(from)) else {
            return Ok(());
        };
        let space = self.space_id();
        let mut replica = victim.replica(self.nodes[from].device);
        let mut items = self.items(to).unwrap_or_default();
        items.sort_by_key(|(r, _)| r.to_bytes());
        let drain = |sent: &mut Vec<SyncMessage>,
                     next: &mut dyn FnMut() -> Result<Option<SyncMessage>, SyncError>|
         -> Result<(), SyncError> {
            while let Some(m) = next()? {
                sent.push(m);
            }
            Ok(())
        };
        let outcome = match kind {
            BadRequest::Repeated | BadRequest::TooMany | BadRequest::NoDifference => {
                let heads: Vec<RecordHeads> = match kind {
                    BadRequest::Repeated => {
                        let Some((record, _)) = items.first() else {
                            return Ok(());
                        };
                        let one = RecordHeads {
                            record: record.to_bytes(),
                            heads: Vec::new(),
                        };
                        vec![one; times]
                    }
                    BadRequest::TooMany => (0..HEADS_PER_MESSAGE + over)
                        .map(|i| {
                            let mut record = [0u8; 16];
                            record[8..].copy_from_slice(&(i as u64).to_be_bytes());
                            RecordHeads {
                                record,
                                heads: Vec::new(),
                            }
                        })
                        .collect(),
                    _ => items
                        .iter()
                        .map(|(record, heads)| RecordHeads {
                            record: record.to_bytes(),
                            heads: heads.clone(),
                        })
                        .collect(),
                };
                let heads = through_the_wire(SyncMessage::Heads(heads))?;
                let mut resp = Responder::new();
                let mut sent = Vec::new();
                resp.handle(
                    SyncMessage::Open {
                        space: self.space.to_bytes(),
                    },
                    &mut replica,
                )
                .and_then(|()| drain(&mut sent, &mut || resp.poll_send(&replica)))
                .and_then(|()| resp.handle(heads, &mut replica))
                .and_then(|()| drain(&mut sent, &mut || resp.poll_send(&replica)))
                .map(|()| sent)
            }
            BadRequest::WrongAnswer => {
                // An honest initiator reconciles with Rex's real responder,
                // then gets an answer that names other records than asked.
                let mut theirs = rex.replica(self.nodes[to].device);
                let (mut init, first) = match Initiator::start(space, &replica) {
                    Ok(started) => started,
                    Err(_) => return Ok(()),
                };
                let mut resp = Responder::new();
                let mut to_rex = first;
                let mut asked = None;
                'rounds: for _ in 0..rapport_sync::MAX_ROUNDS + 1 {
                    let mut back = Vec::new();
                    for m in to_rex.drain(..) {
                        if resp.handle(m, &mut theirs).is_err() {
                            return Ok(());
                        }
                    }
                    if drain(&mut back, &mut || resp.poll_send(&theirs)).is_err() {
                        return Ok(());
                    }
                    for m in back {
                        if init.handle(m, &mut replica).is_err() {
                            return Ok(()); // refused: Rex does not know the node yet
                        }
                    }
                    while let Some(m) = init.poll_send(&replica).map_err(|e| e.to_string())? {
                        match m {
                            SyncMessage::Heads(h) => {
                                asked = Some(h);
                                break 'rounds;
                            }
                            SyncMessage::Done => {
                                asked = Some(Vec::new());
                                break 'rounds;
                            }
                            m => to_rex.push(m),
                        }
                    }
                }
                let Some(asked) = asked else {
                    return Ok(());
                };
                // The records asked, each twice; or, when nothing differs,
                // a record nobody asked about.
                let answer: Vec<RecordHeads> = if asked.is_empty() {
                    items
                        .iter()
                        .take(1)
                        .map(|(record, _)| RecordHeads {
                            record: record.to_bytes(),
                            heads: Vec::new(),
                        })
                        .collect()
                } else {
                    asked.iter().flat_map(|h| [h.clone(), h.clone()]).collect()
                };
                let answer = through_the_wire(SyncMessage::Heads(answer))?;
                init.handle(answer, &mut replica).map(|()| Vec::new())
            }
        };
        match outcome {
            Err(SyncError::Protocol(_)) => {
                self.stats.bad_requests += 1;
                Ok(())
            }
            // A few records that do not differ (any more) get an empty
            // answer, as a record a gossip message just brought up to date
            // would: nothing is sent for them.
            Ok(sent)
                if kind == BadRequest::NoDifference
                    && items.len() <= rapport_sync::MAX_UNCHANGED_PER_SESSION
                    && !sent.iter().any(|m| matches!(m, SyncMessage::Changes(_))) =>
            {
                self.stats.bad_requests += 1;
                Ok(())
            }
            Ok(sent) => Err(format!(
                "{} answered Rex's made-up catch-up message ({kind:?}) with {} messages",
                self.nodes[to].name,
                sent.len()
            )),
            Err(e) => Err(format!(
                "{} failed on Rex's made-up catch-up message ({kind:?}): {e}",
                self.nodes[to].name
            )),
        }
    }

    // ----- the network -----------------------------------------------------

    fn deliver(&mut self, to: usize, packet: Packet) -> Result<(), String> {
        match packet {
            Packet::Address { from, addr, member } => {
                if self.reachable(from, to) {
                    self.learn(to, from, from, addr, member)?;
                }
            }
            Packet::Gossip {
                from,
                record,
                heads,
            } => {
                if !self.reachable(from, to) {
                    return Ok(());
                }
                let Some(repo) = self.repo(to) else {
                    return Ok(());
                };
                let mut have = repo
                    .store()
                    .heads(self.space_id(), record)
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default();
                have.sort();
                let mut want = heads;
                want.sort();
                if have != want {
                    if let Some(s) = self
                        .sessions
                        .values_mut()
                        .find(|s| (s.initiator, s.responder) == (to, from) && s.dial.is_some())
                    {
                        s.triggered = true;
                        self.stats.coalesced += 1;
                    }
                    let (now, space) = (self.time(), self.space_id());
                    self.nodes[to]
                        .sched
                        .handle_gossip_unapplied(space, from, now);
                    self.pump(to)?;
                }
            }
            Packet::Inject {
                from,
                space,
                record,
                changes,
            } => {
                if !self.reachable(from, to) {
                    return Ok(());
                }
                self.stats.hostile += 1;
                let Some(repo) = self.repo(to) else {
                    return Ok(());
                };
                repo.apply_remote(space, record, changes, self.nodes[from].device)
                    .map_err(|e| {
                        format!("{} failed on injected changes: {e}", self.nodes[to].name)
                    })?;
            }
            Packet::Session {
                id,
                to_initiator,
                frame,
            } => self.deliver_session(id, to_initiator, &frame)?,
            Packet::BadRequest { from, kind } => self.bad_request(from, to, kind)?,
        }
        Ok(())
    }

    // ----- the schedule ----------------------------------------------------

    /// The virtual clock, as the schedule counts time.
    fn time(&self) -> Duration {
        Duration::from_millis(self.now())
    }

    /// A node starts (or restarts): its schedule learns the members and
    /// begins its first round.
    fn start_schedule(&mut self, n: usize) -> Result<(), String> {
        self.refresh_members(n);
        let now = self.time();
        self.nodes[n].sched.handle_start(now);
        self.pump(n)
    }

    /// Tells node `n`'s schedule the members its store knows, as the
    /// daemon does whenever the space document may have changed.
    fn refresh_members(&mut self, n: usize) {
        let peers = self.believed_peers(n);
        let space = self.space_id();
        self.nodes[n].sched.handle_members(space, peers);
    }

    /// The network healed: every pair of nodes that can reach each other
    /// again sees the other as a gossip neighbour.
    fn neighbors_up(&mut self) -> Result<(), String> {
        let (now, space) = (self.time(), self.space_id());
        for n in 0..self.nodes.len() {
            if self.nodes[n].repo.is_none() {
                continue;
            }
            for p in 0..self.nodes.len() {
                if p != n && self.reachable(n, p) {
                    self.nodes[n].sched.handle_neighbor_up(space, p, now);
                }
            }
            self.pump(n)?;
        }
        Ok(())
    }

    /// Opens the sessions node `n`'s schedule decides on now, and asks to
    /// be woken when it next has something to do.
    fn pump(&mut self, n: usize) -> Result<(), String> {
        if self.nodes[n].repo.is_none() {
            return Ok(());
        }
        let now = self.time();
        while let Some(dial) = self.nodes[n].sched.poll_dial(now) {
            *self.nodes[n].chain.entry(dial.peer).or_default() += 1;
            self.dialed.push((n, dial.peer));
            if !self.open_session(n, dial.peer, Some(dial.id))? {
                self.nodes[n]
                    .sched
                    .handle_session_done(dial.id, Outcome::Failed, now);
                self.forget_idle(n);
            }
        }
        if let Some(t) = self.nodes[n].sched.poll_timeout() {
            // Never now again: a wake-up that changed nothing would repeat.
            let at = u64::try_from(t.as_millis())
                .unwrap_or(u64::MAX)
                .max(self.now() + 1);
            if self.nodes[n]
                .wake_at
                .is_none_or(|w| at < w || w <= self.now())
            {
                self.nodes[n].wake_at = Some(at);
                self.schedule_at(at, Event::Wake(n));
            }
        }
        Ok(())
    }

    fn wake(&mut self, n: usize) -> Result<(), String> {
        if self.nodes[n].repo.is_none() {
            return Ok(());
        }
        if self.nodes[n].wake_at.is_some_and(|w| w <= self.now()) {
            self.nodes[n].wake_at = None;
        }
        let now = self.time();
        self.nodes[n].sched.handle_timeout(now);
        self.forget_idle(n);
        self.pump(n)
    }

    /// Restarts the count of back-to-back sessions for pairs the schedule
    /// let go of.
    fn forget_idle(&mut self, n: usize) {
        let space = self.space_id();
        let node = &mut self.nodes[n];
        let sched = &node.sched;
        node.chain
            .retain(|p, _| sched.is_running(*p, space) || sched.is_waiting(*p, space));
    }

    /// Node `a` dials `b` for a catch-up session: for its schedule
    /// (`dial`), or for a join. Whether it got through.
    fn open_session(
        &mut self,
        a: usize,
        b: usize,
        dial: Option<SessionId>,
    ) -> Result<bool, String> {
        if dial.is_some()
            && let Some(s) = self
                .sessions
                .values()
                .find(|s| (s.initiator, s.responder) == (a, b) && s.dial.is_some())
        {
            return Err(format!(
                "{} dialed {} while a session with it still ran ({:?}): sessions are not coalesced",
                self.nodes[a].name, self.nodes[b].name, s.dial
            ));
        }
        if !self.reachable(a, b) {
            self.stats.dial_failures += 1;
            return Ok(false);
        }
        if self.nodes[a].known[b] < self.nodes[b].addr {
            // Where `b` was: nobody answers there any more.
            self.stats.dial_failures += 1;
            self.stats.stale_dials += 1;
            return Ok(false);
        }
        let Some(repo) = self.repo(a) else {
            return Ok(false);
        };
        let replica = repo.replica(self.nodes[b].device);
        let (init, first) = match Initiator::start(self.space_id(), &replica) {
            Ok(started) => started,
            Err(_) => {
                self.stats.dial_failures += 1;
                return Ok(false);
            }
        };
        self.next_session += 1;
        let id = self.next_session;
        self.stats.sessions += 1;
        self.sessions.insert(
            id,
            Session {
                initiator: a,
                responder: b,
                dial,
                triggered: false,
                init,
                resp: Responder::new(),
                last: [0, 0],
                last_changed: [None, None],
            },
        );
        self.send(id, false, first)?;
        // The connection shows `b` where `a` is now.
        if dial.is_some() {
            let (addr, member) = (self.nodes[a].addr, self.believed_peers(a).contains(&b));
            self.learn(b, a, a, addr, member)?;
        }
        Ok(true)
    }

    fn send(&mut self, id: u64, to_initiator: bool, msgs: Vec<SyncMessage>) -> Result<(), String> {
        for msg in msgs {
            let Some(session) = self.sessions.get(&id) else {
                return Ok(());
            };
            let frame = match wire::encode_frame(&msg) {
                Ok(f) => f,
                Err(_) => {
                    return self.end_session(id, Outcome::Failed);
                }
            };
            let dir = usize::from(to_initiator);
            let mut last_changed = None;
            if let SyncMessage::Changes(records) = &msg {
                if records.first().map(|r| r.record) == session.last_changed[dir] {
                    self.stats.split_histories += 1;
                }
                last_changed = records.last().map(|r| r.record);
                for r in records {
                    let record = RecordId::from_bytes(r.record);
                    for c in &r.changes {
                        self.sent.insert((record, c.clone()));
                    }
                }
            }
            self.stats.messages += 1;
            self.stats.bytes += frame.len() as u64;
            let to = if to_initiator {
                session.initiator
            } else {
                session.responder
            };
            if self.faulty && self.rng.chance(self.faults.cut) {
                self.stats.cuts += 1;
                return self.end_session(id, Outcome::Failed);
            }
            let at = (self.now() + self.rng.range(1, 60)).max(session.last[dir] + 1);
            if let Some(s) = self.sessions.get_mut(&id) {
                s.last[dir] = at;
                s.last_changed[dir] = last_changed;
            }
            if self.faulty && self.rng.chance(self.faults.dup) {
                self.stats.duplicated += 1;
                let later = at + self.rng.range(0, 200);
                self.schedule_at(
                    later,
                    Event::Deliver {
                        to,
                        packet: Packet::Session {
                            id,
                            to_initiator,
                            frame: frame.clone(),
                        },
                    },
                );
            }
            self.schedule_at(
                at,
                Event::Deliver {
                    to,
                    packet: Packet::Session {
                        id,
                        to_initiator,
                        frame,
                    },
                },
            );
        }
        Ok(())
    }

    fn deliver_session(&mut self, id: u64, to_initiator: bool, frame: &[u8]) -> Result<(), String> {
        let Some(s) = self.sessions.get(&id) else {
            return Ok(()); // a late copy for a session that is over
        };
        let (i, r) = (s.initiator, s.responder);
        if !self.reachable(i, r) {
            self.end_session(id, Outcome::Failed)?;
            return Ok(());
        }
        let msg: SyncMessage = match wire::decode(&frame[4..]) {
            Ok(m) => m,
            Err(_) => {
                self.end_session(id, Outcome::Failed)?;
                return Ok(());
            }
        };
        let (Some(ri), Some(rr)) = (self.nodes[i].repo.as_ref(), self.nodes[r].repo.as_ref())
        else {
            return Ok(());
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return Ok(());
        };
        // Handle the message, then take everything the receiver sends back
        // (a bounded message at a time; the simulation keeps them all).
        let step = if to_initiator {
            if s.init.is_finished() {
                return Ok(());
            }
            let mut replica = ri.replica(self.nodes[r].device);
            s.init.handle(msg, &mut replica).and_then(|()| {
                std::iter::from_fn(|| s.init.poll_send(&replica).transpose()).collect()
            })
        } else {
            if s.resp.is_finished() {
                return Ok(());
            }
            let mut replica = rr.replica(self.nodes[i].device);
            s.resp.handle(msg, &mut replica).and_then(|()| {
                std::iter::from_fn(|| s.resp.poll_send(&replica).transpose()).collect()
            })
        };
        match step {
            Ok(sent) => {
                self.send(id, !to_initiator, sent)?;
                if let Some(s) = self.sessions.get(&id)
                    && s.init.is_finished()
                    && s.resp.is_finished()
                {
                    self.end_session(id, Outcome::Ok)?;
                }
            }
            Err(SyncError::Refused(_)) => {
                self.stats.sessions_refused += 1;
                self.end_session(id, Outcome::Refused)?;
            }
            Err(SyncError::Replica(e)) => {
                return Err(format!(
                    "{} failed to store what it received: {e}",
                    self.nodes[if to_initiator { i } else { r }].name
                ));
            }
            Err(_) => {
                // A duplicate or out-of-place message: the receiver drops
                // the connection, as the daemon does.
                self.stats.sessions_broken += 1;
                self.end_session(id, Outcome::Failed)?;
            }
        }
        // A responder that was refused, or finished, ends the session too.
        if let Some(s) = self.sessions.get(&id)
            && s.resp.was_refused()
        {
            self.stats.sessions_refused += 1;
            self.end_session(id, Outcome::Refused)?;
        }
        Ok(())
    }

    /// A session ended: its initiator's schedule hears how, and decides
    /// what follows. An announcement that came in while it ran must get a
    /// session after it, unless the pair's run of back-to-back sessions is
    /// at its limit or the peer is no longer a member.
    fn end_session(&mut self, id: u64, outcome: Outcome) -> Result<(), String> {
        let Some(s) = self.sessions.remove(&id) else {
            return Ok(());
        };
        let (a, b) = (s.initiator, s.responder);
        for n in [a, b] {
            if self.nodes[n].repo.is_some() {
                self.refresh_members(n);
            }
        }
        let Some(dial) = s.dial else {
            if outcome == Outcome::Ok {
                self.relay_addresses(a, b)?;
                self.relay_addresses(b, a)?;
            }
            return Ok(());
        };
        if self.nodes[a].repo.is_none() {
            return Ok(());
        }
        let now = self.time();
        let chain = self.nodes[a].chain.get(&b).copied().unwrap_or(0);
        self.nodes[a].sched.handle_session_done(dial, outcome, now);
        self.forget_idle(a);
        let before = self.dialed.len();
        self.pump(a)?;
        let followed = self.dialed[before..].contains(&(a, b));
        if followed && outcome == Outcome::Ok {
            self.stats.follow_ups += 1;
        }
        if s.triggered
            && outcome == Outcome::Ok
            && chain <= MAX_FOLLOW_UPS
            && self.believed_peers(a).contains(&b)
            && !followed
        {
            return Err(format!(
                "{} heard of a change from {} during a catch-up session with it, and no \
                 session followed: the change waits for the next round (coalescing lost it)",
                self.nodes[a].name, self.nodes[b].name
            ));
        }
        // Both sides pass on the addresses they know (after the check
        // above: what they learn may start sessions of its own).
        if outcome == Outcome::Ok {
            self.relay_addresses(a, b)?;
            self.relay_addresses(b, a)?;
        }
        Ok(())
    }

    // ----- observations ------------------------------------------------------

    /// The nodes that must agree at the end: every member, up.
    pub fn honest_members(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&n| match self.nodes[n].part {
                Part::Removed => !self.dan_removed,
                Part::Late => self.eve_added,
                _ => true,
            })
            .collect()
    }

    /// Each document of the space with its sorted heads, as node `n` holds it.
    pub fn items(&self, n: usize) -> Result<Items, String> {
        let repo = self.up(n)?;
        let mut items: Items = repo
            .store()
            .space_items(self.space_id())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        for (_, heads) in &mut items {
            heads.sort();
        }
        items.sort();
        Ok(items)
    }

    /// Which honest member holds which document differently from the
    /// first, for a failure message.
    fn divergence(&self) -> String {
        let members = self.honest_members();
        let name = |n: usize| self.nodes[n].name;
        let Ok(first) = self.items(members[0]) else {
            return format!("{} is down", name(members[0]));
        };
        let mut out = Vec::new();
        for &n in &members[1..] {
            let Ok(items) = self.items(n) else {
                out.push(format!("  {} is down", name(n)));
                continue;
            };
            let short = |h: &[[u8; 32]]| {
                h.iter()
                    .map(|h| rapport_proto::hex(&h[..4]))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            for (id, heads) in &first {
                match items.iter().find(|(i, _)| i == id) {
                    Some((_, h)) if h == heads => {}
                    Some((_, h)) => {
                        out.push(format!(
                            "  {id}: {} has [{}], {} has [{}]",
                            name(members[0]),
                            short(heads),
                            name(n),
                            short(h)
                        ));
                        for m in [members[0], n] {
                            out.push(format!("    {}: {}", name(m), self.history(m, *id)));
                            if let Ok(dir) = std::env::var("RAPPORT_SIM_DUMP")
                                && let Ok(repo) = self.up(m)
                            {
                                let dir = std::path::Path::new(&dir).join(name(m));
                                let _ = std::fs::create_dir_all(&dir);
                                if let Ok(Some(doc)) = repo.store().doc(*id) {
                                    let _ = std::fs::write(dir.join("doc"), doc);
                                }
                                for h in repo.store().change_hashes(*id).unwrap_or_default() {
                                    if let Ok(Some(c)) = repo.store().signed_change(&h) {
                                        let _ = std::fs::write(
                                            dir.join(rapport_proto::hex(&h)),
                                            c.encode(),
                                        );
                                    }
                                }
                            }
                        }
                    }
                    None => out.push(format!("  {id}: missing on {}", name(n))),
                }
            }
            for (id, _) in &items {
                if !first.iter().any(|(i, _)| i == id) {
                    out.push(format!("  {id}: missing on {}", name(members[0])));
                }
            }
        }
        out.join("\n")
    }

    /// A document's changes on node `n` (hash, author, dependencies),
    /// for a failure message.
    fn history(&self, n: usize, id: RecordId) -> String {
        let Ok(mut doc) = self
            .up(n)
            .and_then(|r| r.load_doc(id).map_err(|e| e.to_string()))
        else {
            return "does not load".into();
        };
        let Ok(repo) = self.up(n) else {
            return "down".into();
        };
        let describe = |c: &Change| {
            let author = self
                .nodes
                .iter()
                .find(|node| node.device.actor_id().to_bytes() == c.actor_id().to_bytes())
                .map_or("?", |node| node.name);
            let deps: Vec<String> = c
                .deps()
                .iter()
                .map(|d| rapport_proto::hex(&d.0[..4]))
                .collect();
            format!(
                "{} by {author} on [{}]",
                rapport_proto::hex(&c.hash().0[..4]),
                deps.join(",")
            )
        };
        let stored: Vec<String> = repo
            .store()
            .change_hashes(id)
            .unwrap_or_default()
            .iter()
            .filter_map(|h| repo.store().signed_change(h).ok().flatten())
            .filter_map(|s| rapport_trust::parse_change(&s.change).ok())
            .map(|c| describe(&c))
            .collect();
        let refused: Vec<String> = repo
            .store()
            .rejections()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.record == id.to_string())
            .map(|r| r.reason)
            .collect();
        let applied: Vec<String> = doc.get_changes(&[]).iter().map(describe).collect();
        format!(
            "stored [{}], refused {refused:?}; applied [{}]",
            stored.join("; "),
            applied.join("; ")
        )
    }

    fn converged(&self) -> Result<bool, String> {
        let members = self.honest_members();
        if self.nodes.iter().any(|n| n.repo.is_none()) {
            return Ok(false);
        }
        let first = self.items(members[0])?;
        for &n in &members[1..] {
            if self.items(n)? != first {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn member(node: &SimNode, role: Role) -> Member {
    Member {
        device: node.device.to_string(),
        role,
        user: node.name.into(),
        org: "Acme".into(),
        added_by: String::new(),
        since: 0,
        addrs: Vec::new(),
    }
}

/// A change setting `field` of `record` as `repo` holds it, written as
/// `actor`, bypassing every local check (a modified client).
fn edit_as(
    repo: &Repo,
    actor: rapport_model::automerge::ActorId,
    record: RecordId,
    field: &str,
    value: &str,
) -> Result<Change, String> {
    let mut doc = repo
        .load_doc(record)
        .map_err(|e| e.to_string())?
        .with_actor(actor);
    rapport_model::doc::edit(
        &mut doc,
        &[Edit::Set(field.into(), FieldValue::Text(value.into()))],
        Timestamp::from_millisecond(EPOCH_MS as i64).unwrap_or(Timestamp::UNIX_EPOCH),
    )
    .map_err(|e| e.to_string())?;
    doc.get_last_local_change()
        .ok_or_else(|| "no change".into())
}

/// [`edit_as`] by `key`'s device, signed by it.
fn signed_edit(
    repo: &Repo,
    key: &DeviceKey,
    record: RecordId,
    field: &str,
    value: &str,
) -> Result<SignedChange, String> {
    let change = edit_as(repo, key.device_id().actor_id(), record, field, value)?;
    key.sign_change(&change).map_err(|e| e.to_string())
}

/// A statement adding `me` to `space` as an admin, by `me` (a non-admin),
/// validly signed.
fn self_promotion(repo: &Repo, me: &SimNode, space: RecordId) -> Result<SignedChange, String> {
    let mut doc = repo
        .load_doc(space)
        .map_err(|e| e.to_string())?
        .with_actor(me.device.actor_id());
    let mut promoted = member(me, Role::Admin);
    promoted.added_by = me.device.to_string();
    rapport_model::space::add_member(&mut doc, &promoted, me.env.now())
        .map_err(|e| e.to_string())?;
    let change = doc.get_last_local_change().ok_or("no change")?;
    me.key.sign_change(&change).map_err(|e| e.to_string())
}

/// What admins do to the joint space's fields (`NAME`: the admin's).
const SCHEMA_CHANGES: &[&str] = &[
    r#"{"op":"add_field","kind":"company","name":"seats","type":"number"}"#,
    r#"{"op":"add_field","kind":"company","name":"seats","type":"text"}"#,
    r#"{"op":"add_field","kind":"company","name":"tier","type":"choice","choices":["gold","silver"]}"#,
    r#"{"op":"add_field","kind":"company","name":"tier","type":"choice","choices":["silver","bronze"]}"#,
    r#"{"op":"relabel","kind":"company","name":"seats","label":"Seats (NAME)"}"#,
    r#"{"op":"retire","kind":"company","name":"tier"}"#,
    r#"{"op":"restore","kind":"company","name":"tier"}"#,
    r#"{"op":"retire_choice","kind":"company","name":"tier","choice":"gold"}"#,
    r#"{"op":"add_choice","kind":"company","name":"tier","choice":"gold"}"#,
    r#"{"op":"retire","kind":"company","name":"industry"}"#,
    // Two admins may rename one choice to different words at once.
    r#"{"op":"rename_choice","kind":"company","name":"tier","choice":"silver","to":"argent"}"#,
    r#"{"op":"rename_choice","kind":"company","name":"tier","choice":"silver","to":"platinum"}"#,
    r#"{"op":"rename_choice","kind":"company","name":"tier","choice":"argent","to":"silver"}"#,
    r#"{"op":"rename_choice","kind":"company","name":"tier","choice":"platinum","to":"silver"}"#,
    // A kind of the space's own, added by two admins at once, with a
    // field (which takes effect only where the fold puts it after the
    // kind), retired and restored.
    r#"{"op":"add_kind","kind":"contract","title_label":"Contract (NAME)"}"#,
    r#"{"op":"add_field","kind":"contract","name":"ends","type":"date"}"#,
    r#"{"op":"retire_kind","kind":"contract"}"#,
    r#"{"op":"restore_kind","kind":"contract"}"#,
    // A pipeline set twice with other stages (the last in the order
    // stands), retired; the ticket statuses the space words its own way.
    r#"{"op":"set_pipeline","name":"renewals","stages":[{"name":"due","probability":60},{"name":"renewed","probability":100,"outcome":"won"}]}"#,
    r#"{"op":"set_pipeline","name":"renewals","label":"NAME's renewals","stages":[{"name":"due","probability":50},{"name":"quoted","probability":80},{"name":"churned","probability":0,"outcome":"lost"}]}"#,
    r#"{"op":"retire_pipeline","name":"renewals"}"#,
    r#"{"op":"add_choice","kind":"ticket","name":"status","choice":"waiting"}"#,
    r#"{"op":"retire_choice","kind":"ticket","name":"status","choice":"pending"}"#,
];

/// A field Rex's modified client adds, as a reader: no node may count it.
pub const REX_FIELD: &str = "rex_note";

fn forged_schema(repo: &Repo, me: &SimNode, space: RecordId) -> Result<SignedChange, String> {
    let mut doc = repo
        .load_doc(space)
        .map_err(|e| e.to_string())?
        .with_actor(me.device.actor_id());
    let change = serde_json::from_value(serde_json::json!({
        "op": "add_field", "kind": "company", "name": REX_FIELD, "type": "text",
    }))
    .map_err(|e| e.to_string())?;
    rapport_model::space::add_schema_change(&mut doc, &change, me.env.now())
        .map_err(|e| e.to_string())?;
    let change = doc.get_last_local_change().ok_or("no change")?;
    me.key.sign_change(&change).map_err(|e| e.to_string())
}

/// `msg` as the receiver gets it: it must fit in one frame.
fn through_the_wire(msg: SyncMessage) -> Result<SyncMessage, String> {
    let frame = wire::encode_frame(&msg).map_err(|e| e.to_string())?;
    wire::decode(&frame[4..]).map_err(|e| e.to_string())
}

fn change_hash(encoded: &[u8]) -> Option<[u8; 32]> {
    let signed = SignedChange::decode(encoded).ok()?;
    Change::from_bytes(signed.change).ok().map(|c| c.hash().0)
}

/// Stores on tmpfs where there is one: the simulation flushes thousands
/// of times, and a disk's fsync would dominate its run time.
fn sim_tempdir() -> Result<tempfile::TempDir, String> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(t) = tempfile::Builder::new()
            .prefix("rapport-sim")
            .tempdir_in(shm)
    {
        return Ok(t);
    }
    tempfile::tempdir().map_err(|e| e.to_string())
}
