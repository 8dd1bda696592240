//! `GET /r/{id}/privacy`: what this node holds about a person, file by
//! file, each downloadable (`GET /r/{id}/privacy/{file}`): the answer to a
//! subject access or portability request.

use axum::extract::{Path, State};
use axum::response::{Html, Redirect, Response};
use maud::{Markup, html};
use rapport_model::{FieldValue, Kind, RecordId};
use rapport_node::erasure::ErasureStatus;
use rapport_node::ops::{Reply, Request};
use rapport_node::privacy::PersonExport;
use serde::Deserialize;

use crate::page::{self, Nav, Page};
use crate::trail::Crumb;
use crate::{App, WebError};

fn export(app: &App, id: &str) -> Result<PersonExport, WebError> {
    match app.read(Request::PrivacyExport {
        person: id.to_string(),
    })? {
        Reply::PrivacyExport(e) => Ok(e),
        _ => Err(WebError::Internal(
            "the node answered something else".into(),
        )),
    }
}

pub(crate) async fn page(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Html<String>, WebError> {
    app.blocking(move |app| {
        let e = export(app, &id)?;
        let person = app.show(&id)?.record;
        let consents = app.repo().consents_of(person.id)?;
        let body = html! {
            h1 { "What this device holds about " (person.title()) }
            p { "For a request to see or take their data (GDPR articles 15 and 20). Each file is what "
                code { "rapport privacy export" } " writes; other members of the spaces this record is shared in may hold the same." }
            table class="list" {
                thead { tr { th scope="col" { "File" } th scope="col" { "What it holds" } } }
                tbody {
                    @for f in &e.files {
                        tr {
                            td { a href={ "/r/" (e.person) "/privacy/" (f.name) } download { (f.name) } }
                            td { (f.about) }
                        }
                    }
                }
            }
            h2 { "Consent and objections" }
            @if consents.is_empty() {
                p { "No consent recorded: campaigns by e-mail, phone, post, events, social or ads leave them out." }
            } @else {
                table class="list" {
                    thead { tr { th scope="col" { "Purpose" } th scope="col" { "Status" } th scope="col" { "Date" } th scope="col" { "Source" } } }
                    tbody {
                        @for c in &consents {
                            tr {
                                td { a href={ "/r/" (c.id) } { (c.text("purpose").unwrap_or("-")) } }
                                td { (c.text("status").unwrap_or("-")) }
                                td { (c.text("date").unwrap_or("-")) }
                                td { (c.text("source").unwrap_or("-")) }
                            }
                        }
                    }
                }
            }
            p { a class="button secondary" href={ "/new/consent?person=" (person.id) } { "Record consent or objection…" } }
            h2 { "Erase" }
            (erase_form(person.id))
            p { a href="/privacy" { "Every erasure and objection" } }
        };
        Ok(page::render(
            app,
            Page {
                title: format!("Data of {}", person.title()),
                nav: Nav::Kind(person.kind),
                crumbs: vec![
                    Crumb {
                        label: person.title(),
                        href: Some(format!("/r/{}", person.id)),
                    },
                    Crumb {
                        label: "Data protection".into(),
                        href: None,
                    },
                ],
                help: html! {
                    p { "Download each file and send them to the person who asked. The README says what each file is." }
                },
                body,
                watch: vec![person.id.to_string()],
                since: app.read_since.clone(),
            },
        ))
    })
    .await
}

/// The form that erases one field of a record of a shared space, which
/// stays: for a value that must go from every node and every change.
pub(crate) fn erase_field_form(view: &rapport_model::RecordView) -> Markup {
    let title_field = view.kind.title_field();
    html! {
        details {
            summary class="button secondary" { "Erase a field…" }
            form method="post" action={ "/r/" (view.id) "/erase" } {
                p { "The value goes from this record's whole history, on every member's and relay's node; the other fields and their history stay. It cannot be undone." }
                label { "Field: "
                    select name="field" required {
                        @for name in view.fields.keys().filter(|n| n.as_str() != title_field) {
                            option value=(name) { (name) }
                        }
                    }
                }
                label { "Why: " input type="text" name="reason" required; }
                button type="submit" class="danger" { "Erase the field" }
            }
        }
    }
}

fn erase_form(id: RecordId) -> Markup {
    html! {
        details {
            summary class="button secondary" { "Erase this person…" }
            form method="post" action={ "/r/" (id) "/erase" } {
                p { "Their record, their consent records and every change of them go from this node and, in a shared space, from every member's and relay's node once they hear of it. It cannot be undone. Deals and tickets that name them stay, showing \"erased person\"." }
                label { "Why (kept with the record ids, never the data): "
                    input type="text" name="reason" required placeholder="request of 2026-11-30, ticket 4411";
                }
                label { input type="checkbox" name="with_activities" value="1"; " Erase the activities about them too" }
                button type="submit" class="danger" { "Erase" }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct EraseForm {
    reason: String,
    #[serde(default)]
    with_activities: Option<String>,
    /// Only this field of a record that stays.
    #[serde(default)]
    field: Option<String>,
}

/// `POST /r/{id}/erase`.
pub(crate) async fn erase(
    State(app): State<App>,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<EraseForm>,
) -> Result<Redirect, WebError> {
    app.blocking(move |app| {
        let field = f.field.filter(|x| !x.trim().is_empty());
        let whole = field.is_none();
        match app.read(Request::PrivacyErase {
            person: id.clone(),
            with_activities: f.with_activities.is_some(),
            field,
            reason: f.reason,
        })? {
            Reply::Erased(r) if whole => {
                Ok(Redirect::to(&format!("/privacy?erased={}", r.erasure)))
            }
            Reply::Erased(_) => Ok(Redirect::to(&format!("/r/{id}?saved=1"))),
            _ => Err(WebError::Internal(
                "the node answered something else".into(),
            )),
        }
    })
    .await
}

fn status_rows(all: &[ErasureStatus]) -> Markup {
    html! {
        @for s in all {
            @let done = s.nodes.iter().filter(|n| n.confirmed.is_some()).count();
            section class="panel" id={ "erasure-" (s.erasure) } {
                h3 { "Erasure " (s.erasure) " in " (s.space) }
                p { (s.ids.len()) " record(s), by " (s.by) " at " (page::local_time(s.at)) ": " (s.reason) }
                p { "Confirmed by " (done) " of " (s.nodes.len()) " node(s)." }
                ul {
                    @for n in &s.nodes {
                        li {
                            @match n.confirmed {
                                Some(at) => { "✓ " (n.label) " (" (n.role) ") at " (page::local_time(at)) },
                                None => { "· " (n.label) " (" (n.role) ") not yet" },
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /privacy`: every erasure with who confirmed it, and who withdrew
/// consent or objected.
pub(crate) async fn overview(State(app): State<App>) -> Result<Html<String>, WebError> {
    app.blocking(move |app| {
        let erasures = match app.read(Request::Erasures { erasure: None })? {
            Reply::Erasures { erasures } => erasures,
            _ => return Err(WebError::Internal("the node answered something else".into())),
        };
        let objections = match app.read(Request::Objections)? {
            Reply::Objections { objections } => objections,
            _ => return Err(WebError::Internal("the node answered something else".into())),
        };
        let runs = match app.read(Request::Retention {
            name: None,
            apply: false,
            reason: None,
        })? {
            Reply::Retention { runs } => runs,
            _ => return Err(WebError::Internal("the node answered something else".into())),
        };
        let body = html! {
            h1 { "Data protection" }
            h2 { "Objections and withdrawn consent" }
            @if objections.is_empty() {
                p { "Nobody has withdrawn consent or objected." }
            } @else {
                table class="list" {
                    thead { tr { th scope="col" { "Person" } th scope="col" { "Purpose" } th scope="col" { "Status" } th scope="col" { "Since" } th scope="col" { "Still in campaigns" } } }
                    tbody {
                        @for o in &objections {
                            tr {
                                td { a href={ "/r/" (o.person) "/privacy" } { (o.name) } }
                                td { (o.purpose) }
                                td { (o.standing.status) }
                                td { (o.standing.date) }
                                td {
                                    @for (id, title) in &o.campaigns {
                                        a href={ "/r/" (id) } { (title) } " "
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Retention" }
            @if runs.is_empty() {
                p { "No retention rules. " code { "rapport privacy retention add NAME --kind person --where tags=lead --inactive-months 24" } " adds one." }
            }
            @for run in &runs {
                h3 { (run.rule.name) ": " (run.rule.kind) " with no activity for " (run.rule.inactive_months) " months" }
                @if run.candidates.is_empty() {
                    p { "Nothing to erase now." }
                } @else {
                    p { "Would erase (a dry run; " code { "rapport privacy retention run " (run.rule.name) " --apply --reason …" } " erases them):" }
                    ul {
                        @for c in &run.candidates {
                            li { a href={ "/r/" (c.id) } { (c.title) } " · last active " (page::local_time(c.last_active)) }
                        }
                    }
                }
            }
            h2 { "Erasures" }
            @if erasures.is_empty() {
                p { "No erasures." }
            } @else {
                (status_rows(&erasures))
            }
        };
        Ok(page::render(
            app,
            Page {
                title: "Data protection".into(),
                nav: Nav::Other,
                crumbs: vec![Crumb {
                    label: "Data protection".into(),
                    href: None,
                }],
                help: html! {
                    p { "Erasures reach every member's and relay's node; each confirms with a signed receipt. A node that has not confirmed yet has not heard of it: it applies it when it next syncs." }
                    p { "Bytes leave a node's disk at " code { "rapport privacy compact" } " there." }
                },
                body,
                watch: Vec::new(),
                since: app.read_since.clone(),
            },
        ))
    })
    .await
}

#[derive(Debug, Deserialize)]
pub(crate) struct EnrollForm {
    people: String,
    #[serde(default)]
    skip: Option<String>,
}

/// The campaign page's form to add people to its members.
pub(crate) fn enroll_form(id: RecordId) -> Markup {
    html! {
        details {
            summary class="button secondary" { "Enroll people…" }
            form method="post" action={ "/r/" (id) "/enroll" } {
                label { "People (names or e-mails, comma-separated): "
                    input type="text" name="people" required;
                }
                label { input type="checkbox" name="skip" value="1"; " Leave out those without consent, instead of refusing" }
                button type="submit" { "Enroll" }
            }
        }
    }
}

/// `POST /r/{id}/enroll`: people added to a campaign, those without
/// consent refused or left out and listed.
pub(crate) async fn enroll(
    State(app): State<App>,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<EnrollForm>,
) -> Result<Html<String>, WebError> {
    app.blocking(move |app| {
        let people = f
            .people
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        let e = match app.read(Request::Enroll {
            campaign: id,
            people,
            skip_without_consent: f.skip.is_some(),
        })? {
            Reply::Enrolled(e) => e,
            _ => return Err(WebError::Internal("the node answered something else".into())),
        };
        let members = e
            .campaign
            .get("members")
            .map(FieldValue::as_list)
            .map_or(0, <[String]>::len);
        let body = html! {
            h1 { "Enrolled in " (e.campaign.title()) }
            p { (e.added.len()) " added; the campaign has " (members) " member(s)." }
            @if !e.skipped.is_empty() {
                h2 { "Left out for want of consent" }
                ul { @for (pid, name, why) in &e.skipped { li { a href={ "/r/" (pid) "/privacy" } { (name) } ": " (why) } } }
            }
            @if !e.already.is_empty() {
                p { "Already members: " @for (_, n) in &e.already { (n) " " } }
            }
            p { a class="button" href={ "/r/" (e.campaign.id) } { "Back to the campaign" } }
        };
        Ok(page::render(
            app,
            Page {
                title: format!("Enrolled in {}", e.campaign.title()),
                nav: Nav::Kind(Kind::Campaign),
                crumbs: vec![Crumb {
                    label: e.campaign.title(),
                    href: Some(format!("/r/{}", e.campaign.id)),
                }],
                help: html! { p { "A campaign takes only people who consented to what its channel needs." } },
                body,
                watch: vec![e.campaign.id.to_string()],
                since: app.read_since.clone(),
            },
        ))
    })
    .await
}

/// `GET /r/{id}/privacy/{file}`: one file of the export.
pub(crate) async fn file(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, WebError> {
    app.blocking(move |app| {
        let e = export(app, &id)?;
        let f = e
            .files
            .into_iter()
            .find(|f| f.name == name)
            .ok_or_else(|| WebError::NotFound(format!("the export has no file {name}")))?;
        let kind = if name.ends_with(".json") {
            "application/json"
        } else if name.ends_with(".vcf") {
            "text/vcard; charset=utf-8"
        } else {
            "text/markdown; charset=utf-8"
        };
        Ok(super::import::file_response(
            f.text.into_bytes(),
            kind,
            &f.name,
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::testing::TestUi;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_persons_data_is_listed_and_downloaded_file_by_file() {
        let t = TestUi::start().await;
        let repo = t.repo().clone();
        let ann = tokio::task::spawn_blocking(move || repo.resolve("Ann Baker"))
            .await
            .expect("task")
            .expect("Ann");
        let record = t.get(&format!("/r/{}", ann.id)).await;
        assert!(
            record.body.contains(&format!("/r/{}/privacy", ann.id)),
            "the person's page links to it"
        );
        let page = t.get(&format!("/r/{}/privacy", ann.id)).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("related.json"), "{}", page.body);
        let related = t.get(&format!("/r/{}/privacy/related.json", ann.id)).await;
        assert_eq!(related.status, 200);
        assert!(
            related.body.contains("Acme plant rollout"),
            "{}",
            related.body
        );
        let card = t.get(&format!("/r/{}/privacy/person.vcf", ann.id)).await;
        assert!(card.body.contains("FN:Ann Baker"), "{}", card.body);
        assert_eq!(
            t.get(&format!("/r/{}/privacy/secrets.txt", ann.id))
                .await
                .status,
            404
        );
        let acme = t.get("/r/Acme%20Corporation/privacy").await;
        assert_ne!(acme.status, 200, "a company is no person");
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_person_is_erased_from_their_page_and_the_erasure_is_listed() {
        let t = TestUi::start().await;
        let repo = t.repo().clone();
        let nora = tokio::task::spawn_blocking(move || repo.resolve("Nora Lind"))
            .await
            .expect("task")
            .expect("Nora");
        let page = t.get(&format!("/r/{}/privacy", nora.id)).await;
        assert!(
            page.body.contains("Consent and objections"),
            "{}",
            page.body
        );
        assert!(
            page.body.contains("events") && page.body.contains("call"),
            "{}",
            page.body
        );
        assert!(page.body.contains(&format!("/r/{}/erase", nora.id)));
        let done = t
            .post(
                &format!("/r/{}/erase", nora.id),
                &[
                    ("reason", "request of 2026-11-30"),
                    ("with_activities", "1"),
                ],
            )
            .await;
        assert_eq!(done.status, 303, "{}", done.body);
        let to = done.header("location").expect("location").to_string();
        assert!(to.starts_with("/privacy?erased=local."), "{to}");
        let overview = t.get(&to).await;
        assert!(
            overview.body.contains("request of 2026-11-30"),
            "{}",
            overview.body
        );
        assert_ne!(
            t.get(&format!("/r/{}", nora.id)).await.status,
            200,
            "Nora is gone"
        );
        // The webinar that listed her now shows an erased person.
        let repo = t.repo().clone();
        let webinar = tokio::task::spawn_blocking(move || repo.resolve("Spring partner webinar"))
            .await
            .expect("task")
            .expect("webinar");
        let campaign = t.get(&format!("/r/{}", webinar.id)).await;
        assert!(campaign.body.contains("erased person"), "{}", campaign.body);
        assert!(!campaign.body.contains("Nora Lind"), "{}", campaign.body);
        // The demo's objection is listed.
        assert!(overview.body.contains("Alice Wong") && overview.body.contains("profiling"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_campaign_enrolls_only_people_who_consented() {
        let t = TestUi::start().await;
        let repo = t.repo().clone();
        let webinar = tokio::task::spawn_blocking(move || repo.resolve("Spring partner webinar"))
            .await
            .expect("task")
            .expect("webinar");
        let page = t.get(&format!("/r/{}", webinar.id)).await;
        assert!(page.body.contains(&format!("/r/{}/enroll", webinar.id)));
        // Carlos Diaz gave no consent to events: refused, then left out.
        let refused = t
            .post(
                &format!("/r/{}/enroll", webinar.id),
                &[("people", "Carlos Diaz")],
            )
            .await;
        assert_ne!(refused.status, 200);
        assert!(
            refused.body.contains("consent to events"),
            "{}",
            refused.body
        );
        let skipped = t
            .post(
                &format!("/r/{}/enroll", webinar.id),
                &[("people", "Carlos Diaz, Ann Baker"), ("skip", "1")],
            )
            .await;
        assert_eq!(skipped.status, 200, "{}", skipped.body);
        assert!(
            skipped.body.contains("Left out for want of consent"),
            "{}",
            skipped.body
        );
        assert!(
            skipped.body.contains("no consent recorded"),
            "{}",
            skipped.body
        );
    }
}
