//! A whole file through an import session: read it (`rapport-exchange`),
//! map its columns, send its rows in batches, collect what became of each.
//! The CLI runs it against the running node or the data directory, the
//! web UI against its node: one loop, whoever drives it. `run` says how a
//! request reaches the node.

use std::collections::HashMap;
use std::io::Read;
use std::time::Instant;

use rapport_exchange::{
    CALENDAR_COLUMNS, CARD_COLUMNS, CellProblem, Columns, DayOrder, Encoding, FileError,
    JsonRecords, Locale, MapError, Row, Table, calendar_rows, card_rows, text,
};
use rapport_model::{Kind, SpaceId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Action, BATCH_ROWS, Begun, Counts, ImportRow, ImportSpec, Mode, RowOutcome};
use crate::ops::{OpError, Reply, Request};

/// Text of the rows sent in one request, at most (about): wide rows (long
/// notes) make a batch smaller, so a request stays far under the local
/// API's body limit.
const BATCH_BYTES: usize = 512 << 10;

/// What a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// A table: spreadsheets, address books, other CRMs.
    #[default]
    Csv,
    /// vCard 2.1, 3.0 or 4.0: phones, Apple Contacts, Outlook, Google.
    Vcard,
    /// iCalendar: events become meetings, to-dos tasks.
    Ics,
    /// Rapport's own JSON export.
    Json,
}

impl Format {
    /// The format a file's name says (`.vcf`, `.ics`, `.json`), else CSV.
    pub fn of_name(name: &str) -> Format {
        let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("vcf" | "vcard") => Format::Vcard,
            Some("ics" | "ical" | "ifb") => Format::Ics,
            Some("json") => Format::Json,
            _ => Format::Csv,
        }
    }

    pub fn parse(name: &str) -> Option<Format> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "csv" => Format::Csv,
            "vcard" | "vcf" => Format::Vcard,
            "ics" | "ical" | "icalendar" => Format::Ics,
            "json" => Format::Json,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "CSV",
            Format::Vcard => "vCard",
            Format::Ics => "iCalendar",
            Format::Json => "JSON",
        }
    }

    /// The kind a file of this format holds when the user names none.
    pub fn default_kind(self) -> Kind {
        match self {
            Format::Ics => Kind::Activity,
            _ => Kind::Person,
        }
    }

    /// What one item of the file is called, in messages.
    fn item(self) -> &'static str {
        match self {
            Format::Csv => "row",
            Format::Vcard => "card",
            Format::Ics => "event",
            Format::Json => "record",
        }
    }
}

/// The largest vCard, iCalendar or JSON file read: these are read whole
/// (a CSV file streams). An address book of 100k cards is about 30 MB.
pub const MAX_DOCUMENT: u64 = 64 << 20;

/// How to import a file, as the user said it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileOptions {
    #[serde(default)]
    pub format: Format,
    pub kind: Kind,
    pub space: Option<String>,
    pub mode: Mode,
    pub match_on: Vec<String>,
    pub blank_clears: bool,
    pub dry_run: bool,
    /// `COLUMN=FIELD` pairs (`-` skips a column).
    pub map: Vec<String>,
    /// `Some(true)`: `1.234,56`; `None`: by the delimiter.
    pub decimal_comma: Option<bool>,
    pub slash_dates: Option<DayOrder>,
}

impl FileOptions {
    pub fn new(kind: Kind) -> Self {
        FileOptions {
            format: Format::Csv,
            kind,
            space: None,
            mode: Mode::Upsert,
            match_on: Vec::new(),
            blank_clears: false,
            dry_run: false,
            map: Vec::new(),
            decimal_comma: None,
            slash_dates: None,
        }
    }
}

/// Why a file was not imported (nothing of it was written), or why an
/// import stopped (the batches before are stored; run it again to resume).
#[derive(Debug, thiserror::Error)]
pub enum FileImportError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Op(#[from] OpError),
    /// The node could not be reached.
    #[error("{0}")]
    Transport(String),
}

/// A file read and its columns mapped, before anything is written.
#[derive(Debug)]
pub struct FilePlan {
    pub source: String,
    pub format: Format,
    pub encoding: Encoding,
    pub delimiter: u8,
    pub locale: Locale,
    /// Lines of the file, the header included.
    pub lines: u64,
    pub headers: Vec<String>,
    pub columns: Columns,
    body: Body,
    digest: String,
}

/// Where a plan's rows come from: a CSV file read again as it streams,
/// or the rows of a document read whole.
#[derive(Debug)]
enum Body {
    Csv(text::Inspection),
    Rows(Vec<Row>),
}

