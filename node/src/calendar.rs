//! The agenda: meetings and calls (each occurrence of a repeating one)
//! and tasks by due day, within some days, in the reader's time zone,
//! with what overlaps marked. Sans-IO: records, the window and the zone
//! are passed in; `ops` reads them.

use std::collections::BTreeMap;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ZonedDateTime};
use rapport_model::calendar::{Recurrence, occurrences, skipped};
use rapport_model::{FieldValue, Kind, RecordId, RecordView};

/// How long a meeting or call without an end is shown as lasting.
const DEFAULT_MINUTES: i64 = 30;

/// What to show: days from a day, whose.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgendaQuery {
    /// The first day, `YYYY-MM-DD` [today].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// How many days [1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    /// Whose: an owner's name; `None` with `everyone` false: this user's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub everyone: bool,
    /// The reader's time zone (IANA) [this node's].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Only this space's records (its name or id; `private` for this
    /// device's own) [every space].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
}

/// A meeting, call or task to move (the web's Move form and drag,
/// `rapport calendar move`, `POST /api/v1/agenda/move`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MoveQuery {
    /// The record (id, prefix or title).
    pub record: String,
    /// The day the occurrence moved is on (a repeating meeting) [its first].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The day it moves to.
    pub day: String,
    /// The time it starts at, `HH:MM` [the same].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Only this occurrence of a repeating meeting: it leaves the series
    /// (its day is skipped) and becomes a meeting of its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub only: bool,
}

/// A record an entry is about, or one of its attendees.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Link {
    pub id: RecordId,
    pub title: String,
}

/// One meeting, call or task in the agenda.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub id: RecordId,
    /// meeting, call or task.
    pub kind: String,
    pub title: String,
    /// The day it is on, in the reader's zone.
    pub day: String,
    /// Start and end in the reader's zone, `HH:MM`; none for all-day
    /// meetings and tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// The start as an instant (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    pub all_day: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attendees: Vec<Link>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub about: Vec<Link>,
    /// One occurrence of a repeating meeting.
    pub repeats: bool,
    /// Overlaps another timed entry of the same owner.
    pub overlaps: bool,
    /// A task done.
    pub done: bool,
    /// A task due before today and not done.
    pub overdue: bool,
    /// When a timed entry ends (for overlaps).
    #[serde(skip)]
    pub ends_at: Option<Timestamp>,
}

/// The agenda of some days.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Agenda {
    pub from: String,
    pub days: u32,
    pub zone: String,
    /// Whose: a name, or `None` for everyone's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// In time order, day by day; overdue tasks first.
    pub entries: Vec<Entry>,
    /// The user's reminders due now, when the agenda shows today.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reminders: Vec<Due>,
}

/// The window and whose, read.
#[derive(Debug, Clone)]
pub struct Window {
    pub from: Date,
    pub days: u32,
    pub zone: TimeZone,
    pub today: Date,
    /// Lower case; `None`: everyone's.
    pub owner: Option<String>,
}

impl Window {
    fn bounds(&self) -> Option<(Timestamp, Timestamp)> {
        let start = self.from.to_zoned_datetime(self.zone.clone()).ok()?;
        let end = self
            .from
            .checked_add(Span::new().days(i64::from(self.days)))
            .ok()?
            .to_zoned_datetime(self.zone.clone())
            .ok()?;
        Some((start.timestamp(), end.timestamp()))
    }

    fn last(&self) -> Date {
        self.from
            .checked_add(Span::new().days(i64::from(self.days.max(1)) - 1))
            .unwrap_or(self.from)
    }

    fn whose(&self, v: &RecordView) -> bool {
        self.owner.as_deref().is_none_or(|o| {
            v.text("owner")
                .is_some_and(|own| own.trim().to_lowercase() == o)
        })
    }
}

