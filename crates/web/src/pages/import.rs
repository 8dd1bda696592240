//! Import and export: `GET /import` (upload form, CSV downloads, past
//! imports with undo), `POST /import/upload` (keeps the file, then shows
//! the preview), `GET /import/preview` (a dry run: the file as read, the
//! columns with the field each goes to, changeable, and what each row
//! would do), `POST /import/run`, `POST /import/{id}/undo`,
//! `GET /import/{id}/errors.csv` and `GET /k/{kind}/export.csv`.
//!
//! The file is read and sent through the same import session the CLI
//! uses (`rapport_node::import::file`), so both behave alike.

use std::fs::File;
use std::io::BufReader;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use rapport_exchange::{records_csv, write_rejected};
use rapport_model::Kind;
use rapport_node::import::file::{FileImportError, FileOptions, FilePlan, FileReport, Format};
use rapport_node::import::{Action, ImportSummary, Mode};
use rapport_node::ops::{Caller, Reply, Request};

use crate::page::{self, Nav, Page};
use crate::trail::Crumb;
use crate::{App, WebError};

/// Rows of a preview shown in its table.
const SHOWN_ROWS: usize = 100;

/// Rows kept of a run (errors first in the preview; the error file).
const KEPT_ROWS: usize = 10_000;

/// What the upload form and the preview carry from page to page.
#[derive(Debug, Clone, Default)]
struct Settings {
    file: String,
    name: String,
    kind: String,
    space: String,
    mode: String,
    blank_clears: bool,
    /// `(column index, field or "-")` chosen on the preview.
    columns: Vec<(usize, String)>,
}

impl Settings {
    fn from_pairs(pairs: &[(String, String)]) -> Settings {
        let mut s = Settings::default();
        for (k, v) in pairs {
            match k.as_str() {
                "file" => s.file = v.clone(),
                "name" => s.name = v.clone(),
                "kind" => s.kind = v.clone(),
                "space" => s.space = v.clone(),
                "mode" => s.mode = v.clone(),
                "blank_clears" => s.blank_clears = v == "1" || v == "on",
                k => {
                    if let Some(i) = k.strip_prefix("col").and_then(|i| i.parse().ok()) {
                        s.columns.push((i, v.clone()));
                    }
                }
            }
        }
        s
    }

    fn kind(&self) -> Result<Kind, WebError> {
        if self.kind.is_empty() {
            return Ok(Format::of_name(&self.name).default_kind());
        }
        Kind::known(&self.kind)
            .map_err(|e: rapport_model::schema::UnknownKind| WebError::BadRequest(e.to_string()))
    }

    fn options(&self, dry_run: bool) -> Result<FileOptions, WebError> {
        let mut opts = FileOptions::new(self.kind()?);
        opts.format = Format::of_name(&self.name);
        opts.space = match self.space.as_str() {
            "" | "private" => None,
            s => Some(s.to_string()),
        };
        opts.mode = match self.mode.as_str() {
            "create" => Mode::Create,
            "update" => Mode::Update,
            _ => Mode::Upsert,
        };
        opts.blank_clears = self.blank_clears;
        opts.dry_run = dry_run;
        for (i, field) in &self.columns {
            opts.map.push(format!("#{i}={field}"));
        }
        Ok(opts)
    }

