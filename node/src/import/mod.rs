//! Imports: rows read from a file (by `rapport-exchange`) matched against
//! the records of the target space, then created or updated in durable
//! batches. Every import is recorded in `imports/ID.jsonl` in the data
//! directory, each batch *before* it is written, so that:
//!
//! - running the same file again after a crash resumes after the last
//!   batch that was stored, and creates nothing twice;
//! - `undo` deletes what the import created and puts back the previous
//!   value of every field it updated, unless someone changed that field
//!   since (their edit stays). Undo writes ordinary signed changes, so
//!   peers see it as they see any edit.
//!
//! A client drives an import as a session: [`ImportSpec`] to begin, rows
//! in batches, then the end. The match index (emails, domains, names of
//! the space's records) is built once per session, not per batch.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rapport_exchange::CellProblem;
use rapport_model::{Edit, FieldType, FieldValue, Kind, RecordId, RecordView, SpaceId};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::repo::{Input, NewRecord};
use crate::{NodeError, Repo};

pub mod file;

/// Rows a client sends per request: one durable batch each.
pub const BATCH_ROWS: usize = 1000;

/// Open sessions kept at most; the oldest is dropped for a new one.
const MAX_SESSIONS: usize = 8;

const DIR: &str = "imports";

/// What an import does with a row that matches a record, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Only new records; a row that matches one is skipped.
    Create,
    /// Only existing records; a row that matches none is skipped.
    Update,
    /// Update what matches, create the rest.
    #[default]
    Upsert,
}

/// How an import runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSpec {
    pub kind: Kind,
    /// A space by name or id [default: the private space].
    #[serde(default)]
    pub space: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    /// Fields that identify a record, tried in order [default: emails for
    /// people; domain, then name for companies; none for other kinds].
    /// An `id` column (Rapport's own export) is always tried first.
    #[serde(default)]
    pub match_on: Vec<String>,
    /// An empty cell clears the field (else it leaves it alone).
    #[serde(default)]
    pub blank_clears: bool,
    /// Report what would happen; write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// The file's name, as the user knows it.
    pub source: String,
    /// Hex SHA-256 of the file: the same file, begun again, resumes.
    pub digest: String,
    /// `(column, field)` of every mapped column.
    #[serde(default)]
    pub columns: Vec<(String, String)>,
}

/// One row of the file, mapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRow {
    /// 1 is the first row after the header.
    pub number: u64,
    /// The line of the file it starts on.
    pub line: u64,
    #[serde(default)]
    pub inputs: Vec<Input>,
    /// A Rapport record id from an `id` column.
    #[serde(default)]
    pub id: Option<String>,
    /// A person's company domain.
    #[serde(default)]
    pub company_domain: Option<String>,
    /// A meeting's attendees' e-mail addresses: the people with them are
    /// linked in `about`; an address no person has is reported, never
    /// made into a person.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attendees: Vec<String>,
    /// Cells the client could not read (a date in no known form).
    #[serde(default)]
    pub problems: Vec<CellProblem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Unchanged,
    Skip,
    Error,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::Skip => "skip",
            Action::Error => "error",
        }
    }
}

/// What became (or, in a dry run, would become) of one row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowOutcome {
    pub number: u64,
    pub line: u64,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordId>,
    /// The fields written, for an update.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Why it was skipped, or what it matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<CellProblem>,
}

impl RowOutcome {
    /// Its problems in one line: `column: reason; ...`.
    pub fn reasons(&self) -> String {
        self.problems
            .iter()
            .map(|p| format!("{}: {}", p.column, p.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Rows by what became of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub create: u64,
    pub update: u64,
    pub unchanged: u64,
    pub skip: u64,
    pub error: u64,
    /// Companies created for people's company columns.
    #[serde(default)]
    pub companies: u64,
}

impl Counts {
    pub fn add(&mut self, action: Action) {
        match action {
            Action::Create => self.create += 1,
            Action::Update => self.update += 1,
            Action::Unchanged => self.unchanged += 1,
            Action::Skip => self.skip += 1,
            Action::Error => self.error += 1,
        }
    }
}

/// An import as `import list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportSummary {
    pub id: String,
    pub kind: Kind,
    pub space: SpaceId,
    pub source: String,
    /// Unix seconds.
    pub started: i64,
    pub finished: bool,
    /// Rows handled, up to the last stored batch.
    pub rows: u64,
    pub counts: Counts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undone: Option<UndoReport>,
}

/// What an undo did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoReport {
    /// Unix seconds.
    pub at: i64,
    /// Records the import created, now deleted.
    pub deleted: u64,
    /// Fields put back to their value before the import.
    pub restored: u64,
    /// Fields left alone: someone changed them after the import.
    pub kept: u64,
}

/// A session begun: its id, and the rows already stored by an earlier
/// run of the same file (the client skips them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Begun {
    pub id: String,
    pub resume_after: u64,
    pub space: SpaceId,
    pub match_on: Vec<String>,
}

// ----- the log ---------------------------------------------------------------

/// One line of `imports/ID.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Begun {
        id: String,
        kind: Kind,
        space: SpaceId,
        source: String,
        digest: String,
        started: i64,
        /// For ordering imports begun within a second.
        #[serde(default)]
        started_ms: i64,
    },
    /// Written and synced before the batch's records are.
    Batch {
        /// The last row number of the batch.
        rows_to: u64,
        created: Vec<RecordId>,
        updated: Vec<Updated>,
        counts: Counts,
    },
    /// Written once the batch ending at `rows_to` is stored.
    Stored {
        rows_to: u64,
    },
    Finished,
    Undone(UndoReport),
}

/// A record's fields as they were before an import wrote them, and as the
/// import wrote them (`None`: absent).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Updated {
    id: RecordId,
    before: BTreeMap<String, Option<FieldValue>>,
    after: BTreeMap<String, Option<FieldValue>>,
}

/// Largest file the web UI takes for an import.
pub const MAX_UPLOAD: usize = 64 << 20;

/// Whether `id` can name an import, an upload or a merge: hex only, so
/// that it never reaches outside its directory.
pub(crate) fn safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit())
}

/// A field's value before an import's first write and after its last.
type BeforeAfter = (Option<FieldValue>, Option<FieldValue>);

fn log_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(DIR).join(format!("{id}.jsonl"))
}

