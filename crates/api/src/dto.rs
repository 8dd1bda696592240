//! The bodies the API sends and takes. They are the API's contract (the
//! OpenAPI document is derived from them), kept apart from the node's
//! reply types so that the node can change its internals without
//! changing what integrations read; each is built from a reply here.

use std::collections::BTreeMap;

use rapport_model::{FieldValue, RecordView};
use rapport_node::live::Event;
use rapport_node::ops;
use rapport_node::timeline::Entry;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{RefOr, SchemaFormat};
use utoipa::{PartialSchema, ToSchema};

/// A record as one flat JSON object: `id`, `kind`, `space`, `updated`
/// (RFC 3339), then every field by name (text, integer, boolean, or a
/// list of text); `deleted: true` for a deleted record, and `conflicts`
/// (field → every concurrently written value, winner first) when two
/// writers set a field at the same time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Record(pub Value);

impl Record {
    pub fn of(v: &RecordView) -> Self {
        Record(v.to_json())
    }
}

impl PartialSchema for Record {
    fn schema() -> RefOr<Schema> {
        let text = || ObjectBuilder::new().schema_type(Type::String);
        ObjectBuilder::new()
            .description(Some(
                "A record: `id`, `kind`, `space`, `updated`, then every field by name \
                 (GET /api/v1/openapi.json lists no kind's fields: see `rapport fields KIND`).",
            ))
            .property(
                "id",
                text().description(Some("26 characters, sortable by creation")),
            )
            .property(
                "kind",
                text().description(Some(
                    "company, person, deal, activity, ticket, campaign, or a kind the \
                     space's admins added (GET /api/v1/spaces/{id}/schema lists them)",
                )),
            )
            .property(
                "space",
                text().description(Some("`private`, or a shared space's id")),
            )
            .property(
                "updated",
                text().format(Some(SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::DateTime,
                ))),
            )
            .property("deleted", ObjectBuilder::new().schema_type(Type::Boolean))
            .property(
                "conflicts",
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .additional_properties(Some(
                        ArrayBuilder::new().items(FieldValueSchema::schema()),
                    )),
            )
            .required("id")
            .required("kind")
            .required("space")
            .required("updated")
            .additional_properties(Some(FieldValueSchema::schema()))
            .into()
    }
}

impl ToSchema for Record {}

/// A field's value: text, an integer, a boolean, or a list of text.
pub struct FieldValueSchema;

impl PartialSchema for FieldValueSchema {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(ObjectBuilder::new().schema_type(Type::Integer))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)))
            .into()
    }
}

impl ToSchema for FieldValueSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "FieldValue".into()
    }
}

/// A value given for a field: text, a number, a boolean, or a list (of
/// text or numbers), parsed as the CLI parses what is typed; `null` in
/// `set` clears the field.
pub struct FieldInputSchema;

impl PartialSchema for FieldInputSchema {
    fn schema() -> RefOr<Schema> {
        let scalar = || {
            OneOfBuilder::new()
                .item(ObjectBuilder::new().schema_type(Type::String))
                .item(ObjectBuilder::new().schema_type(Type::Number))
                .item(ObjectBuilder::new().schema_type(Type::Boolean))
        };
        OneOfBuilder::new()
            .item(scalar())
            .item(ArrayBuilder::new().items(scalar()))
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .into()
    }
}

impl ToSchema for FieldInputSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "FieldInput".into()
    }
}

/// A new record.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRecord {
    /// company, person, deal, activity, ticket or campaign.
    pub kind: String,
    /// A shared space (name or id) [default: the private space, or the
    /// token's space].
    #[serde(default)]
    pub space: Option<String>,
    /// Field name → value.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, FieldInputSchema>)]
    pub fields: BTreeMap<String, Value>,
}

/// Changes to a record.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordPatch {
    /// Field name → new value (`null` clears it).
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, FieldInputSchema>)]
    pub set: BTreeMap<String, Value>,
    /// Fields to clear.
    #[serde(default)]
    pub unset: Vec<String>,
}

/// One page of records.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordPage {
    pub records: Vec<Record>,
    /// Records matching in all pages.
    pub total: usize,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Titles of the records these refer to, by id.
    pub titles: BTreeMap<String, String>,
}

/// A record written (or not, when it was so already).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Written {
    pub record: Record,
    /// Whether nothing was written, the record being so already.
    pub unchanged: bool,
    /// For a PATCH with `If-Match`: the fields (and `deleted`) another
    /// writer changed since that version; the edit was merged anyway.
    pub changed_meanwhile: Vec<String>,
}

/// A record's history and activities, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Timeline {
    pub record: Record,
    pub entries: Vec<TimelineEntry>,
}

/// A signed change to the record (`type: change`) or an activity about
/// it (`type: activity`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimelineEntry {
    /// `change` or `activity`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Seconds since the Unix epoch (the author's clock).
    pub time: i64,
    /// Change: who made it ("user (organisation)").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Change: the signing device's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Change: `created`, `edited`, `deleted` or `restored`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Change: the API token the device made it for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Change: each field's value before and after.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// Change: whether its signature verifies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// Change: its hash (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Change: what it raced, if it raced the record's deletion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub race: Option<String>,
    /// Activity: its record id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Activity: call, email, meeting, note or task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<String>,
    /// Activity: its subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Activity (task): whether it is done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<bool>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldChange {
    pub field: String,
    #[schema(value_type = Option<FieldValueSchema>)]
    pub before: Option<Value>,
    #[schema(value_type = Option<FieldValueSchema>)]
    pub after: Option<Value>,
}

