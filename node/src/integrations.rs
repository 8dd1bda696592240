//! What integrations are allowed and told: API tokens and webhooks, and
//! the log of webhook deliveries. Local to this data directory, never
//! synced: a token opens this node only, and a webhook is this node's
//! promise to call a URL.
//!
//! ```text
//! DIR/integrations.json       mode 0600: tokens (SHA-256 of the secret
//!                             only), webhooks (with their signing secret)
//! DIR/webhook-deliveries.jsonl  one JSON line per delivery attempt, the
//!                             newest `MAX_DELIVERIES` kept
//! ```
//!
//! Files rather than store trees: the store is rebuilt from the journal
//! of signed changes, and these are not changes anyone signs; nor do they
//! belong in a backup another machine restores (a restored node should
//! not call its original's webhooks). `integrations.json` is replaced
//! atomically (temporary file, fsync, rename). Reads and writes in one
//! process are serialised by one lock; only one process holds a data
//! directory at a time (the store's lock).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rapport_model::SpaceId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::NodeError;
use crate::live::EventType;

pub const FILE: &str = "integrations.json";
pub const DELIVERY_LOG: &str = "webhook-deliveries.jsonl";
/// Delivery attempts kept in the log (the oldest go first).
pub const MAX_DELIVERIES: usize = 2000;
/// What every token starts with, so that a leaked one is recognisable
/// (secret scanners match prefixes).
pub const TOKEN_PREFIX: &str = "rapport_";
const FORMAT: u32 = 1;

/// Serialises read-modify-write of the files in this process.
static LOCK: Mutex<()> = Mutex::new(());

/// An API token as stored: its name and limits, and the SHA-256 of its
/// secret (the secret itself is shown once, when created).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    pub name: String,
    /// Hex SHA-256 of the whole token.
    pub hash: String,
    pub read_only: bool,
    pub space: Option<SpaceId>,
    /// Seconds since the Unix epoch.
    pub created: i64,
}

/// A webhook: where to POST which events, and the secret that signs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<EventType>,
    /// Only events of records in this space.
    pub space: Option<SpaceId>,
    /// The HMAC-SHA256 key of `X-Rapport-Signature`.
    pub secret: String,
    pub created: i64,
    /// Failed attempts since the last success.
    #[serde(default)]
    pub failures: u32,
    /// Why deliveries stopped, when they did (after too many failures).
    #[serde(default)]
    pub disabled: Option<String>,
}

impl Webhook {
    /// Whether `event` about a record of `space` goes to this webhook.
    pub fn wants(&self, event: EventType, space: Option<SpaceId>) -> bool {
        self.disabled.is_none()
            && self.events.contains(&event)
            && self.space.is_none_or(|s| Some(s) == space)
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub webhook: String,
    /// The event's cursor (its `X-Rapport-Delivery` header).
    pub event: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Seconds since the Unix epoch.
    pub at: i64,
    /// The HTTP status the URL answered, if it answered.
    pub status: Option<u16>,
    /// Whether the URL took it (a 2xx answer).
    pub ok: bool,
    /// What went wrong, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Milliseconds the attempt took.
    pub millis: u64,
}

/// A calendar feed as stored: whose agenda it gives, and the SHA-256 of
/// the secret its URL carries (shown once, when made).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFeed {
    pub name: String,
    /// Kept in `integrations.json`; never in a reply.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub hash: String,
    /// The owner whose meetings and tasks it has; `None`: everyone's.
    pub owner: Option<String>,
    pub created: i64,
}

impl StoredFeed {
    /// The feed as replies show it: without its hash.
    pub fn shown(mut self) -> Self {
        self.hash.clear();
        self
    }
}

/// What the URL of a calendar feed starts with.
pub const FEED_PREFIX: &str = "rapport_cal_";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Contents {
    format: u32,
    #[serde(default)]
    tokens: Vec<StoredToken>,
    #[serde(default)]
    webhooks: Vec<Webhook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    feeds: Vec<StoredFeed>,
}

/// The integrations of one data directory.
#[derive(Debug, Clone)]
pub struct Integrations {
    dir: PathBuf,
}

impl Integrations {
    pub fn new(dir: &Path) -> Self {
        Integrations {
            dir: dir.to_path_buf(),
        }
    }

