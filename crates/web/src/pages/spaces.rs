//! `GET /spaces`: this node, its peers, and each shared space with your
//! role, its members and how its sync is going; the private space; forms
//! to create a space, invite to one (admins) and join one with a ticket.
//! The forms post to `/spaces/create`, `/spaces/invite`, `/spaces/join`
//! and show what went wrong on the same page, next to the form.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use jiff::Timestamp;
use maud::{Markup, html};
use rapport_model::{RecordId, Role, SpaceId};
use rapport_node::net::{NetStatus, SpaceStatus};
use rapport_node::ops::{Caller, OpError, Reply, Request};
use rapport_proto::wire::{Ticket, WireError};
use serde::Deserialize;

use crate::page::{self, Nav, Page};
use crate::trail::{Crumb, Trail};
use crate::{App, WebError};

/// Hours an invite stays valid unless the admin says otherwise (as the CLI).
const DEFAULT_HOURS: f64 = 24.0;
/// The longest validity accepted: a year.
const MAX_HOURS: f64 = 24.0 * 365.0;
/// Characters of a node or device id shown where the whole is too long.
const SHORT_ID: usize = 12;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SpacesQuery {
    /// A space just created here (its id), to confirm it.
    created: Option<String>,
    /// A space just joined (its id).
    joined: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct CreateForm {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct InviteForm {
    #[serde(default)]
    space: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    org: String,
    #[serde(default)]
    hours: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct JoinForm {
    #[serde(default)]
    ticket: String,
}

/// What the last action did, shown with the page.
#[derive(Debug, Default)]
enum Outcome {
    #[default]
    Nothing,
    Created(RecordId),
    Joined(RecordId),
    Invited {
        space_name: String,
        text: String,
        role: Role,
        hours: f64,
        expires: i64,
    },
    InviteFailed {
        form: InviteForm,
        error: String,
    },
    CreateFailed {
        name: String,
        error: String,
    },
    JoinFailed {
        ticket: String,
        error: String,
    },
}

/// One member of a space as the table shows it.
#[derive(Debug)]
struct MemberRow {
    org: String,
    user: String,
    device: String,
    you: bool,
    role: Role,
    added_by: String,
    /// How it is reached now (empty for this device).
    reached: String,
}

/// One shared space with its sync state.
#[derive(Debug)]
struct SpaceRow {
    id: RecordId,
    name: String,
    status: SpaceStatus,
    members: Vec<MemberRow>,
    removed: usize,
}

/// Everything the page shows, read off the async threads.
#[derive(Debug)]
struct Snapshot {
    net: NetStatus,
    spaces: Vec<SpaceRow>,
    private_records: usize,
    name: Option<String>,
    org: Option<String>,
    relay: bool,
    crumbs: Vec<Crumb>,
    /// The created or joined space's name, records and members.
    flash: Option<String>,
}

pub(crate) async fn page(State(app): State<App>, Query(q): Query<SpacesQuery>) -> Response {
    let parse = |s: Option<&str>| s.and_then(|s| s.parse::<RecordId>().ok());
    let outcome = match (parse(q.created.as_deref()), parse(q.joined.as_deref())) {
        (Some(id), _) => Outcome::Created(id),
        (_, Some(id)) => Outcome::Joined(id),
        _ => Outcome::Nothing,
    };
    respond(&app, outcome, StatusCode::OK).await
}

pub(crate) async fn create(State(app): State<App>, Form(f): Form<CreateForm>) -> Response {
    let name = f.name.clone();
    match app
        .blocking(move |app| {
            use rapport_node::ops::{Caller, ErrorCode, OpError, Reply, Request};
            match app
                .ops
                .execute(&Caller::user(), Request::CreateSpace { name })?
            {
                Reply::Space(s) => Ok(s),
                other => Err(OpError::new(ErrorCode::Internal, format!("{other:?}")).into()),
            }
        })
        .await
    {
        Ok(view) => Redirect::to(&format!("/spaces?created={}", view.id)).into_response(),
        Err(WebError::Op(e)) => {
            let status = StatusCode::from_u16(e.code.http_status())
                .unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            let outcome = Outcome::CreateFailed {
                name: f.name,
                error: e.to_string(),
            };
            respond(&app, outcome, status).await
        }
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn invite(State(app): State<App>, Form(f): Form<InviteForm>) -> Response {
    let failed = |form: InviteForm, error: String| Outcome::InviteFailed { form, error };
    let role = match f.role.trim() {
        "" => Role::Writer,
        r => match r.parse::<Role>() {
            Ok(role) => role,
            Err(e) => {
                let outcome = failed(f, e);
                return respond(&app, outcome, StatusCode::UNPROCESSABLE_ENTITY).await;
            }
        },
    };
    let hours = match parse_hours(&f.hours) {
        Ok(h) => h,
        Err(e) => {
            let outcome = failed(f, e);
            return respond(&app, outcome, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let (space, org) = (f.space.clone(), f.org.trim().to_string());
    let made = app
        .blocking(move |app| {
            let org = (!org.is_empty()).then_some(org);
            let request = Request::Invite {
                space,
                role,
                org,
                ttl_hours: hours,
            };
            match app.ops.execute(&Caller::user(), request) {
                Ok(Reply::Invite(invite)) => Ok(Ok(invite)),
                Ok(_) => Ok(Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the invite answered something else".to_string(),
                ))),
                Err(e) => Ok(Err((op_status(&e), e.to_string()))),
            }
        })
        .await;
    match made {
        Ok(Ok(invite)) => {
            let outcome = Outcome::Invited {
                space_name: invite.space_name,
                text: invite.ticket,
                role,
                hours,
                expires: invite.expires,
            };
            respond(&app, outcome, StatusCode::OK).await
        }
        Ok(Err((status, error))) => respond(&app, failed(f, error), status).await,
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn join(State(app): State<App>, Form(f): Form<JoinForm>) -> Response {
    let fail = |ticket: String, error: String| Outcome::JoinFailed { ticket, error };
    if f.ticket.trim().is_empty() {
        let outcome = fail(
            f.ticket,
            "paste the ticket first: it is a long text that starts with rapport2".into(),
        );
        return respond(&app, outcome, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    if let Err(e) = Ticket::decode(&f.ticket) {
        let why = match e {
            WireError::Malformed(m) => m,
            other => other.to_string(),
        };
        let outcome = fail(f.ticket, format!("this is not a valid ticket: {why}"));
        return respond(&app, outcome, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    // Dialing the inviter and catching up take a while: on a blocking
    // thread, as every operation.
    let ticket = f.ticket.clone();
    let joined = app
        .blocking(move |app| Ok(app.ops.execute(&Caller::user(), Request::Join { ticket })))
        .await;
    match joined {
        Ok(Ok(Reply::Space(view))) => {
            Redirect::to(&format!("/spaces?joined={}", view.id)).into_response()
        }
        Ok(Ok(_)) => {
            respond(
                &app,
                fail(f.ticket, "the join answered something else".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            )
            .await
        }
        Ok(Err(e)) => {
            respond(
                &app,
                fail(f.ticket, e.to_string()),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => e.into_response(),
    }
}

/// The status a failed operation answers with.
fn op_status(e: &OpError) -> StatusCode {
    StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY)
}

/// Hours the ticket stays valid, as typed (`24`, `0.5`); 24 when empty.
fn parse_hours(raw: &str) -> Result<f64, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(DEFAULT_HOURS);
    }
    match raw.parse::<f64>() {
        Ok(h) if h.is_finite() && h > 0.0 && h <= MAX_HOURS => Ok(h),
        Ok(_) => Err(format!(
            "`{raw}` hours: a ticket is valid for more than 0 and at most {MAX_HOURS} hours (a year)"
        )),
        Err(_) => Err(format!(
            "`{raw}` is not a number of hours: give how long the ticket stays valid, e.g. 24"
        )),
    }
}

async fn respond(app: &App, outcome: Outcome, status: StatusCode) -> Response {
    let flash_of = match &outcome {
        Outcome::Created(id) => Some((*id, true)),
        Outcome::Joined(id) => Some((*id, false)),
        _ => None,
    };
    let since = app.live.cursor();
    let snap = match app.blocking(move |app| snapshot(app, flash_of)).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    // A page that answers a form is not refreshed in place: it would lose
    // the ticket or the error it shows.
    let watch = match outcome {
        Outcome::Nothing | Outcome::Created(_) | Outcome::Joined(_) => vec!["*".to_string()],
        _ => Vec::new(),
    };
    let body = body(&snap, &outcome);
    let page = page::render(
        app,
        Page {
            title: "Spaces & sync".into(),
            nav: Nav::Spaces,
            crumbs: snap.crumbs,
            help: help(),
            body,
            watch,
            since: Some(since),
        },
    );
    (status, page).into_response()
}

fn snapshot(app: &App, flash_of: Option<(RecordId, bool)>) -> Result<Snapshot, WebError> {
    let repo = app.repo();
    let net = app.node.status()?;
    let me = repo.device_id().to_string();
    let mut spaces: Vec<SpaceRow> = repo
        .spaces()?
        .into_iter()
        .map(|v| {
            let mut members: Vec<MemberRow> = v
                .members
                .values()
                .map(|m| MemberRow {
                    org: m.org.clone(),
                    user: m.user.clone(),
                    device: m.device.get(..SHORT_ID).unwrap_or(&m.device).to_string(),
                    you: m.device == me,
                    role: m.role,
                    added_by: if m.added_by.is_empty() || m.added_by == m.device {
                        String::new()
                    } else {
                        repo.device_label(&v, &m.added_by)
                    },
                    reached: match net.members.get(&m.device) {
                        Some(r) => match &r.unreachable_since {
                            Some(since) if r.path == "unknown" => format!(
                                "unreachable since {}",
                                since.get(..16).unwrap_or(since).replace('T', " ")
                            ),
                            _ => r.path.clone(),
                        },
                        None => String::new(),
                    },
                })
                .collect();
            members.sort_by(|a, b| (&a.org, &a.user, &a.device).cmp(&(&b.org, &b.user, &b.device)));
            let status = net
                .spaces
                .get(&v.id.to_string())
                .cloned()
                .unwrap_or_else(|| SpaceStatus {
                    name: v.name.clone(),
                    members: v.members.len(),
                    records: repo.space_record_count(v.id),
                    role: v.role_of(&me),
                    ..SpaceStatus::default()
                });
            SpaceRow {
                id: v.id,
                name: v.name,
                status,
                members,
                removed: v.removed.len(),
            }
        })
        .collect();
    spaces.sort_by_key(|s| s.name.to_lowercase());
    let flash = match flash_of {
        Some((id, created)) => repo.space(id)?.map(|v| {
            let records = repo.space_record_count(v.id);
            if created {
                format!(
                    "Created space {}. Invite a partner with its Invite form below (or `rapport space invite \"{}\"`).",
                    v.name, v.name
                )
            } else {
                format!(
                    "Joined space {}: {} members, {} records so far.",
                    v.name,
                    v.members.len(),
                    records
                )
            }
        }),
        None => None,
    };
    let profile = repo.profile();
    Ok(Snapshot {
        net,
        spaces,
        private_records: repo.space_record_count_of(SpaceId::Private),
        name: profile.name.filter(|n| !n.trim().is_empty()),
        org: profile.org.filter(|o| !o.trim().is_empty()),
        relay: profile.relay,
        crumbs: Trail::default().crumbs(repo, "Spaces & sync"),
        flash,
    })
}

fn body(s: &Snapshot, outcome: &Outcome) -> Markup {
    html! {
        h1 { "Spaces & sync" }
        @if let Some(f) = &s.flash {
            p class="flash" role="status" { (f) }
        }
        @if let Outcome::Invited { space_name, text, role, hours, expires } = outcome {
            section class="panel" id="invite-ticket" aria-labelledby="invite-ticket-h" {
                h2 id="invite-ticket-h" { "Invite ticket for " (space_name) }
                p class="ticket-text" id="ticket-text" { (text) }
                p {
                    "Send this ticket to the person you invite (by chat or email; it works once). "
                    "On the other device: open " strong { "Spaces & sync" } " and paste it under " strong { "Join a space" } ", or run "
                    code { "rapport space join TICKET" } "."
                }
                p class="muted" {
                    "Grants the " (role) " role; one use, valid " (hours) " h (until " (page::local_time(*expires)) ")."
                }
            }
        }
        @if let Outcome::InviteFailed { form, error } = outcome {
            @if !s.spaces.iter().any(|sp| invites_here(sp, form, s.relay)) {
                p class="error" role="alert" { "No invite was made: " (error) }
            }
        }
        (this_node(s))
        @if s.spaces.is_empty() {
            p { "No shared spaces yet. Create one below to share records with a partner, or join one with a ticket." }
        }
        @for sp in &s.spaces {
            (space(sp, outcome, s.relay))
        }
        section class="panel" id="private" aria-labelledby="private-h" {
            h2 id="private-h" { "Private space" }
            p { (s.private_records) " " (if s.private_records == 1 { "record" } else { "records" }) "." }
            p { "Records in your private space never leave this device: they are not sent to any peer, whatever spaces you share. To share a record with a partner, create it in a shared space." }
        }
        div class="grid2" {
            (create_form(outcome))
            (join_form(outcome))
        }
    }
}

fn this_node(s: &Snapshot) -> Markup {
    let n = &s.net;
    html! {
        section class="panel" id="node" aria-labelledby="node-h" {
            h2 id="node-h" { "This node" }
            dl class="fields" {
                dt { "You" }
                dd {
                    @match (&s.name, &s.org) {
                        (Some(name), Some(org)) => { (name) " (" (org) ")" },
                        (Some(name), None) => { (name) },
                        _ => { "No name set: " code { "rapport init --name \"Your Name\" --org \"Your Org\"" } " sets it, and new members are certified with it." },
                    }
                    @if s.relay { " · this node is a relay: it stores and forwards spaces and writes nothing" }
                }
                dt { "Node id" }
                dd { code class="ticket-text" { (n.node_id) } }
                dt { "Addresses" }
                dd {
                    @if n.addrs.is_empty() { "none yet" }
                    @for (i, a) in n.addrs.iter().enumerate() {
                        @if i > 0 { ", " }
                        code { (a) }
                    }
                }
                dt { "Relay" }
                dd { (n.relay) }
                dt { "Connected peers" }
                dd {
                    @if n.connected.is_empty() {
                        "none connected now"
                    } @else {
                        (n.connected.len()) ": "
                        @for (i, p) in n.connected.iter().enumerate() {
                            @if i > 0 { ", " }
                            code title=(p) { (p.get(..SHORT_ID).unwrap_or(p)) }
                        }
                    }
                }
            }
        }
    }
}

fn space(sp: &SpaceRow, outcome: &Outcome, relay: bool) -> Markup {
    let st = &sp.status;
    let heading = format!("space-{}-h", sp.id);
    let role = st.role;
    html! {
        section class="panel space" id={ "space-" (sp.id) } aria-labelledby=(heading) {
            h2 id=(heading) { (sp.name) }
            dl class="fields" {
                dt { "Your role" }
                dd {
                    @match role {
                        Some(r) => { (r) " · " (role_meaning(r)) },
                        None => "not a member",
                    }
                }
                dt { "Records" }
                dd { (st.records) }
                dt { "Changes not yet sent" }
                dd {
                    (st.pending_out)
                    @if st.pending_out > 0 { " " span class="muted" { "(sent when a member is reachable)" } }
                }
                dt { "Last sync" }
                dd { (sync_time(st.last_sync.as_deref())) }
                @if st.rejected > 0 {
                    dt { "Refused changes" }
                    dd { (st.rejected) " " span class="muted" { "(" code { "rapport audit \"" (sp.name) "\"" } " says why)" } }
                }
                @if let Some(r) = &st.refused {
                    dt { "Last refusal" }
                    dd class="error" { (r) }
                }
                dt { "Space id" }
                dd { code { (sp.id) } }
            }
            h3 { "Members" }
            div class="table-wrap" {
                table {
                    thead {
                        tr {
                            th scope="col" { "Organisation" }
                            th scope="col" { "User" }
                            th scope="col" { "Device" }
                            th scope="col" { "Role" }
                            th scope="col" { "Added by" }
                            th scope="col" { "Reached" }
                        }
                    }
                    tbody {
                        @for m in &sp.members {
                            tr {
                                td { (or_dash(&m.org)) }
                                td { (or_dash(&m.user)) }
                                td { code { (m.device) } @if m.you { " (this device)" } }
                                td { (m.role) }
                                td { (or_dash(&m.added_by)) }
                                td { (or_dash(&m.reached)) }
                            }
                        }
                    }
                }
            }
            @if sp.removed > 0 {
                p class="muted" { (sp.removed) " removed; " code { "rapport space members \"" (sp.name) "\"" } " lists them." }
            }
            @if role == Some(Role::Admin) && !relay {
                (invite_form(sp, outcome))
            }
        }
    }
}

/// Whether the space's own invite form shows what `form` asked for.
fn invites_here(sp: &SpaceRow, form: &InviteForm, relay: bool) -> bool {
    sp.status.role == Some(Role::Admin) && !relay && form.space.trim() == sp.id.to_string()
}

fn invite_form(sp: &SpaceRow, outcome: &Outcome) -> Markup {
    let id = sp.id.to_string();
    let (form, error) = match outcome {
        Outcome::InviteFailed { form, error } if form.space.trim() == id => {
            (form.clone(), Some(error.as_str()))
        }
        _ => (InviteForm::default(), None),
    };
    let chosen = form.role.trim().parse::<Role>().unwrap_or(Role::Writer);
    let hours = if form.hours.trim().is_empty() {
        DEFAULT_HOURS.to_string()
    } else {
        form.hours.clone()
    };
    let f = |name: &str| format!("invite-{name}-{id}");
    let err = f("error");
    html! {
        form method="post" action="/spaces/invite" class="stack" aria-describedby=[error.is_some().then_some(&err)] {
            h3 { "Invite to " (sp.name) }
            @if let Some(e) = error {
                p class="error" role="alert" id=(err) { (e) }
            }
            input type="hidden" name="space" value=(id);
            div class="field" {
                label for=(f("role")) { "Role" }
                select id=(f("role")) name="role" {
                    @for r in Role::ALL {
                        option value=(r) selected[r == chosen] { (r) " · " (role_meaning(r)) }
                    }
                }
            }
            div class="field" {
                label for=(f("org")) { "Their organisation (optional)" }
                input id=(f("org")) name="org" type="text" value=(form.org) aria-describedby=(f("org-hint"));
                p class="hint" id=(f("org-hint")) { "If set, the person joining is recorded as belonging to this organisation, whatever they say." }
            }
            div class="field" {
                label for=(f("hours")) { "Valid for (hours)" }
                input id=(f("hours")) name="hours" type="number" min="0.1" max=(MAX_HOURS) step="any" value=(hours) inputmode="decimal";
            }
            button type="submit" { "Create invite ticket" }
        }
    }
}

fn create_form(outcome: &Outcome) -> Markup {
    let (name, error) = match outcome {
        Outcome::CreateFailed { name, error } => (name.as_str(), Some(error.as_str())),
        _ => ("", None),
    };
    html! {
        section class="panel" id="create" aria-labelledby="create-h" {
            h2 id="create-h" { "Create a shared space" }
            p { "A shared space holds records you work on with a partner organisation. You become its admin and can invite others." }
            form method="post" action="/spaces/create" {
                div class="field" {
                    label for="space-name" { "Name" }
                    input id="space-name" name="name" type="text" required value=(name)
                        aria-invalid=[error.is_some().then_some("true")]
                        aria-describedby=[error.is_some().then_some("space-name-error")];
                    @if let Some(e) = error {
                        p class="error" role="alert" id="space-name-error" { (e) }
                    }
                }
                button type="submit" { "Create space" }
            }
        }
    }
}

fn join_form(outcome: &Outcome) -> Markup {
    let (ticket, error) = match outcome {
        Outcome::JoinFailed { ticket, error } => (ticket.as_str(), Some(error.as_str())),
        _ => ("", None),
    };
    let described = if error.is_some() {
        "ticket-error ticket-hint"
    } else {
        "ticket-hint"
    };
    html! {
        section class="panel" id="join" aria-labelledby="join-h" {
            h2 id="join-h" { "Join a space" }
            form method="post" action="/spaces/join" {
                div class="field" {
                    label for="ticket" { "Invite ticket" }
                    textarea id="ticket" name="ticket" rows="4" required spellcheck="false"
                        aria-invalid=[error.is_some().then_some("true")] aria-describedby=(described) { (ticket) }
                    p class="hint" id="ticket-hint" { "Paste the ticket an admin of the space sent you; it starts with rapport2. The admin's node must be running and reachable." }
                    @if let Some(e) = error {
                        p class="error" role="alert" id="ticket-error" { (e) }
                    }
                }
                button type="submit" { "Join" }
            }
        }
    }
}

fn role_meaning(r: Role) -> &'static str {
    match r {
        Role::Admin => "invites and removes members, changes records",
        Role::Writer => "creates, edits and deletes records",
        Role::Reader => "reads records",
        Role::Relay => "stores and forwards changes, writes nothing",
        Role::Privacy => "reads records, exports and erases a person's data",
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// A sync time (RFC 3339) in local time, or "never".
fn sync_time(rfc3339: Option<&str>) -> String {
    match rfc3339 {
        None => "never".into(),
        Some(t) => match t.parse::<Timestamp>() {
            Ok(ts) => page::local_time(ts.as_second()),
            Err(_) => t.to_string(),
        },
    }
}

fn help() -> Markup {
    html! {
        p { "Your records live on this computer. A " strong { "shared space" } " is a set of records you share with other people's devices, for example a partner company: every member keeps a copy, and changes travel directly between devices, with no server in between." }
        p { "For each space you see your role, who its members are, how many records it has, how many of your changes have not reached anyone yet (they go as soon as a member is online), and when it last synced." }
        p { "To share: create a space, then use " strong { "Invite" } " to make a ticket and send it to the other person. They paste it under " strong { "Join a space" } " on their device. A ticket works once and expires." }
        p { "Records in your " strong { "private space" } " never leave this device." }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestUi;

    /// Creates a space through the form; its id.
    async fn create_space(t: &TestUi, name: &str) -> RecordId {
        let made = t.post("/spaces/create", &[("name", name)]).await;
        assert_eq!(made.status, 303, "{}", made.body);
        let to = made.header("location").expect("redirect").to_string();
        let id = to
            .strip_prefix("/spaces?created=")
            .expect("created")
            .parse()
            .expect("id");
        let page = t.get(&to).await;
        assert!(
            page.body
                .contains(&format!("Created space {}.", name.replace('&', "&amp;"))),
            "{}",
            page.body
        );
        id
    }

    fn ticket_text(body: &str) -> &str {
        let start = body.find("id=\"ticket-text\">").expect("ticket shown") + 17;
        let rest = &body[start..];
        &rest[..rest.find('<').expect("ends")]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spaces_page_lists_a_created_space_and_this_node() {
        let t = TestUi::start().await;
        let page = t.get("/spaces").await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("No shared spaces yet"));
        assert!(page.body.contains("never leave this device"));
        assert!(page.body.contains(&t.node.id().to_string()), "node id");

        let id = create_space(&t, "Acme & Northwind").await;
        let page = t.get("/spaces").await;
        let at = page
            .body
            .find(&format!("id=\"space-{id}\""))
            .expect("space");
        let sp = &page.body[at..];
        let sp = &sp[..sp.find("</section>").expect("ends")];
        assert!(sp.contains("Acme &amp; Northwind"), "{sp}");
        assert!(sp.contains("admin · invites"), "{sp}");
        assert!(sp.contains("Dana Sales"), "{sp}");
        assert!(sp.contains("Acme Partners"), "{sp}");
        assert!(sp.contains("(this device)"), "{sp}");
        assert!(
            sp.contains("action=\"/spaces/invite\""),
            "admins invite: {sp}"
        );

        let unnamed = t.post("/spaces/create", &[("name", "  ")]).await;
        assert_eq!(unnamed.status, 422);
        assert!(
            unnamed.body.contains("a space needs a name"),
            "{}",
            unnamed.body
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invite_makes_a_ticket_that_parses_and_errors_show_inline() {
        let t = TestUi::start().await;
        let id = create_space(&t, "Partners").await;
        let sid = id.to_string();
        let made = t
            .post(
                "/spaces/invite",
                &[
                    ("space", &sid),
                    ("role", "reader"),
                    ("org", "Northwind"),
                    ("hours", "2"),
                ],
            )
            .await;
        assert_eq!(made.status, 200, "{}", made.body);
        let ticket = Ticket::decode(ticket_text(&made.body)).expect("a valid ticket");
        assert_eq!(ticket.space_name, "Partners");
        assert_eq!(ticket.role, "reader");
        let in_two_hours = Timestamp::now().as_second() + 7200;
        assert!((ticket.expires - in_two_hours).abs() < 60);
        assert!(made.body.contains("rapport space join TICKET"));
        assert!(
            made.body
                .contains("Grants the reader role; one use, valid 2 h")
        );

        let bad_role = t
            .post("/spaces/invite", &[("space", &sid), ("role", "owner")])
            .await;
        assert_eq!(bad_role.status, 422);
        assert!(
            bad_role
                .body
                .contains("unknown role `owner`: use admin, writer, reader, relay or privacy"),
            "{}",
            bad_role.body
        );
        assert!(bad_role.body.contains("role=\"alert\""));

        let bad_hours = t
            .post("/spaces/invite", &[("space", &sid), ("hours", "-1")])
            .await;
        assert_eq!(bad_hours.status, 422);
        assert!(
            bad_hours.body.contains("at most 8760 hours"),
            "{}",
            bad_hours.body
        );

        let unknown = t
            .post(
                "/spaces/invite",
                &[("space", "Nowhere"), ("role", "writer")],
            )
            .await;
        assert_eq!(unknown.status, 404);
        assert!(
            unknown.body.contains("no space matches `Nowhere`"),
            "{}",
            unknown.body
        );

        let private = t.post("/spaces/invite", &[("space", "private")]).await;
        assert_eq!(private.status, 422);
        assert!(private.body.contains("the private space cannot be shared"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn join_with_garbage_shows_an_inline_error() {
        let t = TestUi::start().await;
        let bad = t.post("/spaces/join", &[("ticket", "hello there")]).await;
        assert_eq!(bad.status, 422, "{}", bad.body);
        assert!(
            bad.body
                .contains("this is not a valid ticket: a ticket starts with `rapport2`"),
            "{}",
            bad.body
        );
        assert!(
            bad.body.contains(">hello there</textarea>"),
            "kept: {}",
            bad.body
        );
        assert!(
            bad.body.contains("<h1>Spaces &amp; sync</h1>"),
            "the page itself"
        );

        let damaged = t.post("/spaces/join", &[("ticket", "rapport2aaaa")]).await;
        assert_eq!(damaged.status, 422);
        assert!(
            damaged.body.contains("the ticket is damaged"),
            "{}",
            damaged.body
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ticket_from_one_node_joins_another() {
        let admin = TestUi::start().await;
        let id = create_space(&admin, "Joint work").await;
        let made = admin
            .post(
                "/spaces/invite",
                &[("space", &id.to_string()), ("role", "writer")],
            )
            .await;
        let ticket = ticket_text(&made.body).to_string();
        let partner = TestUi::start().await;
        let joined = partner.post("/spaces/join", &[("ticket", &ticket)]).await;
        assert_eq!(joined.status, 303, "{}", joined.body);
        assert_eq!(
            joined.header("location"),
            Some(format!("/spaces?joined={id}").as_str())
        );
        let page = partner.get(&format!("/spaces?joined={id}")).await;
        assert!(
            page.body.contains("Joined space Joint work: 2 members"),
            "{}",
            page.body
        );
        let again = partner.post("/spaces/join", &[("ticket", &ticket)]).await;
        assert_eq!(again.status, 422, "a ticket works once");
    }
}
