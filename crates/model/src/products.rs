//! What a deal's line items add up to.
//!
//! A line is `quantity × unit price × (100 − discount) / 100`, worked out
//! exactly and rounded once, half away from zero, to the minor unit of its
//! currency (cents; none for yen; mills for the dinars of Bahrain, Kuwait,
//! …). A deal's total is the sum of its rounded lines, so the total is
//! what the lines show added up, to the cent. Lines in several currencies
//! have no total: amounts are never summed across currencies.

use std::collections::BTreeMap;

use crate::{Decimal, FieldValue};

/// Currencies with no minor unit (ISO 4217 exponent 0).
const WHOLE: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];
/// Currencies with a thousandth (exponent 3).
const THOUSANDTHS: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];

/// How many decimals an amount in `currency` has (ISO 4217): 2 for most.
pub fn minor_units(currency: &str) -> u32 {
    if WHOLE.contains(&currency) {
        0
    } else if THOUSANDTHS.contains(&currency) {
        3
    } else {
        2
    }
}

/// The largest amount a field holds: 20 digits before the point.
const MOST: i128 = 10i128.pow(24);

/// One line's amount: `quantity × price`, less `discount` percent, rounded
/// once to `currency`'s minor unit; `None` past what an amount holds (20
/// digits), never a wrapped or clipped figure.
pub fn line_amount(
    quantity: Decimal,
    price: Decimal,
    discount: i64,
    currency: &str,
) -> Option<Decimal> {
    let step = 10i128.pow(4 - minor_units(currency).min(4));
    // price and quantity are in ten-thousandths: the product is in 10⁻⁸,
    // times the percentage kept, in 10⁻¹⁰; one division back to the step.
    let exact = price
        .ten_thousandths()
        .checked_mul(quantity.ten_thousandths())?
        .checked_mul(100 - discount.clamp(0, 100) as i128)?;
    let den = (10_000 * 100 * step).unsigned_abs();
    let (abs, neg) = (exact.unsigned_abs(), exact < 0);
    let steps = ((abs + den / 2) / den) as i128;
    let v = if neg { -steps } else { steps }.checked_mul(step)?;
    (v.abs() < MOST).then(|| Decimal::from_ten_thousandths(v))
}

/// A line as its record's fields say it; `None` for fields that do not
/// read as a line (no price or currency: nothing to add).
pub fn line_of(fields: &BTreeMap<String, FieldValue>) -> Option<(Decimal, String)> {
    let text = |f: &str| fields.get(f).and_then(FieldValue::as_text);
    let quantity = text("quantity").unwrap_or("1").parse::<Decimal>().ok()?;
    let price = text("price")?.parse::<Decimal>().ok()?;
    let currency = text("currency")?;
    let discount = match fields.get("discount") {
        Some(FieldValue::Int(d)) => *d,
        _ => 0,
    };
    Some((
        line_amount(quantity, price, discount, currency)?,
        currency.to_string(),
    ))
}

/// What a deal's lines add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Total {
    /// No line has a price.
    Nothing,
    /// Every priced line is in this currency.
    One(Decimal, String),
    /// Lines in several currencies: no total (the currencies, sorted).
    Mixed(Vec<String>),
    /// More than an amount holds (20 digits before the point).
    TooLarge,
}

/// The total of a deal's live lines (their fields).
pub fn total<'a>(lines: impl IntoIterator<Item = &'a BTreeMap<String, FieldValue>>) -> Total {
    let mut sums: BTreeMap<String, i128> = BTreeMap::new();
    for fields in lines {
        let priced = fields.contains_key("price") && fields.contains_key("currency");
        match line_of(fields) {
            Some((amount, currency)) => {
                let sum = sums.entry(currency).or_default();
                *sum += amount.ten_thousandths();
                if sum.abs() >= MOST {
                    return Total::TooLarge;
                }
            }
            // Priced, yet no amount: one past what an amount holds.
            None if priced => return Total::TooLarge,
            None => {}
        }
    }
    match sums.len() {
        0 => Total::Nothing,
        1 => match sums.into_iter().next() {
            Some((currency, sum)) => Total::One(Decimal::from_ten_thousandths(sum), currency),
            None => Total::Nothing,
        },
        _ => Total::Mixed(sums.into_keys().collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().expect("a decimal")
    }

    #[test]
    fn a_line_is_rounded_once_to_its_currency() {
        // 3 × 19.99 = 59.97, less 15 % = 50.9745 → 50.97
        assert_eq!(line_amount(d("3"), d("19.99"), 15, "EUR"), Some(d("50.97")));
        // 2.5 × 19.99 = 49.975: half a cent rounds away from zero.
        assert_eq!(
            line_amount(d("2.5"), d("19.99"), 0, "EUR"),
            Some(d("49.98"))
        );
        // Rounded once: 0.333 × 0.015 = 0.004995 → 0.00, not 0.0050 → 0.01.
        assert_eq!(line_amount(d("0.333"), d("0.015"), 0, "EUR"), Some(d("0")));
        assert_eq!(line_amount(d("3"), d("333.5"), 0, "JPY"), Some(d("1001")));
        assert_eq!(line_amount(d("1"), d("1.2345"), 0, "KWD"), Some(d("1.235")));
        assert_eq!(line_amount(d("7"), d("10"), 100, "EUR"), Some(d("0")));
        // Past 20 digits: no figure, never a wrapped one.
        let huge = d("99999999999999999999");
        assert_eq!(line_amount(huge, huge, 0, "EUR"), None);
        assert_eq!(line_amount(d("2"), huge, 0, "EUR"), None);
    }

    fn line(pairs: &[(&str, &str)]) -> BTreeMap<String, FieldValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), FieldValue::Text(v.to_string())))
            .collect()
    }

    #[test]
    fn a_total_is_its_rounded_lines_added_up_in_one_currency() {
        let a = line(&[("quantity", "3"), ("price", "19.99"), ("currency", "EUR")]);
        let mut b = line(&[("quantity", "1"), ("price", "0.015"), ("currency", "EUR")]);
        b.insert("discount".into(), FieldValue::Int(0));
        let mut half = a.clone();
        half.insert("discount".into(), FieldValue::Int(50));
        let unpriced = line(&[("quantity", "2")]);
        assert_eq!(
            total([&a, &b, &unpriced]),
            Total::One(d("59.99"), "EUR".into()),
            "59.97 + 0.02"
        );
        assert_eq!(total([&half]), Total::One(d("29.99"), "EUR".into()));
        assert_eq!(total([&unpriced]), Total::Nothing);
        let big = line(&[
            ("quantity", "1"),
            ("price", "99999999999999999999"),
            ("currency", "EUR"),
        ]);
        assert_eq!(total([&big, &big]), Total::TooLarge);
        assert_eq!(total([]), Total::Nothing);
        let usd = line(&[("quantity", "1"), ("price", "5"), ("currency", "USD")]);
        assert_eq!(
            total([&a, &usd]),
            Total::Mixed(vec!["EUR".into(), "USD".into()])
        );
    }
}
