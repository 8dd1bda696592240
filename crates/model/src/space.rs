//! Spaces: the sharing scopes records live in.
//!
//! Every record names its space in its document (`"space"` at the root,
//! written at creation and never changed). The private space never leaves
//! the node. A shared space is itself an Automerge document, synced with
//! the space like any record; each of its changes is one signed membership
//! statement:
//!
//! ```text
//! { "rapport": 1, "kind": "space", "space": "<its own id>", "name": "...",
//!   "topic": <32 random bytes, renewed on every removal>,
//!   "members": { "<device hex>": { "role", "user", "org", "added_by", "at" } },
//!   "removed": { "<device hex>": { "by", "at", "cutoff": <bytes> } },
//!   "schema.<device hex>.<n>": "<a schema statement, JSON>", ... }
//! ```
//!
//! Schema statements ([`crate::custom`]) are root keys of their own, one
//! per statement and named after their author, so that two admins writing
//! at once never compete for a key (a shared map created by both would
//! hide one's entries).
//!
//! Entries are written once and never edited: a removal is a new entry in
//! `removed`, not a change to `members`. This module reads and writes the
//! layout; which statements count is decided in `rapport-trust`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ChangeHash, ObjType, ROOT, ReadDoc, ScalarValue};
use jiff::Timestamp;

use crate::doc::{DocError, LAYOUT_VERSION};
use crate::id::RecordId;

/// Which space a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum SpaceId {
    /// This node's own records; never sent to anyone.
    #[default]
    Private,
    Shared(RecordId),
}

pub const PRIVATE: &str = "private";

impl fmt::Display for SpaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpaceId::Private => f.write_str(PRIVATE),
            SpaceId::Shared(id) => id.fmt(f),
        }
    }
}

impl FromStr for SpaceId {
    type Err = crate::id::InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == PRIVATE {
            return Ok(SpaceId::Private);
        }
        s.parse().map(SpaceId::Shared)
    }
}

impl serde::Serialize for SpaceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SpaceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a member may do in a space.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages membership; writes records.
    Admin,
    /// Writes records.
    Writer,
    /// Reads records.
    Reader,
    /// Stores and forwards the space's changes; authors none.
    Relay,
    /// Reads records and answers data-protection requests: exports a
    /// person's data and erases it; writes no record.
    Privacy,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Writer,
        Role::Reader,
        Role::Relay,
        Role::Privacy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Relay => "relay",
            Role::Privacy => "privacy",
        }
    }

    /// May author record changes.
    pub fn writes_records(self) -> bool {
        matches!(self, Role::Admin | Role::Writer)
    }

    /// May erase records (an erase statement, see [`add_erasure`]).
    pub fn erases(self) -> bool {
        matches!(self, Role::Admin | Role::Privacy)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown role `{s}`: use admin, writer, reader, relay or privacy")
            })
    }
}

/// A member entry: an admin's signed statement that a device belongs to
/// a user of an organisation and holds a role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// Hex of the member device's public key.
    pub device: String,
    pub role: Role,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub org: String,
    /// Hex of the admin device that added it (the creator adds itself).
    pub added_by: String,
    /// Seconds since the Unix epoch.
    pub since: i64,
    /// Where the device listened when it joined (`ip:port`), so that
    /// members can reach one another (and an always-on relay) without
    /// having met.
    #[serde(default)]
    pub addrs: Vec<String>,
}

/// A removal entry. `cutoff` names, per record, the removed device's last
/// change the remover had; its later changes are refused (see
/// `docs/PROTOCOL.md`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Removal {
    pub device: String,
    /// Hex of the admin device that removed it.
    pub by: String,
    /// Seconds since the Unix epoch.
    pub at: i64,
    pub cutoff: Vec<(RecordId, [u8; 32])>,
}

/// The raw content of a space document at some point of its history,
/// before any authorization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpaceState {
    /// `None` when the document has no id (an empty history).
    pub id: Option<RecordId>,
    pub kind: Option<String>,
    pub name: String,
    pub topic: Option<Vec<u8>>,
    pub members: BTreeMap<String, Member>,
    /// Removal entries by removed device, each keyed by its entry's
    /// object in the document. A device has more than one entry when
    /// admins removed it concurrently (Automerge keeps every conflicting
    /// entry); the rules pick the one that counts. See [`read_state`] for
    /// whose writes an entry is read from.
    pub removed: BTreeMap<String, BTreeMap<automerge::ObjId, Removal>>,
    /// Schema statements by key (`schema.<author>.<n>`), as JSON text.
    pub schema: BTreeMap<String, String>,
    /// Erase statements by key (`erase.<author>.<n>`), as JSON text.
    pub erasures: BTreeMap<String, String>,
    /// Rebase statements by key (`rebase.<author>.<n>`), as JSON text.
    pub rebases: BTreeMap<String, String>,
    /// Receipts of erasures by key (`receipt.<device>.<erasure>`), with
    /// when the device applied it (seconds since the Unix epoch).
    pub receipts: BTreeMap<String, i64>,
}

