//! When to catch up with whom: the network schedule as a sans-IO state
//! machine.
//!
//! A node catches up with a member of a space (one [`Dial`] = one session
//! of [`crate::Initiator`] for one space) when:
//!
//! - it starts, and then every [`Config::interval`] (the periodic round);
//! - a member appears as a gossip neighbour ([`Scheduler::handle_neighbor_up`]);
//! - a gossip announcement names heads it does not hold
//!   ([`Scheduler::handle_gossip_unapplied`]);
//! - it missed gossip, or someone asks ([`Scheduler::handle_space_behind`]).
//!
//! The driver (the iroh adapter in `rapport-node`, or the simulation) feeds
//! these inputs with the time, dials what [`Scheduler::poll_dial`] returns,
//! reports how each session ended ([`Scheduler::handle_session_done`]), and
//! calls [`Scheduler::handle_timeout`] at [`Scheduler::poll_timeout`]. No
//! clock is read here: time is a [`Duration`] since an epoch the driver
//! chooses (its start for a real node, virtual zero in the simulation), so
//! a seeded run replays exactly.
//!
//! The rules, and why each exists:
//!
//! - **Coalescing per (peer, space).** While a session with a peer for a
//!   space runs, any number of further triggers for the same pair (a burst
//!   of announcements, a neighbour event) add up to *one* follow-up session
//!   after it, not one each: a session already fetches everything the peer
//!   held when it started, so what is left to fetch is only what was
//!   announced since, and one more session gets all of it. A trigger for a
//!   pair that waits to be dialed adds nothing: that dial covers it.
//! - **A bounded chain.** At most [`MAX_FOLLOW_UPS`] sessions follow the
//!   first back to back (follow-ups, busy retries and failure retries all
//!   count): a peer that keeps announcing cannot keep this node in
//!   sessions with it for ever; the periodic round picks up after that.
//! - **Busy.** A responder already serving as many of our sessions as it
//!   allows (`MAX_SESSIONS_PER_PEER` in the node) turns a session away
//!   before any work; this node tries that pair again after
//!   [`BUSY_RETRY`] instead of waiting for the next round, because an
//!   honest node only gets there with live edits in many spaces at once.
//! - **No retry after a refusal.** A peer that refuses a session (this node
//!   is not a member in its eyes, say it was removed) will refuse the next
//!   one too, until the membership changes; the next trigger or round asks
//!   again.
//! - **Retry after failure, with a per-peer back-off.** A session that
//!   failed or timed out is tried again once the peer's back-off has passed
//!   ([`RETRY_BASE`], doubling per consecutive failure up to
//!   [`RETRY_MAX`]). The back-off is per peer, not per space: a member that
//!   is offline is unreachable for every space, and dialing it once per
//!   space per trigger only costs dial timeouts. Any sign that the peer is
//!   reachable (a session that reached it, a neighbour event, gossip it
//!   delivered, a new address for it, a change of this node's own network)
//!   clears the back-off, so a member coming back is caught up with at
//!   once.
//! - **Unreachable members are left alone until something changes.** After
//!   [`UNREACHABLE_AFTER`] consecutive failures (the back-off has reached
//!   [`RETRY_MAX`] by then: about a minute of trying) the peer is marked
//!   unreachable ([`Scheduler::unreachable_since`]): a member that moved or
//!   went away for good would otherwise cost a dial timeout per space
//!   every round, for ever. Failures are no longer retried, rounds pass it
//!   by, and dials other triggers ask for wait, except for a probe every
//!   [`UNREACHABLE_PROBE`] (one space at a time), so that a member that
//!   comes back without any sign is still found. The signs above clear the
//!   mark and dial the peer at once for every space it shares (the rounds
//!   passed them by), and two more exist for exactly this case: a new
//!   address learned for the peer ([`Scheduler::handle_address_learned`]),
//!   which does the same for a peer that was failing at all, and this
//!   node's own network changing ([`Scheduler::handle_network_changed`]:
//!   what failed from the old network may work from the new one), which
//!   clears every peer's mark and starts a round at once.
//! - **The periodic round runs a few sessions at once, one per peer**: it
//!   visits every (member, space) pair, at most
//!   [`Scheduler::with_round_concurrency`] ([`ROUND_CONCURRENCY`] unless
//!   set) at a time, so that one slow or offline member (a dial that hangs
//!   until its timeout) does not hold up catching up with the others. It
//!   still never opens a session per pair at once (catch-up is a
//!   background chore), and the spaces of one peer go one after another,
//!   so rounds stay far from the responder's per-peer limit. The next
//!   round starts an interval after the previous one ended. A pair that
//!   already runs or waits is only marked for a follow-up, and the round
//!   goes on; so does it past a peer in back-off and past a session that
//!   failed (its retry runs on its own).
//! - **Members only.** Only the other members of a space, as the driver
//!   last reported them ([`Scheduler::handle_members`]), are dialed for it:
//!   a removed member is not served anyway, and its waiting dials and
//!   follow-ups are dropped.
//! - **A deadline per session** ([`Config::session_timeout`], 10 minutes):
//!   the driver stops a session at its [`Dial::deadline`], and the
//!   scheduler counts it as timed out then even if the driver never
//!   reports (a session task that died), so catch-up with that peer never
//!   stops for good. A report for a session already timed out is ignored.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::time::Duration;

