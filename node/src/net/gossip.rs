//! Live announcements: one gossip topic per space, heads only. What to do
//! about an announcement (catch up with whom, when) is the schedule's
//! decision; this module only subscribes, broadcasts and reports.

use iroh::EndpointId;
use iroh_gossip::TopicId;
use iroh_gossip::api::{Event, GossipSender};
use n0_future::StreamExt;
use rapport_model::{RecordId, SpaceId, SpaceView};
use rapport_proto::wire::{self, Announce, Gossip, MAX_GOSSIP};
use sha2::{Digest, Sha256};

use super::catchup::Input;
use super::{Node, blocking};
use crate::repo::LocalChange;

/// A gossip topic the node is subscribed to for a space.
#[derive(Debug)]
pub(super) struct Subscription {
    topic: TopicId,
    pub(super) sender: GossipSender,
    receiving: tokio::task::AbortHandle,
    /// The members this node asked gossip to connect to.
    members: Vec<EndpointId>,
}

/// The gossip topic of a space: derived from its id and the topic secret
/// in its space document, which only current members hold (the document
/// is served only to members, and every removal renews the secret).
fn topic_of(space: &SpaceView) -> TopicId {
    let mut h = Sha256::new();
    h.update(b"rapport/topic/v3\0");
    h.update(space.id.to_bytes());
    h.update(&space.topic);
    let d: [u8; 32] = h.finalize().into();
    TopicId::from_bytes(d)
}

impl Node {
    /// Subscribes to a space's current gossip topic and starts receiving;
    /// leaves the old topic when a removal renewed it, and leaves
    /// altogether when this device is no longer a member (`view` is
    /// `None`). `members` bootstrap the topic; members added later join
    /// the neighbour set of the running subscription (a removed one is
    /// left behind with the old topic: every removal renews it).
    pub(super) async fn join_topic(
        &self,
        space_id: RecordId,
        view: Option<SpaceView>,
        members: Vec<EndpointId>,
    ) {
        if !self.inner.live {
            return;
        }
        let space = SpaceId::Shared(space_id);
        let mut topics = self.inner.topics.lock().await;
        let wanted = view.as_ref().map(topic_of);
        if let Some(current) = topics.get_mut(&space) {
            if Some(current.topic) == wanted {
                let new: Vec<EndpointId> = members
                    .iter()
                    .filter(|m| !current.members.contains(m))
                    .copied()
                    .collect();
                if !new.is_empty() {
                    if let Err(e) = current.sender.join_peers(new.clone()).await {
                        tracing::warn!(%space, "cannot add new members to the gossip topic: {e}");
                    }
                    current.members.extend(new);
                }
                return;
            }
            current.receiving.abort();
            topics.remove(&space);
            self.neighbors(space, Vec::clear);
        }
        let Some(topic_id) = wanted else {
            return;
        };
        let topic = match self.inner.gossip.subscribe(topic_id, members.clone()).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(%space, "cannot join the space's gossip topic: {e}");
                return;
            }
        };
        let (sender, mut receiver) = topic.split();
        let node = self.clone();
        let receiving = tokio::spawn(async move {
            while let Some(event) = receiver.next().await {
                match event {
                    Ok(Event::Received(msg)) => {
                        node.on_gossip(space, &msg.content, msg.delivered_from);
                    }
                    Ok(Event::NeighborUp(peer)) => {
                        node.neighbors(space, |n| n.push(peer));
                        // A member came (back) online: catch up with it.
                        node.schedule(Input::NeighborUp(space, peer));
                    }
                    Ok(Event::NeighborDown(peer)) => {
                        node.neighbors(space, |n| n.retain(|p| *p != peer))
                    }
                    Ok(Event::Lagged) => {
                        tracing::warn!(%space, "missed gossip messages; catching up");
                        node.schedule(Input::SpaceBehind(space));
                    }
                    Err(e) => {
                        tracing::warn!(%space, "gossip: {e}");
                        break;
                    }
                }
            }
        });
        topics.insert(
            space,
            Subscription {
                topic: topic_id,
                sender,
                receiving: receiving.abort_handle(),
                members,
            },
        );
    }

    /// Asks gossip again to connect to a member (of any of our topics)
    /// whose addresses just changed: the first try may have failed.
    pub(super) async fn rejoin_gossip(&self, peer: EndpointId) {
        let senders: Vec<GossipSender> = {
            let topics = self.inner.topics.lock().await;
            topics
                .values()
                .filter(|sub| sub.members.contains(&peer))
                .map(|sub| sub.sender.clone())
                .collect()
        };
        for sender in senders {
            if let Err(e) = sender.join_peers(vec![peer]).await {
                tracing::debug!(peer = %peer.fmt_short(), "gossip: {e}");
            }
        }
    }

    fn neighbors(&self, space: SpaceId, f: impl FnOnce(&mut Vec<EndpointId>)) {
        f(self.counters().neighbors.entry(space).or_default());
    }

    /// Broadcasts a local change; large ones go out as heads only.
    pub(super) async fn announce(&self, change: LocalChange) {
        let SpaceId::Shared(space_id) = change.space else {
            return;
        };
        *self.counters().pending_out.entry(change.space).or_default() += 1;
        // Heads only: anyone who knows the topic can read gossip, so the
        // changes themselves are pulled by members over the authenticated
        // sync protocol.
        let msg = Gossip::Announce(Announce {
            space: space_id.to_bytes(),
            record: change.record.to_bytes(),
            heads: change.heads,
            changes: Vec::new(),
        });
        let bytes = wire::encode(&msg).unwrap_or_default();
        if bytes.len() > MAX_GOSSIP {
            return;
        }
        {
            let topics = self.inner.topics.lock().await;
            if let Some(sub) = topics.get(&change.space)
                && let Err(e) = sub.sender.broadcast(bytes.into()).await
            {
                tracing::warn!(space = %change.space, "gossip broadcast failed: {e}");
            }
        }
        if change.record == space_id {
            // A new space, new members, or a removal that renewed the
            // topic: the members still on the old topic heard this above
            // and follow after catching up.
            self.space_changed(space_id).await;
        }
    }

    fn on_gossip(&self, space: SpaceId, bytes: &[u8], from: EndpointId) {
        let msg: Announce = match wire::decode(bytes) {
            Ok(Gossip::Announce(m)) => m,
            Ok(Gossip::Addresses(signed)) => return self.on_addresses(space, &signed, from),
            Err(e) => {
                tracing::warn!(%space, from = %from.fmt_short(), "ignored a malformed gossip message: {e}");
                return;
            }
        };
        if SpaceId::Shared(RecordId::from_bytes(msg.space)) != space {
            tracing::warn!(%space, "ignored a gossip message for another space");
            return;
        }
        let record = RecordId::from_bytes(msg.record);
        let repo = &self.inner.repo;
        // Announcements carry heads only; changes are pulled over the
        // authenticated, rate-limited sync protocol. Anything else in a
        // gossip message is ignored.
        let mut have = blocking(|| repo.store().heads(space, record))
            .ok()
            .flatten()
            .unwrap_or_default();
        have.sort();
        let mut want = msg.heads;
        want.sort();
        if have != want {
            // From whom to pull (the member that delivered it, or every
            // member if a non-member relayed it) is the schedule's call.
            self.schedule(Input::GossipUnapplied(space, from));
        }
    }
}
