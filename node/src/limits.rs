//! What one peer may cost a node: a per-peer rate of incoming changes and
//! a per-space storage quota. Plain state with time passed in, so the
//! rules are tested without clocks.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rapport_trust::DeviceId;

/// Most changes kept waiting for their dependencies in one record, by one
/// author in one space, and in one space. Honest peers send changes in
/// order, so only a few ever wait (a gossip message overtaking another);
/// a change over a bound is refused (logged, and counted in `status`) and
/// offered again by a peer once its dependencies have arrived.
pub const MAX_WAITING_PER_RECORD: u64 = 256;
pub const MAX_WAITING_PER_AUTHOR: u64 = 1_000;
pub const MAX_WAITING_PER_SPACE: u64 = 10_000;

/// How long a change may wait for its dependencies before it is forgotten
/// (when a bound above would refuse a change, and at start-up). Without
/// it, a hostile member could fill an author's or a space's slots with
/// changes whose dependencies never exist, for good. A week outlasts any
/// honest gap (a peer offline over a weekend still sends the missing
/// changes first), and nothing honest is lost: a peer offers a forgotten
/// change again during catch-up once its dependencies exist.
pub const WAITING_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Limits a node enforces on what peers send it (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of signed changes stored per shared space.
    pub space_quota: Option<u64>,
    /// Changes accepted from one peer per minute (bursts up to this many).
    pub changes_per_minute: Option<u32>,
}

/// A token bucket: `capacity` tokens, refilled at `capacity` per minute.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The limits and their per-peer state, plus counts for status and
/// metrics.
#[derive(Debug, Default)]
pub struct Limiter {
    pub limits: Limits,
    buckets: Mutex<HashMap<DeviceId, Bucket>>,
    /// Changes refused because their sender exceeded its rate.
    pub rate_limited: AtomicU64,
    /// Changes refused because their space's quota was full.
    pub over_quota: AtomicU64,
    /// The last refusal, as the node's status shows it.
    last: Mutex<Option<String>>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Limiter {
            limits,
            ..Limiter::default()
        }
    }

    /// Takes `n` changes from `peer`'s allowance at `now`; if that would
    /// exceed it, takes nothing and says how long until it would not.
    pub fn take(&self, peer: DeviceId, n: usize, now: Instant) -> Result<(), Duration> {
        let Some(per_minute) = self.limits.changes_per_minute else {
            return Ok(());
        };
        let capacity = f64::from(per_minute.max(1));
        let rate = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(peer).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(capacity);
        b.at = now;
        // A batch larger than the whole allowance goes through when the
        // allowance is full, and leaves a debt: it must not wait forever.
        let want = n as f64;
        let needed = want.min(capacity);
        if needed <= b.tokens {
            b.tokens -= want;
            return Ok(());
        }
        self.rate_limited.fetch_add(n as u64, Ordering::Relaxed);
        let missing = needed - b.tokens;
        Err(Duration::from_secs_f64((missing / rate).max(1.0)))
    }

    /// Remembers the last refusal, for `status`.
    pub fn note(&self, what: String) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
    }

    pub fn last(&self) -> Option<String> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether `incoming` more bytes fit in a space that holds `used`.
    pub fn fits(&self, used: u64, incoming: u64, changes: usize) -> Result<(), u64> {
        match self.limits.space_quota {
            Some(quota) if used.saturating_add(incoming) > quota => {
                self.over_quota.fetch_add(changes as u64, Ordering::Relaxed);
                Err(quota)
            }
            _ => Ok(()),
        }
    }
}

/// `1.5 MiB` and the like: a size as [`parse_size`] reads one, for people.
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Parses a size such as `512k`, `10M`, `1G` or `1048576` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size: write for example 512k, 10M or 1G"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("`{text}`: the unit must be k, M or G")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_rate_and_no_more_and_the_allowance_refills() {
        let l = Limiter::new(Limits {
            changes_per_minute: Some(60),
            space_quota: None,
        });
        let (p, q) = (DeviceId([1; 32]), DeviceId([2; 32]));
        let t0 = Instant::now();
        assert_eq!(l.take(p, 50, t0), Ok(()));
        let wait = l.take(p, 20, t0).expect_err("over the rate");
        assert!(wait >= Duration::from_secs(10), "{wait:?}");
        assert_eq!(
            l.take(q, 60, t0),
            Ok(()),
            "another peer has its own allowance"
        );
        assert_eq!(l.take(p, 20, t0 + Duration::from_secs(10)), Ok(()));
        assert_eq!(l.rate_limited.load(Ordering::Relaxed), 20);
        // A batch larger than a minute's allowance waits for a full
        // allowance, then goes through (and leaves a debt).
        let t1 = t0 + Duration::from_secs(120);
        assert_eq!(l.take(p, 100, t1), Ok(()));
        assert!(l.take(p, 1, t1 + Duration::from_secs(30)).is_err());
        assert_eq!(l.take(p, 1, t1 + Duration::from_secs(45)), Ok(()));
    }

    #[test]
    fn the_quota_counts_what_is_stored() {
        let l = Limiter::new(Limits {
            space_quota: Some(1000),
            changes_per_minute: None,
        });
        assert_eq!(l.fits(900, 100, 1), Ok(()));
        assert_eq!(l.fits(900, 101, 2), Err(1000));
        assert_eq!(l.over_quota.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5T").is_err());
    }
}