/// The agenda of `window` from `records` (activities, and the records
/// they name, for titles).
pub fn agenda(records: &[RecordView], window: &Window) -> Vec<Entry> {
    let titles: BTreeMap<RecordId, String> = records.iter().map(|r| (r.id, r.title())).collect();
    let links = |v: &RecordView, field: &str| -> Vec<Link> {
        v.get(field)
            .map(FieldValue::as_list)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.parse::<RecordId>().ok())
            .map(|id| Link {
                id,
                title: titles.get(&id).cloned().unwrap_or_else(|| id.to_string()),
            })
            .collect()
    };
    let Some((from, to)) = window.bounds() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for v in records
        .iter()
        .filter(|v| v.kind == Kind::Activity && !v.deleted && window.whose(v))
    {
        let kind = v.text("type").unwrap_or("");
        let base = |day: Date| Entry {
            id: v.id,
            kind: kind.to_string(),
            title: v
                .text("subject")
                .filter(|s| !s.is_empty())
                .map_or_else(|| v.title(), str::to_string),
            day: day.to_string(),
            start: None,
            end: None,
            at: None,
            all_day: false,
            location: v.text("location").map(str::to_string),
            owner: v.text("owner").map(str::to_string),
            attendees: links(v, "attendees"),
            about: links(v, "about"),
            repeats: v.text("repeat").is_some(),
            overlaps: false,
            done: v.get("done") == Some(&FieldValue::Flag(true)),
            overdue: false,
            ends_at: None,
        };
        match kind {
            "task" => {
                let Some(due) = v.text("due").and_then(|d| d.parse::<Date>().ok()) else {
                    continue;
                };
                let mut e = base(due);
                let in_window = due >= window.from && due <= window.last();
                // Overdue tasks show on today, if today is shown.
                let today_shown = window.today >= window.from && window.today <= window.last();
                if due < window.today && !e.done && today_shown {
                    e.overdue = true;
                    out.push(e);
                } else if in_window {
                    out.push(e);
                }
            }
            "meeting" | "call" => {
                let Some(when) = v.text("when").and_then(|t| t.parse::<Timestamp>().ok()) else {
                    continue;
                };
                let zone = v
                    .text("zone")
                    .and_then(|z| TimeZone::get(z).ok())
                    .unwrap_or_else(|| window.zone.clone());
                let ends = v.text("ends").and_then(|t| t.parse::<Timestamp>().ok());
                let all_day = v.get("all_day") == Some(&FieldValue::Flag(true));
                let first_zoned = when.to_zoned_datetime(zone.clone());
                let (first, length) = if all_day {
                    let day = first_zoned.date();
                    let last = ends
                        .map_or(day, |e| e.to_zoned_datetime(zone.clone()).date())
                        .max(day);
                    let Ok(start) = day.to_zoned_datetime(zone.clone()) else {
                        continue;
                    };
                    let n = day.until(last).map_or(0, |s| i64::from(s.get_days()));
                    (start, Span::new().days(n + 1))
                } else {
                    let length = ends
                        .filter(|e| *e > when)
                        .map_or(DEFAULT_MINUTES * 60, |e| e.as_second() - when.as_second());
                    (first_zoned, Span::new().seconds(length))
                };
                let rule = v.text("repeat").and_then(|r| r.parse::<Recurrence>().ok());
                let skip = skipped(v.get("skip")).unwrap_or_default();
                for start in occurrences(&first, length, rule.as_ref(), &skip, from, to) {
                    let end = start.checked_add(length).unwrap_or_else(|_| start.clone());
                    let local = start.timestamp().to_zoned_datetime(window.zone.clone());
                    let local_end = end.timestamp().to_zoned_datetime(window.zone.clone());
                    let mut e = base(if all_day { start.date() } else { local.date() });
                    e.at = Some(rapport_model::value::format_instant(start.timestamp()));
                    if all_day {
                        e.all_day = true;
                        // A meeting of several days shows on each of them.
                        let mut day = start.date().max(window.from);
                        let last = end
                            .date()
                            .checked_sub(Span::new().days(1))
                            .unwrap_or(start.date())
                            .min(window.last());
                        while day <= last {
                            let mut each = e.clone();
                            each.day = day.to_string();
                            out.push(each);
                            let Ok(next) = day.checked_add(Span::new().days(1)) else {
                                break;
                            };
                            day = next;
                        }
                        continue;
                    }
                    e.start = Some(hhmm(&local));
                    e.end = Some(hhmm(&local_end));
                    e.ends_at = Some(end.timestamp());
                    // Begun the evening before the window: shown on its first day.
                    if local.date() < window.from {
                        e.day = window.from.to_string();
                    }
                    out.push(e);
                }
            }
            _ => {}
        }
    }
    mark_overlaps(&mut out);
    out.sort_by(|a, b| {
        (!a.overdue, &a.day, !a.all_day, &a.at, &a.title)
            .cmp(&(!b.overdue, &b.day, !b.all_day, &b.at, &b.title))
    });
    out
}

