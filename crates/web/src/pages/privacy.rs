//! `GET /r/{id}/privacy`: what this node holds about a person, file by
//! file, each downloadable (`GET /r/{id}/privacy/{file}`): the answer to a
//! subject access or portability request.

use axum::extract::{Path, State};
use axum::response::{Html, Response};
use maud::html;
use rapport_node::ops::{Reply, Request};
use rapport_node::privacy::PersonExport;

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
}
