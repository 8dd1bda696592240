//! `rapport bench search`: the web UI's instant search at N records.
//!
//! Creates a throw-away store of companies, people (emails, phones), deals
//! and tickets, builds the search index the UI keeps, and measures what a
//! user typing in the search box waits for: the index's answer alone, and
//! the whole round trip through the UI's `GET /search?format=json` on
//! loopback (session cookie, JSON, HTTP). Queries are what people type:
//! one to six letters of a name, whole names, the start of an email, phone
//! digits, a domain.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rapport_model::{Kind, RecordId, SpaceId};
use rapport_node::repo::Input;
use rapport_node::search::SearchIndex;
use rapport_node::{OpenMode, Repo};
use serde_json::json;

use crate::bench::{SplitMix, ms, percentile, print_figures, proc_status_kib};

const BATCH: usize = 1_000;
const QUERIES: usize = 2_000;
/// As many results as the search box shows.
const BOX_RESULTS: usize = 8;

const FIRST: &[&str] = &[
    "Ann", "Ben", "Carla", "David", "Eva", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Karin",
    "Luis", "Maria", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera",
    "Wen", "Xavier", "Yara", "Zoe", "Amir", "Bea", "Chen", "Dora",
];
const LAST: &[&str] = &[
    "Baker",
    "Schmidt",
    "Rossi",
    "Dubois",
    "Novak",
    "Garcia",
    "Kowalski",
    "Jensen",
    "Silva",
    "Müller",
    "Okafor",
    "Tanaka",
    "Larsen",
    "Moreau",
    "Costa",
    "Weber",
    "Nowak",
    "Ivanov",
    "Fischer",
    "Horvat",
    "Berg",
    "Santos",
    "Keller",
    "Lindqvist",
    "Popescu",
    "Varga",
    "Haas",
    "Meyer",
    "Romano",
    "Olsen",
];
const STEMS: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Cyberdyne",
    "Tyrell",
    "Wonka",
    "Gringotts",
    "Oscorp",
    "Aperture",
    "Massive",
    "Pied",
    "Dunder",
    "Monarch",
    "Nakatomi",
];

