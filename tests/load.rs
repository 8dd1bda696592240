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

    // Every peer holds every record and every change, read from the stores
    // after the run: the served node's own writes (one company per ten
    // writes, edits for the rest), each peer's share, and the space's
    // membership changes.
    let records = 300 / 10 + 20 * (30 / 10);
    let count = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("{figures:#}"));
    assert_eq!(count(&figures["served_records"]), records, "{figures:#}");
    let served_changes = count(&figures["served_changes_stored"]);
    assert!(served_changes >= 300 + 20 * 30, "{figures:#}");
    let peer_records = figures["peer_records"].as_array().expect("peer_records");
    let peer_changes = figures["peer_changes_stored"]
        .as_array()
        .expect("peer_changes_stored");
    assert_eq!((peer_records.len(), peer_changes.len()), (20, 20));
    for (held, changes) in peer_records.iter().zip(peer_changes) {
        assert_eq!(count(held), records, "a peer misses records: {figures:#}");
        assert_eq!(
            count(changes),
            served_changes,
            "a peer misses changes: {figures:#}"
        );
    }
    assert_eq!(
        figures["peers_matching_served"], 20,
        "a peer's documents differ from the served node's: {figures:#}"
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
