//! What a page shows when it cannot do what was asked.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use rapport_node::NodeError;
use rapport_node::ops::OpError;

use crate::page;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Op(#[from] OpError),
    #[error("{0}")]
    Internal(String),
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            WebError::NotFound(_) | WebError::Node(NodeError::NotFound(_)) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Node(NodeError::Forbidden(_) | NodeError::NotMember(_)) => {
                StatusCode::FORBIDDEN
            }
            WebError::Node(
                NodeError::Io { .. } | NodeError::Store(_) | NodeError::Damaged { .. },
            )
            | WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            WebError::Op(e) => StatusCode::from_u16(e.code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            WebError::Node(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!("web UI: {self}");
        }
        let body = html! {
            h1 { (status.canonical_reason().unwrap_or("Error")) }
            p class="error" role="alert" { (self.to_string()) }
            p { a href="/" { "Back to my work" } }
        };
        (status, page::bare("Error", body)).into_response()
    }
}
