//! The networked node: an iroh endpoint whose identity is the device key,
//! the sync and join protocols, live gossip per space, and periodic
//! catch-up. The protocol logic lives in `rapport-sync`; this module only
//! moves its messages over QUIC streams and gossip topics.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iroh::address_lookup::MemoryLookup;
use iroh::endpoint::{Connection, RecvStream, SendStream, presets};
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use iroh::{Endpoint, EndpointAddr, EndpointId, RelayMode, SecretKey};
use iroh_gossip::api::{Event, GossipSender};
use iroh_gossip::{Gossip, TopicId};
use jiff::Timestamp;
use n0_future::StreamExt;
use rapport_model::{RecordId, Role, SpaceId, SpaceView};
use rapport_proto::wire::{
    self, Announce, JOIN_ALPN, JoinMessage, MAX_GOSSIP, SYNC_ALPN, SyncMessage, Ticket,
};
use rapport_store::PeerRecord;
use rapport_sync::{Initiator, Responder};
use rapport_trust::DeviceId;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::limits::{Limiter, Limits};
use crate::repo::LocalChange;
use crate::{NodeError, Repo};

/// How long one read on a stream may wait before the session is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a whole catch-up session may take.
const SESSION_TIMEOUT: Duration = Duration::from_secs(600);
/// Catch-up sessions run back to back for one (peer, space) before the
/// periodic catch-up takes over.
const MAX_FOLLOW_UPS: usize = 3;
/// Catch-up sessions one peer may have this node serve at once. An honest
/// node runs one per space at a time (coalescing) and its periodic
/// catch-up goes space after space, so only live edits in many spaces at
/// once come near it (it then retries after [`BUSY_RETRY`]); a peer that
/// opens more is flooding, and the extra sessions are turned away before
/// they cost any work.
pub const MAX_SESSIONS_PER_PEER: usize = 8;
/// What a peer over [`MAX_SESSIONS_PER_PEER`] is told; the initiator
/// recognises it by [`BUSY_PREFIX`].
const BUSY: &str = "busy: too many catch-up sessions from your device at once; try again later";
const BUSY_PREFIX: &str = "busy:";
/// How long a node waits before trying again a peer that said [`BUSY`].
const BUSY_RETRY: Duration = Duration::from_secs(2);
/// How long to wait for a peer to answer a dial.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Which relays the node uses to reach peers it cannot reach directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayChoice {
    /// Direct connections only (LAN, loopback, public addresses).
    Disabled,
    /// iroh's public relays.
    Default,
    /// A relay of your own, e.g. one run by `rapport relay`.
    Custom(String),
}

impl std::str::FromStr for RelayChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "off" | "disabled" => Ok(RelayChoice::Disabled),
            "default" => Ok(RelayChoice::Default),
            url if url.starts_with("http://") || url.starts_with("https://") => {
                Ok(RelayChoice::Custom(url.to_string()))
            }
            other => Err(format!(
                "`{other}` is not a relay choice: use none, default, or a relay URL (https://...)"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to listen on; empty: all interfaces, a random port.
    pub bind: Vec<SocketAddr>,
    pub relay: RelayChoice,
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// How often to catch up with every known member (`None`: only when
    /// asked, for benchmarks).
    pub sync_interval: Option<Duration>,
    /// Join each space's gossip topic for live changes (off only in
    /// benchmarks that measure catch-up alone).
    pub live: bool,
    /// What peers may cost this node (a relay sets these).
    pub limits: Limits,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            bind: Vec::new(),
            relay: RelayChoice::Disabled,
            mdns: true,
            sync_interval: Some(Duration::from_secs(30)),
            live: true,
            limits: Limits::default(),
        }
    }
}

