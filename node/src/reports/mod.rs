//! Reports: what a sales or service lead reads the business from, computed
//! on this node from the records it holds, offline. Each report is a pure
//! function of the records, the pipelines, the day and the user's exchange
//! rates ([`run`]); its answer is a [`Report`], titled sections of rows
//! (exact decimal text for money) with the chart each one is drawn as, so
//! that the CLI prints it, the web UI draws it and the API returns it
//! without knowing one report from another.
//!
//! Money is never added across currencies silently: every sum is kept per
//! currency (a section per currency where a report ranks by money), or,
//! when asked (`convert`), converted to the base currency of
//! [`Rates`] with the note saying at which rates; a currency without a
//! rate stays apart.

mod cross_sell;
mod customers;
mod rates;
mod sales;
mod service;

use std::collections::BTreeMap;
use std::fmt;

use jiff::civil::Date;
use rapport_model::custom::{Outcome, Pipeline, StageDef};
use rapport_model::{Decimal, Kind, RecordId, RecordView};

pub use rates::Rates;

/// The reports there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportName {
    WinRate,
    Forecast,
    Abc,
    Rfm,
    Churn,
    Service,
    Campaigns,
    CrossSell,
}

impl ReportName {
    pub const ALL: [ReportName; 8] = [
        ReportName::WinRate,
        ReportName::Forecast,
        ReportName::Abc,
        ReportName::Rfm,
        ReportName::Churn,
        ReportName::Service,
        ReportName::Campaigns,
        ReportName::CrossSell,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportName::WinRate => "win-rate",
            ReportName::Forecast => "forecast",
            ReportName::Abc => "abc",
            ReportName::Rfm => "rfm",
            ReportName::Churn => "churn",
            ReportName::Service => "service",
            ReportName::Campaigns => "campaigns",
            ReportName::CrossSell => "cross-sell",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ReportName::WinRate => "Win rate and sales cycle",
            ReportName::Forecast => "Forecast",
            ReportName::Abc => "ABC analysis of customers",
            ReportName::Rfm => "RFM segments",
            ReportName::Churn => "Churn risk",
            ReportName::Service => "Service",
            ReportName::Campaigns => "Campaigns",
            ReportName::CrossSell => "Cross-selling",
        }
    }

    /// The kinds of records it reads.
    pub fn kinds(self) -> &'static [Kind] {
        match self {
            ReportName::WinRate | ReportName::Forecast => &[Kind::Deal],
            ReportName::Abc => &[Kind::Deal, Kind::Company],
            ReportName::Rfm | ReportName::Churn => {
                &[Kind::Deal, Kind::Company, Kind::Activity, Kind::Ticket]
            }
            ReportName::Service => &[Kind::Ticket, Kind::Activity],
            ReportName::Campaigns => &[Kind::Campaign, Kind::Deal],
            ReportName::CrossSell => &[Kind::Deal, Kind::LineItem, Kind::Product, Kind::Company],
        }
    }

    /// The reference fields whose records it reads too, whatever their
    /// kind: the people an activity is about (it counts for their
    /// company), a campaign's members (their deals and companies). Read
    /// by id, so that a report does not read every person there is.
    pub fn follows(self) -> &'static [(Kind, &'static str)] {
        match self {
            ReportName::Rfm | ReportName::Churn => &[(Kind::Activity, "about")],
            ReportName::Campaigns => &[(Kind::Campaign, "members")],
            _ => &[],
        }
    }

    /// One line on what it answers (CLI help, the web page's chooser).
    pub fn about(self) -> &'static str {
        match self {
            ReportName::WinRate => {
                "won and lost deals by owner, pipeline and month, the days they took, and pipeline velocity"
            }
            ReportName::Forecast => {
                "open deals by expected close month and owner: best case, committed, weighted, and won so far"
            }
            ReportName::Abc => {
                "customers ranked by won revenue: A the top 80 %, B the next 15 %, C the rest"
            }
            ReportName::Rfm => {
                "customers by recency, frequency and money of their won deals, in named segments"
            }
            ReportName::Churn => {
                "customers going quiet: no activity for days, buying less often, open urgent tickets"
            }
            ReportName::Service => {
                "tickets by status and priority, time to first response and to resolution, backlog by month"
            }
            ReportName::Campaigns => "members, deals influenced and won revenue of each campaign",
            ReportName::CrossSell => {
                "products bought together (support, confidence, lift), and what a customer's look-alikes bought"
            }
        }
    }
}