impl crate::Repo {
    /// Writes an occurrence taken out of its series ([`detached`]): the
    /// meeting of its own and the series' skipped day, in one write, so
    /// that a crash leaves both or neither.
    pub fn detach_occurrence(
        &self,
        series: &RecordView,
        skip: &str,
        occurrence: &[crate::repo::Input],
    ) -> Result<RecordView, crate::NodeError> {
        if series.deleted {
            return Err(crate::repo::deleted_error(series));
        }
        self.check_space_writable(series.space)?;
        let ctx = self.context();
        let fields = self.prepare(Kind::Activity, series.space, occurrence, &ctx)?;
        let def = self.field_in(Some(series.space), Kind::Activity, "skip")?;
        let skip = self.parse_input(def, skip, &ctx, Some(series.space))?;
        let new = crate::repo::NewRecord {
            id: self.next_record_id(&mut 0)?,
            kind: Kind::Activity,
            space: series.space,
            fields: fields.into_iter().collect(),
        };
        let edits = vec![(
            series.clone(),
            vec![rapport_model::Edit::Set("skip".into(), skip)],
        )];
        let mut written = self.write_records(vec![new], edits)?;
        Ok(written.remove(0))
    }

    /// The activities that may show in an agenda of the days `from` to
    /// `to` (both included), read through the field index rather than
    /// every activity: those that start within a day of it (zones), end
    /// after it starts, repeat, or are tasks due by its end (overdue ones
    /// too). Deleted ones included, as `all` gives them.
    pub fn agenda_candidates(
        &self,
        from: Date,
        to: Date,
    ) -> Result<Vec<RecordView>, crate::NodeError> {
        use rapport_store::fields::Item;
        let store = self.store();
        let day = |d: Date, n: i64| {
            let d = d.checked_add(Span::new().days(n)).unwrap_or(d);
            Item::Text(d.to_string().into_bytes())
        };
        let (low, high) = (day(from, -2), day(to, 2));
        let activity = Kind::Activity;
        let mut ids = store.ids_between(activity, "when", Some(&low), Some(&high))?;
        ids.extend(store.ids_between(activity, "ends", Some(&low), None)?);
        ids.extend(store.ids_having(activity, "repeat")?);
        ids.extend(store.ids_between(activity, "due", None, Some(&high))?);
        ids.sort_unstable();
        ids.dedup();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(self.view(id)?);
        }
        Ok(out)
    }
}

/// Names the records entries link to by `title_of` (the agenda is made
/// from activities alone; their links are looked up after).
pub fn name_links(entries: &mut [Entry], title_of: impl Fn(RecordId) -> Option<String>) {
    let mut known: BTreeMap<RecordId, Option<String>> = BTreeMap::new();
    for e in entries.iter_mut() {
        for link in e.attendees.iter_mut().chain(e.about.iter_mut()) {
            let title = known.entry(link.id).or_insert_with(|| title_of(link.id));
            if let Some(t) = title {
                link.title = t.clone();
            }
        }
    }
}

/// A reminder that has fired and is not dismissed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Due {
    pub id: RecordId,
    pub kind: String,
    pub title: String,
    /// The occurrence it is for (a meeting's start, a task's due day):
    /// what dismissing it records.
    pub key: String,
    /// When it fired, RFC 3339 UTC.
    pub fired: String,
    /// The day and time of what it reminds of, in the reader's zone.
    pub day: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

/// How long after a meeting starts its reminder still shows.
const SHOWN_AFTER_START_HOURS: i64 = 12;

/// The reminders of `window.owner`'s meetings, calls and tasks (with a
/// `remind`) that have fired by `now` and are not dismissed: a meeting's
/// until twelve hours after it starts, a task's until it is done.
pub fn due(records: &[RecordView], now: Timestamp, window: &Window) -> Vec<Due> {
    let by_id: BTreeMap<RecordId, &RecordView> = records.iter().map(|r| (r.id, r)).collect();
    let mut out = Vec::new();
    for e in agenda(records, window) {
        let Some(v) = by_id.get(&e.id) else {
            continue;
        };
        let Some(remind) = v
            .text("remind")
            .and_then(|r| r.parse::<rapport_model::calendar::Remind>().ok())
        else {
            continue;
        };
        let (start, key) = match (&e.at, e.kind.as_str()) {
            // "09:00 on the day" is the meeting's day in its own zone.
            (Some(at), _) => match at.parse::<Timestamp>() {
                Ok(t) => {
                    let zone = v
                        .text("zone")
                        .and_then(|z| TimeZone::get(z).ok())
                        .unwrap_or_else(|| window.zone.clone());
                    (t.to_zoned_datetime(zone), at.clone())
                }
                Err(_) => continue,
            },
            (None, "task") if !e.done => {
                let Ok(nine) = e
                    .day
                    .parse::<Date>()
                    .map(|d| d.at(9, 0, 0, 0))
                    .and_then(|d| d.to_zoned_datetime(window.zone.clone()))
                else {
                    continue;
                };
                (nine, e.day.clone())
            }
            _ => continue,
        };
        let dismissed = dismissed_keys(v).contains(&key.as_str());
        let Some(fired) = remind.fires(&start) else {
            continue;
        };
        let over = e.kind != "task"
            && start
                .timestamp()
                .checked_add(Span::new().hours(SHOWN_AFTER_START_HOURS))
                .is_ok_and(|end| now >= end);
        if fired <= now
            && !over
            && !dismissed
            && !out.iter().any(|d: &Due| d.id == e.id && d.key == key)
        {
            out.push(Due {
                id: e.id,
                kind: e.kind.clone(),
                title: e.title.clone(),
                key,
                fired: rapport_model::value::format_instant(fired),
                day: e.day.clone(),
                start: e.start.clone(),
            });
        }
    }
    out
}