/// For `rapport privacy compact`: removes every kept upload and file of
/// rows with errors (they are copies of files that may name an erased
/// person), and rewrites each import log without the erased records (an
/// undo then leaves them alone). Returns the files removed and the logs
/// rewritten.
pub(crate) fn forget_erased(
    data_dir: &Path,
    erased: &std::collections::HashSet<RecordId>,
) -> Result<(usize, usize), NodeError> {
    let dir = data_dir.join(DIR);
    let mut removed = 0;
    for path in crate::datadir::files_with_extension(&dir.join("uploads"), "csv")?
        .into_iter()
        .chain(crate::datadir::files_with_extension(&dir, "csv")?)
    {
        fs::remove_file(&path).map_err(|e| NodeError::io(&path, e))?;
        removed += 1;
    }
    let mut rewritten = 0;
    for path in crate::datadir::files_with_extension(&dir, "jsonl")? {
        let mut lines = read_log(&path)?;
        let mut changed = false;
        for line in &mut lines {
            if let Line::Batch {
                created, updated, ..
            } = line
            {
                let (c, u) = (created.len(), updated.len());
                created.retain(|id| !erased.contains(id));
                updated.retain(|u| !erased.contains(&u.id));
                changed |= c != created.len() || u != updated.len();
            }
        }
        if !changed {
            continue;
        }
        let mut bytes = Vec::new();
        for line in &lines {
            serde_json::to_writer(&mut bytes, line)
                .map_err(|e| NodeError::Export(e.to_string()))?;
            bytes.push(b'\n');
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::datadir::write_atomically(&dir, &name, &bytes, false)?;
        rewritten += 1;
    }
    Ok((removed, rewritten))
}

/// The lines of a log; a last line cut short by a crash is skipped.
fn read_log(path: &Path) -> Result<Vec<Line>, NodeError> {
    let bytes = fs::read(path).map_err(|e| NodeError::io(path, e))?;
    Ok(bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect())
}

fn append(path: &Path, line: &Line) -> Result<(), NodeError> {
    let mut bytes = serde_json::to_vec(line).map_err(|e| NodeError::Export(e.to_string()))?;
    bytes.push(b'\n');
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(|e| NodeError::io(path, e))?;
    // A line cut short by a crash is ended first, so that it spoils
    // only itself (`read_log` skips it).
    if ends_mid_line(&mut f).map_err(|e| NodeError::io(path, e))? {
        bytes.insert(0, b'\n');
    }
    f.write_all(&bytes).map_err(|e| NodeError::io(path, e))?;
    f.sync_data().map_err(|e| NodeError::io(path, e))
}

fn ends_mid_line(f: &mut fs::File) -> std::io::Result<bool> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

fn summary(lines: &[Line]) -> Option<ImportSummary> {
    let Some(Line::Begun {
        id,
        kind,
        space,
        source,
        started,
        ..
    }) = lines.first()
    else {
        return None;
    };
    let mut s = ImportSummary {
        id: id.clone(),
        kind: *kind,
        space: *space,
        source: source.clone(),
        started: *started,
        finished: false,
        rows: 0,
        counts: Counts::default(),
        undone: None,
    };
    for line in &lines[1..] {
        match line {
            Line::Batch {
                rows_to, counts, ..
            } => {
                s.rows = *rows_to;
                s.counts = *counts;
            }
            Line::Finished => s.finished = true,
            Line::Undone(r) => s.undone = Some(*r),
            Line::Begun { .. } | Line::Stored { .. } => {}
        }
    }
    Some(s)
}

// ----- matching --------------------------------------------------------------

/// A key as compared: lower case, inner whitespace collapsed.
fn key_text(field_type: FieldType, text: &str) -> String {
    let lower = text.trim().to_lowercase();
    match field_type {
        FieldType::Domain | FieldType::Url => rapport_model::value::domain_key(&lower),
        _ => lower.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// A meeting's attendees: the ids of the people with those addresses,
/// and the addresses no person in the space has.
fn attendees(s: &Session, emails: &[String]) -> (Vec<String>, Vec<String>) {
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    for e in emails {
        match s.people.find("emails", &key_text(FieldType::Emails, e)) {
            Some(Hit::Stored(id) | Hit::Planned { id, .. }) => found.push(id.to_string()),
            None => unknown.push(e.clone()),
        }
    }
    (found, unknown)
}

/// The key values of `field` in a record.
fn keys_of(kind: Kind, field: &str, value: &FieldValue) -> Vec<String> {
    let ty = kind.field(field).map_or(FieldType::Text, |d| d.ty);
    match value {
        FieldValue::List(items) => items.iter().map(|i| key_text(ty, i)).collect(),
        FieldValue::Text(t) => vec![key_text(ty, t)],
        other => vec![key_text(ty, &other.to_string())],
    }
}

/// Where a key points: a stored record, or one planned in this session
/// and not yet written (or, in a dry run, never written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hit {
    Stored(RecordId),
    Planned { id: RecordId, row: u64 },
}

#[derive(Debug, Default)]
struct Index {
    keys: HashMap<(String, String), Hit>,
}

impl Index {
    fn put(
        &mut self,
        kind: Kind,
        fields: &[String],
        record: &BTreeMap<String, FieldValue>,
        hit: Hit,
    ) {
        for field in fields {
            if let Some(v) = record.get(field) {
                for k in keys_of(kind, field, v) {
                    if !k.is_empty() {
                        self.keys.entry((field.clone(), k)).or_insert(hit);
                    }
                }
            }
        }
    }

    fn find(&self, field: &str, key: &str) -> Option<Hit> {
        self.keys
            .get(&(field.to_string(), key.to_string()))
            .copied()
    }

    /// After a flush every planned record is stored.
    fn all_stored(&mut self) {
        for hit in self.keys.values_mut() {
            if let Hit::Planned { id, .. } = *hit {
                *hit = Hit::Stored(id);
            }
        }
    }
}

/// Mail providers whose domain says nothing about the company.
const FREEMAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "live.com",
    "msn.com",
    "icloud.com",
    "me.com",
    "aol.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "t-online.de",
    "proton.me",
    "protonmail.com",
    "mail.ru",
    "yandex.ru",
    "qq.com",
    "163.com",
];

fn company_domain_of_email(email: &str) -> Option<String> {
    let domain = email.rsplit_once('@')?.1.trim().to_lowercase();
    let free = FREEMAIL.contains(&domain.as_str())
        || ["yahoo.", "hotmail.", "outlook.", "gmx."]
            .iter()
            .any(|p| domain.starts_with(p));
    (!free && domain.contains('.')).then_some(domain)
}

// ----- sessions --------------------------------------------------------------

#[derive(Debug)]
struct Session {
    spec: ImportSpec,
    space: SpaceId,
    match_on: Vec<String>,
    index: Index,
    /// A person's company, by domain and by name (people imports only).
    companies: Index,
    /// People by e-mail, for meetings' attendees (activity imports only).
    people: Index,
    log: Option<PathBuf>,
    counts: Counts,
    pending: Pending,
    last_use: u64,
    /// The time in the newest id made (`Repo::next_record_id`).
    last_ms: u64,
}

#[derive(Debug, Default)]
struct Pending {
    new: Vec<NewRecord>,
    edits: Vec<(RecordView, Vec<Edit>)>,
    updated: Vec<Updated>,
}

/// The open import sessions of a node.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<(u64, HashMap<String, Session>)>,
}

