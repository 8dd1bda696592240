//! `rapport agenda`: the meetings, calls and tasks of some days.

use anyhow::Result;
use clap::Args;
use rapport_node::ops::Request;

use crate::commands::to_json;

#[derive(Debug, Clone, Args)]
pub struct AgendaArgs {
    /// This week, Monday to Sunday (or the week of --from).
    #[arg(long, conflicts_with = "days")]
    pub week: bool,
    /// The first day [default: today].
    #[arg(long, value_name = "DAY")]
    pub from: Option<String>,
    /// How many days [default: 1].
    #[arg(long)]
    pub days: Option<u32>,
    /// Someone else's agenda: their name as records' owner [default: yours].
    #[arg(long, conflicts_with = "all")]
    pub owner: Option<String>,
    /// Everyone's.
    #[arg(long)]
    pub all: bool,
    /// Show times in this time zone (IANA, e.g. America/New_York) [default: this machine's].
    #[arg(long)]
    pub zone: Option<String>,
    /// Only this space's meetings and tasks (its name or id; `private` for your own).
    #[arg(long)]
    pub space: Option<String>,
    /// Dismiss the reminders of this meeting or task that are due (on every device of yours).
    #[arg(long, value_name = "REF", conflicts_with_all = ["week", "from", "days", "owner", "all"])]
    pub dismiss: Option<String>,
}

impl AgendaArgs {
    pub fn request(&self) -> Result<Request> {
        if let Some(record) = &self.dismiss {
            return Ok(Request::Dismiss {
                record: record.clone(),
                keys: Vec::new(),
            });
        }
        let (mut from, mut days) = (self.from.clone(), self.days);
        if self.week {
            let day = match self.from.as_deref() {
                Some(d) => d.trim().parse::<jiff::civil::Date>().map_err(|_| {
                    anyhow::anyhow!("--from {d}: expected a day such as 2026-03-31")
                })?,
                None => jiff::ZonedDateTime::now().date(),
            };
            from = Some(rapport_model::calendar::week_start(day).to_string());
            days = Some(7);
        }
        Ok(Request::Agenda(rapport_node::calendar::AgendaQuery {
            from,
            days,
            owner: self.owner.clone(),
            everyone: self.all,
            zone: self.zone.clone(),
            space: self.space.clone(),
        }))
    }
}