impl SpaceState {
    /// Whether `device` has a removal entry, whoever wrote it.
    pub fn is_removed(&self, device_hex: &str) -> bool {
        self.removed.get(device_hex).is_some_and(|e| !e.is_empty())
    }

    /// The removal entry held in object `entry`, if it is one of
    /// `device`'s.
    pub fn removal(&self, device_hex: &str, entry: &automerge::ObjId) -> Option<&Removal> {
        self.removed.get(device_hex)?.get(entry)
    }
}

/// The device that created a removal entry's object: the only one whose
/// writes inside it count (see [`read_state`]).
pub fn entry_owner(entry: &automerge::ObjId) -> Option<&ActorId> {
    match entry {
        automerge::ObjId::Id(_, actor, _) => Some(actor),
        automerge::ObjId::Root => None,
    }
}

/// A shared space as users see it, after authorization.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpaceView {
    pub id: RecordId,
    pub name: String,
    /// Secret shared by current members; the gossip topic derives from it.
    #[serde(default)]
    pub topic: Vec<u8>,
    /// Current members.
    pub members: BTreeMap<String, Member>,
    /// Former members: their entry and their removal.
    #[serde(default)]
    pub removed: BTreeMap<String, (Member, Removal)>,
    /// Accepted schema statements, in the order the rules settle them.
    #[serde(default)]
    pub schema: Vec<crate::custom::SchemaEntry>,
    /// Accepted erase statements, in the order the rules settle them.
    #[serde(default)]
    pub erasures: Vec<Erasure>,
    /// Accepted rebase statements (field-level erasures), in the order
    /// the rules settle them.
    #[serde(default)]
    pub rebases: Vec<Rebase>,
    /// Accepted receipts: per erasure id, the devices that applied it
    /// and when (seconds since the Unix epoch).
    #[serde(default)]
    pub receipts: BTreeMap<String, BTreeMap<String, i64>>,
}

impl SpaceView {
    pub fn is_member(&self, device_hex: &str) -> bool {
        self.members.contains_key(device_hex)
    }

    pub fn role_of(&self, device_hex: &str) -> Option<Role> {
        self.members.get(device_hex).map(|m| m.role)
    }

    /// The accepted erasure that erases `record`, if any.
    pub fn erasure_of(&self, record: RecordId) -> Option<&Erasure> {
        self.erasures.iter().find(|e| e.ids.contains(&record))
    }

    /// The rebase that counts for `record` (the last accepted), if any.
    pub fn rebase_of(&self, record: RecordId) -> Option<&Rebase> {
        self.rebases.iter().rev().find(|r| r.record == record)
    }

    /// The entry of a device, current or former.
    pub fn entry(&self, device_hex: &str) -> Option<&Member> {
        self.members
            .get(device_hex)
            .or_else(|| self.removed.get(device_hex).map(|(m, _)| m))
    }
}

/// Who a device says it is, certified by the admin who adds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub user: String,
    pub org: String,
}

/// The id of a new space created by `creator`: its random part begins
/// with a digest of the creator's key, so nobody else can write a first
/// change for it (see `creator_matches`).
pub fn new_space_id(creator: &[u8], unix_ms: u64, random: [u8; 2]) -> RecordId {
    bound_id(SPACE_ID_CONTEXT, creator, unix_ms, random)
}

/// Whether `creator` is the device that space `id` was created by.
pub fn creator_matches(id: RecordId, creator: &[u8]) -> bool {
    id.to_bytes()[6..14] == creator_digest(SPACE_ID_CONTEXT, creator)
}

/// The id of a new record created by `creator`, bound to it like a space
/// id (under another context, so that no record id is a space id): only
/// the creator can write a record's first change, so nobody can take an
/// id they learnt from another space (see `record_creator_matches`).
pub fn new_record_id(creator: &[u8], unix_ms: u64, random: [u8; 2]) -> RecordId {
    bound_id(RECORD_ID_CONTEXT, creator, unix_ms, random)
}

/// Whether `creator` is the device that record `id` was created by.
pub fn record_creator_matches(id: RecordId, creator: &[u8]) -> bool {
    id.to_bytes()[6..14] == creator_digest(RECORD_ID_CONTEXT, creator)
}

const SPACE_ID_CONTEXT: &[u8] = b"rapport/space-id/v1\0";
const RECORD_ID_CONTEXT: &[u8] = b"rapport/record-id/v1\0";

