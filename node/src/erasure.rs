//! Erasure: a person's records erased on every node that holds them.
//!
//! In a shared space an erasure is a signed statement in the space's
//! history (`rapport_model::space::add_erasure`), judged like a
//! membership statement (`rapport_trust::policy`: admins and privacy
//! officers only, ids and a reason, never edited). Every node that accepts
//! it, members and relays alike, erases what it holds of those records
//! (`Store::erase`: the documents, every change by every author, their
//! index entries) and refuses any later change of them; then it writes a
//! signed receipt in the space's history, so that the eraser sees which
//! nodes have done it (`Repo::erasure_status`). A private record is
//! erased on this node only, the reason kept in `erasures.jsonl`.

use std::collections::BTreeMap;
use std::io::Write;

use rapport_model::space::{self, EraseStatement, Erasure, short_erasure_id};
use rapport_model::{Kind, RecordId, RecordView, Role, SpaceId, SpaceView};

use crate::{NodeError, Repo};

/// The file of this node's erasures of private records (ids and reasons).
pub const LOCAL_LOG: &str = "erasures.jsonl";

/// What `rapport privacy erase` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErasureReport {
    /// The erasure's id, short form (`1a2b3c4d.0`, or `local.<time>`).
    pub erasure: String,
    /// The space's name, or `private`.
    pub space: String,
    /// The records erased: the person first, then their activities.
    pub ids: Vec<RecordId>,
    /// Members and relays that have still to confirm it.
    pub waiting: usize,
}

/// Which nodes have applied an erasure.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErasureStatus {
    pub erasure: String,
    pub space: String,
    /// `None` for the private space.
    pub space_id: Option<RecordId>,
    /// Who erased (a device label), when (seconds since the Unix epoch),
    /// why, and which records.
    pub by: String,
    pub at: i64,
    pub reason: String,
    pub ids: Vec<RecordId>,
    /// Every current member and relay of the space: confirmed (when) or
    /// not yet.
    pub nodes: Vec<ErasureNode>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErasureNode {
    pub device: String,
    pub label: String,
    pub role: Role,
    /// When it applied the erasure; `None` while it has not confirmed.
    pub confirmed: Option<i64>,
}

/// How a change of a history rebuilt to erase a field names its first
/// author (its `via`, then the author's key in hex).
pub const REBUILT_FROM: &str = "rebuilt-from:";

/// A line of [`LOCAL_LOG`].
#[derive(serde::Serialize, serde::Deserialize)]
struct LocalErasure {
    erasure: String,
    at: i64,
    ids: Vec<RecordId>,
    reason: String,
}

impl Repo {
    /// `rapport privacy erase`: erases record `reference` (and, with
    /// `with_activities`, the activities that refer to it) on this node,
    /// and in a shared space on every member's node, through a signed
    /// erase statement. Needs the admin or privacy role in the space.
    pub fn erase(
        &self,
        reference: &str,
        with_activities: bool,
        reason: &str,
    ) -> Result<ErasureReport, NodeError> {
        let record = self.resolve(reference)?;
        let mut reports =
            self.erase_records(std::slice::from_ref(&record), with_activities, reason)?;
        reports
            .pop()
            .ok_or_else(|| NodeError::Missing("nothing was erased".into()))
    }

    /// Erases `records` (with their consent records, and with
    /// `with_activities` the activities about them): one erase statement
    /// per space (and per [`space::MAX_ERASED_IDS`] records). Checks that
    /// this device may erase in every space before it erases anything.
    pub fn erase_records(
        &self,
        records: &[RecordView],
        with_activities: bool,
        reason: &str,
    ) -> Result<Vec<ErasureReport>, NodeError> {
        // One erase statement per space, spaces in order.
        let mut groups: BTreeMap<String, Vec<&RecordView>> = BTreeMap::new();
        for r in records {
            groups.entry(r.space.to_string()).or_default().push(r);
        }
        for group in groups.values() {
            if let SpaceId::Shared(space_id) = group[0].space {
                self.may_erase_in(space_id)?;
            }
        }
        let mut reports = Vec::new();
        for group in groups.values() {
            let mut ids: Vec<RecordId> = Vec::new();
            for record in group {
                if !ids.contains(&record.id) {
                    ids.push(record.id);
                }
                // Duplicates merged into them hold their data too.
                let mut merged = self.store().merged_away_into(record.id)?;
                while let Some(m) = merged.pop() {
                    if !ids.contains(&m) {
                        ids.push(m);
                        merged.extend(self.store().merged_away_into(m)?);
                    }
                }
                // Consent records are about the person alone: they go too.
                for (source, field) in self.store().backlinks(record.id)? {
                    if let Some(v) = self.store().view(source)?
                        && ((v.kind == Kind::Consent && field == "person")
                            || (with_activities && v.kind == Kind::Activity))
                        && v.space == record.space
                        && !ids.contains(&source)
                    {
                        ids.push(source);
                    }
                }
            }
            for chunk in ids.chunks(space::MAX_ERASED_IDS) {
                reports.push(self.erase_in(group[0].space, chunk.to_vec(), reason)?);
            }
        }
        Ok(reports)
    }

