//! Deal pipelines: open and closed deals by stage, with count, total and
//! probability-weighted total per currency, and the forecast by month.
//! Each pipeline (the built-in `sales`, or one a space's admins set)
//! gives its stages, their probabilities and which mean won or lost.

use std::collections::BTreeMap;

use rapport_model::custom::{Outcome, Pipeline, SALES};
use rapport_model::{Decimal, FieldValue, Kind, RecordView};

use crate::{NodeError, Repo};

/// One pipeline's stages, for replies that list several.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PipelineReport {
    pub name: String,
    pub title: String,
    pub stages: Vec<Stage>,
}

/// Whether a deal is in the pipeline named `name`.
pub fn in_pipeline(d: &RecordView, name: &str) -> bool {
    d.text("pipeline").unwrap_or(SALES) == name
}

/// The stage a deal is counted in: its own, or the pipeline's first for
/// one the pipeline does not have (a stage an admin dropped since).
pub fn stage_of<'p>(
    d: &RecordView,
    pipeline: &'p Pipeline,
) -> Option<&'p rapport_model::custom::StageDef> {
    let stage = d.text("stage").unwrap_or("");
    pipeline.stage(stage).or_else(|| pipeline.stages.first())
}

/// A deal's probability: its own if set, else its stage's.
fn probability(d: &RecordView, stage: Option<&rapport_model::custom::StageDef>) -> i64 {
    match d.get("probability") {
        Some(FieldValue::Int(p)) => *p,
        _ => stage.map_or(0, |s| s.probability),
    }
}

/// Totals of one currency within one stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Money {
    pub total: String,
    pub weighted: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stage {
    pub stage: String,
    /// Deals in this stage, with or without an amount.
    pub count: usize,
    /// Per currency code.
    pub currencies: BTreeMap<String, Money>,
}

/// Sums the deals of `pipeline` by stage, in its order. Deals without an
/// amount count but add nothing to the totals.
pub fn summarize<'a>(
    deals: impl IntoIterator<Item = &'a RecordView>,
    pipeline: &Pipeline,
) -> Vec<Stage> {
    // stage -> (deal count, currency -> (total, weighted total))
    type Sums = (usize, BTreeMap<String, (Decimal, Decimal)>);
    let mut sums: BTreeMap<&str, Sums> = BTreeMap::new();
    for d in deals.into_iter().filter(|d| in_pipeline(d, &pipeline.name)) {
        if d.text("stage").is_none() {
            continue;
        }
        let Some(stage) = stage_of(d, pipeline) else {
            continue;
        };
        let entry = sums.entry(&stage.name).or_default();
        entry.0 += 1;
        let amount = d.text("amount").and_then(|a| a.parse::<Decimal>().ok());
        if let (Some(amount), Some(cur)) = (amount, d.text("currency")) {
            let p = probability(d, Some(stage));
            let m = entry.1.entry(cur.to_string()).or_default();
            m.0 = m.0 + amount;
            m.1 = m.1 + amount.percent(p);
        }
    }
    pipeline
        .stages
        .iter()
        .map(|s| {
            let (count, cur) = sums.remove(s.name.as_str()).unwrap_or_default();
            Stage {
                stage: s.name.clone(),
                count,
                currencies: money(cur),
            }
        })
        .collect()
}

/// One month of the forecast: deals by the month of their expected close
/// date (`close`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Month {
    /// `YYYY-MM`; `None` for deals without a (readable) close date.
    pub month: Option<String>,
    /// Open deals (neither won nor lost) expected to close this month.
    pub open: usize,
    /// Their totals and probability-weighted totals, per currency.
    pub currencies: BTreeMap<String, Money>,
    /// Won deals whose close date falls in this month.
    pub won: usize,
    /// Their amounts, per currency.
    pub won_totals: BTreeMap<String, String>,
}

/// Sums the open and won deals of `pipeline` by expected close month,
/// earliest first, the deals without a date last. Lost deals are left out.
pub fn forecast<'a>(
    deals: impl IntoIterator<Item = &'a RecordView>,
    pipeline: &Pipeline,
) -> Vec<Month> {
    // month -> (open, currency -> (total, weighted), won, currency -> total)
    type Sums = (
        usize,
        BTreeMap<String, (Decimal, Decimal)>,
        usize,
        BTreeMap<String, Decimal>,
    );
    let mut sums: BTreeMap<Option<String>, Sums> = BTreeMap::new();
    for d in deals.into_iter().filter(|d| in_pipeline(d, &pipeline.name)) {
        let stage = stage_of(d, pipeline);
        let outcome = stage.and_then(|s| s.outcome);
        if outcome == Some(Outcome::Lost) {
            continue;
        }
        let month = d
            .text("close")
            .filter(|c| c.parse::<jiff::civil::Date>().is_ok())
            .and_then(|c| c.get(..7))
            .map(str::to_string);
        let entry = sums.entry(month).or_default();
        let amount = d.text("amount").and_then(|a| a.parse::<Decimal>().ok());
        let cur = d.text("currency");
        if outcome == Some(Outcome::Won) {
            entry.2 += 1;
            if let (Some(amount), Some(cur)) = (amount, cur) {
                let t = entry.3.entry(cur.to_string()).or_default();
                *t = *t + amount;
            }
            continue;
        }
        entry.0 += 1;
        if let (Some(amount), Some(cur)) = (amount, cur) {
            let p = probability(d, stage);
            let m = entry.1.entry(cur.to_string()).or_default();
            m.0 = m.0 + amount;
            m.1 = m.1 + amount.percent(p);
        }
    }
    let mut out: Vec<Month> = sums
        .into_iter()
        .map(|(month, (open, cur, won, won_cur))| Month {
            month,
            open,
            currencies: money(cur),
            won,
            won_totals: won_cur
                .into_iter()
                .map(|(c, t)| (c, t.to_string()))
                .collect(),
        })
        .collect();
    // `None` sorts first in the map; undated deals belong last.
    out.sort_by_key(|m| m.month.is_none());
    out
}

