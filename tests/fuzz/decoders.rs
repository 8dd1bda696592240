//! Targets for the pure decoders a peer's bytes meet first: frames and
//! gossip (`rapport_proto::wire`), the signed change envelope with its
//! verification, and invite tickets.
//!
//! Each returns a coarse label of what happened (for the engine's
//! outcome-based corpus growth) and asserts the properties that must hold
//! for any input: no panic, and whatever decodes encodes back to an equal
//! value.

use std::collections::BTreeSet;

use rapport_proto::wire::{self, Gossip, JoinMessage, SyncMessage, Ticket};
use rapport_proto::{MAX_CHANGE_BYTES, SignedChange};
use rapport_trust::{DeviceId, verify_addresses, verify_change};

use crate::repair;

/// Decodes one message of type `$ty`; if it decodes, it must survive a
/// round trip. (A macro rather than a generic function: this package does
/// not depend on serde directly.)
macro_rules! message {
    ($ty:ty, $body:expr, $inner:expr) => {
        match wire::decode::<$ty>($body) {
            Ok(msg) => {
                $inner(&msg);
                let again = wire::encode_frame(&msg).expect("a decoded message encodes");
                let len = wire::frame_len([again[0], again[1], again[2], again[3]])
                    .expect("an encoded frame has a valid length");
                assert_eq!(len, again.len() - 4);
                assert_eq!(wire::decode::<$ty>(&again[4..]).as_ref(), Ok(&msg));
                format!("|{}", variant(&format!("{msg:?}")))
            }
            Err(e) => format!("|{e}"),
        }
    };
}

/// `Heads` of `Heads([...])`.
fn variant(debug: &str) -> &str {
    debug.split(['(', ' ', '{']).next().unwrap_or("")
}

/// A stream of frames from a sync or join stream (4-byte length, then the
/// body), read as `node::net::read_frame` reads them, and the same bytes
/// as one gossip message, decoded as `Node::on_gossip` does.
pub fn frame(input: &[u8]) -> String {
    // Each distinct outcome once: how many frames a stream held is noise.
    let mut labels = BTreeSet::new();
    let mut stream = input;
    while let Some((prefix, rest)) = stream.split_first_chunk::<4>() {
        let len = match wire::frame_len(*prefix) {
            Ok(len) => len,
            Err(e) => {
                labels.insert(format!("|refused: {e}"));
                break;
            }
        };
        assert!(len <= wire::MAX_FRAME, "frame_len let {len} bytes through");
        // A stream that ends early is an I/O error in `read_frame`; the
        // bytes present are decoded anyway, as if the length were right,
        // so that mutants which lost bytes still reach the decoder.
        let (body, next) = rest.split_at(len.min(rest.len()));
        labels.insert(message!(SyncMessage, body, sync_changes));
        labels.insert(message!(JoinMessage, body, |_: &JoinMessage| {}));
        stream = next;
    }
    let gossip = message!(Gossip, input, |g: &Gossip| match g {
        Gossip::Announce(a) => envelopes(&a.changes),
        Gossip::Addresses(signed) => addresses(std::slice::from_ref(signed)),
    });
    labels.into_iter().collect::<String>() + " gossip" + &gossip
}

fn sync_changes(msg: &SyncMessage) {
    match msg {
        SyncMessage::Changes(records) => {
            for r in records {
                envelopes(&r.changes);
            }
        }
        SyncMessage::Addresses(signed) => addresses(signed),
        _ => {}
    }
}

/// Address announcements carried inside a message: checking them must
/// not panic.
fn addresses(signed: &[Vec<u8>]) {
    for a in signed {
        let _ = verify_addresses(a);
    }
}

/// Envelopes carried inside a message: decoding them must not panic.
fn envelopes(changes: &[Vec<u8>]) {
    for c in changes {
        let _ = SignedChange::decode(c);
    }
}

/// An encoded signed change, checked as `Repo::apply_remote` checks one.
/// A mutant with a damaged length is also tried with its length set right,
/// and with its Automerge chunk header repaired, so that mutations of the
/// change bytes reach Automerge's parser.
pub fn envelope(input: &[u8]) -> String {
    let mut label = verify(input);
    if label.starts_with("decode: LengthMismatch") {
        label += " / ";
        label += &verify(&repair::envelope_length(input));
    }
    if let Ok(signed) = SignedChange::decode(input) {
        let repaired = SignedChange {
            change: repair::change_chunk(&signed.change),
            ..signed
        };
        label += " / ";
        label += &verify(&repaired.encode());
    }
    label
}

fn verify(bytes: &[u8]) -> String {
    let signed = match SignedChange::decode(bytes) {
        Ok(s) => s,
        Err(e) => return format!("decode: {e:?}"),
    };
    assert!(signed.change.len() <= MAX_CHANGE_BYTES);
    // The format is canonical: what decodes encodes to the same bytes.
    assert_eq!(signed.encode(), bytes, "envelope round trip");
    match verify_change(&signed) {
        Ok(change) => {
            assert_eq!(
                DeviceId::from_actor(change.actor_id()),
                Some(DeviceId(signed.author)),
                "a verified change is by its signer"
            );
            "verified".into()
        }
        Err(e) => format!("verify: {e}"),
    }
}

/// Ticket text as pasted by a user; also with its checksum recomputed, so
/// that damage inside the body reaches the postcard decoder.
pub fn ticket(input: &[u8]) -> String {
    let text = String::from_utf8_lossy(input);
    format!(
        "{} / {}",
        decode_ticket(&text),
        decode_ticket(&repair::ticket(&text))
    )
}

fn decode_ticket(text: &str) -> String {
    match Ticket::decode(text) {
        Ok(t) => {
            assert_eq!(
                Ticket::decode(&t.encode()).as_ref(),
                Ok(&t),
                "ticket round trip"
            );
            format!("ok {}", t.role.len().min(9))
        }
        Err(e) => e.to_string(),
    }
}
