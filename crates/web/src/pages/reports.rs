//! `GET /reports`: the reports `rapport report` prints, each section a
//! chart drawn on the server beside its table, with filters and a CSV
//! download of every section (`GET /reports.csv`).

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use maud::html;
use rapport_node::ops::{Reply, Request};
use rapport_node::reports::{Report, ReportName, ReportQuery};
use serde::Deserialize;

use crate::page::{self, Nav, Page, url_encode};
use crate::trail::Crumb;
use crate::{App, WebError};

/// The form's fields, as the query string carries them.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct ReportForm {
    name: Option<String>,
    from: Option<String>,
    to: Option<String>,
    owner: Option<String>,
    space: Option<String>,
    pipeline: Option<String>,
    days: Option<String>,
    abc: Option<String>,
    convert: Option<String>,
    customer: Option<String>,
    section: Option<usize>,
}

impl ReportForm {
    fn query(&self) -> Result<Option<ReportQuery>, WebError> {
        let Some(name) = self.name.as_deref().filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        let name: ReportName = name.parse().map_err(WebError::BadRequest)?;
        let text = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let days = match text(&self.days) {
            None => None,
            Some(d) => Some(d.trim().parse::<u32>().map_err(|_| {
                WebError::BadRequest(format!("days `{d}`: expected a whole number of days"))
            })?),
        };
        Ok(Some(ReportQuery {
            name,
            from: text(&self.from),
            to: text(&self.to),
            owner: text(&self.owner),
            space: text(&self.space),
            pipeline: text(&self.pipeline),
            days,
            abc: text(&self.abc),
            convert: self.convert.is_some(),
            customer: text(&self.customer),
        }))
    }

    /// The query string of this form, for the CSV links.
    fn encoded(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("name", &self.name),
            ("from", &self.from),
            ("to", &self.to),
            ("owner", &self.owner),
            ("space", &self.space),
            ("pipeline", &self.pipeline),
            ("days", &self.days),
            ("abc", &self.abc),
            ("convert", &self.convert),
            ("customer", &self.customer),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={}", url_encode(v)));
            }
        }
        parts.join("&")
    }
}

pub(crate) async fn page(
    State(app): State<App>,
    Query(form): Query<ReportForm>,
) -> Result<Html<String>, WebError> {
    app.blocking(move |app| render(app, &form)).await
}

/// `GET /reports.csv?name=…&section=N`: one section, for a spreadsheet.
pub(crate) async fn csv(State(app): State<App>, Query(form): Query<ReportForm>) -> Response {
    let made = app
        .blocking(move |app| {
            let Some(query) = form.query()? else {
                return Err(WebError::BadRequest("name the report: ?name=abc".into()));
            };
            let name = query.name;
            let report = run(app, query)?;
            let n = form.section.unwrap_or(1);
            let csv = report.section_csv(n).map_err(WebError::BadRequest)?;
            Ok((csv, format!("{name}-{n}.csv")))
        })
        .await;
    match made {
        Ok((csv, file)) => super::import::csv_response(csv, &file),
        Err(e) => e.into_response(),
    }
}

fn run(app: &App, query: ReportQuery) -> Result<Report, WebError> {
    match app.read(Request::Report(query))? {
        Reply::Report(r) => Ok(r),
        _ => Err(WebError::Internal(
            "the node answered something else".into(),
        )),
    }
}