/// What an import did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The import's id (none for a dry run): `import undo ID`.
    pub id: Option<String>,
    pub dry_run: bool,
    pub space: SpaceId,
    /// Rows an earlier run of this file had stored, skipped now.
    pub resumed_after: u64,
    pub counts: Counts,
    pub seconds: f64,
    /// Every row's outcome, if asked for; else none.
    pub rows: Vec<RowOutcome>,
    /// Rows with errors, with their cells as in the file.
    #[serde(skip)]
    pub failed: Vec<(RowOutcome, Vec<String>)>,
    /// Rows imported with a remark the user should read (a meeting's
    /// attendee no person has).
    pub noted: Vec<RowOutcome>,
}

impl FilePlan {
    /// Reads `file` once (encoding, delimiter, whether it is a table, its
    /// digest) and maps the header of `header` (the same file, opened again).
    ///
    /// Columns are mapped to the fields of the space the rows go to, its
    /// custom ones too, which `run` asks the node for.
    pub fn read<R: Read>(
        source: &str,
        file: R,
        header: R,
        opts: &FileOptions,
        run: &mut dyn FnMut(Request) -> Result<Reply, FileImportError>,
    ) -> Result<FilePlan, FileImportError> {
        let fields = match run(Request::Schema {
            space: opts.space.clone(),
        })? {
            Reply::Schema(s) => rapport_model::Schema::fold(&s.entries).fields(opts.kind),
            other => return Err(unexpected(&other)),
        };
        if opts.format != Format::Csv {
            return Self::read_document(source, file, opts, fields);
        }
        let mut hashing = Hashing {
            inner: file,
            hash: Sha256::new(),
        };
        let found = text::inspect(&mut hashing)?;
        let digest = rapport_proto::hex(&hashing.hash.finalize());
        let mut locale = Locale::for_delimiter(found.delimiter);
        if let Some(comma) = opts.decimal_comma {
            locale.decimal_comma = comma;
        }
        locale.slash_dates = opts.slash_dates;
        let table = Table::open(header, &found)?;
        let headers = table.headers().to_vec();
        let columns = Columns::guess_for(opts.kind, fields, &headers, &opts.map)?;
        Ok(FilePlan {
            source: source.to_string(),
            format: Format::Csv,
            encoding: found.encoding,
            delimiter: found.delimiter,
            locale,
            lines: found.lines,
            headers,
            columns,
            body: Body::Csv(found),
            digest,
        })
    }

    /// A vCard, iCalendar or JSON file, read whole: its items become rows
    /// under fixed columns (a JSON export's, those of `opts.kind`).
    fn read_document<R: Read>(
        source: &str,
        file: R,
        opts: &FileOptions,
        fields: Vec<&'static rapport_model::FieldDef>,
    ) -> Result<FilePlan, FileImportError> {
        let (encoding, text, bytes) = text::read_text(file, MAX_DOCUMENT)?;
        let mut digest = rapport_proto::hex(&Sha256::digest(&bytes));
        let (headers, rows) = match opts.format {
            Format::Vcard => (strings(&CARD_COLUMNS), card_rows(&text)),
            Format::Ics => (strings(&CALENDAR_COLUMNS), calendar_rows(&text)),
            Format::Json | Format::Csv => {
                // One file holds every kind: each kind is its own import
                // of it, and resumes on its own.
                digest.push(':');
                digest.push_str(opts.kind.as_str());
                JsonRecords::parse(&text)?.rows(opts.kind)
            }
        };
        if rows.is_empty() {
            return Err(FileError::Malformed {
                line: 1,
                reason: format!(
                    "no {} in this file: is it a {} file?",
                    match opts.format {
                        Format::Json => format!("{} records", opts.kind),
                        f => format!("{}s", f.item()),
                    },
                    opts.format.as_str()
                ),
            }
            .into());
        }
        let columns = Columns::guess_for(opts.kind, fields, &headers, &opts.map)?;
        let mut locale = Locale::for_delimiter(b',');
        locale.slash_dates = opts.slash_dates;
        Ok(FilePlan {
            source: source.to_string(),
            format: opts.format,
            encoding,
            delimiter: b',',
            locale,
            lines: text.lines().count() as u64,
            headers,
            columns,
            body: Body::Rows(rows),
            digest,
        })
    }

    /// How the file was read, in words: "UTF-8, `;`-separated, …" or
    /// "vCard, 120 cards".
    pub fn describe(&self) -> String {
        match &self.body {
            Body::Csv(_) => {
                let delimiter = match self.delimiter {
                    b'\t' => "tab".to_string(),
                    d => format!("`{}`", d as char),
                };
                format!(
                    "{}, {delimiter}-separated, {}",
                    self.encoding.as_str(),
                    self.locale.describe()
                )
            }
            Body::Rows(rows) => format!(
                "{} ({}), {} {}{}",
                self.format.as_str(),
                self.encoding.as_str(),
                rows.len(),
                self.format.item(),
                if rows.len() == 1 { "" } else { "s" }
            ),
        }
    }

