//! Custom fields: a space's schema as data.
//!
//! A space's admins shape its records with signed statements
//! ([`SchemaChange`]), kept in the space document next to the membership
//! statements (see `docs/PROTOCOL.md`, "Schema"); the private space keeps
//! its own in the profile. A node folds the statements it accepted, in the
//! causal order every node computes alike, into a [`Schema`]: the built-in
//! fields plus the custom ones, with labels, hidden and retired fields.
//! The same statements in the same order give the same schema everywhere,
//! which is what makes concurrent edits converge.
//!
//! Rules of the fold (argued in `docs/PROTOCOL.md`):
//!
//! - A field's id is its name, which never changes: two admins who add
//!   `serial` to the same kind concurrently mean the same field. If they
//!   gave it different types, the first statement in the order stands and
//!   the other is listed among [`Schema::notes`]; values written for it
//!   stay in the records and show as not fitting.
//! - A type never changes. To change one, add a new field and retire the
//!   old one: the values stay readable there.
//! - Labels, retiring and restoring are last-writer-wins in the order.
//! - A retired choice refuses new input; records that hold it keep it and
//!   show it as retired. Adding it again restores it.
//! - A renamed choice keeps its place; a concurrent second rename of it
//!   becomes an alias of the first, so values of either show as renamed.
//! - A built-in field can be relabelled, and hidden unless the kind needs
//!   it (a required field or the title); its values are never touched.
//!
//! Reading a record is schema-free (`crate::doc`), so a record carries
//! values of fields its node does not know yet; they show once the
//! statement that defines them arrives.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::schema::{FieldDef, FieldType, Kind};

/// What a custom field holds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CustomType {
    Text,
    LongText,
    Number,
    Money,
    Date,
    Datetime,
    YesNo,
    Choice,
    MultiChoice,
    Email,
    Phone,
    Url,
    Percent,
    Reference,
}

impl CustomType {
    pub const ALL: [CustomType; 14] = [
        CustomType::Text,
        CustomType::LongText,
        CustomType::Number,
        CustomType::Money,
        CustomType::Date,
        CustomType::Datetime,
        CustomType::YesNo,
        CustomType::Choice,
        CustomType::MultiChoice,
        CustomType::Email,
        CustomType::Phone,
        CustomType::Url,
        CustomType::Percent,
        CustomType::Reference,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CustomType::Text => "text",
            CustomType::LongText => "long_text",
            CustomType::Number => "number",
            CustomType::Money => "money",
            CustomType::Date => "date",
            CustomType::Datetime => "datetime",
            CustomType::YesNo => "yes_no",
            CustomType::Choice => "choice",
            CustomType::MultiChoice => "multi_choice",
            CustomType::Email => "email",
            CustomType::Phone => "phone",
            CustomType::Url => "url",
            CustomType::Percent => "percent",
            CustomType::Reference => "reference",
        }
    }

    pub fn has_choices(self) -> bool {
        matches!(self, CustomType::Choice | CustomType::MultiChoice)
    }
}

impl fmt::Display for CustomType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CustomType {
    type Err = String;

    /// Accepts the names above in any case, with `-` for `_`, and a few
    /// names other CRMs use (`textarea`, `boolean`, `checkbox`, `currency`,
    /// `picklist`, `multiselect`, `lookup`...).
    fn from_str(s: &str) -> Result<Self, String> {
        let name = s.trim().to_ascii_lowercase().replace('-', "_");
        let alias = match name.as_str() {
            "longtext" | "textarea" | "multiline" => Some(CustomType::LongText),
            "decimal" | "integer" | "int" => Some(CustomType::Number),
            "currency" | "amount" => Some(CustomType::Money),
            "date_time" | "timestamp" => Some(CustomType::Datetime),
            "yesno" | "boolean" | "bool" | "checkbox" | "flag" => Some(CustomType::YesNo),
            "select" | "picklist" | "enum" => Some(CustomType::Choice),
            "multichoice" | "multiselect" | "multi_select" => Some(CustomType::MultiChoice),
            "ref" | "lookup" | "relation" => Some(CustomType::Reference),
            _ => None,
        };
        alias
            .or_else(|| CustomType::ALL.into_iter().find(|t| t.as_str() == name))
            .ok_or_else(|| {
                format!(
                    "unknown field type `{s}`: use one of {}",
                    CustomType::ALL.map(CustomType::as_str).join(", ")
                )
            })
    }
}

/// One schema statement: what an admin changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SchemaChange {
    AddField {
        kind: Kind,
        name: String,
        #[serde(rename = "type")]
        ty: CustomType,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        label: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        help: String,
        #[serde(default, skip_serializing_if = "is_false")]
        required: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        choices: Vec<String>,
        /// The kind a reference points at.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<Kind>,
    },
    Relabel {
        kind: Kind,
        name: String,
        label: String,
    },
    /// A custom field retired, or a built-in one hidden.
    Retire {
        kind: Kind,
        name: String,
    },
    Restore {
        kind: Kind,
        name: String,
    },
    /// A choice added to a choice field, or a retired one restored.
    AddChoice {
        kind: Kind,
        name: String,
        choice: String,
    },
    RetireChoice {
        kind: Kind,
        name: String,
        choice: String,
    },
    /// A choice renamed in place. Records holding the old word are
    /// rewritten by the admin's node (signed edits); one that still holds
    /// it is shown as renamed, never changed behind its author's back.
    RenameChoice {
        kind: Kind,
        name: String,
        choice: String,
        to: String,
    },
    /// A kind of record of the space's own (contract, project, site visit).
    AddKind {
        kind: Kind,
        /// What lists and navigation call many of them [default: name + s].
        #[serde(default, skip_serializing_if = "String::is_empty")]
        plural: String,
        /// What the title field (`name`) is called [default: Name].
        #[serde(default, skip_serializing_if = "String::is_empty")]
        title_label: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        help: String,
    },
    /// A custom kind retired: gone from navigation and forms, its records
    /// kept (and shown, and restorable with the kind).
    RetireKind {
        kind: Kind,
    },
    RestoreKind {
        kind: Kind,
    },
    /// A deal pipeline added, or its stages replaced: each stage with its
    /// probability and whether it means won or lost.
    SetPipeline {
        name: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        label: String,
        stages: Vec<StageDef>,
    },
    /// A pipeline retired: no new deals in it; those there are keep it.
    RetirePipeline {
        name: String,
    },
}

/// One stage of a deal pipeline.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StageDef {
    pub name: String,
    /// The chance, in percent, a deal in this stage is won.
    pub probability: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// What a closing stage means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Won,
    Lost,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Won => "won",
            Outcome::Lost => "lost",
        }
    }
}

/// A deal pipeline as the statements so far define it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pipeline {
    pub name: String,
    pub label: String,
    pub stages: Vec<StageDef>,
    pub retired: bool,
}

/// The pipeline every space has, and every deal without a `pipeline` is
/// in: the built-in stages (`schema::DEAL_STAGES`). It keeps them; admins
/// add pipelines of their own.
pub const SALES: &str = "sales";

impl Pipeline {
    pub fn sales() -> Pipeline {
        Pipeline {
            name: SALES.into(),
            label: "Sales".into(),
            stages: crate::schema::DEAL_STAGES
                .iter()
                .map(|s| StageDef {
                    name: s.to_string(),
                    probability: crate::schema::stage_probability(s).unwrap_or(0),
                    outcome: match *s {
                        "won" => Some(Outcome::Won),
                        "lost" => Some(Outcome::Lost),
                        _ => None,
                    },
                })
                .collect(),
            retired: false,
        }
    }

    pub fn stage(&self, name: &str) -> Option<&StageDef> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// What lists and the board call it.
    pub fn title(&self) -> String {
        if self.label.is_empty() {
            self.name.replace('_', " ")
        } else {
            self.label.clone()
        }
    }

    /// Its title, saying so when it is retired (its deals stay, shown).
    pub fn shown_title(&self) -> String {
        if self.retired {
            format!("{} (retired)", self.title())
        } else {
            self.title()
        }
    }
}

