//! The frame every page shares: skip link, search box, navigation,
//! breadcrumbs, the page's help panel, and what live updates watch.
//! Also the small formatting helpers pages share.

use axum::response::Html;
use maud::{DOCTYPE, Markup, html};
use rapport_model::{FieldDef, FieldType, FieldValue, Kind, RecordId, RecordView};

use crate::trail::Crumb;

/// Which entry of the main navigation a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Work,
    Kind(Kind),
    Board,
    Calendar,
    Reports,
    Spaces,
    Import,
    Fields,
    Other,
}

/// One page, before it is framed.
#[derive(Debug)]
pub(crate) struct Page {
    pub title: String,
    pub nav: Nav,
    pub crumbs: Vec<Crumb>,
    /// What the help panel explains: what the page shows, what to do here.
    pub help: Markup,
    pub body: Markup,
    /// What a change must touch for the open page to refresh itself: record
    /// ids, kind names, or `*` for any change.
    pub watch: Vec<String>,
    /// The live feed's cursor before the page read anything
    /// (`App::read_since`): its live updates resume from there.
    pub since: Option<String>,
}

pub(crate) fn render(app: &crate::App, p: Page) -> Html<String> {
    // The kinds of every space this node holds (custom ones after the
    // built-in); read from the folded schemas each space keeps cached.
    let kinds = app.repo().kinds_in(None).unwrap_or_else(|e| {
        tracing::warn!("the navigation lists the built-in kinds only: {e}");
        Kind::ALL
            .into_iter()
            .map(|k| (k, rapport_model::custom::plural_of(k)))
            .collect()
    });
    let nav_item = |target: Nav, href: &str, label: &str| {
        html! {
            li { a href=(href) aria-current=[(p.nav == target).then_some("page")] { (label) } }
        }
    };
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(&p.title))
                body data-watch=(p.watch.join(" ")) data-since=[p.since.as_deref()] {
                    a class="skip" href="#main" { "Skip to content" }
                    header class="top" {
                        a class="brand" href="/" { "Rapport" }
                        (search_box())
                        span id="live" class="live" role="status" aria-live="polite" { }
                    }
                    nav class="main-nav" aria-label="Main" {
                        ul {
                            (nav_item(Nav::Work, "/", "My work"))
                            @for (k, many) in &kinds {
                                (nav_item(Nav::Kind(*k), &format!("/k/{}", k.as_str()), &label(many)))
                            }
                            (nav_item(Nav::Calendar, "/calendar", "Calendar"))
                            (nav_item(Nav::Board, "/board", "Pipeline"))
                            (nav_item(Nav::Reports, "/reports", "Reports"))
                            (nav_item(Nav::Spaces, "/spaces", "Spaces & sync"))
                            (nav_item(Nav::Import, "/import", "Import & export"))
                            (nav_item(Nav::Fields, "/fields", "Fields"))
                        }
                    }
                    @if p.crumbs.len() > 1 {
                        nav class="crumbs" aria-label="Breadcrumb" {
                            ol {
                                @for c in &p.crumbs {
                                    li {
                                        @match &c.href {
                                            Some(h) => a href=(h) { (c.label) },
                                            None => span aria-current="page" { (c.label) },
                                        }
                                    }
                                }
                            }
                        }
                    }
                    main id="main" tabindex="-1" {
                        details id="help" class="help" {
                            summary { "Help: " (p.title) " " kbd { "?" } }
                            div class="help-body" { (p.help) }
                        }
                        (p.body)
                    }
                    footer class="foot" {
                        form method="post" action="/logout" { button class="link" type="submit" { "Log out" } }
                        span { "Keys: " kbd { "/" } " search, " kbd { "?" } " help, " kbd { "g" } " then "
                            kbd { "w" } " my work, " kbd { "b" } " pipeline, " kbd { "k" } " calendar, " kbd { "r" } " reports" }
                    }
                }
            }
        }
        .into_string(),
    )
}

/// A page without navigation (login, errors).
pub(crate) fn bare(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body class="bare" { main id="main" { (body) } }
            }
        }
        .into_string(),
    )
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Rapport" }
            link rel="stylesheet" href=(crate::assets::CSS_PATH);
            script src=(crate::assets::JS_PATH) defer {}
        }
    }
}

