//! Create and edit forms: one labelled input per field of the kind's
//! schema, checked by the CLI's own parser (`Repo::check_inputs`) so that
//! every problem shows next to its field at once, in the CLI's words, with
//! what the user typed kept.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use rapport_model::{FieldDef, FieldType, FieldValue, Kind, RecordView, SpaceId};
use rapport_node::Repo;

use crate::page::{self, Nav, Page};
use crate::trail::{Step, Trail};
use crate::{App, WebError};

type Pairs = Vec<(String, String)>;

/// A form as shown: the values in its inputs and the problems found.
#[derive(Debug, Default)]
struct Filled {
    values: BTreeMap<String, String>,
    /// Problems by field; `None` for those no one field owns.
    errors: Vec<(Option<String>, String)>,
    /// The chosen space (new records only): "private" or a space id.
    space: String,
    /// What the edit form showed first, sent back in hidden inputs: a save
    /// changes only the fields that differ from it, whatever a peer changed
    /// meanwhile.
    was: BTreeMap<String, String>,
}

impl Filled {
    fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| f.as_deref() == Some(field))
            .map(|(_, e)| e.as_str())
    }
}

/// `GET /new/{kind}`: an empty form, filled from the query string where it
/// names fields (`?company=ID` from a company's page).
pub(crate) async fn new_page(
    State(app): State<App>,
    Path(kind): Path<String>,
    Query(pairs): Query<Pairs>,
) -> Result<Response, WebError> {
    app.blocking(move |app| {
        let kind = page::kind_named(app, &kind, false)?;
        let repo = app.repo();
        let mut filled = Filled {
            space: "private".into(),
            ..Filled::default()
        };
        if let Some((_, v)) = pairs.iter().find(|(k, _)| k == "space") {
            filled.space = v.clone();
        }
        let defs = defs_for(repo, repo.resolve_space(&filled.space).ok(), kind);
        for (k, v) in &pairs {
            if let Some(def) = defs.iter().find(|d| d.name == k) {
                filled
                    .values
                    .insert(def.name.into(), shown_ref_or_text(repo, def, v));
            }
        }
        Ok(render(app, kind, None, filled, StatusCode::OK))
    })
    .await
}

/// `POST /new/{kind}`.
pub(crate) async fn create(
    State(app): State<App>,
    Path(kind): Path<String>,
    Form(pairs): Form<Pairs>,
) -> Result<Response, WebError> {
    app.blocking(move |app| {
        let kind = page::kind_named(app, &kind, false)?;
        let repo = app.repo();
        let space_ref = pairs
            .iter()
            .find(|(k, _)| k == "space")
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let resolved = repo.resolve_space(if space_ref.is_empty() {
            "private"
        } else {
            &space_ref
        });
        let defs = defs_for(repo, resolved.as_ref().ok().copied(), kind);
        let values = submitted(&defs, &pairs);
        let mut filled = Filled {
            values: values.clone(),
            space: space_ref.clone(),
            ..Filled::default()
        };
        let space = match resolved {
            Ok(s) => s,
            Err(e) => {
                filled.errors.push((Some("space".into()), e.to_string()));
                return Ok(render(
                    app,
                    kind,
                    None,
                    filled,
                    StatusCode::UNPROCESSABLE_ENTITY,
                ));
            }
        };
        let inputs: Vec<(String, String)> = values
            .into_iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        for (field, e) in repo.check_inputs(kind, Some(space), &inputs, true) {
            filled.errors.push((Some(field), e.to_string()));
        }
        if filled.errors.is_empty() {
            let request = rapport_node::ops::Request::Create {
                kind,
                space: Some(space.to_string()),
                fields: inputs,
            };
            match app.write(request) {
                Ok(view) => {
                    return Ok(Redirect::to(&format!("/r/{}?created=1", view.id)).into_response());
                }
                Err(e) => filled.errors.push(problem(&e)),
            }
        }
        Ok(render(
            app,
            kind,
            None,
            filled,
            StatusCode::UNPROCESSABLE_ENTITY,
        ))
    })
    .await
}

