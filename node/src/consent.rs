//! Consent and objection: campaigns take only people who consented to
//! what their channel needs, and who objected to what is listed.
//!
//! The rule of which record counts is `rapport_model::consent`. The check
//! applies to this node's own writes of a campaign (create, edit, import,
//! enroll), to the members each write adds: a withdrawal later does not
//! block other edits of a campaign, it shows in `Repo::objections` with
//! the campaigns that still hold the person. A peer's write is not
//! checked again here (its author's node did), so a consent withdrawn on
//! one node while another adds the person concurrently shows up there too.

use std::collections::{BTreeMap, BTreeSet};

use rapport_model::consent::{Standing, purpose_of_channel, standing};
use rapport_model::{FieldValue, Kind, RecordId, RecordView};

use crate::repo::Input;
use crate::{NodeError, Repo};

/// What `rapport campaign enroll` did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Enrolled {
    pub campaign: RecordView,
    /// People added.
    pub added: Vec<(RecordId, String)>,
    /// People already members.
    pub already: Vec<(RecordId, String)>,
    /// People left out for want of consent, and why.
    pub skipped: Vec<(RecordId, String, String)>,
}

/// A person who withdrew consent or objected, for one purpose.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Objection {
    pub person: RecordId,
    pub name: String,
    pub purpose: String,
    #[serde(flatten)]
    pub standing: Standing,
    /// Campaigns whose channel needs this purpose and that still list the
    /// person: to act on.
    pub campaigns: Vec<(RecordId, String)>,
}

type Fields = BTreeMap<String, FieldValue>;

