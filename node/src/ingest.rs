//! Applying what peers send: every change verified, over the bounds on
//! waiting changes refused, then judged with everything held for its
//! document by [`rapport_trust::policy::plan`] (the rules live there), and
//! the plan persisted.
//!
//! A refused change is dropped, logged and recorded as a rejection; the
//! others from the same batch still apply. Changes that wait for changes
//! they depend on, or that are kept aside, are stored but not applied; the
//! document is rebuilt from what the rules accept whenever that changes.

use std::collections::{HashMap, HashSet};

use rapport_model::automerge::{AutoCommit, ChangeHash};
use rapport_model::{RecordId, RecordView, SpaceId, SpaceView};
use rapport_proto::{SignedChange, hex};
use rapport_store::{Indexed, RecordWrite, Rejection};
use rapport_trust::policy::{
    self, Accepted, Decision, Document, Fate, Ingest, Origin, Rejudge, Shown, Verdict,
};
use rapport_trust::{DeviceId, parse_change, verify_change};

pub use rapport_trust::policy::Verified;

use crate::repo::Built;
use crate::{NodeError, Repo};

/// What happened to a batch of changes from a peer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub applied: usize,
    pub duplicates: usize,
    pub rejected: usize,
    /// Waiting for changes they depend on.
    pub pending: usize,
    /// Written after their author's removal; kept aside.
    pub held: usize,
    /// Of `rejected`: waiting for dependencies, over a bound on waiting
    /// changes.
    pub waiting_refused: usize,
    /// Deals whose lines were written: their amounts are settled once the
    /// batch is stored (see `products.rs`).
    pub deals_to_settle: Vec<(RecordId, bool)>,
    /// Records erased because a space document named them in an erasure.
    pub erased: usize,
    /// Changes dropped because their record was erased here.
    pub dropped_erased: usize,
}

/// What a peer sent for one record: its encoded signed changes, in order.
pub type RecordChanges = (RecordId, Vec<Vec<u8>>);

/// Most records judged together and written in one transaction.
#[cfg(not(test))]
const RUN: usize = 512;
/// Small in unit tests, so that a test message spans several runs.
#[cfg(test)]
const RUN: usize = 8;

/// A change refused before it is judged: its author, when its envelope
/// parsed, and why.
type Refusal = (Option<[u8; 32]>, String);

/// A record's changes, verified, and the refusals among them.
type Checked = (RecordId, Vec<Verified>, Vec<Refusal>);

impl Repo {
    pub fn apply_remote(
        &self,
        space: SpaceId,
        record: RecordId,
        encoded: Vec<Vec<u8>>,
        from: DeviceId,
    ) -> Result<ApplyReport, NodeError> {
        let report = self.apply_remote_batch(space, vec![(record, encoded)], from)?;
        self.store().flush()?;
        Ok(report)
    }

    fn log_rejection(
        &self,
        space: SpaceId,
        record: RecordId,
        author: Option<[u8; 32]>,
        from: &str,
        reason: &str,
    ) {
        tracing::warn!(%space, %record, %from, %reason, "refused a change");
        let _ = self.store().log_rejection(&Rejection {
            space: space.to_string(),
            record: record.to_string(),
            author: author.map(|a| hex(&a)),
            from: from.to_string(),
            reason: reason.to_string(),
            at: self.now().as_second(),
        });
    }

    /// Applies what a peer sent for several records of `space` (one
    /// `Changes` message), leaving the flush to the caller. The outcome is
    /// the one of applying the records one after the other; the work is
    /// not: signatures are checked on every core before the write lock is
    /// taken, records are judged on every core, and what they store is
    /// written in one transaction per run of [`RUN`] records.
    pub fn apply_remote_batch(
        &self,
        space: SpaceId,
        records: Vec<RecordChanges>,
        from: DeviceId,
    ) -> Result<ApplyReport, NodeError> {
        let SpaceId::Shared(space_id) = space else {
            return Err(NodeError::NotMember(space.to_string()));
        };
        let from_label = from.to_string();
        let mut report = ApplyReport::default();
        let ids: Vec<RecordId> = records.iter().map(|(r, _)| *r).collect();
        let checked: Vec<Checked> = crate::parallel::map(records, |(record, encoded)| {
            let (verified, refused) = verify_all(encoded);
            (record, verified, refused)
        });
        let _guard = self.write_guard();
        let mut view = self.store().space_shared(space_id)?;
        let mut run: Vec<(RecordId, Vec<Verified>)> = Vec::new();
        let any_erased = self.store().any_erased();
        for (record, verified, refused) in checked {
            // An erased record's changes are dropped unread: never
            // stored, applied or served again.
            if any_erased && self.erased_in(space_id, record)? {
                report.dropped_erased += verified.len();
                tracing::debug!(%record, "dropped changes of an erased record");
                continue;
            }
            // A rebuilt record (a field erased) keeps no change waiting for
            // dependencies: those would be of its old history, and would
            // keep the erased value on disk.
            if view
                .as_deref()
                .is_some_and(|v| v.rebase_of(record).is_some())
                && self.misses_dependencies(&verified)?
            {
                report.dropped_erased += verified.len();
                continue;
            }
            for (author, reason) in refused {
                report.rejected += 1;
                self.log_rejection(space, record, author, &from_label, &reason);
            }
            // Judged alone, in order, after what came before is stored: a
            // space document (what follows is judged by the view it
            // makes), a record named twice, and changes that will wait
            // (their bounds count what earlier records began waiting).
            let alone = record == space_id
                || run.iter().any(|(r, _)| *r == record)
                || self.misses_dependencies(&verified)?;
            if alone || run.len() == RUN {
                self.settle_run(
                    space_id,
                    view.as_deref(),
                    std::mem::take(&mut run),
                    &from_label,
                    &mut report,
                )?;
            }
            if !alone {
                run.push((record, verified));
                continue;
            }
            let verified =
                self.within_waiting_bounds(space, record, verified, &from_label, &mut report)?;
            self.settle(
                space_id,
                record,
                view.as_deref(),
                verified,
                Some(&from_label),
                &mut report,
            )?;
            // A space document settled alone may have changed the view
            // the records after it are judged by.
            view = self.store().space_shared(space_id)?;
        }
        self.settle_run(space_id, view.as_deref(), run, &from_label, &mut report)?;
        drop(_guard);
        // A rebuilt history that arrived completes a rebase: confirm it.
        let rebuilt = report.applied > 0 && view.as_deref().is_some_and(|v| !v.rebases.is_empty());
        if report.applied > 0 {
            // Merges made elsewhere, or edits of records this node merged
            // away: see `merge.rs`. The batch is stored whatever happens.
            if let Err(e) = self.settle_merges(space, &ids) {
                tracing::warn!(space = %space, "carrying edits over to merged records failed: {e}");
            }
        }
        let deals = std::mem::take(&mut report.deals_to_settle);
        if !deals.is_empty() {
            self.settle_deals(&self.write_guard(), deals);
        }
        if (report.erased > 0 || rebuilt)
            && let Err(e) = self.confirm_erasures()
        {
            tracing::warn!(space = %space, "writing the receipt of an erasure failed: {e}");
        }
        Ok(report)
    }

    /// Judges the records of `run` on every core, then stores each
    /// outcome in order, the plain writes in one transaction. The caller
    /// holds the write lock, and has settled alone what must be
    /// ([`Repo::apply_remote_batch`] says which).
    pub(crate) fn settle_run(
        &self,
        space_id: RecordId,
        view: Option<&SpaceView>,
        run: Vec<(RecordId, Vec<Verified>)>,
        from: &str,
        report: &mut ApplyReport,
    ) -> Result<(), NodeError> {
        let mut run = run;
        if self.store().any_erased() {
            let mut kept = Vec::with_capacity(run.len());
            for (record, verified) in run {
                if self.erased_in(space_id, record)? {
                    report.dropped_erased += verified.len();
                } else {
                    kept.push((record, verified));
                }
            }
            run = kept;
        }
        if run.is_empty() {
            return Ok(());
        }
        let judged = crate::parallel::map(run, |(record, verified)| {
            self.judge(space_id, record, view, verified, origin_of(Some(from)))
        });
        let mut writes = Vec::new();
        for judged in judged {
            self.persist(
                space_id,
                view,
                judged?,
                Some(from),
                report,
                Some(&mut writes),
            )?;
        }
        let writes: Vec<RecordWrite<'_>> = writes.iter().map(Built::write).collect();
        self.store().write_batch_deferred(&writes)?;
        Ok(())
    }

    /// Whether `record` was erased here in space `space_id`: its changes
    /// there are dropped unread (`erasure`).
    fn erased_in(&self, space_id: RecordId, record: RecordId) -> Result<bool, NodeError> {
        Ok(record != space_id
            && self
                .store()
                .erased(record)?
                .is_some_and(|e| e.refuses_in(SpaceId::Shared(space_id))))
    }

