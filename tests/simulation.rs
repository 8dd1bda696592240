//! Deterministic simulation: many seeded runs of six real nodes under
//! message loss, duplication, reordering, partitions, crashes and a hostile
//! member (see `sim/mod.rs` for the world and `sim/check.rs` for what must
//! hold). A failure prints its seed; `RAPPORT_SIM_SEED=S` replays exactly
//! that run, `RAPPORT_SIM_SEEDS=N` runs N seeds (`RAPPORT_LONG=1`: 5000),
//! and `RAPPORT_SIM_FIRST=K` starts from seed K. Seeds that once failed
//! run on every commit (`seeds_that_once_failed_pass`).

mod common;
mod sim;

use std::time::Instant;

use sim::{Faults, Plan, Stats, World};

const DEFAULT_SEEDS: u64 = 200;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// One seeded run, with every check; the error names the seed.
fn run_seed(seed: u64) -> Result<Stats, String> {
    let fail = |e: String| {
        format!(
            "seed {seed}: {e}\n  replay: RAPPORT_SIM_SEED={seed} cargo test -p rapport --test simulation -- --nocapture"
        )
    };
    let mut world = World::new(seed, Faults::default()).map_err(fail)?;
    world.run(Plan::default()).map_err(fail)?;
    world.check().map_err(fail)?;
    world.redelivery_changes_nothing().map_err(fail)?;
    Ok(world.stats)
}

#[test]
fn seeded_runs_converge_lose_nothing_and_apply_nothing_unauthorized() {
    let seeds: Vec<u64> = match env_u64("RAPPORT_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let first = env_u64("RAPPORT_SIM_FIRST").unwrap_or(0);
            let n = common::rounds("RAPPORT_SIM_SEEDS", DEFAULT_SEEDS, 5000);
            (first..first + n).collect()
        }
    };
    let started = Instant::now();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let chunks: Vec<Vec<u64>> = (0..threads)
        .map(|t| seeds.iter().copied().skip(t).step_by(threads).collect())
        .collect();
    let results: Vec<Result<Stats, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                s.spawn(move || {
                    let mut total = Stats::default();
                    for &seed in chunk {
                        total.add(&run_seed(seed)?);
                    }
                    Ok(total)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a simulation thread panicked".into()))
            })
            .collect()
    });
    let mut total = Stats::default();
    for r in results {
        match r {
            Ok(s) => total.add(&s),
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!(
        "simulation: {} seeds in {:.1} s: {} local writes, {} sessions ({} refused, {} broken by duplicates, \
         {} coalesced follow-ups, {} announcements heard during a session), \
         {} messages ({} KB), {} gossip ({} dropped), {} duplicated, {} connections cut, {} crashes \
         ({} with the store rebuilt from the journal), {} partitions, {} hostile injections ({} edits smuggled under \
         another space, {} changes in floods that wait forever, {} made-up catch-up messages refused), {} large notes \
         ({} histories split across messages), {} schema statements by admins, {} moves ({} addresses learned, {} dials to a left address); \
         slowest convergence {} ms after healing",
        seeds.len(),
        started.elapsed().as_secs_f64(),
        total.local_writes,
        total.sessions,
        total.sessions_refused,
        total.sessions_broken,
        total.follow_ups,
        total.coalesced,
        total.messages,
        total.bytes / 1000,
        total.gossip,
        total.gossip_dropped,
        total.duplicated,
        total.cuts,
        total.crashes,
        total.rebuilds,
        total.partitions,
        total.hostile,
        total.smuggled,
        total.flooded,
        total.bad_requests,
        total.large_notes,
        total.split_histories,
        total.schema_changes,
        total.moves,
        total.addresses_learned,
        total.stale_dials,
        total.converge_ms,
    );
}

/// The promise behind "replay a seed": the same seed gives the same run,
/// down to every change hash and every scheduling decision.
#[test]
fn a_seed_replays_exactly() {
    let run = || {
        let mut world = World::new(7, Faults::default()).expect("world");
        world.run(Plan::default()).expect("run");
        (format!("{:?}", world.stats), world.items(0).expect("items"))
    };
    let (stats, items) = run();
    assert!(items.len() > 3, "the run wrote nothing");
    assert_eq!(run(), (stats, items), "seed 7 ran differently twice");
}

/// Seeds that once failed, run on every commit whatever the default range
/// covers. Each names what it found.
#[test]
fn seeds_that_once_failed_pass() {
    // 2571, 3450: a change refused or expired while waiting for its
    // dependencies stayed queued inside the stored Automerge document; it
    // came out unjudged when they arrived, so the node refused every later
    // change of that document and never caught up (fixed by
    // `rapport_model::stored`).
    for seed in [2571, 3450] {
        if let Err(e) = run_seed(seed) {
            panic!("{e}");
        }
    }
}
