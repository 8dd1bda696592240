//! `GET /search?q=`: the search box's answers as JSON while typing
//! (`format=json`), or a page of results for Enter (and browsers without
//! JavaScript).

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use crate::App;
use crate::page::{self, Nav, Page};
use crate::trail::Crumb;

/// How many results the box shows while typing.
const BOX_RESULTS: usize = 8;
/// How many the results page shows.
const PAGE_RESULTS: usize = 200;

#[derive(Debug, Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    q: String,
    format: Option<String>,
}

#[derive(Debug, serde::Serialize)]
struct BoxHit {
    id: String,
    kind: String,
    title: String,
    detail: Option<String>,
    href: String,
}

#[derive(Debug, serde::Serialize)]
struct BoxAnswer {
    hits: Vec<BoxHit>,
    total: usize,
    /// False while the index is still reading the store after start-up.
    complete: bool,
}

pub(crate) async fn page(State(app): State<App>, Query(q): Query<SearchQuery>) -> Response {
    if q.format.as_deref() == Some("json") {
        let found = app.search(&q.q, BOX_RESULTS);
        let hits = found
            .hits
            .into_iter()
            .map(|h| BoxHit {
                id: h.id.to_string(),
                kind: page::singular(h.kind),
                href: format!("/r/{}", h.id),
                title: h.title,
                detail: h.detail,
            })
            .collect();
        return Json(BoxAnswer {
            hits,
            total: found.total,
            complete: app.live.ready(),
        })
        .into_response();
    }
    let found = app.search(&q.q, PAGE_RESULTS);
    let title = if q.q.trim().is_empty() {
        "Search".to_string()
    } else {
        format!("Search: {}", q.q.trim())
    };
    let body = html! {
        h1 { (title) }
        form action="/search" method="get" class="toolbar" {
            div class="field" {
                label for="q-page" { "Search for" }
                input id="q-page" name="q" type="search" value=(q.q);
            }
            button type="submit" { "Search" }
        }
        @if !app.live.ready() {
            p class="notice" { "Still reading the records after start-up: some may be missing for a few seconds." }
        }
        @if q.q.trim().is_empty() {
            p { "Type a name, an email address, a phone number, a domain, a deal or ticket title." }
        } @else if found.total == 0 {
            p { "Nothing matches " strong { (q.q.trim()) } ". Each word must begin a name, an email, a phone number, a domain or a tag." }
        } @else {
            p { (found.total) " matching records" @if found.total > found.hits.len() { ", the best " (found.hits.len()) " shown" } "." }
            ul class="results" {
                @for h in &found.hits {
                    li {
                        span class="kind" { (page::singular(h.kind)) } " "
                        a href={ "/r/" (h.id) } { (h.title) }
                        @if let Some(d) = &h.detail { " " span class="muted" { (d) } }
                    }
                }
            }
        }
    };
    page::render(&app, Page {
        title,
        nav: Nav::Other,
        crumbs: vec![
            Crumb { label: "My work".into(), href: Some("/".into()) },
            Crumb { label: "Search".into(), href: None },
        ],
        help: html! {
            p { "Search looks at every record on this node, in every space: names, email addresses, phone numbers, domains, web addresses, tags, and deal and ticket titles." }
            p { "Each word you type must begin one of those (" kbd { "ac co" } " finds Acme Corp). Exact and leading matches of a name come first." }
            p { "The search box at the top does the same while you type: " kbd { "↓" } " and " kbd { "↑" } " choose a result, " kbd { "Enter" } " opens it, " kbd { "/" } " jumps to the box from anywhere." }
        },
        body,
        watch: vec![],
        // Watches nothing: no live updates to resume.
        since: None,
    })
    .into_response()
}