    /// Whether a change names a dependency this node has never seen
    /// (neither stored nor among `verified`): it will wait.
    pub(crate) fn misses_dependencies(&self, verified: &[Verified]) -> Result<bool, NodeError> {
        let in_batch: HashSet<ChangeHash> = verified.iter().map(|(_, c)| c.hash()).collect();
        for (_, change) in verified {
            if self.misses_dependency(change, &in_batch)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether `change` names a dependency neither in `in_batch` nor stored.
    fn misses_dependency(
        &self,
        change: &rapport_model::automerge::Change,
        in_batch: &HashSet<ChangeHash>,
    ) -> Result<bool, NodeError> {
        for dep in change.deps() {
            if !in_batch.contains(dep) && self.store().signed_change(&dep.0)?.is_none() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `verified` without the changes that would wait for a dependency
    /// over the bounds on waiting changes, each refused here, before the
    /// record's history is loaded to judge it (a flood of such changes
    /// must cost a lookup each, not a settle each).
    fn within_waiting_bounds(
        &self,
        space: SpaceId,
        record: RecordId,
        verified: Vec<Verified>,
        from: &str,
        report: &mut ApplyReport,
    ) -> Result<Vec<Verified>, NodeError> {
        let in_batch: HashSet<ChangeHash> = verified.iter().map(|(_, c)| c.hash()).collect();
        let mut will_wait: HashMap<[u8; 32], usize> = HashMap::new();
        let mut kept = Vec::with_capacity(verified.len());
        // Expiry runs at most once a batch: a batch of refusals must not
        // walk the stale entries once each.
        let mut expired = false;
        for v in verified {
            if self.misses_dependency(&v.1, &in_batch)? {
                let earlier = will_wait.entry(v.0.author).or_default();
                let mut over = self.waiting_bound(space, record, &v.0.author, *earlier)?;
                if over.is_some()
                    && !std::mem::replace(&mut expired, true)
                    && self.expire_waiting()? > 0
                {
                    over = self.waiting_bound(space, record, &v.0.author, *earlier)?;
                }
                if let Some(reason) = over {
                    report.rejected += 1;
                    report.waiting_refused += 1;
                    self.log_rejection(space, record, Some(v.0.author), from, &reason);
                    continue;
                }
                *earlier += 1;
            }
            kept.push(v);
        }
        Ok(kept)
    }

    /// The document as stored, plus every stored change of it that is not
    /// in it (waiting or kept aside), parsed (they were verified when they
    /// arrived).
    pub(crate) fn candidate(
        &self,
        record: RecordId,
    ) -> Result<(AutoCommit, Vec<Verified>), NodeError> {
        let mut doc = match self.store().doc(record)? {
            Some(bytes) => rapport_model::stored::load(&bytes).map_err(|e| NodeError::Damaged {
                path: self.dir().to_path_buf(),
                reason: format!("document of {record} does not load: {e}"),
            })?,
            None => AutoCommit::new(),
        };
        let mut aside = Vec::new();
        for hash in self.store().change_hashes(record)? {
            let Ok(h) = <[u8; 32]>::try_from(hash.as_slice()) else {
                continue;
            };
            // Stored changes were verified when they arrived: parsing is
            // enough (verifying again cost every later settle a signature
            // check per waiting change).
            if doc.get_change_by_hash(&ChangeHash(h)).is_none()
                && let Some(signed) = self.store().signed_change(&hash)?
                && let Ok(change) = parse_change(&signed.change)
            {
                aside.push((signed, change));
            }
        }
        Ok((doc, aside))
    }

    /// Judges `incoming` together with what is held for `record`
    /// ([`policy::plan`]), and stores what the plan says: the document the
    /// rules accept (rebuilt if the rules now refuse something it held),
    /// the changes kept aside or waiting, the refusals logged. `from` is
    /// the peer, or `None` when re-judging after a removal.
    pub(crate) fn settle(
        &self,
        space_id: RecordId,
        record: RecordId,
        view: Option<&SpaceView>,
        incoming: Vec<Verified>,
        from: Option<&str>,
        report: &mut ApplyReport,
    ) -> Result<(), NodeError> {
        #[cfg(test)]
        tests::SETTLES.with(|n| n.set(n.get() + 1));
        if self.erased_in(space_id, record)? {
            report.dropped_erased += incoming.len();
            return Ok(());
        }
        let judged = self.judge(space_id, record, view, incoming, origin_of(from))?;
        self.persist(space_id, view, judged, from, report, None)
    }

    /// The judging half of [`Repo::settle`]: reads what is held for
    /// `record` and plans, writing nothing, so records can be judged on
    /// several threads. The document to store is built and encoded here
    /// too (most of the CPU of a write).
    fn judge(
        &self,
        space_id: RecordId,
        record: RecordId,
        view: Option<&SpaceView>,
        incoming: Vec<Verified>,
        origin: Origin,
    ) -> Result<Judged, NodeError> {
        let (mut doc, aside) = self.candidate(record)?;
        // What the index shows now, to remove its stale entries.
        let old_view = if record != space_id && !doc.get_heads().is_empty() {
            RecordView::read(&mut doc, record, None).ok()
        } else {
            None
        };
        let plan = policy::plan(Ingest {
            space: space_id,
            record,
            view,
            doc,
            aside,
            incoming,
            origin,
        });
        let settled = match plan.settled {
            None => None,
            Some(settled) => {
                let changed = settled.changed;
                let document = settled.document().map_err(|e| NodeError::Damaged {
                    path: self.dir().to_path_buf(),
                    reason: e.to_string(),
                })?;
                Some(match document {
                    Document::Pending { withdraw } => Outcome::Pending { changed, withdraw },
                    Document::Write(accepted) => {
                        let Accepted {
                            mut doc,
                            heads,
                            shown,
                        } = *accepted;
                        Outcome::Write {
                            changed,
                            saved: rapport_model::stored::save(&mut doc),
                            heads,
                            shown: Box::new(shown),
                        }
                    }
                })
            }
        };
        Ok(Judged {
            record,
            old_view,
            decisions: plan.decisions,
            settled,
        })
    }

    /// The storing half of [`Repo::settle`]. With `batch`, a plain write
    /// of a record (nothing begins or stops waiting) is added to it for
    /// the caller to store; anything else is stored now.
    fn persist(
        &self,
        space_id: RecordId,
        view: Option<&SpaceView>,
        judged: Judged,
        from: Option<&str>,
        report: &mut ApplyReport,
        batch: Option<&mut Vec<Built>>,
    ) -> Result<(), NodeError> {
        let space = SpaceId::Shared(space_id);
        let from_label = from.unwrap_or("this node");
        let Judged {
            record,
            old_view,
            decisions,
            settled,
        } = judged;
        let mut keep: Vec<(Vec<u8>, SignedChange)> = Vec::new();
        // Changes set aside earlier are stored already; new ones are not.
        let mut keeps_new = false;
        // Which changes begin and stop waiting for their dependencies.
        let mut started: Vec<([u8; 32], [u8; 32])> = Vec::new();
        let mut ended: Vec<[u8; 32]> = Vec::new();
        let refuse = |author: [u8; 32], reason: &str, report: &mut ApplyReport| {
            report.rejected += 1;
            self.log_rejection(space, record, Some(author), from_label, reason);
        };
        for Decision {
            signed,
            hash,
            new,
            fate,
        } in decisions
        {
            let verdict = match fate {
                Fate::Duplicate => {
                    report.duplicates += usize::from(new);
                    continue;
                }
                Fate::Refused(reason) if new => {
                    refuse(signed.author, &reason, report);
                    continue;
                }
                // Refused for good (the rules judge a change by its own
                // history): it must not be parsed and judged again at
                // every later settle.
                Fate::Refused(_) => {
                    self.store().forget_change(record, &hash)?;
                    continue;
                }
                Fate::Judged(verdict) => verdict,
            };
            if !new && verdict != Verdict::Waiting {
                ended.push(hash);
            }
            match verdict {
                Verdict::Accepted => report.applied += usize::from(new),
                Verdict::Waiting if new => {
                    if let Some(reason) =
                        self.waiting_bound(space, record, &signed.author, started.len())?
                    {
                        report.waiting_refused += 1;
                        refuse(signed.author, &reason, report);
                        continue;
                    }
                    started.push((signed.author, hash));
                    report.pending += 1;
                }
                Verdict::Waiting => {}
                Verdict::Held(reason) => {
                    if new {
                        report.held += 1;
                        let reason = format!("kept aside: {reason}");
                        self.log_rejection(space, record, Some(signed.author), from_label, &reason);
                    }
                }
                Verdict::Rejected(reason) => {
                    if new {
                        refuse(signed.author, &reason, report);
                    } else {
                        self.store().forget_change(record, &hash)?;
                    }
                    continue;
                }
            }
            keeps_new |= new;
            keep.push((hash.to_vec(), signed));
        }

        let Some(settled) = settled else {
            return Ok(());
        };
        // After what it counts is stored: a crash in between leaves a
        // count short, never a count of changes that are not there.
        let now = self.now().as_second().max(0).cast_unsigned();
        let note_waiting = || {
            self.store()
                .note_waiting(space, record, &started, &ended, now)
        };
        if !settled.changed() && !keeps_new {
            // Nothing new is accepted and everything kept is already stored.
            return Ok(note_waiting()?);
        }
        let (saved, heads, shown) = match settled {
            Outcome::Pending { withdraw, .. } => {
                self.store().keep_pending(record, space, &keep)?;
                if withdraw {
                    self.store().withdraw(record, space)?;
                }
                return Ok(note_waiting()?);
            }
            Outcome::Write {
                saved,
                heads,
                shown,
                ..
            } => (saved, heads, *shown),
        };
        if let Shown::Record(v) = &shown {
            report
                .deals_to_settle
                .extend(crate::products::deals_to_settle(old_view.as_ref(), v));
        }
        // Only what would be written under this space as it is: a record
        // whose accepted part names another space keeps the write below.
        if let (Some(batch), Shown::Record(v), true, true) =
            (batch, &shown, started.is_empty(), ended.is_empty())
            && v.space == space
        {
            batch.push(Built {
                heads,
                saved,
                changes: keep,
                view: v.clone(),
                previous: old_view,
            });
            return Ok(());
        }
        let index = match &shown {
            Shown::Record(v) => Indexed::Record {
                view: v,
                previous: old_view.as_ref(),
            },
            Shown::Space(v) => Indexed::Space(v),
        };
        self.store().write_deferred(&RecordWrite {
            id: record,
            space,
            doc: &saved,
            heads: &heads,
            changes: &keep,
            index,
        })?;
        note_waiting()?;
        if let Shown::Space(after) = &shown {
            self.resettle_after_removals(space_id, view, after)?;
            report.erased += self.apply_erasures(after)?;
            report.erased += self.apply_rebases(after)?;
        }
        Ok(())
    }

    /// Forgets the changes that have waited for their dependencies longer
    /// than [`crate::limits::WAITING_TTL`], in every space (so each stale
    /// entry is walked once, not at every refusal in another space),
    /// oldest first; returns how many. A peer offers them again once their
    /// dependencies exist. Not while a record is being settled: it may
    /// hold them.
    pub(crate) fn expire_waiting(&self) -> Result<usize, NodeError> {
        let now = self.now().as_second().max(0).cast_unsigned();
        let before = now.saturating_sub(crate::limits::WAITING_TTL.as_secs());
        let mut forgotten = HashSet::new();
        let mut stale = self.store().stale_waiting(before)?;
        // A change listed under several records loses one listing per
        // pass, its waiting entry moving to the next (`forget_change`);
        // passes stop when one changes nothing.
        while !stale.is_empty() {
            for (record, hash) in &stale {
                self.store().forget_change(*record, hash)?;
                forgotten.insert(*hash);
            }
            let left = self.store().stale_waiting(before)?;
            if left == stale {
                break;
            }
            stale = left;
        }
        if !forgotten.is_empty() {
            tracing::info!(
                forgotten = forgotten.len(),
                "changes that waited for their dependencies too long were forgotten"
            );
        }
        Ok(forgotten.len())
    }

    /// Why a change that must wait for its dependencies is not kept, if
    /// it is over one of the bounds on waiting changes (see
    /// [`crate::limits`]); `batch` more began waiting since the counts
    /// were stored.
    fn waiting_bound(
        &self,
        space: SpaceId,
        record: RecordId,
        author: &[u8; 32],
        batch: usize,
    ) -> Result<Option<String>, NodeError> {
        use crate::limits::{
            MAX_WAITING_PER_AUTHOR, MAX_WAITING_PER_RECORD, MAX_WAITING_PER_SPACE,
        };
        let (in_space, by_author, here) = self.store().waiting_counts(space, author, record)?;
        let batch = batch as u64;
        let over = if here + batch >= MAX_WAITING_PER_RECORD {
            format!("{MAX_WAITING_PER_RECORD} changes of this record wait already")
        } else if by_author + batch >= MAX_WAITING_PER_AUTHOR {
            format!("{MAX_WAITING_PER_AUTHOR} changes by this author wait already in this space")
        } else if in_space + batch >= MAX_WAITING_PER_SPACE {
            format!("{MAX_WAITING_PER_SPACE} changes wait already in this space")
        } else {
            return Ok(None);
        };
        Ok(Some(format!(
            "not kept: its dependencies have not arrived and {over}; a peer offers it again once they have"
        )))
    }

    /// After a space document changed: judges again the records
    /// [`policy::rejudge`] names (those of devices whose membership or
    /// removal changed), so changes past a cutoff leave them (or come
    /// back).
    pub(crate) fn resettle_after_removals(
        &self,
        space_id: RecordId,
        before: Option<&SpaceView>,
        after: &SpaceView,
    ) -> Result<(), NodeError> {
        let space = SpaceId::Shared(space_id);
        for step in policy::rejudge(before, after) {
            let records = match step {
                Rejudge::Records(records) => records,
                Rejudge::AuthoredBy(device) => self.store().authored(&device)?,
            };
            for record in records {
                // A record of this space, shown or withdrawn (then its
                // changes are kept aside, and it may come back).
                let ours = self.store().heads(space, record)?.is_some()
                    || self.store().holds_in(space, record)?;
                if record != space_id && ours {
                    let mut report = ApplyReport::default();
                    self.settle(space_id, record, Some(after), Vec::new(), None, &mut report)?;
                }
            }
        }
        Ok(())
    }
}

/// A record judged, ready to store ([`Repo::persist`]).
pub(crate) struct Judged {
    record: RecordId,
    old_view: Option<RecordView>,
    decisions: Vec<Decision>,
    settled: Option<Outcome>,
}

/// What the judged document comes to.
enum Outcome {
    /// Nothing accepted forms a document yet (see [`Document::Pending`]).
    Pending { changed: bool, withdraw: bool },
    /// The accepted part, encoded.
    Write {
        changed: bool,
        saved: Vec<u8>,
        heads: Vec<[u8; 32]>,
        // Boxed: a record view is large beside the other outcome.
        shown: Box<Shown>,
    },
}

impl Outcome {
    /// Whether the accepted heads differ from the stored document's.
    fn changed(&self) -> bool {
        match self {
            Outcome::Pending { changed, .. } | Outcome::Write { changed, .. } => *changed,
        }
    }
}

/// How `settle`'s `from` says where changes come from.
fn origin_of(from: Option<&str>) -> Origin {
    match from {
        None => Origin::Rejudge,
        Some(crate::recovery::FROM_JOURNAL) => Origin::Journal,
        Some(_) => Origin::Peer,
    }
}

/// Decodes and verifies each change; the refused ones come back with
/// their author (when the envelope parsed) and the reason.
fn verify_all(encoded: Vec<Vec<u8>>) -> (Vec<Verified>, Vec<Refusal>) {
    let mut verified = Vec::with_capacity(encoded.len());
    let mut refused = Vec::new();
    for bytes in encoded {
        match SignedChange::decode(&bytes) {
            Err(e) => refused.push((None, format!("malformed envelope: {e}"))),
            Ok(signed) => match verify_change(&signed) {
                Ok(change) => verified.push((signed, change)),
                Err(e) => refused.push((Some(signed.author), e.to_string())),
            },
        }
    }
    (verified, refused)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::OpenMode;
    use crate::repo::Input;
    use crate::repo::tests::input;

    thread_local! {
        /// Records judged by `settle` on this thread: what a removal's
        /// re-judging costs.
        pub(super) static SETTLES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }
    use jiff::Timestamp;
    use rapport_model::automerge::Change;
    use rapport_model::{Kind, Member, Role};
    use rapport_sync::{Replica, run_in_memory};
    use std::time::Instant;

    pub(crate) fn node() -> (tempfile::TempDir, Repo) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repo::open(tmp.path(), OpenMode::Create).expect("open");
        (tmp, repo)
    }

    /// Syncs `space` from `a`'s point of view (a dials b).
    pub(crate) fn sync(a: &Repo, b: &Repo, space: SpaceId) -> rapport_sync::Traffic {
        let mut ra = a.replica(b.device_id());
        let mut rb = b.replica(a.device_id());
        run_in_memory(space, &mut ra, &mut rb).expect("session")
    }

    pub(crate) fn add(admin: &Repo, space: RecordId, who: &Repo, role: Role) {
        admin
            .add_member(
                space,
                Member {
                    device: who.device_id().to_string(),
                    role,
                    user: String::new(),
                    org: String::new(),
                    added_by: String::new(),
                    since: 0,
                    addrs: Vec::new(),
                },
            )
            .expect("add member");
    }

    /// A space "Joint" of `a` with `other` in `role`, holding company Acme,
    /// synced to `other`.
    fn joint_acme(a: &Repo, other: &Repo, role: Role) -> (SpaceView, SpaceId, RecordView) {
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(a, shared.id, other, role);
        let acme = a
            .create(Kind::Company, space, &input(&[("name", "Acme")]))
            .expect("c");
        sync(other, a, space);
        (shared, space, acme)
    }

    pub(crate) fn views(r: &Repo, kind: Kind) -> Vec<RecordView> {
        let mut v = r.list(kind, &[], false).expect("list");
        for x in &mut v {
            x.updated = 0;
        }
        v
    }

    #[test]
    fn forged_and_unauthorized_changes_are_rejected_and_recorded() {
        let (_ta, a) = node();
        let (_tb, b) = node();
        let (_tm, mallory) = node();
        let (shared, space, acme) = joint_acme(&a, &b, Role::Writer);

        // Mallory is not a member; it writes a change to Acme (on a copy of
        // the document it somehow got) and offers it to b.
        let signed = signed_edit(&mallory, &a, acme.id, "name", "Hacked");
        let report = b
            .apply_remote(space, acme.id, vec![signed.encode()], mallory.device_id())
            .expect("apply");
        assert_eq!(report.rejected, 1);
        assert_eq!(report.applied, 0);

        // A member's change with a broken signature is rejected too.
        let mut doc = a.load_doc(acme.id).expect("doc");
        rapport_model::doc::edit(
            &mut doc,
            &[rapport_model::Edit::Set(
                "industry".into(),
                rapport_model::FieldValue::Text("X".into()),
            )],
            Timestamp::now(),
        )
        .expect("edit");
        let mut forged = a
            .key()
            .sign_change(&doc.get_last_local_change().expect("c"))
            .expect("sign");
        forged.signature[5] ^= 0x40;
        let report = b
            .apply_remote(
                space,
                acme.id,
                vec![forged.encode(), b"junk".to_vec()],
                a.device_id(),
            )
            .expect("apply");
        assert_eq!(report.rejected, 2);

        let on_b = b.resolve(&acme.id.to_string()).expect("acme");
        assert_eq!(on_b.text("name"), Some("Acme"));
        assert_eq!(on_b.get("industry"), None);
        let log = b.store().rejections().expect("log");
        assert!(log.len() >= 3);
        assert!(log[0].reason.contains("not a member"), "{:?}", log[0]);
        assert!(log[1].reason.contains("signature"), "{:?}", log[1]);

        // Nor can Mallory make itself a member by editing the space
        // document: only members may change it.
        let mut space_doc = a
            .load_doc(shared.id)
            .expect("space doc")
            .with_actor(mallory.device_id().actor_id());
        rapport_model::space::add_member(
            &mut space_doc,
            &Member {
                device: mallory.device_id().to_string(),
                role: Role::Admin,
                user: "Mallory".into(),
                org: String::new(),
                added_by: mallory.device_id().to_string(),
                since: 0,
                addrs: Vec::new(),
            },
            Timestamp::now(),
        )
        .expect("add");
        let change = space_doc.get_last_local_change().expect("change");
        let signed = mallory.key().sign_change(&change).expect("sign");
        let report = b
            .apply_remote(space, shared.id, vec![signed.encode()], mallory.device_id())
            .expect("apply");
        assert_eq!((report.rejected, report.applied), (1, 0));
        let members = b.space(shared.id).expect("space").expect("known");
        assert!(!members.is_member(&mallory.device_id().to_string()));

        // And a non-member cannot even open a session.
        let mut rm = mallory.replica(a.device_id());
        let mut ra = a.replica(mallory.device_id());
        let err = run_in_memory(space, &mut rm, &mut ra).expect_err("refused");
        assert!(matches!(err, rapport_sync::SyncError::Refused(_)), "{err}");
        assert!(mallory.spaces().expect("spaces").is_empty());
    }

    /// A change by `author` setting a field of `record` (as `source` holds
    /// it), signed by `author`, bypassing every local check.
    fn signed_edit(
        author: &Repo,
        source: &Repo,
        record: RecordId,
        field: &str,
        value: &str,
    ) -> SignedChange {
        let mut doc = source
            .load_doc(record)
            .expect("doc")
            .with_actor(author.device_id().actor_id());
        rapport_model::doc::edit(
            &mut doc,
            &[rapport_model::Edit::Set(
                field.into(),
                rapport_model::FieldValue::Text(value.into()),
            )],
            Timestamp::now(),
        )
        .expect("edit");
        let change = doc.get_last_local_change().expect("change");
        author.key().sign_change(&change).expect("sign")
    }

    /// Every signed change a store holds for `record`, applied or not.
    /// A whole message applied at once (verified and judged on every
    /// core, written per run) ends exactly as its records applied one by
    /// one: the same documents, views, counts and reports, with the
    /// cases judged alone in it (the space document, a record named
    /// twice, changes that wait for a dependency later in the message).
    #[test]
    fn a_message_applied_at_once_ends_as_its_records_applied_one_by_one() {
        let (_ta, a) = node();
        let (_t1, one_by_one) = node();
        let (_t2, at_once) = node();
        let space = a.create_space("Batch").expect("space").id;
        let sid = SpaceId::Shared(space);
        add(&a, space, &one_by_one, Role::Writer);
        add(&a, space, &at_once, Role::Writer);
        let rows: Vec<Vec<Input>> = (0..40)
            .map(|i| input(&[("name", &format!("Company {i:02}"))]))
            .collect();
        let ids: Vec<RecordId> = a
            .create_many(Kind::Company, sid, &rows)
            .expect("create")
            .iter()
            .map(|v| v.id)
            .collect();
        for n in 0..3 {
            for id in &ids[..12] {
                a.edit(
                    &id.to_string(),
                    &input(&[("industry", &format!("v{n}"))]),
                    &[],
                )
                .expect("edit");
            }
        }
        let in_order = |id: RecordId| a.changes_for(sid, id, &[]).expect("changes");
        let mut message: Vec<RecordChanges> = vec![(space, in_order(space))];
        // A record whose later edits come before its creation.
        let late = in_order(ids[3]);
        message.push((ids[3], late[1..].to_vec()));
        for id in &ids[4..] {
            message.push((*id, in_order(*id)));
            if *id == ids[12] {
                // Named again in the run after its own (runs of 8 here),
                // with its creation only: its edits must stay.
                message.push((ids[9], in_order(ids[9])[..1].to_vec()));
            }
        }
        message.push((ids[3], late[..1].to_vec()));
        // Named twice, and history it holds already.
        message.push((ids[5], in_order(ids[5])));
        message.push((ids[0], in_order(ids[0])));

        // One by one as before messages were batched: verify, bound,
        // settle (which writes) and flush, record after record.
        let mut expected = ApplyReport::default();
        let from = a.device_id().to_string();
        for (record, changes) in message.clone() {
            let (verified, refused) = verify_all(changes);
            expected.rejected += refused.len();
            let verified = one_by_one
                .within_waiting_bounds(sid, record, verified, &from, &mut expected)
                .expect("bounds");
            let view = one_by_one.store().space_shared(space).expect("view");
            one_by_one
                .settle(
                    space,
                    record,
                    view.as_deref(),
                    verified,
                    Some(&from),
                    &mut expected,
                )
                .expect("settle");
            one_by_one.store().flush().expect("flush");
        }
        let got = at_once
            .apply_remote_batch(sid, message, a.device_id())
            .expect("apply at once");
        at_once.store().flush().expect("flush");
        assert_eq!(got, expected);
        assert!(got.applied > 40, "{got:?}");
        for id in ids.iter().chain([&space]) {
            assert_eq!(
                at_once.store().heads(sid, *id).expect("heads"),
                one_by_one.store().heads(sid, *id).expect("heads"),
                "{id}"
            );
        }
        assert_eq!(
            views(&at_once, Kind::Company),
            views(&one_by_one, Kind::Company)
        );
        assert_eq!(
            at_once.store().space_usage(sid).expect("usage"),
            one_by_one.store().space_usage(sid).expect("usage")
        );
        assert_eq!(at_once.change_count(), one_by_one.change_count());
        assert_eq!(
            at_once.space_record_count_of(sid),
            one_by_one.space_record_count_of(sid)
        );
    }

    pub(crate) fn all_changes(r: &Repo, record: RecordId) -> Vec<Vec<u8>> {
        r.store()
            .change_hashes(record)
            .expect("hashes")
            .iter()
            .filter_map(|h| r.store().signed_change(h).expect("change"))
            .map(|c| c.encode())
            .collect()
    }

    #[test]
    fn a_readers_record_change_is_refused() {
        let (_ta, a) = node();
        let (_tr, r) = node();
        let (shared, space, acme) = joint_acme(&a, &r, Role::Reader);
        let err = r
            .edit("Acme", &input(&[("industry", "X")]), &[])
            .expect_err("reader");
        assert!(err.to_string().contains("you are a reader"), "{err}");

        // A modified client writes anyway; the admin's node refuses it.
        let signed = signed_edit(&r, &r, acme.id, "industry", "Hacked");
        let report = a
            .apply_remote(space, acme.id, vec![signed.encode()], r.device_id())
            .expect("apply");
        assert_eq!((report.applied, report.rejected), (0, 1));
        assert_eq!(a.resolve("Acme").expect("acme").get("industry"), None);
        let log = a.audit(shared.id).expect("audit").rejections;
        assert!(
            log[0].reason.contains("a reader may not change records"),
            "{log:?}"
        );
    }

    /// A change waiting for its dependency, then that dependency in a
    /// batch with a change that breaks the document: the bad change is
    /// refused alone, and the two good ones both apply (the dependency
    /// releases the waiting change, which must not count against it).
    #[test]
    fn a_bad_change_in_a_batch_does_not_cost_the_good_ones_their_place() {
        use rapport_model::automerge::{ROOT, transaction::Transactable};
        let (_ta, a) = node();
        let (_tw, w) = node();
        let (_, space, acme) = joint_acme(&a, &w, Role::Writer);
        let before = all_changes(&w, acme.id);
        w.edit("Acme", &input(&[("industry", "Steel")]), &[])
            .expect("edit");
        w.edit("Acme", &input(&[("owner", "Wen")]), &[])
            .expect("edit");
        let mine = added(&all_changes(&w, acme.id), &before);
        let hash = |b: &Vec<u8>| {
            Change::from_bytes(SignedChange::decode(b).expect("decode").change).expect("change")
        };
        let (mut first, mut second) = (mine[0].clone(), mine[1].clone());
        if hash(&first).deps().contains(&hash(&second).hash()) {
            std::mem::swap(&mut first, &mut second);
        }
        // Validly signed, but the record no longer says which space it is in.
        let mut doc = w.load_doc(acme.id).expect("doc");
        doc.delete(ROOT, "space").expect("delete");
        doc.commit();
        let bad = w
            .key()
            .sign_change(&doc.get_last_local_change().expect("change"))
            .expect("sign")
            .encode();

        let r = a
            .apply_remote(space, acme.id, vec![second], w.device_id())
            .expect("apply");
        assert_eq!(r.pending, 1, "{r:?}");
        let r = a
            .apply_remote(space, acme.id, vec![first, bad], w.device_id())
            .expect("apply");
        assert_eq!(r.rejected, 1, "only the bad change is refused: {r:?}");
        let acme = a.resolve("Acme").expect("acme");
        assert_eq!(acme.text("industry"), Some("Steel"));
        assert_eq!(acme.text("owner"), Some("Wen"));
    }

    /// A removes W while W, offline, goes on editing; C heard W's late
    /// edits before the removal and built on the first of them. A fourth
    /// node receives everything, one change at a time, in seeded orders:
    /// it must always end with the same record, without W's late edits
    /// except the one C built on.
    #[test]
    fn a_removal_concurrent_with_edits_settles_the_same_in_any_order() {
        let (_ta, a) = node();
        let (_tw, w) = node();
        let (_tc, c) = node();
        let (_tr, reader) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        for (n, role) in [
            (&w, Role::Writer),
            (&c, Role::Writer),
            (&reader, Role::Reader),
        ] {
            add(&a, shared.id, n, role);
        }
        let acme = a
            .create(Kind::Company, space, &input(&[("name", "Acme")]))
            .expect("c");
        sync(&w, &a, space);
        sync(&c, &a, space);
        w.edit("Acme", &input(&[("industry", "Steel")]), &[])
            .expect("seen");
        sync(&a, &w, space);
        let before_removal = all_changes(&a, shared.id);
        a.remove_members(shared.id, &w.device_id().to_string())
            .expect("remove");
        let removal: Vec<Vec<u8>> = all_changes(&a, shared.id)
            .into_iter()
            .filter(|c| !before_removal.contains(c))
            .collect();
        assert_eq!(removal.len(), 1);
        w.edit("Acme", &input(&[("phone", "+1 555 0100")]), &[])
            .expect("late 1");
        sync(&c, &w, space); // C hears the late edit, not the removal
        c.edit("Acme", &input(&[("owner", "Cy")]), &[])
            .expect("c builds on it");
        w.edit("Acme", &input(&[("domain", "evil.example")]), &[])
            .expect("late 2");

        let mut deliveries: Vec<(RecordId, Vec<u8>, DeviceId)> = Vec::new();
        for n in [&a, &w, &c] {
            for record in [shared.id, acme.id] {
                for ch in all_changes(n, record) {
                    if !deliveries.iter().any(|(_, d, _)| *d == ch) {
                        deliveries.push((record, ch, n.device_id()));
                    }
                }
            }
        }
        let mut outcomes = Vec::new();
        let mut seed: u64 = 0x5eed;
        for round in 0..8 {
            let (_t, d) = node();
            if round == 0 {
                // The removal last: W's late edits are applied first and
                // must leave when it arrives.
                deliveries
                    .sort_by_key(|(record, ch, _)| (removal.contains(ch), *record != shared.id));
            } else {
                for i in (1..deliveries.len()).rev() {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    deliveries.swap(i, (seed % (i as u64 + 1)) as usize);
                }
            }
            // Twice: what arrived before its space document is offered
            // again, as the next catch-up session would.
            for _ in 0..2 {
                for (record, ch, from) in &deliveries {
                    d.apply_remote(space, *record, vec![ch.clone()], *from)
                        .expect("apply");
                }
            }
            let mut v = d.resolve(&acme.id.to_string()).expect("acme on d");
            v.updated = 0;
            outcomes.push((v, d.store().heads(space, acme.id).expect("heads")));
        }
        for o in &outcomes[1..] {
            assert_eq!(o, &outcomes[0], "two delivery orders ended differently");
        }
        let v = &outcomes[0].0;
        assert_eq!(v.text("industry"), Some("Steel"), "A had seen this one");
        assert_eq!(v.text("phone"), Some("+1 555 0100"), "C built on this one");
        assert_eq!(v.text("owner"), Some("Cy"));
        assert_eq!(
            v.get("domain"),
            None,
            "written after the removal, built on by nobody"
        );

        // A hears the rest later and ends the same, without rebuilding by
        // hand: the late edit leaves, the one C built on stays.
        sync(&a, &c, space);
        let on_a = a.resolve("Acme").expect("acme");
        assert_eq!(on_a.get("domain"), None);
        assert_eq!(on_a.text("owner"), Some("Cy"));
        assert_eq!(
            a.store().heads(space, acme.id).expect("heads"),
            outcomes[0].1
        );
        // And C, once it hears of the removal, drops what W wrote after.
        sync(&c, &a, space);
        assert_eq!(c.resolve("Acme").expect("acme").get("domain"), None);
    }

    fn added(after: &[Vec<u8>], before: &[Vec<u8>]) -> Vec<Vec<u8>> {
        after
            .iter()
            .filter(|c| !before.contains(c))
            .cloned()
            .collect()
    }

    /// A record that only a removed writer wrote leaves a node that
    /// showed it when the removal arrives, as on a node that heard the
    /// removal first.
    #[test]
    fn a_record_only_a_removed_writer_wrote_is_withdrawn() {
        let (_ta, a) = node();
        let (_tw, w) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &w, Role::Writer);
        sync(&w, &a, space);
        let base = all_changes(&a, shared.id);
        a.remove_members(shared.id, &w.device_id().to_string())
            .expect("remove");
        let removal = added(&all_changes(&a, shared.id), &base);
        let evil = w
            .create(Kind::Company, space, &input(&[("name", "Evil Co")]))
            .expect("w creates");
        let evil_changes = all_changes(&w, evil.id);
        let (_t1, d1) = node();
        let (_t2, d2) = node();
        let record_first = [
            (shared.id, &base),
            (evil.id, &evil_changes),
            (shared.id, &removal),
        ];
        let removal_first = [
            (shared.id, &base),
            (shared.id, &removal),
            (evil.id, &evil_changes),
        ];
        for (d, order) in [(&d1, record_first), (&d2, removal_first)] {
            for (record, changes) in order {
                d.apply_remote(space, record, changes.clone(), a.device_id())
                    .expect("apply");
            }
            assert_eq!(d.store().heads(space, evil.id).expect("heads"), None);
            assert!(
                d.resolve("Evil Co").is_err(),
                "the removed writer's record shows"
            );
        }
    }

    /// Two admins remove the same writer with different cutoffs; nodes
    /// that hear the two removals in either order end the same.
    #[test]
    fn two_removals_of_one_writer_settle_the_same_in_either_order() {
        let (_ta, a) = node();
        let (_tb, b) = node();
        let (_tw, w) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &b, Role::Admin);
        sync(&b, &a, space);
        add(&b, shared.id, &w, Role::Writer);
        let acme = b
            .create(Kind::Company, space, &input(&[("name", "Acme")]))
            .expect("c");
        sync(&a, &b, space);
        sync(&w, &b, space);
        w.edit("Acme", &input(&[("industry", "Steel")]), &[])
            .expect("e1");
        sync(&a, &w, space);
        w.edit("Acme", &input(&[("domain", "evil.example")]), &[])
            .expect("e2");
        sync(&b, &w, space);
        let base = all_changes(&b, shared.id);
        let acme_all = all_changes(&b, acme.id);
        a.remove_members(shared.id, &w.device_id().to_string())
            .expect("a removes");
        b.remove_members(shared.id, &w.device_id().to_string())
            .expect("b removes");
        let by_a = added(&all_changes(&a, shared.id), &base);
        let by_b = added(&all_changes(&b, shared.id), &base);
        let (_t1, d1) = node();
        let (_t2, d2) = node();
        for (d, first, second) in [(&d1, &by_b, &by_a), (&d2, &by_a, &by_b)] {
            for (record, changes) in [
                (shared.id, &base),
                (acme.id, &acme_all),
                (shared.id, first),
                (shared.id, second),
            ] {
                d.apply_remote(space, record, changes.clone(), b.device_id())
                    .expect("apply");
            }
        }
        assert_eq!(
            d1.space(shared.id).expect("s"),
            d2.space(shared.id).expect("s")
        );
        assert_eq!(
            d1.store().heads(space, acme.id).expect("heads"),
            d2.store().heads(space, acme.id).expect("heads"),
            "the order two removals arrived in decided the record"
        );
        assert_eq!(
            d1.resolve("Acme").expect("acme").text("industry"),
            Some("Steel")
        );
    }

    /// Found by the ingest fuzz target (its corpus file
    /// `crash-b24489e9d8f8274b.bin`): Automerge 0.12 applies a change whose
    /// op names as predecessor an op at another key, then panics when asked
    /// for that change again (reading the record asks for it).
    #[test]
    fn a_change_automerge_cannot_give_back_is_refused_without_a_panic() {
        use rapport_model::automerge::legacy::Key;
        let (_ta, a) = node();
        let (_tb, b) = node();
        let (_shared, space, acme) = joint_acme(&a, &b, Role::Writer);
        let mut doc = a.load_doc(acme.id).expect("doc");
        let now = Timestamp::now();
        let last = |doc: &mut AutoCommit, edit| {
            rapport_model::doc::edit(doc, &[edit], now).expect("edit");
            doc.get_last_local_change().expect("change")
        };
        let delete = last(&mut doc, rapport_model::Edit::Deleted(true));
        let mut restore = last(&mut doc, rapport_model::Edit::Deleted(false)).decode();
        restore.operations[0].key = Key::Map("deheted".into());
        let forged = Change::from(restore);
        let batch = [delete, forged].map(|c| a.key().sign_change(&c).expect("sign").encode());

        let report = b
            .apply_remote(space, acme.id, batch.to_vec(), a.device_id())
            .expect("apply");
        assert_eq!((report.applied, report.rejected), (1, 1), "{report:?}");
        assert!(b.resolve(&acme.id.to_string()).expect("acme").deleted);
        // The node still serves the record and edits it.
        assert_eq!(b.changes_for(space, acme.id, &[]).expect("serve").len(), 2);
        b.restore(&acme.id.to_string()).expect("b restores");
    }

    /// Issue 15, item 1: M, a reader in B and a writer in A, sends V (in an
    /// A session, before V joins B) an edit of B's record X. It waits for
    /// X; when V joins B and receives X, the edit must not apply or be
    /// served onward, and V's own edits of X must still reach B's admin.
    #[test]
    fn a_change_authorized_in_one_space_never_applies_in_another() {
        let (_tb, admin_b) = node();
        let (_tm, m) = node();
        let (_tv, v) = node();
        let (shared_b, space_b, x) = joint_acme(&admin_b, &m, Role::Reader);
        let (shared_a, space_a, _) = joint_acme(&m, &v, Role::Writer);
        assert!(v.space(shared_b.id).expect("space").is_none());

        let smuggled = signed_edit(&m, &m, x.id, "industry", "Smuggled");
        let report = v
            .apply_remote(space_a, x.id, vec![smuggled.encode()], m.device_id())
            .expect("apply");
        assert_eq!(report.pending, 1, "it waits for X: {report:?}");

        add(&admin_b, shared_b.id, &v, Role::Writer);
        sync(&v, &admin_b, space_b);
        let on_v = v.resolve(&x.id.to_string()).expect("X on V");
        assert_eq!(on_v.get("industry"), None, "the reader's edit applied");
        let served = v.changes_for(space_b, x.id, &[]).expect("serve");
        assert!(!served.contains(&smuggled.encode()), "and is served onward");
        assert!(
            !all_changes(&v, x.id).contains(&smuggled.encode()),
            "and is still stored, to be judged again"
        );
        assert_eq!(
            v.store().space_usage(space_a).expect("usage"),
            stored(&v, space_a),
            "A is charged for a change it no longer holds"
        );

        v.edit(&x.id.to_string(), &input(&[("owner", "Vi")]), &[])
            .expect("V edits X");
        sync(&admin_b, &v, space_b);
        let on_admin = admin_b.resolve(&x.id.to_string()).expect("X");
        assert_eq!(on_admin.text("owner"), Some("Vi"), "V's edit waits forever");
        assert_eq!(
            admin_b.store().heads(space_b, x.id).expect("heads"),
            v.store().heads(space_b, x.id).expect("heads")
        );
        let _ = shared_a;
    }

    /// Issue 15, item 5: a writer of A who learnt the id of B's record X
    /// (or B's space id) writes an A record under that id. Nobody but X's
    /// creator can write X's first change, so the squat is refused and
    /// the real record (and space) still arrive.
    #[test]
    fn a_record_id_cannot_be_taken_by_another_device() {
        let (_tb, admin_b) = node();
        let (_tm, m) = node();
        let (_tv, v) = node();
        let (shared_b, space_b, x) = joint_acme(&admin_b, &v, Role::Reader);
        // V leaves nothing of B behind: a fresh node W stands for it.
        let (_tw, w) = node();
        let (_, space_a, _) = joint_acme(&m, &w, Role::Writer);
        for stolen in [x.id, shared_b.id] {
            let mut doc = rapport_model::doc::create(
                m.device_id().actor_id(),
                Kind::Company,
                space_a,
                &[(
                    "name".into(),
                    rapport_model::FieldValue::Text("Squat".into()),
                )],
                Timestamp::now(),
            )
            .expect("doc");
            let change = doc.get_last_local_change().expect("change");
            let signed = m.key().sign_change(&change).expect("sign");
            let report = w
                .apply_remote(space_a, stolen, vec![signed.encode()], m.device_id())
                .expect("apply");
            assert_eq!((report.applied, report.rejected), (0, 1), "{report:?}");
            assert!(w.store().doc(stolen).expect("doc").is_none());
        }
        let log = w.store().rejections().expect("log");
        assert!(
            log.iter()
                .any(|r| r.reason.contains("only the record's creator")),
            "{log:?}"
        );
        // W can still join B and receive X.
        add(&admin_b, shared_b.id, &w, Role::Reader);
        sync(&w, &admin_b, space_b);
        assert_eq!(w.resolve(&x.id.to_string()).expect("X").title(), "Acme");
    }

    /// Issue 15, item 11: what the quota counts equals the bytes of the
    /// signed changes stored, after changes were refused, kept waiting and
    /// then forgotten.
    #[test]
    fn usage_equals_what_is_stored_after_refusals_and_forgetting() {
        let (_ta, a) = node();
        let (_tw, w) = node();
        let (_tr, r) = node();
        let (shared, space, acme) = joint_acme(&a, &w, Role::Writer);
        add(&a, shared.id, &r, Role::Reader);
        sync(&r, &a, space);
        // Waiting changes by a reader of this space, sent under it: judged
        // and forgotten once their dependency arrives.
        let base = all_changes(&w, acme.id);
        w.edit("Acme", &input(&[("industry", "Steel")]), &[])
            .expect("edit");
        let dep = added(&all_changes(&w, acme.id), &base);
        let by_reader = signed_edit(&r, &w, acme.id, "owner", "Reader");
        let report = a
            .apply_remote(space, acme.id, vec![by_reader.encode()], r.device_id())
            .expect("apply");
        assert_eq!(report.rejected, 1, "{report:?}");
        let by_writer = signed_edit(&w, &w, acme.id, "owner", "Wen");
        let report = a
            .apply_remote(space, acme.id, vec![by_writer.encode()], w.device_id())
            .expect("apply");
        assert_eq!(report.pending, 1, "{report:?}");
        a.apply_remote(space, acme.id, dep, w.device_id())
            .expect("apply");
        assert_eq!(a.resolve("Acme").expect("acme").text("owner"), Some("Wen"));
        // A change sent under another document too is charged once.
        let report = a
            .apply_remote(space, shared.id, vec![by_writer.encode()], w.device_id())
            .expect("apply");
        assert_eq!(report.applied, 0, "{report:?}");
        assert_eq!(a.resolve("Acme").expect("acme").text("owner"), Some("Wen"));

        assert_eq!(
            a.store().space_usage(space).expect("usage"),
            stored(&a, space)
        );
    }

    /// Bytes of the signed changes a node lists for the documents of
    /// `space`, each change once.
    fn stored(r: &Repo, space: SpaceId) -> u64 {
        let changes: HashSet<Vec<u8>> = r
            .store()
            .space_items(space)
            .map(|i| i.expect("item").0)
            .flat_map(|id| all_changes(r, id))
            .collect();
        changes.iter().map(|c| c.len() as u64).sum()
    }

    /// Issue 15, item 2: readers flood a node with space-document changes
    /// whose dependencies never arrive, 10,000 in all. What is kept stays
    /// within the bounds on waiting changes and the quota, the refusals
    /// are logged and counted, and the next real membership change applies.
    #[test]
    fn a_flood_of_changes_that_wait_forever_is_bounded() {
        use crate::limits::{Limiter, Limits, MAX_WAITING_PER_RECORD};
        let (_ta, a) = node();
        let (_tr, r) = node();
        let (_tq, q) = node();
        let (_tb, b) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &r, Role::Reader);
        add(&a, shared.id, &q, Role::Reader);
        add(&a, shared.id, &b, Role::Admin);
        for n in [&r, &q, &b] {
            sync(n, &a, space);
        }
        // Changes by a reader to its copy of the space document, re-pointed
        // at dependencies nobody has.
        let flood = |reader: &Repo, from: u32, to: u32| -> Vec<Vec<u8>> {
            let mut doc = reader.load_doc(shared.id).expect("doc");
            rapport_model::automerge::transaction::Transactable::put(
                &mut doc,
                rapport_model::automerge::ROOT,
                "name",
                "Flood",
            )
            .expect("put");
            doc.commit();
            let template = doc.get_last_local_change().expect("change").decode();
            (from..to)
                .map(|n| {
                    let mut forged = template.clone();
                    let mut dep = [0xfe; 32];
                    dep[..4].copy_from_slice(&n.to_be_bytes());
                    forged.deps = vec![ChangeHash(dep)];
                    forged.seq += u64::from(n) + 1;
                    let c = Change::from(forged);
                    reader.key().sign_change(&c).expect("sign").encode()
                })
                .collect()
        };

        // Limited: space-document changes by a non-admin count against the
        // quota like records.
        let quota = a.store().space_usage(space).expect("usage") + 16 * 1024;
        let limiter = Limiter::new(Limits {
            space_quota: Some(quota),
            changes_per_minute: None,
        });
        let mut replica = a.replica(q.device_id()).limited(&limiter);
        for c in flood(&q, 0, 1_000) {
            Replica::apply(&mut replica, space, shared.id, vec![c]).expect("apply");
        }
        let usage = a.store().space_usage(space).expect("usage");
        assert!(
            usage <= quota,
            "{usage} bytes kept, over the {quota}-byte quota"
        );
        assert!(
            limiter
                .over_quota
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
        );

        // Unlimited: the bound on waiting changes per record holds.
        let mut replica = a.replica(r.device_id());
        for c in flood(&r, 1_000, 10_000) {
            Replica::apply(&mut replica, space, shared.id, vec![c]).expect("apply");
        }
        let counts = |who: &Repo| {
            a.store()
                .waiting_counts(space, &who.device_id().0, shared.id)
                .expect("counts")
        };
        let (in_space, by_r, in_record) = counts(&r);
        let by_q = counts(&q).1;
        assert!(by_q > 0);
        assert_eq!(in_record, MAX_WAITING_PER_RECORD);
        assert_eq!((in_space, by_r + by_q), (in_record, in_record));
        assert_eq!(replica.report.rejected, 9_000 - by_r as usize);
        assert!(
            a.store()
                .rejections()
                .expect("log")
                .iter()
                .any(|x| x.reason.contains("changes of this record wait already")),
        );

        // The other admin adds a member: it applies at once on A.
        let (_tc, c) = node();
        let before = all_changes(&b, shared.id);
        add(&b, shared.id, &c, Role::Writer);
        let addition = added(&all_changes(&b, shared.id), &before);
        let started = Instant::now();
        let report = a
            .apply_remote(space, shared.id, addition, b.device_id())
            .expect("apply");
        let took = started.elapsed();
        eprintln!("a membership change after the flood applied in {took:?}");
        assert_eq!(report.applied, 1, "{report:?}");
        assert!(
            a.space(shared.id)
                .expect("space")
                .expect("s")
                .is_member(&c.device_id().to_string())
        );
    }