    fn may_erase_in(&self, space_id: RecordId) -> Result<SpaceView, NodeError> {
        let view = self
            .space(space_id)?
            .ok_or_else(|| NodeError::NotMember(space_id.to_string()))?;
        match view.role_of(&self.device_id().to_string()) {
            Some(role) if role.erases() => Ok(view),
            Some(role) => Err(NodeError::Forbidden(format!(
                "you are a {role} in space {}: only its admins and privacy officers erase records",
                view.name
            ))),
            None => Err(NodeError::NotMember(view.name)),
        }
    }

    /// One erasure of `ids`, all of `space`, where this device may erase
    /// ([`Repo::erase_records`] checked).
    fn erase_in(
        &self,
        space: SpaceId,
        ids: Vec<RecordId>,
        reason: &str,
    ) -> Result<ErasureReport, NodeError> {
        let statement = EraseStatement {
            ids: ids.clone(),
            reason: reason.trim().to_string(),
        };
        statement.validate().map_err(NodeError::Forbidden)?;
        match space {
            SpaceId::Private => {
                let _guard = self.write_guard();
                let at = self.now().as_second();
                let erasure = format!("local.{}", self.now().as_millisecond());
                self.log_local(&LocalErasure {
                    erasure: erasure.clone(),
                    at,
                    ids: ids.clone(),
                    reason: statement.reason.clone(),
                })?;
                for id in &ids {
                    self.store().erase(*id, SpaceId::Private, &erasure)?;
                }
                self.store().flush()?;
                tracing::info!(%erasure, records = ids.len(), "erased private records");
                Ok(ErasureReport {
                    erasure,
                    space: space::PRIVATE.to_string(),
                    ids,
                    waiting: 0,
                })
            }
            SpaceId::Shared(space_id) => {
                let _guard = self.write_guard();
                let mut doc = self.load_doc(space_id)?;
                let erasure = space::add_erasure(&mut doc, &statement, self.now())?;
                let after = self.write_space_doc(&mut doc, space_id)?;
                tracing::info!(erasure = %short_erasure_id(&erasure), records = ids.len(), "erase statement written");
                Ok(ErasureReport {
                    erasure: short_erasure_id(&erasure),
                    space: after.name.clone(),
                    ids,
                    waiting: status_nodes(self, &after, &erasure, &self.device_id().to_string())
                        .iter()
                        .filter(|n| n.confirmed.is_none())
                        .count(),
                })
            }
        }
    }

    /// Whether a statement of `space` may erase `id` here: a record this
    /// node holds in that space, or one it does not hold at all (then the
    /// mark keeps it from arriving later). Never a space, nor a record of
    /// another space or the private one.
    fn of_space(&self, id: RecordId, space: SpaceId) -> Result<bool, NodeError> {
        if self.store().space(id)?.is_some() {
            return Ok(false);
        }
        Ok(match self.store().view(id)? {
            Some(v) => v.space == space,
            None => self.store().holds_in(space, id)? || self.store().change_hashes(id)?.is_empty(),
        })
    }

    /// What a reference to `id` shows when the record was erased here:
    /// "erased person", never a dangling id.
    pub fn erased_title(&self, id: RecordId) -> Option<String> {
        self.store()
            .erased(id)
            .ok()
            .flatten()
            .map(|e| format!("erased {}", e.kind))
    }

