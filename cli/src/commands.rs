//! From a parsed command to a typed operation (`rapport_node::ops`), and
//! from its reply to what the user reads: tables and lines, or JSON.
//!
//! The operation runs on the running node (through its local API) or, when
//! none runs, on the data directory opened for this one command: the same
//! `Ops::execute` either way, so both paths behave alike.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rapport_model::{Kind, RecordView};
use rapport_node::ops::{
    self, AuditReply, Caller, ErrorCode, ListQuery, MemberRow, MembersReply, OpError, Ops, Reply,
    Request, ShowReply, Status, TimelineReply, Whoami,
};
use rapport_node::timeline::Entry;
use rapport_node::{OpenMode, Repo, parse_assignment};
use serde_json::json;

use crate::output::{Display, clip, local_time, short_id_len, table};
use crate::{
    ActivityCmd, CampaignCmd, Command, CompanyCmd, ConsentCmd, DealCmd, ExportFormat, LineItemCmd,
    PersonCmd, ProductCmd, SpaceCmd, TaskCmd, TicketCmd,
};

/// How a reply is shown: what the command was, where the reply alone does
/// not say.
#[derive(Debug)]
pub enum View {
    /// A record written: "Created company Acme (id)".
    Wrote(&'static str),
    Deleted,
    Init,
    Plain,
    RelayStatus,
    /// A list of one kind, with the columns asked for.
    List {
        kind: Kind,
        columns: Vec<String>,
    },
    /// A space's schema, all kinds or one; after a change, what it was.
    Schema {
        kind: Option<Kind>,
        changed: Option<String>,
    },
    Export {
        out: Option<PathBuf>,
    },
    /// CSV, vCard or iCalendar written from every record (references
    /// are named by their titles).
    ExportFile {
        format: ExportFormat,
        kind: Option<Kind>,
        out: Option<PathBuf>,
    },
    SpaceCreated,
    Joined,
    /// Deals by stage, of every pipeline or the one named.
    Pipeline {
        name: Option<String>,
    },
    /// A report: its tables, or one section (counted from 1) as CSV.
    Report {
        csv: Option<usize>,
    },
    /// A person's export, written into this directory.
    PrivacyExport {
        out: PathBuf,
    },
}

/// A command as an operation: what to ask, how to show the answer, and
/// whether running it without a node may create the data directory.
#[derive(Debug)]
pub struct Planned {
    pub request: Request,
    pub view: View,
    pub create: bool,
}

fn plan(request: Request, view: View) -> Planned {
    Planned {
        request,
        view,
        create: false,
    }
}

fn creating(request: Request, view: View) -> Planned {
    Planned {
        request,
        view,
        create: true,
    }
}

pub(crate) fn assignments(items: &[String]) -> Result<Vec<(String, String)>> {
    Ok(items
        .iter()
        .map(|s| parse_assignment(s))
        .collect::<Result<Vec<_>, _>>()?)
}

/// The operation a command runs; `None` for the commands the CLI does
/// itself (`up`, `open`, `bench`, `repair`, restoring a backup file).
pub fn plan_of(command: &Command) -> Result<Option<Planned>> {
    let add = |kind: Kind, inputs: &[(String, String)], extra: &crate::Extra| -> Result<Planned> {
        let mut fields = inputs.to_vec();
        fields.extend(assignments(&extra.sets)?);
        Ok(creating(
            Request::Create {
                kind,
                space: extra.space.clone(),
                fields,
            },
            View::Wrote("Created"),
        ))
    };
    let record = |r: &String| r.clone();
    Ok(Some(match command {
        Command::Up(_)
        | Command::Open { .. }
        | Command::Bench(_)
        | Command::Repair { .. }
        | Command::Import(_)
        | Command::Relay(crate::RelayCmd::Run(_)) => return Ok(None),
        Command::Restore { reference } if crate::recovery::is_backup(Path::new(reference)) => {
            return Ok(None);
        }
        Command::Init { name, org, region } => creating(
            Request::SetIdentity {
                name: name.clone(),
                org: org.clone(),
                region: region.clone(),
            },
            View::Init,
        ),
        Command::Whoami => plan(Request::Whoami, View::Plain),
        Command::Status => plan(Request::Status, View::Plain),
        Command::Relay(crate::RelayCmd::Status) => plan(Request::Status, View::RelayStatus),
        Command::Space(cmd) => match cmd {
            SpaceCmd::Create { name } => creating(
                Request::CreateSpace { name: name.clone() },
                View::SpaceCreated,
            ),
            SpaceCmd::List => plan(Request::Spaces, View::Plain),
            SpaceCmd::Members { space } => plan(
                Request::Members {
                    space: space.clone(),
                },
                View::Plain,
            ),
            SpaceCmd::Remove { space, member } => plan(
                Request::RemoveMember {
                    space: space.clone(),
                    member: member.clone(),
                },
                View::Plain,
            ),
            SpaceCmd::Invite {
                space,
                role,
                org,
                ttl_hours,
            } => plan(
                Request::Invite {
                    space: space.clone(),
                    role: *role,
                    org: org.clone(),
                    ttl_hours: *ttl_hours,
                },
                View::Plain,
            ),
            SpaceCmd::Join { ticket } => plan(
                Request::Join {
                    ticket: ticket.clone(),
                },
                View::Joined,
            ),
        },
        Command::Add { kind, title, extra } => {
            let kind: Kind = kind.parse()?;
            let title = title
                .iter()
                .map(|t| (kind.fields()[0].name.to_string(), t.clone()))
                .collect::<Vec<_>>();
            add(kind, &title, extra)?
        }
        Command::Company(CompanyCmd::Add(a)) => add(Kind::Company, &a.inputs, &a.extra)?,
        Command::Person(PersonCmd::Add(a)) => add(Kind::Person, &a.inputs, &a.extra)?,
        Command::Deal(DealCmd::Add(a)) => add(Kind::Deal, &a.inputs, &a.extra)?,
        Command::Activity(ActivityCmd::Add(a)) => add(Kind::Activity, &a.inputs, &a.extra)?,
        Command::Ticket(TicketCmd::Add(a)) => add(Kind::Ticket, &a.inputs, &a.extra)?,
        Command::Campaign(CampaignCmd::Add(a)) => add(Kind::Campaign, &a.inputs, &a.extra)?,
        Command::Product(ProductCmd::Add(a)) => add(Kind::Product, &a.inputs, &a.extra)?,
        Command::LineItem(LineItemCmd::Add(a)) => add(Kind::LineItem, &a.inputs, &a.extra)?,
        Command::Consent(ConsentCmd::Add(a)) => add(Kind::Consent, &a.inputs, &a.extra)?,
        Command::Campaign(CampaignCmd::Enroll {
            campaign,
            people,
            skip_without_consent,
        }) => plan(
            Request::Enroll {
                campaign: campaign.clone(),
                people: people.clone(),
                skip_without_consent: *skip_without_consent,
            },
            View::Plain,
        ),
        Command::Task(TaskCmd::Done { reference }) => plan(
            Request::CompleteTask {
                record: record(reference),
            },
            View::Wrote("Done:"),
        ),
        Command::List {
            kind,
            filters,
            deleted,
            sort,
            limit,
            columns,
        } => {
            let kind: Kind = kind.parse()?;
            let columns: Vec<String> = columns
                .iter()
                .flat_map(|c| rapport_model::value::split_list(c))
                .map(|c| c.to_ascii_lowercase().replace('-', "_"))
                .collect();
            plan(
                Request::List(ListQuery {
                    kind,
                    filters: assignments(filters)?,
                    deleted: *deleted,
                    sort: sort.clone(),
                    limit: *limit,
                    after: None,
                }),
                View::List { kind, columns },
            )
        }
        Command::Search { query, limit } => plan(
            Request::Search {
                query: query.clone(),
                limit: Some(*limit),
            },
            View::Plain,
        ),
        Command::Show { reference } => plan(
            Request::Show {
                record: record(reference),
            },
            View::Plain,
        ),
        Command::Edit {
            reference,
            sets,
            unsets,
        } => {
            if sets.is_empty() && unsets.is_empty() {
                bail!("nothing to change: give --set FIELD=VALUE or --unset FIELD");
            }
            plan(
                Request::Edit {
                    record: record(reference),
                    set: assignments(sets)?,
                    unset: unsets.clone(),
                },
                View::Wrote("Updated"),
            )
        }
        Command::Delete { reference } => plan(
            Request::Delete {
                record: record(reference),
            },
            View::Deleted,
        ),
        Command::Restore { reference } => plan(
            Request::Restore {
                record: record(reference),
            },
            View::Wrote("Restored"),
        ),
        Command::Backup { out } => {
            // The node may run in another directory: it gets a full path.
            let path = std::env::current_dir()
                .map(|cwd| cwd.join(out))
                .unwrap_or_else(|_| out.clone());
            plan(Request::Backup { path }, View::Plain)
        }
        Command::Timeline { reference } => plan(
            Request::Timeline {
                record: record(reference),
            },
            View::Plain,
        ),
        Command::Audit { space } => plan(
            Request::Audit {
                space: space.clone(),
            },
            View::Plain,
        ),
        Command::Report(args) => plan(
            args.request(),
            View::Report {
                csv: args.csv.then_some(args.section),
            },
        ),
        Command::Rates(cmd) => plan(cmd.request(), View::Plain),
        Command::Agenda(args) if args.dismiss.is_some() => {
            plan(args.request()?, View::Wrote("Dismissed the reminders of"))
        }
        Command::Agenda(args) => plan(args.request()?, View::Plain),
        Command::Calendar(cmd @ crate::agenda::CalendarCmd::Move { .. }) => {
            plan(cmd.request(), View::Wrote("Moved"))
        }
        Command::Calendar(cmd) => plan(cmd.request(), View::Plain),
        Command::Privacy(cmd) => {
            let Some(request) = cmd.request()? else {
                return Ok(None);
            };
            let view = match cmd {
                crate::privacy::PrivacyCmd::Export { out, .. } => {
                    View::PrivacyExport { out: out.clone() }
                }
                _ => View::Plain,
            };
            plan(request, view)
        }
        Command::Pipeline { name } => plan(
            Request::Pipeline,
            View::Pipeline {
                name: name.as_deref().map(|n| n.trim().to_lowercase()),
            },
        ),
        Command::Export { kind, format, out } => {
            let kind = kind.as_deref().map(str::parse::<Kind>).transpose()?;
            if matches!(format, ExportFormat::Automerge) && out.is_none() {
                bail!(
                    "--format automerge writes one file per record: give a directory with --out DIR"
                );
            }
            match format {
                ExportFormat::Json => {
                    plan(Request::Export { kind }, View::Export { out: out.clone() })
                }
                // Every kind: references are written as titles.
                ExportFormat::Csv | ExportFormat::Vcard | ExportFormat::Ics => plan(
                    Request::Export { kind: None },
                    View::ExportFile {
                        format: *format,
                        kind,
                        out: out.clone(),
                    },
                ),
                ExportFormat::Automerge => plan(
                    Request::ExportDocuments { kind },
                    View::Export { out: out.clone() },
                ),
            }
        }
        Command::Duplicates { kind } => plan(
            Request::Duplicates {
                kind: kind.as_deref().map(str::parse::<Kind>).transpose()?,
            },
            View::Plain,
        ),
        Command::Merge(args) => plan(args.request()?, View::Plain),
        Command::Fields { kind, space } => plan(
            Request::Fields {
                kind: kind.parse()?,
                space: space.clone(),
            },
            View::Plain,
        ),
        Command::Schema(cmd) => {
            let request = cmd.request()?;
            let view = match &request {
                Request::ChangeSchema { change, .. } => View::Schema {
                    kind: Some(change.kind()),
                    changed: Some(change.describe()),
                },
                _ => View::Schema {
                    kind: cmd.shown_kind()?,
                    changed: None,
                },
            };
            plan(request, view)
        }
        Command::Token(cmd) => plan(cmd.clone().request(), View::Plain),
        Command::Webhook(cmd) => plan(cmd.clone().request(), View::Plain),
    }))
}

/// Runs operations for one command: on the running node if one answers,
/// else on the data directory, opened once.
pub struct Executor {
    dir: PathBuf,
    create: bool,
    local: Option<Ops>,
}

impl Executor {
    pub fn new(dir: &Path, create: bool) -> Self {
        Executor {
            dir: dir.to_path_buf(),
            create,
            local: None,
        }
    }

