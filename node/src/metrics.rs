//! Prometheus text exposition of a node's status, served on its own
//! address (`--metrics IP:PORT`, plain HTTP `GET /metrics`). Shows counts
//! only: no record content, no ids beyond space ids.

use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
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
/// or fired; returns the address bound.
pub async fn serve(
    addr: SocketAddr,
    node: Node,
) -> Result<(SocketAddr, tokio::sync::oneshot::Sender<()>), NodeError> {
    let (listener, local) = crate::api::bind(addr).await?;
    let app = axum::Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(node);
    let tx = crate::api::serve_until_stopped(listener, app, "metrics endpoint");
    Ok((local, tx))
}

async fn metrics_handler(State(node): State<Node>) -> impl IntoResponse {
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
}
