//! Data-protection requests over the API: `POST /api/v1/erasures` (erase
//! a person on every node of their space), `GET /api/v1/erasures[/{id}]`
//! (which nodes confirmed), `GET /api/v1/objections` (who withdrew consent
//! or objected) and `POST /api/v1/records/{id}/enroll` (add people to a
//! campaign, checking their consent). Consent records themselves are
//! records of kind `consent` (`/api/v1/records?kind=consent`).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rapport_node::erasure::ErasureStatus;
use rapport_node::ops::{Reply, Request};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::Record;
use crate::problem::{Problem, ProblemDocument};
use crate::routes::{AppState, Auth, run};

/// A person to erase.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewErasure {
    /// The person (id, id prefix, name or e-mail); any record may be erased.
    pub person: String,
    /// Erase the activities about them too.
    #[serde(default)]
    pub with_activities: bool,
    /// Erase only this field of a record that stays (its history rebuilt
    /// without it on every node of the space).
    #[serde(default)]
    pub field: Option<String>,
    /// Why: kept in the space's history with the record ids, never the data.
    pub reason: String,
}

/// An erasure and the nodes that confirmed it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErasureInfo {
    /// Its id (`1a2b3c4d.0`; `local.<time>` for a private record).
    pub id: String,
    /// The space's name, or `private`.
    pub space: String,
    pub by: String,
    /// RFC 3339.
    pub at: String,
    pub reason: String,
    /// The records erased.
    pub records: Vec<String>,
    /// Every current member and relay of the space.
    pub nodes: Vec<ErasureNode>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErasureNode {
    pub device: String,
    pub label: String,
    pub role: String,
    /// RFC 3339, when it applied the erasure; absent while it has not.
    pub confirmed: Option<String>,
}

/// People to add to a campaign.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    /// People (ids, names or e-mails).
    pub people: Vec<String>,
    /// Add those who consented and list the others, instead of refusing.
    #[serde(default)]
    pub skip_without_consent: bool,
}

/// What an enrollment did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Enrolled {
    pub campaign: Record,
    /// Ids of the people added.
    pub added: Vec<String>,
    pub already: Vec<String>,
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Skipped {
    pub person: String,
    pub name: String,
    /// Why: `no consent recorded`, `withdrawn on …`, `objected on …`.
    pub reason: String,
}

/// Someone who withdrew consent or objected, for one purpose.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ObjectionInfo {
    pub person: String,
    pub name: String,
    pub purpose: String,
    /// `withdrawn` or `objected`.
    pub status: String,
    pub date: String,
    pub source: Option<String>,
    /// Ids of the campaigns that still list them.
    pub campaigns: Vec<String>,
}

fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn info(s: ErasureStatus) -> ErasureInfo {
    ErasureInfo {
        id: s.erasure,
        space: s.space,
        by: s.by,
        at: rfc3339(s.at),
        reason: s.reason,
        records: s.ids.iter().map(ToString::to_string).collect(),
        nodes: s
            .nodes
            .into_iter()
            .map(|n| ErasureNode {
                device: n.device,
                label: n.label,
                role: n.role.to_string(),
                confirmed: n.confirmed.map(rfc3339),
            })
            .collect(),
    }
}

