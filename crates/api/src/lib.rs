//! Rapport's public HTTP JSON API for integrations (a website form, a
//! billing system, an automation tool), served by `rapport up` under
//! `/api/v1/`: records, timelines, pipeline, search, spaces, status, an
//! event stream and webhooks, described by an OpenAPI 3.1 document at
//! `/api/v1/openapi.json`. See docs/api.md.
//!
//! Owns: HTTP (routes, bodies, problem documents, the OpenAPI document),
//! turning bearer tokens into callers, webhook delivery. Never does: the
//! operations themselves (every route runs one `rapport_node::ops`
//! request, which enforces what a token may do), storage (tokens and
//! webhooks live in `rapport_node::integrations`).

mod dto;
mod events;
mod imports;
mod merges;
mod privacy;
mod problem;
mod reports;
mod routes;
pub mod webhooks;

use std::net::SocketAddr;

use rapport_node::ops::Ops;
use utoipa::OpenApi;

pub use dto::{EventBody, Record};
pub use problem::{FieldError, Problem, ProblemDocument};
pub use webhooks::{DeliveryConfig, SIGNATURE_HEADER, signature};

/// Where the API listens by default: loopback, next to the web UI's 7470.
pub const DEFAULT_BIND: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7471);

/// The largest request body taken (a record is a few KiB).
pub const BODY_LIMIT: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "cannot listen on {addr} for the HTTP API: {source}; choose another address with --api-bind"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How the API serves.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// When the address is taken, listen on another free port of the same
    /// host instead of failing (for the default address).
    pub any_port_if_taken: bool,
    pub delivery: DeliveryConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            body_limit: BODY_LIMIT,
            any_port_if_taken: false,
            delivery: DeliveryConfig::default(),
        }
    }
}

/// The running API. Stops when [`ApiServer::stop`] is called (or dropped).
#[derive(Debug)]
pub struct ApiServer {
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
}

impl ApiServer {
    /// `http://ADDR/api/v1`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, routes::PREFIX)
    }

    /// Stops serving: open event streams end, webhook deliveries stop.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves the API for `ops` on `bind`, and delivers webhooks from its
/// live feed (when `ops` has one: the running node's).
pub async fn start(ops: Ops, bind: SocketAddr, config: ApiConfig) -> Result<ApiServer, ApiError> {
    let listener = match tokio::net::TcpListener::bind(bind).await {
        Ok(l) => l,
        Err(e) if config.any_port_if_taken && e.kind() == std::io::ErrorKind::AddrInUse => {
            let any = SocketAddr::new(bind.ip(), 0);
            tokio::net::TcpListener::bind(any)
                .await
                .map_err(|source| ApiError::Bind { addr: any, source })?
        }
        Err(source) => return Err(ApiError::Bind { addr: bind, source }),
    };
    let addr = listener
        .local_addr()
        .map_err(|source| ApiError::Bind { addr: bind, source })?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let app = routes::router(
        routes::AppState {
            ops: ops.clone(),
            stopping: stopping.clone(),
        },
        config.body_limit,
    );
    let mut until = stopping.clone();
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = until.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!("the HTTP API stopped: {e}");
        }
    });
    tokio::spawn(webhooks::run(ops, config.delivery, stopping));
    Ok(ApiServer { addr, stop })
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rapport HTTP API",
        description = "Records, timelines, pipeline, search, spaces and status of one Rapport node, \
            with an event stream; for integrations. Authenticate with `Authorization: Bearer TOKEN` \
            (`rapport token create NAME`). Errors are RFC 9457 problem documents. See docs/api.md.",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    paths(
        routes::list_records,
        routes::create_record,
        routes::get_record,
        routes::patch_record,
        routes::delete_record,
        routes::restore_record,
        routes::timeline,
        routes::privacy_export,
        privacy::erase,
        privacy::list_erasures,
        privacy::get_erasure,
        privacy::objections,
        privacy::retention,
        privacy::enroll,
        routes::pipeline,
        reports::report,
        reports::calendar_feed,
        reports::agenda,
        reports::move_entry,
        routes::duplicates,
        merges::merge,
        merges::list_merges,
        merges::undo_merge,
        routes::search,
        routes::spaces,
        routes::members,
        routes::schema,
        routes::status,
        routes::openapi,
        events::events,
        imports::import_csv,
        imports::list_imports,
        imports::undo_import,
        imports::export_csv,
    ),
    components(schemas(
        ProblemDocument,
        FieldError,
        dto::Record,
        dto::FieldValueSchema,
        dto::FieldInputSchema,
        dto::Reset,
        dto::SpaceSchema,
        dto::KindFields,
        dto::PipelineDef,
        dto::PipelineStage,
        dto::Field,
        imports::ImportResult,
        imports::ImportInfo,
        imports::UndoResult,
        merges::NewMerge,
        merges::MergeInfo,
        merges::Merged,
        merges::MergeUndoResult,
        privacy::NewErasure,
        privacy::ErasureInfo,
        privacy::ErasureNode,
        privacy::Enrollment,
        privacy::Enrolled,
        privacy::Skipped,
        privacy::ObjectionInfo,
        privacy::RetentionRun,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "records", description = "Companies, people, deals, activities, tickets, campaigns, products, line items"),
        (name = "deals", description = "The sales pipeline"),
        (name = "reports", description = "Win rate, forecast, ABC, RFM, churn, service, campaign and cross-selling reports; the agenda and calendar feeds"),
        (name = "spaces", description = "Shared spaces, their members and their fields (read only)"),
        (name = "privacy", description = "Data-protection requests: erasures and their receipts, objections, consent-checked campaign enrollment"),
        (name = "events", description = "What happens to records, as it happens"),
        (name = "node", description = "This node"),
        (name = "imports", description = "CSV in (matched, dry-run, undone) and out"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token from `rapport token create NAME`"))
                    .build(),
            ),
        );
        openapi.info.version = env!("CARGO_PKG_VERSION").to_string();
    }
}

/// The OpenAPI 3.1 document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The OpenAPI document as pretty JSON.
pub fn openapi_json() -> String {
    openapi().to_pretty_json().unwrap_or_default()
}

#[cfg(test)]
mod tests;
