//! A write the CLI reports done survives SIGKILL at any moment, and the
//! store always opens again.
//!
//! Each cycle starts one `rapport` write (a new company, or an edit of an
//! earlier one), kills it with SIGKILL after a random delay drawn around how
//! long a write takes (adapting to the machine's load), and then checks, with a fresh process, that the store
//! opens and holds every write that printed its result before dying.
//! `RAPPORT_TEST_SEED` replays a run; `RAPPORT_KILL_CYCLES` runs longer.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Node, Rng, seed};
use serde_json::Value;

const DEFAULT_CYCLES: u64 = 150;

#[test]
fn acknowledged_writes_survive_sigkill() {
    let seed = seed(0x5eed_cafe);
    let cycles = common::rounds("RAPPORT_KILL_CYCLES", DEFAULT_CYCLES, 600);
    eprintln!("durability: seed {seed}, {cycles} cycles (replay with RAPPORT_TEST_SEED={seed})");
    let mut rng = Rng(seed);
    let n = Node::new();
    n.ok(&["init", "--name", "Killer"]);

    // How long an uninterrupted write takes here, to aim the kills.
    let t = Instant::now();
    for i in 0..3 {
        n.ok(&["company", "add", &format!("warmup {i}")]);
    }
    let write_time = t.elapsed() / 3;
    // The kill delay is drawn from [0, window); the window adapts so that
    // about half the kills land mid-write whatever the machine's load.
    let mut window_us = (write_time.as_micros() as u64 * 3 / 2).max(1_000);

    // Acknowledged state: company name -> id, and id -> the industry values
    // that may be current (the last acknowledged one, plus any attempted
    // after it, which may have become durable before the kill).
    let mut companies: HashMap<String, String> = HashMap::new();
    let mut industry: HashMap<String, Vec<String>> = HashMap::new();
    let (mut acked, mut killed) = (0u64, 0u64);

    for cycle in 0..cycles {
        let edit_target = if !companies.is_empty() && rng.below(3) == 0 {
            let ids: Vec<&String> = companies.values().collect();
            Some(ids[rng.below(ids.len() as u64) as usize].clone())
        } else {
            None
        };
        let mut cmd = n.cmd();
        cmd.arg("--json");
        let value = format!("industry {cycle}");
        match &edit_target {
            Some(id) => {
                cmd.args(["edit", id, "--set", &format!("industry={value}")]);
                // Until an edit is acknowledged, the field may still be unset.
                industry
                    .entry(id.clone())
                    .or_insert_with(|| vec![String::new()])
                    .push(value.clone());
            }
            None => {
                cmd.args(["company", "add", &format!("company {cycle}")]);
            }
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rapport");
        std::thread::sleep(Duration::from_micros(rng.below(window_us)));
        let was_running = child.try_wait().expect("try_wait").is_none();
        let _ = child.kill();
        let status = child.wait().expect("wait");
        let mut out = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if was_running {
            killed += 1;
            window_us = window_us * 11 / 10;
        } else {
            window_us = (window_us * 8 / 10).max(500);
        }
        // Acknowledged means: the command finished and printed its result.
        if let (true, Ok(v)) = (status.success(), serde_json::from_str::<Value>(&out)) {
            acked += 1;
            let id = v["id"].as_str().expect("id").to_string();
            match &edit_target {
                Some(target) => {
                    assert_eq!(&id, target);
                    industry.insert(id, vec![value]);
                }
                None => {
                    companies.insert(format!("company {cycle}"), id);
                }
            }
        }

        // The store opens, and every acknowledged write is there.
        let listed = n.json(&["list", "company"]);
        let by_id: HashMap<&str, &Value> = listed
            .as_array()
            .expect("array")
            .iter()
            .map(|c| (c["id"].as_str().expect("id"), c))
            .collect();
        for (name, id) in &companies {
            let c = by_id.get(id.as_str()).unwrap_or_else(|| {
                panic!("cycle {cycle} (seed {seed}): acknowledged {name} ({id}) is lost")
            });
            assert_eq!(c["name"], name.as_str());
            if let Some(allowed) = industry.get(id) {
                let now = c["industry"].as_str().unwrap_or("");
                assert!(
                    allowed.iter().any(|a| a == now),
                    "cycle {cycle} (seed {seed}): {name} has industry `{now}`, expected one of {allowed:?}"
                );
            }
        }
    }
    eprintln!(
        "durability: {cycles} cycles, {killed} processes killed mid-write, {acked} writes acknowledged, none lost"
    );
    assert!(
        killed > cycles / 4,
        "too few kills landed mid-write ({killed}); the test would prove little"
    );
    assert!(acked > 0, "no write was ever acknowledged");
}
