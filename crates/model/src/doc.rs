//! How a record lives in an Automerge document, and how to read it back.
//!
//! Layout of every record document:
//!
//! ```text
//! { "rapport": 1,            // layout version
//!   "kind": "deal",
//!   "space": "private",      // or a shared space's id; set at creation, never changed
//!   "deleted": false,        // the tombstone; true after `delete`
//!   "merged_into": "<id>",   // only on a record merged away: its survivor
//!   "merged_at": "<hex> ..", // its heads just before the merge
//!   "carried": "<hex> ..",   // its heads when edits were last carried over
//!   "fields": { "title": "...", "tags": ["a", "b"], "when": <timestamp>, ... } }
//! ```
//!
//! Scalars are strings, integers, booleans and timestamps; list fields are
//! Automerge lists of strings, edited item by item so that concurrent
//! additions merge. Every list field of the kind is created (empty) with the
//! record, so that two devices adding the first items insert into the same
//! list instead of each putting a list of its own; an empty list reads as an
//! absent field. Documents written before that rule may hold competing lists
//! under one key: they read as the union of their items, and the next write
//! to the record puts that union back as one list. Reading is schema-free,
//! so a field written by a newer version still shows up.
//!
//! A value the user keeps (`edit --set` with a conflicting field's current
//! value, "Keep this value") is written even when it equals Automerge's
//! winner: the new op supersedes every conflicting one, on every node.

use std::collections::{BTreeMap, HashMap};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, AutoCommit, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, hydrate,
};
use jiff::Timestamp;

use crate::id::RecordId;
use crate::schema::{FieldDef, FieldType, Kind, stage_probability};
use crate::space::{SpaceId, space_of};
use crate::value::{FieldValue, format_instant};

/// Version of the document layout above.
pub const LAYOUT_VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error("document is not a Rapport record: {0}")]
    NotARecord(&'static str),
}

/// One edit of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    Set(String, FieldValue),
    Unset(String),
    /// Writes or clears the tombstone.
    Deleted(bool),
    /// Marks the record as merged into another, with `merged_at`: the
    /// heads the merge read the record at (what came after is carried over).
    MergedInto(RecordId, Vec<ChangeHash>),
    /// Clears the merge marks: a merge undone, or the oldest record of a
    /// merge cycle living again.
    Unmerged,
    /// Records the heads up to which edits of this merged-away record have
    /// been carried over to its survivor.
    Carried(Vec<ChangeHash>),
}

impl Edit {
    /// The field it sets or clears, if it is a field's.
    pub fn field(&self) -> Option<&str> {
        match self {
            Edit::Set(f, _) | Edit::Unset(f) => Some(f),
            _ => None,
        }
    }
}

/// A new record document holding `fields`, as one change by `actor`.
pub fn create(
    actor: ActorId,
    kind: Kind,
    space: SpaceId,
    fields: &[(String, FieldValue)],
    time: Timestamp,
) -> Result<AutoCommit, DocError> {
    create_via(actor, kind, space, fields, time, None)
}

/// [`create`], the change's message naming what the device wrote it for
/// (`via`: an API token's name; see [`via_of`]).
pub fn create_via(
    actor: ActorId,
    kind: Kind,
    space: SpaceId,
    fields: &[(String, FieldValue)],
    time: Timestamp,
    via: Option<&str>,
) -> Result<AutoCommit, DocError> {
    // The whole document goes in as one batch: Automerge splices its
    // operations once instead of once per key, several times cheaper than
    // a put per field.
    let mut map: HashMap<&str, hydrate::Value> = kind
        .fields()
        .iter()
        .filter(|d| d.ty.is_list())
        .map(|d| (d.name, hydrate::Value::list()))
        .collect();
    for (name, value) in fields {
        map.insert(name.as_str(), hydrate_field(kind, name, value)?);
    }
    let root: HashMap<&str, hydrate::Value> = HashMap::from([
        ("rapport", LAYOUT_VERSION.into()),
        ("kind", kind.as_str().into()),
        ("space", space.to_string().as_str().into()),
        ("deleted", ScalarValue::Boolean(false).into()),
        ("fields", map.into()),
    ]);
    let mut doc = AutoCommit::new().with_actor(actor);
    doc.init_root_from_hydrate(&root.into())?;
    doc.commit_with(options(with_via(format!("create {kind}"), via), time));
    Ok(doc)
}

/// Applies `edits` as one change; returns its hash, or `None` if nothing
/// actually changed (no empty changes are recorded). A value that equals
/// the current one is still written when other values conflict with it,
/// so that keeping it settles the conflict; and a record whose deletion
/// raced other changes gets its tombstone written again by a delete or a
/// restore, which settles that too.
pub fn edit(
    doc: &mut AutoCommit,
    edits: &[Edit],
    time: Timestamp,
) -> Result<Option<ChangeHash>, DocError> {
    edit_via(doc, edits, time, None)
}