/// The occurrences whose reminders are dismissed. A list, so that two
/// devices dismissing different occurrences at once both keep theirs
/// (Automerge merges the additions); read from text too, as it was kept
/// before.
fn dismissed_keys(v: &RecordView) -> Vec<&str> {
    match v.get("dismissed") {
        Some(FieldValue::List(keys)) => keys.iter().map(String::as_str).collect(),
        Some(FieldValue::Text(t)) => t.split(',').map(str::trim).collect(),
        _ => Vec::new(),
    }
}

/// The `dismissed` value after dismissing `keys`: the newest 20 kept.
pub fn dismissed_with(v: &RecordView, keys: &[String]) -> String {
    let mut all: Vec<String> = dismissed_keys(v)
        .into_iter()
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    for k in keys {
        if !all.contains(k) {
            all.push(k.clone());
        }
    }
    let skip = all.len().saturating_sub(20);
    all[skip..].join(",")
}

/// One occurrence of a repeating meeting, the one on `from`, taken out of
/// its series and moved to `day` (and `time`): the series' `skip` with
/// that day added, and the inputs of a meeting of its own, as the
/// occurrence was (subject, place, people, reminder, length) at its new
/// time. Calendar apps call it an exception; here it is two records, so
/// that the feed, the agenda and every peer read it without a notion of
/// exceptions.
pub fn detached(
    v: &RecordView,
    from: &str,
    day: &str,
    time: Option<&str>,
    zone: &TimeZone,
) -> Result<(String, Vec<(String, String)>), String> {
    let rule = v
        .text("repeat")
        .and_then(|r| r.parse::<Recurrence>().ok())
        .ok_or("it does not repeat: move it as a whole")?;
    let on: Date = from
        .trim()
        .parse()
        .map_err(|_| format!("`{from}` is not a day: expected one such as 2026-03-31"))?;
    let when = v
        .text("when")
        .and_then(|t| t.parse::<Timestamp>().ok())
        .ok_or("it has no time to move from")?;
    let zone = v
        .text("zone")
        .and_then(|z| TimeZone::get(z).ok())
        .unwrap_or_else(|| zone.clone());
    let first = when.to_zoned_datetime(zone.clone());
    let length = v
        .text("ends")
        .and_then(|t| t.parse::<Timestamp>().ok())
        .and_then(|e| first.timestamp().until(e).ok())
        .unwrap_or_default();
    let skip_days = skipped(v.get("skip")).unwrap_or_default();
    // The occurrence must be one the series has.
    let window_from = on
        .to_zoned_datetime(zone.clone())
        .map_err(|e| e.to_string())?;
    let window_to = window_from.tomorrow().map_err(|e| e.to_string())?;
    let occurrence = occurrences(
        &first,
        length,
        Some(&rule),
        &skip_days,
        window_from.timestamp(),
        window_to.timestamp(),
    )
    .into_iter()
    .find(|o| o.date() == on)
    .ok_or_else(|| format!("it does not take place on {on}"))?;
    let mut fields = v.fields.clone();
    for series_only in ["repeat", "skip", "dismissed", "uid"] {
        fields.remove(series_only);
    }
    fields.insert(
        "when".into(),
        FieldValue::Text(rapport_model::value::format_instant(occurrence.timestamp())),
    );
    if let Some(end) = occurrence
        .checked_add(length)
        .ok()
        .filter(|_| v.text("ends").is_some())
    {
        fields.insert(
            "ends".into(),
            FieldValue::Text(rapport_model::value::format_instant(end.timestamp())),
        );
    }
    let alone = RecordView::new(v.id, v.kind, fields);
    let moved_sets = moved(&alone, None, day, time, &zone)?;
    let mut inputs: BTreeMap<String, String> = alone
        .fields
        .iter()
        .map(|(name, value)| {
            let text = match value {
                FieldValue::List(items) => items.join(","),
                other => other.to_string(),
            };
            (name.clone(), text)
        })
        .collect();
    inputs.extend(moved_sets);
    let mut skip: Vec<String> = skip_days.iter().map(Date::to_string).collect();
    skip.push(on.to_string());
    Ok((skip.join(", "), inputs.into_iter().collect()))
}

