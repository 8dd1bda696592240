//! `GET /`: my work, the start page. The user's open tasks (overdue, due
//! today, upcoming), meetings this week and open tickets, by the records'
//! `owner` field matching the profile's name; `?who=all` shows everyone's.
//! Days and weeks are the local time zone's, as the CLI reads `today`.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::Html;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};
use maud::{Markup, html};
use rapport_model::calendar::{add_days, week_start};
use rapport_model::{FieldValue, Kind, RecordId, RecordView};
use serde::Deserialize;

use crate::page::{self, Nav, Page};
use crate::trail::Crumb;
use crate::{App, WebError};

/// How many days ahead "Upcoming tasks" looks.
const UPCOMING_DAYS: i64 = 14;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WorkQuery {
    /// `all`: everyone's work, not only the user's.
    who: Option<String>,
}

/// A record a task or meeting is about: its id and title.
type Link = (RecordId, String);

#[derive(Debug)]
struct Task {
    id: RecordId,
    title: String,
    due: Option<Date>,
    about: Vec<Link>,
    owner: Option<String>,
}

#[derive(Debug)]
struct Meeting {
    id: RecordId,
    title: String,
    at: ZonedDateTime,
    about: Vec<Link>,
    owner: Option<String>,
}

#[derive(Debug)]
struct Ticket {
    id: RecordId,
    title: String,
    status: String,
    priority: String,
    company: Option<Link>,
    owner: Option<String>,
}

#[derive(Debug)]
struct Work {
    me: Option<String>,
    /// Everyone's work is shown (asked for, or there is no name to match).
    everyone: bool,
    today: Date,
    overdue: Vec<Task>,
    due_today: Vec<Task>,
    upcoming: Vec<Task>,
    /// Open tasks due after the upcoming window.
    later: usize,
    meetings: Vec<Meeting>,
    tickets: Vec<Ticket>,
    /// The user's reminders due now.
    reminders: Vec<rapport_node::calendar::Due>,
}

pub(crate) async fn page(
    State(app): State<App>,
    Query(q): Query<WorkQuery>,
) -> Result<Html<String>, WebError> {
    let all = q.who.as_deref() == Some("all");
    // Before reading: the page's live updates resume from here.
    let since = app.live.cursor();
    let work = app
        .blocking(move |app| {
            let tz = TimeZone::system();
            let now = Timestamp::now().to_zoned_datetime(tz);
            let mut work = read_work(app, all, &now)?;
            work.reminders = match app.read(rapport_node::ops::Request::Reminders)? {
                rapport_node::ops::Reply::Reminders { due } => due,
                _ => Vec::new(),
            };
            Ok(work)
        })
        .await?;
    Ok(page::render(
        &app,
        Page {
            title: "My work".into(),
            nav: Nav::Work,
            // The start page: the first crumb everywhere else, none of its own.
            crumbs: vec![Crumb {
                label: "My work".into(),
                href: None,
            }],
            help: help(),
            body: body(&work),
            watch: vec!["activity".into(), "ticket".into()],
            since: Some(since),
        },
    ))
}

