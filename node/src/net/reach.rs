//! Where members are and how they are reached: this node's own address
//! announcements (signed again whenever its addresses or relay change,
//! and sent to every space's topic), the announcements learned from
//! members (dialed from then on), and how each member is reached now, for
//! `rapport status`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use iroh::endpoint::TransportAddrUsage;
use iroh::{EndpointId, TransportAddr, Watcher};
use jiff::Timestamp;
use n0_future::StreamExt;
use rapport_model::SpaceId;
use rapport_proto::wire::{self, Gossip};
use serde::{Deserialize, Serialize};

use super::catchup::Input;
use super::{Node, blocking, device_of, endpoint_addr, endpoint_of};
use crate::addresses::Learned;

/// How long this node's addresses must stay put before it announces them:
/// an interface coming up changes them several times within a second.
const SETTLE: Duration = Duration::from_millis(500);
/// How often `rapport status`'s view of each member's path is refreshed.
const REFRESH: Duration = Duration::from_secs(2);

/// How a member is reached now, as `rapport status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReach {
    /// `direct (LAN)`, `direct (internet)`, `via relay`, or `unknown`.
    pub path: String,
    /// The direct addresses in use now.
    pub in_use: Vec<String>,
    /// Where the member last said it is (its signed announcement, or a
    /// ticket), and when it said so (RFC 3339; `None` for a ticket).
    pub announced: Vec<String>,
    pub announced_at: Option<String>,
    pub relay: Option<String>,
    /// Since when sessions with it have been failing (RFC 3339).
    pub unreachable_since: Option<String>,
}

/// What a path's address says about how the peer is reached.
pub(super) fn path_of(addr: &TransportAddr) -> &'static str {
    match addr {
        TransportAddr::Relay(_) => "via relay",
        TransportAddr::Ip(sock) if is_local(sock) => "direct (LAN)",
        TransportAddr::Ip(_) => "direct (internet)",
        _ => "unknown",
    }
}

fn is_local(sock: &SocketAddr) -> bool {
    match sock.ip() {
        IpAddr::V4(ip) => ip.is_private() || ip.is_loopback() || ip.is_link_local(),
        IpAddr::V6(ip) => ip.is_loopback() || ip.is_unique_local() || ip.is_unicast_link_local(),
    }
}

impl Node {
    /// Signs and sends this node's addresses whenever they change, and
    /// keeps each member's path up to date for status. Runs until the
    /// endpoint is dropped.
    pub(super) async fn watch_addresses(self) {
        let mut announced: Option<(Vec<String>, Option<String>)> = None;
        let mut changes = self.inner.endpoint.watch_addr().stream();
        let mut refresh = tokio::time::interval(REFRESH);
        loop {
            tokio::select! {
                next = changes.next() => {
                    if next.is_none() {
                        return;
                    }
                    // Let the addresses settle, then take the latest.
                    tokio::time::sleep(SETTLE).await;
                    let now = (self.addrs(), self.home_relay());
                    if announced.as_ref() == Some(&now) {
                        continue;
                    }
                    let moved = announced.is_some();
                    announced = Some(now.clone());
                    self.announce_addresses(now.0, now.1).await;
                    if moved {
                        tracing::info!(addrs = ?self.addrs(), "this node's addresses changed; told the members");
                        self.schedule(Input::NetworkChanged);
                    }
                }
                _ = refresh.tick() => {
                    if self.inner.endpoint.is_closed() {
                        return; // the node was shut down
                    }
                    self.refresh_paths().await
                }
            }
        }
    }

    fn home_relay(&self) -> Option<String> {
        self.inner
            .endpoint
            .addr()
            .relay_urls()
            .next()
            .map(|u| u.to_string())
    }