fn value(v: Option<FieldValue>) -> Option<Value> {
    v.and_then(|v| serde_json::to_value(v).ok())
}

impl From<Entry> for TimelineEntry {
    fn from(e: Entry) -> Self {
        let blank = TimelineEntry {
            kind: String::new(),
            time: e.time(),
            author: None,
            device: None,
            action: None,
            via: None,
            fields: Vec::new(),
            verified: None,
            hash: None,
            race: None,
            id: None,
            activity: None,
            subject: None,
            done: None,
        };
        match e {
            Entry::Change {
                author,
                device,
                action,
                fields,
                verified,
                hash,
                race,
                via,
                ..
            } => TimelineEntry {
                kind: "change".into(),
                author: Some(author),
                device,
                action: Some(action),
                via,
                fields: fields
                    .into_iter()
                    .map(|f| FieldChange {
                        field: f.field,
                        before: value(f.before),
                        after: value(f.after),
                    })
                    .collect(),
                verified: Some(verified),
                hash: Some(hash),
                race,
                ..blank
            },
            Entry::Activity {
                id,
                activity,
                subject,
                done,
                ..
            } => TimelineEntry {
                kind: "activity".into(),
                id: Some(id.to_string()),
                activity: Some(activity),
                subject: Some(subject),
                done,
                ..blank
            },
        }
    }
}

/// Records likely to be one customer, the surest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Duplicates {
    pub clusters: Vec<DuplicateCluster>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DuplicateCluster {
    /// `person` or `company`.
    pub kind: String,
    /// 0 to 100; 100 is the same e-mail address.
    pub score: u8,
    /// Oldest first.
    pub records: Vec<DuplicateMember>,
    /// Why ("same e-mail ada@example.com", "same phone +4930…").
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DuplicateMember {
    pub id: String,
    pub title: String,
}

/// Deals by stage: the built-in `sales` pipeline's, then each pipeline
/// the spaces' admins set.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Pipeline {
    pub stages: Vec<Stage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pipelines: Vec<NamedPipeline>,
}

