//! `rapport bench serve`: one user's node (a real `rapport up` process)
//! shares a space with P peers (real iroh endpoints and stores, in this
//! process) and serves them all while its user writes at full speed
//! through the running node's local API, as the CLI does. The peers stay
//! online and write a smaller share each. The benchmark measures the served
//! node's write throughput, how long until every peer holds every change
//! once the writing stops, and the served process's memory (peak and
//! sampled over time), CPU time and traffic.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rapport_model::{Kind, RecordId, SpaceId};
use rapport_node::net::Node;
use rapport_node::{OpenMode, Repo};
use serde_json::{Value, json};

use crate::bench::{Daemon, proc_cpu_s, proc_status_kib, wait_until};

/// The served node creates one company per this many of its writes; the
/// rest are edits of them. Peers do the same with their share.
const WRITES_PER_RECORD: usize = 10;
/// Each peer writes this fraction of the served node's writes.
const PEER_SHARE: usize = 10;
/// The peers catch up periodically as users' nodes do by default; the
/// served node does it every second (`--sync-interval 1`), so that the
/// serving falls on the process being measured.
const PEER_SYNC_INTERVAL: Duration = Duration::from_secs(30);
/// How often the served process's RSS is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

pub fn run(out: &mut String, peers: usize, writes: usize, json: bool) -> Result<()> {
    if peers == 0 || writes < PEER_SHARE {
        bail!("use at least 1 peer and {PEER_SHARE} writes");
    }
    let figures = crate::bench::runtime()?.block_on(measure(peers, writes))?;
    crate::bench::print_figures(
        out,
        &format!(
            "rapport bench serve: one `rapport up` node writing {writes} changes while serving {peers} peers that write {} each",
            writes / PEER_SHARE
        ),
        &figures,
        json,
    )
}

/// Runs one command in the served node through its local API, as the CLI
/// does when a node runs, and parses its JSON answer.
fn exec(dir: &Path, args: &[&str]) -> Result<Value> {
    use clap::Parser as _;
    let mut all = vec!["rapport", "--json"];
    all.extend(args);
    let cli = crate::Cli::try_parse_from(&all)?;
    let planned = crate::commands::plan_of(&cli.command)?
        .with_context(|| format!("rapport {args:?} is not an operation"))?;
    if !crate::client::node_running(dir) {
        bail!("the served node does not answer");
    }
    let mut out = String::new();
    let mut executor = crate::commands::Executor::new(dir, false);
    crate::commands::run(planned, &mut executor, true, &mut out)
        .with_context(|| format!("rapport {args:?}"))?;
    serde_json::from_str(&out).with_context(|| format!("rapport {args:?}"))
}

/// Samples a process's RSS in a thread until stopped: (peak, last), in KiB.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut peak, mut last) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                if let Some(rss) = proc_status_kib(pid, "VmRSS:") {
                    peak = peak.max(rss);
                    last = rss;
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            (peak, last)
        });
        Sampler { stop, thread }
    }

    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or((0, 0))
    }
}

