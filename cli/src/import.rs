//! `rapport import` and `rapport export --format csv|vcard|ics`: files in
//! and out.
//!
//! The file is read here (`rapport_node::import::file`: encoding,
//! delimiter, columns) and its rows go to the node in batches, each an
//! operation (`ImportRows`) that the node matches, checks and stores
//! durably; so an import runs the same on the running node and on the
//! data directory, and a crash loses at most the batch in flight.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use rapport_exchange::{DayOrder, JsonRecords, records_csv, write_rejected};
use rapport_model::{Kind, RecordView};
use rapport_node::import::file::{FileImportError, FileOptions, FilePlan, Format, MAX_DOCUMENT};
use rapport_node::import::{Action, ImportSummary, Mode, RowOutcome};
use rapport_node::ops::{Reply, Request};
use serde_json::json;

use crate::ExportFormat;
use crate::commands::{Executor, explain, print_json, to_json};
use crate::output::{local_time, table};

/// Bring records in from a file, list past imports, or undo one.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub cmd: Option<ImportCmd>,
    #[command(flatten)]
    pub run: ImportRun,
}

#[derive(Debug, Subcommand)]
pub enum ImportCmd {
    /// The imports made on this device, newest first.
    List,
    /// Delete what an import created and put back the fields it updated
    /// (fields someone changed since are left alone).
    Undo { id: String },
}

