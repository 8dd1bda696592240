//! Errors as RFC 9457 problem documents (`application/problem+json`):
//! `type`, `title`, `status`, `detail`, plus Rapport's stable `code` and
//! each field's problem in `errors`. The detail is the operation's own
//! message, the one the CLI prints.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rapport_node::ops::OpError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// What went wrong with a request: an RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDocument {
    /// A URI naming the kind of problem: `urn:rapport:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What was wrong with this request, and what to do about it.
    pub detail: String,
    /// A stable machine-readable code: `invalid`, `not_found`,
    /// `unauthorized`, `malformed`, `too_large`, ...
    pub code: String,
    /// Each field's problem, for bad input.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One input's problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// A failed request, answered as a [`ProblemDocument`]. Boxed: it is
/// the error of every handler, and most requests do not fail.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem(Box<ProblemDocument>);

impl std::ops::Deref for Problem {
    type Target = ProblemDocument;
    fn deref(&self) -> &ProblemDocument {
        &self.0
    }
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Problem(Box::new(ProblemDocument {
            kind: format!("urn:rapport:problem:{code}"),
            title: title(code, status).to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_string(),
            errors: Vec::new(),
        }))
    }

    pub fn field(mut self, field: &str, message: impl Into<String>) -> Self {
        self.0.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", detail.clone())
            .field(field, detail)
    }

    pub fn unauthorized(detail: &str) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

fn title(code: &str, status: StatusCode) -> &'static str {
    match code {
        "invalid" => "Invalid input",
        "not_found" => "Not found",
        "ambiguous" => "Several records match",
        "deleted" => "The record is deleted",
        "forbidden" => "Not allowed",
        "unauthorized" => "Authentication needed",
        "needs_node" => "The node is not ready",
        "not_initialized" => "No data yet",
        "damaged" => "The store is damaged",
        "peer" => "A peer failed",
        "unknown_version" => "Unknown version",
        "malformed" => "Malformed request",
        "too_large" => "Request too large",
        "unsupported_media_type" => "Unsupported media type",
        "no_route" => "No such resource",
        "method_not_allowed" => "Method not allowed",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

impl From<OpError> for Problem {
    fn from(e: OpError) -> Self {
        let status =
            StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut p = Problem::new(status, e.code.as_str(), e.message);
        p.0.errors = e
            .fields
            .into_iter()
            .map(|f| FieldError {
                field: f.field,
                message: f.message,
            })
            .collect();
        p
    }
}

impl From<JsonRejection> for Problem {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = match r {
            JsonRejection::JsonDataError(_) => "invalid",
            JsonRejection::JsonSyntaxError(_) => "malformed",
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            _ => "malformed",
        };
        let detail = match code {
            "unsupported_media_type" => {
                "send the body as JSON with `Content-Type: application/json`".to_string()
            }
            "too_large" => "the body is larger than this API takes".to_string(),
            _ => r.body_text(),
        };
        Problem::new(status, code, detail)
    }
}

impl From<QueryRejection> for Problem {
    fn from(r: QueryRejection) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "malformed", r.body_text())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&*self.0).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rapport\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_node::ops::{ErrorCode, FieldProblem};

    fn check(code: ErrorCode, status: u16, title: &str) {
        let mut e = OpError::new(code, "what went wrong");
        e.fields = vec![FieldProblem {
            field: "email".into(),
            message: "not an address".into(),
        }];
        let p = Problem::from(e);
        assert_eq!(p.status, status, "{code:?}");
        assert_eq!(p.title, title, "{code:?}");
        assert_eq!(p.code, code.as_str());
        assert_eq!(p.kind, format!("urn:rapport:problem:{}", code.as_str()));
        assert_eq!(p.detail, "what went wrong");
        assert_eq!(p.errors[0].field, "email");
    }

    #[test]
    fn operation_errors_become_problems_with_their_status() {
        check(ErrorCode::Invalid, 422, "Invalid input");
        check(ErrorCode::NotFound, 404, "Not found");
        check(ErrorCode::Ambiguous, 409, "Several records match");
        check(ErrorCode::Deleted, 409, "The record is deleted");
        check(ErrorCode::Forbidden, 403, "Not allowed");
        check(ErrorCode::NeedsNode, 503, "The node is not ready");
        check(ErrorCode::Damaged, 500, "The store is damaged");
        check(ErrorCode::Peer, 502, "A peer failed");
        check(ErrorCode::UnknownVersion, 412, "Unknown version");
    }

    #[tokio::test]
    async fn a_problem_answers_as_problem_json_and_asks_for_a_token_on_401() {
        let r = Problem::unauthorized("send a token").into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        let body = axum::body::to_bytes(r.into_body(), 1 << 16)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["type"], "urn:rapport:problem:unauthorized");
        assert_eq!(v["status"], 401);
        assert!(v.get("errors").is_none());
    }
}
