//! `GET /api/v1/reports/{name}`: a report as JSON, or one of its sections
//! as CSV.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rapport_node::ops::{Reply, Request};
use rapport_node::reports::{ReportName, ReportQuery};
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{Problem, ProblemDocument};
use crate::routes::{AppState, Auth, run};

/// A report: titled sections of rows, amounts as exact decimals.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Report {
    /// win-rate, forecast, abc, rfm, churn, service or campaigns.
    pub name: String,
    pub title: String,
    /// What the reader must know: currencies, conversions, what was left out.
    pub notes: Vec<String>,
    pub sections: Vec<ReportSection>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportSection {
    pub title: String,
    pub columns: Vec<String>,
    /// Cells as shown; "–" where there is nothing to show.
    pub rows: Vec<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart: Option<ReportChart>,
}

/// How the web UI draws a section: a bar per row, labelled by one column,
/// bars from others, a line (percent) from another; columns counted from 0.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportChart {
    pub label: usize,
    pub bars: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportParams {
    from: Option<String>,
    to: Option<String>,
    owner: Option<String>,
    space: Option<String>,
    pipeline: Option<String>,
    days: Option<u32>,
    abc: Option<String>,
    #[serde(default)]
    convert: bool,
    customer: Option<String>,
    format: Option<String>,
    section: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/api/v1/reports/{name}",
    tag = "reports",
    params(
        ("name" = String, Path, description = "win-rate, forecast, abc, rfm, churn, service, campaigns or cross-sell"),
        ("from" = Option<String>, Query, description = "First day counted, YYYY-MM-DD (close day of deals, opening day of tickets, start of campaigns)"),
        ("to" = Option<String>, Query, description = "Last day counted"),
        ("owner" = Option<String>, Query, description = "Only deals, tickets and campaigns (churn: customers) with this owner"),
        ("space" = Option<String>, Query, description = "Only this space's records (name or id)"),
        ("pipeline" = Option<String>, Query, description = "Only this pipeline's deals"),
        ("days" = Option<u32>, Query, description = "Churn: days without activity that make a customer quiet [90]"),
        ("abc" = Option<String>, Query, description = "ABC: cumulative percentages ending A and B [80,95]"),
        ("convert" = Option<bool>, Query, description = "Convert amounts at the node user's exchange rates (`rapport rates`)"),
        ("customer" = Option<String>, Query, description = "Cross-sell: the customer (company name or id) to suggest products for [the 20 with the most won deals]"),
        ("format" = Option<String>, Query, description = "json (default) or csv (one section)"),
        ("section" = Option<usize>, Query, description = "With format=csv: the section, from 1 [1]"),
    ),
    responses(
        (status = 200, description = "The report", body = Report),
        (status = 404, description = "No such report", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "A filter that does not read", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn report(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(name): Path<String>,
    query: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(p) = query?;
    let name: ReportName = name
        .parse()
        .map_err(|e: String| Problem::new(StatusCode::NOT_FOUND, "not_found", e))?;
    let request = Request::Report(ReportQuery {
        name,
        from: p.from,
        to: p.to,
        owner: p.owner,
        space: p.space,
        pipeline: p.pipeline,
        days: p.days,
        abc: p.abc,
        convert: p.convert,
        customer: p.customer,
    });
    let reply = run(&state.ops, caller, request).await?;
    let Reply::Report(r) = reply else {
        return Err(Problem::internal("the node answered something else"));
    };
    match p.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(Report {
            name: r.name.to_string(),
            title: r.title,
            notes: r.notes,
            sections: r
                .sections
                .into_iter()
                .map(|s| ReportSection {
                    title: s.title,
                    columns: s.columns,
                    rows: s.rows,
                    chart: s.chart.map(|c| ReportChart {
                        label: c.label,
                        bars: c.bars,
                        line: c.line,
                    }),
                })
                .collect(),
        })
        .into_response()),
        "csv" => {
            let body = r
                .section_csv(p.section.unwrap_or(1))
                .map_err(|e| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e))?;
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response())
        }
        other => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("format `{other}`: json or csv"),
        )),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/calendar/{secret}",
    tag = "reports",
    params(
        ("secret" = String, Path, description = "The feed's secret, as `rapport calendar feed create` printed it (`.ics` may follow)"),
    ),
    responses(
        (status = 200, description = "The feed's meetings (VEVENT, repeating ones with RRULE) and open tasks (VTODO) as iCalendar", body = String, content_type = "text/calendar"),
        (status = 404, description = "No feed has this address (revoked?)", body = ProblemDocument, content_type = "application/problem+json"),
    ),
)]
/// A calendar feed for calendar apps, which cannot send a bearer token:
/// the secret in the URL is the feed's key, and opens nothing else.
pub(crate) async fn calendar_feed(
    State(state): State<AppState>,
    Path(secret): Path<String>,
) -> Result<Response, Problem> {
    let secret = secret.trim_end_matches(".ics").to_string();
    let reply = run(
        &state.ops,
        rapport_node::ops::Caller::user(),
        Request::CalendarFeed { secret },
    )
    .await?;
    let Reply::Calendar { ics } = reply else {
        return Err(Problem::internal("the node answered something else"));
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        ics,
    )
        .into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgendaParams {
    from: Option<String>,
    days: Option<u32>,
    owner: Option<String>,
    #[serde(default)]
    everyone: bool,
    zone: Option<String>,
    space: Option<String>,
}

/// Meetings, calls and tasks of some days (`rapport agenda`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Agenda {
    pub from: String,
    pub days: u32,
    /// The time zone of `start` and `end` (IANA).
    pub zone: String,
    /// Whose; absent for everyone's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Overdue tasks first, then day by day in time order.
    pub entries: Vec<AgendaEntry>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgendaEntry {
    pub id: String,
    /// meeting, call or task.
    pub kind: String,
    pub title: String,
    pub day: String,
    /// `HH:MM` in `zone`; absent for all-day meetings and tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// The start as an instant, RFC 3339 UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    pub all_day: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Ids of the records it is about and of its attendees.
    pub about: Vec<String>,
    pub attendees: Vec<String>,
    pub repeats: bool,
    pub overlaps: bool,
    pub done: bool,
    pub overdue: bool,
}

#[utoipa::path(
    get,
    path = "/api/v1/agenda",
    tag = "reports",
    params(
        ("from" = Option<String>, Query, description = "First day, YYYY-MM-DD [today]"),
        ("days" = Option<u32>, Query, description = "How many days, 1 to 62 [1]"),
        ("owner" = Option<String>, Query, description = "Whose (records' owner) [the node user's]"),
        ("everyone" = Option<bool>, Query, description = "Everyone's"),
        ("zone" = Option<String>, Query, description = "Time zone of the times (IANA) [the node's]"),
        ("space" = Option<String>, Query, description = "Only this space's (name or id; `private`) [every space the caller sees]"),
    ),
    responses(
        (status = 200, description = "The agenda", body = Agenda),
        (status = 422, description = "A day, zone or count that does not read", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn agenda(
    State(state): State<AppState>,
    Auth(caller): Auth,
    query: Result<Query<AgendaParams>, QueryRejection>,
) -> Result<Json<Agenda>, Problem> {
    let Query(p) = query?;
    let request = Request::Agenda(rapport_node::calendar::AgendaQuery {
        from: p.from,
        days: p.days,
        owner: p.owner,
        everyone: p.everyone,
        zone: p.zone,
        space: p.space,
    });
    let reply = run(&state.ops, caller, request).await?;
    let Reply::Agenda(a) = reply else {
        return Err(Problem::internal("the node answered something else"));
    };
    let ids = |links: Vec<rapport_node::calendar::Link>| {
        links.into_iter().map(|l| l.id.to_string()).collect()
    };
    Ok(Json(Agenda {
        from: a.from,
        days: a.days,
        zone: a.zone,
        owner: a.owner,
        entries: a
            .entries
            .into_iter()
            .map(|e| AgendaEntry {
                id: e.id.to_string(),
                kind: e.kind,
                title: e.title,
                day: e.day,
                start: e.start,
                end: e.end,
                at: e.at,
                all_day: e.all_day,
                location: e.location,
                owner: e.owner,
                about: ids(e.about),
                attendees: ids(e.attendees),
                repeats: e.repeats,
                overlaps: e.overlaps,
                done: e.done,
                overdue: e.overdue,
            })
            .collect(),
    }))
}

/// A meeting, call or task to move, keeping its length.
#[derive(Debug, Clone, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveEntry {
    /// The record (id, id prefix or title).
    pub record: String,
    /// The day it moves to, YYYY-MM-DD.
    pub day: String,
    /// The time it starts at, HH:MM, in its zone [the same].
    #[serde(default)]
    pub time: Option<String>,
    /// The day of the occurrence moved, for a repeating meeting [its first].
    #[serde(default)]
    pub from: Option<String>,
    /// Only that occurrence: it leaves the series (its day is skipped) and
    /// becomes a meeting of its own, which the reply is.
    #[serde(default)]
    pub only: bool,
}

#[utoipa::path(
    post,
    path = "/api/v1/agenda/move",
    tag = "reports",
    request_body = MoveEntry,
    responses(
        (status = 200, description = "Moved: the record (with `only`, the occurrence, now a meeting of its own)", body = crate::dto::Written),
        (status = 400, description = "Malformed JSON", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "A read-only token, or another space than the token's", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such record", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "A day or time that does not read, a record that is not a meeting, call or task, or a day the series does not meet on", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn move_entry(
    State(state): State<AppState>,
    Auth(caller): Auth,
    body: Result<Json<MoveEntry>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<crate::dto::Written>, Problem> {
    let Json(m) = body?;
    let request = Request::Move(rapport_node::calendar::MoveQuery {
        record: m.record,
        from: m.from,
        day: m.day,
        time: m.time,
        only: m.only,
    });
    let (_, written) = crate::routes::written(run(&state.ops, caller, request).await?)?;
    Ok(Json(written))
}
