//! Customers: ABC (Pareto) by won revenue, RFM segments, churn risk. A
//! customer is a company; a won deal counts for the company it names.

use std::collections::{BTreeMap, HashMap};

use jiff::civil::Date;
use rapport_model::custom::Outcome;
use rapport_model::{Decimal, Kind, RecordId};

use super::{Book, Chart, Checked, Data, Section, days_between, percent};

/// What one customer bought in one currency.
#[derive(Default)]
struct Purchases {
    deals: usize,
    revenue: Decimal,
    last: Option<Date>,
}

/// Won deals with a company and an amount, closed between `--from` and
/// `--to`: currency -> company -> purchases.
fn won_by_customer(
    q: &Checked,
    data: &Data<'_>,
    book: &mut Book<'_>,
) -> BTreeMap<String, BTreeMap<RecordId, Purchases>> {
    let mut out: BTreeMap<String, BTreeMap<RecordId, Purchases>> = BTreeMap::new();
    for d in &data.deals {
        if d.outcome() != Some(Outcome::Won) || d.close.is_some_and(|c| !q.within(c)) {
            continue;
        }
        let (Some(company), Some((amount, cur))) = (d.company, d.amount) else {
            continue;
        };
        let (cur, amount) = book.count(amount, cur);
        let p = out.entry(cur).or_default().entry(company).or_default();
        p.deals += 1;
        p.revenue = p.revenue + amount;
        p.last = p.last.max(d.close);
    }
    out
}

/// Customers ranked by won revenue, per currency. Going down the ranking,
/// a customer is in A while the revenue of those above it is under the
/// first share (80 %), in B while under the second (95 %), else in C; so
/// the customer that crosses a line is in the class above it, and
/// customers with the same revenue are in the same class.
pub(crate) fn abc(q: &Checked, data: &Data<'_>, book: &mut Book<'_>) -> Vec<Section> {
    let (a, b) = (i128::from(q.abc.0), i128::from(q.abc.1));
    let mut sections = Vec::new();
    for (cur, customers) in won_by_customer(q, data, book) {
        let mut ranked: Vec<(String, i128)> = customers
            .iter()
            .map(|(id, p)| (data.title(*id), p.revenue.ten_thousandths()))
            .collect();
        ranked.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
        let total: i128 = ranked.iter().map(|r| r.1).sum();
        let (mut before, mut class, mut last) = (0i128, 'A', None);
        let mut per_class: BTreeMap<char, (usize, i128)> = BTreeMap::new();
        let mut rows = Vec::new();
        for (i, (name, revenue)) in ranked.iter().enumerate() {
            if last != Some(*revenue) {
                class = if before * 100 < a * total {
                    'A'
                } else if before * 100 < b * total {
                    'B'
                } else {
                    'C'
                };
                last = Some(*revenue);
            }
            before += revenue;
            let c = per_class.entry(class).or_default();
            c.0 += 1;
            c.1 += revenue;
            rows.push(vec![
                (i + 1).to_string(),
                name.clone(),
                money(*revenue),
                percent(*revenue, total),
                percent(before, total),
                class.to_string(),
            ]);
        }
        let summary = ['A', 'B', 'C']
            .iter()
            .map(|c| {
                let (n, r) = per_class.get(c).copied().unwrap_or_default();
                vec![c.to_string(), n.to_string(), money(r), percent(r, total)]
            })
            .collect();
        sections.push(Section {
            title: format!("Classes, {cur}"),
            columns: [
                "class",
                "customers",
                &format!("won revenue ({cur})"),
                "share %",
            ]
            .map(String::from)
            .to_vec(),
            rows: summary,
            chart: None,
        });
        sections.push(Section {
            title: format!("Customers by won revenue, {cur}"),
            columns: [
                "rank",
                "customer",
                &format!("won revenue ({cur})"),
                "share %",
                "cumulative %",
                "class",
            ]
            .map(String::from)
            .to_vec(),
            rows,
            chart: Some(Chart {
                label: 1,
                bars: vec![2],
                line: Some(4),
            }),
        });
    }
    sections
}

fn money(ten_thousandths: i128) -> String {
    Decimal::from_ten_thousandths(ten_thousandths).to_string()
}