fn render(app: &App, form: &ReportForm) -> Result<Html<String>, WebError> {
    let query = form.query()?;
    let report = query.clone().map(|q| run(app, q)).transpose()?;
    let chosen = query.as_ref().map(|q| q.name);
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let encoded = form.encoded();
    let body = html! {
        h1 { "Reports" }
        form class="report-form" method="get" action="/reports" {
            div class="field" {
                label for="report-name" { "Report" }
                select id="report-name" name="name" {
                    @for r in ReportName::ALL {
                        option value=(r.as_str()) selected[chosen == Some(r)] { (r.title()) }
                    }
                }
            }
            div class="field" { label for="report-from" { "From" } input id="report-from" type="date" name="from" value=(value(&form.from)); }
            div class="field" { label for="report-to" { "To" } input id="report-to" type="date" name="to" value=(value(&form.to)); }
            div class="field" { label for="report-owner" { "Owner" } input id="report-owner" name="owner" value=(value(&form.owner)); }
            div class="field" { label for="report-space" { "Space" } input id="report-space" name="space" placeholder="every space" value=(value(&form.space)); }
            div class="field" { label for="report-pipeline" { "Pipeline" } input id="report-pipeline" name="pipeline" placeholder="every pipeline" value=(value(&form.pipeline)); }
            div class="field" { label for="report-days" { "Quiet after (days, churn)" } input id="report-days" name="days" inputmode="numeric" placeholder="90" value=(value(&form.days)); }
            div class="field" { label for="report-abc" { "A and B end at (%, ABC)" } input id="report-abc" name="abc" placeholder="80,95" value=(value(&form.abc)); }
            div class="field" { label for="report-customer" { "Customer (cross-selling)" } input id="report-customer" name="customer" placeholder="the busiest customers" value=(value(&form.customer)); }
            div class="field" {
                label { input type="checkbox" name="convert" value="1" checked[form.convert.is_some()]; " Convert to one currency (" code { "rapport rates" } ")" }
            }
            button type="submit" { "Show" }
        }
        @match &report {
            None => {
                dl class="reports" {
                    @for r in ReportName::ALL {
                        dt { a href={ "/reports?name=" (r.as_str()) } { (r.title()) } }
                        dd { (r.about()) }
                    }
                }
            }
            Some(report) => {
                h2 { (report.title) }
                @for note in &report.notes { p class="note" { (note) } }
                @if report.sections.iter().all(|s| s.rows.is_empty()) {
                    p { "Nothing to report: no records match these filters." }
                }
                @for (i, s) in report.sections.iter().enumerate() {
                    section class="report-section" aria-labelledby={ "section-" (i + 1) } {
                        h3 id={ "section-" (i + 1) } { (s.title) }
                        @if s.rows.is_empty() {
                            p { "None." }
                        } @else {
                            @if let Some(chart) = crate::chart::svg(s, &format!("chart-{}", i + 1)) { (chart) }
                            p { a class="button secondary" href={ "/reports.csv?" (encoded) "&section=" (i + 1) } download { "Download CSV" } }
                            table class="list" {
                                thead { tr { @for c in &s.columns { th scope="col" { (c) } } } }
                                tbody {
                                    @for r in s.rows.iter().take(ROWS) {
                                        tr { @for c in r { td { (c) } } }
                                    }
                                }
                            }
                            @if s.rows.len() > ROWS {
                                p { "The first " (ROWS) " of " (s.rows.len()) " rows; the CSV has them all." }
                            }
                        }
                    }
                }
            }
        }
    };
    let title = report
        .as_ref()
        .map_or_else(|| "Reports".to_string(), |r| r.title.clone());
    let mut crumbs = vec![Crumb {
        label: "Reports".into(),
        href: report.as_ref().map(|_| "/reports".into()),
    }];
    if let Some(r) = &report {
        crumbs.push(Crumb {
            label: r.title.clone(),
            href: None,
        });
    }
    Ok(page::render(
        app,
        Page {
            title,
            nav: Nav::Reports,
            crumbs,
            help: html! {
                p { "Reports are computed on this device from the records it holds, also offline. Amounts are exact and kept per currency; tick “Convert” to add them up at the rates you set with " code { "rapport rates set USD=0.92 --base EUR" } "." }
                p { "From and To bound the close day of deals, the opening day of tickets and the start of campaigns. Each chart has its table below it; each table downloads as CSV. The same reports: " code { "rapport report NAME" } " and " code { "GET /api/v1/reports/NAME" } "." }
            },
            body,
            watch: vec!["*".into()],
            since: app.read_since.clone(),
        },
    ))
}

/// Most rows a table shows; the CSV has every one.
const ROWS: usize = 500;

#[cfg(test)]
mod tests {
    use crate::testing::TestUi;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reports_are_listed_drawn_beside_their_tables_and_downloaded() {
        let t = TestUi::start().await;
        let index = t.get("/reports").await;
        assert_eq!(index.status, 200);
        assert!(
            index.body.contains("ABC analysis of customers"),
            "{}",
            index.body
        );
        let page = t.get("/reports?name=abc").await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("<svg"), "{}", page.body);
        assert!(
            page.body.contains("Customers by won revenue"),
            "{}",
            page.body
        );
        assert!(
            page.body.contains("<th scope=\"col\">cumulative %</th>"),
            "{}",
            page.body
        );
        assert!(
            page.body.contains("/reports.csv?name=abc&amp;section=2"),
            "{}",
            page.body
        );
        let csv = t.get("/reports.csv?name=abc&section=2").await;
        assert_eq!(csv.status, 200);
        assert!(
            csv.body.starts_with("\u{FEFF}rank,customer,"),
            "{}",
            csv.body
        );
        let bad = t.get("/reports?name=abc&from=soon").await;
        assert_eq!(bad.status, 422, "{}", bad.body);
        assert!(bad.body.contains("2026-03-31"), "{}", bad.body);
        assert_eq!(t.get("/reports?name=pareto").await.status, 400);
        assert_eq!(t.get("/reports.csv?name=abc&section=99").await.status, 400);
    }
}
