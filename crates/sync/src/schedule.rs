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
//!   delivered) clears the back-off, so a member coming back is caught up
//!   with at once.
//! - **The periodic round goes one session at a time**, space after space
//!   and member after member, and the next round starts an interval after
//!   the previous one ended: catch-up is a background chore and must not
//!   open a session per (member, space) at once (that would also run into
//!   the responder's per-peer limit). A pair that already runs or waits is
//!   only marked for a follow-up, and the round goes on; so does it past a
//!   peer in back-off and past a session that failed (its retry runs
//!   on its own).
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
    failures: u32,
    until: Duration,
}

#[derive(Debug)]
struct Round<P> {
    queue: VecDeque<(P, SpaceId)>,
    current: Option<(P, SpaceId)>,
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
        }
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
        self.backoff.remove(&peer);
        self.ask(peer, space, now);
    }

    /// A gossip announcement in `space`, delivered by `from`, named heads
    /// this node does not hold. A member that delivered it is asked (it
    /// holds them, or will by the time it answers); an announcement
    /// relayed by a non-member sends this node to every member.
    pub fn handle_gossip_unapplied(&mut self, space: SpaceId, from: P, now: Duration) {
        if self.is_member(from, space) {
            self.backoff.remove(&from);
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
        let backoff = self.backoff.get(&peer).map_or(Duration::ZERO, |b| b.until);
        Some(not_before.max(backoff))
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
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        let more = member && entry.sessions <= MAX_FOLLOW_UPS;
        let next = match outcome {
            Outcome::Ok | Outcome::Busy | Outcome::Refused => {
                // It answered: reachable.
                self.backoff.remove(&key.0);
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
                });
                b.failures = b.failures.saturating_add(1);
                let factor = 1u32 << (b.failures - 1).min(16);
                b.until = now + RETRY_BASE.saturating_mul(factor).min(RETRY_MAX);
                more.then_some(State::Waiting { not_before: now })
            }
        };
        match next {
            Some(state) => entry.state = state,
            None => {
                self.entries.remove(&key);
            }
        }
    }

    /// Starts a due periodic round, and moves the running one on to its
    /// next pair once the current one is done.
    fn advance_round(&mut self, now: Duration) {
        loop {
            if self.round.is_none() {
                match self.next_round {
                    Some(at) if at <= now => {
                        let queue = self
                            .members
                            .iter()
                            .flat_map(|(space, peers)| peers.iter().map(|p| (*p, *space)))
                            .collect();
                        self.round = Some(Round {
                            queue,
                            current: None,
                        });
                        self.next_round = None;
                    }
                    _ => return,
                }
            }
            if let Some(key) = self.round.as_ref().and_then(|r| r.current) {
                // The round waits for its pair's session (and busy
                // retries), but not for a peer that went into back-off.
                let waits = self.entries.get(&key).is_some_and(|e| {
                    e.round
                        && !(matches!(e.state, State::Waiting { .. })
                            && self.in_backoff(key.0, now))
                });
                if waits {
                    return;
                }
            }
            let next = self.round.as_mut().and_then(|r| {
                r.current = None;
                r.queue.pop_front()
            });
            let Some(key) = next else {
                self.round = None;
                self.next_round = self.config.interval.map(|i| now + i);
                return;
            };
            if self.ask(key.0, key.1, now) == Asked::New && !self.in_backoff(key.0, now) {
                if let Some(e) = self.entries.get_mut(&key) {
                    e.round = true;
                }
                if let Some(r) = self.round.as_mut() {
                    r.current = Some(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
