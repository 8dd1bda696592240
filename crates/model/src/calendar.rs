//! Meetings in time: how a meeting repeats (the part of iCalendar's RRULE
//! that calendar apps write for meetings) and when it takes place within
//! a window. Repeats are counted in the meeting's own time zone, so that a
//! weekly 09:00 in Berlin stays 09:00 there across daylight saving time,
//! whatever zone the reader is in. Pure: the window and zones are passed in.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ZonedDateTime};

/// How often a meeting comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freq {
    Daily,
    Weekly,
    Monthly,
}

/// A repeat rule: `FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;COUNT=10` (or
/// `UNTIL=20270101`), or the words `daily`, `weekly`, `monthly`,
/// `weekdays`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recurrence {
    pub freq: Freq,
    pub interval: u32,
    /// The weekdays a weekly meeting takes place on (empty: its own).
    pub by_day: Vec<Weekday>,
    /// At most this many times, the first included.
    pub count: Option<u32>,
    /// Not after this day (in the meeting's zone).
    pub until: Option<Date>,
}

const DAYS: [(&str, Weekday); 7] = [
    ("MO", Weekday::Monday),
    ("TU", Weekday::Tuesday),
    ("WE", Weekday::Wednesday),
    ("TH", Weekday::Thursday),
    ("FR", Weekday::Friday),
    ("SA", Weekday::Saturday),
    ("SU", Weekday::Sunday),
];

/// What a repeat rule may say, for error messages.
pub const RECURRENCE_HINT: &str = "expected daily, weekly, monthly, weekdays, or a rule such as \
    FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;COUNT=10 (FREQ DAILY, WEEKLY or MONTHLY; UNTIL=YYYYMMDD)";

impl FromStr for Recurrence {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let rule = |freq| Recurrence {
            freq,
            interval: 1,
            by_day: Vec::new(),
            count: None,
            until: None,
        };
        match s.to_ascii_lowercase().as_str() {
            "daily" => return Ok(rule(Freq::Daily)),
            "weekly" => return Ok(rule(Freq::Weekly)),
            "monthly" => return Ok(rule(Freq::Monthly)),
            "weekdays" => {
                let mut r = rule(Freq::Weekly);
                r.by_day = DAYS[..5].iter().map(|d| d.1).collect();
                return Ok(r);
            }
            _ => {}
        }
        let body = s
            .strip_prefix("RRULE:")
            .or_else(|| s.strip_prefix("rrule:"))
            .unwrap_or(s);
        let bad = || RECURRENCE_HINT.to_string();
        let mut freq = None;
        let mut out = rule(Freq::Daily);
        for part in body.split(';').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(bad)?;
            let value = value.trim().to_ascii_uppercase();
            match key.trim().to_ascii_uppercase().as_str() {
                "FREQ" => {
                    freq = Some(match value.as_str() {
                        "DAILY" => Freq::Daily,
                        "WEEKLY" => Freq::Weekly,
                        "MONTHLY" => Freq::Monthly,
                        _ => return Err(bad()),
                    })
                }
                "INTERVAL" => {
                    out.interval = value
                        .parse()
                        .ok()
                        .filter(|i| (1..=1000).contains(i))
                        .ok_or_else(bad)?
                }
                "COUNT" => {
                    out.count = Some(value.parse().ok().filter(|c| *c >= 1).ok_or_else(bad)?)
                }
                "UNTIL" => {
                    // YYYYMMDD, perhaps with a time after it.
                    let day = value
                        .get(..8)
                        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(bad)?;
                    let date = format!("{}-{}-{}", &day[..4], &day[4..6], &day[6..8]);
                    out.until = Some(date.parse().map_err(|_| bad())?);
                }
                "BYDAY" => {
                    for d in value.split(',') {
                        let day = DAYS.iter().find(|(n, _)| *n == d.trim()).ok_or_else(bad)?;
                        if !out.by_day.contains(&day.1) {
                            out.by_day.push(day.1);
                        }
                    }
                }
                "WKST" => {}
                _ => return Err(bad()),
            }
        }
        out.freq = freq.ok_or_else(bad)?;
        if !out.by_day.is_empty() && out.freq != Freq::Weekly {
            return Err(bad());
        }
        out.by_day.sort_by_key(|d| d.to_monday_zero_offset());
        Ok(out)
    }
}

