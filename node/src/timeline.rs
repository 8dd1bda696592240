//! A record's timeline: every change to it (who, when, what, and whether
//! its signature verifies), merged with the activities linked to it; and
//! the races a deletion can lose silently (a delete and a restore at the
//! same time, edits made while someone deleted the record), told in words.

use rapport_model::automerge::{AutoCommit, ChangeHash};
use rapport_model::space::SpaceView;
use rapport_model::{FieldValue, Kind, RecordId, RecordView};
use rapport_trust::{DeviceId, verify_change};

use crate::{NodeError, Repo};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<FieldValue>,
    pub after: Option<FieldValue>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Entry {
    /// A signed change to the record itself.
    Change {
        /// Seconds since the Unix epoch, as the author's clock said.
        time: i64,
        author: String,
        device: Option<String>,
        /// `created`, `edited`, `deleted` or `restored`.
        action: String,
        fields: Vec<FieldChange>,
        /// Whether the stored signature verifies for this change.
        verified: bool,
        hash: String,
        /// Set when the change raced the record's deletion: with what.
        #[serde(skip_serializing_if = "Option::is_none")]
        race: Option<String>,
        /// The API token the device made the change for, as the signed
        /// change's message says; `None` for its own user.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<String>,
    },
    /// An activity (call, email, meeting, note, task) about the record.
    Activity {
        time: i64,
        id: RecordId,
        activity: String,
        subject: String,
        done: Option<bool>,
    },
}

/// A change that took part in a race with the record's deletion.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Racer {
    /// Seconds since the Unix epoch, as the author's clock said.
    pub time: i64,
    pub author: String,
    /// The fields an edit changed (empty for a delete or a restore).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    pub hash: String,
}

/// A delete made at the same time as a restore, or as edits that then
/// vanished with the record. Deleting or restoring the record again
/// settles it on every node.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeleteRace {
    /// Whether the record is deleted now.
    pub deleted: bool,
    pub deletes: Vec<Racer>,
    pub restores: Vec<Racer>,
    pub edits: Vec<Racer>,
}

impl DeleteRace {
    /// One sentence for the user: what raced, what holds, how to settle it.
    pub fn summary(&self) -> String {
        let who = |rs: &[Racer]| {
            let mut names: Vec<&str> = rs.iter().map(|r| r.author.as_str()).collect();
            names.dedup();
            names.join(" and ")
        };
        let mut out = format!("{} deleted this record", who(&self.deletes));
        if !self.restores.is_empty() {
            out.push_str(&format!(
                " while {} restored it at the same time",
                who(&self.restores)
            ));
        }
        if !self.edits.is_empty() {
            let mut fields: Vec<&str> = self
                .edits
                .iter()
                .flat_map(|r| r.fields.iter().map(String::as_str))
                .collect();
            fields.sort_unstable();
            fields.dedup();
            out.push_str(&format!(
                "{} {} changed {} at the same time",
                if self.restores.is_empty() {
                    " while"
                } else {
                    ", and"
                },
                who(&self.edits),
                fields.join(", ")
            ));
        }
        out.push_str(match (self.deleted, self.edits.is_empty()) {
            (true, false) => {
                ": it stays deleted, and those changes are hidden with it. \
                 Restore it to keep them, or delete it again to settle this for everyone."
            }
            (true, true) => {
                ": it stays deleted. Restore it, or delete it again, to settle this for everyone."
            }
            (false, _) => {
                ": it stays restored. Delete it, or restore it again, to settle this for everyone."
            }
        });
        out
    }

