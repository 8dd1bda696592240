//! `rapport schema`: a space's fields, and how its admins change them.

use anyhow::Result;
use clap::{Args, Subcommand};
use rapport_model::{CustomType, Kind, SchemaChange};
use rapport_node::ops::{FieldInfo, Request, SchemaReply};

use crate::commands::to_json;
use crate::output::table;

/// Shape the records to your business: custom fields, labels, hidden fields.
#[derive(Debug, Clone, Subcommand)]
pub enum SchemaCmd {
    /// Every kind's fields (or one kind's): built-in, custom, hidden and retired.
    Show {
        /// Only this kind.
        kind: Option<String>,
        /// The space (name or id) [default: your private space].
        #[arg(long, value_name = "SPACE")]
        space: Option<String>,
    },
    /// Add, relabel, retire or restore a field; add or retire a choice.
    #[command(subcommand)]
    Field(FieldCmd),
    /// Add a kind of record of your own (contract, project, site visit), retire or restore it.
    #[command(subcommand)]
    Kind(KindCmd),
    /// Add a deal pipeline with its stages, change its stages, or retire it.
    #[command(subcommand)]
    Pipeline(PipelineCmd),
}

#[derive(Debug, Clone, Subcommand)]
pub enum PipelineCmd {
    /// Add a pipeline: `rapport schema pipeline add renewals --stages
    /// "due:60, quoted:85, renewed:100:won, churned:0:lost"`; then `rapport deal add
    /// "Acme 2027" --company Acme --pipeline renewals`.
    Add(PipelineArgs),
    /// Replace a pipeline's stages (deals in a stage it drops show in its first).
    Edit(PipelineArgs),
    /// Retire a pipeline: no new deals in it; those there are keep it.
    Retire {
        name: String,
        #[arg(long, value_name = "SPACE")]
        space: Option<String>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    /// Its name: up to 40 lower-case letters, digits and _ (e.g. renewals).
    pub name: String,
    /// The stages in order, comma-separated, each STAGE:PROBABILITY, and :won or :lost
    /// for the stages that close a deal.
    #[arg(long, value_name = "STAGES")]
    pub stages: String,
    /// What the board calls it [default: its name].
    #[arg(long)]
    pub label: Option<String>,
    /// The space (name or id) [default: your private space].
    #[arg(long, value_name = "SPACE")]
    pub space: Option<String>,
}

fn pipeline_request(cmd: PipelineCmd) -> Result<Request> {
    let (space, change) = match cmd {
        PipelineCmd::Add(a) | PipelineCmd::Edit(a) => (
            a.space,
            SchemaChange::SetPipeline {
                name: a.name.trim().to_lowercase(),
                label: a.label.unwrap_or_default().trim().to_string(),
                stages: rapport_model::custom::parse_stages(&a.stages)
                    .map_err(anyhow::Error::msg)?,
            },
        ),
        PipelineCmd::Retire { name, space } => (
            space,
            SchemaChange::RetirePipeline {
                name: name.trim().to_lowercase(),
            },
        ),
    };
    change.validate().map_err(anyhow::Error::msg)?;
    Ok(Request::ChangeSchema { space, change })
}

#[derive(Debug, Clone, Subcommand)]
pub enum KindCmd {
    /// Add a kind: `rapport schema kind add contract --title-label "Contract number"
    /// --space Joint`; then `rapport schema field add contract ends --type date` and
    /// `rapport add contract "Acme 2027" --set ends=2027-03-31`.
    Add {
        /// Its name: up to 40 lower-case letters, digits and _ (e.g. site_visit).
        name: String,
        /// What lists call many of them [default: the name with an s].
        #[arg(long)]
        plural: Option<String>,
        /// What its title field (`name`) is called, e.g. "Contract number" [default: Name].
        #[arg(long, value_name = "LABEL")]
        title_label: Option<String>,
        /// One line on what the kind is for.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// The space (name or id) [default: your private space].
        #[arg(long, value_name = "SPACE")]
        space: Option<String>,
    },
    /// Retire a kind: no new records of it; those there are stay, listed and restorable.
    Retire {
        name: String,
        #[arg(long, value_name = "SPACE")]
        space: Option<String>,
    },
    /// Bring a retired kind back.
    Restore {
        name: String,
        #[arg(long, value_name = "SPACE")]
        space: Option<String>,
    },
}

/// Which field, of which kind, in which space.
#[derive(Debug, Clone, Args)]
pub struct FieldRef {
    /// The record kind (company, person, deal, activity, ticket, campaign).
    pub kind: String,
    /// The field's name.
    pub name: String,
    /// The space (name or id) [default: your private space].
    #[arg(long, value_name = "SPACE")]
    pub space: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum FieldCmd {
    /// Add a custom field: `rapport schema field add company tier --type choice
    /// --choices gold,silver,bronze`.
    Add {
        #[command(flatten)]
        field: FieldRef,
        /// text, long_text, number, money, date, datetime, yes_no, choice,
        /// multi_choice, email, phone, url, percent or reference.
        #[arg(long = "type", value_name = "TYPE")]
        ty: String,
        /// The choices of a choice or multi_choice field, comma-separated.
        #[arg(long, value_name = "A,B,C")]
        choices: Option<String>,
        /// The kind a reference points at.
        #[arg(long, value_name = "KIND")]
        to: Option<String>,
        /// Every new record needs a value.
        #[arg(long)]
        required: bool,
        /// What forms and tables call it [default: its name].
        #[arg(long)]
        label: Option<String>,
        /// One line of help shown beside the field.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// The value a new record gets when none is given.
        #[arg(long, value_name = "VALUE")]
        default: Option<String>,
    },
    /// Give a field (custom or built-in) another label; its name stays.
    Relabel {
        #[command(flatten)]
        field: FieldRef,
        label: String,
    },
    /// Retire a custom field (hidden, values kept, restorable), or hide a built-in one.
    Retire {
        #[command(flatten)]
        field: FieldRef,
    },
    /// Bring a retired or hidden field back.
    Restore {
        #[command(flatten)]
        field: FieldRef,
    },
    /// Add a choice to a choice field (or bring a retired one back).
    AddChoice {
        #[command(flatten)]
        field: FieldRef,
        choice: String,
    },
    /// Retire a choice: records keep it, new input may not use it.
    RetireChoice {
        #[command(flatten)]
        field: FieldRef,
        choice: String,
    },
    /// Rename a choice in place: the records of the space that hold it are
    /// rewritten (signed edits, synced); one written offline meanwhile
    /// shows the old word as renamed.
    RenameChoice {
        #[command(flatten)]
        field: FieldRef,
        choice: String,
        /// The choice's new name.
        to: String,
    },
}

impl SchemaCmd {
    pub fn request(&self) -> Result<Request> {
        match self {
            SchemaCmd::Show { space, .. } => {
                // A mistyped kind is told before the node is asked.
                self.shown_kind()?;
                Ok(Request::Schema {
                    space: space.clone(),
                })
            }
            SchemaCmd::Field(cmd) => field_request(cmd.clone()),
            SchemaCmd::Kind(cmd) => kind_request(cmd.clone()),
            SchemaCmd::Pipeline(cmd) => pipeline_request(cmd.clone()),
        }
    }

