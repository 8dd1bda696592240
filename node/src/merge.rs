//! Merging duplicate records, and keeping a merge whole while peers
//! still write to the records it merged away.
//!
//! A merge is ordinary signed changes, written in one transaction:
//!
//! - the record kept (the survivor) gets the others' values: list fields
//!   are united; a scalar keeps the survivor's value, is filled from the
//!   first other record that has one, or is taken from the record the user
//!   prefers for that field;
//! - every record that refers to a merged-away record is re-pointed to the
//!   survivor;
//! - the others become tombstones that redirect: `deleted`, plus
//!   `merged_into` (the survivor) and `merged_at` (their heads before the
//!   merge). A reference to one of them resolves to the survivor.
//!
//! A peer may edit a merged-away record, or point a new record at it,
//! before it hears of the merge. After every batch from a peer,
//! [`Repo::settle_merges`] carries such edits over to the survivor (the
//! fields that changed since `merged_at`, or since the last carry-over,
//! recorded in `carried`) and re-points such references. Every node that
//! holds both sides does the same and writes equal values, so the result
//! converges whichever does it first.
//!
//! Two nodes that merge the same records the other way round at the same
//! time leave two tombstones that point at each other. The oldest record
//! of such a cycle (the smallest id: ids begin with their creation time)
//! survives: whoever sees the cycle clears its tombstone, and the edits
//! the other merge made are carried over to it like any others.
//!
//! Every merge is logged in `merges/ID.json`, so that `merge undo` can put
//! back the fields and references it changed, where nobody changed them
//! since, and restore the merged-away records.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use rapport_model::automerge::ChangeHash;
use rapport_model::{Edit, FieldDef, FieldValue, RecordId, RecordView, SpaceId, doc};
use serde::{Deserialize, Serialize};

use crate::{NodeError, Repo};

const DIR: &str = "merges";

/// A field's value before a merge wrote it and after (`None`: absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Written {
    pub record: RecordId,
    pub field: String,
    pub before: Option<FieldValue>,
    pub after: Option<FieldValue>,
}

/// What a merge did, as logged in `merges/ID.json` and shown to the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeRecord {
    pub id: String,
    /// Seconds since the Unix epoch.
    pub at: i64,
    pub space: SpaceId,
    pub kept: RecordId,
    pub title: String,
    pub merged: Vec<RecordId>,
    /// The survivor's fields the merge wrote.
    pub fields: Vec<Written>,
    /// References in other records moved to the survivor.
    pub repointed: Vec<Written>,
    /// When it was undone, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undone: Option<i64>,
}

/// What `merge undo` put back, and what it left because it changed since.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MergeUndone {
    pub restored_records: usize,
    pub restored_fields: usize,
    pub kept_fields: usize,
}