/// A pipeline the space's admins set, by stage.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NamedPipeline {
    pub name: String,
    pub title: String,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stage {
    pub stage: String,
    /// Deals in this stage.
    pub count: usize,
    /// Per currency code: the total and the total weighted by probability
    /// (decimal strings).
    pub currencies: BTreeMap<String, Money>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Money {
    pub total: String,
    pub weighted: String,
}

/// Records whose name, emails, phones, domains or tags match.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchResult {
    pub hits: Vec<Hit>,
    /// How many records matched in all (more than `hits` when cut).
    pub total: usize,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Hit {
    pub id: String,
    pub kind: String,
    pub space: String,
    pub title: String,
    /// The matching value when it is not the title (an email, a phone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A shared space.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Space {
    pub id: String,
    pub name: String,
    pub members: usize,
    pub records: usize,
    /// This device's role in it: admin, writer, reader, relay or privacy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl From<ops::SpaceSummary> for Space {
    fn from(s: ops::SpaceSummary) -> Self {
        Space {
            id: s.id.to_string(),
            name: s.name,
            members: s.members,
            records: s.records,
            role: s.role.map(|r| r.to_string()),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Spaces {
    pub spaces: Vec<Space>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Members {
    pub space: Space,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Member {
    pub device: String,
    pub user: String,
    pub org: String,
    pub role: String,
    /// Seconds since the Unix epoch.
    pub since: i64,
    pub added_by: String,
    /// Whether it is this node's device.
    pub you: bool,
    /// For a former member: when it was removed (seconds since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_by: Option<String>,
}

impl From<ops::MemberRow> for Member {
    fn from(m: ops::MemberRow) -> Self {
        Member {
            device: m.device,
            user: m.user,
            org: m.org,
            role: m.role.to_string(),
            since: m.since,
            added_by: m.added_by,
            you: m.you,
            removed_at: m.removed.as_ref().map(|r| r.0),
            removed_by: m.removed.map(|r| r.1),
        }
    }
}

/// A space's fields, kind by kind: what integrations need to read and
/// write its custom fields.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SpaceSchema {
    /// `private`, or the shared space's id.
    pub space: String,
    pub space_name: String,
    pub kinds: Vec<KindFields>,
    /// The deal pipelines: the built-in `sales`, then the admins' own.
    pub pipelines: Vec<PipelineDef>,
    /// Schema statements that took no effect, and why.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KindFields {
    pub kind: String,
    /// Added by the space's admins, not built in.
    pub custom: bool,
    /// What lists call many of them.
    pub plural: String,
    /// `active`, or `retired` (a custom kind: no new records).
    pub status: String,
    pub fields: Vec<Field>,
}

/// A deal pipeline: its stages in order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PipelineDef {
    pub name: String,
    pub label: String,
    pub retired: bool,
    pub stages: Vec<PipelineStage>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PipelineStage {
    pub name: String,
    /// Percent, 0 to 100.
    pub probability: i64,
    /// `won` or `lost` for a stage that closes a deal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// One field of a kind.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Field {
    pub name: String,
    pub label: String,
    /// text, long_text, number, money, date, datetime, yes_no (built-in:
    /// flag), choice, multi_choice, email, phone, url, percent, reference
    /// (built-in: ref, refs), and the built-in kinds' own (emails, tags...).
    #[serde(rename = "type")]
    pub ty: String,
    pub required: bool,
    /// Whether it takes several values.
    pub list: bool,
    /// Added by the space's admins.
    pub custom: bool,
    /// active, hidden (a built-in field) or retired (a custom one).
    pub status: String,
    pub help: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retired_choices: Vec<String>,
    /// The kinds a reference names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refers_to: Vec<String>,
}

impl From<ops::SchemaReply> for SpaceSchema {
    fn from(s: ops::SchemaReply) -> Self {
        SpaceSchema {
            space: s.space,
            space_name: s.space_name,
            kinds: s
                .kinds
                .into_iter()
                .map(|k| KindFields {
                    kind: k.kind.to_string(),
                    custom: k.custom,
                    plural: k.plural,
                    status: k.status,
                    fields: k
                        .fields
                        .into_iter()
                        .map(|f| Field {
                            label: if f.label.is_empty() {
                                f.name.clone()
                            } else {
                                f.label
                            },
                            name: f.name,
                            ty: f.ty,
                            required: f.required,
                            list: f.list,
                            custom: f.custom,
                            status: f.status,
                            help: f.help,
                            choices: f.choices,
                            retired_choices: f.retired_choices,
                            refers_to: f.refers_to.iter().map(|k| k.to_string()).collect(),
                        })
                        .collect(),
                })
                .collect(),
            pipelines: s
                .pipelines
                .into_iter()
                .map(|p| PipelineDef {
                    label: p.title(),
                    name: p.name,
                    retired: p.retired,
                    stages: p
                        .stages
                        .into_iter()
                        .map(|st| PipelineStage {
                            name: st.name,
                            probability: st.probability,
                            outcome: st.outcome.map(|o| o.as_str().to_string()),
                        })
                        .collect(),
                })
                .collect(),
            notes: s.notes,
        }
    }
}

/// The node and its shared spaces' sync state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Status {
    pub version: String,
    /// Records this node holds.
    pub records: usize,
    /// Whether this node is a relay (stores and forwards, authors nothing).
    pub relay: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Peers connected now.
    pub connected: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
    /// Shared spaces by id (only the token's, for a token limited to one).
    pub spaces: BTreeMap<String, SpaceSync>,
    /// How each member of this node's spaces is reached now, by device
    /// (of the token's space only, for a token limited to one).
    pub members: BTreeMap<String, MemberReach>,
}

/// How a member is reached now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberReach {
    /// `direct (LAN)`, `direct (internet)`, `via relay`, or `unknown`.
    pub path: String,
    /// Direct addresses in use now.
    pub in_use: Vec<String>,
    /// Where the member last said it is.
    pub announced: Vec<String>,
    /// When it said so (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announced_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
    /// Since when sessions with it have been failing (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable_since: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SpaceSync {
    pub name: String,
    pub members: usize,
    pub records: usize,
    /// Local changes not yet synced with a peer.
    pub pending_out: usize,
    /// When the space last synced with a peer (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<String>,
}

/// One thing that happened to a record: the `data` of a server-sent
/// event, and the body of a webhook delivery.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventBody {
    /// Where to resume after this event (`Last-Event-ID`, `after`).
    pub cursor: String,
    /// record.created, record.changed, record.deleted, record.restored,
    /// record.removed or deal.stage_changed.
    #[serde(rename = "type")]
    pub event: String,
    /// The record's id.
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
    /// The record as it is now (absent when it was removed from this node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<Record>,
    /// deal.stage_changed: the stage before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_stage: Option<String>,
}

impl From<&Event> for EventBody {
    fn from(e: &Event) -> Self {
        EventBody {
            cursor: e.cursor.clone(),
            event: e.event.as_str().into(),
            id: e.id.to_string(),
            kind: e.kind.map(|k| k.as_str().into()),
            space: e.space.map(|s| s.to_string()),
            record: e.record.as_ref().map(Record::of),
            previous_stage: e.previous_stage.clone(),
        }
    }
}

/// Sent on the event stream when events were missed (the cursor is too
/// old, the node restarted, or the client read too slowly): read what
/// you need again, then follow from here.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reset {
    pub reason: String,
}

/// What a node holds about a person (a subject access or portability
/// request), file by file.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PrivacyExport {
    pub person: String,
    pub files: Vec<PrivacyFile>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PrivacyFile {
    /// `README.md`, `person.json`, `related.json`, `company.json`, `history.json`, `person.vcf`.
    pub name: String,
    pub about: String,
    pub text: String,
}
