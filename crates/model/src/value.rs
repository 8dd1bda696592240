//! Field values: what users type, how each type is validated, and the
//! canonical form that is stored and shown.

use std::fmt;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

use crate::schema::{FieldDef, FieldType};

/// A field's value in canonical form: what the JSON output and the indexes
/// carry. Dates are `YYYY-MM-DD`, instants RFC 3339 in UTC, amounts decimal
/// strings, references record ids.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Flag(bool),
    Int(i64),
    Text(String),
    List(Vec<String>),
}

impl FieldValue {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            FieldValue::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_list(&self) -> &[String] {
        match self {
            FieldValue::List(l) => l,
            _ => &[],
        }
    }
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Flag(b) => write!(f, "{}", if *b { "yes" } else { "no" }),
            FieldValue::Int(i) => write!(f, "{i}"),
            FieldValue::Text(s) => f.write_str(s),
            FieldValue::List(l) => f.write_str(&l.join(", ")),
        }
    }
}

/// What "now" and "today" mean while parsing; passed in so that parsing
/// never reads the clock.
#[derive(Debug, Clone)]
pub struct ParseContext {
    pub now: Timestamp,
    pub tz: TimeZone,
}

impl ParseContext {
    pub fn today(&self) -> Date {
        self.now.to_zoned_datetime(self.tz.clone()).date()
    }
}

/// Why a typed value was refused. The message names the field, repeats the
/// value and says what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} `{value}`: {expected}")]
pub struct InvalidValue {
    pub field: String,
    pub value: String,
    pub expected: String,
}

fn invalid(def: &FieldDef, value: &str, expected: impl Into<String>) -> InvalidValue {
    InvalidValue {
        field: def.name.to_string(),
        value: value.to_string(),
        expected: expected.into(),
    }
}

/// Parses what a user typed for a non-reference field into its canonical
/// value. Reference fields are resolved against the store by the caller;
/// here they only get split into their parts.
pub fn parse_value(
    def: &FieldDef,
    raw: &str,
    ctx: &ParseContext,
) -> Result<FieldValue, InvalidValue> {
    let s = raw.trim();
    let one = |parse: fn(&str) -> Result<String, String>| {
        parse(s)
            .map(FieldValue::Text)
            .map_err(|e| invalid(def, raw, e))
    };
    let many = |parse: fn(&str) -> Result<String, String>| {
        let mut out: Vec<String> = Vec::new();
        for part in split_list(s) {
            let v = parse(part).map_err(|e| invalid(def, part, e))?;
            if !out.contains(&v) {
                out.push(v);
            }
        }
        Ok(FieldValue::List(out))
    };
    if s.is_empty() && !def.ty.is_list() {
        return Err(invalid(
            def,
            raw,
            "a value is needed (clear the field instead to remove it)",
        ));
    }
    match def.ty {
        FieldType::Text | FieldType::LongText => Ok(FieldValue::Text(s.to_string())),
        FieldType::Number => s
            .parse::<Decimal>()
            .map(|d| FieldValue::Text(d.plain()))
            .map_err(|e| invalid(def, raw, e)),
        FieldType::Money => parse_money(s)
            .map(FieldValue::Text)
            .map_err(|e| invalid(def, raw, e)),
        FieldType::Email => one(parse_email),
        FieldType::Emails => many(parse_email),
        FieldType::Phone => one(parse_phone),
        FieldType::Phones => many(parse_phone),
        FieldType::Url => one(parse_url),
        FieldType::Domain => one(parse_domain),
        FieldType::Tags => many(|t| Ok(t.to_string())),
        FieldType::Choice(options) => {
            let lower = s.to_lowercase();
            match options.iter().find(|o| **o == lower) {
                Some(o) => Ok(FieldValue::Text(o.to_string())),
                None => Err(invalid(
                    def,
                    raw,
                    format!("choose one of {}", options.join(", ")),
                )),
            }
        }
        FieldType::Choices(options) => {
            let mut out: Vec<String> = Vec::new();
            for part in split_list(s) {
                let lower = part.to_lowercase();
                match options.iter().find(|o| **o == lower) {
                    Some(o) if !out.iter().any(|v| v == o) => out.push(o.to_string()),
                    Some(_) => {}
                    None => {
                        return Err(invalid(
                            def,
                            part,
                            format!("choose from {}", options.join(", ")),
                        ));
                    }
                }
            }
            Ok(FieldValue::List(out))
        }
        FieldType::Date => parse_date(s, ctx)
            .map(|d| FieldValue::Text(d.to_string()))
            .map_err(|e| invalid(def, raw, e)),
        FieldType::DateTime => parse_datetime(s, ctx)
            .map(|t| FieldValue::Text(format_instant(t)))
            .map_err(|e| invalid(def, raw, e)),
        FieldType::Amount => {
            let d: Decimal = s.parse().map_err(|e: String| invalid(def, raw, e))?;
            if d.is_negative() {
                return Err(invalid(def, raw, "an amount cannot be negative"));
            }
            Ok(FieldValue::Text(d.to_string()))
        }
        FieldType::Currency => {
            let code = s.to_ascii_uppercase();
            if CURRENCIES.contains(&code.as_str()) {
                Ok(FieldValue::Text(code))
            } else {
                Err(invalid(
                    def,
                    raw,
                    "use an ISO 4217 currency code such as EUR, USD, GBP, CHF or JPY",
                ))
            }
        }
        FieldType::Percent => match s.trim_end_matches('%').trim().parse::<i64>() {
            Ok(p) if (0..=100).contains(&p) => Ok(FieldValue::Int(p)),
            _ => Err(invalid(def, raw, "a whole number from 0 to 100")),
        },
        FieldType::Flag => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" | "done" => Ok(FieldValue::Flag(true)),
            "false" | "no" | "n" | "0" => Ok(FieldValue::Flag(false)),
            _ => Err(invalid(def, raw, "yes or no")),
        },
        FieldType::Ref(_) => Ok(FieldValue::Text(s.to_string())),
        FieldType::Refs(_) => Ok(FieldValue::List(
            split_list(s).map(str::to_string).collect(),
        )),
    }
}

