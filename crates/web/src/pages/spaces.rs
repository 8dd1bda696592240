//! (being written)
use crate::WebError;
pub(crate) async fn page() -> WebError {
    WebError::NotFound("not built yet".into())
}
pub(crate) async fn invite() -> WebError {
    WebError::NotFound("not built yet".into())
}
pub(crate) async fn join() -> WebError {
    WebError::NotFound("not built yet".into())
}
pub(crate) async fn create() -> WebError {
    WebError::NotFound("not built yet".into())
}