    /// What the change `hash` raced, for its timeline entry.
    fn note(&self, hash: &str) -> Option<String> {
        let names = |rs: &[Racer], what: &str| {
            let mut names: Vec<&str> = rs.iter().map(|r| r.author.as_str()).collect();
            names.dedup();
            (!names.is_empty()).then(|| format!("{what} by {}", names.join(" and ")))
        };
        let is = |rs: &[Racer]| rs.iter().any(|r| r.hash == hash);
        let against: Vec<String> = if is(&self.deletes) {
            [
                names(&self.restores, "a restore"),
                names(&self.edits, "edits"),
            ]
            .into_iter()
            .flatten()
            .collect()
        } else if is(&self.restores) || is(&self.edits) {
            names(&self.deletes, "a delete").into_iter().collect()
        } else {
            return None;
        };
        Some(format!(
            "made at the same time as {}",
            against.join(" and ")
        ))
    }
}

impl Entry {
    pub fn time(&self) -> i64 {
        match self {
            Entry::Change { time, .. } | Entry::Activity { time, .. } => *time,
        }
    }
}

impl Repo {
    /// The record's history and linked activities, newest first: the
    /// activities `may_see` lets through (an activity of another space may
    /// be about a shared record: a private note on a shared company).
    pub fn timeline(
        &self,
        record: &RecordView,
        may_see: impl Fn(&RecordView) -> bool,
    ) -> Result<Vec<Entry>, NodeError> {
        let mut entries = self.change_entries(record.id)?;
        for (field, v) in self.related(record.id)? {
            if v.kind != Kind::Activity || field != "about" || v.deleted || !may_see(&v) {
                continue;
            }
            let time = v
                .text("when")
                .and_then(|w| w.parse::<jiff::Timestamp>().ok())
                .map_or(v.updated, |t| t.as_second());
            entries.push(Entry::Activity {
                time,
                id: v.id,
                activity: v.text("type").unwrap_or("activity").into(),
                subject: v.title(),
                done: match v.get("done") {
                    Some(FieldValue::Flag(b)) => Some(*b),
                    _ => None,
                },
            });
        }
        // Changes come in causal order; a stable sort by time keeps it for
        // changes made within the same second.
        entries.reverse();
        entries.sort_by_key(|e| std::cmp::Reverse(e.time()));
        Ok(entries)
    }

    /// How the record's deletion raced a restore or edits, if it did.
    pub fn delete_race(&self, record: &RecordView) -> Result<Option<DeleteRace>, NodeError> {
        let mut doc = self.load_doc(record.id)?;
        let spaces = self.spaces()?;
        self.race_in(&mut doc, record.id, &spaces)
    }

    fn race_in(
        &self,
        doc: &mut AutoCommit,
        id: RecordId,
        spaces: &[SpaceView],
    ) -> Result<Option<DeleteRace>, NodeError> {
        let Some(race) = rapport_model::doc::delete_race(doc)? else {
            return Ok(None);
        };
        let mut racer = |hash: &ChangeHash, fields: &[String]| {
            let (time, device) = doc
                .get_change_by_hash(hash)
                .map(|c| (c.timestamp(), DeviceId::from_actor(c.actor_id())))
                .unwrap_or((0, None));
            Racer {
                time,
                author: self.author_label(device, spaces),
                fields: fields.to_vec(),
                hash: rapport_proto::hex(&hash.0),
            }
        };
        let deletes = race.deletes.iter().map(|h| racer(h, &[])).collect();
        let restores = race.restores.iter().map(|h| racer(h, &[])).collect();
        let edits = race.edits.iter().map(|(h, f)| racer(h, f)).collect();
        Ok(Some(DeleteRace {
            deleted: RecordView::read(doc, id, None)?.deleted,
            deletes,
            restores,
            edits,
        }))
    }