    /// Issue 15, item 4: the removal of a device that wrote 25,000 records
    /// no longer outgrows a change: its cutoff travels in parts, reaches
    /// another member, and cuts the device off there, keeping what it
    /// wrote before.
    #[test]
    fn the_removal_of_a_device_that_wrote_25k_records_reaches_every_member() {
        use rapport_model::space::{CUTOFF_PER_CHANGE, Removal};
        let (_ta, a) = node();
        let (_tw, w) = node();
        let (_td, d) = node();
        let (shared, space, acme) = joint_acme(&a, &w, Role::Writer);
        add(&a, shared.id, &d, Role::Writer);
        sync(&d, &a, space);
        w.edit("Acme", &input(&[("industry", "Steel")]), &[])
            .expect("before");
        sync(&a, &w, space);
        sync(&d, &w, space);

        // What A would name for a device that wrote 25,000 records: Acme's
        // last change by W, and 24,999 others.
        let last = w
            .store()
            .heads(space, acme.id)
            .expect("heads")
            .expect("acme")[0];
        let mut cutoff: Vec<(RecordId, [u8; 32])> = (0..24_999u32)
            .map(|n| {
                let mut r = [0u8; 10];
                r[..4].copy_from_slice(&n.to_be_bytes());
                (RecordId::new(1, r), [7; 32])
            })
            .collect();
        cutoff.push((acme.id, last));
        cutoff.sort_by_key(|(r, _)| *r);
        let mut doc = a.load_doc(shared.id).expect("doc");
        let before = all_changes(&a, shared.id);
        rapport_model::space::remove_members(
            &mut doc,
            &[Removal {
                device: w.device_id().to_string(),
                by: a.device_id().to_string(),
                at: Timestamp::now().as_second(),
                cutoff: cutoff.clone(),
            }],
            [9; 32],
            Timestamp::now(),
        )
        .expect("remove");
        a.write_space_doc(&mut doc, shared.id).expect("write");
        let removal = added(&all_changes(&a, shared.id), &before);
        assert_eq!(removal.len(), 25_000usize.div_ceil(CUTOFF_PER_CHANGE));
        assert!(
            removal
                .iter()
                .all(|c| c.len() <= rapport_proto::MAX_CHANGE_BYTES),
            "a part of the removal is over the change limit"
        );

        w.edit("Acme", &input(&[("domain", "evil.example")]), &[])
            .expect("after");
        sync(&d, &a, space);
        let view = d.space(shared.id).expect("space").expect("s");
        let (_, on_d) = view
            .removed
            .get(&w.device_id().to_string())
            .expect("W is removed on D");
        assert_eq!(on_d.cutoff, cutoff);
        assert!(
            !d.replica(w.device_id()).may_sync(space),
            "W still syncs with D"
        );
        // W's late edit, relayed by someone who has it, is kept aside.
        let late = added(&all_changes(&w, acme.id), &all_changes(&d, acme.id));
        d.apply_remote(space, acme.id, late, a.device_id())
            .expect("apply");
        let on_d = d.resolve("Acme").expect("acme");
        assert_eq!(on_d.text("industry"), Some("Steel"), "written before");
        assert_eq!(on_d.get("domain"), None, "written after the removal");
    }

