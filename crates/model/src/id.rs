//! Record ids: 128 bits, sortable by creation time (the ULID layout:
//! 48 bits of milliseconds, then 80 random bits), written in lower-case
//! Crockford base32 so that a short prefix is easy to type.

use std::fmt;
use std::str::FromStr;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Length of a record id in its text form.
pub const ID_LEN: usize = 26;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(u128);

impl RecordId {
    /// Builds an id from a creation time and 80 bits of randomness; the
    /// caller supplies both, so this stays deterministic under test.
    pub fn new(unix_ms: u64, random: [u8; 10]) -> Self {
        let mut r = [0u8; 16];
        r[6..].copy_from_slice(&random);
        let random = u128::from_be_bytes(r);
        RecordId(((unix_ms as u128 & 0xffff_ffff_ffff) << 80) | random)
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        RecordId(u128::from_be_bytes(bytes))
    }

    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// Creation time in milliseconds since the Unix epoch.
    pub fn unix_ms(self) -> u64 {
        (self.0 >> 80) as u64
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; ID_LEN];
        for (i, c) in out.iter_mut().enumerate() {
            let shift = 5 * (ID_LEN - 1 - i);
            *c = ALPHABET[((self.0 >> shift) & 0x1f) as usize];
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordId({self})")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a record id (26 characters of 0-9 and a-z without i, l, o, u)")]
pub struct InvalidId(pub String);

/// Value of one Crockford digit, accepting the usual look-alikes.
fn digit(c: u8) -> Option<u8> {
    let c = c.to_ascii_lowercase();
    let c = match c {
        b'o' => b'0',
        b'i' | b'l' => b'1',
        c => c,
    };
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u8)
}

/// True if `s` could be the start of a record id (used to tell an id prefix
/// from a name when resolving what a user typed).
pub fn is_id_prefix(s: &str) -> bool {
    !s.is_empty() && s.len() <= ID_LEN && s.bytes().all(|c| digit(c).is_some())
}

/// Normalises a typed id prefix to the canonical lower-case alphabet.
pub fn normalize_prefix(s: &str) -> String {
    s.bytes()
        .filter_map(digit)
        .map(|d| ALPHABET[d as usize] as char)
        .collect()
}

impl FromStr for RecordId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, InvalidId> {
        if s.len() != ID_LEN || s.as_bytes()[0] > b'7' {
            return Err(InvalidId(s.to_string()));
        }
        let mut v: u128 = 0;
        for c in s.bytes() {
            let d = digit(c).ok_or_else(|| InvalidId(s.to_string()))?;
            v = (v << 5) | d as u128;
        }
        Ok(RecordId(v))
    }
}

impl serde::Serialize for RecordId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RecordId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_sorts_by_time() {
        let a = RecordId::new(1_700_000_000_000, [0xff; 10]);
        let b = RecordId::new(1_700_000_000_001, [0x00; 10]);
        assert_eq!(a.to_string().len(), ID_LEN);
        assert_eq!(a.to_string().parse::<RecordId>(), Ok(a));
        assert!(a.to_string() < b.to_string());
        assert_eq!(b.unix_ms(), 1_700_000_000_001);
    }

    #[test]
    fn parsing_accepts_upper_case_and_rejects_garbage() {
        let a = RecordId::new(42, [3; 10]);
        assert_eq!(a.to_string().to_uppercase().parse::<RecordId>(), Ok(a));
        assert!("short".parse::<RecordId>().is_err());
        assert!("uuuuuuuuuuuuuuuuuuuuuuuuuu".parse::<RecordId>().is_err());
        assert!("8zzzzzzzzzzzzzzzzzzzzzzzzz".parse::<RecordId>().is_err());
    }

    #[test]
    fn prefixes() {
        assert!(is_id_prefix("01hx"));
        assert!(!is_id_prefix("acme corp"));
        assert_eq!(normalize_prefix("01HXO"), "01hx0");
    }
}
