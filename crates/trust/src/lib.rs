//! Keys and signatures: who wrote a change, and whether to believe it.
//!
//! A device key is ed25519. Its public half is the device id, the Automerge
//! actor id of every change the device writes, and (later) its iroh node id.
//! Sans-IO: the caller stores and loads the secret bytes.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rapport_model::automerge::{ActorId, Change, ChangeHash};
use rapport_proto::{AUTHOR_LEN, SignedChange, hex};

pub mod addresses;
pub mod policy;

pub use addresses::{AddressError, verify_addresses};

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
///
/// The signature is checked first, over the hash of the bytes as received
/// (see [`chunk_hash`]), so that Automerge never parses bytes nobody
/// signed. Compressed change chunks are refused before anything inflates
/// them: Rapport never sends one, and a megabyte of deflate can expand to
/// a gigabyte.
pub fn verify_change(signed: &SignedChange) -> Result<Change, VerifyError> {
    let hash = chunk_hash(&signed.change)?;
    let key = VerifyingKey::from_bytes(&signed.author).map_err(|_| VerifyError::BadKey)?;
    let sig = Signature::from_bytes(&signed.signature);
    key.verify_strict(&signing_message(&hash), &sig)
        .map_err(|_| VerifyError::BadSignature)?;
    let change = parse_change(&signed.change)?;
    if change.hash() != hash {
        return Err(VerifyError::Malformed(
            "its hash is not the hash of its bytes".into(),
        ));
    }
    if DeviceId::from_actor(change.actor_id()) != Some(DeviceId(signed.author)) {
        return Err(VerifyError::ActorMismatch);
    }
    Ok(change)
}

/// Automerge's magic bytes, which start every chunk.
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Chunk type of an uncompressed change.
const CHUNK_CHANGE: u8 = 1;
/// Chunk type of a deflated change.
const CHUNK_COMPRESSED: u8 = 2;

/// The Automerge hash of an uncompressed change chunk, computed from its
/// bytes alone (SHA-256 of chunk type, length and data, which is what
/// Automerge hashes) without parsing or inflating anything.
pub fn chunk_hash(bytes: &[u8]) -> Result<ChangeHash, VerifyError> {
    use sha2::{Digest, Sha256};
    let malformed = |m: &str| VerifyError::Malformed(m.to_string());
    if bytes.len() < 10 || bytes[..4] != CHUNK_MAGIC {
        return Err(malformed("it is not an Automerge chunk"));
    }
    match bytes[8] {
        CHUNK_CHANGE => {}
        CHUNK_COMPRESSED => {
            return Err(malformed(
                "it is a compressed change, which Rapport does not accept",
            ));
        }
        _ => return Err(malformed("it is not a change")),
    }
    // The data length, LEB128: it must say exactly what follows.
    let (mut len, mut shift, mut at) = (0u64, 0u32, 9usize);
    loop {
        let b = *bytes
            .get(at)
            .ok_or_else(|| malformed("its length is cut short"))?;
        at += 1;
        if shift > 56 {
            return Err(malformed("its length does not fit"));
        }
        len |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    if (bytes.len() - at) as u64 != len {
        return Err(malformed("its length does not match its bytes"));
    }
    Ok(ChangeHash(Sha256::digest(&bytes[8..]).into()))
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
            Some(VerifyError::BadSignature)
        );
        // Signed by one key, written under another's actor id.
        let relabelled = signed_bytes(&other, good.change.clone());
        assert_eq!(
            verify_change(&relabelled).err(),
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
        let signed = signed_bytes(&key, bytes);
        assert!(matches!(
            verify_change(&signed),
            Err(VerifyError::Malformed(_))
        ));
    }

    /// Signs raw chunk bytes as their author would, whatever they hold.
    fn signed_bytes(key: &DeviceKey, bytes: Vec<u8>) -> SignedChange {
        let hash = chunk_hash(&bytes).expect("a change chunk");
        SignedChange {
            author: key.device_id().0,
            signature: key.0.sign(&signing_message(&hash)).to_bytes(),
            change: bytes,
        }
    }

    /// A deflated change is refused before anything inflates it, even with
    /// a valid signature over its hash: a small frame could otherwise make
    /// the node allocate a thousand times its size.
    #[test]
    fn a_compressed_change_is_refused_before_it_is_inflated() {
        let key = DeviceKey::from_secret([1; 32]);
        let mut doc = AutoCommit::new().with_actor(key.device_id().actor_id());
        doc.put(ROOT, "notes", "a".repeat(64 * 1024)).expect("put");
        doc.commit();
        let mut change = doc.get_last_local_change().expect("a change");
        let compressed = change.bytes().to_vec();
        assert_eq!(compressed[8], CHUNK_COMPRESSED, "Automerge deflated it");
        assert!(compressed.len() < 4096, "{} bytes", compressed.len());
        let signed = SignedChange {
            author: key.device_id().0,
            signature: key.0.sign(&signing_message(&change.hash())).to_bytes(),
            change: compressed,
        };
        assert!(matches!(
            verify_change(&signed),
            Err(VerifyError::Malformed(m)) if m.contains("compressed")
        ));
        // The same change as Rapport sends it verifies.
        assert!(verify_change(&key.sign_change(&change).expect("sign")).is_ok());
    }

    /// Bytes nobody signed never reach Automerge's parser: a forged
    /// signature is the answer, whatever the bytes would do to a parser.
    #[test]
    fn the_signature_is_checked_before_the_change_is_parsed() {
        let key = DeviceKey::from_secret([1; 32]);
        let mut bytes = change_by(&key).raw_bytes().to_vec();
        let len = bytes.len();
        bytes[len - 3..].copy_from_slice(&[0xff, 0xff, 0xff]);
        let mut forged = signed_bytes(&key, bytes.clone());
        forged.signature[0] ^= 1;
        assert_eq!(
            verify_change(&forged).err(),
            Some(VerifyError::BadSignature)
        );
        assert!(
            parse_change(&bytes).is_err(),
            "the bytes are garbage to Automerge too"
        );
        // A length that does not match the bytes is refused unparsed.
        let mut short = change_by(&key).raw_bytes().to_vec();
        short.pop();
        assert!(matches!(
            chunk_hash(&short),
            Err(VerifyError::Malformed(m)) if m.contains("length")
        ));
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let key = DeviceKey::from_secret([0xab; 32]);
        assert!(!format!("{key:?}").contains(&hex(&key.secret())));
    }
}