    /// A member who sends a writer's change under another document first
    /// (where it waits forever) does not keep it from its own record.
    #[test]
    fn a_change_sent_under_another_document_first_still_applies_to_its_own() {
        let (_ta, a) = node();
        let (_tw, w) = node();
        let (_tr, r) = node();
        let (shared, space, acme) = joint_acme(&a, &w, Role::Writer);
        add(&a, shared.id, &r, Role::Reader);
        sync(&r, &a, space);
        let edit = signed_edit(&w, &w, acme.id, "owner", "Wen");
        let report = a
            .apply_remote(space, shared.id, vec![edit.encode()], r.device_id())
            .expect("apply");
        assert_eq!(report.pending, 1, "{report:?}");
        let report = a
            .apply_remote(space, acme.id, vec![edit.encode()], w.device_id())
            .expect("apply");
        assert_eq!(report.applied, 1, "{report:?}");
        assert_eq!(a.resolve("Acme").expect("acme").text("owner"), Some("Wen"));
        assert_eq!(
            a.store().space_usage(space).expect("usage"),
            stored(&a, space)
        );
    }

    /// Issue 15, item 5 (by another path): a writer cannot move a record
    /// of one space into another by writing its `space` key.
    #[test]
    fn no_change_moves_a_record_to_another_space() {
        use rapport_model::automerge::{ROOT, transaction::Transactable};
        let (_ta, a) = node();
        let (_tw, w) = node();
        let (_, space, acme) = joint_acme(&a, &w, Role::Writer);
        let mut doc = w.load_doc(acme.id).expect("doc");
        doc.put(ROOT, "space", "private").expect("put");
        doc.commit();
        let moved = w
            .key()
            .sign_change(&doc.get_last_local_change().expect("change"))
            .expect("sign");
        let report = a
            .apply_remote(space, acme.id, vec![moved.encode()], w.device_id())
            .expect("apply");
        assert_eq!(report.rejected, 1, "{report:?}");
        let log = a.store().rejections().expect("log");
        assert!(
            log.iter().any(|x| x.reason.contains("move a document")),
            "{log:?}"
        );
    }

