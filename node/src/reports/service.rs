//! Tickets: by status and priority, time to first response and to
//! resolution, and the backlog month by month.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use jiff::civil::Date;
use rapport_model::schema::{TICKET_PRIORITIES, TICKET_STATUSES};
use rapport_model::{Kind, RecordId, RecordView};

use super::{Chart, Checked, Data, Section, instant, median_times_ten, tenths};

/// A ticket as this report reads it.
struct Ticket<'a> {
    view: &'a RecordView,
    opened: Timestamp,
    /// When it was resolved: its `resolved` time, or for a resolved or
    /// closed ticket without one (written before Rapport stamped it, or
    /// imported), the time of its last change.
    resolved: Option<Timestamp>,
}

fn is_done(status: Option<&str>) -> bool {
    status.is_some_and(|s| rapport_model::custom::ENDING_STATUSES.contains(&s))
}

/// The built-in words first, then any other (a space's own statuses and
/// priorities) in the order of their names.
fn words<'a>(builtin: &[&'a str], seen: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = builtin.to_vec();
    let mut extra: Vec<&str> = seen.filter(|w| !builtin.contains(w)).collect();
    extra.sort_unstable();
    extra.dedup();
    out.extend(extra);
    out
}

fn tickets<'a>(q: &Checked, data: &Data<'a>) -> Vec<Ticket<'a>> {
    data.of(Kind::Ticket)
        .iter()
        .filter(|t| q.owned(t))
        .map(|t| {
            let opened = Timestamp::from_millisecond(t.id.unix_ms() as i64).unwrap_or_default();
            let resolved = is_done(t.text("status")).then(|| {
                instant(t, "resolved")
                    .unwrap_or_else(|| Timestamp::from_second(t.updated).unwrap_or_default())
            });
            Ticket {
                view: t,
                opened,
                resolved,
            }
        })
        .collect()
}

fn day(t: Timestamp) -> Date {
    t.to_zoned_datetime(jiff::tz::TimeZone::UTC).date()
}

/// Hours from `a` to `b`, in tenths (so medians keep a decimal).
fn hours(a: Timestamp, b: Timestamp) -> i64 {
    (b.as_second() - a.as_second()) / 360
}

