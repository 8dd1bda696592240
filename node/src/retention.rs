//! Retention: rules that say how long records are kept ("people tagged
//! lead with no activity for 24 months"), a dry run that lists what a
//! rule would erase, and its application through the one erase mechanism
//! (`erasure`). Rules are this device's (kept in its profile): whoever
//! runs them needs the right to erase in each space; the other members
//! receive the erasures, not the rules.

use rapport_model::{Kind, RecordId, RecordView};

use crate::erasure::ErasureReport;
use crate::repo::Input;
use crate::{NodeError, Repo};

/// One retention rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetentionRule {
    pub name: String,
    pub kind: Kind,
    /// `(field, value)` filters as `rapport list --where` takes them.
    #[serde(default)]
    pub filters: Vec<Input>,
    /// A record goes when neither it nor an activity about it changed or
    /// took place for this many months.
    pub inactive_months: u32,
}

/// A record a rule would erase.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Candidate {
    pub id: RecordId,
    pub title: String,
    /// When it or an activity about it last changed or took place
    /// (seconds since the Unix epoch).
    pub last_active: i64,
}

/// What a rule would erase, or erased.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleRun {
    pub rule: RetentionRule,
    pub candidates: Vec<Candidate>,
    /// Empty for a dry run.
    pub erasures: Vec<ErasureReport>,
}

const MONTH_SECONDS: i64 = 30 * 24 * 3600 + 10 * 3600 + 30 * 60;

impl Repo {
    /// The retention rules of this device.
    pub fn retention_rules(&self) -> Vec<RetentionRule> {
        self.profile().retention
    }

    /// Adds rule `rule`, or replaces the one of its name. Its filters are
    /// checked now, so that a rule that cannot run is never kept.
    pub fn set_retention_rule(&self, rule: RetentionRule) -> Result<(), NodeError> {
        if rule.name.trim().is_empty() {
            return Err(NodeError::Forbidden("a retention rule needs a name".into()));
        }
        if rule.inactive_months == 0 {
            return Err(NodeError::Forbidden(
                "a retention rule keeps records at least a month".into(),
            ));
        }
        self.list(rule.kind, &rule.filters, false)?;
        let mut profile = self.profile_mut();
        let mut next = profile.clone();
        next.retention.retain(|r| r.name != rule.name);
        next.retention.push(rule);
        crate::datadir::save_profile(self.dir(), &next)?;
        *profile = next;
        Ok(())
    }

    /// Removes rule `name`.
    pub fn remove_retention_rule(&self, name: &str) -> Result<(), NodeError> {
        let mut profile = self.profile_mut();
        let mut next = profile.clone();
        let before = next.retention.len();
        next.retention.retain(|r| r.name != name);
        if next.retention.len() == before {
            return Err(NodeError::Missing(format!(
                "no retention rule named `{name}`"
            )));
        }
        crate::datadir::save_profile(self.dir(), &next)?;
        *profile = next;
        Ok(())
    }

    /// Runs rule `name` (every rule if `None`): lists what it would erase,
    /// and with `apply`, erases it (`reason` is required then), in the
    /// spaces where this device may erase. `may_see` limits the records.
    pub fn run_retention(
        &self,
        name: Option<&str>,
        apply: Option<&str>,
        may_see: impl Fn(&RecordView) -> bool,
    ) -> Result<Vec<RuleRun>, NodeError> {
        let rules: Vec<RetentionRule> = self
            .retention_rules()
            .into_iter()
            .filter(|r| name.is_none_or(|n| n == r.name))
            .collect();
        if let Some(n) = name
            && rules.is_empty()
        {
            return Err(NodeError::Missing(format!("no retention rule named `{n}`")));
        }
        let now = self.now().as_second();
        let mut runs = Vec::new();
        for rule in rules {
            let cutoff = now - i64::from(rule.inactive_months) * MONTH_SECONDS;
            let mut candidates = Vec::new();
            let mut records = Vec::new();
            for v in self.list(rule.kind, &rule.filters, false)? {
                if !may_see(&v) {
                    continue;
                }
                let last = self.last_active(&v)?;
                if last < cutoff {
                    candidates.push(Candidate {
                        id: v.id,
                        title: v.title(),
                        last_active: last,
                    });
                    records.push(v);
                }
            }
            let mut erasures = Vec::new();
            if let Some(reason) = apply
                && !records.is_empty()
            {
                let reason = format!("retention rule {}: {reason}", rule.name);
                erasures = self.erase_records(&records, false, &reason)?;
            }
            runs.push(RuleRun {
                rule,
                candidates,
                erasures,
            });
        }
        Ok(runs)
    }

    /// When `v` or an activity about it last changed or took place.
    fn last_active(&self, v: &RecordView) -> Result<i64, NodeError> {
        let mut last = v.updated;
        for (source, _) in self.store().backlinks(v.id)? {
            if let Some(a) = self.store().view(source)?
                && a.kind == Kind::Activity
                && !a.deleted
            {
                let when = a
                    .text("when")
                    .and_then(|w| w.parse::<jiff::Timestamp>().ok())
                    .map_or(a.updated, |t| t.as_second());
                last = last.max(when).max(a.updated);
            }
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::tests::clocked_node;
    use crate::repo::tests::input;
    use jiff::Timestamp;
    use rapport_model::SpaceId;

    #[test]
    fn a_rule_lists_what_it_would_erase_then_erases_it() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let (clock, _tmp, repo) = clocked_node(start);
        let p = SpaceId::Private;
        for name in ["Old Lead", "Busy Lead", "Old Customer"] {
            let tag = if name.ends_with("Lead") {
                "lead"
            } else {
                "customer"
            };
            repo.create(Kind::Person, p, &input(&[("name", name), ("tags", tag)]))
                .expect("person");
        }
        // Busy Lead has a call in May 2028; the rule runs in June 2028,
        // 29 months after every record was last edited.
        repo.create(
            Kind::Activity,
            p,
            &input(&[
                ("type", "call"),
                ("subject", "Catch-up"),
                ("about", "Busy Lead"),
                ("when", "2028-05-01T10:00:00Z"),
            ]),
        )
        .expect("call");
        let rule = RetentionRule {
            name: "leads".into(),
            kind: Kind::Person,
            filters: vec![("tags".into(), "lead".into())],
            inactive_months: 24,
        };
        repo.set_retention_rule(rule.clone()).expect("rule");
        assert_eq!(repo.retention_rules(), vec![rule]);
        let bad = RetentionRule {
            name: "bad".into(),
            kind: Kind::Person,
            filters: vec![("shoe_size".into(), "9".into())],
            inactive_months: 24,
        };
        assert!(repo.set_retention_rule(bad).is_err(), "an unknown field");

        *clock.0.lock().expect("clock") = "2028-06-01T00:00:00Z".parse().expect("time");
        let later = &repo;
        let dry = later.run_retention(None, None, |_| true).expect("dry run");
        let names: Vec<&str> = dry[0].candidates.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(names, ["Old Lead"]);
        assert!(
            later.resolve("Old Lead").is_ok(),
            "a dry run erases nothing"
        );
        let run = later
            .run_retention(Some("leads"), Some("24 months without activity"), |_| true)
            .expect("apply");
        assert_eq!(run[0].erasures.len(), 1);
        assert!(later.resolve("Old Lead").is_err());
        assert!(later.resolve("Busy Lead").is_ok() && later.resolve("Old Customer").is_ok());
        assert!(later.run_retention(Some("nope"), None, |_| true).is_err());
    }
}
