//! Who may use the UI.
//!
//! A browser logs in once, with a one-time link (`rapport up` prints one,
//! `rapport open` makes another) or by pasting the node's local API token
//! (in `DATA_DIR/api.json`), and gets a session cookie. Every page needs
//! that cookie, wherever the UI listens.
//!
//! Two more checks guard a UI on loopback against other web sites the user
//! visits: the `Host` header must name loopback (a DNS-rebinding page
//! sends its own host name), and a form post must come from the UI's own
//! origin (besides the cookie being `SameSite=Strict`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use crate::App;
use crate::page;

/// How long a login link works (once).
pub const LOGIN_LINK_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a browser stays logged in without using the UI.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug)]
pub struct Auth {
    token: String,
    addr: SocketAddr,
    codes: Mutex<HashMap<String, Instant>>,
    sessions: Mutex<HashMap<String, Instant>>,
}

impl Auth {
    pub fn new(token: String, addr: SocketAddr) -> Self {
        Auth {
            token,
            addr,
            codes: Mutex::default(),
            sessions: Mutex::default(),
        }
    }

    /// The session cookie's name. Browsers share cookies between ports of
    /// one host, so two nodes on one machine need two names.
    pub fn cookie_name(&self) -> String {
        format!("rapport_{}", self.addr.port())
    }

    /// A new one-time login code.
    pub fn issue_code(&self) -> String {
        let code = random_hex();
        let mut codes = lock(&self.codes);
        let now = Instant::now();
        codes.retain(|_, expires| *expires > now);
        codes.insert(code.clone(), now + LOGIN_LINK_TTL);
        code
    }

    /// Spends a login code: true once, if it was issued and is not stale.
    fn redeem_code(&self, code: &str) -> bool {
        let mut codes = lock(&self.codes);
        let now = Instant::now();
        codes.retain(|_, expires| *expires > now);
        codes.remove(code).is_some()
    }

    fn token_matches(&self, given: &str) -> bool {
        constant_time_eq(given.trim().as_bytes(), self.token.as_bytes())
    }

    fn new_session(&self) -> String {
        let id = random_hex();
        let mut sessions = lock(&self.sessions);
        let now = Instant::now();
        sessions.retain(|_, seen| now.duration_since(*seen) < SESSION_IDLE);
        sessions.insert(id.clone(), now);
        id
    }

    /// Whether the request carries a live session cookie (and renews it).
    fn has_session(&self, headers: &HeaderMap) -> bool {
        let Some(id) = cookie(headers, &self.cookie_name()) else {
            return false;
        };
        let mut sessions = lock(&self.sessions);
        let now = Instant::now();
        match sessions.get_mut(id) {
            Some(seen) if now.duration_since(*seen) < SESSION_IDLE => {
                *seen = now;
                true
            }
            _ => false,
        }
    }

