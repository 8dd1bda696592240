//! `GET /board`: the pipeline board, one column per deal stage with the
//! stage's count, total and weighted total per currency (as `rapport
//! pipeline` adds them up), and below it the forecast by expected close
//! month. `POST /r/{id}/stage` moves a deal, from the card's form or by
//! drag and drop.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use rapport_model::custom::{Pipeline, SALES};
use rapport_model::{Kind, RecordId, RecordView};
use rapport_node::pipeline::{self, Money};
use serde::Deserialize;

use crate::page::{self, Nav, Page};
use crate::trail::{Step, Trail};
use crate::{App, WebError};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct BoardQuery {
    /// Only deals of this owner.
    owner: Option<String>,
    /// Only deals whose owner is the profile's name (`1`).
    mine: Option<String>,
    /// The deal just moved by the card's form, to confirm it.
    moved: Option<String>,
    /// The pipeline shown [default: sales].
    pipeline: Option<String>,
}

/// One deal as its card shows it.
#[derive(Debug)]
struct Card {
    id: RecordId,
    title: String,
    stage: String,
    company: Option<(RecordId, String)>,
    amount: Option<String>,
    close: Option<String>,
    owner: Option<String>,
}

/// What the page shows, read off the async threads.
#[derive(Debug)]
struct Board {
    me: Option<String>,
    /// Every owner named on a live deal, for the filter.
    owners: Vec<String>,
    /// The owner the board is narrowed to, if any.
    showing: Option<String>,
    cards: Vec<Card>,
    stages: Vec<pipeline::Stage>,
    forecast: Vec<pipeline::Month>,
    /// The deal named by `moved`: its title and stage now.
    moved: Option<(String, String)>,
    /// The pipeline shown, and every pipeline there is (name, title).
    pipeline: Pipeline,
    pipelines: Vec<(String, String)>,
}

pub(crate) async fn page(
    State(app): State<App>,
    Query(q): Query<BoardQuery>,
) -> Result<Html<String>, WebError> {
    let mine = q.mine.as_deref().is_some_and(|m| !m.is_empty() && m != "0");
    let owner = q
        .owner
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_string);
    let moved = q.moved.clone();
    let chosen = q.pipeline.clone().filter(|p| !p.trim().is_empty());
    // Before reading: the page's live updates resume from here.
    let since = app.live.cursor();
    let (board, crumbs) = app
        .blocking(move |app| {
            let board = read_board(app, mine, owner, moved.as_deref(), chosen.as_deref())?;
            let crumbs = Trail::default().crumbs(app.repo(), "Pipeline");
            Ok((board, crumbs))
        })
        .await?;
    let back = board_url(
        board.showing.as_deref(),
        mine && board.me.is_some(),
        &board.pipeline.name,
    );
    Ok(page::render(
        &app,
        Page {
            title: "Pipeline".into(),
            nav: Nav::Board,
            crumbs,
            help: help(),
            body: body(&board, mine, &back),
            watch: vec!["deal".into(), "company".into()],
            since: Some(since),
        },
    ))
}