fn search_box() -> Markup {
    html! {
        form class="search" role="search" action="/search" method="get" {
            label for="q" class="visually-hidden" { "Search records" }
            input id="q" name="q" type="search" placeholder="Search people, companies, deals… ( / )"
                autocomplete="off" role="combobox" aria-autocomplete="list" aria-expanded="false"
                aria-controls="search-results";
            ul id="search-results" role="listbox" aria-label="Search results" hidden {}
        }
    }
}

/// The kind a page's address names: built in, or added by the admins of
/// a space this node holds (`retired_too`: also one retired, whose records
/// are still listed). Any other name is a page that does not exist.
pub(crate) fn kind_named(
    app: &crate::App,
    name: &str,
    retired_too: bool,
) -> Result<Kind, crate::WebError> {
    let kind = Kind::known(name).map_err(|e| crate::WebError::NotFound(e.to_string()))?;
    app.repo()
        .known_kind(None, kind, retired_too)
        .map_err(|e| crate::WebError::NotFound(e.to_string()))?;
    Ok(kind)
}

/// "Companies", "People", ... for headings and navigation; a custom
/// kind's plural as its name would have it (the navigation shows the one
/// its admins gave, from the schema).
pub(crate) fn plural(kind: Kind) -> String {
    match kind {
        Kind::Company => "Companies".into(),
        Kind::Person => "People".into(),
        Kind::Deal => "Deals".into(),
        Kind::Activity => "Activities".into(),
        Kind::Ticket => "Tickets".into(),
        Kind::Campaign => "Campaigns".into(),
        Kind::Product => "Products".into(),
        Kind::LineItem => "Line items".into(),
        Kind::Consent => "Consents".into(),
        Kind::Custom(_) => label(&rapport_model::custom::plural_of(kind)),
    }
}

/// "Company", "Person", ... for one record.
pub(crate) fn singular(kind: Kind) -> String {
    label(kind.as_str())
}

/// What forms and tables call a field: the label its space's admins gave
/// it, or its name as a label.
pub(crate) fn field_label(def: &FieldDef) -> String {
    if def.label.is_empty() {
        label(def.name)
    } else {
        def.label.to_string()
    }
}

/// A field name as a label: `lost_reason` → "Lost reason".
pub(crate) fn label(field: &str) -> String {
    let words = field.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Percent-encodes a query-string value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A field's value for reading: references become links to their records
/// (titles looked up by `title_of`), everything else text.
pub(crate) fn field_value(
    def: &FieldDef,
    value: &FieldValue,
    title_of: &dyn Fn(RecordId) -> Option<String>,
    link: &dyn Fn(RecordId) -> String,
) -> Markup {
    let ids: Vec<RecordId> = match (def.ty.ref_kinds(), value) {
        (Some(_), FieldValue::Text(s)) => s.parse().ok().into_iter().collect(),
        (Some(_), FieldValue::List(l)) => l.iter().filter_map(|s| s.parse().ok()).collect(),
        _ => Vec::new(),
    };
    if !ids.is_empty() {
        return html! {
            @for (n, id) in ids.iter().enumerate() {
                @if n > 0 { ", " }
                a href=(link(*id)) { (title_of(*id).unwrap_or_else(|| id.to_string())) }
            }
        };
    }
    match (def.ty, value) {
        (FieldType::Email, FieldValue::Text(s)) => html! { a href={ "mailto:" (s) } { (s) } },
        (FieldType::Url, FieldValue::Text(s)) if s.starts_with("http") => {
            html! { a href=(s) rel="noreferrer" { (s) } }
        }
        _ => html! { (value) },
    }
}

/// The record's title, or its id when the record is not here.
pub(crate) fn title_in(repo: &rapport_node::Repo, id: RecordId) -> Option<String> {
    repo.view(id)
        .ok()
        .flatten()
        .map(|v: RecordView| v.title())
        .or_else(|| repo.erased_title(id))
}

/// Seconds since the Unix epoch as local time, `2026-11-23 14:05`.
pub(crate) fn local_time(unix_seconds: i64) -> String {
    jiff::Timestamp::from_second(unix_seconds)
        .map(|t| {
            t.to_zoned_datetime(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| unix_seconds.to_string())
}