impl fmt::Display for ReportName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ReportName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_lowercase().replace('_', "-");
        ReportName::ALL
            .into_iter()
            .find(|r| {
                r.as_str() == s
                    || (s == "winrate" && *r == ReportName::WinRate)
                    || (matches!(s.as_str(), "crosssell" | "cross-selling")
                        && *r == ReportName::CrossSell)
            })
            .ok_or_else(|| {
                let names: Vec<&str> = ReportName::ALL.iter().map(|r| r.as_str()).collect();
                format!("there is no report `{s}`: use one of {}", names.join(", "))
            })
    }
}

/// What a user asks for, as typed (the CLI's flags, the API's query, the
/// web page's form); [`ReportQuery::check`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportQuery {
    pub name: ReportName,
    /// First day counted, `YYYY-MM-DD` (see each report for which date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Last day counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Only deals, tickets, campaigns (and, for churn, customers) with
    /// this owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Only the records of this space (its name or id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
    /// Only deals of this pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// Churn: days without activity that make a customer quiet [90].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    /// ABC: the cumulative shares that end A and B, `80,95`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abc: Option<String>,
    /// Convert amounts to the base currency at the user's rates.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub convert: bool,
    /// Cross-selling: the customer (a company's name or id) to suggest
    /// products for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}

impl ReportQuery {
    pub fn new(name: ReportName) -> Self {
        ReportQuery {
            name,
            from: None,
            to: None,
            owner: None,
            space: None,
            pipeline: None,
            days: None,
            abc: None,
            convert: false,
            customer: None,
        }
    }

    /// The query read, or the field that is wrong and why.
    pub fn check(&self) -> Result<Checked, (&'static str, String)> {
        let date = |field: &'static str, v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<Date>().map_err(|_| {
                        (
                            field,
                            format!("--{field} {s}: expected a day such as 2026-03-31"),
                        )
                    })
                })
                .transpose()
        };
        let (from, to) = (date("from", &self.from)?, date("to", &self.to)?);
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(("to", format!("--to {t} is before --from {f}")));
        }
        let abc = match self.abc.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => (80, 95),
            Some(s) => {
                let bad = || {
                    (
                        "abc",
                        format!("--abc {s}: expected the shares that end A and B, such as 80,95"),
                    )
                };
                let (a, b) = s.split_once(',').ok_or_else(bad)?;
                let a: u8 = a.trim().trim_end_matches('%').parse().map_err(|_| bad())?;
                let b: u8 = b.trim().trim_end_matches('%').parse().map_err(|_| bad())?;
                if !(0 < a && a < b && b <= 100) {
                    return Err(bad());
                }
                (a, b)
            }
        };
        let days = self.days.unwrap_or(90);
        if days == 0 {
            return Err(("days", "--days must be at least 1".into()));
        }
        let words = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_lowercase)
        };
        Ok(Checked {
            name: self.name,
            from,
            to,
            owner: words(&self.owner),
            pipeline: words(&self.pipeline),
            days,
            abc,
            convert: self.convert,
            customer: words(&self.customer),
        })
    }
}

/// A query read: dates parsed, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub name: ReportName,
    pub from: Option<Date>,
    pub to: Option<Date>,
    /// Lower case.
    pub owner: Option<String>,
    /// Lower case; matched against a pipeline's name or label.
    pub pipeline: Option<String>,
    pub days: u32,
    /// Cumulative percentages ending class A and class B.
    pub abc: (u8, u8),
    pub convert: bool,
    /// Lower case: a company's name or id.
    pub customer: Option<String>,
}

impl Checked {
    fn within(&self, day: Date) -> bool {
        self.from.is_none_or(|f| day >= f) && self.to.is_none_or(|t| day <= t)
    }

