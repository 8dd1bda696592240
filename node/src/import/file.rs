//! A whole file through an import session: read it (`rapport-exchange`),
//! map its columns, send its rows in batches, collect what became of each.
//! The CLI runs it against the running node or the data directory, the
//! web UI against its node: one loop, whoever drives it. `run` says how a
//! request reaches the node.

use std::collections::HashMap;
use std::io::Read;
use std::time::Instant;

use rapport_exchange::{Columns, DayOrder, Encoding, FileError, Locale, MapError, Table, text};
use rapport_model::{Kind, SpaceId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Action, BATCH_ROWS, Begun, Counts, ImportRow, ImportSpec, Mode, RowOutcome};
use crate::ops::{OpError, Reply, Request};

/// Text of the rows sent in one request, at most (about): wide rows (long
/// notes) make a batch smaller, so a request stays far under the local
/// API's body limit.
const BATCH_BYTES: usize = 512 << 10;

/// How to import a file, as the user said it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileOptions {
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
    pub encoding: Encoding,
    pub delimiter: u8,
    pub locale: Locale,
    /// Lines of the file, the header included.
    pub lines: u64,
    pub headers: Vec<String>,
    pub columns: Columns,
    found: text::Inspection,
    digest: String,
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
}

impl FilePlan {
    /// Reads `file` once (encoding, delimiter, whether it is a table, its
    /// digest) and maps the header of `header` (the same file, opened again).
    pub fn read<R: Read>(
        source: &str,
        file: R,
        header: R,
        opts: &FileOptions,
    ) -> Result<FilePlan, FileImportError> {
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
        let columns = Columns::guess(opts.kind, &headers, &opts.map)?;
        Ok(FilePlan {
            source: source.to_string(),
            encoding: found.encoding,
            delimiter: found.delimiter,
            locale,
            lines: found.lines,
            headers,
            columns,
            found,
            digest,
        })
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
        let table = Table::open(file, &self.found)?;
        let mut report = FileReport {
            id: (!begun.id.starts_with("dry-")).then(|| begun.id.clone()),
            dry_run: begun.id.starts_with("dry-"),
            space: begun.space,
            resumed_after: begun.resume_after,
            counts: Counts::default(),
            seconds: 0.0,
            rows: Vec::new(),
            failed: Vec::new(),
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
                if keep_rows && report.rows.len() < keep_at_most {
                    report.rows.push(o);
                }
            }
            cells.clear();
            progress(last);
            Ok(())
        };
        for row in table {
            let row = row?;
            if row.is_blank() {
                report.counts.skip += 1;
                continue;
            }
            if row.number <= begun.resume_after {
                continue;
            }
            let mapped = self.columns.row(&row.cells, &self.locale);
            bytes += row.cells.iter().map(String::len).sum::<usize>();
            cells.insert(row.number, row.cells);
            batch.push(ImportRow {
                number: row.number,
                line: row.line,
                inputs: mapped.inputs,
                id: mapped.id,
                company_domain: mapped.company_domain,
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