    fn log_local(&self, entry: &LocalErasure) -> Result<(), NodeError> {
        let path = self.dir().join(LOCAL_LOG);
        let mut line = serde_json::to_vec(entry).map_err(|e| NodeError::Damaged {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| NodeError::io(&path, e))?;
        file.write_all(&line)
            .and_then(|()| file.sync_all())
            .map_err(|e| NodeError::io(&path, e))
    }

    /// Erases what this node holds of the records `view`'s accepted
    /// erasures name and has not erased yet; returns how many. Called
    /// whenever a space document is stored, from a peer or from the
    /// journal, so a node that was offline applies an erasure as soon as
    /// it hears of it.
    pub(crate) fn apply_erasures(&self, view: &SpaceView) -> Result<usize, NodeError> {
        let mut erased = 0;
        let space = SpaceId::Shared(view.id);
        for erasure in &view.erasures {
            for id in &erasure.ids {
                if self.store().erased(*id)?.is_some() || !self.of_space(*id, space)? {
                    continue;
                }
                self.store().erase(*id, space, &erasure.id)?;
                erased += 1;
            }
        }
        if erased > 0 {
            tracing::info!(space = %view.id, records = erased, "applied an erasure");
        }
        Ok(erased)
    }

    /// `rapport privacy erase RECORD --field F`: erases one field of a
    /// record that stays, on every node of its space. Automerge keeps
    /// every value in history, so the record's history is rebuilt: each
    /// of its changes, in order, again without the field (the same values
    /// and times, written by this device, naming the original author),
    /// then one change to its current state; a signed rebase statement
    /// names the rebuilt changes, and every node drops the old ones.
    pub fn erase_field(
        &self,
        reference: &str,
        field: &str,
        reason: &str,
    ) -> Result<ErasureReport, NodeError> {
        // Read under the write guard: no edit lands between the record read
        // and its rebuilt history.
        let _guard = self.write_guard();
        let view = self.resolve(reference)?;
        let SpaceId::Shared(space_id) = view.space else {
            return Err(NodeError::Forbidden(
                "one field is erased from records of a shared space; a private record is erased whole (then add it again without the field)".into(),
            ));
        };
        self.may_erase_in(space_id)?;
        let chain = self.rebuilt_without(&view, field)?;
        let hashes: Vec<String> = chain
            .iter()
            .map(|c| rapport_proto::hex(&c.hash().0))
            .collect();
        let statement = space::RebaseStatement {
            record: view.id,
            chain: hashes,
            fields: vec![field.to_string()],
            reason: reason.trim().to_string(),
        };
        statement.validate().map_err(NodeError::Forbidden)?;
        let mut signed = Vec::with_capacity(chain.len());
        for change in chain {
            signed.push((self.key().sign_change(&change)?, change));
        }
        // The rebuilt history is stored (held aside, journaled) before the
        // statement that drops the old one: a crash in between leaves the
        // record as it was, never without any history.
        let encoded: Vec<Vec<u8>> = signed.iter().map(|(s, _)| s.encode()).collect();
        let held: Vec<(Vec<u8>, rapport_proto::SignedChange)> = signed
            .into_iter()
            .map(|(s, c)| (c.hash().0.to_vec(), s))
            .collect();
        self.store().keep_pending(view.id, view.space, &held)?;
        self.store().flush()?;
        let mut doc = self.load_doc(space_id)?;
        let rebase = space::add_rebase(&mut doc, &statement, self.now())?;
        // Storing the statement drops the old history and stores the
        // record again from the rebuilt one (`apply_rebases`).
        let after = self.write_space_doc(&mut doc, space_id)?;
        let heads = self.store().heads(view.space, view.id)?.unwrap_or_default();
        self.notify(crate::repo::LocalChange {
            space: view.space,
            record: view.id,
            heads,
            changes: encoded,
        });
        tracing::info!(erasure = %short_erasure_id(&rebase), "a field erased; history rebuilt");
        Ok(ErasureReport {
            erasure: short_erasure_id(&rebase),
            space: after.name.clone(),
            ids: vec![view.id],
            waiting: status_nodes(self, &after, &rebase, &self.device_id().to_string())
                .iter()
                .filter(|n| n.confirmed.is_none())
                .count(),
        })
    }

    /// `record`'s history again, without `field`, as new changes of this
    /// device (see [`Repo::erase_field`]).
    fn rebuilt_without(
        &self,
        record: &RecordView,
        field: &str,
    ) -> Result<Vec<rapport_model::automerge::Change>, NodeError> {
        use rapport_model::doc::{self, Edit};
        let mut old = self.load_doc(record.id)?;
        let changes = old.get_changes(&[]);
        let strip = |v: &RecordView| {
            let mut f = v.fields.clone();
            f.remove(field);
            f
        };
        let mut seen = false;
        // The oldest changes are folded into the first when the history
        // is longer than a rebuilt one may be.
        let skip = changes.len().saturating_sub(space::MAX_CHAIN - 2);
        let mut new: Option<rapport_model::automerge::AutoCommit> = None;
        for (i, change) in changes.iter().enumerate() {
            let after = RecordView::read(&mut old, record.id, Some(&[change.hash()]))?;
            seen |= after.fields.contains_key(field);
            if i < skip {
                continue;
            }
            let time =
                jiff::Timestamp::from_second(change.timestamp()).unwrap_or_else(|_| self.now());
            let via = format!("{REBUILT_FROM}{}", change.actor_id().to_hex_string());
            match new.as_mut() {
                None => {
                    let fields: Vec<(String, rapport_model::FieldValue)> =
                        strip(&after).into_iter().collect();
                    let mut d = doc::create_via(
                        self.device_id().actor_id(),
                        record.kind,
                        record.space,
                        &fields,
                        time,
                        Some(&via),
                    )?;
                    if after.deleted {
                        doc::edit_via(&mut d, &[Edit::Deleted(true)], time, Some(&via))?;
                    }
                    new = Some(d);
                }
                Some(d) => {
                    let before = RecordView::read(&mut old, record.id, Some(change.deps()))?;
                    let edits = edits_between(
                        &strip(&before),
                        before.deleted,
                        &strip(&after),
                        after.deleted,
                    );
                    if !edits.is_empty() {
                        doc::edit_via(d, &edits, time, Some(&via))?;
                    }
                }
            }
        }
        if !seen {
            return Err(NodeError::Missing(format!(
                "{} never had a value for `{field}`: there is nothing to erase",
                record.title()
            )));
        }
        let Some(mut d) = new else {
            return Err(NodeError::Missing(format!(
                "{} has no history",
                record.title()
            )));
        };
        // Concurrent branches were replayed one after the other: the last
        // change brings the record to what it is now.
        let replayed = RecordView::read(&mut d, record.id, None)?;
        let edits = edits_between(
            &replayed.fields,
            replayed.deleted,
            &strip(record),
            record.deleted,
        );
        if !edits.is_empty() {
            doc::edit(&mut d, &edits, self.now())?;
        }
        Ok(d.get_changes(&[]))
    }

    /// Drops the old history of every record `view`'s rebases rebuilt,
    /// once per rebase, and stores the record again from its rebuilt
    /// history (or withdraws it until that arrives). Called whenever a
    /// space document is stored.
    pub(crate) fn apply_rebases(&self, view: &SpaceView) -> Result<usize, NodeError> {
        let mut applied = 0;
        for r in &view.rebases {
            if view.rebase_of(r.record).map(|x| &x.id) != Some(&r.id)
                || self.store().rebased(&r.id)?
                || !self.of_space(r.record, SpaceId::Shared(view.id))?
            {
                continue;
            }
            self.store()
                .purge_history(r.record, SpaceId::Shared(view.id), &r.chain)?;
            let mut report = crate::ingest::ApplyReport::default();
            self.settle(view.id, r.record, Some(view), Vec::new(), None, &mut report)?;
            self.store().mark_rebased(&r.id)?;
            applied += 1;
        }
        Ok(applied)
    }

    /// At open: applies what the spaces' erasures and rebases say and this
    /// node has not done yet (a crash after a space document was stored
    /// and before its erasures were), finishes the private erasures
    /// `erasures.jsonl` lists, and writes the receipts owed.
    pub(crate) fn finish_erasures(&self) -> Result<(), NodeError> {
        for view in self.store().spaces()? {
            if view.erasures.is_empty() && view.rebases.is_empty() {
                continue;
            }
            let _guard = self.write_guard();
            self.apply_erasures(&view)?;
            self.apply_rebases(&view)?;
        }
        for local in self.local_erasures()? {
            for id in &local.ids {
                if self.store().erased(*id)?.is_none()
                    && self
                        .store()
                        .view(*id)?
                        .is_some_and(|v| v.space == SpaceId::Private)
                {
                    self.store().erase(*id, SpaceId::Private, &local.erasure)?;
                }
            }
        }
        self.confirm_erasures()?;
        Ok(())
    }

    /// Writes this node's receipt of every erasure it applied and has not
    /// confirmed yet, in every space it belongs to; returns how many.
    pub fn confirm_erasures(&self) -> Result<usize, NodeError> {
        let me = self.device_id().to_string();
        let mut written = 0;
        for view in self.store().spaces()? {
            if !view.is_member(&me) {
                continue;
            }
            let all = statements_of(&view);
            let owed: Vec<&Erasure> = all
                .iter()
                .filter(|e| e.by != me)
                .filter(|e| {
                    !view
                        .receipts
                        .get(&e.id)
                        .is_some_and(|r| r.contains_key(&me))
                })
                .collect();
            if owed.is_empty() {
                continue;
            }
            let _guard = self.write_guard();
            let mut doc = self.load_doc(view.id)?;
            let mut here = 0;
            for e in &owed {
                // Only once every record it names is gone from this node,
                // or for a rebase, once its old history is and its rebuilt
                // one is here.
                let mut applied = true;
                match view.rebases.iter().find(|r| r.id == e.id) {
                    Some(r) => {
                        applied &= self.store().rebased(&r.id)?;
                        for h in &r.chain {
                            applied &= self.store().signed_change(h)?.is_some();
                        }
                    }
                    None => {
                        for id in &e.ids {
                            applied &= self.store().erased(*id)?.is_some();
                        }
                    }
                }
                if applied {
                    space::add_receipt(&mut doc, &e.id, self.now())?;
                    here += 1;
                }
            }
            if here > 0 {
                self.write_space_doc(&mut doc, view.id)?;
                written += here;
            }
        }
        Ok(written)
    }

    /// Every erasure of the spaces this node holds, newest first.
    pub fn erasures(&self) -> Result<Vec<ErasureStatus>, NodeError> {
        let me = self.device_id().to_string();
        let mut all = Vec::new();
        for view in self.store().spaces()? {
            for e in &statements_of(&view) {
                all.push(self.status_of(&view, e, &me));
            }
        }
        all.extend(self.local_erasures()?);
        all.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.erasure.cmp(&b.erasure)));
        Ok(all)
    }

    /// This node's erasures of private records, from [`LOCAL_LOG`].
    fn local_erasures(&self) -> Result<Vec<ErasureStatus>, NodeError> {
        let path = self.dir().join(LOCAL_LOG);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(NodeError::io(&path, e)),
        };
        let me = self.device_id().to_string();
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<LocalErasure>(l).ok())
            .map(|l| ErasureStatus {
                erasure: l.erasure,
                space: space::PRIVATE.to_string(),
                space_id: None,
                by: "this node".into(),
                at: l.at,
                reason: l.reason,
                ids: l.ids,
                nodes: vec![ErasureNode {
                    device: me.clone(),
                    label: "this node".into(),
                    role: Role::Admin,
                    confirmed: Some(l.at),
                }],
            })
            .collect())
    }

    /// `rapport privacy status ERASE-ID`: which members and relays have
    /// confirmed erasure `reference` (its id, short id or a prefix).
    pub fn erasure_status(&self, reference: &str) -> Result<ErasureStatus, NodeError> {
        let r = reference.trim();
        if let Some(local) = self.local_erasures()?.into_iter().find(|l| l.erasure == r) {
            return Ok(local);
        }
        let me = self.device_id().to_string();
        let mut found: Vec<(SpaceView, Erasure)> = Vec::new();
        for view in self.store().spaces()? {
            for e in &statements_of(&view) {
                if e.id == r || e.short_id() == r || (r.len() >= 4 && e.id.starts_with(r)) {
                    found.push((view.clone(), e.clone()));
                }
            }
        }
        match found.as_slice() {
            [(view, e)] => Ok(self.status_of(view, e, &me)),
            [] => Err(NodeError::Missing(format!(
                "no erasure matches `{r}`; `rapport privacy status` lists them"
            ))),
            _ => Err(NodeError::Missing(format!(
                "`{r}` matches several erasures; use the full id"
            ))),
        }
    }

    fn status_of(&self, view: &SpaceView, e: &Erasure, me: &str) -> ErasureStatus {
        ErasureStatus {
            erasure: e.short_id(),
            space: view.name.clone(),
            space_id: Some(view.id),
            by: self.device_label(view, &e.by),
            at: e.at,
            reason: e.reason.clone(),
            ids: e.ids.clone(),
            nodes: status_nodes(self, view, &e.id, me),
        }
    }
}

