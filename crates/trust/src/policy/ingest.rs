//! What to make of changes that arrive for one document, as a plan: the
//! node loads what it holds, calls [`plan`], and persists what the plan
//! says. Nothing here reads a store or a clock, so the same inputs give
//! the same plan on every node.
//!
//! The rules a change passes (also in `docs/PROTOCOL.md`), after its
//! signature was verified and its actor found to be its signer:
//!
//! 1. Its author is, or was, a member of the space; for a record, one
//!    whose role writes records ([`authorize`]). (A node that is joining
//!    has no member list yet and lets the space document's rules judge
//!    it instead.)
//! 2. A document says it belongs to the space it arrived in, and keeps
//!    saying so; only the creator named by a record's id starts it.
//! 3. The result is a document Automerge gives back as signed, and a
//!    valid record or space document.
//! 4. [`judge_record`] or [`evaluate_space`] then judges the whole history
//!    held for the document: membership statements need an admin, and
//!    changes written after their author's removal are kept aside unless
//!    a member who was not removed built on them.
//!
//! A change refused by 1-3 never joins the judging; the others from the
//! same batch still do.

use std::collections::{HashMap, HashSet};

use rapport_model::automerge::{AutoCommit, AutomergeError, Change, ChangeHash};
use rapport_model::space::{is_space_doc, space_of};
use rapport_model::{RecordId, RecordView, Removal, SpaceId, SpaceView};
use rapport_proto::{SignedChange, hex, parse_hex};

use super::{
    ChangeMeta, Checks, Hash, Verdict, accepted_heads, authorize, evaluate_space, judge_record,
};

/// A change whose signature was verified, with its parsed form.
pub type Verified = (SignedChange, Change);

/// Where the changes judged come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A peer sent them.
    Peer,
    /// This node's own journal, replayed: judged when they arrived, by
    /// the rules of their time (see [`Checks::creator`]).
    Journal,
    /// Nothing arrived: the document is judged again because its space
    /// changed (a removal, a membership that began or ended).
    Rejudge,
}

/// What [`plan`] judges: one document as held, with what arrived for it.
#[derive(Debug)]
pub struct Ingest<'a> {
    /// The space's id (its document's record id).
    pub space: RecordId,
    pub record: RecordId,
    /// The space's members as held (`None` while joining it).
    pub view: Option<&'a SpaceView>,
    /// The document as stored (empty if none).
    pub doc: AutoCommit,
    /// Stored changes of the document that are not in it: waiting for
    /// their dependencies, or kept aside.
    pub aside: Vec<Verified>,
    /// What arrived.
    pub incoming: Vec<Verified>,
    pub origin: Origin,
}

/// What happens to one change.
#[derive(Debug)]
pub struct Decision {
    pub signed: SignedChange,
    pub hash: Hash,
    /// It arrived now (rather than being held from before).
    pub new: bool,
    pub fate: Fate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// The document or an earlier change of the batch holds it already.
    Duplicate,
    /// Refused before the history is judged (rules 1-3): it never applies
    /// here, and a stored one is forgotten.
    Refused(String),
    /// The verdict of the whole history's judging. A change not in the
    /// document (its dependencies have not arrived) is waiting.
    Judged(Verdict),
}

/// The outcome of judging one document.
#[derive(Debug)]
pub struct Plan {
    /// Every change considered, in the order judged: refusals first, in
    /// the order the changes were held and arrived.
    pub decisions: Vec<Decision>,
    /// `None`: the document stays as it is, and nothing else is to do.
    pub settled: Option<Settled>,
}

/// The judged document, before the accepted part is taken out of it
/// ([`Settled::document`], which costs a fork: only when it is stored).
#[derive(Debug)]
pub struct Settled {
    /// Every change that joined the judging applied.
    doc: AutoCommit,
    record: RecordId,
    is_space_record: bool,
    /// Heads of the part the rules accept.
    pub heads: Vec<ChangeHash>,
    /// Whether the accepted heads differ from the stored document's.
    pub changed: bool,
    /// Whether the stored document had any change.
    had_heads: bool,
    /// Whether every change of `doc` is accepted.
    complete: bool,
    /// The record as `doc` shows it, read when it was checked.
    shown: Option<RecordView>,
    /// A space document's members as judged.
    space_view: Option<SpaceView>,
}

