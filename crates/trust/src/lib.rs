//! Keys and signatures: who wrote a change, and whether to believe it.
//!
//! A device key is ed25519. Its public half is the device id, the Automerge
//! actor id of every change the device writes, and (later) its iroh node id.
//! Sans-IO: the caller stores and loads the secret bytes.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rapport_model::automerge::{ActorId, Change, ChangeHash};
use rapport_proto::{AUTHOR_LEN, SignedChange, hex};

pub mod policy;

/// Prefix of every signed message, so that a change signature can never be
/// mistaken for (or replayed as) a signature over anything else.
const CHANGE_CONTEXT: &[u8] = b"rapport/change/v1\0";

/// A device's signing key. Its `Debug` output never shows the secret.
pub struct DeviceKey(SigningKey);

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceKey({})", self.device_id())
    }
}

/// A device's public identity: 32 bytes, shown as 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub [u8; AUTHOR_LEN]);

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl DeviceId {
    pub fn actor_id(&self) -> ActorId {
        ActorId::from(&self.0[..])
    }

    pub fn from_actor(actor: &ActorId) -> Option<Self> {
        <[u8; AUTHOR_LEN]>::try_from(actor.to_bytes())
            .ok()
            .map(DeviceId)
    }

    /// The first 12 hex digits: enough to tell devices apart in a table.
    pub fn short(&self) -> String {
        hex(&self.0[..6])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    #[error("a device key file must hold 32 bytes, found {0}")]
    BadLength(usize),
}

impl DeviceKey {
    pub fn generate() -> Result<Self, KeyError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_secret(secret))
    }

    pub fn from_secret(secret: [u8; 32]) -> Self {
        DeviceKey(SigningKey::from_bytes(&secret))
    }

    pub fn from_secret_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        let secret: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::BadLength(bytes.len()))?;
        Ok(Self::from_secret(secret))
    }

    /// The secret bytes, for the caller to store with owner-only access.
    pub fn secret(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn device_id(&self) -> DeviceId {
        DeviceId(self.0.verifying_key().to_bytes())
    }

    /// Signs an Automerge change this device wrote.
    pub fn sign_change(&self, change: &Change) -> Result<SignedChange, VerifyError> {
        let me = self.device_id();
        if DeviceId::from_actor(change.actor_id()) != Some(me) {
            return Err(VerifyError::ActorMismatch);
        }
        let sig = self.0.sign(&signing_message(&change.hash()));
        Ok(SignedChange {
            author: me.0,
            signature: sig.to_bytes(),
            change: change.raw_bytes().to_vec(),
        })
    }
}

/// The exact bytes a change signature covers: a context string and the
/// change's Automerge hash (which itself covers the change's bytes).
pub fn signing_message(hash: &ChangeHash) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHANGE_CONTEXT.len() + 32);
    m.extend_from_slice(CHANGE_CONTEXT);
    m.extend_from_slice(&hash.0);
    m
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the change bytes are not a valid Automerge change: {0}")]
    Malformed(String),
    #[error("the change's actor id is not the key that signed it")]
    ActorMismatch,
    #[error("the author is not a valid ed25519 public key")]
    BadKey,
    #[error("the signature does not match the change")]
    BadSignature,
}

/// Checks that `signed` is a well-formed Automerge change whose actor is its
/// author and whose signature verifies strictly. Returns the parsed change.
pub fn verify_change(signed: &SignedChange) -> Result<Change, VerifyError> {
    let change = parse_change(&signed.change)?;
    if DeviceId::from_actor(change.actor_id()) != Some(DeviceId(signed.author)) {
        return Err(VerifyError::ActorMismatch);
    }
    let key = VerifyingKey::from_bytes(&signed.author).map_err(|_| VerifyError::BadKey)?;
    let sig = Signature::from_bytes(&signed.signature);
    key.verify_strict(&signing_message(&change.hash()), &sig)
        .map_err(|_| VerifyError::BadSignature)?;
    Ok(change)
}