    /// A removal's cutoff gains a part: the records that part names are
    /// judged again (the removed writer's edits there apply), the others
    /// are not even looked at.
    #[test]
    fn a_new_cutoff_part_rejudges_only_the_records_it_names() {
        let (_ta, a) = node();
        let (_tw, w) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &w, Role::Writer);
        let names = ["Acme", "Beta", "Gamma"];
        for name in names {
            a.create(Kind::Company, space, &input(&[("name", name)]))
                .expect("create");
        }
        sync(&w, &a, space);
        for name in names {
            w.edit(name, &input(&[("industry", "Steel")]), &[])
                .expect("w edits");
        }
        sync(&a, &w, space);
        a.remove_members(shared.id, &w.device_id().to_string())
            .expect("remove");
        let full = a.space(shared.id).expect("space").expect("view");
        let device = w.device_id().to_string();
        assert_eq!(full.removed[&device].1.cutoff.len(), 3);
        let mut first_part = full.clone();
        first_part
            .removed
            .get_mut(&device)
            .expect("removed")
            .1
            .cutoff
            .truncate(1);
        let industry = |name: &str| {
            a.resolve(name)
                .expect("record")
                .text("industry")
                .map(str::to_string)
        };
        // Only the first part has arrived: W's edits elsewhere are held.
        a.resettle_after_removals(shared.id, Some(&full), &first_part)
            .expect("resettle");
        let named_first = first_part.removed[&device].1.cutoff[0].0;
        let rest: Vec<&str> = names
            .into_iter()
            .filter(|n| a.resolve(n).expect("record").id != named_first)
            .collect();
        for name in &rest {
            assert_eq!(industry(name), None, "{name}");
        }
        SETTLES.with(|n| n.set(0));
        a.resettle_after_removals(shared.id, Some(&first_part), &full)
            .expect("resettle");
        assert_eq!(SETTLES.with(|n| n.get()), 2, "records judged again");
        for name in names {
            assert_eq!(industry(name).as_deref(), Some("Steel"), "{name}");
        }
    }

    /// A record the removed writer created is named only in a part of the
    /// cutoff that has not arrived: it is withdrawn meanwhile (its changes
    /// are kept aside), and comes back when that part arrives, as on a
    /// node that received the whole removal at once.
    #[test]
    fn a_withdrawn_record_comes_back_when_the_cutoff_part_naming_it_arrives() {
        let (_ta, a) = node();
        let (_tw, w) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &w, Role::Writer);
        sync(&w, &a, space);
        let delta = w
            .create(Kind::Company, space, &input(&[("name", "Delta")]))
            .expect("w creates");
        sync(&a, &w, space);
        assert!(a.resolve("Delta").is_ok(), "a holds W's record");
        a.remove_members(shared.id, &w.device_id().to_string())
            .expect("remove");
        let full = a.space(shared.id).expect("space").expect("view");
        let device = w.device_id().to_string();
        let mut first_part = full.clone();
        let cutoff = &mut first_part
            .removed
            .get_mut(&device)
            .expect("removed")
            .1
            .cutoff;
        let named = cutoff
            .iter()
            .position(|(r, _)| *r == delta.id)
            .expect("the cutoff names Delta");
        cutoff.truncate(named);
        a.resettle_after_removals(shared.id, Some(&full), &first_part)
            .expect("resettle");
        assert!(a.resolve("Delta").is_err(), "withdrawn while unnamed");
        a.resettle_after_removals(shared.id, Some(&first_part), &full)
            .expect("resettle");
        assert_eq!(
            a.resolve("Delta").expect("Delta is back").text("name"),
            Some("Delta")
        );
    }

    /// An edit waits for the one before it, and is forgotten after a week
    /// of waiting. Automerge had kept it queued in the stored document, so
    /// when the edit before it arrived, the forgotten one came out of the
    /// document with it, unjudged, and the record refused every change
    /// from then on: this node never caught up again.
    #[test]
    fn a_change_forgotten_while_waiting_never_blocks_its_record() {
        use crate::limits::WAITING_TTL;
        // Now: the writer, on the system clock, would refuse records from the future.
        let start = Timestamp::now();
        let (clock, tmp, a) = clocked_node(start);
        let (_tw, w) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &w, Role::Writer);
        let acme = a
            .create(Kind::Company, space, &input(&[("name", "Acme")]))
            .expect("create");
        // The first session brings the space, the second its records.
        sync(&w, &a, space);
        sync(&w, &a, space);
        let edit = |industry: &str| {
            let before = all_changes(&w, acme.id);
            w.edit("Acme", &input(&[("industry", industry)]), &[])
                .expect("w edits");
            let mut new = all_changes(&w, acme.id);
            new.retain(|c| !before.contains(c));
            assert_eq!(new.len(), 1);
            new.remove(0)
        };
        let (first, second) = (edit("Steel"), edit("Glass"));
        let report = a
            .apply_remote(space, acme.id, vec![second.clone()], w.device_id())
            .expect("apply");
        assert_eq!(report.pending, 1, "{report:?}");

        drop(a);
        *clock.0.lock().expect("clock") = start
            .checked_add(std::time::Duration::from_secs(WAITING_TTL.as_secs() + 60))
            .expect("time");
        let a = Repo::open_in(tmp.path(), OpenMode::Existing, clock.clone()).expect("open");
        assert!(!all_changes(&a, acme.id).contains(&second), "forgotten");

        let report = a
            .apply_remote(space, acme.id, vec![first], w.device_id())
            .expect("apply");
        assert_eq!((report.applied, report.rejected), (1, 0), "{report:?}");
        let industry = || {
            a.resolve("Acme")
                .expect("Acme")
                .text("industry")
                .map(str::to_string)
        };
        assert_eq!(industry().as_deref(), Some("Steel"));
        let report = a
            .apply_remote(space, acme.id, vec![second], w.device_id())
            .expect("apply");
        assert_eq!(report.applied, 1, "offered again, it applies: {report:?}");
        assert_eq!(industry().as_deref(), Some("Glass"));
    }

    /// A waiting change sent under two records expires for good: the
    /// waiting entry follows the listing that remains, so its slot is freed
    /// and the change is no longer stored (it used to stay counted in the
    /// first record, and found "stale" again at every expiry).
    #[test]
    fn a_waiting_change_sent_under_two_records_expires_for_good() {
        use crate::limits::WAITING_TTL;
        let start = Timestamp::now();
        let (clock, tmp, a) = clocked_node(start);
        let (_tw, w) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &w, Role::Writer);
        let acme = a
            .create(Kind::Company, space, &input(&[("name", "Acme")]))
            .expect("create");
        let beta = a
            .create(Kind::Company, space, &input(&[("name", "Beta")]))
            .expect("create");
        sync(&w, &a, space);
        sync(&w, &a, space);
        let mut doc = w.load_doc(acme.id).expect("doc");
        rapport_model::automerge::transaction::Transactable::put(
            &mut doc,
            rapport_model::automerge::ROOT,
            "note",
            "x",
        )
        .expect("put");
        doc.commit();
        let mut change = doc.get_last_local_change().expect("change").decode();
        change.deps = vec![ChangeHash([0xfe; 32])];
        let waiting = w.key().sign_change(&Change::from(change)).expect("sign");
        let hash = parse_change(&waiting.change).expect("parse").hash();
        for record in [acme.id, beta.id] {
            let report = a
                .apply_remote(space, record, vec![waiting.encode()], w.device_id())
                .expect("apply");
            assert_eq!(report.pending, 1, "{report:?}");
        }
        let counts = |a: &Repo, record| {
            a.store()
                .waiting_counts(space, &w.device_id().0, record)
                .expect("counts")
        };
        assert_eq!(counts(&a, acme.id), (1, 1, 1));

        drop(a);
        *clock.0.lock().expect("clock") = start
            .checked_add(std::time::Duration::from_secs(WAITING_TTL.as_secs() + 60))
            .expect("time");
        let a = Repo::open_in(tmp.path(), OpenMode::Existing, clock.clone()).expect("open");
        assert_eq!(counts(&a, acme.id), (0, 0, 0), "the slot is free");
        assert_eq!(counts(&a, beta.id).2, 0);
        assert!(
            a.store().signed_change(&hash.0).expect("read").is_none(),
            "the expired change is still stored"
        );
    }

    /// A clock the test moves, with the system's randomness.
    pub(crate) struct Clock(pub(crate) std::sync::Mutex<Timestamp>);

    /// A node whose clock the test moves, in a directory it may reopen.
    pub(crate) fn clocked_node(
        start: Timestamp,
    ) -> (std::sync::Arc<Clock>, tempfile::TempDir, Repo) {
        let clock = std::sync::Arc::new(Clock(std::sync::Mutex::new(start)));
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repo::open_in(tmp.path(), OpenMode::Create, clock.clone()).expect("open");
        (clock, tmp, repo)
    }

    impl crate::env::Environment for Clock {
        fn now(&self) -> Timestamp {
            *self.0.lock().expect("clock")
        }
        fn fill(&self, buf: &mut [u8]) -> Result<(), rapport_trust::KeyError> {
            crate::env::System.fill(buf)
        }
    }

    /// A reader fills a record's waiting slots with changes whose
    /// dependencies never arrive. A day later a change that must wait is
    /// still refused; once the flood has waited longer than `WAITING_TTL`,
    /// it is forgotten and the next change that must wait is kept.
    #[test]
    fn changes_that_wait_too_long_are_forgotten_and_free_their_slots() {
        use crate::limits::{MAX_WAITING_PER_RECORD, WAITING_TTL};
        let start = Timestamp::from_second(1_800_000_000).expect("time");
        let (clock, tmp, a) = clocked_node(start);
        let (_tr, r) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &r, Role::Reader);
        sync(&r, &a, space);
        let mut doc = r.load_doc(shared.id).expect("doc");
        rapport_model::automerge::transaction::Transactable::put(
            &mut doc,
            rapport_model::automerge::ROOT,
            "name",
            "Flood",
        )
        .expect("put");
        doc.commit();
        let template = doc.get_last_local_change().expect("change").decode();
        let forged = |n: u32| {
            let mut c = template.clone();
            let mut dep = [0xfe; 32];
            dep[..4].copy_from_slice(&n.to_be_bytes());
            c.deps = vec![ChangeHash(dep)];
            c.seq += u64::from(n) + 1;
            r.key()
                .sign_change(&Change::from(c))
                .expect("sign")
                .encode()
        };
        let flood: Vec<Vec<u8>> = (0..MAX_WAITING_PER_RECORD as u32).map(forged).collect();
        let waiting = || {
            a.store()
                .waiting_counts(space, &r.device_id().0, shared.id)
                .expect("counts")
                .2
        };
        for c in &flood {
            a.apply_remote(space, shared.id, vec![c.clone()], r.device_id())
                .expect("apply");
        }
        assert_eq!(waiting(), MAX_WAITING_PER_RECORD);
        let later = |secs: u64| {
            *clock.0.lock().expect("clock") = start
                .checked_add(std::time::Duration::from_secs(secs))
                .expect("time");
        };
        later(24 * 3600);
        let report = a
            .apply_remote(space, shared.id, vec![forged(1_000)], r.device_id())
            .expect("apply");
        assert_eq!(report.waiting_refused, 1, "{report:?}");

        later(WAITING_TTL.as_secs() + 60);
        let report = a
            .apply_remote(space, shared.id, vec![forged(1_001)], r.device_id())
            .expect("apply");
        assert_eq!(
            (report.waiting_refused, report.pending),
            (0, 1),
            "{report:?}"
        );
        assert_eq!(waiting(), 1, "only the new change waits");
        let listed = all_changes(&a, shared.id);
        assert!(
            flood.iter().all(|c| !listed.contains(c)),
            "a forgotten change is still stored"
        );
        assert!(listed.contains(&forged(1_001)));

        // At start-up too: the one left waiting goes a week later.
        drop(a);
        later(2 * WAITING_TTL.as_secs() + 120);
        let a = Repo::open_in(tmp.path(), OpenMode::Existing, clock.clone()).expect("open");
        assert_eq!(
            a.store()
                .waiting_counts(space, &r.device_id().0, shared.id)
                .expect("counts")
                .2,
            0
        );
    }

    /// W's edit is kept aside (W was removed) and builds on Y's edit.
    /// Then the creator's removal of admin B arrives, which B's addition of
    /// Y does not precede: Y never was a member, its edit is refused at
    /// once, and W's edit, refused with it for good, is forgotten from the
    /// store.
    #[test]
    fn a_change_kept_aside_then_refused_for_good_is_forgotten() {
        let (_ta, a) = node();
        let (_tb, b) = node();
        let (_tw, w) = node();
        let (_ty, y) = node();
        let (_td, d) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &b, Role::Admin);
        add(&a, shared.id, &w, Role::Writer);
        sync(&b, &a, space);
        let base = all_changes(&a, shared.id);
        add(&b, shared.id, &y, Role::Writer);
        let adds_y = added(&all_changes(&b, shared.id), &base);
        a.remove_members(shared.id, &w.device_id().to_string())
            .expect("remove w");
        let removes_w = added(&all_changes(&a, shared.id), &base);
        let before_b = all_changes(&a, shared.id);
        a.remove_members(shared.id, &b.device_id().to_string())
            .expect("remove b");
        let removes_b = added(&all_changes(&a, shared.id), &before_b);
        let acme = a
            .create(Kind::Company, space, &input(&[("name", "Acme")]))
            .expect("acme");

        for (record, changes) in [
            (shared.id, &base),
            (shared.id, &adds_y),
            (shared.id, &removes_w),
            (acme.id, &all_changes(&a, acme.id)),
        ] {
            d.apply_remote(space, record, changes.clone(), a.device_id())
                .expect("apply");
        }
        let by_y = signed_edit(&y, &d, acme.id, "industry", "Steel");
        let report = d
            .apply_remote(space, acme.id, vec![by_y.encode()], y.device_id())
            .expect("apply");
        assert_eq!(report.applied, 1, "{report:?}");
        let by_w = signed_edit(&w, &d, acme.id, "owner", "Wen");
        let report = d
            .apply_remote(space, acme.id, vec![by_w.encode()], w.device_id())
            .expect("apply");
        assert_eq!(report.held, 1, "{report:?}");
        assert!(all_changes(&d, acme.id).contains(&by_w.encode()));
        let count = d.store().change_count();

        d.apply_remote(space, shared.id, removes_b, a.device_id())
            .expect("apply");
        assert!(
            !d.space(shared.id)
                .expect("s")
                .expect("view")
                .is_member(&y.device_id().to_string())
        );
        // Y's membership ended: the records Y wrote are judged again at
        // once, as on a node that heard of B's removal first (not at the
        // next change to one of them, which may never come).
        let on_d = d.resolve("Acme").expect("acme");
        assert_eq!(on_d.text("industry"), None, "the non-member's edit shows");
        assert!(
            !all_changes(&d, acme.id).contains(&by_w.encode()),
            "the refused change is still stored"
        );
        assert!(
            d.store()
                .signed_change(&parse_change(&by_w.change).expect("parse").hash().0)
                .expect("change")
                .is_none()
        );
        // B's removal came; W's change went (Y's is kept aside).
        assert_eq!(d.store().change_count(), count + 1 - 1);
        assert_eq!(
            d.store().space_usage(space).expect("usage"),
            stored(&d, space)
        );
    }
}
