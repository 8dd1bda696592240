//! Webhook delivery: every event the node's live feed publishes goes, as
//! a signed JSON POST, to each webhook that asked for its type (and
//! space). A webhook's events are delivered one at a time, in order; a
//! failed attempt (no answer, or not 2xx) is retried after 1 s, 2 s,
//! 4 s, ... (see [`DeliveryConfig`]), every attempt is logged, and a
//! webhook that fails [`DeliveryConfig::disable_after`] attempts in a
//! row is disabled until `rapport webhook enable`.
//!
//! Deliveries wait in memory: events not yet delivered when the node
//! stops are not sent after it restarts (the log shows the last attempt).
//!
//! The client is a small HTTP/1.1 one over a TCP socket, for `http://`
//! URLs only: no TLS stack in the node for this. An `https://` endpoint
//! is reached through a TLS-terminating proxy (see docs/api.md).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use rapport_node::integrations::{Delivery, Webhook};
use rapport_node::live::Event;
use rapport_node::ops::Ops;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::dto::EventBody;

/// The header that carries the signature: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Rapport-Signature";

/// How deliveries are retried and when a webhook is given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// The wait after the first failed attempt; doubled after each next.
    pub first_retry: Duration,
    /// The longest wait between two attempts.
    pub max_retry: Duration,
    /// Attempts per event, the first included; then the event is dropped.
    pub attempts: u32,
    /// Failed attempts in a row (across events) that disable a webhook.
    pub disable_after: u32,
    /// How long one attempt may take, connecting included.
    pub timeout: Duration,
    /// Events waiting per webhook; more are dropped (and logged).
    pub queue: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(300),
            attempts: 8,
            disable_after: 24,
            timeout: Duration::from_secs(10),
            queue: 1000,
        }
    }
}

impl DeliveryConfig {
    /// The wait after failed attempt number `attempt` (1 for the first).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.first_retry
            .checked_mul(factor)
            .unwrap_or(self.max_retry)
            .min(self.max_retry)
    }
}

/// What [`SIGNATURE_HEADER`] carries: `sha256=` and the hex HMAC-SHA256,
/// under `secret`, of the attempt's timestamp (as sent in
/// `X-Rapport-Timestamp`), a dot, and the raw body. With the timestamp
/// signed, a receiver can refuse an old request replayed by whoever
/// captured it.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    hmac_sha256(secret, &signed)
}

/// `sha256=` and the hex HMAC-SHA256 of `data` under `secret`.
fn hmac_sha256(secret: &str, data: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(data);
    let bytes = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(64 + 7);
    hex.push_str("sha256=");
    for b in bytes.iter() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// Follows the live feed and hands each event to the webhooks that want
/// it, until `stopping`.
pub(crate) async fn run(ops: Ops, config: DeliveryConfig, mut stopping: watch::Receiver<bool>) {
    let Some(live) = ops.live().cloned() else {
        return;
    };
    let mut rx = live.subscribe();
    let mut queues: HashMap<String, mpsc::Sender<Event>> = HashMap::new();
    // Events taken back from the feed's history after falling behind, and
    // the cursor of the last event handed out, to resume from.
    let mut missed: std::collections::VecDeque<Event> = Default::default();
    let mut last: Option<String> = None;
    loop {
        let event = match missed.pop_front() {
            Some(e) => e,
            None => tokio::select! {
                _ = stopping.changed() => return,
                got = rx.recv() => match got {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        // A burst (a space joined, an import) outran this
                        // task: the feed keeps its recent events, so take
                        // them back rather than lose them.
                        match live.resume(last.as_deref()) {
                            Ok((back, again)) => {
                                missed.extend(back);
                                rx = again;
                            }
                            Err(gone) => {
                                tracing::warn!("webhooks fell behind the live feed by {n} events, more than it keeps; they are not delivered: {gone}");
                                rx = live.subscribe();
                            }
                        }
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            },
        };
        last = Some(event.cursor.clone());
        let integrations = ops.integrations();
        let hooks = match tokio::task::spawn_blocking(move || integrations.webhooks()).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                tracing::warn!("webhooks could not be read: {e}");
                continue;
            }
            Err(_) => continue,
        };
        queues.retain(|id, q| !q.is_closed() && hooks.iter().any(|h| &h.id == id));
        for hook in hooks.iter().filter(|h| h.wants(event.event, event.space)) {
            let queue = queues.entry(hook.id.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(config.queue.max(1));
                tokio::spawn(worker(
                    ops.clone(),
                    hook.id.clone(),
                    rx,
                    config.clone(),
                    stopping.clone(),
                ));
                tx
            });
            if queue.try_send(event.clone()).is_err() {
                tracing::warn!(webhook = %hook.id, "webhook queue full: an event was dropped");
            }
        }
    }
}