/// [`edit`], the change's message naming what the device wrote it for.
pub fn edit_via(
    doc: &mut AutoCommit,
    edits: &[Edit],
    time: Timestamp,
    via: Option<&str>,
) -> Result<Option<ChangeHash>, DocError> {
    let kind = read_kind(doc, None)?;
    let map = fields_obj(doc)?;
    // Asked before anything is written: reading the history closes the
    // pending transaction.
    let raced = edits.iter().any(|e| matches!(e, Edit::Deleted(_))) && delete_race(doc)?.is_some();
    let mut summary = Vec::new();
    let mut touched = Vec::new();
    for e in edits {
        match e {
            Edit::Set(name, value) => {
                let settled = doc.get_all(&map, name.as_str())?.len() <= 1;
                if !settled || read_field(doc, &map, name, None)?.as_ref() != Some(value) {
                    put_field(doc, &map, kind, name, value)?;
                    summary.push(format!("set {name}"));
                    touched.push(name.as_str());
                }
            }
            Edit::Unset(name) => {
                let is_list = match kind.field(name) {
                    Some(d) => d.ty.is_list(),
                    None => matches!(
                        doc.get(&map, name.as_str())?,
                        Some((automerge::Value::Object(ObjType::List), _))
                    ),
                };
                if is_list {
                    // Emptied in place, so that the list stays the one
                    // every device inserts into.
                    let settled = doc.get_all(&map, name.as_str())?.len() <= 1;
                    if !settled || read_field(doc, &map, name, None)?.is_some() {
                        put_list(doc, &map, name, &[])?;
                        summary.push(format!("unset {name}"));
                        touched.push(name.as_str());
                    }
                } else if doc.get(&map, name.as_str())?.is_some() {
                    doc.delete(&map, name.as_str())?;
                    summary.push(format!("unset {name}"));
                }
            }
            Edit::Deleted(d) => {
                let current = read_deleted(doc, None)?;
                if current != *d || raced {
                    if current == *d {
                        // Automerge drops a put of the value a key already
                        // holds alone; going through the other value makes
                        // the tombstone a new op that has seen the race.
                        doc.put(ROOT, "deleted", !*d)?;
                    }
                    doc.put(ROOT, "deleted", *d)?;
                    summary.push(if *d { "delete" } else { "restore" }.to_string());
                }
            }
            Edit::MergedInto(into, at) => {
                doc.put(ROOT, MERGED_INTO, into.to_string())?;
                doc.put(ROOT, MERGED_AT, heads_text(at))?;
                // A record merged again after an undo starts afresh.
                if doc.get(ROOT, CARRIED)?.is_some() {
                    doc.delete(ROOT, CARRIED)?;
                }
                summary.push(format!("merge into {into}"));
            }
            Edit::Unmerged => {
                let mut any = false;
                for key in [MERGED_INTO, MERGED_AT, CARRIED] {
                    if doc.get(ROOT, key)?.is_some() {
                        doc.delete(ROOT, key)?;
                        any = true;
                    }
                }
                if any {
                    summary.push("unmerge".to_string());
                }
            }
            Edit::Carried(at) => {
                doc.put(ROOT, CARRIED, heads_text(at))?;
                summary.push("carry over".to_string());
            }
        }
    }
    if summary.is_empty() {
        doc.rollback();
        return Ok(None);
    }
    for name in competing_lists(doc, &map)? {
        if !touched.contains(&name.as_str()) {
            let items = read_field(doc, &map, &name, None)?;
            let items = items.as_ref().map_or(&[][..], FieldValue::as_list);
            put_list(doc, &map, &name, items)?;
            summary.push(format!("merge {name}"));
        }
    }
    Ok(doc.commit_with(options(with_via(summary.join(", "), via), time)))
}

const MERGED_INTO: &str = "merged_into";
const MERGED_AT: &str = "merged_at";
const CARRIED: &str = "carried";

fn heads_text(heads: &[ChangeHash]) -> String {
    let mut hex: Vec<String> = heads.iter().map(ChangeHash::to_string).collect();
    hex.sort();
    hex.join(" ")
}

fn root_text(doc: &AutoCommit, key: &str, heads: Option<&[ChangeHash]>) -> Option<String> {
    let got = match heads {
        Some(h) => doc.get_at(ROOT, key, h).ok()?,
        None => doc.get(ROOT, key).ok()?,
    };
    match got.and_then(|v| scalar_to_value(&v.0)) {
        Some(FieldValue::Text(s)) => Some(s),
        _ => None,
    }
}

/// The heads from which edits of a merged-away record still have to be
/// carried over to its survivor: where the last carry-over stopped, else
/// where the merge began. `None` for a record that is not merged away, or
/// whose marks name changes the document does not hold.
pub fn carry_base(doc: &AutoCommit) -> Option<Vec<ChangeHash>> {
    root_text(doc, MERGED_INTO, None)?;
    let text = root_text(doc, CARRIED, None).or_else(|| root_text(doc, MERGED_AT, None))?;
    let heads: Vec<ChangeHash> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let known = heads.iter().all(|h| doc.get_change_by_hash(h).is_some());
    (known && !heads.is_empty()).then_some(heads)
}

/// The record's fields as they were at `heads` (winners only).
pub fn fields_at(
    doc: &AutoCommit,
    heads: &[ChangeHash],
) -> Result<BTreeMap<String, FieldValue>, DocError> {
    field_values(doc, Some(heads))
}

/// List fields that hold more than one list object (written concurrently
/// before every record got its lists at creation).
fn competing_lists(doc: &AutoCommit, map: &ObjId) -> Result<Vec<String>, DocError> {
    let mut out = Vec::new();
    for key in doc.keys(map) {
        let all = doc.get_all(map, key.as_str())?;
        if all.len() > 1
            && all
                .iter()
                .all(|(v, _)| matches!(v, automerge::Value::Object(ObjType::List)))
        {
            out.push(key);
        }
    }
    Ok(out)
}

/// The trailer line that names, in a change's message, what its device
/// wrote it for: an API token (`Via: crm-sync`). The message is part of
/// the signed change, so the attribution travels with it to every peer.
const VIA_TRAILER: &str = "\nVia: ";

fn with_via(message: String, via: Option<&str>) -> String {
    match via {
        // A line break in the name would let it forge more trailers.
        Some(v) if !v.is_empty() && !v.contains(['\n', '\r']) => {
            format!("{message}{VIA_TRAILER}{v}")
        }
        _ => message,
    }
}

/// What a change was written for, as its message says (see
/// [`create_via`]); `None` for a change made by the device's own user.
pub fn via_of(message: &str) -> Option<&str> {
    message
        .split_once(VIA_TRAILER)
        .map(|(_, v)| v.lines().next().unwrap_or(v))
        .filter(|v| !v.is_empty())
}

