//! A record's timeline: every change to it (who, when, what, and whether
//! its signature verifies), merged with the activities linked to it.

use rapport_model::automerge::ChangeHash;
use rapport_model::{FieldValue, Kind, RecordId, RecordView};
use rapport_trust::{DeviceId, verify_change};

use crate::{NodeError, Repo};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<FieldValue>,
    pub after: Option<FieldValue>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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

impl Entry {
    pub fn time(&self) -> i64 {
        match self {
            Entry::Change { time, .. } | Entry::Activity { time, .. } => *time,
        }
    }
}

impl Repo {
    /// The record's history and linked activities, newest first.
    pub fn timeline(&self, record: &RecordView) -> Result<Vec<Entry>, NodeError> {
        let mut entries = self.change_entries(record.id)?;
        for (field, v) in self.related(record.id)? {
            if v.kind != Kind::Activity || field != "about" || v.deleted {
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

    fn change_entries(&self, id: RecordId) -> Result<Vec<Entry>, NodeError> {
        let mut doc = self.load_doc(id)?;
        let changes = doc.get_changes(&[]);
        let mut entries = Vec::with_capacity(changes.len());
        let spaces = self.spaces()?;
        for change in changes {
            let hash = change.hash();
            let before = if change.deps().is_empty() {
                None
            } else {
                Some(RecordView::read(&mut doc, id, Some(change.deps()))?)
            };
            let after = RecordView::read(&mut doc, id, Some(&[hash]))?;
            let device = DeviceId::from_actor(change.actor_id());
            entries.push(Entry::Change {
                time: change.timestamp(),
                author: self.author_label(device, &spaces),
                device: device.map(|d| d.to_string()),
                action: action(before.as_ref(), &after).into(),
                fields: diff(before.as_ref(), &after),
                verified: self.change_verifies(&hash, device),
                hash: rapport_proto::hex(&hash.0),
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
        let t = repo.timeline(&acme).expect("timeline");
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