impl Repo {
    /// The live consent records of `person`.
    pub fn consents_of(&self, person: RecordId) -> Result<Vec<RecordView>, NodeError> {
        let mut out = Vec::new();
        for (source, field) in self.store().backlinks(person)? {
            if field == "person"
                && let Some(v) = self.store().view(source)?
                && v.kind == Kind::Consent
                && !v.deleted
            {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Why `person` may not be in a campaign that needs `purpose`, if not.
    fn lacks_consent(&self, person: RecordId, purpose: &str) -> Result<Option<String>, NodeError> {
        let records = self.consents_of(person)?;
        Ok(match standing(&records, purpose) {
            Some(s) if s.granted() => None,
            Some(s) => Some(format!("{} on {}", s.status, s.date)),
            None => Some("no consent recorded".into()),
        })
    }

    /// Refuses a campaign write that adds members without the consent its
    /// channel needs (`before`: the campaign's fields before the write).
    pub(crate) fn check_consent(
        &self,
        kind: Kind,
        before: Option<&Fields>,
        after: &Fields,
    ) -> Result<(), NodeError> {
        if kind != Kind::Campaign {
            return Ok(());
        }
        let Some((channel, purpose)) = needed_purpose(after) else {
            return Ok(());
        };
        // All members when the channel changes; otherwise the new ones.
        let kept: BTreeSet<&String> = match before {
            Some(b) if needed_purpose(b).map(|p| p.1) == Some(purpose) => b
                .get("members")
                .map(FieldValue::as_list)
                .unwrap_or_default()
                .iter()
                .collect(),
            _ => BTreeSet::new(),
        };
        let mut lacking = Vec::new();
        for id in after
            .get("members")
            .map(FieldValue::as_list)
            .unwrap_or_default()
        {
            if kept.contains(id) {
                continue;
            }
            let Ok(person) = id.parse::<RecordId>() else {
                continue;
            };
            if let Some(why) = self.lacks_consent(person, purpose)? {
                let name = self
                    .store()
                    .view(person)?
                    .map_or_else(|| person.to_string(), |v| v.title());
                lacking.push(format!("{name} ({why})"));
            }
        }
        if lacking.is_empty() {
            return Ok(());
        }
        Err(refusal(channel, purpose, &lacking))
    }

    /// `rapport campaign enroll`: adds people to a campaign's members.
    /// Those without the consent its channel needs are refused (nothing is
    /// written), or with `skip`, left out and reported.
    pub fn enroll(
        &self,
        campaign: &str,
        people: &[String],
        skip: bool,
    ) -> Result<Enrolled, NodeError> {
        let view = self.resolve(campaign)?;
        if view.kind != Kind::Campaign {
            return Err(NodeError::Forbidden(format!(
                "{} is a {}, not a campaign",
                view.title(),
                view.kind
            )));
        }
        let purpose = needed_purpose(&view.fields).map(|p| p.1);
        let mut members: Vec<String> = view
            .get("members")
            .map(FieldValue::as_list)
            .unwrap_or_default()
            .to_vec();
        let mut out = Enrolled {
            campaign: view.clone(),
            added: Vec::new(),
            already: Vec::new(),
            skipped: Vec::new(),
        };
        let mut lacking = Vec::new();
        for reference in people {
            let person = self.resolve(reference)?;
            if person.kind != Kind::Person {
                return Err(NodeError::Forbidden(format!(
                    "{} is a {}, not a person",
                    person.title(),
                    person.kind
                )));
            }
            let entry = (person.id, person.title());
            if members.contains(&person.id.to_string()) {
                out.already.push(entry);
                continue;
            }
            if let Some(purpose) = purpose
                && let Some(why) = self.lacks_consent(person.id, purpose)?
            {
                lacking.push(format!("{} ({why})", entry.1));
                out.skipped.push((entry.0, entry.1, why));
                continue;
            }
            members.push(person.id.to_string());
            out.added.push(entry);
        }
        if !skip && !lacking.is_empty() {
            return Err(refusal(
                view.text("channel").unwrap_or_default(),
                purpose.unwrap_or_default(),
                &lacking,
            ));
        }
        if !out.added.is_empty() {
            let set: Vec<Input> = vec![("members".into(), members.join(","))];
            out.campaign = self.edit(&view.id.to_string(), &set, &[])?;
        }
        Ok(out)
    }

    /// `rapport privacy objections`: who withdrew consent or objected, to
    /// what, and which campaigns still list them; of the records `may_see`
    /// lets through.
    pub fn objections(
        &self,
        may_see: impl Fn(&RecordView) -> bool,
    ) -> Result<Vec<Objection>, NodeError> {
        let mut by_person: BTreeMap<RecordId, Vec<RecordView>> = BTreeMap::new();
        for v in self.store().views_of_kind(Kind::Consent) {
            let v = v?;
            if v.deleted || !may_see(&v) {
                continue;
            }
            if let Some(person) = v.text("person").and_then(|p| p.parse().ok()) {
                by_person.entry(person).or_default().push(v);
            }
        }
        let mut campaigns = Vec::new();
        for c in self.store().views_of_kind(Kind::Campaign) {
            let c = c?;
            if !c.deleted && may_see(&c) {
                campaigns.push(c);
            }
        }
        let mut out = Vec::new();
        for (person, records) in by_person {
            let purposes: BTreeSet<&str> =
                records.iter().filter_map(|r| r.text("purpose")).collect();
            for purpose in purposes {
                let Some(s) = standing(&records, purpose) else {
                    continue;
                };
                if s.granted() {
                    continue;
                }
                let name = self
                    .store()
                    .view(person)?
                    .map_or_else(|| person.to_string(), |v| v.title());
                let still_in = campaigns
                    .iter()
                    .filter(|c| needed_purpose(&c.fields).map(|p| p.1) == Some(purpose))
                    .filter(|c| {
                        c.get("members")
                            .map(FieldValue::as_list)
                            .unwrap_or_default()
                            .contains(&person.to_string())
                    })
                    .map(|c| (c.id, c.title()))
                    .collect();
                out.push(Objection {
                    person,
                    name,
                    purpose: purpose.to_string(),
                    standing: s,
                    campaigns: still_in,
                });
            }
        }
        out.sort_by(|a, b| {
            b.standing
                .date
                .cmp(&a.standing.date)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(out)
    }
}

/// Why people may not join a campaign: `lacking` names them, each with
/// why.
fn refusal(channel: &str, purpose: &str, lacking: &[String]) -> NodeError {
    NodeError::Forbidden(format!(
        "campaigns by {channel} need consent to {purpose}, not given by {}; record their consent first, or enroll the others and skip them",
        lacking.join(", ")
    ))
}

/// A campaign's channel and the purpose it needs consent to, if any.
fn needed_purpose(fields: &Fields) -> Option<(&str, &'static str)> {
    let channel = fields.get("channel")?.as_text()?;
    purpose_of_channel(channel).map(|p| (channel, p))
}

#[cfg(test)]
mod tests {
    use crate::ingest::tests::node;
    use crate::repo::tests::input;
    use rapport_model::{Kind, SpaceId};

    #[test]
    fn a_campaign_takes_only_people_who_consented_to_its_channel() {
        let (_tmp, repo) = node();
        let p = SpaceId::Private;
        for name in ["Ann Lee", "Bo Chen", "Cy Diaz"] {
            repo.create(Kind::Person, p, &input(&[("name", name)]))
                .expect("person");
        }
        let consent = |person: &str, purpose: &str, status: &str, date: &str| {
            repo.create(
                Kind::Consent,
                p,
                &input(&[
                    ("person", person),
                    ("purpose", purpose),
                    ("status", status),
                    ("date", date),
                    ("source", "form"),
                ]),
            )
            .expect("consent")
        };
        consent("Ann Lee", "email", "granted", "2026-01-05");
        consent("Bo Chen", "email", "granted", "2026-01-05");
        consent("Bo Chen", "email", "withdrawn", "2026-06-01");
        consent("Cy Diaz", "phone", "granted", "2026-01-05");

        // Created with a member who withdrew: refused, nothing written.
        let refused = repo
            .create(
                Kind::Campaign,
                p,
                &input(&[
                    ("name", "Winter mailing"),
                    ("channel", "email"),
                    ("members", "Ann Lee,Bo Chen"),
                ]),
            )
            .expect_err("Bo withdrew");
        let text = refused.to_string();
        assert!(
            text.contains("Bo Chen (withdrawn on 2026-06-01)") && !text.contains("Ann"),
            "{text}"
        );
        assert!(repo.resolve("Winter mailing").is_err());

        let campaign = repo
            .create(
                Kind::Campaign,
                p,
                &input(&[
                    ("name", "Winter mailing"),
                    ("channel", "email"),
                    ("members", "Ann Lee"),
                ]),
            )
            .expect("campaign");
        let id = campaign.id.to_string();
        let all = ["Bo Chen".to_string(), "Cy Diaz".to_string()];
        assert!(
            repo.enroll(&id, &all, false).is_err(),
            "refused without --skip"
        );
        let e = repo.enroll(&id, &all, true).expect("skip");
        assert!(e.added.is_empty());
        assert_eq!(e.skipped.len(), 2);
        assert!(
            e.skipped
                .iter()
                .any(|s| s.1 == "Cy Diaz" && s.2 == "no consent recorded")
        );

        // Cy consents to e-mail: enrolled.
        consent("Cy Diaz", "email", "granted", "2026-07-01");
        let e = repo.enroll(&id, &all, true).expect("enroll");
        assert_eq!(e.added.len(), 1);
        assert_eq!(
            e.campaign.get("members").map(|m| m.as_list().len()),
            Some(2)
        );

        // Ann objects later: listed with the campaign that still has her.
        consent("Ann Lee", "email", "objected", "2026-08-01");
        let objections = repo.objections(|_| true).expect("objections");
        let ann = objections
            .iter()
            .find(|o| o.name == "Ann Lee")
            .expect("ann");
        assert_eq!(ann.standing.status, "objected");
        assert_eq!(ann.campaigns.len(), 1);
        assert!(
            objections
                .iter()
                .any(|o| o.name == "Bo Chen" && o.campaigns.is_empty())
        );
        // An edit that does not add members still goes through.
        repo.edit(&id, &input(&[("owner", "Dana")]), &[])
            .expect("edit");
    }
}
