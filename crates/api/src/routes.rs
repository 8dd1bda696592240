//! The routes under `/api/v1/` and their handlers. Each handler turns an
//! HTTP request into one typed operation ([`Request`]), runs it for the
//! token's [`Caller`] off the async workers, and turns the reply into an
//! API body ([`crate::dto`]) or a problem ([`Problem`]).

use std::collections::BTreeMap;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post};
use axum::{Json, Router};
use rapport_model::{Kind, SpaceId};
use rapport_node::ops::{Caller, ListQuery, MAX_PAGE, Ops, Reply, Request};
use rapport_node::repo::Input;
use serde_json::Value;

use crate::dto::{self, Record, RecordPage, Written};
use crate::problem::{Problem, ProblemDocument};

pub const PREFIX: &str = "/api/v1";

#[derive(Clone)]
pub(crate) struct AppState {
    pub ops: Ops,
    /// Set to `true` when the server stops: open event streams end.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// Every route the API serves: the router is built from this list, and a
/// test checks it against the OpenAPI document both ways.
pub(crate) fn routes() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    vec![
        (Method::GET, "/api/v1/records", get(list_records)),
        (Method::POST, "/api/v1/records", post(create_record)),
        (Method::GET, "/api/v1/records/{id}", get(get_record)),
        (Method::PATCH, "/api/v1/records/{id}", patch(patch_record)),
        (
            Method::DELETE,
            "/api/v1/records/{id}",
            delete(delete_record),
        ),
        (
            Method::POST,
            "/api/v1/records/{id}/restore",
            post(restore_record),
        ),
        (Method::GET, "/api/v1/records/{id}/timeline", get(timeline)),
        (
            Method::GET,
            "/api/v1/records/{id}/privacy-export",
            get(privacy_export),
        ),
        (
            Method::POST,
            "/api/v1/records/{id}/enroll",
            post(crate::privacy::enroll),
        ),
        (
            Method::GET,
            "/api/v1/erasures",
            get(crate::privacy::list_erasures),
        ),
        (
            Method::POST,
            "/api/v1/erasures",
            post(crate::privacy::erase),
        ),
        (
            Method::GET,
            "/api/v1/erasures/{id}",
            get(crate::privacy::get_erasure),
        ),
        (
            Method::GET,
            "/api/v1/objections",
            get(crate::privacy::objections),
        ),
        (
            Method::GET,
            "/api/v1/retention",
            get(crate::privacy::retention),
        ),
        (Method::GET, "/api/v1/pipeline", get(pipeline)),
        (
            Method::GET,
            "/api/v1/reports/{name}",
            get(crate::reports::report),
        ),
        (
            Method::GET,
            "/api/v1/calendar/{secret}",
            get(crate::reports::calendar_feed),
        ),
        (Method::GET, "/api/v1/agenda", get(crate::reports::agenda)),
        (
            Method::POST,
            "/api/v1/agenda/move",
            post(crate::reports::move_entry),
        ),
        (Method::GET, "/api/v1/duplicates", get(duplicates)),
        (Method::POST, "/api/v1/merges", post(crate::merges::merge)),
        (
            Method::GET,
            "/api/v1/merges",
            get(crate::merges::list_merges),
        ),
        (
            Method::POST,
            "/api/v1/merges/{id}/undo",
            post(crate::merges::undo_merge),
        ),
        (Method::GET, "/api/v1/search", get(search)),
        (Method::GET, "/api/v1/spaces", get(spaces)),
        (Method::GET, "/api/v1/spaces/{id}/members", get(members)),
        (Method::GET, "/api/v1/spaces/{id}/schema", get(schema)),
        (Method::GET, "/api/v1/status", get(status)),
        (
            Method::POST,
            "/api/v1/imports",
            post(crate::imports::import_csv).layer(axum::extract::DefaultBodyLimit::max(
                rapport_node::import::MAX_UPLOAD,
            )),
        ),
        (
            Method::GET,
            "/api/v1/imports",
            get(crate::imports::list_imports),
        ),
        (
            Method::POST,
            "/api/v1/imports/{id}/undo",
            post(crate::imports::undo_import),
        ),
        (
            Method::GET,
            "/api/v1/export/{kind}",
            get(crate::imports::export_csv),
        ),
        (Method::GET, "/api/v1/events", get(crate::events::events)),
        (Method::GET, "/api/v1/openapi.json", get(openapi)),
    ]
}

