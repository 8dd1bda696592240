//! `GET /fields`: a space's fields, kind by kind (built-in, custom, hidden,
//! retired), and for its admins the forms that change them: add a field,
//! relabel, retire or restore one, add or retire a choice. Every form
//! posts to `/fields`, which signs the statement (`rapport schema field`)
//! and comes back here saying what changed, or what was wrong with what
//! was typed still in the form.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use rapport_model::{CustomType, Kind, SchemaChange};
use rapport_node::ops::{FieldInfo, Reply, Request, SchemaReply};
use serde::Deserialize;

use crate::page::{self, Nav, Page, url_encode};
use crate::trail::Crumb;
use crate::{App, WebError};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FieldsQuery {
    #[serde(default)]
    space: Option<String>,
    /// What the last change did, to confirm it.
    #[serde(default)]
    done: Option<String>,
}

/// Every form of the page posts these; each uses those it needs.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct ChangeForm {
    #[serde(default)]
    space: String,
    #[serde(default)]
    op: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "type")]
    ty: String,
    #[serde(default)]
    choices: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    help: String,
    #[serde(default)]
    required: String,
    #[serde(default)]
    choice: String,
    /// A renamed choice's new name.
    #[serde(default)]
    to: String,
    /// A new kind's plural.
    #[serde(default)]
    plural: String,
    /// A pipeline's stages, as `rapport schema pipeline add --stages` takes them.
    #[serde(default)]
    stages: String,
}

impl ChangeForm {
    fn change(&self) -> Result<SchemaChange, String> {
        match self.op.as_str() {
            "set_pipeline" => {
                let change = SchemaChange::SetPipeline {
                    name: self.name.trim().to_lowercase(),
                    label: self.label.trim().to_string(),
                    stages: rapport_model::custom::parse_stages(&self.stages)?,
                };
                change.validate()?;
                return Ok(change);
            }
            "retire_pipeline" => {
                return Ok(SchemaChange::RetirePipeline {
                    name: self.name.trim().to_lowercase(),
                });
            }
            "add_kind" if self.kind.trim().parse::<Kind>().is_err() => {
                return Err(format!(
                    "`{}` is not a kind name: use up to 40 lower-case letters, digits and _, \
                     starting with a letter (e.g. site_visit)",
                    self.kind.trim()
                ));
            }
            _ => {}
        }
        let kind: Kind = self.kind.parse().map_err(|e| format!("{e}"))?;
        let name = self.name.trim().to_string();
        let change = match self.op.as_str() {
            "add_field" => SchemaChange::AddField {
                kind,
                name,
                ty: self.ty.parse::<CustomType>()?,
                label: self.label.trim().to_string(),
                help: self.help.trim().to_string(),
                required: !self.required.is_empty(),
                default: None,
                choices: rapport_model::value::split_list(&self.choices)
                    .map(str::to_lowercase)
                    .collect(),
                target: match self.target.trim() {
                    "" => None,
                    t if self.ty == "reference" => Some(t.parse().map_err(|e| format!("{e}"))?),
                    _ => None,
                },
            },
            "relabel" => SchemaChange::Relabel {
                kind,
                name,
                label: self.label.trim().to_string(),
            },
            "retire" => SchemaChange::Retire { kind, name },
            "restore" => SchemaChange::Restore { kind, name },
            "add_choice" => SchemaChange::AddChoice {
                kind,
                name,
                choice: self.choice.trim().to_lowercase(),
            },
            "retire_choice" => SchemaChange::RetireChoice {
                kind,
                name,
                choice: self.choice.trim().to_lowercase(),
            },
            "rename_choice" => SchemaChange::RenameChoice {
                kind,
                name,
                choice: self.choice.trim().to_lowercase(),
                to: self.to.trim().to_lowercase(),
            },
            "add_kind" if !kind.is_custom() => {
                return Err(format!(
                    "{kind} is a built-in kind; give your kind another name"
                ));
            }
            "add_kind" => SchemaChange::AddKind {
                kind,
                plural: self.plural.trim().to_string(),
                title_label: self.label.trim().to_string(),
                help: self.help.trim().to_string(),
            },
            "retire_kind" => SchemaChange::RetireKind { kind },
            "restore_kind" => SchemaChange::RestoreKind { kind },
            other => return Err(format!("`{other}` is not a change this page makes")),
        };
        change.validate()?;
        Ok(change)
    }
}

