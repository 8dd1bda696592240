//! Byte-level mutations, in the style of AFL's "havoc" stage: a few random
//! edits stacked on one corpus entry. No coverage feedback on stable Rust,
//! so the mutations aim at what hostile peers would send: damaged lengths
//! and counts, truncated or repeated fields, boundary integers.

use crate::common::Rng;

/// Mutants never grow past this, so one input stays cheap to run.
pub const MAX_INPUT: usize = 64 * 1024;

/// Values that sit on the edges of length and count checks.
const INTERESTING_U8: [u8; 7] = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 0x10];
const INTERESTING_U32: [u32; 9] = [
    0,
    1,
    0x7f,
    0x80,
    0xffff,
    0x0010_0000, // 1 MiB: the change size limit
    0x0040_0001, // just over 4 MiB: the frame limit
    0x7fff_ffff,
    u32::MAX,
];

/// Returns a mutant of `input`; `other` is another corpus entry to splice
/// with.
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut data = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        match rng.below(11) {
            0 => flip_bit(rng, &mut data),
            1 => set_byte(rng, &mut data),
            2 => interesting_u8(rng, &mut data),
            3 => interesting_u32(rng, &mut data),
            4 => insert_range(rng, &mut data),
            5 => delete_range(rng, &mut data),
            6 => duplicate_range(rng, &mut data),
            7 => splice(rng, &mut data, other),
            8 => truncate(rng, &mut data),
            9 => add_to_byte(rng, &mut data),
            _ => copy_from_other(rng, &mut data, other),
        }
    }
    data.truncate(MAX_INPUT);
    data
}

fn offset(rng: &mut Rng, len: usize) -> usize {
    rng.below(len as u64) as usize
}

fn flip_bit(rng: &mut Rng, data: &mut [u8]) {
    if !data.is_empty() {
        let at = offset(rng, data.len());
        data[at] ^= 1 << rng.below(8);
    }
}

fn set_byte(rng: &mut Rng, data: &mut [u8]) {
    if !data.is_empty() {
        let at = offset(rng, data.len());
        data[at] = rng.next() as u8;
    }
}

/// Small arithmetic on one byte: off-by-one lengths and counts.
fn add_to_byte(rng: &mut Rng, data: &mut [u8]) {
    if !data.is_empty() {
        let at = offset(rng, data.len());
        let delta = 1 + rng.below(16) as u8;
        data[at] = if rng.below(2) == 0 {
            data[at].wrapping_add(delta)
        } else {
            data[at].wrapping_sub(delta)
        };
    }
}

fn interesting_u8(rng: &mut Rng, data: &mut [u8]) {
    if !data.is_empty() {
        let at = offset(rng, data.len());
        data[at] = INTERESTING_U8[offset(rng, INTERESTING_U8.len())];
    }
}

/// A boundary integer, little- or big-endian (the envelope and frame
/// lengths are big-endian; postcard and Automerge use LEB128 varints,
/// which 0xff bytes stretch).
fn interesting_u32(rng: &mut Rng, data: &mut Vec<u8>) {
    let value = INTERESTING_U32[offset(rng, INTERESTING_U32.len())];
    let bytes = if rng.below(2) == 0 {
        value.to_le_bytes()
    } else {
        value.to_be_bytes()
    };
    if data.len() < 4 {
        data.extend_from_slice(&bytes);
        return;
    }
    let at = offset(rng, data.len() - 3);
    data[at..at + 4].copy_from_slice(&bytes);
}

fn insert_range(rng: &mut Rng, data: &mut Vec<u8>) {
    let at = offset(rng, data.len() + 1);
    let len = 1 + rng.below(32) as usize;
    let fill: Vec<u8> = if rng.below(2) == 0 {
        (0..len).map(|_| rng.next() as u8).collect()
    } else {
        // A run of one byte: long varints, repeated tags.
        vec![rng.next() as u8; len]
    };
    data.splice(at..at, fill);
}

fn delete_range(rng: &mut Rng, data: &mut Vec<u8>) {
    if !data.is_empty() {
        let at = offset(rng, data.len());
        let len = 1 + offset(rng, (data.len() - at).min(64));
        data.drain(at..at + len);
    }
}

fn duplicate_range(rng: &mut Rng, data: &mut Vec<u8>) {
    if data.is_empty() || data.len() >= MAX_INPUT {
        return;
    }
    let from = offset(rng, data.len());
    let len = 1 + offset(rng, (data.len() - from).min(256));
    let chunk = data[from..from + len].to_vec();
    let to = offset(rng, data.len() + 1);
    data.splice(to..to, chunk);
}

/// The head of this input and the tail of another.
fn splice(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let cut = offset(rng, data.len() + 1);
    let from = offset(rng, other.len() + 1);
    data.truncate(cut);
    data.extend_from_slice(&other[from..]);
}

/// Overwrites a range with bytes from another input, keeping the length.
fn copy_from_other(rng: &mut Rng, data: &mut [u8], other: &[u8]) {
    if data.is_empty() || other.is_empty() {
        return;
    }
    let to = offset(rng, data.len());
    let from = offset(rng, other.len());
    let len = (1 + offset(rng, 64))
        .min(data.len() - to)
        .min(other.len() - from);
    data[to..to + len].copy_from_slice(&other[from..from + len]);
}

fn truncate(rng: &mut Rng, data: &mut Vec<u8>) {
    let keep = offset(rng, data.len() + 1);
    data.truncate(keep);
}

#[test]
fn mutants_are_bounded_and_replay_from_the_seed() {
    let input: Vec<u8> = (0..=255).collect();
    let run = |seed| {
        let mut rng = Rng(seed);
        (0..500)
            .map(|_| mutate(&mut rng, &input, b"other"))
            .collect::<Vec<_>>()
    };
    let a = run(7);
    assert_eq!(a, run(7), "same seed, same mutants");
    assert!(a.iter().all(|m| m.len() <= MAX_INPUT));
    assert!(a.iter().any(|m| m != &input), "mutations change something");
}