/// What to store for the document.
#[derive(Debug)]
pub enum Document {
    /// Nothing accepted forms a document yet: keep the changes, and
    /// `withdraw` what was shown before (say, a record only a removed
    /// device wrote).
    Pending { withdraw: bool },
    /// The accepted part, to store and show.
    Write(Box<Accepted>),
}

/// The accepted part of a document.
#[derive(Debug)]
pub struct Accepted {
    pub doc: AutoCommit,
    pub heads: Vec<Hash>,
    pub shown: Shown,
}

/// What a stored document shows.
#[derive(Debug)]
pub enum Shown {
    Record(RecordView),
    Space(SpaceView),
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("rebuilding {record}: {source}")]
    Rebuild {
        record: RecordId,
        source: Box<AutomergeError>,
    },
}

/// Judges `input.incoming` together with everything held for the
/// document: which changes are refused, duplicates, accepted, waiting or
/// kept aside, and which heads the rules accept.
pub fn plan(input: Ingest<'_>) -> Plan {
    let Ingest {
        space: space_id,
        record,
        view,
        mut doc,
        aside,
        incoming,
        origin,
    } = input;
    let space = SpaceId::Shared(space_id);
    let is_space_record = record == space_id;
    let mut decisions = Vec::new();
    let decide = |(signed, change): Verified, new: bool, fate: Fate| Decision {
        signed,
        hash: change.hash().0,
        new,
        fate,
    };
    let mut before: Vec<ChangeHash> = doc.get_heads();
    before.sort();
    if !before.is_empty() && space_of(&doc).ok() != Some(space) {
        // Rule 2: a document never moves between spaces.
        let reason = "the document belongs to another space";
        decisions.extend(
            incoming
                .into_iter()
                .map(|v| decide(v, true, Fate::Refused(reason.into()))),
        );
        return Plan {
            decisions,
            settled: None,
        };
    }
    // Rule 1 for everything held as well as what just arrived: a change
    // joins this document only if its author may write in the document's
    // space now, wherever and whenever the change arrived.
    let mut fresh: Vec<(Verified, bool)> = Vec::new();
    for (v, new) in aside
        .into_iter()
        .map(|v| (v, false))
        .chain(incoming.into_iter().map(|v| (v, true)))
    {
        let hash = v.1.hash();
        if doc.get_change_meta_by_hash(&hash).is_some()
            || fresh.iter().any(|((_, c), _)| c.hash() == hash)
        {
            decisions.push(decide(v, new, Fate::Duplicate));
            continue;
        }
        let check = Checks {
            creator: origin != Origin::Journal,
            decode: new,
        };
        match authorize(space_id, record, view, &v.0.author, &v.1, check) {
            Ok(()) => fresh.push((v, new)),
            Err(reason) => decisions.push(decide(v, new, Fate::Refused(reason))),
        }
    }
    if fresh.is_empty() && origin != Origin::Rejudge {
        return Plan {
            decisions,
            settled: None,
        };
    }
    // Rule 3, and Automerge's own: the whole batch at once if the result
    // is a valid document of this space; otherwise one change at a time,
    // refusing each one that breaks it, so that one bad change never
    // blocks the others, now or later.
    let valid = |d: &mut AutoCommit| valid(d, space, record, is_space_record);
    // The record as the document last applied shows it, read while
    // checking it: stored as is when every change is accepted.
    let mut shown = None;
    let batch: Vec<Change> = fresh.iter().map(|((_, c), _)| c.clone()).collect();
    // A change applied alone may release others of the batch that
    // Automerge queued waiting for it: they may come out too.
    let offered: HashSet<ChangeHash> = batch.iter().map(Change::hash).collect();
    if let Ok((whole, view)) = try_apply(&doc, &batch, &offered, &valid) {
        doc = whole;
        shown = view;
    } else {
        let mut good = Vec::new();
        for ((signed, change), new) in fresh {
            match try_apply(&doc, std::slice::from_ref(&change), &offered, &valid) {
                Ok((trial, view)) => {
                    doc = trial;
                    shown = view;
                    good.push(((signed, change), new));
                }
                Err(reason) => decisions.push(decide((signed, change), new, Fate::Refused(reason))),
            }
        }
        fresh = good;
    }

    // Rule 4: judge the whole history held. Judging a record costs a walk
    // of its history, spared when no author of the batch was removed.
    let removed_author =
        |v: &Verified| view.is_some_and(|s| s.removed.contains_key(&hex(&v.0.author)));
    let needs_judging = is_space_record
        || origin == Origin::Rejudge
        || view.is_some_and(|v| v.rebase_of(record).is_some())
        || fresh.iter().any(|(v, _)| removed_author(v));
    let mut space_view = None;
    // `None`: every change applies (no author of this batch was removed).
    let (heads, verdicts): (Vec<ChangeHash>, Option<HashMap<Hash, Verdict>>) = if !needs_judging {
        (doc.get_heads(), None)
    } else if is_space_record {
        let m = evaluate_space(doc.document(), space_id);
        space_view = m.view.clone();
        let map = m
            .log
            .iter()
            .filter_map(|s| {
                let h = parse_hex(&s.hash)?;
                Some((<Hash>::try_from(h).ok()?, s.verdict.clone()))
            })
            .collect();
        (m.heads, Some(map))
    } else {
        let Some(v) = view else {
            return Plan {
                decisions,
                settled: None,
            };
        };
        let metas: Vec<ChangeMeta> = doc.get_changes(&[]).iter().map(ChangeMeta::of).collect();
        let verdicts = judge_record(&metas, v, record);
        let heads = accepted_heads(&metas, &verdicts);
        (
            heads,
            Some(metas.iter().map(|m| m.hash).zip(verdicts).collect()),
        )
    };
    for ((signed, change), new) in fresh {
        let hash = change.hash();
        let verdict = match &verdicts {
            _ if doc.get_change_meta_by_hash(&hash).is_none() => Verdict::Waiting,
            None => Verdict::Accepted,
            Some(map) => map.get(&hash.0).cloned().unwrap_or(Verdict::Waiting),
        };
        decisions.push(decide((signed, change), new, Fate::Judged(verdict)));
    }
    let mut sorted = heads.clone();
    sorted.sort();
    let mut all = doc.get_heads();
    all.sort();
    Plan {
        decisions,
        settled: Some(Settled {
            doc,
            record,
            is_space_record,
            changed: sorted != before,
            had_heads: !before.is_empty(),
            complete: sorted == all,
            shown,
            heads,
            space_view,
        }),
    }
}