impl Repo {
    /// Merges `others` into `keep` (see the module documentation).
    /// `prefer` names, per field, the record (a reference to `keep` or
    /// one of `others`) whose value the survivor takes.
    pub fn merge(
        &self,
        keep: &str,
        others: &[String],
        prefer: &[(String, String)],
    ) -> Result<MergeRecord, NodeError> {
        // Held from the first read to the write: an edit that arrives in
        // between is not overwritten unseen, and `merged_at` is exactly the
        // state the merge combined (what comes after is carried over).
        let guard = self.write_guard();
        let kept = self.resolve(keep)?;
        if kept.deleted {
            return Err(deleted(&kept));
        }
        let mut merged: Vec<RecordView> = Vec::new();
        for r in others {
            let (v, from) = self.resolve_noting(r)?;
            if let Some(from) = from {
                return Err(NodeError::Forbidden(format!(
                    "{} ({}) was merged into {} ({}) already",
                    from.title(),
                    from.id,
                    v.title(),
                    v.id
                )));
            }
            if v.id == kept.id {
                return Err(NodeError::Forbidden(format!(
                    "`{r}` is the record kept ({}); name the records to merge into it",
                    kept.title()
                )));
            }
            if v.deleted {
                return Err(deleted(&v));
            }
            if v.kind != kept.kind {
                return Err(NodeError::Forbidden(format!(
                    "{} is a {} and {} a {}: only records of one kind merge",
                    v.title(),
                    v.kind,
                    kept.title(),
                    kept.kind
                )));
            }
            if v.space != kept.space {
                return Err(NodeError::Forbidden(format!(
                    "{} is in space {} and {} in {}: move one first, records of one space merge",
                    v.title(),
                    v.space,
                    kept.title(),
                    kept.space
                )));
            }
            if !merged.iter().any(|m| m.id == v.id) {
                merged.push(v);
            }
        }
        if merged.is_empty() {
            return Err(NodeError::Forbidden(
                "name at least one record to merge into the one kept".into(),
            ));
        }
        self.check_space_writable(kept.space)?;
        let mut chosen: BTreeMap<&'static str, RecordId> = BTreeMap::new();
        for (field, reference) in prefer {
            let def = self.field_in(Some(kept.space), kept.kind, field)?;
            let from = self.resolve(reference)?;
            if from.id != kept.id && !merged.iter().any(|m| m.id == from.id) {
                return Err(NodeError::Forbidden(format!(
                    "--prefer {field}={reference}: {} is not one of the records merged",
                    from.title()
                )));
            }
            chosen.insert(def.name, from.id);
        }

        let ids: BTreeSet<RecordId> = merged.iter().map(|m| m.id).collect();
        let defs = self.fields_in(Some(kept.space), kept.kind)?;
        let combined = combine(&defs, &kept, &merged, &chosen);
        let mut fields = Vec::new();
        let mut survivor_edits = Vec::new();
        for def in &defs {
            let before = kept.fields.get(def.name).cloned();
            let after = combined.get(def.name).cloned();
            if before == after {
                continue;
            }
            survivor_edits.push(match &after {
                Some(v) => Edit::Set(def.name.into(), v.clone()),
                None => Edit::Unset(def.name.into()),
            });
            fields.push(Written {
                record: kept.id,
                field: def.name.into(),
                before,
                after,
            });
        }

        // Every record that refers to a merged one, except the merged ones.
        let mut referrers: BTreeMap<RecordId, RecordView> = BTreeMap::new();
        for m in &merged {
            for (source, _) in self.store().backlinks(m.id)? {
                if source == kept.id || ids.contains(&source) || referrers.contains_key(&source) {
                    continue;
                }
                // A caller limited to one space (an API token) moves the
                // references of that space only.
                if let Some(v) = self.store().view(source)?
                    && crate::repo::in_scope(&v)
                    && self.check_space_writable(v.space).is_ok()
                {
                    referrers.insert(source, v);
                }
            }
        }
        let mut repointed = Vec::new();
        let mut edits: Vec<(RecordView, Vec<Edit>)> = Vec::new();
        for (_, view) in referrers {
            let changes = repoint(&view, &|id| ids.contains(&id).then_some(kept.id));
            if changes.is_empty() {
                continue;
            }
            let mut record_edits = Vec::new();
            for (field, after) in changes {
                record_edits.push(Edit::Set(field.clone(), after.clone()));
                repointed.push(Written {
                    record: view.id,
                    before: view.fields.get(&field).cloned(),
                    field,
                    after: Some(after),
                });
            }
            edits.push((view, record_edits));
        }
        if !survivor_edits.is_empty() {
            edits.push((kept.clone(), survivor_edits));
        }
        for m in &merged {
            let at = self.load_doc(m.id)?.get_heads();
            edits.push((
                m.clone(),
                vec![Edit::MergedInto(kept.id, at), Edit::Deleted(true)],
            ));
        }

        let record = MergeRecord {
            id: rapport_proto::hex(&self.random::<8>()?),
            at: self.now().as_second(),
            space: kept.space,
            kept: kept.id,
            title: kept.title(),
            merged: merged.iter().map(|m| m.id).collect(),
            fields,
            repointed,
            undone: None,
        };
        // Logged first: a crash before the records are written leaves a log
        // whose undo finds nothing to put back. A write refused takes its
        // log away again.
        self.save_merge(&record)?;
        if let Err(e) = self.write_edits_guarded(&guard, edits) {
            if let Some(log) = log_path(self.dir(), &record.id) {
                let _ = fs::remove_file(log);
            }
            return Err(e);
        }
        Ok(record)
    }