    /// The file and kind as hidden inputs; for the form that checks
    /// again, the space, mode and blank cells too (the run form asks them).
    fn hidden(&self, with_choices: bool) -> Markup {
        html! {
            input type="hidden" name="file" value=(self.file);
            input type="hidden" name="name" value=(self.name);
            input type="hidden" name="kind" value=(self.kind);
            @if with_choices {
                input type="hidden" name="space" value=(self.space);
                input type="hidden" name="mode" value=(self.mode);
                @if self.blank_clears { input type="hidden" name="blank_clears" value="1"; }
            }
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ImportQuery {
    done: Option<String>,
    undone: Option<String>,
}

pub(crate) async fn page(State(app): State<App>, Query(q): Query<ImportQuery>) -> Response {
    let read = app
        .blocking(|app| {
            let imports = match app.ops.execute(&Caller::user(), Request::Imports)? {
                Reply::Imports { imports } => imports,
                _ => Vec::new(),
            };
            let spaces = writable_spaces(app);
            let kinds = app.repo().kinds_in(None)?;
            Ok((imports, spaces, kinds))
        })
        .await;
    let (imports, spaces, kinds) = match read {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let flash = match (&q.done, &q.undone) {
        (Some(id), _) => imports.iter().find(|i| &i.id == id).map(|i| {
            html! { p class="flash" role="status" { "Imported " strong { (i.source) } ": " (counts_text(i)) "." } }
        }),
        (_, Some(id)) => imports.iter().find(|i| &i.id == id).and_then(|i| i.undone).map(|u| {
            html! { p class="flash" role="status" { "Undone: " (u.deleted) " records deleted, " (u.restored) " fields restored, " (u.kept) " kept (changed since)." } }
        }),
        _ => None,
    };
    let body = html! {
        h1 { "Import and export" }
        @if let Some(f) = flash { (f) }
        section aria-labelledby="import-h" {
            h2 id="import-h" { "Import a file" }
            form method="post" action="/import/upload" enctype="multipart/form-data" class="record-form" {
                div class="field" {
                    label for="i-file" { "File" }
                    input id="i-file" name="file" type="file" accept=".csv,.txt,.tsv,.vcf,.ics,.json,text/csv,text/vcard,text/calendar,application/json" required aria-describedby="i-file-hint";
                    p class="hint" id="i-file-hint" { "CSV from Excel, Outlook, Google Contacts, HubSpot, Salesforce or Rapport; contacts as vCard (.vcf) from a phone, Apple Contacts, Google or Outlook; a calendar (.ics: events become meetings, to-dos tasks); or Rapport's JSON export (one kind per upload). Up to " (rapport_node::import::MAX_UPLOAD >> 20) " MiB. Nothing is written until you confirm." }
                }
                (kind_select(&kinds))
                (space_select(&spaces, "private"))
                div class="toolbar" { button type="submit" { "Check the file" } }
            }
        }
        section aria-labelledby="export-h" {
            h2 id="export-h" { "Export" }
            p { "One CSV per kind (UTF-8, opens in Excel, imports back as it is):" }
            ul class="links" {
                @for (k, many) in &kinds {
                    li { a href={ "/k/" (k.as_str()) "/export.csv" } download { (page::label(many)) " (CSV)" } }
                }
            }
            p { "After an import, " a href="/duplicates" { "look for possible duplicates" } "." }
            p { "For phones, mail programs and calendars:" }
            ul class="links" {
                li { a href="/export/people.vcf" download { "People (vCard)" } }
                li { a href="/export/activities.ics" download { "Meetings and tasks (iCalendar)" } }
            }
        }
        section aria-labelledby="past-h" {
            h2 id="past-h" { "Past imports" }
            @if imports.is_empty() {
                p { "No imports yet." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Started" } th scope="col" { "File" } th scope="col" { "Kind" } th scope="col" { "Rows" } th scope="col" { "State" } th scope="col" { span class="visually-hidden" { "Actions" } } } }
                    tbody {
                        @for i in &imports {
                            tr {
                                td { (page::local_time(i.started)) }
                                td { (i.source) }
                                td { (page::plural(i.kind)) }
                                td { (counts_text(i)) @if i.counts.error > 0 { " · " a href={ "/import/" (i.id) "/errors.csv" } download { "rows with errors" } } }
                                td { (if i.undone.is_some() { "undone" } else if i.finished { "done" } else { "unfinished" }) }
                                td {
                                    @if i.undone.is_none() {
                                        form method="post" action={ "/import/" (i.id) "/undo" } {
                                            button type="submit" class="secondary" { "Undo" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page::render(&app, Page {
        title: "Import and export".into(),
        nav: Nav::Import,
        crumbs: import_crumbs(None),
        help: html! {
            p { "Bring people, companies or deals in from a CSV file. The columns are matched to fields by their headers (Outlook, Google Contacts, HubSpot and others); you see what each row would do before anything is written." }
            p { "People are matched by e-mail, companies by domain and name: a match is updated (only what differs; empty cells change nothing), the rest is created." }
            p { strong { "Undo" } " deletes what an import created and puts back what it changed, unless someone changed it since." }
        },
        body,
        watch: Vec::new(),
        // Watches nothing: no live updates to resume.
        since: None,
    })
    .into_response()
}

/// My work › Import and export (› the file being previewed).
fn import_crumbs(file: Option<&str>) -> Vec<Crumb> {
    let mut crumbs = vec![Crumb {
        label: "My work".into(),
        href: Some("/".into()),
    }];
    crumbs.push(Crumb {
        label: "Import and export".into(),
        href: file.map(|_| "/import".into()),
    });
    if let Some(f) = file {
        crumbs.push(Crumb {
            label: f.to_string(),
            href: None,
        });
    }
    crumbs
}

fn counts_text(i: &ImportSummary) -> String {
    format!(
        "{} created, {} updated, {} errors",
        i.counts.create + i.counts.companies,
        i.counts.update,
        i.counts.error
    )
}

fn writable_spaces(app: &App) -> Vec<(String, String)> {
    let repo = app.repo();
    repo.spaces()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| repo.check_may_write(s.id).is_ok())
        .map(|s| (s.id.to_string(), s.name))
        .collect()
}

fn kind_select(kinds: &[(Kind, String)]) -> Markup {
    html! {
        div class="field" {
            label for="i-kind" { "Each row is a" }
            select id="i-kind" name="kind" {
                option value="" selected { "As the file says (a person; a meeting or task in a calendar)" }
                @for (k, _) in kinds {
                    option value=(k.as_str()) { (page::singular(*k)) }
                }
            }
        }
    }
}

fn space_select(spaces: &[(String, String)], selected: &str) -> Markup {
    html! {
        div class="field" {
            label for="i-space" { "Into" }
            select id="i-space" name="space" {
                option value="private" selected[selected == "private" || selected.is_empty()] { "Private (this device only)" }
                @for (id, name) in spaces {
                    option value=(id) selected[selected == id] { "Shared: " (name) }
                }
            }
        }
    }
}

pub(crate) async fn upload(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let parts = match crate::multipart::parts(&content_type, &body) {
        Ok(p) => p,
        Err(e) => return WebError::BadRequest(e).into_response(),
    };
    let mut s = Settings::default();
    let mut data = None;
    for p in parts {
        let text = || String::from_utf8_lossy(&p.data).trim().to_string();
        match p.name.as_str() {
            "file" => {
                s.name = p.filename.clone().unwrap_or_else(|| "upload.csv".into());
                data = Some(p.data);
            }
            "kind" => s.kind = text(),
            "space" => s.space = text(),
            _ => {}
        }
    }
    let Some(data) = data.filter(|d| !d.is_empty()) else {
        return WebError::BadRequest("choose a file to import".into()).into_response();
    };
    match app
        .blocking(move |app| Ok(app.repo().keep_upload(&data)?))
        .await
    {
        Ok(id) => {
            s.file = id;
            Redirect::to(&preview_href(&s)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn preview_href(s: &Settings) -> String {
    let mut href = format!(
        "/import/preview?file={}&name={}&kind={}&space={}",
        page::url_encode(&s.file),
        page::url_encode(&s.name),
        page::url_encode(&s.kind),
        page::url_encode(&s.space)
    );
    for (i, f) in &s.columns {
        href.push_str(&format!("&col{i}={}", page::url_encode(f)));
    }
    href
}

/// Reads the uploaded file and runs it through an import session.
fn run_file(app: &App, s: &Settings, dry_run: bool) -> Result<(FilePlan, FileReport), WebError> {
    let repo = app.repo();
    let path = repo.upload_path(&s.file)?;
    let open = || {
        File::open(&path)
            .map(BufReader::new)
            .map_err(|e| WebError::Internal(e.to_string()))
    };
    let shown = |e: FileImportError| match e {
        FileImportError::Op(op) => WebError::Op(op),
        other => WebError::BadRequest(other.to_string()),
    };
    // Column choices name columns by position (`#i=field`), which
    // `Columns::guess` checks against the header: no pass to read it first.
    let opts = s.options(dry_run)?;
    let mut run = |r: Request| {
        app.ops
            .execute(&Caller::user(), r)
            .map_err(FileImportError::Op)
    };
    let plan = FilePlan::read(&s.name, open()?, open()?, &opts, &mut run).map_err(shown)?;
    let begun = plan.begin(&opts, &mut run).map_err(shown)?;
    let report = plan
        .run(open()?, &begun, dry_run, KEPT_ROWS, &mut run, &mut |_| {})
        .map_err(shown)?;
    Ok((plan, report))
}

pub(crate) async fn preview(
    State(app): State<App>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let s = Settings::from_pairs(&pairs);
    let s2 = s.clone();
    let result = app
        .blocking(move |app| {
            let spaces = writable_spaces(app);
            Ok((run_file(app, &s2, true), spaces))
        })
        .await;
    let (result, spaces) = match result {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let kind = s.kind().unwrap_or(Kind::Person);
    let body = match &result {
        Err(e) => html! {
            h1 { "Import " (s.name) }
            div class="notice" role="alert" {
                p { strong { "This file cannot be imported: " } (e.to_string()) }
                p { "Nothing was written. " a href="/import" { "Choose another file" } }
            }
        },
        Ok((plan, report)) => preview_body(&s, kind, plan, report, &spaces),
    };
    let status = if result.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = page::render(
        &app,
        Page {
            title: format!("Import {}", s.name),
            nav: Nav::Import,
            crumbs: import_crumbs(Some(&s.name)),
            help: html! {
                p { "This is a dry run: nothing has been written yet. Check the field each column goes to, change it where it is wrong (" em { "skip" } " leaves a column out), and check again." }
                p { "Rows with errors are not imported; after the import, download them as a CSV, fix them and import that file." }
            },
            body,
            watch: Vec::new(),
            // Watches nothing: no live updates to resume.
            since: None,
        },
    );
    (status, page).into_response()
}

fn preview_body(
    s: &Settings,
    kind: Kind,
    plan: &FilePlan,
    report: &FileReport,
    spaces: &[(String, String)],
) -> Markup {
    let targets = plan.columns.targets();
    let c = report.counts;
    let rows: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.action == Action::Error)
        .chain(report.rows.iter().filter(|r| r.action != Action::Error))
        .take(SHOWN_ROWS)
        .collect();
    html! {
        h1 { "Import " (s.name) }
        p { "Read as " (plan.describe()) "." }
        p class="flash" role="status" {
            "Would create " strong { (c.create) } ", update " strong { (c.update) } ", leave " (c.unchanged) " unchanged, skip " (c.skip)
            @if c.companies > 0 { ", and create " (c.companies) " companies" }
            "; " strong { (c.error) } " rows have errors."
        }
        form method="get" action="/import/preview" {
            (s.hidden(true))
            table {
                caption { "Columns" }
                thead { tr { th scope="col" { "Column" } th scope="col" { "Field" } } }
                tbody {
                    @for (i, h) in plan.headers.iter().enumerate() {
                        @let current = targets.get(i).copied().flatten().unwrap_or("-");
                        tr {
                            th scope="row" { label for={ "col" (i) } { (h) } }
                            td {
                                select id={ "col" (i) } name={ "col" (i) } {
                                    option value="-" selected[current == "-"] { "skip" }
                                    @for f in target_names(kind) {
                                        option value=(f) selected[current == f] { (page::label(f)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            div class="toolbar" { button type="submit" class="secondary" { "Check again" } }
        }
        form method="post" action="/import/run" class="record-form" {
            (s.hidden(false))
            @for (i, target) in targets.iter().enumerate() {
                input type="hidden" name={ "col" (i) } value=(target.unwrap_or("-"));
            }
            (space_select(spaces, &s.space))
            div class="field" {
                label for="i-mode" { "Rows that match a record" }
                select id="i-mode" name="mode" {
                    option value="upsert" selected[s.mode.is_empty() || s.mode == "upsert"] { "update it; create the rest" }
                    option value="create" selected[s.mode == "create"] { "skip them; only create" }
                    option value="update" selected[s.mode == "update"] { "update it; create nothing" }
                }
            }
            div class="field" {
                label { input type="checkbox" name="blank_clears" value="1" checked[s.blank_clears]; " Empty cells clear the field" }
            }
            div class="toolbar" {
                button type="submit" { "Import " (c.create + c.update) " rows" }
                a class="button secondary" href="/import" { "Cancel" }
            }
        }
        table {
            caption { "What each row would do" @if report.rows.len() > SHOWN_ROWS { " (first " (SHOWN_ROWS) ", errors first)" } }
            thead { tr { th scope="col" { "Row" } th scope="col" { "Line" } th scope="col" { "Does" } th scope="col" { "Details" } } }
            tbody {
                @for r in rows {
                    tr {
                        td { (r.number) }
                        td { (r.line) }
                        td { (r.action.as_str()) }
                        td {
                            @if !r.fields.is_empty() { (r.fields.join(", ")) }
                            @if let Some(n) = &r.note { " " (n) }
                            @for p in &r.problems { p class="error" { (p.column) ": " code { (p.value) } " — " (p.reason) } }
                        }
                    }
                }
            }
        }
    }
}

fn target_names(kind: Kind) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = kind.fields().iter().map(|d| d.name).collect();
    if kind == Kind::Person {
        names.extend(["first_name", "middle_name", "last_name", "company_domain"]);
    }
    names.push("id");
    names
}

pub(crate) async fn run(
    State(app): State<App>,
    axum::Form(pairs): axum::Form<Vec<(String, String)>>,
) -> Response {
    let s = Settings::from_pairs(&pairs);
    let done = app
        .blocking(move |app| {
            let (plan, report) = run_file(app, &s, false)?;
            let id = report
                .id
                .clone()
                .ok_or_else(|| WebError::Internal("the import has no id".into()))?;
            if !report.failed.is_empty() {
                let rows: Vec<(Vec<String>, String)> = report
                    .failed
                    .iter()
                    .map(|(o, cells)| (cells.clone(), o.reasons()))
                    .collect();
                let csv = write_rejected(Vec::new(), &plan.headers, &rows)
                    .map_err(|e| WebError::Internal(e.to_string()))?;
                app.repo().keep_import_errors(&id, &csv)?;
            }
            app.repo().drop_upload(&s.file)?;
            Ok(id)
        })
        .await;
    match done {
        Ok(id) => Redirect::to(&format!("/import?done={id}")).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn undo(State(app): State<App>, Path(id): Path<String>) -> Response {
    let id2 = id.clone();
    match app
        .blocking(move |app| {
            Ok(app
                .ops
                .execute(&Caller::user(), Request::ImportUndo { id: id2 })?)
        })
        .await
    {
        Ok(_) => Redirect::to(&format!("/import?undone={id}")).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn errors(State(app): State<App>, Path(id): Path<String>) -> Response {
    let id = id.trim_end_matches(".csv").to_string();
    match app
        .blocking(move |app| Ok(app.repo().import_errors(&id)?))
        .await
    {
        Ok(Some(csv)) => csv_response(csv, "rows-with-errors.csv"),
        Ok(None) => {
            WebError::NotFound("this import has no rows with errors".into()).into_response()
        }
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn export(State(app): State<App>, Path(kind): Path<String>) -> Response {
    let Ok(kind) = Kind::known(&kind) else {
        return WebError::NotFound(format!("no kind {kind}")).into_response();
    };
    let made = app
        .blocking(move |app| {
            let records = match app
                .ops
                .execute(&Caller::user(), Request::Export { kind: None })?
            {
                Reply::Export { records } => records,
                _ => Vec::new(),
            };
            records_csv(Vec::new(), kind, &records).map_err(|e| WebError::Internal(e.to_string()))
        })
        .await;
    match made {
        Ok(csv) => csv_response(csv, &format!("{}.csv", kind.as_str())),
        Err(e) => e.into_response(),
    }
}

/// `GET /export/people.vcf` and `GET /export/activities.ics`.
pub(crate) async fn export_document(State(app): State<App>, Path(name): Path<String>) -> Response {
    let ics = match name.as_str() {
        "people.vcf" => false,
        "activities.ics" => true,
        _ => return WebError::NotFound(format!("no export {name}")).into_response(),
    };
    let made = app
        .blocking(move |app| {
            match app
                .ops
                .execute(&Caller::user(), Request::Export { kind: None })?
            {
                Reply::Export { records } if ics => Ok(rapport_exchange::activities_ics(&records)),
                Reply::Export { records } => Ok(rapport_exchange::people_vcard(&records)),
                _ => Ok(String::new()),
            }
        })
        .await;
    match made {
        Ok(text) if ics => file_response(text.into_bytes(), "text/calendar; charset=utf-8", &name),
        Ok(text) => file_response(text.into_bytes(), "text/vcard; charset=utf-8", &name),
        Err(e) => e.into_response(),
    }
}

pub(crate) fn csv_response(csv: Vec<u8>, name: &str) -> Response {
    file_response(csv, "text/csv; charset=utf-8", name)
}

pub(crate) fn file_response(body: Vec<u8>, content_type: &str, name: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}
