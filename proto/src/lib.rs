//! Rapport's wire and storage formats: the signed change envelope, the sync
//! and gossip messages, their framing, and the limits every decoder
//! enforces.
//!
//! No I/O, no clock, no cryptography here: this crate only turns bytes into
//! typed values and back, defensively. Verifying a signature is the job of
//! `rapport-trust`; this crate only carries the bytes. (SHA-256 appears only
//! where a format is defined by it: a ticket's checksum, and [`items`], the
//! digest of a document's heads that reconciliation compares.)

mod envelope;
pub mod items;
pub mod wire;

pub use envelope::*;