impl fmt::Display for Recurrence {
    /// The rule as iCalendar writes it (without `RRULE:`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let freq = match self.freq {
            Freq::Daily => "DAILY",
            Freq::Weekly => "WEEKLY",
            Freq::Monthly => "MONTHLY",
        };
        write!(f, "FREQ={freq}")?;
        if self.interval > 1 {
            write!(f, ";INTERVAL={}", self.interval)?;
        }
        if !self.by_day.is_empty() {
            let days: Vec<&str> = self
                .by_day
                .iter()
                .filter_map(|d| DAYS.iter().find(|(_, w)| w == d).map(|(n, _)| *n))
                .collect();
            write!(f, ";BYDAY={}", days.join(","))?;
        }
        if let Some(c) = self.count {
            write!(f, ";COUNT={c}")?;
        }
        if let Some(u) = self.until {
            write!(f, ";UNTIL={}", u.strftime("%Y%m%d"))?;
        }
        Ok(())
    }
}

/// Most occurrences looked at for one meeting: a daily meeting for
/// twenty-seven years.
const MOST: usize = 10_000;

/// The starts of a meeting that begins at `first` (in its zone) and
/// lasts `length`, repeating by `rule`, except on the days in `skip`,
/// that overlap `[from, to)`. Without a rule, the meeting itself if it
/// overlaps.
pub fn occurrences(
    first: &ZonedDateTime,
    length: Span,
    rule: Option<&Recurrence>,
    skip: &[Date],
    from: Timestamp,
    to: Timestamp,
) -> Vec<ZonedDateTime> {
    let overlaps = |start: &ZonedDateTime| {
        let end = start.checked_add(length).unwrap_or_else(|_| start.clone());
        start.timestamp() < to && (end.timestamp() > from || start.timestamp() >= from)
    };
    let Some(rule) = rule else {
        return if overlaps(first) {
            vec![first.clone()]
        } else {
            Vec::new()
        };
    };
    let mut out = Vec::new();
    let (time, tz) = (first.time(), first.time_zone().clone());
    let day0 = first.date();
    let mut counted = 0u32;
    // Without a COUNT, nothing before the window needs counting: start a
    // step before it rather than at the first occurrence (a daily
    // meeting since 1990 is not walked day by day).
    let mut first_n = 0i64;
    if rule.count.is_none() {
        let long = first.checked_add(length).map_or(0, |e| {
            (e.timestamp().as_second() - first.timestamp().as_second()) / 86_400
        });
        let from_day = from.to_zoned_datetime(tz.clone()).date();
        let lead = from_day
            .checked_sub(Span::new().days(long + 2))
            .unwrap_or(from_day);
        if lead > day0 {
            let days = day0.until(lead).map_or(0, |s| i64::from(s.get_days()));
            let months = (i64::from(lead.year()) - i64::from(day0.year())) * 12
                + i64::from(lead.month())
                - i64::from(day0.month());
            let steps = match rule.freq {
                Freq::Daily => days,
                Freq::Weekly => days / 7,
                Freq::Monthly => months,
            } / i64::from(rule.interval);
            first_n = (steps - 1).max(0);
        }
    }
    for n in first_n..first_n + MOST as i64 {
        let step = n * i64::from(rule.interval);
        let days: Vec<Date> = match rule.freq {
            Freq::Daily => day0
                .checked_add(Span::new().days(step))
                .into_iter()
                .collect(),
            Freq::Weekly if rule.by_day.is_empty() => day0
                .checked_add(Span::new().weeks(step))
                .into_iter()
                .collect(),
            Freq::Weekly => {
                let monday = day0
                    .checked_sub(
                        Span::new().days(i64::from(day0.weekday().to_monday_zero_offset())),
                    )
                    .and_then(|m| m.checked_add(Span::new().weeks(step)));
                monday
                    .map(|m| {
                        rule.by_day
                            .iter()
                            .filter_map(|d| {
                                m.checked_add(
                                    Span::new().days(i64::from(d.to_monday_zero_offset())),
                                )
                                .ok()
                            })
                            .filter(|d| *d >= day0)
                            .collect()
                    })
                    .unwrap_or_default()
            }
            Freq::Monthly => {
                // A month without the day (the 31st) has no meeting.
                let month = day0
                    .first_of_month()
                    .checked_add(Span::new().months(step))
                    .ok();
                month
                    .and_then(|m| Date::new(m.year(), m.month(), day0.day()).ok())
                    .into_iter()
                    .collect()
            }
        };
        for day in days {
            if rule.until.is_some_and(|u| day > u) || rule.count.is_some_and(|c| counted >= c) {
                return out;
            }
            counted += 1;
            // The wall-clock time in the meeting's zone; a time that a
            // DST change skips moves forward, as calendar apps do.
            let Ok(start) = day.to_datetime(time).to_zoned_datetime(tz.clone()) else {
                continue;
            };
            if start.timestamp() >= to {
                return out;
            }
            if !skip.contains(&day) && overlaps(&start) {
                out.push(start);
            }
        }
    }
    out
}

/// When a reminder fires: some time before a meeting starts (or before
/// 09:00 on a task's due day), or at a time on the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remind {
    /// Minutes before.
    Before(i64),
    /// At this time on the day.
    At(jiff::civil::Time),
}

