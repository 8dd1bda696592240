//! `rapport bench sync`: two nodes on loopback (real iroh endpoints, real
//! stores) share a space of N records. Measures the initial sync, the
//! floor of verifying that many signatures, a catch-up after a few records
//! changed on one side, and a session between identical spaces; optionally
//! the same catch-up done naively, one Automerge sync session per record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rapport_model::automerge::AutoCommit;
use rapport_model::automerge::sync::{State, SyncDoc};
use rapport_model::{Kind, RecordId, SpaceId};
use rapport_node::net::{NetConfig, Node};
use rapport_node::repo::Input;
use rapport_node::{OpenMode, Repo};
use serde_json::json;

use crate::bench::ms;

const BATCH: usize = 1_000;

pub fn run(
    out: &mut String,
    records: usize,
    changed: usize,
    naive: bool,
    json: bool,
) -> Result<()> {
    let figures =
        crate::bench::runtime()?.block_on(measure(records, changed.min(records), naive))?;
    crate::bench::print_figures(
        out,
        &format!("rapport bench sync: {records} records, {changed} changed for the catch-up"),
        &figures,
        json,
    )
}

/// Only the sessions this benchmark asks for: no gossip, no periodic catch-up.
fn config() -> NetConfig {
    crate::bench::loopback(None, false)
}

fn traffic(node: &Node) -> Result<u64> {
    let s = node.status()?;
    Ok(s.bytes_sent + s.bytes_received)
}

async fn measure(records: usize, changed: usize, naive: bool) -> Result<serde_json::Value> {
    let tmp = tempfile::Builder::new()
        .prefix("rapport-bench-sync-")
        .tempdir()?;
    let repo_a = Arc::new(Repo::open(&tmp.path().join("a"), OpenMode::Create)?);
    let repo_b = Arc::new(Repo::open(&tmp.path().join("b"), OpenMode::Create)?);
    let space = repo_a.create_space("bench")?;
    let sid = SpaceId::Shared(space.id);

    let bar = indicatif::ProgressBar::new(records as u64);
    let mut ids = Vec::with_capacity(records);
    let batches = (0..records).step_by(BATCH).map(|start| {
        (start..(start + BATCH).min(records))
            .map(|i| {
                vec![
                    ("name".into(), format!("Person {i:07}")),
                    ("emails".into(), format!("p{i}@example.com")),
                ]
            })
            .collect::<Vec<Vec<Input>>>()
    });
    repo_a.create_batches(Kind::Person, sid, batches, |views| {
        bar.inc(views.len() as u64);
        ids.extend(views.iter().map(|v| v.id));
        Ok(())
    })?;
    bar.finish_and_clear();

    let node_a = Node::start(repo_a.clone(), config()).await?;
    let node_b = Node::start(repo_b.clone(), config()).await?;
    let ticket = node_a.invite(space.id, 3600, rapport_model::Role::Writer, None)?;

    // (a) Initial sync: B joins and fetches the whole space.
    let t = Instant::now();
    node_b.join(&ticket).await?;
    let initial = t.elapsed();
    let initial_bytes = traffic(&node_b)?;
    let on_b = repo_b.space_heads(sid)?.len();
    anyhow::ensure!(
        on_b == records + 1,
        "B has {on_b} documents, expected {}",
        records + 1
    );

    // The floor: parsing and verifying every signature B received, on
    // one core and on every core (the initial sync verifies on every
    // core; both floors are printed, and the ratio to each).
    let mut held = Vec::new();
    for (id, _) in repo_b.space_heads(sid)? {
        held.extend(repo_b.signed_changes(id)?);
    }
    let verified = held.len();
    let t = Instant::now();
    for signed in &held {
        rapport_trust::verify_change(signed).context("a stored change does not verify")?;
    }
    let verify_floor = t.elapsed();
    let t = Instant::now();
    let checks = rapport_node::parallel::map(held, |s| rapport_trust::verify_change(&s).is_ok());
    let verify_floor_all_cores = t.elapsed();
    anyhow::ensure!(
        checks.iter().all(|ok| *ok),
        "a stored change does not verify"
    );

    // (b) Catch-up after `changed` records changed on A while B was away.
    retitle(&repo_a, &ids[..changed], "Changed")?;
    let before = traffic(&node_b)?;
    let t = Instant::now();
    let stats = node_b.sync_with(node_a.id(), sid).await?;
    let catch_up = t.elapsed();
    let catch_up_bytes = traffic(&node_b)? - before;

    // Identical spaces.
    let before = traffic(&node_b)?;
    let t = Instant::now();
    node_b.sync_with(node_a.id(), sid).await?;
    let identical = t.elapsed();
    let identical_bytes = traffic(&node_b)? - before;

    // The same catch-up again, other records: the first one after an
    // initial sync also folds what that sync left in the item sets.
    let again = &ids[changed.min(ids.len())..(2 * changed).min(ids.len())];
    retitle(&repo_a, again, "Changed again")?;
    let t = Instant::now();
    node_b.sync_with(node_a.id(), sid).await?;
    let catch_up_again = t.elapsed();

    let mut figures = json!({
        "records": records,
        "initial_sync_s": secs(initial),
        "initial_sync_bytes": initial_bytes,
        "initial_sync_records_per_s": (records as f64 / initial.as_secs_f64()).round(),
        "verify_all_signatures_s": secs(verify_floor),
        "verify_all_signatures_all_cores_s": secs(verify_floor_all_cores),
        "signatures_verified": verified,
        "initial_sync_over_floor": ratio(initial, verify_floor),
        "initial_sync_over_all_cores_floor": ratio(initial, verify_floor_all_cores),
        "catch_up_changed_records": changed,
        "catch_up_ms": ms(catch_up),
        "catch_up_bytes": catch_up_bytes,
        "catch_up_rounds": stats.rounds,
        "catch_up_differing": stats.differing,
        "identical_ms": ms(identical),
        "catch_up_again_ms": ms(catch_up_again),
        "identical_bytes": identical_bytes,
    });

    if naive {
        // Make B stale again, then catch up one Automerge session per record.
        retitle(&repo_a, &ids[..changed], "Again")?;
        let t = Instant::now();
        let (mut messages, mut bytes) = (0usize, 0usize);
        for id in &ids {
            let mut a = repo_a.load_doc(*id)?;
            let mut b = repo_b.load_doc(*id)?;
            let (m, b_) = automerge_sync(&mut a, &mut b)?;
            messages += m;
            bytes += b_;
        }
        let naive_time = t.elapsed();
        figures["naive_catch_up_s"] = secs(naive_time).into();
        figures["naive_catch_up_messages"] = messages.into();
        figures["naive_catch_up_bytes"] = bytes.into();
    }
    node_a.shutdown().await;
    node_b.shutdown().await;
    Ok(figures)
}