/// The fields that move a meeting or call shown on `from` (an occurrence
/// of a repeating one, a day of a run of days; its first day if `None`)
/// to `day` (and `time`, `HH:MM`, else the same time), in its zone (its
/// own, else `zone`), keeping its length; or a task's due day. The whole
/// series or run moves by as many days, so the other occurrences keep
/// their places relative to it. The edit's inputs, or why it cannot move.
pub fn moved(
    v: &RecordView,
    from: Option<&str>,
    day: &str,
    time: Option<&str>,
    zone: &TimeZone,
) -> Result<Vec<(String, String)>, String> {
    let read = |d: &str| {
        d.trim()
            .parse::<Date>()
            .map_err(|_| format!("`{d}` is not a day: expected one such as 2026-03-31"))
    };
    let day: Date = read(day)?;
    match v.text("type") {
        Some("task") => return Ok(vec![("due".into(), day.to_string())]),
        Some("meeting" | "call") => {}
        other => {
            return Err(format!(
                "only meetings, calls and tasks are in the calendar; this is a {}",
                other.unwrap_or("record")
            ));
        }
    }
    let when = v
        .text("when")
        .and_then(|t| t.parse::<Timestamp>().ok())
        .ok_or("it has no time to move from")?;
    let zone = v
        .text("zone")
        .and_then(|z| TimeZone::get(z).ok())
        .unwrap_or_else(|| zone.clone());
    let old = when.to_zoned_datetime(zone.clone());
    let clock = match time.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => t
            .parse::<jiff::civil::Time>()
            .map_err(|_| format!("`{t}` is not a time: expected one such as 14:30"))?,
        None => old.time(),
    };
    // The day the first occurrence lands on: shifted as the one moved.
    let shown = match from.map(str::trim).filter(|f| !f.is_empty()) {
        Some(f) => read(f)?,
        None => old.date(),
    };
    let shift = shown.until(day).map_or(0, |s| i64::from(s.get_days()));
    let first = old
        .date()
        .checked_add(Span::new().days(shift))
        .map_err(|e| format!("{day} is out of range: {e}"))?;
    let start = first
        .to_datetime(clock)
        .to_zoned_datetime(zone)
        .map_err(|e| format!("{day} {clock} does not exist in the meeting's time zone: {e}"))?;
    let mut sets = vec![(
        "when".to_string(),
        rapport_model::value::format_instant(start.timestamp()),
    )];
    if let Some(ends) = v.text("ends").and_then(|t| t.parse::<Timestamp>().ok()) {
        let length = ends.as_second() - when.as_second();
        let end = start.timestamp().as_second() + length;
        if let Ok(end) = Timestamp::from_second(end) {
            sets.push(("ends".into(), rapport_model::value::format_instant(end)));
        }
    }
    // A repeating meeting's weekdays, end and skipped days move with it.
    let by = |d: Date| d.checked_add(Span::new().days(shift)).unwrap_or(d);
    if shift != 0
        && let Some(mut rule) = v.text("repeat").and_then(|r| r.parse::<Recurrence>().ok())
    {
        for d in &mut rule.by_day {
            let moved = i64::from(d.to_monday_zero_offset()) + shift;
            *d = Weekday::from_monday_zero_offset(moved.rem_euclid(7) as i8).unwrap_or(*d);
        }
        rule.by_day.sort_by_key(|d| d.to_monday_zero_offset());
        rule.until = rule.until.map(by);
        sets.push(("repeat".into(), rule.to_string()));
        if let Ok(skip) = skipped(v.get("skip"))
            && !skip.is_empty()
        {
            let days: Vec<String> = skip.into_iter().map(|d| by(d).to_string()).collect();
            sets.push(("skip".into(), days.join(", ")));
        }
    }
    Ok(sets)
}

fn hhmm(z: &ZonedDateTime) -> String {
    z.strftime("%H:%M").to_string()
}

