//! Every user operation as data: a [`Request`] in, a [`Reply`] or an
//! [`OpError`] out. The CLI (directly, or through the running node's
//! local API), the web UI and the HTTP API for integrations all run these,
//! so that one operation behaves the same whoever asks.
//!
//! Replies carry what a client needs to show the result without asking
//! again (the titles of referenced records, the labels of devices), and
//! never a secret: no gossip topic secret, no invite secret beyond the
//! ticket being created.
//!
//! A [`Caller`] says who asks: the local user (everything), or an API
//! token that may be read-only or limited to one space. The limits are
//! enforced here, once, for every transport.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use rapport_model::{
    FieldValue, Kind, RecordId, RecordView, Role, Schema, SchemaChange, SchemaEntry, SpaceId,
    SpaceView,
};
use serde::{Deserialize, Serialize};

use crate::import::{Begun, ImportRow, ImportSpec, ImportSummary, RowOutcome, UndoReport};
use crate::integrations::{Delivery, Integrations, StoredToken, Webhook};
use crate::live::{EventType, Live};
use crate::net::{NetError, NetStatus, Node};
use crate::pipeline::Stage;
use crate::repo::Input;
use crate::search::Found;
use crate::timeline::{DeleteRace, Entry};
use crate::{NodeError, Repo};

/// Most records one page of a list returns.
pub const MAX_PAGE: usize = 1000;

