//! `rapport import` and `rapport export --format csv`: files in and out.
//!
//! The file is read here (encoding, delimiter, columns: `rapport-exchange`)
//! and its rows go to the node in batches of `import::BATCH_ROWS`, each an
//! operation (`ImportRows`) that the node matches, checks and stores
//! durably; so an import runs the same on the running node and on the
//! data directory, and a crash loses at most the batch in flight.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use rapport_exchange::{Columns, CsvWriter, DayOrder, Locale, Table, text};
use rapport_model::{Kind, RecordId, RecordView};
use rapport_node::import::{
    Action, BATCH_ROWS, Counts, ImportRow, ImportSpec, ImportSummary, Mode, RowOutcome,
};
use rapport_node::ops::{Reply, Request};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::commands::{Executor, print_json, to_json};
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
    /// A CSV file (from Excel, Outlook, Google Contacts, HubSpot, Salesforce, Rapport, ...).
    pub file: Option<PathBuf>,
    /// The file's format [default: from its extension].
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// What each row is.
    #[arg(long, default_value = "person")]
    pub kind: String,
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
    let kind: Kind = a.kind.parse()?;
    let format = a.format.unwrap_or_else(|| {
        match file
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("vcf" | "vcard") => FileFormat::Vcard,
            Some("ics" | "ical") => FileFormat::Ics,
            Some("json") => FileFormat::Json,
            _ => FileFormat::Csv,
        }
    });
    if !matches!(format, FileFormat::Csv) {
        bail!(
            "Rapport imports CSV files so far; vCard, iCalendar and JSON import are not built yet. \
             Export the contacts as CSV (Outlook, Google Contacts and Apple Contacts can) and import that"
        );
    }
    let open = || File::open(file).with_context(|| format!("cannot open {}", file.display()));
    let mut hasher = Hashing {
        inner: BufReader::new(open()?),
        hash: Sha256::new(),
    };
    let found = text::inspect(&mut hasher).with_context(|| format!("{}", file.display()))?;
    let digest = rapport_proto::hex(&hasher.hash.finalize());
    let mut locale = Locale::for_delimiter(found.delimiter);
    if let Some(d) = a.decimal {
        locale.decimal_comma = matches!(d, DecimalArg::Comma);
    }
    locale.slash_dates = a.dates.map(|d| match d {
        DatesArg::Dmy => DayOrder::Dmy,
        DatesArg::Mdy => DayOrder::Mdy,
    });
    let table = Table::open(BufReader::new(open()?), &found)
        .with_context(|| format!("{}", file.display()))?;
    let headers = table.headers().to_vec();
    let columns = Columns::guess(kind, &headers, &a.map)?;
    let mapped = columns.mapped();
    let unmapped = columns.unmapped();
    let delimiter = match found.delimiter {
        b'\t' => "tab".to_string(),
        d => format!("`{}`", d as char),
    };
    let source = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    let mut exec = Executor::new(dir, true);
    let begun = match exec.run(Request::ImportBegin(ImportSpec {
        kind,
        space: a.space.clone(),
        mode: match a.mode {
            ModeArg::Create => Mode::Create,
            ModeArg::Update => Mode::Update,
            ModeArg::Upsert => Mode::Upsert,
        },
        match_on: a.match_on.clone(),
        blank_clears: a.blank_clears,
        dry_run: a.dry_run,
        source: source.clone(),
        digest,
        columns: mapped
            .iter()
            .map(|(c, f)| (c.clone(), f.to_string()))
            .collect(),
    }))? {
        Reply::ImportBegun(b) => b,
        other => bail!("unexpected answer {other:?}"),
    };
    if !json {
        eprintln!(
            "Reading {source}: {}, {delimiter}-separated, {}.",
            found.encoding.as_str(),
            locale.describe()
        );
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
    let bar = indicatif::ProgressBar::new(found.lines.saturating_sub(1));
    if !json {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} rows, {per_sec}, {eta} left",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = Instant::now();
    let mut outcomes: Vec<RowOutcome> = Vec::new();
    let mut failed: Vec<(RowOutcome, Vec<String>)> = Vec::new();
    let mut batch: Vec<ImportRow> = Vec::with_capacity(BATCH_ROWS);
    let mut cells: HashMap<u64, Vec<String>> = HashMap::new();
    let mut blank = 0u64;
    let mut counts = Counts::default();
    let mut send = |batch: &mut Vec<ImportRow>,
                    cells: &mut HashMap<u64, Vec<String>>,
                    exec: &mut Executor|
     -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(batch);
        let done = rows.last().map_or(0, |r| r.line);
        let reply = exec.run(Request::ImportRows {
            id: begun.id.clone(),
            rows,
        })?;
        let Reply::ImportRows { outcomes: got } = reply else {
            bail!("unexpected answer to a batch of rows");
        };
        for o in got {
            counts.add(o.action);
            let row = cells.remove(&o.number).unwrap_or_default();
            if o.action == Action::Error {
                failed.push((o.clone(), row));
            }
            if a.dry_run || json {
                outcomes.push(o);
            }
        }
        cells.clear();
        bar.set_position(done);
        Ok(())
    };
    for row in table {
        let row = row.with_context(|| format!("{}", file.display()))?;
        if row.is_blank() {
            blank += 1;
            continue;
        }
        if row.number <= begun.resume_after {
            continue;
        }
        let mapped = columns.row(&row.cells, &locale);
        cells.insert(row.number, row.cells);
        batch.push(ImportRow {
            number: row.number,
            line: row.line,
            inputs: mapped.inputs,
            id: mapped.id,
            company_domain: mapped.company_domain,
            problems: mapped.problems,
        });
        if batch.len() >= BATCH_ROWS {
            send(&mut batch, &mut cells, &mut exec)?;
        }
    }
    send(&mut batch, &mut cells, &mut exec)?;
    bar.finish_and_clear();
    let summary = match exec.run(Request::ImportEnd {
        id: begun.id.clone(),
    })? {
        Reply::Import(s) => s,
        other => bail!("unexpected answer {other:?}"),
    };
    counts.skip += blank;
    counts.companies = summary.counts.companies;
    let seconds = started.elapsed().as_secs_f64();
    let errors_file = if failed.is_empty() {
        None
    } else {
        let path = a.errors.clone().unwrap_or_else(|| {
            let mut name = file.file_stem().unwrap_or_default().to_os_string();
            name.push(".errors.csv");
            file.with_file_name(name)
        });
        write_errors(&path, &headers, &failed)?;
        Some(path)
    };
    if json {
        return print_json(
            out,
            &json!({
                "id": if a.dry_run { None } else { Some(&begun.id) },
                "dry_run": a.dry_run,
                "file": file,
                "encoding": found.encoding,
                "delimiter": (found.delimiter as char).to_string(),
                "locale": locale,
                "columns": mapped.iter().map(|(c, f)| json!({"column": c, "field": f})).collect::<Vec<_>>(),
                "unmapped": unmapped,
                "resumed_after": begun.resume_after,
                "counts": counts,
                "seconds": seconds,
                "errors_file": errors_file,
                "rows": outcomes,
            }),
        );
    }
    let verb = if a.dry_run {
        "Would import"
    } else {
        "Imported"
    };
    outln!(
        out,
        "{verb} {source}: {} created, {} updated, {} unchanged, {} skipped, {} with errors{} ({:.1} s).",
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
        seconds
    );
    if a.dry_run {
        for action in [Action::Create, Action::Update, Action::Skip] {
            let of: Vec<&RowOutcome> = outcomes.iter().filter(|o| o.action == action).collect();
            for o in of.iter().take(SHOWN) {
                outln!(out, "  row {:>5}: {}", o.number, describe(o));
            }
            if of.len() > SHOWN {
                outln!(out, "  ... and {} more", of.len() - SHOWN);
            }
        }
    }
    for (o, _) in failed.iter().take(SHOWN) {
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
    if failed.len() > SHOWN {
        outln!(
            out,
            "  ... and {} more rows with errors",
            failed.len() - SHOWN
        );
    }
    if let Some(path) = errors_file {
        outln!(
            out,
            "Rows with errors are in {}: fix them and import that file.",
            path.display()
        );
    }
    if a.dry_run {
        outln!(out, "Nothing was written (--dry-run).");
    } else {
        outln!(out, "Undo it with: rapport import undo {}", begun.id);
    }
    Ok(())
}