fn read_board(
    app: &App,
    mine: bool,
    owner: Option<String>,
    moved: Option<&str>,
    chosen: Option<&str>,
) -> Result<Board, WebError> {
    let repo = &**app.repo();
    // Retired pipelines too: their deals stay, and still move.
    let pipelines: Vec<Pipeline> = repo.pipelines_in(None)?;
    let chosen = chosen.unwrap_or(SALES);
    let pipeline = pipelines
        .iter()
        .find(|p| p.name == chosen)
        .cloned()
        .ok_or_else(|| WebError::NotFound(format!("there is no pipeline `{chosen}`")))?;
    let me = repo
        .profile()
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    let deals = app.list(Kind::Deal, Vec::new(), false)?;
    let owners: BTreeSet<String> = deals
        .iter()
        .filter_map(|d| d.text("owner"))
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty())
        .collect();
    let showing = match (&me, mine) {
        (Some(me), true) => Some(me.clone()),
        _ => owner,
    };
    let deals: Vec<RecordView> = deals
        .into_iter()
        .filter(|d| match &showing {
            Some(o) => d.text("owner").is_some_and(|h| same_name(h, o)),
            None => true,
        })
        .filter(|d| pipeline::in_pipeline(d, &pipeline.name))
        .collect();
    let stages = pipeline::summarize(&deals, &pipeline);
    let forecast = pipeline::forecast(&deals, &pipeline);
    let mut titles: HashMap<RecordId, Option<String>> = HashMap::new();
    let mut cards: Vec<Card> = deals
        .iter()
        .map(|d| {
            let company = d
                .text("company")
                .and_then(|c| c.parse::<RecordId>().ok())
                .map(|c| {
                    let title = titles
                        .entry(c)
                        .or_insert_with(|| page::title_in(repo, c))
                        .clone()
                        .unwrap_or_else(|| c.to_string());
                    (c, title)
                });
            Card {
                id: d.id,
                title: d.title(),
                stage: stage_name(d, &pipeline),
                company,
                amount: d.text("amount").map(|a| match d.text("currency") {
                    Some(c) => format!("{a} {c}"),
                    None => a.to_string(),
                }),
                close: d.text("close").map(str::to_string),
                owner: d.text("owner").map(str::to_string),
            }
        })
        .collect();
    // Soonest to close first; deals without a date after them.
    cards.sort_by(|a, b| {
        (a.close.is_none(), &a.close, &a.title).cmp(&(b.close.is_none(), &b.close, &b.title))
    });
    let moved = moved
        .and_then(|m| m.parse::<RecordId>().ok())
        .and_then(|id| repo.view(id).ok().flatten())
        .filter(|v| v.kind == Kind::Deal)
        .map(|v| (v.title(), page::label(&stage_name(&v, &pipeline))));
    Ok(Board {
        me,
        owners: owners.into_iter().collect(),
        showing,
        cards,
        stages,
        forecast,
        moved,
        pipelines: pipelines
            .iter()
            .map(|p| (p.name.clone(), p.shown_title()))
            .collect(),
        pipeline,
    })
}

/// The column a deal is in: its stage, or the pipeline's first for one it
/// does not have (as [`pipeline::summarize`] counts it).
fn stage_name(d: &RecordView, p: &Pipeline) -> String {
    pipeline::stage_of(d, p).map_or_else(String::new, |s| s.name.clone())
}