/// What `rapport status` shows about the network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct NetStatus {
    pub node_id: String,
    pub addrs: Vec<String>,
    pub relay: String,
    /// Peers we currently share a gossip topic with.
    pub connected: Vec<String>,
    /// Bytes of Rapport frames sent and received since the node started.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Frames refused as malformed or oversized.
    pub refused_frames: u64,
    /// Catch-up sessions turned away because their peer already had
    /// [`MAX_SESSIONS_PER_PEER`] running.
    pub sessions_turned_away: u64,
    pub spaces: BTreeMap<String, SpaceStatus>,
    /// Seconds since the node started.
    pub uptime_s: u64,
    /// Signed changes stored, all spaces together.
    pub changes_stored: usize,
    /// Bytes the store occupies on disk.
    pub disk_bytes: u64,
    /// Peers that synced with this node, with when they last did (RFC 3339).
    pub peers_seen: BTreeMap<String, String>,
    /// Changes refused for their sender's rate, and for a full quota.
    pub rate_limited: u64,
    pub over_quota: u64,
    /// The last such refusal.
    pub last_limit: Option<String>,
    pub quota_bytes: Option<u64>,
    pub changes_per_minute: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct SpaceStatus {
    pub name: String,
    pub members: usize,
    pub records: usize,
    /// Local changes made since the last completed sync of this space.
    pub pending_out: usize,
    /// When this space last completed a sync with a peer (RFC 3339).
    pub last_sync: Option<String>,
    pub rejected: usize,
    /// This device's role in the space.
    pub role: Option<Role>,
    /// The last refusal from a member of this space (for example "you
    /// were removed from space ... by ..."), if it was refused since.
    pub refused: Option<String>,
    /// Bytes of signed changes stored for the space.
    pub stored_bytes: u64,
    /// Changes stored while they wait for changes they depend on (at most
    /// `limits::MAX_WAITING_PER_SPACE`; refusals over it count in
    /// `rejected`).
    pub waiting: u64,
}

#[derive(Debug, Default)]
struct Counters {
    pending_out: HashMap<SpaceId, usize>,
    last_sync: HashMap<SpaceId, Timestamp>,
    neighbors: HashMap<SpaceId, Vec<EndpointId>>,
    refused: HashMap<SpaceId, String>,
    seen: HashMap<EndpointId, Timestamp>,
    /// Catch-up sessions running, and whether another was asked for.
    in_flight: HashMap<(EndpointId, SpaceId), bool>,
    /// Sessions this node is serving, per peer.
    serving: HashMap<EndpointId, usize>,
}

/// A gossip topic the node is subscribed to for a space.
#[derive(Debug)]
struct Subscription {
    topic: TopicId,
    sender: GossipSender,
    receiving: tokio::task::AbortHandle,
}

/// A running node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    repo: Arc<Repo>,
    endpoint: Endpoint,
    gossip: Gossip,
    lookup: MemoryLookup,
    router: Mutex<Option<Router>>,
    topics: tokio::sync::Mutex<HashMap<SpaceId, Subscription>>,
    topic_refresh: mpsc::UnboundedSender<RecordId>,
    counters: Mutex<Counters>,
    relay: RelayChoice,
    live: bool,
    traffic: Traffic,
    limiter: Limiter,
    started: std::time::Instant,
}

/// Bytes of Rapport frames sent and received (QUIC overhead excluded), and
/// frames refused as malformed or oversized.
#[derive(Debug, Default)]
struct Traffic {
    sent: AtomicU64,
    received: AtomicU64,
    refused_frames: AtomicU64,
    /// Sessions turned away: their peer already had as many as it may.
    turned_away: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot start the network endpoint: {0}")]
    Bind(String),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("peer {peer}: {reason}")]
    Peer { peer: String, reason: String },
    /// The peer serves as many of our sessions as it may right now.
    #[error("peer {0} is busy: it already serves {MAX_SESSIONS_PER_PEER} of our sessions")]
    Busy(String),
    #[error("invalid ticket: {0}")]
    Ticket(String),
}

fn peer_err(peer: impl std::fmt::Display, reason: impl std::fmt::Display) -> NetError {
    NetError::Peer {
        peer: peer.to_string(),
        reason: reason.to_string(),
    }
}

/// The gossip topic of a space: derived from its id and the topic secret
/// in its space document, which only current members hold (the document
/// is served only to members, and every removal renews the secret).
fn topic_of(space: &SpaceView) -> TopicId {
    let mut h = Sha256::new();
    h.update(b"rapport/topic/v2\0");
    h.update(space.id.to_bytes());
    h.update(&space.topic);
    let d: [u8; 32] = h.finalize().into();
    TopicId::from_bytes(d)
}

fn device_of(id: EndpointId) -> DeviceId {
    DeviceId(*id.as_bytes())
}