    /// Every merge made on this node, newest first.
    pub fn merges(&self, scope: Option<SpaceId>) -> Result<Vec<MergeRecord>, NodeError> {
        let mut out = Vec::new();
        for path in crate::datadir::files_with_extension(&self.dir().join(DIR), "json")? {
            let bytes = fs::read(&path).map_err(|e| NodeError::io(&path, e))?;
            match serde_json::from_slice::<MergeRecord>(&bytes) {
                Ok(r) if scope.is_none_or(|s| s == r.space) => out.push(r),
                Ok(_) => {}
                Err(e) => tracing::warn!(path = %path.display(), "unreadable merge log: {e}"),
            }
        }
        out.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.id.cmp(&a.id)));
        Ok(out)
    }

    /// Undoes merge `id`: the merged-away records come back, and the
    /// fields and references it wrote go back to their values before it,
    /// where they still hold what it wrote.
    pub fn merge_undo(&self, id: &str, scope: Option<SpaceId>) -> Result<MergeUndone, NodeError> {
        let missing = || NodeError::Missing(format!("no merge {id}; see `rapport merge list`"));
        let path = log_path(self.dir(), id).ok_or_else(missing)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(NodeError::io(&path, e)),
        };
        let mut record: MergeRecord = serde_json::from_slice(&bytes).map_err(|e| {
            tracing::warn!(path = %path.display(), "unreadable merge log: {e}");
            missing()
        })?;
        if scope.is_some_and(|s| s != record.space) {
            return Err(missing());
        }
        if record.undone.is_some() {
            return Err(NodeError::Forbidden(format!(
                "merge {id} was undone already"
            )));
        }
        let guard = self.write_guard();
        let mut report = MergeUndone::default();
        let mut per_record: BTreeMap<RecordId, Vec<Edit>> = BTreeMap::new();
        for m in &record.merged {
            if let Some(v) = self.store().view(*m)?
                && v.merged_into == Some(record.kept)
                && self.check_space_writable(v.space).is_ok()
            {
                report.restored_records += 1;
                per_record
                    .entry(*m)
                    .or_default()
                    .extend([Edit::Unmerged, Edit::Deleted(false)]);
            }
        }
        for w in record.fields.iter().chain(&record.repointed) {
            let Some(v) = self.store().view(w.record)? else {
                continue;
            };
            // Changed since, or in a space this device may no longer
            // write: left as it is.
            if v.deleted
                || v.fields.get(&w.field) != w.after.as_ref()
                || self.check_space_writable(v.space).is_err()
            {
                report.kept_fields += 1;
                continue;
            }
            report.restored_fields += 1;
            per_record
                .entry(w.record)
                .or_default()
                .push(match &w.before {
                    Some(b) => Edit::Set(w.field.clone(), b.clone()),
                    None => Edit::Unset(w.field.clone()),
                });
        }
        let mut edits = Vec::new();
        for (id, e) in per_record {
            if let Some(v) = self.store().view(id)? {
                edits.push((v, e));
            }
        }
        self.write_edits_guarded(&guard, edits)?;
        record.undone = Some(self.now().as_second());
        self.save_merge(&record)?;
        Ok(report)
    }

    fn save_merge(&self, record: &MergeRecord) -> Result<(), NodeError> {
        let dir = self.dir().join(DIR);
        fs::create_dir_all(&dir).map_err(|e| NodeError::io(&dir, e))?;
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| NodeError::Missing(format!("merge log: {e}")))?;
        crate::datadir::write_atomically(&dir, &format!("{}.json", record.id), &json, false)
    }

    /// The record a reference to `id` ends at: `id` itself unless it was
    /// merged away, else the survivor at the end of its merges. In a cycle
    /// of merges (made concurrently the other way round) the oldest record
    /// survives.
    pub fn survivor(&self, id: RecordId) -> Result<RecordId, NodeError> {
        Ok(self.chain(id)?.end)
    }

    /// Where the `merged_into` links from `id` lead. A link counts only to
    /// a record of the same kind and space that this node holds: a member
    /// of one space cannot make another space's records (or private ones)
    /// take its writes by pointing a merge at them.
    fn chain(&self, id: RecordId) -> Result<Chain, NodeError> {
        let mut seen = vec![id];
        let mut at = id;
        let mut start: Option<RecordView> = None;
        while let Some(next) = self.store().merged_into(at)? {
            if let Some(i) = seen.iter().position(|s| *s == next) {
                let end = seen[i..].iter().copied().min().unwrap_or(next);
                return Ok(Chain { end, cycle: true });
            }
            if start.is_none() {
                start = self.store().view(id)?;
            }
            let Some(first) = &start else { break };
            match self.store().view(next)? {
                Some(v) if v.kind == first.kind && v.space == first.space => {}
                _ => break,
            }
            if seen.len() >= MAX_CHAIN {
                break;
            }
            seen.push(next);
            at = next;
        }
        Ok(Chain {
            end: at,
            cycle: false,
        })
    }

    /// After records of `space` came from a peer: carries edits of
    /// merged-away records over to their survivors, re-points references
    /// to them, and revives the survivor of a merge cycle (see the module
    /// documentation). Only what this device may write is written; a
    /// writer of the space does the rest.
    pub fn settle_merges(&self, space: SpaceId, records: &[RecordId]) -> Result<usize, NodeError> {
        if !self.store().any_merged() || self.check_space_writable(space).is_err() {
            return Ok(0);
        }
        // Held from the reads to the write, like a merge.
        let guard = self.write_guard();
        let mut settle = Settle::default();
        for &id in records {
            let Some(view) = settle.current(self, id)? else {
                continue;
            };
            if view.merged_into.is_none() {
                // A live record: only its references to merged-away
                // records need settling.
                if !view.deleted {
                    let e = self.repoint_to_survivors(&view)?;
                    settle.add(&view, e);
                }
                continue;
            }
            let chain = self.chain(id)?;
            if chain.end == id {
                if chain.cycle {
                    // The oldest of a cycle: it lives again.
                    settle.add(&view, vec![Edit::Unmerged, Edit::Deleted(false)]);
                }
                continue;
            }
            let Some(survivor) = settle.current(self, chain.end)? else {
                continue;
            };
            if let Some((carried, at)) = self.carried_edits(&view, &survivor)? {
                settle.add(&survivor, carried);
                settle.add(&view, vec![Edit::Carried(at)]);
            }
            for (source, _) in self.store().backlinks(id)? {
                if source == chain.end {
                    continue;
                }
                if let Some(v) = settle.current(self, source)?
                    && v.merged_into.is_none()
                    && self.check_space_writable(v.space).is_ok()
                {
                    let e = self.repoint_to_survivors(&v)?;
                    settle.add(&v, e);
                }
            }
        }
        let edits = settle.into_edits();
        let n = edits.len();
        if n > 0 {
            self.write_edits_guarded(&guard, edits)?;
        }
        Ok(n)
    }

    /// Edits that point `view`'s references to merged-away records at
    /// their survivors.
    fn repoint_to_survivors(&self, view: &RecordView) -> Result<Vec<Edit>, NodeError> {
        let mut ends = BTreeMap::new();
        for (_, target) in view.references() {
            let end = self.survivor(target)?;
            if end != target {
                ends.insert(target, end);
            }
        }
        if ends.is_empty() {
            return Ok(Vec::new());
        }
        Ok(repoint(view, &|id| ends.get(&id).copied())
            .into_iter()
            .map(|(f, v)| Edit::Set(f, v))
            .collect())
    }

    /// The edits a merged-away record received since the merge (or the
    /// last carry-over), as edits of its survivor (as it is with what is
    /// already queued for it), and the heads they were read at; `None`
    /// when none of its fields changed since.
    fn carried_edits(
        &self,
        merged: &RecordView,
        survivor: &RecordView,
    ) -> Result<Option<Carry>, NodeError> {
        let mut d = self.load_doc(merged.id)?;
        let Some(base) = doc::carry_base(&d) else {
            return Ok(None);
        };
        let heads = d.get_heads();
        let then = doc::fields_at(&d, &base).map_err(NodeError::from)?;
        let now = doc::fields_at(&d, &heads).map_err(NodeError::from)?;
        if then == now {
            return Ok(None);
        }
        let mut edits = Vec::new();
        let names: BTreeSet<&String> = then.keys().chain(now.keys()).collect();
        for name in names {
            let (was, is) = (then.get(name), now.get(name));
            let Some(def) = survivor.kind.field(name) else {
                continue;
            };
            if was == is {
                continue;
            }
            let current = survivor.fields.get(name);
            let wanted = if def.ty.is_list() {
                // Items added since are added; items removed since are
                // removed; the survivor's own stay.
                let was = was.map_or(&[][..], FieldValue::as_list);
                let is = is.map_or(&[][..], FieldValue::as_list);
                let mut list: Vec<String> = current
                    .map_or(&[][..], FieldValue::as_list)
                    .iter()
                    .filter(|i| is.contains(i) || !was.contains(i))
                    .cloned()
                    .collect();
                for i in is {
                    if !was.contains(i) && !list.contains(i) {
                        list.push(i.clone());
                    }
                }
                (!list.is_empty()).then_some(FieldValue::List(list))
            } else {
                is.cloned()
            };
            if wanted.as_ref() == current {
                continue;
            }
            edits.push(match wanted {
                Some(v) => Edit::Set(name.clone(), v),
                None => Edit::Unset(name.clone()),
            });
        }
        Ok(Some((edits, heads)))
    }
}

