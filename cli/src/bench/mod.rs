//! `rapport bench`: the benchmarks, one module each, kept out of the
//! commands' code path; the helpers they share; and `bench store`, which
//! creates a throw-away store of N people and measures
//! what a user feels: write throughput, disk per record, memory, and the
//! latency of `show`, of a filtered `list` (by company, answered from the
//! reference index, and by e-mail, from the field index) and of a page of
//! 50 people sorted by name (from the field index).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rapport_model::{Kind, RecordId, SpaceId};
use rapport_node::repo::Input;
use rapport_node::{OpenMode, Repo};
use serde_json::json;

pub mod import;
pub mod relay;
pub mod reports;
pub mod search;
pub mod serve;
pub mod sync;

/// Runs one `rapport bench` command.
pub fn run_command(cmd: crate::BenchCmd, out: &mut String, json: bool) -> Result<()> {
    use crate::BenchCmd;
    match cmd {
        BenchCmd::Store { records, dir } => run(out, records, dir.as_deref(), json),
        BenchCmd::Search { records } => search::run(out, &records, json),
        BenchCmd::Reports { scale } => reports::run(out, &scale, json),
        BenchCmd::Import { records } => import::run(out, &records, json),
        BenchCmd::Relay { nodes, changes } => relay::run(out, nodes, changes, json),
        BenchCmd::Serve { peers, writes } => serve::run(out, peers, writes, json),
        BenchCmd::Sync {
            records,
            changed,
            naive,
        } => sync::run(out, records, changed, naive, json),
    }
}

const BATCH: usize = 1_000;
const PEOPLE_PER_COMPANY: usize = 100;
const SINGLE_WRITES: usize = 200;
const SHOW_SAMPLES: usize = 500;
const LIST_SAMPLES: usize = 20;

/// Environment variable that makes `rapport` print its peak RSS on exit,
/// so the bench can measure a cold CLI process.
pub const PEAK_RSS_ENV: &str = "RAPPORT_REPORT_PEAK_RSS";