    fn owned(&self, v: &RecordView) -> bool {
        self.owner.as_deref().is_none_or(|o| {
            v.text("owner")
                .is_some_and(|own| own.trim().to_lowercase() == o)
        })
    }
}

/// A report's answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub name: ReportName,
    pub title: String,
    /// What the reader must know: the currencies, what was left out.
    pub notes: Vec<String>,
    pub sections: Vec<Section>,
}

impl Report {
    /// Section `n` (counted from 1, as the CLI numbers them) as CSV, for
    /// a spreadsheet; or what to ask for instead.
    pub fn section_csv(&self, n: usize) -> Result<Vec<u8>, String> {
        let Some(section) = n.checked_sub(1).and_then(|i| self.sections.get(i)) else {
            return Err(format!(
                "section {n}: the {} report has {} section{} here, counted from 1",
                self.name,
                self.sections.len(),
                plural(self.sections.len())
            ));
        };
        rapport_exchange::write_table(Vec::new(), &section.columns, section.rows.iter().cloned())
            .map_err(|e| e.to_string())
    }
}

/// One table of a report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Section {
    pub title: String,
    pub columns: Vec<String>,
    /// Cells as shown: amounts as exact decimals, percentages with one
    /// decimal, "–" where there is nothing to show.
    pub rows: Vec<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<Chart>,
}

/// How a section is drawn: a bar per row, labelled by one column, bars
/// from others, and a line (a percentage, 0 to 100) from another.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chart {
    pub label: usize,
    pub bars: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// What a report is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Live records the caller may see (of the space asked for).
    pub records: &'a [RecordView],
    /// Every pipeline of the spaces they are in.
    pub pipelines: &'a [Pipeline],
    /// The day it is, in UTC.
    pub today: Date,
    pub rates: Option<&'a Rates>,
}

/// Computes the report asked for.
pub fn run(q: &Checked, inputs: &Inputs<'_>) -> Report {
    let mut book = Book::new(q, inputs.rates);
    let data = Data::new(q, inputs);
    let sections = match q.name {
        ReportName::WinRate => sales::win_rate(q, &data, &mut book),
        ReportName::Forecast => sales::forecast(q, &data, &mut book),
        ReportName::Abc => customers::abc(q, &data, &mut book),
        ReportName::Rfm => customers::rfm(q, &data, &mut book),
        ReportName::Churn => customers::churn(q, &data, &mut book),
        ReportName::Service => service::service(q, &data),
        ReportName::Campaigns => sales::campaigns(q, &data, &mut book),
        ReportName::CrossSell => cross_sell::cross_sell(q, &data),
    };
    let mut notes = data.notes;
    notes.extend(book.notes());
    Report {
        name: q.name,
        title: q.name.title().into(),
        notes,
        sections,
    }
}

/// A deal as the reports read it.
#[derive(Debug, Clone)]
pub(crate) struct Deal<'a> {
    pub view: &'a RecordView,
    pub stage: Option<StageDef>,
    /// The stage's place in its pipeline and whether it is at or past the
    /// one a forecast calls committed.
    pub committed: bool,
    pub amount: Option<(Decimal, &'a str)>,
    pub created: Date,
    /// The close date, or for a closed deal without one, the day of its
    /// last change.
    pub close: Option<Date>,
    pub company: Option<RecordId>,
}

impl Deal<'_> {
    pub fn outcome(&self) -> Option<Outcome> {
        self.stage.as_ref().and_then(|s| s.outcome)
    }

    /// Its probability: its own if set, else its stage's.
    pub fn probability(&self) -> i64 {
        match self.view.get("probability") {
            Some(rapport_model::FieldValue::Int(p)) => *p,
            _ => self.stage.as_ref().map_or(0, |s| s.probability),
        }
    }

    pub fn owner(&self) -> String {
        owner_of(self.view)
    }
}

pub(crate) fn owner_of(v: &RecordView) -> String {
    v.text("owner")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("(no owner)")
        .to_string()
}

/// The records of a report, by kind, with deals read once.
pub(crate) struct Data<'a> {
    pub deals: Vec<Deal<'a>>,
    pub by_kind: BTreeMap<&'static str, Vec<&'a RecordView>>,
    pub titles: BTreeMap<RecordId, String>,
    pub today: Date,
    pub notes: Vec<String>,
}

