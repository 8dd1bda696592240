//! (being written)
use crate::WebError;
pub(crate) async fn page() -> WebError {
    WebError::NotFound("not built yet".into())
}