fn bound_id(context: &[u8], creator: &[u8], unix_ms: u64, random: [u8; 2]) -> RecordId {
    let d = creator_digest(context, creator);
    let mut r = [0u8; 10];
    r[..8].copy_from_slice(&d);
    r[8..].copy_from_slice(&random);
    RecordId::new(unix_ms, r)
}

fn creator_digest(context: &[u8], creator: &[u8]) -> [u8; 8] {
    // Forging a first change must cost a 64-bit preimage search.
    let d = sha256(&[context, creator]);
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A new space document, created by `creator` (who becomes its first
/// admin). `id` must come from [`new_space_id`] for the creator.
pub fn create_space(
    actor: ActorId,
    id: RecordId,
    name: &str,
    who: &Identity,
    topic: [u8; 32],
    time: Timestamp,
) -> Result<AutoCommit, DocError> {
    let creator = hex(&actor);
    let mut doc = AutoCommit::new().with_actor(actor);
    doc.put(ROOT, "rapport", LAYOUT_VERSION)?;
    doc.put(ROOT, "kind", "space")?;
    doc.put(ROOT, "space", id.to_string())?;
    doc.put(ROOT, "name", name)?;
    doc.put(ROOT, "topic", ScalarValue::Bytes(topic.to_vec()))?;
    doc.put_object(ROOT, "members", ObjType::Map)?;
    doc.put_object(ROOT, "removed", ObjType::Map)?;
    put_member(
        &mut doc,
        &Member {
            device: creator.clone(),
            role: Role::Admin,
            user: who.user.clone(),
            org: who.org.clone(),
            added_by: creator,
            since: time.as_second(),
            addrs: Vec::new(),
        },
    )?;
    commit(&mut doc, "create space", time);
    Ok(doc)
}

fn commit(doc: &mut AutoCommit, message: &str, time: Timestamp) {
    doc.commit_with(
        CommitOptions::default()
            .with_message(message.to_string())
            .with_time(time.as_second()),
    );
}

/// Adds a member, as one change by the document's actor.
pub fn add_member(doc: &mut AutoCommit, member: &Member, time: Timestamp) -> Result<(), DocError> {
    put_member(doc, member)?;
    commit(doc, "add member", time);
    Ok(())
}

/// The prefix of a schema statement's key.
pub const SCHEMA_KEY: &str = "schema.";

/// The author a schema statement's key names (`schema.<hex>.<n>`).
pub fn schema_key_author(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(SCHEMA_KEY)?;
    let (author, n) = rest.split_once('.')?;
    n.parse::<u64>().ok().map(|_| author)
}

/// Adds a schema statement, as one change by the document's actor.
pub fn add_schema_change(
    doc: &mut AutoCommit,
    change: &crate::custom::SchemaChange,
    time: Timestamp,
) -> Result<(), DocError> {
    let author = doc.get_actor().to_hex_string();
    let own = doc
        .keys(ROOT)
        .filter(|k| schema_key_author(k) == Some(author.as_str()))
        .count();
    let json = serde_json::to_string(change)
        .map_err(|_| DocError::NotARecord("a schema statement that does not encode"))?;
    doc.put(ROOT, format!("{SCHEMA_KEY}{author}.{own}"), json)?;
    commit(doc, &change.describe(), time);
    Ok(())
}

/// The prefix of an erase statement's key: `erase.<author>.<n>`; the
/// erasure's id is what follows the prefix.
pub const ERASE_KEY: &str = "erase.";

/// The prefix of a receipt's key: `receipt.<device>.<erasure id>`.
pub const RECEIPT_KEY: &str = "receipt.";

/// Records one erase statement may name: 10,000 ids of 26 characters stay
/// well under the 1 MiB limit on a change.
pub const MAX_ERASED_IDS: usize = 10_000;

/// Characters of an erasure's reason.
pub const MAX_REASON_CHARS: usize = 500;

/// What an erase statement says: which records every member must erase,
/// and why. Never the personal data itself: ids and a reason only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EraseStatement {
    pub ids: Vec<RecordId>,
    pub reason: String,
}

impl EraseStatement {
    /// Whether the rules may accept it.
    pub fn validate(&self) -> Result<(), String> {
        if self.ids.is_empty() {
            return Err("an erase statement names no record".into());
        }
        if self.ids.len() > MAX_ERASED_IDS {
            return Err(format!(
                "an erase statement names {} records (at most {MAX_ERASED_IDS})",
                self.ids.len()
            ));
        }
        if self.reason.trim().is_empty() {
            return Err("an erase statement gives no reason".into());
        }
        if self.reason.chars().count() > MAX_REASON_CHARS {
            return Err(format!(
                "an erasure's reason is longer than {MAX_REASON_CHARS} characters"
            ));
        }
        Ok(())
    }
}

/// An accepted erase statement, as members see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Erasure {
    /// `<author>.<n>`: the statement's key without its prefix.
    pub id: String,
    /// Hex of the device that erased.
    pub by: String,
    /// Seconds since the Unix epoch.
    pub at: i64,
    pub ids: Vec<RecordId>,
    pub reason: String,
}

