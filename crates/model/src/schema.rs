//! The built-in record kinds and their fields.
//!
//! A schema is data: each kind is a list of [`FieldDef`]s, and everything
//! else (parsing, validation, tables, JSON) is driven by that list.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock, PoisonError};

/// A record's kind: one of the six built in, or one a space's admins
/// added (`rapport schema kind add contract`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Company,
    Person,
    Deal,
    Activity,
    Ticket,
    Campaign,
    Product,
    LineItem,
    Consent,
    Custom(CustomKind),
}

/// The name of a kind defined by a space's admins. Its identity is its
/// name, as a custom field's is: two spaces (or two admins at once) that
/// add `contract` mean the same kind, and a record of a kind its node has
/// no statement for yet is still read, kept and forwarded.
///
/// Names are interned for the life of the process, so that a kind stays a
/// small `Copy` value. The table is never full (a name the node must read
/// is never refused, so nodes never disagree over one): what it holds is
/// bounded by the kinds of the statements and records the node keeps, and
/// the kinds its own user asks for. Names in addresses and query strings
/// are only looked up ([`Kind::known`]), never added.
///
/// A thin reference (to a leaked `String`) keeps `Kind` at two words.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomKind(&'static String);

impl CustomKind {
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Debug for CustomKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The one field every custom kind has: its records' title. Like
/// Salesforce's "Record Name", its name is fixed and its label is the
/// admin's (`--title-label "Contract number"`), so that a record's title
/// reads without its schema (on a node the kind's statement has not
/// reached yet, in a search index, in an export).
const CUSTOM: &[FieldDef] = &[req("name", FieldType::Text, "what the record is called")];
const CUSTOM_COLUMNS: &[&str] = &["name"];

/// Whether `name` may name a custom kind: what a field name may be.
pub fn is_kind_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The interned kind (and its one-kind slice, for reference fields); with
/// `add`, a name not seen yet is added, else it is `None`.
fn intern_kind(name: &str, add: bool) -> Option<(CustomKind, &'static [Kind])> {
    type Table = HashMap<&'static str, (&'static String, &'static [Kind])>;
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    let mut table = TABLE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(&(name, only)) = table.get(name) {
        return Some((CustomKind(name), only));
    }
    if !add {
        return None;
    }
    let name: &'static String = Box::leak(Box::new(name.to_string()));
    let only: &'static [Kind] = Box::leak(Box::new([Kind::Custom(CustomKind(name))]));
    table.insert(name.as_str(), (name, only));
    Some((CustomKind(name), only))
}

/// What a field holds, and so how it is parsed, validated and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    Text,
    /// Text of several lines (a form shows a text area).
    LongText,
    /// A decimal number, negative or not.
    Number,
    /// An exact decimal amount with its ISO 4217 currency, `1200.50 EUR`.
    Money,
    Email,
    Emails,
    Phone,
    Phones,
    Url,
    Domain,
    Tags,
    /// One of a fixed list of lower-case words.
    Choice(&'static [&'static str]),
    /// Any number of the listed words.
    Choices(&'static [&'static str]),
    /// A calendar day, `YYYY-MM-DD`.
    Date,
    /// An instant; stored as an Automerge timestamp.
    DateTime,
    /// A non-negative decimal amount (its currency is a sibling field).
    Amount,
    /// An ISO 4217 currency code.
    Currency,
    /// A whole percentage, 0 to 100.
    Percent,
    Flag,
    /// A reference to one record of the given kinds (empty: any kind).
    Ref(&'static [Kind]),
    /// References to several records of the given kinds (empty: any kind).
    Refs(&'static [Kind]),
}

impl FieldType {
    pub fn is_list(self) -> bool {
        matches!(
            self,
            FieldType::Emails
                | FieldType::Phones
                | FieldType::Tags
                | FieldType::Refs(_)
                | FieldType::Choices(_)
        )
    }

    /// The kinds a reference field may point at, if it is one.
    pub fn ref_kinds(self) -> Option<&'static [Kind]> {
        match self {
            FieldType::Ref(k) | FieldType::Refs(k) => Some(k),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldDef {
    pub name: &'static str,
    /// What forms and tables call it; empty: the name.
    pub label: &'static str,
    /// Defined by a space's admins (see [`crate::custom`]), not built in.
    pub custom: bool,
    pub ty: FieldType,
    pub required: bool,
    /// What a new record gets when the user gives no value (parsed like
    /// user input, so `now` means the time of creation).
    pub default: Option<&'static str>,
    pub help: &'static str,
}

impl FieldDef {
    const fn or(mut self, default: &'static str) -> Self {
        self.default = Some(default);
        self
    }

    /// What forms and tables call the field.
    pub fn label(&self) -> &'static str {
        if self.label.is_empty() {
            self.name
        } else {
            self.label
        }
    }
}

const fn f(name: &'static str, ty: FieldType, help: &'static str) -> FieldDef {
    FieldDef {
        name,
        label: "",
        custom: false,
        ty,
        required: false,
        default: None,
        help,
    }
}

const fn req(name: &'static str, ty: FieldType, help: &'static str) -> FieldDef {
    FieldDef {
        name,
        label: "",
        custom: false,
        ty,
        required: true,
        default: None,
        help,
    }
}

use FieldType as T;

pub const DEAL_STAGES: &[&str] = &[
    "lead",
    "qualified",
    "proposal",
    "negotiation",
    "won",
    "lost",
];
pub const ACTIVITY_TYPES: &[&str] = &["call", "email", "meeting", "note", "task"];
pub const TICKET_STATUSES: &[&str] = &["new", "open", "pending", "resolved", "closed"];
pub const TICKET_PRIORITIES: &[&str] = &["low", "normal", "high", "urgent"];
pub const CAMPAIGN_CHANNELS: &[&str] = &[
    "email", "event", "webinar", "social", "ads", "print", "phone", "other",
];
/// What a person consents to (or objects to): see `crate::consent`.
pub const CONSENT_PURPOSES: &[&str] = &["email", "phone", "post", "events", "profiling"];
pub const CONSENT_STATUSES: &[&str] = &["granted", "withdrawn", "objected"];
pub const CONSENT_SOURCES: &[&str] = &[
    "form", "call", "email", "meeting", "import", "contract", "other",
];

/// The probability (percent) a deal has while its own is not set.
pub fn stage_probability(stage: &str) -> Option<i64> {
    Some(match stage {
        "lead" => 10,
        "qualified" => 25,
        "proposal" => 50,
        "negotiation" => 75,
        "won" => 100,
        "lost" => 0,
        _ => return None,
    })
}

const COMPANY: &[FieldDef] = &[
    req("name", T::Text, "company name"),
    f("domain", T::Domain, "web domain, e.g. acme.com"),
    f("industry", T::Text, "industry"),
    f("address", T::Text, "postal address"),
    f("phone", T::Phone, "main phone number"),
    f("website", T::Url, "website URL"),
    f("owner", T::Text, "who looks after this account"),
    f("tags", T::Tags, "comma-separated tags"),
];

const PERSON: &[FieldDef] = &[
    req("name", T::Text, "full name"),
    f("emails", T::Emails, "comma-separated email addresses"),
    f("phones", T::Phones, "comma-separated phone numbers"),
    f("title", T::Text, "job title"),
    f(
        "company",
        T::Ref(&[Kind::Company]),
        "the company they work for",
    ),
    f("owner", T::Text, "who looks after this contact"),
    f("tags", T::Tags, "comma-separated tags"),
    f("address", T::Text, "postal address"),
    f("website", T::Url, "personal or profile web page"),
    f("birthday", T::Date, "date of birth"),
    f("notes", T::Text, "free notes"),
];

const DEAL: &[FieldDef] = &[
    req("title", T::Text, "what is being sold"),
    req("company", T::Ref(&[Kind::Company]), "the buying company"),
    f("contacts", T::Refs(&[Kind::Person]), "people involved"),
    f("amount", T::Amount, "deal value, e.g. 1200.50"),
    f(
        "currency",
        T::Currency,
        "ISO 4217 code of the amount, e.g. EUR",
    ),
    req("stage", T::Choice(DEAL_STAGES), "pipeline stage").or("lead"),
    f(
        "pipeline",
        T::Text,
        "the pipeline the deal is in (rapport schema show deal) [default: sales]",
    ),
    f(
        "probability",
        T::Percent,
        "chance to win in percent; follows the stage unless set",
    ),
    f("close", T::Date, "expected close date"),
    f("lost_reason", T::Text, "why the deal was lost"),
    f(
        "manual_amount",
        T::Flag,
        "the amount is set by hand; without it, a deal with line items has their total",
    ),
    f("owner", T::Text, "who works the deal"),
    f("tags", T::Tags, "comma-separated tags"),
];

const ACTIVITY: &[FieldDef] = &[
    req(
        "type",
        T::Choice(ACTIVITY_TYPES),
        "call, email, meeting, note or task",
    ),
    f("subject", T::Text, "one-line summary"),
    f("body", T::Text, "notes or text"),
    req("when", T::DateTime, "when it happened or is planned").or("now"),
    f("due", T::Date, "due date (tasks)"),
    f("done", T::Flag, "whether the task is done"),
    f("about", T::Refs(&[]), "records this activity is about"),
    f("owner", T::Text, "who does it"),
    f("ends", T::DateTime, "when a meeting ends"),
    f("location", T::Text, "where a meeting takes place"),
    f(
        "all_day",
        T::Flag,
        "a meeting that takes whole days (from the day of `when` to that of `ends`)",
    ),
    f(
        "zone",
        T::Text,
        "the meeting's time zone (IANA, e.g. Europe/Berlin): repeats keep its wall-clock time",
    ),
    f(
        "attendees",
        T::Refs(&[Kind::Person]),
        "people who attend (members: by `owner`)",
    ),
    f(
        "repeat",
        T::Text,
        "how a meeting repeats: daily, weekly, monthly, weekdays, or FREQ=WEEKLY;BYDAY=MO,WE;COUNT=10",
    ),
    f(
        "skip",
        T::Tags,
        "days a repeating meeting does not take place, e.g. 2026-12-24, 2026-12-31",
    ),
    f(
        "remind",
        T::Text,
        "a reminder: 15m, 2h or 1d before (a task: before 09:00 on its due day), or 09:00 on the day",
    ),
    f(
        "dismissed",
        T::Tags,
        "reminders dismissed, by occurrence (set by Dismiss; every device of its owner sees it)",
    ),
    f(
        "uid",
        T::Text,
        "calendar UID (iCalendar): importing the same event again updates it",
    ),
];

const TICKET: &[FieldDef] = &[
    req("title", T::Text, "short description of the problem"),
    f("description", T::Text, "details"),
    req(
        "status",
        T::Choice(TICKET_STATUSES),
        "where the ticket stands",
    )
    .or("new"),
    req("priority", T::Choice(TICKET_PRIORITIES), "how urgent it is").or("normal"),
    f("company", T::Ref(&[Kind::Company]), "the customer company"),
    f(
        "person",
        T::Ref(&[Kind::Person]),
        "the person who reported it",
    ),
    f("owner", T::Text, "who handles the ticket"),
    f(
        "resolved",
        T::DateTime,
        "when it was resolved; set when its status becomes resolved or closed",
    ),
    f("tags", T::Tags, "comma-separated tags"),
];

const CAMPAIGN: &[FieldDef] = &[
    req("name", T::Text, "campaign name"),
    f(
        "channel",
        T::Choice(CAMPAIGN_CHANNELS),
        "how it reaches people",
    ),
    f("start", T::Date, "first day"),
    f("end", T::Date, "last day"),
    f("budget", T::Amount, "budget, e.g. 5000"),
    f("currency", T::Currency, "ISO 4217 code of the budget"),
    f(
        "members",
        T::Refs(&[Kind::Person]),
        "people the campaign targets",
    ),
    f("owner", T::Text, "who runs it"),
    f("tags", T::Tags, "comma-separated tags"),
];

const PRODUCT: &[FieldDef] = &[
    req("name", T::Text, "product name"),
    f("sku", T::Text, "stock keeping unit: the product's code"),
    f("price", T::Amount, "unit price, e.g. 49.90"),
    f(
        "currency",
        T::Currency,
        "ISO 4217 code of the price, e.g. EUR",
    ),
    f("category", T::Text, "product line or family"),
    req("active", T::Flag, "whether it is still sold").or("yes"),
    f("description", T::LongText, "what it is"),
    f("tags", T::Tags, "comma-separated tags"),
];

const LINE_ITEM: &[FieldDef] = &[
    req(
        "deal",
        T::Ref(&[Kind::Deal]),
        "the deal the line belongs to",
    ),
    f("product", T::Ref(&[Kind::Product]), "what is sold"),
    f(
        "name",
        T::Text,
        "what the line says; the product's name unless given",
    ),
    req("quantity", T::Number, "how many, e.g. 3 or 2.5").or("1"),
    f("price", T::Amount, "unit price; the product's unless given"),
    f(
        "currency",
        T::Currency,
        "ISO 4217 code of the price: the deal's",
    ),
    f("discount", T::Percent, "discount in percent, 0 to 100"),
];

const CONSENT: &[FieldDef] = &[
    req(
        "person",
        T::Ref(&[Kind::Person]),
        "whose consent (or objection) it is",
    ),
    req(
        "purpose",
        T::Choice(CONSENT_PURPOSES),
        "what for: email, phone, post, events or profiling",
    ),
    req(
        "status",
        T::Choice(CONSENT_STATUSES),
        "granted, withdrawn, or objected (to processing for this purpose)",
    )
    .or("granted"),
    req("date", T::Date, "when they gave, withdrew or objected").or("today"),
    f(
        "source",
        T::Choice(CONSENT_SOURCES),
        "how: form, call, email, meeting, import, contract or other",
    ),
    f("notes", T::Text, "what they said, and where the proof is"),
];

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Company,
        Kind::Person,
        Kind::Deal,
        Kind::Activity,
        Kind::Ticket,
        Kind::Campaign,
        Kind::Product,
        Kind::LineItem,
        Kind::Consent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Company => "company",
            Kind::Person => "person",
            Kind::Deal => "deal",
            Kind::Activity => "activity",
            Kind::Ticket => "ticket",
            Kind::Campaign => "campaign",
            Kind::Product => "product",
            Kind::LineItem => "line_item",
            Kind::Consent => "consent",
            Kind::Custom(c) => c.as_str(),
        }
    }

    /// A custom kind by its name; `None` if the name is not one a kind
    /// may take, or is a built-in kind's.
    pub fn custom(name: &str) -> Option<Kind> {
        if !is_kind_name(name) || builtin(name).is_some() {
            return None;
        }
        intern_kind(name, true).map(|(k, _)| Kind::Custom(k))
    }

    /// A kind as an address or a query names it: a built-in kind (any case,
    /// plurals too), or a custom kind this process has read a statement or
    /// record of. Unlike parsing, it never adds a name, so that requests
    /// cannot grow the table.
    pub fn known(s: &str) -> Result<Kind, UnknownKind> {
        let lower = s.trim().to_ascii_lowercase();
        builtin(&lower)
            .or_else(|| intern_kind(&lower, false).map(|(k, _)| Kind::Custom(k)))
            .ok_or_else(|| UnknownKind(s.to_string()))
    }

    pub fn is_custom(self) -> bool {
        matches!(self, Kind::Custom(_))
    }

    /// The built-in fields: a custom kind has its title, `name`, only
    /// (the rest are its schema's custom fields).
    pub fn fields(self) -> &'static [FieldDef] {
        match self {
            Kind::Company => COMPANY,
            Kind::Person => PERSON,
            Kind::Deal => DEAL,
            Kind::Activity => ACTIVITY,
            Kind::Ticket => TICKET,
            Kind::Campaign => CAMPAIGN,
            Kind::Product => PRODUCT,
            Kind::LineItem => LINE_ITEM,
            Kind::Consent => CONSENT,
            Kind::Custom(_) => CUSTOM,
        }
    }

    /// This kind alone, as the kinds a reference may point at.
    pub fn only(self) -> &'static [Kind] {
        match self {
            Kind::Company => &[Kind::Company],
            Kind::Person => &[Kind::Person],
            Kind::Deal => &[Kind::Deal],
            Kind::Activity => &[Kind::Activity],
            Kind::Ticket => &[Kind::Ticket],
            Kind::Campaign => &[Kind::Campaign],
            Kind::Product => &[Kind::Product],
            Kind::LineItem => &[Kind::LineItem],
            Kind::Consent => &[Kind::Consent],
            Kind::Custom(c) => intern_kind(c.as_str(), false).map_or(&[], |(_, only)| only),
        }
    }

    pub fn field(self, name: &str) -> Option<&'static FieldDef> {
        self.fields().iter().find(|d| d.name == name)
    }

    /// The field that names a record of this kind in lists and references.
    pub fn title_field(self) -> &'static str {
        match self {
            Kind::Deal | Kind::Ticket => "title",
            Kind::Activity => "subject",
            Kind::Consent => "purpose",
            _ => "name",
        }
    }

    /// The fields a table of this kind shows by default.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Kind::Company => &["name", "domain", "industry", "owner"],
            Kind::Person => &["name", "emails", "title", "company"],
            Kind::Deal => &["title", "company", "stage", "amount", "currency", "close"],
            Kind::Activity => &["type", "subject", "when", "due", "done", "about"],
            Kind::Ticket => &["title", "status", "priority", "company", "owner"],
            Kind::Campaign => &["name", "channel", "start", "end", "budget", "currency"],
            Kind::Product => &["name", "sku", "price", "currency", "category", "active"],
            Kind::LineItem => &["name", "deal", "quantity", "price", "currency", "discount"],
            Kind::Consent => &["person", "purpose", "status", "date", "source"],
            Kind::Custom(_) => CUSTOM_COLUMNS,
        }
    }
}

