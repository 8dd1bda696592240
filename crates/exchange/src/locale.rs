//! Numbers and dates as a file's locale writes them, turned into the forms
//! Rapport parses (`1234.56`, `2026-03-31`), or refused with the reason:
//! never guessed silently. The locale is said once per import, so the
//! user sees how `1.234,56` was read.

/// How a file writes numbers and dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Locale {
    /// `1.234,56` (true) or `1,234.56` (false).
    pub decimal_comma: bool,
    /// How `03/04/2026` reads, when a file writes days with slashes.
    pub slash_dates: Option<DayOrder>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DayOrder {
    /// Day, month, year: most of the world.
    Dmy,
    /// Month, day, year: the United States.
    Mdy,
}

impl Locale {
    /// The usual locale of a file separated by `delimiter`: spreadsheets
    /// that write decimal commas separate fields with `;`.
    pub fn for_delimiter(delimiter: u8) -> Self {
        Locale {
            decimal_comma: delimiter == b';',
            slash_dates: None,
        }
    }

    pub fn describe(&self) -> String {
        let numbers = if self.decimal_comma {
            "numbers as 1.234,56"
        } else {
            "numbers as 1,234.56"
        };
        let dates = match self.slash_dates {
            Some(DayOrder::Dmy) => ", dates as 31/12/2026",
            Some(DayOrder::Mdy) => ", dates as 12/31/2026",
            None => "",
        };
        format!("{numbers}{dates}")
    }

    /// An amount as `1234.56`, currency signs and spaces dropped.
    pub fn amount(&self, raw: &str) -> Result<String, String> {
        let s: String = raw
            .trim()
            .trim_matches(|c: char| c.is_alphabetic() || "€$£¥".contains(c))
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '\'' && *c != '\u{a0}')
            .collect();
        let (group, decimal) = if self.decimal_comma {
            ('.', ',')
        } else {
            (',', '.')
        };
        let (whole, fraction) = match s.rsplit_once(decimal) {
            Some((w, f)) => (w, Some(f)),
            None => (s.as_str(), None),
        };
        let mut parts = whole.split(group);
        let first = parts.next().unwrap_or("");
        let rest: Vec<&str> = parts.collect();
        let digits = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
        let grouped = rest.iter().all(|p| p.len() == 3 && digits(p));
        let first_ok = digits(first) && (rest.is_empty() || first.len() <= 3);
        if !first_ok || !grouped || fraction.is_some_and(|f| !digits(f)) {
            let style = if self.decimal_comma {
                "1.234,56 (the file's locale; --decimal point reads 1,234.56)"
            } else {
                "1,234.56 (the file's locale; --decimal comma reads 1.234,56)"
            };
            return Err(format!("not an amount written as {style}"));
        }
        let mut out: String = whole.chars().filter(|c| *c != group).collect();
        if let Some(f) = fraction {
            out.push('.');
            out.push_str(f);
        }
        Ok(out)
    }

    /// A day as `YYYY-MM-DD`, from ISO (a time after it is dropped),
    /// `31.12.2026`, or slashes read in [`Locale::slash_dates`] order
    /// (without one, only when the day is over 12).
    pub fn date(&self, raw: &str) -> Result<String, String> {
        let s = raw.trim();
        let iso = s.get(..10).filter(|d| {
            let b = d.as_bytes();
            b[4] == b'-' && b[7] == b'-' && matches!(s.as_bytes().get(10), None | Some(b' ' | b'T'))
        });
        if let Some(d) = iso {
            return Ok(d.to_string());
        }
        let date_part = s.split([' ', 'T']).next().unwrap_or(s);
        let (sep, order) = if date_part.contains('.') {
            ('.', Some(DayOrder::Dmy))
        } else if date_part.contains('/') {
            ('/', self.slash_dates)
        } else {
            return Err("expected a date like 2026-03-31, 31.03.2026 or 31/03/2026".into());
        };
        let nums: Result<Vec<u32>, _> = date_part.split(sep).map(str::parse::<u32>).collect();
        let (Ok([a, b, y]), 4) = (
            nums.map(|n| <[u32; 3]>::try_from(n).map_err(|_| ()))
                .unwrap_or(Err(())),
            date_part.rsplit(sep).next().map_or(0, str::len),
        ) else {
            return Err(
                "expected a date like 2026-03-31, 31.03.2026 or 31/03/2026 (the year in full)"
                    .into(),
            );
        };
        let order = match order {
            Some(o) => o,
            None if a > 12 => DayOrder::Dmy,
            None if b > 12 => DayOrder::Mdy,
            None => {
                return Err(format!(
                    "`{date_part}` could be day/month or month/day; say which with --dates dmy or --dates mdy"
                ));
            }
        };
        let (day, month) = match order {
            DayOrder::Dmy => (a, b),
            DayOrder::Mdy => (b, a),
        };
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return Err(format!("`{date_part}` is no day of the year"));
        }
        Ok(format!("{y:04}-{month:02}-{day:02}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMA: Locale = Locale {
        decimal_comma: true,
        slash_dates: None,
    };
    const POINT: Locale = Locale {
        decimal_comma: false,
        slash_dates: None,
    };

    #[test]
    fn amounts_follow_the_files_locale_or_are_refused() {
        assert_eq!(COMMA.amount("1.234,56").as_deref(), Ok("1234.56"));
        assert_eq!(COMMA.amount("€ 12.000").as_deref(), Ok("12000"));
        assert_eq!(COMMA.amount("99,5").as_deref(), Ok("99.5"));
        assert_eq!(POINT.amount("1,234.56").as_deref(), Ok("1234.56"));
        assert_eq!(POINT.amount("$1,000,000").as_deref(), Ok("1000000"));
        assert_eq!(POINT.amount("1200.50 EUR").as_deref(), Ok("1200.50"));
        // A point in a decimal-comma file that is no thousands separator.
        assert!(COMMA.amount("1234.56").is_err());
        assert!(POINT.amount("1,5").is_err());
        assert!(POINT.amount("ten").is_err());
    }

    #[test]
    fn dates_are_read_or_refused_never_guessed() {
        assert_eq!(POINT.date("2026-03-31").as_deref(), Ok("2026-03-31"));
        assert_eq!(
            POINT.date("2026-03-31 14:00:00").as_deref(),
            Ok("2026-03-31")
        );
        assert_eq!(POINT.date("31.03.2026").as_deref(), Ok("2026-03-31"));
        assert_eq!(POINT.date("31/03/2026").as_deref(), Ok("2026-03-31"));
        assert_eq!(POINT.date("3/31/2026").as_deref(), Ok("2026-03-31"));
        assert!(POINT.date("03/04/2026").is_err());
        let us = Locale {
            slash_dates: Some(DayOrder::Mdy),
            ..POINT
        };
        assert_eq!(us.date("03/04/2026").as_deref(), Ok("2026-03-04"));
        assert!(POINT.date("13.13.2026").is_err());
        assert!(
            POINT.date("01.01.85").is_err(),
            "a two-digit year is not guessed"
        );
        assert!(POINT.date("31.x.12.2026").is_err());
        assert!(POINT.date("soon").is_err());
    }
}
