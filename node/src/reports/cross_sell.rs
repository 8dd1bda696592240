//! Cross-selling: which products customers buy together, and what a
//! customer's look-alikes bought that it has not.
//!
//! A customer's basket is the set of products on the lines of its won
//! deals closed between `--from` and `--to` (a company; lines without a
//! product say nothing). Baskets are per customer, not per deal: in B2B a
//! customer buys a licence in one deal and the training in the next, and
//! that is the pair a rep wants to see.
//!
//! For a rule "if A then B", over the `n` customers who bought anything:
//! support is the share of customers with both, confidence the share of
//! A's buyers who bought B too, and lift the confidence over B's own share
//! (`both · n / (a · b)`): above 1, buying A makes B more likely.
//!
//! A customer's look-alikes are the [`LOOK_ALIKES`] customers whose
//! baskets are most like its own (Jaccard: products in common over
//! products of either). A product they bought and it did not scores the
//! likeness of each look-alike that bought it, added up.

use std::collections::{BTreeMap, BTreeSet};

use rapport_model::custom::Outcome;
use rapport_model::{FieldValue, Kind, RecordId};

use super::{Chart, Checked, Data, Section, percent, plural};

/// How many customers a rule needs to be shown: a pair one customer
/// bought is an anecdote.
pub(crate) const MIN_TOGETHER: usize = 2;
/// Most rules shown, strongest first.
const MOST_RULES: usize = 200;
/// How many look-alikes a customer is compared with.
pub(crate) const LOOK_ALIKES: usize = 5;
/// Customers given suggestions when none is asked for: those with the
/// most won deals.
const SUGGESTED_FOR: usize = 20;

type Basket = BTreeSet<RecordId>;

pub(crate) fn cross_sell(q: &Checked, data: &Data<'_>) -> Vec<Section> {
    let won: BTreeMap<RecordId, RecordId> = data
        .deals
        .iter()
        .filter(|d| d.outcome() == Some(Outcome::Won) && d.close.is_none_or(|c| q.within(c)))
        .filter_map(|d| Some((d.view.id, d.company?)))
        .collect();
    let mut won_deals: BTreeMap<RecordId, usize> = BTreeMap::new();
    for company in won.values() {
        *won_deals.entry(*company).or_default() += 1;
    }
    let mut baskets: BTreeMap<RecordId, Basket> = BTreeMap::new();
    for line in data.of(Kind::LineItem) {
        let id_of = |f: &str| line.text(f).and_then(|t| t.parse::<RecordId>().ok());
        if let (Some(company), Some(product)) =
            (id_of("deal").and_then(|d| won.get(&d)), id_of("product"))
        {
            baskets.entry(*company).or_default().insert(product);
        }
    }
    vec![
        pairs(data, &baskets),
        suggestions(q, data, &baskets, &won_deals),
    ]
}