/// A rule that involves more than one field, broken by a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("{kind} needs a {field}")]
    Missing { kind: Kind, field: &'static str },
    #[error("{amount} needs a currency: add one as an ISO 4217 code such as EUR")]
    AmountWithoutCurrency { amount: &'static str },
    #[error("the campaign ends ({end}) before it starts ({start})")]
    EndsBeforeStart { start: String, end: String },
    #[error("only a task can be done; this is a {0}")]
    DoneOnNonTask(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("the meeting ends ({ends}) before it starts ({when})")]
    MeetingEndsBeforeStart { when: String, ends: String },
}

/// Checks the rules that span fields, on a record's complete field set.
pub fn check_record(
    kind: Kind,
    fields: &std::collections::BTreeMap<String, crate::FieldValue>,
) -> Result<(), RuleError> {
    for def in kind.fields() {
        if def.required && !fields.contains_key(def.name) {
            return Err(RuleError::Missing {
                kind,
                field: def.name,
            });
        }
    }
    for amount in ["amount", "budget", "price"] {
        if kind.field(amount).is_some_and(|d| !d.custom)
            && fields.contains_key(amount)
            && !fields.contains_key("currency")
        {
            return Err(RuleError::AmountWithoutCurrency { amount });
        }
    }
    let text = |f: &str| fields.get(f).and_then(crate::FieldValue::as_text);
    if let (Some(start), Some(end)) = (text("start"), text("end"))
        && end < start
    {
        return Err(RuleError::EndsBeforeStart {
            start: start.into(),
            end: end.into(),
        });
    }
    if kind == Kind::Activity
        && fields.get("done") == Some(&crate::FieldValue::Flag(true))
        && let Some(ty) = text("type")
        && ty != "task"
    {
        return Err(RuleError::DoneOnNonTask(ty.into()));
    }
    if kind == Kind::LineItem
        && let Some(q) = text("quantity")
        && q.parse::<crate::Decimal>()
            .is_ok_and(|q| q.ten_thousandths() <= 0)
    {
        return Err(RuleError::Invalid {
            field: "quantity",
            message: format!("`{q}`: a line sells more than nothing (e.g. 1 or 2.5)"),
        });
    }
    if kind == Kind::Activity {
        let invalid = |field: &'static str, message: String| RuleError::Invalid { field, message };
        if let Some(z) = text("zone") {
            crate::calendar::zone(z).map_err(|e| invalid("zone", e))?;
        }
        if let Some(r) = text("repeat") {
            r.parse::<crate::calendar::Recurrence>()
                .map_err(|e| invalid("repeat", format!("`{r}`: {e}")))?;
        }
        crate::calendar::skipped(fields.get("skip")).map_err(|e| invalid("skip", e))?;
        if let Some(r) = text("remind") {
            r.parse::<crate::calendar::Remind>()
                .map_err(|e| invalid("remind", format!("`{r}`: {e}")))?;
        }
        let instant = |f: &str| text(f).and_then(|t| t.parse::<jiff::Timestamp>().ok());
        if let (Some(when), Some(ends)) = (instant("when"), instant("ends"))
            && ends < when
        {
            return Err(RuleError::MeetingEndsBeforeStart {
                when: when.to_string(),
                ends: ends.to_string(),
            });
        }
    }
    Ok(())
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown record kind `{0}`: use one of company, person, deal, activity, ticket, campaign, \
     product, line_item, consent, or the name of a kind your space's admins added (up to 40 lower-case letters, digits and _)"
)]
pub struct UnknownKind(pub String);

