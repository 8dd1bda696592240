//! A node killed with SIGKILL again and again, while its peers keep
//! writing, while it catches up with them and while its own writes are in
//! flight, loses nothing it acknowledged, always opens again, and in the
//! end converges with its peers.
//!
//! Three real `rapport up` processes on loopback share a space: A and B
//! write all along (new companies, and edits of any shared company: A sets
//! `industry`, B sets `owner`, V sets `address`, so that every
//! acknowledged value has exactly one expected outcome). Each cycle lets V,
//! the victim, run for a random while (catching up with what A and B wrote
//! while it was down, and writing), starts one more write against V
//! without waiting for it, and kills V's node and that write with SIGKILL
//! after a random delay aimed like `tests/durability.rs` (so that about
//! half land mid-write). V stays down a random while, sometimes taking a
//! write straight into its store; in a third of the cycles it is killed
//! once more while it starts (opening its store, or just after, during its
//! first catch-up). Then it restarts on the same data directory: its store
//! must open, its node answer `status`, and every write V acknowledged
//! (the CLI printed its result) be there with its value. At the end the
//! writers stop and A, B and V must list exactly the same companies with
//! the same values, every acknowledged write included, and nothing else.
//!
//! `RAPPORT_TEST_SEED` replays a run's choices (not the exact timing);
//! `RAPPORT_CRASH_CYCLES` runs longer. Each node logs at debug level to
//! `NAME-N.log` beside its data directory; a failure prints their ends.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Node, Rng, eventually, seed};
use serde_json::Value;

const SPACE: &str = "Crash test space";
const DEFAULT_CYCLES: u64 = 12;
const WAIT: Duration = Duration::from_secs(30);
const CONVERGE_WAIT: Duration = Duration::from_secs(60);

/// What every node acknowledged, and what V attempted without an answer.
#[derive(Default)]
struct Ledger {
    /// Companies whose creation was acknowledged: id -> name.
    created: BTreeMap<String, String>,
    /// Per (record id, field), the values it may hold: the last
    /// acknowledged one, then any attempted after it (a write killed
    /// before it answered may still have become durable). An empty string
    /// stands for "unset".
    values: BTreeMap<(String, String), Vec<String>>,
    /// Names of V's creations that were attempted but not acknowledged:
    /// they may or may not exist.
    maybe_created: BTreeSet<String>,
    /// Acknowledged writes, per writer.
    acked: BTreeMap<&'static str, u64>,
}

impl Ledger {
    fn attempt_edit(&mut self, id: &str, field: &str, value: &str) {
        self.values
            .entry((id.to_string(), field.to_string()))
            .or_insert_with(|| vec![String::new()])
            .push(value.to_string());
    }

    fn ack(&mut self, who: &'static str, write: &Write, id: &str) {
        *self.acked.entry(who).or_default() += 1;
        match write {
            Write::Create { name } => {
                self.maybe_created.remove(name);
                self.created.insert(id.to_string(), name.clone());
            }
            Write::Edit { field, value, .. } => {
                self.values
                    .insert((id.to_string(), field.to_string()), vec![value.clone()]);
            }
        }
    }
}

/// The ledger, even after a panic elsewhere (the first panic is the story).
fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}

enum Write {
    Create {
        name: String,
    },
    Edit {
        id: String,
        field: &'static str,
        value: String,
    },
}

impl Write {
    fn args(&self) -> Vec<String> {
        let mut args = vec!["--json".to_string()];
        match self {
            Write::Create { name } => {
                args.extend(["company", "add", name, "--space", SPACE].map(String::from));
            }
            Write::Edit { id, field, value } => {
                args.extend(["edit", id, "--set"].map(String::from));
                args.push(format!("{field}={value}"));
            }
        }
        args
    }

    /// The id of the record the write's printed result describes, if the
    /// output is the acknowledgement of this write.
    fn acknowledged(&self, stdout: &str) -> Option<String> {
        let v: Value = serde_json::from_str(stdout).ok()?;
        let id = v["id"].as_str()?.to_string();
        let matches = match self {
            Write::Create { name } => v["name"] == name.as_str(),
            Write::Edit {
                id: target,
                field,
                value,
            } => *target == id && v[*field] == value.as_str(),
        };
        assert!(matches, "a write printed an unexpected result: {stdout}");
        Some(id)
    }
}

fn ids_on(n: &Node) -> Vec<String> {
    n.json(&["list", "company"])
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect()
}

/// Every company on a node, by id, as `--json list company` shows it.
fn listing(n: &Node) -> BTreeMap<String, Value> {
    n.json(&["list", "company"])
        .as_array()
        .expect("array")
        .iter()
        .map(|c| (c["id"].as_str().expect("id").to_string(), c.clone()))
        .collect()
}

