//! The Rapport node: the local CRM engine over the store ([`Repo`]), and
//! (with the sync work) the daemon that shares it with peers.
//!
//! Every operation a user can do goes through [`Repo`]; the CLI only parses
//! arguments, calls it and prints. That keeps one way to do each thing when
//! the HTTP API and the web UI arrive.

pub mod addresses;
pub mod api;
pub mod calendar;
pub mod consent;
pub mod datadir;
pub mod demo;
pub mod duplicates;
pub mod env;
pub mod erasure;
pub mod filter;
pub mod import;
pub mod ingest;
pub mod integrations;
pub mod limits;
pub mod live;
pub mod merge;
pub mod metrics;
pub mod net;
pub mod ops;
pub mod parallel;
pub mod pipeline;
pub mod privacy;
pub mod products;
pub mod recovery;
pub mod replica;
pub mod repo;
pub mod reports;
pub mod retention;
pub mod schema;
pub mod search;
pub mod spaces;
pub mod timeline;

use std::path::{Path, PathBuf};

use rapport_model::{DocError, InvalidValue, Kind, RecordId, RuleError};

pub use repo::{OpenMode, Repo};

/// Everything that can go wrong in a node operation. Each message says what
/// is wrong and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(
        "{path} is not a Rapport data directory (it has other files and no rapport.json); \
         choose another data directory"
    )]
    NotRapportDir { path: PathBuf },
    #[error(
        "no Rapport data in {path} yet; initialise it (or add a record) to create it, \
         or choose an existing data directory"
    )]
    NotInitialized { path: PathBuf },
    #[error("{path} is damaged: {reason}; {}", rapport_store::REPAIR_HINT)]
    Damaged { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(Box<rapport_store::StoreError>),
    #[error("device key: {0}")]
    Key(#[from] rapport_trust::KeyError),
    #[error("signing a change failed: {0}")]
    Sign(#[from] rapport_trust::VerifyError),
    #[error("signing this device's addresses failed: {0}")]
    SignAddresses(#[from] rapport_trust::AddressError),
    #[error("record document: {0}")]
    Doc(Box<DocError>),
    #[error("{kind} has no field `{field}`; its fields are: {known}")]
    UnknownField {
        kind: Kind,
        field: String,
        known: Box<str>,
    },
    /// A schema change refused, or a field the schema retired.
    #[error("{0}")]
    Schema(String),
    #[error("`{field}` cannot be cleared: every {kind} needs one")]
    RequiredField { kind: Kind, field: String },
    #[error(transparent)]
    Invalid(Box<InvalidValue>),
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("no record matches `{0}`")]
    NotFound(String),
    /// Something other than a record is not there; says what.
    #[error("{0}")]
    Missing(String),
    #[error("`{reference}` matches several records; use the id (or a longer prefix):\n{}", list_candidates(.candidates))]
    Ambiguous {
        reference: String,
        candidates: Vec<(RecordId, Kind, String)>,
    },
    #[error(transparent)]
    WrongKind(Box<WrongKind>),
    #[error("{kind} `{title}` is deleted; restoring {id} brings it back")]
    Deleted {
        id: RecordId,
        kind: Kind,
        title: String,
    },
    #[error("{title} is in space {theirs}; a record may refer only to records of its own space")]
    CrossSpace { title: String, theirs: String },
    #[error("this device is not a member of space {0}")]
    NotMember(String),
    /// The space's rules do not let this device do that; says why.
    #[error("{0}")]
    Forbidden(String),
    #[error("invite: {0}")]
    Invite(String),
    #[error("no space matches `{0}`")]
    UnknownSpace(String),
    /// A filter that cannot be answered; says why.
    #[error("{0}")]
    Filter(String),
    #[error("`{0}` is not FIELD=VALUE (for example name=Acme)")]
    BadAssignment(String),
    #[error("{0}")]
    Export(String),
}

// Errors travel up every call; keep them small (large fields are boxed).
const _: () = assert!(std::mem::size_of::<NodeError>() <= 64);

/// A reference that names a record of a kind the field does not take.
#[derive(Debug, thiserror::Error)]
#[error("`{reference}` is a {found} ({title}), but {field} must refer to a {}", expected_kinds(.expected))]
pub struct WrongKind {
    pub reference: String,
    pub found: Kind,
    pub title: String,
    pub field: String,
    pub expected: Vec<Kind>,
}

impl From<rapport_store::StoreError> for NodeError {
    fn from(e: rapport_store::StoreError) -> Self {
        NodeError::Store(Box::new(e))
    }
}

impl From<DocError> for NodeError {
    fn from(e: DocError) -> Self {
        NodeError::Doc(Box::new(e))
    }
}

impl From<InvalidValue> for NodeError {
    fn from(e: InvalidValue) -> Self {
        NodeError::Invalid(Box::new(e))
    }
}

impl NodeError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        NodeError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

fn list_candidates(c: &[(RecordId, Kind, String)]) -> String {
    c.iter()
        .map(|(id, kind, title)| format!("  {id}  {:<8}  {title}", kind.as_str()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn expected_kinds(kinds: &[Kind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Splits `FIELD=VALUE` (as given to `--set` and `--where`).
pub fn parse_assignment(s: &str) -> Result<(String, String), NodeError> {
    match s.split_once('=') {
        Some((f, v)) if !f.trim().is_empty() => {
            Ok((f.trim().to_ascii_lowercase(), v.trim().to_string()))
        }
        _ => Err(NodeError::BadAssignment(s.to_string())),
    }
}
