//! Helpers shared by the tests that drive the real `rapport` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn rapport_bin() -> &'static str {
    env!("CARGO_BIN_EXE_rapport")
}

/// A data directory in a temporary folder, and a way to run commands on it.
pub struct Node {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

impl Node {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        Node { _tmp: tmp, dir }
    }

    /// A node whose data directory is `dir` (made by the caller, e.g. on
    /// a small file system).
    pub fn on(dir: PathBuf) -> Self {
        Node {
            _tmp: tempfile::tempdir().expect("tempdir"),
            dir,
        }
    }

    pub fn at(dir: &Path) -> Command {
        let mut c = Command::new(rapport_bin());
        // Tests stay on loopback: no public relays or discovery servers
        // unless a test names its own.
        c.arg("--data-dir")
            .arg(dir)
            .env_remove("RAPPORT_DATA_DIR")
            .env("RAPPORT_RELAY", "none")
            .env("RAPPORT_DISCOVERY", "none");
        c
    }

    pub fn cmd(&self) -> Command {
        Self::at(&self.dir)
    }

    /// Runs and returns the raw output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run rapport")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rapport {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs with `--json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("rapport {args:?}: {e}: {out}"))
    }

    /// Runs a command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "rapport {args:?} should have failed but printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Starts `rapport up` on this data directory (loopback only, no mDNS)
    /// and waits until its local API answers.
    pub fn start(&self, extra: &[&str]) -> Running {
        self.start_as(&["up"], extra)
    }

    /// Like [`Node::start`], as a relay (`rapport relay run`).
    pub fn start_relay(&self, extra: &[&str]) -> Running {
        self.start_as(&["relay", "run"], extra)
    }

    fn start_as(&self, command: &[&str], extra: &[&str]) -> Running {
        let _ = std::fs::remove_file(self.dir.join("api.json"));
        let child = self
            .cmd()
            .args(command)
            .args(["--bind", "127.0.0.1:0", "--no-mdns", "--sync-interval", "1"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rapport up");
        let running = Running { child };
        let started = Instant::now();
        while !self.dir.join("api.json").exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the node did not start within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        running
    }

    /// Loads the demo data (by starting the node once with --demo).
    pub fn demo(&self) {
        let mut node = self.start(&["--demo"]);
        node.stop();
    }

    /// Every record as JSON, deleted ones included: a snapshot to compare.
    pub fn snapshot(&self) -> Value {
        self.json(&["export"])
    }

    /// A one-time ticket into `space` with `role` (the node must run).
    pub fn ticket(&self, space: &str, role: &str) -> String {
        self.json(&["space", "invite", space, "--role", role])["ticket"]
            .as_str()
            .expect("ticket")
            .to_string()
    }

    /// Whether this node shows record `id`.
    pub fn shows(&self, id: &str) -> bool {
        self.run(&["show", id]).status.success()
    }
}

/// A `rapport up` process; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Running {
    child: Child,
}