    /// Begins the session: its id, and the rows an earlier run stored.
    pub fn begin(
        &self,
        opts: &FileOptions,
        run: &mut dyn FnMut(Request) -> Result<Reply, FileImportError>,
    ) -> Result<Begun, FileImportError> {
        let reply = run(Request::ImportBegin(ImportSpec {
            kind: opts.kind,
            space: opts.space.clone(),
            mode: opts.mode,
            match_on: opts.match_on.clone(),
            blank_clears: opts.blank_clears,
            dry_run: opts.dry_run,
            source: self.source.clone(),
            digest: self.digest.clone(),
            columns: self
                .columns
                .mapped()
                .into_iter()
                .map(|(c, f)| (c, f.to_string()))
                .collect(),
        }))?;
        match reply {
            Reply::ImportBegun(b) => Ok(b),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends the rows of `file` (opened again) after `begun.resume_after`
    /// in batches, then ends the session. `progress` hears the line
    /// reached after each batch; `keep_rows` keeps every row's outcome.
    /// At most `keep_at_most` rows are kept in each of `rows` and
    /// `failed` (the rest are counted), so that what a caller keeps does
    /// not grow with the file.
    pub fn run<R: Read>(
        &self,
        file: R,
        begun: &Begun,
        keep_rows: bool,
        keep_at_most: usize,
        run: &mut dyn FnMut(Request) -> Result<Reply, FileImportError>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<FileReport, FileImportError> {
        let started = Instant::now();
        let rows: Box<dyn Iterator<Item = Result<Row, FileError>>> = match &self.body {
            Body::Csv(found) => Box::new(Table::open(file, found)?),
            Body::Rows(rows) => Box::new(rows.iter().cloned().map(Ok)),
        };
        let mut report = FileReport {
            id: (!begun.id.starts_with("dry-")).then(|| begun.id.clone()),
            dry_run: begun.id.starts_with("dry-"),
            space: begun.space,
            resumed_after: begun.resume_after,
            counts: Counts::default(),
            seconds: 0.0,
            rows: Vec::new(),
            failed: Vec::new(),
            noted: Vec::new(),
        };
        let mut batch: Vec<ImportRow> = Vec::with_capacity(BATCH_ROWS);
        let mut cells: HashMap<u64, Vec<String>> = HashMap::new();
        let mut bytes = 0usize;
        let mut send = |batch: &mut Vec<ImportRow>,
                        cells: &mut HashMap<u64, Vec<String>>,
                        report: &mut FileReport|
         -> Result<(), FileImportError> {
            let Some(last) = batch.last().map(|r| r.line) else {
                return Ok(());
            };
            let reply = run(Request::ImportRows {
                id: begun.id.clone(),
                rows: std::mem::take(batch),
            })?;
            let Reply::ImportRows { outcomes } = reply else {
                return Err(unexpected(&reply));
            };
            for o in outcomes {
                report.counts.add(o.action);
                let row = cells.remove(&o.number).unwrap_or_default();
                if o.action == Action::Error && report.failed.len() < keep_at_most {
                    report.failed.push((o.clone(), row));
                }
                if o.action != Action::Error
                    && o.note.is_some()
                    && report.noted.len() < keep_at_most
                {
                    report.noted.push(o.clone());
                }
                if keep_rows && report.rows.len() < keep_at_most {
                    report.rows.push(o);
                }
            }
            cells.clear();
            progress(last);
            Ok(())
        };
        for row in rows {
            let row = row?;
            if row.is_blank() {
                report.counts.skip += 1;
                continue;
            }
            if row.number <= begun.resume_after {
                continue;
            }
            let mut mapped = self.columns.row(&row.cells, &self.locale);
            if let Some(reason) = row.problem.clone() {
                mapped.problems.push(CellProblem {
                    column: self.format.item().to_string(),
                    value: String::new(),
                    reason,
                });
            }
            bytes += row.cells.iter().map(String::len).sum::<usize>();
            cells.insert(row.number, row.cells);
            batch.push(ImportRow {
                number: row.number,
                line: row.line,
                inputs: mapped.inputs,
                id: mapped.id,
                company_domain: mapped.company_domain,
                attendees: mapped.attendees,
                problems: mapped.problems,
            });
            if batch.len() >= BATCH_ROWS || bytes >= BATCH_BYTES {
                send(&mut batch, &mut cells, &mut report)?;
                bytes = 0;
            }
        }
        send(&mut batch, &mut cells, &mut report)?;
        let summary = run(Request::ImportEnd {
            id: begun.id.clone(),
        })?;
        let Reply::Import(summary) = summary else {
            return Err(unexpected(&summary));
        };
        report.counts.companies = summary.counts.companies;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn unexpected(reply: &Reply) -> FileImportError {
    FileImportError::Transport(format!("the node gave an unexpected answer: {reply:?}"))
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