/// Stages as [`parse_stages`] reads them: `due:60, renewed:100:won`.
pub fn format_stages(stages: &[StageDef]) -> String {
    stages
        .iter()
        .map(|s| match s.outcome {
            Some(o) => format!("{}:{}:{}", s.name, s.probability, o.as_str()),
            None => format!("{}:{}", s.name, s.probability),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Stages as users type them: `due:60, quoted:85, renewed:100:won,
/// churned:0:lost` (NAME:PROBABILITY, and `:won` or `:lost` for a stage
/// that closes a deal).
pub fn parse_stages(spec: &str) -> Result<Vec<StageDef>, String> {
    spec.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let parts: Vec<&str> = item.split(':').map(str::trim).collect();
            let bad = || {
                format!(
                    "`{item}` is not a stage: write NAME:PROBABILITY, and :won or :lost for a \
                     closing stage (e.g. renewed:100:won)"
                )
            };
            let (name, probability, outcome) = match parts.as_slice() {
                [name, p] => (name, p, None),
                [name, p, o] => (name, p, Some(o.to_ascii_lowercase())),
                _ => return Err(bad()),
            };
            let probability: i64 = probability
                .trim_end_matches('%')
                .trim()
                .parse()
                .map_err(|_| bad())?;
            let outcome = match outcome.as_deref() {
                None => None,
                Some("won") => Some(Outcome::Won),
                Some("lost") => Some(Outcome::Lost),
                Some(_) => return Err(bad()),
            };
            Ok(StageDef {
                name: name.to_lowercase(),
                probability,
                outcome,
            })
        })
        .collect()
}

const MAX_STAGES: usize = 30;
/// Pipelines a space may have, retired ones included (the built-in one aside).
pub const MAX_PIPELINES: usize = 20;

fn check_pipeline(name: &str, label: &str, stages: &[StageDef]) -> Result<(), String> {
    check_name(name).map_err(|_| {
        format!(
            "`{name}` is not a pipeline name: use up to 40 lower-case letters, digits and _ \
             (e.g. renewals)"
        )
    })?;
    if name == SALES {
        return Err(
            "the built-in `sales` pipeline keeps its stages: add a pipeline of \
                    your own (e.g. renewals)"
                .into(),
        );
    }
    check_text("label", label, 80)?;
    if stages.is_empty() || stages.len() > MAX_STAGES {
        return Err(format!("a pipeline has 1 to {MAX_STAGES} stages"));
    }
    let mut seen = HashSet::new();
    for s in stages {
        check_choice(&s.name)?;
        if !seen.insert(s.name.as_str()) {
            return Err(format!("the stage `{}` is there twice", s.name));
        }
        if !(0..=100).contains(&s.probability) {
            return Err(format!(
                "the stage `{}` has a probability of {}: use 0 to 100",
                s.name, s.probability
            ));
        }
    }
    if stages.iter().all(|s| s.outcome.is_some()) {
        return Err("a pipeline needs a stage that is neither won nor lost".into());
    }
    Ok(())
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl SchemaChange {
    pub fn kind(&self) -> Kind {
        match self {
            SchemaChange::AddField { kind, .. }
            | SchemaChange::Relabel { kind, .. }
            | SchemaChange::Retire { kind, .. }
            | SchemaChange::Restore { kind, .. }
            | SchemaChange::AddChoice { kind, .. }
            | SchemaChange::RetireChoice { kind, .. }
            | SchemaChange::RenameChoice { kind, .. }
            | SchemaChange::AddKind { kind, .. }
            | SchemaChange::RetireKind { kind }
            | SchemaChange::RestoreKind { kind } => *kind,
            SchemaChange::SetPipeline { .. } | SchemaChange::RetirePipeline { .. } => Kind::Deal,
        }
    }

    /// Whether the statement is about a deal pipeline.
    pub fn is_about_pipeline(&self) -> bool {
        matches!(
            self,
            SchemaChange::SetPipeline { .. } | SchemaChange::RetirePipeline { .. }
        )
    }

    /// Whether the statement is about a kind rather than one of its fields.
    pub fn is_about_kind(&self) -> bool {
        matches!(
            self,
            SchemaChange::AddKind { .. }
                | SchemaChange::RetireKind { .. }
                | SchemaChange::RestoreKind { .. }
        )
    }

    /// The field the statement is about (empty for a kind's statements).
    pub fn field(&self) -> &str {
        match self {
            SchemaChange::AddKind { .. }
            | SchemaChange::RetireKind { .. }
            | SchemaChange::RestoreKind { .. }
            | SchemaChange::SetPipeline { .. }
            | SchemaChange::RetirePipeline { .. } => "",
            SchemaChange::AddField { name, .. }
            | SchemaChange::Relabel { name, .. }
            | SchemaChange::Retire { name, .. }
            | SchemaChange::Restore { name, .. }
            | SchemaChange::AddChoice { name, .. }
            | SchemaChange::RetireChoice { name, .. }
            | SchemaChange::RenameChoice { name, .. } => name,
        }
    }

    /// The statement's own checks, which need no schema: names, sizes,
    /// choices. A statement that fails them is refused by every node.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            SchemaChange::SetPipeline {
                name,
                label,
                stages,
            } => return check_pipeline(name, label, stages),
            SchemaChange::RetirePipeline { name } if name == SALES => {
                return Err("the built-in `sales` pipeline cannot be retired".into());
            }
            SchemaChange::RetirePipeline { name } => return check_name(name),
            _ => {}
        }
        if self.is_about_kind() {
            let kind = self.kind();
            if !kind.is_custom() {
                return Err(format!(
                    "{kind} is a built-in kind: its fields can be added, relabelled or hidden"
                ));
            }
            if let SchemaChange::AddKind {
                plural,
                title_label,
                help,
                ..
            } = self
            {
                check_text("plural", plural, 40)?;
                check_text("title label", title_label, 80)?;
                check_text("help", help, 300)?;
            }
            return Ok(());
        }
        check_name(self.field())?;
        match self {
            SchemaChange::AddField {
                kind,
                name,
                ty,
                label,
                help,
                default,
                choices,
                target,
                ..
            } => {
                if kind.field(name).is_some() || RESERVED.contains(&name.as_str()) {
                    return Err(format!("`{name}` is a built-in field of {kind}"));
                }
                check_text("label", label, 80)?;
                check_text("help", help, 300)?;
                if let Some(d) = default {
                    check_text("default", d, 300)?;
                }
                if ty.has_choices() {
                    if choices.is_empty() {
                        return Err(format!(
                            "a {ty} field needs its choices, e.g. --choices gold,silver,bronze"
                        ));
                    }
                    if choices.len() > MAX_CHOICES {
                        return Err(format!("at most {MAX_CHOICES} choices"));
                    }
                    for c in choices {
                        check_choice(c)?;
                    }
                } else if !choices.is_empty() {
                    return Err(format!("only choice fields have choices; this is {ty}"));
                }
                if *ty == CustomType::Reference && default.is_some() {
                    return Err("a reference has no default".into());
                }
                if (*ty == CustomType::Reference) != target.is_some() {
                    return Err(if target.is_some() {
                        format!("only a reference has a target kind; this is {ty}")
                    } else {
                        "a reference needs the kind it points at, e.g. --to company".to_string()
                    });
                }
                Ok(())
            }
            SchemaChange::Relabel { label, .. } => {
                if label.trim().is_empty() {
                    return Err("a label cannot be empty".into());
                }
                check_text("label", label, 80)
            }
            SchemaChange::AddChoice { choice, .. } | SchemaChange::RetireChoice { choice, .. } => {
                check_choice(choice)
            }
            SchemaChange::RenameChoice { choice, to, .. } => {
                check_choice(choice)?;
                check_choice(to)?;
                if choice == to {
                    return Err(format!("`{choice}` is already called so"));
                }
                Ok(())
            }
            SchemaChange::Retire { .. }
            | SchemaChange::Restore { .. }
            | SchemaChange::AddKind { .. }
            | SchemaChange::RetireKind { .. }
            | SchemaChange::RestoreKind { .. }
            | SchemaChange::SetPipeline { .. }
            | SchemaChange::RetirePipeline { .. } => Ok(()),
        }
    }

    /// One line for logs and audits: "add number field `seats` to company".
    pub fn describe(&self) -> String {
        match self {
            SchemaChange::AddField { kind, name, ty, .. } => {
                format!("add {ty} field `{name}` to {kind}")
            }
            SchemaChange::Relabel { kind, name, label } => {
                format!("relabel {kind} field `{name}` as \"{label}\"")
            }
            SchemaChange::Retire { kind, name } => format!("retire {kind} field `{name}`"),
            SchemaChange::Restore { kind, name } => format!("restore {kind} field `{name}`"),
            SchemaChange::AddChoice { kind, name, choice } => {
                format!("add choice `{choice}` to {kind} field `{name}`")
            }
            SchemaChange::RetireChoice { kind, name, choice } => {
                format!("retire choice `{choice}` of {kind} field `{name}`")
            }
            SchemaChange::RenameChoice {
                kind,
                name,
                choice,
                to,
            } => format!("rename choice `{choice}` of {kind} field `{name}` to `{to}`"),
            SchemaChange::AddKind { kind, .. } => format!("add kind `{kind}`"),
            SchemaChange::RetireKind { kind } => format!("retire kind `{kind}`"),
            SchemaChange::RestoreKind { kind } => format!("restore kind `{kind}`"),
            SchemaChange::SetPipeline { name, stages, .. } => {
                let stages: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
                format!("set pipeline `{name}`: {}", stages.join(" → "))
            }
            SchemaChange::RetirePipeline { name } => format!("retire pipeline `{name}`"),
        }
    }
}