async fn erasures(
    state: &AppState,
    caller: rapport_node::ops::Caller,
    erasure: Option<String>,
) -> Result<Vec<ErasureInfo>, Problem> {
    match run(&state.ops, caller, Request::Erasures { erasure }).await? {
        Reply::Erasures { erasures } => Ok(erasures.into_iter().map(info).collect()),
        _ => Err(Problem::internal("the node answered something else")),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/erasures",
    tag = "privacy",
    request_body = NewErasure,
    responses(
        (status = 201, description = "Erased here; in a shared space every member and relay applies it when it hears of it", body = ErasureInfo),
        (status = 400, description = "Malformed JSON", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "A read-only token; not an admin or privacy officer of the space; no reason given", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such record", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn erase(
    State(state): State<AppState>,
    Auth(caller): Auth,
    body: Result<Json<NewErasure>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(body) = body?;
    let request = Request::PrivacyErase {
        person: body.person,
        with_activities: body.with_activities,
        field: body.field,
        reason: body.reason,
    };
    let erased = match run(&state.ops, caller.clone(), request).await? {
        Reply::Erased(r) => r,
        _ => return Err(Problem::internal("the node answered something else")),
    };
    let mut found = erasures(&state, caller, Some(erased.erasure)).await?;
    let one = found
        .pop()
        .ok_or_else(|| Problem::internal("the erasure is not listed"))?;
    Ok((StatusCode::CREATED, Json(one)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/erasures",
    tag = "privacy",
    responses((status = 200, description = "Every erasure of the spaces this node holds (a token limited to a space sees that space's), newest first", body = Vec<ErasureInfo>)),
    security(("bearer" = []))
)]
pub(crate) async fn list_erasures(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> Result<Json<Vec<ErasureInfo>>, Problem> {
    Ok(Json(erasures(&state, caller, None).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/erasures/{id}",
    tag = "privacy",
    params(("id" = String, Path, description = "An erasure's id")),
    responses(
        (status = 200, description = "The erasure and which nodes confirmed it", body = ErasureInfo),
        (status = 404, description = "No such erasure", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_erasure(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let mut found = erasures(&state, caller, Some(id)).await?;
    match found.pop() {
        Some(one) => Ok(Json(one).into_response()),
        None => Err(Problem::from(rapport_node::ops::OpError::new(
            rapport_node::ops::ErrorCode::NotFound,
            "no such erasure in this token's space".to_string(),
        ))),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/objections",
    tag = "privacy",
    responses((status = 200, description = "Who withdrew consent or objected, to what, and which campaigns still list them", body = Vec<ObjectionInfo>)),
    security(("bearer" = []))
)]
pub(crate) async fn objections(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> Result<Response, Problem> {
    match run(&state.ops, caller, Request::Objections).await? {
        Reply::Objections { objections } => Ok(Json(
            objections
                .into_iter()
                .map(|o| ObjectionInfo {
                    person: o.person.to_string(),
                    name: o.name,
                    purpose: o.purpose,
                    status: o.standing.status,
                    date: o.standing.date,
                    source: o.standing.source,
                    campaigns: o.campaigns.iter().map(|(id, _)| id.to_string()).collect(),
                })
                .collect::<Vec<_>>(),
        )
        .into_response()),
        _ => Err(Problem::internal("the node answered something else")),
    }
}

/// What a retention rule would erase now (a dry run).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RetentionRun {
    pub rule: String,
    pub kind: String,
    pub inactive_months: u32,
    /// Ids of the records it would erase.
    pub records: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/retention",
    tag = "privacy",
    responses((status = 200, description = "What each retention rule of this node would erase now (nothing is erased: apply with `rapport privacy retention run --apply`)", body = Vec<RetentionRun>)),
    security(("bearer" = []))
)]
pub(crate) async fn retention(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> Result<Response, Problem> {
    let request = Request::Retention {
        name: None,
        apply: false,
        reason: None,
    };
    match run(&state.ops, caller, request).await? {
        Reply::Retention { runs } => Ok(Json(
            runs.into_iter()
                .map(|r| RetentionRun {
                    rule: r.rule.name,
                    kind: r.rule.kind.to_string(),
                    inactive_months: r.rule.inactive_months,
                    records: r.candidates.iter().map(|c| c.id.to_string()).collect(),
                })
                .collect::<Vec<_>>(),
        )
        .into_response()),
        _ => Err(Problem::internal("the node answered something else")),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/records/{id}/enroll",
    tag = "privacy",
    params(("id" = String, Path, description = "A campaign (id, id prefix or name)")),
    request_body = Enrollment,
    responses(
        (status = 200, description = "Who was added, who was a member already, who was left out and why", body = Enrolled),
        (status = 403, description = "Someone lacks the consent the campaign's channel needs (nothing was added); a read-only token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such campaign or person", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn enroll(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    body: Result<Json<Enrollment>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(body) = body?;
    let request = Request::Enroll {
        campaign: id,
        people: body.people,
        skip_without_consent: body.skip_without_consent,
    };
    match run(&state.ops, caller, request).await? {
        Reply::Enrolled(e) => {
            let ids = |l: &[(rapport_model::RecordId, String)]| {
                l.iter().map(|(id, _)| id.to_string()).collect()
            };
            Ok(Json(Enrolled {
                campaign: Record::of(&e.campaign),
                added: ids(&e.added),
                already: ids(&e.already),
                skipped: e
                    .skipped
                    .iter()
                    .map(|(id, name, why)| Skipped {
                        person: id.to_string(),
                        name: name.clone(),
                        reason: why.clone(),
                    })
                    .collect(),
            })
            .into_response())
        }
        _ => Err(Problem::internal("the node answered something else")),
    }
}