impl Erasure {
    /// The short form people type: the author's first 8 hex digits and
    /// the statement's number (`1a2b3c4d.0`).
    pub fn short_id(&self) -> String {
        short_erasure_id(&self.id)
    }
}

/// The short form of an erasure id (see [`Erasure::short_id`]).
pub fn short_erasure_id(id: &str) -> String {
    match id.split_once('.') {
        Some((author, n)) => format!("{}.{n}", author.get(..8).unwrap_or(author)),
        None => id.to_string(),
    }
}

/// The prefix of a rebase statement's key: `rebase.<author>.<n>`.
pub const REBASE_KEY: &str = "rebase.";

/// Changes a rebuilt history may hold (32-byte hashes as hex: 4,096 of
/// them stay far under the limit on a change).
pub const MAX_CHAIN: usize = 4_096;

/// A field-level erasure: record `record` is rebuilt without `fields`,
/// as the changes `chain` (hashes, hex, oldest first), written by the
/// statement's author. Every node drops the record's other changes and
/// keeps the chain and what builds on it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RebaseStatement {
    pub record: RecordId,
    pub chain: Vec<String>,
    pub fields: Vec<String>,
    pub reason: String,
}

impl RebaseStatement {
    pub fn validate(&self) -> Result<(), String> {
        if self.chain.is_empty() || self.chain.len() > MAX_CHAIN {
            return Err(format!(
                "a rebuilt history of {} changes (1 to {MAX_CHAIN})",
                self.chain.len()
            ));
        }
        if self
            .chain
            .iter()
            .any(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err("a rebuilt history names a change that is no hash".into());
        }
        if self.fields.is_empty() {
            return Err("a rebase erases no field".into());
        }
        EraseStatement {
            ids: vec![self.record],
            reason: self.reason.clone(),
        }
        .validate()
    }
}

/// An accepted rebase statement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rebase {
    /// `<author>.<n>`.
    pub id: String,
    pub by: String,
    pub at: i64,
    pub record: RecordId,
    /// The rebuilt history's change hashes, oldest first.
    pub chain: Vec<[u8; 32]>,
    pub fields: Vec<String>,
    pub reason: String,
}

/// Adds a rebase statement, as one change by the document's actor;
/// returns its id.
pub fn add_rebase(
    doc: &mut AutoCommit,
    statement: &RebaseStatement,
    time: Timestamp,
) -> Result<String, DocError> {
    let author = doc.get_actor().to_hex_string();
    let own = erasures_by(doc, &author);
    let json = serde_json::to_string(statement)
        .map_err(|_| DocError::NotARecord("a rebase statement that does not encode"))?;
    let id = format!("{author}.{own}");
    doc.put(ROOT, format!("{REBASE_KEY}{id}"), json)?;
    commit(doc, "erase a field", time);
    Ok(id)
}

/// How many erase and rebase statements `author` wrote: the number of
/// its next one. One count for both, so that an erasure id names one
/// statement (receipts are keyed by it).
fn erasures_by(doc: &AutoCommit, author: &str) -> usize {
    doc.keys(ROOT)
        .filter(|k| {
            k.strip_prefix(ERASE_KEY)
                .or_else(|| k.strip_prefix(REBASE_KEY))
                .and_then(|r| r.split_once('.'))
                .is_some_and(|(a, _)| a == author)
        })
        .count()
}

/// The author an erase statement's key names (`erase.<hex>.<n>`).
pub fn erase_key_author(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(ERASE_KEY)?;
    let (author, n) = rest.split_once('.')?;
    n.parse::<u64>().ok().map(|_| author)
}

/// The device and the erasure id a receipt's key names.
pub fn receipt_key_parts(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(RECEIPT_KEY)?.split_once('.')
}

/// Adds an erase statement, as one change by the document's actor;
/// returns the erasure's id.
pub fn add_erasure(
    doc: &mut AutoCommit,
    statement: &EraseStatement,
    time: Timestamp,
) -> Result<String, DocError> {
    let author = doc.get_actor().to_hex_string();
    let own = erasures_by(doc, &author);
    let json = serde_json::to_string(statement)
        .map_err(|_| DocError::NotARecord("an erase statement that does not encode"))?;
    let id = format!("{author}.{own}");
    doc.put(ROOT, format!("{ERASE_KEY}{id}"), json)?;
    commit(doc, "erase records", time);
    Ok(id)
}