/// The last day each company was in touch: the newest activity (up to
/// `upto`) about it, its people, its deals or its tickets.
fn last_activity(data: &Data<'_>, upto: Date) -> HashMap<RecordId, Date> {
    let mut company_of: HashMap<RecordId, RecordId> = HashMap::new();
    for c in data.of(Kind::Company) {
        company_of.insert(c.id, c.id);
    }
    for kind in [Kind::Person, Kind::Deal, Kind::Ticket] {
        for v in data.of(kind) {
            if let Some(c) = v.text("company").and_then(|c| c.parse().ok()) {
                company_of.insert(v.id, c);
            }
        }
    }
    let mut last: HashMap<RecordId, Date> = HashMap::new();
    for a in data.of(Kind::Activity) {
        let Some(when) = super::instant(a, "when") else {
            continue;
        };
        let day = when.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
        if day > upto {
            continue;
        }
        let about = a.get("about").map(|v| v.as_list()).unwrap_or_default();
        for id in about.iter().filter_map(|s| s.parse::<RecordId>().ok()) {
            if let Some(c) = company_of.get(&id) {
                let e = last.entry(*c).or_insert(day);
                *e = (*e).max(day);
            }
        }
    }
    last
}

/// `ceil(5 k / n)`: the quintile of a customer no better than `k` of `n`
/// (itself included), 1 to 5; ties share the higher score.
fn quintile(k: usize, n: usize) -> u8 {
    (5 * k).div_ceil(n.max(1)).clamp(1, 5) as u8
}

/// The segment of a recency and frequency score.
pub(crate) fn segment(r: u8, f: u8) -> &'static str {
    match (r, f) {
        (4.., 4..) => "champions",
        (3.., 3..) => "loyal",
        (3.., _) => "promising",
        (_, 3..) => "at risk",
        (2, _) => "hibernating",
        _ => "lost",
    }
}

const SEGMENTS: [&str; 6] = [
    "champions",
    "loyal",
    "promising",
    "at risk",
    "hibernating",
    "lost",
];

/// Recency (days since the last won deal or activity, up to `--to` or
/// today), frequency (won deals) and money (won revenue) of each customer,
/// each scored 1 to 5 by quintile among the customers of the currency,
/// and the segment of R and F.
pub(crate) fn rfm(q: &Checked, data: &Data<'_>, book: &mut Book<'_>) -> Vec<Section> {
    let anchor = q.to.unwrap_or(data.today).min(data.today);
    let touched = last_activity(data, anchor);
    let mut sections = Vec::new();
    for (cur, customers) in won_by_customer(q, data, book) {
        struct C {
            name: String,
            last: Option<Date>,
            days: i64,
            deals: usize,
            revenue: Decimal,
        }
        let list: Vec<C> = customers
            .iter()
            .map(|(id, p)| {
                let last = p.last.max(touched.get(id).copied());
                C {
                    name: data.title(*id),
                    last,
                    days: last.map_or(i64::MAX, |l| days_between(l, anchor).max(0)),
                    deals: p.deals,
                    revenue: p.revenue,
                }
            })
            .collect();
        let n = list.len();
        let mut rows: Vec<(u8, Vec<String>)> = Vec::new();
        let mut per_segment: BTreeMap<&str, (usize, Decimal)> = BTreeMap::new();
        // Sorted once, so that "how many are no better" is a search.
        let sorted = |mut v: Vec<i128>| {
            v.sort_unstable();
            v
        };
        let days = sorted(list.iter().map(|c| i128::from(c.days)).collect());
        let deals = sorted(list.iter().map(|c| c.deals as i128).collect());
        let money = sorted(list.iter().map(|c| c.revenue.ten_thousandths()).collect());
        let at_most = |v: &[i128], x: i128| v.partition_point(|o| *o <= x);
        for c in &list {
            // More days is worse: those no better have as many or more.
            let r = quintile(n - days.partition_point(|o| *o < i128::from(c.days)), n);
            let f = quintile(at_most(&deals, c.deals as i128), n);
            let m = quintile(at_most(&money, c.revenue.ten_thousandths()), n);
            let seg = segment(r, f);
            let s = per_segment.entry(seg).or_default();
            s.0 += 1;
            s.1 = s.1 + c.revenue;
            let rank = SEGMENTS.iter().position(|x| *x == seg).unwrap_or(0) as u8;
            rows.push((
                rank,
                vec![
                    c.name.clone(),
                    c.last.map_or("–".into(), |d| d.to_string()),
                    if c.days == i64::MAX {
                        "–".into()
                    } else {
                        c.days.to_string()
                    },
                    c.deals.to_string(),
                    c.revenue.to_string(),
                    r.to_string(),
                    f.to_string(),
                    m.to_string(),
                    seg.to_string(),
                ],
            ));
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1[0].cmp(&b.1[0])));
        sections.push(Section {
            title: format!("Segments, {cur}"),
            columns: ["segment", "customers", &format!("won revenue ({cur})")]
                .map(String::from)
                .to_vec(),
            rows: SEGMENTS
                .iter()
                .map(|s| {
                    let (n, r) = per_segment.get(s).copied().unwrap_or_default();
                    vec![s.to_string(), n.to_string(), r.to_string()]
                })
                .collect(),
            chart: Some(Chart {
                label: 0,
                bars: vec![1],
                line: None,
            }),
        });
        sections.push(Section {
            title: format!("Customers, {cur}"),
            columns: [
                "customer",
                "last contact",
                "days since",
                "won deals",
                &format!("won revenue ({cur})"),
                "R",
                "F",
                "M",
                "segment",
            ]
            .map(String::from)
            .to_vec(),
            rows: rows.into_iter().map(|(_, r)| r).collect(),
            chart: None,
        });
    }
    sections
}

