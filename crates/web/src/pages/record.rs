//! `GET /r/{id}`: one record: its fields, values written at the same time
//! on two devices (with a way to keep one), the space it is in and who
//! shares it, related records, and its timeline; a delete that raced a
//! restore or edits, with a way to settle it. Also the record's small
//! actions: pick a conflicting value, mark a task done, delete, restore.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{Html, Redirect};
use maud::{Markup, html};
use rapport_model::{FieldValue, Kind, RecordId, RecordView, SpaceId};
use rapport_node::Repo;
use rapport_node::timeline::Entry;
use serde::Deserialize;

use crate::page::{self, Nav, Page};
use crate::trail::{Step, Trail};
use crate::{App, WebError};
use rapport_node::ops::{Reply, Request};

#[derive(Debug, Deserialize)]
pub(crate) struct RecordQuery {
    t: Option<String>,
    created: Option<String>,
    saved: Option<String>,
    /// The merge that just merged records into this one.
    merged: Option<String>,
}

pub(crate) async fn page(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<RecordQuery>,
) -> Result<Html<String>, WebError> {
    app.blocking(move |app| render(app, &id, &q)).await
}

fn render(app: &App, reference: &str, q: &RecordQuery) -> Result<Html<String>, WebError> {
    let repo = &**app.repo();
    let record = app.show(reference)?;
    let view = record.record;
    let merged_from = record.merged_from;
    let misfits = record.misfits;
    let defs = repo
        .fields_in(Some(view.space), view.kind)
        .unwrap_or_else(|_| view.kind.fields().iter().collect());
    // Values of fields the space's schema does not show (retired, or not
    // defined here yet): kept, and shown as such.
    let others: Vec<(&String, &FieldValue)> = view
        .fields
        .iter()
        .filter(|(name, _)| !defs.iter().any(|d| d.name == name.as_str()))
        .collect();
    let title = view.title();
    let mut trail = Trail::parse(q.t.as_deref());
    if trail.is_empty() {
        trail = Trail::default().then(Step::Kind(view.kind));
    }
    let onward = trail.then(Step::Record(view.id));
    let link = |id: RecordId| onward.link(&format!("/r/{id}"));
    let title_of = |id: RecordId| page::title_in(repo, id);
    let related: Vec<(String, RecordView)> = record
        .related
        .into_iter()
        .map(|r| (r.field, r.record))
        .collect();
    let timeline = app.timeline(&view.id.to_string())?.entries;
    let race = record.delete_race;
    let space = match view.space {
        SpaceId::Shared(id) => Some(app.members(&id.to_string())?),
        SpaceId::Private => None,
    };
    // Likely duplicates, from the live search index: a notice, never a refusal.
    let likely = match view.kind {
        Kind::Person | Kind::Company if !view.deleted => match app.read(Request::Likely {
            record: view.id.to_string(),
        }) {
            Ok(Reply::Likely { matches, .. }) => matches,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let id = view.id;
    let mut watch = vec![id.to_string()];
    watch.extend(related.iter().map(|(_, r)| r.id.to_string()));

    let body = html! {
        h1 { (title) " " span class="kind" { (page::singular(view.kind)) } }
        @if q.created.is_some() { p class="flash" role="status" { "Created." } }
        @if q.saved.is_some() { p class="flash" role="status" { "Saved." } }
        @if let Some(merge) = &q.merged {
            div class="flash" role="status" {
                p { "Merged." }
                form method="post" action={ "/merge/" (merge) "/undo" } {
                    input type="hidden" name="record" value=(view.id);
                    button type="submit" class="secondary" { "Undo the merge" }
                }
            }
        }
        @if let Some(from) = &merged_from {
            p class="notice" id="merged-from" { (from.title()) " (" (from.id) ") was merged into this record." }
        }
        @if view.deleted {
            div class="notice" {
                p { "This " (page::singular(view.kind).to_lowercase()) " is deleted: it is kept with its history, but lists and search leave it out." }
                form method="post" action={ "/r/" (id) "/restore" } { button type="submit" { "Restore" } }
            }
        } @else {
            (actions(&view))
        }
        @if !likely.is_empty() {
            div class="notice" id="possible-duplicate" {
                p { strong { "Possible duplicate." } " This " (page::singular(view.kind).to_lowercase()) " looks like:" }
                ul {
                    @for m in &likely {
                        li {
                            a href=(link(m.id)) { (m.title) } " — " (m.reasons.join("; ")) " "
                            a class="button secondary" href={ "/merge?ids=" (id) "," (m.id) } { "Merge…" }
                        }
                    }
                }
                p { a href={ "/duplicates?kind=" (view.kind.as_str()) } { "All possible duplicates" } }
            }
        }
        @if let Some(r) = &race {
            div class="conflict" id="delete-race" {
                p { (r.summary()) }
                div class="toolbar" {
                    form method="post" action={ "/r/" (id) "/restore" } {
                        button type="submit" class="secondary" { (if view.deleted { "Restore" } else { "Keep it" }) }
                    }
                    form method="post" action={ "/r/" (id) "/delete" } {
                        button type="submit" class="secondary" { (if view.deleted { "Keep it deleted" } else { "Delete it" }) }
                    }
                }
            }
        }
        @for (field, values) in &view.conflicts {
            div class="conflict" id={ "conflict-" (field) } {
                p { strong { (page::label(field)) } " was changed at the same time on two devices. Pick the value to keep:" }
                ul {
                    @for v in values {
                        li {
                            form method="post" action={ "/r/" (id) "/pick" } {
                                input type="hidden" name="field" value=(field);
                                input type="hidden" name="value" value=(pick_text(&view, field, v));
                                span class="pill" { (shown(repo, &view, field, v, &link)) } " "
                                button type="submit" class="secondary" aria-label={ "Keep " (pick_text(&view, field, v)) " as " (page::label(field).to_lowercase()) } { "Keep this value" }
                            }
                        }
                    }
                }
            }
        }
        div class="grid2" {
            section aria-labelledby="fields-h" {
                h2 id="fields-h" { "Details" }
                dl class="fields" {
                    @for def in &defs {
                        @if let Some(v) = view.get(def.name) {
                            dt title=(def.help) { (page::field_label(def)) }
                            dd {
                                (page::field_value(def, v, &title_of, &link))
                                @if let Some(why) = misfits.get(def.name) { " " span class="muted" { "(" (why) ")" } }
                            }
                        }
                    }
                    @for (name, v) in &others {
                        dt { (page::label(name)) }
                        dd {
                            (v)
                            @if let Some(why) = misfits.get(name.as_str()) { " " span class="muted" { "(" (why) ")" } }
                        }
                    }
                    dt { "Updated" }
                    dd { (page::local_time(view.updated)) }
                }
            }
            section class="panel" aria-labelledby="space-h" id="space" {
                h2 id="space-h" { "Space" }
                @match &space {
                    Some(s) => {
                        p { "In the shared space " a href="/spaces" { (s.space.name) } ". Its members see it and may change it as their role allows:" }
                        ul {
                            @for m in s.members.iter().filter(|m| m.removed.is_none()) {
                                li {
                                    (if m.user.is_empty() { "a device" } else { m.user.as_str() })
                                    @if !m.org.is_empty() { " (" (m.org) ")" }
                                    " · " (m.role.to_string())
                                }
                            }
                        }
                    }
                    None => p { "Private: only on this device. Nobody else sees it." },
                }
            }
        }
        @if view.kind == Kind::Deal {
            (line_items(&view, &related, &link))
        }
        section aria-labelledby="related-h" id="related" {
            h2 id="related-h" { "Related" }
            @let refs = view.references();
            @let live: Vec<_> = related.iter().filter(|(_, r)| !r.deleted).collect();
            @if refs.is_empty() && live.is_empty() {
                p class="muted" { "Nothing refers to this record, and it refers to nothing." }
            } @else {
                ul {
                    @for (field, target) in &refs {
                        li { (page::label(field)) ": " a href=(link(*target)) { (title_of(*target).unwrap_or_else(|| target.to_string())) } }
                    }
                    @for (field, r) in &live {
                        li {
                            span class="kind" { (page::singular(r.kind)) } " "
                            a href=(link(r.id)) { (r.title()) }
                            " " span class="muted" { "(its " (field) ")" }
                        }
                    }
                }
            }
        }
        section aria-labelledby="timeline-h" id="timeline" {
            h2 id="timeline-h" { "Timeline" }
            ol class="timeline" {
                @for e in &timeline { (entry(repo, &view, e, &link)) }
            }
        }
    };
    let crumbs = trail.crumbs(repo, &title);
    Ok(page::render(
        app,
        Page {
            title,
            nav: Nav::Kind(view.kind),
            crumbs,
            help: html! {
                p { strong { "Details" } " are the record's fields; hover a name for what it holds. Links lead to the records it refers to." }
                p { "When two people change the same field at the same time (for example one of them offline), both values are kept and shown in a yellow box. "
                    strong { "Keep this value" } " settles it for everyone who shares the record." }
                p { "A yellow box also says when someone deleted the record while someone else restored or changed it at the same time. Restoring it, or deleting it again, settles that for everyone." }
                p { strong { "Space" } " says who sees this record: only you, or the members of a shared space, with their organisations." }
                p { "The " strong { "timeline" } " lists every change, newest first: who made it, from which organisation, and what changed; and the calls, emails, meetings, notes and tasks about the record." }
                p { "The breadcrumbs at the top show how you got here; each step is a link back." }
            },
            body,
            watch,
            since: app.read_since.clone(),
        },
    ))
}

/// A deal's lines with what each comes to, their total, and whether the
/// deal's amount is that total or set by hand.
fn line_items(
    deal: &RecordView,
    related: &[(String, RecordView)],
    link: &dyn Fn(RecordId) -> String,
) -> Markup {
    use rapport_model::products::{Total, line_of, total};
    let lines =
        rapport_node::products::lines_among(deal, related.iter().map(|(f, r)| (f.as_str(), r)));
    let sum = total(lines.iter().map(|l| &l.fields));
    let by_hand = deal.get("manual_amount") == Some(&FieldValue::Flag(true));
    let amount = deal
        .text("amount")
        .map(|a| format!("{a} {}", deal.text("currency").unwrap_or_default()));
    html! {
        section aria-labelledby="lines-h" id="line-items" {
            h2 id="lines-h" { "Line items" }
            @if lines.is_empty() {
                p class="muted" { "No lines yet: add the products sold, and the deal's amount becomes their total." }
            } @else {
                table class="list" {
                    thead { tr {
                        th scope="col" { "Line" } th scope="col" { "Quantity" } th scope="col" { "Unit price" }
                        th scope="col" { "Discount" } th scope="col" { "Amount" }
                    } }
                    tbody {
                        @for l in &lines {
                            tr {
                                td { a href=(link(l.id)) { (l.title()) } }
                                td { (l.text("quantity").unwrap_or("1")) }
                                td { (l.text("price").map(|p| format!("{p} {}", l.text("currency").unwrap_or_default())).unwrap_or_else(|| "–".into())) }
                                td { @if let Some(d) = l.get("discount") { (d) " %" } @else { "–" } }
                                td { (line_of(&l.fields).map(|(a, c)| format!("{a} {c}")).unwrap_or_else(|| "–".into())) }
                            }
                        }
                    }
                    @if let Total::One(sum, cur) = &sum {
                        tfoot { tr { th scope="row" colspan="4" { "Total" } td { (sum) " " (cur) } } }
                    }
                }
                p id="amount-source" {
                    @match (&sum, by_hand) {
                        (Total::One(..), false) => { "The deal's amount is the lines' total." }
                        (Total::One(sum, cur), true) => {
                            "The deal's amount is set by hand (" (amount.clone().unwrap_or_default()) "); the lines come to " (sum) " " (cur) ". "
                        }
                        (Total::Mixed(curs), _) => { "The lines are in several currencies (" (curs.join(", ")) "): they have no total. Give them the deal's currency." }
                        (Total::Nothing, _) => { "No line has a price yet." }
                        (Total::TooLarge, _) => { "The lines come to more than an amount holds (20 digits): they have no total." }
                    }
                }
                @if by_hand {
                    form method="post" action={ "/r/" (deal.id) "/pick" } {
                        input type="hidden" name="field" value="manual_amount";
                        input type="hidden" name="value" value="no";
                        button type="submit" class="secondary" { "Use the lines' total" }
                    }
                }
            }
            @if !deal.deleted {
                p { a class="button secondary" href={ "/new/line_item?deal=" (deal.id) } { "Add a line" } }
            }
        }
    }
}

fn actions(view: &RecordView) -> Markup {
    let id = view.id;
    let is_open_task = view.kind == Kind::Activity
        && view.text("type") == Some("task")
        && !matches!(view.get("done"), Some(FieldValue::Flag(true)));
    html! {
        div class="toolbar" {
            a class="button" href={ "/r/" (id) "/edit" } { "Edit" }
            @if is_open_task {
                form method="post" action={ "/r/" (id) "/done" } { button type="submit" { "Mark done" } }
            }
            @if matches!(view.kind, Kind::Company | Kind::Person | Kind::Deal | Kind::Ticket) {
                a class="button secondary" href={ "/new/activity?about=" (id) } { "Log activity" }
                a class="button secondary" href={ "/new/activity?type=task&about=" (id) } { "New task" }
            }
            @if view.kind == Kind::Person {
                a class="button secondary" href={ "/r/" (id) "/privacy" } { "Their data…" }
            }
            @if view.kind == Kind::Campaign {
                (super::privacy::enroll_form(id))
            }
            @if matches!(view.space, rapport_model::SpaceId::Shared(_)) && !view.deleted {
                (super::privacy::erase_field_form(view))
            }
            @if view.kind == Kind::Company {
                a class="button secondary" href={ "/new/deal?company=" (id) } { "New deal" }
                a class="button secondary" href={ "/new/person?company=" (id) } { "New person" }
                a class="button secondary" href={ "/new/ticket?company=" (id) } { "New ticket" }
            }
            details {
                summary class="button secondary" { "Delete…" }
                form method="post" action={ "/r/" (id) "/delete" } {
                    p { "It leaves lists and search, keeps its history, and can be restored." }
                    button type="submit" class="danger" { "Delete " (view.title()) }
                }
            }
        }
    }
}

/// A value as the form would take it back: references by their titles.
fn pick_text(view: &RecordView, field: &str, v: &FieldValue) -> String {
    let is_ref = view
        .kind
        .field(field)
        .is_some_and(|d| d.ty.ref_kinds().is_some());
    match v {
        FieldValue::Text(s) if is_ref => s.clone(),
        FieldValue::Flag(b) => if *b { "yes" } else { "no" }.into(),
        _ => v.to_string(),
    }
}

fn shown(
    repo: &Repo,
    view: &RecordView,
    field: &str,
    v: &FieldValue,
    link: &dyn Fn(RecordId) -> String,
) -> Markup {
    match view.kind.field(field) {
        Some(def) => page::field_value(def, v, &|id| page::title_in(repo, id), link),
        None => html! { (v) },
    }
}

fn entry(repo: &Repo, view: &RecordView, e: &Entry, link: &dyn Fn(RecordId) -> String) -> Markup {
    let when = |t: i64| {
        let iso = jiff::Timestamp::from_second(t)
            .map(|t| t.to_string())
            .unwrap_or_default();
        html! { time datetime=(iso) { (page::local_time(t)) } }
    };
    match e {
        Entry::Change {
            time,
            author,
            action,
            fields,
            verified,
            race,
            ..
        } => html! {
            li {
                span class="who" { (author) } " " (action) " · " (when(*time))
                @if !verified { " " strong class="error" { "signature does not verify" } }
                @if let Some(race) = race { " " strong class="race" { "(" (race) ")" } }
                @if !fields.is_empty() {
                    ul {
                        @for f in fields {
                            li {
                                (page::label(&f.field)) ": "
                                @match &f.before { Some(b) => (shown(repo, view, &f.field, b, link)), None => "—" }
                                " → "
                                @match &f.after { Some(a) => (shown(repo, view, &f.field, a, link)), None => "—" }
                            }
                        }
                    }
                }
            }
        },
        Entry::Activity {
            time,
            id,
            activity,
            subject,
            done,
        } => html! {
            li {
                span class="kind" { (activity) } " "
                a href=(link(*id)) { (if subject.is_empty() { activity.as_str() } else { subject.as_str() }) }
                " · " (when(*time))
                @match done { Some(true) => " · done", Some(false) => " · open", None => "" }
            }
        },
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct PickForm {
    field: String,
    value: String,
}

/// `POST /r/{id}/pick`: keeps one of the values written at the same time,
/// through the same edit (and validation) as `rapport edit --set`.
pub(crate) async fn pick(
    State(app): State<App>,
    Path(id): Path<String>,
    Form(f): Form<PickForm>,
) -> Result<Redirect, WebError> {
    app.blocking(move |app| {
        let v = app.write(Request::Edit {
            record: id,
            set: vec![(f.field, f.value)],
            unset: Vec::new(),
        })?;
        Ok(Redirect::to(&format!("/r/{}?saved=1", v.id)))
    })
    .await
}

pub(crate) async fn complete(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Redirect, WebError> {
    app.blocking(move |app| {
        let v = app.write(Request::CompleteTask { record: id })?;
        Ok(Redirect::to(&format!("/r/{}?saved=1", v.id)))
    })
    .await
}

pub(crate) async fn delete(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Redirect, WebError> {
    app.blocking(move |app| {
        let v = app.write(Request::Delete { record: id })?;
        Ok(Redirect::to(&format!("/k/{}", v.kind.as_str())))
    })
    .await
}

pub(crate) async fn restore(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Redirect, WebError> {
    app.blocking(move |app| {
        let v = app.write(Request::Restore { record: id })?;
        Ok(Redirect::to(&format!("/r/{}?saved=1", v.id)))
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::testing::TestUi;
    use rapport_model::{Kind, Member, RecordView, Role, SpaceId};
    use rapport_node::{OpenMode, Repo};

    async fn resolve(t: &TestUi, r: &str) -> RecordView {
        let repo = t.repo().clone();
        let r = r.to_string();
        tokio::task::spawn_blocking(move || repo.resolve(&r))
            .await
            .expect("task")
            .expect("record")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_company_page_shows_fields_related_records_and_its_timeline() {
        let t = TestUi::start().await;
        let acme = resolve(&t, "Acme Corporation").await;
        let repo = t.repo().clone();
        let id = acme.id.to_string();
        tokio::task::spawn_blocking(move || {
            repo.edit(&id, &[("industry".into(), "Aerospace".into())], &[])
        })
        .await
        .expect("task")
        .expect("edit");
        let page = t.get(&format!("/r/{}", acme.id)).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("acme.example"), "domain shown");
        assert!(
            page.body.contains(">Ann Baker</a>"),
            "related person linked"
        );
        let timeline = page.body.split("id=\"timeline\"").nth(1).expect("timeline");
        assert!(
            timeline.contains("Dana Sales (Acme Partners)"),
            "{timeline}"
        );
        assert!(timeline.contains("Manufacturing"), "old value");
        assert!(timeline.contains("Aerospace"), "new value");
        assert!(page.body.contains("Private: only on this device"));
        // Reached from the companies list, the crumbs say so.
        let crumbs = t.get(&format!("/r/{}?t=k-company", acme.id)).await;
        assert!(
            crumbs.body.contains("<a href=\"/k/company\">Companies</a>"),
            "{}",
            crumbs.body
        );

        let missing = t.get("/r/zzzzzzzz").await;
        assert_eq!(missing.status, 404);
        assert!(
            missing.body.contains("no record matches"),
            "{}",
            missing.body
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deal_page_lists_its_lines_and_where_its_amount_comes_from() {
        let t = TestUi::start().await;
        let deal = resolve(&t, "Acme plant rollout").await;
        let page = t.get(&format!("/r/{}", deal.id)).await;
        let lines = page
            .body
            .split("id=\"line-items\"")
            .nth(1)
            .expect("a line items section");
        assert!(lines.contains("Plant licence"), "{lines}");
        assert!(lines.contains("40000.00 EUR"), "40 × 1000: {lines}");
        assert!(lines.contains("48000.00 EUR"), "the total: {lines}");
        assert!(lines.contains("the lines' total"), "{lines}");
        assert!(lines.contains(&format!("/new/line_item?deal={}", deal.id)));

        // Typed by hand: said so, with the way back.
        let repo = t.repo().clone();
        let id = deal.id.to_string();
        tokio::task::spawn_blocking(move || {
            repo.edit(&id, &[("amount".into(), "45000".into())], &[])
        })
        .await
        .expect("task")
        .expect("edit");
        let page = t.get(&format!("/r/{}", deal.id)).await;
        assert!(
            page.body.contains("set by hand (45000.00 EUR)"),
            "{}",
            page.body
        );
        let back = t
            .post(
                &format!("/r/{}/pick", deal.id),
                &[("field", "manual_amount"), ("value", "no")],
            )
            .await;
        assert_eq!(back.status, 303, "{}", back.body);
        let deal = resolve(&t, "Acme plant rollout").await;
        assert_eq!(deal.text("amount"), Some("48000.00"));

        let form = t.get(&format!("/new/line_item?deal={}", deal.id)).await;
        assert_eq!(form.status, 200);
        assert!(form.body.contains("Acme plant rollout"), "{}", form.body);
    }

    /// A second node, "Bob Field (Northwind)", writer in a space of the
    /// UI's node holding company "Joint Co", synced.
    fn second_node(a: &Repo) -> (tempfile::TempDir, Repo, SpaceId, RecordView) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let b = Repo::open(tmp.path(), OpenMode::Create).expect("open b");
        let shared = a.create_space("Joint").expect("space");
        a.add_member(
            shared.id,
            Member {
                device: b.device_id().to_string(),
                role: Role::Writer,
                user: "Bob Field".into(),
                org: "Northwind".into(),
                added_by: String::new(),
                since: 0,
                addrs: Vec::new(),
            },
        )
        .expect("add b");
        let space = SpaceId::Shared(shared.id);
        let joint = a
            .create(Kind::Company, space, &[("name".into(), "Joint Co".into())])
            .expect("company");
        sync(&b, a, space);
        (tmp, b, space, joint)
    }

    fn sync(a: &Repo, b: &Repo, space: SpaceId) {
        let mut ra = a.replica(b.device_id());
        let mut rb = b.replica(a.device_id());
        rapport_sync::run_in_memory(space, &mut ra, &mut rb).expect("session");
    }

    fn set(field: &str, value: &str) -> Vec<(String, String)> {
        vec![(field.to_string(), value.to_string())]
    }

    /// Two nodes write the same field while apart; after they sync the
    /// page shows both values, and keeping the one that already wins
    /// settles it on both nodes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_real_conflict_shows_and_keeping_the_winning_value_settles_it_on_both_nodes() {
        let t = TestUi::start().await;
        let a = t.repo().clone();
        let (_tmp, b, space, joint) = tokio::task::spawn_blocking(move || {
            let (tmp, b, space, joint) = second_node(&a);
            a.edit(&joint.id.to_string(), &set("industry", "Steel"), &[])
                .expect("a edits");
            b.edit(&joint.id.to_string(), &set("industry", "Mining"), &[])
                .expect("b edits");
            sync(&a, &b, space);
            (tmp, b, space, joint)
        })
        .await
        .expect("task");
        let page = t.get(&format!("/r/{}", joint.id)).await;
        let conflict = page
            .body
            .split("id=\"conflict-industry\"")
            .nth(1)
            .expect("conflict box");
        assert!(
            conflict.contains("Steel") && conflict.contains("Mining"),
            "{conflict}"
        );
        let torn = resolve(&t, &joint.id.to_string()).await;
        let winner = torn.text("industry").expect("a value").to_string();
        let kept = t
            .post(
                &format!("/r/{}/pick", joint.id),
                &[("field", "industry"), ("value", &winner)],
            )
            .await;
        assert_eq!(kept.status, 303);
        let page = t.get(&format!("/r/{}", joint.id)).await;
        assert!(!page.body.contains("conflict-industry"), "settled on a");
        let a = t.repo().clone();
        let on_b = tokio::task::spawn_blocking(move || {
            sync(&b, &a, space);
            b.resolve(&joint.id.to_string()).expect("on b")
        })
        .await
        .expect("task");
        assert_eq!(on_b.text("industry"), Some(winner.as_str()));
        assert!(
            on_b.conflicts.is_empty(),
            "settled on b: {:?}",
            on_b.conflicts
        );
    }

    /// One node deletes the record while the other changes it; the page
    /// says so, its timeline marks both changes, and deleting it again
    /// settles it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delete_racing_an_edit_is_shown_until_settled() {
        let t = TestUi::start().await;
        let a = t.repo().clone();
        let (_tmp, _b, joint) = tokio::task::spawn_blocking(move || {
            let (tmp, b, space, joint) = second_node(&a);
            a.delete(&joint.id.to_string()).expect("a deletes");
            b.edit(&joint.id.to_string(), &set("industry", "Mining"), &[])
                .expect("b edits");
            sync(&a, &b, space);
            (tmp, b, joint)
        })
        .await
        .expect("task");
        let page = t.get(&format!("/r/{}", joint.id)).await;
        let race = page
            .body
            .split("id=\"delete-race\"")
            .nth(1)
            .expect("the race is shown");
        assert!(
            race.contains("Dana Sales (Acme Partners) deleted this record while Bob Field (Northwind) changed industry at the same time"),
            "{race}"
        );
        assert!(race.contains("Keep it deleted"), "{race}");
        let timeline = page.body.split("id=\"timeline\"").nth(1).expect("timeline");
        assert!(
            timeline.contains("made at the same time as a delete by Dana Sales"),
            "{timeline}"
        );
        assert!(
            timeline.contains("made at the same time as edits by Bob Field"),
            "{timeline}"
        );
        let kept = t.post(&format!("/r/{}/delete", joint.id), &[]).await;
        assert_eq!(kept.status, 303);
        let page = t.get(&format!("/r/{}", joint.id)).await;
        assert!(page.body.contains("is deleted"));
        assert!(!page.body.contains("delete-race"), "settled");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pick_delete_restore_and_done_act_on_the_record() {
        let t = TestUi::start().await;
        let deal = resolve(&t, "Acme plant rollout").await;
        let picked = t
            .post(
                &format!("/r/{}/pick", deal.id),
                &[("field", "stage"), ("value", "won")],
            )
            .await;
        assert_eq!(picked.status, 303);
        assert_eq!(
            resolve(&t, "Acme plant rollout").await.text("stage"),
            Some("won")
        );
        let bad = t
            .post(
                &format!("/r/{}/pick", deal.id),
                &[("field", "stage"), ("value", "maybe")],
            )
            .await;
        assert_eq!(bad.status, 422);
        assert!(bad.body.contains("maybe"), "{}", bad.body);

        assert_eq!(
            t.post(&format!("/r/{}/delete", deal.id), &[]).await.status,
            303
        );
        assert!(resolve(&t, &deal.id.to_string()).await.deleted);
        let page = t.get(&format!("/r/{}", deal.id)).await;
        assert!(page.body.contains("is deleted"));
        assert_eq!(
            t.post(&format!("/r/{}/restore", deal.id), &[]).await.status,
            303
        );
        assert!(!resolve(&t, &deal.id.to_string()).await.deleted);

        let task = resolve(&t, "Send revised quote to Acme").await;
        let page = t.get(&format!("/r/{}", task.id)).await;
        assert!(page.body.contains("Mark done"), "an open task offers it");
        assert_eq!(
            t.post(&format!("/r/{}/done", task.id), &[]).await.status,
            303
        );
        let done = resolve(&t, &task.id.to_string()).await;
        assert_eq!(
            done.get("done"),
            Some(&rapport_model::FieldValue::Flag(true))
        );
    }
}