    /// The kind `schema show` was limited to.
    pub fn shown_kind(&self) -> Result<Option<Kind>> {
        match self {
            SchemaCmd::Show { kind: Some(k), .. } => Ok(Some(k.parse()?)),
            _ => Ok(None),
        }
    }
}

fn kind_request(cmd: KindCmd) -> Result<Request> {
    let custom = |name: &str| -> Result<Kind> {
        let lower = name.trim().to_ascii_lowercase();
        match lower.parse::<Kind>() {
            Ok(k) if k.is_custom() => Ok(k),
            Ok(k) => anyhow::bail!("{k} is a built-in kind; give your kind another name"),
            Err(_) => anyhow::bail!(
                "`{name}` is not a kind name: use up to 40 lower-case letters, digits and _, \
                 starting with a letter (e.g. site_visit)"
            ),
        }
    };
    let (space, change) = match cmd {
        KindCmd::Add {
            name,
            plural,
            title_label,
            description,
            space,
        } => (
            space,
            SchemaChange::AddKind {
                kind: custom(&name)?,
                plural: plural.unwrap_or_default().trim().to_string(),
                title_label: title_label.unwrap_or_default().trim().to_string(),
                help: description.unwrap_or_default().trim().to_string(),
            },
        ),
        KindCmd::Retire { name, space } => (
            space,
            SchemaChange::RetireKind {
                kind: custom(&name)?,
            },
        ),
        KindCmd::Restore { name, space } => (
            space,
            SchemaChange::RestoreKind {
                kind: custom(&name)?,
            },
        ),
    };
    change.validate().map_err(anyhow::Error::msg)?;
    Ok(Request::ChangeSchema { space, change })
}

fn field_request(cmd: FieldCmd) -> Result<Request> {
    let (field, change) = match cmd {
        FieldCmd::Add {
            field,
            ty,
            choices,
            to,
            required,
            label,
            description,
            default,
        } => {
            let change = SchemaChange::AddField {
                kind: field.kind.parse()?,
                name: field.name.clone(),
                ty: ty.parse::<CustomType>().map_err(anyhow::Error::msg)?,
                label: label.unwrap_or_default().trim().to_string(),
                help: description.unwrap_or_default().trim().to_string(),
                required,
                default: default.map(|d| d.trim().to_string()),
                choices: choices
                    .as_deref()
                    .map(rapport_model::value::split_list)
                    .into_iter()
                    .flatten()
                    .map(|c| c.to_lowercase())
                    .collect(),
                target: to.as_deref().map(str::parse::<Kind>).transpose()?,
            };
            (field, change)
        }
        FieldCmd::Relabel { field, label } => {
            let change = SchemaChange::Relabel {
                kind: field.kind.parse()?,
                name: field.name.clone(),
                label: label.trim().to_string(),
            };
            (field, change)
        }
        FieldCmd::Retire { field } => {
            let change = SchemaChange::Retire {
                kind: field.kind.parse()?,
                name: field.name.clone(),
            };
            (field, change)
        }
        FieldCmd::Restore { field } => {
            let change = SchemaChange::Restore {
                kind: field.kind.parse()?,
                name: field.name.clone(),
            };
            (field, change)
        }
        FieldCmd::AddChoice { field, choice } => {
            let change = SchemaChange::AddChoice {
                kind: field.kind.parse()?,
                name: field.name.clone(),
                choice: choice.trim().to_lowercase(),
            };
            (field, change)
        }
        FieldCmd::RetireChoice { field, choice } => {
            let change = SchemaChange::RetireChoice {
                kind: field.kind.parse()?,
                name: field.name.clone(),
                choice: choice.trim().to_lowercase(),
            };
            (field, change)
        }
        FieldCmd::RenameChoice { field, choice, to } => {
            let change = SchemaChange::RenameChoice {
                kind: field.kind.parse()?,
                name: field.name.clone(),
                choice: choice.trim().to_lowercase(),
                to: to.trim().to_lowercase(),
            };
            (field, change)
        }
    };
    change.validate().map_err(anyhow::Error::msg)?;
    Ok(Request::ChangeSchema {
        space: field.space,
        change,
    })
}

/// `rapport schema show`, or what a change made of the schema.
pub fn show(out: &mut String, reply: &SchemaReply, only: Option<Kind>, json: bool) -> Result<()> {
    if json {
        return to_json(out, reply);
    }
    outln!(
        out,
        "Schema of {}{}",
        if reply.space == "private" {
            "your private space".to_string()
        } else {
            format!("space {} ({})", reply.space_name, reply.space)
        },
        if reply.may_change {
            ""
        } else {
            " (only its admins change it)"
        }
    );
    for k in reply
        .kinds
        .iter()
        .filter(|k| only.is_none_or(|o| o == k.kind))
    {
        // Built-in fields only where something about them changed, unless
        // one kind was asked for.
        let rows: Vec<Vec<String>> = k
            .fields
            .iter()
            .filter(|f| {
                only.is_some() || k.custom || f.custom || f.status != "active" || f.label != f.name
            })
            .map(row)
            .collect();
        if rows.is_empty() {
            continue;
        }
        if k.custom {
            outln!(
                out,
                "\n{} (custom kind, {}{})",
                k.kind,
                k.plural,
                if k.status == "active" {
                    ""
                } else {
                    ", retired"
                }
            );
        } else {
            outln!(out, "\n{}", k.kind);
        }
        outln!(
            out,
            "{}",
            table(
                &["field", "label", "type", "required", "status", "help"],
                &rows
            )
        );
    }
    if only.is_none()
        && !reply
            .kinds
            .iter()
            .any(|k| k.fields.iter().any(|f| f.custom))
    {
        outln!(
            out,
            "\nNo custom fields yet. Add one: rapport schema field add company tier --type choice --choices gold,silver"
        );
    }
    if only.is_none_or(|k| k == Kind::Deal) {
        for p in reply
            .pipelines
            .iter()
            .filter(|p| p.name != rapport_model::custom::SALES)
        {
            let stages: Vec<String> = p
                .stages
                .iter()
                .map(|s| match s.outcome {
                    Some(o) => format!("{} ({}%, {})", s.name, s.probability, o.as_str()),
                    None => format!("{} ({}%)", s.name, s.probability),
                })
                .collect();
            outln!(
                out,
                "\npipeline {} ({}{}): {}",
                p.name,
                p.title(),
                if p.retired { ", retired" } else { "" },
                stages.join(" → ")
            );
        }
    }
    for note in &reply.notes {
        outln!(out, "note: {note}");
    }
    Ok(())
}

fn row(f: &FieldInfo) -> Vec<String> {
    let mut ty = f.ty.clone();
    if !f.choices.is_empty() {
        ty = format!("{ty}: {}", f.choices.join("|"));
    }
    if !f.retired_choices.is_empty() {
        ty = format!("{ty} (retired: {})", f.retired_choices.join("|"));
    }
    if !f.refers_to.is_empty() {
        let kinds: Vec<&str> = f.refers_to.iter().map(|k| k.as_str()).collect();
        ty = format!("{ty} → {}", kinds.join("|"));
    }
    vec![
        f.name.clone(),
        if f.label == f.name {
            String::new()
        } else {
            f.label.clone()
        },
        ty,
        if f.required {
            "yes".into()
        } else {
            String::new()
        },
        format!("{}{}", f.status, if f.custom { ", custom" } else { "" }),
        f.help.clone(),
    ]
}
