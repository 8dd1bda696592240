//! `POST /api/v1/merges` (merge duplicates into one record), `GET
//! /api/v1/merges` and `POST /api/v1/merges/{id}/undo`: the same merge as
//! `rapport merge` and the web UI's merge screen (`rapport_node::merge`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use rapport_node::merge::MergeRecord;
use rapport_node::ops::{Reply, Request};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::Record;
use crate::problem::{Problem, ProblemDocument};
use crate::routes::{AppState, Auth, run};

/// Records to merge into the one kept.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMerge {
    /// The record kept (id, id prefix or name).
    pub keep: String,
    /// The records merged into it: they become tombstones that redirect to it.
    pub others: Vec<String>,
    /// Per field, the record (one of those merged) whose value the record kept takes;
    /// by default it keeps its own, filled from the others where it has none, and lists are united.
    #[serde(default)]
    pub prefer: BTreeMap<String, String>,
}

/// A merge as it was made.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MergeInfo {
    /// For `POST /api/v1/merges/{id}/undo`.
    pub id: String,
    /// RFC 3339.
    pub at: String,
    pub kept: String,
    pub merged: Vec<String>,
    /// The kept record's fields the merge wrote.
    pub fields: Vec<String>,
    /// References in other records moved to the record kept.
    pub repointed: usize,
    /// RFC 3339, when it was undone.
    pub undone: Option<String>,
}

/// A merge made, and the record kept as it is now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Merged {
    pub merge: MergeInfo,
    pub record: Record,
}

/// What an undo did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MergeUndoResult {
    /// Merged records that are back.
    pub restored_records: usize,
    pub restored_fields: usize,
    /// Fields left alone: someone changed them after the merge.
    pub kept_fields: usize,
}

fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn info(m: MergeRecord) -> MergeInfo {
    MergeInfo {
        id: m.id,
        at: rfc3339(m.at),
        kept: m.kept.to_string(),
        merged: m.merged.iter().map(ToString::to_string).collect(),
        fields: m.fields.into_iter().map(|w| w.field).collect(),
        repointed: m.repointed.len(),
        undone: m.undone.map(rfc3339),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/merges",
    tag = "records",
    request_body = NewMerge,
    responses(
        (status = 200, description = "Merged: the record kept, as it is now", body = Merged),
        (status = 400, description = "Malformed JSON", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "A read-only token; records of different kinds or spaces; a deleted record", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such record", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "An unknown field in `prefer`", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn merge(
    State(state): State<AppState>,
    Auth(caller): Auth,
    body: Result<Json<NewMerge>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(body) = body?;
    let request = Request::Merge {
        keep: body.keep,
        others: body.others,
        prefer: body.prefer.into_iter().collect(),
    };
    match run(&state.ops, caller, request).await? {
        Reply::Merged { merge, record } => Ok(Json(Merged {
            merge: info(merge),
            record: Record::of(&record),
        })
        .into_response()),
        _ => Err(Problem::internal("the node answered something else")),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/merges",
    tag = "records",
    responses((status = 200, description = "Merges made on this node, newest first (a token limited to a space sees that space's)", body = Vec<MergeInfo>)),
    security(("bearer" = []))
)]
pub(crate) async fn list_merges(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> Result<Response, Problem> {
    match run(&state.ops, caller, Request::Merges).await? {
        Reply::Merges { merges } => {
            Ok(Json(merges.into_iter().map(info).collect::<Vec<_>>()).into_response())
        }
        _ => Err(Problem::internal("the node answered something else")),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/merges/{id}/undo",
    tag = "records",
    params(("id" = String, Path, description = "A merge's id")),
    responses(
        (status = 200, description = "What the undo did", body = MergeUndoResult),
        (status = 404, description = "No such merge", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "Undone already", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn undo_merge(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    match run(&state.ops, caller, Request::MergeUndo { id }).await? {
        Reply::MergeUndone(r) => Ok(Json(MergeUndoResult {
            restored_records: r.restored_records,
            restored_fields: r.restored_fields,
            kept_fields: r.kept_fields,
        })
        .into_response()),
        _ => Err(Problem::internal("the node answered something else")),
    }
}