/// The agenda day by day: overdue tasks first, then each day's all-day
/// meetings, timed meetings and calls, and tasks due.
pub fn render(out: &mut String, agenda: &rapport_node::calendar::Agenda, json: bool) -> Result<()> {
    if json {
        return to_json(out, agenda);
    }
    let whose = agenda
        .owner
        .as_deref()
        .map_or("everyone's".to_string(), |o| format!("{o}'s"));
    outln!(
        out,
        "Agenda from {} for {} day{} ({}), {whose}",
        agenda.from,
        agenda.days,
        if agenda.days == 1 { "" } else { "s" },
        agenda.zone
    );
    if !agenda.reminders.is_empty() {
        outln!(out, "Reminders");
        for r in &agenda.reminders {
            let when = r
                .start
                .as_deref()
                .map_or(r.day.clone(), |s| format!("{} {s}", r.day));
            outln!(
                out,
                "  {when:<17} {:<8} {}  (dismiss: rapport agenda --dismiss {})",
                r.kind,
                r.title,
                r.id
            );
        }
    }
    if agenda.entries.is_empty() {
        outln!(
            out,
            "Nothing planned. Add a meeting: rapport activity add meeting --subject \"Kick-off\" --when \"2026-12-02 10:00\" --ends \"2026-12-02 11:00\""
        );
        return Ok(());
    }
    let mut heading = String::new();
    for e in &agenda.entries {
        let this = if e.overdue {
            "Overdue".to_string()
        } else {
            let day: Option<jiff::civil::Date> = e.day.parse().ok();
            day.map_or(e.day.clone(), |d| d.strftime("%A %Y-%m-%d").to_string())
        };
        if this != heading {
            outln!(out, "{this}");
            heading = this;
        }
        let when = match (&e.start, &e.end) {
            (Some(s), Some(en)) => format!("{s}–{en}"),
            (Some(s), None) => s.clone(),
            _ if e.all_day => "all day".into(),
            _ if e.overdue => format!("due {}", e.day),
            _ => "due".into(),
        };
        let mut line = format!("  {when:<12} {:<8} {}", e.kind, e.title);
        if let Some(l) = e.location.as_deref().filter(|l| !l.is_empty()) {
            line.push_str(&format!(" @ {l}"));
        }
        if !e.about.is_empty() {
            let about: Vec<&str> = e.about.iter().map(|l| l.title.as_str()).collect();
            line.push_str(&format!(" ({})", about.join(", ")));
        }
        if !e.attendees.is_empty() {
            let with: Vec<&str> = e.attendees.iter().map(|l| l.title.as_str()).collect();
            line.push_str(&format!(" with {}", with.join(", ")));
        }
        if e.repeats {
            line.push_str(" [repeats]");
        }
        if e.done {
            line.push_str(" [done]");
        }
        if e.overlaps {
            line.push_str(" [overlaps]");
        }
        if agenda.owner.is_none()
            && let Some(o) = &e.owner
        {
            line.push_str(&format!(" — {o}"));
        }
        outln!(out, "{line}");
    }
    Ok(())
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum CalendarCmd {
    /// Calendar feeds: an `.ics` address Thunderbird, Apple Calendar or Google Calendar
    /// subscribe to (`feed create NAME`, `feed list`, `feed revoke NAME`).
    #[command(subcommand)]
    Feed(FeedCmd),
    /// Move a meeting, call or task to another day (and time), keeping its length:
    /// `rapport calendar move Review --to 2026-03-17 --at 14:00`. A repeating meeting
    /// moves as a series, or with --only just the occurrence of --from.
    Move {
        /// The meeting, call or task.
        record: String,
        /// The day it moves to.
        #[arg(long, value_name = "DAY")]
        to: String,
        /// The time it starts at [default: the same].
        #[arg(long, value_name = "HH:MM")]
        at: Option<String>,
        /// The day of the occurrence moved (a repeating meeting) [default: its first].
        #[arg(long, value_name = "DAY")]
        from: Option<String>,
        /// Only that occurrence: it leaves the series and becomes a meeting of its own.
        #[arg(long, requires = "from")]
        only: bool,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum FeedCmd {
    /// Make a feed of your meetings and open tasks (or someone's, or everyone's); its address
    /// is printed once.
    Create {
        /// A name to list and revoke it by (letters, digits, - _ .).
        name: String,
        /// Whose: their name as records' owner [default: yours].
        #[arg(long, conflicts_with = "all")]
        owner: Option<String>,
        /// Everyone's meetings and open tasks.
        #[arg(long)]
        all: bool,
    },
    /// The feeds (never their addresses).
    List,
    /// Revoke a feed: its address answers nothing from now on.
    Revoke { name: String },
}

impl CalendarCmd {
    pub fn request(&self) -> Request {
        let cmd = match self {
            CalendarCmd::Feed(cmd) => cmd,
            CalendarCmd::Move {
                record,
                to,
                at,
                from,
                only,
            } => {
                return Request::Move(rapport_node::calendar::MoveQuery {
                    record: record.clone(),
                    from: from.clone(),
                    day: to.clone(),
                    time: at.clone(),
                    only: *only,
                });
            }
        };
        match cmd {
            FeedCmd::Create { name, owner, all } => Request::FeedCreate {
                name: name.clone(),
                owner: owner.clone(),
                everyone: *all,
            },
            FeedCmd::List => Request::FeedList,
            FeedCmd::Revoke { name } => Request::FeedRevoke { name: name.clone() },
        }
    }
}

/// A feed made (its address, once) or revoked.
pub fn render_feed(
    out: &mut String,
    feed: &rapport_node::integrations::StoredFeed,
    secret: Option<&str>,
    json: bool,
) -> Result<()> {
    let url = secret.map(|s| {
        format!(
            "http://{}/api/v1/calendar/{s}.ics",
            rapport_api::DEFAULT_BIND
        )
    });
    if json {
        return to_json(out, &serde_json::json!({ "feed": feed, "url": url }));
    }
    let whose = feed
        .owner
        .as_deref()
        .map_or("everyone's".into(), |o| format!("{o}'s"));
    match url {
        Some(url) => {
            outln!(
                out,
                "Calendar feed {} of {whose} meetings and open tasks. Subscribe to:",
                feed.name
            );
            outln!(out, "  {url}");
            outln!(
                out,
                "This address is shown once and opens the feed to whoever has it; it is served by the running node's HTTP API (another address if you gave `up --api-bind`). Revoke it: rapport calendar feed revoke {}",
                feed.name
            );
        }
        None => outln!(out, "Revoked calendar feed {} ({whose}).", feed.name),
    }
    Ok(())
}

pub fn render_feeds(
    out: &mut String,
    feeds: &[rapport_node::integrations::StoredFeed],
    json: bool,
) -> Result<()> {
    if json {
        return to_json(out, &feeds);
    }
    if feeds.is_empty() {
        outln!(
            out,
            "No calendar feeds. Make one: rapport calendar feed create phone"
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = feeds
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.owner.clone().unwrap_or_else(|| "everyone".into()),
                crate::output::local_time(f.created),
            ]
        })
        .collect();
    outln!(
        out,
        "{}",
        crate::output::table(&["name", "whose", "created"], &rows)
    );
    Ok(())
}