/// A space's erasures, its field-level ones (rebases) among them, as
/// erasures: one record each, the reason naming the fields.
fn statements_of(view: &SpaceView) -> Vec<Erasure> {
    let mut all = view.erasures.clone();
    all.extend(view.rebases.iter().map(|r| Erasure {
        id: r.id.clone(),
        by: r.by.clone(),
        at: r.at,
        ids: vec![r.record],
        reason: format!("field {} erased: {}", r.fields.join(", "), r.reason),
    }));
    all
}

/// The edits that take a record from `(before, deleted)` to `(after,
/// deleted)`.
fn edits_between(
    before: &BTreeMap<String, rapport_model::FieldValue>,
    was_deleted: bool,
    after: &BTreeMap<String, rapport_model::FieldValue>,
    deleted: bool,
) -> Vec<rapport_model::Edit> {
    use rapport_model::Edit;
    let mut edits: Vec<Edit> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| Edit::Set(k.clone(), v.clone()))
        .collect();
    edits.extend(
        before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .map(|k| Edit::Unset(k.clone())),
    );
    if was_deleted != deleted {
        edits.push(Edit::Deleted(deleted));
    }
    edits
}

/// The current members of `view` with their receipt of erasure `id`; its
/// author counts as confirmed when it wrote the statement.
fn status_nodes(repo: &Repo, view: &SpaceView, id: &str, me: &str) -> Vec<ErasureNode> {
    let receipts: BTreeMap<String, i64> = view.receipts.get(id).cloned().unwrap_or_default();
    let all = statements_of(view);
    let statement = all.iter().find(|e| e.id == id);
    view.members
        .values()
        .map(|m| {
            let confirmed = receipts
                .get(&m.device)
                .copied()
                .or_else(|| statement.filter(|e| e.by == m.device).map(|e| e.at));
            let mut label = repo.device_label(view, &m.device);
            if m.device == me {
                label.push_str(" (this node)");
            }
            ErasureNode {
                device: m.device.clone(),
                label,
                role: m.role,
                confirmed,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::tests::{add, all_changes, node, sync};
    use crate::repo::tests::input;

    /// Admin `a` and writers `b` and `c` of a space "Joint".
    fn joint_of_three() -> ([(tempfile::TempDir, Repo); 3], SpaceId) {
        let nodes = [node(), node(), node()];
        let (a, b, c) = (&nodes[0].1, &nodes[1].1, &nodes[2].1);
        let shared = a.create_space("Joint").expect("space");
        add(a, shared.id, b, Role::Writer);
        add(a, shared.id, c, Role::Writer);
        (nodes, SpaceId::Shared(shared.id))
    }

    /// Admin `a`, writers `b` and `c`, a space "Joint" with Ann Lee, a
    /// call with her and a deal naming her as its contact, on all three.
    fn three_members() -> (
        [(tempfile::TempDir, Repo); 3],
        SpaceId,
        RecordId,
        RecordId,
        RecordId,
    ) {
        let (nodes, space) = joint_of_three();
        let (a, b, c) = (&nodes[0].1, &nodes[1].1, &nodes[2].1);
        let ann = a
            .create(
                Kind::Person,
                space,
                &input(&[("name", "Ann Lee"), ("emails", "ann@example.com")]),
            )
            .expect("person");
        let call = a
            .create(
                Kind::Activity,
                space,
                &input(&[
                    ("type", "call"),
                    ("subject", "Call Ann"),
                    ("about", "Ann Lee"),
                ]),
            )
            .expect("call");
        a.create(Kind::Company, space, &input(&[("name", "Acme")]))
            .expect("company");
        let deal = a
            .create(
                Kind::Deal,
                space,
                &input(&[
                    ("title", "Rollout"),
                    ("company", "Acme"),
                    ("contacts", "Ann Lee"),
                ]),
            )
            .expect("deal");
        sync(b, a, space);
        sync(c, a, space);
        (nodes, space, ann.id, call.id, deal.id)
    }

    #[test]
    fn an_erasure_reaches_every_member_and_a_stale_copy_never_comes_back() {
        let (nodes, space, ann, call, deal) = three_members();
        let (a, b, c) = (&nodes[0].1, &nodes[1].1, &nodes[2].1);
        // c is offline and edits Ann meanwhile.
        c.edit(
            &ann.to_string(),
            &input(&[("phones", "+44 20 7946 0000")]),
            &[],
        )
        .expect("offline edit");
        let erased = a
            .erase(&ann.to_string(), true, "request of 2026-11-30")
            .expect("erase");
        assert_eq!(erased.ids, vec![ann, call]);
        assert_eq!(erased.waiting, 2, "b and c have still to confirm");
        assert!(a.store().view(ann).expect("view").is_none());
        assert!(
            all_changes(a, ann).is_empty(),
            "every change of Ann is gone"
        );

        // b hears of it, erases, confirms.
        sync(b, a, space);
        assert!(b.store().view(ann).expect("view").is_none());
        assert!(b.store().view(call).expect("view").is_none());
        assert!(all_changes(b, ann).is_empty());
        assert!(
            b.store().view(deal).expect("view").is_some(),
            "the deal stays"
        );
        assert_eq!(
            b.store().erased(ann).expect("erased").expect("mark").kind,
            "person"
        );
        sync(a, b, space);
        let status = a.erasure_status(&erased.erasure).expect("status");
        let confirmed = |s: &ErasureStatus, r: &Repo| {
            s.nodes
                .iter()
                .find(|n| n.device == r.device_id().to_string())
                .and_then(|n| n.confirmed)
                .is_some()
        };
        assert!(confirmed(&status, a) && confirmed(&status, b));
        assert!(!confirmed(&status, c), "c was offline");

        // c comes back with its edit: it meets b first. b drops the edit,
        // c erases its copy, and nothing of Ann is left anywhere.
        sync(c, b, space);
        sync(b, c, space);
        for r in [a, b, c] {
            assert!(r.store().view(ann).expect("view").is_none());
            assert!(all_changes(r, ann).is_empty(), "a stale copy came back");
            assert!(
                r.store()
                    .ids_by_title("ann lee", true, 5)
                    .expect("names")
                    .is_empty()
            );
        }
        sync(a, b, space);
        sync(a, c, space);
        let status = a.erasure_status(&erased.erasure).expect("status");
        assert!(
            status.nodes.iter().all(|n| n.confirmed.is_some()),
            "{status:?}"
        );
        assert_eq!(status.reason, "request of 2026-11-30");
    }

    fn holds_bytes(r: &Repo, record: RecordId, needle: &str) -> bool {
        all_changes(r, record)
            .iter()
            .any(|c| c.windows(needle.len()).any(|w| w == needle.as_bytes()))
    }

    /// A company's former number is erased: every other field and its
    /// history stay, the number is in no stored change on any node, and
    /// an edit made meanwhile on an offline node's old history is dropped.
    #[test]
    fn a_field_is_erased_from_every_change_and_the_rest_keeps_its_history() {
        let (nodes, space) = joint_of_three();
        let (a, b, c) = (&nodes[0].1, &nodes[1].1, &nodes[2].1);
        let acme = a
            .create(
                Kind::Company,
                space,
                &input(&[("name", "Acme"), ("phone", "+44 20 7946 0555")]),
            )
            .expect("company");
        let id = acme.id.to_string();
        sync(b, a, space);
        b.edit(&id, &input(&[("industry", "Logistics")]), &[])
            .expect("b edits");
        sync(a, b, space);
        a.edit(&id, &input(&[("phone", "+44 20 7946 0777")]), &[])
            .expect("new number");
        a.edit(&id, &input(&[("domain", "acme.example")]), &[])
            .expect("domain");
        sync(b, a, space);
        sync(c, a, space);
        assert!(
            holds_bytes(b, acme.id, "7946 0555"),
            "the old number is in b's history"
        );
        // c, offline, edits the old history.
        c.edit(&id, &input(&[("industry", "Freight")]), &[])
            .expect("offline edit");

        let e = a
            .erase_field(&id, "phone", "former number of a person who left")
            .expect("erase field");
        let shown = a.store().view(acme.id).expect("view").expect("kept");
        assert_eq!(shown.text("name"), Some("Acme"));
        assert_eq!(shown.text("industry"), Some("Logistics"));
        assert_eq!(shown.text("domain"), Some("acme.example"));
        assert_eq!(shown.get("phone"), None);
        for n in ["7946 0555", "7946 0777"] {
            assert!(!holds_bytes(a, acme.id, n), "{n} is still in a change on a");
        }
        // The history of the other fields is still there, change by change.
        let entries = a.timeline(&shown, |_| true).expect("timeline");
        let text = format!("{entries:?}");
        assert_eq!(entries.len(), 3, "created, industry, domain: {text}");
        assert!(!text.contains("7946"), "{text}");
        let b_label = format!("{:?}", b.device_id().to_string());
        assert!(
            text.contains(&b_label[1..9]),
            "b's edit still names b: {text}"
        );

        sync(b, a, space);
        let on_b = b.store().view(acme.id).expect("view").expect("kept");
        assert_eq!(on_b.fields, shown.fields);
        assert!(
            !holds_bytes(b, acme.id, "7946 0555"),
            "b dropped its old history"
        );
        // c comes back: its edit of the old history is dropped.
        sync(c, b, space);
        sync(b, c, space);
        for r in [a, b, c] {
            let v = r.store().view(acme.id).expect("view").expect("kept");
            assert_eq!(
                v.text("industry"),
                Some("Logistics"),
                "c's stale edit came through"
            );
            assert_eq!(v.get("phone"), None);
            assert!(!holds_bytes(r, acme.id, "7946 0"), "a number is still held");
        }
        // Edits after the rebuild are ordinary ones.
        b.edit(&id, &input(&[("industry", "Rail")]), &[])
            .expect("edit after");
        sync(a, b, space);
        let v = a.store().view(acme.id).expect("view").expect("kept");
        assert_eq!(v.text("industry"), Some("Rail"));
        sync(a, c, space);
        let status = a.erasure_status(&e.erasure).expect("status");
        assert!(
            status.nodes.iter().all(|n| n.confirmed.is_some()),
            "{status:?}"
        );
    }

    /// An admin of one space names, in an erase statement there, a record
    /// of another space a member shares with others, that member's private
    /// record, and the other space itself: the member's node erases none.
    #[test]
    fn an_erasure_reaches_only_records_of_its_own_space() {
        let (_ta, a) = node();
        let (_tb, b) = node();
        let x = a.create_space("X").expect("x");
        add(&a, x.id, &b, Role::Writer);
        let y = b.create_space("Y").expect("y");
        let theirs = b
            .create(
                Kind::Company,
                SpaceId::Shared(y.id),
                &input(&[("name", "Initech")]),
            )
            .expect("record of Y");
        let private = b
            .create(
                Kind::Person,
                SpaceId::Private,
                &input(&[("name", "Bo Own")]),
            )
            .expect("private");
        sync(&b, &a, SpaceId::Shared(x.id));
        let mut doc = a.load_doc(x.id).expect("doc");
        space::add_erasure(
            &mut doc,
            &EraseStatement {
                ids: vec![theirs.id, private.id, y.id],
                reason: "not yours".into(),
            },
            a.now(),
        )
        .expect("statement");
        {
            let _guard = a.write_guard();
            a.write_space_doc(&mut doc, x.id).expect("accepted in X");
        }
        sync(&b, &a, SpaceId::Shared(x.id));
        assert!(b.space(x.id).expect("x").expect("x").erasures.len() == 1);
        assert!(
            b.store().view(theirs.id).expect("view").is_some(),
            "Y's record"
        );
        assert!(
            b.store().view(private.id).expect("view").is_some(),
            "the private record"
        );
        assert!(b.store().space(y.id).expect("space").is_some(), "space Y");
        assert!(!all_changes(&b, theirs.id).is_empty());
    }

    #[test]
    fn only_admins_and_privacy_officers_erase() {
        let (nodes, space, ann, _, _) = three_members();
        let (a, b) = (&nodes[0].1, &nodes[1].1);
        let refused = b
            .erase(&ann.to_string(), false, "because")
            .expect_err("writer");
        assert!(
            refused
                .to_string()
                .contains("only its admins and privacy officers"),
            "{refused}"
        );
        let SpaceId::Shared(space_id) = space else {
            unreachable!()
        };
        let (_tmp, officer) = node();
        add(a, space_id, &officer, Role::Privacy);
        sync(&officer, a, space);
        let e = officer
            .erase(&ann.to_string(), false, "request by e-mail")
            .expect("privacy officer erases");
        assert!(
            officer
                .create(Kind::Person, space, &input(&[("name", "Bob")]))
                .is_err(),
            "a privacy officer writes no record"
        );
        sync(a, &officer, space);
        assert!(a.store().view(ann).expect("view").is_none());
        assert!(a.erasure_status(&e.erasure).is_ok());
        let empty = a.erase(&ann.to_string(), false, "again");
        assert!(empty.is_err(), "an erased person is not found again");
    }

    /// A kill after the journal took an erasure and before sled did: the
    /// node erases the record when it opens again.
    #[test]
    fn an_erasure_the_journal_took_before_a_kill_is_applied_at_open() {
        let (tmp, repo) = node();
        let ann = repo
            .create(
                Kind::Person,
                SpaceId::Private,
                &input(&[("name", "Ann Lee")]),
            )
            .expect("person");
        let journal = repo.store().journal().expect("journal").clone();
        journal
            .append(&[rapport_store::Entry::Erased {
                record: ann.id,
                erasure: "person\nlocal.1".into(),
            }])
            .expect("append");
        journal.sync().expect("sync");
        drop(journal);
        drop(repo);
        let repo = Repo::open(tmp.path(), crate::OpenMode::Existing).expect("open");
        assert!(repo.store().view(ann.id).expect("view").is_none());
        assert!(all_changes(&repo, ann.id).is_empty());
        assert_eq!(repo.erased_title(ann.id).as_deref(), Some("erased person"));
    }

    #[test]
    fn a_private_erasure_survives_a_rebuild_from_the_journal() {
        let (tmp, repo) = node();
        let ann = repo
            .create(
                Kind::Person,
                SpaceId::Private,
                &input(&[("name", "Ann Lee")]),
            )
            .expect("person");
        let e = repo
            .erase("Ann Lee", false, "asked in person")
            .expect("erase");
        assert!(e.erasure.starts_with("local."));
        drop(repo);
        crate::recovery::rebuild(
            tmp.path(),
            std::sync::Arc::new(crate::env::System),
            "test",
            &|_, _| {},
        )
        .expect("rebuild");
        let repo = Repo::open(tmp.path(), crate::OpenMode::Existing).expect("open");
        assert!(repo.store().view(ann.id).expect("view").is_none());
        assert!(repo.store().erased(ann.id).expect("erased").is_some());
        let log = std::fs::read_to_string(tmp.path().join(LOCAL_LOG)).expect("log");
        assert!(log.contains("asked in person") && !log.contains("Ann Lee"));
    }
}