/// Adds this device's receipt of erasure `erasure` (applied at `time`),
/// as one change by the document's actor.
pub fn add_receipt(doc: &mut AutoCommit, erasure: &str, time: Timestamp) -> Result<(), DocError> {
    let author = doc.get_actor().to_hex_string();
    doc.put(
        ROOT,
        format!("{RECEIPT_KEY}{author}.{erasure}"),
        ScalarValue::Timestamp(time.as_second() * 1000),
    )?;
    commit(doc, "erasure applied", time);
    Ok(())
}

/// Entries of a removal's cutoff one change carries: 16,384 × 48 bytes
/// stays well under the 1 MiB limit on a change, however many records the
/// removed device wrote.
pub const CUTOFF_PER_CHANGE: usize = 16_384;

/// Removes devices and renews the topic secret. The first change holds
/// every removal with the first [`CUTOFF_PER_CHANGE`] entries of its
/// cutoff; each further part of a cutoff follows in a change of its own
/// (key `cutoff.N` of the removal), so a removal never outgrows a change.
/// A cutoff lists records in id order.
pub fn remove_members(
    doc: &mut AutoCommit,
    removals: &[Removal],
    topic: [u8; 32],
    time: Timestamp,
) -> Result<(), DocError> {
    let removed = map_of(doc, "removed")?;
    // One budget of entries per change, shared by all the removals.
    let mut budget = CUTOFF_PER_CHANGE;
    let mut rest = Vec::new();
    for r in removals {
        let m = doc.put_object(&removed, r.device.as_str(), ObjType::Map)?;
        doc.put(&m, "by", r.by.as_str())?;
        doc.put(&m, "at", ScalarValue::Timestamp(r.at * 1000))?;
        let first = r.cutoff.len().min(budget);
        budget -= first;
        doc.put(
            &m,
            "cutoff",
            ScalarValue::Bytes(cutoff_bytes(&r.cutoff[..first])),
        )?;
        if first < r.cutoff.len() {
            rest.push((m, &r.cutoff[first..]));
        }
    }
    doc.put(ROOT, "topic", ScalarValue::Bytes(topic.to_vec()))?;
    commit(doc, "remove members", time);
    for (m, entries) in rest {
        for (k, part) in entries.chunks(CUTOFF_PER_CHANGE).enumerate() {
            doc.put(
                &m,
                format!("cutoff.{}", k + 1),
                ScalarValue::Bytes(cutoff_bytes(part)),
            )?;
            commit(doc, "removal cutoff", time);
        }
    }
    Ok(())
}

fn cutoff_bytes(entries: &[(RecordId, [u8; 32])]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(entries.len() * 48);
    for (record, hash) in entries {
        bytes.extend_from_slice(&record.to_bytes());
        bytes.extend_from_slice(hash);
    }
    bytes
}

fn map_of(doc: &AutoCommit, key: &str) -> Result<automerge::ObjId, DocError> {
    match doc.get(ROOT, key)? {
        Some((automerge::Value::Object(ObjType::Map), id)) => Ok(id),
        _ => Err(DocError::NotARecord("space document without its maps")),
    }
}

fn put_member(doc: &mut AutoCommit, member: &Member) -> Result<(), DocError> {
    let members = map_of(doc, "members")?;
    let m = doc.put_object(&members, member.device.as_str(), ObjType::Map)?;
    doc.put(&m, "role", member.role.as_str())?;
    doc.put(&m, "user", member.user.as_str())?;
    doc.put(&m, "org", member.org.as_str())?;
    doc.put(&m, "added_by", member.added_by.as_str())?;
    doc.put(&m, "at", ScalarValue::Timestamp(member.since * 1000))?;
    doc.put(&m, "addrs", member.addrs.join(" "))?;
    Ok(())
}

fn hex(actor: &ActorId) -> String {
    actor.to_hex_string()
}

/// Reads the document as it was at `heads` (now, if `None`).
struct At<'a, D> {
    doc: &'a D,
    heads: Option<&'a [ChangeHash]>,
}