/// One user operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Who this device is.
    Whoami,
    /// Sets this device's name and organisation (blank keeps the old one).
    SetIdentity {
        name: Option<String>,
        org: Option<String>,
        /// The country phone numbers without `+` are read in (`DE`).
        #[serde(default)]
        region: Option<String>,
    },
    /// The node, its peers and each shared space's sync state.
    Status,
    /// The fields of a record kind: in one space (its custom fields
    /// too), or in every space this node holds.
    Fields {
        kind: Kind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        space: Option<String>,
    },
    /// A space's schema: every kind's fields, hidden and retired ones
    /// too, and the statements that shaped it [default: the private space].
    Schema {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        space: Option<String>,
    },
    /// Changes a space's schema (its admins only; the private space's by
    /// its user).
    ChangeSchema {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        space: Option<String>,
        change: SchemaChange,
    },
    /// Creates a record from `(field, text)` inputs, parsed as the CLI
    /// parses them. A ticket's `about` names a company or a person (the
    /// person's company is added); an activity without a subject takes
    /// the first line of its body.
    Create {
        kind: Kind,
        /// A space by name or id [default: the private space].
        #[serde(default)]
        space: Option<String>,
        fields: Vec<Input>,
    },
    /// Sets and clears fields of a live record.
    Edit {
        record: String,
        #[serde(default)]
        set: Vec<Input>,
        #[serde(default)]
        unset: Vec<String>,
    },
    Delete {
        record: String,
    },
    Restore {
        record: String,
    },
    /// Marks a task done.
    CompleteTask {
        record: String,
    },
    /// One record with its related records.
    Show {
        record: String,
    },
    /// Records of one kind.
    List(ListQuery),
    /// A record's history and activities, newest first.
    Timeline {
        record: String,
    },
    /// Everything this node holds about a person, as files (a subject
    /// access or portability request): `privacy`.
    PrivacyExport {
        person: String,
    },
    /// Adds people to a campaign's members: those without the consent its
    /// channel needs refuse the whole request, or with
    /// `skip_without_consent` are left out and reported (`consent`).
    Enroll {
        campaign: String,
        people: Vec<String>,
        #[serde(default)]
        skip_without_consent: bool,
    },
    /// Who withdrew consent or objected, to what (`consent`).
    Objections,
    /// This device's retention rules (`retention`).
    RetentionRules,
    /// Adds a retention rule, or replaces the one of its name.
    SetRetentionRule(crate::retention::RetentionRule),
    RemoveRetentionRule {
        name: String,
    },
    /// What retention rule `name` (every rule if `None`) would erase, and
    /// with `apply`, erases it (`reason` required).
    Retention {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        apply: bool,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Erases a person (and with `with_activities`, the activities that
    /// refer to them) on every node of their space (`erasure`).
    PrivacyErase {
        person: String,
        #[serde(default)]
        with_activities: bool,
        /// Erase only this field of a record that stays (its history
        /// rebuilt without it, on every node).
        #[serde(default)]
        field: Option<String>,
        reason: String,
    },
    /// Erasures and which nodes confirmed them: one (`erasure`: its id or
    /// short id) or all.
    Erasures {
        #[serde(default)]
        erasure: Option<String>,
    },
    /// Deals by stage.
    Pipeline,
    /// One of the reports (`reports`): win rate, forecast, ABC, RFM,
    /// churn, service, campaigns.
    Report(crate::reports::ReportQuery),
    /// The exchange rates reports convert at.
    Rates,
    /// Meetings, calls and tasks of some days (`calendar`).
    Agenda(crate::calendar::AgendaQuery),
    /// Moves a meeting or call (a repeating one as a series, or `only` the
    /// occurrence shown) or a task; replies with the record moved (for
    /// `only`, the occurrence, now a meeting of its own).
    Move(crate::calendar::MoveQuery),
    /// This user's reminders that have fired and are not dismissed.
    Reminders,
    /// Dismisses reminders of a meeting, call or task (their occurrence
    /// keys, as `Reminders` gives them): written in the record, so every
    /// device of its owner stops showing them.
    Dismiss {
        record: String,
        keys: Vec<String>,
    },
    /// Sets the exchange rates: `pairs` such as `USD=0.92`, each
    /// `1 USD = 0.92 base`; no pairs clears them.
    SetRates {
        base: String,
        pairs: Vec<String>,
    },
    /// Clusters of records that are likely the same customer: of one
    /// kind, or people and companies.
    Duplicates {
        #[serde(default)]
        kind: Option<Kind>,
    },
    /// Merges `others` into `keep` (see `merge.rs`): `prefer` names, per
    /// field, the record whose value the survivor takes.
    Merge {
        keep: String,
        others: Vec<String>,
        #[serde(default)]
        prefer: Vec<Input>,
    },
    /// The merges made on this device, newest first.
    Merges,
    /// Undoes a merge.
    MergeUndo {
        id: String,
    },
    /// The records likely the same as one record.
    Likely {
        record: String,
    },
    /// Records whose name, emails, phones, domains or tags match.
    Search {
        query: String,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Every record (of one kind, or all), deleted ones included.
    Export {
        #[serde(default)]
        kind: Option<Kind>,
    },
    /// Every record's Automerge document.
    ExportDocuments {
        #[serde(default)]
        kind: Option<Kind>,
    },
    /// Writes a backup file (a path on the node's machine).
    Backup {
        path: PathBuf,
    },
    CreateSpace {
        name: String,
    },
    Spaces,
    Members {
        space: String,
    },
    /// Removes a device, a user's devices or an organisation's.
    RemoveMember {
        space: String,
        member: String,
    },
    /// A one-time ticket to join a space (needs the running node).
    Invite {
        space: String,
        role: Role,
        #[serde(default)]
        org: Option<String>,
        ttl_hours: f64,
    },
    /// Joins a space with a ticket (needs the running node).
    Join {
        ticket: String,
    },
    /// A space's membership changes and refused changes.
    Audit {
        space: String,
    },
    /// One record as it is now, with its version (heads).
    Get {
        record: String,
    },
    /// [`Request::Edit`] by a client that read the record at `if_match`
    /// (heads, as `Get` gave them): the edit merges whatever happened
    /// since, and the reply names the fields another writer changed
    /// meanwhile.
    Patch {
        record: String,
        #[serde(default)]
        set: Vec<Input>,
        #[serde(default)]
        unset: Vec<String>,
        if_match: Vec<String>,
    },
    /// Makes an API token; the reply holds its secret, once.
    TokenCreate {
        name: String,
        #[serde(default)]
        read_only: bool,
        /// Limits the token to one shared space (name or id).
        #[serde(default)]
        space: Option<String>,
    },
    /// The API tokens (never their secrets).
    TokenList,
    /// Makes a calendar feed: an `.ics` URL calendar apps subscribe to,
    /// of `owner`'s agenda (this user's by default; everyone's with
    /// `everyone`). The reply holds its secret, once.
    FeedCreate {
        name: String,
        #[serde(default)]
        owner: Option<String>,
        #[serde(default)]
        everyone: bool,
    },
    /// The calendar feeds (never their secrets).
    FeedList,
    FeedRevoke {
        name: String,
    },
    /// The calendar of the feed whose URL carries `secret`, as iCalendar.
    CalendarFeed {
        secret: String,
    },
    TokenRevoke {
        name: String,
    },
    /// Calls `url` on every event of `events`; the reply holds the
    /// signing secret, once.
    WebhookAdd {
        url: String,
        events: Vec<EventType>,
        /// Only records of this shared space (name or id).
        #[serde(default)]
        space: Option<String>,
    },
    WebhookList,
    WebhookRemove {
        id: String,
    },
    /// Turns a webhook disabled after failures back on.
    WebhookEnable {
        id: String,
    },
    /// Delivery attempts, oldest first: every webhook's, or one's.
    WebhookLog {
        #[serde(default)]
        id: Option<String>,
    },
    /// Begins an import session (`import`): rows follow in batches.
    ImportBegin(ImportSpec),
    /// Matches, checks and writes (unless a dry run) one batch of rows.
    ImportRows {
        id: String,
        rows: Vec<ImportRow>,
    },
    /// Ends an import session.
    ImportEnd {
        id: String,
    },
    /// The imports made on this device, newest first.
    Imports,
    /// Deletes what an import created and restores what it updated.
    ImportUndo {
        id: String,
    },
}

/// Which records of a kind, in what order, and which page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub kind: Kind,
    /// `(field, value)`: a record is kept when its field equals the value
    /// (lists: contain it; references: by name or id); a field ending in
    /// `!`, `>`, `<`, `^` or `~` compares otherwise (`amount>` with
    /// `1000`: at least 1000; see [`crate::filter`]).
    #[serde(default)]
    pub filters: Vec<Input>,
    /// Deleted records instead of live ones.
    #[serde(default)]
    pub deleted: bool,
    /// A field to sort by, `-field` for descending [default: by id, which
    /// is creation order].
    #[serde(default)]
    pub sort: Option<String>,
    /// Most records in the page, 1 to `MAX_PAGE` [default: every record,
    /// in one page: listing everything is one pass over the store, where
    /// following pages re-reads it for each].
    #[serde(default)]
    pub limit: Option<usize>,
    /// The `next` cursor of the page before.
    #[serde(default)]
    pub after: Option<String>,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Whoami(Whoami),
    Status(Status),
    Fields {
        fields: Vec<FieldInfo>,
    },
    Schema(SchemaReply),
    /// A record written (or `unchanged` when nothing differed).
    Record(RecordReply),
    Show(ShowReply),
    List(Page),
    Timeline(TimelineReply),
    PrivacyExport(crate::privacy::PersonExport),
    Erased(crate::erasure::ErasureReport),
    Enrolled(Box<crate::consent::Enrolled>),
    RetentionRules {
        rules: Vec<crate::retention::RetentionRule>,
    },
    Retention {
        runs: Vec<crate::retention::RuleRun>,
    },
    Objections {
        objections: Vec<crate::consent::Objection>,
    },
    Erasures {
        erasures: Vec<crate::erasure::ErasureStatus>,
    },
    Pipeline {
        /// The built-in `sales` pipeline's stages.
        stages: Vec<Stage>,
        /// The pipelines the spaces' admins set (retired ones say so).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        others: Vec<crate::pipeline::PipelineReport>,
    },
    Duplicates {
        clusters: Vec<crate::duplicates::Cluster>,
    },
    Report(crate::reports::Report),
    Rates(Option<crate::reports::Rates>),
    Agenda(crate::calendar::Agenda),
    Reminders {
        due: Vec<crate::calendar::Due>,
    },
    Likely {
        record: RecordView,
        matches: Vec<Likely>,
    },
    Merged {
        merge: crate::merge::MergeRecord,
        record: RecordView,
    },
    Merges {
        merges: Vec<crate::merge::MergeRecord>,
    },
    MergeUndone(crate::merge::MergeUndone),
    Search(Found),
    Export {
        records: Vec<RecordView>,
    },
    Documents {
        documents: Vec<Document>,
    },
    Backup(BackupReply),
    Space(SpaceSummary),
    Spaces {
        spaces: Vec<SpaceSummary>,
    },
    Members(MembersReply),
    Removed {
        removed: Vec<MemberRow>,
    },
    Invite(InviteReply),
    Audit(AuditReply),
    /// A token made (with its secret, this once) or revoked.
    Token(TokenReply),
    Tokens {
        tokens: Vec<TokenInfo>,
    },
    /// A calendar feed made (with its secret, this once) or revoked.
    Feed {
        feed: crate::integrations::StoredFeed,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
    },
    Feeds {
        feeds: Vec<crate::integrations::StoredFeed>,
    },
    /// A calendar as iCalendar text.
    Calendar {
        ics: String,
    },
    /// A webhook added (with its secret, this once), removed or enabled.
    Webhook(WebhookReply),
    Webhooks {
        webhooks: Vec<WebhookInfo>,
    },
    Deliveries {
        deliveries: Vec<Delivery>,
    },
    ImportBegun(Begun),
    ImportRows {
        outcomes: Vec<RowOutcome>,
    },
    Import(ImportSummary),
    Imports {
        imports: Vec<ImportSummary>,
    },
    ImportUndone(UndoReport),
}

/// An API token as users see it: never its secret, except in the reply
/// that creates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub name: String,
    pub read_only: bool,
    pub space: Option<SpaceId>,
    /// The space's name, when the token is limited to one.
    pub space_name: Option<String>,
    /// Seconds since the Unix epoch.
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenReply {
    pub token: TokenInfo,
    /// The token itself: only when it was just made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A webhook as users see it (its signing secret only when just added).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookInfo {
    pub id: String,
    pub url: String,
    pub events: Vec<EventType>,
    pub space: Option<SpaceId>,
    pub created: i64,
    /// Failed attempts since the last success.
    pub failures: u32,
    /// Why deliveries stopped, if they did.
    pub disabled: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookReply {
    pub webhook: WebhookInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Whether it was just removed.
    #[serde(default)]
    pub removed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Whoami {
    pub name: Option<String>,
    pub org: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    pub device: String,
    pub data_dir: PathBuf,
    pub records: usize,
    /// Per space: this device's role and who certified it.
    pub spaces: Vec<Certification>,
}

/// Records on this node up to which a create or edit run on the data
/// directory (no node, so no search index) checks for likely duplicates.
const LOCAL_CHECK_LIMIT: usize = 20_000;

/// A record likely the same as another, how sure (0–100), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Likely {
    pub id: RecordId,
    pub title: String,
    pub score: u8,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certification {
    pub space: String,
    pub id: RecordId,
    pub role: Role,
    pub user: String,
    pub org: String,
    pub certified_by: String,
    pub removed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Whether a node runs (else only the store was read).
    pub running: bool,
    pub records: usize,
    /// Whether this data directory is a relay's (`rapport relay run`).
    pub is_relay: bool,
    #[serde(default, flatten)]
    pub net: Option<NetStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldInfo {
    pub name: String,
    /// `text`, `choice`, `ref`, ... as `model::FieldType` names it.
    #[serde(rename = "type")]
    pub ty: String,
    pub required: bool,
    pub list: bool,
    pub default: Option<String>,
    pub help: String,
    /// A choice's options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// The kinds a reference may name (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refers_to: Vec<Kind>,
    /// What forms and tables call it.
    #[serde(default)]
    pub label: String,
    /// Added by the space's admins.
    #[serde(default)]
    pub custom: bool,
    /// `active`, `hidden` (a built-in field) or `retired` (a custom one).
    #[serde(default = "active")]
    pub status: String,
    /// Choices retired: records may hold them, new input may not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_choices: Vec<String>,
}

fn active() -> String {
    "active".into()
}

/// A space's schema as `rapport schema show` and the settings page show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaReply {
    /// `private`, or the shared space's id.
    pub space: String,
    pub space_name: String,
    /// Whether this device may change it (an admin of the space).
    pub may_change: bool,
    pub kinds: Vec<KindFields>,
    /// The deal pipelines: the built-in `sales`, then the admins' own.
    #[serde(default)]
    pub pipelines: Vec<rapport_model::custom::Pipeline>,
    /// The accepted statements, in the order they apply.
    pub entries: Vec<SchemaEntry>,
    /// Statements that took no effect, and why.
    pub notes: Vec<String>,
    /// Records a renamed choice was rewritten in, by this change.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub records_changed: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindFields {
    pub kind: Kind,
    /// Added by the space's admins, not built in.
    #[serde(default)]
    pub custom: bool,
    /// What lists call many of them.
    #[serde(default)]
    pub plural: String,
    /// `active`, or `retired` (a custom kind: no new records).
    #[serde(default = "active")]
    pub status: String,
    pub fields: Vec<FieldInfo>,
}

/// A page of a list: its records, how many match in all, the next cursor.
type Listed = (Vec<RecordView>, usize, Option<String>);

/// Titles of the records a reply's records refer to, by id.
pub type Titles = BTreeMap<RecordId, String>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordReply {
    pub record: RecordView,
    /// Whether the operation wrote nothing, the record being so already.
    #[serde(default)]
    pub unchanged: bool,
    pub titles: Titles,
    /// The record's version after the operation: its heads, hex, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heads: Vec<String>,
    /// For a `Patch`: the fields (and `deleted`) another writer changed
    /// between the version the client read and this edit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_meanwhile: Vec<String>,
    /// After a person or company is created or edited: the records it is
    /// likely the same as (a warning; nothing is refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub likely: Vec<Likely>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Related {
    pub field: String,
    pub record: RecordView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowReply {
    pub record: RecordView,
    /// The space's name, for a record of a shared space.
    pub space_name: Option<String>,
    /// Records that refer to this one, with the referring field.
    pub related: Vec<Related>,
    pub delete_race: Option<DeleteRace>,
    pub titles: Titles,
    /// The record the reference named, when it was merged into this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<RecordView>,
    /// Values that do not fit their field as the space's schema stands
    /// (kept and shown all the same), by field: why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub misfits: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub records: Vec<RecordView>,
    /// Records matching in all pages.
    pub total: usize,
    /// The cursor of the next page; `None` on the last.
    pub next: Option<String>,
    pub titles: Titles,
    /// The columns a table of these records shows by default (the
    /// kind's, less fields the schema hides).
    #[serde(default)]
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineReply {
    pub record: RecordView,
    pub entries: Vec<Entry>,
    pub titles: Titles,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub id: RecordId,
    pub kind: Kind,
    /// The saved Automerge document, base64.
    pub automerge: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupReply {
    pub path: PathBuf,
    pub entries: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// A shared space as a user sees it (never its topic secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpaceSummary {
    pub id: RecordId,
    pub name: String,
    pub members: usize,
    pub records: usize,
    /// This device's role in it.
    pub role: Option<Role>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberRow {
    pub device: String,
    pub user: String,
    pub org: String,
    pub role: Role,
    /// Seconds since the Unix epoch.
    pub since: i64,
    pub added_by: String,
    pub you: bool,
    /// When and by whom it was removed, for a former member.
    pub removed: Option<(i64, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembersReply {
    pub space: SpaceSummary,
    pub members: Vec<MemberRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteReply {
    pub ticket: String,
    /// The space it lets one join.
    pub space_name: String,
    /// Seconds since the Unix epoch.
    pub expires: i64,
    pub role: Role,
    pub ttl_hours: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReply {
    pub space: SpaceSummary,
    pub statements: Vec<AuditStatement>,
    pub rejections: Vec<AuditRejection>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditStatement {
    pub time: i64,
    pub author: String,
    pub what: String,
    /// `accepted`, `refused: ...`, `kept aside: ...` or `waiting ...`.
    pub verdict: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRejection {
    pub at: i64,
    pub author: String,
    pub from: String,
    pub record: String,
    pub reason: String,
}

/// What kind of failure, for programs: stable across versions and
/// wordings. Each maps to one HTTP status in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The input is wrong: a field, a value, a rule (HTTP 422).
    Invalid,
    /// No record or space matches (404).
    NotFound,
    /// Several records match a name (409).
    Ambiguous,
    /// The record is deleted (409).
    Deleted,
    /// The caller may not do that (403).
    Forbidden,
    /// The operation needs the running node (503).
    NeedsNode,
    /// There is no data directory yet (503).
    NotInitialized,
    /// The store is damaged and must be repaired (500).
    Damaged,
    /// A peer could not be reached or refused (502).
    Peer,
    /// Anything else: the disk, the key (500).
    Internal,
    /// The version a client names is not one this node holds (412).
    UnknownVersion,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Invalid => "invalid",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Ambiguous => "ambiguous",
            ErrorCode::Deleted => "deleted",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NeedsNode => "needs_node",
            ErrorCode::NotInitialized => "not_initialized",
            ErrorCode::Damaged => "damaged",
            ErrorCode::Peer => "peer",
            ErrorCode::Internal => "internal",
            ErrorCode::UnknownVersion => "unknown_version",
        }
    }

    /// The HTTP status an API answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Invalid => 422,
            ErrorCode::NotFound => 404,
            ErrorCode::Ambiguous | ErrorCode::Deleted => 409,
            ErrorCode::Forbidden => 403,
            ErrorCode::NeedsNode | ErrorCode::NotInitialized => 503,
            ErrorCode::Peer => 502,
            ErrorCode::Damaged | ErrorCode::Internal => 500,
            ErrorCode::UnknownVersion => 412,
        }
    }
}

/// One input's problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

/// Why an operation failed: a stable code for programs, a message for
/// people, and, for bad input, every field's problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct OpError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldProblem>,
    /// The record or space the failure is about, when there is one (the
    /// CLI shows how to bring a deleted record back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Sled reported damage: the next open rebuilds the store.
    #[serde(skip)]
    store_damaged: bool,
}

impl OpError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        OpError {
            code,
            message: message.into(),
            fields: Vec::new(),
            subject: None,
            store_damaged: false,
        }
    }

    fn field(mut self, field: impl Into<String>) -> Self {
        self.fields.push(FieldProblem {
            field: field.into(),
            message: self.message.clone(),
        });
        self
    }
}

impl From<NodeError> for OpError {
    fn from(e: NodeError) -> Self {
        let message = e.to_string();
        let code = match &e {
            NodeError::NotRapportDir { .. } | NodeError::NotInitialized { .. } => {
                ErrorCode::NotInitialized
            }
            NodeError::Damaged { .. } => ErrorCode::Damaged,
            NodeError::Io { .. }
            | NodeError::Store(_)
            | NodeError::Key(_)
            | NodeError::Sign(_)
            | NodeError::SignAddresses(_)
            | NodeError::Doc(_) => ErrorCode::Internal,
            NodeError::UnknownField { .. }
            | NodeError::RequiredField { .. }
            | NodeError::Invalid(_)
            | NodeError::Rule(_)
            | NodeError::WrongKind(_)
            | NodeError::CrossSpace { .. }
            | NodeError::Invite(_)
            | NodeError::BadAssignment(_)
            | NodeError::Schema(_)
            | NodeError::Filter(_)
            | NodeError::Export(_) => ErrorCode::Invalid,
            NodeError::NotFound(_) | NodeError::UnknownSpace(_) | NodeError::Missing(_) => {
                ErrorCode::NotFound
            }
            NodeError::Ambiguous { .. } => ErrorCode::Ambiguous,
            NodeError::Deleted { .. } => ErrorCode::Deleted,
            NodeError::NotMember(_) | NodeError::Forbidden(_) => ErrorCode::Forbidden,
        };
        let mut out = OpError::new(code, message);
        if let NodeError::Store(s) = &e
            && matches!(**s, rapport_store::StoreError::Damaged(_))
        {
            out.code = ErrorCode::Damaged;
            out.store_damaged = true;
        }
        match &e {
            NodeError::UnknownField { field, .. } | NodeError::RequiredField { field, .. } => {
                out = out.field(field.clone());
            }
            NodeError::Invalid(v) => out = out.field(v.field.clone()),
            NodeError::WrongKind(w) => out = out.field(w.field.clone()),
            NodeError::Rule(rapport_model::RuleError::Missing { field, .. }) => {
                out = out.field(*field);
            }
            NodeError::Rule(rapport_model::RuleError::AmountWithoutCurrency { .. }) => {
                out = out.field("currency");
            }
            NodeError::Rule(rapport_model::RuleError::EndsBeforeStart { .. }) => {
                out = out.field("end");
            }
            NodeError::Rule(rapport_model::RuleError::Invalid { field, .. }) => {
                out = out.field(*field);
            }
            NodeError::Rule(rapport_model::RuleError::MeetingEndsBeforeStart { .. }) => {
                out = out.field("ends");
            }
            NodeError::UnknownSpace(_) | NodeError::NotMember(_) | NodeError::Forbidden(_) => {
                out = out.field("space");
            }
            NodeError::Deleted { id, .. } => out.subject = Some(id.to_string()),
            _ => {}
        }
        out
    }
}

impl From<NetError> for OpError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::Node(e) => e.into(),
            NetError::Ticket(_) => OpError::new(ErrorCode::Invalid, e.to_string()),
            other => OpError::new(ErrorCode::Peer, other.to_string()),
        }
    }
}

/// Who asks for an operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The API token's name; `None` for this device's own user (the CLI,
    /// the web UI).
    pub token: Option<String>,
    /// May read but not write.
    pub read_only: bool,
    /// Sees and writes only this space.
    pub space: Option<SpaceId>,
}

impl Caller {
    /// This device's user: every operation.
    pub fn user() -> Self {
        Caller::default()
    }

    fn may_see(&self, v: &RecordView) -> bool {
        self.space.is_none_or(|s| s == v.space)
    }
}

impl Request {
    /// Whether the operation writes (a read-only caller may not).
    pub fn writes(&self) -> bool {
        !matches!(
            self,
            Request::Whoami
                | Request::Status
                | Request::Fields { .. }
                | Request::Schema { .. }
                | Request::Show { .. }
                | Request::List(_)
                | Request::Timeline { .. }
                | Request::PrivacyExport { .. }
                | Request::Erasures { .. }
                | Request::Objections
                | Request::RetentionRules
                | Request::Retention { apply: false, .. }
                | Request::Pipeline
                | Request::Report(_)
                | Request::Rates
                | Request::Agenda(_)
                | Request::Reminders
                | Request::Duplicates { .. }
                | Request::Likely { .. }
                | Request::Merges
                | Request::Search { .. }
                | Request::Export { .. }
                | Request::ExportDocuments { .. }
                | Request::Spaces
                | Request::Members { .. }
                | Request::Audit { .. }
                | Request::Get { .. }
                | Request::TokenList
                | Request::WebhookList
                | Request::WebhookLog { .. }
                | Request::Imports
        )
    }

    /// Whether an API token may ask for it: the records and what they are
    /// read with. Everything else concerns the whole device (its identity,
    /// backups, membership of spaces, tokens and webhooks) and is for its
    /// own user only. A list of what is allowed, so that an operation
    /// added later is closed to tokens until someone opens it.
    fn open_to_tokens(&self) -> bool {
        matches!(
            self,
            Request::Status
                | Request::Fields { .. }
                | Request::Schema { .. }
                | Request::Create { .. }
                | Request::Edit { .. }
                | Request::Delete { .. }
                | Request::Restore { .. }
                | Request::CompleteTask { .. }
                | Request::Move(_)
                | Request::Show { .. }
                | Request::List(_)
                | Request::Timeline { .. }
                | Request::PrivacyExport { .. }
                | Request::PrivacyErase { .. }
                | Request::Erasures { .. }
                | Request::Enroll { .. }
                | Request::Objections
                | Request::Retention { .. }
                | Request::Pipeline
                | Request::Report(_)
                | Request::Rates
                | Request::Agenda(_)
                | Request::Duplicates { .. }
                | Request::Likely { .. }
                | Request::Merge { .. }
                | Request::Merges
                | Request::MergeUndo { .. }
                | Request::Search { .. }
                | Request::Export { .. }
                | Request::Spaces
                | Request::Members { .. }
                | Request::Get { .. }
                | Request::Patch { .. }
                | Request::ImportBegin(_)
                | Request::ImportRows { .. }
                | Request::ImportEnd { .. }
                | Request::Imports
                | Request::ImportUndo { .. }
        )
    }
}

/// Runs operations against one data directory: opened for one command
/// (no node running), or the running node's (with its network and live
/// feed).
#[derive(Debug, Clone)]
pub struct Ops {
    repo: Arc<Repo>,
    node: Option<Node>,
    live: Option<Live>,
}

impl Ops {
    /// Operations on a store opened without the network: `Invite` and
    /// `Join` answer `NeedsNode`, and `Search` scans the store.
    pub fn local(repo: Arc<Repo>) -> Self {
        Ops {
            repo,
            node: None,
            live: None,
        }
    }

    /// Operations of the running node.
    pub fn running(node: Node, live: Option<Live>) -> Self {
        Ops {
            repo: node.repo().clone(),
            node: Some(node),
            live,
        }
    }

    pub fn repo(&self) -> &Arc<Repo> {
        &self.repo
    }

    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    pub fn live(&self) -> Option<&Live> {
        self.live.as_ref()
    }

    /// Runs one operation for `caller`. Blocking (it writes to disk and may
    /// wait for peers): call it off the async runtime's worker threads,
    /// inside it (`Join` waits for the network on the current runtime).
    pub fn execute(&self, caller: &Caller, request: Request) -> Result<Reply, OpError> {
        // Every change written for a token names it (timelines show it).
        let result = crate::repo::with_via(caller.token.as_deref(), || {
            crate::repo::with_scope(caller.space, || self.dispatch(caller, request))
        });
        if let Err(e) = &result
            && e.store_damaged
        {
            crate::recovery::mark_damaged(self.repo.dir(), &e.message);
        }
        result
    }

    fn dispatch(&self, caller: &Caller, request: Request) -> Result<Reply, OpError> {
        if caller.read_only && request.writes() {
            return Err(OpError::new(
                ErrorCode::Forbidden,
                "this token may only read; ask for a token without read-only to write",
            ));
        }
        if caller.token.is_some() && !request.open_to_tokens() {
            return Err(OpError::new(
                ErrorCode::Forbidden,
                "an API token may read and write records; this operation concerns the whole device and is for its own user",
            ));
        }
        let repo = &*self.repo;
        match request {
            Request::Whoami => self.whoami().map(Reply::Whoami),
            Request::SetIdentity { name, org, region } => {
                if let Some(region) = region {
                    repo.set_region(&region)?;
                }
                repo.set_identity(name, org)?;
                self.whoami().map(Reply::Whoami)
            }
            Request::Status => {
                let mut net = match &self.node {
                    Some(node) => Some(node.status()?),
                    None => None,
                };
                let records = match caller.space {
                    None => repo.record_count(),
                    Some(space) => {
                        // The node as this space's members see it.
                        if let Some(n) = &mut net {
                            let view = match space {
                                SpaceId::Shared(id) => repo.space(id)?,
                                SpaceId::Private => None,
                            };
                            n.members.retain(|device, _| {
                                view.as_ref().is_some_and(|v| v.is_member(device))
                            });
                            let space = space.to_string();
                            n.spaces.retain(|id, _| *id == space);
                            n.peers_seen.clear();
                            n.connected.clear();
                        }
                        repo.space_record_count_of(space)
                    }
                };
                Ok(Reply::Status(Status {
                    running: self.node.is_some(),
                    records,
                    is_relay: repo.profile().relay,
                    net,
                }))
            }
            Request::Fields { kind, space } => {
                let space = match (&space, caller.space) {
                    (Some(s), _) => Some(self.scoped_space(caller, s)?),
                    (None, scope) => scope,
                };
                Ok(Reply::Fields {
                    fields: repo
                        .fields_in(space, kind)?
                        .into_iter()
                        .map(field_info)
                        .collect(),
                })
            }
            Request::Schema { space } => {
                let space = match &space {
                    Some(s) => self.scoped_space(caller, s)?,
                    None => caller.space.unwrap_or(SpaceId::Private),
                };
                self.schema_reply(space).map(Reply::Schema)
            }
            Request::ChangeSchema { space, change } => {
                let space = match &space {
                    Some(s) => self.scoped_space(caller, s)?,
                    None => SpaceId::Private,
                };
                let records_changed = repo.change_schema(space, change)?;
                let mut reply = self.schema_reply(space)?;
                reply.records_changed = records_changed;
                Ok(Reply::Schema(reply))
            }
            Request::Create {
                kind,
                space,
                fields,
            } => {
                let space = match &space {
                    Some(s) => repo.resolve_space(s)?,
                    None => caller.space.unwrap_or(SpaceId::Private),
                };
                if caller.space.is_some_and(|s| s != space) {
                    return Err(outside_scope());
                }
                repo.known_kind(Some(space), kind, false)
                    .map_err(|e| OpError::from(e).field("kind"))?;
                let fields = self.complete_inputs(kind, fields)?;
                let problems = repo.check_inputs(kind, Some(space), &fields, true);
                if !problems.is_empty() {
                    return Err(several(problems));
                }
                let v = repo.create(kind, space, &fields)?;
                self.checked_reply(caller, v, false)
            }
            Request::ImportBegin(spec) => {
                let space = match &spec.space {
                    Some(s) => repo.resolve_space(s)?,
                    None => caller.space.unwrap_or(SpaceId::Private),
                };
                if caller.space.is_some_and(|s| s != space) {
                    return Err(outside_scope());
                }
                Ok(Reply::ImportBegun(repo.import_begin(spec, space)?))
            }
            Request::ImportRows { id, rows } => {
                if rows.len() > 4 * crate::import::BATCH_ROWS {
                    return Err(OpError::new(
                        ErrorCode::Invalid,
                        format!(
                            "{} rows in one request; send at most {}",
                            rows.len(),
                            4 * crate::import::BATCH_ROWS
                        ),
                    ));
                }
                Ok(Reply::ImportRows {
                    outcomes: repo.import_rows(&id, rows, caller.space)?,
                })
            }
            Request::ImportEnd { id } => Ok(Reply::Import(repo.import_end(&id, caller.space)?)),
            Request::Imports => Ok(Reply::Imports {
                imports: repo.imports(caller.space)?,
            }),
            Request::Merge {
                keep,
                others,
                prefer,
            } => {
                // Every record named must be one the caller may see: a
                // token limited to a space merges nothing of another.
                for r in std::iter::once(&keep)
                    .chain(&others)
                    .chain(prefer.iter().map(|(_, r)| r))
                {
                    self.visible(caller, r)?;
                }
                let merge = repo.merge(&keep, &others, &prefer)?;
                let record = repo
                    .view(merge.kept)?
                    .ok_or_else(|| OpError::from(NodeError::NotFound(merge.kept.to_string())))?;
                Ok(Reply::Merged { merge, record })
            }
            Request::Merges => Ok(Reply::Merges {
                merges: repo.merges(caller.space)?,
            }),
            Request::MergeUndo { id } => {
                Ok(Reply::MergeUndone(repo.merge_undo(&id, caller.space)?))
            }
            Request::ImportUndo { id } => {
                Ok(Reply::ImportUndone(repo.import_undo(&id, caller.space)?))
            }
            Request::Edit { record, set, unset } => {
                let before = self.visible(caller, &record)?;
                if set.is_empty() && unset.is_empty() {
                    return Err(OpError::new(
                        ErrorCode::Invalid,
                        "nothing to change: give a field to set or to clear",
                    ));
                }
                let problems = repo.check_inputs(before.kind, Some(before.space), &set, false);
                if !problems.is_empty() {
                    return Err(several(problems));
                }
                let v = repo.edit(&before.id.to_string(), &set, &unset)?;
                let unchanged = v == before;
                self.checked_reply(caller, v, unchanged)
            }
            Request::Delete { record } => {
                let before = self.visible_unmerged(caller, &record)?;
                let v = repo.delete(&before.id.to_string())?;
                let unchanged = v == before;
                self.record_reply(v, unchanged)
            }
            Request::Restore { record } => {
                let before = self.visible_unmerged(caller, &record)?;
                let v = repo.restore(&before.id.to_string())?;
                let unchanged = v == before;
                self.record_reply(v, unchanged)
            }
            Request::CompleteTask { record } => {
                let before = self.visible(caller, &record)?;
                let v = repo.complete_task(&before.id.to_string())?;
                let unchanged = v == before;
                self.record_reply(v, unchanged)
            }
            Request::Show { record } => {
                let (v, merged_from) = self.visible_noting(caller, &record)?;
                let related: Vec<Related> = repo
                    .related(v.id)?
                    .into_iter()
                    .filter(|(_, r)| caller.may_see(r))
                    .map(|(field, record)| Related { field, record })
                    .collect();
                let space_name = match v.space {
                    SpaceId::Shared(id) => repo.space(id)?.map(|s| s.name),
                    SpaceId::Private => None,
                };
                let mut titles = self.titles(std::slice::from_ref(&v));
                for r in &related {
                    titles.insert(r.record.id, r.record.title());
                }
                let schema = repo.schema(v.space)?;
                let misfits = v
                    .fields
                    .iter()
                    .filter_map(|(name, value)| {
                        Some((name.clone(), schema.misfit(v.kind, name, value)?))
                    })
                    .collect();
                Ok(Reply::Show(ShowReply {
                    delete_race: repo.delete_race(&v)?,
                    record: v,
                    space_name,
                    related,
                    titles,
                    merged_from,
                    misfits,
                }))
            }
            Request::List(query) => self.list(caller, query).map(Reply::List),
            Request::PrivacyExport { person } => {
                let v = self.visible(caller, &person)?;
                Ok(Reply::PrivacyExport(
                    repo.privacy_export(&v, |r| caller.may_see(r))?,
                ))
            }
            Request::PrivacyErase {
                person,
                with_activities,
                field,
                reason,
            } => {
                let v = self.visible(caller, &person)?;
                let id = v.id.to_string();
                Ok(Reply::Erased(match field {
                    Some(f) if with_activities => {
                        return Err(OpError::new(
                            ErrorCode::Invalid,
                            format!(
                                "erase either the field `{f}` or the record with its activities, not both"
                            ),
                        ));
                    }
                    Some(f) => repo.erase_field(&id, f.trim(), &reason)?,
                    None => repo.erase(&id, with_activities, &reason)?,
                }))
            }
            Request::Enroll {
                campaign,
                people,
                skip_without_consent,
            } => {
                let c = self.visible(caller, &campaign)?;
                let mut ids = Vec::with_capacity(people.len());
                for p in &people {
                    ids.push(self.visible(caller, p)?.id.to_string());
                }
                Ok(Reply::Enrolled(Box::new(repo.enroll(
                    &c.id.to_string(),
                    &ids,
                    skip_without_consent,
                )?)))
            }
            Request::RetentionRules => Ok(Reply::RetentionRules {
                rules: repo.retention_rules(),
            }),
            Request::SetRetentionRule(rule) => {
                repo.set_retention_rule(rule)?;
                Ok(Reply::RetentionRules {
                    rules: repo.retention_rules(),
                })
            }
            Request::RemoveRetentionRule { name } => {
                repo.remove_retention_rule(&name)?;
                Ok(Reply::RetentionRules {
                    rules: repo.retention_rules(),
                })
            }
            Request::Retention {
                name,
                apply,
                reason,
            } => {
                let reason = match (apply, reason.as_deref().map(str::trim)) {
                    (false, _) => None,
                    (true, Some(r)) if !r.is_empty() => Some(r.to_string()),
                    (true, _) => {
                        return Err(OpError::new(
                            ErrorCode::Invalid,
                            "applying retention erases records: give the reason to keep with the erasure".to_string(),
                        )
                        .field("reason"));
                    }
                };
                Ok(Reply::Retention {
                    runs: repo
                        .run_retention(name.as_deref(), reason.as_deref(), |r| caller.may_see(r))?,
                })
            }
            Request::Objections => Ok(Reply::Objections {
                objections: repo.objections(|r| caller.may_see(r))?,
            }),
            Request::Erasures { erasure } => {
                let all = match erasure {
                    Some(e) => vec![repo.erasure_status(&e)?],
                    None => repo.erasures()?,
                };
                Ok(Reply::Erasures {
                    erasures: all
                        .into_iter()
                        .filter(|s| {
                            caller.space.is_none_or(|c| {
                                c == s.space_id.map_or(SpaceId::Private, SpaceId::Shared)
                            })
                        })
                        .collect(),
                })
            }
            Request::Timeline { record } => {
                let v = self.visible(caller, &record)?;
                let entries = repo.timeline(&v, |a| caller.may_see(a))?;
                let titles = self.titles(std::slice::from_ref(&v));
                Ok(Reply::Timeline(TimelineReply {
                    record: v,
                    entries,
                    titles,
                }))
            }
            Request::Pipeline => {
                let deals = self.readable(caller, Some(Kind::Deal))?;
                let live: Vec<&RecordView> = deals.iter().filter(|v| !v.deleted).collect();
                let others = repo
                    .pipelines_in(caller.space)?
                    .into_iter()
                    .filter(|p| p.name != rapport_model::custom::SALES)
                    .map(|p| crate::pipeline::PipelineReport {
                        name: p.name.clone(),
                        title: p.shown_title(),
                        stages: crate::pipeline::summarize(live.iter().copied(), &p),
                    })
                    .collect();
                Ok(Reply::Pipeline {
                    stages: crate::pipeline::summarize(
                        live.iter().copied(),
                        &rapport_model::custom::Pipeline::sales(),
                    ),
                    others,
                })
            }
            Request::Report(query) => {
                let checked = query
                    .check()
                    .map_err(|(field, m)| OpError::new(ErrorCode::Invalid, m).field(field))?;
                let space = match query.space.as_deref().map(str::trim) {
                    Some(s) if !s.is_empty() => Some(self.scoped_space(caller, s)?),
                    _ => caller.space,
                };
                let mut records = Vec::new();
                for kind in checked.name.kinds() {
                    for v in repo.all(Some(*kind)) {
                        records.push(v?);
                    }
                }
                let held: std::collections::HashSet<RecordId> =
                    records.iter().map(|v| v.id).collect();
                let mut followed: Vec<RecordId> = records
                    .iter()
                    .flat_map(|v| {
                        checked
                            .name
                            .follows()
                            .iter()
                            .filter(move |(k, _)| *k == v.kind)
                            .filter_map(move |(_, f)| v.get(f))
                            .flat_map(|value| value.as_list().iter())
                    })
                    .filter_map(|id| id.parse::<RecordId>().ok())
                    .filter(|id| !held.contains(id))
                    .collect();
                followed.sort_unstable();
                followed.dedup();
                for id in followed {
                    records.extend(repo.view(id)?);
                }
                records.retain(|v| {
                    !v.deleted && caller.may_see(v) && space.is_none_or(|s| s == v.space)
                });
                let pipelines = repo.pipelines_in(space)?;
                if let Some(p) = &checked.pipeline {
                    let known = std::iter::once(rapport_model::custom::Pipeline::sales())
                        .chain(pipelines.iter().cloned())
                        .any(|x| &x.name == p || &x.label.to_lowercase() == p);
                    if !known {
                        return Err(OpError::new(
                            ErrorCode::Invalid,
                            format!("there is no pipeline `{p}` (rapport schema show deal)"),
                        )
                        .field("pipeline"));
                    }
                }
                let rates = repo.rates();
                let today = repo.now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
                let inputs = crate::reports::Inputs {
                    records: &records,
                    pipelines: &pipelines,
                    today,
                    rates: rates.as_ref(),
                };
                Ok(Reply::Report(crate::reports::run(&checked, &inputs)))
            }
            Request::Rates => Ok(Reply::Rates(repo.rates())),
            Request::Move(m) => {
                let v = self.visible(caller, &m.record)?;
                let zone = repo.context().tz;
                let bad = |e: String| OpError::new(ErrorCode::Invalid, e);
                let repeats = v.text("repeat").is_some();
                if m.only && repeats {
                    let from = m.from.as_deref().ok_or_else(|| {
                        bad("say which occurrence: the day it is on (--from 2026-03-16)".into())
                    })?;
                    let (skip, copy) =
                        crate::calendar::detached(&v, from, &m.day, m.time.as_deref(), &zone)
                            .map_err(bad)?;
                    let occurrence = repo.detach_occurrence(&v, &skip, &copy)?;
                    return self.record_reply(occurrence, false);
                }
                let set =
                    crate::calendar::moved(&v, m.from.as_deref(), &m.day, m.time.as_deref(), &zone)
                        .map_err(bad)?;
                let written = repo.edit(&v.id.to_string(), &set, &[])?;
                let unchanged = written == v;
                self.record_reply(written, unchanged)
            }
            Request::Agenda(q) => {
                let (window, activities) = self.agenda_inputs(caller, &q)?;
                let mut entries = crate::calendar::agenda(&activities, &window);
                crate::calendar::name_links(&mut entries, |id| {
                    repo.view(id)
                        .ok()
                        .flatten()
                        .filter(|v| caller.may_see(v))
                        .map(|v| v.title())
                });
                let shows_today = window.from <= window.today
                    && window.today
                        < window
                            .from
                            .checked_add(jiff::Span::new().days(i64::from(window.days)))
                            .unwrap_or(window.from);
                // Reminders are the user's own, on their own agenda.
                let own = q.owner.is_none() && !q.everyone && window.owner.is_some();
                let reminders = if shows_today && own {
                    self.reminders(caller)?
                } else {
                    Vec::new()
                };
                Ok(Reply::Agenda(crate::calendar::Agenda {
                    reminders,
                    from: window.from.to_string(),
                    days: window.days,
                    zone: window.zone.iana_name().unwrap_or("local").to_string(),
                    owner: window.owner,
                    entries,
                }))
            }
            Request::Reminders => Ok(Reply::Reminders {
                due: self.reminders(caller)?,
            }),
            Request::Dismiss { record, mut keys } => {
                let v = self.visible(caller, &record)?;
                if keys.is_empty() {
                    keys = self
                        .reminders(caller)?
                        .into_iter()
                        .filter(|d| d.id == v.id)
                        .map(|d| d.key)
                        .collect();
                }
                if keys.is_empty() {
                    return Err(OpError::new(
                        ErrorCode::Invalid,
                        format!("{} has no reminder due now", v.title()),
                    ));
                }
                let value = crate::calendar::dismissed_with(&v, &keys);
                let written = repo.edit(&v.id.to_string(), &[("dismissed".into(), value)], &[])?;
                let unchanged = written == v;
                self.record_reply(written, unchanged)
            }
            Request::SetRates { base, pairs } => {
                let rates = if pairs.is_empty() {
                    None
                } else {
                    let today = repo.now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
                    let r = crate::reports::Rates::parse(&base, &pairs, today.to_string())
                        .map_err(|m| OpError::new(ErrorCode::Invalid, m).field("rates"))?;
                    Some(r)
                };
                repo.set_rates(rates)?;
                Ok(Reply::Rates(repo.rates()))
            }
            Request::Duplicates { kind } => {
                let phones = crate::duplicates::Phones::new(repo.profile().region.as_deref());
                let kinds = match kind {
                    Some(k) => {
                        repo.known_kind(caller.space, k, true)
                            .map_err(|e| OpError::from(e).field("kind"))?;
                        vec![k]
                    }
                    None => vec![Kind::Person, Kind::Company],
                };
                let mut clusters = Vec::new();
                for k in kinds {
                    let records = self.readable(caller, Some(k))?;
                    clusters.extend(crate::duplicates::find(k, &records, &phones));
                }
                Ok(Reply::Duplicates { clusters })
            }
            Request::Likely { record } => {
                let v = repo.resolve(&record)?;
                if !caller.may_see(&v) {
                    return Err(OpError::from(NodeError::NotFound(record)));
                }
                let matches = self.likely(caller, &v)?;
                Ok(Reply::Likely { record: v, matches })
            }
            Request::Search { query, limit } => {
                let limit = limit.unwrap_or(20).clamp(1, MAX_PAGE);
                let mut found = match &self.live {
                    Some(live) if caller.space.is_none() => live.search(&query, limit),
                    Some(live) => live.search(&query, usize::MAX),
                    None => {
                        let mut index = crate::search::SearchIndex::new();
                        for v in repo.all(None) {
                            index.put(&v?);
                        }
                        index.query(
                            &query,
                            if caller.space.is_none() {
                                limit
                            } else {
                                usize::MAX
                            },
                        )
                    }
                };
                if let Some(space) = caller.space {
                    found.hits.retain(|h| h.space == space);
                    found.total = found.hits.len();
                    found.hits.truncate(limit);
                }
                Ok(Reply::Search(found))
            }
            Request::Export { kind } => Ok(Reply::Export {
                records: self.readable(caller, kind)?,
            }),
            Request::ExportDocuments { kind } => {
                use data_encoding::BASE64;
                let mut documents = Vec::new();
                for v in repo.all(kind) {
                    let v = v?;
                    // Loaded and saved again, so that a document an earlier
                    // version stored with changes still waiting inside it
                    // is exported without them.
                    let bytes = rapport_model::stored::save(&mut repo.load_doc(v.id)?);
                    documents.push(Document {
                        id: v.id,
                        kind: v.kind,
                        automerge: BASE64.encode(&bytes),
                    });
                }
                Ok(Reply::Documents { documents })
            }
            Request::Backup { path } => {
                let r = repo.backup(&path)?;
                Ok(Reply::Backup(BackupReply {
                    path: r.path,
                    entries: r.entries,
                    bytes: r.bytes,
                    seconds: r.elapsed.as_secs_f64(),
                }))
            }
            Request::CreateSpace { name } => {
                let v = repo.create_space(&name)?;
                Ok(Reply::Space(self.summary(&v)))
            }
            Request::Spaces => {
                let spaces = repo
                    .spaces()?
                    .iter()
                    .filter(|s| caller.space.is_none_or(|c| c == SpaceId::Shared(s.id)))
                    .map(|s| self.summary(s))
                    .collect();
                Ok(Reply::Spaces { spaces })
            }
            Request::Members { space } => {
                let view = self.shared_space(caller, &space)?;
                let members = self.member_rows(&view);
                Ok(Reply::Members(MembersReply {
                    space: self.summary(&view),
                    members,
                }))
            }
            Request::RemoveMember { space, member } => {
                let view = self.shared_space(caller, &space)?;
                let me = repo.device_id().to_string();
                let removed = repo
                    .remove_members(view.id, &member)?
                    .into_iter()
                    .map(|m| self.member_row(&view, &me, &m, None))
                    .collect();
                Ok(Reply::Removed { removed })
            }
            Request::Invite {
                space,
                role,
                org,
                ttl_hours,
            } => {
                let node = self.needs_node("inviting")?;
                let view = self.shared_space(caller, &space)?;
                if !ttl_hours.is_finite() {
                    return Err(OpError::new(
                        ErrorCode::Invalid,
                        format!("an invite is valid for a number of hours, not {ttl_hours}"),
                    )
                    .field("ttl_hours"));
                }
                let ticket = node.invite(view.id, (ttl_hours * 3600.0) as i64, role, org)?;
                Ok(Reply::Invite(InviteReply {
                    ticket: ticket.encode(),
                    space_name: ticket.space_name.clone(),
                    expires: ticket.expires,
                    role,
                    ttl_hours,
                }))
            }
            Request::Join { ticket } => {
                let node = self.needs_node("joining")?;
                let ticket = rapport_proto::wire::Ticket::decode(&ticket)
                    .map_err(|e| OpError::new(ErrorCode::Invalid, e.to_string()))?;
                let handle = tokio::runtime::Handle::try_current().map_err(|_| {
                    OpError::new(ErrorCode::NeedsNode, "joining needs the node's runtime")
                })?;
                let view = handle.block_on(node.join(&ticket))?;
                Ok(Reply::Space(self.summary(&view)))
            }
            Request::Audit { space } => {
                let view = self.shared_space(caller, &space)?;
                self.audit(&view).map(Reply::Audit)
            }
            request @ (Request::Get { .. }
            | Request::Patch { .. }
            | Request::TokenCreate { .. }
            | Request::TokenList
            | Request::TokenRevoke { .. }
            | Request::FeedCreate { .. }
            | Request::FeedList
            | Request::FeedRevoke { .. }
            | Request::CalendarFeed { .. }
            | Request::WebhookAdd { .. }
            | Request::WebhookList
            | Request::WebhookRemove { .. }
            | Request::WebhookEnable { .. }
            | Request::WebhookLog { .. }) => self.integration(caller, request),
        }
    }

    fn needs_node(&self, what: &str) -> Result<&Node, OpError> {
        self.node.as_ref().ok_or_else(|| {
            OpError::new(
                ErrorCode::NeedsNode,
                format!("{what} needs the running node; start it and try again"),
            )
        })
    }

    /// The record a reference names, if the caller may see it.
    fn visible(&self, caller: &Caller, reference: &str) -> Result<RecordView, OpError> {
        Ok(self.visible_noting(caller, reference)?.0)
    }

    /// [`Ops::visible`], and the record the reference named when that was
    /// merged into the one returned.
    fn visible_noting(
        &self,
        caller: &Caller,
        reference: &str,
    ) -> Result<(RecordView, Option<RecordView>), OpError> {
        let (v, from) = self.repo.resolve_noting(reference)?;
        if !caller.may_see(&v) {
            // Said as if it did not exist: a token limited to one space
            // learns nothing of the others.
            return Err(NodeError::NotFound(reference.into()).into());
        }
        Ok((v, from))
    }

    /// [`Ops::visible`] for deleting or restoring: a reference to a
    /// merged-away record is refused, naming its survivor, rather than
    /// followed (deleting an old id must not delete the record kept).
    fn visible_unmerged(&self, caller: &Caller, reference: &str) -> Result<RecordView, OpError> {
        match self.visible_noting(caller, reference)? {
            (v, None) => Ok(v),
            (v, Some(from)) => Err(crate::repo::merged_error(&from, &v).into()),
        }
    }

    /// The caller's user's reminders due now.
    fn reminders(&self, caller: &Caller) -> Result<Vec<crate::calendar::Due>, OpError> {
        // From yesterday (overdue tasks), over the week a reminder may
        // come before.
        let today = self
            .repo
            .now()
            .to_zoned_datetime(jiff::tz::TimeZone::system())
            .date();
        let query = crate::calendar::AgendaQuery {
            from: Some(today.yesterday().unwrap_or(today).to_string()),
            days: Some(9),
            ..Default::default()
        };
        let (window, activities) = self.agenda_inputs(caller, &query)?;
        if window.owner.is_none() {
            // No name to know whose they are: nobody's reminders show.
            return Ok(Vec::new());
        }
        Ok(crate::calendar::due(&activities, self.repo.now(), &window))
    }

    /// The agenda's window for `q` and the activities the caller may see.
    fn agenda_inputs(
        &self,
        caller: &Caller,
        q: &crate::calendar::AgendaQuery,
    ) -> Result<(crate::calendar::Window, Vec<RecordView>), OpError> {
        let repo = &*self.repo;
        let invalid =
            |field: &'static str, m: String| OpError::new(ErrorCode::Invalid, m).field(field);
        let zone = match q.zone.as_deref().map(str::trim).filter(|z| !z.is_empty()) {
            Some(z) => rapport_model::calendar::zone(z).map_err(|m| invalid("zone", m))?,
            None => jiff::tz::TimeZone::system(),
        };
        let today = repo.now().to_zoned_datetime(zone.clone()).date();
        let from = match q.from.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            Some(d) => d.parse::<jiff::civil::Date>().map_err(|_| {
                invalid(
                    "from",
                    format!("--from {d}: expected a day such as 2026-03-31"),
                )
            })?,
            None => today,
        };
        let days = q.days.unwrap_or(1);
        if !(1..=62).contains(&days) {
            return Err(invalid("days", format!("--days {days}: from 1 to 62")));
        }
        let owner = if q.everyone {
            None
        } else {
            q.owner
                .clone()
                .or(repo.profile().name)
                .map(|o| o.trim().to_lowercase())
                .filter(|o| !o.is_empty())
        };
        let last = from
            .checked_add(jiff::Span::new().days(i64::from(days)))
            .unwrap_or(from);
        let space = match q.space.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => Some(self.scoped_space(caller, s)?),
            _ => None,
        };
        let activities: Vec<RecordView> = repo
            .agenda_candidates(from.min(today), last.max(today))?
            .into_iter()
            .filter(|v| caller.may_see(v) && space.is_none_or(|s| v.space == s))
            .collect();
        let window = crate::calendar::Window {
            from,
            days,
            zone,
            today,
            owner,
        };
        Ok((window, activities))
    }

    fn readable(&self, caller: &Caller, kind: Option<Kind>) -> Result<Vec<RecordView>, OpError> {
        let mut out = Vec::new();
        for v in self.repo.all(kind) {
            let v = v?;
            if caller.may_see(&v) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// A space by name or id, within the caller's scope.
    fn scoped_space(&self, caller: &Caller, reference: &str) -> Result<SpaceId, OpError> {
        let space = self.repo.resolve_space(reference)?;
        if caller.space.is_some_and(|s| s != space) {
            return Err(outside_scope());
        }
        Ok(space)
    }

    fn schema_reply(&self, space: SpaceId) -> Result<SchemaReply, OpError> {
        let repo = &self.repo;
        let schema = repo.schema(space)?;
        let (space_name, entries, may_change) = match space {
            SpaceId::Private => (
                "private".to_string(),
                repo.profile().schema,
                !repo.profile().relay,
            ),
            SpaceId::Shared(id) => {
                let view = repo
                    .space(id)?
                    .ok_or_else(|| NodeError::UnknownSpace(id.to_string()))?;
                let admin = view.role_of(&repo.device_id().to_string()) == Some(Role::Admin);
                (view.name, view.schema, admin)
            }
        };
        Ok(SchemaReply {
            space: space.to_string(),
            space_name,
            may_change,
            kinds: schema_kinds(&schema),
            pipelines: schema.pipelines(),
            entries,
            notes: schema.notes.clone(),
            records_changed: 0,
        })
    }

    fn shared_space(&self, caller: &Caller, reference: &str) -> Result<SpaceView, OpError> {
        let id = match self.repo.resolve_space(reference)? {
            SpaceId::Shared(id) => id,
            SpaceId::Private => {
                return Err(OpError::new(
                    ErrorCode::Invalid,
                    "the private space cannot be shared: it has only this device; create a shared space to invite members",
                ));
            }
        };
        if caller.space.is_some_and(|s| s != SpaceId::Shared(id)) {
            return Err(NodeError::UnknownSpace(reference.into()).into());
        }
        self.repo
            .space(id)?
            .ok_or_else(|| NodeError::UnknownSpace(reference.into()).into())
    }

    /// Inputs as `Repo::create` takes them: a ticket's `about` resolved,
    /// an activity's subject defaulted.
    fn complete_inputs(&self, kind: Kind, inputs: Vec<Input>) -> Result<Vec<Input>, OpError> {
        let mut out = Vec::with_capacity(inputs.len() + 1);
        for (field, value) in inputs {
            if kind == Kind::Ticket && field == "about" {
                out.extend(self.repo.ticket_about(&value)?);
            } else {
                out.push((field, value));
            }
        }
        if kind == Kind::Activity && !out.iter().any(|(f, v)| f == "subject" && !v.is_empty()) {
            let first_line = out
                .iter()
                .find(|(f, _)| f == "body")
                .and_then(|(_, b)| b.lines().map(str::trim).find(|l| !l.is_empty()))
                .map(|l| clip(l, 80));
            if let Some(subject) = first_line {
                out.retain(|(f, _)| f != "subject");
                out.push(("subject".into(), subject));
            }
        }
        Ok(out)
    }

    fn record_reply(&self, record: RecordView, unchanged: bool) -> Result<Reply, OpError> {
        let titles = self.titles(std::slice::from_ref(&record));
        Ok(Reply::Record(RecordReply {
            heads: self.repo.heads(record.id)?,
            record,
            unchanged,
            titles,
            changed_meanwhile: Vec::new(),
            likely: Vec::new(),
        }))
    }

    /// The records `v` is likely the same as, among those `caller` sees:
    /// candidates from the live search index by e-mail, phone and name
    /// when the node runs, else every record of the kind.
    fn likely(&self, caller: &Caller, v: &RecordView) -> Result<Vec<Likely>, OpError> {
        let others = match &self.live {
            Some(live) => {
                let mut terms: Vec<String> = Vec::new();
                for f in ["emails", "phones", "phone", "domain", "website"] {
                    let values = match v.get(f) {
                        Some(FieldValue::List(l)) => l.clone(),
                        Some(FieldValue::Text(t)) => vec![t.clone()],
                        _ => continue,
                    };
                    for value in values {
                        // A phone written another way ("030 1234567", "+49
                        // 30 1234567") shares its last group of digits: the
                        // index finds that as a term.
                        if f.starts_with("phone")
                            && let Some(last) = value
                                .split(|c: char| !c.is_ascii_digit())
                                .rfind(|w| w.len() >= 4)
                        {
                            terms.push(last.to_string());
                        }
                        terms.push(value);
                    }
                }
                let name = match v.kind {
                    Kind::Company => crate::duplicates::company_name(&v.title()),
                    _ => crate::duplicates::person_name(&v.title()),
                };
                terms.extend(name.split_whitespace().last().map(str::to_string));
                let mut ids = std::collections::BTreeSet::new();
                for t in terms {
                    for hit in live.search(&t, 50).hits {
                        if hit.kind == v.kind && hit.id != v.id {
                            ids.insert(hit.id);
                        }
                    }
                }
                let mut views = Vec::new();
                for id in ids {
                    if let Some(o) = self.repo.store().view(id).map_err(NodeError::from)?
                        && caller.may_see(&o)
                    {
                        views.push(o);
                    }
                }
                views
            }
            None => self.readable(caller, Some(v.kind))?,
        };
        let phones = crate::duplicates::Phones::new(self.repo.profile().region.as_deref());
        Ok(crate::duplicates::like(v, &others, &phones)
            .into_iter()
            .map(|(m, score, reasons)| Likely {
                id: m.id,
                title: m.title,
                score,
                reasons,
            })
            .collect())
    }

    /// A written record's reply, with the records it is likely the same as
    /// (people and companies).
    fn checked_reply(
        &self,
        caller: &Caller,
        record: RecordView,
        unchanged: bool,
    ) -> Result<Reply, OpError> {
        // Without the node's search index the check reads every record
        // of the kind (about 1.5 s at 100k): past a size a command on the
        // data directory skips it; `rapport duplicates` still finds all.
        let cheap = self.live.is_some() || self.repo.store().record_count() <= LOCAL_CHECK_LIMIT;
        let likely =
            if matches!(record.kind, Kind::Person | Kind::Company) && !record.deleted && cheap {
                self.likely(caller, &record)?
            } else {
                Vec::new()
            };
        let mut reply = self.record_reply(record, unchanged)?;
        if let Reply::Record(r) = &mut reply {
            r.likely = likely;
        }
        Ok(reply)
    }

    /// The titles of every record `views` refer to.
    fn titles(&self, views: &[RecordView]) -> Titles {
        let mut titles = Titles::new();
        for v in views {
            for (_, id) in v.references() {
                if titles.contains_key(&id) {
                    continue;
                }
                let title = match self.repo.store().view(id) {
                    Ok(Some(r)) if r.deleted => format!("{} (deleted)", r.title()),
                    Ok(Some(r)) => r.title(),
                    _ => self
                        .repo
                        .erased_title(id)
                        .unwrap_or_else(|| format!("(missing {id})")),
                };
                titles.insert(id, title);
            }
        }
        titles
    }

    fn list(&self, caller: &Caller, q: ListQuery) -> Result<Page, OpError> {
        self.repo
            .known_kind(caller.space, q.kind, true)
            .map_err(|e| OpError::from(e).field("kind"))?;
        let limit = q.limit.unwrap_or(usize::MAX);
        if limit == 0 || (q.limit.is_some() && limit > MAX_PAGE) {
            return Err(OpError::new(
                ErrorCode::Invalid,
                format!("a page holds 1 to {MAX_PAGE} records, not {limit}"),
            )
            .field("limit"));
        }
        // The field to sort by, and whether it holds lists.
        let (sort, descending) = match q.sort.as_deref() {
            None | Some("") => (None, false),
            Some(s) => {
                let (name, desc) = match s.strip_prefix('-') {
                    Some(n) => (n, true),
                    None => (s, false),
                };
                if matches!(name, "id" | "updated") {
                    (Some((name.to_string(), false)), desc)
                } else {
                    let def = self
                        .repo
                        .field_in(caller.space, q.kind, name)
                        .map_err(|e| {
                            OpError::new(
                                ErrorCode::Invalid,
                                format!("cannot sort by `{name}`: {e}; or sort by id or updated"),
                            )
                            .field("sort")
                        })?;
                    (Some((def.name.to_string(), def.ty.is_list())), desc)
                }
            }
        };
        let columns: Vec<String> = {
            let shown = self.repo.fields_in(caller.space, q.kind)?;
            q.kind
                .columns()
                .iter()
                .filter(|c| shown.iter().any(|d| d.name == **c))
                .map(|c| c.to_string())
                .collect()
        };
        let after = match &q.after {
            None => None,
            Some(cursor) => Some(decode_cursor(cursor).ok_or_else(|| {
                OpError::new(
                    ErrorCode::Invalid,
                    "the cursor is not one a page of this list gave; start again without it",
                )
                .field("after")
            })?),
        };
        let field = sort.as_ref().map(|(f, _)| f.as_str());
        // A page of every live record sorted by one single-valued field
        // comes from the field index: only the page's records are read.
        let indexed = q.limit.is_some()
            && q.filters.is_empty()
            && !q.deleted
            && caller.space.is_none()
            && sort
                .as_ref()
                .is_some_and(|(f, list)| !list && !matches!(f.as_str(), "id" | "updated"));
        let found = match field {
            Some(f) if indexed => {
                // A built-in required field: every record has a value.
                let complete = q.kind.field(f).is_some_and(|d| d.required);
                self.sorted_page(q.kind, f, complete, descending, limit, after.as_ref())?
            }
            _ => None,
        };
        let (page, total, next) = match found {
            Some(found) => found,
            None => self.page_in_memory(caller, &q, field, descending, limit, after.as_ref())?,
        };
        let titles = self.titles(&page);
        Ok(Page {
            records: page,
            total,
            next,
            titles,
            columns,
        })
    }

    /// A page of the records matching `q`, all read and sorted here.
    fn page_in_memory(
        &self,
        caller: &Caller,
        q: &ListQuery,
        field: Option<&str>,
        descending: bool,
        limit: usize,
        after: Option<&(SortKey, RecordId)>,
    ) -> Result<Listed, OpError> {
        let mut views: Vec<(SortKey, RecordView)> = self
            .repo
            .list(q.kind, &q.filters, q.deleted)?
            .into_iter()
            .filter(|v| caller.may_see(v))
            .map(|v| (SortKey::of(&v, field), v))
            .collect();
        views.sort_by(|(ka, a), (kb, b)| page_order((ka, a.id), (kb, b.id), descending));
        let total = views.len();
        // Everything up to the cursor's record, itself included.
        let start = after.map_or(0, |(k, id)| {
            views.partition_point(|(kv, v)| page_order((kv, v.id), (k, *id), descending).is_le())
        });
        let page: Vec<(SortKey, RecordView)> = views.into_iter().skip(start).take(limit).collect();
        let next = (start + page.len() < total)
            .then(|| page.last().map(|(k, v)| encode_cursor(k, v.id)))
            .flatten();
        Ok((page.into_iter().map(|(_, v)| v).collect(), total, next))
    }

    /// A page of `kind`'s live records sorted by `field`, walking the
    /// field index from the cursor: records with a value in the index's
    /// order, then those without one in id order (found by reading the
    /// kind's records, on the last page only, and not at all for a field
    /// every record has: `complete`). `None` when the cursor's record
    /// changed since its page (the caller sorts in memory then).
    fn sorted_page(
        &self,
        kind: Kind,
        field: &str,
        complete: bool,
        descending: bool,
        limit: usize,
        after: Option<&(SortKey, RecordId)>,
    ) -> Result<Option<Listed>, OpError> {
        use rapport_store::fields;
        let store = self.repo.store();
        let key_of = |v: &RecordView| {
            SortKey::of(v, Some(field)).item().map(|item| {
                let mut key = fields::value_prefix(kind, field, item);
                key.extend_from_slice(&v.id.to_bytes());
                key
            })
        };
        // Where the walk starts: after the cursor record's key as it is
        // now, which must be the one the cursor names.
        let mut start: Option<Vec<u8>> = None;
        let mut missing_after: Option<RecordId> = None;
        if let Some((k, id)) = after {
            match k {
                SortKey::Missing => missing_after = Some(*id),
                SortKey::Value(_) => {
                    let Some(v) = store.view(*id).map_err(NodeError::from)? else {
                        return Ok(None);
                    };
                    if &SortKey::of(&v, Some(field)) != k {
                        return Ok(None);
                    }
                    start = key_of(&v);
                }
            }
        }
        let mut out: Vec<(SortKey, RecordView)> = Vec::with_capacity(limit + 1);
        if missing_after.is_none() {
            // The key each record read is listed at (`None`: nowhere): a
            // record with many keys (the items of a list a peer wrote into
            // the field, or a deleted one's) is read at most twice, at its
            // first key and at the one it is listed at, not once a key.
            let mut listed_at: HashMap<RecordId, Option<Vec<u8>>> = HashMap::new();
            for entry in store.field_order(kind, field, descending, start.as_deref()) {
                let (key, id) = entry.map_err(NodeError::from)?;
                if listed_at
                    .get(&id)
                    .is_some_and(|at| at.as_deref() != Some(key.as_slice()))
                {
                    continue;
                }
                let Some(v) = store.view(id).map_err(NodeError::from)? else {
                    continue;
                };
                // A key the record no longer has (keys are checked, never
                // trusted) or a deleted record is passed over.
                let at = if v.deleted || v.kind != kind {
                    None
                } else {
                    key_of(&v)
                };
                let here = at.as_deref() == Some(key.as_slice());
                listed_at.insert(id, at);
                if !here {
                    continue;
                }
                out.push((SortKey::of(&v, Some(field)), v));
                if out.len() > limit {
                    break;
                }
            }
        }
        if out.len() <= limit && !complete {
            for id in store.kind_ids(kind, descending, missing_after) {
                let Some(v) = store
                    .view(id.map_err(NodeError::from)?)
                    .map_err(NodeError::from)?
                else {
                    continue;
                };
                if v.deleted || v.get(field).is_some() {
                    continue;
                }
                out.push((SortKey::Missing, v));
                if out.len() > limit {
                    break;
                }
            }
        }
        let more = out.len() > limit;
        out.truncate(limit);
        let next = more
            .then(|| out.last().map(|(k, v)| encode_cursor(k, v.id)))
            .flatten();
        let total =
            usize::try_from(store.live_count(kind).map_err(NodeError::from)?).unwrap_or(usize::MAX);
        Ok(Some((
            out.into_iter().map(|(_, v)| v).collect(),
            total,
            next,
        )))
    }

    fn whoami(&self) -> Result<Whoami, OpError> {
        let repo = &self.repo;
        let p = repo.profile();
        let me = repo.device_id().to_string();
        let mut spaces = Vec::new();
        for s in repo.spaces()? {
            if let Some(m) = s.entry(&me) {
                spaces.push(Certification {
                    space: s.name.clone(),
                    id: s.id,
                    role: m.role,
                    user: m.user.clone(),
                    org: m.org.clone(),
                    certified_by: repo.device_label(&s, &m.added_by),
                    removed: s.removed.contains_key(&me),
                });
            }
        }
        Ok(Whoami {
            name: p.name,
            org: p.org,
            region: p.region,
            device: p.device,
            data_dir: repo.dir().to_path_buf(),
            records: repo.store().record_count(),
            spaces,
        })
    }

    fn summary(&self, s: &SpaceView) -> SpaceSummary {
        SpaceSummary {
            id: s.id,
            name: s.name.clone(),
            members: s.members.len(),
            records: self.repo.space_record_count(s.id),
            role: s.role_of(&self.repo.device_id().to_string()),
        }
    }

    fn member_row(
        &self,
        view: &SpaceView,
        me: &str,
        m: &rapport_model::Member,
        removed: Option<&rapport_model::Removal>,
    ) -> MemberRow {
        MemberRow {
            device: m.device.clone(),
            user: m.user.clone(),
            org: m.org.clone(),
            role: m.role,
            since: m.since,
            added_by: self.repo.device_label(view, &m.added_by),
            you: m.device == me,
            removed: removed.map(|r| (r.at, self.repo.device_label(view, &r.by))),
        }
    }

    fn member_rows(&self, view: &SpaceView) -> Vec<MemberRow> {
        let me = self.repo.device_id().to_string();
        let mut rows: Vec<MemberRow> = view
            .members
            .values()
            .map(|m| self.member_row(view, &me, m, None))
            .collect();
        rows.extend(
            view.removed
                .values()
                .map(|(m, r)| self.member_row(view, &me, m, Some(r))),
        );
        rows
    }

    fn audit(&self, view: &SpaceView) -> Result<AuditReply, OpError> {
        use rapport_trust::policy::{Action, Verdict};
        let repo = &self.repo;
        let audit = repo.audit(view.id)?;
        let view = &audit.space;
        let label = |d: &str| repo.device_label(view, d);
        let short = |d: &str| d.get(..12).unwrap_or(d).to_string();
        let describe = |actions: &[Action]| {
            actions
                .iter()
                .map(|a| match a {
                    Action::Create { name } => format!("created the space \"{name}\""),
                    Action::Add { member } => format!(
                        "added {} ({}) as {}",
                        short(&member.device),
                        label(&member.device),
                        member.role
                    ),
                    Action::Remove { removal } => format!(
                        "removed {} ({})",
                        short(&removal.device),
                        label(&removal.device)
                    ),
                    Action::Rename { name } => format!("renamed the space \"{name}\""),
                    Action::Rotate => "renewed the topic secret".into(),
                    Action::Schema { change } => change.describe(),
                    Action::Cutoff { device, records } => format!(
                        "named {records} more records {} wrote before its removal",
                        short(device)
                    ),
                    Action::Erase { erasure, statement } => format!(
                        "erased {} record(s) ({}) as erasure {}: {}",
                        statement.ids.len(),
                        statement
                            .ids
                            .iter()
                            .map(|id| id.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        rapport_model::space::short_erasure_id(erasure),
                        statement.reason
                    ),
                    Action::Rebase { rebase, statement } => format!(
                        "erased field(s) {} of record {} as erasure {} (its history rebuilt in {} change(s)): {}",
                        statement.fields.join(", "),
                        statement.record,
                        rapport_model::space::short_erasure_id(rebase),
                        statement.chain.len(),
                        statement.reason
                    ),
                    Action::Receipt { erasure } => format!(
                        "applied erasure {}",
                        rapport_model::space::short_erasure_id(erasure)
                    ),
                    Action::Unknown => "an unrecognised change".into(),
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let statements = audit
            .statements
            .iter()
            .map(|s| AuditStatement {
                time: s.time,
                author: label(&s.author),
                what: describe(&s.actions),
                verdict: match &s.verdict {
                    Verdict::Accepted => "accepted".into(),
                    Verdict::Rejected(r) => format!("refused: {r}"),
                    Verdict::Held(r) => format!("kept aside: {r}"),
                    Verdict::Waiting => "waiting for earlier changes".into(),
                },
            })
            .collect();
        let rejections = audit
            .rejections
            .iter()
            .map(|r| AuditRejection {
                at: r.at,
                author: r.author.as_deref().map_or("unknown".into(), label),
                from: label(&r.from),
                record: r.record.clone(),
                reason: r.reason.clone(),
            })
            .collect();
        Ok(AuditReply {
            space: self.summary(view),
            statements,
            rejections,
        })
    }
}

fn outside_scope() -> OpError {
    OpError::new(
        ErrorCode::Forbidden,
        "this token is limited to another space",
    )
}

/// Every problem `Repo::check_inputs` found, as one error.
fn several(problems: Vec<(String, NodeError)>) -> OpError {
    let fields: Vec<FieldProblem> = problems
        .iter()
        .map(|(field, e)| FieldProblem {
            field: field.clone(),
            message: e.to_string(),
        })
        .collect();
    let mut out = match problems.into_iter().next() {
        Some((_, first)) => OpError::from(first),
        None => OpError::new(ErrorCode::Invalid, "invalid input"),
    };
    out.fields = fields;
    out
}

/// Cuts text to `max` characters, marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The fields of a kind as clients show them.
pub fn fields(kind: Kind) -> Vec<FieldInfo> {
    kind.fields().iter().map(field_info).collect()
}

/// What clients are told of a field.
pub fn field_info(d: &rapport_model::FieldDef) -> FieldInfo {
    use rapport_model::FieldType;
    FieldInfo {
        name: d.name.to_string(),
        ty: format!("{:?}", d.ty)
            .split('(')
            .next()
            .unwrap_or_default()
            .to_lowercase(),
        required: d.required,
        list: d.ty.is_list(),
        default: d.default.map(str::to_string),
        help: d.help.to_string(),
        choices: match d.ty {
            FieldType::Choice(o) | FieldType::Choices(o) => {
                o.iter().map(|s| s.to_string()).collect()
            }
            _ => Vec::new(),
        },
        refers_to: d.ty.ref_kinds().map(<[Kind]>::to_vec).unwrap_or_default(),
        label: d.label().to_string(),
        custom: d.custom,
        status: active(),
        retired_choices: Vec::new(),
    }
}

/// Every field of every kind in `schema`, hidden and retired ones with
/// their status.
fn schema_kinds(schema: &Schema) -> Vec<KindFields> {
    let custom = schema.custom_kinds();
    Kind::ALL
        .into_iter()
        .chain(custom.iter().map(|d| d.kind))
        .map(|kind| {
            let mut fields: Vec<FieldInfo> = kind
                .fields()
                .iter()
                .map(|d| FieldInfo {
                    label: schema
                        .builtin_label(kind, d.name)
                        .unwrap_or(d.name)
                        .to_string(),
                    status: if schema.is_hidden(kind, d.name) {
                        "hidden".into()
                    } else {
                        active()
                    },
                    // A status or priority list with the space's choices.
                    retired_choices: schema
                        .extended_choices(kind, d.name)
                        .map(rapport_model::CustomField::retired_choices)
                        .unwrap_or_default(),
                    ..field_info(schema.field(kind, d.name).unwrap_or(d))
                })
                .collect();
            for f in schema.custom(kind) {
                // A retired field is described as it was.
                let info = field_info(f.def());
                fields.push(FieldInfo {
                    status: if f.retired {
                        "retired".into()
                    } else {
                        info.status.clone()
                    },
                    ty: f.ty.to_string(),
                    retired_choices: f.retired_choices(),
                    ..info
                });
            }
            let retired = schema.kind(kind).is_some_and(|d| d.retired);
            KindFields {
                kind,
                custom: kind.is_custom(),
                plural: schema.plural(kind),
                status: if retired { "retired".into() } else { active() },
                fields,
            }
        })
        .collect()
}

/// What a list orders records by: a value as the field index orders it
/// (numbers by value, then texts in lower case by their first 64 bytes),
/// or none; see [`page_order`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    Value(rapport_store::fields::Item),
    Missing,
}

impl SortKey {
    /// The key of `v` by `field` (`id` or none: every key is missing, so
    /// the order is the ids').
    fn of(v: &RecordView, field: Option<&str>) -> SortKey {
        use rapport_model::FieldValue;
        use rapport_store::fields::Item;
        match field {
            None | Some("id") => SortKey::Missing,
            Some("updated") => SortKey::Value(Item::Number(i128::from(v.updated))),
            Some(f) => match v.get(f) {
                None => SortKey::Missing,
                Some(FieldValue::List(l)) => SortKey::Value(Item::of_text(&l.join(","))),
                Some(value) => Item::of(value)
                    .into_iter()
                    .next()
                    .map_or(SortKey::Missing, SortKey::Value),
            },
        }
    }

    fn item(&self) -> Option<&rapport_store::fields::Item> {
        match self {
            SortKey::Value(item) => Some(item),
            SortKey::Missing => None,
        }
    }
}

/// The order of a sorted list: records with a value by (value, id),
/// reversed when descending; then those without one, by id (reversed
/// too). Records without a value come last either way.
fn page_order(
    a: (&SortKey, RecordId),
    b: (&SortKey, RecordId),
    descending: bool,
) -> std::cmp::Ordering {
    let order = match (a.0, b.0) {
        (SortKey::Value(_), SortKey::Missing) => return std::cmp::Ordering::Less,
        (SortKey::Missing, SortKey::Value(_)) => return std::cmp::Ordering::Greater,
        _ => (a.0, a.1).cmp(&(b.0, b.1)),
    };
    if descending { order.reverse() } else { order }
}

fn encode_cursor(key: &SortKey, id: RecordId) -> String {
    use rapport_store::fields::Item;
    let (tag, text) = match key {
        SortKey::Missing => ("m", String::new()),
        SortKey::Value(Item::Number(n)) => ("n", n.to_string()),
        SortKey::Value(Item::Text(t)) => ("t", String::from_utf8_lossy(t).into_owned()),
    };
    let json = serde_json::to_vec(&(tag, text, id)).unwrap_or_default();
    data_encoding::BASE64URL_NOPAD.encode(&json)
}

fn decode_cursor(cursor: &str) -> Option<(SortKey, RecordId)> {
    let json = data_encoding::BASE64URL_NOPAD
        .decode(cursor.as_bytes())
        .ok()?;
    let (tag, text, id): (String, String, RecordId) = serde_json::from_slice(&json).ok()?;
    use rapport_store::fields::Item;
    let key = match tag.as_str() {
        "m" => SortKey::Missing,
        "n" => SortKey::Value(Item::Number(text.parse().ok()?)),
        "t" => SortKey::Value(Item::Text(text.into_bytes())),
        _ => return None,
    };
    Some((key, id))
}

/// The operations of integrations: record versions for the HTTP API,
/// tokens and webhooks. Tokens and webhooks are managed by the device's
/// own user only: a token cannot make, see or revoke tokens.
impl Ops {
    /// The caller a request that sends the API token `secret` acts as;
    /// `None` for no such token (revoked, or never made).
    pub fn authenticate(&self, secret: &str) -> Result<Option<Caller>, OpError> {
        Ok(self
            .integrations()
            .token_by_secret(secret)?
            .map(|t| Caller {
                token: Some(t.name),
                read_only: t.read_only,
                space: t.space,
            }))
    }

    pub fn integrations(&self) -> Integrations {
        Integrations::new(self.repo.dir())
    }

    fn integration(&self, caller: &Caller, request: Request) -> Result<Reply, OpError> {
        let repo = &*self.repo;
        let now = repo.now().as_second();
        let own_user = || {
            if caller.token.is_some() {
                Err(OpError::new(
                    ErrorCode::Forbidden,
                    "tokens and webhooks are managed by this device's user (`rapport token`, `rapport webhook`), not through a token",
                ))
            } else {
                Ok(())
            }
        };
        match request {
            Request::Get { record } => {
                let v = self.visible(caller, &record)?;
                self.record_reply(v, true)
            }
            Request::Patch {
                record,
                set,
                unset,
                if_match,
            } => {
                let current = self.visible(caller, &record)?;
                let seen = repo.view_at(current.id, &if_match)?.ok_or_else(|| {
                    OpError::new(
                        ErrorCode::UnknownVersion,
                        "this node holds no such version of the record; read it again (GET) and send its ETag",
                    )
                    .field("if_match")
                })?;
                let mut changed: Vec<String> = seen
                    .fields
                    .keys()
                    .chain(current.fields.keys())
                    .filter(|f| seen.fields.get(*f) != current.fields.get(*f))
                    .cloned()
                    .collect();
                changed.sort();
                changed.dedup();
                if seen.deleted != current.deleted {
                    changed.push("deleted".into());
                }
                let edit = Request::Edit {
                    record: current.id.to_string(),
                    set,
                    unset,
                };
                match self.dispatch(caller, edit)? {
                    Reply::Record(mut r) => {
                        r.changed_meanwhile = changed;
                        Ok(Reply::Record(r))
                    }
                    other => Ok(other),
                }
            }
            Request::TokenCreate {
                name,
                read_only,
                space,
            } => {
                own_user()?;
                let space = match space.as_deref() {
                    Some(s) => Some(self.shared_scope(s)?),
                    None => None,
                };
                let (token, secret) = self
                    .integrations()
                    .create_token(&name, read_only, space, now)?;
                Ok(Reply::Token(TokenReply {
                    token: self.token_info(token),
                    secret: Some(secret),
                }))
            }
            Request::TokenList => {
                own_user()?;
                let tokens = self.integrations().tokens()?;
                Ok(Reply::Tokens {
                    tokens: tokens.into_iter().map(|t| self.token_info(t)).collect(),
                })
            }
            Request::TokenRevoke { name } => {
                own_user()?;
                let token = self.integrations().revoke_token(&name)?;
                Ok(Reply::Token(TokenReply {
                    token: self.token_info(token),
                    secret: None,
                }))
            }
            Request::FeedCreate {
                name,
                owner,
                everyone,
            } => {
                own_user()?;
                let owner = if everyone {
                    None
                } else {
                    let owner = owner
                        .or(repo.profile().name)
                        .filter(|o| !o.trim().is_empty());
                    Some(owner.ok_or_else(|| {
                        OpError::new(
                            ErrorCode::Invalid,
                            "whose calendar? Set your name (rapport init --name \"Ann\"), name an owner, or make everyone's",
                        )
                        .field("owner")
                    })?)
                };
                let (feed, secret) = self.integrations().create_feed(&name, owner, now)?;
                Ok(Reply::Feed {
                    feed: feed.shown(),
                    secret: Some(secret),
                })
            }
            Request::FeedList => {
                own_user()?;
                Ok(Reply::Feeds {
                    feeds: self
                        .integrations()
                        .feeds()?
                        .into_iter()
                        .map(crate::integrations::StoredFeed::shown)
                        .collect(),
                })
            }
            Request::FeedRevoke { name } => {
                own_user()?;
                let feed = self.integrations().revoke_feed(&name)?.shown();
                Ok(Reply::Feed { feed, secret: None })
            }
            Request::CalendarFeed { secret } => {
                own_user()?;
                let feed = self.integrations().feed_by_secret(&secret)?.ok_or_else(|| {
                    OpError::new(
                        ErrorCode::NotFound,
                        "no calendar feed has this address (revoked?); make one with `rapport calendar feed create NAME`",
                    )
                })?;
                let owner = feed.owner.as_deref().map(|o| o.trim().to_lowercase());
                let mut records = Vec::new();
                for v in repo.all(Some(Kind::Activity)) {
                    let v = v?;
                    let mine = owner.as_deref().is_none_or(|o| {
                        v.text("owner")
                            .is_some_and(|w| w.trim().to_lowercase() == o)
                    });
                    let shown = match v.text("type") {
                        Some("meeting") => true,
                        Some("task") => v.get("done") != Some(&FieldValue::Flag(true)),
                        _ => false,
                    };
                    if !v.deleted && mine && shown {
                        records.push(v);
                    }
                }
                // The people they name, for attendees' e-mails.
                let mut named: Vec<RecordId> = records
                    .iter()
                    .flat_map(|v| {
                        ["about", "attendees"]
                            .into_iter()
                            .filter_map(|f| v.get(f))
                            .flat_map(|l| l.as_list().iter())
                    })
                    .filter_map(|s| s.parse().ok())
                    .collect();
                named.sort_unstable();
                named.dedup();
                for id in named {
                    records.extend(repo.view(id)?.filter(|v| v.kind == Kind::Person));
                }
                Ok(Reply::Calendar {
                    ics: rapport_exchange::activities_ics(&records),
                })
            }
            Request::WebhookAdd { url, events, space } => {
                own_user()?;
                let space = match space.as_deref() {
                    Some(s) => Some(self.shared_scope(s)?),
                    None => None,
                };
                let hook = self.integrations().add_webhook(&url, events, space, now)?;
                let secret = hook.secret.clone();
                Ok(Reply::Webhook(WebhookReply {
                    webhook: webhook_info(hook),
                    secret: Some(secret),
                    removed: false,
                }))
            }
            Request::WebhookList => {
                own_user()?;
                Ok(Reply::Webhooks {
                    webhooks: self
                        .integrations()
                        .webhooks()?
                        .into_iter()
                        .map(webhook_info)
                        .collect(),
                })
            }
            Request::WebhookRemove { id } => {
                own_user()?;
                Ok(Reply::Webhook(WebhookReply {
                    webhook: webhook_info(self.integrations().remove_webhook(&id)?),
                    secret: None,
                    removed: true,
                }))
            }
            Request::WebhookEnable { id } => {
                own_user()?;
                Ok(Reply::Webhook(WebhookReply {
                    webhook: webhook_info(self.integrations().enable_webhook(&id)?),
                    secret: None,
                    removed: false,
                }))
            }
            Request::WebhookLog { id } => {
                own_user()?;
                if let Some(id) = &id
                    && !self.integrations().webhooks()?.iter().any(|w| &w.id == id)
                    && self.integrations().deliveries(Some(id))?.is_empty()
                {
                    return Err(NodeError::NotFound(format!("webhook {id}")).into());
                }
                Ok(Reply::Deliveries {
                    deliveries: self.integrations().deliveries(id.as_deref())?,
                })
            }
            other => self.dispatch(caller, other),
        }
    }

    /// The space a token or webhook is limited to: a shared one (the
    /// private space is this device's own, every record not shared).
    fn shared_scope(&self, reference: &str) -> Result<SpaceId, OpError> {
        let view = self.shared_space(&Caller::user(), reference)?;
        Ok(SpaceId::Shared(view.id))
    }

    fn token_info(&self, t: StoredToken) -> TokenInfo {
        let space_name = match t.space {
            Some(SpaceId::Shared(id)) => self.repo.space(id).ok().flatten().map(|s| s.name),
            _ => None,
        };
        TokenInfo {
            name: t.name,
            read_only: t.read_only,
            space: t.space,
            space_name,
            created: t.created,
        }
    }
}

fn webhook_info(w: Webhook) -> WebhookInfo {
    WebhookInfo {
        id: w.id,
        url: w.url,
        events: w.events,
        space: w.space,
        created: w.created,
        failures: w.failures,
        disabled: w.disabled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OpenMode;
    use crate::repo::tests::input;

    fn ops() -> (tempfile::TempDir, Ops) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repo::open(&tmp.path().join("data"), OpenMode::Create).expect("open");
        (tmp, Ops::local(Arc::new(repo)))
    }

    fn create(ops: &Ops, caller: &Caller, kind: Kind, fields: &[(&str, &str)]) -> RecordView {
        match ops.execute(
            caller,
            Request::Create {
                kind,
                space: None,
                fields: input(fields),
            },
        ) {
            Ok(Reply::Record(r)) => r.record,
            other => panic!("create: {other:?}"),
        }
    }

    fn page(ops: &Ops, caller: &Caller, query: ListQuery) -> Result<Page, OpError> {
        match ops.execute(caller, Request::List(query))? {
            Reply::List(p) => Ok(p),
            other => panic!("list: {other:?}"),
        }
    }

    fn query(kind: Kind, sort: Option<&str>, limit: usize) -> ListQuery {
        ListQuery {
            kind,
            filters: Vec::new(),
            deleted: false,
            sort: sort.map(str::to_string),
            limit: Some(limit),
            after: None,
        }
    }

    /// Following `next` gives every record once, in order, even when a
    /// record is added between two pages.
    #[test]
    fn pages_follow_each_other_without_gaps_or_repeats() {
        let (_tmp, ops) = ops();
        let me = Caller::user();
        for name in ["Delta", "alpha", "Echo", "Charlie", "bravo"] {
            create(&ops, &me, Kind::Company, &[("name", name)]);
        }
        let mut q = query(Kind::Company, Some("name"), 2);
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let p = page(&ops, &me, q.clone()).expect("page");
            assert_eq!(p.total, 5 + usize::from(pages > 0));
            seen.extend(p.records.iter().map(|v| v.title()));
            pages += 1;
            if pages == 1 {
                // Sorts before the cursor: not shown, and nothing repeats.
                create(&ops, &me, Kind::Company, &[("name", "Aardvark")]);
            }
            match p.next {
                Some(next) => q.after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["alpha", "bravo", "Charlie", "Delta", "Echo"]);
        assert_eq!(pages, 3);
    }

    /// Pages sorted from the field index (a limit, no filter) give the
    /// very order of a list sorted in memory (no limit), both ways, with
    /// records lacking the value last, deleted ones left out, and a record
    /// changed between two pages neither lost nor repeated.
    #[test]
    fn pages_from_the_field_index_match_a_sort_in_memory() {
        let (_tmp, ops) = ops();
        let me = Caller::user();
        let seats: SchemaChange = serde_json::from_str(
            r#"{"op":"add_field","kind":"company","name":"seats","type":"number"}"#,
        )
        .expect("statement");
        ops.repo()
            .change_schema(SpaceId::Private, seats)
            .expect("field");
        let mut ids = Vec::new();
        for i in 0..40u32 {
            let name = format!("Co {}", (i * 7919) % 97);
            let n = ((i * 37) % 11).to_string();
            let fields: Vec<(&str, &str)> = match i % 5 {
                0 => vec![("name", &name)],
                1 => vec![("name", &name), ("industry", "Steel"), ("seats", &n)],
                _ => vec![("name", &name), ("seats", &n)],
            };
            ids.push(create(&ops, &me, Kind::Company, &fields).id);
        }
        for id in &ids[..3] {
            ops.repo().delete(&id.to_string()).expect("delete");
        }
        for sort in ["seats", "-seats", "industry", "-industry", "name"] {
            let mut all = query(Kind::Company, Some(sort), 1);
            all.limit = None;
            let whole: Vec<RecordId> = page(&ops, &me, all)
                .expect("in memory")
                .records
                .iter()
                .map(|v| v.id)
                .collect();
            let mut q = query(Kind::Company, Some(sort), 6);
            let mut paged = Vec::new();
            loop {
                let p = page(&ops, &me, q.clone()).expect("page");
                assert_eq!(p.total, 37, "{sort}");
                paged.extend(p.records.iter().map(|v| v.id));
                match p.next {
                    Some(next) => q.after = Some(next),
                    None => break,
                }
            }
            assert_eq!(paged, whole, "sorted by {sort}");
            let last = ops
                .repo()
                .view(*whole.last().expect("some"))
                .expect("read")
                .expect("last");
            if sort.ends_with("seats") {
                assert!(
                    last.get("seats").is_none(),
                    "records without seats come last"
                );
            }
        }
        // The cursor's record changes between two pages: the next page
        // still follows on (sorted in memory then), nothing lost.
        let mut q = query(Kind::Company, Some("seats"), 10);
        let first = page(&ops, &me, q.clone()).expect("page");
        let cursor_record = first.records.last().expect("last").id;
        ops.repo()
            .edit(
                &cursor_record.to_string(),
                &input(&[("seats", "1000")]),
                &[],
            )
            .expect("edit");
        q.after = first.next;
        let second = page(&ops, &me, q).expect("page");
        assert_eq!(second.records.len(), 10);
        assert!(
            second
                .records
                .iter()
                .all(|v| !first.records.iter().any(|f| f.id == v.id))
        );
    }

    #[test]
    fn a_list_without_a_limit_is_everything_in_one_pass() {
        let (_tmp, ops) = ops();
        let me = Caller::user();
        for name in ["A", "B", "C"] {
            create(&ops, &me, Kind::Company, &[("name", name)]);
        }
        let mut q = query(Kind::Company, None, 1);
        q.limit = None;
        let all = page(&ops, &me, q.clone()).expect("all");
        assert_eq!((all.records.len(), all.total, all.next), (3, 3, None));
        q.limit = Some(MAX_PAGE + 1);
        assert_eq!(
            page(&ops, &me, q).expect_err("too big").fields[0].field,
            "limit"
        );
    }

    #[test]
    fn descending_pages_of_one_record_each_end() {
        let (_tmp, ops) = ops();
        let me = Caller::user();
        let acme = create(&ops, &me, Kind::Company, &[("name", "Acme")]);
        let id = acme.id.to_string();
        for (title, amount) in [("a", "0.1"), ("b", "0.3"), ("c", "7")] {
            let fields = [
                ("title", title),
                ("company", id.as_str()),
                ("amount", amount),
                ("currency", "EUR"),
            ];
            create(&ops, &me, Kind::Deal, &fields);
        }
        let mut q = query(Kind::Deal, Some("-amount"), 1);
        let mut seen = Vec::new();
        loop {
            let p = page(&ops, &me, q.clone()).expect("page");
            seen.extend(p.records.iter().map(RecordView::title));
            assert!(seen.len() <= 3, "pages repeat: {seen:?}");
            match p.next {
                Some(next) => q.after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["c", "b", "a"]);
    }

    #[test]
    fn amounts_sort_by_value_and_descending_reverses() {
        let (_tmp, ops) = ops();
        let me = Caller::user();
        let acme = create(&ops, &me, Kind::Company, &[("name", "Acme")]);
        let id = acme.id.to_string();
        for (title, amount) in [("small", "900"), ("big", "1200.50"), ("mid", "1000")] {
            let fields = [
                ("title", title),
                ("company", id.as_str()),
                ("amount", amount),
                ("currency", "EUR"),
            ];
            create(&ops, &me, Kind::Deal, &fields);
        }
        let titles = |sort| -> Vec<String> {
            page(&ops, &me, query(Kind::Deal, Some(sort), 10))
                .expect("page")
                .records
                .iter()
                .map(RecordView::title)
                .collect()
        };
        assert_eq!(titles("amount"), ["small", "mid", "big"]);
        assert_eq!(titles("-amount"), ["big", "mid", "small"]);
        let bad = page(&ops, &me, query(Kind::Deal, Some("colour"), 10)).expect_err("unknown");
        assert_eq!(bad.code, ErrorCode::Invalid);
        assert_eq!(bad.fields[0].field, "sort");
        let mut q = query(Kind::Deal, None, 10);
        q.after = Some("not-a-cursor".into());
        assert_eq!(
            page(&ops, &me, q).expect_err("cursor").fields[0].field,
            "after"
        );
    }

    #[test]
    fn a_read_only_caller_writes_nothing() {
        let (_tmp, ops) = ops();
        let reader = Caller {
            token: Some("dashboard".into()),
            read_only: true,
            space: None,
        };
        let refused = ops
            .execute(
                &reader,
                Request::Create {
                    kind: Kind::Company,
                    space: None,
                    fields: input(&[("name", "Acme")]),
                },
            )
            .expect_err("read-only");
        assert_eq!(refused.code, ErrorCode::Forbidden);
        assert_eq!(ops.repo().record_count(), 0);
        assert!(ops.execute(&reader, Request::Pipeline).is_ok());
        // A token of any kind may not act for the whole device.
        let writer = Caller {
            token: Some("billing".into()),
            read_only: false,
            space: None,
        };
        let backup = ops
            .execute(
                &writer,
                Request::Backup {
                    path: ops.repo().dir().join("b.rapport"),
                },
            )
            .expect_err("device-wide");
        assert_eq!(backup.code, ErrorCode::Forbidden);
        assert!(!ops.repo().dir().join("b.rapport").exists());
    }

    #[test]
    fn a_caller_limited_to_a_space_sees_nothing_of_the_others() {
        let (_tmp, ops) = ops();
        let me = Caller::user();
        let private = create(&ops, &me, Kind::Company, &[("name", "Secret Corp")]);
        let Reply::Space(space) = ops
            .execute(
                &me,
                Request::CreateSpace {
                    name: "Joint".into(),
                },
            )
            .expect("space")
        else {
            panic!("not a space");
        };
        let scoped = Caller {
            token: Some("partner-portal".into()),
            read_only: false,
            space: Some(SpaceId::Shared(space.id)),
        };
        let hidden = ops
            .execute(
                &scoped,
                Request::Show {
                    record: private.id.to_string(),
                },
            )
            .expect_err("hidden");
        assert_eq!(hidden.code, ErrorCode::NotFound);
        assert_eq!(
            page(&ops, &scoped, query(Kind::Company, None, 10))
                .expect("list")
                .total,
            0
        );
        // What it creates lands in its space.
        let shared = create(&ops, &scoped, Kind::Company, &[("name", "Joint Corp")]);
        assert_eq!(shared.space, SpaceId::Shared(space.id));
        let whole_device = ops.execute(&scoped, Request::Whoami).expect_err("device");
        assert_eq!(whole_device.code, ErrorCode::Forbidden);
        // Names resolve in its space only: no private candidate, no title.
        create(&ops, &me, Kind::Company, &[("name", "Joint Ventures")]);
        let by_name = ops
            .execute(
                &scoped,
                Request::Show {
                    record: "Joint".into(),
                },
            )
            .expect("its own record, by name");
        let Reply::Show(shown) = by_name else {
            panic!("not a record");
        };
        assert_eq!(shown.record.id, shared.id);
        let secret = ops
            .execute(
                &scoped,
                Request::Show {
                    record: "Secret".into(),
                },
            )
            .expect_err("hidden by name");
        assert_eq!(secret.code, ErrorCode::NotFound);
        let mut filtered = query(Kind::Person, None, 10);
        filtered.filters = input(&[("company", "Secret Corp")]);
        let refused = page(&ops, &scoped, filtered).expect_err("a private reference");
        assert!(
            !refused.message.contains(&private.id.to_string()),
            "{refused:?}"
        );
        // Reports and the agenda read its space only: a private won deal
        // and a private meeting are not in them.
        for (company, title, owner) in [
            ("Secret Corp", "Private win", &me),
            ("Joint Corp", "Joint win", &scoped),
        ] {
            create(
                &ops,
                owner,
                Kind::Deal,
                &[
                    ("title", title),
                    ("company", company),
                    ("amount", "100"),
                    ("currency", "EUR"),
                    ("stage", "won"),
                ],
            );
            create(
                &ops,
                owner,
                Kind::Activity,
                &[
                    ("type", "meeting"),
                    ("subject", title),
                    ("when", "2026-03-02T10:00:00Z"),
                ],
            );
        }
        let Reply::Report(abc) = ops
            .execute(
                &scoped,
                Request::Report(crate::reports::ReportQuery::new(
                    crate::reports::ReportName::Abc,
                )),
            )
            .expect("report")
        else {
            panic!("not a report");
        };
        let customers: Vec<&str> = abc.sections[1].rows.iter().map(|r| r[1].as_str()).collect();
        assert_eq!(customers, ["Joint Corp"]);
        let everyone = crate::calendar::AgendaQuery {
            from: Some("2026-03-02".into()),
            everyone: true,
            zone: Some("UTC".into()),
            ..Default::default()
        };
        let Reply::Agenda(agenda) = ops
            .execute(&scoped, Request::Agenda(everyone))
            .expect("agenda")
        else {
            panic!("not an agenda");
        };
        let titles: Vec<&str> = agenda.entries.iter().map(|e| e.title.as_str()).collect();
        assert_eq!(titles, ["Joint win"]);

        // A private note about the shared record stays off its timeline.
        let about = shared.id.to_string();
        create(
            &ops,
            &me,
            Kind::Activity,
            &[
                ("type", "note"),
                ("subject", "price floor 40k"),
                ("about", &about),
            ],
        );
        let Reply::Timeline(t) = ops
            .execute(
                &scoped,
                Request::Timeline {
                    record: about.clone(),
                },
            )
            .expect("timeline")
        else {
            panic!("not a timeline");
        };
        assert!(
            !serde_json::to_string(&t.entries)
                .expect("json")
                .contains("price floor"),
            "{:?}",
            t.entries
        );
        let Reply::Timeline(mine) = ops
            .execute(&me, Request::Timeline { record: about })
            .expect("timeline")
        else {
            panic!("not a timeline");
        };
        assert!(
            serde_json::to_string(&mine.entries)
                .expect("json")
                .contains("price floor")
        );
    }

    #[test]
    fn replies_carry_no_topic_secret() {
        let (_tmp, ops) = ops();
        let me = Caller::user();
        let made = ops
            .execute(
                &me,
                Request::CreateSpace {
                    name: "Joint".into(),
                },
            )
            .expect("space");
        let spaces = ops.execute(&me, Request::Spaces).expect("spaces");
        let members = ops
            .execute(
                &me,
                Request::Members {
                    space: "Joint".into(),
                },
            )
            .expect("members");
        let topic = ops.repo().spaces().expect("spaces")[0].topic.clone();
        assert!(!topic.is_empty());
        for reply in [made, spaces, members] {
            let text = serde_json::to_string(&reply).expect("json");
            assert!(!text.contains("topic"), "{text}");
            let bytes = serde_json::to_string(&topic).expect("json");
            assert!(!text.contains(bytes.trim_matches(['[', ']'])), "{text}");
        }
    }

    #[test]
    fn errors_say_which_field_and_which_record() {
        let (_tmp, ops) = ops();
        let me = Caller::user();
        let bad = ops
            .execute(
                &me,
                Request::Create {
                    kind: Kind::Deal,
                    space: None,
                    fields: input(&[("title", "X"), ("amount", "lots"), ("colour", "red")]),
                },
            )
            .expect_err("invalid");
        assert_eq!(bad.code, ErrorCode::Invalid);
        let fields: Vec<&str> = bad.fields.iter().map(|f| f.field.as_str()).collect();
        assert!(
            fields.contains(&"amount") && fields.contains(&"colour"),
            "{bad:?}"
        );
        assert!(!bad.message.contains("--"), "CLI words in {bad:?}");
        let acme = create(&ops, &me, Kind::Company, &[("name", "Acme")]);
        let id = acme.id.to_string();
        ops.execute(&me, Request::Delete { record: id.clone() })
            .expect("delete");
        let gone = ops
            .execute(
                &me,
                Request::Edit {
                    record: id.clone(),
                    set: input(&[("industry", "Rail")]),
                    unset: Vec::new(),
                },
            )
            .expect_err("deleted");
        assert_eq!(gone.code, ErrorCode::Deleted);
        assert_eq!(gone.subject.as_deref(), Some(id.as_str()));
        // A request travels as JSON and back unchanged.
        let request = Request::Edit {
            record: id,
            set: input(&[("industry", "Rail")]),
            unset: vec!["phone".into()],
        };
        let text = serde_json::to_string(&request).expect("json");
        assert_eq!(
            serde_json::from_str::<Request>(&text).expect("back"),
            request
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"format_disk"}"#).is_err());
    }

    #[test]
    fn one_occurrence_moves_alone_and_the_series_skips_its_day() {
        let (_t, ops) = ops();
        let me = Caller::user();
        create(&ops, &me, Kind::Company, &[("name", "Acme")]);
        let weekly = create(
            &ops,
            &me,
            Kind::Activity,
            &[
                ("type", "meeting"),
                ("subject", "Review"),
                ("when", "2026-03-02 09:00"),
                ("ends", "2026-03-02 10:00"),
                ("zone", "Europe/Berlin"),
                ("repeat", "weekly"),
                ("remind", "10m"),
                ("about", "Acme"),
            ],
        );
        let query = |only, from: Option<&str>| {
            Request::Move(crate::calendar::MoveQuery {
                record: weekly.id.to_string(),
                from: from.map(String::from),
                day: "2026-03-17".into(),
                time: Some("14:00".into()),
                only,
            })
        };
        let Reply::Record(moved) = ops
            .execute(&me, query(true, Some("2026-03-16")))
            .expect("move")
        else {
            panic!("not a record");
        };
        let one = &moved.record;
        assert_ne!(one.id, weekly.id, "a meeting of its own");
        assert_eq!(
            one.text("when"),
            Some("2026-03-17T13:00:00Z"),
            "14:00 in Berlin"
        );
        assert_eq!(
            one.text("ends"),
            Some("2026-03-17T14:00:00Z"),
            "an hour, as before"
        );
        assert_eq!(one.text("repeat"), None);
        assert_eq!(one.text("remind"), Some("10m"));
        assert_eq!(one.get("about"), weekly.get("about"));
        let week = crate::calendar::AgendaQuery {
            from: Some("2026-03-16".into()),
            days: Some(7),
            everyone: true,
            zone: Some("Europe/Berlin".into()),
            ..Default::default()
        };
        let Reply::Agenda(agenda) = ops.execute(&me, Request::Agenda(week)).expect("agenda") else {
            panic!("not an agenda");
        };
        let shown: Vec<(&str, Option<&str>)> = agenda
            .entries
            .iter()
            .map(|e| (e.day.as_str(), e.start.as_deref()))
            .collect();
        assert_eq!(shown, [("2026-03-17", Some("14:00"))], "not on Monday");

        // A day the series does not meet on, or no day at all, is refused.
        let err = ops
            .execute(&me, query(true, Some("2026-03-18")))
            .expect_err("no occurrence then");
        assert!(
            err.to_string()
                .contains("does not take place on 2026-03-18"),
            "{err}"
        );
        let err = ops.execute(&me, query(true, None)).expect_err("which one");
        assert!(err.to_string().contains("which occurrence"), "{err}");
        // A deleted series has no occurrence to take out.
        let id = weekly.id.to_string();
        ops.execute(&me, Request::Delete { record: id.clone() })
            .expect("delete");
        let err = ops
            .execute(&me, query(true, Some("2026-03-23")))
            .expect_err("deleted");
        assert!(err.to_string().contains("deleted"), "{err}");
        ops.execute(&me, Request::Restore { record: id })
            .expect("restore");
        // Without `only`, the series moves.
        let Reply::Record(series) = ops
            .execute(&me, query(false, Some("2026-03-23")))
            .expect("move")
        else {
            panic!("not a record");
        };
        assert_eq!(series.record.id, weekly.id);
        // The 23rd moved to the 17th: the whole series six days earlier.
        assert_eq!(series.record.text("when"), Some("2026-02-24T13:00:00Z"));
    }

    #[test]
    fn an_agenda_of_one_space() {
        let (_t, ops) = ops();
        let me = Caller::user();
        let shared = ops.repo.create_space("Team").expect("space");
        for (subject, space) in [("Team sync", Some("Team")), ("Dentist", None)] {
            let fields = input(&[
                ("type", "meeting"),
                ("subject", subject),
                ("when", "2026-03-02T10:00:00Z"),
            ]);
            ops.execute(
                &me,
                Request::Create {
                    kind: Kind::Activity,
                    space: space.map(String::from),
                    fields,
                },
            )
            .expect("meeting");
        }
        let titles = |space: &str| -> Result<Vec<String>, OpError> {
            let q = crate::calendar::AgendaQuery {
                from: Some("2026-03-02".into()),
                everyone: true,
                zone: Some("UTC".into()),
                space: Some(space.into()),
                ..Default::default()
            };
            match ops.execute(&me, Request::Agenda(q))? {
                Reply::Agenda(a) => Ok(a.entries.into_iter().map(|e| e.title).collect()),
                _ => panic!("not an agenda"),
            }
        };
        assert_eq!(titles("Team").expect("team"), ["Team sync"]);
        assert_eq!(
            titles(&shared.id.to_string()).expect("by id"),
            ["Team sync"]
        );
        assert_eq!(titles("private").expect("mine"), ["Dentist"]);
        assert!(titles("Nowhere").is_err());
    }
}
