//! (being written)
use crate::WebError;
pub(crate) async fn page() -> WebError {
    WebError::NotFound("not built yet".into())
}
pub(crate) async fn pick() -> WebError {
    WebError::NotFound("not built yet".into())
}
pub(crate) async fn complete() -> WebError {
    WebError::NotFound("not built yet".into())
}
pub(crate) async fn delete() -> WebError {
    WebError::NotFound("not built yet".into())
}
pub(crate) async fn restore() -> WebError {
    WebError::NotFound("not built yet".into())
}
