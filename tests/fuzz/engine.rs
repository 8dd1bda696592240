//! The fuzzing loop: replay the checked-in corpus, then run mutants of it
//! for a time budget, stopping at the first panic with the input saved.
//!
//! Stable Rust has no coverage instrumentation for tests, so new inputs
//! are kept by a cheap stand-in: each target names the outcome of every
//! run (which error, which verdict), and a mutant that produced an outcome
//! not seen before joins the working corpus, to be mutated further. That
//! is what lets, say, a mutant that still verifies grow into one that
//! reaches Automerge's apply step.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::Rng;
use crate::mutate::mutate;

/// Seconds per target when `RAPPORT_FUZZ_SECS` is not set.
const DEFAULT_SECS: f64 = 8.0;
/// Bound on the working corpus, so that picking an entry stays fair.
const MAX_WORKING: usize = 512;

/// Where each target's checked-in inputs live.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fuzz-corpus")
        .join(target)
}

/// `target/fuzz-crashes`, next to the integration tests' scratch space.
fn crash_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("../fuzz-crashes")
}

/// The seed of this run, one for all targets: `RAPPORT_FUZZ_SEED=S`
/// replays one, `RAPPORT_FUZZ_SEED=random` explores with a fresh one, and
/// otherwise a fixed seed keeps CI's verdict about the commit under test,
/// not about luck; it is printed either way.
pub fn seed() -> u64 {
    const DEFAULT_SEED: u64 = 0x5eed_f022;
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("RAPPORT_FUZZ_SEED") {
        Ok(s) if s.trim() == "random" => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
        Ok(s) => s.trim().parse().unwrap_or(DEFAULT_SEED),
        Err(_) => DEFAULT_SEED,
    })
}

/// Time per target: `RAPPORT_FUZZ_SECS`, else a day when a number of
/// executions is given (the replay must reach it), else the default.
fn budget() -> Duration {
    let secs = std::env::var("RAPPORT_FUZZ_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && (0.0..1e9).contains(s));
    match secs {
        Some(secs) => Duration::from_secs_f64(secs),
        None if max_runs() < u64::MAX => Duration::from_secs(86_400),
        None => Duration::from_secs_f64(DEFAULT_SECS),
    }
}

/// `RAPPORT_FUZZ_RUNS`: stop after this many executions (corpus files
/// included), to replay a seed exactly up to a crash whatever the speed
/// of the machine.
fn max_runs() -> u64 {
    std::env::var("RAPPORT_FUZZ_RUNS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

/// The corpus files of `target`, sorted by name so runs are repeatable.
pub fn load_corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .collect();
    files.sort_by_key(|e| e.file_name());
    let corpus: Vec<_> = files
        .into_iter()
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("read corpus file");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    assert!(!corpus.is_empty(), "no corpus in {}", dir.display());
    corpus
}

/// Runs `exec` on every corpus file of `target`, then on mutants until the
/// budget is spent. `exec` returns a label of what happened (see the
/// module comment) and panics on a finding. Returns the executions.
pub fn fuzz(target: &str, mut exec: impl FnMut(&[u8]) -> String) -> u64 {
    let seed = seed();
    let corpus = load_corpus(target);
    let mut runs = 0u64;
    let mut seen = HashSet::new();
    let mut slowest = (Duration::ZERO, String::new());
    // `index`: executions before this one, so that a replay can stop right
    // after it.
    quiet_panics();
    let mut run_one = |input: &[u8], what: &str, index: u64| -> String {
        let started = Instant::now();
        QUIET.set(true);
        let result = panic::catch_unwind(AssertUnwindSafe(|| exec(input)));
        QUIET.set(false);
        let took = started.elapsed();
        if took > slowest.0 {
            slowest = (took, what.to_string());
        }
        match result {
            Ok(outcome) => coarse(&outcome),
            Err(panic) => fail(target, seed, index + 1, input, what, &*panic),
        }
    };

    // Every checked-in input first, every run: crashes found earlier stay
    // fixed.
    for (name, bytes) in &corpus {
        seen.insert(run_one(bytes, &format!("corpus file {name}"), runs));
        runs += 1;
    }

    let mut working: Vec<Vec<u8>> = corpus.into_iter().map(|(_, b)| b).collect();
    let mut rng = Rng(seed);
    let deadline = Instant::now() + budget();
    let max_runs = max_runs();
    while Instant::now() < deadline && runs < max_runs {
        let base = &working[rng.below(working.len() as u64) as usize];
        let other = &working[rng.below(working.len() as u64) as usize];
        let input = mutate(&mut rng, base, other);
        let outcome = run_one(&input, "a mutant", runs);
        runs += 1;
        if seen.insert(outcome) && working.len() < MAX_WORKING {
            working.push(input);
        }
    }
    eprintln!(
        "fuzz {target}: {runs} executions, seed {seed} ({} outcomes, working corpus {}, slowest {:?} on {})",
        seen.len(),
        working.len(),
        slowest.0,
        slowest.1
    );
    if std::env::var_os("RAPPORT_FUZZ_OUTCOMES").is_some() {
        let mut seen: Vec<_> = seen.into_iter().collect();
        seen.sort();
        eprintln!("fuzz {target} outcomes:\n  {}", seen.join("\n  "));
    }
    runs
}

thread_local! {
    /// Set while this thread runs an input.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic of this thread's input happened.
    static PANICKED_AT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Panics while an input runs are not printed, only remembered: the node
/// under test catches the ones Automerge raises on hostile bytes, and
/// printing each (with a backtrace under `RUST_BACKTRACE=1`) cost more
/// than running the input. A finding is reported by `fail` with the
/// place it happened; panics elsewhere print as usual.
fn quiet_panics() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.get() {
                let place = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_default();
                PANICKED_AT.with_borrow_mut(|at| *at = place);
            } else {
                default(info);
            }
        }));
    });
}

/// An outcome without its numbers (offsets, lengths), which would make
/// nearly every run look new.
fn coarse(outcome: &str) -> String {
    outcome
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .take(300)
        .collect()
}

/// Saves the input that panicked and fails the test with what is needed
/// to reproduce it.
fn fail(
    target: &str,
    seed: u64,
    runs: u64,
    input: &[u8],
    what: &str,
    panic: &(dyn std::any::Any + Send),
) -> ! {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(non-text panic)");
    let dir = crash_dir();
    let path = dir.join(format!("{target}-{:016x}", fnv1a(input)));
    let saved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input));
    let path = match saved {
        Ok(()) => path.canonicalize().unwrap_or(path).display().to_string(),
        Err(e) => format!("(could not save it to {}: {e})", path.display()),
    };
    let place = PANICKED_AT.with_borrow(String::clone);
    panic!(
        "fuzz {target}: {what} (execution {runs}) panicked at {place}: {message}\n\
         seed {seed}; input saved to {path}\n\
         replay: RAPPORT_FUZZ_SEED={seed} RAPPORT_FUZZ_RUNS={runs} \
         cargo test -p rapport --test fuzz {target}\n\
         keep it: copy the file into tests/fuzz-corpus/{target}/ (replayed first on every run)"
    );
}

/// A stable name for a crashing input (FNV-1a, 64 bits).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
