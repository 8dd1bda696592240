//! The networked node: an iroh endpoint whose identity is the device key,
//! the sync and join protocols, live gossip per space, and catch-up. The
//! protocol logic lives in `rapport-sync` (the sessions and the schedule
//! that decides when to run them); this module only moves their messages
//! over QUIC streams and gossip topics and feeds the schedule real time.
//!
//! - `endpoint`: binding, ports, relays, address lookup;
//! - `gossip`: topics, announcements, neighbours;
//! - `catchup`: the schedule's task, dialed and served sessions;
//! - `join`: invites and their redemption;
//! - `reach`: this node's signed addresses, members' learned ones, and
//!   how each member is reached now;
//! - `frame`: length-prefixed frames with a read timeout.

mod catchup;
mod endpoint;
mod frame;
mod gossip;
mod join;
mod reach;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iroh::address_lookup::MemoryLookup;
use iroh::protocol::Router;
use iroh::{Endpoint, EndpointAddr, EndpointId, SecretKey};
use iroh_gossip::Gossip;
use jiff::Timestamp;
use rapport_model::{RecordId, Role, SpaceId, SpaceView};
use rapport_proto::wire::{JOIN_ALPN, MAX_GOSSIP, SYNC_ALPN};
use rapport_trust::DeviceId;
use serde::Serialize;
use tokio::sync::mpsc;

pub use endpoint::{DiscoveryChoice, RelayChoice};
pub use reach::PeerReach;

use crate::limits::{Limiter, Limits};
use crate::repo::LocalChange;
use crate::{NodeError, Repo};
use catchup::{Input, SyncHandler};
use frame::Traffic;
use gossip::Subscription;
use join::JoinHandler;

/// Catch-up sessions one peer may have this node serve at once. An honest
/// node runs one per space at a time (coalescing) and its periodic
/// catch-up goes space after space, so only live edits in many spaces at
/// once come near it (it then retries after
/// [`rapport_sync::schedule::BUSY_RETRY`]); a peer that opens more is
/// flooding, and the extra sessions are turned away before they cost any
/// work.
pub const MAX_SESSIONS_PER_PEER: usize = 8;
/// How long to wait for a peer to answer a dial.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to listen on; empty: all interfaces, a random port.
    pub bind: Vec<SocketAddr>,
    pub relay: RelayChoice,
    /// Where to publish this node's addresses and look up peers' by node
    /// id (pkarr).
    pub discovery: DiscoveryChoice,
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
            discovery: DiscoveryChoice::Disabled,
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
    pub discovery: String,
    /// How each member of this node's spaces is reached now, by device.
    pub members: BTreeMap<String, PeerReach>,
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
    /// Sessions this node is serving, per peer.
    serving: HashMap<EndpointId, usize>,
    /// Each member's paths in use, refreshed every few seconds.
    paths: BTreeMap<EndpointId, Vec<iroh::TransportAddr>>,
    /// Members whose sessions have failed since (the first failure).
    unreachable: HashMap<EndpointId, Timestamp>,
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
    /// Spaces whose membership may have changed (see [`Node::space_changed`]).
    space_refresh: mpsc::UnboundedSender<RecordId>,
    /// Inputs of the catch-up schedule's task.
    schedule: mpsc::UnboundedSender<Input>,
    counters: Mutex<Counters>,
    relay: RelayChoice,
    discovery: DiscoveryChoice,
    live: bool,
    traffic: Traffic,
    limiter: Limiter,
    started: std::time::Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot start the network endpoint: {0}")]
    Bind(String),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("peer {peer}: {reason}")]
    Peer { peer: String, reason: String },
    /// The peer refused the session (for example: this device was
    /// removed from the space).
    #[error("peer {peer}: {reason}")]
    Refused { peer: String, reason: String },
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

fn device_of(id: EndpointId) -> DeviceId {
    DeviceId(*id.as_bytes())
}

/// The node id of a device named in hex (as member entries name it).
fn endpoint_of(device_hex: &str) -> Option<EndpointId> {
    rapport_proto::parse_hex(device_hex)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| EndpointId::from_bytes(&b).ok())
}

/// Where to dial `id`: its direct addresses (`ip:port`; others are
/// skipped) and relay.
fn endpoint_addr(id: EndpointId, direct: &[String], relay: Option<&str>) -> EndpointAddr {
    let mut addr = EndpointAddr::new(id);
    for a in direct {
        if let Ok(sock) = a.parse::<SocketAddr>() {
            addr = addr.with_ip_addr(sock);
        }
    }
    if let Some(url) = relay.and_then(|r| r.parse().ok()) {
        addr = addr.with_relay_url(url);
    }
    addr
}