impl Repo {
    /// The built-in pipeline of all live deals.
    pub fn pipeline(&self) -> Result<Vec<Stage>, NodeError> {
        let deals = self.list(Kind::Deal, &[], false)?;
        Ok(summarize(&deals, &Pipeline::sales()))
    }
}

/// Totals and weighted totals per currency, as shown.
fn money(sums: BTreeMap<String, (Decimal, Decimal)>) -> BTreeMap<String, Money> {
    sums.into_iter()
        .map(|(c, (t, w))| {
            let m = Money {
                total: t.to_string(),
                weighted: w.to_string(),
            };
            (c, m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_model::RecordId;

    fn deal(stage: &str, amount: Option<(&str, &str)>, prob: Option<i64>) -> RecordView {
        let mut fields = BTreeMap::new();
        fields.insert("stage".into(), FieldValue::Text(stage.into()));
        if let Some((a, c)) = amount {
            fields.insert("amount".into(), FieldValue::Text(a.into()));
            fields.insert("currency".into(), FieldValue::Text(c.into()));
        }
        let p = prob.or(rapport_model::schema::stage_probability(stage));
        if let Some(p) = p {
            fields.insert("probability".into(), FieldValue::Int(p));
        }
        RecordView {
            id: RecordId::new(0, [0; 10]),
            kind: Kind::Deal,
            space: Default::default(),
            deleted: false,
            merged_into: None,
            updated: 0,
            fields,
            conflicts: BTreeMap::new(),
        }
    }

    #[test]
    fn totals_per_stage_and_currency_with_weights() {
        let deals = [
            deal("proposal", Some(("1000", "EUR")), None),
            deal("proposal", Some(("500.50", "EUR")), Some(10)),
            deal("proposal", Some(("200", "USD")), None),
            deal("proposal", None, None),
            deal("won", Some(("300", "EUR")), None),
        ];
        let p = summarize(&deals, &Pipeline::sales());
        assert_eq!(p.len(), rapport_model::schema::DEAL_STAGES.len());
        let proposal = p.iter().find(|s| s.stage == "proposal").expect("stage");
        assert_eq!(proposal.count, 4);
        assert_eq!(proposal.currencies["EUR"].total, "1500.50");
        assert_eq!(proposal.currencies["EUR"].weighted, "550.05");
        assert_eq!(proposal.currencies["USD"].weighted, "100.00");
        let won = p.iter().find(|s| s.stage == "won").expect("stage");
        assert_eq!(won.currencies["EUR"].weighted, "300.00");
        assert_eq!(p[0].stage, "lead");
        assert_eq!(p[0].count, 0);
    }

    #[test]
    fn forecast_groups_open_and_won_deals_by_close_month() {
        let dated = |stage: &str, amount: &str, close: Option<&str>| {
            let mut d = deal(stage, Some((amount, "EUR")), None);
            if let Some(c) = close {
                d.fields.insert("close".into(), FieldValue::Text(c.into()));
            }
            d
        };
        let deals = [
            dated("proposal", "1000", Some("2026-04-10")),
            dated("negotiation", "2000", Some("2026-04-30")),
            dated("lead", "500", Some("2026-03-01")),
            dated("won", "300", Some("2026-04-02")),
            dated("lost", "9999", Some("2026-04-02")),
            dated("qualified", "100", None),
            dated("lead", "100", Some("soon")),
        ];
        let f = forecast(&deals, &Pipeline::sales());
        let months: Vec<Option<&str>> = f.iter().map(|m| m.month.as_deref()).collect();
        assert_eq!(months, [Some("2026-03"), Some("2026-04"), None]);
        let april = &f[1];
        assert_eq!(april.open, 2);
        assert_eq!(april.currencies["EUR"].total, "3000.00");
        assert_eq!(april.currencies["EUR"].weighted, "2000.00");
        assert_eq!(april.won, 1);
        assert_eq!(april.won_totals["EUR"], "300.00");
        assert_eq!(f[2].open, 2, "no date and an unreadable one");
        assert_eq!(f[2].currencies["EUR"].weighted, "35.00");
    }
}
