//! Deals: win rate and sales cycle, pipeline velocity, the forecast, and
//! what campaigns brought in.

use std::collections::{BTreeMap, BTreeSet};

use rapport_model::custom::Outcome;
use rapport_model::{Decimal, Kind, RecordId};

use super::{
    Book, Chart, Checked, Data, Deal, Section, add, amounts_cell, days_between, median, percent,
};

/// Won and lost deals of one group.
#[derive(Default)]
struct Tally {
    won: i128,
    lost: i128,
    /// Days from creation to close, of the deals whose close is not
    /// before their creation here (an imported deal's may be).
    cycles: Vec<i64>,
    revenue: BTreeMap<String, Decimal>,
}

impl Tally {
    fn count(&mut self, d: &Deal<'_>, book: &mut Book<'_>) {
        let won = d.outcome() == Some(Outcome::Won);
        if won {
            self.won += 1;
            if let Some((amount, cur)) = d.amount {
                let (cur, amount) = book.count(amount, cur);
                add(&mut self.revenue, cur, amount);
            }
        } else {
            self.lost += 1;
        }
        if let Some(close) = d.close {
            let days = days_between(d.created, close);
            if days >= 0 {
                self.cycles.push(days);
            }
        }
    }

    fn row(&mut self, key: String) -> Vec<String> {
        vec![
            key,
            self.won.to_string(),
            self.lost.to_string(),
            percent(self.won, self.won + self.lost),
            median(&mut self.cycles),
            amounts_cell(&self.revenue),
        ]
    }
}

const TALLY_COLUMNS: [&str; 6] = [
    "",
    "won",
    "lost",
    "win rate %",
    "median cycle (days)",
    "won revenue",
];

