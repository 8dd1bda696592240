//! Where a node gets the time and its randomness.
//!
//! A real node uses the system's. The deterministic simulation
//! (`tests/simulation.rs`) gives each node a virtual clock and a seeded
//! generator instead, so that one seed replays a whole run exactly: the
//! same device keys, record ids, timestamps and therefore change hashes.

use jiff::Timestamp;
use rapport_trust::KeyError;

/// The clock and the random source of one node.
pub trait Environment: Send + Sync {
    fn now(&self) -> Timestamp;
    /// Fills `buf` with unpredictable bytes (key material, ids, secrets).
    fn fill(&self, buf: &mut [u8]) -> Result<(), KeyError>;
}

/// The system's clock and random number generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

impl Environment for System {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn fill(&self, buf: &mut [u8]) -> Result<(), KeyError> {
        getrandom::fill(buf).map_err(|e| KeyError::Random(e.to_string()))
    }
}