fn options(message: String, time: Timestamp) -> CommitOptions {
    CommitOptions::default()
        .with_message(message)
        .with_time(time.as_second())
}

fn fields_obj(doc: &AutoCommit) -> Result<ObjId, DocError> {
    match doc.get(ROOT, "fields")? {
        Some((automerge::Value::Object(ObjType::Map), id)) => Ok(id),
        _ => Err(DocError::NotARecord("no `fields` map")),
    }
}

/// A field's value as it goes into a new document (see [`put_field`]).
fn hydrate_field(kind: Kind, name: &str, value: &FieldValue) -> Result<hydrate::Value, DocError> {
    let def = kind.field(name);
    Ok(match value {
        FieldValue::List(items) => items
            .iter()
            .map(|i| hydrate::Value::from(i.as_str()))
            .collect::<Vec<_>>()
            .into(),
        FieldValue::Text(s) => text_scalar(def, s)?.into(),
        FieldValue::Int(i) => (*i).into(),
        FieldValue::Flag(b) => ScalarValue::Boolean(*b).into(),
    })
}

fn put_field(
    doc: &mut AutoCommit,
    map: &ObjId,
    kind: Kind,
    name: &str,
    value: &FieldValue,
) -> Result<(), DocError> {
    let def = kind.field(name);
    match value {
        FieldValue::List(items) => put_list(doc, map, name, items),
        FieldValue::Text(s) => Ok(doc.put(map, name, text_scalar(def, s)?)?),
        FieldValue::Int(i) => Ok(doc.put(map, name, *i)?),
        FieldValue::Flag(b) => Ok(doc.put(map, name, *b)?),
    }
}

/// How a text value is held: a built-in instant as a timestamp, so that it
/// sorts and compares as time; anything else as a string. (A custom field
/// is written by what its value is, whatever schema the writer knew:
/// its instants are RFC 3339 strings in UTC, which sort as time too.)
fn text_scalar(def: Option<&FieldDef>, s: &str) -> Result<ScalarValue, DocError> {
    if def.is_none_or(|d| d.ty != FieldType::DateTime) {
        return Ok(ScalarValue::Str(s.into()));
    }
    let t: Timestamp = s
        .parse()
        .map_err(|_| DocError::NotARecord("instant is not RFC 3339"))?;
    Ok(ScalarValue::Timestamp(t.as_millisecond()))
}

/// Makes the list at `name` hold `items`, deleting and appending only what
/// differs, so that a concurrent addition by someone else survives. Where
/// several values compete under `name`, a new list replaces them all.
fn put_list(
    doc: &mut AutoCommit,
    map: &ObjId,
    name: &str,
    items: &[String],
) -> Result<(), DocError> {
    let all = doc.get_all(map, name)?;
    let list = match all.as_slice() {
        [(automerge::Value::Object(ObjType::List), id)] => id.clone(),
        _ => doc.put_object(map, name, ObjType::List)?,
    };
    // The list as stored, copies included: two devices that add the same
    // item at once each insert it. Every copy of an unwanted item goes,
    // and every copy but the first of a wanted one.
    let raw: Vec<Option<String>> = doc
        .list_range(&list, ..)
        .map(|item| scalar_to_value(&item.value.into_value()).map(list_text))
        .collect();
    let mut current: Vec<String> = Vec::new();
    let mut unwanted = Vec::new();
    for (i, item) in raw.into_iter().enumerate() {
        match item {
            Some(t) if items.contains(&t) && !current.contains(&t) => current.push(t),
            _ => unwanted.push(i),
        }
    }
    for i in unwanted.into_iter().rev() {
        doc.delete(&list, i)?;
    }
    let mut len = doc.length(&list);
    for item in items {
        if !current.contains(item) {
            doc.insert(&list, len, item.as_str())?;
            len += 1;
        }
    }
    Ok(())
}

fn read_list(doc: &AutoCommit, list: &ObjId, heads: Option<&[ChangeHash]>) -> Vec<String> {
    let values = match heads {
        Some(h) => doc.list_range_at(list, .., h).collect::<Vec<_>>(),
        None => doc.list_range(list, ..).collect::<Vec<_>>(),
    };
    let mut out: Vec<String> = Vec::new();
    for item in values {
        let text = scalar_to_value(&item.value.into_value()).map(list_text);
        if let Some(v) = text
            && !out.contains(&v)
        {
            out.push(v);
        }
    }
    out
}

/// A list item as text.
fn list_text(v: FieldValue) -> String {
    match v {
        FieldValue::Text(s) => s,
        other => other.to_string(),
    }
}

fn scalar_to_value(v: &automerge::Value<'_>) -> Option<FieldValue> {
    match v {
        automerge::Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => Some(FieldValue::Text(s.to_string())),
            ScalarValue::Int(i) => Some(FieldValue::Int(*i)),
            ScalarValue::Uint(u) => Some(FieldValue::Int(i64::try_from(*u).unwrap_or(i64::MAX))),
            ScalarValue::F64(f) => Some(FieldValue::Text(f.to_string())),
            ScalarValue::Boolean(b) => Some(FieldValue::Flag(*b)),
            ScalarValue::Timestamp(ms) => Timestamp::from_millisecond(*ms)
                .ok()
                .map(|t| FieldValue::Text(format_instant(t))),
            ScalarValue::Counter(c) => Some(FieldValue::Int(i64::from(c))),
            _ => None,
        },
        automerge::Value::Object(_) => None,
    }
}

