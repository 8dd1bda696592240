//! `rapport bench import`: a CSV of N people working at N/10 companies,
//! in Outlook's layout (with one person in a hundred there twice, under
//! another e-mail and their phone written nationally), imported by a
//! fresh `rapport import` process into an empty data directory; then the
//! same file again (every row matched, nothing written), `rapport
//! duplicates` for people and companies, a CSV export, and the undo. Each step is a process
//! of its own, timed from outside, with the peak RSS it reports.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{PEAK_RSS_ENV, print_figures};

pub fn run(out: &mut String, sizes: &[usize], json: bool) -> Result<()> {
    for &records in sizes {
        let figures = measure(records)?;
        print_figures(out, &format!("import, {records} people"), &figures, json)?;
    }
    Ok(())
}

fn measure(records: usize) -> Result<Value> {
    let tmp = tempfile::Builder::new()
        .prefix("rapport-bench-import-")
        .tempdir()
        .context("cannot create a directory for the benchmark")?;
    let data = tmp.path().join("data");
    let file = tmp.path().join("people.csv");
    let companies = (records / 10).max(1);
    let mut csv =
        String::from("First Name,Last Name,E-mail Address,Business Phone,Company,Job Title\r\n");
    let planted = records / 100;
    for i in 0..records {
        let c = i % companies;
        let _ = write!(
            csv,
            "Given{i},Family{i},person{i}@company{c}.example,+49 30 {:07},Company {c},Role {}\r\n",
            i,
            i % 13
        );
        if i % 100 == 0 && i / 100 < planted {
            let _ = write!(
                csv,
                "Given{i},Family{i},other{i}@elsewhere.example,030 {i:07},Company {c},\r\n"
            );
        }
    }
    std::fs::write(&file, &csv).context("cannot write the CSV file")?;
    let file = file.to_str().context("temporary path is not UTF-8")?;
    let data_s = data.to_str().context("temporary path is not UTF-8")?;

    let (import, first) = timed(data_s, &["import", file])?;
    if first["counts"]["create"] != records + planted {
        bail!(
            "the import created {} of {} people",
            first["counts"]["create"],
            records + planted
        );
    }
    if first["counts"]["companies"] != companies {
        bail!(
            "the import created {} of {companies} companies",
            first["counts"]["companies"]
        );
    }
    let (again, second) = timed(data_s, &["import", file])?;
    if second["counts"]["unchanged"] != records + planted {
        bail!(
            "the second import left {} of {records} unchanged",
            second["counts"]["unchanged"]
        );
    }
    let (dry, _) = timed(data_s, &["import", file, "--dry-run"])?;
    timed(data_s, &["init", "--region", "DE"])?;
    let (dup_people, people_found) = timed(data_s, &["duplicates", "person"])?;
    let found = people_found.as_array().map_or(0, Vec::len);
    if found != planted {
        bail!("duplicates found {found} groups of people, {planted} were planted");
    }
    let (dup_companies, companies_found) = timed(data_s, &["duplicates", "company"])?;
    if companies_found.as_array().is_none_or(|c| !c.is_empty()) {
        bail!("duplicates found companies where there are none: {companies_found}");
    }
    let (export, _) = timed_raw(data_s, &["export", "person", "--format", "csv"])?;
    let id = first["id"]
        .as_str()
        .context("the import has no id")?
        .to_string();
    let (undo, undone) = timed(data_s, &["import", "undo", &id])?;
    let seconds = |s: &Step| (s.seconds * 100.0).round() / 100.0;
    let per_s = |s: &Step, n: usize| (n as f64 / s.seconds).round();
    Ok(json!({
        "records": records,
        "companies": companies,
        "file_bytes": csv.len(),
        "import_s": seconds(&import),
        "import_records_per_s": per_s(&import, records + companies),
        "import_peak_rss_mib": import.peak_rss_mib,
        "reimport_unchanged_s": seconds(&again),
        "reimport_rows_per_s": per_s(&again, records + planted),
        "dry_run_s": seconds(&dry),
        "duplicates_people_s": seconds(&dup_people),
        "duplicates_people_peak_rss_mib": dup_people.peak_rss_mib,
        "duplicate_groups_found": found,
        "duplicates_companies_s": seconds(&dup_companies),
        "export_csv_s": seconds(&export),
        "export_peak_rss_mib": export.peak_rss_mib,
        "undo_s": seconds(&undo),
        "undo_deleted": undone["deleted"],
    }))
}

struct Step {
    seconds: f64,
    peak_rss_mib: Option<u64>,
}

fn timed(data: &str, args: &[&str]) -> Result<(Step, Value)> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (step, stdout) = timed_raw(data, &all)?;
    let value = serde_json::from_slice(&stdout)
        .with_context(|| format!("rapport {args:?} printed no JSON"))?;
    Ok((step, value))
}

fn timed_raw(data: &str, args: &[&str]) -> Result<(Step, Vec<u8>)> {
    let exe = std::env::current_exe().context("cannot find the rapport binary")?;
    let started = Instant::now();
    let out = Command::new(exe)
        .arg("--data-dir")
        .arg(Path::new(data))
        .args(args)
        .env(PEAK_RSS_ENV, "1")
        .output()
        .with_context(|| format!("cannot run rapport {args:?}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("rapport {args:?} failed: {stderr}");
    }
    let peak_rss_mib = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_kib="))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|k| k / 1024);
    Ok((
        Step {
            seconds,
            peak_rss_mib,
        },
        out.stdout,
    ))
}
