//! The signed change envelope.

use std::fmt;

/// Version byte that starts every encoded [`SignedChange`].
pub const SIGNED_CHANGE_VERSION: u8 = 1;

/// Largest Automerge change Rapport accepts (1 MiB). A CRM record edit is a
/// few hundred bytes; anything near this limit is a bug or an attack.
pub const MAX_CHANGE_BYTES: usize = 1 << 20;

/// Length of an ed25519 public key: a device id.
pub const AUTHOR_LEN: usize = 32;
/// Length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

const HEADER_LEN: usize = 1 + AUTHOR_LEN + SIGNATURE_LEN + 4;

/// An Automerge change as its author signed it.
///
/// The signature covers the change's Automerge hash (see
/// `rapport_trust::change_signing_message`), so it stays verifiable for as
/// long as the raw change bytes are kept, whatever happens to the document.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedChange {
    /// The author's device public key (also the change's Automerge actor id).
    pub author: [u8; AUTHOR_LEN],
    /// ed25519 signature by `author`.
    pub signature: [u8; SIGNATURE_LEN],
    /// The raw Automerge change bytes.
    pub change: Vec<u8>,
}

impl fmt::Debug for SignedChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedChange")
            .field("author", &hex(&self.author[..8]))
            .field("change_len", &self.change.len())
            .finish_non_exhaustive()
    }
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("input is {got} bytes, shorter than the {need}-byte minimum")]
    TooShort { got: usize, need: usize },
    #[error("unsupported version {0} (this build understands version {SIGNED_CHANGE_VERSION})")]
    UnsupportedVersion(u8),
    #[error("change of {0} bytes exceeds the {MAX_CHANGE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("declared length {declared} does not match the {actual} bytes present")]
    LengthMismatch { declared: usize, actual: usize },
}

impl SignedChange {
    /// Encodes as `version | author | signature | u32 BE length | change`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.change.len());
        out.push(SIGNED_CHANGE_VERSION);
        out.extend_from_slice(&self.author);
        out.extend_from_slice(&self.signature);
        let len = u32::try_from(self.change.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.change);
        out
    }

    /// Decodes bytes produced by [`SignedChange::encode`], checking every
    /// length before use. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::TooShort {
                got: bytes.len(),
                need: HEADER_LEN,
            });
        }
        let (version, rest) = (bytes[0], &bytes[1..]);
        if version != SIGNED_CHANGE_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let (author, rest) = rest.split_at(AUTHOR_LEN);
        let (signature, rest) = rest.split_at(SIGNATURE_LEN);
        let (len, change) = rest.split_at(4);
        let declared = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if declared > MAX_CHANGE_BYTES {
            return Err(DecodeError::TooLarge(declared));
        }
        if declared != change.len() {
            return Err(DecodeError::LengthMismatch {
                declared,
                actual: change.len(),
            });
        }
        let mut a = [0u8; AUTHOR_LEN];
        a.copy_from_slice(author);
        let mut s = [0u8; SIGNATURE_LEN];
        s.copy_from_slice(signature);
        Ok(SignedChange {
            author: a,
            signature: s,
            change: change.to_vec(),
        })
    }
}

/// Lower-case hex, for ids and keys in messages and logs.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Parses lower- or upper-case hex; `None` on odd length or a non-hex digit.
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SignedChange {
        SignedChange {
            author: [7; 32],
            signature: [9; 64],
            change: b"change bytes".to_vec(),
        }
    }

    #[test]
    fn round_trips() {
        let c = sample();
        assert_eq!(SignedChange::decode(&c.encode()), Ok(c));
    }

    #[test]
    fn rejects_every_truncation_and_extension_without_panic() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(SignedChange::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            SignedChange::decode(&longer),
            Err(DecodeError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn rejects_oversized_declared_length_and_unknown_version() {
        let mut bytes = sample().encode();
        bytes[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            SignedChange::decode(&bytes),
            Err(DecodeError::TooLarge(_))
        ));
        let mut bytes = sample().encode();
        bytes[0] = 2;
        assert_eq!(
            SignedChange::decode(&bytes),
            Err(DecodeError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(parse_hex("00ABff"), Some(vec![0x00, 0xab, 0xff]));
        assert_eq!(parse_hex("0g"), None);
        assert_eq!(parse_hex("abc"), None);
    }
}