    fn end_session(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, &self.cookie_name()) {
            lock(&self.sessions).remove(id);
        }
    }

    fn set_cookie(&self, session: &str) -> String {
        format!(
            "{}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            self.cookie_name(),
            SESSION_IDLE.as_secs()
        )
    }

    /// Whether `host` (a `Host` header) names this UI on loopback.
    fn loopback_host(&self, host: &str) -> bool {
        let port = self.addr.port();
        ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .any(|h| host == format!("{h}:{port}") || (port == 80 && host == *h))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn random_hex() -> String {
    let mut bytes = [0u8; 24];
    // The OS generator failing leaves a zero code that no one else has
    // either; login then fails loudly rather than with a guessable secret.
    if getrandom::fill(&mut bytes).is_err() {
        tracing::error!("the system's random generator failed; login links will not work");
        return String::from("unavailable");
    }
    rapport_proto::hex(&bytes)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Refuses requests that name another host (on loopback) or post from
/// another origin.
pub(crate) async fn check_host_and_origin(
    State(app): State<App>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if app.auth.addr.ip().is_loopback() && !app.auth.loopback_host(host) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "This Rapport node answers only to 127.0.0.1 and localhost.",
        )
            .into_response();
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let cross_site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "cross-site");
        let foreign_origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|o| o != format!("http://{host}"));
        if cross_site || foreign_origin {
            return (
                StatusCode::FORBIDDEN,
                "Forms of this Rapport node may be sent only from its own pages.",
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// Sends a browser without a session to the login page.
pub(crate) async fn require_session(
    State(app): State<App>,
    request: Request,
    next: Next,
) -> Response {
    if app.auth.has_session(request.headers()) {
        return next.run(request).await;
    }
    if request.method() == Method::GET && request.uri().path() != "/events" {
        let next_path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let to = format!("/login?next={}", page::url_encode(next_path));
        return Redirect::to(&to).into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        "Your session has ended; log in again (rapport open prints a login link).",
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    code: Option<String>,
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Where to go after logging in: a path of this UI, never another site.
fn safe_next(next: Option<&str>) -> &str {
    crate::redirect::local_or(next, "/")
}

fn logged_in(app: &App, next: Option<&str>) -> Response {
    let session = app.auth.new_session();
    (
        [(header::SET_COOKIE, app.auth.set_cookie(&session))],
        Redirect::to(safe_next(next)),
    )
        .into_response()
}

/// `GET /login`: spends a one-time code, or shows the token form.
pub(crate) async fn login_page(State(app): State<App>, Query(q): Query<LoginQuery>) -> Response {
    if let Some(code) = &q.code {
        if app.auth.redeem_code(code) {
            return logged_in(&app, q.next.as_deref());
        }
        return login_form(
            StatusCode::UNAUTHORIZED,
            q.next.as_deref(),
            Some(
                "This login link was already used or has expired. Run `rapport open` for a new one.",
            ),
        );
    }
    login_form(StatusCode::OK, q.next.as_deref(), None)
}

/// `POST /login`: the node's local token, pasted.
pub(crate) async fn login_with_token(
    State(app): State<App>,
    Form(form): Form<LoginForm>,
) -> Response {
    if app.auth.token_matches(&form.token) {
        return logged_in(&app, form.next.as_deref());
    }
    // Slow down guessing (the token is 192 random bits; this is courtesy).
    tokio::time::sleep(Duration::from_millis(500)).await;
    login_form(
        StatusCode::UNAUTHORIZED,
        form.next.as_deref(),
        Some(
            "That is not this node's token. Copy it again from the file named below, or run `rapport open`.",
        ),
    )
}

pub(crate) async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    app.auth.end_session(&headers);
    (
        [(
            header::SET_COOKIE,
            format!(
                "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
                app.auth.cookie_name()
            ),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

fn login_form(status: StatusCode, next: Option<&str>, error: Option<&str>) -> Response {
    let body = html! {
        h1 { "Log in to this Rapport node" }
        p { "Run " code { "rapport open" } " in a terminal on this computer: it opens a login link. "
            "Or paste the node's access token, the " code { "token" } " value in "
            code { "api.json" } " in the node's data directory." }
        form method="post" action="/login" class="stack" {
            @if let Some(next) = next {
                input type="hidden" name="next" value=(next);
            }
            div class="field" {
                label for="token" { "Access token" }
                input id="token" name="token" type="password" autocomplete="off" required
                    aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| "token-error")];
                @if let Some(e) = error {
                    p id="token-error" class="error" role="alert" { (e) }
                }
            }
            button type="submit" { "Log in" }
        }
    };
    (status, page::bare("Log in", body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(
            "secret-token".into(),
            SocketAddr::from(([127, 0, 0, 1], 7470)),
        )
    }

    #[test]
    fn a_login_code_works_once() {
        let auth = auth();
        let code = auth.issue_code();
        assert!(auth.redeem_code(&code));
        assert!(!auth.redeem_code(&code), "a second use is refused");
        assert!(!auth.redeem_code("guess"));
    }

    #[test]
    fn sessions_are_found_by_this_nodes_cookie_only() {
        let auth = auth();
        let session = auth.new_session();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            format!("rapport_7471=other; rapport_7470={session}")
                .parse()
                .expect("header"),
        );
        assert!(auth.has_session(&headers));
        auth.end_session(&headers);
        assert!(!auth.has_session(&headers), "logged out");
        let mut forged = HeaderMap::new();
        forged.insert(header::COOKIE, "rapport_7470=abc".parse().expect("header"));
        assert!(!auth.has_session(&forged));
    }

    #[test]
    fn only_loopback_host_names_and_local_redirects_pass() {
        let auth = auth();
        assert!(auth.loopback_host("127.0.0.1:7470"));
        assert!(auth.loopback_host("localhost:7470"));
        assert!(!auth.loopback_host("evil.example:7470"));
        assert!(!auth.loopback_host("127.0.0.1:7471"));
        assert_eq!(safe_next(Some("/r/01abc?t=work")), "/r/01abc?t=work");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(None), "/");
        assert!(auth.token_matches("secret-token\n"));
        assert!(!auth.token_matches("secret-tokeN"));
    }

    /// A login link whose `next` names another site, however disguised,
    /// lands on the UI's own start page. The raw queries are as a hostile
    /// page would write them (the server decodes them once).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_login_link_never_sends_the_browser_to_another_site() {
        let t = crate::testing::TestUi::start().await.logged_out();
        for next in [
            "/%09/evil.example",
            "/%0a/evil.example",
            "/%0d%0a/evil.example",
            "//evil.example",
            "/%5cevil.example",
            "%2f%2fevil.example",
            "/%2f%2fevil.example",
            "/%252f%252fevil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "",
        ] {
            let code = t.ui.auth.issue_code();
            let answer = t.get(&format!("/login?code={code}&next={next}")).await;
            assert_eq!(answer.status, 303, "{next}");
            assert_eq!(answer.header("location"), Some("/"), "{next}");
        }
        let code = t.ui.auth.issue_code();
        let answer = t
            .get(&format!("/login?code={code}&next=/search%3Fq%3Dacme"))
            .await;
        assert_eq!(answer.header("location"), Some("/search?q=acme"));
    }
}
