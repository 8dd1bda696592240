//! (being written)
use crate::WebError;
pub(crate) async fn new_page() -> WebError {
    WebError::NotFound("not built yet".into())
}
pub(crate) async fn create() -> WebError {
    WebError::NotFound("not built yet".into())
}
pub(crate) async fn edit_page() -> WebError {
    WebError::NotFound("not built yet".into())
}
pub(crate) async fn update() -> WebError {
    WebError::NotFound("not built yet".into())
}