fn read_work(app: &App, all: bool, now: &ZonedDateTime) -> Result<Work, WebError> {
    let repo = &**app.repo();
    let me = repo
        .profile()
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    let everyone = all || me.is_none();
    let mine = |v: &RecordView| {
        everyone
            || match (&me, v.text("owner")) {
                (Some(me), Some(owner)) => owner.trim().to_lowercase() == me.to_lowercase(),
                _ => false,
            }
    };
    let mut titles: HashMap<RecordId, Option<String>> = HashMap::new();
    let mut title_of = |id: RecordId| -> Link {
        let title = titles
            .entry(id)
            .or_insert_with(|| page::title_in(repo, id))
            .clone()
            .unwrap_or_else(|| id.to_string());
        (id, title)
    };

    let today = now.date();
    let horizon = add_days(today, UPCOMING_DAYS);
    let monday = week_start(today);
    let next_monday = add_days(monday, 7);
    let (mut overdue, mut due_today, mut upcoming, mut later) = (vec![], vec![], vec![], 0);
    let mut meetings = Vec::new();
    for a in app.list(Kind::Activity, Vec::new(), false)? {
        if !mine(&a) {
            continue;
        }
        let about: Vec<Link> = a
            .get("about")
            .map(FieldValue::as_list)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.parse::<RecordId>().ok())
            .map(&mut title_of)
            .collect();
        match a.text("type") {
            Some("task") if a.get("done") != Some(&FieldValue::Flag(true)) => {
                let due = a.text("due").and_then(|d| d.parse::<Date>().ok());
                let task = Task {
                    id: a.id,
                    title: a.title(),
                    due,
                    about,
                    owner: a.text("owner").map(str::to_string),
                };
                match due {
                    Some(d) if d < today => overdue.push(task),
                    Some(d) if d == today => due_today.push(task),
                    Some(d) if d > horizon => later += 1,
                    _ => upcoming.push(task),
                }
            }
            Some("meeting") => {
                let at = a
                    .text("when")
                    .and_then(|w| w.parse::<Timestamp>().ok())
                    .map(|t| t.to_zoned_datetime(now.time_zone().clone()));
                if let Some(at) = at
                    && at.date() >= monday
                    && at.date() < next_monday
                {
                    meetings.push(Meeting {
                        id: a.id,
                        title: a.title(),
                        at,
                        about,
                        owner: a.text("owner").map(str::to_string),
                    });
                }
            }
            _ => {}
        }
    }
    // Most overdue first; undated tasks after the dated ones, oldest first.
    let by_due =
        |a: &Task, b: &Task| (a.due.is_none(), a.due, a.id).cmp(&(b.due.is_none(), b.due, b.id));
    overdue.sort_by(by_due);
    due_today.sort_by(by_due);
    upcoming.sort_by(by_due);
    meetings.sort_by(|a, b| a.at.cmp(&b.at));

    let mut tickets: Vec<Ticket> = repo
        .list(Kind::Ticket, &[], false)?
        .into_iter()
        .filter(|t| {
            mine(t)
                && !t
                    .text("status")
                    .is_some_and(|s| rapport_model::custom::ENDING_STATUSES.contains(&s))
        })
        .map(|t| Ticket {
            id: t.id,
            title: t.title(),
            status: t.text("status").unwrap_or("new").to_string(),
            priority: t.text("priority").unwrap_or("normal").to_string(),
            company: t
                .text("company")
                .and_then(|c| c.parse::<RecordId>().ok())
                .map(&mut title_of),
            owner: t.text("owner").map(str::to_string),
        })
        .collect();
    // Ids begin with their creation time: the lower, the older.
    tickets.sort_by_key(|t| (priority_rank(&t.priority), t.id));
    Ok(Work {
        me,
        everyone,
        today,
        overdue,
        due_today,
        upcoming,
        later,
        meetings,
        tickets,
        reminders: Vec::new(),
    })
}

fn priority_rank(p: &str) -> u8 {
    match p {
        "urgent" => 0,
        "high" => 1,
        "normal" => 2,
        "low" => 3,
        _ => 4,
    }
}