    fn change_entries(&self, id: RecordId) -> Result<Vec<Entry>, NodeError> {
        let mut doc = self.load_doc(id)?;
        let spaces = self.spaces()?;
        let race = self.race_in(&mut doc, id, &spaces)?;
        let changes = doc.get_changes(&[]);
        let mut entries = Vec::with_capacity(changes.len());
        for change in changes {
            let hash = change.hash();
            let before = if change.deps().is_empty() {
                None
            } else {
                Some(RecordView::read(&mut doc, id, Some(change.deps()))?)
            };
            let after = RecordView::read(&mut doc, id, Some(&[hash]))?;
            let via = change
                .message()
                .and_then(rapport_model::doc::via_of)
                .map(str::to_string);
            // A history rebuilt to erase a field names who first wrote
            // each change (`erasure::rebuilt_without`).
            let first_author = via
                .as_deref()
                .and_then(|v| v.strip_prefix(crate::erasure::REBUILT_FROM))
                .and_then(|hex| hex.parse::<rapport_model::automerge::ActorId>().ok())
                .and_then(|a| DeviceId::from_actor(&a));
            let device = DeviceId::from_actor(change.actor_id());
            let hash_hex = rapport_proto::hex(&hash.0);
            entries.push(Entry::Change {
                time: change.timestamp(),
                author: self.author_label(first_author.or(device), &spaces),
                device: device.map(|d| d.to_string()),
                action: action(before.as_ref(), &after).into(),
                fields: diff(before.as_ref(), &after),
                verified: self.change_verifies(&hash, device),
                race: race.as_ref().and_then(|r| r.note(&hash_hex)),
                via,
                hash: hash_hex,
            });
        }
        Ok(entries)
    }

    fn change_verifies(&self, hash: &ChangeHash, device: Option<DeviceId>) -> bool {
        match self.store().signed_change(&hash.0) {
            Ok(Some(signed)) => {
                Some(DeviceId(signed.author)) == device
                    && verify_change(&signed).is_ok_and(|c| c.hash() == *hash)
            }
            _ => false,
        }
    }
}

fn action(before: Option<&RecordView>, after: &RecordView) -> &'static str {
    match before {
        None => "created",
        Some(b) if !b.deleted && after.deleted => "deleted",
        Some(b) if b.deleted && !after.deleted => "restored",
        Some(_) => "edited",
    }
}

fn diff(before: Option<&RecordView>, after: &RecordView) -> Vec<FieldChange> {
    let empty = std::collections::BTreeMap::new();
    let old = before.map_or(&empty, |b| &b.fields);
    let mut names: Vec<&String> = old.keys().chain(after.fields.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| old.get(*n) != after.fields.get(*n))
        .map(|n| FieldChange {
            field: n.clone(),
            before: old.get(n).cloned(),
            after: after.fields.get(n).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::{OpenMode, Repo};
    use rapport_model::{Kind, SpaceId};

    use super::Entry;

    #[test]
    fn timeline_shows_changes_and_linked_activities_newest_first() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repo::open(tmp.path(), OpenMode::Create).expect("open");
        let s = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        repo.create(Kind::Company, SpaceId::Private, &s(&[("name", "Acme")]))
            .expect("create");
        repo.edit("Acme", &s(&[("industry", "Steel")]), &[])
            .expect("edit");
        repo.create(
            Kind::Activity,
            SpaceId::Private,
            &s(&[
                ("type", "call"),
                ("subject", "Intro call"),
                ("about", "Acme"),
                ("when", "2999-01-01 10:00"),
            ]),
        )
        .expect("activity");
        let acme = repo.resolve("Acme").expect("acme");
        let t = repo.timeline(&acme, |_| true).expect("timeline");
        assert_eq!(t.len(), 3);
        assert!(matches!(&t[0], Entry::Activity { subject, .. } if subject == "Intro call"));
        match &t[1] {
            Entry::Change {
                action,
                fields,
                verified,
                ..
            } => {
                assert_eq!(action, "edited");
                assert_eq!(fields.len(), 1);
                assert_eq!(fields[0].field, "industry");
                assert!(*verified);
            }
            other => panic!("expected the edit, got {other:?}"),
        }
        assert!(matches!(&t[2], Entry::Change { action, .. } if action == "created"));
    }
}