/// What a reminder may say, for error messages.
pub const REMIND_HINT: &str =
    "expected a time before it such as 15m, 2h or 1d, or a time on the day such as 09:00";

impl FromStr for Remind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        if s.contains(':') {
            let t = s
                .parse::<jiff::civil::Time>()
                .map_err(|_| REMIND_HINT.to_string())?;
            return Ok(Remind::At(t));
        }
        let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
        let n: i64 = n.parse().map_err(|_| REMIND_HINT.to_string())?;
        let per = match unit.trim() {
            "m" | "min" | "minutes" => 1,
            "h" | "hours" => 60,
            "d" | "days" => 24 * 60,
            _ => return Err(REMIND_HINT.into()),
        };
        let minutes = n.checked_mul(per).unwrap_or(i64::MAX);
        if !(0..=7 * 24 * 60).contains(&minutes) {
            return Err(format!("{REMIND_HINT} (at most 7 days)"));
        }
        Ok(Remind::Before(minutes))
    }
}

impl Remind {
    /// When it fires for something starting at `start` (a task: 09:00 on
    /// its due day), in `start`'s zone.
    pub fn fires(self, start: &ZonedDateTime) -> Option<Timestamp> {
        match self {
            Remind::Before(m) => start
                .checked_sub(Span::new().minutes(m))
                .ok()
                .map(|z| z.timestamp()),
            Remind::At(t) => start
                .date()
                .to_datetime(t)
                .to_zoned_datetime(start.time_zone().clone())
                .ok()
                .map(|z| z.timestamp()),
        }
    }
}

/// `d` and `n` days on (back, for a negative `n`); `d` itself past the
/// calendar's ends.
pub fn add_days(d: Date, n: i64) -> Date {
    d.checked_add(Span::new().days(n)).unwrap_or(d)
}

/// The Monday of `d`'s week.
pub fn week_start(d: Date) -> Date {
    add_days(d, -i64::from(d.weekday().to_monday_zero_offset()))
}

/// The zone named `name` (IANA, e.g. `Europe/Berlin`), for checking input.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name.trim()).map_err(|_| {
        format!(
            "`{}` is not a time zone: use an IANA name such as Europe/Berlin or America/New_York",
            name.trim()
        )
    })
}

/// Days as a list field holds them (`2026-12-24, 2026-12-31`).
/// The days a repeating meeting skips, as its `skip` field holds them: a
/// list (so that two devices taking different occurrences out at once
/// both keep theirs), or, as it was kept before, text.
pub fn skipped(value: Option<&crate::FieldValue>) -> Result<Vec<Date>, String> {
    match value {
        Some(crate::FieldValue::List(items)) => {
            let mut out = Vec::new();
            for item in items {
                out.extend(days(item)?);
            }
            Ok(out)
        }
        Some(crate::FieldValue::Text(t)) => days(t),
        _ => Ok(Vec::new()),
    }
}