    /// [`Executor::run`] for `rapport_node::import::file`: the node's
    /// refusal kept as it is, failing to reach the node as transport.
    pub fn run_op(
        &mut self,
        request: Request,
    ) -> Result<Reply, rapport_node::import::file::FileImportError> {
        use rapport_node::import::file::FileImportError;
        if self.local.is_none() {
            match crate::client::op(&self.dir, &request) {
                Ok(Some(answer)) => return answer.map_err(FileImportError::Op),
                Ok(None) => {}
                Err(e) => return Err(FileImportError::Transport(format!("{e:#}"))),
            }
        }
        if self.local.is_none() {
            let mode = if self.create {
                OpenMode::Create
            } else {
                OpenMode::Existing
            };
            let repo = Repo::open(&self.dir, mode).map_err(|e| FileImportError::Op(e.into()))?;
            self.local = Some(Ops::local(std::sync::Arc::new(repo)));
        }
        let ops = self
            .local
            .as_ref()
            .ok_or_else(|| FileImportError::Transport("the data directory is not open".into()))?;
        ops.execute(&Caller::user(), request)
            .map_err(FileImportError::Op)
    }

    pub fn run(&mut self, request: Request) -> Result<Reply> {
        use rapport_node::import::file::FileImportError;
        self.run_op(request).map_err(|e| match e {
            FileImportError::Op(op) => explain(op),
            other => anyhow::Error::msg(other.to_string()),
        })
    }
}

/// An operation's error in the CLI's words: the message, and what to type
/// next where there is something.
pub fn explain(e: OpError) -> anyhow::Error {
    let hint = match e.code {
        ErrorCode::NotInitialized if e.message.contains("not a Rapport data directory") => {
            Some("use another with --data-dir or RAPPORT_DATA_DIR".to_string())
        }
        ErrorCode::NotInitialized => Some(
            "`rapport init` creates it (so does adding a record), or point --data-dir at an existing one"
                .to_string(),
        ),
        ErrorCode::NotFound if e.message.starts_with("no space") => {
            Some("`rapport space list` shows yours".to_string())
        }
        ErrorCode::NotFound if e.message.starts_with("no token") => {
            Some("`rapport token list` shows them".to_string())
        }
        ErrorCode::NotFound if e.message.starts_with("no import") => {
            Some("`rapport import list` shows them".to_string())
        }
        ErrorCode::NotFound if e.message.starts_with("no open import") => {
            Some("run the import again: it resumes where it stopped".to_string())
        }
        ErrorCode::NotFound if e.message.starts_with("no webhook") => {
            Some("`rapport webhook list` shows them".to_string())
        }
        ErrorCode::NotFound => Some("`rapport list KIND` shows what there is".to_string()),
        ErrorCode::Deleted => e
            .subject
            .as_ref()
            .map(|id| format!("`rapport restore {id}` brings it back")),
        ErrorCode::NeedsNode => {
            Some("start the node with `rapport up` (in another terminal)".to_string())
        }
        _ => None,
    };
    let mut text = e.message.clone();
    let others: Vec<String> = e
        .fields
        .iter()
        .filter(|f| f.message != e.message)
        .map(|f| format!("\n  {}: {}", f.field, f.message))
        .collect();
    if !others.is_empty() {
        text.push_str("\nalso:");
        text.extend(others);
    }
    if let Some(hint) = hint {
        text.push_str("; ");
        text.push_str(&hint);
    }
    anyhow::Error::msg(text)
}

/// Runs a planned command and writes what the user reads into `out`.
pub fn run(planned: Planned, exec: &mut Executor, json: bool, out: &mut String) -> Result<()> {
    let Planned { request, view, .. } = planned;
    let reply = exec.run(request)?;
    render(out, view, reply, json)
}

pub(crate) fn print_json(out: &mut String, v: &serde_json::Value) -> Result<()> {
    outln!(out, "{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn to_json<T: serde::Serialize>(out: &mut String, v: &T) -> Result<()> {
    print_json(out, &serde_json::to_value(v)?)
}

fn render(out: &mut String, view: View, reply: Reply, json: bool) -> Result<()> {
    match reply {
        Reply::Record(r) => {
            // A warning, never a refusal: on standard error, so that a
            // script reading the record is not disturbed.
            for l in &r.likely {
                eprintln!(
                    "warning: {} may be the same as {} ({}): {}. Compare them: rapport show {}; merge them: rapport merge {} {}",
                    r.record.title(),
                    l.title,
                    l.id,
                    l.reasons.join("; "),
                    l.id,
                    l.id,
                    r.record.id
                );
            }
            if json {
                return print_json(out, &r.record.to_json());
            }
            let v = &r.record;
            match view {
                View::Deleted => outln!(
                    out,
                    "Deleted {} {} (undo: rapport restore {})",
                    v.kind,
                    v.title(),
                    v.id
                ),
                View::Wrote(verb) => outln!(out, "{verb} {} {}  ({})", v.kind, v.title(), v.id),
                _ => outln!(out, "{} {}  ({})", v.kind, v.title(), v.id),
            }
            Ok(())
        }
        Reply::Whoami(w) => whoami(out, &w, matches!(view, View::Init), json),
        Reply::Status(s) if matches!(view, View::RelayStatus) => {
            crate::relay::status(out, &s, json)
        }
        Reply::Status(s) => status(out, &s, json),
        Reply::Fields { fields } => fields_table(out, &fields, json),
        Reply::Schema(s) => {
            let (only, changed) = match view {
                View::Schema { kind, changed } => (kind, changed),
                _ => (None, None),
            };
            if let (Some(changed), false) = (&changed, json) {
                let mut first = changed.chars();
                let changed: String = first
                    .next()
                    .map(|c| c.to_uppercase().chain(first).collect())
                    .unwrap_or_default();
                outln!(out, "Done: {changed}.");
                match s.records_changed {
                    0 => {}
                    1 => outln!(out, "1 record was rewritten with the new name."),
                    n => outln!(out, "{n} records were rewritten with the new name."),
                }
            }
            crate::schema::show(out, &s, only, json)
        }
        Reply::Duplicates { clusters } => duplicates(out, &clusters, json),
        Reply::Merged { merge, record } => crate::merge::merged(out, &merge, &record, json),
        Reply::Merges { merges } => crate::merge::list(out, &merges, json),
        Reply::MergeUndone(r) => crate::merge::undone(out, &r, json),
        Reply::Likely { record, matches } => {
            if json {
                return to_json(out, &matches);
            }
            if matches.is_empty() {
                outln!(out, "Nothing looks like {}.", record.title());
            }
            for m in matches {
                outln!(
                    out,
                    "{:>3}  {} ({}): {}",
                    m.score,
                    m.title,
                    m.id,
                    m.reasons.join("; ")
                );
            }
            Ok(())
        }
        Reply::Show(s) => show(out, &s, json),
        Reply::List(page) => {
            let (kind, asked) = match view {
                View::List { kind, columns } => (kind, columns),
                _ => (
                    page.records.first().map_or(Kind::Company, |v| v.kind),
                    Vec::new(),
                ),
            };
            let columns = if !asked.is_empty() {
                asked
            } else if !page.columns.is_empty() {
                page.columns.clone()
            } else {
                kind.columns().iter().map(|c| c.to_string()).collect()
            };
            list(
                out,
                kind,
                &columns,
                &page.records,
                &page.titles,
                Some(page.total),
                json,
            )
        }
        Reply::Timeline(t) => timeline(out, &t, json),
        Reply::Pipeline { stages, others } => {
            let name = match &view {
                View::Pipeline { name } => name.clone(),
                _ => None,
            };
            let mut every = vec![rapport_node::pipeline::PipelineReport {
                name: rapport_model::custom::SALES.into(),
                title: "Sales".into(),
                stages,
            }];
            every.extend(others);
            match name {
                Some(n) => {
                    let Some(one) = every.into_iter().find(|p| p.name == n) else {
                        anyhow::bail!("there is no pipeline `{n}` (rapport schema show deal)");
                    };
                    pipeline(out, &one.stages, json)
                }
                None if json => pipeline(out, &every[0].stages, json),
                None => {
                    let several = every.len() > 1;
                    for p in &every {
                        if several {
                            outln!(out, "{} pipeline", p.title);
                        }
                        pipeline(out, &p.stages, json)?;
                    }
                    Ok(())
                }
            }
        }
        Reply::Report(report) => {
            let csv = match view {
                View::Report { csv } => csv,
                _ => None,
            };
            crate::reports::render(out, &report, csv, json)
        }
        Reply::Rates(rates) => crate::reports::render_rates(out, rates.as_ref(), json),
        Reply::Agenda(agenda) => crate::agenda::render(out, &agenda, json),
        Reply::Feed { feed, secret } => {
            crate::agenda::render_feed(out, &feed, secret.as_deref(), json)
        }
        Reply::Feeds { feeds } => crate::agenda::render_feeds(out, &feeds, json),
        Reply::Reminders { due } => to_json(out, &due),
        Reply::Calendar { ics } => {
            out.push_str(&ics);
            Ok(())
        }
        Reply::Search(found) => {
            if json {
                return to_json(out, &found);
            }
            if found.hits.is_empty() {
                outln!(out, "Nothing found.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = found
                .hits
                .iter()
                .map(|h| {
                    vec![
                        h.kind.to_string(),
                        clip(&h.title, 40),
                        h.detail.clone().unwrap_or_default(),
                        h.id.to_string(),
                    ]
                })
                .collect();
            outln!(out, "{}", table(&["kind", "title", "match", "id"], &rows));
            if found.total > found.hits.len() {
                outln!(
                    out,
                    "{} of {} matches (--limit shows more)",
                    found.hits.len(),
                    found.total
                );
            }
            Ok(())
        }
        Reply::Export { records } => {
            if let View::ExportFile {
                format,
                kind,
                out: dir,
            } = &view
            {
                return crate::import::export_file(
                    out,
                    *format,
                    &records,
                    *kind,
                    dir.as_deref(),
                    json,
                );
            }
            let View::Export { out: dir, .. } = view else {
                return print_json(out, &records_json(&records));
            };
            let Some(dir) = dir else {
                return print_json(out, &records_json(&records));
            };
            export_json_files(out, &records, &dir, json)
        }
        Reply::Erased(r) => crate::privacy::print_erased(out, &r, json),
        Reply::Enrolled(e) => crate::privacy::print_enrolled(out, &e, json),
        Reply::RetentionRules { rules } => crate::privacy::print_rules(out, &rules, json),
        Reply::Retention { runs } => crate::privacy::print_retention(out, &runs, json),
        Reply::Objections { objections } => {
            crate::privacy::print_objections(out, &objections, json)
        }
        Reply::Erasures { erasures } => crate::privacy::print_erasures(out, &erasures, json),
        Reply::PrivacyExport(export) => {
            let View::PrivacyExport { out: dir } = view else {
                return to_json(out, &export);
            };
            crate::privacy::write_export(out, &export, &dir, json)
        }
        Reply::Documents { documents } => {
            let View::Export { out: Some(dir), .. } = view else {
                bail!(
                    "--format automerge writes one file per record: give a directory with --out DIR"
                );
            };
            export_documents(out, &documents, &dir, json)
        }
        Reply::Backup(r) => {
            if json {
                return to_json(out, &r);
            }
            outln!(
                out,
                "Backed up {} journal entries to {} ({}) in {:.1} s.",
                r.entries,
                r.path.display(),
                rapport_node::limits::human_bytes(r.bytes),
                r.seconds
            );
            outln!(
                out,
                "It holds this device's secret key: keep it where only you can read it. \
                 `rapport restore {} --data-dir DIR` makes a working data directory from it.",
                r.path.display()
            );
            Ok(())
        }
        Reply::Space(s) => {
            if json {
                return to_json(out, &s);
            }
            match view {
                View::Joined => outln!(
                    out,
                    "Joined space {} ({}): {} members, {} records so far",
                    s.name,
                    s.id,
                    s.members,
                    s.records
                ),
                _ => {
                    outln!(out, "Created space {} ({})", s.name, s.id);
                    outln!(
                        out,
                        "Invite a partner with: rapport space invite \"{}\"",
                        s.name
                    );
                }
            }
            Ok(())
        }
        Reply::Spaces { spaces } => {
            if json {
                return to_json(out, &spaces);
            }
            if spaces.is_empty() {
                outln!(
                    out,
                    "No shared spaces. Create one with `rapport space create NAME`, or join one with a ticket."
                );
                return Ok(());
            }
            let rows: Vec<Vec<String>> = spaces
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.id.to_string(),
                        s.members.to_string(),
                        s.records.to_string(),
                    ]
                })
                .collect();
            outln!(
                out,
                "{}",
                table(&["space", "id", "members", "records"], &rows)
            );
            Ok(())
        }
        Reply::Members(m) => crate::membership::members(out, &m, json),
        Reply::Removed { removed } => crate::membership::removed(out, &removed, json),
        Reply::Invite(i) => {
            if json {
                return print_json(out, &json!({"ticket": i.ticket, "expires": i.expires}));
            }
            outln!(out, "{}", i.ticket);
            outln!(out);
            outln!(
                out,
                "Grants the {} role; one use, valid {} h. On the other node: rapport space join <ticket>",
                i.role,
                i.ttl_hours
            );
            Ok(())
        }
        Reply::Audit(a) => crate::membership::audit(out, &a, json),
        reply @ (Reply::Token(_)
        | Reply::Tokens { .. }
        | Reply::Webhook(_)
        | Reply::Webhooks { .. }
        | Reply::Deliveries { .. }) => {
            if json {
                return to_json(out, &reply);
            }
            crate::integrations::render(out, &reply);
            Ok(())
        }
        // `rapport import` drives these itself (crate::import).
        reply @ (Reply::ImportBegun(_)
        | Reply::ImportRows { .. }
        | Reply::Import(_)
        | Reply::Imports { .. }
        | Reply::ImportUndone(_)) => to_json(out, &reply),
    }
}

pub fn data_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(d) => Ok(d),
        None => rapport_node::datadir::default_data_dir().context(
            "this platform has no default data directory; give one with --data-dir or RAPPORT_DATA_DIR",
        ),
    }
}