/// Names no custom field may take: what a record's JSON and the filters
/// already use.
const RESERVED: &[&str] = &[
    "id",
    "kind",
    "space",
    "updated",
    "created",
    "deleted",
    "merged",
    "merged_into",
    "conflicts",
    "title",
    // Columns an import routes elsewhere (names split, a company by domain,
    // a meeting's attendees by e-mail): a custom field so named would never
    // be filled from a file.
    "first_name",
    "middle_name",
    "last_name",
    "company_domain",
    "attendees",
];
/// The largest statement, as JSON, a node accepts (a field with 100
/// choices of 40 bytes, its label and help fit four times over).
pub const MAX_STATEMENT_BYTES: usize = 16 * 1024;
/// Custom fields a kind may have in one space, retired ones included.
pub const MAX_FIELDS: usize = 200;
/// Custom kinds one space may define, retired ones included.
pub const MAX_KINDS: usize = 50;
const MAX_CHOICES: usize = 100;

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a field name: use up to 40 lower-case letters, digits and _, \
             starting with a letter (e.g. contract_end)"
        ))
    }
}

fn check_text(what: &str, s: &str, max: usize) -> Result<(), String> {
    if s.chars().count() > max || s.chars().any(char::is_control) {
        Err(format!(
            "the {what} must be one line of at most {max} characters"
        ))
    } else {
        Ok(())
    }
}