pub fn days(list: &str) -> Result<Vec<Date>, String> {
    list.split([',', ' '])
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<Date>()
                .map_err(|_| format!("`{d}` is not a day: expected days such as 2026-12-24"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn berlin(y: i16, m: i8, d: i8, h: i8) -> ZonedDateTime {
        date(y, m, d)
            .at(h, 0, 0, 0)
            .to_zoned_datetime(TimeZone::get("Europe/Berlin").expect("tz"))
            .expect("zoned")
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn reminders_read_and_fire_before_or_on_the_day() {
        let start = berlin(2026, 3, 30, 9);
        let r: Remind = "15m".parse().expect("valid");
        assert_eq!(
            r.fires(&start).map(|t| t.to_string()).as_deref(),
            Some("2026-03-30T06:45:00Z")
        );
        let r: Remind = "1d".parse().expect("valid");
        assert_eq!(
            r.fires(&start).map(|t| t.to_string()).as_deref(),
            Some("2026-03-29T07:00:00Z")
        );
        let r: Remind = "08:30".parse().expect("valid");
        assert_eq!(
            r.fires(&start).map(|t| t.to_string()).as_deref(),
            Some("2026-03-30T06:30:00Z")
        );
        for bad in ["soon", "15", "15w", "9d", "-5m", "999999999999999999d"] {
            assert!(bad.parse::<Remind>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_read_and_write_back() {
        let r: Recurrence = "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=WE,MO;COUNT=10"
            .parse()
            .expect("valid");
        assert_eq!(r.to_string(), "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;COUNT=10");
        let r: Recurrence = "weekdays".parse().expect("valid");
        assert_eq!(r.to_string(), "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR");
        let r: Recurrence = "FREQ=DAILY;UNTIL=20261231T235959Z".parse().expect("valid");
        assert_eq!(r.until, Some(date(2026, 12, 31)));
        for bad in [
            "",
            "sometimes",
            "FREQ=YEARLY",
            "FREQ=DAILY;BYDAY=MO",
            "FREQ=WEEKLY;INTERVAL=0",
            "FREQ=WEEKLY;BYDAY=XX",
            "FREQ=WEEKLY;BYSETPOS=1",
            "FREQ=DAILY;UNTIL=2é261231",
            "FREQ=DAILY;UNTIL=2026",
            "FREQ=DAILY;UNTIL=20261340",
        ] {
            assert!(bad.parse::<Recurrence>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_weekly_meeting_keeps_its_wall_clock_time_across_daylight_saving() {
        // 09:00 in Berlin on Mondays, from 16 March 2026; summer time
        // starts on 29 March.
        let first = berlin(2026, 3, 16, 9);
        let rule: Recurrence = "weekly".parse().expect("valid");
        let got = occurrences(
            &first,
            Span::new().hours(1),
            Some(&rule),
            &[],
            ts("2026-03-20T00:00:00Z"),
            ts("2026-04-07T00:00:00Z"),
        );
        let utc: Vec<String> = got.iter().map(|z| z.timestamp().to_string()).collect();
        assert_eq!(
            utc,
            [
                "2026-03-23T08:00:00Z",
                "2026-03-30T07:00:00Z",
                "2026-04-06T07:00:00Z"
            ]
        );
        assert!(got.iter().all(|z| z.hour() == 9));
    }

    #[test]
    fn a_long_running_series_is_found_far_from_its_start() {
        // Daily since 1990, every other week since 1990, monthly since 1990.
        let window = (ts("2026-06-10T00:00:00Z"), ts("2026-06-11T00:00:00Z"));
        for (rule, days) in [
            ("daily", vec!["2026-06-10"]),
            ("FREQ=WEEKLY;INTERVAL=2;BYDAY=WE", vec!["2026-06-10"]),
            ("FREQ=MONTHLY", vec!["2026-06-10"]),
        ] {
            let first = berlin(1990, 1, 10, 9); // a Wednesday
            let rule: Recurrence = rule.parse().expect("valid");
            let got = occurrences(
                &first,
                Span::new().hours(1),
                Some(&rule),
                &[],
                window.0,
                window.1,
            );
            let got: Vec<String> = got.iter().map(|z| z.date().to_string()).collect();
            assert_eq!(got, days, "{rule}");
        }
    }

    #[test]
    fn weekdays_counts_and_skips() {
        let first = berlin(2026, 12, 21, 10); // a Monday
        let rule: Recurrence = "FREQ=WEEKLY;BYDAY=MO,WE,FR;COUNT=5".parse().expect("valid");
        let skip = [date(2026, 12, 25)];
        let got = occurrences(
            &first,
            Span::new().minutes(30),
            Some(&rule),
            &skip,
            ts("2026-01-01T00:00:00Z"),
            ts("2027-12-31T00:00:00Z"),
        );
        let days: Vec<String> = got.iter().map(|z| z.date().to_string()).collect();
        // Five times counted (21, 23, 25, 28, 30 December); the 25th skipped.
        assert_eq!(
            days,
            ["2026-12-21", "2026-12-23", "2026-12-28", "2026-12-30"]
        );
    }

    #[test]
    fn monthly_on_the_31st_skips_short_months_and_until_ends_it() {
        let first = berlin(2027, 1, 31, 9);
        let rule: Recurrence = "FREQ=MONTHLY;UNTIL=20270630".parse().expect("valid");
        let got = occurrences(
            &first,
            Span::new().hours(1),
            Some(&rule),
            &[],
            ts("2027-01-01T00:00:00Z"),
            ts("2028-01-01T00:00:00Z"),
        );
        let days: Vec<String> = got.iter().map(|z| z.date().to_string()).collect();
        assert_eq!(days, ["2027-01-31", "2027-03-31", "2027-05-31"]);
    }

    #[test]
    fn a_single_meeting_shows_when_it_overlaps_the_window() {
        let first = berlin(2026, 12, 1, 23);
        let two_hours = Span::new().hours(2);
        // 22:00Z to 00:00Z: in a window starting at 23:00Z.
        let got = occurrences(
            &first,
            two_hours,
            None,
            &[],
            ts("2026-12-01T23:00:00Z"),
            ts("2026-12-02T23:00:00Z"),
        );
        assert_eq!(got.len(), 1);
        let none = occurrences(
            &first,
            two_hours,
            None,
            &[],
            ts("2026-12-02T00:00:00Z"),
            ts("2026-12-03T00:00:00Z"),
        );
        assert!(none.is_empty());
        assert!(zone("Mars/Olympus").is_err());
        assert_eq!(days("2026-12-24, 2026-12-31").expect("days").len(), 2);
        assert!(days("Christmas").is_err());
    }
}
