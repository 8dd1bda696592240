//! Spaces: the sharing scopes records live in.
//!
//! Every record names its space in its document (`"space"` at the root,
//! written at creation and never changed). The private space never leaves
//! the node. A shared space is itself an Automerge document, synced with
//! the space like any record:
//!
//! ```text
//! { "rapport": 1, "kind": "space", "space": "<its own id>", "name": "...",
//!   "members": { "<device hex>": { "added_by": "<device hex>", "at": <timestamp> } } }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue};
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

/// A member as the space document records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// Hex of the member device's public key.
    pub device: String,
    /// Hex of the device that added it (the creator adds itself).
    pub added_by: String,
    /// Seconds since the Unix epoch.
    pub since: i64,
}

/// A shared space as users see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpaceView {
    pub id: RecordId,
    pub name: String,
    pub members: BTreeMap<String, Member>,
}

impl SpaceView {
    pub fn is_member(&self, device_hex: &str) -> bool {
        self.members.contains_key(device_hex)
    }
}

/// A new space document, created by `creator` (who becomes its first member).
pub fn create_space(
    actor: ActorId,
    id: RecordId,
    name: &str,
    time: Timestamp,
) -> Result<AutoCommit, DocError> {
    let creator = hex(&actor);
    let mut doc = AutoCommit::new().with_actor(actor);
    doc.put(ROOT, "rapport", LAYOUT_VERSION)?;
    doc.put(ROOT, "kind", "space")?;
    doc.put(ROOT, "space", id.to_string())?;
    doc.put(ROOT, "name", name)?;
    doc.put_object(ROOT, "members", ObjType::Map)?;
    put_member(&mut doc, &creator, &creator, time)?;
    doc.commit_with(
        CommitOptions::default()
            .with_message("create space")
            .with_time(time.as_second()),
    );
    Ok(doc)
}

/// Adds `device` as a member, as one change by the document's actor.
pub fn add_member(doc: &mut AutoCommit, device: &str, time: Timestamp) -> Result<(), DocError> {
    let by = hex(doc.get_actor());
    put_member(doc, device, &by, time)?;
    doc.commit_with(
        CommitOptions::default()
            .with_message("add member")
            .with_time(time.as_second()),
    );
    Ok(())
}

fn put_member(
    doc: &mut AutoCommit,
    device: &str,
    by: &str,
    time: Timestamp,
) -> Result<(), DocError> {
    let members = match doc.get(ROOT, "members")? {
        Some((automerge::Value::Object(ObjType::Map), id)) => id,
        _ => return Err(DocError::NotARecord("space without members")),
    };
    let m = doc.put_object(&members, device, ObjType::Map)?;
    doc.put(&m, "added_by", by)?;
    doc.put(&m, "at", ScalarValue::Timestamp(time.as_millisecond()))?;
    Ok(())
}

fn hex(actor: &ActorId) -> String {
    actor.to_hex_string()
}

fn get_str(doc: &AutoCommit, obj: &automerge::ObjId, key: &str) -> Option<String> {
    match doc.get(obj, key).ok()?? {
        (automerge::Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
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

/// Reads a space document.
pub fn read_space(doc: &AutoCommit) -> Result<SpaceView, DocError> {
    let SpaceId::Shared(id) = space_of(doc)? else {
        return Err(DocError::NotARecord("a space document must name itself"));
    };
    if !is_space_doc(doc) {
        return Err(DocError::NotARecord("not a space document"));
    }
    let name = get_str(doc, &ROOT, "name").unwrap_or_default();
    let mut members = BTreeMap::new();
    if let Some((automerge::Value::Object(ObjType::Map), m)) = doc.get(ROOT, "members")? {
        for device in doc.keys(&m) {
            let Some((automerge::Value::Object(ObjType::Map), entry)) =
                doc.get(&m, device.as_str())?
            else {
                continue;
            };
            let since = match doc.get(&entry, "at")? {
                Some((automerge::Value::Scalar(s), _)) => match s.as_ref() {
                    ScalarValue::Timestamp(ms) => ms / 1000,
                    _ => 0,
                },
                _ => 0,
            };
            members.insert(
                device.clone(),
                Member {
                    device: device.clone(),
                    added_by: get_str(doc, &entry, "added_by").unwrap_or_default(),
                    since,
                },
            );
        }
    }
    Ok(SpaceView { id, name, members })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_space_lists_its_creator_and_added_members() {
        let creator = ActorId::from(&[1u8; 32][..]);
        let id = RecordId::new(5, [5; 10]);
        let t = Timestamp::from_second(1_000).expect("t");
        let mut doc = create_space(creator.clone(), id, "Acme ↔ Northwind", t).expect("create");
        add_member(&mut doc, &"02".repeat(32), t).expect("add");
        let v = read_space(&doc).expect("read");
        assert_eq!(v.name, "Acme ↔ Northwind");
        assert_eq!(v.id, id);
        assert!(v.is_member(&"01".repeat(32)));
        assert_eq!(v.members[&"02".repeat(32)].added_by, "01".repeat(32));
        assert_eq!(space_of(&doc).expect("space"), SpaceId::Shared(id));
    }

    #[test]
    fn space_ids_round_trip_as_text() {
        let id = SpaceId::Shared(RecordId::new(9, [9; 10]));
        assert_eq!(id.to_string().parse::<SpaceId>(), Ok(id));
        assert_eq!("private".parse::<SpaceId>(), Ok(SpaceId::Private));
    }
}