use rapport_model::SpaceId;

/// Longest a whole catch-up session may take.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(600);
/// Sessions that may follow the first for one (peer, space) back to back.
pub const MAX_FOLLOW_UPS: usize = 3;
/// How long to wait before trying again a peer that said it is busy.
pub const BUSY_RETRY: Duration = Duration::from_secs(2);
/// A peer's back-off after its first failed session; it doubles per
/// consecutive failure.
pub const RETRY_BASE: Duration = Duration::from_secs(1);
/// Longest back-off: about the default sync interval, so that a member
/// that comes back without showing up on gossip is still reached as often
/// as the periodic round would.
pub const RETRY_MAX: Duration = Duration::from_secs(32);
/// Consecutive failed sessions after which a peer is marked unreachable:
/// the back-off has reached [`RETRY_MAX`] (after the sixth) and been
/// waited out once.
pub const UNREACHABLE_AFTER: u32 = 7;
/// How often an unreachable peer is still tried (a probe), in case it came
/// back without any sign of it.
pub const UNREACHABLE_PROBE: Duration = Duration::from_secs(300);
/// Pairs a periodic round runs sessions with at once, by default.
pub const ROUND_CONCURRENCY: usize = 4;

/// What the scheduler needs to know about the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How long after one periodic round ends the next starts; `None`: no
    /// periodic catch-up at all, not even at start (benchmarks measure
    /// catch-up alone).
    pub interval: Option<Duration>,
    /// A session's deadline after its dial.
    pub session_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: Some(Duration::from_secs(30)),
            session_timeout: SESSION_TIMEOUT,
        }
    }
}

/// Names one dialed session, so that a late report of a session the
/// scheduler already gave up on is not taken for its successor's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

/// A decision to run one catch-up session with `peer` for `space`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dial<P> {
    pub id: SessionId,
    pub peer: P,
    pub space: SpaceId,
    /// When the driver must stop the session (same epoch as `now`).
    pub deadline: Duration,
}

/// How a session ended, as the driver saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Finished: this node holds what the peer held when it started.
    Ok,
    /// The peer turned the session away: it serves too many of ours.
    Busy,
    /// The peer refused the session (this node is not, or no longer, a
    /// member in its eyes).
    Refused,
    /// The dial, a read or the protocol failed.
    Failed,
    /// The session passed its deadline.
    TimedOut,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Dialed at `not_before` or once the peer's back-off has passed,
    /// whichever is later.
    Waiting {
        not_before: Duration,
    },
    Running {
        id: SessionId,
        deadline: Duration,
    },
}