impl<'a> Data<'a> {
    fn new(q: &Checked, inputs: &Inputs<'a>) -> Self {
        let mut by_kind: BTreeMap<&'static str, Vec<&'a RecordView>> = BTreeMap::new();
        let mut titles = BTreeMap::new();
        for v in inputs.records.iter().filter(|v| !v.deleted) {
            if matches!(
                v.kind,
                Kind::Company | Kind::Person | Kind::Campaign | Kind::Product
            ) {
                titles.insert(v.id, v.title());
            }
            if !v.kind.is_custom() {
                by_kind.entry(v.kind.as_str()).or_default().push(v);
            }
        }
        let sales = Pipeline::sales();
        let pipeline_of = |name: &str| -> &Pipeline {
            inputs
                .pipelines
                .iter()
                .find(|p| p.name == name)
                .unwrap_or(&sales)
        };
        let mut notes = Vec::new();
        let wanted = q.pipeline.as_deref().map(|p| {
            inputs
                .pipelines
                .iter()
                .chain(std::iter::once(&sales))
                .find(|x| x.name == p || x.label.to_lowercase() == p)
                .map_or(p.to_string(), |x| x.name.clone())
        });
        let mut no_amount = 0;
        let deals = by_kind
            .get(Kind::Deal.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            // Churn asks about a customer's owner, not its deals'.
            .filter(|d| q.name == ReportName::Churn || q.owned(d))
            .filter(|d| {
                let name = d.text("pipeline").unwrap_or(rapport_model::custom::SALES);
                wanted.as_deref().is_none_or(|w| w == name)
            })
            .map(|d| {
                let pipeline =
                    pipeline_of(d.text("pipeline").unwrap_or(rapport_model::custom::SALES));
                let stage = crate::pipeline::stage_of(d, pipeline).cloned();
                let committed = stage.as_ref().is_some_and(|s| committed(pipeline, s));
                let amount = d
                    .text("amount")
                    .and_then(|a| a.parse::<Decimal>().ok())
                    .zip(d.text("currency"));
                if amount.is_none() {
                    no_amount += 1;
                }
                let closed = stage.as_ref().is_some_and(|s| s.outcome.is_some());
                let close = d
                    .text("close")
                    .and_then(|c| c.parse::<Date>().ok())
                    .or_else(|| closed.then(|| day_of_seconds(d.updated)));
                Deal {
                    view: d,
                    stage,
                    committed,
                    amount,
                    created: day_of_ms(d.id.unix_ms()),
                    close,
                    company: d.text("company").and_then(|c| c.parse().ok()),
                }
            })
            .collect();
        if no_amount > 0
            && matches!(
                q.name,
                ReportName::Forecast | ReportName::Abc | ReportName::Rfm | ReportName::WinRate
            )
        {
            notes.push(format!(
                "{no_amount} deal{} without an amount and currency count{} in no sum.",
                plural(no_amount),
                if no_amount == 1 { "s" } else { "" }
            ));
        }
        Data {
            deals,
            by_kind,
            titles,
            today: inputs.today,
            notes,
        }
    }

    pub fn of(&self, kind: Kind) -> &[&'a RecordView] {
        self.by_kind
            .get(kind.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn title(&self, id: RecordId) -> String {
        self.titles
            .get(&id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }
}

/// Whether a forecast counts a stage as committed: at or past the
/// pipeline's `negotiation` stage, or, in a pipeline without one, a
/// probability of 75 % or more.
fn committed(pipeline: &Pipeline, stage: &StageDef) -> bool {
    if stage.outcome.is_some() {
        return false;
    }
    let at = |name: &str| pipeline.stages.iter().position(|s| s.name == name);
    match (at("negotiation"), at(&stage.name)) {
        (Some(n), Some(i)) => i >= n,
        _ => stage.probability >= 75,
    }
}

/// Where money goes: per currency, or converted to the base currency.
pub(crate) struct Book<'a> {
    rates: Option<&'a Rates>,
    convert: bool,
    /// Currencies seen, and whether each was converted.
    seen: BTreeMap<String, bool>,
}

impl<'a> Book<'a> {
    fn new(q: &Checked, rates: Option<&'a Rates>) -> Self {
        Book {
            rates,
            convert: q.convert,
            seen: BTreeMap::new(),
        }
    }

    /// The currency an amount is counted in, and the amount in it.
    pub fn count(&mut self, amount: Decimal, currency: &str) -> (String, Decimal) {
        if self.convert
            && let Some(rates) = self.rates
            && let Some(converted) = rates.convert(amount, currency)
        {
            self.seen.insert(currency.to_string(), true);
            return (rates.base.clone(), converted);
        }
        self.seen.insert(currency.to_string(), false);
        (currency.to_string(), amount)
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let apart: Vec<&str> = self
            .seen
            .iter()
            .filter(|(_, c)| !**c)
            .map(|(c, _)| c.as_str())
            .collect();
        match (self.convert, self.rates) {
            (true, Some(rates)) => {
                notes.push(format!(
                    "Amounts are converted to {} at the rates set on {}: {}.",
                    rates.base,
                    rates.set,
                    rates.describe()
                ));
                if !apart.is_empty() {
                    notes.push(format!(
                        "No rate for {}: shown apart (rapport rates set {}=RATE --base {}).",
                        apart.join(", "),
                        apart[0],
                        rates.base
                    ));
                }
            }
            (true, None) => notes.push(
                "No exchange rates are set (rapport rates set USD=0.92 --base EUR): amounts are per currency.".into(),
            ),
            (false, _) if self.seen.len() > 1 => notes.push(format!(
                "Amounts are per currency ({}); --convert adds them up at the rates of `rapport rates`.",
                apart.join(", ")
            )),
            _ => {}
        }
        notes
    }
}

/// Sums per currency, as one cell: `1200.00 EUR; 300.00 USD`.
pub(crate) fn amounts_cell(sums: &BTreeMap<String, Decimal>) -> String {
    if sums.is_empty() {
        return "–".into();
    }
    sums.iter()
        .map(|(c, a)| format!("{a} {c}"))
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) fn add(sums: &mut BTreeMap<String, Decimal>, currency: String, amount: Decimal) {
    let s = sums.entry(currency).or_default();
    *s = *s + amount;
}

/// `part / whole` as a percentage with one decimal, "–" for none.
pub(crate) fn percent(part: i128, whole: i128) -> String {
    if whole <= 0 {
        return "–".into();
    }
    let tenths = (part * 2000 + whole) / (2 * whole);
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// The median, with one decimal, "–" for none.
pub(crate) fn median(values: &mut [i64]) -> String {
    median_times_ten(values).map_or_else(|| "–".into(), tenths)
}

/// Ten times the median (exact: the middle two add up to a whole).
pub(crate) fn median_times_ten(values: &mut [i64]) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let n = values.len();
    Some(if n % 2 == 1 {
        10 * values[n / 2]
    } else {
        5 * (values[n / 2 - 1] + values[n / 2])
    })
}

/// Tenths as a number with one decimal: `-15` is `-1.5`.
pub(crate) fn tenths(t: i64) -> String {
    let sign = if t < 0 { "-" } else { "" };
    format!("{sign}{}.{}", t.unsigned_abs() / 10, t.unsigned_abs() % 10)
}

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub(crate) fn day_of_ms(ms: u64) -> Date {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| t.to_zoned_datetime(jiff::tz::TimeZone::UTC).date())
        .unwrap_or_default()
}

pub(crate) fn day_of_seconds(s: i64) -> Date {
    day_of_ms(s.max(0) as u64 * 1000)
}

/// An instant field (RFC 3339) as a timestamp.
pub(crate) fn instant(v: &RecordView, field: &str) -> Option<jiff::Timestamp> {
    v.text(field).and_then(|t| t.parse().ok())
}

pub(crate) fn days_between(a: Date, b: Date) -> i64 {
    // A civil date's span is in days unless asked otherwise.
    a.until(b).map_or(0, |s| i64::from(s.get_days()))
}

#[cfg(test)]
pub(crate) mod tests;
