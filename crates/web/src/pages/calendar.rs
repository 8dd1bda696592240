//! `GET /calendar`: the agenda (`rapport agenda`) as a day, a week or a
//! month, the user's, a colleague's or everyone's; overlapping meetings
//! marked; meetings moved by dragging them to another day, or with the
//! *Move* form (keyboard, no script): `POST /calendar/move`.

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use jiff::Span;
use jiff::civil::Date;
use maud::{Markup, html};
use rapport_model::calendar::{add_days, week_start};
use rapport_node::calendar::{Agenda, AgendaQuery, Entry};
use rapport_node::ops::{Reply, Request};
use serde::Deserialize;

use crate::page::{self, Nav, Page, url_encode};
use crate::trail::Crumb;
use crate::{App, WebError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Day,
    Week,
    Month,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct CalendarQuery {
    view: Option<String>,
    date: Option<String>,
    /// `me` (default), `all`, or an owner's name.
    who: Option<String>,
    /// One space's only (name or id; `private`).
    space: Option<String>,
}

impl CalendarQuery {
    fn view(&self) -> Result<View, WebError> {
        match self.view.as_deref().unwrap_or("week") {
            "day" => Ok(View::Day),
            "week" | "" => Ok(View::Week),
            "month" => Ok(View::Month),
            other => Err(WebError::BadRequest(format!(
                "view `{other}`: day, week or month"
            ))),
        }
    }
}

pub(crate) async fn page(
    State(app): State<App>,
    Query(q): Query<CalendarQuery>,
) -> Result<Html<String>, WebError> {
    app.blocking(move |app| render(app, &q)).await
}

fn agenda(
    app: &App,
    from: Date,
    days: u32,
    who: &str,
    space: Option<&str>,
) -> Result<Agenda, WebError> {
    let query = AgendaQuery {
        from: Some(from.to_string()),
        days: Some(days),
        owner: match who {
            "me" | "" | "all" => None,
            name => Some(name.to_string()),
        },
        everyone: who == "all",
        zone: None,
        space: space.map(str::to_string),
    };
    match app.read(Request::Agenda(query))? {
        Reply::Agenda(a) => Ok(a),
        _ => Err(WebError::Internal(
            "the node answered something else".into(),
        )),
    }
}

fn render(app: &App, q: &CalendarQuery) -> Result<Html<String>, WebError> {
    let view = q.view()?;
    let today = jiff::ZonedDateTime::now().date();
    let date = match q.date.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => d.parse::<Date>().map_err(|_| {
            WebError::BadRequest(format!("date `{d}`: expected a day such as 2026-03-31"))
        })?,
        None => today,
    };
    let who = q.who.clone().unwrap_or_else(|| "me".into());
    let (from, days, prev, next) = match view {
        View::Day => (date, 1, add_days(date, -1), add_days(date, 1)),
        View::Week => {
            let m = week_start(date);
            (m, 7, add_days(m, -7), add_days(m, 7))
        }
        View::Month => {
            let first = date.first_of_month();
            let start = week_start(first);
            let last = date.last_of_month();
            let end = add_days(week_start(last), 7);
            let days = start.until(end).map_or(35, |s| s.get_days()) as u32;
            let prev = first.checked_sub(Span::new().months(1)).unwrap_or(first);
            let next = first.checked_add(Span::new().months(1)).unwrap_or(first);
            (start, days, prev, next)
        }
    };
    let space = q.space.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let agenda = agenda(app, from, days, &who, space)?;
    let view_name = match view {
        View::Day => "day",
        View::Week => "week",
        View::Month => "month",
    };
    let in_space = space.map_or(String::new(), |s| format!("&space={}", url_encode(s)));
    let link = |v: &str, d: Date, w: &str| {
        format!(
            "/calendar?view={v}&date={d}&who={}{in_space}",
            url_encode(w)
        )
    };
    let here = link(view_name, date, &who);
    let whose = match agenda.owner.as_deref() {
        Some(o) => format!("{o}'s"),
        None => "Everyone's".into(),
    };
    let title = match view {
        View::Day => date.strftime("%A %-d %B %Y").to_string(),
        View::Week => format!("Week of {}", from.strftime("%-d %B %Y")),
        View::Month => date.strftime("%B %Y").to_string(),
    };
    let day_list: Vec<Date> = (0..i64::from(days)).map(|i| add_days(from, i)).collect();
    let on = |d: Date| -> Vec<&Entry> {
        let d = d.to_string();
        agenda
            .entries
            .iter()
            .filter(|e| e.day == d && !e.overdue)
            .collect()
    };
    let overdue: Vec<&Entry> = agenda.entries.iter().filter(|e| e.overdue).collect();
    let body = html! {
        h1 { "Calendar: " (title) }
        nav class="toolbar" aria-label="Calendar" {
            a class="button secondary" href=(link(view_name, prev, &who)) { "← Previous" }
            a class="button secondary" href=(link(view_name, today, &who)) { "Today" }
            a class="button secondary" href=(link(view_name, next, &who)) { "Next →" }
            " "
            @for (v, label) in [("day", "Day"), ("week", "Week"), ("month", "Month")] {
                a class="button secondary" href=(link(v, date, &who)) aria-current=[(v == view_name).then_some("page")] { (label) }
            }
            " "
            a class="button secondary" href=(link(view_name, date, "me")) aria-current=[(who == "me").then_some("page")] { "Mine" }
            a class="button secondary" href=(link(view_name, date, "all")) aria-current=[(who == "all").then_some("page")] { "Everyone's" }
            form method="get" action="/calendar" class="inline" {
                input type="hidden" name="view" value=(view_name);
                input type="hidden" name="date" value=(date.to_string());
                label for="cal-who" { "Colleague" }
                input id="cal-who" name="who" placeholder="their name" value=[(who != "me" && who != "all").then_some(who.as_str())];
                label for="cal-space" { "Space" }
                input id="cal-space" name="space" placeholder="every space" value=[space];
                button type="submit" class="secondary" { "Show" }
            }
        }
        p class="note" { (whose) " meetings, calls and tasks, in " (agenda.zone) " time. Drag a meeting to another day, or use its Move form." }
        @if !overdue.is_empty() {
            section class="panel" aria-labelledby="cal-overdue" {
                h2 id="cal-overdue" { "Overdue tasks" }
                ul class="cal-list" { @for e in &overdue { (entry(e, &here, false)) } }
            }
        }
        @match view {
            View::Month => {
                table class="cal-month" {
                    thead { tr { @for d in ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"] { th scope="col" { (d) } } } }
                    tbody {
                        @for week in day_list.chunks(7) {
                            tr {
                                @for d in week {
                                    @let entries = on(*d);
                                    td class={ "cal-day" @if *d == today { " today" } @if d.month() != date.month() { " other-month" } } data-day=(d.to_string()) {
                                        a class="cal-date" href=(link("day", *d, &who)) { (d.day()) }
                                        ul class="cal-list" {
                                            @for e in entries.iter().take(4) { (entry(e, &here, true)) }
                                        }
                                        @if entries.len() > 4 {
                                            a href=(link("day", *d, &who)) { "+" (entries.len() - 4) " more" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            _ => {
                div class={ "cal-days" @if view == View::Day { " one" } } {
                    @for d in &day_list {
                        section class={ "cal-day" @if *d == today { " today" } } data-day=(d.to_string()) aria-labelledby={ "day-" (d) } {
                            h2 id={ "day-" (d) } { a href=(link("day", *d, &who)) { (d.strftime("%a %-d %b")) } }
                            @let entries = on(*d);
                            @if entries.is_empty() {
                                p class="muted" { "Nothing planned." }
                            } @else {
                                ul class="cal-list" { @for e in &entries { (entry(e, &here, false)) } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page::render(
        app,
        Page {
            title: format!("Calendar: {title}"),
            nav: Nav::Calendar,
            crumbs: vec![Crumb {
                label: "Calendar".into(),
                href: None,
            }],
            help: html! {
                p { "Meetings and calls are activities with a time (" code { "when" } ", " code { "ends" } "); tasks show on their due day, overdue ones on top. A meeting repeats by its " code { "repeat" } " field (daily, weekly, weekdays, monthly, or an iCalendar rule) in its own time zone (" code { "zone" } "), so a weekly 09:00 in Berlin stays 09:00 there; times here are in this node's time zone." }
                p { "Meetings of the same person that overlap are marked. Drag a meeting or task to another day to move it (a repeating meeting moves with its whole series), or open its " strong { "Move" } " form to choose the day and time with the keyboard, and for a repeating meeting whether only that occurrence moves. The same agenda: " code { "rapport agenda --week" } "." }
            },
            body,
            watch: vec!["activity".into()],
            since: app.read_since.clone(),
        },
    ))
}

/// One entry: its time, what it is, its title linking to it, marks, and
/// (unless `compact`) its place, what it is about and its Move form.
fn entry(e: &Entry, back: &str, compact: bool) -> Markup {
    let time = match (&e.start, &e.end) {
        (Some(s), Some(en)) => format!("{s}–{en}"),
        (Some(s), None) => s.clone(),
        _ if e.all_day => "All day".into(),
        _ if e.overdue => format!("Due {}", e.day),
        _ => "Due".into(),
    };
    let movable = e.kind == "task" || e.start.is_some() || e.all_day;
    html! {
        li class={ "cal-entry " (e.kind) @if e.overlaps { " overlaps" } @if e.done { " done" } }
            draggable=[movable.then_some("true")] data-id=(e.id) data-from=(e.day) {
            span class="cal-time" { (time) } " "
            span class="kind" { (e.kind) } " "
            a href={ "/r/" (e.id) } { (e.title) }
            @if e.repeats { " " span class="badge" title="repeats" { "↻ repeats" } }
            @if e.overlaps { " " strong class="badge warn" { "Overlaps" } }
            @if e.done { " " span class="badge" { "Done" } }
            @if !compact {
                @if let Some(l) = e.location.as_deref().filter(|l| !l.is_empty()) { br; span class="muted" { "@ " (l) } }
                @if !e.about.is_empty() {
                    br; span class="muted" { "About " }
                    @for (i, a) in e.about.iter().enumerate() { @if i > 0 { ", " } a href={ "/r/" (a.id) } { (a.title) } }
                }
                @if !e.attendees.is_empty() {
                    br; span class="muted" { "With " }
                    @for (i, a) in e.attendees.iter().enumerate() { @if i > 0 { ", " } a href={ "/r/" (a.id) } { (a.title) } }
                }
                @if let Some(o) = &e.owner { br; span class="muted" { (o) } }
                @if movable {
                    details class="cal-move" {
                        summary { "Move…" }
                        form method="post" action="/calendar/move" {
                            input type="hidden" name="id" value=(e.id);
                            input type="hidden" name="from" value=(e.day);
                            input type="hidden" name="back" value=(back);
                            label { "Day " input type="date" name="day" required value=(e.day); }
                            @if e.start.is_some() {
                                " " label { "Time " input type="time" name="time" value=[e.start.as_deref()]; }
                            }
                            @if e.repeats {
                                fieldset class="cal-which" {
                                    legend { "Which" }
                                    label { input type="radio" name="only" value="1" checked; " Only this one" }
                                    " " label { input type="radio" name="only" value=""; " The whole series" }
                                }
                            }
                            " " button type="submit" { "Move" }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct MoveForm {
    id: String,
    /// The day the moved occurrence was shown on.
    #[serde(default)]
    from: Option<String>,
    day: String,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    back: Option<String>,
    /// Only this occurrence of a repeating meeting (not set: the series,
    /// as dragging moves it).
    #[serde(default)]
    only: Option<String>,
}

/// `POST /calendar/move`: a meeting or call to another day (and time),
/// keeping its length; a task to another due day.
pub(crate) async fn move_entry(
    State(app): State<App>,
    Form(f): Form<MoveForm>,
) -> Result<Response, WebError> {
    let back = crate::redirect::local_or(f.back.as_deref(), "/calendar").to_string();
    app.blocking(move |app| {
        app.write(Request::Move(rapport_node::calendar::MoveQuery {
            record: f.id.clone(),
            from: f.from.clone(),
            day: f.day.clone(),
            time: f.time.clone(),
            only: f.only.as_deref().is_some_and(|o| !o.is_empty()),
        }))?;
        Ok(())
    })
    .await?;
    Ok(Redirect::to(&back).into_response())
}

/// `GET /reminders.json`: the user's reminders due now, for the page's
/// script to show as notifications.
pub(crate) async fn reminders(State(app): State<App>) -> Result<Response, WebError> {
    let due = app
        .blocking(|app| match app.read(Request::Reminders)? {
            Reply::Reminders { due } => Ok(due),
            _ => Ok(Vec::new()),
        })
        .await?;
    Ok(axum::Json(due).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct DismissForm {
    id: String,
    key: String,
    #[serde(default)]
    back: Option<String>,
}

/// `POST /reminders/dismiss`: written in the record, so that every device
/// of its owner stops showing it.
pub(crate) async fn dismiss(
    State(app): State<App>,
    Form(f): Form<DismissForm>,
) -> Result<Response, WebError> {
    let back = crate::redirect::local_or(f.back.as_deref(), "/").to_string();
    app.blocking(move |app| {
        app.read(Request::Dismiss {
            record: f.id,
            keys: vec![f.key],
        })?;
        Ok(())
    })
    .await?;
    Ok(Redirect::to(&back).into_response())
}

#[cfg(test)]
mod tests {
    use crate::testing::TestUi;
    use rapport_model::{Kind, SpaceId};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_week_shows_meetings_marks_overlaps_and_moves_one() {
        let t = TestUi::start().await;
        let repo = t.repo().clone();
        let monday = {
            let today = jiff::ZonedDateTime::now().date();
            today
                .checked_sub(
                    jiff::Span::new().days(i64::from(today.weekday().to_monday_zero_offset())),
                )
                .expect("monday")
        };
        let at = |h: i8, m: i8| {
            monday
                .at(h, m, 0, 0)
                .to_zoned_datetime(jiff::tz::TimeZone::system())
                .expect("zoned")
                .timestamp()
                .to_string()
        };
        let (a, b) = (at(9, 0), at(9, 15));
        let kickoff = tokio::task::spawn_blocking(move || {
            for (subject, when) in [("Kick-off", &a), ("Overlapping call", &b)] {
                repo.create(
                    Kind::Activity,
                    SpaceId::Private,
                    &[
                        ("type".into(), "meeting".into()),
                        ("subject".into(), subject.into()),
                        ("when".into(), when.clone()),
                        ("owner".into(), "Zed".into()),
                    ],
                )
                .expect("meeting");
            }
            repo.resolve("Kick-off").expect("kick-off").id
        })
        .await
        .expect("task");
        let week = t.get(&format!("/calendar?who=Zed&date={monday}")).await;
        assert_eq!(week.status, 200, "{}", week.body);
        assert!(
            week.body.contains("Kick-off") && week.body.contains("Overlapping call"),
            "{}",
            week.body
        );
        assert_eq!(
            week.body.matches(">Overlaps</strong>").count(),
            2,
            "{}",
            week.body
        );
        assert!(week.body.contains("09:00–09:30"), "{}", week.body);

        let tuesday = monday
            .checked_add(jiff::Span::new().days(1))
            .expect("tuesday");
        let moved = t
            .post(
                "/calendar/move",
                &[
                    ("id", &kickoff.to_string()),
                    ("day", &tuesday.to_string()),
                    ("time", "11:00"),
                    ("back", "/calendar"),
                ],
            )
            .await;
        assert_eq!(moved.status, 303, "{}", moved.body);
        let day = t
            .get(&format!("/calendar?view=day&who=Zed&date={tuesday}"))
            .await;
        assert!(
            day.body.contains("11:00–11:30") && day.body.contains("Kick-off"),
            "{}",
            day.body
        );
        let month = t
            .get(&format!("/calendar?view=month&who=all&date={monday}"))
            .await;
        assert_eq!(month.status, 200);
        assert!(month.body.contains("Kick-off"), "{}", month.body);

        assert_eq!(t.get("/calendar?view=year").await.status, 400);
        assert_eq!(t.get("/calendar?date=soon").await.status, 400);
        let bad = t
            .post(
                "/calendar/move",
                &[("id", &kickoff.to_string()), ("day", "never")],
            )
            .await;
        assert_eq!(bad.status, 422, "{}", bad.body);

        // A weekly stand-up: this Monday's alone moves to Wednesday.
        let repo = t.repo().clone();
        let first = at(8, 0);
        let standup = tokio::task::spawn_blocking(move || {
            repo.create(
                Kind::Activity,
                SpaceId::Private,
                &[
                    ("type".into(), "meeting".into()),
                    ("subject".into(), "Stand-up".into()),
                    ("when".into(), first),
                    ("repeat".into(), "weekly".into()),
                    ("owner".into(), "Zed".into()),
                ],
            )
            .expect("stand-up")
            .id
        })
        .await
        .expect("task");
        let week = t.get(&format!("/calendar?who=Zed&date={monday}")).await;
        assert!(week.body.contains("Only this one"), "{}", week.body);
        let wednesday = monday
            .checked_add(jiff::Span::new().days(2))
            .expect("wednesday");
        let moved = t
            .post(
                "/calendar/move",
                &[
                    ("id", &standup.to_string()),
                    ("from", &monday.to_string()),
                    ("day", &wednesday.to_string()),
                    ("time", "10:00"),
                    ("only", "1"),
                ],
            )
            .await;
        assert_eq!(moved.status, 303, "{}", moved.body);
        let path = |d: jiff::civil::Date| format!("/calendar?view=day&who=Zed&date={d}");
        let mon = t.get(&path(monday)).await.body;
        let wed = t.get(&path(wednesday)).await.body;
        assert!(!mon.contains("Stand-up"), "{mon}");
        assert!(wed.contains("10:00–10:30"), "{wed}");
        let next = monday.checked_add(jiff::Span::new().days(7)).expect("next");
        let next = t.get(&path(next)).await.body;
        assert!(
            next.contains("08:00–08:30") && next.contains("Stand-up"),
            "the series stays: {next}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reminder_shows_on_my_work_and_once_dismissed_is_gone() {
        let t = TestUi::start().await;
        let repo = t.repo().clone();
        let soon = jiff::Timestamp::now()
            .checked_add(jiff::Span::new().minutes(10))
            .expect("soon")
            .to_string();
        let owner = repo.profile().name.unwrap_or_default();
        let id = tokio::task::spawn_blocking(move || {
            repo.create(
                Kind::Activity,
                SpaceId::Private,
                &[
                    ("type".into(), "meeting".into()),
                    ("subject".into(), "Pricing call".into()),
                    ("when".into(), soon),
                    ("remind".into(), "15m".into()),
                    ("owner".into(), owner),
                ],
            )
            .expect("meeting")
            .id
        })
        .await
        .expect("task");
        let due = t.get("/reminders.json").await;
        assert_eq!(due.status, 200);
        assert!(due.body.contains("Pricing call"), "{}", due.body);
        let work = t.get("/").await;
        assert!(
            work.body.contains("id=\"reminders\"") && work.body.contains("Pricing call"),
            "{}",
            work.body
        );
        let v: serde_json::Value = serde_json::from_str(&due.body).expect("json");
        let key = v
            .as_array()
            .and_then(|a| a.iter().find(|d| d["title"] == "Pricing call"))
            .and_then(|d| d["key"].as_str())
            .expect("key")
            .to_string();
        let done = t
            .post(
                "/reminders/dismiss",
                &[("id", &id.to_string()), ("key", &key), ("back", "/")],
            )
            .await;
        assert_eq!(done.status, 303, "{}", done.body);
        let due = t.get("/reminders.json").await;
        assert!(!due.body.contains("Pricing call"), "{}", due.body);
    }
}