/// Owners are typed by hand: "dana sales " is Dana Sales.
fn same_name(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// The board's address with its filters, for the cards' forms to return to.
fn board_url(owner: Option<&str>, mine: bool, pipeline: &str) -> String {
    let mut query = Vec::new();
    if pipeline != SALES {
        query.push(format!("pipeline={}", page::url_encode(pipeline)));
    }
    if mine {
        query.push("mine=1".into());
    } else if let Some(o) = owner {
        query.push(format!("owner={}", page::url_encode(o)));
    }
    if query.is_empty() {
        "/board".into()
    } else {
        format!("/board?{}", query.join("&"))
    }
}

fn body(b: &Board, mine: bool, back: &str) -> Markup {
    let mine = mine && b.me.is_some();
    let to_deal = Trail::default().then(Step::Board);
    html! {
        h1 { @if b.pipeline.name == SALES { "Pipeline" } @else { "Pipeline: " (b.pipeline.title()) } }
        @if let Some((title, stage)) = &b.moved {
            p class="flash" role="status" { "Moved " strong { (title) } " to " (stage) "." }
        }
        form class="toolbar" action="/board" method="get" {
            @if b.pipelines.len() > 1 {
                div class="field" {
                    label for="board-pipeline" { "Pipeline" }
                    select id="board-pipeline" name="pipeline" {
                        @for (name, title) in &b.pipelines {
                            option value=(name) selected[*name == b.pipeline.name] { (page::label(title)) }
                        }
                    }
                }
            }
            div class="field" {
                label for="board-owner" { "Owner" }
                select id="board-owner" name="owner" disabled[mine] {
                    option value="" selected[b.showing.is_none()] { "Everyone" }
                    @for o in &b.owners {
                        option value=(o) selected[!mine && b.showing.as_deref().is_some_and(|s| same_name(s, o))] { (o) }
                    }
                    @if let Some(s) = &b.showing {
                        @if !mine && !b.owners.iter().any(|o| same_name(o, s)) {
                            option value=(s) selected { (s) }
                        }
                    }
                }
            }
            @if let Some(me) = &b.me {
                div class="field" {
                    label {
                        input type="checkbox" name="mine" value="1" checked[mine];
                        " Only mine (" (me) ")"
                    }
                }
            }
            button type="submit" { "Show" }
            @if b.showing.is_some() {
                a href=(board_url(None, false, &b.pipeline.name)) { "Show everyone's deals" }
            }
        }
        @if b.me.is_none() {
            p class="hint" { "To see only your own deals, set your name with " code { "rapport init --name \"Your Name\"" } " and put it in the deals' Owner field." }
        }
        @if b.cards.is_empty() {
            p class="notice" {
                @match &b.showing {
                    Some(o) => { "No deals are owned by " (o) ". " a href="/board" { "Show everyone's deals" } " or " },
                    None => "No deals yet. ",
                }
                a href="/new/deal" { "add a deal" } "."
            }
        }
        div class="board" {
            @for s in &b.stages {
                (column(s, b.cards.iter().filter(|c| c.stage == s.stage), &b.pipeline, &to_deal, back))
            }
        }
        (forecast(&b.forecast))
    }
}

fn column<'a>(
    s: &pipeline::Stage,
    cards: impl Iterator<Item = &'a Card>,
    p: &Pipeline,
    to_deal: &Trail,
    back: &str,
) -> Markup {
    let heading = format!("stage-{}", s.stage);
    let mut cards = cards.peekable();
    html! {
        section class="column" data-stage=(s.stage) aria-labelledby=(heading) {
            h2 id=(heading) { (page::label(&s.stage)) }
            p class="sums" {
                (s.count) " " (if s.count == 1 { "deal" } else { "deals" })
                @for (cur, m) in &s.currencies {
                    br;
                    (money(cur, m))
                }
            }
            @if cards.peek().is_none() {
                p class="muted" { "No deals in this stage." }
            }
            @for c in cards {
                (card(c, p, to_deal, back))
            }
        }
    }
}

fn money(cur: &str, m: &Money) -> Markup {
    html! { span { (m.total) " " (cur) } " " span { "(weighted " (m.weighted) ")" } }
}

fn card(c: &Card, p: &Pipeline, to_deal: &Trail, back: &str) -> Markup {
    let select = format!("move-{}", c.id);
    html! {
        article class="card" draggable="true" data-id=(c.id) {
            h3 { a href=(to_deal.link(&format!("/r/{}", c.id))) { (c.title) } }
            @if let Some((id, title)) = &c.company {
                p { a href=(to_deal.link(&format!("/r/{id}"))) { (title) } }
            }
            @if let Some(a) = &c.amount { p { (a) } }
            p class="muted" {
                @match &c.close {
                    Some(d) => { "Closes " time datetime=(d) { (d) } },
                    None => "No close date",
                }
                @if let Some(o) = &c.owner { " · " (o) }
            }
            form method="post" action={ "/r/" (c.id) "/stage" } {
                input type="hidden" name="back" value=(back);
                label class="visually-hidden" for=(select) { "Stage of " (c.title) }
                select id=(select) name="stage" {
                    @for s in &p.stages {
                        option value=(s.name) selected[s.name == c.stage] { (page::label(&s.name)) }
                    }
                }
                button type="submit" { "Move" span class="visually-hidden" { " " (c.title) } }
            }
        }
    }
}

