//! Messages between nodes, and how they are framed.
//!
//! Every message is one frame: a 4-byte big-endian length, then the
//! message encoded with postcard. A frame longer than [`MAX_FRAME`] is
//! refused before it is read.

use serde::{Deserialize, Serialize};

/// ALPN of the catch-up (reconciliation) protocol. The suffix is the
/// protocol version: an incompatible change gets a new ALPN. Version 2:
/// requests are capped and named once, and a record's changes may span
/// several `Changes` messages. Version 3: members pass on each other's
/// signed addresses ([`SyncMessage::Addresses`]). Version 4: a responder
/// sends nothing for a record whose heads from the initiator it does not
/// all hold, and the initiator may name records a second time at the end
/// of the session (see [`SyncMessage::Heads`]).
pub const SYNC_ALPN: &[u8] = b"rapport/sync/4";
/// ALPN of the join protocol (redeeming an invite ticket).
pub const JOIN_ALPN: &[u8] = b"rapport/join/2";

/// Largest frame a node sends or accepts (4 MiB).
pub const MAX_FRAME: usize = 4 << 20;
/// Largest gossip message (iroh-gossip's default limit is 4096 bytes).
pub const MAX_GOSSIP: usize = 4096;

/// A record (or space document) id on the wire: 16 bytes.
pub type WireId = [u8; 16];
/// An Automerge change hash.
pub type Hash = [u8; 32];

/// One message of a catch-up session between a dialer (initiator) and the
/// peer it dialed (responder), about one space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMessage {
    /// Initiator: sync this space with me.
    Open { space: WireId },
    /// Responder: no (not a member, unknown space); the session ends.
    Refused { reason: String },
    /// A negentropy range-reconciliation message.
    Reconcile(Vec<u8>),
    /// The sender's heads of records found to differ (empty: it lacks them).
    /// From the initiator: at most 10,000 records, ids strictly increasing
    /// within a pass. The first pass names each differing record once; a
    /// second, at most, starts with a message whose first id is not above
    /// the last one named, and names again records whose changes neither
    /// side could send in the first (its heads are followed by a few of
    /// their ancestors). From the responder: the same records, in the same
    /// order.
    Heads(Vec<RecordHeads>),
    /// Signed changes the receiver lacks, of records in the current
    /// exchange. A record's changes may continue in the next message; they
    /// come in an order the receiver can apply them in.
    Changes(Vec<RecordChanges>),
    /// Initiator: the session is complete.
    Done,
    /// Signed address announcements ([`SignedAddresses`], encoded) of the
    /// space's members that the sender knows, its own included: at most
    /// one such message per side and session, of at most
    /// [`MAX_ADDRESS_ENTRIES`]. The initiator sends it after `Open`, the
    /// responder once it has accepted the session; never to a non-member.
    Addresses(Vec<Vec<u8>>),
}

/// Most announcements one [`SyncMessage::Addresses`] may carry.
pub const MAX_ADDRESS_ENTRIES: usize = 256;
/// Largest encoded [`SignedAddresses`] a node accepts.
pub const MAX_ADDRESSES_BYTES: usize = 1024;
/// Most direct addresses one announcement may list.
pub const MAX_DIRECT_ADDRS: usize = 8;

/// Where a device can be reached now, as it says itself: direct
/// addresses and its home relay, with when it said so. It travels signed
/// ([`SignedAddresses`]) among the members of the spaces the device
/// belongs to, on gossip and in catch-up sessions; a newer one replaces an
/// older one. Never part of a record's history: addresses change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    /// The device (node id) these addresses are of, which signed them.
    pub device: [u8; 32],
    /// Milliseconds since the Unix epoch, on the device's clock.
    pub at_ms: u64,
    /// Direct addresses, `ip:port`, at most [`MAX_DIRECT_ADDRS`].
    pub direct: Vec<String>,
    /// The relay the device is reachable through, if it uses one.
    pub relay: Option<String>,
}

/// An [`Addresses`] (postcard, `body`) with the device's ed25519
/// signature over `rapport/addresses/v1\0` followed by `body`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAddresses {
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
}

/// A message on a space's gossip topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gossip {
    /// A record changed.
    Announce(Announce),
    /// A member's current addresses (an encoded [`SignedAddresses`]).
    Addresses(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordHeads {
    pub record: WireId,
    pub heads: Vec<Hash>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordChanges {
    pub record: WireId,
    /// Each an encoded [`crate::SignedChange`].
    pub changes: Vec<Vec<u8>>,
}

/// A live announcement on a space's gossip topic: a record changed. Small
/// changes travel inside; otherwise only the heads do and receivers catch
/// up over [`SYNC_ALPN`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    pub space: WireId,
    pub record: WireId,
    pub heads: Vec<Hash>,
    /// Encoded [`crate::SignedChange`]s, possibly empty.
    pub changes: Vec<Vec<u8>>,
}

/// An invitation to a space, as a short string a person can paste or put
/// in a QR code: `rapport2` followed by lower-case base32 of this struct
/// (postcard) and a 4-byte checksum, so a mistyped ticket is caught here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub space: WireId,
    pub space_name: String,
    /// The inviting node's id (its device public key).
    pub inviter: [u8; 32],
    /// Where the inviter listens (`ip:port`), for dialing it directly.
    pub addrs: Vec<String>,
    /// A relay the inviter can be reached through, if it uses one.
    pub relay: Option<String>,
    /// The role it grants (for display: the inviter's own record decides).
    pub role: String,
    /// The one-time secret.
    pub secret: [u8; 16],
    /// Seconds since the Unix epoch after which the ticket is refused.
    pub expires: i64,
}