impl Settled {
    /// The document to store: the part the rules accept.
    pub fn document(self) -> Result<Document, PlanError> {
        if self.heads.is_empty() {
            return Ok(Document::Pending {
                withdraw: self.had_heads,
            });
        }
        let mut doc = if self.complete {
            self.doc
        } else {
            let mut all = self.doc;
            all.fork_at(&self.heads)
                .map_err(|source| PlanError::Rebuild {
                    record: self.record,
                    source: Box::new(source),
                })?
        };
        let shown = if self.is_space_record {
            match self.space_view {
                Some(v) => Shown::Space(v),
                None => return Ok(Document::Pending { withdraw: false }),
            }
        } else if let (true, Some(v)) = (self.complete, self.shown) {
            debug_assert_eq!(
                RecordView::read(&mut doc, self.record, None).ok().as_ref(),
                Some(&v),
                "the view kept from the check is the stored document's"
            );
            Shown::Record(v)
        } else {
            match RecordView::read(&mut doc, self.record, None) {
                Ok(v) => Shown::Record(v),
                // The accepted part alone is not a record yet.
                Err(_) => return Ok(Document::Pending { withdraw: false }),
            }
        };
        Ok(Document::Write(Box::new(Accepted {
            doc,
            heads: self.heads.iter().map(|h| h.0).collect(),
            shown,
        })))
    }
}

/// Whether `d` is a valid document of `record` in `space`; a record's
/// document comes with the view read to check it.
fn valid(
    d: &mut AutoCommit,
    space: SpaceId,
    record: RecordId,
    is_space_record: bool,
) -> Result<Option<RecordView>, String> {
    if d.get_heads().is_empty() {
        return Ok(None);
    }
    if space_of(d).ok() != Some(space) {
        return Err("the document does not belong to this space".into());
    }
    if is_space_record {
        return if is_space_doc(d) {
            Ok(None)
        } else {
            Err("not a space document".into())
        };
    }
    RecordView::read(d, record, None)
        .map(Some)
        .map_err(|e| format!("not a valid record: {e}"))
}