/// Edits each of `ids` on `repo`: its title becomes `prefix` and its place.
fn retitle(repo: &Repo, ids: &[RecordId], prefix: &str) -> Result<()> {
    for (n, id) in ids.iter().enumerate() {
        repo.edit(
            &id.to_string(),
            &[("title".into(), format!("{prefix} {n}"))],
            &[],
        )?;
    }
    Ok(())
}

/// One Automerge sync session between two in-memory documents: messages
/// and bytes until both sides have nothing more to say.
fn automerge_sync(a: &mut AutoCommit, b: &mut AutoCommit) -> Result<(usize, usize)> {
    let (mut sa, mut sb) = (State::new(), State::new());
    let (mut messages, mut bytes) = (0, 0);
    for _ in 0..100 {
        let mut quiet = true;
        if let Some(m) = a.sync().generate_sync_message(&mut sa) {
            quiet = false;
            let encoded = m.encode();
            messages += 1;
            bytes += encoded.len();
            let m = rapport_model::automerge::sync::Message::decode(&encoded)?;
            b.sync().receive_sync_message(&mut sb, m)?;
        }
        if let Some(m) = b.sync().generate_sync_message(&mut sb) {
            quiet = false;
            let encoded = m.encode();
            messages += 1;
            bytes += encoded.len();
            let m = rapport_model::automerge::sync::Message::decode(&encoded)?;
            a.sync().receive_sync_message(&mut sa, m)?;
        }
        if quiet {
            break;
        }
    }
    Ok((messages, bytes))
}

fn ratio(a: Duration, b: Duration) -> f64 {
    (a.as_secs_f64() / b.as_secs_f64().max(1e-9) * 100.0).round() / 100.0
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}
