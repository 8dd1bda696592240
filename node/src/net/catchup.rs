//! Catch-up sessions over `rapport/sync/2`: the task that runs the
//! schedule ([`rapport_sync::schedule`]) on real time and dials what it
//! decides, the initiator's session, and serving peers' sessions within a
//! per-peer limit.

use std::sync::atomic::Ordering;
use std::time::Duration;

use iroh::EndpointId;
use iroh::endpoint::{Connection, RecvStream, SendStream};
use iroh::protocol::{AcceptError, ProtocolHandler};
use jiff::Timestamp;
use rapport_model::{RecordId, SpaceId};
use rapport_proto::wire::{SYNC_ALPN, SyncMessage};
use rapport_sync::schedule::{self, Config, Dial, Outcome, Scheduler, SessionId};
use rapport_sync::{Initiator, Responder};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::frame::{read_frame, write_frame};
use super::{DIAL_TIMEOUT, MAX_SESSIONS_PER_PEER, NetError, Node, blocking, device_of, peer_err};

/// What a peer over [`MAX_SESSIONS_PER_PEER`] is told; the initiator
/// recognises it by [`BUSY_PREFIX`].
const BUSY: &str = "busy: too many catch-up sessions from your device at once; try again later";
const BUSY_PREFIX: &str = "busy:";

/// What the schedule hears from the rest of the node.
#[derive(Debug)]
pub(super) enum Input {
    /// Members are reported: the first periodic round may begin.
    Start,
    /// The other members of a space (empty: no longer ours).
    Members(SpaceId, Vec<EndpointId>),
    NeighborUp(SpaceId, EndpointId),
    GossipUnapplied(SpaceId, EndpointId),
    SpaceBehind(SpaceId),
    /// A member announced new addresses (or they were learned from
    /// another member).
    AddressLearned(EndpointId),
    /// This node's own addresses changed.
    NetworkChanged,
    Done(SessionId, Outcome),
}

/// Runs the schedule: feeds it inputs with the time since `epoch`, dials
/// what it decides, and wakes it when it asks. The only place the
/// schedule meets a clock.
pub(super) async fn run_schedule(
    node: Node,
    mut inputs: mpsc::UnboundedReceiver<Input>,
    interval: Option<Duration>,
) {
    let epoch = Instant::now();
    let mut sched = Scheduler::new(Config {
        interval,
        session_timeout: schedule::SESSION_TIMEOUT,
    });
    loop {
        while let Some(dial) = sched.poll_dial(epoch.elapsed()) {
            node.spawn_session(dial, epoch + dial.deadline);
        }
        let input = match sched.poll_timeout() {
            Some(at) => tokio::select! {
                input = inputs.recv() => input,
                () = tokio::time::sleep_until(epoch + at) => {
                    sched.handle_timeout(epoch.elapsed());
                    continue;
                }
            },
            None => inputs.recv().await,
        };
        let Some(input) = input else {
            return;
        };
        let now = epoch.elapsed();
        match input {
            Input::Start => sched.handle_start(now),
            Input::Members(space, peers) => sched.handle_members(space, peers),
            Input::NeighborUp(space, peer) => sched.handle_neighbor_up(space, peer, now),
            Input::GossipUnapplied(space, from) => sched.handle_gossip_unapplied(space, from, now),
            Input::SpaceBehind(space) => sched.handle_space_behind(space, now),
            Input::AddressLearned(peer) => sched.handle_address_learned(peer, now),
            Input::NetworkChanged => sched.handle_network_changed(now),
            Input::Done(id, outcome) => sched.handle_session_done(id, outcome, now),
        }
    }
}

/// Tells the schedule how a session ended, also when its task ends
/// without saying (a panic): the pair is then free again at once instead
/// of at its deadline.
struct Report {
    node: Node,
    id: SessionId,
    outcome: Outcome,
}

impl Drop for Report {
    fn drop(&mut self) {
        self.node.schedule(Input::Done(self.id, self.outcome));
    }
}

impl Node {
    pub(super) fn schedule(&self, input: Input) {
        // The schedule's task ends only with the runtime.
        let _ = self.inner.schedule.send(input);
    }

