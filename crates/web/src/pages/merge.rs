//! `GET /merge?ids=A,B`: likely duplicates side by side, with a choice of
//! the record to keep and, per field where they differ, of the value to
//! keep; `POST /merge` merges them as `rapport merge` does, and `POST
//! /merge/{id}/undo` undoes a merge.

use axum::extract::{Path, Query, State};
use axum::response::{Html, Redirect};
use maud::html;
use rapport_model::{FieldValue, RecordId, RecordView};
use rapport_node::ops::{Reply, Request};
use serde::Deserialize;

use crate::page::{self, Nav, Page};
use crate::trail::Crumb;
use crate::{App, WebError};

#[derive(Debug, Deserialize)]
pub(crate) struct MergeQuery {
    /// Record ids, comma-separated; the first is kept unless chosen otherwise.
    ids: String,
}

pub(crate) async fn page(
    State(app): State<App>,
    Query(q): Query<MergeQuery>,
) -> Result<Html<String>, WebError> {
    app.blocking(move |app| render(app, &q.ids)).await
}

fn render(app: &App, ids: &str) -> Result<Html<String>, WebError> {
    let mut records: Vec<RecordView> = Vec::new();
    for r in ids.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let v = app.show(r)?.record;
        if !records.iter().any(|x| x.id == v.id) {
            records.push(v);
        }
    }
    if records.len() < 2 {
        return Err(WebError::BadRequest(
            "name at least two records to merge: /merge?ids=A,B".into(),
        ));
    }
    let kind = records[0].kind;
    if let Some(other) = records.iter().find(|r| r.kind != kind) {
        return Err(WebError::BadRequest(format!(
            "{} is a {} and {} a {}: only records of one kind merge",
            other.title(),
            other.kind,
            records[0].title(),
            kind
        )));
    }
    let repo = &**app.repo();
    let title_of = |id: RecordId| page::title_in(repo, id);
    let link = |id: RecordId| format!("/r/{id}");
    let shown: Vec<_> = kind
        .fields()
        .iter()
        .filter(|d| records.iter().any(|r| r.fields.contains_key(d.name)))
        .collect();
    let body = html! {
        h1 { "Merge " (records.len()) " " (page::plural(kind).to_lowercase()) }
        p { "Choose the record to keep and, where they differ, the value to keep: where you choose none, the record kept keeps its own value (or takes the first one the others have). Lists (e-mails, phones, tags) are united. The others become redirects to the record kept, and everything that referred to them refers to it. You can undo the merge." }
        form method="post" action="/merge" {
            table class="list merge" {
                thead {
                    tr {
                        th scope="col" { "Field" }
                        @for r in &records {
                            th scope="col" { a href=(link(r.id)) { (r.title()) } }
                        }
                    }
                }
                tbody {
                    tr {
                        th scope="row" { "Keep" }
                        @for (i, r) in records.iter().enumerate() {
                            td {
                                label {
                                    input type="radio" name="keep" value=(r.id) checked[i == 0];
                                    " Keep this one"
                                }
                            }
                        }
                    }
                    @for def in &shown {
                        @let values: Vec<Option<&FieldValue>> = records.iter().map(|r| r.fields.get(def.name)).collect();
                        @let differ = !def.ty.is_list() && values.iter().flatten().any(|v| Some(*v) != values.iter().flatten().next().copied());
                        tr {
                            th scope="row" { (page::label(def.name)) }
                            @for (r, value) in records.iter().zip(&values) {
                                td {
                                    @match value {
                                        Some(v) if differ => {
                                            label {
                                                input type="radio" name={ "f." (def.name) } value=(r.id);
                                                " " (page::field_value(def, v, &title_of, &link))
                                            }
                                        }
                                        Some(v) => { (page::field_value(def, v, &title_of, &link)) }
                                        None => { span class="muted" { "—" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            input type="hidden" name="ids" value=(records.iter().map(|r| r.id.to_string()).collect::<Vec<_>>().join(","));
            div class="toolbar" {
                button type="submit" { "Merge" }
                a class="button secondary" href={ "/duplicates?kind=" (kind.as_str()) } { "Cancel" }
            }
        }
    };
    Ok(page::render(
        app,
        Page {
            title: format!("Merge {}", page::plural(kind).to_lowercase()),
            nav: Nav::Import,
            crumbs: vec![
                Crumb {
                    label: "Possible duplicates".into(),
                    href: Some(format!("/duplicates?kind={}", kind.as_str())),
                },
                Crumb {
                    label: "Merge".into(),
                    href: None,
                },
            ],
            help: html! {
                p { "A merge is written as ordinary changes, so it reaches everyone who shares these records. An edit someone makes to a merged record before they hear of the merge is carried over to the record kept." }
                p { "The same from the command line: " code { "rapport merge KEEP OTHER... --prefer FIELD=REF" } "; undo with " code { "rapport merge undo ID" } "." }
            },
            body,
            watch: records.iter().map(|r| r.id.to_string()).collect(),
            since: app.read_since.clone(),
        },
    ))
}

pub(crate) async fn merge(
    State(app): State<App>,
    axum::Form(pairs): axum::Form<Vec<(String, String)>>,
) -> Result<Redirect, WebError> {
    app.blocking(move |app| {
        let value = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let keep = value("keep");
        let others: Vec<String> = value("ids")
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty() && *r != keep)
            .map(String::from)
            .collect();
        let prefer: Vec<(String, String)> = pairs
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("f.")?.to_string(), v.clone())))
            .collect();
        match app.read(Request::Merge {
            keep,
            others,
            prefer,
        })? {
            Reply::Merged { merge, record } => Ok(Redirect::to(&format!(
                "/r/{}?merged={}",
                record.id, merge.id
            ))),
            _ => Err(WebError::Internal(
                "the node answered something else".into(),
            )),
        }
    })
    .await
}

#[derive(Debug, Deserialize)]
pub(crate) struct UndoForm {
    /// The record to show afterwards.
    record: String,
}

pub(crate) async fn undo(
    State(app): State<App>,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<UndoForm>,
) -> Result<Redirect, WebError> {
    app.blocking(move |app| {
        app.read(Request::MergeUndo { id })?;
        Ok(Redirect::to(&format!("/r/{}?saved=1", f.record)))
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::testing::TestUi;
    use rapport_model::{Kind, SpaceId};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_people_merge_from_the_side_by_side_screen_and_the_merge_undoes() {
        let t = TestUi::start().await;
        let repo = t.repo().clone();
        let (ann, dup) = tokio::task::spawn_blocking(move || {
            let ann = repo.resolve("Ann Baker").expect("Ann");
            let dup = repo
                .create(
                    Kind::Person,
                    SpaceId::Private,
                    &[
                        ("name".into(), "Ann B.".into()),
                        ("emails".into(), "ann.private@example.net".into()),
                        ("title".into(), "Head of Buying".into()),
                    ],
                )
                .expect("create");
            (ann, dup)
        })
        .await
        .expect("task");
        let page = t.get(&format!("/merge?ids={},{}", ann.id, dup.id)).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("Keep this one"), "{}", page.body);
        assert!(page.body.contains("Head of Buying"), "{}", page.body);
        // Keep Ann, but take the other record's job title.
        let ids = format!("{},{}", ann.id, dup.id);
        let (keep, other) = (ann.id.to_string(), dup.id.to_string());
        let done = t
            .post(
                "/merge",
                &[("keep", &keep), ("ids", &ids), ("f.title", &other)],
            )
            .await;
        assert_eq!(done.status, 303, "{}", done.body);
        let location = done.header("location").expect("redirect").to_string();
        assert!(
            location.starts_with(&format!("/r/{}?merged=", ann.id)),
            "{location}"
        );
        let kept = t.get(&location).await;
        assert!(kept.body.contains("Merged."), "{}", kept.body);
        assert!(
            kept.body.contains("ann.private@example.net"),
            "{}",
            kept.body
        );
        assert!(kept.body.contains("Head of Buying"), "{}", kept.body);
        // The merged record's page redirects to the one kept, and says so.
        let old = t.get(&format!("/r/{}", dup.id)).await;
        assert!(
            old.body.contains("was merged into this record"),
            "{}",
            old.body
        );
        // Undo from the notice.
        let merge_id = location.rsplit('=').next().expect("id").to_string();
        let undone = t
            .post(&format!("/merge/{merge_id}/undo"), &[("record", &keep)])
            .await;
        assert_eq!(undone.status, 303, "{}", undone.body);
        let back = t.get(&format!("/r/{}", dup.id)).await;
        assert!(!back.body.contains("was merged into"), "{}", back.body);
        assert!(back.body.contains("Ann B."), "{}", back.body);
    }
}
