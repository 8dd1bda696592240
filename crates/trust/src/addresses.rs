//! Signed address announcements: where a device says it can be reached
//! now. Signing and checking the form only; whether to believe one (is its
//! device a member, is it newer than what we hold) is the node's call.

use ed25519_dalek::{Signature, Signer, VerifyingKey};
use rapport_proto::wire::{
    self, Addresses, MAX_ADDRESSES_BYTES, MAX_DIRECT_ADDRS, SignedAddresses,
};

use crate::{DeviceId, DeviceKey};

/// Prefix of the signed bytes, so that an address signature is never
/// mistaken for a change signature, nor the other way round.
const ADDRESSES_CONTEXT: &[u8] = b"rapport/addresses/v1\0";
/// Longest relay URL an announcement may name.
pub const MAX_RELAY_URL: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("an address announcement of {0} bytes is over the {MAX_ADDRESSES_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("malformed address announcement: {0}")]
    Malformed(String),
    #[error("the announcing device is not a valid ed25519 public key")]
    BadKey,
    #[error("the signature does not match the announcement")]
    BadSignature,
    #[error("an announcement may list {MAX_DIRECT_ADDRS} direct addresses, this one lists {0}")]
    TooManyAddrs(usize),
    #[error("`{0}` is not an ip:port address")]
    BadAddr(String),
    #[error("the relay is not an http(s) URL of at most {MAX_RELAY_URL} bytes")]
    BadRelay,
}

fn signing_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(ADDRESSES_CONTEXT.len() + body.len());
    m.extend_from_slice(ADDRESSES_CONTEXT);
    m.extend_from_slice(body);
    m
}

impl DeviceKey {
    /// Signs this device's current addresses; returns the encoded
    /// [`SignedAddresses`]. Addresses past [`MAX_DIRECT_ADDRS`] are left out.
    pub fn sign_addresses(
        &self,
        mut direct: Vec<String>,
        relay: Option<String>,
        at_ms: u64,
    ) -> Result<Vec<u8>, AddressError> {
        direct.truncate(MAX_DIRECT_ADDRS);
        let body = wire::encode(&Addresses {
            device: self.device_id().0,
            at_ms,
            direct,
            relay,
        })
        .map_err(|e| AddressError::Malformed(e.to_string()))?;
        let signature = self.0.sign(&signing_message(&body)).to_bytes().to_vec();
        let bytes = wire::encode(&SignedAddresses { body, signature })
            .map_err(|e| AddressError::Malformed(e.to_string()))?;
        verify_addresses(&bytes)?;
        Ok(bytes)
    }
}

/// Checks an encoded [`SignedAddresses`]: its size, its signature (strict,
/// before the body is parsed) and its form. Returns what it says and who
/// said it.
pub fn verify_addresses(bytes: &[u8]) -> Result<(DeviceId, Addresses), AddressError> {
    if bytes.len() > MAX_ADDRESSES_BYTES {
        return Err(AddressError::TooLarge(bytes.len()));
    }
    let signed: SignedAddresses =
        wire::decode(bytes).map_err(|e| AddressError::Malformed(e.to_string()))?;
    // The device key is the body's first 32 bytes (postcard writes a
    // fixed array as is): the signature is checked before anything else
    // in the body is parsed.
    let device: [u8; 32] = signed
        .body
        .get(..32)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| AddressError::Malformed("too short".into()))?;
    let key = VerifyingKey::from_bytes(&device).map_err(|_| AddressError::BadKey)?;
    let sig: [u8; 64] = signed
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| AddressError::BadSignature)?;
    key.verify_strict(&signing_message(&signed.body), &Signature::from_bytes(&sig))
        .map_err(|_| AddressError::BadSignature)?;
    let addresses: Addresses =
        wire::decode(&signed.body).map_err(|e| AddressError::Malformed(e.to_string()))?;
    if addresses.device != device {
        return Err(AddressError::Malformed("the device does not match".into()));
    }
    check_form(&addresses)?;
    Ok((DeviceId(device), addresses))
}

