//! The exchange rates a user enters (`rapport rates set USD=0.92 --base
//! EUR`): kept in this device's profile, never synced, since what a
//! currency is worth is each reader's own assumption.

use std::collections::BTreeMap;

use rapport_model::Decimal;

use crate::{NodeError, Repo};

/// `1 CURRENCY = rate BASE`, for each currency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rates {
    pub base: String,
    /// Currency code → rate, as exact decimals.
    pub rates: BTreeMap<String, String>,
    /// The day they were set, `YYYY-MM-DD`.
    pub set: String,
}

impl Rates {
    /// Reads `USD=0.92`-style pairs for `base`; each code must be a
    /// currency and each rate a positive decimal.
    pub fn parse(base: &str, pairs: &[String], set: String) -> Result<Rates, String> {
        let base = currency(base)?;
        let mut rates = BTreeMap::new();
        for pair in pairs.iter().flat_map(|p| p.split([',', ' '])) {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let (code, rate) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}`: expected CURRENCY=RATE, such as USD=0.92"))?;
            let code = currency(code)?;
            let value: Decimal = rate.trim().parse().map_err(|e| format!("`{pair}`: {e}"))?;
            if value <= Decimal::default() {
                return Err(format!("`{pair}`: a rate must be more than 0"));
            }
            if code == base {
                return Err(format!(
                    "`{pair}`: {base} is the base currency (its rate is 1)"
                ));
            }
            rates.insert(code, value.plain());
        }
        if rates.is_empty() {
            return Err("give at least one rate, such as USD=0.92".into());
        }
        Ok(Rates { base, rates, set })
    }

    /// `amount` of `currency` in the base currency, if there is a rate.
    pub fn convert(&self, amount: Decimal, currency: &str) -> Option<Decimal> {
        if currency == self.base {
            return Some(amount);
        }
        let rate: Decimal = self.rates.get(currency)?.parse().ok()?;
        Some(amount.times(rate))
    }

    /// `USD=0.92, GBP=1.17`.
    pub fn describe(&self) -> String {
        self.rates
            .iter()
            .map(|(c, r)| format!("1 {c} = {r} {}", self.base))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn currency(code: &str) -> Result<String, String> {
    let up = code.trim().to_ascii_uppercase();
    if rapport_model::value::CURRENCIES.contains(&up.as_str()) {
        Ok(up)
    } else {
        Err(format!(
            "`{}` is not an ISO 4217 currency code (such as EUR, USD, GBP)",
            code.trim()
        ))
    }
}

impl Repo {
    /// The exchange rates set on this device.
    pub fn rates(&self) -> Option<Rates> {
        self.profile().rates
    }

    /// Replaces the rates (`None` clears them).
    pub fn set_rates(&self, rates: Option<Rates>) -> Result<(), NodeError> {
        let mut profile = self.profile_mut();
        let mut next = profile.clone();
        next.rates = rates;
        crate::datadir::save_profile(self.dir(), &next)?;
        *profile = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_exactly_and_refused_with_the_reason() {
        let r = Rates::parse("eur", &["USD=0.92, gbp=1.17".into()], "2026-12-01".into())
            .expect("valid");
        assert_eq!(r.base, "EUR");
        assert_eq!(r.rates["GBP"], "1.17");
        let usd: Decimal = "100.10".parse().expect("valid");
        assert_eq!(
            r.convert(usd, "USD").map(|d| d.to_string()),
            Some("92.092".into())
        );
        assert_eq!(r.convert(usd, "EUR"), Some(usd));
        assert_eq!(r.convert(usd, "CHF"), None);
        assert_eq!(r.describe(), "1 GBP = 1.17 EUR, 1 USD = 0.92 EUR");
        for (base, pair, says) in [
            ("EUR", "USD", "expected CURRENCY=RATE"),
            ("EUR", "USD=abc", "expected a number"),
            ("EUR", "USD=0", "more than 0"),
            ("EUR", "EUR=1", "is the base currency"),
            ("EUR", "XXY=1", "not an ISO 4217"),
            ("euro", "USD=1", "not an ISO 4217"),
        ] {
            let e = Rates::parse(base, &[pair.into()], String::new()).expect_err(pair);
            assert!(e.contains(says), "{pair}: {e}");
        }
        assert!(Rates::parse("EUR", &[], String::new()).is_err());
    }
}