/// `GET /fields`.
pub(crate) async fn page(
    State(app): State<App>,
    Query(q): Query<FieldsQuery>,
) -> Result<Response, WebError> {
    app.blocking(move |app| {
        let space = q.space.unwrap_or_else(|| "private".into());
        render(app, &space, q.done.as_deref(), None, StatusCode::OK)
    })
    .await
}

/// `POST /fields`.
pub(crate) async fn change(
    State(app): State<App>,
    Form(form): Form<ChangeForm>,
) -> Result<Response, WebError> {
    app.blocking(move |app| {
        let space = if form.space.trim().is_empty() {
            "private".to_string()
        } else {
            form.space.trim().to_string()
        };
        let outcome = form.change().and_then(|change| {
            let done = change.describe();
            app.read(Request::ChangeSchema {
                space: Some(space.clone()),
                change,
            })
            .map(|reply| match reply {
                Reply::Schema(s) if s.records_changed == 1 => {
                    format!("{done} (1 record rewritten)")
                }
                Reply::Schema(s) if s.records_changed > 1 => {
                    format!("{done} ({} records rewritten)", s.records_changed)
                }
                _ => done,
            })
            .map_err(|e| e.to_string())
        });
        match outcome {
            Ok(done) => Ok(Redirect::to(&format!(
                "/fields?space={}&done={}",
                url_encode(&space),
                url_encode(&done)
            ))
            .into_response()),
            Err(error) => render(
                app,
                &space,
                None,
                Some((form, error)),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        }
    })
    .await
}

fn render(
    app: &App,
    space: &str,
    done: Option<&str>,
    failed: Option<(ChangeForm, String)>,
    status: StatusCode,
) -> Result<Response, WebError> {
    let schema = match app.read(Request::Schema {
        space: Some(space.to_string()),
    })? {
        Reply::Schema(s) => s,
        _ => {
            return Err(WebError::BadRequest(
                "the node answered something else".into(),
            ));
        }
    };
    let spaces: Vec<(String, String)> = app
        .repo()
        .spaces()
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.id.to_string(), s.name))
        .collect();
    let (form, error) = match failed {
        Some((f, e)) => (f, Some(e)),
        None => (ChangeForm::default(), None),
    };
    let body = html! {
        h1 { "Fields" }
        form method="get" action="/fields" class="filters" {
            div class="field" {
                label for="fields-space" { "Space" }
                select id="fields-space" name="space" {
                    option value="private" selected[schema.space == "private"] { "Private (this device only)" }
                    @for (id, name) in &spaces {
                        option value=(id) selected[&schema.space == id] { "Shared: " (name) }
                    }
                }
            }
            button type="submit" class="secondary" { "Show its fields" }
        }
        @if let Some(done) = done {
            p class="notice" role="status" { "Done: " (done) "." }
        }
        @if let Some(e) = &error {
            div class="notice" role="alert" id="fields-error" tabindex="-1" { p class="error" { (e) } }
        }
        @if !schema.may_change {
            p class="notice" { "Only the admins of " (schema.space_name) " change its fields. You see what they set." }
        }
        @for note in &schema.notes {
            p class="muted" { "Note: " (note) }
        }
        @if schema.may_change {
            (add_form(&schema, &form, error.is_some() && form.op == "add_field"))
            (add_kind_form(&schema, &form, error.is_some() && form.op == "add_kind"))
        }
        (pipelines(&schema, &form, error.is_some() && form.op == "set_pipeline"))
        @for k in &schema.kinds {
            section aria-labelledby={ "kind-" (k.kind.as_str()) } {
                h2 id={ "kind-" (k.kind.as_str()) } {
                    (page::label(&k.plural))
                    @if k.custom { " " span class="muted" { "(custom kind" @if k.status != "active" { ", retired" } ")" } }
                }
                @if k.custom && schema.may_change {
                    form method="post" action="/fields" class="inline" {
                        input type="hidden" name="space" value=(schema.space);
                        input type="hidden" name="kind" value=(k.kind.as_str());
                        @if k.status == "active" {
                            input type="hidden" name="op" value="retire_kind";
                            button type="submit" class="secondary" { "Retire the kind " (k.kind.as_str()) }
                        } @else {
                            input type="hidden" name="op" value="restore_kind";
                            button type="submit" class="secondary" { "Restore the kind " (k.kind.as_str()) }
                        }
                    }
                }
                div class="table-wrap" {
                    table {
                        thead { tr { th { "Field" } th { "Label" } th { "Type" } th { "Status" } @if schema.may_change { th { "Change" } } } }
                        tbody {
                            @for f in &k.fields {
                                (field_row(&schema, k.kind, f))
                            }
                        }
                    }
                }
            }
        }
    };
    let page = page::render(
        app,
        Page {
            title: "Fields".into(),
            nav: Nav::Fields,
            crumbs: vec![
                Crumb {
                    label: "My work".into(),
                    href: Some("/".into()),
                },
                Crumb {
                    label: "Fields".into(),
                    href: None,
                },
            ],
            help: html! {
                p { "Each space has its own fields. Its admins add fields to any kind, relabel them, retire those no longer used, and every member's node follows: a change here is a signed statement sent to the space's members." }
                p { "A retired field keeps its values; they show again when it is restored. A retired choice stays on the records that hold it; new input may not use it. Built-in fields can be relabelled and hidden, but not removed." }
                p { "Admins also add kinds of their own (contract, project, site visit): each has a name as its title, takes fields like any other, shows in the navigation, and a reference field on a company lists its records on the company's page." }
                p { "The same from the command line: " code { "rapport schema show" } ", " code { "rapport schema field add KIND NAME --type TYPE" } ", " code { "rapport schema kind add NAME" } "." }
            },
            body,
            watch: vec!["*".into()],
            since: app.read_since.clone(),
        },
    );
    Ok((status, page).into_response())
}