/// `doc` with `changes` applied, if the result passes `valid`.
///
/// Automerge 0.12 applies some malformed changes (an op whose predecessor
/// is an op at another key) and then panics when asked for them again,
/// which reading, judging and serving the document all do. So the applied
/// changes must come back out of the document as they were signed, and a
/// panic on the way refuses them rather than bringing the node down (the
/// copy it happened on is thrown away).
fn try_apply(
    doc: &AutoCommit,
    changes: &[Change],
    offered: &HashSet<ChangeHash>,
    valid: &dyn Fn(&mut AutoCommit) -> Result<Option<RecordView>, String>,
) -> Result<(AutoCommit, Option<RecordView>), String> {
    let attempt = || {
        let mut trial = doc.clone();
        let before = trial.get_heads();
        trial
            .apply_changes(changes.iter().cloned())
            .map_err(|e| format!("the change does not apply: {e}"))?;
        // Those still waiting for their dependencies do not come back yet;
        // every one that does must be one of those offered.
        if let Some(other) = trial
            .get_changes(&before)
            .iter()
            .find(|c| !offered.contains(&c.hash()))
        {
            return Err(format!(
                "the change does not survive Automerge's re-encoding (a change {} comes out)",
                hex(&other.hash().0)
            ));
        }
        let view = valid(&mut trial)?;
        Ok((trial, view))
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(attempt))
        .unwrap_or_else(|_| Err("the change breaks Automerge (it panicked)".into()))
}

/// Which records to judge again after a space document changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejudge {
    /// These (a removal gained a part of its cutoff that names them).
    Records(Vec<RecordId>),
    /// Every record this device wrote to.
    AuthoredBy(Hash),
}

/// After a space's members went from `before` to `after`: the records to
/// judge again, for every device whose membership began or ended, or
/// whose removal appeared, changed (another removal took precedence) or
/// went away, so its changes past the cutoff leave them (or come back).
/// When a removal only gained a part of its cutoff, only the records that
/// part names.
pub fn rejudge(before: Option<&SpaceView>, after: &SpaceView) -> Vec<Rejudge> {
    fn removal<'a>(v: Option<&'a SpaceView>, d: &str) -> Option<&'a Removal> {
        v.and_then(|v| v.removed.get(d)).map(|(_, r)| r)
    }
    let member = |v: Option<&SpaceView>, d: &str| v.is_some_and(|v| v.members.contains_key(d));
    let mut devices: Vec<&String> = after.removed.keys().chain(after.members.keys()).collect();
    if let Some(b) = before {
        devices.extend(b.removed.keys().chain(b.members.keys()));
    }
    devices.sort();
    devices.dedup();
    let mut out = Vec::new();
    for device in devices {
        let (was, now) = (removal(before, device), removal(Some(after), device));
        // A membership can also end without a removal: its addition is
        // held once the rules learn its adder had been removed first.
        let joined_or_left = member(before, device) != member(Some(after), device);
        if was == now && !joined_or_left {
            continue;
        }
        match (was, now) {
            (Some(was), Some(now)) if !joined_or_left && is_extension(was, now) => {
                out.push(Rejudge::Records(
                    now.cutoff[was.cutoff.len()..]
                        .iter()
                        .map(|(r, _)| *r)
                        .collect(),
                ))
            }
            _ => {
                if let Some(key) = parse_hex(device).and_then(|b| <Hash>::try_from(b).ok()) {
                    out.push(Rejudge::AuthoredBy(key));
                }
            }
        }
    }
    out
}

/// Whether removal `now` is `was` with more of its cutoff, and nothing else
/// changed: then a record's verdicts change only if the new part names it.
/// A cutoff is searched by record id ([`judge_record`]), so this holds
/// only while the whole cutoff is in id order; a cutoff out of order
/// (written by no honest node) has every record judged again.
fn is_extension(was: &Removal, now: &Removal) -> bool {
    (&was.device, &was.by, was.at) == (&now.device, &now.by, now.at)
        && now.cutoff.len() > was.cutoff.len()
        && now.cutoff.starts_with(&was.cutoff)
        && now.cutoff.windows(2).all(|w| w[0].0 < w[1].0)
}

#[cfg(test)]
mod tests;
