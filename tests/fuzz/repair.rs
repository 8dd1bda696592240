//! Undoing the damage that stops a mutant at the first check it meets.
//!
//! A random edit almost always breaks a length, a checksum or the
//! signature, and the input is then refused before the interesting code
//! runs. These functions make the outer layers consistent again (as a
//! hostile peer that controls its own key would), so that the mutation
//! reaches the layer below: Automerge's column decoders, `apply_changes`,
//! the authorization rules, postcard inside a ticket.

use rapport_model::automerge::Change;
use rapport_proto::SignedChange;
use rapport_trust::DeviceKey;
use sha2::{Digest, Sha256};

/// Automerge's chunk magic bytes.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// An envelope's fixed header: version, author, signature, length.
pub const ENVELOPE_HEADER: usize = 1 + 32 + 64 + 4;

/// Sets an envelope's declared change length to the bytes present.
pub fn envelope_length(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if let Some(len) = out.len().checked_sub(ENVELOPE_HEADER) {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        out[ENVELOPE_HEADER - 4..ENVELOPE_HEADER].copy_from_slice(&len.to_be_bytes());
    }
    out
}

/// Rewrites an Automerge chunk's header (data length and checksum) to
/// match the data after it. Anything that does not start like a chunk is
/// returned unchanged.
pub fn change_chunk(bytes: &[u8]) -> Vec<u8> {
    if bytes.len() < 9 || bytes[..4] != MAGIC {
        return bytes.to_vec();
    }
    let chunk_type = bytes[8];
    // Skip the old LEB128 length (at most 10 bytes for a u64).
    let mut at = 9;
    while at < bytes.len() && at < 19 && bytes[at] & 0x80 != 0 {
        at += 1;
    }
    let data = &bytes[(at + 1).min(bytes.len())..];
    let mut length = Vec::new();
    let mut n = data.len() as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            length.push(byte);
            break;
        }
        length.push(byte | 0x80);
    }
    let mut hasher = Sha256::new();
    hasher.update([chunk_type]);
    hasher.update(&length);
    hasher.update(data);
    let hash = hasher.finalize();
    let mut out = Vec::with_capacity(9 + length.len() + data.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&hash[..4]);
    out.push(chunk_type);
    out.extend_from_slice(&length);
    out.extend_from_slice(data);
    out
}

/// Signs the change again with whichever of `keys` is its actor. Returns
/// `None` if the bytes are not a change or no key matches.
pub fn resign(change: &[u8], keys: &[&DeviceKey]) -> Option<SignedChange> {
    let change = Change::from_bytes(change.to_vec()).ok()?;
    keys.iter().find_map(|k| k.sign_change(&change).ok())
}

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const TICKET_PREFIX: &str = "rapport2";

/// A ticket text with its checksum recomputed over whatever its body
/// decodes to (characters outside base32 are skipped), so that a damaged
/// body reaches the postcard decoder instead of the checksum test.
pub fn ticket(text: &str) -> String {
    let text = text.trim();
    let body = text.strip_prefix(TICKET_PREFIX).unwrap_or(text);
    let mut bytes = base32_decode_lenient(body);
    if bytes.len() < 4 {
        return text.to_string();
    }
    bytes.truncate(bytes.len() - 4);
    let sum = Sha256::digest(&bytes);
    bytes.extend_from_slice(&sum[..4]);
    format!("{TICKET_PREFIX}{}", base32_encode(&bytes))
}

fn base32_decode_lenient(text: &str) -> Vec<u8> {
    let (mut acc, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in text.bytes().map(|c| c.to_ascii_lowercase()) {
        let Some(v) = BASE32.iter().position(|&b| b == c) else {
            continue;
        };
        acc = (acc << 5) | v as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn base32_encode(bytes: &[u8]) -> String {
    let (mut acc, mut bits, mut out) = (0u32, 0u32, String::new());
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[(acc >> bits) as usize & 31] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(BASE32[(acc << (5 - bits)) as usize & 31] as char);
    }
    out
}

#[test]
fn a_repaired_ticket_is_the_ticket() {
    let t = rapport_proto::wire::Ticket {
        space: [1; 16],
        space_name: "Acme".into(),
        inviter: [2; 32],
        addrs: vec!["127.0.0.1:1".into()],
        relay: None,
        role: "writer".into(),
        secret: [3; 16],
        expires: 4,
    };
    let text = t.encode();
    assert_eq!(ticket(&text), text);
}