fn check_form(a: &Addresses) -> Result<(), AddressError> {
    if a.direct.len() > MAX_DIRECT_ADDRS {
        return Err(AddressError::TooManyAddrs(a.direct.len()));
    }
    if let Some(bad) = a
        .direct
        .iter()
        .find(|d| d.parse::<std::net::SocketAddr>().is_err())
    {
        return Err(AddressError::BadAddr(bad.chars().take(64).collect()));
    }
    if let Some(relay) = &a.relay
        && (relay.len() > MAX_RELAY_URL
            || !(relay.starts_with("https://") || relay.starts_with("http://")))
    {
        return Err(AddressError::BadRelay);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> DeviceKey {
        DeviceKey::from_secret([n; 32])
    }

    #[test]
    fn a_signed_announcement_reads_back_with_its_device() {
        let k = key(1);
        let bytes = k
            .sign_addresses(
                vec!["10.0.0.2:4433".into(), "[fe80::1]:4433".into()],
                Some("https://relay.example/".into()),
                1_700_000_000_000,
            )
            .expect("sign");
        let (device, a) = verify_addresses(&bytes).expect("verify");
        assert_eq!(device, k.device_id());
        assert_eq!(a.direct, ["10.0.0.2:4433", "[fe80::1]:4433"]);
        assert_eq!(a.relay.as_deref(), Some("https://relay.example/"));
        assert_eq!(a.at_ms, 1_700_000_000_000);
    }

    fn tampered(edit: impl FnOnce(&mut Addresses)) -> Vec<u8> {
        let bytes = key(1)
            .sign_addresses(vec!["10.0.0.2:4433".into()], None, 5)
            .expect("sign");
        let mut signed: SignedAddresses = wire::decode(&bytes).expect("decode");
        let mut a: Addresses = wire::decode(&signed.body).expect("body");
        edit(&mut a);
        signed.body = wire::encode(&a).expect("encode");
        wire::encode(&signed).expect("encode")
    }

    #[test]
    fn a_changed_address_time_or_device_breaks_the_signature() {
        let moved = tampered(|a| a.direct = vec!["203.0.113.9:4433".into()]);
        assert_eq!(verify_addresses(&moved), Err(AddressError::BadSignature));
        let newer = tampered(|a| a.at_ms += 1);
        assert_eq!(verify_addresses(&newer), Err(AddressError::BadSignature));
        let other = tampered(|a| a.device = key(2).device_id().0);
        assert_eq!(verify_addresses(&other), Err(AddressError::BadSignature));
    }

    #[test]
    fn a_signature_over_a_change_is_not_one_over_addresses() {
        // Same key, same bytes signed without the addresses context.
        let k = key(1);
        let bytes = k.sign_addresses(vec![], None, 5).expect("sign");
        let mut signed: SignedAddresses = wire::decode(&bytes).expect("decode");
        signed.signature = k.0.sign(&signed.body).to_bytes().to_vec();
        let forged = wire::encode(&signed).expect("encode");
        assert_eq!(verify_addresses(&forged), Err(AddressError::BadSignature));
    }

    #[test]
    fn oversized_malformed_and_overlong_announcements_are_refused() {
        assert_eq!(
            verify_addresses(&vec![0u8; MAX_ADDRESSES_BYTES + 1]),
            Err(AddressError::TooLarge(MAX_ADDRESSES_BYTES + 1))
        );
        assert!(matches!(
            verify_addresses(b"\x01\x02"),
            Err(AddressError::Malformed(_))
        ));
        // A signer cannot list more than the limit: it is cut.
        let many: Vec<String> = (0..20).map(|i| format!("10.0.0.{i}:1")).collect();
        let bytes = key(1).sign_addresses(many, None, 5).expect("sign");
        assert_eq!(
            verify_addresses(&bytes).expect("verify").1.direct.len(),
            MAX_DIRECT_ADDRS
        );
        assert_eq!(
            key(1).sign_addresses(vec!["not an address".into()], None, 5),
            Err(AddressError::BadAddr("not an address".into()))
        );
        assert_eq!(
            key(1).sign_addresses(vec![], Some("ftp://x".into()), 5),
            Err(AddressError::BadRelay)
        );
    }
}