fn value_of(
    doc: &AutoCommit,
    (v, id): (automerge::Value<'_>, ObjId),
    heads: Option<&[ChangeHash]>,
) -> Option<FieldValue> {
    match v {
        automerge::Value::Object(ObjType::List) => {
            Some(FieldValue::List(read_list(doc, &id, heads)))
        }
        automerge::Value::Object(_) => None,
        scalar => scalar_to_value(&scalar),
    }
}

/// A field's value (Automerge's winner), or the union of competing lists;
/// an empty list is no value.
fn read_field(
    doc: &AutoCommit,
    map: &ObjId,
    name: &str,
    heads: Option<&[ChangeHash]>,
) -> Result<Option<FieldValue>, DocError> {
    Ok(read_values(doc, map, name, heads)?.into_iter().next())
}

/// Every value of a field, winner first. Competing lists are one value,
/// their union (winner's items first): concurrent additions are never a
/// conflict. An empty list is no value.
fn read_values(
    doc: &AutoCommit,
    map: &ObjId,
    name: &str,
    heads: Option<&[ChangeHash]>,
) -> Result<Vec<FieldValue>, DocError> {
    let all = match heads {
        Some(h) => doc.get_all_at(map, name, h)?,
        None => doc.get_all(map, name)?,
    };
    let mut values: Vec<FieldValue> = all
        .into_iter()
        .filter_map(|v| value_of(doc, v, heads))
        .collect();
    // Automerge returns concurrent values in op order; its winner is last.
    values.reverse();
    if values.len() > 1 && values.iter().all(|v| matches!(v, FieldValue::List(_))) {
        let mut union: Vec<String> = Vec::new();
        for item in values.iter().flat_map(FieldValue::as_list) {
            if !union.contains(item) {
                union.push(item.clone());
            }
        }
        values = vec![FieldValue::List(union)];
    }
    values.dedup();
    values.retain(|v| !matches!(v, FieldValue::List(l) if l.is_empty()));
    Ok(values)
}

fn read_kind(doc: &AutoCommit, heads: Option<&[ChangeHash]>) -> Result<Kind, DocError> {
    let got = match heads {
        Some(h) => doc.get_at(ROOT, "kind", h)?,
        None => doc.get(ROOT, "kind")?,
    };
    match got.and_then(|v| scalar_to_value(&v.0)) {
        Some(FieldValue::Text(k)) => k.parse().map_err(|_| DocError::NotARecord("unknown kind")),
        _ => Err(DocError::NotARecord("no `kind`")),
    }
}

fn read_deleted(doc: &AutoCommit, heads: Option<&[ChangeHash]>) -> Result<bool, DocError> {
    let got = match heads {
        Some(h) => doc.get_at(ROOT, "deleted", h)?,
        None => doc.get(ROOT, "deleted")?,
    };
    Ok(matches!(
        got.and_then(|v| scalar_to_value(&v.0)),
        Some(FieldValue::Flag(true))
    ))
}

/// A deletion that raced other changes: a delete and a restore made at
/// the same time (the tombstone holds both values, Automerge picked one),
/// or edits made at the same time as a delete that holds, so that they
/// vanished with the record. Writing the tombstone again (a delete or a
/// restore) settles it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteRace {
    /// The changes whose delete is among the tombstone's current values.
    pub deletes: Vec<ChangeHash>,
    /// Restores made at the same time as one of those deletes.
    pub restores: Vec<ChangeHash>,
    /// Changes made at the same time as a delete that holds (the record is
    /// deleted), with the fields each changed.
    pub edits: Vec<(ChangeHash, Vec<String>)>,
}

/// How the record's current deletion raced other changes, if it did.
pub fn delete_race(doc: &mut AutoCommit) -> Result<Option<DeleteRace>, DocError> {
    let values: Vec<(bool, ObjId)> = doc
        .get_all(ROOT, "deleted")?
        .into_iter()
        .map(|(v, id)| (scalar_to_value(&v) == Some(FieldValue::Flag(true)), id))
        .collect();
    if !values.iter().any(|(deleted, _)| *deleted) {
        return Ok(None);
    }
    let changes: Vec<(ChangeHash, Vec<ChangeHash>, ActorId, u64, u64)> = doc
        .get_changes(&[])
        .into_iter()
        .map(|c| {
            (
                c.hash(),
                c.deps().to_vec(),
                c.actor_id().clone(),
                c.start_op().get(),
                c.max_op(),
            )
        })
        .collect();
    let change_of = |id: &ObjId| match id {
        ObjId::Id(counter, actor, _) => changes
            .iter()
            .find(|(_, _, a, start, max)| a == actor && (*start..=*max).contains(counter))
            .map(|(h, ..)| *h),
        ObjId::Root => None,
    };
    let mut race = DeleteRace::default();
    for (deleted, id) in &values {
        let Some(hash) = change_of(id) else { continue };
        if *deleted {
            race.deletes.push(hash);
        } else {
            race.restores.push(hash);
        }
    }
    if read_deleted(doc, None)? {
        // Changes in causal order: a change descends from a delete if one of
        // its dependencies is that delete or descends from it.
        let deps: BTreeMap<ChangeHash, &[ChangeHash]> = changes
            .iter()
            .map(|(h, d, ..)| (*h, d.as_slice()))
            .collect();
        let mut seen_by_delete = std::collections::BTreeSet::new();
        let mut stack = race.deletes.clone();
        while let Some(h) = stack.pop() {
            if seen_by_delete.insert(h) {
                stack.extend(deps.get(&h).copied().unwrap_or_default());
            }
        }
        let mut after_delete: std::collections::BTreeSet<ChangeHash> =
            race.deletes.iter().copied().collect();
        let mut racing = Vec::new();
        for (h, d, ..) in &changes {
            if d.iter().any(|d| after_delete.contains(d)) {
                after_delete.insert(*h);
            } else if !seen_by_delete.contains(h) && !race.restores.contains(h) {
                racing.push((*h, d.clone()));
            }
        }
        for (h, d) in racing {
            let before = field_values(doc, Some(&d))?;
            let after = field_values(doc, Some(&[h]))?;
            let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
            names.sort();
            names.dedup();
            let changed: Vec<String> = names
                .into_iter()
                .filter(|n| before.get(*n) != after.get(*n))
                .cloned()
                .collect();
            if !changed.is_empty() {
                race.edits.push((h, changed));
            }
        }
    }
    Ok((!race.restores.is_empty() || !race.edits.is_empty()).then_some(race))
}