/// Parses untrusted change bytes. Automerge 0.12 panics on some (an op
/// counter above `u32::MAX`), and does not check a change's checksum when
/// parsing it, only when it loads a saved document holding the change
/// (which then fails to load); both are refused here as malformed.
pub fn parse_change(bytes: &[u8]) -> Result<Change, VerifyError> {
    let change = std::panic::catch_unwind(|| Change::from_bytes(bytes.to_vec()))
        .map_err(|_| VerifyError::Malformed("Automerge cannot parse it (it panicked)".into()))?
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    // The chunk header's checksum is the start of the change's hash.
    if bytes.get(4..8) != Some(&change.hash().0[..4]) {
        return Err(VerifyError::Malformed(
            "its checksum does not match its contents".into(),
        ));
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_model::automerge::{AutoCommit, ROOT, transaction::Transactable};

    fn change_by(key: &DeviceKey) -> Change {
        let mut doc = AutoCommit::new().with_actor(key.device_id().actor_id());
        doc.put(ROOT, "name", "Acme").expect("put");
        doc.commit();
        doc.get_last_local_change().expect("a change")
    }

    #[test]
    fn a_signed_change_verifies_and_names_its_author() {
        let key = DeviceKey::from_secret([1; 32]);
        let signed = key.sign_change(&change_by(&key)).expect("sign");
        let change = verify_change(&signed).expect("verifies");
        assert_eq!(
            DeviceId::from_actor(change.actor_id()),
            Some(key.device_id())
        );
    }

    #[test]
    fn tampering_is_detected() {
        let key = DeviceKey::from_secret([1; 32]);
        let other = DeviceKey::from_secret([2; 32]);
        let good = key.sign_change(&change_by(&key)).expect("sign");

        let mut bad_sig = good.clone();
        bad_sig.signature[0] ^= 1;
        assert_eq!(
            verify_change(&bad_sig).err(),
            Some(VerifyError::BadSignature)
        );

        let mut wrong_author = good.clone();
        wrong_author.author = other.device_id().0;
        assert_eq!(
            verify_change(&wrong_author).err(),
            Some(VerifyError::ActorMismatch)
        );

        let mut flipped = good.clone();
        let last = flipped.change.len() - 1;
        flipped.change[last] ^= 0xff;
        assert!(verify_change(&flipped).is_err());

        // A key cannot sign a change that names another actor.
        assert!(other.sign_change(&change_by(&key)).is_err());
    }

    /// Found by the fuzz targets (`tests/fuzz-corpus/ingest/crash-0a2ff3914c14031f.bin`):
    /// a node stored such a change, waiting for its dependencies, in a
    /// document that then failed to load ("bad checksum").
    #[test]
    fn a_change_whose_checksum_does_not_match_is_refused() {
        let key = DeviceKey::from_secret([1; 32]);
        let mut bytes = change_by(&key).raw_bytes().to_vec();
        bytes[4] ^= 1;
        let change = Change::from_bytes(bytes).expect("Automerge parses it anyway");
        let signed = key.sign_change(&change).expect("sign");
        assert!(matches!(
            verify_change(&signed),
            Err(VerifyError::Malformed(m)) if m.contains("checksum")
        ));
    }

    /// Found by the envelope fuzz target
    /// (`tests/fuzz-corpus/envelope/crash-646dcad4dff6c6f1.bin`).
    #[test]
    fn an_op_counter_beyond_u32_is_refused_without_a_panic() {
        use rapport_model::automerge::legacy::OpId;
        let key = DeviceKey::from_secret([1; 32]);
        let mut expanded = change_by(&key).decode();
        let beyond = u64::from(u32::MAX) + 5;
        expanded.operations[0].pred = vec![OpId(beyond, key.device_id().actor_id())].into();
        let bytes = Change::from(expanded).raw_bytes().to_vec();
        let signed = SignedChange {
            author: key.device_id().0,
            signature: [0; 64],
            change: bytes,
        };
        assert!(matches!(
            verify_change(&signed),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let key = DeviceKey::from_secret([0xab; 32]);
        assert!(!format!("{key:?}").contains(&hex(&key.secret())));
    }
}
