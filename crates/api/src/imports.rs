//! `POST /api/v1/imports` (a CSV body, imported or dry-run), `GET
//! /api/v1/imports`, `POST /api/v1/imports/{id}/undo` and `GET
//! /api/v1/export/{kind}` (CSV). The body goes through the same import
//! session as the CLI's and the web UI's (`rapport_node::import::file`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rapport_exchange::{DayOrder, records_csv};
use rapport_model::Kind;
use rapport_node::import::file::{FileImportError, FileOptions, FilePlan, Format};
use rapport_node::import::{ImportSummary, Mode};
use rapport_node::ops::{Caller, Reply, Request};
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{Problem, ProblemDocument};
use crate::routes::{AppState, Auth, run};

/// Rows an import answer lists in full (a dry run's, or the errors).
const MAX_LISTED: usize = 1000;

/// What an import did, or in a dry run would do.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportResult {
    /// The import's id (`POST /api/v1/imports/{id}/undo`); none for a dry run.
    pub id: Option<String>,
    pub dry_run: bool,
    /// How the body was read: `UTF-8`, `UTF-8 with BOM`, `UTF-16LE`, `UTF-16BE`, `Windows-1252`.
    pub encoding: String,
    pub delimiter: String,
    /// Each mapped column and the field it fills.
    pub columns: Vec<MappedColumn>,
    /// Columns no field reads.
    pub unmapped: Vec<String>,
    pub counts: ImportCounts,
    /// Every row's outcome (a dry run), or the rows with errors; at most 1000.
    pub rows: Vec<ImportRowResult>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MappedColumn {
    pub column: String,
    pub field: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportCounts {
    pub create: u64,
    pub update: u64,
    pub unchanged: u64,
    pub skip: u64,
    pub error: u64,
    /// Companies created for people's company column.
    pub companies: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportRowResult {
    /// 1 is the first row after the header.
    pub number: u64,
    pub line: u64,
    /// `create`, `update`, `unchanged`, `skip` or `error`.
    pub action: String,
    pub record: Option<String>,
    pub fields: Vec<String>,
    pub note: Option<String>,
    pub problems: Vec<CellProblem>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CellProblem {
    pub column: String,
    pub value: String,
    pub reason: String,
}

/// A past import.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportInfo {
    pub id: String,
    pub kind: String,
    pub space: String,
    pub source: String,
    /// Unix seconds.
    pub started: i64,
    pub finished: bool,
    pub undone: bool,
    pub counts: ImportCounts,
}

/// What an undo did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UndoResult {
    pub deleted: u64,
    pub restored: u64,
    /// Fields left alone: someone changed them after the import.
    pub kept: u64,
}

fn counts(c: &rapport_node::import::Counts) -> ImportCounts {
    ImportCounts {
        create: c.create,
        update: c.update,
        unchanged: c.unchanged,
        skip: c.skip,
        error: c.error,
        companies: c.companies,
    }
}

fn info(i: ImportSummary) -> ImportInfo {
    ImportInfo {
        counts: counts(&i.counts),
        id: i.id,
        kind: i.kind.as_str().into(),
        space: i.space.to_string(),
        source: i.source,
        started: i.started,
        finished: i.finished,
        undone: i.undone.is_some(),
    }
}

fn bad(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", detail)
}

fn options(params: &[(String, String)]) -> Result<(FileOptions, String), Problem> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let source = get("name").unwrap_or("upload.csv").to_string();
    let format = match get("format") {
        Some(f) => Format::parse(f)
            .ok_or_else(|| bad(format!("format `{f}`: use csv, vcard, ics or json")))?,
        None => Format::of_name(&source),
    };
    let kind: Kind = match get("kind") {
        Some(k) => Kind::known(k).map_err(|e| bad(e.to_string()))?,
        None => format.default_kind(),
    };
    let mut o = FileOptions::new(kind);
    o.format = format;
    o.space = get("space").map(str::to_string);
    o.mode = match get("mode").unwrap_or("upsert") {
        "create" => Mode::Create,
        "update" => Mode::Update,
        "upsert" => Mode::Upsert,
        m => return Err(bad(format!("mode `{m}`: use create, update or upsert"))),
    };
    let flag = |k: &str| get(k).is_some_and(|v| matches!(v, "true" | "1" | "yes"));
    o.blank_clears = flag("blank_clears");
    o.dry_run = flag("dry_run");
    o.match_on = get("match")
        .map(|m| {
            m.split(',')
                .map(|f| f.trim().to_string())
                .filter(|f| !f.is_empty())
                .collect()
        })
        .unwrap_or_default();
    o.map = params
        .iter()
        .filter(|(k, _)| k == "map")
        .map(|(_, v)| v.clone())
        .collect();
    o.decimal_comma = match get("decimal") {
        None => None,
        Some("comma") => Some(true),
        Some("point") => Some(false),
        Some(d) => return Err(bad(format!("decimal `{d}`: use comma or point"))),
    };
    o.slash_dates = match get("dates") {
        None => None,
        Some("dmy") => Some(DayOrder::Dmy),
        Some("mdy") => Some(DayOrder::Mdy),
        Some(d) => return Err(bad(format!("dates `{d}`: use dmy or mdy"))),
    };
    Ok((o, source))
}