/// Customers (companies with a won deal, or with an open urgent ticket)
/// showing a sign of leaving, with each sign: no activity or purchase for
/// `--days`; the time since the last purchase over twice the customer's
/// usual time between purchases; open urgent tickets.
pub(crate) fn churn(q: &Checked, data: &Data<'_>, _book: &mut Book<'_>) -> Vec<Section> {
    let today = data.today;
    let touched = last_activity(data, today);
    let mut purchases: HashMap<RecordId, Vec<Date>> = HashMap::new();
    for d in &data.deals {
        if d.outcome() == Some(Outcome::Won)
            && let (Some(c), Some(close)) = (d.company, d.close)
        {
            purchases.entry(c).or_default().push(close);
        }
    }
    let mut urgent: HashMap<RecordId, usize> = HashMap::new();
    for t in data.of(Kind::Ticket) {
        // Open is any status that does not end a ticket (custom ones too).
        let open = !t
            .text("status")
            .is_some_and(|s| rapport_model::custom::ENDING_STATUSES.contains(&s));
        if open
            && t.text("priority") == Some("urgent")
            && let Some(c) = t.text("company").and_then(|c| c.parse().ok())
        {
            *urgent.entry(c).or_default() += 1;
        }
    }
    let mut rows: Vec<(usize, i64, Vec<String>)> = Vec::new();
    for company in data.of(Kind::Company).iter().filter(|c| q.owned(c)) {
        let mut bought = purchases.remove(&company.id).unwrap_or_default();
        let tickets = urgent.get(&company.id).copied().unwrap_or(0);
        if bought.is_empty() && tickets == 0 {
            continue;
        }
        bought.sort_unstable();
        let last_contact = bought
            .last()
            .copied()
            .max(touched.get(&company.id).copied());
        let quiet = last_contact.map(|l| days_between(l, today));
        let mut reasons = Vec::new();
        match quiet {
            Some(days) if days > i64::from(q.days) => {
                reasons.push(format!("no activity for {days} days"));
            }
            None => reasons.push("no activity recorded".to_string()),
            _ => {}
        }
        if let (Some(first), Some(last)) = (bought.first(), bought.last())
            && bought.len() >= 2
        {
            let gap = days_between(*first, *last) / (bought.len() as i64 - 1);
            let since = days_between(*last, today);
            if gap > 0 && since > 2 * gap {
                reasons.push(format!(
                    "buying less often: last purchase {since} days ago, usually every {gap} days"
                ));
            }
        }
        if tickets > 0 {
            reasons.push(format!(
                "{tickets} open urgent ticket{}",
                super::plural(tickets)
            ));
        }
        if reasons.is_empty() {
            continue;
        }
        rows.push((
            reasons.len(),
            quiet.unwrap_or(i64::MAX),
            vec![
                company.title(),
                super::owner_of(company),
                reasons.join("; "),
                last_contact.map_or("–".into(), |d| d.to_string()),
                quiet.map_or("–".into(), |d| d.to_string()),
                bought.len().to_string(),
                tickets.to_string(),
            ],
        ));
    }
    rows.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| b.1.cmp(&a.1))
            .then_with(|| a.2[0].cmp(&b.2[0]))
    });
    vec![Section {
        title: format!("Customers at risk (quiet after {} days)", q.days),
        columns: [
            "customer",
            "owner",
            "reasons",
            "last contact",
            "days since",
            "won deals",
            "open urgent tickets",
        ]
        .map(String::from)
        .to_vec(),
        rows: rows.into_iter().map(|(_, _, r)| r).collect(),
        chart: None,
    }]
}