/// Runs blocking storage work (sled, Automerge) without stalling the
/// async runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

impl Node {
    /// Binds the endpoint, starts the protocols, joins every space's topic
    /// and starts periodic catch-up. Never waits for the internet.
    pub async fn start(repo: Arc<Repo>, config: NetConfig) -> Result<Node, NetError> {
        let secret = SecretKey::from_bytes(&repo.key().secret());
        let relay_mode = match &config.relay {
            RelayChoice::Disabled => RelayMode::Disabled,
            RelayChoice::Default => RelayMode::Default,
            RelayChoice::Custom(url) => RelayMode::custom([url
                .parse()
                .map_err(|e| NetError::Bind(format!("relay URL {url}: {e}")))?]),
        };
        // Keep the port of the last run where the user left it to us: peers
        // remember our address, and a node that comes back on a new port
        // is one nobody can find.
        let wanted = if config.bind.is_empty() {
            vec![SocketAddr::from(([0, 0, 0, 0], 0))]
        } else {
            config.bind.clone()
        };
        let saved = load_ports(repo.dir());
        let reuse: Vec<SocketAddr> = wanted
            .iter()
            .map(|a| match (a.port(), saved.get(&a.ip().to_string())) {
                (0, Some(port)) => SocketAddr::new(a.ip(), *port),
                _ => *a,
            })
            .collect();
        let endpoint = match bind(secret.clone(), relay_mode.clone(), &reuse).await {
            Ok(ep) => ep,
            Err(_) if reuse != wanted => bind(secret, relay_mode, &wanted).await?,
            Err(e) => return Err(e),
        };
        save_ports(repo.dir(), &endpoint.bound_sockets());
        let lookup = MemoryLookup::new();
        if let Ok(l) = endpoint.address_lookup() {
            l.add(lookup.clone());
            if config.mdns {
                match iroh_mdns_address_lookup::MdnsAddressLookup::builder().build(endpoint.id()) {
                    Ok(mdns) => l.add(mdns),
                    Err(e) => tracing::warn!("local network discovery (mDNS) is off: {e}"),
                }
            }
        }
        let (topic_refresh, mut refresh_rx) = mpsc::unbounded_channel::<RecordId>();
        let gossip = Gossip::builder()
            .max_message_size(MAX_GOSSIP)
            .spawn(endpoint.clone());
        let node = Node {
            inner: Arc::new(Inner {
                repo: repo.clone(),
                endpoint: endpoint.clone(),
                gossip: gossip.clone(),
                lookup,
                router: Mutex::new(None),
                topics: tokio::sync::Mutex::new(HashMap::new()),
                topic_refresh,
                counters: Mutex::new(Counters::default()),
                relay: config.relay.clone(),
                live: config.live,
                traffic: Traffic::default(),
                limiter: Limiter::new(config.limits),
                started: std::time::Instant::now(),
            }),
        };
        for peer in blocking(|| repo.store().peers()).map_err(NodeError::from)? {
            node.remember(&peer.device, &peer.addrs);
        }
        let router = Router::builder(endpoint)
            .accept(SYNC_ALPN, SyncHandler { node: node.clone() })
            .accept(JOIN_ALPN, JoinHandler { node: node.clone() })
            .accept(iroh_gossip::ALPN, gossip)
            .spawn();
        *node.inner.router.lock().unwrap_or_else(|p| p.into_inner()) = Some(router);

        // Local changes go out on gossip as they happen.
        let (tx, mut rx) = mpsc::unbounded_channel::<LocalChange>();
        repo.set_observer(Arc::new(move |c| {
            let _ = tx.send(c);
        }));
        let refresher = node.clone();
        tokio::spawn(async move {
            while let Some(space) = refresh_rx.recv().await {
                refresher.join_topic(space).await;
            }
        });
        let announcer = node.clone();
        tokio::spawn(async move {
            while let Some(change) = rx.recv().await {
                announcer.announce(change).await;
            }
        });

        if config.live {
            for space in blocking(|| repo.spaces())? {
                node.join_topic(space.id).await;
            }
        }
        if let Some(interval) = config.sync_interval {
            let periodic = node.clone();
            tokio::spawn(async move {
                loop {
                    periodic.catch_up_all().await;
                    tokio::time::sleep(interval).await;
                }
            });
        }
        Ok(node)
    }