fn pairs(data: &Data<'_>, baskets: &BTreeMap<RecordId, Basket>) -> Section {
    let n = baskets.len();
    let mut buyers: BTreeMap<RecordId, usize> = BTreeMap::new();
    let mut both: BTreeMap<(RecordId, RecordId), usize> = BTreeMap::new();
    for basket in baskets.values() {
        for a in basket {
            *buyers.entry(*a).or_default() += 1;
            for b in basket.range(a..).skip(1) {
                *both.entry((*a, *b)).or_default() += 1;
            }
        }
    }
    // Both directions of each pair: confidence differs, lift does not.
    let mut rules: Vec<(String, String, usize, usize, usize)> = Vec::new();
    for (&(x, y), &together) in both.iter().filter(|(_, c)| **c >= MIN_TOGETHER) {
        for (a, b) in [(x, y), (y, x)] {
            rules.push((
                data.title(a),
                data.title(b),
                together,
                buyers[&a],
                buyers[&b],
            ));
        }
    }
    // lift = together·n / (a·b): compared across rules without division
    // (in u128: the cross products grow as n⁴).
    rules.sort_by(|r, s| {
        let lift =
            |r: &(String, String, usize, usize, usize)| ((r.2 * n) as u128, (r.3 * r.4) as u128);
        let ((rn, rd), (sn, sd)) = (lift(r), lift(s));
        (sn * rd)
            .cmp(&(rn * sd))
            .then(s.2.cmp(&r.2))
            .then_with(|| (&r.0, &r.1).cmp(&(&s.0, &s.1)))
    });
    let shown = rules.len().min(MOST_RULES);
    let rows = rules
        .into_iter()
        .take(MOST_RULES)
        .map(|(a, b, together, a_n, b_n)| {
            let (together, a_n, b_n, n) = (together as i128, a_n as i128, b_n as i128, n as i128);
            vec![
                format!("{a} → {b}"),
                a,
                b,
                together.to_string(),
                percent(together, n),
                percent(together, a_n),
                hundredths(together * n, a_n * b_n),
            ]
        })
        .collect::<Vec<_>>();
    let title = if shown == 0 {
        format!(
            "Products bought together: none yet by {MIN_TOGETHER} customers or more ({n} customer{} bought products)",
            plural(n)
        )
    } else {
        format!(
            "Products bought together, by {n} customer{} who bought products (pairs of {MIN_TOGETHER} customers or more)",
            plural(n)
        )
    };
    Section {
        title,
        columns: [
            "rule",
            "if bought",
            "also bought",
            "customers with both",
            "support %",
            "confidence %",
            "lift",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        chart: Some(Chart {
            label: 0,
            bars: vec![3],
            line: Some(5),
        }),
    }
}

fn suggestions(
    q: &Checked,
    data: &Data<'_>,
    baskets: &BTreeMap<RecordId, Basket>,
    won_deals: &BTreeMap<RecordId, usize>,
) -> Section {
    let columns = ["customer", "product", "look-alikes who bought it", "score"]
        .map(String::from)
        .to_vec();
    let asked = q.customer.as_deref();
    let targets: Vec<RecordId> = match asked {
        Some(c) => data
            .of(Kind::Company)
            .iter()
            .filter(|v| v.id.to_string() == c || v.title().to_lowercase() == c)
            .map(|v| v.id)
            .take(1)
            .collect(),
        None => {
            let mut by_deals: Vec<(RecordId, usize)> =
                won_deals.iter().map(|(c, n)| (*c, *n)).collect();
            by_deals.sort_by(|a, b| {
                b.1.cmp(&a.1)
                    .then_with(|| data.title(a.0).cmp(&data.title(b.0)))
            });
            by_deals
                .into_iter()
                .take(SUGGESTED_FOR)
                .map(|(c, _)| c)
                .collect()
        }
    };
    // Who bought each product: look-alikes share at least one.
    let mut buyers: BTreeMap<RecordId, Vec<RecordId>> = BTreeMap::new();
    for (customer, basket) in baskets {
        for p in basket {
            buyers.entry(*p).or_default().push(*customer);
        }
    }
    let retired: BTreeSet<RecordId> = data
        .of(Kind::Product)
        .iter()
        .filter(|p| p.get("active") == Some(&FieldValue::Flag(false)))
        .map(|p| p.id)
        .collect();
    let empty = Basket::new();
    let mut rows = Vec::new();
    for target in &targets {
        let own = baskets.get(target).unwrap_or(&empty);
        let mut common: BTreeMap<RecordId, usize> = BTreeMap::new();
        for p in own {
            for other in buyers.get(p).into_iter().flatten() {
                if other != target {
                    *common.entry(*other).or_default() += 1;
                }
            }
        }
        // Likeness in ten-thousandths, most alike first.
        let mut alike: Vec<(RecordId, i128)> = common
            .into_iter()
            .map(|(other, shared)| {
                let union = own.len() + baskets[&other].len() - shared;
                (
                    other,
                    (shared as i128 * 20_000 + union as i128) / (2 * union as i128),
                )
            })
            .collect();
        alike.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        alike.truncate(LOOK_ALIKES);
        let mut offer: BTreeMap<RecordId, (i128, Vec<String>)> = BTreeMap::new();
        for (other, likeness) in &alike {
            for p in baskets[other].difference(own) {
                if retired.contains(p) {
                    continue;
                }
                let o = offer.entry(*p).or_default();
                o.0 += likeness;
                o.1.push(data.title(*other));
            }
        }
        let mut offer: Vec<(RecordId, (i128, Vec<String>))> = offer.into_iter().collect();
        offer.sort_by(|a, b| {
            b.1.0
                .cmp(&a.1.0)
                .then_with(|| data.title(a.0).cmp(&data.title(b.0)))
        });
        for (product, (score, who)) in offer {
            rows.push(vec![
                data.title(*target),
                data.title(product),
                who.join(", "),
                hundredths(score, 10_000),
            ]);
        }
    }
    let title = match (asked, targets.first()) {
        (Some(c), None) => format!("What look-alikes bought: there is no customer `{c}` here"),
        (Some(_), Some(t)) => format!(
            "What {}'s {LOOK_ALIKES} most alike customers bought that it has not",
            data.title(*t)
        ),
        (None, _) => format!(
            "What look-alikes bought, for the {} customer{} with the most won deals (--customer NAME for one)",
            targets.len(),
            plural(targets.len())
        ),
    };
    Section {
        title,
        columns,
        rows,
        chart: None,
    }
}

/// `num / den` with two decimals, rounded half up; "–" for none.
fn hundredths(num: i128, den: i128) -> String {
    if den <= 0 {
        return "–".into();
    }
    let h = (num * 200 + den) / (2 * den);
    format!("{}.{:02}", h / 100, h % 100)
}