/// Deals won or lost (closed between `--from` and `--to`), by owner, by
/// pipeline and by close month; then pipeline velocity per currency.
pub(crate) fn win_rate(q: &Checked, data: &Data<'_>, book: &mut Book<'_>) -> Vec<Section> {
    let closed: Vec<&Deal<'_>> = data
        .deals
        .iter()
        .filter(|d| d.outcome().is_some())
        .filter(|d| d.close.is_none_or(|c| q.within(c)))
        .collect();
    let mut by: [BTreeMap<String, Tally>; 3] = Default::default();
    let mut all = Tally::default();
    for d in &closed {
        let pipeline = d
            .view
            .text("pipeline")
            .unwrap_or(rapport_model::custom::SALES)
            .to_string();
        let month = d
            .close
            .map_or("(no date)".into(), |c| c.strftime("%Y-%m").to_string());
        for (map, key) in by.iter_mut().zip([d.owner(), pipeline, month]) {
            map.entry(key).or_default().count(d, book);
        }
        all.count(d, book);
    }
    let mut sections = Vec::new();
    for (i, (title, key)) in [
        ("By owner", "owner"),
        ("By pipeline", "pipeline"),
        ("By close month", "month"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut columns: Vec<String> = TALLY_COLUMNS.iter().map(|c| c.to_string()).collect();
        columns[0] = key.into();
        let mut rows: Vec<Vec<String>> = std::mem::take(&mut by[i])
            .into_iter()
            .map(|(k, mut t)| t.row(k))
            .collect();
        if !rows.is_empty() {
            rows.push(all.row("all".into()));
        }
        sections.push(Section {
            title: title.into(),
            columns,
            rows,
            chart: Some(Chart {
                label: 0,
                bars: vec![3],
                line: None,
            }),
        });
    }
    sections.push(velocity(data, &closed, &all, book));
    sections
}

/// Pipeline velocity per currency: open deals × average won deal × win
/// rate ÷ average sales cycle, what the pipeline brings in per day.
fn velocity(data: &Data<'_>, closed: &[&Deal<'_>], all: &Tally, book: &mut Book<'_>) -> Section {
    #[derive(Default)]
    struct V {
        open: i128,
        won: i128,
        won_sum: Decimal,
    }
    let mut per: BTreeMap<String, V> = BTreeMap::new();
    let (won, lost, cycles) = (all.won, all.lost, &all.cycles);
    for d in closed {
        if d.outcome() == Some(Outcome::Won)
            && let Some((amount, cur)) = d.amount
        {
            let (cur, amount) = book.count(amount, cur);
            let v = per.entry(cur).or_default();
            v.won += 1;
            v.won_sum = v.won_sum + amount;
        }
    }
    for d in data.deals.iter().filter(|d| d.outcome().is_none()) {
        if let Some((amount, cur)) = d.amount {
            let (cur, _) = book.count(amount, cur);
            per.entry(cur).or_default().open += 1;
        }
    }
    let cycle_days: i128 = if cycles.is_empty() {
        0
    } else {
        let total: i64 = cycles.iter().sum();
        // The average, rounded, and at least a day.
        ((total as i128 * 2 + cycles.len() as i128) / (2 * cycles.len() as i128)).max(1)
    };
    let rows = per
        .into_iter()
        .map(|(cur, v)| {
            let average = v.won_sum.mul_div(1, v.won);
            let velocity = if v.won == 0 || cycle_days == 0 {
                "–".to_string()
            } else {
                average
                    .mul_div(v.open * won, (won + lost) * cycle_days)
                    .to_string()
            };
            vec![
                cur,
                v.open.to_string(),
                if v.won == 0 {
                    "–".into()
                } else {
                    average.to_string()
                },
                percent(won, won + lost),
                if cycle_days == 0 {
                    "–".into()
                } else {
                    cycle_days.to_string()
                },
                velocity,
            ]
        })
        .collect();
    Section {
        title: "Pipeline velocity".into(),
        columns: [
            "currency",
            "open deals",
            "average won deal",
            "win rate %",
            "average cycle (days)",
            "velocity per day",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        chart: None,
    }
}

/// Open deals by expected close month (between `--from` and `--to`; those
/// without a date last) and by owner: best case (every open deal),
/// committed (stages from negotiation on), weighted by probability; and
/// won so far, by close month. A section pair per currency.
pub(crate) fn forecast(q: &Checked, data: &Data<'_>, book: &mut Book<'_>) -> Vec<Section> {
    #[derive(Default)]
    struct M {
        open: usize,
        best: Decimal,
        committed: Decimal,
        weighted: Decimal,
        won: Decimal,
    }
    // currency -> (month, owner) -> sums; an empty owner is the month's total.
    let mut per: BTreeMap<String, BTreeMap<(Option<String>, String), M>> = BTreeMap::new();
    for d in &data.deals {
        let outcome = d.outcome();
        if outcome == Some(Outcome::Lost) {
            continue;
        }
        if d.close.is_some_and(|c| !q.within(c)) {
            continue;
        }
        let Some((amount, cur)) = d.amount else {
            continue;
        };
        let (cur, amount) = book.count(amount, cur);
        let month = d.close.map(|c| c.strftime("%Y-%m").to_string());
        let months = per.entry(cur).or_default();
        for owner in [String::new(), d.owner()] {
            let m = months.entry((month.clone(), owner)).or_default();
            if outcome == Some(Outcome::Won) {
                m.won = m.won + amount;
                continue;
            }
            m.open += 1;
            m.best = m.best + amount;
            m.weighted = m.weighted + amount.percent(d.probability());
            if d.committed {
                m.committed = m.committed + amount;
            }
        }
    }
    let mut sections = Vec::new();
    let sums = |m: &M| [m.best, m.committed, m.weighted, m.won].map(|d| d.to_string());
    for (cur, months) in per {
        // Undated deals last.
        let mut keys: Vec<&(Option<String>, String)> = months.keys().collect();
        keys.sort_by_key(|(m, o)| (m.is_none(), m.clone(), o.clone()));
        let month_label = |m: &Option<String>| m.clone().unwrap_or_else(|| "(no date)".into());
        let by_month = keys
            .iter()
            .filter(|(_, o)| o.is_empty())
            .map(|k| {
                let m = &months[*k];
                let mut row = vec![month_label(&k.0), m.open.to_string()];
                row.extend(sums(m));
                row
            })
            .collect();
        let by_owner = keys
            .iter()
            .filter(|(_, o)| !o.is_empty())
            .map(|k| {
                let m = &months[*k];
                let mut row = vec![month_label(&k.0), k.1.clone(), m.open.to_string()];
                row.extend(sums(m));
                row
            })
            .collect();
        let money = ["best case", "committed", "weighted", "won"];
        let mut month_columns = vec!["month".to_string(), "open deals".into()];
        month_columns.extend(money.iter().map(|c| format!("{c} ({cur})")));
        let mut owner_columns = vec!["month".to_string(), "owner".into(), "open deals".into()];
        owner_columns.extend(money.iter().map(|c| format!("{c} ({cur})")));
        sections.push(Section {
            title: format!("By month, {cur}"),
            columns: month_columns,
            rows: by_month,
            chart: Some(Chart {
                label: 0,
                bars: vec![2, 3, 4, 5],
                line: None,
            }),
        });
        sections.push(Section {
            title: format!("By month and owner, {cur}"),
            columns: owner_columns,
            rows: by_owner,
            chart: None,
        });
    }
    sections
}

/// Each campaign (starting between `--from` and `--to`): its members, the
/// deals it influenced (a deal one of whose contacts is a member, or
/// whose company a member works for, created on or after the campaign's
/// start) and the revenue of those won. Every campaign that touched a
/// deal is credited with all of it.
pub(crate) fn campaigns(q: &Checked, data: &Data<'_>, book: &mut Book<'_>) -> Vec<Section> {
    let company_of: BTreeMap<RecordId, RecordId> = data
        .of(Kind::Person)
        .iter()
        .filter_map(|p| Some((p.id, p.text("company")?.parse().ok()?)))
        .collect();
    let mut rows = Vec::new();
    let mut campaigns: Vec<_> = data
        .of(Kind::Campaign)
        .iter()
        .filter(|c| q.owned(c))
        .filter(|c| {
            let start = c.text("start").and_then(|s| s.parse().ok());
            (q.from.is_none() && q.to.is_none()) || start.is_some_and(|s| q.within(s))
        })
        .collect();
    campaigns.sort_by_key(|c| (c.text("start").map(str::to_string), c.title()));
    for c in campaigns {
        let members: BTreeSet<RecordId> = c
            .get("members")
            .map(|m| m.as_list())
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m.parse().ok())
            .collect();
        let companies: BTreeSet<RecordId> = members
            .iter()
            .filter_map(|m| company_of.get(m).copied())
            .collect();
        let start: Option<jiff::civil::Date> = c.text("start").and_then(|s| s.parse().ok());
        let (mut influenced, mut won) = (0usize, 0usize);
        let mut revenue = BTreeMap::new();
        for d in &data.deals {
            let contacts = d
                .view
                .get("contacts")
                .map(|v| v.as_list())
                .unwrap_or_default();
            let touched = contacts
                .iter()
                .filter_map(|p| p.parse::<RecordId>().ok())
                .any(|p| members.contains(&p))
                || d.company.is_some_and(|co| companies.contains(&co));
            if !touched || start.is_some_and(|s| d.created < s) {
                continue;
            }
            influenced += 1;
            if d.outcome() == Some(Outcome::Won) {
                won += 1;
                if let Some((amount, cur)) = d.amount {
                    let (cur, amount) = book.count(amount, cur);
                    add(&mut revenue, cur, amount);
                }
            }
        }
        rows.push(vec![
            c.title(),
            c.text("channel").unwrap_or("–").to_string(),
            c.text("start").unwrap_or("–").to_string(),
            members.len().to_string(),
            influenced.to_string(),
            won.to_string(),
            amounts_cell(&revenue),
        ]);
    }
    vec![Section {
        title: "Campaigns".into(),
        columns: [
            "campaign",
            "channel",
            "start",
            "members",
            "deals influenced",
            "won deals",
            "won revenue",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        chart: Some(Chart {
            label: 0,
            bars: vec![4, 5],
            line: None,
        }),
    }]
}