    /// Signs the addresses, keeps them for sessions and sends them on
    /// every space's topic.
    async fn announce_addresses(&self, direct: Vec<String>, relay: Option<String>) {
        let repo = self.inner.repo.clone();
        let signed = match blocking(|| repo.announce_addresses(direct, relay)) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot sign this node's addresses: {e}");
                return;
            }
        };
        let Ok(bytes) = wire::encode(&Gossip::Addresses(signed)) else {
            return;
        };
        let senders: Vec<_> = {
            let topics = self.inner.topics.lock().await;
            topics
                .iter()
                .map(|(s, sub)| (*s, sub.sender.clone()))
                .collect()
        };
        for (space, sender) in senders {
            if let Err(e) = sender.broadcast(bytes.clone().into()).await {
                tracing::debug!(%space, "could not send this node's addresses: {e}");
            }
        }
    }

    /// Dials members where they said they are from now on, and tells the
    /// schedule (a member in back-off may be reachable again) and gossip
    /// (a member it could not connect to may be reachable now).
    pub(super) fn use_addresses(&self, learned: Vec<Learned>) {
        for l in learned {
            let Ok(id) = EndpointId::from_bytes(&l.device.0) else {
                continue;
            };
            // The newest held, which another session may have replaced
            // since this one was taken.
            let l = match self.inner.repo.store().peer(&l.device.to_string()) {
                Ok(Some(p)) => Learned {
                    device: l.device,
                    direct: p.addrs,
                    relay: p.relay,
                },
                _ => l,
            };
            // Replaces what was known: the old addresses are where the
            // member was, and dialing them only costs time.
            self.inner
                .lookup
                .set_endpoint_info(endpoint_addr(id, &l.direct, l.relay.as_deref()));
            tracing::debug!(peer = %id.fmt_short(), addrs = ?l.direct, "learned a member's addresses");
            self.schedule(Input::AddressLearned(id));
            let node = self.clone();
            tokio::spawn(async move { node.rejoin_gossip(id).await });
        }
    }

    /// Where sessions put the addresses they learn, as they learn them.
    pub(super) fn learned_sink(&self) -> crate::replica::LearnedSink {
        let node = self.clone();
        crate::replica::LearnedSink(std::sync::Arc::new(move |learned| {
            node.use_addresses(vec![learned])
        }))
    }

    /// An announcement on a space's topic.
    pub(super) fn on_addresses(&self, space: SpaceId, signed: &[u8], from: EndpointId) {
        let SpaceId::Shared(id) = space else {
            return;
        };
        match blocking(|| self.inner.repo.learn_addresses(id, signed)) {
            Ok(Ok(Some(learned))) => self.use_addresses(vec![learned]),
            Ok(Ok(None)) => {}
            Ok(Err(refused)) => {
                tracing::debug!(%space, from = %from.fmt_short(), "refused an address announcement: {refused}")
            }
            Err(e) => tracing::warn!("keeping a member's addresses: {e}"),
        }
    }

    /// How each member of every space is reached, from the endpoint's
    /// current paths.
    async fn refresh_paths(&self) {
        let me = self.inner.repo.device_id();
        let members: Vec<EndpointId> = {
            let Ok(spaces) = blocking(|| self.inner.repo.spaces()) else {
                return;
            };
            let mut all: Vec<EndpointId> = spaces
                .iter()
                .flat_map(|s| s.members.keys())
                .filter_map(|d| endpoint_of(d))
                .filter(|id| device_of(*id) != me)
                .collect();
            all.sort();
            all.dedup();
            all
        };
        let mut paths = BTreeMap::new();
        for id in members {
            let active = match self.inner.endpoint.remote_info(id).await {
                Some(info) => info
                    .addrs()
                    .filter(|a| matches!(a.usage(), TransportAddrUsage::Active))
                    .map(|a| a.addr().clone())
                    .collect(),
                None => Vec::new(),
            };
            paths.insert(id, active);
        }
        self.counters().paths = paths;
    }

    /// What status shows for each member.
    pub(super) fn reach(&self) -> BTreeMap<String, PeerReach> {
        // A copy, so that the store is read without the counters held.
        let (paths, unreachable) = {
            let c = self.counters();
            (c.paths.clone(), c.unreachable.clone())
        };
        let mut out = BTreeMap::new();
        for (id, active) in &paths {
            let device = device_of(*id).to_string();
            let held = self.inner.repo.store().peer(&device).ok().flatten();
            let path = active
                .iter()
                .map(path_of)
                .min_by_key(|p| match *p {
                    "direct (LAN)" => 0,
                    "direct (internet)" => 1,
                    "via relay" => 2,
                    _ => 3,
                })
                .unwrap_or("unknown");
            let in_use = active
                .iter()
                .filter_map(|a| match a {
                    TransportAddr::Ip(s) => Some(s.to_string()),
                    _ => None,
                })
                .collect();
            let announced_at = held
                .as_ref()
                .filter(|p| p.announced_ms > 0)
                .and_then(|p| Timestamp::from_millisecond(p.announced_ms as i64).ok())
                .map(|t| t.to_string());
            out.insert(
                device,
                PeerReach {
                    path: path.to_string(),
                    in_use,
                    announced: held.as_ref().map(|p| p.addrs.clone()).unwrap_or_default(),
                    announced_at,
                    relay: held.and_then(|p| p.relay),
                    unreachable_since: unreachable.get(id).map(Timestamp::to_string),
                },
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_named_by_what_they_cross() {
        let ip = |s: &str| TransportAddr::Ip(s.parse().expect("addr"));
        assert_eq!(path_of(&ip("192.168.1.20:4433")), "direct (LAN)");
        assert_eq!(path_of(&ip("10.1.2.3:4433")), "direct (LAN)");
        assert_eq!(path_of(&ip("[fd00::1]:4433")), "direct (LAN)");
        assert_eq!(path_of(&ip("203.0.113.5:4433")), "direct (internet)");
        assert_eq!(path_of(&ip("[2001:db8::1]:4433")), "direct (internet)");
        let relay = TransportAddr::Relay("https://relay.example/".parse().expect("url"));
        assert_eq!(path_of(&relay), "via relay");
    }
}
