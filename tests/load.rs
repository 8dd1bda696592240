//! Load: one user's node (a real `rapport up` process) serves 20 peers
//! while its user writes, through `rapport bench serve`. What a user would
//! notice: every peer ends up with every change, and the node's memory
//! stays bounded. No timing is asserted; the figures are printed.

mod common;

use std::process::Command;
use std::time::Instant;

use serde_json::Value;

/// Generous: the debug build has measured about 70 MiB at this size.
const PEAK_RSS_LIMIT_MIB: u64 = 400;

#[test]
fn a_node_serving_20_peers_while_writing_converges_with_bounded_memory() {
    let started = Instant::now();
    let out = Command::new(common::rapport_bin())
        .args([
            "bench", "serve", "--peers", "20", "--writes", "300", "--json",
        ])
        .env_remove("RAPPORT_DATA_DIR")
        .output()
        .expect("run rapport bench serve");
    assert!(
        out.status.success(),
        "rapport bench serve failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bench serve printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    println!(
        "bench serve (debug) in {:.1} s: {figures:#}",
        started.elapsed().as_secs_f64()
    );

    // Every peer holds every change, and the served node holds what they hold.
    assert_eq!(figures["converged"], Value::Bool(true), "{figures:#}");
    assert_eq!(
        figures["served_matches_peers"],
        Value::Bool(true),
        "{figures:#}"
    );
    let total = 300 + 20 * 30;
    assert_eq!(figures["changes_total"], total, "{figures:#}");
    assert!(
        figures["served_changes_stored"]
            .as_u64()
            .is_some_and(|c| c >= total),
        "{figures:#}"
    );

    // The served node's memory stayed bounded.
    let peak = figures["served_peak_rss_mib"]
        .as_u64()
        .expect("served_peak_rss_mib (is /proc mounted?)");
    println!("served node peak RSS: {peak} MiB (limit {PEAK_RSS_LIMIT_MIB} MiB)");
    assert!(
        peak < PEAK_RSS_LIMIT_MIB,
        "the served node's peak RSS was {peak} MiB"
    );
}