/// The fields' winning values as of `heads`.
fn field_values(
    doc: &AutoCommit,
    heads: Option<&[ChangeHash]>,
) -> Result<BTreeMap<String, FieldValue>, DocError> {
    let map = fields_obj(doc)?;
    let keys: Vec<String> = match heads {
        Some(h) => doc.keys_at(&map, h).collect(),
        None => doc.keys(&map).collect(),
    };
    let mut out = BTreeMap::new();
    for key in keys {
        if let Some(v) = read_field(doc, &map, &key, heads)? {
            out.insert(key, v);
        }
    }
    Ok(out)
}

/// A record as users see it: the current (or historical) values of its
/// fields, plus any values that were written concurrently and still
/// conflict. This is also what the store's indexes are built from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecordView {
    pub id: RecordId,
    pub kind: Kind,
    #[serde(default)]
    pub space: SpaceId,
    pub deleted: bool,
    /// The record this one was merged into (it is then also deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<RecordId>,
    /// Time of the newest change, seconds since the Unix epoch.
    pub updated: i64,
    pub fields: BTreeMap<String, FieldValue>,
    /// Fields whose value was written concurrently: every value, winner first.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub conflicts: BTreeMap<String, Vec<FieldValue>>,
}

impl RecordView {
    /// A live record of the private space with these fields, changed at
    /// time 0: what tests and pure functions over records start from.
    pub fn new(id: RecordId, kind: Kind, fields: BTreeMap<String, FieldValue>) -> Self {
        RecordView {
            id,
            kind,
            space: SpaceId::default(),
            deleted: false,
            merged_into: None,
            updated: 0,
            fields,
            conflicts: BTreeMap::new(),
        }
    }

    /// Reads the record as of `heads` (the current state if `None`).
    pub fn read(
        doc: &mut AutoCommit,
        id: RecordId,
        heads: Option<&[ChangeHash]>,
    ) -> Result<Self, DocError> {
        let kind = read_kind(doc, heads)?;
        let map = fields_obj(doc)?;
        let keys: Vec<String> = match heads {
            Some(h) => doc.keys_at(&map, h).collect(),
            None => doc.keys(&map).collect(),
        };
        let mut fields = BTreeMap::new();
        let mut conflicts = BTreeMap::new();
        for key in keys {
            let values = read_values(doc, &map, &key, heads)?;
            let Some(winner) = values.first().cloned() else {
                continue;
            };
            if values.len() > 1 {
                conflicts.insert(key.clone(), values);
            }
            fields.insert(key, winner);
        }
        // The built-in stages' probabilities; a deal in another pipeline
        // has its stage's from the space's schema (`node::pipeline`).
        if kind == Kind::Deal
            && !fields.contains_key("probability")
            && fields
                .get("pipeline")
                .and_then(FieldValue::as_text)
                .is_none_or(|p| p == crate::custom::SALES)
        {
            let p = fields
                .get("stage")
                .and_then(FieldValue::as_text)
                .and_then(stage_probability);
            if let Some(p) = p {
                fields.insert("probability".into(), FieldValue::Int(p));
            }
        }
        let updated = latest_time(doc, heads);
        Ok(RecordView {
            id,
            kind,
            space: space_of(doc)?,
            deleted: read_deleted(doc, heads)?,
            merged_into: root_text(doc, MERGED_INTO, heads).and_then(|s| s.parse().ok()),
            updated,
            fields,
            conflicts,
        })
    }

    /// The record as one flat JSON object: `id`, `kind`, `updated`, then
    /// every field by name; `deleted` and `conflicts` only when they apply.
    pub fn to_json(&self) -> serde_json::Value {
        let mut o = serde_json::Map::new();
        o.insert("id".into(), self.id.to_string().into());
        o.insert("kind".into(), self.kind.as_str().into());
        o.insert("space".into(), self.space.to_string().into());
        for (k, v) in &self.fields {
            o.insert(k.clone(), serde_json::to_value(v).unwrap_or_default());
        }
        if self.deleted {
            o.insert("deleted".into(), true.into());
        }
        if let Some(into) = self.merged_into {
            o.insert("merged_into".into(), into.to_string().into());
        }
        let updated = Timestamp::from_second(self.updated).unwrap_or_default();
        o.insert("updated".into(), format_instant(updated).into());
        if !self.conflicts.is_empty() {
            o.insert(
                "conflicts".into(),
                serde_json::to_value(&self.conflicts).unwrap_or_default(),
            );
        }
        serde_json::Value::Object(o)
    }

    pub fn get(&self, field: &str) -> Option<&FieldValue> {
        self.fields.get(field)
    }

    pub fn text(&self, field: &str) -> Option<&str> {
        self.get(field).and_then(FieldValue::as_text)
    }

    /// The record's name in lists and references.
    pub fn title(&self) -> String {
        if let Some(t) = self.text(self.kind.title_field()) {
            return t.to_string();
        }
        match self.kind {
            Kind::Activity => {
                let ty = self.text("type").unwrap_or("activity");
                let when = self
                    .text("when")
                    .map(|w| &w[..w.len().min(10)])
                    .unwrap_or("");
                format!("{ty} {when}").trim().to_string()
            }
            _ => format!("({})", self.id),
        }
    }

