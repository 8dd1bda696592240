//! A discovery server of your own (`rapport relay run --discovery-server
//! IP:PORT`): the pkarr relay protocol that iroh's address lookup speaks.
//! A node started with `--discovery http://HOST:PORT/pkarr` publishes its
//! addresses there (`PUT /pkarr/<node id>`, a DNS packet signed by its
//! node key) and looks up a member it knows by node id only (`GET`).
//!
//! The server believes nothing it cannot check: a packet is kept only if
//! its signature verifies against the node id it is put under, and only
//! if it is newer than the one it replaces. Packets live in memory and
//! for an hour after they were last published: nodes publish again every
//! five minutes and whenever their addresses change, so a restarted
//! server is whole again within minutes, and keys nobody publishes any
//! more make room for new ones.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use iroh::PublicKey;
use iroh_dns::pkarr::SignedPacket;
use tokio::sync::oneshot;

/// Most node ids kept at once; new ones are refused past it, once those
/// not published for [`EXPIRE`] are gone.
pub const MAX_NODES: usize = 100_000;
/// How long a packet is kept after it was last published.
pub const EXPIRE: Duration = Duration::from_secs(3600);
/// Largest body taken: a signature, a timestamp and a DNS packet of at
/// most 1000 bytes, as pkarr allows.
const MAX_BODY: usize = 64 + 8 + 1000;

#[derive(Debug, Default)]
struct Packets {
    by_node: Mutex<HashMap<PublicKey, (SignedPacket, Instant)>>,
}

/// A running discovery server; stops when `stop` is sent or dropped.
#[derive(Debug)]
pub struct DiscoveryServer {
    pub addr: SocketAddr,
    pub stop: oneshot::Sender<()>,
}

impl DiscoveryServer {
    /// What nodes pass as `--discovery`, with `host` for the address
    /// they reach this server on.
    pub fn url_for(&self, host: &str) -> String {
        format!("http://{host}:{}/pkarr", self.addr.port())
    }
}

pub async fn start(bind: SocketAddr) -> Result<DiscoveryServer> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind} for the discovery server"))?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/pkarr/{key}", get(lookup).put(publish))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(Packets::default()));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::warn!("the discovery server stopped: {e}");
        }
    });
    Ok(DiscoveryServer { addr, stop })
}

fn node_id(key: &str) -> Result<PublicKey, (StatusCode, String)> {
    PublicKey::from_z32(key).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("`{key}` is not a node id in z-base-32: {e}\n"),
        )
    })
}

async fn publish(
    State(packets): State<Arc<Packets>>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<StatusCode, (StatusCode, String)> {
    let node = node_id(&key)?;
    let packet = SignedPacket::from_relay_payload(&node, &body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("not a packet signed by {key}: {e}\n"),
        )
    })?;
    let mut by_node = packets.by_node.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    if !by_node.contains_key(&node) && by_node.len() >= MAX_NODES {
        by_node.retain(|_, (_, at)| now.duration_since(*at) < EXPIRE);
    }
    match by_node.get(&node) {
        Some((held, _)) if !packet.more_recent_than(held) => Err((
            StatusCode::CONFLICT,
            "a newer packet of this node is held already\n".into(),
        )),
        None if by_node.len() >= MAX_NODES => Err((
            StatusCode::INSUFFICIENT_STORAGE,
            format!("this server keeps at most {MAX_NODES} nodes; try again later\n"),
        )),
        _ => {
            by_node.insert(node, (packet, now));
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

async fn lookup(
    State(packets): State<Arc<Packets>>,
    Path(key): Path<String>,
) -> Result<impl IntoResponse, (StatusCode, String)> {
    let node = node_id(&key)?;
    let by_node = packets.by_node.lock().unwrap_or_else(|p| p.into_inner());
    match by_node.get(&node) {
        Some((packet, at)) if at.elapsed() < EXPIRE => Ok(packet.to_relay_payload()),
        _ => Err((StatusCode::NOT_FOUND, "no packet of this node\n".into())),
    }
}