    pub fn repo(&self) -> &Arc<Repo> {
        &self.inner.repo
    }

    pub fn id(&self) -> EndpointId {
        self.inner.endpoint.id()
    }

    /// Addresses peers can dial, `ip:port`.
    pub fn addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = self
            .inner
            .endpoint
            .addr()
            .ip_addrs()
            .map(|a| a.to_string())
            .collect();
        if addrs.is_empty() {
            addrs = self
                .inner
                .endpoint
                .bound_sockets()
                .iter()
                .filter(|a| !a.ip().is_unspecified())
                .map(|a| a.to_string())
                .collect();
        }
        addrs.sort();
        addrs
    }

    pub async fn shutdown(&self) {
        let router = self
            .inner
            .router
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(router) = router
            && let Err(e) = router.shutdown().await
        {
            tracing::warn!("shutting down the network: {e}");
        }
    }

    /// Learns where a peer listens, for dialing it and for gossip.
    fn remember(&self, device_hex: &str, addrs: &[String]) {
        let Some(id) = rapport_proto::parse_hex(device_hex)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .and_then(|b| EndpointId::from_bytes(&b).ok())
        else {
            return;
        };
        let mut addr = EndpointAddr::new(id);
        for a in addrs {
            if let Ok(sock) = a.parse::<SocketAddr>() {
                addr = addr.with_ip_addr(sock);
            }
        }
        self.inner.lookup.add_endpoint_info(addr);
    }

    fn save_peer(&self, device: DeviceId, addrs: Vec<String>) {
        if addrs.is_empty() || device == self.inner.repo.device_id() {
            return;
        }
        self.remember(&device.to_string(), &addrs);
        let record = PeerRecord {
            device: device.to_string(),
            addrs,
            seen: Timestamp::now().as_second(),
        };
        if let Err(e) = blocking(|| self.inner.repo.store().put_peer(&record)) {
            tracing::warn!("remembering a peer's address: {e}");
        }
    }

    /// Members of `space` other than this node; learns the addresses
    /// their entries record, so that members who never met (say, a laptop
    /// and the always-on relay) can reach one another.
    fn other_members(&self, space: &SpaceView) -> Vec<EndpointId> {
        let me = self.inner.repo.device_id().to_string();
        for m in space.members.values() {
            if m.device != me && !m.addrs.is_empty() {
                self.remember(&m.device, &m.addrs);
            }
        }
        space
            .members
            .keys()
            .filter(|d| **d != me)
            .filter_map(|d| rapport_proto::parse_hex(d))
            .filter_map(|b| <[u8; 32]>::try_from(b).ok())
            .filter_map(|b| EndpointId::from_bytes(&b).ok())
            .collect()
    }

    /// Subscribes to a space's current gossip topic and starts receiving;
    /// leaves the old topic when a removal renewed it, and leaves
    /// altogether when this device is no longer a member.
    async fn join_topic(&self, space_id: RecordId) {
        if !self.inner.live {
            return;
        }
        let space = SpaceId::Shared(space_id);
        let me = self.inner.repo.device_id().to_string();
        let view = match blocking(|| self.inner.repo.space(space_id)) {
            Ok(Some(v)) if v.is_member(&me) => Some(v),
            _ => None,
        };
        let mut topics = self.inner.topics.lock().await;
        let wanted = view.as_ref().map(topic_of);
        if let Some(current) = topics.get(&space) {
            if Some(current.topic) == wanted {
                return;
            }
            current.receiving.abort();
            topics.remove(&space);
            self.neighbors(space, Vec::clear);
        }
        let (Some(view), Some(topic_id)) = (view, wanted) else {
            return;
        };
        let members = self.other_members(&view);
        let topic = match self.inner.gossip.subscribe(topic_id, members).await {
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
                        node.on_gossip(space, &msg.content, msg.delivered_from)
                            .await;
                    }
                    Ok(Event::NeighborUp(peer)) => {
                        node.neighbors(space, |n| n.push(peer));
                        // A member came (back) online: catch up with it.
                        let n = node.clone();
                        tokio::spawn(async move { n.sync_logged(peer, space).await });
                    }
                    Ok(Event::NeighborDown(peer)) => {
                        node.neighbors(space, |n| n.retain(|p| *p != peer))
                    }
                    Ok(Event::Lagged) => {
                        tracing::warn!(%space, "missed gossip messages; catching up");
                        let n = node.clone();
                        tokio::spawn(async move { n.catch_up_space(space_id).await });
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
            },
        );
    }

    fn neighbors(&self, space: SpaceId, f: impl FnOnce(&mut Vec<EndpointId>)) {
        let mut c = self
            .inner
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(c.neighbors.entry(space).or_default());
    }

    /// Broadcasts a local change; large ones go out as heads only.
    async fn announce(&self, change: LocalChange) {
        let SpaceId::Shared(space_id) = change.space else {
            return;
        };
        {
            let mut c = self
                .inner
                .counters
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *c.pending_out.entry(change.space).or_default() += 1;
        }
        // Heads only: anyone who knows the topic can read gossip, so the
        // changes themselves are pulled by members over the authenticated
        // sync protocol.
        let msg = Announce {
            space: space_id.to_bytes(),
            record: change.record.to_bytes(),
            heads: change.heads,
            changes: Vec::new(),
        };
        let bytes = wire::encode_gossip(&msg).unwrap_or_default();
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
            self.join_topic(space_id).await;
        }
    }

    async fn on_gossip(&self, space: SpaceId, bytes: &[u8], from: EndpointId) {
        let msg: Announce = match wire::decode(bytes) {
            Ok(m) => m,
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
        let repo = self.inner.repo.clone();
        // Announcements carry heads only; changes are pulled over the
        // authenticated, rate-limited sync protocol. Anything else in a
        // gossip message is ignored.
        let have = blocking(|| repo.store().heads(space, record))
            .ok()
            .flatten()
            .unwrap_or_default();
        let mut want = msg.heads.clone();
        want.sort();
        let mut have_sorted = have;
        have_sorted.sort();
        let behind = have_sorted != want;
        if behind {
            let node = self.clone();
            let SpaceId::Shared(space_id) = space else {
                return;
            };
            let from_member = blocking(|| repo.space(space_id))
                .ok()
                .flatten()
                .is_some_and(|v| v.is_member(&device_of(from).to_string()));
            tokio::spawn(async move {
                if from_member {
                    node.sync_logged(from, space).await;
                } else {
                    // Relayed by a non-member: catch up with the members.
                    node.catch_up_space(space_id).await;
                }
            });
        }
    }

    async fn catch_up_all(&self) {
        let spaces = blocking(|| self.inner.repo.spaces()).unwrap_or_default();
        for s in spaces {
            self.catch_up_space(s.id).await;
        }
    }

    /// Runs a catch-up session with every other member of a space.
    pub async fn catch_up_space(&self, space_id: RecordId) {
        let Ok(Some(view)) = blocking(|| self.inner.repo.space(space_id)) else {
            return;
        };
        for peer in self.other_members(&view) {
            self.sync_logged(peer, SpaceId::Shared(space_id)).await;
        }
    }

    /// Catches up with `peer` on `space`, coalescing: while a session
    /// with that peer for that space runs, further requests (a burst of
    /// gossip announcements, say) add up to one more session afterwards,
    /// not one each. At most a few follow-ups run back to back; the
    /// periodic catch-up picks up after that.
    async fn sync_logged(&self, peer: EndpointId, space: SpaceId) {
        {
            let mut c = self.counters();
            if let Some(again) = c.in_flight.get_mut(&(peer, space)) {
                *again = true;
                return;
            }
            c.in_flight.insert((peer, space), false);
        }
        // Clears the entry however this ends (an error, a panic, a
        // cancelled task), so catch-up with this peer never stops for good.
        struct InFlight<'a>(&'a Node, EndpointId, SpaceId);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.counters().in_flight.remove(&(self.1, self.2));
            }
        }
        let _entry = InFlight(self, peer, space);
        for _ in 0..MAX_FOLLOW_UPS + 1 {
            match self.sync_with(peer, space).await {
                Err(NetError::Busy(_)) => {
                    // The peer already serves as many of our sessions as
                    // it may (live edits in many spaces at once): try
                    // again shortly instead of waiting for the next round.
                    tokio::time::sleep(BUSY_RETRY).await;
                    continue;
                }
                Err(e) => tracing::debug!(peer = %peer.fmt_short(), %space, "catch-up: {e}"),
                Ok(_) => {}
            }
            let mut c = self.counters();
            match c.in_flight.get_mut(&(peer, space)) {
                Some(again) if *again => *again = false,
                _ => return,
            }
        }
    }

    /// Runs one catch-up session for `space` with `peer` (we dial), within
    /// an overall deadline. A peer that is not a member of a space we know
    /// is not dialed at all.
    pub async fn sync_with(
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
        tokio::time::timeout(SESSION_TIMEOUT, self.sync_session(peer, space))
            .await
            .map_err(|_| peer_err(peer.fmt_short(), "the session took too long"))?
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
        let mut replica = repo.replica(device_of(peer)).limited(&self.inner.limiter);
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
                    peer_err(peer.fmt_short(), e)
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
        self.refresh_topic(space);
        if replica.report.rejected > 0 {
            tracing::warn!(peer = %peer.fmt_short(), %space, rejected = replica.report.rejected, "refused changes from a peer");
        }
        Ok(init.stats)
    }

    /// Membership may have changed in a session (a removal renews the
    /// topic): re-checks the space's subscription, from its own task.
    fn refresh_topic(&self, space: SpaceId) {
        if let SpaceId::Shared(id) = space {
            let _ = self.inner.topic_refresh.send(id);
        }
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.inner
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn synced(&self, space: SpaceId) {
        let mut c = self.counters();
        c.pending_out.insert(space, 0);
        c.last_sync.insert(space, Timestamp::now());
    }

    /// Creates an invite ticket granting `role` for a space this node
    /// administers.
    pub fn invite(
        &self,
        space_id: RecordId,
        ttl_seconds: i64,
        role: Role,
        org: Option<String>,
    ) -> Result<Ticket, NetError> {
        let repo = &self.inner.repo;
        let view = repo
            .space(space_id)?
            .ok_or_else(|| NodeError::UnknownSpace(space_id.to_string()))?;
        let (secret, expires) = repo.create_invite(space_id, ttl_seconds, role, org)?;
        Ok(Ticket {
            space: space_id.to_bytes(),
            space_name: view.name,
            inviter: *self.id().as_bytes(),
            addrs: self.addrs(),
            relay: self
                .inner
                .endpoint
                .addr()
                .relay_urls()
                .next()
                .map(|u| u.to_string()),
            role: role.to_string(),
            secret,
            expires,
        })
    }

    /// Redeems a ticket with its inviter, then catches up with it.
    pub async fn join(&self, ticket: &Ticket) -> Result<SpaceView, NetError> {
        if ticket.expires < Timestamp::now().as_second() {
            return Err(NetError::Ticket(
                "this ticket has expired; ask for a new one".into(),
            ));
        }
        let inviter = EndpointId::from_bytes(&ticket.inviter)
            .map_err(|_| NetError::Ticket("the inviter's id is damaged".into()))?;
        self.save_peer(device_of(inviter), ticket.addrs.clone());
        let mut addr = EndpointAddr::new(inviter);
        for a in &ticket.addrs {
            if let Ok(sock) = a.parse::<SocketAddr>() {
                addr = addr.with_ip_addr(sock);
            }
        }
        if let Some(relay) = &ticket.relay
            && let Ok(url) = relay.parse()
        {
            addr = addr.with_relay_url(url);
        }
        let who = inviter.fmt_short().to_string();
        let conn = tokio::time::timeout(DIAL_TIMEOUT, self.inner.endpoint.connect(addr, JOIN_ALPN))
            .await
            .map_err(|_| {
                peer_err(
                    &who,
                    "the inviter did not answer; is its node running and reachable?",
                )
            })?
            .map_err(|e| peer_err(&who, e))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| peer_err(&who, e))?;
        let me = self.inner.repo.identity();
        let redeem = JoinMessage::Redeem {
            space: ticket.space,
            secret: ticket.secret,
            addrs: self.addrs(),
            user: me.user,
            org: me.org,
        };
        write_frame(&self.inner.traffic, &mut send, &redeem)
            .await
            .map_err(|e| peer_err(&who, e))?;
        let _ = send.finish();
        let answer = read_frame::<JoinMessage>(&self.inner.traffic, &mut recv)
            .await
            .map_err(|e| peer_err(&who, e))?;
        conn.close(0u32.into(), b"done");
        match answer {
            JoinMessage::Welcome => {}
            JoinMessage::Denied { reason } => return Err(NetError::Ticket(reason)),
            JoinMessage::Redeem { .. } => return Err(peer_err(&who, "answered with a redeem")),
        }
        let space_id = RecordId::from_bytes(ticket.space);
        let space = SpaceId::Shared(space_id);
        self.sync_with(inviter, space).await?;
        self.join_topic(space_id).await;
        blocking(|| self.inner.repo.space(space_id))?
            .ok_or_else(|| peer_err(&who, "the space did not arrive"))
    }

    /// A snapshot for `rapport status`.
    pub fn status(&self) -> Result<NetStatus, NodeError> {
        // Kept counts only, no scans: the metrics endpoint calls this on
        // every scrape, so it costs per space, not per record or change.
        let repo = &self.inner.repo;
        let c = self
            .inner
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut connected: Vec<String> = c
            .neighbors
            .values()
            .flatten()
            .map(|p| p.to_string())
            .collect();
        connected.sort();
        connected.dedup();
        let mut spaces = BTreeMap::new();
        for s in repo.spaces()? {
            let id = SpaceId::Shared(s.id);
            let records = repo.space_record_count(s.id);
            spaces.insert(
                s.id.to_string(),
                SpaceStatus {
                    name: s.name.clone(),
                    members: s.members.len(),
                    records,
                    pending_out: c.pending_out.get(&id).copied().unwrap_or(0),
                    last_sync: c.last_sync.get(&id).map(|t| t.to_string()),
                    rejected: repo.store().rejected_count(id) as usize,
                    role: s.role_of(&repo.device_id().to_string()),
                    refused: c.refused.get(&id).cloned(),
                    stored_bytes: repo.store().space_usage(id)?,
                    waiting: repo.store().waiting_in_space(id)?,
                },
            );
        }
        Ok(NetStatus {
            node_id: self.id().to_string(),
            addrs: self.addrs(),
            relay: match &self.inner.relay {
                RelayChoice::Disabled => "none".into(),
                RelayChoice::Default => "default".into(),
                RelayChoice::Custom(u) => u.clone(),
            },
            connected,
            bytes_sent: self.inner.traffic.sent.load(Ordering::Relaxed),
            bytes_received: self.inner.traffic.received.load(Ordering::Relaxed),
            refused_frames: self.inner.traffic.refused_frames.load(Ordering::Relaxed),
            sessions_turned_away: self.inner.traffic.turned_away.load(Ordering::Relaxed),
            spaces,
            uptime_s: self.inner.started.elapsed().as_secs(),
            changes_stored: repo.store().change_count(),
            disk_bytes: repo.store().size_on_disk()?,
            peers_seen: c
                .seen
                .iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
            rate_limited: self.inner.limiter.rate_limited.load(Ordering::Relaxed),
            over_quota: self.inner.limiter.over_quota.load(Ordering::Relaxed),
            last_limit: self.inner.limiter.last(),
            quota_bytes: self.inner.limiter.limits.space_quota,
            changes_per_minute: self.inner.limiter.limits.changes_per_minute,
        })
    }
}

