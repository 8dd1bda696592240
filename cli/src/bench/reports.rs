//! `rapport bench reports`: every report over a store the size the issue
//! names (at 100 %: 20,000 companies, 100,000 people, 50,000 deals, with
//! 20,000 activities, 10,000 tickets, 20 campaigns, 200 products and one
//! to three lines on each won deal), through the same
//! `Ops::execute` the CLI, the web UI and the API call. Prints, per
//! report, the p50 and slowest of a few runs, and the floor every report
//! pays: reading the records out of the store.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rapport_model::{Kind, RecordId, SpaceId};
use rapport_node::ops::{Caller, Ops, Request};
use rapport_node::repo::Input;
use rapport_node::reports::{ReportName, ReportQuery};
use rapport_node::{OpenMode, Repo};
use serde_json::json;

use crate::bench::{SplitMix, ms, percentile, print_figures, proc_status_kib};

const BATCH: usize = 1_000;
const RUNS: usize = 5;
const STAGES: &[&str] = &[
    "lead",
    "qualified",
    "proposal",
    "negotiation",
    "won",
    "won",
    "lost",
];
const OWNERS: &[&str] = &["ann", "ben", "carla", "david", "eva"];

pub fn run(out: &mut String, scales: &[usize], json: bool) -> Result<()> {
    let mut all = Vec::new();
    for &percent in scales {
        let figures = measure(percent)?;
        if !json {
            print_figures(out, &format!("reports at {percent} %"), &figures, false)?;
        }
        all.push(figures);
    }
    if json {
        outln!(out, "{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(())
}

fn measure(percent: usize) -> Result<serde_json::Value> {
    let n = |full: usize| (full * percent / 100).max(1);
    let tmp = tempfile::Builder::new()
        .prefix("rapport-bench-reports-")
        .tempdir()
        .context("cannot create a directory for the benchmark store")?;
    let repo = std::sync::Arc::new(Repo::open(&tmp.path().join("data"), OpenMode::Create)?);
    let seeded = Instant::now();
    let records = fill(
        &repo,
        n(20_000),
        n(100_000),
        n(50_000),
        n(20_000),
        n(10_000),
    )?;
    let seed_s = seeded.elapsed().as_secs_f64();

    let mut load = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let count = repo.all(None).filter(|v| v.is_ok()).count();
        load.push(t.elapsed());
        std::hint::black_box(count);
    }
    let ops = Ops::local(repo.clone());
    let mut figures = serde_json::Map::new();
    figures.insert("records".into(), json!(records));
    figures.insert("seed_s".into(), json!((seed_s * 10.0).round() / 10.0));
    figures.insert(
        "read_all_records_p50_ms".into(),
        json!(ms(percentile(&mut load, 50))),
    );
    let mut slowest = Duration::ZERO;
    for name in ReportName::ALL {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            let reply = ops
                .execute(&Caller::user(), Request::Report(ReportQuery::new(name)))
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            times.push(t.elapsed());
            if let rapport_node::ops::Reply::Report(r) = reply {
                rows = r.sections.iter().map(|s| s.rows.len()).sum::<usize>();
            }
        }
        let p50 = percentile(&mut times, 50);
        slowest = slowest.max(percentile(&mut times, 100));
        figures.insert(format!("{name}_p50_ms"), json!(ms(p50)));
        figures.insert(format!("{name}_rows"), json!(rows));
    }
    figures.insert("slowest_report_ms".into(), json!(ms(slowest)));
    // The calendar's week view: one owner's week, and everyone's.
    for (label, everyone) in [
        ("agenda_week_owner_p50_ms", false),
        ("agenda_week_everyone_p50_ms", true),
    ] {
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let query = rapport_node::calendar::AgendaQuery {
                from: Some("2026-03-02".into()),
                days: Some(7),
                owner: (!everyone).then(|| OWNERS[0].to_string()),
                everyone,
                zone: Some("Europe/Berlin".into()),
                space: None,
            };
            let t = Instant::now();
            ops.execute(&Caller::user(), Request::Agenda(query))
                .map_err(|e| anyhow::anyhow!("agenda: {e}"))?;
            times.push(t.elapsed());
        }
        figures.insert(label.into(), json!(ms(percentile(&mut times, 50))));
    }
    figures.insert(
        "peak_rss_mib".into(),
        json!(proc_status_kib(std::process::id(), "VmHWM:").map(|k| k / 1024)),
    );
    Ok(serde_json::Value::Object(figures))
}