/// Tickets opened between `--from` and `--to` by status and priority;
/// median hours to the first response (the first call, e-mail, meeting or
/// note about the ticket) and to resolution, by priority; and for each
/// month up to `--to` (twelve, or from `--from`), tickets opened, resolved,
/// and open at its end.
pub(crate) fn service(q: &Checked, data: &Data<'_>) -> Vec<Section> {
    let all = tickets(q, data);
    let opened_within: Vec<&Ticket<'_>> = all.iter().filter(|t| q.within(day(t.opened))).collect();

    // Status × priority.
    let mut grid: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for t in &opened_within {
        let s = t.view.text("status").unwrap_or("new");
        let p = t.view.text("priority").unwrap_or("normal");
        *grid.entry((s, p)).or_default() += 1;
    }
    let statuses = words(TICKET_STATUSES, grid.keys().map(|k| k.0));
    let priorities = words(TICKET_PRIORITIES, grid.keys().map(|k| k.1));
    let by_status = statuses
        .iter()
        .map(|s| {
            let mut row = vec![s.to_string()];
            let mut total = 0;
            for p in &priorities {
                let n = grid.get(&(*s, *p)).copied().unwrap_or(0);
                total += n;
                row.push(n.to_string());
            }
            row.push(total.to_string());
            row
        })
        .collect();
    let mut status_columns = vec!["status".to_string()];
    status_columns.extend(priorities.iter().map(|p| p.to_string()));
    status_columns.push("total".into());

    // First responses: the earliest activity about each ticket at or after
    // it was opened, that is not a task.
    let opened: HashMap<RecordId, Timestamp> = all.iter().map(|t| (t.view.id, t.opened)).collect();
    let mut first: HashMap<RecordId, Timestamp> = HashMap::new();
    for a in data.of(Kind::Activity) {
        if a.text("type") == Some("task") {
            continue;
        }
        let Some(when) = instant(a, "when") else {
            continue;
        };
        for id in a
            .get("about")
            .map(|v| v.as_list())
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.parse::<RecordId>().ok())
        {
            // Only what came after the ticket (history logged before it
            // is no response to it).
            if opened.get(&id).is_some_and(|o| when >= *o) {
                let e = first.entry(id).or_insert(when);
                *e = (*e).min(when);
            }
        }
    }
    let mut times = Vec::new();
    for p in priorities.iter().map(|p| Some(*p)).chain([None]) {
        let of: Vec<&&Ticket<'_>> = opened_within
            .iter()
            .filter(|t| p.is_none_or(|p| t.view.text("priority").unwrap_or("normal") == p))
            .collect();
        let mut response: Vec<i64> = of
            .iter()
            .filter_map(|t| first.get(&t.view.id).map(|f| hours(t.opened, *f)))
            .collect();
        let mut resolution: Vec<i64> = of
            .iter()
            .filter_map(|t| t.resolved.map(|r| hours(t.opened, r).max(0)))
            .collect();
        let open = of.iter().filter(|t| t.resolved.is_none()).count();
        times.push(vec![
            p.unwrap_or("all").to_string(),
            of.len().to_string(),
            hours_median(&mut response),
            hours_median(&mut resolution),
            open.to_string(),
        ]);
    }

    // The backlog, month by month.
    let end = q.to.unwrap_or(data.today);
    let mut month = end.first_of_month();
    let mut months = Vec::new();
    loop {
        months.push(month);
        let Ok(previous) = month.checked_sub(jiff::Span::new().months(1)) else {
            break;
        };
        let reached = match q.from {
            Some(f) => previous < f.first_of_month(),
            None => months.len() >= 12,
        };
        if reached || months.len() >= 120 {
            break;
        }
        month = previous;
    }
    months.reverse();
    let backlog = months
        .iter()
        .map(|m| {
            let last = m.last_of_month();
            let in_month = |d: Date| d >= *m && d <= last;
            let opened = all.iter().filter(|t| in_month(day(t.opened))).count();
            let resolved = all
                .iter()
                .filter(|t| t.resolved.is_some_and(|r| in_month(day(r))))
                .count();
            let open = all
                .iter()
                .filter(|t| day(t.opened) <= last && t.resolved.is_none_or(|r| day(r) > last))
                .count();
            vec![
                m.strftime("%Y-%m").to_string(),
                opened.to_string(),
                resolved.to_string(),
                open.to_string(),
            ]
        })
        .collect();

    vec![
        Section {
            title: "Tickets by status and priority".into(),
            columns: status_columns,
            rows: by_status,
            chart: Some(Chart {
                label: 0,
                bars: vec![priorities.len() + 1],
                line: None,
            }),
        },
        Section {
            title: "Response and resolution".into(),
            columns: [
                "priority",
                "tickets",
                "median hours to first response",
                "median hours to resolution",
                "still open",
            ]
            .map(String::from)
            .to_vec(),
            rows: times,
            chart: None,
        },
        Section {
            title: "Backlog by month".into(),
            columns: ["month", "opened", "resolved", "open at month end"]
                .map(String::from)
                .to_vec(),
            rows: backlog,
            chart: Some(Chart {
                label: 0,
                bars: vec![3],
                line: None,
            }),
        },
    ]
}

/// The median of tenths of hours, as hours with one decimal (rounded
/// half away from zero, as every figure of the reports).
fn hours_median(values: &mut [i64]) -> String {
    match median_times_ten(values) {
        None => "–".into(),
        Some(hundredths) => {
            let rounded = (hundredths.abs() + 5) / 10;
            tenths(if hundredths < 0 { -rounded } else { rounded })
        }
    }
}