fn describe(o: &RowOutcome) -> String {
    let what = match o.action {
        Action::Create => "create".to_string(),
        Action::Update => format!("update {}", o.fields.join(", ")),
        Action::Unchanged => "unchanged".into(),
        Action::Skip => "skip".into(),
        Action::Error => "error".into(),
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
    let mut w = csv_writer(path)?;
    let mut header = headers.to_vec();
    header.push("Rapport error".into());
    w.write_record(&header)?;
    for (o, cells) in failed {
        let reasons: Vec<String> = o
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.column, p.reason))
            .collect();
        let mut row = cells.clone();
        row.resize(headers.len(), String::new());
        row.push(reasons.join("; "));
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}

fn csv_writer(path: &Path) -> Result<csv::Writer<File>> {
    let mut f = File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut f, "\u{FEFF}".as_bytes())?;
    Ok(csv::Writer::from_writer(f))
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

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Live records of `kind` as CSV (`export --format csv`): into `dir` as
/// KIND.csv, one file per kind when none is given, or to standard output.
pub fn export_csv(
    out: &mut String,
    records: &[RecordView],
    kind: Option<Kind>,
    dir: Option<&Path>,
    json: bool,
) -> Result<()> {
    let titles: HashMap<RecordId, String> = records.iter().map(|r| (r.id, r.title())).collect();
    let title_of = |id: RecordId| titles.get(&id).cloned();
    let live = |k: Kind| records.iter().filter(move |r| r.kind == k && !r.deleted);
    let Some(dir) = dir else {
        let Some(kind) = kind else {
            bail!(
                "CSV holds one kind per file: name the kind (`export person --format csv`) or give a directory with --out DIR"
            );
        };
        let mut w = CsvWriter::new(Vec::new(), kind)?;
        for r in live(kind) {
            w.record(r, title_of)?;
        }
        out.push_str(&String::from_utf8(w.finish()?)?);
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let kinds: Vec<Kind> = kind.map_or_else(|| Kind::ALL.to_vec(), |k| vec![k]);
    let mut written = 0;
    let mut files = 0;
    for k in kinds {
        if kind.is_none() && live(k).next().is_none() {
            continue;
        }
        let path = dir.join(format!("{k}.csv"));
        let f = File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
        let mut w = CsvWriter::new(std::io::BufWriter::new(f), k)?;
        for r in live(k) {
            w.record(r, title_of)?;
            written += 1;
        }
        w.finish()?;
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