fn check_choice(c: &str) -> Result<(), String> {
    let ok = !c.is_empty()
        && c.len() <= 40
        && c == c.trim()
        && c.chars().all(|ch| {
            (ch.is_alphanumeric() && !ch.is_uppercase())
                || matches!(ch, ' ' | '_' | '-' | '.' | '/' | '&' | '+' | '\'')
        })
        && c.chars().next().is_some_and(char::is_alphanumeric);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{c}` is not a choice: use up to 40 lower-case letters, digits, spaces, - and _"
        ))
    }
}

/// A statement as accepted, with who made it and when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SchemaEntry {
    /// Hex of the admin device that signed it.
    pub by: String,
    /// Seconds since the Unix epoch, as its author claims.
    pub at: i64,
    #[serde(flatten)]
    pub change: SchemaChange,
}

/// A custom field as the statements so far define it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CustomField {
    pub kind: Kind,
    pub name: String,
    #[serde(rename = "type")]
    pub ty: CustomType,
    pub label: String,
    pub help: String,
    pub required: bool,
    pub default: Option<String>,
    /// Every choice ever added, in order, with whether it is retired.
    pub choices: Vec<(String, bool)>,
    /// Choices renamed, `(old, new)`, oldest first.
    #[serde(default)]
    pub renamed: Vec<(String, String)>,
    pub target: Option<Kind>,
    pub retired: bool,
    /// Hex of the admin device that added it.
    pub added_by: String,
    pub added_at: i64,
}

impl CustomField {
    /// What a renamed choice is called now (following every rename).
    pub fn renamed_to(&self, old: &str) -> Option<&str> {
        let mut now: Option<&str> = None;
        for (from, to) in &self.renamed {
            if now.unwrap_or(old) == from {
                now = Some(to);
            }
        }
        now
    }

    /// The choices records may keep but new input may not use.
    pub fn retired_choices(&self) -> Vec<String> {
        self.choices
            .iter()
            .filter(|(_, retired)| *retired)
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// The choices new input may use.
    pub fn active_choices(&self) -> impl Iterator<Item = &str> {
        self.choices
            .iter()
            .filter(|(_, retired)| !retired)
            .map(|(c, _)| c.as_str())
    }

    /// The field as input and forms take it (its active choices only).
    pub fn def(&self) -> &'static FieldDef {
        let choices = || intern_list(self.active_choices().map(intern).collect());
        let ty = match self.ty {
            CustomType::Text => FieldType::Text,
            CustomType::LongText => FieldType::LongText,
            CustomType::Number => FieldType::Number,
            CustomType::Money => FieldType::Money,
            CustomType::Date => FieldType::Date,
            CustomType::Datetime => FieldType::DateTime,
            CustomType::YesNo => FieldType::Flag,
            CustomType::Choice => FieldType::Choice(choices()),
            CustomType::MultiChoice => FieldType::Choices(choices()),
            CustomType::Email => FieldType::Email,
            CustomType::Phone => FieldType::Phone,
            CustomType::Url => FieldType::Url,
            CustomType::Percent => FieldType::Percent,
            CustomType::Reference => FieldType::Ref(self.target.map_or(&[], Kind::only)),
        };
        intern_def(FieldDef {
            name: intern(&self.name),
            label: intern(&self.label),
            custom: true,
            ty,
            required: self.required,
            default: self.default.as_deref().map(intern),
            help: intern(&self.help),
        })
    }
}

/// A custom kind as the statements so far define it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CustomKindDef {
    pub kind: Kind,
    pub plural: String,
    pub help: String,
    pub retired: bool,
    /// Hex of the admin device that added it.
    pub added_by: String,
    pub added_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct KindSchema {
    /// Set for a custom kind the space defines.
    defined: Option<CustomKindDef>,
    /// Built-in choice fields whose choices the admins changed, each as
    /// the choices of a custom field (see [`extensible`]).
    extended: BTreeMap<String, CustomField>,
    /// In the order they were added.
    custom: Vec<CustomField>,
    /// Built-in fields relabelled.
    labels: BTreeMap<String, String>,
    /// Built-in fields hidden.
    hidden: BTreeSet<String>,
}

/// A space's schema: the built-in kinds with what its admins changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    kinds: BTreeMap<Kind, KindSchema>,
    /// The admins' pipelines, in the order they were first set.
    pipelines: Vec<Pipeline>,
    /// Statements that took no effect, and why ("`seats` was added twice
    /// with different types; the first stands").
    pub notes: Vec<String>,
}

impl Schema {
    /// Folds accepted statements, in the order the rules put them.
    pub fn fold<'a>(entries: impl IntoIterator<Item = &'a SchemaEntry>) -> Schema {
        let mut schema = Schema::default();
        for e in entries {
            if let Err(why) = schema.apply(e) {
                schema.notes.push(format!(
                    "{} (by {}): {why}",
                    e.change.describe(),
                    short(&e.by)
                ));
            }
        }
        schema
    }

    /// Whether `change` would take effect on this schema, and if not why:
    /// what a node checks before it signs a statement.
    pub fn check(&self, change: &SchemaChange) -> Result<(), String> {
        // Folding, a rename of a choice renamed meanwhile by another admin
        // becomes an alias (see `apply`); asked here, it is a mistake.
        if let SchemaChange::RenameChoice {
            kind, name, choice, ..
        } = change
            && let Some(f) = self
                .extended_choices(*kind, name)
                .or_else(|| self.custom_field(*kind, name))
            && !f.choices.iter().any(|(c, _)| c == choice)
            && let Some(now) = f.renamed_to(choice)
        {
            return Err(format!("`{choice}` was renamed `{now}` already"));
        }
        let mut copy = self.clone();
        copy.apply(&SchemaEntry {
            by: String::new(),
            at: 0,
            change: change.clone(),
        })
    }

    fn apply(&mut self, entry: &SchemaEntry) -> Result<(), String> {
        let change = &entry.change;
        change.validate()?;
        let kind = change.kind();
        if change.is_about_kind() {
            return self.apply_to_kind(entry);
        }
        if change.is_about_pipeline() {
            return self.apply_to_pipeline(change);
        }
        if kind.is_custom() && self.kind(kind).is_none() {
            return Err(no_such_kind(kind));
        }
        if let SchemaChange::AddField {
            target: Some(target),
            ..
        } = change
            && target.is_custom()
            && self.kind(*target).is_none()
        {
            return Err(no_such_kind(*target));
        }
        let name = change.field();
        let builtin = kind.field(name);
        let ks = self.kinds.entry(kind).or_default();
        let choice_op = matches!(
            change,
            SchemaChange::AddChoice { .. }
                | SchemaChange::RetireChoice { .. }
                | SchemaChange::RenameChoice { .. }
        );
        // A built-in list of statuses, priorities or channels takes the
        // choice statements a custom choice field takes, on a copy of its
        // own (see `extensible`), kept once a statement took effect.
        let copied = choice_op
            && extensible(kind, name)
            && builtin.is_some()
            && !ks.extended.contains_key(name);
        let custom = match builtin {
            Some(def) if choice_op && extensible(kind, name) => Some(
                ks.extended
                    .entry(name.to_string())
                    .or_insert_with(|| extended_from(kind, def)),
            ),
            _ => ks.custom.iter_mut().find(|f| f.name == name),
        };
        let outcome = match (change, custom) {
            (
                SchemaChange::AddField {
                    ty,
                    label,
                    help,
                    required,
                    default,
                    choices,
                    target,
                    ..
                },
                None,
            ) => {
                if ks.custom.len() >= MAX_FIELDS {
                    return Err(format!("{kind} has {MAX_FIELDS} custom fields already"));
                }
                let field = CustomField {
                    kind,
                    name: name.to_string(),
                    ty: *ty,
                    label: label.clone(),
                    help: help.clone(),
                    required: *required,
                    default: default.clone(),
                    choices: dedup(choices).map(|c| (c, false)).collect(),
                    renamed: Vec::new(),
                    target: *target,
                    retired: false,
                    added_by: entry.by.clone(),
                    added_at: entry.at,
                };
                if let Some(d) = default {
                    crate::value::parse_value(field.def(), d, &any_time())
                        .map_err(|e| format!("its default does not fit: {e}"))?;
                }
                ks.custom.push(field);
                Ok(())
            }
            (
                SchemaChange::AddField {
                    ty,
                    target,
                    choices,
                    ..
                },
                Some(f),
            ) => {
                if f.ty != *ty || f.target != *target {
                    return Err(format!(
                        "{kind} has a {} field `{name}` already; a type never changes \
                         (add a field of another name and retire this one)",
                        f.ty
                    ));
                }
                // The same field added twice (two admins at once): one
                // field, with the choices of both.
                for c in choices {
                    if !f.choices.iter().any(|(have, _)| have == c) {
                        f.choices.push((c.clone(), false));
                    }
                }
                Ok(())
            }
            (SchemaChange::Relabel { label, .. }, Some(f)) => {
                f.label = label.clone();
                Ok(())
            }
            (SchemaChange::Relabel { label, .. }, None) if builtin.is_some() => {
                ks.labels.insert(name.to_string(), label.clone());
                Ok(())
            }
            (SchemaChange::Retire { .. }, Some(f)) => {
                f.retired = true;
                Ok(())
            }
            (SchemaChange::Retire { .. }, None) => match builtin {
                Some(def) if def.required || kind.title_field() == name => Err(format!(
                    "{kind} needs its `{name}` field: it cannot be hidden"
                )),
                Some(_) => {
                    ks.hidden.insert(name.to_string());
                    Ok(())
                }
                None => Err(no_such_field(kind, name)),
            },
            (SchemaChange::Restore { .. }, Some(f)) => {
                f.retired = false;
                Ok(())
            }
            (SchemaChange::Restore { .. }, None) if builtin.is_some() => {
                ks.hidden.remove(name);
                Ok(())
            }
            (SchemaChange::AddChoice { choice, .. }, Some(f)) if f.ty.has_choices() => {
                let count = f.choices.len();
                match f.choices.iter_mut().find(|(c, _)| c == choice) {
                    Some((_, retired)) => *retired = false,
                    None if count >= MAX_CHOICES => {
                        return Err(format!("`{name}` has {MAX_CHOICES} choices already"));
                    }
                    None => f.choices.push((choice.clone(), false)),
                }
                Ok(())
            }
            (SchemaChange::RetireChoice { choice, .. }, Some(f)) if f.ty.has_choices() => {
                match f.choices.iter_mut().find(|(c, _)| c == choice) {
                    Some((_, retired)) => {
                        *retired = true;
                        // A default may not name a choice input refuses:
                        // every new record would be refused.
                        if let Some(d) = &f.default {
                            let kept: Vec<&str> = crate::value::split_list(d)
                                .filter(|c| c != choice)
                                .collect();
                            f.default = (!kept.is_empty()).then(|| kept.join(", "));
                        }
                        Ok(())
                    }
                    None => Err(format!("`{name}` has no choice `{choice}`")),
                }
            }
            (SchemaChange::RenameChoice { choice, .. }, Some(_))
                if kind == Kind::Ticket
                    && name == "status"
                    && ENDING_STATUSES.contains(&choice.as_str()) =>
            {
                Err(format!(
                    "`{choice}` ends a ticket (open work leaves such tickets out), so it keeps \
                     its name: add a status of your own, and retire `{choice}` if unused"
                ))
            }
            (SchemaChange::RenameChoice { choice, to, .. }, Some(f)) if f.ty.has_choices() => {
                if f.choices.iter().any(|(c, _)| c == to) {
                    return Err(format!(
                        "`{name}` has a choice `{to}` already: retire `{choice}` instead"
                    ));
                }
                let renamed_meanwhile = f.renamed_to(choice).map(str::to_string);
                match f.choices.iter_mut().find(|(c, _)| c == choice) {
                    // Another admin renamed it first (concurrently): this
                    // word becomes an alias of the name that stood, so the
                    // records this admin's node rewrote show as renamed.
                    None if renamed_meanwhile.is_some() => {
                        let now = renamed_meanwhile.unwrap_or_default();
                        f.renamed.push((to.clone(), now));
                        Ok(())
                    }
                    Some((c, _)) => {
                        *c = to.clone();
                        f.renamed.push((choice.clone(), to.clone()));
                        if let Some(d) = &mut f.default {
                            *d = crate::value::split_list(d)
                                .map(|c| if c == choice { to.as_str() } else { c })
                                .collect::<Vec<_>>()
                                .join(", ");
                        }
                        Ok(())
                    }
                    None => Err(format!("`{name}` has no choice `{choice}`")),
                }
            }
            (
                SchemaChange::AddChoice { .. }
                | SchemaChange::RetireChoice { .. }
                | SchemaChange::RenameChoice { .. },
                Some(f),
            ) => Err(format!("`{name}` is a {} field, without choices", f.ty)),
            (
                SchemaChange::AddKind { .. }
                | SchemaChange::RetireKind { .. }
                | SchemaChange::RestoreKind { .. }
                | SchemaChange::SetPipeline { .. }
                | SchemaChange::RetirePipeline { .. },
                Some(_),
            ) => Err("a statement about a kind or pipeline, not a field".into()),
            (_, None) if builtin.is_some() => Err(format!(
                "`{name}` is a built-in field of {kind}: it can be relabelled or hidden only"
            )),
            (_, None) => Err(no_such_field(kind, name)),
        };
        if copied && outcome.is_err() {
            ks.extended.remove(name);
        }
        outcome
    }

    fn apply_to_kind(&mut self, entry: &SchemaEntry) -> Result<(), String> {
        let kind = entry.change.kind();
        let count = self.kinds.values().filter(|k| k.defined.is_some()).count();
        let ks = self.kinds.entry(kind).or_default();
        match (&entry.change, &mut ks.defined) {
            (
                SchemaChange::AddKind {
                    plural,
                    title_label,
                    help,
                    ..
                },
                defined @ None,
            ) => {
                if count >= MAX_KINDS {
                    return Err(format!("the space has {MAX_KINDS} custom kinds already"));
                }
                *defined = Some(CustomKindDef {
                    kind,
                    plural: plural.clone(),
                    help: help.clone(),
                    retired: false,
                    added_by: entry.by.clone(),
                    added_at: entry.at,
                });
                if !title_label.is_empty() {
                    ks.labels.insert("name".into(), title_label.clone());
                }
                Ok(())
            }
            // Added twice (two admins at once): one kind; the first
            // statement's words stand, and a retired kind comes back.
            (SchemaChange::AddKind { .. }, Some(def)) => {
                def.retired = false;
                Ok(())
            }
            (SchemaChange::RetireKind { .. }, Some(def)) => {
                def.retired = true;
                Ok(())
            }
            (SchemaChange::RestoreKind { .. }, Some(def)) => {
                def.retired = false;
                Ok(())
            }
            (_, None) => Err(no_such_kind(kind)),
            (_, Some(_)) => Err("not a statement about a kind".into()),
        }
    }

    fn apply_to_pipeline(&mut self, change: &SchemaChange) -> Result<(), String> {
        match change {
            SchemaChange::SetPipeline {
                name,
                label,
                stages,
            } => {
                if let Some(p) = self.pipelines.iter_mut().find(|p| p.name == *name) {
                    // Last writer wins: the stages as the later statement
                    // has them; a deal in a stage it dropped shows so.
                    if !label.is_empty() {
                        p.label = label.clone();
                    }
                    p.stages = stages.clone();
                    p.retired = false;
                    return Ok(());
                }
                if self.pipelines.len() >= MAX_PIPELINES {
                    return Err(format!("the space has {MAX_PIPELINES} pipelines already"));
                }
                self.pipelines.push(Pipeline {
                    name: name.clone(),
                    label: label.clone(),
                    stages: stages.clone(),
                    retired: false,
                });
                Ok(())
            }
            SchemaChange::RetirePipeline { name } => {
                match self.pipelines.iter_mut().find(|p| p.name == *name) {
                    Some(p) => {
                        p.retired = true;
                        Ok(())
                    }
                    None => Err(format!("the space has no pipeline `{name}`")),
                }
            }
            _ => Err("not a statement about a pipeline".into()),
        }
    }

    /// The space's deal pipelines: the built-in `sales`, then the
    /// admins' own (retired ones too, marked so).
    pub fn pipelines(&self) -> Vec<Pipeline> {
        std::iter::once(Pipeline::sales())
            .chain(self.pipelines.iter().cloned())
            .collect()
    }

    /// The pipeline a user (or a file from another CRM) names: by its
    /// name or title in any case, with or without the word "pipeline"
    /// ("Renewals", "renewals pipeline", "Sales Pipeline").
    pub fn resolve_pipeline(&self, typed: &str) -> Option<Pipeline> {
        let lower = typed.trim().to_lowercase();
        let bare = lower.strip_suffix(" pipeline").unwrap_or(&lower).trim();
        self.pipelines().into_iter().find(|p| {
            [lower.as_str(), bare]
                .iter()
                .any(|t| p.name == t.replace(' ', "_") || p.title().to_lowercase() == *t)
        })
    }

    /// A pipeline by name, retired or not.
    pub fn pipeline(&self, name: &str) -> Option<Pipeline> {
        if name == SALES {
            return Some(Pipeline::sales());
        }
        self.pipelines.iter().find(|p| p.name == name).cloned()
    }

    /// Checks a deal's pipeline and stage: the pipeline is one of the
    /// space's, not retired (for a new deal or one moved into it:
    /// `moved_in`), and the stage is one of its stages.
    pub fn check_deal(
        &self,
        fields: &BTreeMap<String, crate::FieldValue>,
        moved_in: bool,
    ) -> Result<(), String> {
        let name = fields
            .get("pipeline")
            .and_then(crate::FieldValue::as_text)
            .unwrap_or(SALES);
        let Some(p) = self.pipeline(name) else {
            let names: Vec<String> = self
                .pipelines()
                .into_iter()
                .filter(|p| !p.retired)
                .map(|p| p.name)
                .collect();
            return Err(format!(
                "there is no pipeline `{name}`: use one of {}",
                names.join(", ")
            ));
        };
        if p.retired && moved_in {
            return Err(format!(
                "the pipeline `{name}` is retired: it takes no new deals"
            ));
        }
        if let Some(stage) = fields.get("stage").and_then(crate::FieldValue::as_text)
            && p.stage(stage).is_none()
        {
            let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "`{stage}` is not a stage of the {} pipeline: use one of {}",
                p.title(),
                names.join(", ")
            ));
        }
        Ok(())
    }

    /// A custom kind the space defines, retired or not.
    pub fn kind(&self, kind: Kind) -> Option<&CustomKindDef> {
        self.kinds.get(&kind)?.defined.as_ref()
    }

    /// The kinds records of the space may be created as: the built-in
    /// ones, then the custom ones not retired, in the order they came.
    pub fn kinds(&self) -> Vec<Kind> {
        let mut custom: Vec<&CustomKindDef> = self
            .kinds
            .values()
            .filter_map(|k| k.defined.as_ref())
            .filter(|d| !d.retired)
            .collect();
        custom.sort_by_key(|d| d.added_at);
        Kind::ALL
            .into_iter()
            .chain(custom.into_iter().map(|d| d.kind))
            .collect()
    }

    /// Every custom kind the space defines, retired ones included.
    pub fn custom_kinds(&self) -> Vec<&CustomKindDef> {
        let mut all: Vec<&CustomKindDef> = self
            .kinds
            .values()
            .filter_map(|k| k.defined.as_ref())
            .collect();
        all.sort_by_key(|d| d.added_at);
        all
    }

    /// Whether new records of `kind` may be made in the space.
    pub fn takes(&self, kind: Kind) -> bool {
        !kind.is_custom() || self.kind(kind).is_some_and(|d| !d.retired)
    }

    /// What lists call many records of `kind`.
    pub fn plural(&self, kind: Kind) -> String {
        match self.kind(kind) {
            Some(d) if !d.plural.is_empty() => d.plural.clone(),
            _ => plural_of(kind),
        }
    }

    /// The fields forms and tables of `kind` show: the built-in ones not
    /// hidden, then the custom ones not retired.
    pub fn fields(&self, kind: Kind) -> Vec<&'static FieldDef> {
        let Some(ks) = self.kinds.get(&kind) else {
            return kind.fields().iter().collect();
        };
        let builtin = kind
            .fields()
            .iter()
            .filter(|d| !ks.hidden.contains(d.name))
            .map(|d| self.extended_def(kind, d))
            .map(|d| match ks.labels.get(d.name) {
                Some(label) => intern_def(FieldDef {
                    label: intern(label),
                    ..*d
                }),
                None => d,
            });
        builtin
            .chain(
                ks.custom
                    .iter()
                    .filter(|f| !f.retired)
                    .map(CustomField::def),
            )
            .collect()
    }

    /// A field new input may set: any built-in field (hidden ones too:
    /// hiding never breaks what scripts and imports write), or a custom
    /// field not retired.
    pub fn field(&self, kind: Kind, name: &str) -> Option<&'static FieldDef> {
        if let Some(def) = kind.field(name) {
            return Some(self.extended_def(kind, def));
        }
        self.custom_field(kind, name)
            .filter(|f| !f.retired)
            .map(CustomField::def)
    }

    /// A built-in field as input takes it here: a status, priority or
    /// channel list with the space's choices, or the field as built.
    fn extended_def(&self, kind: Kind, def: &'static FieldDef) -> &'static FieldDef {
        if kind == Kind::Deal && def.name == "stage" && !self.pipelines.is_empty() {
            // Any stage of any pipeline parses (a retired one's too: its
            // deals still move); `check_deal` holds a deal to its own's.
            let mut stages: Vec<&'static str> = Vec::new();
            for p in &self.pipelines() {
                for s in &p.stages {
                    let s = intern(&s.name);
                    if !stages.contains(&s) {
                        stages.push(s);
                    }
                }
            }
            return intern_def(FieldDef {
                ty: FieldType::Choice(intern_list(stages)),
                ..*def
            });
        }
        let Some(f) = self.kinds.get(&kind).and_then(|k| k.extended.get(def.name)) else {
            return def;
        };
        let choices = intern_list(f.active_choices().map(intern).collect());
        intern_def(FieldDef {
            ty: FieldType::Choice(choices),
            default: f.default.as_deref().map(intern),
            ..*def
        })
    }

    /// The choices of an extensible built-in field, retired ones with
    /// `true`, as the space's admins left them; `None` while unchanged.
    pub fn extended_choices(&self, kind: Kind, name: &str) -> Option<&CustomField> {
        self.kinds.get(&kind)?.extended.get(name)
    }

    /// A custom field, retired or not.
    pub fn custom_field(&self, kind: Kind, name: &str) -> Option<&CustomField> {
        self.kinds
            .get(&kind)?
            .custom
            .iter()
            .find(|f| f.name == name)
    }

    /// Every custom field of `kind`, retired ones included, in order.
    pub fn custom(&self, kind: Kind) -> &[CustomField] {
        self.kinds.get(&kind).map_or(&[], |k| &k.custom)
    }

    pub fn is_hidden(&self, kind: Kind, name: &str) -> bool {
        self.kinds
            .get(&kind)
            .is_some_and(|k| k.hidden.contains(name))
    }

    /// A built-in field's label, if an admin gave it one.
    pub fn builtin_label(&self, kind: Kind, name: &str) -> Option<&str> {
        self.kinds.get(&kind)?.labels.get(name).map(String::as_str)
    }

    /// Checks the custom fields' own rules on a new record's fields:
    /// required custom fields present. (Values were checked as they were
    /// parsed.)
    pub fn check_new(
        &self,
        kind: Kind,
        fields: &BTreeMap<String, crate::FieldValue>,
    ) -> Result<(), String> {
        for f in self.custom(kind).iter().filter(|f| !f.retired) {
            if f.required && !fields.contains_key(&f.name) {
                return Err(format!(
                    "{kind} needs a {} (a required field: --set {}=...)",
                    f.name, f.name
                ));
            }
        }
        Ok(())
    }
}

impl Schema {
    /// Why a value a record holds does not fit its field as the schema
    /// now stands (it is kept and shown all the same): a field retired or
    /// not defined here (yet), a retired choice, a value of another type.
    pub fn misfit(&self, kind: Kind, name: &str, value: &crate::FieldValue) -> Option<String> {
        let extended = self.kinds.get(&kind).and_then(|k| k.extended.get(name));
        if kind.field(name).is_some() && extended.is_none() {
            return None;
        }
        let Some(f) = extended.or_else(|| self.custom_field(kind, name)) else {
            return Some("not a field of this space's schema (yet)".into());
        };
        if f.retired {
            return Some("a retired field".into());
        }
        if f.ty.has_choices() {
            let items: Vec<&str> = match value {
                crate::FieldValue::Text(s) => vec![s.as_str()],
                crate::FieldValue::List(l) => l.iter().map(String::as_str).collect(),
                _ => Vec::new(),
            };
            for item in items {
                match f.choices.iter().find(|(c, _)| c == item) {
                    Some((_, false)) => {}
                    Some((_, true)) => return Some(format!("`{item}` is a retired choice")),
                    None => {
                        return Some(match f.renamed_to(item) {
                            Some(to) => format!("`{item}` was renamed `{to}`"),
                            None => format!("`{item}` is not one of its choices"),
                        });
                    }
                }
            }
            return None;
        }
        let def = f.def();
        let text = match value {
            crate::FieldValue::List(l) => l.join(", "),
            other => other.to_string(),
        };
        let ctx = any_time();
        let fits = match (def.ty, value) {
            (FieldType::Flag, v) => matches!(v, crate::FieldValue::Flag(_)),
            (FieldType::Percent, v) => matches!(v, crate::FieldValue::Int(_)),
            (FieldType::Ref(_), crate::FieldValue::Text(s)) => s.parse::<crate::RecordId>().is_ok(),
            (_, crate::FieldValue::Text(_)) => crate::value::parse_value(def, &text, &ctx).is_ok(),
            _ => false,
        };
        (!fits).then(|| format!("does not fit a {} field", f.ty))
    }
}

/// A context for checking values whose fit does not depend on the clock:
/// canonical stored values, and defaults (`today` parses at any time).
fn any_time() -> crate::ParseContext {
    crate::ParseContext {
        now: jiff::Timestamp::UNIX_EPOCH,
        tz: jiff::tz::TimeZone::UTC,
    }
}

/// The ticket statuses that end a ticket's work (My work leaves such
/// tickets out): they may be retired, but not renamed.
pub const ENDING_STATUSES: &[&str] = &["resolved", "closed"];

/// The built-in choice fields a space's admins may add choices to, and
/// retire or rename them: the lists a team words its own way. A deal's
/// stages are its pipeline's; an activity's types carry meaning (a task
/// can be done), so both stay as built.
pub fn extensible(kind: Kind, name: &str) -> bool {
    matches!(
        (kind, name),
        (Kind::Ticket, "status" | "priority") | (Kind::Campaign, "channel")
    )
}

/// Whether a built-in field's choices come from the space's schema: an
/// extensible list, or a deal's stage (its pipelines' stages).
pub fn space_shaped(kind: Kind, name: &str) -> bool {
    extensible(kind, name) || (kind == Kind::Deal && name == "stage")
}

/// One field as several spaces define it, for a filter over all of them:
/// the first definition with the choices of every one (a ticket status
/// one space added, a stage of another space's pipeline).
pub fn union_choices(defs: &[&'static FieldDef]) -> Option<&'static FieldDef> {
    let first = *defs.first()?;
    let FieldType::Choice(_) = first.ty else {
        return Some(first);
    };
    let mut all: Vec<&'static str> = Vec::new();
    for d in defs {
        if let FieldType::Choice(c) = d.ty {
            for choice in c {
                if !all.contains(choice) {
                    all.push(choice);
                }
            }
        }
    }
    Some(intern_def(FieldDef {
        ty: FieldType::Choice(intern_list(all)),
        ..*first
    }))
}

/// A built-in choice field as a custom one, for its choices to change.
fn extended_from(kind: Kind, def: &FieldDef) -> CustomField {
    let choices = match def.ty {
        FieldType::Choice(c) | FieldType::Choices(c) => c,
        _ => &[],
    };
    CustomField {
        kind,
        name: def.name.to_string(),
        ty: CustomType::Choice,
        label: String::new(),
        help: def.help.to_string(),
        required: def.required,
        default: def.default.map(str::to_string),
        choices: choices.iter().map(|c| (c.to_string(), false)).collect(),
        renamed: Vec::new(),
        target: None,
        retired: false,
        added_by: String::new(),
        added_at: 0,
    }
}

fn no_such_kind(kind: Kind) -> String {
    format!("the space has no kind `{kind}` (rapport schema kind add {kind})")
}

/// A kind's plural as the built-in words have it, and for a custom kind
/// its name with an `s` (an admin gives another with `--plural`).
pub fn plural_of(kind: Kind) -> String {
    match kind {
        Kind::Company => "companies".into(),
        Kind::Person => "people".into(),
        Kind::Activity => "activities".into(),
        Kind::Custom(c) => {
            let name = c.as_str();
            match name.strip_suffix('y') {
                Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{stem}ies"),
                _ if name.ends_with(['s', 'x']) || name.ends_with("ch") => format!("{name}es"),
                _ => format!("{name}s"),
            }
        }
        k => format!("{k}s"),
    }
}

fn no_such_field(kind: Kind, name: &str) -> String {
    format!("{kind} has no field `{name}` (rapport schema show {kind})")
}

fn dedup(items: &[String]) -> impl Iterator<Item = String> + '_ {
    let mut seen = HashSet::new();
    items.iter().filter(move |c| seen.insert(*c)).cloned()
}

fn short(device: &str) -> &str {
    device.get(..8).unwrap_or(device)
}

// Field definitions are `&'static` throughout the crate (the built-in ones
// are constants). A custom field's definition is interned once for the
// life of the process: the memory is bounded by the distinct definitions
// admins ever wrote (at most MAX_FIELDS per kind per space, each a few
// hundred bytes), never by the records.

fn intern(s: &str) -> &'static str {
    static SET: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = SET
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(s) = set.get(s) {
        return s;
    }
    let s: &'static str = Box::leak(s.into());
    set.insert(s);
    s
}