impl Repo {
    /// Begins an import session (or resumes an unfinished run of the same
    /// file into the same space).
    /// `space` is `spec.space` resolved by the caller.
    pub fn import_begin(&self, spec: ImportSpec, space: SpaceId) -> Result<Begun, NodeError> {
        if !spec.dry_run {
            self.check_space_writable(space)?;
        }
        let kind = spec.kind;
        let match_on = if spec.match_on.is_empty() {
            match kind {
                Kind::Person => vec!["emails".to_string()],
                Kind::Company => vec!["domain".to_string(), "name".to_string()],
                // Calendar events keep their UID: the same file again
                // matches them.
                Kind::Activity => vec!["uid".to_string()],
                _ => Vec::new(),
            }
        } else {
            let mut fields = Vec::new();
            for f in &spec.match_on {
                fields.push(self.field_in(Some(space), kind, f)?.name.to_string());
            }
            fields
        };
        let mut index = Index::default();
        let mut companies = Index::default();
        let mut people = Index::default();
        let company_keys = ["domain".to_string(), "name".to_string()];
        let email_keys = ["emails".to_string()];
        let mut kinds = vec![kind];
        if kind == Kind::Person {
            kinds.push(Kind::Company);
        }
        if kind == Kind::Activity {
            kinds.push(Kind::Person);
        }
        for k in kinds {
            for view in self.store().views_of_kind(k) {
                let view = view?;
                if view.deleted || view.space != space {
                    continue;
                }
                if k == kind {
                    index.put(kind, &match_on, &view.fields, Hit::Stored(view.id));
                }
                if k == Kind::Company && kind == Kind::Person {
                    companies.put(k, &company_keys, &view.fields, Hit::Stored(view.id));
                }
                if k == Kind::Person && kind == Kind::Activity {
                    people.put(k, &email_keys, &view.fields, Hit::Stored(view.id));
                }
            }
        }
        let (id, resume_after, counts, log) = if spec.dry_run {
            let id = format!("dry-{}", rapport_proto::hex(&self.random::<4>()?));
            (id, 0, Counts::default(), None)
        } else {
            self.open_log(&spec, space)?
        };
        let begun = Begun {
            id: id.clone(),
            resume_after,
            space,
            match_on: match_on.clone(),
        };
        let mut open = self
            .import_sessions()
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        open.0 += 1;
        let now = open.0;
        if open.1.len() >= MAX_SESSIONS
            && let Some(oldest) = open
                .1
                .iter()
                .min_by_key(|(_, s)| s.last_use)
                .map(|(k, _)| k.clone())
        {
            open.1.remove(&oldest);
        }
        open.1.insert(
            id,
            Session {
                spec,
                space,
                match_on,
                index,
                companies,
                people,
                log,
                counts,
                pending: Pending::default(),
                last_use: now,
                last_ms: 0,
            },
        );
        Ok(begun)
    }

    /// A new log, or the unfinished one of the same file and space.
    fn open_log(
        &self,
        spec: &ImportSpec,
        space: SpaceId,
    ) -> Result<(String, u64, Counts, Option<PathBuf>), NodeError> {
        let dir = self.dir().join(DIR);
        fs::create_dir_all(&dir).map_err(|e| NodeError::io(&dir, e))?;
        for (path, lines) in self.logs()? {
            let Some(Line::Begun {
                id,
                kind,
                space: s,
                digest,
                ..
            }) = lines.first()
            else {
                continue;
            };
            let open = !lines
                .iter()
                .any(|l| matches!(l, Line::Finished | Line::Undone(_)));
            if open && *digest == spec.digest && *kind == spec.kind && *s == space {
                let (resume_after, counts) = self.stored_rows(&lines)?;
                return Ok((id.clone(), resume_after, counts, Some(path)));
            }
        }
        let id = rapport_proto::hex(&self.random::<4>()?);
        let path = log_path(self.dir(), &id);
        append(
            &path,
            &Line::Begun {
                id: id.clone(),
                kind: spec.kind,
                space,
                source: spec.source.clone(),
                digest: spec.digest.clone(),
                started: self.now().as_second(),
                started_ms: self.now().as_millisecond(),
            },
        )?;
        Ok((id, 0, Counts::default(), Some(path)))
    }

    /// The last row of the last stored batch, and the counts up to it. A
    /// batch is stored if its marker follows it, or if the records it
    /// creates exist (a crash between the store's write and the marker):
    /// a batch is one transaction, so they all do or none.
    fn stored_rows(&self, lines: &[Line]) -> Result<(u64, Counts), NodeError> {
        let mut done = (0, Counts::default());
        for line in lines {
            if let Line::Batch {
                rows_to,
                created,
                counts,
                ..
            } = line
            {
                let marked = lines
                    .iter()
                    .any(|l| matches!(l, Line::Stored { rows_to: r } if r == rows_to));
                let stored = marked
                    || match created.first() {
                        Some(id) => self.store().doc(*id)?.is_some(),
                        None => false,
                    };
                if stored && *rows_to >= done.0 {
                    done = (*rows_to, *counts);
                }
            }
        }
        Ok(done)
    }

    fn logs(&self) -> Result<Vec<(PathBuf, Vec<Line>)>, NodeError> {
        let mut out = Vec::new();
        for path in crate::datadir::files_with_extension(&self.dir().join(DIR), "jsonl")? {
            let lines = read_log(&path)?;
            out.push((path, lines));
        }
        Ok(out)
    }

    /// Matches, checks and writes one batch of rows of a session.
    /// `scope`: the caller's space, if it is limited to one (an API token).
    pub fn import_rows(
        &self,
        id: &str,
        rows: Vec<ImportRow>,
        scope: Option<SpaceId>,
    ) -> Result<Vec<RowOutcome>, NodeError> {
        let mut open = self
            .import_sessions()
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        open.0 += 1;
        let now = open.0;
        let session = open
            .1
            .get_mut(id)
            .filter(|s| scope.is_none_or(|scope| s.space == scope))
            .ok_or_else(|| NodeError::Missing(format!("no open import {id}; begin it again")))?;
        session.last_use = now;
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut last = 0;
        let run = || -> Result<(), NodeError> {
            for row in rows {
                last = last.max(row.number);
                let outcome = self.import_row(session, row)?;
                session.counts.add(outcome.action);
                outcomes.push(outcome);
            }
            self.import_flush(session, last)
        };
        if let Err(e) = run() {
            // The session ends with the failure (a full disk, say): its
            // log stays unfinished, so the same file begun again resumes,
            // and its stored batches can be undone.
            open.1.remove(id);
            return Err(e);
        }
        Ok(outcomes)
    }

    /// Ends a session: its summary.
    pub fn import_end(&self, id: &str, scope: Option<SpaceId>) -> Result<ImportSummary, NodeError> {
        let mut open = self
            .import_sessions()
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if open
            .1
            .get(id)
            .is_some_and(|s| scope.is_some_and(|scope| s.space != scope))
        {
            return Err(NodeError::Missing(format!("no open import {id}")));
        }
        let session = open
            .1
            .remove(id)
            .ok_or_else(|| NodeError::Missing(format!("no open import {id}")))?;
        let Some(path) = &session.log else {
            return Ok(ImportSummary {
                id: id.to_string(),
                kind: session.spec.kind,
                space: session.space,
                source: session.spec.source.clone(),
                started: self.now().as_second(),
                finished: true,
                rows: 0,
                counts: session.counts,
                undone: None,
            });
        };
        append(path, &Line::Finished)?;
        let lines = read_log(path)?;
        summary(&lines).ok_or_else(|| NodeError::Missing(format!("no import {id}")))
    }