fn forecast(months: &[pipeline::Month]) -> Markup {
    let lines = |m: &BTreeMap<String, String>| {
        html! {
            @for (n, (cur, total)) in m.iter().enumerate() {
                @if n > 0 { br; }
                (total) " " (cur)
            }
        }
    };
    html! {
        h2 id="forecast" { "Forecast by expected close month" }
        @if months.is_empty() {
            p { "Nothing to forecast: there are no open or won deals." }
        } @else {
            p class="muted" { "Open deals (not won or lost) by the month of their close date. Weighted: amount × chance to win." }
            div class="table-wrap" {
                table aria-labelledby="forecast" {
                    thead {
                        tr {
                            th scope="col" { "Month" }
                            th scope="col" { "Open deals" }
                            th scope="col" { "Total" }
                            th scope="col" { "Weighted" }
                            th scope="col" { "Won" }
                        }
                    }
                    tbody {
                        @for m in months {
                            tr data-month=(m.month.as_deref().unwrap_or("none")) {
                                th scope="row" { (m.month.as_deref().unwrap_or("No date")) }
                                td { (m.open) }
                                td { (lines(&m.currencies.iter().map(|(c, v)| (c.clone(), v.total.clone())).collect())) }
                                td { (lines(&m.currencies.iter().map(|(c, v)| (c.clone(), v.weighted.clone())).collect())) }
                                td {
                                    @if m.won > 0 {
                                        (m.won) " won"
                                        @if !m.won_totals.is_empty() { br; (lines(&m.won_totals)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn help() -> Markup {
    html! {
        p { "The pipeline shows every deal by stage, from a first lead to won or lost. Each column adds up its deals: how many, their total value, and the weighted total: the value times the chance to win (10 % for a lead, 50 % at proposal, 100 % when won, unless the deal sets its own), which is what you can expect to bring in." }
        p { "To move a deal, drag its card to another column, or choose the stage in the card's menu and press " strong { "Move" } " (this works with the keyboard). Open a deal by its title." }
        p { strong { "Owner" } " and " strong { "Only mine" } " narrow the board to one person's deals: those whose Owner field is that name." }
        p { "The forecast below adds up open deals by the month they are expected to close (the deal's Close date); deals without one are counted under No date. Won deals are counted apart, and lost ones left out." }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct MoveForm {
    #[serde(default)]
    stage: String,
    back: Option<String>,
}

pub(crate) async fn move_deal(
    State(app): State<App>,
    Path(id): Path<String>,
    Form(f): Form<MoveForm>,
) -> Result<Response, WebError> {
    let stage = f.stage;
    let moved = app
        .blocking(move |app| {
            Ok(app.write(rapport_node::ops::Request::Edit {
                record: id,
                set: vec![("stage".into(), stage)],
                unset: Vec::new(),
            })?)
        })
        .await?;
    let back = crate::redirect::local_or(f.back.as_deref(), "/board");
    // The board confirms the move to whoever used the form (without
    // JavaScript, the redirect is all they see of it).
    let to = if back == "/board" || back.starts_with("/board?") {
        with_param(back, "moved", &moved.id.to_string())
    } else {
        back.to_string()
    };
    Ok(Redirect::to(&to).into_response())
}

/// `url` with `key=value` set (replacing an earlier one).
fn with_param(url: &str, key: &str, value: &str) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(key))
        .map(str::to_string)
        .collect();
    pairs.push(format!("{key}={}", page::url_encode(value)));
    format!("{path}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestUi;
    use rapport_model::SpaceId;

    /// The HTML of the column of `stage`.
    fn column_html<'a>(body: &'a str, stage: &str) -> &'a str {
        let start = body
            .find(&format!("data-stage=\"{stage}\""))
            .unwrap_or_else(|| panic!("no column {stage}: {body}"));
        let rest = &body[start..];
        let end = rest.find("</section>").expect("column ends");
        &rest[..end]
    }

    /// An admin adds a pipeline on the Fields page; a deal made in it is
    /// on that pipeline's board, in its stages, weighted by their
    /// probabilities, and not on the sales board; moving it offers its
    /// pipeline's stages and comes back to its board.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pipeline_added_on_the_fields_page_has_its_own_board() {
        let t = TestUi::start().await;
        let bad = t
            .post(
                "/fields",
                &[
                    ("space", "private"),
                    ("op", "set_pipeline"),
                    ("name", "renewals"),
                    ("stages", "due:60, renewed:won"),
                ],
            )
            .await;
        assert_eq!(bad.status, 422);
        assert!(bad.body.contains("is not a stage"), "{}", bad.body);
        let added = t
            .post(
                "/fields",
                &[
                    ("space", "private"),
                    ("op", "set_pipeline"),
                    ("name", "renewals"),
                    ("label", "Renewals"),
                    (
                        "stages",
                        "due:60, quoted:85, renewed:100:won, churned:0:lost",
                    ),
                ],
            )
            .await;
        assert_eq!(added.status, 303, "{}", added.body);
        let fields = t.get("/fields").await;
        assert!(
            fields.body.contains("due:60, quoted:85, renewed:100:won"),
            "{}",
            fields.body
        );
        let made = t
            .post(
                "/new/deal",
                &[
                    ("space", "private"),
                    ("title", "Acme renewal"),
                    ("company", "Acme Corporation"),
                    ("pipeline", "renewals"),
                    ("amount", "1000"),
                    ("currency", "EUR"),
                ],
            )
            .await;
        assert_eq!(made.status, 303, "{}", made.body);

        let board = t.get("/board?pipeline=renewals").await;
        assert_eq!(board.status, 200, "{}", board.body);
        assert!(board.body.contains("Pipeline: Renewals"), "{}", board.body);
        assert!(
            board.body.contains("id=\"board-pipeline\""),
            "a pipeline chooser"
        );
        let due = column_html(&board.body, "due");
        assert!(due.contains("Acme renewal"), "{due}");
        assert!(due.contains("(weighted 600.00)"), "{due}");
        assert!(
            due.contains("value=\"quoted\""),
            "the card moves within its pipeline: {due}"
        );
        assert!(!due.contains("value=\"proposal\""), "{due}");
        let sales = t.get("/board").await;
        assert!(
            !sales.body.contains("Acme renewal"),
            "a renewal on the sales board"
        );
        assert_eq!(t.get("/board?pipeline=nothing").await.status, 404);

        let deal = t.repo().resolve("Acme renewal").expect("deal");
        let moved = t
            .post(
                &format!("/r/{}/stage", deal.id),
                &[("stage", "quoted"), ("back", "/board?pipeline=renewals")],
            )
            .await;
        assert_eq!(moved.status, 303, "{}", moved.body);
        let board = t.get("/board?pipeline=renewals").await;
        assert!(column_html(&board.body, "quoted").contains("Acme renewal"));
    }

    fn input(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn board_shows_every_stage_with_its_deals_and_sums() {
        let t = TestUi::start().await;
        let page = t.get("/board").await;
        assert_eq!(page.status, 200, "{}", page.body);
        for s in rapport_model::schema::DEAL_STAGES {
            assert!(
                page.body
                    .contains(&format!("<section class=\"column\" data-stage=\"{s}\"")),
                "column {s}"
            );
        }
        let deal = t.repo().resolve("Acme plant rollout").expect("deal");
        let negotiation = column_html(&page.body, "negotiation");
        assert!(
            negotiation.contains(&format!(
                "<article class=\"card\" draggable=\"true\" data-id=\"{}\"",
                deal.id
            )),
            "{negotiation}"
        );
        assert!(negotiation.contains("Acme Corporation"), "{negotiation}");
        assert!(negotiation.contains("1 deal<br>"), "{negotiation}");
        assert!(
            negotiation.contains("<span>48000.00 EUR</span> <span>(weighted 36000.00)</span>"),
            "{negotiation}"
        );
        assert!(negotiation.contains("Stage of Acme plant rollout"));
        assert!(!column_html(&page.body, "lead").contains("Acme plant rollout"));
        assert!(page.body.contains("My work"), "breadcrumbs");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn moving_a_deal_changes_its_stage_and_a_bad_stage_is_refused() {
        let t = TestUi::start().await;
        let deal = t.repo().resolve("Initech licences").expect("deal");
        let path = format!("/r/{}/stage", deal.id);
        let moved = t
            .post(&path, &[("stage", "proposal"), ("back", "/board?owner=x")])
            .await;
        assert_eq!(moved.status, 303, "{}", moved.body);
        assert_eq!(
            moved.header("location"),
            Some(format!("/board?owner=x&moved={}", deal.id).as_str())
        );
        let now = t.repo().resolve(&deal.id.to_string()).expect("deal");
        assert_eq!(now.text("stage"), Some("proposal"));
        let board = t.get(&format!("/board?moved={}", deal.id)).await;
        assert!(column_html(&board.body, "proposal").contains("Initech licences"));
        assert!(!column_html(&board.body, "lead").contains("Initech licences"));
        assert!(
            board
                .body
                .contains("Moved <strong>Initech licences</strong> to Proposal.")
        );

        // Another site's address is not followed.
        let away = t
            .post(
                &path,
                &[("stage", "qualified"), ("back", "//evil.example/")],
            )
            .await;
        assert_eq!(away.status, 303);
        assert!(
            away.header("location")
                .is_some_and(|l| l.starts_with("/board?moved=")),
            "{:?}",
            away.header("location")
        );

        let bad = t.post(&path, &[("stage", "maybe")]).await;
        assert_eq!(bad.status, 422, "{}", bad.body);
        assert!(
            bad.body.contains(
                "invalid stage `maybe`: choose one of lead, qualified, proposal, negotiation, won, lost"
            ),
            "{}",
            bad.body
        );
        let still = t.repo().resolve(&deal.id.to_string()).expect("deal");
        assert_eq!(still.text("stage"), Some("qualified"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn owner_filters_and_forecast_groups_by_close_month() {
        let t = TestUi::start().await;
        for (title, amount, close, stage) in [
            ("Far deal one", "1000", "2031-05-03", "proposal"),
            ("Far deal two", "3000", "2031-05-28", "lead"),
            ("Far deal won", "700", "2031-05-10", "won"),
            ("Farther deal", "50", "2031-06-01", "lead"),
        ] {
            t.repo()
                .create(
                    Kind::Deal,
                    SpaceId::Private,
                    &input(&[
                        ("title", title),
                        ("company", "Globex"),
                        ("amount", amount),
                        ("currency", "EUR"),
                        ("close", close),
                        ("stage", stage),
                        ("owner", "Dana Sales"),
                    ]),
                )
                .expect("deal");
        }
        let page = t.get("/board").await;
        let may_start = page
            .body
            .find("<tr data-month=\"2031-05\"")
            .expect("a row for May 2031");
        let may = &page.body[may_start..];
        let may = &may[..may.find("</tr>").expect("row ends")];
        assert!(may.contains("<td>2</td>"), "two open deals: {may}");
        assert!(may.contains("4000.00 EUR"), "{may}");
        // 1000 × 50 % + 3000 × 10 %
        assert!(may.contains("800.00 EUR"), "{may}");
        assert!(may.contains("1 won"), "{may}");
        assert!(may.contains("700.00 EUR"), "{may}");
        let june = page.body.find("data-month=\"2031-06\"").expect("June");
        let undated = page.body.find("data-month=\"none\"").expect("no date row");
        assert!(
            may_start < june && june < undated,
            "months in order, no date last"
        );

        let mine = t.get("/board?mine=1").await;
        assert!(mine.body.contains("Far deal one"));
        assert!(!mine.body.contains("Acme plant rollout"));
        let theirs = t.get("/board?owner=nobody").await;
        assert!(theirs.body.contains("No deals are owned by nobody"));
        assert!(!theirs.body.contains("Far deal one"));
    }
}
