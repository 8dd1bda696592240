//! Rapport's data model: record kinds and their fields, validation of what
//! users type, and the mapping of a record onto an Automerge document.
//!
//! Sans-IO: nothing here touches the disk, the network or the clock.

pub mod calendar;
pub mod consent;
pub mod custom;
pub mod doc;
pub mod id;
pub mod products;
pub mod schema;
pub mod space;
pub mod stored;
pub mod value;

pub use custom::{CustomField, CustomKindDef, CustomType, Schema, SchemaChange, SchemaEntry};
pub use doc::{DeleteRace, DocError, Edit, RecordView};
pub use id::RecordId;
pub use schema::{CustomKind, FieldDef, FieldType, Kind, RuleError, check_record};
pub use space::{Identity, Member, Removal, Role, SpaceId, SpaceState, SpaceView};
pub use value::{Decimal, FieldValue, InvalidValue, ParseContext};

/// Re-exported so that callers use the exact Automerge this crate maps onto.
pub use automerge;