/// An amount of money: a decimal and an ISO 4217 code, in either order
/// (`1200.50 EUR`, `EUR 1200.50`, `1200.50EUR`); canonical `1200.50 EUR`.
pub fn parse_money(s: &str) -> Result<String, String> {
    const HINT: &str = "an amount with its currency, e.g. 1200.50 EUR";
    let s = s.trim();
    let letters = |c: char| c.is_ascii_alphabetic();
    let (amount, code) = if s.starts_with(letters) {
        let split = s
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(s.len());
        (&s[split..], &s[..split])
    } else {
        let split = s
            .rfind(|c: char| !c.is_ascii_alphabetic())
            .map_or(0, |i| i + 1);
        (&s[..split], &s[split..])
    };
    let code = code.trim().to_ascii_uppercase();
    if code.is_empty() {
        return Err(HINT.to_string());
    }
    if !CURRENCIES.contains(&code.as_str()) {
        return Err(format!(
            "`{code}` is not an ISO 4217 currency code (EUR, USD, GBP, CHF, JPY...)"
        ));
    }
    let amount: Decimal = amount
        .trim()
        .parse()
        .map_err(|e: String| format!("{e}; {HINT}"))?;
    Ok(format!("{amount} {code}"))
}

/// Splits a comma-separated list, dropping empty parts.
pub fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty())
}

fn parse_email(s: &str) -> Result<String, String> {
    const HINT: &str = "expected an address like name@example.com";
    let (local, domain) = s.split_once('@').ok_or(HINT)?;
    if local.is_empty()
        || domain.contains('@')
        || s.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(HINT.into());
    }
    let domain = parse_hostname(domain).map_err(|_| HINT.to_string())?;
    Ok(format!("{local}@{domain}"))
}

/// A DNS name with at least two labels; returned in lower case.
fn parse_hostname(s: &str) -> Result<String, String> {
    let lower = s.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = lower.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    let tld_ok = labels
        .last()
        .is_some_and(|t| t.len() >= 2 && !t.chars().all(|c| c.is_ascii_digit()));
    if labels.len() < 2 || !labels.iter().all(label_ok) || !tld_ok {
        return Err("expected a domain like example.com".into());
    }
    Ok(lower)
}