/// Delivers one webhook's events in order.
async fn worker(
    ops: Ops,
    id: String,
    mut rx: mpsc::Receiver<Event>,
    config: DeliveryConfig,
    mut stopping: watch::Receiver<bool>,
) {
    while let Some(event) = tokio::select! {
        _ = stopping.changed() => None,
        e = rx.recv() => e,
    } {
        let body = match serde_json::to_vec(&EventBody::from(&event)) {
            Ok(b) => b,
            Err(_) => continue,
        };
        let mut attempt = 1;
        loop {
            // Read again each time: removed, disabled or changed meanwhile.
            let Some(hook) = current(&ops, &id).await else {
                return;
            };
            if hook.disabled.is_some() {
                break;
            }
            let started = Instant::now();
            let outcome = post(&hook, &event, &body, config.timeout).await;
            let (status, error) = match outcome {
                Ok(status) => (
                    Some(status),
                    (!(200..300).contains(&status)).then(|| format!("answered HTTP {status}")),
                ),
                Err(e) => (None, Some(e)),
            };
            let delivery = Delivery {
                webhook: id.clone(),
                event: event.cursor.clone(),
                event_type: event.event,
                attempt,
                at: jiff::Timestamp::now().as_second(),
                status,
                ok: error.is_none(),
                error,
                millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            };
            let ok = delivery.ok;
            let integrations = ops.integrations();
            let disable_after = config.disable_after;
            let logged = tokio::task::spawn_blocking(move || {
                integrations.record_attempt(&delivery, disable_after)
            })
            .await;
            if let Ok(Err(e)) = logged {
                tracing::warn!(webhook = %id, "a delivery could not be logged: {e}");
            }
            if ok || attempt >= config.attempts {
                break;
            }
            let wait = config.backoff(attempt);
            attempt += 1;
            tokio::select! {
                _ = stopping.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

async fn current(ops: &Ops, id: &str) -> Option<Webhook> {
    let integrations = ops.integrations();
    let hooks = tokio::task::spawn_blocking(move || integrations.webhooks())
        .await
        .ok()?
        .ok()?;
    hooks.into_iter().find(|h| h.id == id)
}

/// One POST; the answer's status, or what went wrong.
async fn post(
    hook: &Webhook,
    event: &Event,
    body: &[u8],
    timeout: Duration,
) -> Result<u16, String> {
    let target = Target::parse(&hook.url)?;
    let now = jiff::Timestamp::now().as_second();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rapport/{version}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n{SIGNATURE_HEADER}: {sig}\r\nX-Rapport-Event: {kind}\r\nX-Rapport-Delivery: {cursor}\r\nX-Rapport-Timestamp: {now}\r\nConnection: close\r\n\r\n",
        path = target.path,
        host = target.host_header,
        version = env!("CARGO_PKG_VERSION"),
        len = body.len(),
        sig = signature(&hook.secret, now, body),
        kind = event.event.as_str(),
        cursor = event.cursor,
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", target.host_header))?;
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| format!("sending failed: {e}"))?;
        stream
            .write_all(body)
            .await
            .map_err(|e| format!("sending failed: {e}"))?;
        // Only the status line matters; at most a few KiB are read.
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 1024];
        while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 8192 {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("no answer: {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        parse_status(&buf).ok_or_else(|| "the answer is not HTTP".to_string())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {} s", timeout.as_secs_f64()))?
}

fn parse_status(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

/// Where an `http://` URL points.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    host_header: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        if url.starts_with("https://") {
            return Err(
                "https is not supported; use a TLS-terminating proxy, or http on a trusted network"
                    .into(),
            );
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("not an http:// URL: {url}"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("an IPv6 host lacks its `]`")?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("bad port in {url}"))?,
                None => 80,
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| format!("bad port in {url}"))?,
                ),
                None => (authority.to_string(), 80),
            }
        };
        if host.is_empty() || path.contains(['\r', '\n', ' ']) || authority.contains(['\r', '\n']) {
            return Err(format!("not a usable URL: {url}"));
        }
        Ok(Target {
            host,
            port,
            host_header: authority.to_string(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_sha256_of_the_timestamp_and_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            hmac_sha256("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            signature("Jefe", 1_700_000_000, b"{}"),
            hmac_sha256("Jefe", b"1700000000.{}")
        );
        assert_ne!(
            signature("Jefe", 1_700_000_000, b"{}"),
            signature("Jefe", 1_700_000_001, b"{}"),
            "a replay with another timestamp does not verify"
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let c = DeliveryConfig {
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(60),
            ..DeliveryConfig::default()
        };
        let waits: Vec<u64> = (1..=9).map(|n| c.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(c.backoff(200), Duration::from_secs(60));
        let d = DeliveryConfig::default();
        let total: Duration = (1..d.attempts).map(|n| d.backoff(n)).sum();
        assert_eq!(
            total,
            Duration::from_secs(127),
            "an event is retried for about 2 minutes"
        );
    }

    #[test]
    fn urls_are_split_for_the_request() {
        let t = Target::parse("http://127.0.0.1:8080/hooks/r?x=1").expect("url");
        assert_eq!(
            t,
            Target {
                host: "127.0.0.1".into(),
                port: 8080,
                host_header: "127.0.0.1:8080".into(),
                path: "/hooks/r?x=1".into()
            }
        );
        let t = Target::parse("http://[::1]/").expect("url");
        assert_eq!((t.host.as_str(), t.port), ("::1", 80));
        assert_eq!(Target::parse("http://example.com").expect("url").path, "/");
        assert!(Target::parse("https://example.com").is_err());
        assert!(Target::parse("http://h/a b").is_err());
    }

    #[test]
    fn the_status_is_read_from_the_answer() {
        assert_eq!(parse_status(b"HTTP/1.1 500 Internal\r\n"), Some(500));
        assert_eq!(parse_status(b"HTTP/1.0 204 No Content\r\n\r\n"), Some(204));
        assert_eq!(parse_status(b"SSH-2.0\r\n"), None);
    }
}