/// A (peer, space) pair that waits to be dialed or runs a session.
#[derive(Debug, Clone, Copy)]
struct Entry {
    state: State,
    /// Another session was asked for while this one ran.
    again: bool,
    /// Sessions dialed in this chain.
    sessions: usize,
    /// The periodic round waits for this pair before it goes on.
    round: bool,
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    /// Consecutive failed sessions.
    failures: u32,
    /// No dial before this (for an unreachable peer: the next probe).
    until: Duration,
    /// When the peer was marked unreachable.
    unreachable_since: Option<Duration>,
}

#[derive(Debug)]
struct Round<P> {
    /// Pairs still to visit, in order.
    queue: VecDeque<(P, SpaceId)>,
    /// Pairs whose session the round waits for (at most the concurrency,
    /// at most one per peer).
    active: BTreeSet<(P, SpaceId)>,
}

/// What a trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// Not a member of the space: nothing.
    Ignored,
    /// The pair already runs or waits: it covers the trigger.
    Coalesced,
    /// A new dial waits.
    New,
}

/// The catch-up schedule of one node. `P` names a peer (an iroh endpoint
/// id in the node, an index in the simulation).
#[derive(Debug)]
pub struct Scheduler<P> {
    config: Config,
    members: BTreeMap<SpaceId, BTreeSet<P>>,
    entries: BTreeMap<(P, SpaceId), Entry>,
    backoff: BTreeMap<P, Backoff>,
    round: Option<Round<P>>,
    next_round: Option<Duration>,
    next_id: u64,
    round_concurrency: usize,
}

impl<P: Copy + Ord + Debug> Scheduler<P> {
    pub fn new(config: Config) -> Self {
        Scheduler {
            config,
            members: BTreeMap::new(),
            entries: BTreeMap::new(),
            backoff: BTreeMap::new(),
            round: None,
            next_round: None,
            next_id: 0,
            round_concurrency: ROUND_CONCURRENCY,
        }
    }

    /// Lets a periodic round run sessions with up to `n` pairs at once
    /// (at least one; [`ROUND_CONCURRENCY`] unless set).
    #[must_use]
    pub fn with_round_concurrency(mut self, n: usize) -> Self {
        self.round_concurrency = n.max(1);
        self
    }

    /// The node started: the first periodic round begins now (if there
    /// are periodic rounds). Report members first.
    pub fn handle_start(&mut self, now: Duration) {
        if self.config.interval.is_some() && self.round.is_none() {
            self.next_round = Some(now);
        }
    }

    /// The other members of `space` (never this node), replacing what was
    /// known; an empty list forgets the space (this node left it or was
    /// removed). Waiting dials of peers no longer members are dropped, and
    /// their running sessions get no follow-up.
    pub fn handle_members(&mut self, space: SpaceId, peers: impl IntoIterator<Item = P>) {
        let peers: BTreeSet<P> = peers.into_iter().collect();
        self.entries.retain(|(peer, s), e| {
            if *s != space || peers.contains(peer) {
                return true;
            }
            match e.state {
                State::Waiting { .. } => false,
                State::Running { .. } => {
                    e.again = false;
                    true
                }
            }
        });
        if peers.is_empty() {
            self.members.remove(&space);
        } else {
            self.members.insert(space, peers);
        }
    }

    /// `peer` showed up as a gossip neighbour in `space`: it is reachable
    /// now and may hold what this node missed while apart.
    pub fn handle_neighbor_up(&mut self, space: SpaceId, peer: P, now: Duration) {
        self.reachable_again(peer, None, now);
        self.ask(peer, space, now);
    }

    /// A gossip announcement in `space`, delivered by `from`, named heads
    /// this node does not hold. A member that delivered it is asked (it
    /// holds them, or will by the time it answers); an announcement
    /// relayed by a non-member sends this node to every member.
    pub fn handle_gossip_unapplied(&mut self, space: SpaceId, from: P, now: Duration) {
        if self.is_member(from, space) {
            self.reachable_again(from, None, now);
            self.ask(from, space, now);
        } else {
            self.handle_space_behind(space, now);
        }
    }