/// `GET /r/{id}/edit`.
pub(crate) async fn edit_page(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    app.blocking(move |app| {
        let view = editable(app.repo(), &id)?;
        let defs = defs_for(app.repo(), Some(view.space), view.kind);
        let shown = shown_values(app.repo(), &view, &defs);
        let filled = Filled {
            values: shown.clone(),
            was: shown,
            ..Filled::default()
        };
        Ok(render(app, view.kind, Some(&view), filled, StatusCode::OK))
    })
    .await
}

/// `POST /r/{id}/edit`: sends only the fields whose value differs from what
/// the form showed, so that saving never overwrites what a peer changed in
/// another field meanwhile.
pub(crate) async fn update(
    State(app): State<App>,
    Path(id): Path<String>,
    Form(pairs): Form<Pairs>,
) -> Result<Response, WebError> {
    app.blocking(move |app| {
        let repo = app.repo();
        let view = editable(repo, &id)?;
        let defs = defs_for(repo, Some(view.space), view.kind);
        let values = submitted(&defs, &pairs);
        // Forms from before this field existed fall back to the values now.
        let mut shown = shown_values(repo, &view, &defs);
        for (k, v) in &pairs {
            if let Some(field) = k.strip_prefix("was.")
                && defs.iter().any(|d| d.name == field)
            {
                shown.insert(field.to_string(), v.clone());
            }
        }
        let mut sets = Vec::new();
        let mut unsets = Vec::new();
        let mut changed = Vec::new();
        for def in &defs {
            let new = values.get(def.name).map(|v| v.trim()).unwrap_or("");
            let old = shown.get(def.name).map(|v| v.trim()).unwrap_or("");
            if new == old {
                continue;
            }
            changed.push((def.name.to_string(), new.to_string()));
            if new.is_empty() {
                unsets.push(def.name.to_string());
            } else {
                sets.push((def.name.to_string(), new.to_string()));
            }
        }
        let back = Redirect::to(&format!("/r/{}?saved=1", view.id)).into_response();
        if changed.is_empty() {
            return Ok(back);
        }
        let mut filled = Filled {
            values,
            was: shown,
            ..Filled::default()
        };
        for (field, e) in repo.check_inputs(view.kind, Some(view.space), &changed, false) {
            filled.errors.push((Some(field), e.to_string()));
        }
        if filled.errors.is_empty() {
            let request = rapport_node::ops::Request::Edit {
                record: view.id.to_string(),
                set: sets,
                unset: unsets,
            };
            match app.write(request) {
                Ok(_) => return Ok(back),
                Err(e) => filled.errors.push(problem(&e)),
            }
        }
        Ok(render(
            app,
            view.kind,
            Some(&view),
            filled,
            StatusCode::UNPROCESSABLE_ENTITY,
        ))
    })
    .await
}

fn editable(repo: &Repo, id: &str) -> Result<RecordView, WebError> {
    let view = repo.resolve(id)?;
    if view.deleted {
        return Err(WebError::BadRequest(format!(
            "{} is deleted; restore it from its page before editing it",
            view.title()
        )));
    }
    Ok(view)
}

/// The fields a form of `kind` shows in `space` (the private space's when
/// the space is not known): the built-in ones and the space's own.
fn defs_for(repo: &Repo, space: Option<SpaceId>, kind: Kind) -> Vec<&'static FieldDef> {
    repo.fields_in(Some(space.unwrap_or_default()), kind)
        .unwrap_or_else(|_| kind.fields().iter().collect())
}