impl<D: ReadDoc> At<'_, D> {
    fn get(
        &self,
        obj: &automerge::ObjId,
        key: &str,
    ) -> Option<(automerge::Value<'_>, automerge::ObjId)> {
        match self.heads {
            Some(h) => self.doc.get_at(obj, key, h).ok()?,
            None => self.doc.get(obj, key).ok()?,
        }
    }

    fn get_all(
        &self,
        obj: &automerge::ObjId,
        key: &str,
    ) -> Vec<(automerge::Value<'_>, automerge::ObjId)> {
        match self.heads {
            Some(h) => self.doc.get_all_at(obj, key, h),
            None => self.doc.get_all(obj, key),
        }
        .unwrap_or_default()
    }

    /// The value of `key` as `actor` last wrote it, ignoring every other
    /// author's write to the same key (concurrent or not).
    fn scalar_by(&self, obj: &automerge::ObjId, key: &str, actor: &ActorId) -> Option<ScalarValue> {
        // In op order, so the last is the one Automerge would pick among
        // the actor's own writes.
        self.get_all(obj, key)
            .into_iter()
            .rev()
            .find_map(|(v, op)| match (v, entry_owner(&op)) {
                (automerge::Value::Scalar(s), Some(a)) if a == actor => Some(s.into_owned()),
                _ => None,
            })
    }

    fn keys(&self, obj: &automerge::ObjId) -> Vec<String> {
        match self.heads {
            Some(h) => self.doc.keys_at(obj, h).collect(),
            None => self.doc.keys(obj).collect(),
        }
    }

    fn map(&self, obj: &automerge::ObjId, key: &str) -> Option<automerge::ObjId> {
        match self.get(obj, key)? {
            (automerge::Value::Object(ObjType::Map), id) => Some(id),
            _ => None,
        }
    }

    fn scalar(&self, obj: &automerge::ObjId, key: &str) -> Option<ScalarValue> {
        match self.get(obj, key)? {
            (automerge::Value::Scalar(s), _) => Some(s.into_owned()),
            _ => None,
        }
    }

    fn str(&self, obj: &automerge::ObjId, key: &str) -> Option<String> {
        match self.scalar(obj, key)? {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        }
    }

    fn seconds(&self, obj: &automerge::ObjId, key: &str) -> i64 {
        match self.scalar(obj, key) {
            Some(ScalarValue::Timestamp(ms)) => ms.div_euclid(1000),
            _ => 0,
        }
    }

    fn bytes(&self, obj: &automerge::ObjId, key: &str) -> Option<Vec<u8>> {
        match self.scalar(obj, key)? {
            ScalarValue::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// One removal entry, read from its owner's writes only (the device that
/// created the entry's object; an honest entry's `by`): another admin can
/// write keys into someone else's entry (Automerge lets anyone write
/// anywhere), say a `cutoff.5` past the parts that exist so far, and
/// those writes must never be read as the remover's. (A write that
/// replaces one of the owner's hides the owner's value, so the entry reads
/// differently; the rules refuse that as an edit.) The rules also refuse
/// a change that writes in another's entry at all (`rapport-trust`).
fn read_removal<D: ReadDoc>(
    at: &At<'_, D>,
    entry: &automerge::ObjId,
    device: &str,
) -> Option<Removal> {
    let owner = entry_owner(entry)?;
    let by = match at.scalar_by(entry, "by", owner) {
        Some(ScalarValue::Str(s)) => s.to_string(),
        _ => String::new(),
    };
    let seconds = match at.scalar_by(entry, "at", owner) {
        Some(ScalarValue::Timestamp(ms)) => ms.div_euclid(1000),
        _ => 0,
    };
    let bytes_of = |key: &str| match at.scalar_by(entry, key, owner) {
        Some(ScalarValue::Bytes(b)) => Some(b),
        _ => None,
    };
    // `cutoff`, then `cutoff.1`, `cutoff.2`... while they follow on.
    let mut bytes = bytes_of("cutoff").unwrap_or_default();
    for k in 1.. {
        match bytes_of(&format!("cutoff.{k}")) {
            Some(more) => bytes.extend_from_slice(&more),
            None => break,
        }
    }
    let cutoff = bytes
        .chunks_exact(48)
        .map(|c| {
            let mut id = [0u8; 16];
            id.copy_from_slice(&c[..16]);
            let mut h = [0u8; 32];
            h.copy_from_slice(&c[16..]);
            (RecordId::from_bytes(id), h)
        })
        .collect();
    Some(Removal {
        device: device.to_string(),
        by,
        at: seconds,
        cutoff,
    })
}

fn get_str(doc: &AutoCommit, obj: &automerge::ObjId, key: &str) -> Option<String> {
    At { doc, heads: None }.str(obj, key)
}

/// The space a document says it belongs to (records and space documents
/// alike); documents from before spaces existed are private.
pub fn space_of(doc: &AutoCommit) -> Result<SpaceId, DocError> {
    match get_str(doc, &ROOT, "space") {
        None => Ok(SpaceId::Private),
        Some(s) => s
            .parse()
            .map_err(|_| DocError::NotARecord("malformed space id")),
    }
}

/// Whether a document is a space document.
pub fn is_space_doc(doc: &AutoCommit) -> bool {
    get_str(doc, &ROOT, "kind").as_deref() == Some("space")
}

/// Reads a space document's raw content as of `heads` (or now). Malformed
/// entries are skipped; authorization decides what counts.
pub fn read_state<D: ReadDoc>(doc: &D, heads: Option<&[ChangeHash]>) -> SpaceState {
    let at = At { doc, heads };
    let mut state = SpaceState {
        id: at.str(&ROOT, "space").and_then(|s| s.parse().ok()),
        kind: at.str(&ROOT, "kind"),
        name: at.str(&ROOT, "name").unwrap_or_default(),
        topic: at.bytes(&ROOT, "topic"),
        ..SpaceState::default()
    };
    if let Some(m) = at.map(&ROOT, "members") {
        for device in at.keys(&m) {
            let Some(e) = at.map(&m, &device) else {
                continue;
            };
            let Some(role) = at.str(&e, "role").and_then(|r| r.parse().ok()) else {
                continue;
            };
            state.members.insert(
                device.clone(),
                Member {
                    device,
                    role,
                    user: at.str(&e, "user").unwrap_or_default(),
                    org: at.str(&e, "org").unwrap_or_default(),
                    added_by: at.str(&e, "added_by").unwrap_or_default(),
                    since: at.seconds(&e, "at"),
                    addrs: at
                        .str(&e, "addrs")
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(str::to_string)
                        .collect(),
                },
            );
        }
    }
    for key in at.keys(&ROOT) {
        if key.starts_with(SCHEMA_KEY)
            && let Some(json) = at.str(&ROOT, &key)
        {
            state.schema.insert(key, json);
        } else if key.starts_with(ERASE_KEY)
            && let Some(json) = at.str(&ROOT, &key)
        {
            state.erasures.insert(key, json);
        } else if key.starts_with(REBASE_KEY)
            && let Some(json) = at.str(&ROOT, &key)
        {
            state.rebases.insert(key, json);
        } else if key.starts_with(RECEIPT_KEY) {
            let at_seconds = at.seconds(&ROOT, &key);
            state.receipts.insert(key, at_seconds);
        }
    }
    if let Some(m) = at.map(&ROOT, "removed") {
        for device in at.keys(&m) {
            // Every conflicting entry: two admins may remove a device
            // concurrently, and the one Automerge shows need not be the
            // one the rules pick.
            for (value, entry) in at.get_all(&m, &device) {
                if !matches!(value, automerge::Value::Object(ObjType::Map)) {
                    continue;
                }
                if let Some(removal) = read_removal(&at, &entry, &device) {
                    state
                        .removed
                        .entry(device.clone())
                        .or_default()
                        .insert(entry, removal);
                }
            }
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_entry<'a>(state: &'a SpaceState, device: &str) -> &'a Removal {
        let entries: Vec<&Removal> = state.removed[device].values().collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries[0]
    }

    #[test]
    fn a_space_document_reads_back_members_and_removals_at_any_point() {
        let creator = ActorId::from(&[1u8; 32][..]);
        let id = new_space_id(&[1u8; 32], 5, [5, 5]);
        assert!(creator_matches(id, &[1u8; 32]));
        assert!(!creator_matches(id, &[2u8; 32]));
        let record = new_record_id(&[1u8; 32], 5, [5, 5]);
        assert!(record_creator_matches(record, &[1u8; 32]));
        assert!(!record_creator_matches(record, &[2u8; 32]));
        assert!(
            !record_creator_matches(id, &[1u8; 32]),
            "a space id is no record id"
        );
        let t = Timestamp::from_second(1_000).expect("t");
        let who = Identity {
            user: "Ann".into(),
            org: "Acme".into(),
        };
        let mut doc =
            create_space(creator, id, "Acme ↔ Northwind", &who, [7; 32], t).expect("create");
        let created = doc.get_heads();
        let guest = Member {
            device: "02".repeat(32),
            role: Role::Reader,
            user: "Bo".into(),
            org: "Northwind".into(),
            added_by: "01".repeat(32),
            since: 1_000,
            addrs: vec!["127.0.0.1:4433".into()],
        };
        add_member(&mut doc, &guest, t).expect("add");
        let removal = Removal {
            device: "02".repeat(32),
            by: "01".repeat(32),
            at: 1_000,
            cutoff: vec![(RecordId::new(1, [1; 10]), [9; 32])],
        };
        remove_members(&mut doc, std::slice::from_ref(&removal), [8; 32], t).expect("remove");
        let now = read_state(&doc, None);
        assert_eq!(now.id, Some(id));
        assert_eq!(now.name, "Acme ↔ Northwind");
        assert_eq!(now.members[&"01".repeat(32)].role, Role::Admin);
        assert_eq!(now.members[&"01".repeat(32)].org, "Acme");
        assert_eq!(now.members[&"02".repeat(32)], guest);
        assert_eq!(only_entry(&now, &"02".repeat(32)), &removal);
        assert_eq!(now.topic, Some(vec![8; 32]));
        let then = read_state(&doc, Some(&created));
        assert_eq!(then.members.len(), 1);
        assert!(then.removed.is_empty());
        assert_eq!(then.topic, Some(vec![7; 32]));
        assert_eq!(read_state(doc.document(), Some(&[])), SpaceState::default());
    }

    /// Two admins remove the same device concurrently and a third device
    /// writes a part into one of the entries: both entries read back, each
    /// from its own remover's writes only.
    #[test]
    fn every_concurrent_removal_entry_reads_back_from_its_removers_writes_only() {
        let (a, b, x) = ([1u8; 32], [5u8; 32], [9u8; 32]);
        let id = new_space_id(&a, 5, [5, 5]);
        let t = Timestamp::from_second(1_000).expect("t");
        let mut doc = create_space(
            ActorId::from(&a[..]),
            id,
            "S",
            &Identity::default(),
            [0; 32],
            t,
        )
        .expect("create");
        let mut at_b = doc.fork().with_actor(ActorId::from(&b[..]));
        let removal = |by: &[u8; 32], n: u8| Removal {
            device: "02".repeat(32),
            by: hex(&ActorId::from(&by[..])),
            at: 1_000,
            cutoff: vec![(RecordId::new(1, [n; 10]), [n; 32])],
        };
        remove_members(&mut doc, &[removal(&a, 1)], [1; 32], t).expect("a removes");
        remove_members(&mut at_b, &[removal(&b, 2)], [2; 32], t).expect("b removes");
        doc.merge(&mut at_b).expect("merge");
        let removed = map_of(&doc, "removed").expect("removed");
        let a_entry = doc
            .get_all(&removed, "02".repeat(32))
            .expect("get_all")
            .into_iter()
            .map(|(_, e)| e)
            .find(|e| entry_owner(e) == Some(&ActorId::from(&a[..])))
            .expect("a's entry");
        doc.set_actor(ActorId::from(&x[..]));
        doc.put(&a_entry, "cutoff.1", ScalarValue::Bytes(vec![7; 48]))
            .expect("put");
        doc.commit();
        let state = read_state(&doc, None);
        let entries: Vec<&Removal> = state.removed[&"02".repeat(32)].values().collect();
        assert_eq!(entries.len(), 2);
        assert!(entries.contains(&&removal(&a, 1)), "{entries:?}");
        assert!(entries.contains(&&removal(&b, 2)), "{entries:?}");
    }

    #[test]
    fn roles_parse_from_text() {
        assert_eq!("Reader".parse::<Role>(), Ok(Role::Reader));
        assert!("owner".parse::<Role>().is_err());
        assert!(Role::Writer.writes_records() && !Role::Relay.writes_records());
    }

    #[test]
    fn space_ids_round_trip_as_text() {
        let id = SpaceId::Shared(RecordId::new(9, [9; 10]));
        assert_eq!(id.to_string().parse::<SpaceId>(), Ok(id));
        assert_eq!("private".parse::<SpaceId>(), Ok(SpaceId::Private));
    }

    /// Two removals of devices that wrote 10,000 records each: no change
    /// of the statement carries more than one budget of cutoff entries.
    #[test]
    fn removals_share_one_budget_of_cutoff_entries_per_change() {
        let actor = ActorId::from(&[1u8; 32][..]);
        let id = new_space_id(&[1u8; 32], 5, [5, 5]);
        let mut doc = create_space(
            actor,
            id,
            "S",
            &Identity::default(),
            [0; 32],
            Timestamp::UNIX_EPOCH,
        )
        .expect("space");
        let heads = doc.get_heads();
        let removal = |d: u8| Removal {
            device: hex(&ActorId::from(&[d; 32][..])),
            by: hex(&ActorId::from(&[1u8; 32][..])),
            at: 0,
            cutoff: (0..10_000u32)
                .map(|n| {
                    let mut r = [0u8; 10];
                    r[..4].copy_from_slice(&n.to_be_bytes());
                    (RecordId::new(1, r), [d; 32])
                })
                .collect(),
        };
        let removals = [removal(2), removal(3)];
        remove_members(&mut doc, &removals, [1; 32], Timestamp::UNIX_EPOCH).expect("remove");
        let changes = doc.get_changes(&heads);
        assert!(changes.len() >= 2, "{} changes", changes.len());
        for c in &changes {
            assert!(
                c.raw_bytes().len() < CUTOFF_PER_CHANGE * 48 + 4096,
                "{}",
                c.raw_bytes().len()
            );
        }
        let state = read_state(&doc, None);
        for r in &removals {
            assert_eq!(only_entry(&state, &r.device).cutoff, r.cutoff);
        }
    }
}
