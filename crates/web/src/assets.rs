//! The stylesheet and script, compiled into the binary: one file to
//! install, and pages that work offline.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("../assets/app.css");
const JS: &str = include_str!("../assets/app.js");

/// Paths carry a version so that browsers may cache them for good.
pub(crate) const CSS_PATH: &str = concat!("/assets/app-", env!("CARGO_PKG_VERSION"), ".css");
pub(crate) const JS_PATH: &str = concat!("/assets/app-", env!("CARGO_PKG_VERSION"), ".js");

pub(crate) async fn serve(Path(name): Path<String>) -> Response {
    let (body, mime) = if Some(name.as_str()) == CSS_PATH.strip_prefix("/assets/") {
        (CSS, "text/css; charset=utf-8")
    } else if Some(name.as_str()) == JS_PATH.strip_prefix("/assets/") {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}