/// `rapport open`: a one-time login link from the running node, opened in
/// the desktop's browser unless `print`.
pub fn open(dir: &std::path::Path, print: bool, json: bool) -> Result<()> {
    let Some(link) = crate::client::login_link(dir)? else {
        bail!(
            "no node is running for {}; start one with `rapport up` (it prints the web UI's address)",
            dir.display()
        );
    };
    if json {
        println!("{}", serde_json::json!({ "login": link }));
        return Ok(());
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let opened = !print
        && std::process::Command::new(opener)
            .arg(&link)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if opened {
        println!("Opened the web UI in your browser (the login link works once, for 15 minutes).");
    } else {
        println!("Open this link in a browser on this computer (it works once, for 15 minutes):");
        println!("{link}");
    }
    Ok(())
}

fn duplicates(
    out: &mut String,
    clusters: &[rapport_node::duplicates::Cluster],
    json: bool,
) -> Result<()> {
    if json {
        return to_json(out, &clusters);
    }
    if clusters.is_empty() {
        outln!(out, "No likely duplicates.");
        return Ok(());
    }
    outln!(
        out,
        "{} groups of likely duplicates (score 0-100, best first):",
        clusters.len()
    );
    for c in clusters {
        let names: Vec<String> = c
            .records
            .iter()
            .map(|m| format!("{} ({})", m.title, m.id))
            .collect();
        outln!(out, "{:>3}  {}: {}", c.score, c.kind, names.join(", "));
        outln!(out, "     {}", c.reasons.join("; "));
    }
    outln!(
        out,
        "\nMerge a group into the record to keep: rapport merge KEEP OTHER... (undo: rapport merge undo ID)"
    );
    Ok(())
}

fn records_json(records: &[RecordView]) -> serde_json::Value {
    serde_json::Value::Array(records.iter().map(RecordView::to_json).collect())
}

fn whoami(out: &mut String, w: &Whoami, init: bool, json: bool) -> Result<()> {
    if json {
        return to_json(out, w);
    }
    if init {
        outln!(out, "Rapport data directory: {}", w.data_dir.display());
    }
    outln!(
        out,
        "name        {}",
        w.name
            .as_deref()
            .unwrap_or("(not set: rapport init --name NAME)")
    );
    outln!(
        out,
        "org         {}",
        w.org
            .as_deref()
            .unwrap_or("(not set: rapport init --org ORG)")
    );
    if let Some(region) = &w.region {
        outln!(out, "region      {region}");
    }
    outln!(out, "device      {}", w.device);
    outln!(out, "data dir    {}", w.data_dir.display());
    outln!(out, "records     {}", w.records);
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    for c in &w.spaces {
        outln!(
            out,
            "space       {}: {}, user {} of {}, certified by {}{}",
            c.space,
            c.role,
            or_dash(&c.user),
            or_dash(&c.org),
            c.certified_by,
            if c.removed { " (removed)" } else { "" }
        );
    }
    Ok(())
}

fn list(
    out: &mut String,
    kind: Kind,
    cols: &[String],
    views: &[RecordView],
    titles: &ops::Titles,
    total: Option<usize>,
    json: bool,
) -> Result<()> {
    if json {
        return print_json(out, &records_json(views));
    }
    if views.is_empty() {
        outln!(
            out,
            "No {kind} records. Add one with `rapport {kind} add ...`."
        );
        return Ok(());
    }
    let mut d = Display::new(titles);
    let mut header = vec!["id"];
    header.extend(cols.iter().map(String::as_str));
    let ids: Vec<_> = views.iter().map(|v| v.id).collect();
    let id_len = short_id_len(&ids);
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let mut row = vec![v.id.to_string()[..id_len].to_string()];
            row.extend(cols.iter().map(|c| clip(&d.field(v, c), 40)));
            row
        })
        .collect();
    outln!(out, "{}", table(&header, &rows));
    let noun = |n: usize| if n == 1 { "record" } else { "records" };
    match total {
        Some(total) if total > views.len() => {
            outln!(out, "{} of {} {}", views.len(), total, noun(total))
        }
        _ => outln!(out, "{} {}", views.len(), noun(views.len())),
    }
    Ok(())
}

