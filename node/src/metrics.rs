//! Prometheus text exposition of a node's status, served on its own
//! address (`--metrics IP:PORT`, plain HTTP `GET /metrics`). Shows counts
//! only: no record content, no ids beyond space ids. With a token
//! (`--metrics-token-file`), a scrape must send `Authorization: Bearer
//! TOKEN`. A scrape reads kept counts, never scans records or changes
//! (see [`Node::status`]).

use std::fmt::Write as _;
use std::net::SocketAddr;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::NodeError;
use crate::net::{NetStatus, Node};

/// The status in the Prometheus text format (version 0.0.4).
pub fn render(s: &NetStatus) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP rapport_{name} {help}");
        let _ = writeln!(out, "# TYPE rapport_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "rapport_{name}{labels} {value}");
        }
    };
    let one = |v: f64| vec![(String::new(), v)];
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since the node started.",
        &one(s.uptime_s as f64),
    );
    metric(
        "bytes_sent_total",
        "counter",
        "Bytes of Rapport frames sent.",
        &one(s.bytes_sent as f64),
    );
    metric(
        "bytes_received_total",
        "counter",
        "Bytes of Rapport frames received.",
        &one(s.bytes_received as f64),
    );
    metric(
        "refused_frames_total",
        "counter",
        "Frames refused as malformed or oversized.",
        &one(s.refused_frames as f64),
    );
    metric(
        "sessions_turned_away_total",
        "counter",
        "Catch-up sessions turned away: their peer already had as many running as it may.",
        &one(s.sessions_turned_away as f64),
    );
    metric(
        "peers_connected",
        "gauge",
        "Peers sharing a gossip topic with this node now.",
        &one(s.connected.len() as f64),
    );
    metric(
        "peers_seen",
        "gauge",
        "Peers that completed a sync with this node since it started.",
        &one(s.peers_seen.len() as f64),
    );
    metric(
        "changes_stored",
        "gauge",
        "Signed changes stored, all spaces together.",
        &one(s.changes_stored as f64),
    );
    metric(
        "disk_bytes",
        "gauge",
        "Bytes the store occupies on disk.",
        &one(s.disk_bytes as f64),
    );
    metric(
        "rate_limited_total",
        "counter",
        "Changes refused because their sender exceeded its rate.",
        &one(s.rate_limited as f64),
    );
    metric(
        "over_quota_total",
        "counter",
        "Changes refused because their space's quota was full.",
        &one(s.over_quota as f64),
    );
    let per_space = |f: &dyn Fn(&crate::net::SpaceStatus) -> f64| -> Vec<(String, f64)> {
        s.spaces
            .iter()
            .map(|(id, sp)| (format!("{{space=\"{id}\"}}"), f(sp)))
            .collect()
    };
    metric(
        "space_members",
        "gauge",
        "Current members of each space.",
        &per_space(&|sp| sp.members as f64),
    );
    metric(
        "space_records",
        "gauge",
        "Records of each space.",
        &per_space(&|sp| sp.records as f64),
    );
    metric(
        "space_stored_bytes",
        "gauge",
        "Bytes of signed changes stored for each space.",
        &per_space(&|sp| sp.stored_bytes as f64),
    );
    metric(
        "space_waiting_changes",
        "gauge",
        "Changes stored while they wait for changes they depend on, per space.",
        &per_space(&|sp| sp.waiting as f64),
    );
    metric(
        "space_rejected_total",
        "counter",
        "Changes refused from peers, per space.",
        &per_space(&|sp| sp.rejected as f64),
    );
    if let Some(q) = s.quota_bytes {
        metric(
            "space_quota_bytes",
            "gauge",
            "Bytes of signed changes this node keeps per space at most.",
            &one(q as f64),
        );
    }
    out
}

/// Serves `GET /metrics` on `addr` until the returned sender is dropped
/// or fired; returns the address bound. With `token`, only scrapes that
/// send it as a bearer token are answered; others get 401.
pub async fn serve(
    addr: SocketAddr,
    node: Node,
    token: Option<String>,
) -> Result<(SocketAddr, tokio::sync::oneshot::Sender<()>), NodeError> {
    let (listener, local) = crate::api::bind(addr).await?;
    let state = Scrape {
        node,
        token: token.map(Arc::from),
    };
    let app = axum::Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(state);
    let tx = crate::api::serve_until_stopped(listener, app, "metrics endpoint");
    Ok((local, tx))
}

/// What the endpoint needs. No `Debug`: it holds the token.
#[derive(Clone)]
struct Scrape {
    node: Node,
    token: Option<Arc<str>>,
}

/// Whether the request may scrape: no token set, or the right bearer
/// token (compared in constant time: it is a secret).
fn allowed(token: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics_handler(State(scrape): State<Scrape>, headers: HeaderMap) -> Response {
    if !allowed(scrape.token.as_deref(), &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "# this endpoint needs Authorization: Bearer with the node's metrics token\n",
        )
            .into_response();
    }
    let node = scrape.node;
    match tokio::task::spawn_blocking(move || node.status()).await {
        Ok(Ok(status)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            render(&status),
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            "# the node's status could not be read\n".to_string(),
        ),
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_per_space_gauges() {
        let mut s = NetStatus {
            uptime_s: 42,
            changes_stored: 7,
            rate_limited: 3,
            quota_bytes: Some(1024),
            ..NetStatus::default()
        };
        s.spaces.insert(
            "01abc".into(),
            crate::net::SpaceStatus {
                members: 2,
                stored_bytes: 900,
                waiting: 0,
                ..Default::default()
            },
        );
        let text = render(&s);
        assert!(
            text.contains("# TYPE rapport_uptime_seconds gauge\nrapport_uptime_seconds 42\n"),
            "{text}"
        );
        assert!(text.contains("rapport_rate_limited_total 3\n"));
        assert!(text.contains("rapport_space_stored_bytes{space=\"01abc\"} 900\n"));
        assert!(text.contains("rapport_space_quota_bytes 1024\n"));
    }

    /// Sends `GET /metrics` with `auth` as the Authorization header;
    /// returns the status code and the body.
    async fn scrape(addr: SocketAddr, auth: Option<&str>) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        let request =
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.expect("read");
        let status = raw
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        (status, raw)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scrape_without_the_token_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = std::sync::Arc::new(
            crate::Repo::open(dir.path(), crate::OpenMode::Create).expect("repo"),
        );
        repo.create_space("Team").expect("space");
        let config = crate::net::NetConfig {
            bind: vec!["127.0.0.1:0".parse().expect("addr")],
            mdns: false,
            sync_interval: None,
            ..crate::net::NetConfig::default()
        };
        let node = Node::start(repo, config).await.expect("node");
        let local: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let (addr, stop) = serve(local, node.clone(), Some("s3cret-token".into()))
            .await
            .expect("serve");

        let (status, body) = scrape(addr, None).await;
        assert_eq!(status, 401, "{body}");
        assert!(!body.contains("rapport_space_members"), "{body}");
        assert!(!body.contains("s3cret"), "the token is never shown");
        assert_eq!(scrape(addr, Some("Bearer wrong")).await.0, 401);
        assert_eq!(scrape(addr, Some("s3cret-token")).await.0, 401);
        let (status, body) = scrape(addr, Some("Bearer s3cret-token")).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("rapport_space_members{space="), "{body}");
        let _ = stop.send(());

        let (open, stop) = serve(local, node.clone(), None).await.expect("serve");
        assert_eq!(scrape(open, None).await.0, 200, "no token set: open");
        let _ = stop.send(());
        node.shutdown().await;
    }
}
