//! `rapport bench relay`: one relay (a real `rapport relay run` process)
//! serves N nodes on loopback (real iroh endpoints and stores, in this
//! process). The nodes come and go in groups that are never online
//! together; each writes its share of changes while online. Then all come
//! back, and the benchmark measures how long until every node holds every
//! change, with the relay's peak RSS, CPU time and bytes per change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rapport_model::{Kind, Role, SpaceId};
use rapport_node::net::{NetConfig, Node};
use rapport_node::{OpenMode, Repo};
use serde_json::json;

use crate::bench::{Daemon, wait_until};

/// Records each node creates; its other changes are edits of them.
const RECORDS_PER_NODE: usize = 25;
/// Groups of nodes that take turns being online.
const GROUPS: usize = 4;

pub fn run(out: &mut String, nodes: usize, changes: usize, json: bool) -> Result<()> {
    if nodes < 2 || changes < RECORDS_PER_NODE {
        bail!("use at least 2 nodes and {RECORDS_PER_NODE} changes per node");
    }
    let figures = crate::bench::runtime()?.block_on(measure(nodes, changes))?;
    crate::bench::print_figures(
        out,
        &format!(
            "rapport bench relay: {nodes} nodes x {changes} changes, in {GROUPS} groups never online together"
        ),
        &figures,
        json,
    )
}

/// Live nodes that catch up every second, as users' nodes would.
fn config() -> NetConfig {
    crate::bench::loopback(Some(Duration::from_secs(1)), true)
}

/// The relay process; killed when dropped.
fn start_relay(dir: &std::path::Path) -> Result<Daemon> {
    Daemon::start(
        dir,
        &[
            "relay",
            "run",
            "--bind",
            "127.0.0.1:0",
            "--no-mdns",
            "--relay",
            "none",
            "--discovery",
            "none",
            "--sync-interval",
            "1",
            "--rate",
            "10000000",
        ],
    )
    .context("cannot start the relay")
}

async fn measure(n: usize, changes: usize) -> Result<serde_json::Value> {
    let tmp = tempfile::Builder::new()
        .prefix("rapport-bench-relay-")
        .tempdir()?;
    let relay = start_relay(&tmp.path().join("relay"))?;
    let repos: Vec<Arc<Repo>> = (0..n)
        .map(|i| Repo::open(&tmp.path().join(format!("node{i}")), OpenMode::Create).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let space = repos[0].create_space("bench")?;
    let sid = SpaceId::Shared(space.id);

    // Everyone joins through node 0 (the admin), then goes offline.
    let admin = Node::start(repos[0].clone(), config()).await?;
    let ticket = admin.invite(space.id, 3600, Role::Relay, None)?;
    relay.cli(&["space", "join", &ticket.encode()])?;
    let mut online: Vec<Option<Node>> = vec![Some(admin)];
    for repo in &repos[1..] {
        let node = Node::start(repo.clone(), config()).await?;
        let admin = online[0].as_ref().context("admin")?;
        node.join(&admin.invite(space.id, 3600, Role::Writer, None)?)
            .await?;
        node.shutdown().await;
        online.push(None);
    }
    if let Some(admin) = online[0].take() {
        admin.shutdown().await;
    }

    // Groups take turns: online, write, wait for the relay to hold it all, leave.
    let t_total = Instant::now();
    let bar = indicatif::ProgressBar::new((n * changes) as u64);
    let mut written = 0usize;
    for g in 0..GROUPS {
        let members: Vec<usize> = (0..n).filter(|i| i % GROUPS == g).collect();
        for &i in &members {
            online[i] = Some(Node::start(repos[i].clone(), config()).await?);
        }
        for &i in &members {
            let repo = repos[i].clone();
            let ids = tokio::task::spawn_blocking(move || -> Result<Vec<_>> {
                let mut ids = Vec::new();
                for r in 0..RECORDS_PER_NODE {
                    let v = repo.create(
                        Kind::Company,
                        sid,
                        &[("name".into(), format!("Node {i} company {r}"))],
                    )?;
                    ids.push(v.id.to_string());
                }
                for c in 0..changes - RECORDS_PER_NODE {
                    let id = &ids[c % ids.len()];
                    repo.edit(id, &[("industry".into(), format!("Industry {c}"))], &[])?;
                }
                Ok(ids)
            })
            .await??;
            bar.inc(changes as u64);
            let _ = ids;
        }
        written += members.len() * changes;
        let want = written + n + 1;
        wait_until(Duration::from_secs(600), || {
            relay
                .cli(&["relay", "status"])
                .ok()
                .and_then(|s| s["changes_stored"].as_u64())
                .is_some_and(|c| c as usize >= want)
        })
        .await
        .context("the relay did not receive a group's changes")?;
        for &i in &members {
            if let Some(node) = online[i].take() {
                node.shutdown().await;
            }
        }
    }
    bar.finish_and_clear();
    let writing = t_total.elapsed();

    // All come back; how long until every node holds every change?
    let t = Instant::now();
    for (i, repo) in repos.iter().enumerate() {
        online[i] = Some(Node::start(repo.clone(), config()).await?);
    }
    let total_changes = n * changes;
    let reference = repos[0].clone();
    wait_until(Duration::from_secs(1800), || {
        let Ok(items) = reference.space_heads(sid) else {
            return false;
        };
        items.len() == n * RECORDS_PER_NODE + 1
            && repos
                .iter()
                .all(|r| r.space_heads(sid).is_ok_and(|mine| mine == items))
    })
    .await
    .context("the nodes did not converge")?;
    let converge = t.elapsed();
    let status = relay.cli(&["relay", "status"])?;
    let (rss, cpu) = relay.usage();
    for node in online.iter_mut().filter_map(Option::take) {
        node.shutdown().await;
    }
    let relayed =
        status["bytes_sent"].as_u64().unwrap_or(0) + status["bytes_received"].as_u64().unwrap_or(0);
    Ok(json!({
        "nodes": n,
        "changes_per_node": changes,
        "changes_total": total_changes,
        "groups_never_online_together": GROUPS,
        "writing_phase_s": (writing.as_secs_f64() * 100.0).round() / 100.0,
        "converge_after_all_return_s": (converge.as_secs_f64() * 100.0).round() / 100.0,
        "relay_changes_stored": status["changes_stored"],
        "relay_bytes_in_out": relayed,
        "relay_bytes_per_change": relayed / total_changes as u64,
        "relay_peak_rss_mib": rss.map(|k| k / 1024),
        "relay_cpu_s": cpu,
        "relay_disk_bytes": status["disk_bytes"],
    }))
}