fn show(out: &mut String, s: &ShowReply, json: bool) -> Result<()> {
    let v = &s.record;
    if json {
        let mut j = v.to_json();
        if let (Some(race), Some(o)) = (&s.delete_race, j.as_object_mut()) {
            let mut r = serde_json::to_value(race)?;
            if let Some(r) = r.as_object_mut() {
                r.insert("summary".into(), race.summary().into());
            }
            o.insert("delete_race".into(), r);
        }
        if let (Some(from), Some(o)) = (&s.merged_from, j.as_object_mut()) {
            o.insert("merged_from".into(), from.id.to_string().into());
        }
        return print_json(out, &j);
    }
    let mut d = Display::new(&s.titles);
    if let Some(from) = &s.merged_from {
        outln!(
            out,
            "{} ({}) was merged into this record.\n",
            from.title(),
            from.id
        );
    }
    outln!(out, "{}", d.card(v, s.space_name.as_deref(), &s.misfits));
    if let Some(race) = &s.delete_race {
        outln!(out, "\n! {}", race.summary());
    }
    let live: Vec<_> = s.related.iter().filter(|r| !r.record.deleted).collect();
    if !live.is_empty() {
        outln!(out, "\nrelated");
        for r in live {
            outln!(
                out,
                "  {:<9} {:<40} {:<10} {}",
                r.record.kind.as_str(),
                clip(&r.record.title(), 40),
                format!("({})", r.field),
                r.record.id
            );
        }
    }
    Ok(())
}

