//! `GET /k/{kind}`: the records of one kind as a table, with a text filter,
//! a field filter (`where=stage=proposal` or `where=amount>=10000`, as
//! `rapport list --where`),
//! sorting by any column, a choice of columns, deleted records, and pages.
//! Everything is in the query string, so a filtered list can be bookmarked.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Html;
use maud::{Markup, html};
use rapport_model::{FieldDef, FieldType, Kind, RecordId, RecordView};

use crate::page::{self, Nav, Page};
use crate::trail::{Step, Trail};
use crate::{App, WebError};

/// Rows per page.
const PAGE_ROWS: usize = 100;

/// What the query string asks for.
#[derive(Debug, Default, Clone)]
struct ListParams {
    text: String,
    filter: String,
    sort: Option<String>,
    descending: bool,
    columns: Vec<String>,
    page: usize,
    deleted: bool,
    trail: Trail,
}

impl ListParams {
    /// The parameters, for a list whose fields are `defs`.
    fn parse(kind: Kind, defs: &[&'static FieldDef], pairs: &[(String, String)]) -> ListParams {
        let mut p = ListParams::default();
        let mut trail = None;
        let known = |v: &str| defs.iter().any(|d| d.name == v);
        for (k, v) in pairs {
            match k.as_str() {
                "q" => p.text = v.trim().to_string(),
                "where" => p.filter = v.trim().to_string(),
                "sort" if known(v) => p.sort = Some(v.clone()),
                "dir" => p.descending = v == "desc",
                "cols" if known(v) && v != kind.title_field() && !p.columns.contains(v) => {
                    p.columns.push(v.clone());
                }
                "page" => p.page = v.parse::<usize>().unwrap_or(1).saturating_sub(1),
                "deleted" => p.deleted = v == "1",
                "t" => trail = Some(v.clone()),
                _ => {}
            }
        }
        if p.columns.is_empty() {
            p.columns = kind
                .columns()
                .iter()
                .filter(|c| **c != kind.title_field() && known(c))
                .map(|c| c.to_string())
                .collect();
        }
        p.trail = Trail::parse(trail.as_deref());
        p
    }

    /// This list's address with some parameters changed.
    fn href(&self, kind: Kind, change: impl FnOnce(&mut ListParams)) -> String {
        let mut p = self.clone();
        change(&mut p);
        let mut q: Vec<(String, String)> = Vec::new();
        if !p.text.is_empty() {
            q.push(("q".into(), p.text.clone()));
        }
        if !p.filter.is_empty() {
            q.push(("where".into(), p.filter.clone()));
        }
        if let Some(s) = &p.sort {
            q.push(("sort".into(), s.clone()));
            if p.descending {
                q.push(("dir".into(), "desc".into()));
            }
        }
        for c in &p.columns {
            q.push(("cols".into(), c.clone()));
        }
        if p.page > 0 {
            q.push(("page".into(), (p.page + 1).to_string()));
        }
        if p.deleted {
            q.push(("deleted".into(), "1".into()));
        }
        let query: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{k}={}", page::url_encode(v)))
            .collect();
        let path = if query.is_empty() {
            format!("/k/{}", kind.as_str())
        } else {
            format!("/k/{}?{}", kind.as_str(), query.join("&"))
        };
        p.trail.link(&path)
    }
}

/// One table row: the record, and each shown column as text (for the text
/// filter and sorting) and as markup.
struct Row {
    view: RecordView,
    texts: Vec<String>,
}

pub(crate) async fn page(
    State(app): State<App>,
    Path(kind): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Html<String>, WebError> {
    app.blocking(move |app| {
        let kind = page::kind_named(app, &kind, true)?;
        // Every space's fields: the list shows records of all of them.
        let defs = app
            .repo()
            .fields_in(None, kind)
            .unwrap_or_else(|_| kind.fields().iter().collect());
        let params = ListParams::parse(kind, &defs, &pairs);
        render(app, kind, &defs, params)
    })
    .await
}

fn render(
    app: &App,
    kind: Kind,
    defs: &[&'static FieldDef],
    p: ListParams,
) -> Result<Html<String>, WebError> {
    let repo = app.repo();
    let def_of = |name: &str| defs.iter().copied().find(|d| d.name == name);
    let mut filter_error = None;
    let filters = if p.filter.is_empty() {
        Vec::new()
    } else {
        match rapport_node::parse_assignment(&p.filter) {
            Ok(pair) => vec![pair],
            Err(e) => {
                filter_error = Some(e.to_string());
                Vec::new()
            }
        }
    };
    let filtered = !filters.is_empty();
    let views = match app.list(kind, filters, p.deleted) {
        Ok(v) => v,
        Err(e) if filtered => {
            filter_error = Some(e.to_string());
            app.list(kind, Vec::new(), p.deleted)?
        }
        Err(e) => return Err(e.into()),
    };

    // Reference columns show titles; look each referenced record up once.
    let mut titles: HashMap<RecordId, Option<String>> = HashMap::new();
    let mut title_of = |id: RecordId| {
        titles
            .entry(id)
            .or_insert_with(|| page::title_in(repo, id))
            .clone()
    };
    let needle = p.text.to_lowercase();
    let mut rows: Vec<Row> = views
        .into_iter()
        .map(|view| {
            let mut texts = vec![view.title()];
            for c in &p.columns {
                texts.push(cell_text(&view, def_of(c), c, &mut title_of));
            }
            Row { view, texts }
        })
        .filter(|r| needle.is_empty() || r.texts.iter().any(|t| t.to_lowercase().contains(&needle)))
        .collect();

    let sort_col = p.sort.as_ref().and_then(|s| {
        if s == kind.title_field() {
            Some(0)
        } else {
            p.columns.iter().position(|c| c == s).map(|i| i + 1)
        }
    });
    let numeric = p.sort.as_ref().and_then(|s| def_of(s)).is_some_and(|d| {
        matches!(
            d.ty,
            FieldType::Amount | FieldType::Percent | FieldType::Number
        )
    });
    let col = sort_col.unwrap_or(0);
    rows.sort_by(|a, b| {
        let (x, y) = (&a.texts[col], &b.texts[col]);
        let order = if numeric {
            let n = |s: &str| s.parse::<f64>().unwrap_or(f64::NEG_INFINITY);
            n(x).total_cmp(&n(y))
        } else {
            x.to_lowercase().cmp(&y.to_lowercase())
        };
        // Empty values last either way.
        match (x.is_empty(), y.is_empty()) {
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ if p.descending => order.reverse(),
            _ => order,
        }
    });

    let total = rows.len();
    let pages = total.div_ceil(PAGE_ROWS).max(1);
    let page_no = p.page.min(pages - 1);
    let shown = &rows[(page_no * PAGE_ROWS).min(total)..((page_no + 1) * PAGE_ROWS).min(total)];
    let record_trail = p.trail.then(Step::Kind(kind));
    let link = |id: RecordId| record_trail.link(&format!("/r/{id}"));
    let title = if p.deleted {
        format!("Deleted {}", page::plural(kind).to_lowercase())
    } else {
        page::plural(kind).to_string()
    };

    let header = |field: &str| -> Markup {
        let sorted_here =
            p.sort.as_deref() == Some(field) || (p.sort.is_none() && field == kind.title_field());
        let descending = sorted_here && p.descending;
        let aria = sorted_here.then_some(if descending {
            "descending"
        } else {
            "ascending"
        });
        let next = p.href(kind, |q| {
            q.sort = Some(field.to_string());
            q.descending = sorted_here && !descending;
            q.page = 0;
        });
        html! {
            th scope="col" aria-sort=[aria] {
                a href=(next) {
                    (page::label(field))
                    @if sorted_here { (if descending { " ▼" } else { " ▲" }) }
                }
            }
        }
    };

    let hidden = |skip: &[&str]| -> Markup {
        html! {
            @if !skip.contains(&"q") && !p.text.is_empty() { input type="hidden" name="q" value=(p.text); }
            @if !skip.contains(&"where") && !p.filter.is_empty() { input type="hidden" name="where" value=(p.filter); }
            @if let Some(s) = &p.sort { input type="hidden" name="sort" value=(s); }
            @if p.descending { input type="hidden" name="dir" value="desc"; }
            @if !skip.contains(&"cols") { @for c in &p.columns { input type="hidden" name="cols" value=(c); } }
            @if p.deleted { input type="hidden" name="deleted" value="1"; }
        }
    };

    let body = html! {
        h1 { (title) }
        div class="toolbar" {
            @if !p.deleted {
                a class="button" href={ "/new/" (kind.as_str()) } { "New " (page::singular(kind).to_lowercase()) }
            }
            @if p.deleted {
                a class="button secondary" href=(p.href(kind, |q| { q.deleted = false; q.page = 0; })) { "Show live records" }
            } @else {
                a class="button secondary" href=(p.href(kind, |q| { q.deleted = true; q.page = 0; })) { "Show deleted" }
            }
            a class="button secondary" href={ "/k/" (kind.as_str()) "/export.csv" } download { "Export CSV" }
            @if kind == Kind::Person {
                a class="button secondary" href="/export/people.vcf" download { "Export vCard" }
            }
            @if matches!(kind, Kind::Person | Kind::Company) {
                a class="button secondary" href={ "/duplicates?kind=" (kind.as_str()) } { "Find duplicates" }
            }
            @if kind == Kind::Activity {
                a class="button secondary" href="/export/activities.ics" download { "Export iCalendar" }
            }
        }
        form method="get" action={ "/k/" (kind.as_str()) } class="toolbar" {
            (hidden(&["q", "where"]))
            div class="field" {
                label for="list-q" { "Filter" }
                input id="list-q" name="q" type="search" value=(p.text) aria-describedby="list-q-hint";
                p class="hint" id="list-q-hint" { "text in any shown column" }
            }
            div class="field" {
                label for="list-where" { "Field filter" }
                input id="list-where" name="where" type="text" value=(p.filter)
                    placeholder=(example_filter(kind))
                    aria-describedby={ "list-where-hint" @if filter_error.is_some() { " list-where-error" } }
                    aria-invalid=[filter_error.as_ref().map(|_| "true")];
                p class="hint" id="list-where-hint" {
                    "FIELD=VALUE, as " code { "rapport list --where" } "; or != (not), >= and <= (by value), ^= (begins with), ~= (contains)"
                }
                @if let Some(e) = &filter_error {
                    p class="error" id="list-where-error" role="alert" { (e) " (the list below is not filtered)" }
                }
            }
            button type="submit" { "Apply" }
        }
        details class="columns" {
            summary { "Columns" }
            form method="get" action={ "/k/" (kind.as_str()) } {
                (hidden(&["cols"]))
                fieldset {
                    legend { "Columns to show (the " (page::label(kind.title_field()).to_lowercase()) " is always shown)" }
                    @for def in defs {
                        @if def.name != kind.title_field() {
                            label class="check" {
                                input type="checkbox" name="cols" value=(def.name) checked[p.columns.iter().any(|c| c == def.name)];
                                " " (page::field_label(def))
                            }
                        }
                    }
                }
                button type="submit" { "Show columns" }
            }
        }
        @if total == 0 {
            p { (empty_sentence(kind, &p)) }
        } @else {
            p class="muted" id="list-count" {
                @if pages > 1 {
                    "Rows " (page_no * PAGE_ROWS + 1) "–" (page_no * PAGE_ROWS + shown.len()) " of " (total)
                } @else {
                    (total) " " (if total == 1 { page::singular(kind).to_lowercase() } else { page::plural(kind).to_lowercase() })
                }
            }
            div class="table-wrap" {
                table {
                    caption class="visually-hidden" { (title) }
                    thead { tr {
                        (header(kind.title_field()))
                        @for c in &p.columns { (header(c)) }
                    } }
                    tbody {
                        @for row in shown {
                            tr {
                                th scope="row" { a href=(link(row.view.id)) { (row.view.title()) } }
                                @for c in &p.columns {
                                    td { (cell(&row.view, def_of(c), c, repo, &link)) }
                                }
                            }
                        }
                    }
                }
            }
            @if pages > 1 {
                nav class="toolbar" aria-label="Pages" {
                    @if page_no > 0 {
                        a class="button secondary" href=(p.href(kind, |q| q.page = page_no - 1)) { "Previous page" }
                    }
                    span { "Page " (page_no + 1) " of " (pages) }
                    @if page_no + 1 < pages {
                        a class="button secondary" href=(p.href(kind, |q| q.page = page_no + 1)) { "Next page" }
                    }
                }
            }
        }
    };
    let crumbs = p.trail.crumbs(repo, &title);
    Ok(page::render(
        app,
        Page {
            title,
            nav: Nav::Kind(kind),
            crumbs,
            help: html! {
                p { "Every " (page::singular(kind).to_lowercase()) " on this node, from your private records and every space you share." }
                p { strong { "Filter" } " keeps rows with the text in any shown column. "
                    strong { "Field filter" } " keeps records whose field has a value, exactly like "
                    code { "rapport list " (kind.as_str()) " --where " (example_filter(kind)) }
                    "; a reference takes a name (" code { "company=Acme" } ")." }
                p { "Click a column heading to sort by it; click again to reverse. "
                    strong { "Columns" } " chooses what the table shows. The address keeps your choices: bookmark it." }
                p { strong { "Show deleted" } " lists deleted records; open one to restore it." }
            },
            body,
            watch: vec![kind.as_str().to_string()],
            since: app.read_since.clone(),
        },
    ))
}

fn example_filter(kind: Kind) -> &'static str {
    match kind {
        Kind::Company => "industry=Manufacturing",
        Kind::Person => "company=Acme",
        Kind::Deal => "amount>=10000",
        Kind::Activity => "type=task",
        Kind::Ticket => "priority=urgent",
        Kind::Campaign => "channel=email",
        Kind::Product => "category=Licences",
        Kind::LineItem => "deal=Rollout",
        Kind::Consent => "status=objected",
        Kind::Custom(_) => "name^=A",
    }
}

fn empty_sentence(kind: Kind, p: &ListParams) -> String {
    if !p.text.is_empty() || !p.filter.is_empty() {
        return format!("No {} match the filter.", page::plural(kind).to_lowercase());
    }
    if p.deleted {
        return format!("No deleted {}.", page::plural(kind).to_lowercase());
    }
    format!(
        "No {} yet. Create one with New {}, or join a space that has some.",
        page::plural(kind).to_lowercase(),
        page::singular(kind).to_lowercase()
    )
}

/// A cell as plain text: references by their records' titles.
fn cell_text(
    view: &RecordView,
    def: Option<&FieldDef>,
    field: &str,
    title_of: &mut dyn FnMut(RecordId) -> Option<String>,
) -> String {
    let Some(value) = view.get(field) else {
        return String::new();
    };
    let is_ref = def.is_some_and(|d| d.ty.ref_kinds().is_some());
    if !is_ref {
        return value.to_string();
    }
    value
        .as_text()
        .map(|s| vec![s.to_string()])
        .unwrap_or_else(|| value.as_list().to_vec())
        .iter()
        .map(|s| {
            s.parse()
                .ok()
                .and_then(&mut *title_of)
                .unwrap_or_else(|| s.clone())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn cell(
    view: &RecordView,
    def: Option<&FieldDef>,
    field: &str,
    repo: &rapport_node::Repo,
    link: &dyn Fn(RecordId) -> String,
) -> Markup {
    match (def, view.get(field)) {
        (Some(def), Some(value)) => {
            page::field_value(def, value, &|id| page::title_in(repo, id), link)
        }
        _ => html! {},
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::TestUi;

    fn position(body: &str, needle: &str) -> usize {
        body.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} is not on the page"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn companies_list_sorts_filters_and_chooses_columns() {
        let t = TestUi::start().await;
        let page = t.get("/k/company").await;
        assert_eq!(page.status, 200);
        let (acme, globex) = (
            position(&page.body, "Acme Corporation"),
            position(&page.body, "Globex"),
        );
        assert!(acme < globex, "sorted by name");
        assert!(page.body.contains("aria-sort=\"ascending\""));

        let desc = t.get("/k/company?sort=name&dir=desc").await;
        assert!(
            position(&desc.body, "Globex") < position(&desc.body, "Acme Corporation"),
            "reversed"
        );

        let filtered = t.get("/k/company?q=globex").await;
        assert!(filtered.body.contains("Globex"));
        assert!(!filtered.body.contains("Acme Corporation"));

        let cols = t.get("/k/company?cols=website&cols=phone").await;
        assert!(cols.body.contains(">Website"), "chosen column shown");
        assert!(!cols.body.contains(">Industry"), "unchosen column hidden");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn field_filters_work_like_the_cli_and_bad_ones_say_why() {
        let t = TestUi::start().await;
        let deals = t.get("/k/deal?where=company%3DAcme+Corporation").await;
        assert!(deals.body.contains("Acme plant rollout"), "{}", deals.body);
        assert!(!deals.body.contains("Globex"), "only Acme's deals");
        // The company column shows the company's name, not its id.
        assert!(deals.body.contains(">Acme Corporation</a>"));

        // Comparisons, as `--where amount>=40000`: by value, not as text.
        let big = t.get("/k/deal?where=amount%3E%3D40000").await;
        assert!(big.body.contains("Acme plant rollout"), "{}", big.body);
        assert!(big.body.contains("Globex grid pilot"));
        assert!(!big.body.contains("Initech licences"), "9000 < 40000");
        let acme = t.get("/k/deal?where=title%5E%3Dacme+p").await;
        assert!(acme.body.contains("Acme plant rollout"));
        assert!(!acme.body.contains("Acme support renewal"));

        let bad = t.get("/k/deal?where=colour%3Dred").await;
        assert_eq!(bad.status, 200);
        assert!(
            bad.body.contains("deal has no field `colour`"),
            "{}",
            bad.body
        );
        assert!(bad.body.contains("aria-invalid=\"true\""));

        let unknown = t.get("/k/spaceship").await;
        assert_eq!(unknown.status, 404);
        assert!(unknown.body.contains("unknown record kind `spaceship`"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deleted_records_are_listed_apart() {
        let t = TestUi::start().await;
        let repo = t.repo().clone();
        tokio::task::spawn_blocking(move || repo.delete("Globex"))
            .await
            .expect("task")
            .expect("delete");
        let live = t.get("/k/company").await;
        assert!(!live.body.contains("Globex"));
        let deleted = t.get("/k/company?deleted=1").await;
        assert!(deleted.body.contains("Globex"), "{}", deleted.body);
        assert!(deleted.body.contains("Deleted companies"));
    }
}
