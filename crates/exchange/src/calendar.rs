//! iCalendar files in and out: a VEVENT is a meeting, a VTODO a task.
//! Reading is `calcard`'s (unfolding, escapes, time zones by TZID, the
//! Windows zone names Outlook writes); this module says which property
//! fills which column of [`CALENDAR_COLUMNS`].
//!
//! The UID is kept in the activity's `uid` field, so importing the same
//! file again matches every event and changes nothing; exporting writes
//! it back (or the record's id, for activities made in Rapport), so the
//! UIDs a calendar sees are stable.

use calcard::icalendar::timezone::TzResolver;
use calcard::icalendar::{
    ICalendarComponent, ICalendarComponentType, ICalendarEntry, ICalendarProperty, ICalendarStatus,
    ICalendarValue,
};
use calcard::{Entry, Parser};
use std::collections::HashMap;

use rapport_model::{FieldValue, Kind, RecordId, RecordView};

use crate::cards::{components, escape, line, what};
use crate::table::Row;

/// The columns an event or a to-do fills.
pub const CALENDAR_COLUMNS: [&str; 13] = [
    "UID",
    "Type",
    "Subject",
    "Body",
    "When",
    "Ends",
    "Due",
    "Done",
    "Location",
    "Attendees",
    "Zone",
    "Repeat",
    "Skip",
];

/// The events and to-dos of `text` as rows, in file order. A series is
/// one meeting with its rule; an occurrence moved out of it
/// (RECURRENCE-ID) is skipped in the series and, unless cancelled, a
/// meeting of its own, whose UID is the series' with the day it moved
/// from (`UID;RECURRENCE-ID=YYYY-MM-DD`), so that importing again matches
/// it. This is how Rapport keeps an occurrence moved alone.
pub fn calendar_rows(text: &str) -> Vec<Row> {
    // Where each event and to-do begins, in file order: calcard keeps
    // components in that order too.
    let mut starts: Vec<(u64, bool)> = components(text, "VEVENT")
        .iter()
        .chain(components(text, "VTODO").iter())
        .map(|c| (c.line, c.ended))
        .collect();
    starts.sort_unstable();
    let mut starts = starts.into_iter();
    let mut rows = Vec::new();
    let mut parser = Parser::new(text);
    loop {
        match parser.entry() {
            Entry::ICalendar(cal) => {
                // Built once per calendar: it reads every time zone the
                // calendar defines.
                let tz = cal.build_tz_resolver();
                // The days moved out of each series, by UID.
                let mut moved: HashMap<String, Vec<String>> = HashMap::new();
                for comp in &cal.components {
                    if let Some((uid, day)) = moved_from(comp, &tz) {
                        moved.entry(uid).or_default().push(day);
                    }
                }
                for comp in cal
                    .components
                    .iter()
                    .filter(|c| c.component_type.is_event_or_todo())
                {
                    let (line, ended) = starts.next().unwrap_or((0, true));
                    let exception = moved_from(comp, &tz);
                    if exception.is_some()
                        && matches!(comp.status(), Some(ICalendarStatus::Cancelled))
                    {
                        continue;
                    }
                    let mut row = Row {
                        number: rows.len() as u64 + 1,
                        line,
                        cells: vec![String::new(); CALENDAR_COLUMNS.len()],
                        problem: None,
                    };
                    if !ended {
                        row.problem = Some(
                            "the event has no END: the file looks cut short; export it again"
                                .into(),
                        );
                    } else {
                        match component_cells(comp, &tz) {
                            Ok(mut cells) => {
                                let at =
                                    |name: &str| CALENDAR_COLUMNS.iter().position(|c| *c == name);
                                if let (Some((uid, day)), Some(i)) = (&exception, at("UID")) {
                                    cells[i] = format!("{uid};RECURRENCE-ID={day}");
                                } else if let (Some(days), Some(i)) =
                                    (moved.get(&cells[0]), at("Skip"))
                                {
                                    for day in days {
                                        if !cells[i].split(", ").any(|d| d == day) {
                                            if !cells[i].is_empty() {
                                                cells[i].push_str(", ");
                                            }
                                            cells[i].push_str(day);
                                        }
                                    }
                                }
                                row.cells = cells;
                            }
                            Err(problem) => row.problem = Some(problem),
                        }
                    }
                    rows.push(row);
                }
            }
            Entry::Eof => break,
            // Text outside a calendar is not an event: skipped, as a
            // spreadsheet's blank rows are.
            Entry::InvalidLine(_) | Entry::VCard(_) => {}
            other => {
                rows.push(Row {
                    number: rows.len() as u64 + 1,
                    line: starts.next().map_or(0, |(line, _)| line),
                    cells: vec![String::new(); CALENDAR_COLUMNS.len()],
                    problem: Some(format!(
                        "the calendar cannot be read here ({})",
                        what(&other)
                    )),
                });
                if matches!(other, Entry::UnterminatedComponent(_)) {
                    break;
                }
            }
        }
    }
    rows
}