#[utoipa::path(
    post,
    path = "/api/v1/imports",
    tag = "imports",
    params(
        ("format" = Option<String>, Query, description = "csv, vcard, ics or json [default: by the extension of `name`, else csv]"),
        ("kind" = Option<String>, Query, description = "What each row is [default: person; activity for ics]. A JSON export is imported one kind per request"),
        ("space" = Option<String>, Query, description = "A space by name or id [default: private, or the token's space]"),
        ("mode" = Option<String>, Query, description = "upsert (default), create or update"),
        ("match" = Option<String>, Query, description = "Fields that identify a record, comma-separated [default: emails for people; domain, name for companies]"),
        ("map" = Option<String>, Query, description = "COLUMN=FIELD (repeatable): read a column into a field; FIELD `-` skips it"),
        ("blank_clears" = Option<bool>, Query, description = "An empty cell clears the field"),
        ("dry_run" = Option<bool>, Query, description = "Say what would happen; write nothing"),
        ("decimal" = Option<String>, Query, description = "comma or point [default: comma in `;`-separated files]"),
        ("dates" = Option<String>, Query, description = "dmy or mdy: how to read 03/04/2026"),
        ("name" = Option<String>, Query, description = "The file's name, for `GET /api/v1/imports`"),
    ),
    request_body(content = String, content_type = "text/csv", description = "The file: CSV (UTF-8, UTF-16 with BOM or Windows-1252; `,` `;` or tab), vCard 2.1 to 4.0, iCalendar, or Rapport's JSON export; at most 64 MiB"),
    responses(
        (status = 200, description = "What was imported (or would be)", body = ImportResult),
        (status = 422, description = "Not a table, or columns that map to nothing: nothing was written", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn import_csv(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(params): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Result<Response, Problem> {
    let (opts, source) = options(&params)?;
    if body.is_empty() {
        return Err(bad("send the CSV file as the request body"));
    }
    let ops = state.ops.clone();
    let result =
        tokio::task::spawn_blocking(move || import_blocking(&ops, &caller, &opts, &source, &body))
            .await
            .map_err(|_| Problem::internal("the import stopped before it answered"))??;
    Ok(Json(result).into_response())
}

fn import_blocking(
    ops: &rapport_node::ops::Ops,
    caller: &Caller,
    opts: &FileOptions,
    source: &str,
    body: &[u8],
) -> Result<ImportResult, Problem> {
    let shown = |e: FileImportError| match e {
        FileImportError::Op(op) => Problem::from(op),
        other => bad(other.to_string()),
    };
    let mut run = |r: Request| ops.execute(caller, r).map_err(FileImportError::Op);
    let plan = FilePlan::read(source, body, body, opts, &mut run).map_err(shown)?;
    let begun = plan.begin(opts, &mut run).map_err(shown)?;
    let report = plan
        .run(
            body,
            &begun,
            opts.dry_run,
            MAX_LISTED,
            &mut run,
            &mut |_| {},
        )
        .map_err(shown)?;
    let listed = if opts.dry_run {
        report
            .rows
            .iter()
            .take(MAX_LISTED)
            .cloned()
            .collect::<Vec<_>>()
    } else {
        report
            .failed
            .iter()
            .take(MAX_LISTED)
            .map(|(o, _)| o.clone())
            .collect()
    };
    Ok(ImportResult {
        id: report.id.clone(),
        dry_run: report.dry_run,
        encoding: plan.encoding.as_str().into(),
        delimiter: (plan.delimiter as char).to_string(),
        columns: plan
            .columns
            .mapped()
            .into_iter()
            .map(|(column, field)| MappedColumn {
                column,
                field: field.into(),
            })
            .collect(),
        unmapped: plan.columns.unmapped(),
        counts: counts(&report.counts),
        rows: listed
            .into_iter()
            .map(|o| ImportRowResult {
                number: o.number,
                line: o.line,
                action: o.action.as_str().into(),
                record: o.record.map(|r| r.to_string()),
                fields: o.fields,
                note: o.note,
                problems: o
                    .problems
                    .into_iter()
                    .map(|p| CellProblem {
                        column: p.column,
                        value: p.value,
                        reason: p.reason,
                    })
                    .collect(),
            })
            .collect(),
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/imports",
    tag = "imports",
    responses((status = 200, description = "Imports made on this node, newest first (a token limited to a space sees that space's)", body = Vec<ImportInfo>)),
    security(("bearer" = []))
)]
pub(crate) async fn list_imports(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> Result<Response, Problem> {
    match run(&state.ops, caller, Request::Imports).await? {
        Reply::Imports { imports } => {
            Ok(Json(imports.into_iter().map(info).collect::<Vec<_>>()).into_response())
        }
        _ => Err(Problem::internal("the node answered something else")),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/imports/{id}/undo",
    tag = "imports",
    params(("id" = String, Path, description = "An import's id")),
    responses(
        (status = 200, description = "What the undo did", body = UndoResult),
        (status = 404, description = "No such import", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "Undone already, or still running", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn undo_import(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    match run(&state.ops, caller, Request::ImportUndo { id }).await? {
        Reply::ImportUndone(r) => Ok(Json(UndoResult {
            deleted: r.deleted,
            restored: r.restored,
            kept: r.kept,
        })
        .into_response()),
        _ => Err(Problem::internal("the node answered something else")),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/export/{kind}",
    tag = "imports",
    params(
        ("kind" = String, Path, description = "company, person, deal, activity, ticket or campaign"),
        ("format" = Option<String>, Query, description = "csv (default); vcard (people: vCard 4.0); ics (activities: meetings and tasks as iCalendar)"),
    ),
    responses(
        (status = 200, description = "The kind's live records as CSV (UTF-8 with BOM; imports back as it is), vCard or iCalendar", body = String, content_type = "text/csv"),
        (status = 422, description = "A format that does not hold this kind", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such kind", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn export_csv(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(kind): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, Problem> {
    let format = params
        .iter()
        .find(|(k, _)| k == "format")
        .map_or("csv", |(_, v)| v.as_str());
    let kind: Kind = Kind::known(&kind)
        .map_err(|e| Problem::new(StatusCode::NOT_FOUND, "not_found", e.to_string()))?;
    let records = match run(&state.ops, caller, Request::Export { kind: None }).await? {
        Reply::Export { records } => records,
        _ => return Err(Problem::internal("the node answered something else")),
    };
    let (content_type, body) = match (format, kind) {
        ("csv", _) => (
            "text/csv; charset=utf-8",
            records_csv(Vec::new(), kind, &records)
                .map_err(|e| Problem::internal(e.to_string()))?,
        ),
        ("vcard", Kind::Person) => (
            "text/vcard; charset=utf-8",
            rapport_exchange::people_vcard(&records).into_bytes(),
        ),
        ("ics", Kind::Activity) => (
            "text/calendar; charset=utf-8",
            rapport_exchange::activities_ics(&records).into_bytes(),
        ),
        (f, k) => {
            return Err(bad(format!(
                "format `{f}` for {k}: csv for every kind, vcard for person, ics for activity"
            )));
        }
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}