fn add_form(schema: &SchemaReply, form: &ChangeForm, failed: bool) -> Markup {
    let value = |v: &str| if failed { v.to_string() } else { String::new() };
    html! {
        details class="panel" open[failed] {
            summary { "Add a field" }
            form method="post" action="/fields" class="record-form" {
                input type="hidden" name="space" value=(schema.space);
                input type="hidden" name="op" value="add_field";
                div class="field" {
                    label for="add-kind" { "To" }
                    select id="add-kind" name="kind" {
                        @for k in schema.kinds.iter().filter(|k| k.status == "active") {
                            option value=(k.kind.as_str()) selected[failed && form.kind == k.kind.as_str()] { (page::label(&k.plural)) }
                        }
                    }
                }
                div class="field" {
                    label for="add-name" { "Name" }
                    input id="add-name" name="name" type="text" value=(value(&form.name)) autocomplete="off" aria-describedby="add-name-hint";
                    p class="hint" id="add-name-hint" { "Lower-case letters, digits and _, e.g. contract_end. It never changes; the label can." }
                }
                div class="field" {
                    label for="add-label" { "Label" }
                    input id="add-label" name="label" type="text" value=(value(&form.label)) autocomplete="off";
                }
                div class="field" {
                    label for="add-type" { "Type" }
                    select id="add-type" name="type" {
                        @for t in CustomType::ALL {
                            option value=(t.as_str()) selected[failed && form.ty == t.as_str()] { (page::label(t.as_str())) }
                        }
                    }
                }
                div class="field" {
                    label for="add-choices" { "Choices" }
                    input id="add-choices" name="choices" type="text" value=(value(&form.choices)) autocomplete="off" aria-describedby="add-choices-hint";
                    p class="hint" id="add-choices-hint" { "For a choice or multiple choice: the choices, comma-separated." }
                }
                div class="field" {
                    label for="add-target" { "Refers to" }
                    select id="add-target" name="target" aria-describedby="add-target-hint" {
                        option value="" { "" }
                        @for k in schema.kinds.iter().filter(|k| k.status == "active") {
                            option value=(k.kind.as_str()) selected[failed && form.target == k.kind.as_str()] { (page::label(&k.plural)) }
                        }
                    }
                    p class="hint" id="add-target-hint" { "For a reference: the kind of record it names." }
                }
                div class="field" {
                    label for="add-help" { "Help" }
                    input id="add-help" name="help" type="text" value=(value(&form.help)) autocomplete="off";
                }
                div class="field" {
                    label class="check" {
                        input type="checkbox" name="required" value="yes" checked[failed && !form.required.is_empty()];
                        " Every new record needs a value"
                    }
                }
                div class="toolbar" { button type="submit" { "Add field" } }
            }
        }
    }
}