fn body(w: &Work) -> Markup {
    let back = if w.everyone && w.me.is_some() {
        "/?who=all"
    } else {
        "/"
    };
    let whose = if w.everyone { "" } else { " assigned to you" };
    html! {
        h1 { "My work" }
        @if w.me.is_none() {
            p class="notice" {
                "Your name is not set, so nothing can be marked as yours: this page shows everyone's tasks, meetings and tickets. Set it with "
                code { "rapport init --name \"Your Name\"" }
                "; then the records whose Owner is that name show here as yours."
            }
        } @else {
            div class="toolbar" {
                nav aria-label="Whose work" {
                    a href="/" aria-current=[(!w.everyone).then_some("page")] { "Yours" }
                    " · "
                    a href="/?who=all" aria-current=[w.everyone.then_some("page")] { "Everyone's" }
                }
                a class="button" href="/new/activity?type=task" { "New task" }
            }
            p class="muted" {
                @if w.everyone {
                    "Showing everyone's work."
                } @else if let Some(me) = &w.me {
                    "Showing the tasks, meetings and tickets whose owner is " strong { (me) } "."
                }
            }
        }
        @if w.me.is_none() {
            p { a class="button" href="/new/activity?type=task" { "New task" } }
        }
        @if !w.reminders.is_empty() {
            section class="panel reminders" id="reminders" aria-labelledby="reminders-h" {
                h2 id="reminders-h" { "Reminders" }
                ul class="cal-list" {
                    @for r in &w.reminders {
                        li class="cal-entry" {
                            span class="cal-time" { (r.day) @if let Some(s) = &r.start { " " (s) } } " "
                            span class="kind" { (r.kind) } " "
                            a href={ "/r/" (r.id) } { (r.title) } " "
                            form method="post" action="/reminders/dismiss" class="inline" {
                                input type="hidden" name="id" value=(r.id);
                                input type="hidden" name="key" value=(r.key);
                                input type="hidden" name="back" value=(back);
                                button type="submit" class="secondary" { "Dismiss" }
                            }
                        }
                    }
                }
                p { button type="button" class="link" id="notify-on" hidden { "Also show reminders as notifications on this device" } }
            }
        }
        div class="grid2 work" {
            section class="panel" id="overdue" aria-labelledby="overdue-h" {
                h2 id="overdue-h" { "Overdue tasks" }
                @if w.overdue.is_empty() {
                    p { "Nothing overdue. A task whose due date has passed shows here until you mark it done." }
                } @else {
                    (tasks(&w.overdue, w, back))
                }
            }
            section class="panel" id="today" aria-labelledby="today-h" {
                h2 id="today-h" { "Due today" }
                @if w.due_today.is_empty() {
                    p { "No tasks due today. Add one from a record page, or " a href="/new/activity?type=task" { "New task" } "." }
                } @else {
                    (tasks(&w.due_today, w, back))
                }
            }
            section class="panel" id="upcoming" aria-labelledby="upcoming-h" {
                h2 id="upcoming-h" { "Upcoming tasks" }
                @if w.upcoming.is_empty() {
                    p { "No tasks in the next " (UPCOMING_DAYS) " days. Open tasks due in the next two weeks show here, and those without a due date after them." }
                } @else {
                    (tasks(&w.upcoming, w, back))
                }
                @if w.later > 0 {
                    p class="muted" {
                        (w.later) " more " (if w.later == 1 { "task is" } else { "tasks are" })
                        " due later; " a href="/k/activity" { "Activities" } " lists them all."
                    }
                }
            }
            section class="panel" id="meetings" aria-labelledby="meetings-h" {
                h2 id="meetings-h" { "Meetings this week" }
                @if w.meetings.is_empty() {
                    p { "No meetings this week" (whose) ". Log an activity of type meeting with a time between Monday and Sunday and it shows here." }
                } @else {
                    ul class="work-list" {
                        @for m in &w.meetings {
                            li {
                                time datetime=(m.at.timestamp()) { (m.at.strftime("%a %-d %b, %H:%M")) }
                                " "
                                a href={ "/r/" (m.id) } { (m.title) }
                                (about(&m.about))
                                @if w.everyone { (owner(m.owner.as_deref())) }
                            }
                        }
                    }
                }
            }
            section class="panel" id="tickets" aria-labelledby="tickets-h" {
                h2 id="tickets-h" { @if w.everyone { "Open tickets" } @else { "My tickets" } }
                @if w.tickets.is_empty() {
                    p { "No open tickets" (whose) ". Tickets whose owner is you and that are not resolved or closed show here, the most urgent first." }
                } @else {
                    ul class="work-list" {
                        @for t in &w.tickets {
                            li {
                                span class={ "pill " (t.priority) } { (page::label(&t.priority)) }
                                " "
                                span class="pill" { (page::label(&t.status)) }
                                " "
                                a href={ "/r/" (t.id) } { (t.title) }
                                @if let Some((id, title)) = &t.company {
                                    " " span class="muted" { "for " a href={ "/r/" (id) } { (title) } }
                                }
                                @if w.everyone { (owner(t.owner.as_deref())) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn tasks(list: &[Task], w: &Work, back: &str) -> Markup {
    html! {
        ul class="work-list tasks" {
            @for t in list {
                li {
                    span {
                        a href={ "/r/" (t.id) } { (t.title) }
                        (about(&t.about))
                        " "
                        span class="muted due" { (due(t.due, w.today)) }
                        @if w.everyone { (owner(t.owner.as_deref())) }
                    }
                    form method="post" action={ "/r/" (t.id) "/done" } {
                        input type="hidden" name="back" value=(back);
                        button type="submit" class="secondary" {
                            "Done" span class="visually-hidden" { ": " (t.title) }
                        }
                    }
                }
            }
        }
    }
}

fn about(links: &[Link]) -> Markup {
    html! {
        @if !links.is_empty() {
            " " span class="muted" {
                "about "
                @for (n, (id, title)) in links.iter().enumerate() {
                    @if n > 0 { ", " }
                    a href={ "/r/" (id) } { (title) }
                }
            }
        }
    }
}

fn owner(owner: Option<&str>) -> Markup {
    html! {
        " " span class="muted" { "· " (owner.unwrap_or("no owner")) }
    }
}

fn due(due: Option<Date>, today: Date) -> String {
    let Some(d) = due else {
        return "no due date".into();
    };
    let days = today.since(d).map(|s| s.get_days()).unwrap_or(0);
    match days {
        0 => "due today".into(),
        1 => format!("due {d}, yesterday"),
        -1 => format!("due {d}, tomorrow"),
        n if n > 1 => format!("due {d}, {n} days ago"),
        n => format!("due {d}, in {} days", -n),
    }
}

fn help() -> Markup {
    html! {
        p { "My work is your day at a glance: the tasks you still have to do, your meetings this week, and the support tickets you handle." }
        p { "A task is yours when its Owner is your name; " strong { "Everyone's" } " shows the whole team's. Press " strong { "Done" } " when a task is finished: it leaves the list. Tasks are overdue once their due date has passed; upcoming ones are due in the next two weeks, or have no due date." }
        p { "Meetings are the meeting activities planned from Monday to Sunday of this week, in your computer's time zone. Tickets are those not yet resolved or closed, the most urgent first, then the oldest." }
        p { strong { "New task" } " adds a task; a record's page can add one about that record." }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestUi;
    use rapport_model::SpaceId;

    fn section<'a>(body: &'a str, id: &str) -> &'a str {
        let start = body
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no section {id}: {body}"));
        let rest = &body[start..];
        &rest[..rest.find("</section>").expect("section ends")]
    }

    fn create(t: &TestUi, kind: Kind, fields: &[(&str, &str)]) -> RecordView {
        let input: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        t.repo()
            .create(kind, SpaceId::Private, &input)
            .expect("create")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn my_tasks_land_in_their_sections_and_others_only_for_everyone() {
        let t = TestUi::start().await;
        let task = |subject: &str, due: &str, owner: &str| {
            create(
                &t,
                Kind::Activity,
                &[
                    ("type", "task"),
                    ("subject", subject),
                    ("due", due),
                    ("owner", owner),
                    ("about", "Acme Corporation"),
                ],
            )
        };
        let late = task("Chase the signed contract", "-3d", "Dana Sales");
        task("Book the venue", "today", "dana sales");
        task("Plan the kickoff", "+5d", "Dana Sales");
        task("Sam's call list", "today", "Sam Other");
        let done = task("Already handled", "-1d", "Dana Sales");
        t.repo().complete_task(&done.id.to_string()).expect("done");

        let page = t.get("/").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let overdue = section(&page.body, "overdue");
        assert!(overdue.contains("Chase the signed contract"), "{overdue}");
        assert!(overdue.contains("3 days ago"), "{overdue}");
        assert!(overdue.contains(&format!("action=\"/r/{}/done\"", late.id)));
        assert!(
            overdue.contains(">Acme Corporation</a>"),
            "about link: {overdue}"
        );
        assert!(!overdue.contains("Already handled"));
        let today = section(&page.body, "today");
        assert!(today.contains("Book the venue"), "{today}");
        assert!(!today.contains("Sam's call list"), "{today}");
        assert!(section(&page.body, "upcoming").contains("Plan the kickoff"));
        // The demo's tasks have no owner: not mine.
        assert!(!page.body.contains("Send revised quote to Acme"));
        assert!(page.body.contains("href=\"/new/activity?type=task\""));

        let all = t.get("/?who=all").await;
        let today = section(&all.body, "today");
        assert!(today.contains("Sam's call list"), "{today}");
        assert!(today.contains("Send revised quote to Acme"), "{today}");
        assert!(today.contains("Book the venue"));
        assert!(section(&all.body, "overdue").contains("Follow up with Nora"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn my_tickets_by_priority_then_oldest_and_empty_states() {
        let t = TestUi::start().await;
        let empty = t.get("/").await;
        assert!(
            section(&empty.body, "today")
                .contains("No tasks due today. Add one from a record page, or")
        );
        assert!(section(&empty.body, "tickets").contains("No open tickets"));
        for (title, priority, status) in [
            ("Old low one", "low", "open"),
            ("Old urgent one", "urgent", "new"),
            ("Normal one", "normal", "pending"),
            ("Closed urgent", "urgent", "closed"),
            ("High one", "high", "open"),
            ("New urgent one", "urgent", "open"),
        ] {
            create(
                &t,
                Kind::Ticket,
                &[
                    ("title", title),
                    ("priority", priority),
                    ("status", status),
                    ("owner", "Dana Sales"),
                ],
            );
            // Ids carry the creation millisecond: keep "older" meaningful.
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        }
        let page = t.get("/").await;
        let tickets = section(&page.body, "tickets");
        assert!(tickets.contains("My tickets"));
        let at = |title: &str| {
            tickets
                .find(title)
                .unwrap_or_else(|| panic!("{title} missing: {tickets}"))
        };
        let order = [
            at("Old urgent one"),
            at("New urgent one"),
            at("High one"),
            at("Normal one"),
            at("Old low one"),
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{tickets}");
        assert!(!tickets.contains("Closed urgent"));
        assert!(tickets.contains("<span class=\"pill urgent\">Urgent</span>"));
        // The demo's tickets are Lee's.
        assert!(!tickets.contains("Dashboard login loop"));
        let all = t.get("/?who=all").await;
        assert!(section(&all.body, "tickets").contains("Dashboard login loop"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn meetings_this_week_and_no_name_shows_everyone() {
        let t = TestUi::start().await;
        let now = Timestamp::now().to_zoned_datetime(TimeZone::system());
        let today = now.date();
        let monday = week_start(today);
        create(
            &t,
            Kind::Activity,
            &[
                ("type", "meeting"),
                ("subject", "Weekly pipeline review"),
                ("when", &format!("{monday} 09:30")),
                ("owner", "Dana Sales"),
            ],
        );
        create(
            &t,
            Kind::Activity,
            &[
                ("type", "meeting"),
                ("subject", "Next week's offsite"),
                ("when", &format!("{} 09:30", add_days(monday, 7))),
                ("owner", "Dana Sales"),
            ],
        );
        let page = t.get("/").await;
        let meetings = section(&page.body, "meetings");
        assert!(meetings.contains("Weekly pipeline review"), "{meetings}");
        assert!(meetings.contains("09:30"), "{meetings}");
        assert!(meetings.contains(&monday.strftime("%a %-d %b").to_string()));
        assert!(!meetings.contains("offsite"), "{meetings}");

        t.repo()
            .set_identity(Some(String::new()), None)
            .expect("no name");
        let page = t.get("/").await;
        assert!(page.body.contains("rapport init --name"), "{}", page.body);
        assert!(section(&page.body, "today").contains("Send revised quote to Acme"));
    }
}