pub fn run(out: &mut String, sizes: &[usize], json: bool) -> Result<()> {
    let mut all = Vec::new();
    for &records in sizes {
        let figures = measure(records)?;
        if !json {
            print_figures(
                out,
                &format!("search at {records} records"),
                &figures,
                false,
            )?;
        }
        all.push(figures);
    }
    if json {
        outln!(out, "{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(())
}

fn measure(records: usize) -> Result<serde_json::Value> {
    let tmp = tempfile::Builder::new()
        .prefix("rapport-bench-search-")
        .tempdir()
        .context("cannot create a directory for the benchmark store")?;
    let repo = std::sync::Arc::new(Repo::open(&tmp.path().join("data"), OpenMode::Create)?);
    let created = Instant::now();
    let samples = fill(&repo, records)?;
    let create_secs = created.elapsed().as_secs_f64();

    let rss_before = proc_status_kib(std::process::id(), "VmRSS:");
    let built = Instant::now();
    let mut index = SearchIndex::new();
    for view in repo.all(None) {
        index.put(&view?);
    }
    let build_secs = built.elapsed().as_secs_f64();
    let rss_after = proc_status_kib(std::process::id(), "VmRSS:");

    let mut rng = SplitMix(0x5ea2c4);
    let queries: Vec<String> = (0..QUERIES).map(|_| query(&mut rng, &samples)).collect();
    let mut direct = Vec::with_capacity(QUERIES);
    let mut matched = 0usize;
    for q in &queries {
        let t = Instant::now();
        let found = index.query(q, BOX_RESULTS);
        direct.push(t.elapsed());
        matched += found.total;
    }
    drop(index);

    let http = crate::bench::runtime()?.block_on(over_http(repo.clone(), &queries))?;
    let (mut direct, mut http) = (direct, http);
    Ok(json!({
        "records": records,
        "create_records_per_s": (records as f64 / create_secs).round(),
        "index_build_s": (build_secs * 100.0).round() / 100.0,
        "index_rss_mib": match (rss_before, rss_after) {
            (Some(b), Some(a)) => json!(((a.saturating_sub(b)) as f64 / 1024.0 * 10.0).round() / 10.0),
            _ => json!(null),
        },
        "queries": QUERIES,
        "mean_matches_per_query": matched / QUERIES,
        "index_query_p50_ms": ms(percentile(&mut direct, 50)),
        "index_query_p95_ms": ms(percentile(&mut direct, 95)),
        "index_query_max_ms": ms(percentile(&mut direct, 100)),
        "http_search_p50_ms": ms(percentile(&mut http, 50)),
        "http_search_p95_ms": ms(percentile(&mut http, 95)),
        "http_search_max_ms": ms(percentile(&mut http, 100)),
    }))
}

/// What queries are made of: names, emails, phones and domains that exist.
struct Samples {
    people: Vec<(String, String, String)>,
    domains: Vec<String>,
}

/// Creates `records` records: a tenth companies, six tenths people, two
/// tenths deals, a tenth tickets.
fn fill(repo: &Repo, records: usize) -> Result<Samples> {
    let companies = (records / 10).max(1);
    let bar = indicatif::ProgressBar::new(records as u64);
    let mut rng = SplitMix(0xc0ffee);
    let mut domains = Vec::with_capacity(companies);
    let mut company_ids: Vec<RecordId> = Vec::with_capacity(companies);
    let mut rows: Vec<Vec<Input>> = Vec::new();
    for c in 0..companies {
        let stem = STEMS[c % STEMS.len()];
        let domain = format!("{}{c}.example", stem.to_lowercase());
        rows.push(vec![
            ("name".into(), format!("{stem} {c}")),
            ("domain".into(), domain.clone()),
        ]);
        domains.push(domain);
        if rows.len() == BATCH || c + 1 == companies {
            let made = repo.create_many(Kind::Company, SpaceId::Private, &rows)?;
            company_ids.extend(made.iter().map(|v| v.id));
            bar.inc(rows.len() as u64);
            rows.clear();
        }
    }
    let mut people = Vec::new();
    let rest = records.saturating_sub(companies);
    let (n_people, n_deals) = (rest * 6 / 9, rest * 2 / 9);
    let n_tickets = rest - n_people - n_deals;
    for (kind, n) in [
        (Kind::Person, n_people),
        (Kind::Deal, n_deals),
        (Kind::Ticket, n_tickets),
    ] {
        for i in 0..n {
            let company = company_ids[rng.below(company_ids.len())].to_string();
            let row: Vec<Input> = match kind {
                Kind::Person => {
                    let first = FIRST[rng.below(FIRST.len())];
                    let last = LAST[rng.below(LAST.len())];
                    let email = format!(
                        "{}.{}{i}@{}",
                        first.to_lowercase(),
                        last.to_lowercase(),
                        domains[rng.below(domains.len())]
                    );
                    let phone = format!("+49 30 {:07}", rng.below(10_000_000));
                    people.push((format!("{first} {last}"), email.clone(), phone.clone()));
                    vec![
                        ("name".into(), format!("{first} {last}")),
                        ("emails".into(), email),
                        ("phones".into(), phone),
                        ("company".into(), company),
                    ]
                }
                Kind::Deal => vec![
                    (
                        "title".into(),
                        format!("{} renewal {i}", STEMS[rng.below(STEMS.len())]),
                    ),
                    ("company".into(), company),
                    ("amount".into(), format!("{}", 1_000 + rng.below(90_000))),
                    ("currency".into(), "EUR".into()),
                ],
                _ => vec![
                    (
                        "title".into(),
                        format!("Login fails for {} {i}", FIRST[rng.below(FIRST.len())]),
                    ),
                    ("company".into(), company),
                ],
            };
            rows.push(row);
            if rows.len() == BATCH || i + 1 == n {
                repo.create_many(kind, SpaceId::Private, &rows)?;
                bar.inc(rows.len() as u64);
                rows.clear();
            }
        }
    }
    bar.finish_and_clear();
    Ok(Samples { people, domains })
}

/// One query as a user types it.
fn query(rng: &mut SplitMix, s: &Samples) -> String {
    let prefix = |w: &str, n: usize| w.chars().take(n).collect::<String>();
    let person = s
        .people
        .get(rng.below(s.people.len()))
        .cloned()
        .unwrap_or_default();
    match rng.below(100) {
        // A name being typed: 1 to 6 letters of a first or last name.
        0..=44 => {
            let word = if rng.below(2) == 0 {
                person.0.split(' ').next().unwrap_or("").to_string()
            } else {
                person.0.split(' ').nth(1).unwrap_or("").to_string()
            };
            prefix(&word, 1 + rng.below(6))
        }
        45..=59 => person.0,
        60..=74 => prefix(&person.1, 3 + rng.below(10)),
        75..=84 => {
            let digits: String = person.2.chars().filter(char::is_ascii_digit).collect();
            prefix(&digits, 6 + rng.below(5))
        }
        85..=94 => s
            .domains
            .get(rng.below(s.domains.len()))
            .cloned()
            .unwrap_or_default(),
        // Something nobody is called.
        _ => format!("zz{}", rng.below(1000)),
    }
}

/// The same queries through a real node's web UI on loopback.
async fn over_http(repo: std::sync::Arc<Repo>, queries: &[String]) -> Result<Vec<Duration>> {
    let node = rapport_node::net::Node::start(repo, crate::bench::loopback(None, false)).await?;
    let ui = rapport_web::Ui::start(
        rapport_node::ops::Ops::running(node.clone(), None),
        Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        rapport_node::api::new_token()?,
    )
    .await?;
    let addr = ui.addr;
    let login = ui.login_link();
    let queries = queries.to_vec();
    let timings = tokio::task::spawn_blocking(move || -> Result<Vec<Duration>> {
        let path = login
            .trim_start_matches(&format!("http://{addr}"))
            .to_string();
        let (head, _) = get(addr, &path, "")?;
        let cookie = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .starts_with("set-cookie:")
                    .then(|| l[11..].trim().to_string())
            })
            .and_then(|c| c.split(';').next().map(str::to_string))
            .context("the UI set no session cookie")?;
        // The index reads the store in the background after start-up.
        let started = Instant::now();
        loop {
            let (_, body) = get(addr, "/search?format=json&q=a", &cookie)?;
            if body.contains("\"complete\":true") {
                break;
            }
            if started.elapsed() > Duration::from_secs(300) {
                bail!("the search index was not ready after 300 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut out = Vec::with_capacity(queries.len());
        for q in &queries {
            let path = format!("/search?format=json&q={}", rapport_web::url_encode(q));
            let t = Instant::now();
            let (head, _) = get(addr, &path, &cookie)?;
            out.push(t.elapsed());
            if !head.starts_with("HTTP/1.1 200") {
                bail!(
                    "search for {q:?} answered {}",
                    head.lines().next().unwrap_or("")
                );
            }
        }
        Ok(out)
    })
    .await
    .context("the search client failed")??;
    ui.stop();
    node.shutdown().await;
    Ok(timings)
}

/// One GET on a fresh connection, as a browser's first request would be.
fn get(addr: std::net::SocketAddr, path: &str, cookie: &str) -> Result<(String, String)> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    let cookie = if cookie.is_empty() {
        String::new()
    } else {
        format!("Cookie: {cookie}\r\n")
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((head.to_string(), body.to_string()))
}