fn timeline(out: &mut String, t: &TimelineReply, json: bool) -> Result<()> {
    let (v, entries) = (&t.record, &t.entries);
    if json {
        return to_json(out, entries);
    }
    let mut d = Display::new(&t.titles);
    outln!(out, "Timeline of {} {}\n", v.kind, v.title());
    for e in entries {
        match e {
            Entry::Change {
                time,
                author,
                action,
                fields,
                verified,
                race,
                ..
            } => {
                let mark = if *verified {
                    ""
                } else {
                    "  [SIGNATURE DOES NOT VERIFY]"
                };
                outln!(out, "{}  {action} by {author}{mark}", local_time(*time));
                if let Some(race) = race {
                    outln!(out, "    ! {race}");
                }
                for f in fields {
                    let show = |val: &Option<rapport_model::FieldValue>, d: &mut Display| {
                        val.as_ref().map_or("—".to_string(), |x| {
                            clip(&d.value(v.kind, &f.field, x), 50)
                        })
                    };
                    let before = show(&f.before, &mut d);
                    let after = show(&f.after, &mut d);
                    if action == "created" {
                        outln!(out, "    {}: {after}", f.field);
                    } else {
                        outln!(out, "    {}: {before} → {after}", f.field);
                    }
                }
            }
            Entry::Activity {
                time,
                activity,
                subject,
                done,
                ..
            } => {
                let status = match done {
                    Some(true) => " [done]",
                    Some(false) => " [open]",
                    None => "",
                };
                outln!(out, "{}  {activity}: {subject}{status}", local_time(*time));
            }
        }
    }
    if entries.is_empty() {
        outln!(out, "(no history)");
    }
    Ok(())
}