    /// Every record this one refers to, with the field that refers.
    ///
    /// Built-in reference fields by the kind's schema; a custom field (one
    /// the kind does not define) by its value alone: a record id, or a
    /// list of them, is a reference. Reading stays schema-free, so that
    /// the links of a custom reference are indexed on every node, also
    /// one that has not received the statement defining the field yet.
    pub fn references(&self) -> Vec<(&str, RecordId)> {
        let mut out = Vec::new();
        for (name, value) in &self.fields {
            let is_ref = match self.kind.field(name) {
                Some(def) => def.ty.ref_kinds().is_some(),
                None => {
                    let ids = match value {
                        FieldValue::Text(s) => std::slice::from_ref(s),
                        FieldValue::List(l) => l.as_slice(),
                        _ => &[],
                    };
                    !ids.is_empty() && ids.iter().all(|s| s.parse::<RecordId>().is_ok())
                }
            };
            if !is_ref {
                continue;
            }
            let ids: Vec<&str> = match value {
                FieldValue::Text(s) => vec![s],
                FieldValue::List(l) => l.iter().map(String::as_str).collect(),
                _ => continue,
            };
            out.extend(
                ids.into_iter()
                    .filter_map(|s| s.parse().ok())
                    .map(|id| (name.as_str(), id)),
            );
        }
        out
    }
}