/// Marks timed entries of one owner that overlap in time.
fn mark_overlaps(entries: &mut [Entry]) {
    let mut timed: Vec<(usize, Timestamp, Timestamp)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if e.all_day || e.start.is_none() {
            continue;
        }
        let Some(at) = e.at.as_deref().and_then(|a| a.parse::<Timestamp>().ok()) else {
            continue;
        };
        timed.push((i, at, e.ends_at.unwrap_or(at)));
    }
    timed.sort_by_key(|t| t.1);
    let mut hit = vec![false; entries.len()];
    for (a, &(i, _, end_i)) in timed.iter().enumerate() {
        for &(j, start_j, _) in &timed[a + 1..] {
            if start_j >= end_i {
                break;
            }
            if entries[i].owner.as_deref().map(str::to_lowercase)
                == entries[j].owner.as_deref().map(str::to_lowercase)
            {
                hit[i] = true;
                hit[j] = true;
            }
        }
    }
    for (e, h) in entries.iter_mut().zip(hit) {
        e.overlaps = h;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn activity(n: u8, fields: &[(&str, &str)]) -> RecordView {
        RecordView::new(
            RecordId::new(1_700_000_000_000, [n; 10]),
            Kind::Activity,
            fields
                .iter()
                .map(|(k, v)| {
                    let value = match *v {
                        "yes" => FieldValue::Flag(true),
                        _ => FieldValue::Text(v.to_string()),
                    };
                    (k.to_string(), value)
                })
                .collect(),
        )
    }

    fn week(zone: &str, owner: Option<&str>) -> Window {
        Window {
            from: date(2026, 3, 23),
            days: 7,
            zone: TimeZone::get(zone).expect("tz"),
            today: date(2026, 3, 25),
            owner: owner.map(str::to_string),
        }
    }

    #[test]
    fn a_week_in_the_readers_zone_with_repeats_tasks_and_overlaps() {
        let records = [
            // Weekly 09:00 Berlin stand-up, 30 minutes; summer time from 29 March.
            activity(
                1,
                &[
                    ("type", "meeting"),
                    ("subject", "Stand-up"),
                    ("when", "2026-03-16T08:00:00Z"),
                    ("ends", "2026-03-16T08:30:00Z"),
                    ("zone", "Europe/Berlin"),
                    ("repeat", "FREQ=WEEKLY;BYDAY=MO,WE"),
                    ("skip", "2026-03-25"),
                    ("owner", "ann"),
                ],
            ),
            // Overlaps Monday's stand-up.
            activity(
                2,
                &[
                    ("type", "call"),
                    ("subject", "Acme call"),
                    ("when", "2026-03-23T08:15:00Z"),
                    ("owner", "Ann"),
                ],
            ),
            // Ben's meeting at the same time overlaps nothing of Ann's.
            activity(
                3,
                &[
                    ("type", "meeting"),
                    ("subject", "Ben's"),
                    ("when", "2026-03-23T08:00:00Z"),
                    ("owner", "ben"),
                ],
            ),
            activity(
                4,
                &[
                    ("type", "task"),
                    ("subject", "Offer"),
                    ("due", "2026-03-20"),
                    ("owner", "ann"),
                ],
            ),
            activity(
                5,
                &[
                    ("type", "task"),
                    ("subject", "Done"),
                    ("due", "2026-03-20"),
                    ("done", "yes"),
                    ("owner", "ann"),
                ],
            ),
            activity(
                6,
                &[
                    ("type", "task"),
                    ("subject", "Report"),
                    ("due", "2026-03-27"),
                    ("owner", "ann"),
                ],
            ),
            activity(
                7,
                &[
                    ("type", "meeting"),
                    ("subject", "Fair"),
                    ("when", "2026-03-28T00:00:00Z"),
                    ("ends", "2026-03-29T00:00:00Z"),
                    ("all_day", "yes"),
                    ("owner", "ann"),
                ],
            ),
        ];
        let got = agenda(&records, &week("Europe/Berlin", Some("ann")));
        let seen: Vec<(String, &str, Option<&str>, bool, bool)> = got
            .iter()
            .map(|e| {
                (
                    e.day.clone(),
                    e.title.as_str(),
                    e.start.as_deref(),
                    e.overlaps,
                    e.overdue,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("2026-03-20".into(), "Offer", None, false, true),
                ("2026-03-23".into(), "Stand-up", Some("09:00"), true, false),
                ("2026-03-23".into(), "Acme call", Some("09:15"), true, false),
                ("2026-03-27".into(), "Report", None, false, false),
                ("2026-03-28".into(), "Fair", None, false, false),
                ("2026-03-29".into(), "Fair", None, false, false),
            ]
        );
        assert!(got[1].repeats && got[1].end.as_deref() == Some("09:30"));

        // Read in New York the next week: the stand-up is still 09:00 in
        // Berlin, which is 03:00 there after both changed to summer time.
        let mut ny = week("America/New_York", None);
        ny.from = date(2026, 3, 30);
        let got = agenda(&records, &ny);
        let standup: Vec<(&str, Option<&str>)> = got
            .iter()
            .filter(|e| e.title == "Stand-up")
            .map(|e| (e.day.as_str(), e.start.as_deref()))
            .collect();
        assert_eq!(
            standup,
            [("2026-03-30", Some("03:00")), ("2026-04-01", Some("03:00"))]
        );
    }

    #[test]
    fn moving_keeps_the_length_and_the_wall_clock_time_in_the_meetings_zone() {
        let utc = TimeZone::UTC;
        // 09:00-09:30 in Berlin in winter; moved into summer time.
        let standup = activity(
            1,
            &[
                ("type", "meeting"),
                ("when", "2026-03-16T08:00:00Z"),
                ("ends", "2026-03-16T08:30:00Z"),
                ("zone", "Europe/Berlin"),
            ],
        );
        let sets = moved(&standup, None, "2026-04-02", None, &utc).expect("moves");
        assert_eq!(
            sets,
            [
                ("when".to_string(), "2026-04-02T07:00:00Z".to_string()),
                ("ends".to_string(), "2026-04-02T07:30:00Z".to_string())
            ]
        );
        let sets = moved(&standup, None, "2026-04-02", Some("14:30"), &utc).expect("moves");
        assert_eq!(sets[0].1, "2026-04-02T12:30:00Z");
        let task = activity(2, &[("type", "task"), ("due", "2026-03-16")]);
        assert_eq!(
            moved(&task, None, "2026-03-20", None, &utc).expect("moves")[0].1,
            "2026-03-20"
        );
        let note = activity(3, &[("type", "note")]);
        assert!(moved(&note, None, "2026-03-20", None, &utc).is_err());
        assert!(moved(&standup, None, "soon", None, &utc).is_err());
        assert!(moved(&standup, None, "2026-04-02", Some("25:00"), &utc).is_err());

        // Wednesday's occurrence of a Monday and Wednesday series, dragged
        // to Thursday: the series moves a day, its weekdays, end and
        // skipped days with it.
        let series = activity(
            4,
            &[
                ("type", "meeting"),
                ("when", "2026-03-16T08:00:00Z"),
                ("zone", "Europe/Berlin"),
                ("repeat", "FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20260430"),
                ("skip", "2026-04-01"),
            ],
        );
        let sets = moved(&series, Some("2026-03-25"), "2026-03-26", None, &utc).expect("moves");
        assert_eq!(
            sets,
            [
                ("when".to_string(), "2026-03-17T08:00:00Z".to_string()),
                (
                    "repeat".to_string(),
                    "FREQ=WEEKLY;BYDAY=TU,TH;UNTIL=20260501".to_string()
                ),
                ("skip".to_string(), "2026-04-02".to_string()),
            ]
        );
        // A week on, Sunday's move wraps to Monday.
        let sunday = activity(
            5,
            &[
                ("type", "meeting"),
                ("when", "2026-03-22T08:00:00Z"),
                ("repeat", "FREQ=WEEKLY;BYDAY=SU"),
            ],
        );
        let sets = moved(&sunday, Some("2026-03-29"), "2026-03-30", None, &utc).expect("moves");
        assert_eq!(sets[1].1, "FREQ=WEEKLY;BYDAY=MO");
    }

    #[test]
    fn reminders_fire_once_until_dismissed_or_over() {
        let records = [
            activity(
                1,
                &[
                    ("type", "meeting"),
                    ("subject", "Review"),
                    ("when", "2026-03-24T09:00:00Z"),
                    ("remind", "15m"),
                    ("owner", "ann"),
                ],
            ),
            activity(
                2,
                &[
                    ("type", "task"),
                    ("subject", "Offer"),
                    ("due", "2026-03-24"),
                    ("remind", "1d"),
                    ("owner", "ann"),
                ],
            ),
            activity(
                3,
                &[
                    ("type", "task"),
                    ("subject", "No reminder"),
                    ("due", "2026-03-24"),
                    ("owner", "ann"),
                ],
            ),
        ];
        let window = |now: &str| {
            let now: Timestamp = now.parse().expect("now");
            let today = now.to_zoned_datetime(TimeZone::UTC).date();
            (
                now,
                Window {
                    from: today.yesterday().expect("day"),
                    days: 9,
                    zone: TimeZone::UTC,
                    today,
                    owner: Some("ann".into()),
                },
            )
        };
        let titles = |now: &str, records: &[RecordView]| {
            let (now, w) = window(now);
            due(records, now, &w)
                .into_iter()
                .map(|d| format!("{} {}", d.title, d.key))
                .collect::<Vec<_>>()
        };
        // The task's fires at 09:00 the day before; the meeting's at 08:45.
        assert!(titles("2026-03-23T08:59:00Z", &records).is_empty());
        assert_eq!(
            titles("2026-03-23T09:00:00Z", &records),
            ["Offer 2026-03-24"]
        );
        assert_eq!(
            titles("2026-03-24T08:50:00Z", &records),
            ["Offer 2026-03-24", "Review 2026-03-24T09:00:00Z"]
        );
        // Over twelve hours after the meeting started, its reminder is gone.
        assert_eq!(
            titles("2026-03-24T21:00:00Z", &records),
            ["Offer 2026-03-24"]
        );
        // Dismissed on any device: the key is in the record.
        let mut dismissed = records.clone();
        let keys = vec!["2026-03-24T09:00:00Z".to_string()];
        let value = dismissed_with(&dismissed[0], &keys);
        dismissed[0].fields.insert(
            "dismissed".into(),
            FieldValue::List(value.split(',').map(String::from).collect()),
        );
        assert_eq!(
            titles("2026-03-24T08:50:00Z", &dismissed),
            ["Offer 2026-03-24"]
        );
    }

    /// Two writers of a space, each holding a daily stand-up (08:00 UTC
    /// from 2026-03-02, with `extra`) that `a` made.
    fn shared_standup(
        extra: &[(&str, &str)],
    ) -> (
        [(tempfile::TempDir, crate::Repo); 2],
        rapport_model::SpaceId,
        RecordView,
    ) {
        use crate::ingest::tests::{add, node, sync};
        use rapport_model::{Role, SpaceId};
        let (ta, a) = node();
        let (tb, b) = node();
        let shared = a.create_space("Team").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &b, Role::Writer);
        let mut fields = vec![
            ("type", "meeting"),
            ("subject", "Stand-up"),
            ("when", "2026-03-02T08:00:00Z"),
            ("repeat", "daily"),
        ];
        fields.extend_from_slice(extra);
        let standup = a
            .create(Kind::Activity, space, &crate::repo::tests::input(&fields))
            .expect("meeting");
        sync(&b, &a, space);
        ([(ta, a), (tb, b)], space, standup)
    }

    #[test]
    fn dismissals_made_at_once_on_two_devices_are_both_kept() {
        use crate::ingest::tests::sync;
        let ([(_ta, a), (_tb, b)], space, standup) = shared_standup(&[("remind", "10m")]);
        let id = standup.id.to_string();
        for (node, day) in [(&a, "2026-03-02"), (&b, "2026-03-03")] {
            let v = node.view(standup.id).expect("read").expect("held");
            let value = dismissed_with(&v, &[day.to_string()]);
            node.edit(&id, &[("dismissed".into(), value)], &[])
                .expect("dismiss");
        }
        sync(&a, &b, space);
        for node in [&a, &b] {
            let v = node.view(standup.id).expect("read").expect("held");
            let mut keys = dismissed_keys(&v);
            keys.sort();
            assert_eq!(keys, ["2026-03-02", "2026-03-03"]);
        }
    }

    #[test]
    fn occurrences_taken_out_at_once_on_two_devices_both_leave_the_series() {
        use crate::ingest::tests::sync;
        let ([(_ta, a), (_tb, b)], space, standup) =
            shared_standup(&[("zone", "UTC"), ("skip", "2026-03-07")]);
        for (node, day) in [(&a, "2026-03-03"), (&b, "2026-03-04")] {
            let v = node.view(standup.id).expect("read").expect("held");
            let (skip, copy) =
                detached(&v, day, day, Some("11:00"), &TimeZone::UTC).expect("detached");
            node.detach_occurrence(&v, &skip, &copy).expect("written");
        }
        sync(&a, &b, space);
        for node in [&a, &b] {
            let v = node.view(standup.id).expect("read").expect("held");
            let mut days: Vec<String> = skipped(v.get("skip"))
                .expect("days")
                .iter()
                .map(Date::to_string)
                .collect();
            days.sort();
            assert_eq!(days, ["2026-03-03", "2026-03-04", "2026-03-07"]);
        }
    }
}