fn mib(kib: Option<u64>) -> Option<u64> {
    kib.map(|k| k / 1024)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// What the served node's writer measured.
struct Written {
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// VmRSS (MiB) after each tenth of the writes.
    rss_by_tenth: Vec<Option<u64>>,
}

/// The served node's user: `records` new companies, then edits of them,
/// one local API request each, as fast as they are answered.
fn write_served(dir: &Path, pid: u32, space: &str, writes: usize) -> Result<Written> {
    let records = writes.div_ceil(WRITES_PER_RECORD);
    let mut ids = Vec::with_capacity(records);
    let mut latencies = Vec::with_capacity(writes);
    let mut rss_by_tenth = Vec::new();
    let started = Instant::now();
    for w in 0..writes {
        let t = Instant::now();
        if w < records {
            let v = exec(
                dir,
                &[
                    "company",
                    "add",
                    &format!("Served company {w}"),
                    "--space",
                    space,
                ],
            )?;
            ids.push(v["id"].as_str().context("created id")?.to_string());
        } else {
            let id = &ids[w % records];
            exec(
                dir,
                &["edit", id, "--set", &format!("industry=Industry {w}")],
            )?;
        }
        latencies.push(t.elapsed());
        if (w + 1) * 10 / writes != w * 10 / writes {
            rss_by_tenth.push(mib(proc_status_kib(pid, "VmRSS:")));
        }
    }
    Ok(Written {
        elapsed: started.elapsed(),
        latencies,
        rss_by_tenth,
    })
}

/// A peer's user: its share of new companies and edits, straight into its store.
fn write_peer(repo: &Repo, i: usize, sid: SpaceId, writes: usize) -> Result<()> {
    let records = writes.div_ceil(WRITES_PER_RECORD);
    let mut ids: Vec<RecordId> = Vec::with_capacity(records);
    for w in 0..writes {
        if w < records {
            let v = repo.create(
                Kind::Company,
                sid,
                &[("name".into(), format!("Peer {i} company {w}"))],
            )?;
            ids.push(v.id);
        } else {
            let id = ids[w % records].to_string();
            repo.edit(&id, &[("industry".into(), format!("Industry {w}"))], &[])?;
        }
    }
    Ok(())
}

fn items(repo: &Repo, sid: SpaceId) -> Result<Vec<(RecordId, Vec<[u8; 32]>)>> {
    Ok(repo.space_heads(sid)?)
}

fn percentile_ms(samples: &mut [Duration], p: usize) -> f64 {
    samples.sort();
    let d = samples
        .get((samples.len() * p / 100).min(samples.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    crate::bench::ms(d)
}

async fn measure(peers: usize, writes: usize) -> Result<Value> {
    let tmp = tempfile::Builder::new()
        .prefix("rapport-bench-serve-")
        .tempdir()?;
    let served_dir: PathBuf = tmp.path().join("served");
    let served = Daemon::start(
        &served_dir,
        &[
            "up",
            "--bind",
            "127.0.0.1:0",
            "--no-mdns",
            "--relay",
            "none",
            "--discovery",
            "none",
            "--sync-interval",
            "1",
        ],
    )
    .context("cannot start the served node")?;
    let pid = served.pid();
    let rss_idle = proc_status_kib(pid, "VmRSS:");

    // The served node creates the space and invites every peer.
    let space = exec(&served_dir, &["space", "create", "bench"])?;
    let space_text = space["id"].as_str().context("space id")?.to_string();
    let space_id: RecordId = space_text
        .parse()
        .map_err(|e| anyhow::anyhow!("space id {space_text}: {e:?}"))?;
    let sid = SpaceId::Shared(space_id);
    let t_setup = Instant::now();
    let mut repos = Vec::with_capacity(peers);
    let mut nodes = Vec::with_capacity(peers);
    for i in 0..peers {
        let repo = Arc::new(Repo::open(
            &tmp.path().join(format!("peer{i}")),
            OpenMode::Create,
        )?);
        let node = Node::start(
            repo.clone(),
            crate::bench::loopback(Some(PEER_SYNC_INTERVAL), true),
        )
        .await?;
        let ticket = exec(
            &served_dir,
            &["space", "invite", &space_text, "--role", "writer"],
        )?;
        let ticket =
            rapport_proto::wire::Ticket::decode(ticket["ticket"].as_str().context("ticket")?)?;
        node.join(&ticket).await?;
        repos.push(repo);
        nodes.push(node);
    }
    let rss_joined = proc_status_kib(pid, "VmRSS:");
    let setup = t_setup.elapsed();
    let cpu_before = proc_cpu_s(pid).unwrap_or(0.0);
    let traffic_before = exec(&served_dir, &["status"])?;

    // Everyone writes at once: the served node through its API, each peer into its store.
    let per_peer = writes / PEER_SHARE;
    let sampler = Sampler::start(pid);
    let bar = indicatif::ProgressBar::new((writes + peers * per_peer) as u64);
    let started = Instant::now();
    let writer = {
        let dir = served_dir.clone();
        let space = space_text.clone();
        let bar = bar.clone();
        tokio::task::spawn_blocking(move || {
            let w = write_served(&dir, pid, &space, writes);
            bar.inc(writes as u64);
            w
        })
    };
    let mut peer_writers = Vec::with_capacity(peers);
    for (i, repo) in repos.iter().enumerate() {
        let repo = repo.clone();
        let bar = bar.clone();
        peer_writers.push(tokio::task::spawn_blocking(move || {
            let r = write_peer(&repo, i, sid, per_peer);
            bar.inc(per_peer as u64);
            r
        }));
    }
    let written = writer.await??;
    for w in peer_writers {
        w.await??;
    }
    let writing = started.elapsed();
    bar.finish_and_clear();
    let rss_end_of_writes = proc_status_kib(pid, "VmRSS:");

    // How long until every peer holds every change, counted from the moment
    // the last writer stopped? The peers must agree on every document's
    // heads, hold every record, and hold as many changes as the served node.
    let t = Instant::now();
    let records = writes.div_ceil(WRITES_PER_RECORD) + peers * per_peer.div_ceil(WRITES_PER_RECORD);
    let total_writes = writes + peers * per_peer;
    let dir = served_dir.clone();
    let check = || -> Result<bool> {
        let served_changes = exec(&dir, &["status"])?["changes_stored"]
            .as_u64()
            .context("changes_stored")? as usize;
        if served_changes < total_writes {
            return Ok(false);
        }
        let reference = items(&repos[0], sid)?;
        if reference.len() != records + 1 {
            return Ok(false);
        }
        for repo in &repos {
            if repo.change_count() != served_changes || items(repo, sid)? != reference {
                return Ok(false);
            }
        }
        Ok(true)
    };
    // A peer that never converges is reported in the figures below (what
    // each peer holds), not hidden behind an error.
    let converged = wait_until(Duration::from_secs(1800), || check().unwrap_or(false))
        .await
        .is_ok();
    let converge = t.elapsed();
    let (rss_sampled_peak, rss_at_end) = sampler.finish();
    let status = exec(&served_dir, &["status"])?;
    let (peak, cpu) = served.usage();
    let stopping: Vec<_> = nodes
        .into_iter()
        .map(|node| tokio::spawn(async move { node.shutdown().await }))
        .collect();
    for s in stopping {
        s.await?;
    }

    // What every store holds, read from the stores themselves: the served
    // node's (reopened once it stopped) and each peer's.
    served.kill();
    let served_repo = Repo::open(&served_dir, OpenMode::Existing)?;
    let served_items = items(&served_repo, sid)?;
    let mut peer_records = Vec::with_capacity(repos.len());
    let mut peer_changes = Vec::with_capacity(repos.len());
    let mut peers_matching_served = 0;
    for repo in &repos {
        let held = items(repo, sid)?;
        // The space's own document is one of its items, not a record.
        peer_records.push(held.len().saturating_sub(1));
        peer_changes.push(repo.change_count());
        peers_matching_served += usize::from(held == served_items);
    }

    let bytes = |s: &Value| {
        s["bytes_sent"].as_u64().unwrap_or(0) + s["bytes_received"].as_u64().unwrap_or(0)
    };
    let traffic = bytes(&status).saturating_sub(bytes(&traffic_before));
    let mut latencies = written.latencies;
    Ok(json!({
        "peers": peers,
        "served_writes": writes,
        "writes_per_peer": per_peer,
        "writes_total": total_writes,
        "records_written": records,
        "served_writes_per_s": (writes as f64 / written.elapsed.as_secs_f64()).round(),
        "served_write_p50_ms": percentile_ms(&mut latencies, 50),
        "served_write_p95_ms": percentile_ms(&mut latencies, 95),
        "peers_joining_s": round2(setup.as_secs_f64()),
        "writing_phase_s": round2(writing.as_secs_f64()),
        "converge_after_writes_stop_s": round2(converge.as_secs_f64()),
        "converged_in_time": converged,
        "served_records": served_items.len().saturating_sub(1),
        "served_changes_stored": served_repo.change_count(),
        "peer_records": peer_records,
        "peer_changes_stored": peer_changes,
        "peers_matching_served": peers_matching_served,
        "served_rss_idle_mib": mib(rss_idle),
        "served_rss_peers_joined_mib": mib(rss_joined),
        "served_rss_during_writes_mib": written.rss_by_tenth,
        "served_rss_end_of_writes_mib": mib(rss_end_of_writes),
        "served_rss_sampled_peak_mib": rss_sampled_peak / 1024,
        "served_rss_at_end_mib": rss_at_end / 1024,
        "served_peak_rss_mib": mib(peak),
        "served_cpu_s": cpu,
        "served_cpu_writing_and_serving_s": cpu.map(|c| round2(c - cpu_before)),
        "served_bytes_in_out": traffic,
        "served_bytes_per_change": traffic / total_writes as u64,
        "served_disk_bytes": status["disk_bytes"],
        "peers_process_cpu_s": proc_cpu_s(std::process::id()),
    }))
}
