//! The web UI a node serves to its user's browser: server-rendered pages
//! with a little progressive JavaScript, over the same [`Repo`] the CLI
//! uses, so that a form validates exactly like `rapport ... add`.
//!
//! - [`auth`]: who may see the pages (a one-time login link or the node's
//!   local token, exchanged for a session cookie);
//! - [`live`]: the change feed (the node's `live::Live`) that pushes
//!   peers' edits to open pages (server-sent events);
//! - [`page`]: the frame every page shares (navigation, search box,
//!   breadcrumbs, help panel);
//! - [`pages`]: one module per page.
//!
//! Everything the browser loads is compiled into the binary ([`assets`]).

mod assets;
pub mod auth;
mod chart;
mod error;
pub mod live;
mod multipart;
mod page;
mod pages;
mod redirect;
mod trail;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use rapport_node::live::Live;
use rapport_node::net::Node;
use rapport_node::ops::{
    Caller, ErrorCode, ListQuery, MembersReply, OpError, Ops, Reply, Request, ShowReply,
    TimelineReply,
};
use rapport_node::{NodeError, Repo};

pub use error::WebError;
pub use page::url_encode;

/// The port the UI tries first on loopback, so that a bookmark keeps
/// working; another is taken when it is in use.
pub const DEFAULT_PORT: u16 = 7470;

/// What the pages share.
#[derive(Debug, Clone)]
pub(crate) struct App {
    /// Every read and write a page makes that the CLI makes too.
    pub ops: Ops,
    pub node: Node,
    pub auth: Arc<auth::Auth>,
    pub live: Live,
    /// The live feed's cursor when this request began to read (set by
    /// [`App::blocking`]): its page follows changes from there, so one
    /// that lands while the page is read and sent still refreshes it.
    pub read_since: Option<String>,
}

impl App {
    pub fn repo(&self) -> &Arc<Repo> {
        self.node.repo()
    }

    /// Runs an operation as this device's user and returns the record it
    /// wrote.
    pub fn write(&self, request: Request) -> Result<rapport_model::RecordView, OpError> {
        match self.ops.execute(&Caller::user(), request)? {
            Reply::Record(r) => Ok(r.record),
            other => Err(unexpected(other)),
        }
    }

    /// Runs a read operation as this device's user.
    pub(crate) fn read(&self, request: Request) -> Result<Reply, OpError> {
        self.ops.execute(&Caller::user(), request)
    }

    /// Every record of `kind` matching `filters` (live ones, or deleted
    /// ones), through the list operation.
    pub fn list(
        &self,
        kind: rapport_model::Kind,
        filters: Vec<(String, String)>,
        deleted: bool,
    ) -> Result<Vec<rapport_model::RecordView>, OpError> {
        let query = ListQuery {
            kind,
            filters,
            deleted,
            sort: None,
            // No limit: every record in one pass over the store.
            limit: None,
            after: None,
        };
        match self.read(Request::List(query))? {
            Reply::List(page) => Ok(page.records),
            other => Err(unexpected(other)),
        }
    }

    /// Records whose names, emails, phones, domains or tags match, as
    /// `rapport search` finds them (from the live index in memory: quick
    /// enough for the async threads).
    pub fn search(&self, query: &str, limit: usize) -> rapport_node::search::Found {
        match self.read(Request::Search {
            query: query.into(),
            limit: Some(limit),
        }) {
            Ok(Reply::Search(found)) => found,
            _ => rapport_node::search::Found::default(),
        }
    }