pub(crate) fn router(state: AppState, body_limit: usize) -> Router {
    let mut router = Router::new();
    for (_, path, method_router) in routes() {
        // Routes of one path merge into one method router.
        router = router.route(path, method_router);
    }
    router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn no_route() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such resource; GET /api/v1/openapi.json lists them all",
    )
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this resource does not take that method; GET /api/v1/openapi.json lists what it takes",
    )
}

/// The caller a request's bearer token stands for.
pub(crate) struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(Problem::unauthorized(
                "send `Authorization: Bearer TOKEN`; make a token with `rapport token create NAME`",
            ));
        };
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header must be `Bearer TOKEN`")
            })?;
        let ops = state.ops.clone();
        let caller = tokio::task::spawn_blocking(move || ops.authenticate(&secret))
            .await
            .map_err(|_| Problem::internal("the token check stopped"))??;
        caller.map(Auth).ok_or_else(|| {
            Problem::unauthorized(
                "this token is not valid (revoked, or never made); `rapport token list` shows the valid ones",
            )
        })
    }
}

/// Runs one operation for `caller` on a blocking thread.
pub(crate) async fn run(ops: &Ops, caller: Caller, request: Request) -> Result<Reply, Problem> {
    let ops = ops.clone();
    tokio::task::spawn_blocking(move || ops.execute(&caller, request))
        .await
        .map_err(|_| Problem::internal("the operation stopped before it answered"))?
        .map_err(Problem::from)
}

fn unexpected(reply: &Reply) -> Problem {
    Problem::internal(format!(
        "the node answered with an unexpected reply ({})",
        serde_json::to_value(reply)
            .ok()
            .and_then(|v| v["reply"].as_str().map(str::to_string))
            .unwrap_or_default()
    ))
}

// ----- records ---------------------------------------------------------------