/// Whether a node's `status` says it completed a catch-up session since it
/// started (`last_sync` lives in memory: a restart clears it).
fn synced_since_start(status: &Value) -> bool {
    status["spaces"]
        .as_object()
        .is_some_and(|spaces| spaces.values().any(|sp| !sp["last_sync"].is_null()))
}

/// A or B: writes until told to stop, recording what it acknowledged.
fn writer(
    who: &'static str,
    node: &Node,
    field: &'static str,
    mut rng: Rng,
    ledger: &Mutex<Ledger>,
    stop: &AtomicBool,
) -> Result<u64, String> {
    let mut known: Vec<String> = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(120 + rng.below(200)));
        if i.is_multiple_of(6) {
            known = ids_on(node);
        }
        let write = if known.is_empty() || rng.below(3) == 0 {
            Write::Create {
                name: format!("{who}-{i}"),
            }
        } else {
            Write::Edit {
                id: known[rng.below(known.len() as u64) as usize].clone(),
                field,
                value: format!("{who}-{i}"),
            }
        };
        let out = node
            .cmd()
            .args(write.args())
            .output()
            .map_err(|e| format!("{who}: cannot run rapport: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let id = match (out.status.success(), write.acknowledged(&stdout)) {
            (true, Some(id)) => id,
            _ => {
                return Err(format!(
                    "{who}: write {:?} failed on a running node: {}",
                    write.args(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        };
        if let Write::Create { .. } = write {
            known.push(id.clone());
        }
        lock(ledger).ack(who, &write, &id);
        i += 1;
    }
    Ok(i)
}

/// A `rapport up` process, with its logs (at debug level) in files of its
/// own beside its data directory: `NAME-N.log` for its N-th start; a
/// failing test prints the end of the last one.
struct Proc {
    name: &'static str,
    dir: PathBuf,
    child: Option<Child>,
    incarnation: u32,
    log: PathBuf,
    /// When the node last answered `status` after a start.
    up_since: Instant,
}

impl Proc {
    fn new(name: &'static str, node: &Node) -> Self {
        Proc {
            name,
            dir: node.dir.clone(),
            child: None,
            incarnation: 0,
            log: PathBuf::new(),
            up_since: Instant::now(),
        }
    }

    /// Starts the node without waiting for it.
    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("api.json"));
        self.incarnation += 1;
        self.log = self
            .dir
            .parent()
            .expect("data dir parent")
            .join(format!("{}-{}.log", self.name, self.incarnation));
        let log = std::fs::File::create(&self.log).expect("log file");
        let child = Node::at(&self.dir)
            .args([
                "up",
                "--bind",
                "127.0.0.1:0",
                "--no-mdns",
                "--sync-interval",
                "1",
            ])
            .env("RAPPORT_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start rapport up");
        self.child = Some(child);
    }

    /// Whether the started node has written `api.json`: its store is open
    /// and its network up (its first catch-up has been launched).
    fn serving(&self) -> bool {
        self.dir.join("api.json").exists()
    }

    /// Starts the node and waits until it answers `status`; returns how
    /// long that took, and that first status.
    fn start(&mut self) -> (Duration, Value) {
        let started = Instant::now();
        self.spawn();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .expect("child")
                .try_wait()
                .expect("try_wait")
            {
                panic!(
                    "{}'s node exited at start ({status}): the store did not open?\n{}",
                    self.name,
                    tail(&self.log)
                );
            }
            if self.serving() {
                let out = Node::at(&self.dir)
                    .args(["--json", "status"])
                    .output()
                    .expect("run rapport");
                if let (true, Ok(status)) = (
                    out.status.success(),
                    serde_json::from_slice::<Value>(&out.stdout),
                ) && status["running"] == true
                {
                    self.up_since = Instant::now();
                    return (started.elapsed(), status);
                }
            }
            assert!(
                started.elapsed() < WAIT,
                "{}'s node did not answer status within {WAIT:?}\n{}",
                self.name,
                tail(&self.log)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        // A failing run shows what the node said last.
        if std::thread::panicking() && self.incarnation > 0 {
            eprintln!("{}", tail(&self.log));
        }
    }
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(30);
    format!("--- {} ---\n{}", path.display(), lines[from..].join("\n"))
}

/// Starts `write` (with `cmd`, a `rapport` command for some node) without
/// waiting for it.
fn run_on(cmd: &mut Command, write: &Write) -> Child {
    cmd.args(write.args())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rapport")
}

/// What a finished (or killed) write printed: stdout and stderr.
fn outputs(child: &mut Child) -> (String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    (out, err)
}

/// V's next write: a new company, or an edit of `address` on a company V
/// has (any node's).
fn next_v_write(rng: &mut Rng, n: &mut u64, v_ids: &[String]) -> Write {
    *n += 1;
    if v_ids.is_empty() || rng.below(3) == 0 {
        Write::Create {
            name: format!("V-{n}"),
        }
    } else {
        Write::Edit {
            id: v_ids[rng.below(v_ids.len() as u64) as usize].clone(),
            field: "address",
            value: format!("V-{n}"),
        }
    }
}

/// Records an attempt of V's before it runs.
fn attempt(ledger: &Mutex<Ledger>, write: &Write) {
    let mut l = lock(ledger);
    match write {
        Write::Create { name } => {
            l.maybe_created.insert(name.clone());
        }
        Write::Edit { id, field, value } => l.attempt_edit(id, field, value),
    }
}

/// A write against V that must succeed (V's node is up, or V is down and
/// the CLI opens the store itself).
fn v_write_now(v: &Node, write: &Write, ledger: &Mutex<Ledger>, context: &str) {
    attempt(ledger, write);
    let mut child = run_on(&mut v.cmd(), write);
    let status = child.wait().expect("wait");
    let (out, err) = outputs(&mut child);
    let id = match (status.success(), write.acknowledged(&out)) {
        (true, Some(id)) => id,
        _ => panic!("{context}: V's write {:?} failed: {err}", write.args()),
    };
    lock(ledger).ack("V", write, &id);
}

/// Checks that V holds every write it acknowledged; returns how many
/// acknowledged writes were checked.
fn check_v(v: &Node, ledger: &Mutex<Ledger>, context: &str) -> u64 {
    let listed = listing(v);
    let l = lock(ledger);
    let mut checked = 0;
    for (id, name) in &l.created {
        if !name.starts_with('V') {
            continue;
        }
        let c = listed
            .get(id)
            .unwrap_or_else(|| panic!("{context}: V's acknowledged {name} ({id}) is lost"));
        assert_eq!(c["name"], name.as_str(), "{context}: {id} changed its name");
        checked += 1;
    }
    for ((id, field), allowed) in &l.values {
        if *field != "address" {
            continue;
        }
        let Some(c) = listed.get(id) else {
            // V may lack a record it never acknowledged a write to (one it
            // received and had not yet made durable, or created without
            // an answer), never one it did.
            let v_created = l.created.get(id).is_some_and(|n| n.starts_with('V'));
            assert!(
                !v_created && allowed.first().is_some_and(String::is_empty),
                "{context}: V acknowledged a write to {id}, which it no longer has"
            );
            continue;
        };
        let now = c[field.as_str()].as_str().unwrap_or("");
        assert!(
            allowed.iter().any(|a| a == now),
            "{context}: {id} has {field} `{now}`, but V acknowledged {:?} (or a later attempt)",
            allowed
        );
        checked += 1;
    }
    checked
}

#[test]
fn a_node_killed_during_sync_and_writes_loses_nothing_and_converges() {
    let seed = seed(0xc0ff_ee42);
    let cycles = common::rounds("RAPPORT_CRASH_CYCLES", DEFAULT_CYCLES, 100);
    eprintln!("crash: seed {seed}, {cycles} cycles (replay with RAPPORT_TEST_SEED={seed})");
    let test_started = Instant::now();
    let mut rng = Rng(seed);
    let (a, b, v) = (Node::new(), Node::new(), Node::new());

    eprintln!("crash: setup: A, B and V share {SPACE:?}");
    let (mut pa, mut pb, mut victim) = (Proc::new("a", &a), Proc::new("b", &b), Proc::new("v", &v));
    pa.start();
    pb.start();
    victim.start();
    a.ok(&["space", "create", SPACE]);
    let first = a.json(&["company", "add", "Seed Co", "--space", SPACE]);
    let first = first["id"].as_str().expect("id").to_string();
    let ticket = |role: &str| {
        a.json(&["space", "invite", SPACE, "--role", role])["ticket"]
            .as_str()
            .expect("ticket")
            .to_string()
    };
    b.ok(&["space", "join", &ticket("writer")]);
    v.ok(&["space", "join", &ticket("writer")]);
    for n in [&b, &v] {
        assert!(
            eventually(WAIT, || n.run(&["show", &first]).status.success()),
            "the first record did not reach every node"
        );
    }
    let ledger = Mutex::new(Ledger::default());
    lock(&ledger)
        .created
        .insert(first.clone(), "Seed Co".into());

    // How long a write against V takes, to aim the kills (as durability.rs).
    let mut v_n = 0u64;
    let t = Instant::now();
    for _ in 0..3 {
        let w = next_v_write(&mut rng, &mut v_n, &[]);
        v_write_now(&v, &w, &ledger, "warm-up");
    }
    let write_time = t.elapsed() / 3;
    let mut window_us = (write_time.as_micros() as u64 * 3 / 2).max(2_000);
    eprintln!("crash: a write against V takes {write_time:?}");

    let stop = AtomicBool::new(false);
    let (mut killed_mid_write, mut offline_writes) = (0u64, 0u64);
    // Restarts after which V's first status showed its first catch-up
    // still to complete.
    let mut unsynced_at_ready = 0u64;
    let mut checked = 0u64;
    let mut restart_total = Duration::ZERO;
    // Kills while V started: before it served (opening its store), and
    // after (its first catch-up running).
    let mut killed_starting = [0u64; 2];
    let mut start_window_us = 100_000;
    let (seed_a, seed_b) = (rng.next(), rng.next());
    let written = std::thread::scope(|scope| {
        let wa = scope.spawn(|| writer("A", &a, "industry", Rng(seed_a), &ledger, &stop));
        let wb = scope.spawn(|| writer("B", &b, "owner", Rng(seed_b), &ledger, &stop));
        // Stop the writers however the loop ends, so that the scope returns.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop_writers = StopOnDrop(&stop);

        for cycle in 1..=cycles {
            let context = format!("cycle {cycle} (seed {seed})");
            // V runs a while: catching up with what A and B wrote while it
            // was down, and writing (acknowledged writes). Half the kills
            // aim at the catch-up that follows the restart.
            let live = Duration::from_millis(if rng.below(2) == 0 {
                rng.below(150)
            } else {
                rng.below(2_000)
            });
            let sync_writes = rng.below(3);
            for _ in 0..sync_writes {
                std::thread::sleep(live / (sync_writes as u32 + 1));
                let v_ids = ids_on(&v);
                let w = next_v_write(&mut rng, &mut v_n, &v_ids);
                v_write_now(&v, &w, &ledger, &context);
            }
            std::thread::sleep(live / (sync_writes as u32 + 1));

            let v_ids = ids_on(&v);

            // One more write against V, and the kill at a random moment.
            let w = next_v_write(&mut rng, &mut v_n, &v_ids);
            attempt(&ledger, &w);
            let mut cli = run_on(&mut v.cmd(), &w);
            std::thread::sleep(Duration::from_micros(rng.below(window_us)));
            let in_flight = cli.try_wait().expect("try_wait").is_none();
            let up = victim.up_since.elapsed();
            victim.kill();
            let _ = cli.kill();
            let status = cli.wait().expect("wait");
            let (out, err) = outputs(&mut cli);
            if in_flight {
                killed_mid_write += 1;
                window_us = window_us * 11 / 10;
            } else {
                window_us = (window_us * 8 / 10).max(1_000);
                assert!(
                    status.success(),
                    "{context}: V's write {:?} failed before the kill: {err}",
                    w.args()
                );
            }
            let acked = status.success() && w.acknowledged(&out).is_some();
            if let (true, Some(id)) = (status.success(), w.acknowledged(&out)) {
                lock(&ledger).ack("V", &w, &id);
            }
            eprintln!(
                "crash: cycle {cycle}: killed V {up:.0?} after its start (its write in flight: {in_flight}, acknowledged: {acked})"
            );

            // Down for a while; sometimes a write straight into V's store
            // (no node runs: the CLI opens it itself).
            std::thread::sleep(Duration::from_millis(rng.below(1_500)));
            if rng.below(3) == 0 {
                let w = next_v_write(&mut rng, &mut v_n, &v_ids);
                v_write_now(&v, &w, &ledger, &format!("{context}, V down"));
                offline_writes += 1;
            }

            // Sometimes a kill while V starts: opening its store, or just
            // after, during its first catch-up with A and B.
            if rng.below(3) == 0 {
                victim.spawn();
                std::thread::sleep(Duration::from_micros(rng.below(start_window_us)));
                let serving = victim.serving();
                victim.kill();
                killed_starting[usize::from(serving)] += 1;
                eprintln!(
                    "crash: cycle {cycle}: killed V again while it started ({})",
                    if serving {
                        "just after it served"
                    } else {
                        "before it served"
                    }
                );
            }
            let (took, status) = victim.start();
            if !synced_since_start(&status) {
                unsynced_at_ready += 1;
            }
            start_window_us = (took.as_micros() as u64 * 3 / 2).max(20_000);
            restart_total += took;
            let n = check_v(&v, &ledger, &context);
            checked += n;
            eprintln!(
                "crash: cycle {cycle}: restarted in {took:.2?} ({}), {n} acknowledged writes of V's there with their values",
                if synced_since_start(&status) {
                    "its first catch-up done when it answered"
                } else {
                    "its first catch-up still under way when it answered"
                }
            );
        }
        stop.store(true, Ordering::Relaxed);
        let wa = wa.join().expect("writer A panicked");
        let wb = wb.join().expect("writer B panicked");
        [wa, wb].map(|r| r.unwrap_or_else(|e| panic!("seed {seed}: {e}")))
    });

    // Convergence: the same companies with the same values everywhere, and
    // as many signed changes stored on each node.
    eprintln!(
        "crash: writers stopped ({} by A, {} by B); waiting for convergence",
        written[0], written[1]
    );
    let converging = Instant::now();
    let mut last = Vec::new();
    let mut changes = [None; 3];
    let converged = eventually(CONVERGE_WAIT, || {
        last = [&a, &b, &v].map(listing).to_vec();
        changes = [&a, &b, &v].map(|n| n.json(&["status"])["changes_stored"].as_u64());
        last[0] == last[1]
            && last[1] == last[2]
            && changes[0] == changes[1]
            && changes[1] == changes[2]
    });
    let converge_time = converging.elapsed();
    if !converged {
        let keys: Vec<BTreeSet<&String>> = last.iter().map(|l| l.keys().collect()).collect();
        let differing: Vec<&String> = last[0]
            .iter()
            .filter(|(id, c)| last[1].get(*id) != Some(c) || last[2].get(*id) != Some(c))
            .map(|(id, _)| id)
            .collect();
        panic!(
            "seed {seed}: A, B and V did not converge within {CONVERGE_WAIT:?}: {} / {} / {} companies, {changes:?} changes stored; only on B: {:?}; only on V: {:?}; differing on A: {:?}\n{}",
            last[0].len(),
            last[1].len(),
            last[2].len(),
            keys[1].difference(&keys[0]).collect::<Vec<_>>(),
            keys[2].difference(&keys[0]).collect::<Vec<_>>(),
            differing,
            tail(&victim.log)
        );
    }

    // Every acknowledged write by any node, with its value; nothing else
    // but V's unanswered creations.
    let all = &last[0];
    let l = lock(&ledger);
    for (id, name) in &l.created {
        let c = all
            .get(id)
            .unwrap_or_else(|| panic!("seed {seed}: acknowledged {name} ({id}) is lost"));
        assert_eq!(c["name"], name.as_str(), "seed {seed}: {id}");
    }
    let mut values_checked = 0;
    for ((id, field), allowed) in &l.values {
        let Some(c) = all.get(id) else {
            assert!(
                !l.created.contains_key(id),
                "seed {seed}: {id} was edited but is lost"
            );
            continue;
        };
        let now = c[field.as_str()].as_str().unwrap_or("");
        assert!(
            allowed.iter().any(|a| a == now),
            "seed {seed}: {id} has {field} `{now}`, expected one of {allowed:?}"
        );
        values_checked += 1;
    }
    for (id, c) in all {
        let name = c["name"].as_str().unwrap_or("");
        assert!(
            l.created.contains_key(id) || l.maybe_created.contains(name),
            "seed {seed}: {id} ({name}) was never written"
        );
    }
    let acked: u64 = l.acked.values().sum();
    let starting: u64 = killed_starting.iter().sum();
    eprintln!(
        "crash: {cycles} cycles, {} kills of V: {cycles} while it ran ({killed_mid_write} with a write of V's in flight), {starting} while it started ({} before it served, {} just after, with its first catch-up under way); {unsynced_at_ready} of {cycles} restarts answered before completing their first catch-up",
        cycles + starting,
        killed_starting[0],
        killed_starting[1],
    );
    eprintln!(
        "crash: acknowledged writes: {acked} ({}), {offline_writes} of V's while it was down; {checked} checks of V's acknowledged writes after restarts, none lost",
        l.acked
            .iter()
            .map(|(who, n)| format!("{n} by {who}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    eprintln!(
        "crash: converged in {converge_time:.2?}: {} companies, identical on A, B and V, {} signed changes stored on each; {} acknowledged creations and {values_checked} acknowledged values checked; restarts took {:.2?} on average; {:.1?} in all",
        all.len(),
        changes[0].unwrap_or(0),
        l.created.len(),
        restart_total / cycles.max(1) as u32,
        test_started.elapsed()
    );
    assert!(
        killed_mid_write > 0,
        "no kill landed while V's write was in flight; the test would prove little"
    );
}
