//! `rapport report NAME` and `rapport rates`: their flags as operations,
//! and a report as tables, one CSV section, or JSON.

use anyhow::Result;
use clap::{Args, Subcommand};
use rapport_node::ops::Request;
use rapport_node::reports::{Rates, Report, ReportName, ReportQuery};

use crate::commands::to_json;
use crate::output::table;

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// win-rate, forecast, abc, rfm, churn, service, campaigns or cross-sell.
    #[arg(value_parser = parse_name)]
    pub name: ReportName,
    /// First day counted, e.g. 2026-01-01 (close day of deals, opening day of tickets).
    #[arg(long, value_name = "DAY")]
    pub from: Option<String>,
    /// Last day counted.
    #[arg(long, value_name = "DAY")]
    pub to: Option<String>,
    /// Only deals, tickets and campaigns (for churn: customers) this owner looks after.
    #[arg(long)]
    pub owner: Option<String>,
    /// Only the records of this space (name or id).
    #[arg(long)]
    pub space: Option<String>,
    /// Only the deals of this pipeline (name or label).
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Churn: days without activity that make a customer quiet [default: 90].
    #[arg(long)]
    pub days: Option<u32>,
    /// ABC: the cumulative shares, in percent, that end class A and class B [default: 80,95].
    #[arg(long, value_name = "A,B")]
    pub abc: Option<String>,
    /// Convert amounts to one currency at the rates of `rapport rates`.
    #[arg(long)]
    pub convert: bool,
    /// Cross-sell: the customer (company name or id) to suggest products for
    /// [default: the 20 with the most won deals].
    #[arg(long)]
    pub customer: Option<String>,
    /// Print one section as CSV (spreadsheets); --section picks which.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// The section to print as CSV, counted from 1 as the tables number them.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "csv")]
    pub section: usize,
}

fn parse_name(s: &str) -> Result<ReportName, String> {
    s.parse()
}

impl ReportArgs {
    pub fn request(&self) -> Request {
        Request::Report(ReportQuery {
            name: self.name,
            from: self.from.clone(),
            to: self.to.clone(),
            owner: self.owner.clone(),
            space: self.space.clone(),
            pipeline: self.pipeline.clone(),
            days: self.days,
            abc: self.abc.clone(),
            convert: self.convert,
            customer: self.customer.clone(),
        })
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum RatesCmd {
    /// Show the exchange rates reports convert at.
    Show,
    /// Set them: `rapport rates set USD=0.92 GBP=1.17 --base EUR` (1 USD = 0.92 EUR);
    /// replaces the rates set before.
    Set {
        #[arg(required = true, value_name = "CUR=RATE")]
        rates: Vec<String>,
        /// The currency amounts are converted to.
        #[arg(long)]
        base: String,
    },
    /// Forget the rates: reports keep every currency apart.
    Clear,
}

impl RatesCmd {
    pub fn request(&self) -> Request {
        match self {
            RatesCmd::Show => Request::Rates,
            RatesCmd::Set { rates, base } => Request::SetRates {
                base: base.clone(),
                pairs: rates.clone(),
            },
            RatesCmd::Clear => Request::SetRates {
                base: String::new(),
                pairs: Vec::new(),
            },
        }
    }
}

/// A report as tables (each section numbered for `--csv --section N`),
/// one section as CSV, or JSON.
pub fn render(out: &mut String, report: &Report, csv: Option<usize>, json: bool) -> Result<()> {
    if json {
        return to_json(out, report);
    }
    if let Some(n) = csv {
        let bytes = report
            .section_csv(n)
            .map_err(|e| anyhow::anyhow!("--section {e}"))?;
        out.push_str(&String::from_utf8_lossy(&bytes));
        return Ok(());
    }
    outln!(out, "{}", report.title);
    for note in &report.notes {
        outln!(out, "{note}");
    }
    if report.sections.iter().all(|s| s.rows.is_empty()) {
        outln!(
            out,
            "Nothing to report: no records match (rapport report {} --help shows the filters).",
            report.name
        );
        return Ok(());
    }
    for (i, s) in report.sections.iter().enumerate() {
        outln!(out, "");
        outln!(out, "{}. {}", i + 1, s.title);
        if s.rows.is_empty() {
            outln!(out, "(none)");
            continue;
        }
        let header: Vec<&str> = s.columns.iter().map(String::as_str).collect();
        outln!(out, "{}", table(&header, &s.rows));
    }
    Ok(())
}

pub fn render_rates(out: &mut String, rates: Option<&Rates>, json: bool) -> Result<()> {
    if json {
        return to_json(out, &rates);
    }
    match rates {
        None => outln!(
            out,
            "No exchange rates set: reports keep every currency apart. Set some: rapport rates set USD=0.92 --base EUR"
        ),
        Some(r) => {
            outln!(out, "Rates set on {}, into {}:", r.set, r.base);
            for (c, rate) in &r.rates {
                outln!(out, "  1 {c} = {rate} {}", r.base);
            }
            outln!(out, "Reports convert at them with --convert.");
        }
    }
    Ok(())
}