pub fn run(out: &mut String, records: usize, dir: Option<&Path>, json: bool) -> Result<()> {
    let tmp = match dir {
        Some(d) => tempfile::Builder::new()
            .prefix("rapport-bench-")
            .tempdir_in(d),
        None => tempfile::Builder::new().prefix("rapport-bench-").tempdir(),
    }
    .context("cannot create a directory for the benchmark store")?;
    let data = tmp.path().join("data");
    let repo = std::sync::Arc::new(Repo::open(&data, OpenMode::Create)?);

    // Companies first, then people spread over them in durable batches.
    let companies = records.div_ceil(PEOPLE_PER_COMPANY).max(1);
    let company_rows: Vec<Vec<Input>> = (0..companies)
        .map(|c| vec![("name".into(), format!("Company {c:05}"))])
        .collect();
    let company_ids: Vec<RecordId> = repo
        .create_many(Kind::Company, SpaceId::Private, &company_rows)?
        .iter()
        .map(|v| v.id)
        .collect();

    let bar = indicatif::ProgressBar::new(records as u64);
    let mut person_ids = Vec::with_capacity(records);
    let started = Instant::now();
    let batches = (0..records).step_by(BATCH).map(|start| {
        (start..(start + BATCH).min(records))
            .map(|i| person(i, company_ids[i % companies]))
            .collect::<Vec<Vec<Input>>>()
    });
    repo.create_batches(Kind::Person, SpaceId::Private, batches, |views| {
        bar.inc(views.len() as u64);
        person_ids.extend(views.iter().map(|v| v.id));
        Ok(())
    })?;
    let batch_secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let mut single = Vec::with_capacity(SINGLE_WRITES);
    for i in 0..SINGLE_WRITES {
        let t = Instant::now();
        repo.create(
            Kind::Person,
            SpaceId::Private,
            &person(records + i, company_ids[i % companies]),
        )?;
        single.push(t.elapsed());
    }

    let mut rng = SplitMix(0x5eed);
    let mut show = Vec::with_capacity(SHOW_SAMPLES);
    for _ in 0..SHOW_SAMPLES {
        let id = person_ids[rng.below(person_ids.len())].to_string();
        let t = Instant::now();
        let v = repo.resolve(&id)?;
        repo.related(v.id)?;
        show.push(t.elapsed());
    }
    let mut list = Vec::with_capacity(LIST_SAMPLES);
    let mut matched = 0;
    for _ in 0..LIST_SAMPLES {
        let company = format!("Company {:05}", rng.below(companies));
        let t = Instant::now();
        matched = repo
            .list(Kind::Person, &[("company".into(), company)], false)?
            .len();
        list.push(t.elapsed());
    }
    // An equality filter on a field no reference index answers: from
    // the field index.
    let mut by_email = Vec::with_capacity(LIST_SAMPLES);
    for _ in 0..LIST_SAMPLES {
        let email = format!("person{}@example.com", rng.below(records));
        let t = Instant::now();
        let found = repo.list(Kind::Person, &[("emails".into(), email)], false)?;
        by_email.push(t.elapsed());
        anyhow::ensure!(found.len() == 1, "the e-mail filter found {}", found.len());
    }
    // Comparisons from the same index: a prefix, a range (both ends)
    // and text inside values, each matching a hundred people or one
    // (names are `Person 0001234`); contains reads every key of the field.
    let mut compared: [Vec<Duration>; 3] = Default::default();
    for _ in 0..LIST_SAMPLES {
        let hundred = rng.below(records.div_ceil(100).max(1));
        let low = format!("Person {:05}00", hundred);
        let high = format!("Person {:05}99", hundred);
        let queries: [Vec<Input>; 3] = [
            vec![("name^".into(), format!("person {hundred:05}"))],
            vec![("name>".into(), low), ("name<".into(), high)],
            vec![("emails~".into(), format!("son{hundred}@"))],
        ];
        for (samples, filters) in compared.iter_mut().zip(queries) {
            let t = Instant::now();
            let found = repo.list(Kind::Person, &filters, false)?;
            samples.push(t.elapsed());
            anyhow::ensure!(!found.is_empty(), "{filters:?} found nobody");
        }
    }
    let [mut by_prefix, mut by_range, mut by_contains] = compared;
    // A page of 50 people sorted by name, from the first page or from a
    // cursor anywhere in the list, as the API and the web UI ask.
    let ops = rapport_node::ops::Ops::local(repo.clone());
    let mut sorted = Vec::with_capacity(LIST_SAMPLES);
    let mut cursors: Vec<Option<String>> = vec![None];
    for i in 0..LIST_SAMPLES {
        let after = cursors[rng.below(cursors.len())].clone();
        let query = rapport_node::ops::ListQuery {
            kind: Kind::Person,
            filters: Vec::new(),
            deleted: false,
            sort: Some(if i % 2 == 0 { "name" } else { "-name" }.into()),
            limit: Some(50),
            after,
        };
        let t = Instant::now();
        let reply = ops
            .execute(
                &rapport_node::ops::Caller::user(),
                rapport_node::ops::Request::List(query),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        sorted.push(t.elapsed());
        if let rapport_node::ops::Reply::List(page) = reply {
            anyhow::ensure!(page.records.len() == 50 || page.next.is_none());
            if cursors.len() < 20 {
                cursors.push(page.next);
            }
        }
    }
    drop(ops);
    let disk = dir_size(&data);
    let total_records = repo.record_count();
    let field_index = repo.field_index_bytes()?;
    // Read before the floor's own sled database adds to it.
    let in_process_peak = peak_rss_kib();
    // The floor: sled alone writing what the store now holds, in as many
    // durable batches, measured in this run.
    let floor_dir = tmp.path().join("floor");
    let floor = repo.store_write_floor(&floor_dir, total_records.div_ceil(BATCH))?;
    std::fs::remove_dir_all(&floor_dir).context("cannot remove the floor's store")?;
    let floor_per_s = total_records as f64 / floor.seconds;
    let ours_per_s = records as f64 / batch_secs;
    drop(repo);
    let cold = cold_list_peak_rss(&data)?;
    // The store rebuilt from the journal alone, as after damage.
    let journal_bytes = dir_size(&data.join("journal"));
    let rebuild = rapport_node::recovery::rebuild(
        &data,
        std::sync::Arc::new(rapport_node::env::System),
        "benchmark",
        &|_, _| {},
    )?;
    let rebuilt = Repo::open(&data, OpenMode::Existing)?.record_count();
    anyhow::ensure!(
        rebuilt == total_records,
        "the rebuilt store holds {rebuilt} records, not {total_records}"
    );
    let rebuild_secs = rebuild.elapsed.as_secs_f64();

    let figures = json!({
        "records": records,
        "batched_write_records_per_s": ours_per_s.round(),
        "sled_floor_records_per_s": floor_per_s.round(),
        "sled_floor_keys_per_record": (floor.keys as f64 / total_records.max(1) as f64 * 10.0).round() / 10.0,
        "batched_write_over_floor": (floor_per_s / ours_per_s * 100.0).round() / 100.0,
        "single_write_p50_ms": ms(percentile(&mut single, 50)),
        "single_write_p95_ms": ms(percentile(&mut single, 95)),
        "disk_bytes_per_record": disk / total_records.max(1) as u64,
        "field_index_key_bytes_per_record": field_index / total_records.max(1) as u64,
        "show_p50_ms": ms(percentile(&mut show, 50)),
        "show_p95_ms": ms(percentile(&mut show, 95)),
        "filtered_list_p50_ms": ms(percentile(&mut list, 50)),
        "filtered_list_p95_ms": ms(percentile(&mut list, 95)),
        "filtered_list_matches": matched,
        "email_filter_list_p50_ms": ms(percentile(&mut by_email, 50)),
        "email_filter_list_p95_ms": ms(percentile(&mut by_email, 95)),
        "prefix_filter_list_p95_ms": ms(percentile(&mut by_prefix, 95)),
        "range_filter_list_p95_ms": ms(percentile(&mut by_range, 95)),
        "contains_filter_list_p95_ms": ms(percentile(&mut by_contains, 95)),
        "sorted_page_of_50_p50_ms": ms(percentile(&mut sorted, 50)),
        "sorted_page_of_50_p95_ms": ms(percentile(&mut sorted, 95)),
        "bench_process_peak_rss_mib": in_process_peak.map(|k| k / 1024),
        "cold_cli_list_peak_rss_mib": cold.map(|k| k / 1024),
        "journal_bytes_per_record": journal_bytes / total_records.max(1) as u64,
        "rebuild_from_journal_s": (rebuild_secs * 100.0).round() / 100.0,
        "rebuild_records_per_s": (total_records as f64 / rebuild_secs).round(),
    });
    if json {
        outln!(out, "{}", serde_json::to_string_pretty(&figures)?);
        return Ok(());
    }
    outln!(
        out,
        "rapport bench: {records} people in {companies} companies"
    );
    if let Some(map) = figures.as_object() {
        for (k, v) in map {
            outln!(out, "  {k:<30} {v}");
        }
    }
    Ok(())
}

fn person(i: usize, company: RecordId) -> Vec<Input> {
    vec![
        ("name".into(), format!("Person {i:07}")),
        ("emails".into(), format!("person{i}@example.com")),
        ("company".into(), company.to_string()),
        (
            "tags".into(),
            if i.is_multiple_of(10) {
                "vip".into()
            } else {
                "lead".into()
            },
        ),
    ]
}

pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

pub(crate) fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    samples
        .get((samples.len() * p / 100).min(samples.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// This process's peak resident set (VmHWM), in KiB, where /proc has it.
/// A node on 127.0.0.1 with no relay and no mDNS, for networked benchmarks.
pub(crate) fn loopback(
    sync_interval: Option<std::time::Duration>,
    live: bool,
) -> rapport_node::net::NetConfig {
    rapport_node::net::NetConfig {
        bind: vec!["127.0.0.1:0".parse().expect("a socket address")],
        relay: rapport_node::net::RelayChoice::Disabled,
        discovery: rapport_node::net::DiscoveryChoice::Disabled,
        mdns: false,
        sync_interval,
        live,
        limits: rapport_node::limits::Limits::default(),
    }
}

/// The async runtime a networked benchmark runs in.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Prints a benchmark's figures: a title and one `name value` line each,
/// or the JSON object with `--json`.
pub(crate) fn print_figures(
    out: &mut String,
    title: &str,
    figures: &serde_json::Value,
    json: bool,
) -> Result<()> {
    if json {
        outln!(out, "{}", serde_json::to_string_pretty(figures)?);
        return Ok(());
    }
    outln!(out, "{title}");
    if let Some(map) = figures.as_object() {
        for (k, v) in map {
            outln!(out, "  {k:<36} {v}");
        }
    }
    Ok(())
}

/// A `rapport` daemon (`up` or `relay run`) in a child process of its own,
/// for benchmarks that measure it from outside; killed when dropped.
pub(crate) struct Daemon {
    child: std::process::Child,
    pub(crate) dir: std::path::PathBuf,
    /// The first line the daemon printed with `--json`: node id, addresses, API.
    pub(crate) info: serde_json::Value,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Runs `rapport --data-dir DIR --json ARGS...` and waits for its first line.
    pub(crate) fn start(dir: &Path, args: &[&str]) -> Result<Daemon> {
        use std::io::BufRead;
        let exe = std::env::current_exe().context("cannot find the rapport binary")?;
        let mut child = Command::new(exe)
            .arg("--data-dir")
            .arg(dir)
            .arg("--json")
            .args(args)
            .env_remove("RAPPORT_DATA_DIR")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start rapport {args:?}"))?;
        let stdout = child.stdout.take().context("daemon stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let mut daemon = Daemon {
            child,
            dir: dir.to_path_buf(),
            info: serde_json::Value::Null,
        };
        if line.is_empty() {
            anyhow::bail!("rapport {args:?} did not start");
        }
        daemon.info = serde_json::from_str(&line).unwrap_or_default();
        Ok(daemon)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs a CLI command against the daemon (a new process, forwarded
    /// through the local API) and parses its JSON answer.
    pub(crate) fn cli(&self, args: &[&str]) -> Result<serde_json::Value> {
        let exe = std::env::current_exe()?;
        let out = Command::new(exe)
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--json")
            .args(args)
            .env_remove("RAPPORT_DATA_DIR")
            .output()?;
        if !out.status.success() {
            anyhow::bail!("rapport {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Peak RSS (KiB) and CPU seconds so far, from /proc.
    pub(crate) fn usage(&self) -> (Option<u64>, Option<f64>) {
        let pid = self.pid();
        (proc_status_kib(pid, "VmHWM:"), proc_cpu_s(pid))
    }

    /// Stops the daemon (SIGKILL: what it acknowledged is already durable).
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` line of /proc/PID/status (`VmHWM:`, `VmRSS:`), in KiB.
pub(crate) fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User plus system CPU seconds of a process so far, from /proc/PID/stat.
pub(crate) fn proc_cpu_s(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime: fields 14 and 15, in clock ticks (100/s on Linux).
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Polls `check` (on a blocking-capable thread) every 250 ms until it holds.
pub(crate) async fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    while !tokio::task::block_in_place(&mut check) {
        if started.elapsed() > limit {
            anyhow::bail!("gave up after {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `rapport list person --where company=...` as a fresh process on the
/// bench store and returns the peak RSS it reports: what opening a store of
/// this size costs, since nothing is loaded at start-up.
fn cold_list_peak_rss(data: &Path) -> Result<Option<u64>> {
    let exe = std::env::current_exe().context("cannot find the rapport binary")?;
    let out = Command::new(exe)
        .arg("--data-dir")
        .arg(data)
        .args([
            "list",
            "person",
            "--where",
            "company=Company 00000",
            "--json",
        ])
        .env(PEAK_RSS_ENV, "1")
        .output()
        .context("cannot run rapport list")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    Ok(stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_kib="))
        .and_then(|v| v.trim().parse().ok()))
}

/// A tiny seeded generator so that runs pick the same samples.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n.max(1) as u64) as usize
    }
}
