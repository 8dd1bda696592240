//! Hostile-input fuzzing on the stable toolchain: a seeded mutational
//! fuzzer (no coverage guidance) over the decoders a peer's bytes reach
//! and over a real node's change ingestion. Each target replays its
//! checked-in corpus (`tests/fuzz-corpus/<target>/`), then runs mutants
//! for `RAPPORT_FUZZ_SECS` seconds (8 by default) from a fixed seed;
//! `RAPPORT_FUZZ_SEED=S` replays a run and `RAPPORT_FUZZ_SEED=random`
//! explores. See `docs/testing.md`.

mod common;

#[path = "fuzz/corpus.rs"]
mod corpus;
#[path = "fuzz/decoders.rs"]
mod decoders;
#[path = "fuzz/engine.rs"]
mod engine;
#[path = "fuzz/ingest.rs"]
mod ingest;
#[path = "fuzz/mutate.rs"]
mod mutate;
#[path = "fuzz/repair.rs"]
mod repair;
#[path = "fuzz/world.rs"]
mod world;

#[test]
fn frame() {
    engine::fuzz("frame", decoders::frame);
}

#[test]
fn envelope() {
    engine::fuzz("envelope", decoders::envelope);
}

#[test]
fn ticket() {
    engine::fuzz("ticket", decoders::ticket);
}

#[test]
fn ingest() {
    let world = world::World::new();
    let mut target = ingest::Ingest::new(&world);
    engine::fuzz("ingest", |input| target.exec(input));
}

/// Rewrites the seed corpus from the real encoders; see `fuzz/corpus.rs`.
#[test]
#[ignore = "writes tests/fuzz-corpus; run on purpose"]
fn regenerate_fuzz_corpus() {
    corpus::regenerate();
}
