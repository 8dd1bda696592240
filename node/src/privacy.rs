//! Data protection requests. A subject access or portability request
//! (GDPR articles 15 and 20): everything this node holds about a person,
//! as files a person can read and another program can import.

use rapport_model::{Kind, RecordView};

use crate::timeline::Entry;
use crate::{NodeError, Repo};

/// One file of an export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportFile {
    /// Its name in the export's directory: `person.json`, ...
    pub name: String,
    /// What it holds, in a sentence (the README says it too).
    pub about: String,
    pub text: String,
}

/// What this node holds about a person.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PersonExport {
    pub person: String,
    pub files: Vec<ExportFile>,
}

impl Repo {
    /// Everything held about `person`: the record, the records that refer
    /// to it (activities, deals, tickets, campaigns, of every space this
    /// node holds that `may_see` lets through), its company, its history
    /// (who changed what, when), and a vCard; with a README saying what
    /// each file is. Deleted records that refer to it are in too: they are
    /// held, so they are the person's to see.
    pub fn privacy_export(
        &self,
        person: &RecordView,
        may_see: impl Fn(&RecordView) -> bool,
    ) -> Result<PersonExport, NodeError> {
        if person.kind != Kind::Person {
            return Err(NodeError::Forbidden(format!(
                "{} is a {}: an export is of a person",
                person.title(),
                person.kind
            )));
        }
        let mut related: Vec<serde_json::Value> = Vec::new();
        let mut kinds: Vec<String> = Vec::new();
        for (field, v) in self.related(person.id)? {
            if !may_see(&v) {
                continue;
            }
            let mut o = v.to_json();
            if let Some(map) = o.as_object_mut() {
                map.insert("refers_by".into(), field.into());
            }
            if !kinds.contains(&v.kind.to_string()) {
                kinds.push(v.kind.to_string());
            }
            related.push(o);
        }
        let company = person
            .text("company")
            .and_then(|c| c.parse().ok())
            .map(|id| self.view(id))
            .transpose()?
            .flatten()
            .filter(|c| may_see(c));
        let history: Vec<Entry> = self.timeline(person, &may_see)?;
        let json = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
        let mut cards = vec![person.clone()];
        cards.extend(company.clone());
        let files = vec![
            ExportFile {
                name: "person.json".into(),
                about: "the person's record: every field, as stored".into(),
                text: json(&person.to_json()),
            },
            ExportFile {
                name: "related.json".into(),
                about: format!(
                    "the records that refer to the person ({}), each with `refers_by`, the field that does",
                    if kinds.is_empty() {
                        "none".to_string()
                    } else {
                        kinds.join(", ")
                    }
                ),
                text: json(&serde_json::Value::Array(related)),
            },
            ExportFile {
                name: "company.json".into(),
                about: "the company the person works for, if one is recorded".into(),
                text: json(&company.map_or(serde_json::Value::Null, |c| c.to_json())),
            },
            ExportFile {
                name: "history.json".into(),
                about: "the person's history, newest first: each change (when, by whom, the fields before and after) and the activities about them".into(),
                text: serde_json::to_string_pretty(&history).unwrap_or_default(),
            },
            ExportFile {
                name: "person.vcf".into(),
                about: "the person as a vCard 4.0, for an address book".into(),
                text: rapport_exchange::people_vcard(&cards),
            },
        ];
        let mut readme = format!(
            "# What Rapport holds about {}\n\nExported on {} from one Rapport node: what this device holds.\n\
             Other members of the spaces it shares may hold the same records.\n\n",
            person.title(),
            rapport_model::value::format_instant(self.now()),
        );
        for f in &files {
            readme.push_str(&format!("- `{}`: {}.\n", f.name, f.about));
        }
        readme.push_str(
            "\nTimes are UTC (RFC 3339) or seconds since 1970. Records refer to each other by id.\n",
        );
        let mut all = vec![ExportFile {
            name: "README.md".into(),
            about: "this file".into(),
            text: readme,
        }];
        all.extend(files);
        Ok(PersonExport {
            person: person.id.to_string(),
            files: all,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::tests::input;
    use rapport_model::SpaceId;

    #[test]
    fn an_export_has_everything_that_refers_to_the_person() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repo::open(&tmp.path().join("data"), crate::OpenMode::Create).expect("open");
        let add = |kind, pairs: &[(&str, &str)]| {
            repo.create(kind, SpaceId::Private, &input(pairs))
                .unwrap_or_else(|e| panic!("{kind}: {e}"))
        };
        add(Kind::Company, &[("name", "Acme")]);
        let ann = add(
            Kind::Person,
            &[
                ("name", "Ann Baker"),
                ("emails", "ann@acme.example"),
                ("phones", "+44 20 7946 0000"),
                ("company", "Acme"),
            ],
        );
        repo.edit(&ann.id.to_string(), &input(&[("title", "CTO")]), &[])
            .expect("edit");
        add(
            Kind::Activity,
            &[
                ("type", "call"),
                ("subject", "Pricing call"),
                ("about", "Ann Baker"),
            ],
        );
        add(
            Kind::Deal,
            &[
                ("title", "Rollout"),
                ("company", "Acme"),
                ("contacts", "Ann Baker"),
            ],
        );
        add(
            Kind::Ticket,
            &[("title", "Login fails"), ("person", "Ann Baker")],
        );
        add(
            Kind::Campaign,
            &[("name", "Spring webinar"), ("members", "Ann Baker")],
        );
        add(Kind::Person, &[("name", "Someone Else")]);
        let ann = repo.view(ann.id).expect("read").expect("held");
        let export = repo.privacy_export(&ann, |_| true).expect("export");
        let file = |name: &str| {
            export
                .files
                .iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("no {name}"))
                .text
                .clone()
        };
        let names: Vec<&str> = export.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "README.md",
                "person.json",
                "related.json",
                "company.json",
                "history.json",
                "person.vcf"
            ]
        );
        assert!(file("person.json").contains("ann@acme.example"));
        let related = file("related.json");
        for title in ["Pricing call", "Rollout", "Login fails", "Spring webinar"] {
            assert!(related.contains(title), "{title}: {related}");
        }
        assert!(!related.contains("Someone Else"));
        assert!(file("company.json").contains("Acme"));
        let history = file("history.json");
        assert!(
            history.contains("CTO") && history.contains("created"),
            "{history}"
        );
        assert!(file("person.vcf").contains("FN:Ann Baker"));
        assert!(file("README.md").contains("`history.json`"));
        // Only what the caller may see: a token of another space sees no
        // private record.
        let none = repo
            .privacy_export(&ann, |v| v.space != SpaceId::Private)
            .expect("export");
        let related: serde_json::Value = serde_json::from_str(&none.files[2].text).expect("json");
        assert_eq!(related, serde_json::json!([]));
        // Only a person.
        let acme = repo.resolve("Acme").expect("acme");
        assert!(repo.privacy_export(&acme, |_| true).is_err());
    }
}