fn latest_time(doc: &mut AutoCommit, heads: Option<&[ChangeHash]>) -> i64 {
    let heads: Vec<ChangeHash> = match heads {
        Some(h) => h.to_vec(),
        None => doc.get_heads(),
    };
    heads
        .iter()
        .filter_map(|h| doc.get_change_meta_by_hash(h).map(|c| c.timestamp))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(n: u8) -> ActorId {
        ActorId::from(&[n; 32][..])
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    fn text(s: &str) -> FieldValue {
        FieldValue::Text(s.into())
    }

    fn list(items: &[&str]) -> FieldValue {
        FieldValue::List(items.iter().map(|s| s.to_string()).collect())
    }

    fn company() -> AutoCommit {
        let fields = [
            ("name".to_string(), text("Acme")),
            ("tags".to_string(), list(&["a"])),
        ];
        create(actor(1), Kind::Company, SpaceId::Private, &fields, t(100)).expect("create")
    }

    fn id() -> RecordId {
        RecordId::new(1, [1; 10])
    }

    #[test]
    fn a_change_made_for_a_token_names_it_in_its_message() {
        let fields = [("name".to_string(), text("Acme"))];
        let mut doc = create_via(
            actor(1),
            Kind::Company,
            SpaceId::Private,
            &fields,
            t(100),
            Some("billing"),
        )
        .expect("create");
        edit_via(
            &mut doc,
            &[Edit::Set("industry".into(), text("Steel"))],
            t(101),
            Some("zap"),
        )
        .expect("edit");
        edit(
            &mut doc,
            &[Edit::Set("industry".into(), text("Rail"))],
            t(102),
        )
        .expect("edit");
        let vias: Vec<Option<String>> = doc
            .get_changes(&[])
            .iter()
            .map(|c| c.message().and_then(via_of).map(str::to_string))
            .collect();
        assert_eq!(vias, [Some("billing".into()), Some("zap".into()), None]);
        // A name that would add a line of its own is left out.
        assert_eq!(with_via("set name".into(), Some("a\nVia: b")), "set name");
    }

    #[test]
    fn edits_are_recorded_and_no_op_edits_are_not() {
        let mut doc = company();
        let set = [Edit::Set("domain".into(), text("acme.com"))];
        assert!(edit(&mut doc, &set, t(200)).expect("edit").is_some());
        assert_eq!(edit(&mut doc, &set, t(300)).expect("edit"), None);
        let v = RecordView::read(&mut doc, id(), None).expect("read");
        assert_eq!(v.text("domain"), Some("acme.com"));
        assert_eq!(v.updated, 200);
        assert_eq!(doc.get_changes(&[]).len(), 2);
    }

    #[test]
    fn concurrent_list_additions_merge_and_scalar_writes_conflict() {
        let mut a = company();
        let mut b = a.fork().with_actor(actor(2));
        let edits_a = [
            Edit::Set("tags".into(), list(&["a", "vip"])),
            Edit::Set("industry".into(), text("Steel")),
        ];
        let edits_b = [
            Edit::Set("tags".into(), list(&["a", "eu"])),
            Edit::Set("industry".into(), text("Mining")),
        ];
        edit(&mut a, &edits_a, t(200)).expect("edit a");
        edit(&mut b, &edits_b, t(201)).expect("edit b");
        a.merge(&mut b).expect("merge");
        b.merge(&mut a).expect("merge");
        let va = RecordView::read(&mut a, id(), None).expect("read");
        let vb = RecordView::read(&mut b, id(), None).expect("read");
        assert_eq!(va, vb, "both sides converge");
        let mut tags = va.get("tags").expect("tags").as_list().to_vec();
        tags.sort();
        assert_eq!(tags, ["a", "eu", "vip"]);
        let conflict = va.conflicts.get("industry").expect("a visible conflict");
        assert_eq!(conflict.len(), 2);
        let map = fields_obj(&a).expect("fields");
        let automerge_winner = read_field(&a, &map, "industry", None).expect("read");
        assert_eq!(
            Some(&conflict[0]),
            automerge_winner.as_ref(),
            "winner first"
        );
        assert_eq!(va.get("industry"), automerge_winner.as_ref());
    }

    /// Two devices write `industry` concurrently, then merge.
    fn torn_industry() -> (AutoCommit, AutoCommit) {
        let mut a = company();
        let mut b = a.fork().with_actor(actor(2));
        edit(
            &mut a,
            &[Edit::Set("industry".into(), text("Steel"))],
            t(200),
        )
        .expect("a");
        edit(
            &mut b,
            &[Edit::Set("industry".into(), text("Mining"))],
            t(201),
        )
        .expect("b");
        a.merge(&mut b).expect("merge");
        b.merge(&mut a).expect("merge");
        (a, b)
    }

    #[test]
    fn keeping_the_value_that_already_wins_settles_the_conflict_on_both_devices() {
        let (mut a, mut b) = torn_industry();
        let v = RecordView::read(&mut a, id(), None).expect("read");
        let winner = v.conflicts.get("industry").expect("a conflict")[0].clone();
        assert_eq!(v.get("industry"), Some(&winner));
        let kept = edit(
            &mut a,
            &[Edit::Set("industry".into(), winner.clone())],
            t(300),
        )
        .expect("keep");
        assert!(kept.is_some(), "keeping the winner is a change");
        b.merge(&mut a).expect("merge");
        for doc in [&mut a, &mut b] {
            let v = RecordView::read(doc, id(), None).expect("read");
            assert_eq!(v.get("industry"), Some(&winner));
            assert!(v.conflicts.is_empty(), "settled: {:?}", v.conflicts);
        }
        // Once settled, the same value is a no-op again.
        let again = edit(&mut a, &[Edit::Set("industry".into(), winner)], t(400));
        assert_eq!(again.expect("edit"), None);
    }

    /// A document built in one batch holds what a put per key builds, and
    /// its change comes back out of a document it is applied to as it was
    /// signed (what a receiving node checks).
    #[test]
    fn a_new_document_is_the_one_a_put_per_key_builds() {
        let fields = [
            ("type".to_string(), text("call")),
            ("subject".to_string(), text("Call Ada")),
            ("when".to_string(), text("2026-11-30T09:00:00Z")),
            ("done".to_string(), FieldValue::Flag(false)),
            ("about".to_string(), list(&["first", "second"])),
        ];
        let mut batch =
            create(actor(1), Kind::Activity, SpaceId::Private, &fields, t(100)).expect("create");
        let mut by_key = AutoCommit::new().with_actor(actor(1));
        by_key.put(ROOT, "rapport", LAYOUT_VERSION).expect("put");
        by_key.put(ROOT, "kind", "activity").expect("put");
        by_key.put(ROOT, "space", "private").expect("put");
        by_key.put(ROOT, "deleted", false).expect("put");
        let map = by_key
            .put_object(ROOT, "fields", ObjType::Map)
            .expect("map");
        for def in Kind::Activity.fields().iter().filter(|d| d.ty.is_list()) {
            by_key
                .put_object(&map, def.name, ObjType::List)
                .expect("list");
        }
        for (name, value) in &fields {
            put_field(&mut by_key, &map, Kind::Activity, name, value).expect("field");
        }
        by_key.commit_with(options("create activity".into(), t(100)));
        assert_eq!(batch.hydrate(&ROOT, None), by_key.hydrate(&ROOT, None));
        assert_eq!(
            RecordView::read(&mut batch, id(), None).expect("read"),
            RecordView::read(&mut by_key, id(), None).expect("read")
        );

        let change = batch.get_last_local_change().expect("change");
        assert_eq!(batch.get_heads(), vec![change.hash()]);
        let mut received = AutoCommit::new();
        received.apply_changes([change.clone()]).expect("apply");
        let out = received.get_changes(&[]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].raw_bytes(), change.raw_bytes());
        assert_eq!(latest_time(&mut received, None), 100);
    }

    #[test]
    fn first_tags_added_on_two_devices_merge() {
        let mut a = create(
            actor(1),
            Kind::Company,
            SpaceId::Private,
            &[("name".to_string(), text("Acme"))],
            t(100),
        )
        .expect("create");
        let v = RecordView::read(&mut a, id(), None).expect("read");
        assert_eq!(v.get("tags"), None, "an empty list is no value");
        let mut b = a.fork().with_actor(actor(2));
        edit(&mut a, &[Edit::Set("tags".into(), list(&["vip"]))], t(200)).expect("a");
        edit(&mut b, &[Edit::Set("tags".into(), list(&["eu"]))], t(201)).expect("b");
        a.merge(&mut b).expect("merge");
        let v = RecordView::read(&mut a, id(), None).expect("read");
        let mut tags = v.get("tags").expect("tags").as_list().to_vec();
        tags.sort();
        assert_eq!(tags, ["eu", "vip"]);
        assert!(v.conflicts.is_empty(), "{:?}", v.conflicts);

        // One list, so a removal and an addition made at the same time
        // both hold.
        b.merge(&mut a).expect("merge");
        edit(&mut a, &[Edit::Set("tags".into(), list(&["eu"]))], t(300)).expect("a");
        edit(
            &mut b,
            &[Edit::Set("tags".into(), list(&["vip", "eu", "new"]))],
            t(301),
        )
        .expect("b");
        a.merge(&mut b).expect("merge");
        let v = RecordView::read(&mut a, id(), None).expect("read");
        assert_eq!(v.get("tags"), Some(&list(&["eu", "new"])));
    }

    #[test]
    fn clearing_a_list_keeps_a_concurrent_addition() {
        let mut a = company();
        let mut b = a.fork().with_actor(actor(2));
        edit(&mut a, &[Edit::Unset("tags".into())], t(200)).expect("a");
        assert_eq!(
            RecordView::read(&mut a, id(), None)
                .expect("read")
                .get("tags"),
            None
        );
        edit(
            &mut b,
            &[Edit::Set("tags".into(), list(&["a", "eu"]))],
            t(201),
        )
        .expect("b");
        a.merge(&mut b).expect("merge");
        let v = RecordView::read(&mut a, id(), None).expect("read");
        assert_eq!(v.get("tags"), Some(&list(&["eu"])));
    }

    #[test]
    fn competing_lists_read_as_one_and_the_next_write_merges_them() {
        // A record as written before lists were created with it: each device
        // puts a list object of its own.
        let mut a = AutoCommit::new().with_actor(actor(1));
        a.put(ROOT, "rapport", LAYOUT_VERSION).expect("put");
        a.put(ROOT, "kind", "company").expect("put");
        a.put(ROOT, "space", "private").expect("put");
        a.put(ROOT, "deleted", false).expect("put");
        a.put_object(ROOT, "fields", ObjType::Map).expect("put");
        let map = fields_obj(&a).expect("fields");
        a.put(&map, "name", "Acme").expect("put");
        a.commit();
        let mut b = a.fork().with_actor(actor(2));
        for (doc, tag) in [(&mut a, "vip"), (&mut b, "eu")] {
            let map = fields_obj(doc).expect("fields");
            let l = doc.put_object(&map, "tags", ObjType::List).expect("list");
            doc.insert(&l, 0, tag).expect("insert");
            doc.commit();
        }
        a.merge(&mut b).expect("merge");
        let v = RecordView::read(&mut a, id(), None).expect("read");
        let mut tags = v.get("tags").expect("tags").as_list().to_vec();
        tags.sort();
        assert_eq!(tags, ["eu", "vip"], "both devices' tags show");
        assert!(v.conflicts.is_empty(), "{:?}", v.conflicts);

        edit(
            &mut a,
            &[Edit::Set("name".into(), text("Acme Corp"))],
            t(300),
        )
        .expect("edit");
        assert_eq!(
            a.get_all(&map, "tags").expect("get").len(),
            1,
            "one list again"
        );
        let mut c = a.fork().with_actor(actor(3));
        edit(
            &mut c,
            &[Edit::Set("tags".into(), list(&["vip", "eu", "new"]))],
            t(301),
        )
        .expect("edit");
        edit(&mut a, &[Edit::Unset("tags".into())], t(302)).expect("clear");
        a.merge(&mut c).expect("merge");
        let v = RecordView::read(&mut a, id(), None).expect("read");
        assert_eq!(
            v.get("tags"),
            Some(&list(&["new"])),
            "merged list edits merge"
        );
    }

    #[test]
    fn a_delete_racing_an_edit_or_a_restore_is_reported_until_settled() {
        let mut a = company();
        let mut b = a.fork().with_actor(actor(2));
        edit(&mut a, &[Edit::Deleted(true)], t(200)).expect("delete");
        let delete = a.get_heads()[0];
        let change = edit(
            &mut b,
            &[Edit::Set("industry".into(), text("Steel"))],
            t(201),
        )
        .expect("edit")
        .expect("a change");
        a.merge(&mut b).expect("merge");
        assert!(RecordView::read(&mut a, id(), None).expect("read").deleted);
        let race = delete_race(&mut a).expect("race").expect("a race");
        assert_eq!(race.deletes, [delete]);
        assert_eq!(race.edits, [(change, vec!["industry".to_string()])]);
        assert!(race.restores.is_empty());

        // Deleting again, having seen the edit, settles it.
        assert!(
            edit(&mut a, &[Edit::Deleted(true)], t(300))
                .expect("delete")
                .is_some()
        );
        assert_eq!(delete_race(&mut a).expect("race"), None);

        // B restores while A deletes once more.
        let mut b = a.fork().with_actor(actor(2));
        edit(&mut b, &[Edit::Deleted(false)], t(400)).expect("restore");
        let restore = b.get_heads()[0];
        let mut a2 = a.fork().with_actor(actor(1));
        edit(&mut a2, &[Edit::Deleted(false)], t(401)).expect("restore");
        edit(&mut a2, &[Edit::Deleted(true)], t(402)).expect("delete");
        a2.merge(&mut b).expect("merge");
        let race = delete_race(&mut a2).expect("race").expect("a race");
        assert_eq!(race.restores, [restore]);
        assert_eq!(race.deletes.len(), 1);
        // Restoring (whatever Automerge picked) settles it.
        assert!(
            edit(&mut a2, &[Edit::Deleted(false)], t(500))
                .expect("restore")
                .is_some()
        );
        assert_eq!(delete_race(&mut a2).expect("race"), None);
        assert!(!RecordView::read(&mut a2, id(), None).expect("read").deleted);
    }

    #[test]
    fn history_can_be_read_at_any_change() {
        let mut doc = company();
        let first = doc.get_heads();
        edit(
            &mut doc,
            &[Edit::Set("name".into(), text("Acme Corp"))],
            t(200),
        )
        .expect("edit");
        edit(&mut doc, &[Edit::Deleted(true)], t(300)).expect("delete");
        let then = RecordView::read(&mut doc, id(), Some(&first)).expect("read");
        let now = RecordView::read(&mut doc, id(), None).expect("read");
        assert_eq!(then.text("name"), Some("Acme"));
        assert!(!then.deleted);
        assert_eq!(now.text("name"), Some("Acme Corp"));
        assert!(now.deleted);
    }

    #[test]
    fn deal_probability_follows_the_stage_until_set() {
        let fields = [
            ("title".to_string(), text("Rollout")),
            ("stage".to_string(), text("proposal")),
        ];
        let mut doc =
            create(actor(1), Kind::Deal, SpaceId::Private, &fields, t(1)).expect("create");
        let v = RecordView::read(&mut doc, id(), None).expect("read");
        assert_eq!(v.get("probability"), Some(&FieldValue::Int(50)));
        edit(
            &mut doc,
            &[Edit::Set("probability".into(), FieldValue::Int(60))],
            t(2),
        )
        .expect("edit");
        edit(
            &mut doc,
            &[Edit::Set("stage".into(), text("negotiation"))],
            t(3),
        )
        .expect("edit");
        let v = RecordView::read(&mut doc, id(), None).expect("read");
        assert_eq!(v.get("probability"), Some(&FieldValue::Int(60)));
    }

    #[test]
    fn json_is_flat_with_id_and_kind() {
        let mut doc = company();
        let v = RecordView::read(&mut doc, id(), None).expect("read");
        let j = v.to_json();
        assert_eq!(j["kind"], "company");
        assert_eq!(j["name"], "Acme");
        assert_eq!(j["id"], id().to_string());
        assert!(j.get("deleted").is_none());
    }
}