/// The field values a form sent; an unticked checkbox sends nothing,
/// which means "no"; the boxes of a multiple choice come one pair each.
fn submitted(defs: &[&'static FieldDef], pairs: &Pairs) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in pairs {
        let Some(def) = defs.iter().find(|d| d.name == k) else {
            continue;
        };
        match values.get_mut(def.name) {
            Some(joined) if matches!(def.ty, FieldType::Choices(_)) => {
                joined.push_str(", ");
                joined.push_str(v);
            }
            _ => {
                values.insert(k.clone(), v.clone());
            }
        }
    }
    for def in defs {
        if def.ty == FieldType::Flag {
            let on = values.get(def.name).is_some_and(|v| !v.is_empty());
            values.insert(def.name.into(), if on { "yes" } else { "" }.into());
        }
        if matches!(def.ty, FieldType::Choices(_)) && !values.contains_key(def.name) {
            values.insert(def.name.into(), String::new());
        }
    }
    values
}

/// The record's values as the form shows them: references by their
/// records' titles (what a user would type), flags as "yes" or nothing.
fn shown_values(
    repo: &Repo,
    view: &RecordView,
    defs: &[&'static FieldDef],
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for def in defs {
        let Some(value) = view.get(def.name) else {
            continue;
        };
        let text = match (def.ty, value) {
            (FieldType::Flag, FieldValue::Flag(b)) => if *b { "yes" } else { "" }.to_string(),
            (_, FieldValue::List(items)) if def.ty.ref_kinds().is_some() => items
                .iter()
                .map(|s| shown_ref_or_text(repo, def, s))
                .collect::<Vec<_>>()
                .join(", "),
            (_, FieldValue::Text(s)) if def.ty.ref_kinds().is_some() => {
                shown_ref_or_text(repo, def, s)
            }
            _ => value.to_string(),
        };
        out.insert(def.name.to_string(), text);
    }
    out
}

/// A reference as its record's title; anything else as given.
fn shown_ref_or_text(repo: &Repo, def: &FieldDef, value: &str) -> String {
    if def.ty.ref_kinds().is_some()
        && let Ok(id) = value.parse()
        && let Some(title) = page::title_in(repo, id)
    {
        return title;
    }
    value.to_string()
}

/// The field a problem belongs to, when it names one.
/// The field an operation's error is about, if any, and its message.
fn problem(e: &rapport_node::ops::OpError) -> (Option<String>, String) {
    (e.fields.first().map(|f| f.field.clone()), e.to_string())
}

fn render(
    app: &App,
    kind: Kind,
    editing: Option<&RecordView>,
    filled: Filled,
    status: StatusCode,
) -> Response {
    let repo = app.repo();
    let defs = match editing {
        Some(v) => defs_for(repo, Some(v.space), kind),
        None => defs_for(repo, repo.resolve_space(&filled.space).ok(), kind),
    };
    let singular = page::singular(kind);
    let (title, action, submit, cancel) = match editing {
        Some(v) => (
            format!("Edit {}", v.title()),
            format!("/r/{}/edit", v.id),
            "Save".to_string(),
            format!("/r/{}", v.id),
        ),
        None => (
            format!("New {}", singular.to_lowercase()),
            format!("/new/{}", kind.as_str()),
            format!("Create {singular}"),
            format!("/k/{}", kind.as_str()),
        ),
    };
    let spaces: Vec<(String, String)> = repo
        .spaces()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| repo.check_may_write(s.id).is_ok())
        .map(|s| (s.id.to_string(), s.name))
        .collect();
    let body = html! {
        h1 { (title) }
        @if !filled.errors.is_empty() {
            div class="notice" role="alert" id="form-errors" tabindex="-1" {
                h2 { "Please correct " (filled.errors.len()) (if filled.errors.len() == 1 { " problem" } else { " problems" }) }
                ul {
                    @for (field, e) in &filled.errors {
                        li {
                            @match field {
                                Some(f) => a href={ "#f-" (f) } { (page::label(f)) ": " (e) },
                                None => (e),
                            }
                        }
                    }
                }
            }
        }
        form method="post" action=(action) class="record-form" novalidate {
            @if editing.is_none() {
                @let err = filled.error("space");
                div class="field" {
                    label for="f-space" { "Space" }
                    // Another space may have other fields: the page shows
                        // its form, with what was typed so far (app.js).
                    select id="f-space" name="space" data-refields=(format!("/new/{}", kind.as_str()))
                        aria-describedby={ "f-space-hint" @if err.is_some() { " f-space-error" } }
                        aria-invalid=[err.map(|_| "true")] {
                        option value="private" selected[filled.space == "private" || filled.space.is_empty()] { "Private (this device only)" }
                        @for (id, name) in &spaces {
                            option value=(id) selected[&filled.space == id] { "Shared: " (name) }
                        }
                    }
                    p class="hint" id="f-space-hint" { "Who will see it: only you, or the members of a shared space." }
                    @if let Some(e) = err { p class="error" id="f-space-error" { (e) } }
                }
            }
            @for (k, v) in &filled.was {
                input type="hidden" name={ "was." (k) } value=(v);
            }
            @for def in &defs {
                (field(def, filled.values.get(def.name).map(String::as_str).unwrap_or(""), filled.error(def.name)))
            }
            div class="toolbar" {
                button type="submit" { (submit) }
                a class="button secondary" href=(cancel) { "Cancel" }
            }
        }
    };
    let crumbs = match editing {
        Some(v) => Trail::default()
            .then(Step::Kind(kind))
            .then(Step::Record(v.id))
            .crumbs(repo, "Edit"),
        None => Trail::default().then(Step::Kind(kind)).crumbs(repo, &title),
    };
    let page = page::render(
        app,
        Page {
            title,
            nav: Nav::Kind(kind),
            crumbs,
            help: html! {
                p { "Fill in what you know; only fields marked " em { "required" } " must be set. Each field says what it takes." }
                p { "Values are checked exactly as the " code { "rapport" } " command checks them. Problems are listed at the top and next to their fields; what you typed stays." }
                p { "A reference (a company, people) takes a name or an id. Lists (emails, phones, tags) are separated by commas." }
                @if editing.is_some() {
                    p { "Saving changes only the fields you changed, so a colleague's change to another field at the same time is kept." }
                } @else {
                    p { strong { "Space" } " decides who sees the record: private records stay on this device; a shared space's records go to its members." }
                }
            },
            body,
            watch: vec![],
            // Watches nothing (a form keeps what is typed): no live updates.
            since: None,
        },
    );
    (status, page).into_response()
}