    /// One record with what refers to it, as `rapport show` has it.
    pub fn show(&self, reference: &str) -> Result<ShowReply, OpError> {
        match self.read(Request::Show {
            record: reference.into(),
        })? {
            Reply::Show(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// A record's timeline, as `rapport timeline` has it.
    pub fn timeline(&self, reference: &str) -> Result<TimelineReply, OpError> {
        match self.read(Request::Timeline {
            record: reference.into(),
        })? {
            Reply::Timeline(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    /// A shared space's members, as `rapport space members` has them.
    pub fn members(&self, space: &str) -> Result<MembersReply, OpError> {
        match self.read(Request::Members {
            space: space.into(),
        })? {
            Reply::Members(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    /// Runs store work off the async threads (sled reads and writes block).
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&App) -> Result<T, WebError> + Send + 'static,
    ) -> Result<T, WebError> {
        let mut app = self.clone();
        app.read_since = Some(app.live.cursor());
        tokio::task::spawn_blocking(move || work(&app))
            .await
            .map_err(|e| WebError::Internal(format!("a page task failed: {e}")))?
    }
}

/// An operation answered with a reply of another kind than it gives.
fn unexpected(reply: Reply) -> OpError {
    OpError::new(
        ErrorCode::Internal,
        format!("an operation answered {reply:?}"),
    )
}

/// A running web UI; [`Ui::stop`] stops it.
#[derive(Debug)]
pub struct Ui {
    /// Where it is served, e.g. `http://127.0.0.1:7470`.
    pub url: String,
    pub addr: SocketAddr,
    auth: Arc<auth::Auth>,
    live: Live,
    /// Whether the UI started `live` itself (it was given none).
    own_live: bool,
    shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Ui {
    /// Serves the UI on `bind`, or on loopback (the default port if free)
    /// when `None`. `token` is the node's local API token, which the login
    /// page also accepts. `ops` must be the running node's.
    pub async fn start(ops: Ops, bind: Option<SocketAddr>, token: String) -> Result<Ui, NodeError> {
        let node = ops
            .node()
            .cloned()
            .ok_or_else(|| NodeError::Forbidden("the web UI needs the running node".into()))?;
        let (ops, live, own_live) = match ops.live().cloned() {
            Some(live) => (ops, live, false),
            None => {
                let live = Live::start(node.repo().clone());
                (Ops::running(node.clone(), Some(live.clone())), live, true)
            }
        };
        let listener = match bind {
            Some(addr) => bind_to(addr).await?,
            None => match bind_to(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))).await {
                Ok(l) => l,
                Err(_) => bind_to(SocketAddr::from(([127, 0, 0, 1], 0))).await?,
            },
        };
        let addr = listener
            .local_addr()
            .map_err(|e| NodeError::io(std::path::Path::new("web UI"), e))?;
        let auth = Arc::new(auth::Auth::new(token, addr));
        let app = App {
            ops,
            node,
            auth: auth.clone(),
            live: live.clone(),
            read_since: None,
        };
        let url = format!("http://{}", display_addr(addr));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = router(app);
        tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!("web UI stopped: {e}");
            }
        });
        Ok(Ui {
            url,
            addr,
            auth,
            live,
            own_live,
            shutdown: tx,
        })
    }

    /// A link that logs a browser in once, within [`auth::LOGIN_LINK_TTL`].
    pub fn login_link(&self) -> String {
        format!("{}/login?code={}", self.url, self.auth.issue_code())
    }

    /// Makes login links on demand (for `rapport open`, via the local API).
    pub fn login_links(&self) -> Arc<dyn Fn() -> String + Send + Sync> {
        let (url, auth) = (self.url.clone(), self.auth.clone());
        Arc::new(move || format!("{url}/login?code={}", auth.issue_code()))
    }

    pub fn stop(self) {
        if self.own_live {
            self.live.stop();
        }
        let _ = self.shutdown.send(());
    }
}

/// `127.0.0.1:7470`, or `localhost`-style brackets for IPv6.
fn display_addr(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        // Bound to every interface: loopback reaches it from this machine.
        return format!("127.0.0.1:{}", addr.port());
    }
    addr.to_string()
}

async fn bind_to(addr: SocketAddr) -> Result<tokio::net::TcpListener, NodeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| NodeError::io(std::path::Path::new(&format!("web UI address {addr}")), e))
}

fn router(app: App) -> Router {
    let pages = Router::new()
        .route("/", get(pages::work::page))
        .route("/search", get(pages::search::page))
        .route("/k/{kind}", get(pages::list::page))
        .route(
            "/new/{kind}",
            get(pages::form::new_page).post(pages::form::create),
        )
        .route("/r/{id}", get(pages::record::page))
        .route(
            "/r/{id}/edit",
            get(pages::form::edit_page).post(pages::form::update),
        )
        .route("/r/{id}/pick", post(pages::record::pick))
        .route("/r/{id}/privacy", get(pages::privacy::page))
        .route("/r/{id}/privacy/{file}", get(pages::privacy::file))
        .route("/r/{id}/erase", post(pages::privacy::erase))
        .route("/r/{id}/enroll", post(pages::privacy::enroll))
        .route("/privacy", get(pages::privacy::overview))
        .route("/r/{id}/stage", post(pages::board::move_deal))
        .route("/r/{id}/done", post(pages::record::complete))
        .route("/r/{id}/delete", post(pages::record::delete))
        .route("/r/{id}/restore", post(pages::record::restore))
        .route("/board", get(pages::board::page))
        .route("/calendar", get(pages::calendar::page))
        .route("/calendar/move", post(pages::calendar::move_entry))
        .route("/reminders.json", get(pages::calendar::reminders))
        .route("/reminders/dismiss", post(pages::calendar::dismiss))
        .route("/reports", get(pages::reports::page))
        .route("/reports.csv", get(pages::reports::csv))
        .route("/duplicates", get(pages::duplicates::page))
        .route("/merge", get(pages::merge::page).post(pages::merge::merge))
        .route("/merge/{id}/undo", post(pages::merge::undo))
        .route("/import", get(pages::import::page))
        .route(
            "/import/upload",
            post(pages::import::upload).layer(axum::extract::DefaultBodyLimit::max(
                rapport_node::import::MAX_UPLOAD + (64 << 10),
            )),
        )
        .route("/import/preview", get(pages::import::preview))
        .route("/import/run", post(pages::import::run))
        .route("/import/{id}/undo", post(pages::import::undo))
        .route("/import/{id}/errors.csv", get(pages::import::errors))
        .route("/k/{kind}/export.csv", get(pages::import::export))
        .route("/export/{name}", get(pages::import::export_document))
        .route("/spaces", get(pages::spaces::page))
        .route(
            "/fields",
            get(pages::schema::page).post(pages::schema::change),
        )
        .route("/spaces/invite", post(pages::spaces::invite))
        .route("/spaces/join", post(pages::spaces::join))
        .route("/spaces/create", post(pages::spaces::create))
        .route("/events", get(live::events))
        .route("/logout", post(auth::logout))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::require_session,
        ));
    Router::new()
        .route("/login", get(auth::login_page).post(auth::login_with_token))
        .route("/assets/{name}", get(assets::serve))
        .merge(pages)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::check_host_and_origin,
        ))
        .with_state(app)
}

#[cfg(test)]
mod testing;