    /// This node may have missed changes in `space` (gossip lagged, or a
    /// user asked): catch up with every member.
    pub fn handle_space_behind(&mut self, space: SpaceId, now: Duration) {
        let peers: Vec<P> = self
            .members
            .get(&space)
            .map(|m| m.iter().copied().collect())
            .unwrap_or_default();
        for peer in peers {
            self.ask(peer, space, now);
        }
    }

    /// The node learned a new address for `peer` (a signed address
    /// announcement, discovery): dials that failed may work now. Clears
    /// the peer's back-off and unreachable mark and, if it was failing,
    /// asks for a session with it for every space it is a member of (at
    /// once, coalesced as usual).
    pub fn handle_address_learned(&mut self, peer: P, now: Duration) {
        if self.backoff.remove(&peer).is_some() {
            self.ask_shared(peer, None, now);
        }
    }

    /// This node's own network changed (new local addresses): what failed
    /// from the old one may work from the new one. Clears every peer's
    /// back-off and unreachable mark and starts a periodic round at once
    /// (a running round starts over); without periodic rounds, only
    /// clears.
    pub fn handle_network_changed(&mut self, now: Duration) {
        self.backoff.clear();
        if self.config.interval.is_none() {
            return;
        }
        let mut pairs = self.all_pairs();
        match self.round.as_mut() {
            Some(r) => {
                pairs.retain(|k| !r.active.contains(k));
                r.queue = pairs;
            }
            None => self.next_round = Some(now),
        }
        self.advance_round(now);
    }

    /// When `peer` was marked unreachable (same epoch as `now`), if it is:
    /// it failed [`UNREACHABLE_AFTER`] sessions in a row and nothing has
    /// shown since that it may be reachable.
    pub fn unreachable_since(&self, peer: P) -> Option<Duration> {
        self.backoff.get(&peer).and_then(|b| b.unreachable_since)
    }

    /// Sessions with `peer` that failed in a row (0 once one reached it).
    pub fn failures(&self, peer: P) -> u32 {
        self.backoff.get(&peer).map_or(0, |b| b.failures)
    }

    /// A session this scheduler dialed ended. Reports of sessions it no
    /// longer tracks (already timed out) are ignored.
    pub fn handle_session_done(&mut self, id: SessionId, outcome: Outcome, now: Duration) {
        let Some(key) = self.running(id) else {
            return;
        };
        self.finish(key, outcome, now);
        self.advance_round(now);
    }