impl Running {
    /// Stops the node gracefully and waits for it to exit.
    pub fn stop(&mut self) {
        #[cfg(unix)]
        {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the node at once, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Polls `check` until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

/// A small seeded generator (SplitMix64): failing runs replay exactly.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    /// True with probability `per_mille`/1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// How many rounds a fault test runs: `var` if set, else `default`, or
/// `long` with `RAPPORT_LONG=1` (the long mode, outside CI).
pub fn rounds(var: &str, default: u64, long: u64) -> u64 {
    if let Some(n) = std::env::var(var).ok().and_then(|v| v.parse().ok()) {
        return n;
    }
    if std::env::var("RAPPORT_LONG").is_ok_and(|v| v == "1") {
        long
    } else {
        default
    }
}

/// The seed to use: `RAPPORT_TEST_SEED` if set, else `default`.
pub fn seed(default: u64) -> u64 {
    std::env::var("RAPPORT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Writes into a stopped node's store a signed change to record `id`
/// setting `field` to `value`, as a modified client would, skipping the
/// node's own checks (its role, its removal). With `break_signature`, the
/// signature does not verify either.
pub fn write_as_modified_client(
    dir: &Path,
    id: &str,
    field: &str,
    value: &str,
    break_signature: bool,
) {
    use rapport_model::automerge::AutoCommit;
    use rapport_model::{Edit, FieldValue, RecordView};
    use rapport_store::{Indexed, RecordWrite, Store};

    let key = std::fs::read(dir.join("device.key")).expect("key");
    let key = rapport_trust::DeviceKey::from_secret_slice(&key).expect("key");
    let store = Store::open(&dir.join("store"), false, None).expect("store");
    let rid: rapport_model::RecordId = id.parse().expect("id");
    let old = store
        .view(rid)
        .expect("view")
        .expect("the record is on this node");
    let bytes = store.doc(rid).expect("doc").expect("doc");
    let mut doc = AutoCommit::load(&bytes)
        .expect("load")
        .with_actor(key.device_id().actor_id());
    rapport_model::doc::edit(
        &mut doc,
        &[Edit::Set(field.into(), FieldValue::Text(value.into()))],
        jiff::Timestamp::now(),
    )
    .expect("edit");
    let change = doc.get_last_local_change().expect("change");
    let mut signed = key.sign_change(&change).expect("sign");
    if break_signature {
        signed.signature[0] ^= 0x01;
    }
    let view = RecordView::read(&mut doc, rid, None).expect("view");
    let heads: Vec<[u8; 32]> = doc.get_heads().iter().map(|h| h.0).collect();
    store
        .write(&RecordWrite {
            id: rid,
            space: old.space,
            doc: &rapport_model::stored::save(&mut doc),
            heads: &heads,
            changes: &[(change.hash().0.to_vec(), signed)],
            index: Indexed::Record {
                view: &view,
                previous: Some(&old),
            },
        })
        .expect("write");
}

/// Writes into a stopped node's store a signed schema statement (JSON, as
/// `docs/PROTOCOL.md` gives it) in space `space`'s document, as a modified
/// client would, skipping the node's own check of its role.
pub fn write_schema_as_modified_client(dir: &Path, space: &str, statement: &str) {
    use rapport_model::automerge::AutoCommit;
    use rapport_store::{Indexed, RecordWrite, Store};

    let key = std::fs::read(dir.join("device.key")).expect("key");
    let key = rapport_trust::DeviceKey::from_secret_slice(&key).expect("key");
    let store = Store::open(&dir.join("store"), false, None).expect("store");
    let id: rapport_model::RecordId = space.parse().expect("space id");
    let view = store.space(id).expect("space").expect("the space is here");
    let bytes = store.doc(id).expect("doc").expect("doc");
    let mut doc = AutoCommit::load(&bytes)
        .expect("load")
        .with_actor(key.device_id().actor_id());
    let change = serde_json::from_str(statement).expect("statement");
    rapport_model::space::add_schema_change(&mut doc, &change, jiff::Timestamp::now())
        .expect("statement");
    let change = doc.get_last_local_change().expect("change");
    let signed = key.sign_change(&change).expect("sign");
    let heads: Vec<[u8; 32]> = doc.get_heads().iter().map(|h| h.0).collect();
    store
        .write(&RecordWrite {
            id,
            space: rapport_model::SpaceId::Shared(id),
            doc: &rapport_model::stored::save(&mut doc),
            heads: &heads,
            changes: &[(change.hash().0.to_vec(), signed)],
            index: Indexed::Space(&view),
        })
        .expect("write");
}

/// Whether any file under `dir` contains `needle`.
pub fn dir_contains(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).expect("dir").flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            dir_contains(&p, needle)
        } else {
            std::fs::read(&p).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        }
    })
}

/// Where a running node listens, as its `status` (or `relay status`) says.
pub fn endpoint_addr(status: &Value) -> iroh::EndpointAddr {
    let id: iroh::EndpointId = status["node_id"]
        .as_str()
        .expect("node id")
        .parse()
        .expect("node id");
    let sock: std::net::SocketAddr = status["addrs"][0]
        .as_str()
        .expect("address")
        .parse()
        .expect("address");
    iroh::EndpointAddr::new(id).with_ip_addr(sock)
}

/// A bare iroh endpoint on loopback: a peer that is not a Rapport node.
pub async fn bare_endpoint() -> iroh::Endpoint {
    iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")
        .expect("addr")
        .bind()
        .await
        .expect("bind")
}