fn pipeline(out: &mut String, stages: &[rapport_node::pipeline::Stage], json: bool) -> Result<()> {
    if json {
        return to_json(out, &stages);
    }
    let mut rows = Vec::new();
    for s in stages {
        if s.currencies.is_empty() {
            rows.push(vec![
                s.stage.clone(),
                s.count.to_string(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for (i, (cur, m)) in s.currencies.iter().enumerate() {
            let (stage, count) = if i == 0 {
                (s.stage.clone(), s.count.to_string())
            } else {
                (String::new(), String::new())
            };
            rows.push(vec![
                stage,
                count,
                cur.clone(),
                m.total.clone(),
                m.weighted.clone(),
            ]);
        }
    }
    outln!(
        out,
        "{}",
        table(&["stage", "deals", "currency", "total", "weighted"], &rows)
    );
    Ok(())
}

/// The kinds of `records`: the built-in ones, then the custom ones in
/// the order they first come, for exports that write a file a kind.
pub fn kinds_of(records: &[RecordView]) -> Vec<Kind> {
    let mut kinds = Kind::ALL.to_vec();
    for r in records {
        if !kinds.contains(&r.kind) {
            kinds.push(r.kind);
        }
    }
    kinds
}

fn fields_table(out: &mut String, fields: &[ops::FieldInfo], json: bool) -> Result<()> {
    if json {
        return to_json(out, &fields);
    }
    let rows: Vec<Vec<String>> = fields
        .iter()
        .map(|f| {
            let ty = if !f.choices.is_empty() {
                f.choices.join("|")
            } else if !f.refers_to.is_empty() {
                format!(
                    "{}{}",
                    f.refers_to
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join("|"),
                    if f.list { " (list)" } else { "" }
                )
            } else {
                f.ty.clone()
            };
            let name = if f.custom {
                format!("{} (custom)", f.name)
            } else {
                f.name.clone()
            };
            vec![
                name,
                ty,
                if f.required {
                    "yes".into()
                } else {
                    String::new()
                },
                f.help.clone(),
            ]
        })
        .collect();
    outln!(
        out,
        "{}",
        table(&["field", "type", "required", "help"], &rows)
    );
    Ok(())
}

fn export_json_files(
    out: &mut String,
    records: &[RecordView],
    dir: &Path,
    json: bool,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let bar = indicatif::ProgressBar::new(records.len() as u64);
    let mut written = 0usize;
    for k in kinds_of(records) {
        let of_kind: Vec<_> = records
            .iter()
            .filter(|v| v.kind == k)
            .map(RecordView::to_json)
            .collect();
        if of_kind.is_empty() {
            continue;
        }
        let path = dir.join(format!("{k}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&of_kind)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written += 1;
        bar.inc(of_kind.len() as u64);
    }
    bar.finish_and_clear();
    exported(out, records.len(), written, dir, json)
}

fn export_documents(
    out: &mut String,
    documents: &[ops::Document],
    dir: &Path,
    json: bool,
) -> Result<()> {
    let bar = indicatif::ProgressBar::new(documents.len() as u64);
    for d in documents {
        let kind_dir = dir.join(d.kind.as_str());
        std::fs::create_dir_all(&kind_dir)
            .with_context(|| format!("cannot create {}", kind_dir.display()))?;
        let bytes = data_encoding::BASE64
            .decode(d.automerge.as_bytes())
            .context("the node sent a document that is not base64")?;
        let path = kind_dir.join(format!("{}.automerge", d.id));
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    exported(out, documents.len(), documents.len(), dir, json)
}

fn exported(out: &mut String, records: usize, files: usize, dir: &Path, json: bool) -> Result<()> {
    if json {
        return print_json(
            out,
            &json!({"records": records, "files": files, "out": dir}),
        );
    }
    outln!(
        out,
        "Exported {records} records into {files} files in {}",
        dir.display()
    );
    Ok(())
}

fn status(out: &mut String, s: &Status, json: bool) -> Result<()> {
    if json {
        return to_json(out, s);
    }
    let Some(n) = &s.net else {
        outln!(out, "node        not running (start it with `rapport up`)");
        outln!(out, "records     {}", s.records);
        return Ok(());
    };
    outln!(out, "node        {}", n.node_id);
    outln!(out, "addresses   {}", n.addrs.join(", "));
    outln!(out, "relay       {}", n.relay);
    outln!(out, "discovery   {}", n.discovery);
    outln!(
        out,
        "traffic     {} B sent, {} B received, {} frames refused, {} sessions turned away (too many at once)",
        n.bytes_sent,
        n.bytes_received,
        n.refused_frames,
        n.sessions_turned_away
    );
    outln!(
        out,
        "peers       {}",
        if n.connected.is_empty() {
            "none connected".to_string()
        } else {
            n.connected.join(", ")
        }
    );
    let rows: Vec<Vec<String>> = n
        .spaces
        .iter()
        .map(|(id, sp)| {
            vec![
                sp.name.clone(),
                id.get(..10).unwrap_or(id).to_string(),
                sp.role.map_or("-".into(), |r| r.to_string()),
                sp.members.to_string(),
                sp.records.to_string(),
                sp.pending_out.to_string(),
                crate::output::sync_time(sp.last_sync.as_deref()),
                sp.rejected.to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        outln!(
            out,
            "spaces      none shared yet (`rapport space create NAME`)"
        );
        return Ok(());
    }
    outln!(out);
    outln!(
        out,
        "{}",
        table(
            &[
                "space",
                "id",
                "role",
                "members",
                "records",
                "pending",
                "last sync (utc)",
                "rejected"
            ],
            &rows
        )
    );
    for sp in n.spaces.values() {
        if let Some(reason) = &sp.refused {
            outln!(out, "{}: a member refused to sync: {reason}", sp.name);
        }
    }
    if !n.members.is_empty() {
        let rows: Vec<Vec<String>> = n
            .members
            .iter()
            .map(|(device, r)| {
                let how = match &r.unreachable_since {
                    Some(since) if r.path == "unknown" => format!(
                        "unreachable since {}",
                        crate::output::sync_time(Some(since))
                    ),
                    _ => r.path.clone(),
                };
                vec![
                    device.get(..12).unwrap_or(device).to_string(),
                    how,
                    if r.in_use.is_empty() {
                        r.announced.join(", ")
                    } else {
                        r.in_use.join(", ")
                    },
                    r.relay.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        outln!(out);
        outln!(
            out,
            "{}",
            table(&["member", "reached", "addresses", "relay"], &rows)
        );
    }
    Ok(())
}

/// Rows of members for JSON, keyed by device: current ones, and removed.
pub(crate) fn members_json(m: &MembersReply) -> serde_json::Value {
    let by_device = |removed: bool| -> serde_json::Map<String, serde_json::Value> {
        m.members
            .iter()
            .filter(|r| r.removed.is_some() == removed)
            .map(|r| {
                (
                    r.device.clone(),
                    serde_json::to_value(r).unwrap_or_default(),
                )
            })
            .collect()
    };
    json!({
        "id": m.space.id,
        "name": m.space.name,
        "members": by_device(false),
        "removed": by_device(true),
    })
}

pub(crate) fn short(device: &str) -> String {
    device.get(..12).unwrap_or(device).to_string()
}

pub(crate) fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// The removed members `space remove` reports.
pub(crate) fn removed_lines(out: &mut String, removed: &[MemberRow]) {
    for m in removed {
        outln!(
            out,
            "Removed {} ({}, {}) from the space.",
            short(&m.device),
            or_dash(&m.user),
            or_dash(&m.org)
        );
    }
}

pub(crate) fn audit_json(a: &AuditReply) -> serde_json::Value {
    serde_json::to_value(a).unwrap_or_default()
}