/// Stores the records; returns how many.
fn fill(
    repo: &Repo,
    companies: usize,
    people: usize,
    deals: usize,
    activities: usize,
    tickets: usize,
) -> Result<usize> {
    let products = 200;
    let total = companies + people + deals + activities + tickets + 20 + products;
    let bar = indicatif::ProgressBar::new(total as u64);
    let mut rng = SplitMix(0x4e907);
    let day = |rng: &mut SplitMix| {
        let d = jiff::civil::date(2025, 1, 1) + jiff::Span::new().days(rng.below(700) as i64);
        d.to_string()
    };
    let put = |kind: Kind, rows: Vec<Vec<Input>>| -> Result<Vec<RecordId>> {
        let mut ids = Vec::with_capacity(rows.len());
        for batch in rows.chunks(BATCH) {
            let made = repo.create_many(kind, SpaceId::Private, batch)?;
            ids.extend(made.iter().map(|v| v.id));
            bar.inc(batch.len() as u64);
        }
        Ok(ids)
    };
    let rows = (0..companies)
        .map(|c| {
            vec![
                ("name".into(), format!("Company {c}")),
                ("owner".into(), OWNERS[c % OWNERS.len()].into()),
            ]
        })
        .collect();
    let company_ids = put(Kind::Company, rows)?;
    let rows = (0..people)
        .map(|p| {
            vec![
                ("name".into(), format!("Person {p}")),
                (
                    "company".into(),
                    company_ids[rng.below(company_ids.len())].to_string(),
                ),
            ]
        })
        .collect();
    let person_ids = put(Kind::Person, rows)?;
    let rows: Vec<Vec<Input>> = (0..deals)
        .map(|d| {
            vec![
                // Its amount stays the one given: lines do not change it.
                ("manual_amount".into(), "yes".into()),
                ("title".into(), format!("Deal {d}")),
                (
                    "company".into(),
                    company_ids[rng.below(company_ids.len())].to_string(),
                ),
                ("stage".into(), STAGES[rng.below(STAGES.len())].into()),
                (
                    "amount".into(),
                    format!("{}.{:02}", 500 + rng.below(50_000), rng.below(100)),
                ),
                (
                    "currency".into(),
                    if rng.below(5) == 0 { "USD" } else { "EUR" }.into(),
                ),
                ("close".into(), day(&mut rng)),
                ("owner".into(), OWNERS[rng.below(OWNERS.len())].into()),
            ]
        })
        .collect();
    let deal_ids = put(Kind::Deal, rows.clone())?;
    let catalogue = (0..products)
        .map(|p| {
            vec![
                ("name".into(), format!("Product {p}")),
                ("price".into(), format!("{}", 10 + rng.below(2_000))),
                ("currency".into(), "EUR".into()),
                ("category".into(), format!("Line {}", p % 12)),
            ]
        })
        .collect();
    let product_ids = put(Kind::Product, catalogue)?;
    let mut lines: Vec<Vec<Input>> = Vec::new();
    for (id, row) in deal_ids.iter().zip(&rows) {
        let field = |name: &str| {
            row.iter()
                .find(|(f, _)| f == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        if field("stage") != "won" {
            continue;
        }
        // Products come in families: most baskets mix one family's.
        let family = rng.below(product_ids.len() / 10);
        for _ in 0..1 + rng.below(3) {
            let product = family * 10 + rng.below(10);
            lines.push(vec![
                ("deal".into(), id.to_string()),
                ("product".into(), product_ids[product].to_string()),
                ("quantity".into(), (1 + rng.below(20)).to_string()),
                ("price".into(), format!("{}", 10 + rng.below(2_000))),
                ("currency".into(), field("currency")),
            ]);
        }
    }
    bar.inc_length(lines.len() as u64);
    let total = total + lines.len();
    put(Kind::LineItem, lines)?;
    let rows = (0..tickets)
        .map(|t| {
            vec![
                ("title".into(), format!("Ticket {t}")),
                (
                    "company".into(),
                    company_ids[rng.below(company_ids.len())].to_string(),
                ),
                (
                    "status".into(),
                    ["new", "open", "pending", "resolved", "closed"][rng.below(5)].into(),
                ),
                (
                    "priority".into(),
                    ["low", "normal", "high", "urgent"][rng.below(4)].into(),
                ),
            ]
        })
        .collect();
    put(Kind::Ticket, rows)?;
    let rows = (0..activities)
        .map(|a| {
            vec![
                (
                    "type".into(),
                    ["call", "email", "meeting", "note"][rng.below(4)].into(),
                ),
                ("subject".into(), format!("Activity {a}")),
                ("when".into(), format!("{}T10:00:00Z", day(&mut rng))),
                ("owner".into(), OWNERS[rng.below(OWNERS.len())].into()),
                (
                    "about".into(),
                    // Half about a company, half about one of its people.
                    if rng.below(2) == 0 {
                        company_ids[rng.below(company_ids.len())].to_string()
                    } else {
                        person_ids[rng.below(person_ids.len())].to_string()
                    },
                ),
            ]
        })
        .enumerate()
        .map(|(a, mut row): (usize, Vec<Input>)| {
            // One meeting in fifty repeats every week (the agenda
            // expands them).
            if a % 50 == 0 {
                row[0].1 = "meeting".into();
                row.push(("repeat".into(), "weekly".into()));
            }
            row
        })
        .collect();
    put(Kind::Activity, rows)?;
    let rows = (0..20)
        .map(|c| {
            let members: Vec<String> = (0..500.min(person_ids.len()))
                .map(|_| person_ids[rng.below(person_ids.len())].to_string())
                .collect();
            vec![
                ("name".into(), format!("Campaign {c}")),
                ("start".into(), day(&mut rng)),
                ("members".into(), members.join(",")),
            ]
        })
        .collect();
    put(Kind::Campaign, rows)?;
    bar.finish_and_clear();
    Ok(total)
}