    fn spawn_session(&self, dial: Dial<EndpointId>, deadline: Instant) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut report = Report {
                node: node.clone(),
                id: dial.id,
                outcome: Outcome::Failed,
            };
            let session = node.checked_session(dial.peer, dial.space);
            report.outcome = match tokio::time::timeout_at(deadline, session).await {
                Ok(Ok(_)) => Outcome::Ok,
                Ok(Err(NetError::Busy(_))) => Outcome::Busy,
                Ok(Err(e @ NetError::Refused { .. })) => {
                    tracing::debug!(peer = %dial.peer.fmt_short(), space = %dial.space, "catch-up: {e}");
                    Outcome::Refused
                }
                Ok(Err(e)) => {
                    tracing::debug!(peer = %dial.peer.fmt_short(), space = %dial.space, "catch-up: {e}");
                    Outcome::Failed
                }
                Err(_) => {
                    tracing::debug!(peer = %dial.peer.fmt_short(), space = %dial.space, "catch-up: the session took too long");
                    Outcome::TimedOut
                }
            };
            let mut c = node.counters();
            match report.outcome {
                Outcome::Failed | Outcome::TimedOut => {
                    c.unreachable
                        .entry(dial.peer)
                        .or_insert_with(Timestamp::now);
                }
                _ => {
                    c.unreachable.remove(&dial.peer);
                }
            }
        });
    }

    /// Asks for a catch-up session with every other member of a space
    /// (coalesced with any already running or waiting).
    pub async fn catch_up_space(&self, space_id: RecordId) {
        self.schedule(Input::SpaceBehind(SpaceId::Shared(space_id)));
    }

    /// Runs one catch-up session for `space` with `peer` (we dial) now,
    /// outside the schedule, within an overall deadline. A peer that is not
    /// a member of a space we know is not dialed at all.
    pub async fn sync_with(
        &self,
        peer: EndpointId,
        space: SpaceId,
    ) -> Result<rapport_sync::SessionStats, NetError> {
        tokio::time::timeout(schedule::SESSION_TIMEOUT, self.checked_session(peer, space))
            .await
            .map_err(|_| peer_err(peer.fmt_short(), "the session took too long"))?
    }

    async fn checked_session(
        &self,
        peer: EndpointId,
        space: SpaceId,
    ) -> Result<rapport_sync::SessionStats, NetError> {
        if let SpaceId::Shared(id) = space
            && let Some(view) = blocking(|| self.inner.repo.space(id))?
            && !view.is_member(&device_of(peer).to_string())
        {
            return Err(peer_err(peer.fmt_short(), "not a member of this space"));
        }
        self.sync_session(peer, space).await
    }

    async fn sync_session(
        &self,
        peer: EndpointId,
        space: SpaceId,
    ) -> Result<rapport_sync::SessionStats, NetError> {
        let conn = tokio::time::timeout(DIAL_TIMEOUT, self.inner.endpoint.connect(peer, SYNC_ALPN))
            .await
            .map_err(|_| peer_err(peer.fmt_short(), "did not answer"))?
            .map_err(|e| peer_err(peer.fmt_short(), e))?;
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| peer_err(peer.fmt_short(), e))?;
        let repo = self.inner.repo.clone();
        let mut replica = repo
            .replica(device_of(peer))
            .limited(&self.inner.limiter)
            .on_learned(self.learned_sink());
        self.counters().seen.insert(peer, Timestamp::now());
        let (mut init, first) = blocking(|| Initiator::start(space, &replica))
            .map_err(|e| peer_err(peer.fmt_short(), e))?;
        for m in first {
            write_frame(&self.inner.traffic, &mut send, &m)
                .await
                .map_err(|e| peer_err(peer.fmt_short(), e))?;
        }
        while !init.is_finished() {
            let msg = read_frame::<SyncMessage>(&self.inner.traffic, &mut recv)
                .await
                .map_err(|e| peer_err(peer.fmt_short(), e))?;
            blocking(|| init.handle(msg, &mut replica)).map_err(|e| match &e {
                rapport_sync::SyncError::Refused(reason) if reason.starts_with(BUSY_PREFIX) => {
                    NetError::Busy(peer.fmt_short().to_string())
                }
                rapport_sync::SyncError::Refused(reason) => {
                    self.counters().refused.insert(space, reason.clone());
                    NetError::Refused {
                        peer: peer.fmt_short().to_string(),
                        reason: e.to_string(),
                    }
                }
                _ => peer_err(peer.fmt_short(), e),
            })?;
            // One bounded message at a time: the rest stays queued in `init`.
            while let Some(m) =
                blocking(|| init.poll_send(&replica)).map_err(|e| peer_err(peer.fmt_short(), e))?
            {
                write_frame(&self.inner.traffic, &mut send, &m)
                    .await
                    .map_err(|e| peer_err(peer.fmt_short(), e))?;
            }
        }
        let _ = send.finish();
        // Let the responder read everything before the connection closes.
        let _ = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(64)).await;
        conn.close(0u32.into(), b"done");
        self.synced(space);
        self.counters().refused.remove(&space);
        self.refresh_space(space);
        if replica.report.rejected > 0 {
            tracing::warn!(peer = %peer.fmt_short(), %space, rejected = replica.report.rejected, "refused changes from a peer");
        }
        Ok(init.stats)
    }

    async fn respond(
        &self,
        peer: EndpointId,
        mut send: SendStream,
        mut recv: RecvStream,
    ) -> Result<(), String> {
        let repo = self.inner.repo.clone();
        let mut replica = repo
            .replica(device_of(peer))
            .limited(&self.inner.limiter)
            .on_learned(self.learned_sink());
        let mut responder = Responder::new();
        while !responder.is_finished() {
            let msg = read_frame::<SyncMessage>(&self.inner.traffic, &mut recv)
                .await
                .map_err(|e| e.to_string())?;
            blocking(|| responder.handle(msg, &mut replica)).map_err(|e| e.to_string())?;
            // One bounded message at a time: the rest stays queued in `responder`.
            while let Some(m) =
                blocking(|| responder.poll_send(&replica)).map_err(|e| e.to_string())?
            {
                write_frame(&self.inner.traffic, &mut send, &m).await?;
            }
        }
        let _ = send.finish();
        if replica.report.rejected > 0 {
            tracing::warn!(peer = %peer.fmt_short(), rejected = replica.report.rejected, "refused changes from a peer");
        }
        if !responder.was_refused() {
            self.counters().seen.insert(peer, Timestamp::now());
        }
        if !responder.was_refused() && replica.report.rejected == 0 {
            self.synced(responder.space());
        }
        self.refresh_space(responder.space());
        Ok(())
    }
}