fn parse_domain(s: &str) -> Result<String, String> {
    let bare = strip_scheme(s);
    let host = bare.split(['/', '?', '#']).next().unwrap_or(bare);
    let host = host.strip_prefix("www.").unwrap_or(host);
    parse_hostname(host)
}

/// A domain or web address as records are compared by it: lower case,
/// without scheme, path or `www.` (`https://www.Acme.com/about` is
/// `acme.com`).
pub fn domain_key(raw: &str) -> String {
    let lower = raw.trim().to_lowercase();
    let bare = strip_scheme(&lower);
    let host = bare.split(['/', '?', '#']).next().unwrap_or(bare);
    host.strip_prefix("www.").unwrap_or(host).to_string()
}

fn strip_scheme(s: &str) -> &str {
    s.strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s)
}

fn parse_url(s: &str) -> Result<String, String> {
    const HINT: &str = "expected a web address like https://example.com";
    if s.chars().any(char::is_whitespace) {
        return Err(HINT.into());
    }
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("https".to_string(), s),
    };
    if scheme != "http" && scheme != "https" {
        return Err(HINT.into());
    }
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, path) = rest.split_at(split);
    let host_only = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    if host_only != "localhost" {
        parse_hostname(host_only).map_err(|_| HINT.to_string())?;
    }
    Ok(format!("{scheme}://{}{path}", host.to_ascii_lowercase()))
}

fn parse_phone(s: &str) -> Result<String, String> {
    const HINT: &str = "expected a phone number like +49 30 1234567 (digits, spaces, + - . ( ))";
    let allowed =
        |(i, c): (usize, char)| c.is_ascii_digit() || " -.()/".contains(c) || (c == '+' && i == 0);
    let digits = s.chars().filter(char::is_ascii_digit).count();
    if !s.chars().enumerate().all(allowed) || !(3..=17).contains(&digits) {
        return Err(HINT.into());
    }
    Ok(s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Parses a calendar day: `YYYY-MM-DD`, `today`, `tomorrow`, `yesterday`,
/// or an offset from today such as `+3d` or `-2w`.
pub fn parse_date(s: &str, ctx: &ParseContext) -> Result<Date, String> {
    const HINT: &str = "expected a date like 2026-03-31, today, tomorrow or +7d";
    let today = ctx.today();
    let lower = s.to_ascii_lowercase();
    let days = match lower.as_str() {
        "today" => Some(0),
        "tomorrow" => Some(1),
        "yesterday" => Some(-1),
        _ => parse_offset_days(&lower),
    };
    if let Some(days) = days {
        return today
            .checked_add(Span::new().days(days))
            .map_err(|_| HINT.to_string());
    }
    lower.parse::<Date>().map_err(|_| HINT.to_string())
}

fn parse_offset_days(s: &str) -> Option<i64> {
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (num, unit) = s[1..].split_at(s.len().checked_sub(2)?);
    let n: i64 = num.parse().ok()?;
    let per = match unit {
        "d" => 1,
        "w" => 7,
        _ => return None,
    };
    (n <= 3650).then_some(sign * n * per)
}

/// Parses an instant: `now`, `YYYY-MM-DD HH:MM[:SS]` in the local time zone,
/// a bare date (local midnight), or RFC 3339 with an offset.
pub fn parse_datetime(s: &str, ctx: &ParseContext) -> Result<Timestamp, String> {
    const HINT: &str = "expected a time like 2026-03-31 14:30, now, or a date";
    if s.eq_ignore_ascii_case("now") {
        return Ok(ctx.now);
    }
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let local = if let Ok(dt) = s.replacen(' ', "T", 1).parse::<DateTime>() {
        dt
    } else {
        parse_date(s, ctx).map_err(|_| HINT.to_string())?.into()
    };
    local
        .to_zoned_datetime(ctx.tz.clone())
        .map(|z| z.timestamp())
        .map_err(|_| HINT.to_string())
}

/// The canonical text of an instant: RFC 3339, UTC, whole seconds.
pub fn format_instant(t: Timestamp) -> String {
    let secs = Timestamp::from_second(t.as_second()).unwrap_or(t);
    secs.to_string()
}

/// A non-floating decimal with four fractional digits, for money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Decimal(i128);

const SCALE: i128 = 10_000;

impl Decimal {
    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// `self * percent / 100`, rounded half away from zero.
    pub fn percent(self, percent: i64) -> Decimal {
        self.mul_div(percent as i128, 100)
    }

    /// `self * num / den`, rounded half away from zero to the fourth
    /// decimal (an average, a share of a total); zero for `den == 0`.
    pub fn mul_div(self, num: i128, den: i128) -> Decimal {
        if den == 0 {
            return Decimal(0);
        }
        let p = self.0.saturating_mul(num);
        let (abs, den_abs) = (p.unsigned_abs(), den.unsigned_abs());
        let rounded = ((abs + den_abs / 2) / den_abs) as i128;
        Decimal(if (p < 0) != (den < 0) {
            -rounded
        } else {
            rounded
        })
    }

    /// The amount at an exchange rate (`1 USD = 0.92 EUR`: `times(0.92)`).
    pub fn times(self, rate: Decimal) -> Decimal {
        self.mul_div(rate.0, SCALE)
    }
}

impl std::ops::Add for Decimal {
    type Output = Decimal;
    fn add(self, o: Decimal) -> Decimal {
        Decimal(self.0.saturating_add(o.0))
    }
}

impl std::str::FromStr for Decimal {
    type Err = String;

    /// Accepts `1200`, `1200.5`, `1,200.50` and `1_200.50`.
    fn from_str(s: &str) -> Result<Self, String> {
        const HINT: &str = "expected a number like 1200.50 (at most 4 decimals)";
        let cleaned: String = s.chars().filter(|c| *c != ',' && *c != '_').collect();
        let (neg, body) = match cleaned.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, cleaned.as_str()),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if int.is_empty() && frac.is_empty()
            || frac.len() > 4
            || int.len() > 20
            || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
        {
            return Err(HINT.into());
        }
        let int: i128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| HINT)?
        };
        let frac_val: i128 = format!("{frac:0<4}").parse().map_err(|_| HINT)?;
        let v = int * SCALE + frac_val;
        Ok(Decimal(if neg { -v } else { v }))
    }
}