    /// Every import recorded on this device, newest first.
    /// `scope`: only the imports into this space (an API token's).
    pub fn imports(&self, scope: Option<SpaceId>) -> Result<Vec<ImportSummary>, NodeError> {
        let mut all: Vec<(i64, ImportSummary)> = self
            .logs()?
            .iter()
            .filter_map(|(_, lines)| {
                let Some(Line::Begun { started_ms, .. }) = lines.first() else {
                    return None;
                };
                Some((*started_ms, summary(lines)?))
            })
            .filter(|(_, s)| scope.is_none_or(|scope| s.space == scope))
            .collect();
        all.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.id.cmp(&a.1.id)));
        Ok(all.into_iter().map(|(_, s)| s).collect())
    }

    /// Keeps a file uploaded for import (the web UI) until it is imported:
    /// its id, from its content.
    pub fn keep_upload(&self, bytes: &[u8]) -> Result<String, NodeError> {
        if bytes.len() > MAX_UPLOAD {
            return Err(NodeError::Forbidden(format!(
                "the file is over {} MiB; import it with `rapport import FILE`",
                MAX_UPLOAD >> 20
            )));
        }
        let id = rapport_proto::hex(&sha2::Sha256::digest(bytes)[..12]);
        let dir = self.dir().join(DIR).join("uploads");
        fs::create_dir_all(&dir).map_err(|e| NodeError::io(&dir, e))?;
        // Uploads a day old were never imported (or were, and kept).
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > std::time::Duration::from_secs(24 * 3600));
                if old {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let path = dir.join(format!("{id}.csv"));
        fs::write(&path, bytes).map_err(|e| NodeError::io(&path, e))?;
        Ok(id)
    }

    /// Forgets an upload once it is imported.
    pub fn drop_upload(&self, id: &str) -> Result<(), NodeError> {
        let path = self.upload_path(id)?;
        fs::remove_file(&path).map_err(|e| NodeError::io(&path, e))
    }

    /// Where an upload kept by [`Repo::keep_upload`] is.
    pub fn upload_path(&self, id: &str) -> Result<PathBuf, NodeError> {
        let path = self
            .dir()
            .join(DIR)
            .join("uploads")
            .join(format!("{id}.csv"));
        if !safe_id(id) || !path.exists() {
            return Err(NodeError::Missing(format!(
                "no uploaded file {id}; upload it again"
            )));
        }
        Ok(path)
    }

    /// Keeps the rows of import `id` that had errors, as a CSV to fix.
    pub fn keep_import_errors(&self, id: &str, csv: &[u8]) -> Result<(), NodeError> {
        if !safe_id(id) {
            return Err(NodeError::Missing(format!("no import {id}")));
        }
        crate::datadir::write_atomically(
            &self.dir().join(DIR),
            &format!("{id}.errors.csv"),
            csv,
            false,
        )
    }

    /// The rows with errors of import `id`, if it had any.
    pub fn import_errors(&self, id: &str) -> Result<Option<Vec<u8>>, NodeError> {
        if !safe_id(id) {
            return Ok(None);
        }
        let path = self.dir().join(DIR).join(format!("{id}.errors.csv"));
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NodeError::io(&path, e)),
        }
    }

    /// Deletes what import `id` created and puts back what it updated,
    /// where nobody changed it since.
    pub fn import_undo(&self, id: &str, scope: Option<SpaceId>) -> Result<UndoReport, NodeError> {
        if !safe_id(id) {
            return Err(NodeError::Missing(format!("no import {id}")));
        }
        let path = log_path(self.dir(), id);
        if !path.exists() {
            return Err(NodeError::Missing(format!("no import {id}")));
        }
        {
            let open = self
                .import_sessions()
                .open
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if open.1.contains_key(id) {
                return Err(NodeError::Forbidden(format!(
                    "import {id} is still running; undo it once it has ended"
                )));
            }
        }
        let lines = read_log(&path)?;
        let space = summary(&lines).map(|s| s.space);
        if scope.is_some_and(|scope| space != Some(scope)) {
            return Err(NodeError::Missing(format!("no import {id}")));
        }
        if let Some(Line::Undone(r)) = lines.iter().find(|l| matches!(l, Line::Undone(_))) {
            return Err(NodeError::Forbidden(format!(
                "import {id} was undone already ({} records deleted, {} fields restored)",
                r.deleted, r.restored
            )));
        }
        // Every batch folded into one entry per record: a field written
        // twice goes back to its value before the first write, if it still
        // holds the last; a record the import created is deleted.
        let mut created: Vec<RecordId> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut fields: BTreeMap<RecordId, BTreeMap<String, BeforeAfter>> = BTreeMap::new();
        for line in &lines {
            let Line::Batch {
                created: made,
                updated,
                ..
            } = line
            else {
                continue;
            };
            for id in made {
                if seen.insert(*id) {
                    created.push(*id);
                }
            }
            for u in updated {
                let record = fields.entry(u.id).or_default();
                for (field, after) in &u.after {
                    let before = u.before.get(field).cloned().flatten();
                    record
                        .entry(field.clone())
                        .and_modify(|(_, last)| *last = after.clone())
                        .or_insert((before, after.clone()));
                }
            }
        }
        let mut report = UndoReport {
            at: self.now().as_second(),
            ..UndoReport::default()
        };
        let mut edits: Vec<(RecordView, Vec<Edit>)> = Vec::new();
        for id in &created {
            fields.remove(id);
            let Some(view) = self.store().view(*id)? else {
                continue;
            };
            if !view.deleted {
                report.deleted += 1;
                edits.push((view, vec![Edit::Deleted(true)]));
            }
        }
        for (id, changed) in fields {
            let Some(view) = self.store().view(id)? else {
                continue;
            };
            if view.deleted {
                report.kept += changed.len() as u64;
                continue;
            }
            let mut changes = Vec::new();
            for (field, (before, after)) in changed {
                if view.fields.get(&field) != after.as_ref() {
                    report.kept += 1;
                    continue;
                }
                report.restored += 1;
                changes.push(match before {
                    Some(v) => Edit::Set(field, v),
                    None => Edit::Unset(field),
                });
            }
            if !changes.is_empty() {
                edits.push((view, changes));
            }
        }
        for chunk in edits.chunks(BATCH_ROWS) {
            self.write_records(Vec::new(), chunk.to_vec())?;
        }
        append(&path, &Line::Undone(report))?;
        Ok(report)
    }

    fn import_row(&self, s: &mut Session, row: ImportRow) -> Result<RowOutcome, NodeError> {
        let mut out = RowOutcome {
            number: row.number,
            line: row.line,
            action: Action::Error,
            record: None,
            fields: Vec::new(),
            note: None,
            problems: row.problems.clone(),
        };
        if !out.problems.is_empty() {
            return Ok(out);
        }
        let kind = s.spec.kind;
        let mut inputs = row.inputs;
        // A person's company is found (by domain, then name) or created.
        let mut company = None;
        let mut new_company = None;
        if kind == Kind::Person {
            let name = inputs
                .iter()
                .position(|(f, _)| f == "company")
                .map(|i| inputs.remove(i).1);
            match self.import_company(s, name.clone(), &row.company_domain, &inputs) {
                Ok(Some((id, new))) => {
                    company = Some(id);
                    new_company = new;
                }
                Ok(None) => {}
                Err(e) => {
                    let given = [("company".to_string(), name.unwrap_or_default())];
                    return Ok(self.row_error(s, out, &given, "company", e));
                }
            }
        }
        if !row.attendees.is_empty() {
            let (found, unknown) = attendees(s, &row.attendees);
            if !found.is_empty() {
                match inputs.iter_mut().find(|(f, _)| f == "about") {
                    Some((_, about)) => {
                        about.push_str(", ");
                        about.push_str(&found.join(", "));
                    }
                    None => inputs.push(("about".into(), found.join(", "))),
                }
            }
            if !unknown.is_empty() {
                out.note = Some(format!(
                    "no person has {}: not linked (import the contacts first)",
                    unknown.join(", ")
                ));
            }
        }
        let hit = self.import_match(s, &row.id, &inputs)?;
        let hit = match hit {
            Some(Hit::Planned { id, row: first }) if s.spec.dry_run => {
                out.action = if s.spec.mode == Mode::Create {
                    Action::Skip
                } else {
                    Action::Update
                };
                out.record = Some(id);
                out.note = Some(format!("the same record as row {first}"));
                if out.action == Action::Update {
                    commit_company(s, new_company, row.number);
                }
                return Ok(out);
            }
            Some(Hit::Planned { .. }) => {
                // Write what is planned, so that this row updates it.
                self.import_flush(s, row.number.saturating_sub(1))?;
                self.import_match(s, &row.id, &inputs)?
            }
            // A record this batch already edits: one change per record per
            // batch, so the earlier edit is written first and this row's
            // diff is taken against it.
            Some(Hit::Stored(id))
                if !s.spec.dry_run && s.pending.edits.iter().any(|(v, _)| v.id == id) =>
            {
                self.import_flush(s, row.number.saturating_sub(1))?;
                Some(Hit::Stored(id))
            }
            hit => hit,
        };
        let ctx = self.context();
        match hit {
            Some(Hit::Stored(id)) => {
                out.record = Some(id);
                if s.spec.mode == Mode::Create {
                    out.action = Action::Skip;
                    out.note = Some("matches an existing record (mode create)".into());
                    return Ok(out);
                }
                let Some(view) = self.store().view(id)? else {
                    return Ok(out);
                };
                let mut fields = view.fields.clone();
                let mut before = BTreeMap::new();
                let mut after = BTreeMap::new();
                let mut edits = Vec::new();
                let mut wanted: Vec<(String, FieldValue)> = Vec::new();
                for (field, raw) in &inputs {
                    let def = match self.field_in(Some(s.space), kind, field) {
                        Ok(d) => d,
                        Err(e) => return Ok(self.row_error(s, out, &inputs, field, e)),
                    };
                    match self.parse_input(def, raw, &ctx, Some(s.space)) {
                        Ok(v) => wanted.push((def.name.to_string(), v)),
                        Err(e) => return Ok(self.row_error(s, out, &inputs, field, e)),
                    }
                }
                if let Some(c) = company {
                    wanted.push(("company".into(), FieldValue::Text(c.to_string())));
                }
                for (name, value) in wanted {
                    let old = view.fields.get(&name);
                    // Rapport's own calendar export names an event by its
                    // record id: not a UID to keep on that same record.
                    if name == "uid" && old.is_none() && value.as_text() == Some(&id.to_string()) {
                        continue;
                    }
                    let new = match (old, &value) {
                        // Lists gain the file's values; none are dropped.
                        (Some(FieldValue::List(have)), FieldValue::List(add)) => {
                            let mut all = have.clone();
                            for v in add {
                                if !all.iter().any(|h| h.eq_ignore_ascii_case(v)) {
                                    all.push(v.clone());
                                }
                            }
                            FieldValue::List(all)
                        }
                        _ => value,
                    };
                    if old == Some(&new) {
                        continue;
                    }
                    before.insert(name.clone(), old.cloned());
                    after.insert(name.clone(), Some(new.clone()));
                    fields.insert(name.clone(), new.clone());
                    edits.push(Edit::Set(name, new));
                }
                if s.spec.blank_clears {
                    for (_, field) in &s.spec.columns {
                        let Some(def) = kind.field(field) else {
                            continue;
                        };
                        let given = inputs.iter().any(|(f, _)| f == def.name)
                            || (def.name == "company" && company.is_some());
                        if given || def.required || !view.fields.contains_key(def.name) {
                            continue;
                        }
                        if before.contains_key(def.name) {
                            continue;
                        }
                        before.insert(def.name.to_string(), view.fields.get(def.name).cloned());
                        after.insert(def.name.to_string(), None);
                        fields.remove(def.name);
                        edits.push(Edit::Unset(def.name.to_string()));
                    }
                }
                // A deal's pipeline and stage as `edit` settles them.
                if kind == Kind::Deal
                    && (after.contains_key("pipeline") || after.contains_key("stage"))
                {
                    let schema = self.schema(s.space)?;
                    let stage_given = after.contains_key("stage");
                    if let Err(e) = crate::repo::settle_deal(
                        &schema,
                        Some(&view.fields),
                        &mut fields,
                        stage_given,
                    ) {
                        return Ok(self.row_error(s, out, &inputs, "", e));
                    }
                    for name in ["pipeline", "stage"] {
                        let now = fields.get(name).cloned();
                        edits.retain(
                            |e| !matches!(e, Edit::Set(f, _) | Edit::Unset(f) if f == name),
                        );
                        if now.as_ref() == view.fields.get(name) {
                            before.remove(name);
                            after.remove(name);
                            continue;
                        }
                        before.insert(name.to_string(), view.fields.get(name).cloned());
                        after.insert(name.to_string(), now.clone());
                        edits.push(match now {
                            Some(v) => Edit::Set(name.to_string(), v),
                            None => Edit::Unset(name.to_string()),
                        });
                    }
                }
                if edits.is_empty() {
                    out.action = Action::Unchanged;
                    return Ok(out);
                }
                // A line's currency, a deal's amount typed over its lines:
                // as `edit` settles them.
                match self.edit_of_lines(&view, &mut fields, &edits) {
                    Ok(more) => {
                        for e in more {
                            if let Edit::Set(name, v) = &e {
                                before
                                    .entry(name.clone())
                                    .or_insert_with(|| view.fields.get(name).cloned());
                                after.insert(name.clone(), Some(v.clone()));
                            }
                            edits.push(e);
                        }
                    }
                    Err(e) => return Ok(self.row_error(s, out, &inputs, "", e)),
                }
                if let Err(e) = rapport_model::check_record(kind, &fields) {
                    return Ok(self.row_error(s, out, &inputs, "", e.into()));
                }
                out.action = Action::Update;
                out.fields = after.keys().cloned().collect();
                commit_company(s, new_company, row.number);
                s.pending.updated.push(Updated { id, before, after });
                s.pending.edits.push((view, edits));
            }
            Some(Hit::Planned { .. }) => {
                out.note = Some("matched a record not yet written".into());
            }
            None => {
                if s.spec.mode == Mode::Update {
                    out.action = Action::Skip;
                    out.note = Some("matches no record (mode update)".into());
                    return Ok(out);
                }
                let mut fields = match self.prepare(kind, s.space, &inputs, &ctx) {
                    Ok(f) => f,
                    Err(e) => return Ok(self.row_error(s, out, &inputs, "", e)),
                };
                if let Some(c) = company {
                    fields.insert("company".into(), FieldValue::Text(c.to_string()));
                }
                let id = self.next_record_id(&mut s.last_ms)?;
                s.index.put(
                    kind,
                    &s.match_on,
                    &fields,
                    Hit::Planned {
                        id,
                        row: row.number,
                    },
                );
                out.action = Action::Create;
                out.record = Some(id);
                commit_company(s, new_company, row.number);
                s.pending.new.push(NewRecord {
                    id,
                    kind,
                    space: s.space,
                    fields: fields.into_iter().collect(),
                });
            }
        }
        Ok(out)
    }

    /// The record a row matches: by id, then by each match field in turn.
    fn import_match(
        &self,
        s: &Session,
        id: &Option<String>,
        inputs: &[Input],
    ) -> Result<Option<Hit>, NodeError> {
        if let Some(id) = id
            && let Ok(id) = id.trim().parse::<RecordId>()
            && let Some(view) = self.store().view(id)?
            && view.kind == s.spec.kind
            && view.space == s.space
            && !view.deleted
        {
            return Ok(Some(Hit::Stored(id)));
        }
        let kind = s.spec.kind;
        for field in &s.match_on {
            let ty = kind.field(field).map_or(FieldType::Text, |d| d.ty);
            for (f, raw) in inputs.iter().filter(|(f, _)| f == field) {
                let _ = f;
                let parts: Vec<&str> = if ty.is_list() {
                    rapport_model::value::split_list(raw).collect()
                } else {
                    vec![raw.as_str()]
                };
                for part in parts {
                    if let Some(hit) = s.index.find(field, &key_text(ty, part)) {
                        return Ok(Some(hit));
                    }
                }
            }
        }
        Ok(None)
    }

    /// The company a person row names (by name or domain): found by
    /// domain (given, or of the person's work e-mail), then by name; else
    /// a new one with that name and the given domain, written only if the
    /// row is ([`commit_company`]).
    fn import_company(
        &self,
        s: &mut Session,
        name: Option<String>,
        domain: &Option<String>,
        inputs: &[Input],
    ) -> Result<Option<(RecordId, Option<NewRecord>)>, NodeError> {
        let name = name.filter(|n| !n.trim().is_empty());
        let given = domain
            .as_deref()
            .map(|d| key_text(FieldType::Domain, d))
            .filter(|d| !d.is_empty());
        // Without a company name or domain in the row, nothing is linked:
        // an e-mail's domain alone (an ISP's, a parent company's) would
        // tie strangers to one company.
        if name.is_none() && given.is_none() {
            return Ok(None);
        }
        // The work address's domain finds a company already known by it;
        // it is never given to a new one.
        let inferred = inputs
            .iter()
            .find(|(f, _)| f == "emails")
            .and_then(|(_, e)| {
                rapport_model::value::split_list(e).find_map(company_domain_of_email)
            });
        for d in given.iter().chain(inferred.iter()) {
            if let Some(hit) = s.companies.find("domain", d) {
                return Ok(Some((hit_id(hit), None)));
            }
        }
        let Some(name) = name else {
            return Ok(None);
        };
        if let Some(hit) = s.companies.find("name", &key_text(FieldType::Text, &name)) {
            return Ok(Some((hit_id(hit), None)));
        }
        let mut inputs = vec![("name".to_string(), name)];
        if let Some(d) = given {
            inputs.push(("domain".to_string(), d));
        }
        let ctx = self.context();
        let fields = match self.prepare(Kind::Company, s.space, &inputs, &ctx) {
            Ok(f) => f,
            // A domain that does not parse is left out, not fatal.
            Err(_) => self.prepare(Kind::Company, s.space, &inputs[..1], &ctx)?,
        };
        let id = self.next_record_id(&mut s.last_ms)?;
        Ok(Some((
            id,
            Some(NewRecord {
                id,
                kind: Kind::Company,
                space: s.space,
                fields: fields.into_iter().collect(),
            }),
        )))
    }

    /// Logs, then writes, what a session has planned up to row `rows_to`.
    fn import_flush(&self, s: &mut Session, rows_to: u64) -> Result<(), NodeError> {
        let pending = std::mem::take(&mut s.pending);
        let Some(path) = s.log.clone() else {
            return Ok(());
        };
        let created: Vec<RecordId> = pending.new.iter().map(|r| r.id).collect();
        append(
            &path,
            &Line::Batch {
                rows_to,
                created,
                updated: pending.updated,
                counts: s.counts,
            },
        )?;
        self.write_records(pending.new, pending.edits)?;
        append(&path, &Line::Stored { rows_to })?;
        s.index.all_stored();
        s.companies.all_stored();
        Ok(())
    }

    /// A row refused: the reason, under the column the field came from,
    /// with the cell's text.
    fn row_error(
        &self,
        s: &Session,
        mut out: RowOutcome,
        inputs: &[Input],
        field: &str,
        e: NodeError,
    ) -> RowOutcome {
        let op = crate::ops::OpError::from(e);
        let field = op
            .fields
            .first()
            .map(|f| f.field.clone())
            .unwrap_or_else(|| field.to_string());
        let column = s
            .spec
            .columns
            .iter()
            .find(|(_, f)| *f == field)
            .map(|(c, _)| c.clone())
            .unwrap_or_else(|| field.clone());
        let value = inputs
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        out.action = Action::Error;
        out.problems.push(CellProblem {
            column,
            value,
            reason: op.message,
        });
        out
    }
}