/// Edits to carry over to a survivor, and the heads of the merged-away
/// record they were read at.
type Carry = (Vec<Edit>, Vec<ChangeHash>);

/// Links followed at most from one record: a peer cannot make a lookup
/// walk without end.
const MAX_CHAIN: usize = 64;

/// Where a record's `merged_into` links lead.
struct Chain {
    end: RecordId,
    /// The links loop; `end` is the oldest record of the loop.
    cycle: bool,
}

/// The edits one settling queues, per record, and each record as it will
/// be once they are written, so that two edits of one survivor (from two
/// records merged into it) build on each other instead of one replacing
/// the other.
#[derive(Default)]
struct Settle {
    edits: BTreeMap<RecordId, (RecordView, Vec<Edit>)>,
    working: BTreeMap<RecordId, RecordView>,
}

impl Settle {
    fn current(&mut self, repo: &Repo, id: RecordId) -> Result<Option<RecordView>, NodeError> {
        if let Some(v) = self.working.get(&id) {
            return Ok(Some(v.clone()));
        }
        let v = repo.store().view(id)?;
        if let Some(v) = &v {
            self.working.insert(id, v.clone());
        }
        Ok(v)
    }

    fn add(&mut self, view: &RecordView, edits: Vec<Edit>) {
        if edits.is_empty() {
            return;
        }
        let working = self.working.entry(view.id).or_insert_with(|| view.clone());
        for e in &edits {
            match e {
                Edit::Set(f, v) => {
                    working.fields.insert(f.clone(), v.clone());
                }
                Edit::Unset(f) => {
                    working.fields.remove(f);
                }
                _ => {}
            }
        }
        let stored = self
            .edits
            .entry(view.id)
            .or_insert_with(|| (view.clone(), Vec::new()));
        stored.1.extend(edits);
    }

    fn into_edits(self) -> Vec<(RecordView, Vec<Edit>)> {
        self.edits.into_values().collect()
    }
}