    fn load(&self) -> Result<Contents, NodeError> {
        let path = self.dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| NodeError::Damaged {
                path,
                reason: format!(
                    "it does not read as Rapport's tokens and webhooks ({e}); move it aside to start again without them"
                ),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contents {
                format: FORMAT,
                ..Contents::default()
            }),
            Err(e) => Err(NodeError::io(&path, e)),
        }
    }

    fn save(&self, c: &Contents) -> Result<(), NodeError> {
        let bytes = serde_json::to_vec_pretty(c).map_err(|e| NodeError::Export(e.to_string()))?;
        crate::datadir::write_atomically(&self.dir, FILE, &bytes, true)
    }

    /// Changes the contents under the lock, and saves them.
    fn update<T>(
        &self,
        f: impl FnOnce(&mut Contents) -> Result<T, NodeError>,
    ) -> Result<T, NodeError> {
        let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = self.load()?;
        let out = f(&mut c)?;
        c.format = FORMAT;
        self.save(&c)?;
        Ok(out)
    }

    fn read(&self) -> Result<Contents, NodeError> {
        let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        self.load()
    }

    // ----- tokens ----------------------------------------------------------

    /// Makes a token; returns it with its secret, the only time the secret
    /// is known (only its hash is kept).
    pub fn create_token(
        &self,
        name: &str,
        read_only: bool,
        space: Option<SpaceId>,
        now: i64,
    ) -> Result<(StoredToken, String), NodeError> {
        check_name(name)?;
        let secret = format!("{TOKEN_PREFIX}{}", random_hex::<32>()?);
        let token = StoredToken {
            name: name.to_string(),
            hash: token_hash(&secret),
            read_only,
            space,
            created: now,
        };
        self.update(|c| {
            if c.tokens.iter().any(|t| t.name == name) {
                return Err(invalid(
                    "name",
                    name,
                    "a token of that name exists; revoke it first, or choose another name",
                ));
            }
            c.tokens.push(token.clone());
            Ok(())
        })?;
        Ok((token, secret))
    }

    pub fn tokens(&self) -> Result<Vec<StoredToken>, NodeError> {
        Ok(self.read()?.tokens)
    }

    /// Revokes a token: requests that send it are refused from now on.
    pub fn revoke_token(&self, name: &str) -> Result<StoredToken, NodeError> {
        self.update(|c| {
            let at = c
                .tokens
                .iter()
                .position(|t| t.name == name)
                .ok_or_else(|| NodeError::Missing(format!("no token is named `{name}`")))?;
            Ok(c.tokens.remove(at))
        })
    }

    /// The token whose secret is `secret`, if there is one.
    pub fn token_by_secret(&self, secret: &str) -> Result<Option<StoredToken>, NodeError> {
        let hash = token_hash(secret);
        Ok(self
            .read()?
            .tokens
            .into_iter()
            .find(|t| same_hash(&t.hash, &hash)))
    }

    // ----- calendar feeds --------------------------------------------------

    /// Makes a calendar feed of `owner`'s agenda (everyone's for `None`);
    /// returns it with the secret of its URL, the only time it is known.
    pub fn create_feed(
        &self,
        name: &str,
        owner: Option<String>,
        now: i64,
    ) -> Result<(StoredFeed, String), NodeError> {
        check_name(name)?;
        let secret = format!("{FEED_PREFIX}{}", random_hex::<32>()?);
        let feed = StoredFeed {
            name: name.to_string(),
            hash: token_hash(&secret),
            owner,
            created: now,
        };
        self.update(|c| {
            if c.feeds.iter().any(|f| f.name == name) {
                return Err(invalid(
                    "name",
                    name,
                    "a calendar feed of that name exists; revoke it first, or choose another name",
                ));
            }
            c.feeds.push(feed.clone());
            Ok(())
        })?;
        Ok((feed, secret))
    }

    pub fn feeds(&self) -> Result<Vec<StoredFeed>, NodeError> {
        Ok(self.read()?.feeds)
    }

    /// Revokes a feed: its URL answers nothing from now on.
    pub fn revoke_feed(&self, name: &str) -> Result<StoredFeed, NodeError> {
        self.update(|c| {
            let at =
                c.feeds.iter().position(|f| f.name == name).ok_or_else(|| {
                    NodeError::Missing(format!("no calendar feed is named `{name}`"))
                })?;
            Ok(c.feeds.remove(at))
        })
    }

    /// The feed whose URL carries `secret`, if there is one.
    pub fn feed_by_secret(&self, secret: &str) -> Result<Option<StoredFeed>, NodeError> {
        let hash = token_hash(secret);
        Ok(self
            .read()?
            .feeds
            .into_iter()
            .find(|f| same_hash(&f.hash, &hash)))
    }

    // ----- webhooks --------------------------------------------------------

    /// Adds a webhook; returns it with its signing secret (shown once to
    /// the user, kept here to sign deliveries).
    pub fn add_webhook(
        &self,
        url: &str,
        events: Vec<EventType>,
        space: Option<SpaceId>,
        now: i64,
    ) -> Result<Webhook, NodeError> {
        check_url(url)?;
        if events.is_empty() {
            return Err(invalid(
                "events",
                "",
                "name at least one event (for example record.created)",
            ));
        }
        let hook = Webhook {
            id: format!("wh_{}", random_hex::<6>()?),
            url: url.to_string(),
            events,
            space,
            secret: format!("whsec_{}", random_hex::<32>()?),
            created: now,
            failures: 0,
            disabled: None,
        };
        self.update(|c| {
            c.webhooks.push(hook.clone());
            Ok(())
        })?;
        Ok(hook)
    }

    pub fn webhooks(&self) -> Result<Vec<Webhook>, NodeError> {
        Ok(self.read()?.webhooks)
    }

    pub fn remove_webhook(&self, id: &str) -> Result<Webhook, NodeError> {
        self.update(|c| {
            let at = c
                .webhooks
                .iter()
                .position(|w| w.id == id)
                .ok_or_else(|| NodeError::Missing(format!("no webhook has the id `{id}`")))?;
            Ok(c.webhooks.remove(at))
        })
    }

    /// Turns a disabled webhook back on, its failures forgotten.
    pub fn enable_webhook(&self, id: &str) -> Result<Webhook, NodeError> {
        self.update(|c| {
            let w = c
                .webhooks
                .iter_mut()
                .find(|w| w.id == id)
                .ok_or_else(|| NodeError::Missing(format!("no webhook has the id `{id}`")))?;
            w.disabled = None;
            w.failures = 0;
            Ok(w.clone())
        })
    }

    /// Logs one attempt and counts it against the webhook: a success
    /// clears its failures; `disable_after` failures in a row disable it.
    /// Returns the webhook as it is now (`None` if it was removed).
    pub fn record_attempt(
        &self,
        d: &Delivery,
        disable_after: u32,
    ) -> Result<Option<Webhook>, NodeError> {
        self.append_delivery(d)?;
        self.update(|c| {
            let Some(w) = c.webhooks.iter_mut().find(|w| w.id == d.webhook) else {
                return Ok(None);
            };
            if d.ok {
                w.failures = 0;
            } else {
                w.failures += 1;
                if w.failures >= disable_after && w.disabled.is_none() {
                    w.disabled = Some(format!(
                        "disabled after {} failed deliveries in a row; `rapport webhook enable {}` turns it back on",
                        w.failures, w.id
                    ));
                    tracing::warn!(webhook = %w.id, "webhook disabled after {} failures", w.failures);
                }
            }
            Ok(Some(w.clone()))
        })
    }

    fn append_delivery(&self, d: &Delivery) -> Result<(), NodeError> {
        let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.dir.join(DELIVERY_LOG);
        let mut line = serde_json::to_vec(d).map_err(|e| NodeError::Export(e.to_string()))?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| NodeError::io(&path, e))?;
        f.write_all(&line).map_err(|e| NodeError::io(&path, e))?;
        drop(f);
        // Trimmed to the newest half when twice over, so that the file is
        // rewritten once every `MAX_DELIVERIES` attempts, not every time.
        let all = read_deliveries(&path)?;
        if all.len() > 2 * MAX_DELIVERIES {
            let keep = &all[all.len() - MAX_DELIVERIES..];
            let mut bytes = Vec::new();
            for d in keep {
                if let Ok(l) = serde_json::to_vec(d) {
                    bytes.extend_from_slice(&l);
                    bytes.push(b'\n');
                }
            }
            crate::datadir::write_atomically(&self.dir, DELIVERY_LOG, &bytes, true)?;
        }
        Ok(())
    }

    /// Delivery attempts, oldest first: all, or one webhook's.
    pub fn deliveries(&self, webhook: Option<&str>) -> Result<Vec<Delivery>, NodeError> {
        let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = read_deliveries(&self.dir.join(DELIVERY_LOG))?;
        if let Some(id) = webhook {
            all.retain(|d| d.webhook == id);
        }
        if all.len() > MAX_DELIVERIES {
            all.drain(..all.len() - MAX_DELIVERIES);
        }
        Ok(all)
    }
}

