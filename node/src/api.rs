//! The local API: HTTP on loopback, for the CLI while a node runs.
//!
//! The node holds the store open, so other `rapport` commands cannot open
//! it themselves; they send typed operations (`ops::Request`) to
//! `POST /v1/op` and show the `ops::Reply` themselves. Every request carries `Authorization: Bearer TOKEN`;
//! the token and port are in `DATA_DIR/api.json`, readable by the data
//! directory's owner only, and the file is removed on a clean shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use axum::response::{IntoResponse, Response};

use crate::NodeError;
use crate::ops::{Caller, ErrorCode, OpError, Ops, Request};

pub const API_FILE: &str = "api.json";

/// Where the running node's API is, as written to `api.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiInfo {
    pub addr: SocketAddr,
    pub token: String,
    pub pid: u32,
    /// The web UI's address (`http://127.0.0.1:7470`), if the node serves it.
    #[serde(default)]
    pub ui: Option<String>,
}

/// What the local API knows of the web UI: where it is, and how to make a
/// one-time login link for `rapport open`.
#[derive(Clone)]
pub struct UiLinks {
    pub url: String,
    pub login_link: Arc<dyn Fn() -> String + Send + Sync>,
}

impl std::fmt::Debug for UiLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiLinks").field("url", &self.url).finish()
    }
}

/// A new random local token: the secret of the local API and of the web
/// UI's login page.
pub fn new_token() -> Result<String, NodeError> {
    let mut token = [0u8; 24];
    getrandom::fill(&mut token).map_err(|e| rapport_trust::KeyError::Random(e.to_string()))?;
    Ok(rapport_proto::hex(&token))
}

#[derive(Clone)]
struct ApiState {
    token: Arc<String>,
    ops: Ops,
    ui: Option<UiLinks>,
}

fn authorized(state: &ApiState, headers: &HeaderMap) -> bool {
    let Some(given) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Constant-time comparison: the token is a secret.
    let (a, b) = (given.as_bytes(), state.token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /v1/op`: one typed operation for this device's user (the CLI).
/// A `Reply` with 200, or an `OpError` with the status its code maps to.
async fn op_handler(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&state, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let failed = |e: OpError| {
        let status =
            StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(e)).into_response()
    };
    let request: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return failed(OpError::new(
                ErrorCode::Invalid,
                format!(
                    "not an operation this node knows: {e}; are the CLI and the node the same version?"
                ),
            ));
        }
    };
    let ops = state.ops.clone();
    match tokio::task::spawn_blocking(move || ops.execute(&Caller::user(), request)).await {
        Ok(Ok(reply)) => Json(reply).into_response(),
        Ok(Err(e)) => failed(e),
        Err(_) => failed(OpError::new(
            ErrorCode::Internal,
            "the operation stopped unexpectedly; the node's log says why",
        )),
    }
}

async fn status_handler(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, StatusCode> {
    if !authorized(&state, &headers) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let Some(node) = state.ops.node().cloned() else {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    };
    let status = tokio::task::spawn_blocking(move || node.status())
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(Json(serde_json::to_value(status).unwrap_or_default()))
}

/// `POST /v1/login-link`: a one-time link into the web UI, for `rapport open`.
async fn login_link_handler(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, StatusCode> {
    if !authorized(&state, &headers) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let ui = state.ui.ok_or(StatusCode::NOT_FOUND)?;
    Ok(Json(
        serde_json::json!({ "url": ui.url, "login": (ui.login_link)() }),
    ))
}

/// A running local API; dropping it does not stop it, [`Api::stop`] does.
#[derive(Debug)]
pub struct Api {
    pub info: ApiInfo,
    file: PathBuf,
    shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Api {
    /// Serves on `addr` (loopback) with `token` (see [`new_token`]) and
    /// writes `api.json` into `dir`.
    pub async fn start(
        dir: &Path,
        addr: SocketAddr,
        ops: Ops,
        token: String,
        ui: Option<UiLinks>,
    ) -> Result<Api, NodeError> {
        let (listener, local) = bind(addr).await?;
        let info = ApiInfo {
            addr: local,
            token,
            pid: std::process::id(),
            ui: ui.as_ref().map(|u| u.url.clone()),
        };
        let json = serde_json::to_vec_pretty(&info).map_err(|e| NodeError::Damaged {
            path: dir.join(API_FILE),
            reason: e.to_string(),
        })?;
        crate::datadir::write_atomically(dir, API_FILE, &json, true)?;
        let state = ApiState {
            token: Arc::new(info.token.clone()),
            ops,
            ui,
        };
        let app = axum::Router::new()
            .route("/v1/op", post(op_handler))
            .route("/v1/login-link", post(login_link_handler))
            .route("/v1/status", get(status_handler))
            .with_state(state);
        Ok(Api {
            info,
            file: dir.join(API_FILE),
            shutdown: serve_until_stopped(listener, app, "local API"),
        })
    }

    /// Stops serving and removes `api.json`.
    pub fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Serves `app` on `listener` in a task until the returned sender fires
/// (or is dropped).
pub(crate) fn serve_until_stopped(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    what: &'static str,
) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            tracing::warn!("{what} stopped: {e}");
        }
    });
    tx
}

/// Binds a TCP listener, saying which address could not be bound.
pub(crate) async fn bind(
    addr: SocketAddr,
) -> Result<(tokio::net::TcpListener, SocketAddr), NodeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| NodeError::io(Path::new(&addr.to_string()), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| NodeError::io(Path::new(&addr.to_string()), e))?;
    Ok((listener, local))
}

/// Reads `api.json`, if a node wrote one.
pub fn read_info(dir: &Path) -> Option<ApiInfo> {
    let bytes = std::fs::read(dir.join(API_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}