fn intern_list(items: Vec<&'static str>) -> &'static [&'static str] {
    static MAP: OnceLock<Mutex<HashMap<Vec<&'static str>, &'static [&'static str]>>> =
        OnceLock::new();
    let mut map = MAP
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(l) = map.get(&items) {
        return l;
    }
    let l: &'static [&'static str] = Box::leak(items.clone().into_boxed_slice());
    map.insert(items, l);
    l
}

fn intern_def(def: FieldDef) -> &'static FieldDef {
    static SET: OnceLock<Mutex<HashSet<&'static FieldDef>>> = OnceLock::new();
    let mut set = SET
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(d) = set.get(&def) {
        return d;
    }
    let d: &'static FieldDef = Box::leak(Box::new(def));
    set.insert(d);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(by: &str, change: SchemaChange) -> SchemaEntry {
        SchemaEntry {
            by: by.into(),
            at: 0,
            change,
        }
    }

    fn add(kind: Kind, name: &str, ty: CustomType) -> SchemaChange {
        SchemaChange::AddField {
            kind,
            name: name.into(),
            ty,
            label: String::new(),
            help: String::new(),
            required: false,
            default: None,
            choices: if ty.has_choices() {
                vec!["gold".into(), "silver".into()]
            } else {
                Vec::new()
            },
            target: (ty == CustomType::Reference).then_some(Kind::Company),
        }
    }

    #[test]
    fn statements_round_trip_through_json() {
        let e = entry("aa", add(Kind::Company, "tier", CustomType::Choice));
        let json = serde_json::to_string(&e).expect("to json");
        assert!(json.contains(r#""op":"add_field""#), "{json}");
        assert!(json.contains(r#""type":"choice""#), "{json}");
        assert_eq!(
            serde_json::from_str::<SchemaEntry>(&json).expect("from json"),
            e
        );
    }

    #[test]
    fn added_fields_show_after_the_built_in_ones() {
        let s = Schema::fold(&[entry("aa", add(Kind::Company, "seats", CustomType::Number))]);
        let fields = s.fields(Kind::Company);
        assert_eq!(fields.len(), Kind::Company.fields().len() + 1);
        let seats = fields.last().expect("present");
        assert_eq!(
            (seats.name, seats.ty, seats.custom),
            ("seats", FieldType::Number, true)
        );
        assert!(s.field(Kind::Company, "seats").is_some());
        assert!(s.field(Kind::Person, "seats").is_none());
    }

    #[test]
    fn the_same_field_added_twice_is_one_field_and_a_clash_keeps_the_first() {
        let mut second = add(Kind::Company, "tier", CustomType::Choice);
        if let SchemaChange::AddField { choices, .. } = &mut second {
            *choices = vec!["silver".into(), "bronze".into()];
        }
        let s = Schema::fold(&[
            entry("aa", add(Kind::Company, "tier", CustomType::Choice)),
            entry("bb", second),
            entry("cc", add(Kind::Company, "tier", CustomType::Number)),
        ]);
        let tier = s.custom_field(Kind::Company, "tier").expect("present");
        assert_eq!(tier.ty, CustomType::Choice);
        assert_eq!(
            tier.active_choices().collect::<Vec<_>>(),
            ["gold", "silver", "bronze"]
        );
        assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
        assert!(s.notes[0].contains("a type never changes"), "{:?}", s.notes);
    }

    #[test]
    fn retired_fields_and_choices_refuse_input_but_stay_known() {
        let s = Schema::fold(&[
            entry("aa", add(Kind::Deal, "tier", CustomType::Choice)),
            entry(
                "aa",
                SchemaChange::RetireChoice {
                    kind: Kind::Deal,
                    name: "tier".into(),
                    choice: "gold".into(),
                },
            ),
        ]);
        let def = s.field(Kind::Deal, "tier").expect("present");
        assert_eq!(def.ty, FieldType::Choice(&["silver"]));
        let s2 = Schema::fold(&[
            entry("aa", add(Kind::Deal, "tier", CustomType::Choice)),
            entry(
                "aa",
                SchemaChange::Retire {
                    kind: Kind::Deal,
                    name: "tier".into(),
                },
            ),
        ]);
        assert!(s2.field(Kind::Deal, "tier").is_none());
        assert!(
            s2.custom_field(Kind::Deal, "tier")
                .expect("present")
                .retired
        );
        assert!(!s2.fields(Kind::Deal).iter().any(|d| d.name == "tier"));
    }

    #[test]
    fn a_renamed_choice_keeps_its_place_and_old_values_say_what_it_is_now() {
        let rename = |choice: &str, to: &str| SchemaChange::RenameChoice {
            kind: Kind::Deal,
            name: "tier".into(),
            choice: choice.into(),
            to: to.into(),
        };
        let s = Schema::fold(&[
            entry("aa", add(Kind::Deal, "tier", CustomType::Choice)),
            entry("aa", rename("silver", "silber")),
            entry("aa", rename("silber", "argent")),
            // Onto a choice that exists: refused, noted, nothing changes.
            entry("aa", rename("gold", "argent")),
        ]);
        let def = s.field(Kind::Deal, "tier").expect("present");
        assert_eq!(def.ty, FieldType::Choice(&["gold", "argent"]));
        assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
        assert!(
            s.notes[0].contains("retire `gold` instead"),
            "{:?}",
            s.notes
        );
        let old = crate::FieldValue::Text("silver".into());
        assert_eq!(
            s.misfit(Kind::Deal, "tier", &old).as_deref(),
            Some("`silver` was renamed `argent`")
        );
        assert_eq!(
            s.misfit(
                Kind::Deal,
                "tier",
                &crate::FieldValue::Text("argent".into())
            ),
            None
        );
        // Two admins renamed `gold` at once: the second word is an alias of
        // the first, so the records its node rewrote show as renamed; asked
        // now, renaming `gold` again is refused.
        let both = Schema::fold(&[
            entry("aa", add(Kind::Deal, "tier", CustomType::Choice)),
            entry("aa", rename("gold", "or")),
            entry("bb", rename("gold", "oro")),
        ]);
        assert!(both.notes.is_empty(), "{:?}", both.notes);
        assert_eq!(
            both.misfit(Kind::Deal, "tier", &crate::FieldValue::Text("oro".into()))
                .as_deref(),
            Some("`oro` was renamed `or`")
        );
        let e = both.check(&rename("gold", "golden")).expect_err("renamed");
        assert!(e.contains("was renamed `or` already"), "{e}");
        assert!(rename("gold", "gold").validate().is_err());
        assert!(rename("gold", "Not A Word").validate().is_err());
    }

    /// Retiring the default choice takes it out of the default: new
    /// records are not refused for a value nobody typed.
    #[test]
    fn retiring_the_default_choice_drops_it_from_the_default() {
        let mut tier = add(Kind::Deal, "tier", CustomType::Choice);
        if let SchemaChange::AddField { default, .. } = &mut tier {
            *default = Some("gold".into());
        }
        let s = Schema::fold(&[
            entry("aa", tier),
            entry(
                "aa",
                SchemaChange::RetireChoice {
                    kind: Kind::Deal,
                    name: "tier".into(),
                    choice: "gold".into(),
                },
            ),
        ]);
        assert_eq!(s.field(Kind::Deal, "tier").expect("present").default, None);
    }

    /// Choices in any script, and the signs names use, compare in any case.
    #[test]
    fn choices_take_any_script_and_input_matches_them_in_any_case() {
        let mut city = add(Kind::Company, "city", CustomType::Choice);
        if let SchemaChange::AddField { choices, .. } = &mut city {
            *choices = vec!["東京".into(), "émeraude".into(), "r&d".into(), "c++".into()];
        }
        assert_eq!(city.validate(), Ok(()));
        let s = Schema::fold(&[entry("aa", city)]);
        let def = s.field(Kind::Company, "city").expect("present");
        let ctx = any_time();
        for (typed, stored) in [("Émeraude", "émeraude"), ("東京", "東京"), ("R&D", "r&d")] {
            assert_eq!(
                crate::value::parse_value(def, typed, &ctx),
                Ok(crate::FieldValue::Text(stored.into()))
            );
        }
        assert!(check_choice("Gold").is_err(), "stored in lower case");
    }

    #[test]
    fn built_in_fields_can_be_relabelled_and_hidden_but_not_broken() {
        let hide = |name: &str| SchemaChange::Retire {
            kind: Kind::Company,
            name: name.into(),
        };
        let s = Schema::fold(&[
            entry("aa", hide("industry")),
            entry("aa", hide("name")),
            entry(
                "aa",
                SchemaChange::Relabel {
                    kind: Kind::Company,
                    name: "domain".into(),
                    label: "Web domain".into(),
                },
            ),
        ]);
        let fields = s.fields(Kind::Company);
        assert!(!fields.iter().any(|d| d.name == "industry"));
        assert!(fields.iter().any(|d| d.name == "name"));
        assert_eq!(
            fields
                .iter()
                .find(|d| d.name == "domain")
                .expect("present")
                .label(),
            "Web domain"
        );
        assert!(
            s.field(Kind::Company, "industry").is_some(),
            "still settable"
        );
        assert_eq!(s.notes.len(), 1);
        assert!(
            s.check(&add(Kind::Company, "domain", CustomType::Text))
                .is_err()
        );
    }

    /// The statement without its choices and target.
    fn without(mut change: SchemaChange) -> SchemaChange {
        if let SchemaChange::AddField {
            choices, target, ..
        } = &mut change
        {
            choices.clear();
            *target = None;
        }
        change
    }

    #[test]
    fn ticket_statuses_and_priorities_take_the_space_s_own_choices() {
        let choice = |op: &str, name: &str, choice: &str| -> SchemaChange {
            serde_json::from_value(serde_json::json!({
                "op": op, "kind": "ticket", "name": name, "choice": choice, "to": "done",
            }))
            .expect("statement")
        };
        let schema = Schema::fold(&[
            entry("a", choice("add_choice", "status", "waiting on customer")),
            entry("a", choice("retire_choice", "status", "pending")),
            entry("a", choice("rename_choice", "status", "open")),
            entry("a", choice("add_choice", "priority", "critical")),
            entry("a", choice("retire_choice", "status", "new")),
        ]);
        assert!(schema.notes.is_empty(), "{:?}", schema.notes);
        let status = schema.field(Kind::Ticket, "status").expect("status");
        assert_eq!(
            status.ty,
            FieldType::Choice(&["done", "resolved", "closed", "waiting on customer"])
        );
        assert_eq!(status.default, None, "the retired default is dropped");
        assert!(!status.custom && status.required);
        let listed = schema.fields(Kind::Ticket);
        let priority = listed
            .iter()
            .find(|d| d.name == "priority")
            .expect("listed");
        assert!(matches!(priority.ty, FieldType::Choice(c) if c.contains(&"critical")));
        let text = |s: &str| crate::FieldValue::Text(s.into());
        assert_eq!(
            schema
                .misfit(Kind::Ticket, "status", &text("pending"))
                .as_deref(),
            Some("`pending` is a retired choice")
        );
        assert_eq!(
            schema
                .misfit(Kind::Ticket, "status", &text("open"))
                .as_deref(),
            Some("`open` was renamed `done`")
        );
        assert_eq!(schema.misfit(Kind::Ticket, "status", &text("done")), None);
        let ending = choice("rename_choice", "status", "closed");
        assert!(
            schema
                .check(&ending)
                .is_err_and(|e| e.contains("ends a ticket"))
        );
        // A statement that takes no effect leaves the built-in list as built.
        let refused = Schema::fold(&[entry("a", ending)]);
        assert_eq!(refused.notes.len(), 1);
        assert!(refused.extended_choices(Kind::Ticket, "status").is_none());
        // A space that changed nothing has the built-in lists.
        assert_eq!(
            Schema::default().field(Kind::Ticket, "status"),
            Kind::Ticket.field("status")
        );
        // A deal's stages and an activity's types stay as built.
        for (kind, name) in [("deal", "stage"), ("activity", "type")] {
            let change: SchemaChange = serde_json::from_value(serde_json::json!({
                "op": "add_choice", "kind": kind, "name": name, "choice": "extra",
            }))
            .expect("statement");
            assert!(Schema::default().check(&change).is_err(), "{kind}.{name}");
        }
    }

    #[test]
    fn pipelines_hold_deals_to_their_stages_and_converge_last_writer_wins() {
        let set = |stages: serde_json::Value| -> SchemaChange {
            serde_json::from_value(serde_json::json!({
                "op": "set_pipeline", "name": "renewals", "label": "Renewals", "stages": stages,
            }))
            .expect("statement")
        };
        let first = set(serde_json::json!([
            {"name": "due", "probability": 60},
            {"name": "renewed", "probability": 100, "outcome": "won"},
            {"name": "churned", "probability": 0, "outcome": "lost"},
        ]));
        let second = set(serde_json::json!([
            {"name": "due", "probability": 70},
            {"name": "quoted", "probability": 85},
            {"name": "renewed", "probability": 100, "outcome": "won"},
            {"name": "churned", "probability": 0, "outcome": "lost"},
        ]));
        let schema = Schema::fold(&[entry("a", first), entry("b", second)]);
        assert!(schema.notes.is_empty(), "{:?}", schema.notes);
        let names: Vec<String> = schema.pipelines().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["sales", "renewals"]);
        let renewals = schema
            .resolve_pipeline("Renewals Pipeline")
            .expect("by title");
        assert_eq!(renewals.stage("due").map(|s| s.probability), Some(70));
        assert_eq!(
            schema
                .resolve_pipeline("Sales Pipeline")
                .map(|p| p.name)
                .as_deref(),
            Some("sales")
        );
        // Any pipeline's stage parses; a deal is held to its own.
        let stage = schema.field(Kind::Deal, "stage").expect("stage");
        assert!(
            matches!(stage.ty, FieldType::Choice(c) if c.contains(&"quoted") && c.contains(&"lead"))
        );
        let text = |s: &str| crate::FieldValue::Text(s.into());
        let deal = |pipeline: Option<&str>, stage: &str| {
            let mut f = BTreeMap::new();
            f.insert("stage".to_string(), text(stage));
            if let Some(p) = pipeline {
                f.insert("pipeline".to_string(), text(p));
            }
            f
        };
        assert_eq!(
            schema.check_deal(&deal(Some("renewals"), "quoted"), true),
            Ok(())
        );
        assert_eq!(schema.check_deal(&deal(None, "proposal"), true), Ok(()));
        assert!(
            schema
                .check_deal(&deal(None, "quoted"), true)
                .is_err_and(|e| e.contains("not a stage of the Sales pipeline"))
        );
        assert!(
            schema
                .check_deal(&deal(Some("upsell"), "due"), true)
                .is_err_and(|e| e.contains("no pipeline `upsell`"))
        );
        // The built-in pipeline keeps its stages; a pipeline needs an open stage.
        for bad in [
            serde_json::json!({"op": "set_pipeline", "name": "sales", "stages": [{"name": "a", "probability": 1}]}),
            serde_json::json!({"op": "set_pipeline", "name": "x", "stages": [{"name": "won", "probability": 100, "outcome": "won"}]}),
            serde_json::json!({"op": "set_pipeline", "name": "x", "stages": [{"name": "a", "probability": 101}]}),
            serde_json::json!({"op": "set_pipeline", "name": "x", "stages": []}),
            serde_json::json!({"op": "retire_pipeline", "name": "sales"}),
        ] {
            let change: SchemaChange = serde_json::from_value(bad.clone()).expect("statement");
            assert!(change.validate().is_err(), "{bad}");
        }
        let retired = Schema::fold(&[
            entry(
                "a",
                set(serde_json::json!([{"name": "due", "probability": 60}])),
            ),
            entry(
                "a",
                SchemaChange::RetirePipeline {
                    name: "renewals".into(),
                },
            ),
        ]);
        assert!(
            retired
                .check_deal(&deal(Some("renewals"), "due"), true)
                .is_err_and(|e| e.contains("retired"))
        );
        assert_eq!(
            retired.check_deal(&deal(Some("renewals"), "due"), false),
            Ok(())
        );
    }

    fn add_kind(kind: Kind) -> SchemaChange {
        SchemaChange::AddKind {
            kind,
            plural: String::new(),
            title_label: "Contract number".into(),
            help: String::new(),
        }
    }

    #[test]
    fn a_custom_kind_takes_fields_references_and_a_title_label() {
        let contract = Kind::custom("contract").expect("a kind name");
        let before = Schema::fold(&[entry("a", add(contract, "ends", CustomType::Date))]);
        assert!(!before.takes(contract));
        assert!(
            before.notes[0].contains("no kind `contract`"),
            "{:?}",
            before.notes
        );
        let mut reference = add(Kind::Company, "contract", CustomType::Reference);
        if let SchemaChange::AddField { target, .. } = &mut reference {
            *target = Some(contract);
        }
        let schema = Schema::fold(&[
            entry("a", add_kind(contract)),
            entry("a", add(contract, "ends", CustomType::Date)),
            entry("a", reference),
        ]);
        assert!(schema.notes.is_empty(), "{:?}", schema.notes);
        assert!(schema.takes(contract));
        assert_eq!(schema.kinds().last(), Some(&contract));
        assert_eq!(schema.plural(contract), "contracts");
        let names: Vec<&str> = schema.fields(contract).iter().map(|d| d.name).collect();
        assert_eq!(names, ["name", "ends"]);
        assert_eq!(schema.fields(contract)[0].label(), "Contract number");
        let to = schema
            .field(Kind::Company, "contract")
            .expect("the reference");
        assert_eq!(to.ty.ref_kinds(), Some(&[contract][..]));
        assert!(
            schema
                .check(&SchemaChange::Retire {
                    kind: contract,
                    name: "name".into()
                })
                .is_err(),
            "the title cannot be hidden"
        );
    }

    #[test]
    fn a_kind_added_twice_is_one_kind_and_retiring_keeps_it_known() {
        let site = Kind::custom("site_visit").expect("a kind name");
        let schema = Schema::fold(&[
            entry("a", add_kind(site)),
            entry(
                "b",
                SchemaChange::AddKind {
                    kind: site,
                    plural: "visits".into(),
                    title_label: String::new(),
                    help: String::new(),
                },
            ),
            entry("a", SchemaChange::RetireKind { kind: site }),
        ]);
        assert!(schema.notes.is_empty(), "{:?}", schema.notes);
        assert_eq!(schema.custom_kinds().len(), 1);
        assert_eq!(
            schema.plural(site),
            "site_visits",
            "the first statement's words stand"
        );
        assert!(!schema.takes(site));
        assert!(!schema.kinds().contains(&site));
        assert!(schema.kind(site).is_some_and(|d| d.retired));
        assert_eq!(
            SchemaChange::AddKind {
                kind: Kind::Deal,
                plural: String::new(),
                title_label: String::new(),
                help: String::new()
            }
            .validate()
            .map_err(|e| e.contains("built-in")),
            Err(true)
        );
        let restored = Schema::fold(&[
            entry("a", add_kind(site)),
            entry("a", SchemaChange::RetireKind { kind: site }),
            entry("b", SchemaChange::RestoreKind { kind: site }),
        ]);
        assert!(restored.takes(site));
        for (name, plural) in [
            ("survey", "surveys"),
            ("property", "properties"),
            ("box", "boxes"),
        ] {
            let kind = Kind::custom(name).expect("a kind name");
            assert_eq!(plural_of(kind), plural);
        }
    }

    #[test]
    fn statements_are_validated() {
        for (change, wanted) in [
            (
                add(Kind::Company, "Bad Name", CustomType::Text),
                "not a field name",
            ),
            (add(Kind::Company, "id", CustomType::Text), "built-in"),
            (
                without(add(Kind::Company, "tier", CustomType::Choice)),
                "needs its choices",
            ),
            (
                without(add(Kind::Company, "parent", CustomType::Reference)),
                "needs the kind",
            ),
        ] {
            let e = change.validate().expect_err("refused");
            assert!(e.contains(wanted), "{e}");
        }
    }

    #[test]
    fn type_names_parse_with_aliases_and_errors_list_them() {
        assert_eq!("multi-choice".parse(), Ok(CustomType::MultiChoice));
        assert_eq!("Checkbox".parse(), Ok(CustomType::YesNo));
        let e = "blob".parse::<CustomType>().expect_err("refused");
        assert!(e.contains("long_text") && e.contains("reference"), "{e}");
    }
}