/// `kind`, `sort`, `limit`, `after` and `deleted`; every other parameter
/// is a field filter (`industry=Steel`, `company=Acme`).
#[utoipa::path(
    get,
    path = "/api/v1/records",
    tag = "records",
    params(
        ("kind" = String, Query, description = "company, person, deal, activity, ticket or campaign"),
        ("sort" = Option<String>, Query, description = "A field (or id, updated) to sort by (numbers by value, text in any case, records without a value last); `-field` for descending [default: id, which is creation order]"),
        ("limit" = Option<usize>, Query, description = "Records per page, 1 to 1000 [default: 1000]"),
        ("after" = Option<String>, Query, description = "The `next` cursor of the page before"),
        ("deleted" = Option<bool>, Query, description = "List deleted records instead of live ones"),
        ("filters" = Option<BTreeMap<String, String>>, Query, style = Form, explode,
            description = "Any other parameter FIELD=VALUE keeps records whose field equals the value (lists: contain it; references: by name or id); FIELD!=V keeps those that differ, FIELD>=V and FIELD<=V compare numbers, money and dates by value, FIELD^=V keeps values beginning with V and FIELD~=V values containing it (the parameter's name is then the field with its sign, `amount%3E` for `amount>`)"),
    ),
    responses(
        (status = 200, description = "One page of records", body = RecordPage,
            headers(("Link" = String, description = "`<URL>; rel=\"next\"` when there is a next page"))),
        (status = 422, description = "Unknown kind or field, bad value", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_records(
    State(state): State<AppState>,
    Auth(caller): Auth,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(pairs) = query?;
    let mut kind = None;
    let mut q = ListQuery {
        kind: Kind::Company,
        filters: Vec::new(),
        deleted: false,
        sort: None,
        // Pages for integrations: the operation itself, for this device's
        // user, may list everything at once.
        limit: Some(MAX_PAGE),
        after: None,
    };
    for (name, value) in &pairs {
        match name.as_str() {
            "kind" => kind = Some(parse_kind(value)?),
            "sort" => q.sort = Some(value.clone()),
            "after" => q.after = Some(value.clone()),
            "limit" => {
                q.limit = Some(value.parse().map_err(|_| {
                    Problem::invalid("limit", format!("limit must be a number, not `{value}`"))
                })?)
            }
            "deleted" => {
                q.deleted = match value.as_str() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(Problem::invalid(
                            "deleted",
                            format!("deleted is true or false, not `{value}`"),
                        ));
                    }
                }
            }
            _ => q.filters.push((name.clone(), value.clone())),
        }
    }
    q.kind = kind.ok_or_else(|| {
        Problem::invalid(
            "kind",
            format!("say which records: kind={}", kinds().join(", kind=")),
        )
    })?;
    let reply = run(&state.ops, caller, Request::List(q)).await?;
    let Reply::List(page) = reply else {
        return Err(unexpected(&reply));
    };
    let link = page.next.as_ref().map(|next| {
        let mut query: Vec<String> = pairs
            .iter()
            .filter(|(n, _)| n != "after")
            .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
            .collect();
        query.push(format!("after={}", encode(next)));
        format!("<{PREFIX}/records?{}>; rel=\"next\"", query.join("&"))
    });
    let body = RecordPage {
        records: page.records.iter().map(Record::of).collect(),
        total: page.total,
        next: page.next,
        titles: page
            .titles
            .into_iter()
            .map(|(id, t)| (id.to_string(), t))
            .collect(),
    };
    let mut response = Json(body).into_response();
    if let Some(link) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

#[utoipa::path(
    post,
    path = "/api/v1/records",
    tag = "records",
    request_body = dto::NewRecord,
    responses(
        (status = 201, description = "Created", body = Written,
            headers(("Location" = String), ("ETag" = String, description = "The record's version"))),
        (status = 400, description = "Malformed JSON", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "A read-only token, or another space than the token's", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "Unknown kind or field, bad or missing value", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create_record(
    State(state): State<AppState>,
    Auth(caller): Auth,
    body: Result<Json<dto::NewRecord>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(body) = body?;
    let kind = parse_kind(&body.kind)?;
    let (fields, _) = inputs(body.fields, "fields", false)?;
    let request = Request::Create {
        kind,
        space: body.space,
        fields,
    };
    let written = written(run(&state.ops, caller, request).await?)?;
    let mut response = (StatusCode::CREATED, Json(&written.1)).into_response();
    let location = format!("{PREFIX}/records/{}", written.0.record.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    set_etag(&mut response, &written.0.heads);
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/api/v1/records/{id}",
    tag = "records",
    params(("id" = String, Path, description = "A record id (or a unique prefix, or a title)")),
    responses(
        (status = 200, description = "The record", body = Record,
            headers(("ETag" = String, description = "The record's version: send it as If-Match when you PATCH"))),
        (status = 404, description = "No such record (or not in the token's space)", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_record(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let reply = run(&state.ops, caller, Request::Get { record: id }).await?;
    let Reply::Record(r) = reply else {
        return Err(unexpected(&reply));
    };
    let mut response = Json(Record::of(&r.record)).into_response();
    set_etag(&mut response, &r.heads);
    Ok(response)
}

#[utoipa::path(
    patch,
    path = "/api/v1/records/{id}",
    tag = "records",
    params(
        ("id" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The ETag of the version you read: the edit still merges if the record changed since, and `changed_meanwhile` names what another writer changed"),
    ),
    request_body = dto::RecordPatch,
    responses(
        (status = 200, description = "Edited (merged)", body = Written, headers(("ETag" = String))),
        (status = 403, description = "A read-only token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such record", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 409, description = "The record is deleted", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 412, description = "If-Match names a version this node does not hold", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "Unknown field, bad value", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn patch_record(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<dto::RecordPatch>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(body) = body?;
    let (set, mut unset) = inputs(body.set, "set", true)?;
    unset.extend(body.unset);
    let if_match = match headers.get(header::IF_MATCH) {
        None => None,
        Some(v) => parse_etag(v.to_str().unwrap_or_default())?,
    };
    let request = match if_match {
        Some(heads) => Request::Patch {
            record: id,
            set,
            unset,
            if_match: heads,
        },
        None => Request::Edit {
            record: id,
            set,
            unset,
        },
    };
    let (r, body) = written(run(&state.ops, caller, request).await?)?;
    let mut response = Json(body).into_response();
    set_etag(&mut response, &r.heads);
    Ok(response)
}

#[utoipa::path(
    delete,
    path = "/api/v1/records/{id}",
    tag = "records",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "Deleted (a signed tombstone: restorable, history kept)", body = Written),
        (status = 403, description = "A read-only token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such record", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete_record(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let (r, body) = written(run(&state.ops, caller, Request::Delete { record: id }).await?)?;
    let mut response = Json(body).into_response();
    set_etag(&mut response, &r.heads);
    Ok(response)
}

#[utoipa::path(
    post,
    path = "/api/v1/records/{id}/restore",
    tag = "records",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "Restored", body = Written),
        (status = 403, description = "A read-only token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such record", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn restore_record(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let (r, body) = written(run(&state.ops, caller, Request::Restore { record: id }).await?)?;
    let mut response = Json(body).into_response();
    set_etag(&mut response, &r.heads);
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/api/v1/records/{id}/timeline",
    tag = "records",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "Every signed change (who, when, what, which token) and linked activity, newest first", body = dto::Timeline),
        (status = 404, description = "No such record", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn timeline(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<dto::Timeline>, Problem> {
    let reply = run(&state.ops, caller, Request::Timeline { record: id }).await?;
    let Reply::Timeline(t) = reply else {
        return Err(unexpected(&reply));
    };
    Ok(Json(dto::Timeline {
        record: Record::of(&t.record),
        entries: t.entries.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/records/{id}/privacy-export",
    tag = "records",
    params(("id" = String, Path, description = "A person (id, id prefix, name or e-mail)")),
    responses(
        (status = 200, description = "Everything this node holds about the person, as the files `rapport privacy export` writes", body = dto::PrivacyExport),
        (status = 403, description = "Not a person", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such record (or not in the token's space)", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn privacy_export(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<dto::PrivacyExport>, Problem> {
    let reply = run(&state.ops, caller, Request::PrivacyExport { person: id }).await?;
    let Reply::PrivacyExport(e) = reply else {
        return Err(unexpected(&reply));
    };
    Ok(Json(dto::PrivacyExport {
        person: e.person,
        files: e
            .files
            .into_iter()
            .map(|f| dto::PrivacyFile {
                name: f.name,
                about: f.about,
                text: f.text,
            })
            .collect(),
    }))
}

// ----- the rest ----------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/api/v1/duplicates",
    tag = "records",
    params(("kind" = Option<String>, Query, description = "A kind (person, company, ...) [default: people and companies]")),
    responses(
        (status = 200, description = "Groups of records likely to be one customer, with a score and the reasons", body = dto::Duplicates),
        (status = 422, description = "An unknown kind", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn duplicates(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<dto::Duplicates>, Problem> {
    let kind = match params.iter().find(|(k, _)| k == "kind") {
        Some((_, k)) => Some(Kind::known(k).map_err(|e| {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
        })?),
        None => None,
    };
    let reply = run(&state.ops, caller, Request::Duplicates { kind }).await?;
    let Reply::Duplicates { clusters } = reply else {
        return Err(unexpected(&reply));
    };
    Ok(Json(dto::Duplicates {
        clusters: clusters
            .into_iter()
            .map(|c| dto::DuplicateCluster {
                kind: c.kind.as_str().to_string(),
                score: c.score,
                records: c
                    .records
                    .into_iter()
                    .map(|m| dto::DuplicateMember {
                        id: m.id.to_string(),
                        title: m.title,
                    })
                    .collect(),
                reasons: c.reasons,
            })
            .collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/pipeline",
    tag = "deals",
    responses((status = 200, description = "Deals by stage: count, total and weighted total per currency", body = dto::Pipeline)),
    security(("bearer" = []))
)]
pub(crate) async fn pipeline(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> Result<Json<dto::Pipeline>, Problem> {
    let reply = run(&state.ops, caller, Request::Pipeline).await?;
    let Reply::Pipeline { stages, others } = reply else {
        return Err(unexpected(&reply));
    };
    let stages_dto = |stages: Vec<rapport_node::pipeline::Stage>| -> Vec<dto::Stage> {
        stages
            .into_iter()
            .map(|s| dto::Stage {
                stage: s.stage,
                count: s.count,
                currencies: s
                    .currencies
                    .into_iter()
                    .map(|(c, m)| {
                        (
                            c,
                            dto::Money {
                                total: m.total,
                                weighted: m.weighted,
                            },
                        )
                    })
                    .collect(),
            })
            .collect()
    };
    Ok(Json(dto::Pipeline {
        stages: stages_dto(stages),
        pipelines: others
            .into_iter()
            .map(|p| dto::NamedPipeline {
                name: p.name,
                title: p.title,
                stages: stages_dto(p.stages),
            })
            .collect(),
    }))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchQuery {
    q: String,
    #[serde(default)]
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/api/v1/search",
    tag = "records",
    params(
        ("q" = String, Query, description = "Words to find in names, emails, phones, domains and tags"),
        ("limit" = Option<usize>, Query, description = "Most hits [default: 20]"),
    ),
    responses(
        (status = 200, description = "Matching records", body = dto::SearchResult),
        (status = 400, description = "No `q`", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn search(
    State(state): State<AppState>,
    Auth(caller): Auth,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<dto::SearchResult>, Problem> {
    let Query(q) = query?;
    let reply = run(
        &state.ops,
        caller,
        Request::Search {
            query: q.q,
            limit: q.limit,
        },
    )
    .await?;
    let Reply::Search(found) = reply else {
        return Err(unexpected(&reply));
    };
    Ok(Json(dto::SearchResult {
        total: found.total,
        hits: found
            .hits
            .into_iter()
            .map(|h| dto::Hit {
                id: h.id.to_string(),
                kind: h.kind.as_str().into(),
                space: h.space.to_string(),
                title: h.title,
                detail: h.detail,
            })
            .collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/spaces",
    tag = "spaces",
    responses((status = 200, description = "The shared spaces this node belongs to (only the token's, for a token limited to one)", body = dto::Spaces)),
    security(("bearer" = []))
)]
pub(crate) async fn spaces(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> Result<Json<dto::Spaces>, Problem> {
    let reply = run(&state.ops, caller, Request::Spaces).await?;
    let Reply::Spaces { spaces } = reply else {
        return Err(unexpected(&reply));
    };
    Ok(Json(dto::Spaces {
        spaces: spaces.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/spaces/{id}/members",
    tag = "spaces",
    params(("id" = String, Path, description = "A space id or name")),
    responses(
        (status = 200, description = "Members and former members", body = dto::Members),
        (status = 404, description = "No such space (or not the token's)", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn members(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<dto::Members>, Problem> {
    let reply = run(&state.ops, caller, Request::Members { space: id }).await?;
    let Reply::Members(m) = reply else {
        return Err(unexpected(&reply));
    };
    Ok(Json(dto::Members {
        space: m.space.into(),
        members: m.members.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/spaces/{id}/schema",
    tag = "spaces",
    params(("id" = String, Path, description = "A space id or name, or `private`")),
    responses(
        (status = 200, description = "Every kind's fields in the space: built-in, custom, hidden and retired", body = dto::SpaceSchema),
        (status = 404, description = "No such space (or not the token's)", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn schema(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<dto::SpaceSchema>, Problem> {
    let reply = run(&state.ops, caller, Request::Schema { space: Some(id) }).await?;
    let Reply::Schema(s) = reply else {
        return Err(unexpected(&reply));
    };
    Ok(Json(s.into()))
}

#[utoipa::path(
    get,
    path = "/api/v1/status",
    tag = "node",
    responses((status = 200, description = "The node and its shared spaces' sync state", body = dto::Status)),
    security(("bearer" = []))
)]
pub(crate) async fn status(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> Result<Json<dto::Status>, Problem> {
    let scope = caller.space;
    let reply = run(&state.ops, caller, Request::Status).await?;
    let Reply::Status(s) = reply else {
        return Err(unexpected(&reply));
    };
    let net = s.net;
    let spaces = net
        .as_ref()
        .map(|n| {
            n.spaces
                .iter()
                .filter(|(id, _)| scope.is_none_or(|s| s.to_string() == **id))
                .map(|(id, s)| {
                    (
                        id.clone(),
                        dto::SpaceSync {
                            name: s.name.clone(),
                            members: s.members,
                            records: s.records,
                            pending_out: s.pending_out,
                            last_sync: s.last_sync.clone(),
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(dto::Status {
        version: env!("CARGO_PKG_VERSION").into(),
        // A token limited to a space learns nothing of the others' sizes.
        records: if scope.is_none() { s.records } else { 0 },
        relay: s.is_relay,
        node_id: net.as_ref().map(|n| n.node_id.clone()),
        connected: net.as_ref().map_or(0, |n| n.connected.len()),
        uptime_s: net.as_ref().map(|n| n.uptime_s),
        spaces,
        // Ops keeps only the token's space's members for a limited token.
        members: match &net {
            Some(n) => n
                .members
                .iter()
                .map(|(device, r)| {
                    (
                        device.clone(),
                        dto::MemberReach {
                            path: r.path.clone(),
                            in_use: r.in_use.clone(),
                            announced: r.announced.clone(),
                            announced_at: r.announced_at.clone(),
                            relay: r.relay.clone(),
                            unreachable_since: r.unreachable_since.clone(),
                        },
                    )
                })
                .collect(),
            None => BTreeMap::new(),
        },
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "node",
    responses((status = 200, description = "This document (OpenAPI 3.1); no token needed", content_type = "application/json")),
)]
pub(crate) async fn openapi() -> Response {
    let mut response = crate::openapi_json().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

// ----- helpers -------------------------------------------------------------------

fn kinds() -> Vec<&'static str> {
    Kind::ALL.iter().map(|k| k.as_str()).collect()
}

fn parse_kind(s: &str) -> Result<Kind, Problem> {
    Kind::known(s).map_err(|e| Problem::invalid("kind", e.to_string()))
}

/// JSON field values as the CLI's typed text: numbers and booleans as
/// written, lists joined with commas (as repeated CLI flags are). With
/// `nulls_unset`, `null` clears the field (returned apart); otherwise a
/// `null` field is left out.
fn inputs(
    fields: BTreeMap<String, Value>,
    at: &str,
    nulls_unset: bool,
) -> Result<(Vec<Input>, Vec<String>), Problem> {
    let mut out = Vec::new();
    let mut unset = Vec::new();
    let mut problems = Vec::new();
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    for (name, value) in fields {
        match &value {
            Value::Null if nulls_unset => unset.push(name),
            Value::Null => {}
            Value::Array(items) => {
                let mut texts = Vec::with_capacity(items.len());
                for item in items {
                    match scalar(item) {
                        Some(t) if t.contains(',') => problems.push((
                            name.clone(),
                            format!("a list item cannot contain a comma: `{t}`"),
                        )),
                        Some(t) => texts.push(t),
                        None => problems.push((
                            name.clone(),
                            "a list holds text, numbers or booleans".to_string(),
                        )),
                    }
                }
                out.push((name, texts.join(",")));
            }
            other => match scalar(other) {
                Some(t) => out.push((name, t)),
                None => problems.push((
                    name,
                    "a value is text, a number, a boolean or a list of them".to_string(),
                )),
            },
        }
    }
    if let Some((field, message)) = problems.first() {
        let mut p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("{at}.{field}: {message}"),
        );
        for (field, message) in &problems {
            p = p.field(field, message.clone());
        }
        return Err(p);
    }
    Ok((out, unset))
}

pub(crate) fn written(reply: Reply) -> Result<(rapport_node::ops::RecordReply, Written), Problem> {
    let Reply::Record(r) = reply else {
        return Err(unexpected(&reply));
    };
    let body = Written {
        record: Record::of(&r.record),
        unchanged: r.unchanged,
        changed_meanwhile: r.changed_meanwhile.clone(),
    };
    Ok((r, body))
}

/// An ETag is the record's heads (hex), sorted, joined with `.`.
fn etag(heads: &[String]) -> String {
    format!("\"{}\"", heads.join("."))
}

fn set_etag(response: &mut Response, heads: &[String]) {
    if heads.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&etag(heads)) {
        response.headers_mut().insert(header::ETAG, v);
    }
}

/// The heads an `If-Match` names; `None` for `*` (any version).
fn parse_etag(value: &str) -> Result<Option<Vec<String>>, Problem> {
    let first = value.split(',').next().unwrap_or("").trim();
    if first == "*" {
        return Ok(None);
    }
    let bare = first.strip_prefix("W/").unwrap_or(first);
    let inner = bare
        .strip_prefix('"')
        .and_then(|b| b.strip_suffix('"'))
        .unwrap_or(bare);
    let heads: Vec<String> = inner.split('.').map(str::to_string).collect();
    let ok = heads
        .iter()
        .all(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            "If-Match must be the ETag a GET of the record gave",
        )
        .field("If-Match", "not an ETag of this API"));
    }
    Ok(Some(heads))
}

/// Percent-encodes a query component (everything but unreserved bytes).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `space` is one a caller limited to `scope` may hear about.
pub(crate) fn in_scope(scope: Option<SpaceId>, space: Option<SpaceId>) -> bool {
    match scope {
        None => true,
        Some(s) => space == Some(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_become_the_clis_text() {
        let fields: BTreeMap<String, Value> = serde_json::from_value(serde_json::json!({
            "name": "Acme", "amount": 12.5, "done": true,
            "tags": ["a", "b"], "industry": null
        }))
        .expect("json");
        let (set, unset) = inputs(fields.clone(), "set", true).expect("inputs");
        assert!(set.contains(&("amount".into(), "12.5".into())));
        assert!(set.contains(&("done".into(), "true".into())));
        assert!(set.contains(&("tags".into(), "a,b".into())));
        assert_eq!(unset, ["industry"]);
        let (set, unset) = inputs(fields, "fields", false).expect("inputs");
        assert_eq!(set.len(), 4);
        assert!(unset.is_empty());
        let bad: BTreeMap<String, Value> =
            serde_json::from_value(serde_json::json!({"tags": ["a,b"], "x": {"y": 1}}))
                .expect("json");
        let p = inputs(bad, "fields", false).expect_err("refused");
        assert_eq!(p.status, 422);
        assert_eq!(p.errors.len(), 2);
    }

    #[test]
    fn an_etag_reads_back_as_heads() {
        let heads = vec!["a".repeat(64), "b".repeat(64)];
        let tag = etag(&heads);
        assert_eq!(parse_etag(&tag).expect("parse"), Some(heads.clone()));
        assert_eq!(parse_etag(&format!("W/{tag}")).expect("parse"), Some(heads));
        assert_eq!(parse_etag("*").expect("parse"), None);
        assert!(parse_etag("\"nope\"").is_err());
    }
}