/// Serves catch-up sessions that peers open with us.
#[derive(Debug, Clone)]
pub(super) struct SyncHandler {
    pub(super) node: Node,
}

impl ProtocolHandler for SyncHandler {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        let peer = connection.remote_id();
        while let Ok((mut send, recv)) = connection.accept_bi().await {
            let node = self.node.clone();
            let Some(slot) = ServingSlot::take(&node, peer) else {
                node.inner
                    .traffic
                    .turned_away
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %peer.fmt_short(), "turned away a catch-up session: the peer already has {MAX_SESSIONS_PER_PEER} running");
                tokio::spawn(async move {
                    let busy = SyncMessage::Refused {
                        reason: BUSY.into(),
                    };
                    if write_frame(&node.inner.traffic, &mut send, &busy)
                        .await
                        .is_ok()
                    {
                        let _ = send.finish();
                    }
                });
                continue;
            };
            tokio::spawn(async move {
                let _slot = slot;
                let session =
                    tokio::time::timeout(schedule::SESSION_TIMEOUT, node.respond(peer, send, recv));
                let result = session
                    .await
                    .unwrap_or_else(|_| Err("the session took too long".into()));
                if let Err(e) = result {
                    tracing::info!(peer = %peer.fmt_short(), "sync session ended: {e}");
                }
            });
        }
        Ok(())
    }
}

/// One of a peer's [`MAX_SESSIONS_PER_PEER`] places; given back on drop.
struct ServingSlot {
    node: Node,
    peer: EndpointId,
}

impl ServingSlot {
    fn take(node: &Node, peer: EndpointId) -> Option<ServingSlot> {
        let mut c = node.counters();
        let serving = c.serving.entry(peer).or_default();
        if *serving >= MAX_SESSIONS_PER_PEER {
            return None;
        }
        *serving += 1;
        Some(ServingSlot {
            node: node.clone(),
            peer,
        })
    }
}

impl Drop for ServingSlot {
    fn drop(&mut self) {
        let mut c = self.node.counters();
        if let Some(n) = c.serving.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.serving.remove(&self.peer);
            }
        }
    }
}