fn component_cells(
    comp: &ICalendarComponent,
    tz: &TzResolver<&str>,
) -> Result<Vec<String>, String> {
    let text = |p: ICalendarProperty| {
        comp.property(&p)
            .map(|e| {
                e.values
                    .iter()
                    .filter_map(ICalendarValue::as_text)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    let time = |p: ICalendarProperty| -> Result<String, String> {
        match comp.property(&p) {
            None => Ok(String::new()),
            Some(e) => {
                instant(e, tz).ok_or_else(|| format!("{} is not a time this can read", p.as_str()))
            }
        }
    };
    let todo = comp.component_type == ICalendarComponentType::VTodo;
    let done = todo
        && (comp.property(&ICalendarProperty::Completed).is_some()
            || matches!(comp.status(), Some(ICalendarStatus::Completed)));
    let attendees: Vec<String> = comp
        .properties(&ICalendarProperty::Attendee)
        .filter_map(|e| e.values.first().and_then(ICalendarValue::as_text))
        .map(|a| {
            let a = a.trim();
            a.strip_prefix("mailto:")
                .or_else(|| a.strip_prefix("MAILTO:"))
                .unwrap_or(a)
                .to_string()
        })
        .filter(|a| a.contains('@'))
        .collect();
    // A task's due field is a day: the day as written, in the task's own
    // zone (Thunderbird's midnight in Berlin is still that day).
    let due = match comp.property(&ICalendarProperty::Due) {
        None => String::new(),
        Some(e) => e
            .values
            .first()
            .and_then(ICalendarValue::as_partial_date_time)
            .and_then(|d| Some(format!("{:04}-{:02}-{:02}", d.year?, d.month?, d.day?)))
            .ok_or_else(|| "DUE is not a time this can read".to_string())?,
    };
    let summary = text(ICalendarProperty::Summary);
    let start = time(ICalendarProperty::Dtstart)?;
    // The meeting's own zone, as IANA names it (calcard reads Outlook's
    // Windows names as IANA ones): a repeating meeting keeps its
    // wall-clock time in it.
    let zone = comp
        .property(&ICalendarProperty::Dtstart)
        .and_then(ICalendarEntry::tz_id)
        .and_then(|id| tz.resolve(id))
        .and_then(|z| z.name())
        .map(|n| n.to_string())
        .filter(|n| rapport_model::calendar::zone(n).is_ok());
    let in_zone = zone
        .as_deref()
        .and_then(|z| jiff::tz::TimeZone::get(z).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let rule = match comp
        .property(&ICalendarProperty::Rrule)
        .and_then(|e| e.values.first())
    {
        Some(ICalendarValue::RecurrenceRule(rule)) => repeat_of(rule, &in_zone)?,
        Some(other) => other.as_text().unwrap_or("?").to_string(),
        None => String::new(),
    };
    // A rule Rapport cannot repeat (yearly, BYSETPOS, a garbled one) is
    // not a reason to leave the event out: it comes in once, at its first
    // occurrence, and its description says how it repeated.
    let mut body = text(ICalendarProperty::Description);
    let repeat = if rule.is_empty() || rule.parse::<rapport_model::calendar::Recurrence>().is_ok() {
        rule
    } else {
        if !body.is_empty() {
            body.push_str("\n\n");
        }
        body.push_str(&format!(
            "Repeats {rule} in the calendar it came from; Rapport repeats daily, weekly and monthly, so this is its first occurrence."
        ));
        String::new()
    };
    let mut skip: Vec<String> = Vec::new();
    for e in comp.properties(&ICalendarProperty::Exdate) {
        for v in &e.values {
            let day = v
                .as_partial_date_time()
                .and_then(|d| day_of(d, &in_zone))
                .ok_or("EXDATE is not a day or time this can read")?;
            if !skip.contains(&day) {
                skip.push(day);
            }
        }
    }
    let uid = match comp.uid().map(str::trim).filter(|u| !u.is_empty()) {
        Some(uid) => uid.to_string(),
        // Without a UID (some exports leave it out), one made of what
        // the event is: the same file imported again still matches.
        None => format!("rapport-{:016x}", fnv1a(&[&summary, &start, &due])),
    };
    Ok(vec![
        uid,
        if todo { "task" } else { "meeting" }.to_string(),
        summary,
        body,
        start,
        time(ICalendarProperty::Dtend)?,
        due,
        if done { "yes" } else { "" }.to_string(),
        text(ICalendarProperty::Location),
        attendees.join(", "),
        zone.unwrap_or_default(),
        repeat,
        skip.join(", "),
    ])
}

/// A rule as the `repeat` field reads it: UNTIL as a day (in the
/// meeting's zone, where the file gives a time), WKST left out (a week's
/// first day changes nothing Rapport repeats). A rule Rapport cannot
/// repeat (yearly, BYSETPOS, ...) is refused by the field, with why.
fn repeat_of(
    rule: &calcard::icalendar::ICalendarRecurrenceRule,
    zone: &jiff::tz::TimeZone,
) -> Result<String, String> {
    let until = match &rule.until {
        Some(u) => Some(
            day_of(u, zone)
                .ok_or("RRULE's UNTIL is not a day or time this can read")?
                .replace('-', ""),
        ),
        None => None,
    };
    Ok(rule
        .to_string()
        .split(';')
        .filter(|part| !part.starts_with("WKST="))
        .map(|part| match (part.strip_prefix("UNTIL="), &until) {
            (Some(_), Some(day)) => format!("UNTIL={day}"),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(";"))
}

/// The day of a DATE or DATE-TIME: as written, or for a UTC time, the day
/// it is in `zone`.
fn day_of(d: &calcard::common::PartialDateTime, zone: &jiff::tz::TimeZone) -> Option<String> {
    let (y, m, day) = (d.year?, d.month?, d.day?);
    if d.has_time() && d.has_zone() {
        let t = jiff::Timestamp::from_second(d.to_timestamp()?).ok()?;
        return Some(t.to_zoned_datetime(zone.clone()).date().to_string());
    }
    Some(format!("{y:04}-{m:02}-{day:02}"))
}

/// An occurrence moved out of its series: the series' UID and the day it
/// was on (RECURRENCE-ID, in its own zone).
fn moved_from(comp: &ICalendarComponent, tz: &TzResolver<&str>) -> Option<(String, String)> {
    let e = comp.property(&ICalendarProperty::RecurrenceId)?;
    let uid = comp.uid()?.trim().to_string();
    let zone = e
        .tz_id()
        .and_then(|id| tz.resolve(id))
        .and_then(|z| z.name())
        .and_then(|n| jiff::tz::TimeZone::get(&n).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let day = day_of(e.values.first()?.as_partial_date_time()?, &zone)?;
    Some((uid, day))
}

/// FNV-1a over the parts (with a separator): stable across runs and
/// builds, as a UID must be.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// A DATE or DATE-TIME as the activity fields read it: a UTC or zoned
/// time as RFC 3339 in UTC, a floating one as local wall-clock time, a
/// date as `YYYY-MM-DD`.
fn instant(
    e: &ICalendarEntry,
    tz: &calcard::icalendar::timezone::TzResolver<&str>,
) -> Option<String> {
    let d = e.values.first()?.as_partial_date_time()?;
    let (y, mo, da) = (d.year?, d.month?, d.day?);
    if !d.has_time() {
        return Some(format!("{y:04}-{mo:02}-{da:02}"));
    }
    let seconds = if d.has_zone() {
        d.to_timestamp()?
    } else if let Some(zone) = e.tz_id().and_then(|id| tz.resolve(id)) {
        d.to_date_time_with_tz(zone)?.timestamp()
    } else {
        let (h, mi, s) = (d.hour?, d.minute?, d.second.unwrap_or(0));
        return Some(format!("{y:04}-{mo:02}-{da:02} {h:02}:{mi:02}:{s:02}"));
    };
    let t = jiff::Timestamp::from_second(seconds).ok()?;
    Some(rapport_model::value::format_instant(t))
}

/// The live meetings and tasks among `records` as one calendar; the
/// people they are about, and their attendees, are attendees by their
/// first e-mail (give every kind, so that those are known). A repeating
/// meeting is one event with its rule (`RRULE`) and skipped days
/// (`EXDATE`), its times in its own zone (`TZID`) so that calendar apps
/// repeat it across daylight saving time as Rapport does; an all-day
/// meeting is a run of days. `UID` is the meeting's (an imported one's)
/// or its record id, so a subscribed calendar updates events in place.
pub fn activities_ics(records: &[RecordView]) -> String {
    let emails: HashMap<RecordId, String> = records
        .iter()
        .filter(|r| r.kind == Kind::Person && !r.deleted)
        .filter_map(|r| Some((r.id, r.get("emails")?.as_list().first()?.clone())))
        .collect();
    let email_of = |id: RecordId| emails.get(&id).cloned();
    let mut out =
        String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Rapport//Rapport CRM//EN\r\n");
    for a in records
        .iter()
        .filter(|a| !a.deleted && a.kind == Kind::Activity)
    {
        let kind = match a.text("type") {
            Some("meeting") => "VEVENT",
            Some("task") => "VTODO",
            _ => continue,
        };
        let text = |f: &str| a.text(f).filter(|t| !t.is_empty());
        out.push_str(&format!("BEGIN:{kind}\r\n"));
        let uid = text("uid").map_or_else(|| a.id.to_string(), str::to_string);
        line(&mut out, "UID", &escape(&uid));
        let stamp = jiff::Timestamp::from_second(a.updated).unwrap_or_default();
        line(&mut out, "DTSTAMP", &ics_time(stamp));
        line(&mut out, "LAST-MODIFIED", &ics_time(stamp));
        let todo = kind == "VTODO";
        if todo {
            if let Some(t) = text("when").and_then(|t| t.parse::<jiff::Timestamp>().ok()) {
                line(&mut out, "DTSTART", &ics_time(t));
            }
        } else {
            event_times(&mut out, a);
        }
        if let Some(d) = text("due") {
            line(&mut out, "DUE;VALUE=DATE", &d.replace('-', ""));
        }
        if let Some(s) = text("subject") {
            line(&mut out, "SUMMARY", &escape(s));
        }
        if let Some(b) = text("body") {
            line(&mut out, "DESCRIPTION", &escape(b));
        }
        if let Some(l) = text("location") {
            line(&mut out, "LOCATION", &escape(l));
        }
        if todo && a.get("done") == Some(&FieldValue::Flag(true)) {
            line(&mut out, "STATUS", "COMPLETED");
        }
        let mut attendees: Vec<String> = Vec::new();
        for field in ["about", "attendees"] {
            for id in a.get(field).map(FieldValue::as_list).unwrap_or_default() {
                if let Some(email) = id.parse::<RecordId>().ok().and_then(&email_of)
                    && !attendees.contains(&email)
                {
                    line(&mut out, "ATTENDEE", &format!("mailto:{email}"));
                    attendees.push(email);
                }
            }
        }
        out.push_str(&format!("END:{kind}\r\n"));
    }
    out.push_str("END:VCALENDAR\r\n");
    out
}

/// DTSTART, DTEND, RRULE and EXDATE of a meeting.
fn event_times(out: &mut String, a: &RecordView) {
    use rapport_model::calendar::Recurrence;
    let text = |f: &str| a.text(f).filter(|t| !t.is_empty());
    let Some(when) = text("when").and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return;
    };
    let ends = text("ends").and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let rule = text("repeat").and_then(|r| r.parse::<Recurrence>().ok());
    let all_day = a.get("all_day") == Some(&FieldValue::Flag(true));
    // A meeting without a zone repeats, and its days fall, in this
    // machine's zone, as the agenda reads it.
    let system = jiff::tz::TimeZone::system();
    let zone_name: Option<String> =
        match text("zone").filter(|z| jiff::tz::TimeZone::get(z).is_ok()) {
            Some(z) => Some(z.to_string()),
            None if rule.is_some() || all_day => system.iana_name().map(str::to_string),
            None => None,
        };
    let zone = zone_name
        .as_deref()
        .and_then(|z| jiff::tz::TimeZone::get(z).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let skip = rapport_model::calendar::skipped(a.get("skip")).unwrap_or_default();
    let start = when.to_zoned_datetime(zone.clone());
    if all_day {
        let first = start.date();
        let last = ends
            .map(|e| e.to_zoned_datetime(zone.clone()).date())
            .unwrap_or(first)
            .max(first);
        let after = last.tomorrow().unwrap_or(last);
        line(
            out,
            "DTSTART;VALUE=DATE",
            &first.strftime("%Y%m%d").to_string(),
        );
        line(
            out,
            "DTEND;VALUE=DATE",
            &after.strftime("%Y%m%d").to_string(),
        );
    } else if let (Some(z), Some(_)) = (zone_name.as_deref(), &rule) {
        // A repeating meeting keeps its wall-clock time in its zone.
        let local = |t: jiff::Timestamp| {
            t.to_zoned_datetime(zone.clone())
                .strftime("%Y%m%dT%H%M%S")
                .to_string()
        };
        line(out, &format!("DTSTART;TZID={z}"), &local(when));
        if let Some(e) = ends {
            line(out, &format!("DTEND;TZID={z}"), &local(e));
        }
    } else {
        line(out, "DTSTART", &ics_time(when));
        if let Some(e) = ends {
            line(out, "DTEND", &ics_time(e));
        }
    }
    let Some(rule) = rule else {
        return;
    };
    // UNTIL takes DTSTART's type: a day for an all-day meeting, else the
    // end of that day in the meeting's zone, in UTC.
    let mut written = rule.clone();
    written.until = None;
    let mut text = written.to_string();
    if let Some(until) = rule.until {
        let end = until
            .at(23, 59, 59, 0)
            .to_zoned_datetime(zone.clone())
            .map(|z| ics_time(z.timestamp()));
        match (all_day, end) {
            (true, _) => text.push_str(&format!(";UNTIL={}", until.strftime("%Y%m%d"))),
            (false, Ok(end)) => text.push_str(&format!(";UNTIL={end}")),
            (false, Err(_)) => {}
        }
    }
    line(out, "RRULE", &text);
    for day in skip {
        if all_day {
            line(
                out,
                "EXDATE;VALUE=DATE",
                &day.strftime("%Y%m%d").to_string(),
            );
            continue;
        }
        let at = day
            .to_datetime(start.time())
            .to_zoned_datetime(zone.clone())
            .map(|z| z.timestamp());
        match (zone_name.as_deref(), at) {
            (_, Err(_)) => {}
            (Some(z), Ok(_)) => line(
                out,
                &format!("EXDATE;TZID={z}"),
                &day.to_datetime(start.time())
                    .strftime("%Y%m%dT%H%M%S")
                    .to_string(),
            ),
            (None, Ok(t)) => line(out, "EXDATE", &ics_time(t)),
        }
    }
}

fn ics_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell<'a>(row: &'a Row, column: &str) -> &'a str {
        let i = CALENDAR_COLUMNS
            .iter()
            .position(|c| *c == column)
            .expect("a calendar column");
        &row.cells[i]
    }

    const OUTLOOK: &str = "BEGIN:VCALENDAR\r\nPRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN\r\nVERSION:2.0\r\n\
        BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\nBEGIN:STANDARD\r\nDTSTART:16011028T030000\r\n\
        RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\n\
        BEGIN:DAYLIGHT\r\nDTSTART:16010325T020000\r\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r\n\
        TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n\
        BEGIN:VEVENT\r\nUID:040000008200E00074C5B7101A82E008\r\nSUMMARY:Quarterly review\\, Acme\r\n\
        DTSTART;TZID=W. Europe Standard Time:20260315T100000\r\nDTEND;TZID=W. Europe Standard Time:20260315T113000\r\n\
        LOCATION:Room 4\r\nATTENDEE;CN=Ada;RSVP=TRUE:mailto:ada@acme.example\r\nDESCRIPTION:Bring the\\nnumbers\r\nEND:VEVENT\r\n\
        BEGIN:VTODO\r\nUID:todo-1\r\nSUMMARY:Send offer\r\nDUE;VALUE=DATE:20260320\r\nSTATUS:COMPLETED\r\nEND:VTODO\r\n\
        END:VCALENDAR\r\n";

    #[test]
    fn reads_an_outlook_event_in_its_zone_and_a_done_todo() {
        let rows = calendar_rows(OUTLOOK);
        assert_eq!(rows.len(), 2);
        let m = &rows[0];
        assert_eq!(m.line, 19);
        assert_eq!(cell(m, "Type"), "meeting");
        assert_eq!(cell(m, "Subject"), "Quarterly review, Acme");
        // 10:00 in Central European winter time is 09:00 UTC.
        assert_eq!(cell(m, "When"), "2026-03-15T09:00:00Z");
        assert_eq!(cell(m, "Ends"), "2026-03-15T10:30:00Z");
        assert_eq!(cell(m, "Attendees"), "ada@acme.example");
        assert_eq!(cell(m, "Body"), "Bring the\nnumbers");
        let t = &rows[1];
        assert_eq!(cell(t, "Type"), "task");
        assert_eq!(cell(t, "Due"), "2026-03-20");
        assert_eq!(cell(t, "Done"), "yes");
        assert_eq!(cell(t, "UID"), "todo-1");
    }

    #[test]
    fn a_due_midnight_in_its_zone_keeps_its_day_and_a_cut_event_is_a_problem() {
        let text = "BEGIN:VCALENDAR\nBEGIN:VTODO\nUID:t\nSUMMARY:Pay\nDUE;TZID=Europe/Berlin:20260320T000000\nEND:VTODO\n\
                    BEGIN:VEVENT\nUID:e\nSUMMARY:Cut\nDTSTART:20260401T083000Z\n";
        let rows = calendar_rows(text);
        assert_eq!(cell(&rows[0], "Due"), "2026-03-20");
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(
            rows[1]
                .problem
                .as_deref()
                .is_some_and(|p| p.contains("cut short"))
        );
    }

    #[test]
    fn floating_times_stay_wall_clock_times() {
        let text = "BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:x\nDTSTART:20260401T083000\nSUMMARY:Standup\nEND:VEVENT\nEND:VCALENDAR\n";
        let rows = calendar_rows(text);
        assert_eq!(cell(&rows[0], "When"), "2026-04-01 08:30:00");
    }

    #[test]
    fn a_repeating_meeting_writes_until_and_skipped_days_in_dtstarts_type() {
        let meeting = |fields: &[(&str, &str)]| {
            let mut f: std::collections::BTreeMap<String, FieldValue> = fields
                .iter()
                .map(|(k, v)| (k.to_string(), FieldValue::Text(v.to_string())))
                .collect();
            f.insert("type".into(), FieldValue::Text("meeting".into()));
            RecordView::new(RecordId::new(1, [1; 10]), Kind::Activity, f)
        };
        let timed = meeting(&[
            ("when", "2026-03-16T08:00:00Z"),
            ("zone", "Europe/Berlin"),
            ("repeat", "FREQ=WEEKLY;UNTIL=20260430"),
            ("skip", "2026-03-23"),
        ]);
        let ics = activities_ics(&[timed]);
        assert!(
            ics.contains("DTSTART;TZID=Europe/Berlin:20260316T090000\r\n"),
            "{ics}"
        );
        // The end of 30 April in Berlin (summer time), in UTC.
        assert!(
            ics.contains("RRULE:FREQ=WEEKLY;UNTIL=20260430T215959Z\r\n"),
            "{ics}"
        );
        assert!(
            ics.contains("EXDATE;TZID=Europe/Berlin:20260323T090000\r\n"),
            "{ics}"
        );
        let mut fair = meeting(&[
            ("when", "2026-03-15T23:00:00Z"),
            ("zone", "Europe/Berlin"),
            ("repeat", "FREQ=MONTHLY;UNTIL=20260630"),
            ("skip", "2026-04-16"),
        ]);
        fair.fields.insert("all_day".into(), FieldValue::Flag(true));
        let ics = activities_ics(&[fair]);
        assert!(ics.contains("DTSTART;VALUE=DATE:20260316\r\n"), "{ics}");
        assert!(
            ics.contains("RRULE:FREQ=MONTHLY;UNTIL=20260630\r\n"),
            "{ics}"
        );
        assert!(ics.contains("EXDATE;VALUE=DATE:20260416\r\n"), "{ics}");

        // Read back: the same rule, skipped day and zone.
        let timed = meeting(&[
            ("when", "2026-03-16T08:00:00Z"),
            ("zone", "Europe/Berlin"),
            ("repeat", "FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20260430"),
            ("skip", "2026-03-23"),
        ]);
        let rows = calendar_rows(&activities_ics(&[timed]));
        assert_eq!(cell(&rows[0], "Zone"), "Europe/Berlin");
        assert_eq!(
            cell(&rows[0], "Repeat"),
            "FREQ=WEEKLY;UNTIL=20260430;BYDAY=MO,WE"
        );
        assert_eq!(cell(&rows[0], "Skip"), "2026-03-23");
    }

    #[test]
    fn an_outlook_series_reads_with_its_rule_exceptions_and_zone() {
        let text = "BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:series-1\nSUMMARY:Weekly review\n\
                    DTSTART;TZID=America/New_York:20260302T090000\n\
                    DTEND;TZID=America/New_York:20260302T100000\n\
                    RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;UNTIL=20260601T125959Z;WKST=SU\n\
                    EXDATE;TZID=America/New_York:20260316T090000,20260330T090000\n\
                    EXDATE:20260413T130000Z\nEND:VEVENT\n\
                    BEGIN:VEVENT\nUID:series-1\nRECURRENCE-ID;TZID=America/New_York:20260427T090000\n\
                    DTSTART;TZID=America/New_York:20260428T090000\nSUMMARY:Moved\nEND:VEVENT\n\
                    BEGIN:VEVENT\nUID:bday\nSUMMARY:Birthday\nDTSTART;VALUE=DATE:20260310\n\
                    RRULE:FREQ=YEARLY\nEND:VEVENT\nEND:VCALENDAR\n";
        let rows = calendar_rows(text);
        assert_eq!(rows.len(), 3, "{rows:?}");
        let r = &rows[0];
        assert_eq!(cell(r, "Zone"), "America/New_York");
        // UNTIL at 12:59:59 UTC is 1 June in New York; WKST changes nothing.
        assert_eq!(
            cell(r, "Repeat"),
            "FREQ=WEEKLY;UNTIL=20260601;INTERVAL=2;BYDAY=MO"
        );
        // Its skipped days, and the day an occurrence moved from.
        assert_eq!(
            cell(r, "Skip"),
            "2026-03-16, 2026-03-30, 2026-04-13, 2026-04-27"
        );
        // The moved occurrence: a meeting of its own, matched by its UID.
        let m = &rows[1];
        assert_eq!(cell(m, "UID"), "series-1;RECURRENCE-ID=2026-04-27");
        assert_eq!(cell(m, "Subject"), "Moved");
        assert_eq!(cell(m, "When"), "2026-04-28T13:00:00Z");
        assert_eq!(cell(m, "Repeat"), "");
        // A yearly rule: the birthday comes in once, and says how it repeated.
        assert_eq!(cell(&rows[2], "Repeat"), "");
        assert!(cell(&rows[2], "Body").contains("Repeats FREQ=YEARLY"));
        // A cancelled occurrence is only a skipped day.
        let cancelled = text.replace("SUMMARY:Moved", "SUMMARY:Moved\nSTATUS:CANCELLED");
        let rows = calendar_rows(&cancelled);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(cell(&rows[0], "Skip").ends_with("2026-04-27"));
    }

    #[test]
    fn an_event_without_uid_gets_one_made_of_what_it_is() {
        let text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20260401T083000Z\nSUMMARY:Standup\nEND:VEVENT\n\
                    BEGIN:VEVENT\nDTSTART:20260402T083000Z\nSUMMARY:Standup\nEND:VEVENT\nEND:VCALENDAR\n";
        let (a, b) = (calendar_rows(text), calendar_rows(text));
        assert_eq!(cell(&a[0], "UID"), cell(&b[0], "UID"), "stable");
        assert_ne!(cell(&a[0], "UID"), cell(&a[1], "UID"), "distinct");
    }
}