/// Plans a company made for a person row that is written.
fn commit_company(s: &mut Session, company: Option<NewRecord>, row: u64) {
    let Some(company) = company else { return };
    let fields: BTreeMap<String, FieldValue> = company.fields.iter().cloned().collect();
    s.companies.put(
        Kind::Company,
        &["domain".to_string(), "name".to_string()],
        &fields,
        Hit::Planned {
            id: company.id,
            row,
        },
    );
    s.counts.companies += 1;
    s.pending.new.push(company);
}

fn hit_id(hit: Hit) -> RecordId {
    match hit {
        Hit::Stored(id) | Hit::Planned { id, .. } => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OpenMode;
    use crate::repo::tests::input;

    fn repo() -> (tempfile::TempDir, Repo) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repo::open(&tmp.path().join("data"), OpenMode::Create).expect("open");
        (tmp, repo)
    }

    fn spec(kind: Kind, digest: &str) -> ImportSpec {
        ImportSpec {
            kind,
            space: None,
            mode: Mode::Upsert,
            match_on: Vec::new(),
            blank_clears: false,
            dry_run: false,
            source: "test.csv".into(),
            digest: digest.into(),
            columns: vec![
                ("Name".into(), "name".into()),
                ("Email".into(), "emails".into()),
                ("Title".into(), "title".into()),
                ("Company".into(), "company".into()),
            ],
        }
    }

    fn row(number: u64, pairs: &[(&str, &str)]) -> ImportRow {
        ImportRow {
            number,
            line: number + 1,
            inputs: input(pairs),
            id: None,
            company_domain: None,
            attendees: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn run(repo: &Repo, spec: ImportSpec, rows: Vec<ImportRow>) -> (String, Vec<RowOutcome>) {
        let begun = repo.import_begin(spec, SpaceId::Private).expect("begin");
        let out = repo.import_rows(&begun.id, rows, None).expect("rows");
        repo.import_end(&begun.id, None).expect("end");
        (begun.id, out)
    }

    fn people(repo: &Repo) -> Vec<RecordView> {
        repo.store()
            .views_of_kind(Kind::Person)
            .map(|v| v.expect("view"))
            .filter(|v| !v.deleted)
            .collect()
    }

    fn person(repo: &Repo, name: &str, email: &str, title: &str) -> RecordView {
        let fields = input(&[("name", name), ("emails", email), ("title", title)]);
        repo.create(Kind::Person, SpaceId::Private, &fields)
            .expect("create")
    }

    #[test]
    fn upsert_writes_only_what_differs_and_blank_cells_erase_nothing() {
        let (_tmp, repo) = repo();
        let ada = person(&repo, "Ada", "ada@ae.org", "Countess");
        let (_, out) = run(
            &repo,
            spec(Kind::Person, "1"),
            vec![
                // Same email in other case: an update of the title only.
                row(
                    1,
                    &[
                        ("name", "Ada"),
                        ("emails", "ADA@ae.org"),
                        ("title", "Analyst"),
                    ],
                ),
                // No title cell: the title stays.
                row(2, &[("name", "Ada"), ("emails", "ada@ae.org")]),
                row(3, &[("name", "Bob"), ("emails", "bob@x.org")]),
                row(4, &[("name", "Eve"), ("emails", "not-an-email")]),
            ],
        );
        let actions: Vec<Action> = out.iter().map(|o| o.action).collect();
        assert_eq!(
            actions,
            [
                Action::Update,
                Action::Unchanged,
                Action::Create,
                Action::Error
            ]
        );
        assert_eq!(out[0].fields, ["title"]);
        assert_eq!(out[3].problems[0].column, "Email");
        assert_eq!(out[3].problems[0].value, "not-an-email");
        let now = repo.view(ada.id).expect("read").expect("ada");
        assert_eq!(now.text("title"), Some("Analyst"));
        assert_eq!(people(&repo).len(), 2);
    }

    #[test]
    fn undo_deletes_what_was_created_and_restores_what_was_updated_unless_changed_since() {
        let (_tmp, repo) = repo();
        let ada = person(&repo, "Ada", "ada@ae.org", "Countess");
        let grace = person(&repo, "Grace", "grace@navy.mil", "Captain");
        let (id, _) = run(
            &repo,
            spec(Kind::Person, "2"),
            vec![
                row(
                    1,
                    &[
                        ("name", "Ada"),
                        ("emails", "ada@ae.org"),
                        ("title", "Analyst"),
                    ],
                ),
                row(
                    2,
                    &[
                        ("name", "Grace"),
                        ("emails", "grace@navy.mil"),
                        ("title", "Admiral"),
                    ],
                ),
                row(
                    3,
                    &[
                        ("name", "Bob"),
                        ("emails", "bob@x.org"),
                        ("company", "Bobco"),
                    ],
                ),
            ],
        );
        // Someone edits Grace's title after the import: that edit stays.
        repo.edit(
            &grace.id.to_string(),
            &input(&[("title", "Rear Admiral")]),
            &[],
        )
        .expect("edit");
        let report = repo.import_undo(&id, None).expect("undo");
        assert_eq!((report.deleted, report.restored, report.kept), (2, 1, 1));
        let ada = repo.view(ada.id).expect("read").expect("ada");
        assert_eq!(ada.text("title"), Some("Countess"));
        let grace = repo.view(grace.id).expect("read").expect("grace");
        assert_eq!(grace.text("title"), Some("Rear Admiral"));
        assert_eq!(people(&repo).len(), 2, "Bob is deleted");
        let companies: Vec<_> = repo
            .store()
            .views_of_kind(Kind::Company)
            .map(|v| v.expect("view"))
            .filter(|v| !v.deleted)
            .collect();
        assert!(companies.is_empty(), "the company made for Bob is deleted");
        assert!(repo.import_undo(&id, None).is_err(), "undone once only");
        let listed = repo.imports(None).expect("list");
        assert_eq!(listed[0].id, id);
        assert!(listed[0].undone.is_some());
    }

    #[test]
    fn people_link_companies_by_domain_then_name_and_create_the_rest_once() {
        let (_tmp, repo) = repo();
        let acme = repo
            .create(
                Kind::Company,
                SpaceId::Private,
                &input(&[("name", "Acme GmbH"), ("domain", "acme.de")]),
            )
            .expect("acme");
        let (_, out) = run(
            &repo,
            spec(Kind::Person, "3"),
            vec![
                // Another spelling, but a work email at acme.de.
                row(
                    1,
                    &[("name", "A"), ("emails", "a@acme.de"), ("company", "ACME")],
                ),
                row(
                    2,
                    &[
                        ("name", "B"),
                        ("emails", "b@gmail.com"),
                        ("company", "acme gmbh"),
                    ],
                ),
                row(
                    3,
                    &[("name", "C"), ("emails", "c@new.io"), ("company", "Newco")],
                ),
                row(
                    4,
                    &[
                        ("name", "D"),
                        ("emails", "d@gmail.com"),
                        ("company", "newco"),
                    ],
                ),
            ],
        );
        assert!(out.iter().all(|o| o.action == Action::Create), "{out:?}");
        let by_name: BTreeMap<String, RecordView> =
            people(&repo).into_iter().map(|p| (p.title(), p)).collect();
        let acme_id = acme.id.to_string();
        assert_eq!(by_name["A"].text("company"), Some(acme_id.as_str()));
        assert_eq!(by_name["B"].text("company"), Some(acme_id.as_str()));
        assert_eq!(by_name["C"].text("company"), by_name["D"].text("company"));
        let companies: Vec<RecordView> = repo
            .store()
            .views_of_kind(Kind::Company)
            .map(|v| v.expect("view"))
            .collect();
        assert_eq!(companies.len(), 2);
        let newco = companies
            .iter()
            .find(|c| c.title() == "Newco")
            .expect("newco");
        assert_eq!(
            newco.text("domain"),
            None,
            "an e-mail's domain is not the company's"
        );
        // A file with no company column links nobody to a company.
        let (_, out) = run(
            &repo,
            spec(Kind::Person, "3b"),
            vec![row(1, &[("name", "E"), ("emails", "e@acme.de")])],
        );
        assert_eq!(out[0].action, Action::Create);
        let e = people(&repo)
            .into_iter()
            .find(|p| p.title() == "E")
            .expect("E");
        assert_eq!(e.text("company"), None);
    }

    #[test]
    fn a_second_run_of_the_same_file_resumes_and_creates_nothing_twice() {
        let (_tmp, repo) = repo();
        let rows: Vec<ImportRow> = (1..=5)
            .map(|n| row(n, &[("name", &format!("P{n}"))]))
            .collect();
        // A run stopped after its first batch (no end): rows 1-2 stored.
        let begun = repo
            .import_begin(spec(Kind::Person, "4"), SpaceId::Private)
            .expect("begin");
        repo.import_rows(&begun.id, rows[..2].to_vec(), None)
            .expect("rows");
        drop(repo);
        let repo = Repo::open(&_tmp.path().join("data"), OpenMode::Existing).expect("reopen");
        let again = repo
            .import_begin(spec(Kind::Person, "4"), SpaceId::Private)
            .expect("begin again");
        assert_eq!(
            (again.id.as_str(), again.resume_after),
            (begun.id.as_str(), 2)
        );
        let rest: Vec<ImportRow> = rows
            .into_iter()
            .filter(|r| r.number > again.resume_after)
            .collect();
        repo.import_rows(&again.id, rest, None).expect("rest");
        repo.import_end(&again.id, None).expect("end");
        assert_eq!(
            people(&repo).len(),
            5,
            "names without a key are not doubled"
        );
        let list = repo.imports(None).expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].counts.create, 5);
        // A new run of the finished file is a new import, which matches nothing
        // by name (people match by email), so the user is told by the counts.
    }

    #[test]
    fn rows_made_in_the_same_millisecond_get_ids_of_their_own() {
        let (_tmp, repo) = repo();
        let rows: Vec<ImportRow> = (1..=3000)
            .map(|n| row(n, &[("name", &format!("P{n}"))]))
            .collect();
        let (_, out) = run(&repo, spec(Kind::Person, "7"), rows);
        let ids: Vec<RecordId> = out.iter().filter_map(|o| o.record).collect();
        let distinct: std::collections::HashSet<RecordId> = ids.iter().copied().collect();
        assert_eq!(distinct.len(), 3000, "no id twice");
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in row order");
        assert_eq!(people(&repo).len(), 3000);
    }

    #[test]
    fn two_rows_of_one_batch_for_one_stored_record_both_count_and_undo_to_the_first_value() {
        let (_tmp, repo) = repo();
        let ada = person(&repo, "Ada", "ada@ae.org", "Countess");
        let (id, out) = run(
            &repo,
            spec(Kind::Person, "8"),
            vec![
                row(
                    1,
                    &[
                        ("name", "Ada"),
                        ("emails", "ada@ae.org"),
                        ("title", "Analyst"),
                    ],
                ),
                row(
                    2,
                    &[
                        ("name", "Ada"),
                        ("emails", "ada@ae.org"),
                        ("title", "Engineer"),
                    ],
                ),
                row(
                    3,
                    &[("name", "Ada"), ("emails", "ada@ae.org"), ("tags", "vip")],
                ),
            ],
        );
        let actions: Vec<Action> = out.iter().map(|o| o.action).collect();
        assert_eq!(actions, [Action::Update, Action::Update, Action::Update]);
        let now = repo.view(ada.id).expect("read").expect("ada");
        assert_eq!(now.text("title"), Some("Engineer"));
        assert_eq!(now.get("tags"), Some(&FieldValue::List(vec!["vip".into()])));
        let report = repo.import_undo(&id, None).expect("undo");
        assert_eq!((report.restored, report.kept), (2, 0));
        let now = repo.view(ada.id).expect("read").expect("ada");
        assert_eq!(
            now.text("title"),
            Some("Countess"),
            "back to before the import"
        );
        assert_eq!(now.get("tags"), None);
        // Every change of the record applies on a fresh replica: no two
        // changes of one batch share a sequence number.
        let mut fresh = rapport_model::automerge::AutoCommit::new();
        for c in repo.signed_changes(ada.id).expect("changes") {
            let change =
                rapport_model::automerge::Change::from_bytes(c.change.clone()).expect("change");
            fresh.apply_changes([change]).expect("applies");
        }
    }

    #[test]
    fn a_batch_logged_but_not_stored_and_a_cut_line_are_run_again_cleanly() {
        let (tmp, repo) = repo();
        let begun = repo
            .import_begin(spec(Kind::Person, "9"), SpaceId::Private)
            .expect("begin");
        repo.import_rows(
            &begun.id,
            vec![row(1, &[("name", "P1")]), row(2, &[("name", "P2")])],
            None,
        )
        .expect("rows");
        // A crash after logging the next batch, before storing it, and one
        // in the middle of writing a line.
        let log = log_path(repo.dir(), &begun.id);
        let ghost = repo.next_record_id(&mut 0).expect("id");
        append(
            &log,
            &Line::Batch {
                rows_to: 4,
                created: vec![ghost],
                updated: Vec::new(),
                counts: Counts::default(),
            },
        )
        .expect("append");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(b"{\"batch\":{\"rows_to\":9"))
            .expect("cut line");
        drop(repo);
        let repo = Repo::open(&tmp.path().join("data"), OpenMode::Existing).expect("reopen");
        let again = repo
            .import_begin(spec(Kind::Person, "9"), SpaceId::Private)
            .expect("begin again");
        assert_eq!(again.resume_after, 2);
        repo.import_rows(
            &again.id,
            vec![row(3, &[("name", "P3")]), row(4, &[("name", "P4")])],
            None,
        )
        .expect("rest");
        let summary = repo.import_end(&again.id, None).expect("end");
        assert!(summary.finished, "the line after the cut one is read");
        assert_eq!(summary.rows, 4);
        assert_eq!(people(&repo).len(), 4);
    }

    #[test]
    fn a_dry_run_writes_nothing_and_sees_duplicates_within_the_file() {
        let (_tmp, repo) = repo();
        let mut s = spec(Kind::Person, "5");
        s.dry_run = true;
        let (_, out) = run(
            &repo,
            s,
            vec![
                row(1, &[("name", "Ada"), ("emails", "ada@ae.org")]),
                row(2, &[("name", "Ada L."), ("emails", "ada@ae.org")]),
            ],
        );
        assert_eq!(out[0].action, Action::Create);
        assert_eq!(out[1].action, Action::Update);
        assert!(people(&repo).is_empty());
        assert!(repo.imports(None).expect("list").is_empty());
    }

    #[test]
    fn rows_matching_a_row_of_the_same_batch_update_it() {
        let (_tmp, repo) = repo();
        let (_, out) = run(
            &repo,
            spec(Kind::Person, "6"),
            vec![
                row(1, &[("name", "Ada"), ("emails", "ada@ae.org")]),
                row(
                    2,
                    &[
                        ("name", "Ada"),
                        ("emails", "ada@ae.org"),
                        ("title", "Countess"),
                    ],
                ),
            ],
        );
        assert_eq!(out[1].action, Action::Update);
        let all = people(&repo);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].text("title"), Some("Countess"));
    }
}