/// The space's deal pipelines, and for its admins the form that adds one
/// or replaces a pipeline's stages.
fn pipelines(schema: &SchemaReply, form: &ChangeForm, failed: bool) -> Markup {
    use rapport_model::custom::{SALES, format_stages};
    let value = |v: &str| if failed { v.to_string() } else { String::new() };
    html! {
        section aria-labelledby="pipelines-h" {
            h2 id="pipelines-h" { "Deal pipelines" }
            div class="table-wrap" {
                table {
                    thead { tr { th { "Pipeline" } th { "Stages (probability)" } th { "Status" } @if schema.may_change { th { "Change" } } } }
                    tbody {
                        @for p in &schema.pipelines {
                            tr {
                                th scope="row" { (page::label(&p.title())) " " code { (p.name) } }
                                td { (format_stages(&p.stages)) }
                                td { @if p.retired { "retired" } @else { "active" } @if p.name == SALES { ", built in" } }
                                @if schema.may_change {
                                    td {
                                        @if p.name != SALES && !p.retired {
                                            form method="post" action="/fields" class="inline" {
                                                input type="hidden" name="space" value=(schema.space);
                                                input type="hidden" name="op" value="retire_pipeline";
                                                input type="hidden" name="name" value=(p.name);
                                                button type="submit" class="secondary" { "Retire the pipeline " (p.name) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if schema.may_change {
                details class="panel" open[failed] {
                    summary { "Add a pipeline, or change one's stages" }
                    form method="post" action="/fields" class="record-form" {
                        input type="hidden" name="space" value=(schema.space);
                        input type="hidden" name="op" value="set_pipeline";
                        div class="field" {
                            label for="pipeline-name" { "Pipeline" }
                            input id="pipeline-name" name="name" type="text" value=(value(&form.name)) autocomplete="off" aria-describedby="pipeline-name-hint";
                            p class="hint" id="pipeline-name-hint" { "Lower-case letters, digits and _, e.g. renewals. The same name again replaces its stages." }
                        }
                        div class="field" {
                            label for="pipeline-label" { "Pipeline label" }
                            input id="pipeline-label" name="label" type="text" value=(value(&form.label)) autocomplete="off";
                        }
                        div class="field" {
                            label for="pipeline-stages" { "Stages" }
                            textarea id="pipeline-stages" name="stages" rows="3" aria-describedby="pipeline-stages-hint" { (value(&form.stages)) }
                            p class="hint" id="pipeline-stages-hint" { "In order, comma-separated: NAME:PROBABILITY, and :won or :lost for the stages that close a deal, e.g. due:60, quoted:85, renewed:100:won, churned:0:lost." }
                        }
                        div class="toolbar" { button type="submit" { "Save pipeline" } }
                    }
                }
            }
        }
    }
}

fn add_kind_form(schema: &SchemaReply, form: &ChangeForm, failed: bool) -> Markup {
    let value = |v: &str| if failed { v.to_string() } else { String::new() };
    html! {
        details class="panel" open[failed] {
            summary { "Add a kind" }
            form method="post" action="/fields" class="record-form" {
                input type="hidden" name="space" value=(schema.space);
                input type="hidden" name="op" value="add_kind";
                div class="field" {
                    label for="kind-name" { "Kind" }
                    input id="kind-name" name="kind" type="text" value=(value(&form.kind)) autocomplete="off" aria-describedby="kind-name-hint";
                    p class="hint" id="kind-name-hint" { "Lower-case letters, digits and _, e.g. contract or site_visit. It never changes." }
                }
                div class="field" {
                    label for="kind-plural" { "Plural" }
                    input id="kind-plural" name="plural" type="text" value=(value(&form.plural)) autocomplete="off" aria-describedby="kind-plural-hint";
                    p class="hint" id="kind-plural-hint" { "What lists and the navigation call many of them [default: the kind with an s]." }
                }
                div class="field" {
                    label for="kind-title" { "Title label" }
                    input id="kind-title" name="label" type="text" value=(value(&form.label)) autocomplete="off" aria-describedby="kind-title-hint";
                    p class="hint" id="kind-title-hint" { "What each record's name is called, e.g. Contract number [default: Name]." }
                }
                div class="field" {
                    label for="kind-help" { "Help" }
                    input id="kind-help" name="help" type="text" value=(value(&form.help)) autocomplete="off";
                }
                div class="toolbar" { button type="submit" { "Add kind" } }
            }
        }
    }
}

fn field_row(schema: &SchemaReply, kind: Kind, f: &FieldInfo) -> Markup {
    let hidden_inputs = |op: &str| {
        html! {
            input type="hidden" name="space" value=(schema.space);
            input type="hidden" name="op" value=(op);
            input type="hidden" name="kind" value=(kind.as_str());
            input type="hidden" name="name" value=(f.name);
        }
    };
    let shown_label = if f.label.is_empty() {
        page::label(&f.name)
    } else {
        f.label.clone()
    };
    let needed = !f.custom && (f.required || f.name == kind.title_field());
    html! {
        tr {
            th scope="row" { code { (f.name) } }
            td { (shown_label) }
            td {
                (f.ty)
                @if !f.choices.is_empty() { ": " (f.choices.join(", ")) }
                @if !f.retired_choices.is_empty() { " " span class="muted" { "(retired: " (f.retired_choices.join(", ")) ")" } }
            }
            td { (f.status) @if f.custom { ", custom" } }
            @if schema.may_change {
                td {
                    form method="post" action="/fields" class="inline" {
                        (hidden_inputs("relabel"))
                        label class="visually-hidden" for={ "relabel-" (kind.as_str()) "-" (f.name) } { "New label for " (f.name) }
                        input id={ "relabel-" (kind.as_str()) "-" (f.name) } name="label" type="text" size="14" placeholder="New label";
                        button type="submit" class="secondary" { "Relabel" }
                    }
                    @if f.status == "active" && !needed {
                        form method="post" action="/fields" class="inline" {
                            (hidden_inputs("retire"))
                            button type="submit" class="secondary" aria-label={ (if f.custom { "Retire " } else { "Hide " }) (f.name) } {
                                (if f.custom { "Retire" } else { "Hide" })
                            }
                        }
                    }
                    @if f.status != "active" {
                        form method="post" action="/fields" class="inline" {
                            (hidden_inputs("restore"))
                            button type="submit" class="secondary" aria-label={ "Restore " (f.name) } { "Restore" }
                        }
                    }
                    @if (f.custom && (f.ty == "choice" || f.ty == "multi_choice")) || rapport_model::custom::extensible(kind, &f.name) {
                        form method="post" action="/fields" class="inline" {
                            (hidden_inputs("add_choice"))
                            label class="visually-hidden" for={ "choice-" (kind.as_str()) "-" (f.name) } { "Choice to add to " (f.name) }
                            input id={ "choice-" (kind.as_str()) "-" (f.name) } name="choice" type="text" size="10" placeholder="New choice";
                            button type="submit" class="secondary" { "Add choice" }
                        }
                        form method="post" action="/fields" class="inline" {
                            (hidden_inputs("rename_choice"))
                            label class="visually-hidden" for={ "rename-" (kind.as_str()) "-" (f.name) } { "Choice of " (f.name) " to rename" }
                            select id={ "rename-" (kind.as_str()) "-" (f.name) } name="choice" {
                                @for c in f.choices.iter().chain(&f.retired_choices) { option value=(c) { (c) } }
                            }
                            label class="visually-hidden" for={ "rename-to-" (kind.as_str()) "-" (f.name) } { "New name of the choice" }
                            input id={ "rename-to-" (kind.as_str()) "-" (f.name) } name="to" type="text" size="10" placeholder="New name";
                            button type="submit" class="secondary" { "Rename choice" }
                        }
                        @for c in &f.choices {
                            form method="post" action="/fields" class="inline" {
                                (hidden_inputs("retire_choice"))
                                input type="hidden" name="choice" value=(c);
                                button type="submit" class="secondary" aria-label={ "Retire “" (c) "” of " (f.name) } { "Retire “" (c) "”" }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::TestUi;

    /// An admin adds a kind on the Fields page: the navigation lists it,
    /// its form takes its title (with the admin's label) and fields, its
    /// list shows the record, and a company that refers to it lists it on
    /// the company's page. A retired kind leaves the navigation and takes
    /// no new records; its list still shows those it has.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kind_added_on_the_page_gets_navigation_forms_lists_and_links() {
        let t = TestUi::start().await;
        let post = |pairs: Vec<(&'static str, &'static str)>| {
            let t = &t;
            async move {
                let mut all = vec![("space", "private")];
                all.extend(pairs);
                t.post("/fields", &all).await
            }
        };
        let bad = post(vec![("op", "add_kind"), ("kind", "Site Visit")]).await;
        assert_eq!(bad.status, 422);
        assert!(bad.body.contains("is not a kind name"), "{}", bad.body);
        let added = post(vec![
            ("op", "add_kind"),
            ("kind", "contract"),
            ("label", "Contract number"),
        ])
        .await;
        assert_eq!(added.status, 303, "{}", added.body);
        for (kind, name, ty, target) in [
            ("contract", "ends", "date", ""),
            ("company", "contract", "reference", "contract"),
        ] {
            let added = post(vec![
                ("op", "add_field"),
                ("kind", kind),
                ("name", name),
                ("type", ty),
                ("target", target),
            ])
            .await;
            assert_eq!(added.status, 303, "{}", added.body);
        }

        let home = t.get("/").await;
        assert!(
            home.body.contains("href=\"/k/contract\">Contracts</a>"),
            "{}",
            home.body
        );
        let form = t.get("/new/contract").await;
        assert_eq!(form.status, 200, "{}", form.body);
        assert!(form.body.contains("Contract number"), "{}", form.body);
        assert!(form.body.contains("f-ends"), "{}", form.body);
        let made = t
            .post(
                "/new/contract",
                &[
                    ("space", "private"),
                    ("name", "ACME-2027"),
                    ("ends", "2027-03-31"),
                ],
            )
            .await;
        assert_eq!(made.status, 303, "{}", made.body);
        let made = t
            .post(
                "/new/company",
                &[
                    ("space", "private"),
                    ("name", "Acme"),
                    ("contract", "ACME-2027"),
                ],
            )
            .await;
        assert_eq!(made.status, 303, "{}", made.body);
        let list = t.get("/k/contract").await;
        assert!(list.body.contains("ACME-2027"), "{}", list.body);
        let repo = t.repo().clone();
        let acme = tokio::task::spawn_blocking(move || repo.resolve("Acme"))
            .await
            .expect("task")
            .expect("created");
        let page = t.get(&format!("/r/{}", acme.id)).await;
        assert!(
            page.body.contains("ACME-2027"),
            "the company lists its contract"
        );

        let retired = post(vec![("op", "retire_kind"), ("kind", "contract")]).await;
        assert_eq!(retired.status, 303, "{}", retired.body);
        let home = t.get("/").await;
        assert!(
            !home.body.contains("href=\"/k/contract\""),
            "a retired kind in the navigation"
        );
        let refused = t
            .post("/new/contract", &[("space", "private"), ("name", "Late")])
            .await;
        assert_eq!(refused.status, 404, "{}", refused.body);
        assert!(refused.body.contains("is retired"), "{}", refused.body);
        let list = t.get("/k/contract").await;
        assert!(list.body.contains("ACME-2027"), "{}", list.body);
        assert_eq!(t.get("/k/widget").await.status, 404);
    }

    /// An admin adds fields on the Fields page; the company form shows
    /// them, takes their values (a multiple choice as boxes), refuses a
    /// value that does not fit next to its field, and the record page
    /// shows them with their labels; a retired field leaves the form and
    /// its value is shown as retired.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fields_added_on_the_page_reach_forms_and_record_pages() {
        let t = TestUi::start().await;
        let page = t.get("/fields").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("Add a field"), "{}", page.body);

        for (name, ty, choices, label) in [
            ("seats", "number", "", "Seats"),
            ("regions", "multi_choice", "emea, apac, amer", "Regions"),
        ] {
            let added = t
                .post(
                    "/fields",
                    &[
                        ("space", "private"),
                        ("op", "add_field"),
                        ("kind", "company"),
                        ("name", name),
                        ("type", ty),
                        ("choices", choices),
                        ("label", label),
                    ],
                )
                .await;
            assert_eq!(added.status, 303, "{}", added.body);
        }
        let bad = t
            .post(
                "/fields",
                &[
                    ("space", "private"),
                    ("op", "add_field"),
                    ("kind", "company"),
                    ("name", "Tier Level"),
                    ("type", "text"),
                ],
            )
            .await;
        assert_eq!(bad.status, 422);
        assert!(bad.body.contains("is not a field name"), "{}", bad.body);
        assert!(bad.body.contains("value=\"Tier Level\""), "typed name kept");

        let form = t.get("/new/company").await;
        assert!(
            form.body.contains("<label for=\"f-seats\">Seats</label>"),
            "{}",
            form.body
        );
        assert!(form.body.contains("value=\"apac\""), "{}", form.body);

        let refused = t
            .post(
                "/new/company",
                &[("space", "private"), ("name", "Orbit"), ("seats", "many")],
            )
            .await;
        assert_eq!(refused.status, 422);
        assert!(
            refused.body.contains("id=\"f-seats-error\""),
            "{}",
            refused.body
        );

        let made = t
            .post(
                "/new/company",
                &[
                    ("space", "private"),
                    ("name", "Orbit"),
                    ("seats", "250"),
                    ("regions", "emea"),
                    ("regions", "apac"),
                ],
            )
            .await;
        assert_eq!(made.status, 303, "{}", made.body);
        let repo = t.repo().clone();
        let v = tokio::task::spawn_blocking(move || repo.resolve("Orbit"))
            .await
            .expect("task")
            .expect("created");
        assert_eq!(v.text("seats"), Some("250"));
        assert_eq!(
            v.get("regions").map(rapport_model::FieldValue::as_list),
            Some(&["emea".to_string(), "apac".to_string()][..])
        );
        let shown = t.get(&format!("/r/{}", v.id)).await;
        assert!(shown.body.contains("Regions"), "{}", shown.body);

        let retired = t
            .post(
                "/fields",
                &[
                    ("space", "private"),
                    ("op", "retire"),
                    ("kind", "company"),
                    ("name", "seats"),
                ],
            )
            .await;
        assert_eq!(retired.status, 303, "{}", retired.body);
        let form = t.get("/new/company").await;
        assert!(
            !form.body.contains("f-seats"),
            "a retired field is on the form"
        );
        let shown = t.get(&format!("/r/{}", v.id)).await;
        assert!(shown.body.contains("a retired field"), "{}", shown.body);

        // Renaming a choice rewrites the records that hold it.
        let page = t.get("/fields").await;
        assert!(page.body.contains("Rename choice"), "{}", page.body);
        let renamed = t
            .post(
                "/fields",
                &[
                    ("space", "private"),
                    ("op", "rename_choice"),
                    ("kind", "company"),
                    ("name", "regions"),
                    ("choice", "apac"),
                    ("to", "asia pacific"),
                ],
            )
            .await;
        assert_eq!(renamed.status, 303, "{}", renamed.body);
        let done = t.get(renamed.header("location").expect("redirected")).await;
        assert!(done.body.contains("(1 record rewritten)"), "{}", done.body);
        let repo = t.repo().clone();
        let v = tokio::task::spawn_blocking(move || repo.resolve("Orbit"))
            .await
            .expect("task")
            .expect("still there");
        assert_eq!(
            v.get("regions").map(rapport_model::FieldValue::as_list),
            Some(&["emea".to_string(), "asia pacific".to_string()][..])
        );
    }
}