/// Runs blocking storage work (sled, Automerge) without stalling the
/// async runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

impl Node {
    /// Binds the endpoint, starts the protocols, joins every space's topic
    /// and starts the catch-up schedule. Never waits for the internet.
    pub async fn start(repo: Arc<Repo>, config: NetConfig) -> Result<Node, NetError> {
        let secret = SecretKey::from_bytes(&repo.key().secret());
        let (endpoint, lookup) = endpoint::open(repo.dir(), secret, &config).await?;
        let (space_refresh, mut refresh_rx) = mpsc::unbounded_channel::<RecordId>();
        let (schedule, schedule_rx) = mpsc::unbounded_channel::<Input>();
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
                space_refresh,
                schedule,
                counters: Mutex::new(Counters::default()),
                relay: config.relay.clone(),
                discovery: config.discovery.clone(),
                live: config.live,
                traffic: Traffic::default(),
                limiter: Limiter::new(config.limits),
                started: std::time::Instant::now(),
            }),
        };
        let me = repo.device_id().to_string();
        for peer in blocking(|| repo.store().peers()).map_err(NodeError::from)? {
            if peer.device != me {
                node.remember(&peer.device, &peer.addrs, peer.relay.as_deref());
            }
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
                refresher.space_changed(space).await;
            }
        });
        let announcer = node.clone();
        tokio::spawn(async move {
            while let Some(change) = rx.recv().await {
                announcer.announce(change).await;
            }
        });

        // Members first, so that the first round knows whom to visit.
        for space in blocking(|| repo.spaces())? {
            node.space_changed(space.id).await;
        }
        node.schedule(Input::Start);
        tokio::spawn(node.clone().watch_addresses());
        tokio::spawn(catchup::run_schedule(
            node.clone(),
            schedule_rx,
            config.sync_interval,
        ));
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
        endpoint::addrs(&self.inner.endpoint)
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
    fn remember(&self, device_hex: &str, addrs: &[String], relay: Option<&str>) {
        let Some(id) = endpoint_of(device_hex) else {
            return;
        };
        self.inner
            .lookup
            .add_endpoint_info(endpoint_addr(id, addrs, relay));
    }

    fn save_peer(&self, device: DeviceId, addrs: Vec<String>) {
        if addrs.is_empty() || device == self.inner.repo.device_id() {
            return;
        }
        self.remember(&device.to_string(), &addrs, None);
        if let Err(e) = blocking(|| self.inner.repo.note_peer_addrs(device, addrs)) {
            tracing::warn!("remembering a peer's address: {e}");
        }
    }

    /// Members of `space` other than this node; learns the addresses
    /// their entries record, so that members who never met (say, a laptop
    /// and the always-on relay) can reach one another.
    fn other_members(&self, space: &SpaceView) -> Vec<EndpointId> {
        let me = self.inner.repo.device_id().to_string();
        for m in space.members.values() {
            // A member that announced where it is now is dialed there, not
            // where it was when it joined.
            if m.device != me && !m.addrs.is_empty() && !self.inner.repo.has_announced(&m.device) {
                self.remember(&m.device, &m.addrs, None);
            }
        }
        space
            .members
            .keys()
            .filter(|d| **d != me)
            .filter_map(|d| endpoint_of(d))
            .collect()
    }

    /// A space's membership may have changed (a session, a local change
    /// of its space document, a join): tells the schedule whom to dial for
    /// it, and moves the gossip subscription to its current topic (or off
    /// it, when this device is no longer a member).
    async fn space_changed(&self, space_id: RecordId) {
        let me = self.inner.repo.device_id().to_string();
        let view = match blocking(|| self.inner.repo.space(space_id)) {
            Ok(Some(v)) if v.is_member(&me) => Some(v),
            _ => None,
        };
        let members = view
            .as_ref()
            .map(|v| self.other_members(v))
            .unwrap_or_default();
        self.schedule(Input::Members(SpaceId::Shared(space_id), members.clone()));
        self.join_topic(space_id, view, members).await;
    }

    /// [`Self::space_changed`], from its own task (callers may hold locks
    /// or be inside a session).
    fn refresh_space(&self, space: SpaceId) {
        if let SpaceId::Shared(id) = space {
            let _ = self.inner.space_refresh.send(id);
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

    /// A snapshot for `rapport status`.
    pub fn status(&self) -> Result<NetStatus, NodeError> {
        // Kept counts only, no scans: the metrics endpoint calls this on
        // every scrape, so it costs per space, not per record or change.
        let repo = &self.inner.repo;
        let members = self.reach();
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
            relay: self.inner.relay.label(),
            discovery: self.inner.discovery.label(),
            members,
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