/// One labelled input, with its hint and its problem if any.
fn field(def: &FieldDef, value: &str, error: Option<&str>) -> Markup {
    let id = format!("f-{}", def.name);
    let hint_id = format!("{id}-hint");
    let error_id = format!("{id}-error");
    let described = match error {
        Some(_) => format!("{hint_id} {error_id}"),
        None => hint_id.clone(),
    };
    let invalid = error.map(|_| "true");
    let required = def.required.then_some("true");
    let placeholder = def.default.filter(|d| *d != "now").unwrap_or("");
    let control = match def.ty {
        FieldType::Choice(options) => html! {
            select id=(id) name=(def.name) aria-describedby=(described) aria-invalid=[invalid] aria-required=[required] {
                @if !def.required || def.default.is_none() { option value="" { "" } }
                @for o in options {
                    option value=(o) selected[*o == value || (value.is_empty() && def.default == Some(*o))] { (page::label(o)) }
                }
            }
        },
        FieldType::Flag => html! {
            input id=(id) name=(def.name) type="checkbox" value="yes" checked[value == "yes"]
                aria-describedby=(described) aria-invalid=[invalid];
        },
        FieldType::Choices(options) => {
            let chosen: Vec<String> = rapport_model::value::split_list(value)
                .map(str::to_lowercase)
                .collect();
            html! {
                fieldset id=(id) class="choices" aria-describedby=(described) aria-invalid=[invalid] {
                    legend class="visually-hidden" { (page::field_label(def)) }
                    @for o in options {
                        label class="choice" {
                            input type="checkbox" name=(def.name) value=(o) checked[chosen.iter().any(|c| c == o)];
                            " " (page::label(o))
                        }
                    }
                }
            }
        }
        FieldType::LongText => html! {
            textarea id=(id) name=(def.name) rows="4" aria-describedby=(described) aria-invalid=[invalid] aria-required=[required] { (value) }
        },
        FieldType::Text if matches!(def.name, "body" | "description") => html! {
            textarea id=(id) name=(def.name) rows="4" aria-describedby=(described) aria-invalid=[invalid] { (value) }
        },
        ty => {
            let (input_type, mode) = match ty {
                FieldType::Date => ("date", None),
                FieldType::Amount | FieldType::Number | FieldType::Money => {
                    ("text", Some("decimal"))
                }
                FieldType::Percent => ("text", Some("numeric")),
                FieldType::Email | FieldType::Emails => ("text", Some("email")),
                FieldType::Phone | FieldType::Phones => ("text", Some("tel")),
                FieldType::Url | FieldType::Domain => ("text", Some("url")),
                _ => ("text", None),
            };
            html! {
                input id=(id) name=(def.name) type=(input_type) value=(value) inputmode=[mode]
                    placeholder=(placeholder) autocomplete="off"
                    aria-describedby=(described) aria-invalid=[invalid] aria-required=[required];
            }
        }
    };
    let hint = match def.ty {
        FieldType::DateTime => format!(
            "{}; e.g. 2026-12-01 14:00, today 9:00, tomorrow, now",
            def.help
        ),
        FieldType::Ref(_) | FieldType::Refs(_) => format!("{}; a name or an id", def.help),
        FieldType::Money if def.help.is_empty() => {
            "an amount and its currency, e.g. 1200.50 EUR".into()
        }
        FieldType::Money => format!("{}; e.g. 1200.50 EUR", def.help),
        _ => def.help.to_string(),
    };
    html! {
        div class="field" {
            // "(required)" stays out of the label, so that the field's name
            // is just its name; assistive technology reads aria-required.
            div {
                @if matches!(def.ty, FieldType::Choices(_)) {
                    // The boxes' fieldset has the field's name as its legend.
                    span aria-hidden="true" { (page::field_label(def)) }
                } @else {
                    label for=(id) { (page::field_label(def)) }
                }
                @if def.required { span class="muted" aria-hidden="true" { " (required)" } } }
            (control)
            p class="hint" id=(hint_id) { (hint) }
            @if let Some(e) = error { p class="error" id=(error_id) { (e) } }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::TestUi;
    use rapport_model::Kind;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_field_has_a_label_and_a_company_is_created() {
        let t = TestUi::start().await;
        let form = t.get("/new/company").await;
        assert_eq!(form.status, 200);
        for def in Kind::Company.fields() {
            let label = format!("<label for=\"f-{}\">", def.name);
            assert!(form.body.contains(&label), "no label for {}", def.name);
        }
        let made = t
            .post(
                "/new/company",
                &[
                    ("space", "private"),
                    ("name", "Zenith Labs"),
                    ("domain", "zenith.example"),
                ],
            )
            .await;
        assert_eq!(made.status, 303, "{}", made.body);
        let to = made.header("location").expect("redirect").to_string();
        assert!(to.starts_with("/r/") && to.ends_with("?created=1"), "{to}");
        let repo = t.repo().clone();
        let v = tokio::task::spawn_blocking(move || repo.resolve("Zenith Labs"))
            .await
            .expect("task")
            .expect("created");
        assert_eq!(v.text("domain"), Some("zenith.example"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_values_show_the_clis_message_next_to_their_field_and_keep_the_input() {
        let t = TestUi::start().await;
        let bad = t
            .post(
                "/new/deal",
                &[
                    ("title", "Bad deal"),
                    ("company", "Acme Corporation"),
                    ("amount", "12x"),
                    ("currency", "EUR"),
                ],
            )
            .await;
        assert_eq!(bad.status, 422);
        let err = bad
            .body
            .split("id=\"f-amount-error\">")
            .nth(1)
            .expect("amount error");
        assert!(err.starts_with("`12x`") || err.contains("12x"), "{err}");
        assert!(bad.body.contains("value=\"12x\""), "typed value kept");
        assert!(bad.body.contains("aria-invalid=\"true\""));
        assert!(
            bad.body.contains("value=\"Acme Corporation\""),
            "other values kept"
        );

        let missing = t
            .post("/new/deal", &[("company", "Acme Corporation")])
            .await;
        assert_eq!(missing.status, 422);
        assert!(
            missing
                .body
                .contains("id=\"f-title-error\">deal needs a title"),
            "{}",
            missing.body
        );

        let email = t
            .post("/new/person", &[("name", "Bo"), ("emails", "not-an-email")])
            .await;
        assert_eq!(email.status, 422);
        assert!(
            email.body.contains("id=\"f-emails-error\""),
            "{}",
            email.body
        );
        let repo = t.repo().clone();
        let none = tokio::task::spawn_blocking(move || {
            repo.resolve("Bad deal").is_err() && repo.resolve("Bo").is_err()
        })
        .await
        .expect("task");
        assert!(none, "nothing was created");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prefills_and_edits_change_only_what_changed() {
        let t = TestUi::start().await;
        let repo = t.repo().clone();
        let acme = tokio::task::spawn_blocking(move || repo.resolve("Acme Corporation"))
            .await
            .expect("task")
            .expect("acme");
        let form = t.get(&format!("/new/deal?company={}", acme.id)).await;
        assert!(
            form.body.contains("value=\"Acme Corporation\""),
            "company prefilled"
        );

        let edit = t.get(&format!("/r/{}/edit", acme.id)).await;
        assert_eq!(edit.status, 200);
        // A peer changes the industry after the form was shown.
        let repo = t.repo().clone();
        let id = acme.id.to_string();
        tokio::task::spawn_blocking(move || {
            repo.edit(&id, &[("industry".into(), "Aerospace".into())], &[])
        })
        .await
        .expect("task")
        .expect("peer edit");
        // The user saves the form as shown, with a new website and no domain.
        let mut fields: Vec<(String, String)> = Vec::new();
        for def in Kind::Company.fields() {
            let v = acme
                .get(def.name)
                .map(|v| v.to_string())
                .unwrap_or_default();
            fields.push((def.name.into(), v.clone()));
            if !v.is_empty() {
                fields.push((format!("was.{}", def.name), v));
            }
        }
        assert!(
            edit.body
                .contains("name=\"was.industry\" value=\"Manufacturing\""),
            "the form remembers what it showed"
        );
        for f in &mut fields {
            match f.0.as_str() {
                "website" => f.1 = "https://acme.example/new".into(),
                "domain" => f.1 = String::new(),
                _ => {}
            }
        }
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let saved = t.post(&format!("/r/{}/edit", acme.id), &pairs).await;
        assert_eq!(saved.status, 303, "{}", saved.body);
        let repo = t.repo().clone();
        let after = tokio::task::spawn_blocking(move || repo.resolve("Acme Corporation"))
            .await
            .expect("task")
            .expect("acme");
        assert_eq!(after.text("website"), Some("https://acme.example/new"));
        assert_eq!(after.get("domain"), None, "emptied field unset");
        assert_eq!(
            after.text("industry"),
            Some("Aerospace"),
            "the peer's change is kept"
        );

        let blank = t
            .post(&format!("/r/{}/edit", acme.id), &[("name", "")])
            .await;
        assert_eq!(blank.status, 422);
        assert!(blank.body.contains("cannot be cleared"), "{}", blank.body);
    }
}