async fn bind(
    secret: SecretKey,
    relay: RelayMode,
    addrs: &[SocketAddr],
) -> Result<Endpoint, NetError> {
    let mut builder = Endpoint::builder(presets::Minimal)
        .secret_key(secret)
        .relay_mode(relay)
        .clear_ip_transports();
    for addr in addrs {
        builder = builder
            .bind_addr(*addr)
            .map_err(|e| NetError::Bind(format!("{addr}: {e}")))?;
    }
    builder
        .bind()
        .await
        .map_err(|e| NetError::Bind(e.to_string()))
}

const PORTS_FILE: &str = "ports.json";

fn load_ports(dir: &std::path::Path) -> HashMap<String, u16> {
    std::fs::read(dir.join(PORTS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_ports(dir: &std::path::Path, bound: &[SocketAddr]) {
    let ports: HashMap<String, u16> = bound
        .iter()
        .map(|a| (a.ip().to_string(), a.port()))
        .collect();
    if let Ok(json) = serde_json::to_vec(&ports) {
        let _ = std::fs::write(dir.join(PORTS_FILE), json);
    }
}

/// Why reading a frame failed.
#[derive(Debug)]
enum FrameError {
    /// The connection broke or the peer went quiet.
    Io(String),
    /// The peer sent an oversized or malformed frame: refused and counted.
    Refused(wire::WireError),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(e) => f.write_str(e),
            FrameError::Refused(e) => write!(f, "refused a frame: {e}"),
        }
    }
}

async fn write_frame<T: Serialize>(
    traffic: &Traffic,
    send: &mut SendStream,
    msg: &T,
) -> Result<(), String> {
    let frame = wire::encode_frame(msg).map_err(|e| e.to_string())?;
    send.write_all(&frame).await.map_err(|e| e.to_string())?;
    traffic
        .sent
        .fetch_add(frame.len() as u64, Ordering::Relaxed);
    Ok(())
}

async fn read_frame<T: serde::de::DeserializeOwned>(
    traffic: &Traffic,
    recv: &mut RecvStream,
) -> Result<T, FrameError> {
    let read = async {
        let mut len = [0u8; 4];
        recv.read_exact(&mut len)
            .await
            .map_err(|e| FrameError::Io(e.to_string()))?;
        let len = wire::frame_len(len).map_err(FrameError::Refused)?;
        let mut body = vec![0u8; len];
        recv.read_exact(&mut body)
            .await
            .map_err(|e| FrameError::Io(e.to_string()))?;
        traffic
            .received
            .fetch_add(4 + len as u64, Ordering::Relaxed);
        wire::decode::<T>(&body).map_err(FrameError::Refused)
    };
    let result = tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .map_err(|_| FrameError::Io("timed out waiting for the peer".into()))?;
    if let Err(FrameError::Refused(e)) = &result {
        traffic.refused_frames.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("refused a frame from a peer: {e}");
    }
    result
}

/// Serves catch-up sessions that peers open with us.
#[derive(Debug, Clone)]
struct SyncHandler {
    node: Node,
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
                let session = tokio::time::timeout(SESSION_TIMEOUT, node.respond(peer, send, recv));
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

impl Node {
    async fn respond(
        &self,
        peer: EndpointId,
        mut send: SendStream,
        mut recv: RecvStream,
    ) -> Result<(), String> {
        let repo = self.inner.repo.clone();
        let mut replica = repo.replica(device_of(peer)).limited(&self.inner.limiter);
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
        self.refresh_topic(responder.space());
        Ok(())
    }
}

/// Serves ticket redemptions.
#[derive(Debug, Clone)]
struct JoinHandler {
    node: Node,
}

impl ProtocolHandler for JoinHandler {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        let peer = connection.remote_id();
        let (mut send, mut recv) = connection.accept_bi().await?;
        let answer = match read_frame::<JoinMessage>(&self.node.inner.traffic, &mut recv).await {
            Ok(JoinMessage::Redeem {
                space,
                secret,
                addrs,
                user,
                org,
            }) => {
                let space_id = RecordId::from_bytes(space);
                let device = device_of(peer);
                let repo = self.node.inner.repo.clone();
                let claim = rapport_model::Identity { user, org };
                match blocking(|| {
                    repo.redeem_invite(space_id, &secret, &device.to_string(), &claim, &addrs)
                }) {
                    Ok(_) => {
                        tracing::info!(peer = %peer.fmt_short(), space = %space_id, "a new member joined");
                        self.node.save_peer(device, addrs);
                        JoinMessage::Welcome
                    }
                    Err(e) => {
                        tracing::warn!(peer = %peer.fmt_short(), "refused a ticket: {e}");
                        JoinMessage::Denied {
                            reason: e.to_string(),
                        }
                    }
                }
            }
            Ok(_) => JoinMessage::Denied {
                reason: "expected a ticket".into(),
            },
            Err(e) => {
                tracing::warn!(peer = %peer.fmt_short(), "malformed join request: {e}");
                JoinMessage::Denied {
                    reason: "malformed request".into(),
                }
            }
        };
        if write_frame(&self.node.inner.traffic, &mut send, &answer)
            .await
            .is_ok()
        {
            let _ = send.finish();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), connection.closed()).await;
        Ok(())
    }
}