/// Lines that do not parse (a line cut short by a crash) are skipped.
fn read_deliveries(path: &Path) -> Result<Vec<Delivery>, NodeError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes
            .split(|b| *b == b'\n')
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(NodeError::io(path, e)),
    }
}

/// Compares two hashes in constant time: the stored hashes are not
/// secret, but a timing difference should not tell how close a guess was.
fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The stored form of a token: hex SHA-256.
pub fn token_hash(secret: &str) -> String {
    rapport_proto::hex(&Sha256::digest(secret.as_bytes()))
}

fn random_hex<const N: usize>() -> Result<String, NodeError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| rapport_trust::KeyError::Random(e.to_string()))?;
    Ok(rapport_proto::hex(&b))
}

fn invalid(field: &str, value: &str, reason: &str) -> NodeError {
    NodeError::Invalid(Box::new(rapport_model::InvalidValue {
        field: field.into(),
        value: value.into(),
        expected: reason.into(),
    }))
}

/// A token's name is shown in record timelines and travels in signed
/// changes: letters, digits, `-`, `_`, `.`, at most 64.
pub fn check_name(name: &str) -> Result<(), NodeError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            name,
            "a token name is 1 to 64 letters, digits, -, _ or . (for example billing-sync)",
        ))
    }
}

/// Webhooks are delivered over plain HTTP by a small built-in client.
pub fn check_url(url: &str) -> Result<(), NodeError> {
    if url.starts_with("https://") {
        return Err(invalid(
            "url",
            url,
            "https is not supported by the node's webhook client; send to http:// on a trusted network, or put a TLS-terminating proxy in front of an https endpoint",
        ));
    }
    match url.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && url.len() <= 2048 => Ok(()),
        _ => Err(invalid(
            "url",
            url,
            "expected a URL like http://127.0.0.1:8080/hooks/rapport",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_kept_as_a_hash_and_found_by_its_secret() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let i = Integrations::new(tmp.path());
        let (t, secret) = i.create_token("billing", true, None, 1).expect("create");
        assert!(secret.starts_with(TOKEN_PREFIX));
        let file = std::fs::read_to_string(tmp.path().join(FILE)).expect("file");
        assert!(!file.contains(&secret), "the secret must not be stored");
        assert!(file.contains(&t.hash));
        assert_eq!(i.token_by_secret(&secret).expect("find"), Some(t));
        assert_eq!(i.token_by_secret("rapport_guess").expect("find"), None);
        assert!(i.create_token("billing", false, None, 2).is_err());
        assert!(i.create_token("bad name", false, None, 2).is_err());
        i.revoke_token("billing").expect("revoke");
        assert_eq!(i.token_by_secret(&secret).expect("find"), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(tmp.path().join(FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_webhook_is_disabled_after_failures_in_a_row_and_a_success_resets_them() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let i = Integrations::new(tmp.path());
        let w = i
            .add_webhook("http://127.0.0.1:9/x", vec![EventType::Created], None, 1)
            .expect("add");
        let attempt = |ok| Delivery {
            webhook: w.id.clone(),
            event: "b-1".into(),
            event_type: EventType::Created,
            attempt: 1,
            at: 1,
            status: Some(if ok { 200 } else { 500 }),
            ok,
            error: None,
            millis: 1,
        };
        i.record_attempt(&attempt(false), 3).expect("log");
        i.record_attempt(&attempt(false), 3).expect("log");
        let after_success = i.record_attempt(&attempt(true), 3).expect("log");
        assert_eq!(after_success.map(|w| w.failures), Some(0));
        for _ in 0..3 {
            i.record_attempt(&attempt(false), 3).expect("log");
        }
        let now = &i.webhooks().expect("list")[0];
        assert!(now.disabled.is_some());
        assert!(!now.wants(EventType::Created, None));
        assert_eq!(i.deliveries(Some(&w.id)).expect("log").len(), 6);
        assert!(i.enable_webhook(&w.id).expect("enable").disabled.is_none());
        assert!(
            i.add_webhook("https://example.com", vec![EventType::Created], None, 1)
                .is_err()
        );
        assert!(
            i.add_webhook("ftp://x", vec![EventType::Created], None, 1)
                .is_err()
        );
    }
}