/// A built-in kind by its singular or plural name (lower case).
fn builtin(lower: &str) -> Option<Kind> {
    Some(match lower {
        "company" | "companies" => Kind::Company,
        "person" | "people" | "persons" | "contact" | "contacts" => Kind::Person,
        "deal" | "deals" => Kind::Deal,
        "activity" | "activities" => Kind::Activity,
        "ticket" | "tickets" => Kind::Ticket,
        "campaign" | "campaigns" => Kind::Campaign,
        "product" | "products" => Kind::Product,
        "line_item" | "line_items" | "line-item" | "line-items" | "lineitem" | "lineitems" => {
            Kind::LineItem
        }
        "consent" | "consents" => Kind::Consent,
        _ => return None,
    })
}

impl FromStr for Kind {
    type Err = UnknownKind;

    /// Accepts a built-in kind's singular and plural names in any case
    /// (`Deals`, `people`), and any name a custom kind may take: whether a
    /// space defines it is its schema's to say (`Schema::kind`), so that a
    /// record of a kind whose statement has not arrived yet is kept.
    fn from_str(s: &str) -> Result<Self, UnknownKind> {
        let lower = s.trim().to_ascii_lowercase();
        builtin(&lower)
            .or_else(|| Kind::custom(&lower))
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_from_their_names_and_plurals() {
        for k in Kind::ALL {
            assert_eq!(k.as_str().parse::<Kind>(), Ok(k));
        }
        assert_eq!("People".parse::<Kind>(), Ok(Kind::Person));
        let contract = "Contract".parse::<Kind>().expect("a custom kind's name");
        assert!(contract.is_custom());
        assert_eq!(contract.as_str(), "contract");
        assert_eq!("contract".parse::<Kind>(), Ok(contract));
        assert_eq!(contract.only(), &[contract]);
        assert_eq!(contract.title_field(), "name");
        for bad in ["site visit", "9lives", "", "ä"] {
            assert!(bad.parse::<Kind>().is_err(), "{bad}");
        }
        assert_eq!(Kind::custom("deal"), None, "a built-in name");
        assert_eq!(Kind::known("Contract"), Ok(contract));
        assert_eq!(Kind::known("deals"), Ok(Kind::Deal));
        assert!(
            Kind::known("never_seen_kind_name").is_err(),
            "looked up, not added"
        );
        assert!(Kind::known("never_seen_kind_name").is_err());
        let json = serde_json::to_string(&[Kind::Deal, contract]).expect("to json");
        assert_eq!(json, r#"["deal","contract"]"#);
        let back: Vec<Kind> = serde_json::from_str(&json).expect("from json");
        assert_eq!(back, [Kind::Deal, contract]);
    }

    #[test]
    fn every_kind_has_its_title_field_and_columns() {
        for k in Kind::ALL {
            assert!(k.field(k.title_field()).is_some(), "{k}");
            for c in k.columns() {
                assert!(k.field(c).is_some(), "{k}.{c}");
            }
        }
    }

    #[test]
    fn cross_field_rules() {
        use crate::FieldValue::Text;
        let fields = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Text(v.to_string())))
                .collect()
        };
        let deal = fields(&[("title", "X"), ("company", "c"), ("stage", "lead")]);
        assert_eq!(check_record(Kind::Deal, &deal), Ok(()));
        let mut no_currency = deal.clone();
        no_currency.insert("amount".into(), Text("5.00".into()));
        assert!(matches!(
            check_record(Kind::Deal, &no_currency),
            Err(RuleError::AmountWithoutCurrency { .. })
        ));
        assert_eq!(
            check_record(Kind::Deal, &fields(&[("title", "X")])),
            Err(RuleError::Missing {
                kind: Kind::Deal,
                field: "company"
            })
        );
        let campaign = fields(&[
            ("name", "C"),
            ("start", "2026-05-01"),
            ("end", "2026-04-01"),
        ]);
        assert!(matches!(
            check_record(Kind::Campaign, &campaign),
            Err(RuleError::EndsBeforeStart { .. })
        ));
    }

    #[test]
    fn every_stage_has_a_probability() {
        for s in DEAL_STAGES {
            assert!(stage_probability(s).is_some());
        }
    }
}