    /// Times out the sessions whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Duration) {
        let late: Vec<(P, SpaceId)> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.state, State::Running { deadline, .. } if deadline <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in late {
            self.finish(key, Outcome::TimedOut, now);
        }
        self.advance_round(now);
    }

    /// The next session to dial now, if any. Call until `None`.
    pub fn poll_dial(&mut self, now: Duration) -> Option<Dial<P>> {
        self.advance_round(now);
        let key = self
            .entries
            .iter()
            .filter_map(|(k, e)| self.ready_at(k.0, e).map(|at| (at, *k)))
            .filter(|(at, _)| *at <= now)
            .min()
            .map(|(_, k)| k)?;
        self.next_id += 1;
        let id = SessionId(self.next_id);
        let deadline = now + self.config.session_timeout;
        let entry = self.entries.get_mut(&key)?;
        entry.state = State::Running { id, deadline };
        entry.sessions += 1;
        // The session starts now: it fetches everything asked for so far.
        entry.again = false;
        Some(Dial {
            id,
            peer: key.0,
            space: key.1,
            deadline,
        })
    }

    /// When the driver must next call [`Self::handle_timeout`] and
    /// [`Self::poll_dial`]: a deadline, a dial waiting out a back-off, or
    /// the next periodic round. `None`: only an input can change anything.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let entries = self.entries.iter().filter_map(|(k, e)| match e.state {
            State::Running { deadline, .. } => Some(deadline),
            State::Waiting { .. } => self.ready_at(k.0, e),
        });
        let round = if self.round.is_none() {
            self.next_round
        } else {
            None
        };
        entries.chain(round).min()
    }

    /// Sessions running now.
    pub fn running_count(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e.state, State::Running { .. }))
            .count()
    }

    /// Whether a session with `peer` for `space` runs now.
    pub fn is_running(&self, peer: P, space: SpaceId) -> bool {
        self.entries
            .get(&(peer, space))
            .is_some_and(|e| matches!(e.state, State::Running { .. }))
    }

    /// Whether a dial with `peer` for `space` waits (for a back-off, or
    /// to be polled).
    pub fn is_waiting(&self, peer: P, space: SpaceId) -> bool {
        self.entries
            .get(&(peer, space))
            .is_some_and(|e| matches!(e.state, State::Waiting { .. }))
    }

    fn is_member(&self, peer: P, space: SpaceId) -> bool {
        self.members.get(&space).is_some_and(|m| m.contains(&peer))
    }

    fn running(&self, id: SessionId) -> Option<(P, SpaceId)> {
        self.entries.iter().find_map(|(k, e)| match e.state {
            State::Running { id: r, .. } if r == id => Some(*k),
            _ => None,
        })
    }

    /// When a waiting pair may be dialed.
    fn ready_at(&self, peer: P, e: &Entry) -> Option<Duration> {
        let State::Waiting { not_before, .. } = e.state else {
            return None;
        };
        let backoff = self.backoff.get(&peer);
        // An unreachable peer is probed one space at a time: the others
        // follow at once if the probe reaches it.
        if backoff.is_some_and(|b| b.unreachable_since.is_some())
            && self
                .entries
                .iter()
                .any(|((p, _), e)| *p == peer && matches!(e.state, State::Running { .. }))
        {
            return None;
        }
        let until = backoff.map_or(Duration::ZERO, |b| b.until);
        Some(not_before.max(until))
    }

    fn is_unreachable(&self, peer: P) -> bool {
        self.unreachable_since(peer).is_some()
    }

    /// Every (member, space) pair, space after space.
    fn all_pairs(&self) -> VecDeque<(P, SpaceId)> {
        self.members
            .iter()
            .flat_map(|(space, peers)| peers.iter().map(|p| (*p, *space)))
            .collect()
    }

    fn in_backoff(&self, peer: P, now: Duration) -> bool {
        self.backoff.get(&peer).is_some_and(|b| b.until > now)
    }

    fn ask(&mut self, peer: P, space: SpaceId, now: Duration) -> Asked {
        if !self.is_member(peer, space) {
            return Asked::Ignored;
        }
        match self.entries.get_mut(&(peer, space)) {
            Some(e) => {
                if let State::Running { .. } = e.state {
                    e.again = true;
                }
                Asked::Coalesced
            }
            None => {
                self.entries.insert(
                    (peer, space),
                    Entry {
                        state: State::Waiting { not_before: now },
                        again: false,
                        sessions: 0,
                        round: false,
                    },
                );
                Asked::New
            }
        }
    }

    /// Ends the running session of `key` and decides what follows it.
    fn finish(&mut self, key: (P, SpaceId), outcome: Outcome, now: Duration) {
        let member = self.is_member(key.0, key.1);
        let unreachable = self.is_unreachable(key.0);
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        let more = member && entry.sessions <= MAX_FOLLOW_UPS;
        let mut answered = false;
        let next = match outcome {
            Outcome::Ok | Outcome::Busy | Outcome::Refused => {
                // It answered: reachable.
                answered = true;
                match outcome {
                    Outcome::Busy => more.then_some(State::Waiting {
                        not_before: now + BUSY_RETRY,
                    }),
                    // Asking again changes nothing until the membership
                    // does, and that comes with a session or a change.
                    Outcome::Refused => None,
                    _ => (more && entry.again).then_some(State::Waiting { not_before: now }),
                }
            }
            Outcome::Failed | Outcome::TimedOut => {
                // The round does not wait for a peer that may be away.
                entry.round = false;
                let b = self.backoff.entry(key.0).or_insert(Backoff {
                    failures: 0,
                    until: now,
                    unreachable_since: None,
                });
                b.failures = b.failures.saturating_add(1);
                if b.failures >= UNREACHABLE_AFTER {
                    // Given up on until a sign, or the next probe.
                    b.unreachable_since.get_or_insert(now);
                    b.until = now + UNREACHABLE_PROBE;
                    None
                } else {
                    let factor = 1u32 << (b.failures - 1).min(16);
                    b.until = now + RETRY_BASE.saturating_mul(factor).min(RETRY_MAX);
                    more.then_some(State::Waiting { not_before: now })
                }
            }
        };
        match next {
            Some(state) => entry.state = state,
            None => {
                self.entries.remove(&key);
            }
        }
        if answered {
            // A probe that reached it: the spaces the rounds passed by.
            self.backoff.remove(&key.0);
            if unreachable {
                self.ask_shared(key.0, Some(key.1), now);
            }
        }
    }

    /// A sign that `peer` may be reachable: clears its back-off and, if it
    /// was marked unreachable, asks for a session for every space it
    /// shares (but `except`), which the rounds passed by meanwhile.
    fn reachable_again(&mut self, peer: P, except: Option<SpaceId>, now: Duration) {
        let was = self.backoff.remove(&peer);
        if was.is_some_and(|b| b.unreachable_since.is_some()) {
            self.ask_shared(peer, except, now);
        }
    }

    /// Asks for a session with `peer` for every space it is a member of
    /// (but `except`).
    fn ask_shared(&mut self, peer: P, except: Option<SpaceId>, now: Duration) {
        let spaces: Vec<SpaceId> = self
            .members
            .iter()
            .filter(|(s, m)| Some(**s) != except && m.contains(&peer))
            .map(|(s, _)| *s)
            .collect();
        for space in spaces {
            self.ask(peer, space, now);
        }
    }

    /// Starts a due periodic round, and moves the running one on: up to
    /// the concurrency, one pair per peer at a time.
    fn advance_round(&mut self, now: Duration) {
        if self.round.is_none() {
            match self.next_round {
                Some(at) if at <= now => {
                    self.round = Some(Round {
                        queue: self.all_pairs(),
                        active: BTreeSet::new(),
                    });
                    self.next_round = None;
                }
                _ => return,
            }
        }
        let Some(mut round) = self.round.take() else {
            return;
        };
        // The round waits for its pairs' sessions (and busy retries), but
        // not for a peer that went into back-off.
        round.active.retain(|key| {
            self.entries.get(key).is_some_and(|e| {
                e.round
                    && !(matches!(e.state, State::Waiting { .. }) && self.in_backoff(key.0, now))
            })
        });
        let mut i = 0;
        while round.active.len() < self.round_concurrency && i < round.queue.len() {
            let key = round.queue[i];
            if round.active.iter().any(|(p, _)| *p == key.0) {
                // This peer's other space goes after the one it runs.
                i += 1;
                continue;
            }
            round.queue.remove(i);
            if self.is_unreachable(key.0) && self.in_backoff(key.0, now) {
                // Unreachable, and not yet time for a probe.
                continue;
            }
            if self.ask(key.0, key.1, now) == Asked::New && !self.in_backoff(key.0, now) {
                if let Some(e) = self.entries.get_mut(&key) {
                    e.round = true;
                }
                round.active.insert(key);
            }
        }
        if round.queue.is_empty() && round.active.is_empty() {
            self.next_round = self.config.interval.map(|i| now + i);
        } else {
            self.round = Some(round);
        }
    }
}

#[cfg(test)]
mod tests;