impl Decimal {
    /// The amount in ten-thousandths: what it is stored as.
    pub fn ten_thousandths(self) -> i128 {
        self.0
    }

    pub fn from_ten_thousandths(v: i128) -> Decimal {
        Decimal(v)
    }

    /// As a plain number: no decimals it does not have (`12`, `0.125`).
    pub fn plain(self) -> String {
        let s = self.to_string();
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

impl fmt::Display for Decimal {
    /// Two decimals, more only when they carry a digit: `1200.50`, `0.1250`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let (int, frac) = (abs / SCALE as u128, abs % SCALE as u128);
        let frac = format!("{frac:04}");
        let frac = frac.trim_end_matches('0');
        let frac = format!("{frac:0<2}");
        write!(f, "{sign}{int}.{frac}")
    }
}

/// ISO 4217 codes of currencies in circulation.
pub const CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Kind;

    fn ctx() -> ParseContext {
        ParseContext {
            now: "2026-11-23T10:00:00Z".parse().expect("valid"),
            tz: TimeZone::UTC,
        }
    }

    fn check(kind: Kind, field: &str, raw: &str) -> Result<FieldValue, String> {
        let def = kind.field(field).expect("field exists");
        parse_value(def, raw, &ctx()).map_err(|e| e.to_string())
    }

    fn text(s: &str) -> Result<FieldValue, String> {
        Ok(FieldValue::Text(s.into()))
    }