/// Where merge `id`'s log is; `None` for an id no merge can have (they
/// are hex), so that a name from outside never leaves the directory.
/// For `rapport privacy compact`: removes the log of every merge that
/// names an erased record (its fields, as they were, may hold their
/// data; such a merge can no longer be undone). Returns how many.
pub(crate) fn forget_erased(
    data_dir: &std::path::Path,
    erased: &std::collections::HashSet<RecordId>,
) -> Result<usize, NodeError> {
    let mut removed = 0;
    for path in crate::datadir::files_with_extension(&data_dir.join(DIR), "json")? {
        let bytes = fs::read(&path).map_err(|e| NodeError::io(&path, e))?;
        let names_erased = match serde_json::from_slice::<MergeRecord>(&bytes) {
            Ok(r) => {
                erased.contains(&r.kept)
                    || r.merged.iter().any(|id| erased.contains(id))
                    || r.fields
                        .iter()
                        .chain(&r.repointed)
                        .any(|w| erased.contains(&w.record))
            }
            // Unreadable: it may name anyone.
            Err(_) => true,
        };
        if names_erased {
            fs::remove_file(&path).map_err(|e| NodeError::io(&path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn log_path(dir: &std::path::Path, id: &str) -> Option<std::path::PathBuf> {
    crate::import::safe_id(id).then(|| dir.join(DIR).join(format!("{id}.json")))
}

fn deleted(v: &RecordView) -> NodeError {
    NodeError::Forbidden(format!(
        "{} ({}) is deleted{}; only live records merge",
        v.title(),
        v.id,
        v.merged_into
            .map(|s| format!(", merged into {s}"))
            .unwrap_or_default()
    ))
}

/// The survivor's fields after merging `merged` into `kept`.
fn combine(
    defs: &[&'static FieldDef],
    kept: &RecordView,
    merged: &[RecordView],
    chosen: &BTreeMap<&'static str, RecordId>,
) -> BTreeMap<String, FieldValue> {
    let ids: BTreeSet<RecordId> = merged.iter().map(|m| m.id).collect();
    let all: Vec<&RecordView> = std::iter::once(kept).chain(merged).collect();
    let mut out = BTreeMap::new();
    for def in defs {
        let value = if let Some(from) = chosen.get(def.name) {
            all.iter()
                .find(|v| v.id == *from)
                .and_then(|v| v.fields.get(def.name).cloned())
        } else if def.ty.is_list() {
            let mut items: Vec<String> = Vec::new();
            for v in &all {
                for i in v.fields.get(def.name).map_or(&[][..], FieldValue::as_list) {
                    if !items.contains(i) {
                        items.push(i.clone());
                    }
                }
            }
            (!items.is_empty()).then_some(FieldValue::List(items))
        } else {
            all.iter().find_map(|v| v.fields.get(def.name).cloned())
        };
        let Some(mut value) = value else { continue };
        // A reference among the merged records points at the survivor; the
        // survivor does not refer to itself.
        if def.ty.ref_kinds().is_some() {
            value = match value {
                FieldValue::Text(s) => match s.parse::<RecordId>() {
                    Ok(id) if id == kept.id || ids.contains(&id) => continue,
                    _ => FieldValue::Text(s),
                },
                FieldValue::List(l) => FieldValue::List(
                    l.into_iter()
                        .filter(|s| {
                            s.parse::<RecordId>()
                                .map_or(true, |id| id != kept.id && !ids.contains(&id))
                        })
                        .collect(),
                ),
                other => other,
            };
        }
        out.insert(def.name.to_string(), value);
    }
    out
}

/// `view`'s reference fields with every id `to` maps replaced by what it
/// maps to (lists keep their order, without repeats): the fields that
/// change, with their new values.
fn repoint(
    view: &RecordView,
    to: &dyn Fn(RecordId) -> Option<RecordId>,
) -> Vec<(String, FieldValue)> {
    let mut out = Vec::new();
    for def in view.kind.fields() {
        if def.ty.ref_kinds().is_none() {
            continue;
        }
        let Some(value) = view.fields.get(def.name) else {
            continue;
        };
        let map = |s: &String| {
            s.parse::<RecordId>()
                .ok()
                .and_then(to)
                .map_or_else(|| s.clone(), |id| id.to_string())
        };
        let new = match value {
            FieldValue::Text(s) => FieldValue::Text(map(s)),
            FieldValue::List(l) => {
                let mut items: Vec<String> = Vec::new();
                for i in l.iter().map(map) {
                    if !items.contains(&i) {
                        items.push(i);
                    }
                }
                FieldValue::List(items)
            }
            _ => continue,
        };
        if &new != value {
            out.push((def.name.to_string(), new));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::tests::{add, node, sync};
    use crate::repo::tests::input;
    use rapport_model::{Kind, Role};

    fn person(repo: &Repo, space: SpaceId, fields: &[(&str, &str)]) -> RecordView {
        repo.create(Kind::Person, space, &input(fields))
            .expect("person")
    }

    #[test]
    fn a_merge_unites_fills_repoints_redirects_and_undoes() {
        let (_t, repo) = node();
        let acme = repo
            .create(Kind::Company, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("acme");
        let ann = person(
            &repo,
            SpaceId::Private,
            &[
                ("name", "Ann Baker"),
                ("emails", "ann@acme.test"),
                ("title", "CFO"),
            ],
        );
        let dup = person(
            &repo,
            SpaceId::Private,
            &[
                ("name", "A. Baker"),
                ("emails", "ann@home.test"),
                ("title", "Finance"),
                ("company", "Acme"),
                ("tags", "vip"),
            ],
        );
        let deal = repo
            .create(
                Kind::Deal,
                SpaceId::Private,
                &input(&[
                    ("title", "Renewal"),
                    ("company", "Acme"),
                    ("contacts", &format!("{},{}", dup.id, ann.id)),
                ]),
            )
            .expect("deal");
        let merge = repo
            .merge(&ann.id.to_string(), &[dup.id.to_string()], &[])
            .expect("merge");

        let kept = repo.view(ann.id).expect("read").expect("ann");
        assert_eq!(kept.text("name"), Some("Ann Baker"), "the kept name stays");
        assert_eq!(kept.text("title"), Some("CFO"), "the kept scalar wins");
        assert_eq!(
            kept.get("emails").map(FieldValue::as_list),
            Some(&["ann@acme.test".to_string(), "ann@home.test".to_string()][..]),
            "lists are united"
        );
        assert_eq!(
            kept.text("company"),
            Some(acme.id.to_string().as_str()),
            "filled"
        );
        assert_eq!(
            kept.get("tags").map(FieldValue::as_list),
            Some(&["vip".to_string()][..])
        );
        let gone = repo.view(dup.id).expect("read").expect("dup");
        assert!(gone.deleted);
        assert_eq!(gone.merged_into, Some(ann.id));
        let d = repo.view(deal.id).expect("read").expect("deal");
        assert_eq!(
            d.get("contacts").map(FieldValue::as_list),
            Some(&[ann.id.to_string()][..]),
            "the deal's contacts point at the survivor, once"
        );
        // A reference to the merged record resolves to the survivor.
        let (found, from) = repo.resolve_noting(&dup.id.to_string()).expect("resolve");
        assert_eq!(found.id, ann.id);
        assert_eq!(from.map(|f| f.id), Some(dup.id));
        assert_eq!(repo.resolve("A. Baker").expect("by name").id, ann.id);
        assert!(
            repo.merge("Ann Baker", &[dup.id.to_string()], &[]).is_err(),
            "merged already"
        );

        // Someone changes the title after the merge: undo leaves it.
        repo.edit("Ann Baker", &input(&[("title", "CEO")]), &[])
            .expect("edit");
        let undone = repo.merge_undo(&merge.id, None).expect("undo");
        assert_eq!(undone.restored_records, 1);
        let back = repo.view(dup.id).expect("read").expect("dup");
        assert!(!back.deleted && back.merged_into.is_none());
        let kept = repo.view(ann.id).expect("read").expect("ann");
        assert_eq!(kept.text("title"), Some("CEO"), "changed since: kept");
        assert_eq!(
            kept.get("emails").map(FieldValue::as_list),
            Some(&["ann@acme.test".to_string()][..])
        );
        assert_eq!(kept.get("company"), None);
        let d = repo.view(deal.id).expect("read").expect("deal");
        let mut contacts = d
            .get("contacts")
            .map(FieldValue::as_list)
            .unwrap_or_default()
            .to_vec();
        contacts.sort();
        let mut wanted = [ann.id.to_string(), dup.id.to_string()];
        wanted.sort();
        assert_eq!(contacts, wanted, "references point back");
        assert!(repo.merge_undo(&merge.id, None).is_err(), "undone already");
        assert!(repo.merges(None).expect("list")[0].undone.is_some());
    }

    #[test]
    fn prefer_takes_a_field_from_a_merged_record_and_bad_merges_are_refused() {
        let (_t, repo) = node();
        let ann = person(
            &repo,
            SpaceId::Private,
            &[("name", "Ann"), ("title", "CFO")],
        );
        let dup = person(
            &repo,
            SpaceId::Private,
            &[("name", "Ann B"), ("title", "CEO")],
        );
        let acme = repo
            .create(Kind::Company, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("acme");
        let other = person(&repo, SpaceId::Private, &[("name", "Bob")]);
        let refused = [
            repo.merge("Ann", &["Ann".into()], &[]),
            repo.merge("Ann", &["Acme".into()], &[]),
            repo.merge("Ann", &[], &[]),
            repo.merge("Ann", &["Ann B".into()], &[("title".into(), "Bob".into())]),
            repo.merge(
                "Ann",
                &["Ann B".into()],
                &[("colour".into(), "Ann B".into())],
            ),
        ];
        for r in refused {
            assert!(r.is_err(), "{r:?}");
        }
        let _ = (acme, other);
        repo.merge(
            "Ann",
            &["Ann B".into()],
            &[("title".into(), dup.id.to_string())],
        )
        .expect("merge");
        assert_eq!(
            repo.view(ann.id).expect("r").expect("ann").text("title"),
            Some("CEO")
        );
    }

    /// The space "Joint" of `a` and `b` (both writers), with Ann and her
    /// duplicate on both.
    fn joint() -> (
        (tempfile::TempDir, Repo),
        (tempfile::TempDir, Repo),
        SpaceId,
        RecordView,
        RecordView,
    ) {
        let (ta, a) = node();
        let (tb, b) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &b, Role::Writer);
        let ann = person(
            &a,
            space,
            &[("name", "Ann Baker"), ("emails", "ann@acme.test")],
        );
        // Ids order by the millisecond first: Ann is the older record.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let dup = person(
            &a,
            space,
            &[("name", "A. Baker"), ("phones", "+49 30 1234567")],
        );
        sync(&b, &a, space);
        ((ta, a), (tb, b), space, ann, dup)
    }

    #[test]
    fn an_edit_made_elsewhere_before_the_merge_was_heard_of_is_carried_over() {
        let ((_ta, a), (_tb, b), space, ann, dup) = joint();
        a.merge(&ann.id.to_string(), &[dup.id.to_string()], &[])
            .expect("merge");
        // B, not yet told, edits the duplicate and points a new deal at it.
        b.edit(
            &dup.id.to_string(),
            &input(&[
                ("title", "Head of Finance"),
                ("phones", "+49 30 1234567,+49 170 555"),
            ]),
            &[],
        )
        .expect("edit on b");
        let deal = b
            .create(
                Kind::Activity,
                space,
                &input(&[("type", "call"), ("about", &dup.id.to_string())]),
            )
            .expect("call on b");
        sync(&b, &a, space);
        sync(&b, &a, space);
        for (name, r) in [("a", &a), ("b", &b)] {
            let kept = r.view(ann.id).expect("read").expect("ann");
            assert_eq!(kept.text("title"), Some("Head of Finance"), "on {name}");
            assert_eq!(
                kept.get("phones").map(FieldValue::as_list),
                Some(&["+49 30 1234567".to_string(), "+49 170 555".to_string()][..]),
                "on {name}"
            );
            assert!(
                kept.conflicts.is_empty(),
                "equal writes are no conflict: {kept:?}"
            );
            let d = r.view(deal.id).expect("read").expect("call");
            assert_eq!(
                d.get("about").map(FieldValue::as_list),
                Some(&[ann.id.to_string()][..]),
                "the new call is about the survivor on {name}"
            );
            assert!(r.view(dup.id).expect("read").expect("dup").deleted);
        }
        // Settled: another round writes nothing more.
        let before = a.change_count();
        sync(&b, &a, space);
        assert_eq!(
            a.settle_merges(space, &[dup.id, deal.id]).expect("settle"),
            0
        );
        assert_eq!(a.change_count(), before);
    }

    #[test]
    fn merges_made_the_other_way_round_at_once_converge_on_the_oldest_record() {
        let ((_ta, a), (_tb, b), space, ann, dup) = joint();
        assert!(ann.id < dup.id, "Ann is the older record");
        a.merge(&dup.id.to_string(), &[ann.id.to_string()], &[])
            .expect("merge on a");
        b.merge(&ann.id.to_string(), &[dup.id.to_string()], &[])
            .expect("merge on b");
        sync(&b, &a, space);
        sync(&b, &a, space);
        for (name, r) in [("a", &a), ("b", &b)] {
            let kept = r.view(ann.id).expect("read").expect("ann");
            assert!(
                !kept.deleted && kept.merged_into.is_none(),
                "on {name}: {kept:?}"
            );
            assert_eq!(
                kept.get("phones").map(FieldValue::as_list),
                Some(&["+49 30 1234567".to_string()][..]),
                "on {name}"
            );
            let gone = r.view(dup.id).expect("read").expect("dup");
            assert!(gone.deleted, "on {name}");
            assert_eq!(r.resolve(&dup.id.to_string()).expect("r").id, ann.id);
        }
        assert_eq!(a.view(ann.id).expect("r"), b.view(ann.id).expect("r"));
    }

    /// Sends `ids`' changes from one node to another, as one batch.
    fn push(from: &Repo, to: &Repo, space: SpaceId, ids: &[RecordId]) {
        let batch = ids
            .iter()
            .map(|id| (*id, crate::ingest::tests::all_changes(from, *id)))
            .collect();
        to.apply_remote_batch(space, batch, from.device_id())
            .expect("apply");
    }

    fn title(r: &Repo, id: RecordId) -> Option<String> {
        r.view(id)
            .expect("read")
            .and_then(|v| v.text("title").map(String::from))
    }

    #[test]
    fn an_edit_carried_over_once_is_not_carried_again_over_a_later_edit() {
        let ((_ta, a), (_tb, b), space, ann, dup) = joint();
        a.edit(&ann.id.to_string(), &input(&[("title", "CFO")]), &[])
            .expect("e");
        push(&a, &b, space, &[ann.id]);
        a.merge(&ann.id.to_string(), &[dup.id.to_string()], &[])
            .expect("merge");
        // B, not told, sets the duplicate's title to what the survivor has:
        // nothing to write, but the start point moves on.
        b.edit(&dup.id.to_string(), &input(&[("title", "CFO")]), &[])
            .expect("b1");
        push(&b, &a, space, &[dup.id]);
        a.edit(&ann.id.to_string(), &input(&[("title", "CEO")]), &[])
            .expect("a edit");
        b.edit(
            &dup.id.to_string(),
            &input(&[("phones", "+49 30 1234567,+49 170 555")]),
            &[],
        )
        .expect("b2");
        push(&b, &a, space, &[dup.id]);
        assert_eq!(title(&a, ann.id).as_deref(), Some("CEO"));
        let phones = a.view(ann.id).expect("r").expect("ann");
        assert_eq!(
            phones
                .get("phones")
                .map(FieldValue::as_list)
                .map(<[String]>::len),
            Some(2)
        );
    }

    #[test]
    fn two_records_merged_into_one_carry_their_list_additions_together() {
        let ((_ta, a), (_tb, b), space, ann, dup) = joint();
        let dup2 = person(&a, space, &[("name", "Ann B.")]);
        push(&a, &b, space, &[dup2.id]);
        a.merge(
            &ann.id.to_string(),
            &[dup.id.to_string(), dup2.id.to_string()],
            &[],
        )
        .expect("merge");
        b.edit(
            &dup.id.to_string(),
            &input(&[("emails", "x@one.test")]),
            &[],
        )
        .expect("b1");
        b.edit(
            &dup2.id.to_string(),
            &input(&[("emails", "y@two.test")]),
            &[],
        )
        .expect("b2");
        push(&b, &a, space, &[dup.id, dup2.id]);
        let kept = a.view(ann.id).expect("r").expect("ann");
        let emails = kept
            .get("emails")
            .map(FieldValue::as_list)
            .unwrap_or_default();
        assert!(
            emails.contains(&"x@one.test".to_string())
                && emails.contains(&"y@two.test".to_string()),
            "{emails:?}"
        );
    }

    #[test]
    fn merging_again_after_an_undo_starts_afresh() {
        let ((_ta, a), (_tb, b), space, ann, dup) = joint();
        let m = a
            .merge(&ann.id.to_string(), &[dup.id.to_string()], &[])
            .expect("merge");
        b.edit(&dup.id.to_string(), &input(&[("title", "X")]), &[])
            .expect("b1");
        sync(&b, &a, space);
        sync(&b, &a, space);
        a.merge_undo(&m.id, None).expect("undo");
        sync(&b, &a, space);
        a.edit(&ann.id.to_string(), &input(&[("title", "Ann title")]), &[])
            .expect("e");
        a.edit(
            &dup.id.to_string(),
            &input(&[("title", "Other title")]),
            &[],
        )
        .expect("e");
        sync(&b, &a, space);
        a.merge(&ann.id.to_string(), &[dup.id.to_string()], &[])
            .expect("merge again");
        sync(&b, &a, space);
        sync(&b, &a, space);
        for r in [&a, &b] {
            assert_eq!(title(r, ann.id).as_deref(), Some("Ann title"));
        }
    }

    #[test]
    fn a_merge_link_a_peer_points_at_another_space_is_not_followed() {
        let ((_ta, a), (_tb, b), space, _ann, dup) = joint();
        let private = person(
            &a,
            SpaceId::Private,
            &[("name", "Pat Private"), ("title", "untouched")],
        );
        let v = b.view(dup.id).expect("r").expect("dup");
        let at = b.load_doc(dup.id).expect("doc").get_heads();
        b.write_records(
            Vec::new(),
            vec![(
                v,
                vec![
                    Edit::Set("title".into(), FieldValue::Text("pwned".into())),
                    Edit::MergedInto(private.id, at),
                ],
            )],
        )
        .expect("craft");
        push(&b, &a, space, &[dup.id]);
        assert_eq!(title(&a, private.id).as_deref(), Some("untouched"));
        assert_eq!(a.resolve(&dup.id.to_string()).expect("r").id, dup.id);
    }

    #[test]
    fn deleting_or_restoring_a_merged_away_id_is_refused_naming_the_survivor() {
        let (_t, repo) = node();
        let ann = person(&repo, SpaceId::Private, &[("name", "Ann")]);
        let dup = person(&repo, SpaceId::Private, &[("name", "Ann B")]);
        repo.merge(&ann.id.to_string(), &[dup.id.to_string()], &[])
            .expect("merge");
        let err = repo.delete(&dup.id.to_string()).expect_err("refused");
        assert!(err.to_string().contains("was merged into Ann"), "{err}");
        assert!(repo.restore(&dup.id.to_string()).is_err());
        assert!(!repo.view(ann.id).expect("r").expect("ann").deleted);
    }

    #[test]
    fn a_list_item_carried_by_two_nodes_at_once_can_still_be_removed() {
        let ((_ta, a), (_tb, b), space, ann, dup) = joint();
        let SpaceId::Shared(sid) = space else {
            panic!("shared")
        };
        let (_tc, c) = node();
        add(&a, sid, &c, Role::Writer);
        sync(&c, &a, space);
        sync(&b, &a, space);
        a.merge(&ann.id.to_string(), &[dup.id.to_string()], &[])
            .expect("merge");
        push(&a, &b, space, &[dup.id, ann.id]);
        c.edit(
            &dup.id.to_string(),
            &input(&[("phones", "+49 30 1234567,+49 170 555,+49 170 666")]),
            &[],
        )
        .expect("c");
        // A and B both carry C's numbers over, at once.
        push(&c, &a, space, &[dup.id]);
        push(&c, &b, space, &[dup.id]);
        sync(&b, &a, space);
        sync(&b, &a, space);
        a.edit(
            &ann.id.to_string(),
            &input(&[("phones", "+49 30 1234567,+49 170 555")]),
            &[],
        )
        .expect("edit");
        let phones = a
            .view(ann.id)
            .expect("r")
            .expect("ann")
            .get("phones")
            .cloned();
        assert_eq!(
            phones,
            Some(FieldValue::List(vec![
                "+49 30 1234567".into(),
                "+49 170 555".into()
            ]))
        );
    }
}