#[derive(Debug, Args)]
pub struct ImportRun {
    /// A CSV file (Excel, Outlook, Google Contacts, HubSpot, Salesforce,
    /// Rapport, ...), a vCard file (.vcf), a calendar (.ics) or Rapport's
    /// JSON export.
    pub file: Option<PathBuf>,
    /// The file's format [default: from its extension].
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// What each row is [default: person; activity for a calendar; every
    /// kind in a JSON export].
    #[arg(long)]
    pub kind: Option<String>,
    /// The space to import into (name or id) [default: your private space].
    #[arg(long, value_name = "SPACE")]
    pub space: Option<String>,
    /// Read a column into a field (repeatable); FIELD `-` skips the column.
    /// Person rows also take first_name, middle_name, last_name, company_domain.
    #[arg(long = "map", value_name = "COLUMN=FIELD")]
    pub map: Vec<String>,
    /// Fields that identify an existing record, tried in order
    /// [default: emails for people; domain, then name for companies].
    #[arg(long = "match", value_name = "FIELD[,FIELD]", value_delimiter = ',')]
    pub match_on: Vec<String>,
    /// create: only new records; update: only existing ones; upsert: both.
    #[arg(long, value_enum, default_value = "upsert")]
    pub mode: ModeArg,
    /// An empty cell clears the field (by default it leaves it alone).
    #[arg(long)]
    pub blank_clears: bool,
    /// Say what would happen, row by row; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How the file writes decimals [default: comma in `;`-separated files].
    #[arg(long, value_enum)]
    pub decimal: Option<DecimalArg>,
    /// How the file writes dates with slashes, 03/04/2026 [default: refuse ambiguous ones].
    #[arg(long, value_enum)]
    pub dates: Option<DatesArg>,
    /// Where rows that could not be imported go, with the reason, to fix
    /// and import again [default: FILE.errors.csv beside the file].
    #[arg(long, value_name = "FILE")]
    pub errors: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FileFormat {
    Csv,
    Vcard,
    Ics,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Create,
    Update,
    Upsert,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DecimalArg {
    Comma,
    Point,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DatesArg {
    Dmy,
    Mdy,
}

/// Rows whose outcome (and, with errors, cells) the CLI keeps at most: a
/// dry run's list and the error file stop there, with a word saying so.
const KEEP_ROWS: usize = 100_000;

/// Rows of each action listed in a dry run's text output.
const SHOWN: usize = 20;

pub fn run(args: ImportArgs, dir: &Path, json: bool, out: &mut String) -> Result<()> {
    match args.cmd {
        Some(ImportCmd::List) => {
            let mut exec = Executor::new(dir, false);
            match exec.run(Request::Imports)? {
                Reply::Imports { imports } => list(out, &imports, json),
                other => bail!("unexpected answer {other:?}"),
            }
        }
        Some(ImportCmd::Undo { id }) => {
            let mut exec = Executor::new(dir, false);
            match exec.run(Request::ImportUndo { id: id.clone() })? {
                Reply::ImportUndone(r) => {
                    if json {
                        return to_json(out, &r);
                    }
                    outln!(
                        out,
                        "Undid import {id}: {} records deleted, {} fields restored, {} fields kept (changed since the import).",
                        r.deleted,
                        r.restored,
                        r.kept
                    );
                    Ok(())
                }
                other => bail!("unexpected answer {other:?}"),
            }
        }
        None => {
            let Some(file) = args.run.file.clone() else {
                bail!(
                    "give a file to import (`rapport import contacts.csv`), or `import list` / `import undo ID`"
                );
            };
            import_file(&args.run, &file, dir, json, out)
        }
    }
}

fn import_file(a: &ImportRun, file: &Path, dir: &Path, json: bool, out: &mut String) -> Result<()> {
    let format = match a.format {
        Some(FileFormat::Csv) => Format::Csv,
        Some(FileFormat::Vcard) => Format::Vcard,
        Some(FileFormat::Ics) => Format::Ics,
        Some(FileFormat::Json) => Format::Json,
        None => Format::of_name(&file.to_string_lossy()),
    };
    let kinds: Vec<Kind> = match (&a.kind, format) {
        (Some(k), _) => vec![k.parse()?],
        // A JSON export holds every kind: each is imported in turn, what
        // others refer to first.
        (None, Format::Json) => {
            let f = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
            let (_, text, _) = rapport_exchange::text::read_text(f, MAX_DOCUMENT)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            JsonRecords::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
                .kinds()
        }
        (None, f) => vec![f.default_kind()],
    };
    if kinds.is_empty() {
        bail!("{}: no records in this file", file.display());
    }
    let mut reports = Vec::new();
    for kind in kinds {
        let mut text = String::new();
        let report = import_kind(a, file, format, kind, dir, json, &mut text)?;
        out.push_str(&text);
        reports.extend(report);
    }
    if json {
        match reports.len() {
            1 => print_json(out, &reports[0])?,
            _ => print_json(out, &serde_json::Value::Array(reports))?,
        }
    }
    Ok(())
}

/// Imports the rows of one kind; with `json`, returns the report instead
/// of writing it.
fn import_kind(
    a: &ImportRun,
    file: &Path,
    format: Format,
    kind: Kind,
    dir: &Path,
    json: bool,
    out: &mut String,
) -> Result<Option<serde_json::Value>> {
    let opts = FileOptions {
        format,
        space: a.space.clone(),
        mode: match a.mode {
            ModeArg::Create => Mode::Create,
            ModeArg::Update => Mode::Update,
            ModeArg::Upsert => Mode::Upsert,
        },
        match_on: a.match_on.clone(),
        blank_clears: a.blank_clears,
        dry_run: a.dry_run,
        map: a.map.clone(),
        decimal_comma: a.decimal.map(|d| matches!(d, DecimalArg::Comma)),
        slash_dates: a.dates.map(|d| match d {
            DatesArg::Dmy => DayOrder::Dmy,
            DatesArg::Mdy => DayOrder::Mdy,
        }),
        ..FileOptions::new(kind)
    };
    let open = || {
        File::open(file)
            .map(BufReader::new)
            .with_context(|| format!("cannot open {}", file.display()))
    };
    let source = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    let shown = |e: FileImportError| match e {
        FileImportError::Op(op) => explain(op),
        FileImportError::File(f) => anyhow::anyhow!("{}: {f}", file.display()),
        other => anyhow::anyhow!("{other}"),
    };
    let mut exec = Executor::new(dir, true);
    let mut run = |r: Request| exec.run_op(r);
    let plan = FilePlan::read(&source, open()?, open()?, &opts, &mut run).map_err(shown)?;
    let begun = plan.begin(&opts, &mut run).map_err(shown)?;
    let mapped = plan.columns.mapped();
    let unmapped = plan.columns.unmapped();
    if !json {
        eprintln!("Reading {source} ({kind} records): {}.", plan.describe());
        let pairs: Vec<String> = mapped.iter().map(|(c, f)| format!("{c} → {f}")).collect();
        eprintln!("Columns: {}", pairs.join(", "));
        if !unmapped.is_empty() {
            eprintln!(
                "Not imported (no field; --map COLUMN=FIELD reads one): {}",
                unmapped.join(", ")
            );
        }
        if begun.resume_after > 0 {
            eprintln!(
                "Resuming import {} of this file after row {} (stored by an earlier run).",
                begun.id, begun.resume_after
            );
        }
    }
    let bar = indicatif::ProgressBar::new(plan.lines.saturating_sub(1));
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    } else {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} lines, {per_sec}, {eta} left",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    }
    let report = plan
        .run(
            open()?,
            &begun,
            // Every row's outcome for a dry run; a real run's JSON lists
            // the rows with errors.
            a.dry_run,
            KEEP_ROWS,
            &mut run,
            &mut |line| bar.set_position(line),
        )
        .map_err(shown)?;
    bar.finish_and_clear();
    let errors_file = if report.failed.is_empty() {
        None
    } else {
        let path = a.errors.clone().unwrap_or_else(|| {
            let mut name = file.file_stem().unwrap_or_default().to_os_string();
            name.push(".errors.csv");
            file.with_file_name(name)
        });
        write_errors(&path, &plan.headers, &report.failed)?;
        Some(path)
    };
    let counts = report.counts;
    if json {
        return Ok(Some(json!({
                "id": report.id,
                "kind": kind,
                "format": plan.format,
                "dry_run": report.dry_run,
                "file": file,
                "encoding": plan.encoding,
                "delimiter": (plan.delimiter as char).to_string(),
                "locale": plan.locale,
                "columns": mapped.iter().map(|(c, f)| json!({"column": c, "field": f})).collect::<Vec<_>>(),
                "unmapped": unmapped,
                "resumed_after": report.resumed_after,
                "counts": counts,
                "seconds": report.seconds,
                "errors_file": errors_file,
                "remarks": report.noted,
                "rows": if report.dry_run {
                    report.rows.clone()
                } else {
                    report.failed.iter().map(|(o, _)| o.clone()).collect()
                },
        })));
    }
    let verb = if a.dry_run {
        "Would import"
    } else {
        "Imported"
    };
    outln!(
        out,
        "{verb} {source} ({kind}): {} created, {} updated, {} unchanged, {} skipped, {} with errors{} ({:.1} s).",
        counts.create,
        counts.update,
        counts.unchanged,
        counts.skip,
        counts.error,
        if counts.companies > 0 {
            format!("; {} companies created", counts.companies)
        } else {
            String::new()
        },
        report.seconds
    );
    if a.dry_run {
        for action in [Action::Create, Action::Update, Action::Skip] {
            let of: Vec<&RowOutcome> = report.rows.iter().filter(|o| o.action == action).collect();
            for o in of.iter().take(SHOWN) {
                outln!(out, "  row {:>5}: {}", o.number, describe(o));
            }
            if of.len() > SHOWN {
                outln!(out, "  ... and {} more", of.len() - SHOWN);
            }
        }
    }
    if !a.dry_run {
        for o in report.noted.iter().take(SHOWN) {
            outln!(out, "  row {} (line {}): {}", o.number, o.line, describe(o));
        }
        if report.noted.len() > SHOWN {
            outln!(
                out,
                "  ... and {} more rows with remarks",
                report.noted.len() - SHOWN
            );
        }
    }
    for (o, _) in report.failed.iter().take(SHOWN) {
        for p in &o.problems {
            outln!(
                out,
                "  row {} (line {}), {}: `{}`: {}",
                o.number,
                o.line,
                p.column,
                p.value,
                p.reason
            );
        }
    }
    if report.failed.len() > SHOWN {
        outln!(
            out,
            "  ... and {} more rows with errors",
            report.failed.len() - SHOWN
        );
    }
    if let Some(path) = errors_file {
        let first = if report.counts.error as usize > report.failed.len() {
            format!("The first {} rows with errors are", report.failed.len())
        } else {
            "Rows with errors are".to_string()
        };
        outln!(
            out,
            "{first} in {}: fix them and import that file.",
            path.display()
        );
    }
    match &report.id {
        None => outln!(out, "Nothing was written (--dry-run)."),
        Some(id) => {
            outln!(out, "Undo it with: rapport import undo {id}");
            // Matching goes by e-mail, domain or name; what looks alike
            // under another address is for the user to see.
            if counts.create > 0 && matches!(kind, Kind::Person | Kind::Company) {
                outln!(
                    out,
                    "Look for records it may have doubled: rapport duplicates {kind}"
                );
            }
        }
    }
    Ok(None)
}

fn describe(o: &RowOutcome) -> String {
    let what = match o.action {
        Action::Update => format!("update {}", o.fields.join(", ")),
        other => other.as_str().to_string(),
    };
    match (&o.record, &o.note) {
        (Some(id), Some(note)) => format!("{what} {id} ({note})"),
        (Some(id), None) => format!("{what} {id}"),
        (None, Some(note)) => format!("{what} ({note})"),
        (None, None) => what,
    }
}

/// The rows that failed, as they were, with the reason in a last column.
fn write_errors(
    path: &Path,
    headers: &[String],
    failed: &[(RowOutcome, Vec<String>)],
) -> Result<()> {
    let rows: Vec<(Vec<String>, String)> = failed
        .iter()
        .map(|(o, cells)| (cells.clone(), o.reasons()))
        .collect();
    let f = File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    write_rejected(std::io::BufWriter::new(f), headers, &rows)
        .and_then(|mut w| std::io::Write::flush(&mut w))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn list(out: &mut String, imports: &[ImportSummary], json: bool) -> Result<()> {
    if json {
        return to_json(out, &imports);
    }
    if imports.is_empty() {
        outln!(
            out,
            "No imports yet. Bring a file in: rapport import contacts.csv"
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = imports
        .iter()
        .map(|i| {
            let state = match (&i.undone, i.finished) {
                (Some(_), _) => "undone",
                (None, true) => "done",
                (None, false) => "unfinished",
            };
            vec![
                i.id.clone(),
                local_time(i.started),
                i.source.clone(),
                i.kind.to_string(),
                format!(
                    "{} created, {} updated, {} errors",
                    i.counts.create + i.counts.companies,
                    i.counts.update,
                    i.counts.error
                ),
                state.into(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["ID", "STARTED", "FILE", "KIND", "ROWS", "STATE"],
        &rows,
    ));
    Ok(())
}

/// Live records as CSV, vCard or iCalendar (`export --format ...`): into
/// `dir` (one CSV file per kind; `people.vcf`; `activities.ics`), or to
/// standard output.
pub fn export_file(
    out: &mut String,
    format: ExportFormat,
    records: &[RecordView],
    kind: Option<Kind>,
    dir: Option<&Path>,
    json: bool,
) -> Result<()> {
    let (name, only, text) = match format {
        ExportFormat::Vcard => {
            if kind.is_some_and(|k| k != Kind::Person) {
                bail!("vCard holds people: `export person --format vcard`");
            }
            let n = live(records, Kind::Person, &[]);
            ("people.vcf", n, rapport_exchange::people_vcard(records))
        }
        ExportFormat::Ics => {
            if kind.is_some_and(|k| k != Kind::Activity) {
                bail!("iCalendar holds meetings and tasks: `export activity --format ics`");
            }
            let n = live(records, Kind::Activity, &["meeting", "task"]);
            (
                "activities.ics",
                n,
                rapport_exchange::activities_ics(records),
            )
        }
        _ => return export_csv(out, records, kind, dir, json),
    };
    let Some(dir) = dir else {
        out.push_str(&text);
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    if json {
        return print_json(out, &json!({"records": only, "files": 1, "out": path}));
    }
    outln!(out, "Exported {only} records into {}", path.display());
    Ok(())
}

/// Live records of `kind` (of these types, if any are given).
fn live(records: &[RecordView], kind: Kind, types: &[&str]) -> usize {
    records
        .iter()
        .filter(|r| r.kind == kind && !r.deleted)
        .filter(|r| types.is_empty() || r.text("type").is_some_and(|t| types.contains(&t)))
        .count()
}

/// Live records of `kind` as CSV (`export --format csv`): into `dir` as
/// KIND.csv, one file per kind when none is given, or to standard output.
fn export_csv(
    out: &mut String,
    records: &[RecordView],
    kind: Option<Kind>,
    dir: Option<&Path>,
    json: bool,
) -> Result<()> {
    let Some(dir) = dir else {
        let Some(kind) = kind else {
            bail!(
                "CSV holds one kind per file: name the kind (`export person --format csv`) or give a directory with --out DIR"
            );
        };
        out.push_str(&String::from_utf8(records_csv(Vec::new(), kind, records)?)?);
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let kinds: Vec<Kind> = kind.map_or_else(|| crate::commands::kinds_of(records), |k| vec![k]);
    let (mut written, mut files) = (0, 0);
    for k in kinds {
        let of_kind = records.iter().filter(|r| r.kind == k && !r.deleted).count();
        if kind.is_none() && of_kind == 0 {
            continue;
        }
        let path = dir.join(format!("{k}.csv"));
        let f = File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
        records_csv(std::io::BufWriter::new(f), k, records)
            .and_then(|mut w| std::io::Write::flush(&mut w))
            .with_context(|| format!("cannot write {}", path.display()))?;
        written += of_kind;
        files += 1;
    }
    if json {
        return print_json(
            out,
            &json!({"records": written, "files": files, "out": dir}),
        );
    }
    outln!(
        out,
        "Exported {written} records into {files} files in {}",
        dir.display()
    );
    Ok(())
}