    #[test]
    fn emails() {
        assert_eq!(
            check(
                Kind::Person,
                "emails",
                "Ann@Example.COM, b@x.io, Ann@example.com"
            ),
            Ok(FieldValue::List(vec![
                "Ann@example.com".into(),
                "b@x.io".into()
            ]))
        );
        for bad in [
            "bob@",
            "@x.com",
            "bob",
            "a b@x.com",
            "a@x",
            "a@@x.com",
            "a@-x.com",
        ] {
            let err = check(Kind::Person, "emails", bad).expect_err(bad);
            assert!(err.contains("name@example.com"), "{err}");
        }
    }

    #[test]
    fn stages_and_choices() {
        assert_eq!(check(Kind::Deal, "stage", "Won"), text("won"));
        let err = check(Kind::Deal, "stage", "closed-won").expect_err("unknown stage");
        assert!(err.contains("lead, qualified, proposal"), "{err}");
    }

    #[test]
    fn amounts_and_currencies() {
        assert_eq!(check(Kind::Deal, "amount", "1,200.5"), text("1200.50"));
        assert_eq!(check(Kind::Deal, "amount", "0.125"), text("0.125"));
        assert!(
            check(Kind::Deal, "amount", "-5")
                .expect_err("negative")
                .contains("negative")
        );
        assert!(check(Kind::Deal, "amount", "12.34567").is_err());
        assert!(check(Kind::Deal, "amount", "1e5").is_err());
        assert_eq!(check(Kind::Deal, "currency", "eur"), text("EUR"));
        assert!(
            check(Kind::Deal, "currency", "EUD")
                .expect_err("unknown")
                .contains("ISO 4217")
        );
    }

    #[test]
    fn decimal_arithmetic() {
        let a: Decimal = "1200.50".parse().expect("valid");
        let b: Decimal = "99.5".parse().expect("valid");
        assert_eq!((a + b).to_string(), "1300.00");
        assert_eq!(a.percent(25).to_string(), "300.125");
        assert_eq!(Decimal::default().to_string(), "0.00");
        let usd: Decimal = "1000.10".parse().expect("valid");
        let rate: Decimal = "0.92".parse().expect("valid");
        assert_eq!(usd.times(rate).to_string(), "920.092");
        assert_eq!(usd.mul_div(1, 3).to_string(), "333.3667");
        assert_eq!(usd.mul_div(-1, 3).to_string(), "-333.3667");
        assert_eq!(usd.mul_div(1, 0).to_string(), "0.00");
        assert_eq!(a.percent(10).to_string(), "120.05");
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(check(Kind::Deal, "close", "2026-12-31"), text("2026-12-31"));
        assert_eq!(check(Kind::Deal, "close", "tomorrow"), text("2026-11-24"));
        assert_eq!(check(Kind::Deal, "close", "+2w"), text("2026-12-07"));
        assert!(check(Kind::Deal, "close", "2026-02-30").is_err());
        assert!(check(Kind::Deal, "close", "next week").is_err());
        assert_eq!(
            check(Kind::Activity, "when", "2026-11-23 14:30"),
            text("2026-11-23T14:30:00Z")
        );
        assert_eq!(
            check(Kind::Activity, "when", "now"),
            text("2026-11-23T10:00:00Z")
        );
    }

    #[test]
    fn urls_domains_phones_percent_flags() {
        assert_eq!(
            check(Kind::Company, "website", "Acme.com/about"),
            text("https://acme.com/about")
        );
        assert!(check(Kind::Company, "website", "ftp://acme.com").is_err());
        assert_eq!(
            check(Kind::Company, "domain", "https://www.Acme.com/x"),
            text("acme.com")
        );
        assert_eq!(
            check(Kind::Company, "phone", "+49  30 123-456"),
            text("+49 30 123-456")
        );
        assert!(check(Kind::Company, "phone", "call me").is_err());
        assert_eq!(
            check(Kind::Deal, "probability", "40%"),
            Ok(FieldValue::Int(40))
        );
        assert!(check(Kind::Deal, "probability", "140").is_err());
        assert_eq!(
            check(Kind::Activity, "done", "yes"),
            Ok(FieldValue::Flag(true))
        );
    }

    #[test]
    fn empty_values_need_unset() {
        let err = check(Kind::Company, "name", "  ").expect_err("empty");
        assert!(err.contains("clear the field"), "{err}");
    }
}
