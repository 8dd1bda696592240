//! `GET /duplicates`: people and companies that are likely the same
//! customer, grouped, with the score and the reasons, as `rapport
//! duplicates` lists them.

use axum::extract::{Query, State};
use axum::response::Html;
use maud::html;
use rapport_model::Kind;
use rapport_node::ops::{Reply, Request};
use serde::Deserialize;

use crate::page::{self, Nav, Page};
use crate::trail::Crumb;
use crate::{App, WebError};

#[derive(Debug, Deserialize)]
pub(crate) struct DuplicatesQuery {
    kind: Option<String>,
}

pub(crate) async fn page(
    State(app): State<App>,
    Query(q): Query<DuplicatesQuery>,
) -> Result<Html<String>, WebError> {
    app.blocking(move |app| render(app, q.kind.as_deref()))
        .await
}

fn render(app: &App, kind: Option<&str>) -> Result<Html<String>, WebError> {
    let kind = match kind.filter(|k| !k.is_empty()) {
        Some(k) => Some(Kind::known(k).map_err(|e| WebError::BadRequest(e.to_string()))?),
        None => None,
    };
    let clusters = match app.read(Request::Duplicates { kind })? {
        Reply::Duplicates { clusters } => clusters,
        _ => Vec::new(),
    };
    let body = html! {
        h1 { "Possible duplicates" }
        nav class="toolbar" aria-label="Which records" {
            a class="button secondary" href="/duplicates" aria-current=[kind.is_none().then_some("page")] { "People and companies" }
            a class="button secondary" href="/duplicates?kind=person" aria-current=[(kind == Some(Kind::Person)).then_some("page")] { "People" }
            a class="button secondary" href="/duplicates?kind=company" aria-current=[(kind == Some(Kind::Company)).then_some("page")] { "Companies" }
        }
        @if clusters.is_empty() {
            p { "No likely duplicates." }
        } @else {
            p { (clusters.len()) " groups, the surest first. The score goes to 100 (the same e-mail address)." }
            table class="list" {
                thead { tr { th scope="col" { "Score" } th scope="col" { "Records" } th scope="col" { "Why" } th scope="col" { span class="visually-hidden" { "Merge" } } } }
                tbody {
                    @for c in &clusters {
                        tr {
                            td { (c.score) }
                            td {
                                span class="kind" { (page::singular(c.kind)) } " "
                                @for (i, m) in c.records.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    a href={ "/r/" (m.id) } { (m.title) }
                                }
                            }
                            td { (c.reasons.join("; ")) }
                            td {
                                a class="button secondary" href={ "/merge?ids=" (c.records.iter().map(|m| m.id.to_string()).collect::<Vec<_>>().join(",")) } { "Merge…" }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page::render(
        app,
        Page {
            title: "Possible duplicates".into(),
            nav: Nav::Import,
            crumbs: vec![
                Crumb {
                    label: "My work".into(),
                    href: Some("/".into()),
                },
                Crumb {
                    label: "Possible duplicates".into(),
                    href: None,
                },
            ],
            help: html! {
                p { "People and companies that are likely the same customer: the same e-mail address, the same phone number (read with your region, " code { "rapport init --region DE" } "), the same web domain, the same company name once GmbH, Inc. and the like are left out, or alike names at the same company." }
                p { "Nothing is merged or refused on its own: open the records to compare them, or merge a group side by side, choosing the values to keep." }
            },
            body,
            watch: vec!["person".into(), "company".into()],
            since: app.read_since.clone(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use crate::testing::TestUi;
    use rapport_model::{Kind, SpaceId};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_likely_duplicate_is_noticed_on_its_page_and_listed() {
        let t = TestUi::start().await;
        let repo = t.repo().clone();
        let ann = tokio::task::spawn_blocking(move || {
            let ann = repo.resolve("Ann Baker").expect("Ann");
            let email = ann.get("emails").expect("emails").as_list()[0].to_uppercase();
            repo.create(
                Kind::Person,
                SpaceId::Private,
                &[("name".into(), "A. Baker".into()), ("emails".into(), email)],
            )
            .expect("create")
        })
        .await
        .expect("task");
        // The live index hears of the new record in the background.
        let mut page = t.get(&format!("/r/{}", ann.id)).await;
        for _ in 0..100 {
            if page.body.contains("Possible duplicate") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            page = t.get(&format!("/r/{}", ann.id)).await;
        }
        assert!(page.body.contains("Possible duplicate"), "{}", page.body);
        assert!(page.body.contains(">Ann Baker</a>"), "{}", page.body);
        let list = t.get("/duplicates?kind=person").await;
        assert_eq!(list.status, 200);
        assert!(
            list.body.contains("A. Baker") && list.body.contains("same e-mail"),
            "{}",
            list.body
        );
        let unknown = t.get("/duplicates?kind=nothing").await;
        assert_eq!(unknown.status, 400);
        assert!(
            unknown.body.contains("unknown record kind `nothing`"),
            "{}",
            unknown.body
        );
        assert_eq!(t.get("/duplicates?kind=No%20Kind").await.status, 400);
    }
}