const TICKET_PREFIX: &str = "rapport2";
/// Longest ticket text accepted.
const MAX_TICKET: usize = 4096;

impl Ticket {
    pub fn encode(&self) -> String {
        let mut body = postcard::to_allocvec(self).unwrap_or_default();
        let sum = checksum(&body);
        body.extend_from_slice(&sum);
        let text = data_encoding::BASE32_NOPAD
            .encode(&body)
            .to_ascii_lowercase();
        format!("{TICKET_PREFIX}{text}")
    }

    pub fn decode(text: &str) -> Result<Self, WireError> {
        let text = text.trim();
        if text.len() > MAX_TICKET {
            return Err(WireError::Malformed("ticket is too long".into()));
        }
        let body = text
            .strip_prefix(TICKET_PREFIX)
            .ok_or_else(|| WireError::Malformed("a ticket starts with `rapport2`".into()))?;
        let mut bytes = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                WireError::Malformed("the ticket is damaged (not base32): copy it again".into())
            })?;
        let damaged = || WireError::Malformed("the ticket is damaged: copy it again".into());
        if bytes.len() < 4 {
            return Err(damaged());
        }
        let sum = bytes.split_off(bytes.len() - 4);
        if sum != checksum(&bytes) {
            return Err(damaged());
        }
        postcard::from_bytes(&bytes).map_err(|_| damaged())
    }
}

fn checksum(body: &[u8]) -> [u8; 4] {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(body);
    [d[0], d[1], d[2], d[3]]
}

/// Joining a space with a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinMessage {
    /// Joiner: here is the ticket's secret for this space, and where I listen.
    Redeem {
        space: WireId,
        secret: [u8; 16],
        addrs: Vec<String>,
        /// Who the joiner says it is; the admin certifies it (the ticket
        /// may fix the organisation).
        user: String,
        org: String,
    },
    /// Inviter: you are a member now; catch up with me.
    Welcome,
    /// Inviter: the ticket is not valid (used, expired, unknown).
    Denied { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    FrameTooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Encodes a message as one frame (length prefix included).
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    let body = postcard::to_allocvec(msg).map_err(|e| WireError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(WireError::FrameTooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Checks a frame's length prefix, before reading the body.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(WireError::FrameTooLarge(len));
    }
    Ok(len)
}

/// Decodes a frame body (without its length prefix).
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, WireError> {
    if body.len() > MAX_FRAME {
        return Err(WireError::FrameTooLarge(body.len()));
    }
    postcard::from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Encodes a message without a length prefix: a gossip message (gossip
/// frames itself) or a signed part of one.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    postcard::to_allocvec(msg).map_err(|e| WireError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let msg = SyncMessage::Heads(vec![RecordHeads {
            record: [1; 16],
            heads: vec![[2; 32]],
        }]);
        let frame = encode_frame(&msg).expect("encode");
        let len = frame_len([frame[0], frame[1], frame[2], frame[3]]).expect("len");
        assert_eq!(len, frame.len() - 4);
        assert_eq!(decode::<SyncMessage>(&frame[4..]), Ok(msg));
    }

    #[test]
    fn tickets_round_trip_and_damage_is_reported() {
        let t = Ticket {
            space: [3; 16],
            space_name: "Acme ↔ Northwind".into(),
            inviter: [4; 32],
            addrs: vec!["127.0.0.1:4433".into()],
            relay: None,
            role: "reader".into(),
            secret: [5; 16],
            expires: 1_800_000_000,
        };
        let text = t.encode();
        assert!(text.starts_with("rapport2"));
        assert_eq!(Ticket::decode(&format!("  {text}\n")), Ok(t));
        assert!(Ticket::decode("hello").is_err());
        let mut damaged = text.clone();
        damaged.truncate(text.len() - 7);
        assert!(Ticket::decode(&damaged).is_err());
        assert!(Ticket::decode(&format!("{text}!")).is_err());
        // One character changed (a typo, or someone editing the role or
        // the secret) is caught by the checksum.
        for at in [10, text.len() / 2, text.len() - 2] {
            let mut chars: Vec<char> = text.chars().collect();
            chars[at] = if chars[at] == 'a' { 'b' } else { 'a' };
            let tampered: String = chars.into_iter().collect();
            assert!(
                Ticket::decode(&tampered).is_err(),
                "tampering at {at} went unnoticed"
            );
        }
    }

    #[test]
    fn oversized_and_malformed_frames_are_refused() {
        assert!(matches!(
            frame_len((MAX_FRAME as u32 + 1).to_be_bytes()),
            Err(WireError::FrameTooLarge(_))
        ));
        for junk in [&b""[..], b"\xff\xff\xff", b"\x07garbage"] {
            assert!(decode::<SyncMessage>(junk).is_err());
        }
        // Every truncation of a valid message fails cleanly.
        let frame = encode_frame(&SyncMessage::Open { space: [9; 16] }).expect("encode");
        for cut in 4..frame.len() - 1 {
            assert!(decode::<SyncMessage>(&frame[4..cut]).is_err(), "cut {cut}");
        }
    }
}
