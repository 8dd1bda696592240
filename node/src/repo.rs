//! [`Repo`]: the local CRM. Creates, edits, deletes, finds and lists
//! records; every change is signed by the device key and durable in the
//! store before a call returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use rapport_model::automerge::AutoCommit;
use rapport_model::id::{is_id_prefix, normalize_prefix};
use rapport_model::value::{parse_value, split_list};
use rapport_model::{
    Edit, FieldDef, FieldValue, Kind, ParseContext, RecordId, RecordView, SpaceId, SpaceView,
    check_record, doc,
};
use rapport_proto::{MAX_CHANGE_BYTES, SignedChange};
use rapport_store::fields::Item;
use rapport_store::{Indexed, RecordWrite, Store, StoreError};
use rapport_trust::{DeviceId, DeviceKey};

use crate::NodeError;
use crate::filter::{Compare, Filter, Test};

/// A document and its heads (change hashes).
pub type DocHeads = (RecordId, Vec<[u8; 32]>);
use crate::datadir::{self, DirState, Profile};
use crate::env::{Environment, System};

/// How long to wait for another Rapport process to release the store.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// How many candidates an ambiguous reference lists.
const MAX_CANDIDATES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the data directory (with a new device key) if it is missing.
    Create,
    /// Fail with a clear message if there is no Rapport data yet.
    Existing,
}

pub struct Repo {
    dir: PathBuf,
    profile: Mutex<Profile>,
    key: DeviceKey,
    store: Store,
    writes: Mutex<()>,
    /// Serialises read-modify-writes of the `peers` tree (address
    /// announcements and tickets arrive from several sessions at once).
    peers: Mutex<()>,
    observer: Mutex<Option<Observer>>,
    env: Arc<dyn Environment>,
    /// Open import sessions (`import`).
    imports: crate::import::Sessions,
    schemas: crate::schema::Schemas,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("dir", &self.dir)
            .field("device", &self.key.device_id())
            .finish_non_exhaustive()
    }
}

/// A change this node made to a shared space, for the daemon to announce.
#[derive(Debug, Clone)]
pub struct LocalChange {
    pub space: SpaceId,
    pub record: RecordId,
    pub heads: Vec<[u8; 32]>,
    /// Encoded signed changes.
    pub changes: Vec<Vec<u8>>,
}

/// Told about every local change to a shared space.
pub type Observer = Arc<dyn Fn(LocalChange) + Send + Sync>;

/// A user's field assignment before parsing: `("amount", "1200.50")`.
pub type Input = (String, String);

thread_local! {
    /// The API token the writes on this thread are made for (see
    /// [`with_via`]).
    static VIA: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with every record change it writes on this thread naming
/// `via` (an API token's name) in its signed message, so that the
/// record's timeline says which integration made it. A scoped setting
/// rather than an argument: an operation writes through several `Repo`
/// methods, and every one of them must say it.
pub fn with_via<T>(via: Option<&str>, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<String>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let before = self.0.take();
            VIA.with(|v| *v.borrow_mut() = before);
        }
    }
    let before = VIA.with(|v| v.replace(via.map(str::to_string)));
    let _reset = Reset(before);
    f()
}

fn via() -> Option<String> {
    VIA.with(|v| v.borrow().clone())
}

thread_local! {
    /// The one space the operations on this thread may see (see
    /// [`with_scope`]).
    static SCOPE: std::cell::Cell<Option<SpaceId>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` seeing only the records of `space` when finding records by
/// reference (`resolve`, and references inside inputs and filters): a
/// record of another space is not found, is never a candidate of an
/// ambiguous name, and its title appears in no error. For an API token
/// limited to one space; a scoped setting for the reason [`with_via`] is.
pub fn with_scope<T>(space: Option<SpaceId>, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<SpaceId>);
    impl Drop for Reset {
        fn drop(&mut self) {
            SCOPE.with(|s| s.set(self.0));
        }
    }
    let _reset = Reset(SCOPE.with(|s| s.replace(space)));
    f()
}

pub(crate) fn in_scope(v: &RecordView) -> bool {
    SCOPE.with(|s| s.get()).is_none_or(|space| v.space == space)
}

impl Repo {
    pub fn open(dir: &Path, mode: OpenMode) -> Result<Self, NodeError> {
        Self::open_in(dir, mode, Arc::new(System))
    }

    /// Opens with another clock and random source (the simulation's).
    ///
    /// A store that a crash left behind the journal gets the journal's tail
    /// replayed; one that sled cannot open (or that lost its data) is moved
    /// aside and rebuilt from the journal.
    pub fn open_in(
        dir: &Path,
        mode: OpenMode,
        env: Arc<dyn Environment>,
    ) -> Result<Self, NodeError> {
        let store = match datadir::inspect(dir)? {
            DirState::Rapport => crate::recovery::open_existing(dir, env.clone())?,
            DirState::Foreign => {
                return Err(NodeError::NotRapportDir {
                    path: dir.to_path_buf(),
                });
            }
            DirState::Missing | DirState::Empty => match mode {
                // The journal and store first, the profile last: a crash in
                // between leaves a directory that is still "not set up".
                OpenMode::Create => {
                    datadir::create_private_dir(dir)?;
                    let journal = crate::recovery::open_journal(dir, true)?;
                    let store = open_store(&dir.join(datadir::STORE_DIR), true, Some(journal))?;
                    let profile = datadir::create(dir, None, None, env.as_ref())?;
                    tracing::info!(dir = %dir.display(), device = %profile.device, "created data directory");
                    store
                }
                OpenMode::Existing => {
                    return Err(NodeError::NotInitialized {
                        path: dir.to_path_buf(),
                    });
                }
            },
        };
        let repo = Self::with_store(dir, store, env)?;
        repo.replay_journal_tail()?;
        // Erasures a crash interrupted, and receipts owed (`erasure`).
        let erasing = repo.store().any_erased()
            || repo.dir().join(crate::erasure::LOCAL_LOG).exists()
            || repo
                .store()
                .spaces()?
                .iter()
                .any(|v| !v.erasures.is_empty() || !v.rebases.is_empty());
        if erasing && let Err(e) = repo.finish_erasures() {
            tracing::warn!("finishing erasures at start-up failed: {e}");
        }
        // Changes that waited for their dependencies too long go (entries
        // from before their start was kept start now).
        let now = repo.now().as_second().max(0).cast_unsigned();
        repo.store().date_waiting(now)?;
        repo.expire_waiting()?;
        Ok(repo)
    }

    /// A `Repo` over an opened store, with the data directory's profile
    /// and key.
    pub(crate) fn with_store(
        dir: &Path,
        store: Store,
        env: Arc<dyn Environment>,
    ) -> Result<Self, NodeError> {
        let (profile, key) = datadir::load(dir)?;
        Ok(Repo {
            dir: dir.to_path_buf(),
            profile: Mutex::new(profile),
            key,
            store,
            writes: Mutex::new(()),
            peers: Mutex::new(()),
            observer: Mutex::new(None),
            env,
            imports: Default::default(),
            schemas: Default::default(),
        })
    }

    /// Sets the user's name and organisation (those given), durably.
    pub fn set_identity(&self, name: Option<String>, org: Option<String>) -> Result<(), NodeError> {
        if name.is_none() && org.is_none() {
            return Ok(());
        }
        let mut profile = self.profile.lock().unwrap_or_else(|p| p.into_inner());
        if name.is_some() {
            profile.name = name;
        }
        if org.is_some() {
            profile.org = org;
        }
        datadir::save_profile(&self.dir, &profile)
    }

    /// Sets the region phone numbers are read in (`DE`); an unknown code
    /// is refused.
    pub fn set_region(&self, region: &str) -> Result<(), NodeError> {
        let code = region.trim().to_ascii_uppercase();
        if code.parse::<phonenumber::country::Id>().is_err() {
            return Err(NodeError::Missing(format!(
                "--region {region}: expected a two-letter country code such as DE, US or GB"
            )));
        }
        let mut profile = self.profile.lock().unwrap_or_else(|p| p.into_inner());
        profile.region = Some(code);
        datadir::save_profile(&self.dir, &profile)
    }

    /// Makes this node a relay (kept in its profile): from now on it
    /// refuses to author records or spaces.
    pub fn become_relay(&self) -> Result<(), NodeError> {
        let mut profile = self.profile.lock().unwrap_or_else(|p| p.into_inner());
        if !profile.relay {
            profile.relay = true;
            datadir::save_profile(&self.dir, &profile)?;
        }
        Ok(())
    }

    /// Refuses authoring on a relay node.
    pub(crate) fn check_authoring(&self) -> Result<(), NodeError> {
        if self.profile().relay {
            return Err(NodeError::Forbidden(
                "this node is a relay: it stores and forwards shared spaces and authors no records; use another data directory to work on records".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn import_sessions(&self) -> &crate::import::Sessions {
        &self.imports
    }

    pub(crate) fn schemas(&self) -> &crate::schema::Schemas {
        &self.schemas
    }

    /// The profile, locked for a change that is saved before the lock goes.
    pub(crate) fn profile_mut(&self) -> std::sync::MutexGuard<'_, Profile> {
        self.profile.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn profile(&self) -> Profile {
        self.profile
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn device_id(&self) -> DeviceId {
        self.key.device_id()
    }

    /// The store itself, for the node's own modules; tests reach it with
    /// the `testing` feature. Clients use `ops` and the reads below.
    #[cfg(not(feature = "testing"))]
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The store itself (the `testing` feature: for tests that look under
    /// the operations).
    #[cfg(feature = "testing")]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Every document of a space with its heads, in id order: what
    /// reconciliation compares with a peer (benchmarks check convergence
    /// with it).
    pub fn space_heads(&self, space: SpaceId) -> Result<Vec<DocHeads>, NodeError> {
        Ok(self.store.space_items(space).collect::<Result<_, _>>()?)
    }

    /// Signed changes stored, all spaces together.
    pub fn change_count(&self) -> usize {
        self.store.change_count()
    }

    /// Every signed change stored for a document.
    pub fn signed_changes(&self, id: RecordId) -> Result<Vec<SignedChange>, NodeError> {
        let mut out = Vec::new();
        for hash in self.store.change_hashes(id)? {
            if let Some(c) = self.store.signed_change(&hash)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// One record as stored, if this node holds it.
    pub fn view(&self, id: RecordId) -> Result<Option<RecordView>, NodeError> {
        Ok(self.store.view(id)?)
    }

    /// Records of a space (the private one too), deleted ones included.
    pub fn space_record_count_of(&self, space: SpaceId) -> usize {
        self.store.space_items(space).count()
    }

    /// Records held, deleted ones included.
    pub fn record_count(&self) -> usize {
        self.store.record_count()
    }

    /// The floor of this store's writes on this machine: what sled alone
    /// takes to write what the store holds (see [`Store::write_floor`]).
    pub fn store_write_floor(
        &self,
        into: &Path,
        batches: usize,
    ) -> Result<rapport_store::WriteFloor, NodeError> {
        Ok(self.store.write_floor(into, batches)?)
    }

    /// The bytes of the field index's keys: what it adds to the store
    /// before sled's own overhead (`rapport bench store` reports it).
    pub fn field_index_bytes(&self) -> Result<u64, NodeError> {
        Ok(self.store.field_index_bytes()?)
    }

    /// How a change's author is shown: "user (organisation)", as this
    /// device's profile says or as an admin certified it in a space; the
    /// short device id when nobody did.
    /// `spaces`: the spaces to look certifications up in (`Repo::spaces`).
    pub fn author_label(&self, device: Option<DeviceId>, spaces: &[SpaceView]) -> String {
        match device {
            Some(d) if d == self.key.device_id() => {
                let profile = self.profile();
                let name = profile.name.as_deref().unwrap_or("me");
                match &profile.org {
                    Some(org) => format!("{name} ({org})"),
                    None => name.to_string(),
                }
            }
            Some(d) => {
                let hex = d.to_string();
                match spaces.iter().find_map(|s| s.entry(&hex)) {
                    Some(m) if !m.user.is_empty() || !m.org.is_empty() => {
                        member_label(&m.user, &m.org, &d.short())
                    }
                    _ => format!("device {}", d.short()),
                }
            }
            None => "unknown author".into(),
        }
    }

    pub(crate) fn key(&self) -> &DeviceKey {
        &self.key
    }

    /// The time, by this node's clock.
    pub(crate) fn now(&self) -> Timestamp {
        self.env.now()
    }

    /// `N` unpredictable bytes from this node's random source.
    pub(crate) fn random<const N: usize>(&self) -> Result<[u8; N], NodeError> {
        let mut b = [0u8; N];
        self.env.fill(&mut b)?;
        Ok(b)
    }

    pub(crate) fn context(&self) -> ParseContext {
        ParseContext {
            now: self.now(),
            tz: TimeZone::system(),
        }
    }

    // ----- finding records -------------------------------------------------

    /// Finds the record a user means: an id, a unique id prefix, or a title
    /// (exact, then prefix; case-insensitive). Deleted records are found too.
    /// A record merged away resolves to its survivor.
    pub fn resolve(&self, reference: &str) -> Result<RecordView, NodeError> {
        self.resolve_among(reference, &[], "")
    }

    /// [`Repo::resolve`], and the record the reference named when that
    /// was merged away (so that `show` can say so).
    pub fn resolve_noting(
        &self,
        reference: &str,
    ) -> Result<(RecordView, Option<RecordView>), NodeError> {
        let found = self.find_among(reference, &[], "")?;
        self.follow_merge(found)
    }

    fn follow_merge(
        &self,
        found: RecordView,
    ) -> Result<(RecordView, Option<RecordView>), NodeError> {
        if found.merged_into.is_none() {
            return Ok((found, None));
        }
        let end = self.survivor(found.id)?;
        match self.store.view(end)? {
            Some(v) if end != found.id => Ok((v, Some(found))),
            _ => Ok((found, None)),
        }
    }

    /// Like [`Repo::resolve`], but only records of `kinds` (all if empty)
    /// qualify; `field` names what is being filled in, for the error.
    fn resolve_among(
        &self,
        reference: &str,
        kinds: &[Kind],
        field: &str,
    ) -> Result<RecordView, NodeError> {
        let found = self.find_among(reference, kinds, field)?;
        Ok(self.follow_merge(found)?.0)
    }

    /// The record `reference` names, merged away or not.
    fn find_among(
        &self,
        reference: &str,
        kinds: &[Kind],
        field: &str,
    ) -> Result<RecordView, NodeError> {
        let r = reference.trim();
        if r.is_empty() {
            return Err(NodeError::NotFound(reference.into()));
        }
        if let Ok(id) = r.parse::<RecordId>()
            && let Some(v) = self.store.view(id)?
            && in_scope(&v)
        {
            return self.check_kind(v, reference, kinds, field);
        }
        let mut ids = Vec::new();
        if is_id_prefix(r) && r.len() >= 4 {
            ids = self
                .store
                .ids_with_prefix(&normalize_prefix(r), MAX_CANDIDATES + 1)?;
        }
        if ids.is_empty() {
            ids = self.store.ids_by_title(r, true, MAX_CANDIDATES + 1)?;
        }
        if ids.is_empty() {
            ids = self.store.ids_by_title(r, false, MAX_CANDIDATES + 1)?;
        }
        let mut views = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(v) = self.store.view(id)?
                && in_scope(&v)
            {
                views.push(v);
            }
        }
        let wrong_kind = views.first().cloned();
        if !kinds.is_empty() {
            views.retain(|v| kinds.contains(&v.kind));
        }
        if views.len() > 1 {
            let live: Vec<RecordView> = views.iter().filter(|v| !v.deleted).cloned().collect();
            if live.len() == 1 {
                views = live;
            }
        }
        match views.len() {
            0 => match wrong_kind {
                Some(v) => self.check_kind(v, reference, kinds, field),
                None => Err(NodeError::NotFound(reference.into())),
            },
            1 => Ok(views.remove(0)),
            _ => Err(NodeError::Ambiguous {
                reference: reference.into(),
                candidates: views
                    .iter()
                    .take(MAX_CANDIDATES)
                    .map(|v| (v.id, v.kind, v.title()))
                    .collect(),
            }),
        }
    }

    fn check_kind(
        &self,
        v: RecordView,
        reference: &str,
        kinds: &[Kind],
        field: &str,
    ) -> Result<RecordView, NodeError> {
        if kinds.is_empty() || kinds.contains(&v.kind) {
            return Ok(v);
        }
        Err(NodeError::WrongKind(Box::new(crate::WrongKind {
            reference: reference.into(),
            found: v.kind,
            title: v.title(),
            field: field.into(),
            expected: kinds.to_vec(),
        })))
    }

    /// Records of `kind` that pass every filter (`(field, value)`, the
    /// field ending in its comparison: see [`crate::filter`]); deleted
    /// ones only if `deleted`, live ones otherwise.
    pub fn list(
        &self,
        kind: Kind,
        filters: &[Input],
        deleted: bool,
    ) -> Result<Vec<RecordView>, NodeError> {
        let ctx = self.context();
        let mut wanted = Vec::with_capacity(filters.len());
        for (name, raw) in filters {
            let (field, compare) = Compare::split(name);
            let def = self.field_in(None, kind, field)?;
            wanted.push(Filter::new(def, compare, raw, |raw| {
                self.parse_input(def, raw, &ctx, None)
            })?);
        }
        let keep = |v: &RecordView| {
            v.kind == kind && v.deleted == deleted && wanted.iter().all(|f| f.keeps(v))
        };
        let mut out = Vec::new();
        match self.candidates(kind, &wanted)? {
            Some(ids) => {
                for id in ids {
                    if let Some(v) = self.store.view(id)?
                        && keep(&v)
                    {
                        out.push(v);
                    }
                }
            }
            None => {
                for v in self.store.views_of_kind(kind) {
                    let v = v?;
                    if keep(&v) {
                        out.push(v);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The records that may pass the filters, read from the index that
    /// narrows them best (each then checked against every filter), in id
    /// order; `None` when no filter has an index (only `!=`), and every
    /// record of the kind must be read.
    fn candidates(
        &self,
        kind: Kind,
        wanted: &[Filter],
    ) -> Result<Option<Vec<RecordId>>, NodeError> {
        // A reference (`company=Acme`): the reverse-link index.
        let by_reference = wanted.iter().find_map(|f| match &f.test {
            Test::Equal(w) => {
                kind.field(f.field)?.ty.ref_kinds()?;
                w.as_text()
                    .or(w.as_list().first().map(String::as_str))?
                    .parse::<RecordId>()
                    .ok()
            }
            _ => None,
        });
        if let Some(target) = by_reference {
            let mut ids: Vec<RecordId> = self
                .store
                .backlinks(target)?
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            ids.sort();
            ids.dedup();
            return Ok(Some(ids));
        }
        // Then the field index, from the narrowest kind of filter: an
        // equality, a prefix, a range, text inside values.
        for f in wanted {
            if let Test::Equal(w) = &f.test {
                let item = match w {
                    FieldValue::List(l) => l.first().map(|s| Item::of_text(s)),
                    other => Item::of(other).into_iter().next(),
                };
                if let Some(item) = item {
                    return Ok(Some(self.store.ids_with(kind, f.field, &item)?));
                }
            }
        }
        for f in wanted {
            if let Test::StartsWith(t) = &f.test {
                return Ok(Some(self.store.ids_with_text_prefix(kind, f.field, t)?));
            }
        }
        let bound = wanted.iter().find_map(|f| match &f.test {
            Test::Bound { item, .. } => Some((f.field, f.list, item)),
            _ => None,
        });
        if let Some((field, list, first)) = bound {
            // Both ends of a range on the field, when they are of a sort
            // and the field holds one value (on a list, each end may hold
            // for another item: one end finds every candidate).
            let end = |want: Compare| {
                wanted.iter().find_map(|f| match &f.test {
                    Test::Bound { compare, item, .. }
                        if f.field == field
                            && *compare == want
                            && matches!(item, Item::Number(_))
                                == matches!(first, Item::Number(_)) =>
                    {
                        Some(item)
                    }
                    _ => None,
                })
            };
            let (low, high) = match (end(Compare::AtLeast), end(Compare::AtMost)) {
                (Some(low), Some(_)) if list => (Some(low), None),
                ends => ends,
            };
            return Ok(Some(self.store.ids_between(kind, field, low, high)?));
        }
        for f in wanted {
            if let Test::Contains(t) = &f.test {
                return Ok(Some(self.store.ids_maybe_containing(kind, f.field, t)?));
            }
        }
        Ok(None)
    }

    /// Every record (of one kind, or all), deleted ones included.
    pub fn all(
        &self,
        kind: Option<Kind>,
    ) -> impl Iterator<Item = Result<RecordView, NodeError>> + '_ {
        // Custom kinds too: those of the records the store holds.
        let kinds = match kind {
            Some(k) => Ok(vec![k]),
            None => self.store.kinds(),
        };
        let (kinds, failed) = match kinds {
            Ok(k) => (k, None),
            Err(e) => (Vec::new(), Some(Err(NodeError::from(e)))),
        };
        failed.into_iter().chain(
            kinds
                .into_iter()
                .flat_map(|k| self.store.views_of_kind(k))
                .map(|r| r.map_err(NodeError::from)),
        )
    }

    /// Records that refer to `id`, with the referring field.
    pub fn related(&self, id: RecordId) -> Result<Vec<(String, RecordView)>, NodeError> {
        let mut out = Vec::new();
        for (source, field) in self.store.backlinks(id)? {
            if let Some(v) = self.store.view(source)? {
                out.push((field, v));
            }
        }
        Ok(out)
    }

    /// The record's Automerge document.
    pub fn load_doc(&self, id: RecordId) -> Result<AutoCommit, NodeError> {
        let bytes = self.store.doc(id)?.ok_or_else(|| NodeError::Damaged {
            path: self.dir.join(datadir::STORE_DIR),
            reason: format!("record {id} is indexed but its document is missing"),
        })?;
        let doc = rapport_model::stored::load(&bytes).map_err(|e| NodeError::Damaged {
            path: self.dir.join(datadir::STORE_DIR),
            reason: format!("document of record {id} does not load: {e}"),
        })?;
        Ok(doc.with_actor(self.key.device_id().actor_id()))
    }

    /// The record's current heads, hex: its version, for an `ETag`.
    pub fn heads(&self, id: RecordId) -> Result<Vec<String>, NodeError> {
        let mut doc = self.load_doc(id)?;
        let mut heads: Vec<String> = doc
            .get_heads()
            .iter()
            .map(|h| rapport_proto::hex(&h.0))
            .collect();
        heads.sort();
        Ok(heads)
    }

    /// The record as it was at `heads` (hex, as [`Repo::heads`] gives
    /// them); `None` when this node does not hold one of those changes.
    pub fn view_at(&self, id: RecordId, heads: &[String]) -> Result<Option<RecordView>, NodeError> {
        let mut doc = self.load_doc(id)?;
        let mut at = Vec::with_capacity(heads.len());
        for h in heads {
            let Some(hash) = parse_hash(h) else {
                return Ok(None);
            };
            if doc.get_change_by_hash(&hash).is_none() {
                return Ok(None);
            }
            at.push(hash);
        }
        if at.is_empty() {
            return Ok(None);
        }
        Ok(Some(RecordView::read(&mut doc, id, Some(&at))?))
    }

    // ----- writing records -------------------------------------------------

    /// Creates a record in `space` from user input, with defaults for what
    /// is missing.
    pub fn create(
        &self,
        kind: Kind,
        space: SpaceId,
        inputs: &[Input],
    ) -> Result<RecordView, NodeError> {
        let mut views = self.create_many(kind, space, std::slice::from_ref(&inputs.to_vec()))?;
        Ok(views.remove(0))
    }

    /// Creates several records in one durable batch (demo data, benches):
    /// all are stored or, on any invalid input, none. Inputs are parsed on
    /// this thread (references resolve in its scope); the documents are
    /// built and signed on every core, then written in one transaction and
    /// one flush.
    pub fn create_many(
        &self,
        kind: Kind,
        space: SpaceId,
        rows: &[Vec<Input>],
    ) -> Result<Vec<RecordView>, NodeError> {
        self.check_space_writable(space)?;
        let prepared = self.prepare_rows(kind, space, rows, &mut 0)?;
        self.write_records(prepared, Vec::new())
    }

    /// [`Repo::create_many`] over a stream of batches (generated data,
    /// benches): each batch is durable on its own, in order, and `stored`
    /// hears its views then. The next batch is parsed, built and signed on
    /// another thread while the one before is written, so that the store's
    /// write (one core) and the building (every core) overlap. Stops at the
    /// first error; the batches before it stay stored. A batch is prepared
    /// before the one before it is stored: its rows cannot name records of
    /// that batch by title (their ids are known to the caller once
    /// `stored` hears of them). Ids take a millisecond each, from one
    /// clock for the stream (as an import's do), so that they rise in row
    /// order across batches; a stream faster than a thousand records a
    /// second gives ids ahead of the wall clock.
    pub fn create_batches<I>(
        &self,
        kind: Kind,
        space: SpaceId,
        batches: I,
        mut stored: impl FnMut(Vec<RecordView>) -> Result<(), NodeError>,
    ) -> Result<(), NodeError>
    where
        I: IntoIterator<Item = Vec<Vec<Input>>>,
        I::IntoIter: Send,
    {
        self.check_space_writable(space)?;
        let batches = batches.into_iter();
        // The builder thread resolves references and signs as this one
        // would: in its scope, naming its integration.
        let scope = SCOPE.with(|s| s.get());
        let via = via();
        std::thread::scope(|threads| {
            // Handed over when the writer is ready for it: one batch being
            // written, one built, never more.
            let (tx, rx) = std::sync::mpsc::sync_channel(0);
            threads.spawn(move || {
                with_scope(scope, || {
                    with_via(via.as_deref(), || {
                        // One clock for the whole stream: ids of the next
                        // batch never repeat the milliseconds of the last.
                        let mut last_ms = 0;
                        for rows in batches {
                            let built = self
                                .prepare_rows(kind, space, &rows, &mut last_ms)
                                .and_then(|new| self.build_new(new));
                            let failed = built.is_err();
                            if tx.send(built).is_err() || failed {
                                break;
                            }
                        }
                    })
                })
            });
            for built in rx {
                // Checked again for each batch: a role taken away during a
                // long stream stops it.
                self.check_space_writable(space)?;
                let views = self.write_built(&self.write_guard(), built?, Vec::new())?;
                stored(views)?;
            }
            Ok(())
        })
    }

    /// Parses each row's inputs into a new record of `kind` in `space`,
    /// with ids after `last_ms` (updated).
    fn prepare_rows(
        &self,
        kind: Kind,
        space: SpaceId,
        rows: &[Vec<Input>],
        last_ms: &mut u64,
    ) -> Result<Vec<NewRecord>, NodeError> {
        let ctx = self.context();
        rows.iter()
            .map(|inputs| {
                let fields = self.prepare(kind, space, inputs, &ctx)?;
                Ok(NewRecord {
                    id: self.next_record_id(last_ms)?,
                    kind,
                    space,
                    fields: fields.into_iter().collect(),
                })
            })
            .collect()
    }

    /// Whether this device may write new records into `space`.
    pub(crate) fn check_space_writable(&self, space: SpaceId) -> Result<(), NodeError> {
        self.check_authoring()?;
        if let SpaceId::Shared(id) = space {
            if self.store.space(id)?.is_none() {
                return Err(NodeError::UnknownSpace(space.to_string()));
            }
            self.check_may_write(id)?;
        }
        Ok(())
    }

    /// An id for a new record of this device, at least a millisecond after
    /// `last_ms` (updated), so that ids made in a row sort in that order
    /// and never repeat each other. The id is bound to this device's key
    /// (see `new_record_id`); its two random bytes may repeat one of this
    /// device's stored ids, which is checked.
    pub(crate) fn next_record_id(&self, last_ms: &mut u64) -> Result<RecordId, NodeError> {
        let now_ms = self.now().as_millisecond().max(0) as u64;
        loop {
            let ms = now_ms.max(*last_ms + 1);
            *last_ms = ms;
            let id =
                rapport_model::space::new_record_id(&self.key.device_id().0, ms, self.random()?);
            if self.store.doc(id)?.is_none() && self.store.change_hashes(id)?.is_empty() {
                return Ok(id);
            }
        }
    }

    /// Writes new records (checked by the caller with
    /// [`Repo::check_space_writable`] and [`Repo::prepare`]) and edits of
    /// existing ones in one transaction and one flush: all or none. The
    /// documents are built and signed on every core. Returns the new
    /// records' views, then the edited ones'.
    pub(crate) fn write_records(
        &self,
        new: Vec<NewRecord>,
        edits: Vec<(RecordView, Vec<Edit>)>,
    ) -> Result<Vec<RecordView>, NodeError> {
        let built = self.build_new(new)?;
        let guard = self.write_guard();
        self.write_built(&guard, built, edits)
    }

    /// New records' documents, built and signed on every core.
    fn build_new(&self, new: Vec<NewRecord>) -> Result<Vec<Built>, NodeError> {
        let ctx = self.context();
        let via = via();
        crate::parallel::map(new, |r| {
            let mut doc = doc::create_via(
                self.key.device_id().actor_id(),
                r.kind,
                r.space,
                &r.fields,
                ctx.now,
                via.as_deref(),
            )?;
            self.signed(&mut doc, r.id, None)
        })
        .into_iter()
        .collect()
    }

    /// [`Repo::write_records`] of edits alone, for a caller that holds the
    /// write guard since it read what the edits were computed from, so
    /// that nothing written in between is overwritten unseen.
    pub(crate) fn write_edits_guarded(
        &self,
        guard: &std::sync::MutexGuard<'_, ()>,
        edits: Vec<(RecordView, Vec<Edit>)>,
    ) -> Result<Vec<RecordView>, NodeError> {
        self.write_built(guard, Vec::new(), edits)
    }

    fn write_built(
        &self,
        guard: &std::sync::MutexGuard<'_, ()>,
        mut built: Vec<Built>,
        edits: Vec<(RecordView, Vec<Edit>)>,
    ) -> Result<Vec<RecordView>, NodeError> {
        let ctx = self.context();
        let via = via();
        // An id is checked when it is made; an import plans ids a batch
        // ahead, so another writer may have taken one since (same device,
        // millisecond and random bytes). Refused, never overwritten.
        for b in &built {
            if self.store.doc(b.view.id)?.is_some() {
                return Err(NodeError::Forbidden(format!(
                    "record id {} was taken while this batch was prepared; nothing of the batch was written: run it again",
                    b.view.id
                )));
            }
        }
        // Edits load, change and sign on every core, under the write
        // guard so that no other writer changes a document in between.
        let edited = crate::parallel::map(edits, |(old, changes)| {
            let mut doc = self.load_doc(old.id)?;
            if doc::edit_via(&mut doc, &changes, ctx.now, via.as_deref())?.is_none() {
                return Ok(None);
            }
            self.finish(&mut doc, old.id, Some(old)).map(Some)
        });
        for b in edited {
            if let Some(b) = b? {
                built.push(b);
            }
        }
        if built.is_empty() {
            return Ok(Vec::new());
        }
        self.store
            .write_batch(&built.iter().map(Built::write).collect::<Vec<_>>())?;
        let mut deals = Vec::new();
        for b in &built {
            self.announce(b);
            deals.extend(crate::products::deals_to_settle(
                b.previous.as_ref(),
                &b.view,
            ));
        }
        // Their deals' amounts follow the lines written. The settling
        // write comes back here once, finds the amounts right, and stops.
        self.settle_deals(guard, deals);
        Ok(built.into_iter().map(|b| b.view).collect())
    }

    /// Sets and clears fields of an existing, live record.
    pub fn edit(
        &self,
        reference: &str,
        sets: &[Input],
        unsets: &[String],
    ) -> Result<RecordView, NodeError> {
        let view = self.resolve(reference)?;
        if view.deleted {
            return Err(deleted_error(&view));
        }
        // Times are read in the meeting's zone: the one given, or its own.
        let ctx = in_zone(
            &self.context(),
            zone_given(sets).or_else(|| view.text("zone").map(str::to_string)),
        );
        let mut edits = Vec::new();
        let mut fields = view.fields.clone();
        for (field, raw) in sets {
            let def = self.field_in(Some(view.space), view.kind, field)?;
            let value = self.parse_input(def, raw, &ctx, Some(view.space))?;
            fields.insert(def.name.to_string(), value.clone());
            edits.push(Edit::Set(def.name.to_string(), value));
        }
        for field in unsets {
            let def = self.field_in(Some(view.space), view.kind, field)?;
            if def.required {
                return Err(NodeError::RequiredField {
                    kind: view.kind,
                    field: def.name.into(),
                });
            }
            fields.remove(def.name);
            edits.push(Edit::Unset(def.name.to_string()));
        }
        if view.kind == Kind::Deal && (touches(&edits, "pipeline") || touches(&edits, "stage")) {
            let schema = self.schema(view.space)?;
            let stage = fields.get("stage").cloned();
            let stage_given = touches(&edits, "stage");
            settle_deal(&schema, Some(&view.fields), &mut fields, stage_given)?;
            // The pipeline as the space names it, written if it moved.
            edits.retain(|e| e.field() != Some("pipeline"));
            if fields.get("pipeline") != view.fields.get("pipeline") {
                edits.push(match fields.get("pipeline") {
                    Some(p) => Edit::Set("pipeline".into(), p.clone()),
                    None => Edit::Unset("pipeline".into()),
                });
            }
            if fields.get("stage") != stage.as_ref()
                && let Some(stage) = fields.get("stage")
            {
                edits.push(Edit::Set("stage".into(), stage.clone()));
            }
        }
        let closed_at = stamp_closing(
            self.schema(view.space)?.as_ref(),
            view.kind,
            &view.fields,
            &fields,
            &ctx,
        );
        for (field, value) in closed_at {
            if !touches(&edits, field) {
                match &value {
                    Some(v) => fields.insert(field.to_string(), v.clone()),
                    None => fields.remove(field),
                };
                edits.push(match value {
                    Some(v) => Edit::Set(field.to_string(), v),
                    None => Edit::Unset(field.to_string()),
                });
            }
        }
        if let Some((field, zone)) = pin_zone(view.kind, &fields, &ctx) {
            fields.insert(field.into(), zone.clone());
            edits.push(Edit::Set(field.into(), zone));
        }
        edits.extend(self.edit_of_lines(&view, &mut fields, &edits)?);
        check_record(view.kind, &fields)?;
        self.check_consent(view.kind, Some(&view.fields), &fields)?;
        self.apply(view, &edits, ctx.now)
    }

    /// Writes the tombstone: the record disappears from lists but keeps its
    /// history and can be restored.
    pub fn delete(&self, reference: &str) -> Result<RecordView, NodeError> {
        let view = self.resolve_unmerged(reference)?;
        self.apply(view, &[Edit::Deleted(true)], self.now())
    }

    pub fn restore(&self, reference: &str) -> Result<RecordView, NodeError> {
        let view = self.resolve_unmerged(reference)?;
        self.apply(view, &[Edit::Deleted(false)], self.now())
    }

    /// [`Repo::resolve`] for deleting or restoring: a reference to a
    /// merged-away record is refused, naming its survivor, rather than
    /// followed (deleting an old id must not delete the record kept).
    fn resolve_unmerged(&self, reference: &str) -> Result<RecordView, NodeError> {
        match self.resolve_noting(reference)? {
            (v, None) => Ok(v),
            (v, Some(from)) => Err(merged_error(&from, &v)),
        }
    }

    /// The fields a ticket gets from `--about REF`: the company, or the
    /// person and the company they work for.
    pub fn ticket_about(&self, reference: &str) -> Result<Vec<Input>, NodeError> {
        let v = self.resolve_among(reference, &[Kind::Company, Kind::Person], "about")?;
        if v.deleted {
            return Err(deleted_error(&v));
        }
        let mut fields = vec![(v.kind.as_str().to_string(), v.id.to_string())];
        if v.kind == Kind::Person
            && let Some(company) = v.text("company")
        {
            fields.push(("company".into(), company.to_string()));
        }
        Ok(fields)
    }

    /// Marks a task activity done.
    pub fn complete_task(&self, reference: &str) -> Result<RecordView, NodeError> {
        let view = self.resolve_among(reference, &[Kind::Activity], "task")?;
        if view.text("type") != Some("task") {
            return Err(rapport_model::RuleError::DoneOnNonTask(
                view.text("type").unwrap_or("record").into(),
            )
            .into());
        }
        if view.deleted {
            return Err(deleted_error(&view));
        }
        self.apply(
            view,
            &[Edit::Set("done".into(), FieldValue::Flag(true))],
            self.now(),
        )
    }

    /// Writes `edits` to a record as this device's signed change; values
    /// are taken as they are (callers parse and check input first).
    pub(crate) fn apply(
        &self,
        old: RecordView,
        edits: &[Edit],
        now: Timestamp,
    ) -> Result<RecordView, NodeError> {
        let _guard = self.write_guard();
        let mut doc = self.load_doc(old.id)?;
        if doc::edit_via(&mut doc, edits, now, via().as_deref())?.is_none() {
            return Ok(old);
        }
        let built = self.finish(&mut doc, old.id, Some(old))?;
        self.store.write(&built.write())?;
        self.announce(&built);
        let deals = crate::products::deals_to_settle(built.previous.as_ref(), &built.view);
        self.settle_deals(&_guard, deals);
        Ok(built.view)
    }

    /// Serialises writes: a document is loaded, changed and saved by one
    /// writer at a time (the API, sync and gossip all write).
    /// Held while a peer's record is read and written back.
    pub(crate) fn peers_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn write_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets what is told about every local change to a shared space (the
    /// daemon broadcasts it).
    pub fn set_observer(&self, observer: Observer) {
        *self.observer.lock().unwrap_or_else(|p| p.into_inner()) = Some(observer);
    }

    fn announce(&self, built: &Built) {
        self.notify(LocalChange {
            space: built.view.space,
            record: built.view.id,
            heads: built.heads.clone(),
            changes: built.changes.iter().map(|(_, c)| c.encode()).collect(),
        });
    }

    /// Tells the observer about a local change to a shared space.
    pub(crate) fn notify(&self, change: LocalChange) {
        if change.space == SpaceId::Private {
            return;
        }
        let observer = self
            .observer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(observer) = observer {
            observer(change);
        }
    }

    /// Signs the change just committed to `doc` and prepares its write.
    fn finish(
        &self,
        doc: &mut AutoCommit,
        id: RecordId,
        previous: Option<RecordView>,
    ) -> Result<Built, NodeError> {
        self.check_authoring()?;
        if let SpaceId::Shared(space) = rapport_model::space::space_of(doc)? {
            self.check_may_write(space)?;
        }
        self.signed(doc, id, previous)
    }

    /// [`Repo::finish`] without its checks, which the caller made.
    fn signed(
        &self,
        doc: &mut AutoCommit,
        id: RecordId,
        previous: Option<RecordView>,
    ) -> Result<Built, NodeError> {
        let change = doc
            .get_last_local_change()
            .ok_or_else(|| NodeError::Damaged {
                path: self.dir.clone(),
                reason: "a committed change is missing from its document".into(),
            })?;
        // Refused here, before it is stored: no peer would accept it, and
        // the record's later changes would wait on it everywhere.
        let bytes = change.raw_bytes().len();
        if bytes > MAX_CHANGE_BYTES {
            return Err(NodeError::Forbidden(format!(
                "this edit is {bytes} bytes once encoded, over the {MAX_CHANGE_BYTES}-byte limit \
                 of one change; nothing was saved: split it into smaller edits"
            )));
        }
        let signed = self.key.sign_change(&change)?;
        let view = RecordView::read(doc, id, None)?;
        Ok(Built {
            heads: doc.get_heads().iter().map(|h| h.0).collect(),
            saved: rapport_model::stored::save(doc),
            changes: vec![(change.hash().0.to_vec(), signed)],
            view,
            previous,
        })
    }

    // ----- input -----------------------------------------------------------

    /// Parses every input and adds defaults; checks the cross-field rules.
    pub(crate) fn prepare(
        &self,
        kind: Kind,
        space: SpaceId,
        inputs: &[Input],
        ctx: &ParseContext,
    ) -> Result<BTreeMap<String, FieldValue>, NodeError> {
        self.known_kind(Some(space), kind, false)?;
        let mut fields = BTreeMap::new();
        let ctx = &in_zone(ctx, zone_given(inputs));
        for (field, raw) in inputs {
            let def = self.field_in(Some(space), kind, field)?;
            fields.insert(
                def.name.to_string(),
                self.parse_input(def, raw, ctx, Some(space))?,
            );
        }
        let schema = self.schema(space)?;
        for def in schema.fields(kind) {
            if let (Some(default), false) = (def.default, fields.contains_key(def.name)) {
                fields.insert(def.name.to_string(), parse_value(def, default, ctx)?);
            }
        }
        if kind == Kind::Deal {
            let stage_given = inputs
                .iter()
                .any(|(f, _)| f.trim().eq_ignore_ascii_case("stage"));
            settle_deal(&schema, None, &mut fields, stage_given)?;
        }
        // A record made closed is stamped as if it had been closed now.
        for (field, value) in stamp_closing(&schema, kind, &BTreeMap::new(), &fields, ctx) {
            if let (Some(v), false) = (value, fields.contains_key(field)) {
                fields.insert(field.to_string(), v);
            }
        }
        if let Some((field, zone)) = pin_zone(kind, &fields, ctx) {
            fields.insert(field.into(), zone);
        }
        if kind == Kind::LineItem {
            self.settle_line(space, &mut fields, true)?;
        }
        check_record(kind, &fields)?;
        schema.check_new(kind, &fields).map_err(NodeError::Schema)?;
        self.check_consent(kind, None, &fields)?;
        Ok(fields)
    }

    /// Every problem with `inputs` for a record of `kind`, each with the
    /// field it belongs to, in the CLI's words: values that do not parse,
    /// unknown fields, required fields given blank, and, for a `new_record`,
    /// required fields not given. A form shows them all at once; `create`
    /// and `edit` still stop at the first.
    pub fn check_inputs(
        &self,
        kind: Kind,
        space: Option<SpaceId>,
        inputs: &[Input],
        new_record: bool,
    ) -> Vec<(String, NodeError)> {
        let ctx = self.context();
        let mut problems = Vec::new();
        for (field, raw) in inputs {
            let def = match self.field_in(space, kind, field) {
                Ok(def) => def,
                Err(e) => {
                    problems.push((field.clone(), e));
                    continue;
                }
            };
            if raw.trim().is_empty() {
                if def.required && !new_record {
                    problems.push((
                        def.name.to_string(),
                        NodeError::RequiredField {
                            kind,
                            field: def.name.into(),
                        },
                    ));
                }
                continue;
            }
            if let Err(e) = self.parse_input(def, raw, &ctx, space) {
                problems.push((def.name.to_string(), e));
            }
        }
        let defs = self
            .fields_in(Some(space.unwrap_or_default()), kind)
            .unwrap_or_else(|_| kind.fields().iter().collect());
        for def in defs {
            let given = inputs
                .iter()
                .any(|(f, raw)| f.eq_ignore_ascii_case(def.name) && !raw.trim().is_empty());
            if new_record && def.required && def.default.is_none() && !given {
                problems.push((
                    def.name.to_string(),
                    NodeError::Rule(rapport_model::RuleError::Missing {
                        kind,
                        field: def.name,
                    }),
                ));
            }
        }
        problems
    }

    /// Parses one value; references are resolved to ids of live records of
    /// the kinds the field allows. A record in a shared space may refer only
    /// to records of that space (its other members could not see the rest).
    pub(crate) fn parse_input(
        &self,
        def: &FieldDef,
        raw: &str,
        ctx: &ParseContext,
        space: Option<SpaceId>,
    ) -> Result<FieldValue, NodeError> {
        let Some(kinds) = def.ty.ref_kinds() else {
            return Ok(parse_value(def, raw, ctx)?);
        };
        let mut ids = Vec::new();
        let parts: Vec<&str> = if def.ty.is_list() {
            split_list(raw).collect()
        } else {
            vec![raw]
        };
        for part in parts {
            let v = self.resolve_among(part, kinds, def.name)?;
            if v.deleted {
                return Err(deleted_error(&v));
            }
            if let Some(space @ SpaceId::Shared(_)) = space
                && v.space != space
            {
                return Err(NodeError::CrossSpace {
                    title: v.title(),
                    theirs: v.space.to_string(),
                });
            }
            let id = v.id.to_string();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(if def.ty.is_list() {
            FieldValue::List(ids)
        } else {
            FieldValue::Text(ids.remove(0))
        })
    }
}

/// "user (org)", falling back to what is known.
pub(crate) fn member_label(user: &str, org: &str, device_short: &str) -> String {
    let user = if user.is_empty() { device_short } else { user };
    if org.is_empty() {
        user.to_string()
    } else {
        format!("{user} ({org})")
    }
}

/// A new record's id and checked fields, ready to be built.
#[derive(Debug)]
pub(crate) struct NewRecord {
    pub(crate) id: RecordId,
    pub(crate) kind: Kind,
    pub(crate) space: SpaceId,
    pub(crate) fields: Vec<(String, FieldValue)>,
}

/// A record ready to be written.
pub(crate) struct Built {
    pub(crate) heads: Vec<[u8; 32]>,
    pub(crate) saved: Vec<u8>,
    pub(crate) changes: Vec<(Vec<u8>, SignedChange)>,
    pub(crate) view: RecordView,
    pub(crate) previous: Option<RecordView>,
}

impl Built {
    pub(crate) fn write(&self) -> RecordWrite<'_> {
        RecordWrite {
            id: self.view.id,
            space: self.view.space,
            doc: &self.saved,
            heads: &self.heads,
            changes: &self.changes,
            index: Indexed::Record {
                view: &self.view,
                previous: self.previous.as_ref(),
            },
        }
    }
}

/// Whether `edits` set or clear `field`.
pub(crate) fn touches(edits: &[Edit], field: &str) -> bool {
    edits.iter().any(|e| e.field() == Some(field))
}

/// `from` was merged into `into`: not a record to act on.
pub(crate) fn merged_error(from: &RecordView, into: &RecordView) -> NodeError {
    NodeError::Forbidden(format!(
        "{} ({}) was merged into {} ({}): act on that record, or undo the merge \
         (rapport merge list)",
        from.title(),
        from.id,
        into.title(),
        into.id
    ))
}

pub(crate) fn deleted_error(v: &RecordView) -> NodeError {
    NodeError::Deleted {
        id: v.id,
        kind: v.kind,
        title: v.title(),
    }
}

/// Opens the sled store, waiting a while for another process to let go of it.
pub(crate) fn open_store(
    path: &Path,
    create: bool,
    journal: Option<Arc<rapport_store::Journal>>,
) -> Result<Store, NodeError> {
    let started = Instant::now();
    loop {
        match Store::open(path, create, journal.clone()) {
            Err(StoreError::Locked { .. }) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return Ok(other?),
        }
    }
}

/// A change hash from its 64 hex digits.
fn parse_hash(hex: &str) -> Option<rapport_model::automerge::ChangeHash> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(rapport_model::automerge::ChangeHash(out))
}

/// An all-day meeting's days are those of the zone it was made in: a
/// meeting that names none gets the one its times were read in, so that
/// a reader elsewhere sees the same days.
fn pin_zone(
    kind: Kind,
    fields: &BTreeMap<String, FieldValue>,
    ctx: &ParseContext,
) -> Option<(&'static str, FieldValue)> {
    let all_day = fields.get("all_day") == Some(&FieldValue::Flag(true));
    if kind != Kind::Activity || !all_day || fields.contains_key("zone") {
        return None;
    }
    let name = ctx.tz.iana_name()?;
    Some(("zone", FieldValue::Text(name.to_string())))
}

/// The time zone an input names (`zone`), for reading the times given
/// with it.
fn zone_given(inputs: &[Input]) -> Option<String> {
    inputs
        .iter()
        .rev()
        .find(|(f, _)| f.trim().eq_ignore_ascii_case("zone"))
        .map(|(_, z)| z.clone())
}

/// `ctx` reading times in `zone` when it is a time zone (a wrong one is
/// refused by `check_record`, naming the field).
fn in_zone(ctx: &ParseContext, zone: Option<String>) -> ParseContext {
    let mut ctx = ctx.clone();
    if let Some(tz) = zone.and_then(|z| TimeZone::get(z.trim()).ok()) {
        ctx.tz = tz;
    }
    ctx
}

/// What an edit that closes a deal or a ticket (or reopens a ticket)
/// stamps, unless it sets the field itself, so that reports can tell a
/// sales cycle and a resolution time: a deal moved to a won or lost stage
/// gets today as its `close` date (what HubSpot and Salesforce do), a
/// ticket whose status becomes resolved or closed gets `resolved` (the
/// time), and one reopened loses it. `None` removes the field.
fn stamp_closing(
    schema: &rapport_model::Schema,
    kind: Kind,
    before: &BTreeMap<String, FieldValue>,
    after: &BTreeMap<String, FieldValue>,
    ctx: &rapport_model::ParseContext,
) -> Vec<(&'static str, Option<FieldValue>)> {
    let text = |m: &BTreeMap<String, FieldValue>, f: &str| {
        m.get(f).and_then(FieldValue::as_text).map(str::to_string)
    };
    match kind {
        Kind::Deal => {
            let outcome = |m: &BTreeMap<String, FieldValue>| {
                let pipeline = text(m, "pipeline");
                let pipeline = pipeline.as_deref().unwrap_or(rapport_model::custom::SALES);
                let stage = text(m, "stage")?;
                schema
                    .pipeline(pipeline)?
                    .stage(&stage)
                    .and_then(|s| s.outcome)
            };
            let closes = outcome(after).is_some() && outcome(after) != outcome(before);
            if closes {
                let today = FieldValue::Text(ctx.today().to_string());
                return vec![("close", Some(today))];
            }
            Vec::new()
        }
        Kind::Ticket => {
            let done = |m: &BTreeMap<String, FieldValue>| {
                matches!(text(m, "status").as_deref(), Some("resolved" | "closed"))
            };
            match (done(before), done(after)) {
                (false, true) => {
                    let now = rapport_model::value::format_instant(ctx.now);
                    vec![("resolved", Some(FieldValue::Text(now)))]
                }
                (true, false) if before.contains_key("resolved") => vec![("resolved", None)],
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

/// Settles a deal's pipeline and stage as a node writes them: the
/// pipeline as the space names it (what was typed may be its title, or
/// "Renewals pipeline"; `sales` is said by saying none), the pipeline's
/// first stage for a deal that is new or moved (`before` its fields as
/// stored) without a stage given, and the stage one of its pipeline's.
pub(crate) fn settle_deal(
    schema: &rapport_model::Schema,
    before: Option<&BTreeMap<String, FieldValue>>,
    fields: &mut BTreeMap<String, FieldValue>,
    stage_given: bool,
) -> Result<(), NodeError> {
    let typed = fields.get("pipeline").and_then(FieldValue::as_text);
    // An unknown name is left as typed: `check_deal` says which there are.
    if let Some(pipeline) = typed.and_then(|t| schema.resolve_pipeline(t)) {
        if pipeline.name == rapport_model::custom::SALES {
            fields.remove("pipeline");
        } else {
            fields.insert("pipeline".into(), FieldValue::Text(pipeline.name.clone()));
        }
    }
    let moved = before.is_none_or(|b| b.get("pipeline") != fields.get("pipeline"));
    if moved && !stage_given {
        let name = fields
            .get("pipeline")
            .and_then(FieldValue::as_text)
            .unwrap_or(rapport_model::custom::SALES);
        if let Some(first) = schema
            .pipeline(name)
            .and_then(|p| p.stages.into_iter().next())
        {
            fields.insert("stage".into(), FieldValue::Text(first.name));
        }
    }
    schema.check_deal(fields, moved).map_err(NodeError::Schema)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn closing_a_deal_or_a_ticket_stamps_when_and_reopening_a_ticket_clears_it() {
        let (_t, repo) = repo();
        repo.create(Kind::Company, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("company");
        // The day as the stamp reads it: in this machine's zone.
        let today = repo.context().today();
        let deal = repo
            .create(
                Kind::Deal,
                SpaceId::Private,
                &input(&[
                    ("title", "Rollout"),
                    ("company", "Acme"),
                    ("close", "2030-01-31"),
                ]),
            )
            .expect("deal");
        let id = deal.id.to_string();
        let moved = repo
            .edit(&id, &input(&[("stage", "proposal")]), &[])
            .expect("edit");
        assert_eq!(
            moved.text("close"),
            Some("2030-01-31"),
            "an open stage keeps it"
        );
        let won = repo
            .edit(&id, &input(&[("stage", "won")]), &[])
            .expect("edit");
        assert_eq!(won.text("close"), Some(today.to_string().as_str()));
        let lost = repo
            .edit(
                &id,
                &input(&[("stage", "lost"), ("close", "2026-01-02")]),
                &[],
            )
            .expect("edit");
        assert_eq!(lost.text("close"), Some("2026-01-02"), "a date given wins");

        let born_won = repo
            .create(
                Kind::Deal,
                SpaceId::Private,
                &input(&[("title", "Renewal"), ("company", "Acme"), ("stage", "won")]),
            )
            .expect("deal");
        assert_eq!(born_won.text("close"), Some(today.to_string().as_str()));
        let ticket = repo
            .create(Kind::Ticket, SpaceId::Private, &input(&[("title", "Down")]))
            .expect("ticket");
        let id = ticket.id.to_string();
        assert!(ticket.text("resolved").is_none());
        let done = repo
            .edit(&id, &input(&[("status", "resolved")]), &[])
            .expect("edit");
        let stamped = done.text("resolved").expect("resolved").to_string();
        assert!(stamped.starts_with(&today.to_string()), "{stamped}");
        let closed = repo
            .edit(&id, &input(&[("status", "closed")]), &[])
            .expect("edit");
        assert_eq!(
            closed.text("resolved"),
            Some(stamped.as_str()),
            "still the first time"
        );
        let reopened = repo
            .edit(&id, &input(&[("status", "open")]), &[])
            .expect("edit");
        assert!(reopened.text("resolved").is_none());
    }

    fn repo() -> (tempfile::TempDir, Repo) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repo::open(&tmp.path().join("data"), OpenMode::Create).expect("open");
        (tmp, repo)
    }

    /// `[("name", "Acme")]` as inputs; shared by the node's tests.
    pub(crate) fn input(pairs: &[(&str, &str)]) -> Vec<Input> {
        pairs
            .iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn check_inputs_reports_every_problem_with_its_field() {
        let (_t, repo) = repo();
        let problems = repo.check_inputs(
            Kind::Deal,
            None,
            &input(&[
                ("amount", "12x"),
                ("close", "someday"),
                ("colour", "red"),
                ("stage", "lead"),
            ]),
            true,
        );
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["amount", "close", "colour", "title", "company"]);
        let amount = problems[0].1.to_string();
        assert!(amount.contains("12x"), "{amount}");
        assert_eq!(problems[3].1.to_string(), "deal needs a title");
        // An edit checks only what it changes, but may not blank a required field.
        let edit = repo.check_inputs(Kind::Deal, None, &input(&[("title", " ")]), false);
        assert_eq!(edit.len(), 1);
        assert!(edit[0].1.to_string().contains("cannot be cleared"));
        assert!(
            repo.check_inputs(Kind::Company, None, &input(&[("name", "Acme")]), true)
                .is_empty()
        );
    }

    #[test]
    fn batches_written_in_a_stream_keep_their_order_and_stop_at_a_bad_row() {
        let (_t, repo) = repo();
        let acme = repo
            .create(Kind::Company, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("company");
        // Five batches; the fourth has a row that does not parse.
        let batches = (0..5).map(|b| {
            (0..30)
                .map(|i| {
                    let email = if b == 3 && i == 7 {
                        "not an address".to_string()
                    } else {
                        format!("p{b}-{i}@example.com")
                    };
                    input(&[
                        ("name", &format!("P {b}-{i:02}")),
                        ("emails", &email),
                        ("company", "Acme"),
                    ])
                })
                .collect::<Vec<_>>()
        });
        let mut heard = Vec::new();
        let err = repo
            .create_batches(Kind::Person, SpaceId::Private, batches, |views| {
                heard.push(views.iter().map(|v| v.id).collect::<Vec<_>>());
                Ok(())
            })
            .expect_err("the fourth batch is refused");
        assert!(err.to_string().contains("not an address"), "{err}");
        // Three batches were stored and heard of, whole and in row order;
        // their ids rise across batches (one clock for the stream).
        assert_eq!(heard.len(), 3);
        let ids: Vec<RecordId> = heard.concat();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ids rise across batches"
        );
        let people = repo.list(Kind::Person, &[], false).expect("list");
        assert_eq!(people.len(), 90, "nothing of the bad batch or after it");
        for (n, id) in ids.iter().enumerate() {
            let v = repo.view(*id).expect("read").expect("stored");
            assert_eq!(v.title(), format!("P {}-{:02}", n / 30, n % 30));
            assert_eq!(
                v.get("company"),
                Some(&FieldValue::Text(acme.id.to_string()))
            );
        }
    }

    #[test]
    fn a_stream_is_built_in_the_callers_scope_and_names_its_integration() {
        let (_t, repo) = repo();
        let space = SpaceId::Shared(repo.create_space("Partners").expect("space").id);
        // Two companies of one name: only the caller's scope tells them apart.
        repo.create(Kind::Company, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("private company");
        let shared = repo
            .create(Kind::Company, space, &input(&[("name", "Acme")]))
            .expect("shared company");
        let rows = |company: &str| vec![vec![input(&[("name", "Ann"), ("company", company)])]];
        let write = |company: &str| {
            let mut made = Vec::new();
            with_via(Some("crm-sync"), || {
                with_scope(Some(space), || {
                    repo.create_batches(Kind::Person, space, rows(company), |views| {
                        made.extend(views);
                        Ok(())
                    })
                })
            })
            .map(|()| made)
        };
        // The builder thread sees only the caller's space, and signs
        // naming the caller's integration.
        let made = write("Acme").expect("the one in scope");
        assert_eq!(
            made[0].get("company"),
            Some(&FieldValue::Text(shared.id.to_string()))
        );
        let timeline = repo.timeline(&made[0], |_| true).expect("timeline");
        assert!(
            timeline.iter().any(|e| matches!(
                e,
                crate::timeline::Entry::Change { via: Some(v), .. } if v == "crm-sync"
            )),
            "{timeline:?}"
        );
    }

    #[test]
    fn an_edit_over_the_change_size_limit_is_refused_and_not_stored() {
        let (_t, repo) = repo();
        let huge = "x".repeat(MAX_CHANGE_BYTES + 1000);
        let err = repo
            .create(Kind::Company, SpaceId::Private, &input(&[("name", &huge)]))
            .expect_err("too large");
        assert!(err.to_string().contains("limit of one change"), "{err}");
        let acme = repo
            .create(Kind::Company, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("a small one is fine");
        let err = repo
            .edit(&acme.id.to_string(), &input(&[("name", &huge)]), &[])
            .expect_err("too large");
        assert!(err.to_string().contains("nothing was saved"), "{err}");
        let names: Vec<String> = repo
            .store()
            .views_of_kind(Kind::Company)
            .map(|v| v.expect("view").title())
            .collect();
        assert_eq!(names, ["Acme"]);
        assert_eq!(
            repo.load_doc(acme.id).expect("doc").get_changes(&[]).len(),
            1
        );
    }

    #[test]
    fn references_resolve_by_name_and_must_have_the_right_kind() {
        let (_t, repo) = repo();
        let acme = repo
            .create(Kind::Company, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("company");
        let ann = repo
            .create(
                Kind::Person,
                SpaceId::Private,
                &input(&[("name", "Ann"), ("company", "acme")]),
            )
            .expect("person");
        assert_eq!(ann.text("company"), Some(acme.id.to_string().as_str()));

        let err = repo
            .create(
                Kind::Deal,
                SpaceId::Private,
                &input(&[("title", "X"), ("company", "Ann")]),
            )
            .expect_err("a person is not a company");
        assert!(matches!(err, NodeError::WrongKind(_)), "{err}");
        let err = repo
            .create(
                Kind::Deal,
                SpaceId::Private,
                &input(&[("title", "X"), ("company", "Initech")]),
            )
            .expect_err("no such company");
        assert!(matches!(err, NodeError::NotFound(_)), "{err}");
    }

    #[test]
    fn ambiguous_names_list_candidates_and_ids_disambiguate() {
        let (_t, repo) = repo();
        let a = repo
            .create(Kind::Company, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("a");
        repo.create(Kind::Person, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("b");
        let err = repo.resolve("acme").expect_err("ambiguous");
        assert!(matches!(&err, NodeError::Ambiguous { candidates, .. } if candidates.len() == 2));
        assert_eq!(repo.resolve(&a.id.to_string()).expect("by id").id, a.id);
        // Where a field takes only companies, the name is not ambiguous.
        let deal = repo
            .create(
                Kind::Deal,
                SpaceId::Private,
                &input(&[("title", "D"), ("company", "Acme")]),
            )
            .expect("deal");
        assert_eq!(deal.text("company"), Some(a.id.to_string().as_str()));
    }

    #[test]
    fn failed_writes_change_nothing() {
        let (_t, repo) = repo();
        repo.create(Kind::Company, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("company");
        let bad = input(&[
            ("title", "X"),
            ("company", "Acme"),
            ("amount", "-3"),
            ("currency", "EUR"),
        ]);
        assert!(repo.create(Kind::Deal, SpaceId::Private, &bad).is_err());
        assert!(
            repo.edit("Acme", &input(&[("domain", "not a domain")]), &[])
                .is_err()
        );
        assert!(repo.edit("Acme", &[], &["name".into()]).is_err());
        assert_eq!(repo.store().record_count(), 1);
        let acme = repo.resolve("Acme").expect("still there");
        assert_eq!(acme.get("domain"), None);
        assert_eq!(
            repo.load_doc(acme.id).expect("doc").get_changes(&[]).len(),
            1
        );
    }

    #[test]
    fn delete_hides_and_restore_brings_back() {
        let (_t, repo) = repo();
        repo.create(Kind::Company, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("company");
        repo.delete("Acme").expect("delete");
        assert!(
            repo.list(Kind::Company, &[], false)
                .expect("list")
                .is_empty()
        );
        assert_eq!(repo.list(Kind::Company, &[], true).expect("list").len(), 1);
        assert!(matches!(
            repo.edit("Acme", &input(&[("industry", "x")]), &[]),
            Err(NodeError::Deleted { .. })
        ));
        repo.restore("Acme").expect("restore");
        assert_eq!(repo.list(Kind::Company, &[], false).expect("list").len(), 1);
    }

    #[test]
    fn filters_match_text_lists_and_references() {
        let (_t, repo) = repo();
        repo.create(Kind::Company, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("c");
        repo.create(
            Kind::Company,
            SpaceId::Private,
            &input(&[("name", "Globex")]),
        )
        .expect("c");
        repo.create(
            Kind::Person,
            SpaceId::Private,
            &input(&[("name", "Ann"), ("company", "Acme"), ("tags", "vip, eu")]),
        )
        .expect("p");
        repo.create(
            Kind::Person,
            SpaceId::Private,
            &input(&[("name", "Bob"), ("company", "Globex")]),
        )
        .expect("p");
        let names = |filters: &[(&str, &str)]| -> Vec<String> {
            repo.list(Kind::Person, &input(filters), false)
                .expect("list")
                .iter()
                .map(RecordView::title)
                .collect()
        };
        assert_eq!(names(&[("company", "acme")]), ["Ann"]);
        assert_eq!(names(&[("tags", "VIP")]), ["Ann"]);
        assert_eq!(names(&[("name", "bob")]), ["Bob"]);
        assert!(names(&[("tags", "vip"), ("company", "Globex")]).is_empty());
        assert!(matches!(
            repo.list(Kind::Person, &input(&[("colour", "red")]), false),
            Err(NodeError::UnknownField { .. })
        ));
    }

    #[test]
    fn filters_compare_by_value_begin_contain_and_differ() {
        let (_t, repo) = repo();
        repo.create(Kind::Company, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("c");
        for (title, amount, close, stage) in [
            ("Small", "900", "2027-01-15", "lead"),
            ("Medium", "10000", "2027-03-31", "proposal"),
            ("Large", "250000.50", "2027-06-30", "won"),
            ("Unpriced", "", "", "lead"),
        ] {
            let mut fields = vec![("title", title), ("company", "Acme"), ("stage", stage)];
            if !amount.is_empty() {
                fields.extend([("amount", amount), ("currency", "EUR"), ("close", close)]);
            }
            repo.create(Kind::Deal, SpaceId::Private, &input(&fields))
                .expect("deal");
        }
        let deals = |filters: &[(&str, &str)]| -> Vec<String> {
            let mut t: Vec<String> = repo
                .list(Kind::Deal, &input(filters), false)
                .expect("list")
                .iter()
                .map(RecordView::title)
                .collect();
            t.sort();
            t
        };
        // Numbers by value, not as text ("900" > "10000" as text).
        assert_eq!(deals(&[("amount>", "1000")]), ["Large", "Medium"]);
        assert_eq!(deals(&[("amount<", "10000")]), ["Medium", "Small"]);
        assert_eq!(
            deals(&[("amount>", "1000"), ("amount<", "100000")]),
            ["Medium"]
        );
        // Dates, with the words a date field takes.
        assert_eq!(deals(&[("close<", "2027-03-31")]), ["Medium", "Small"]);
        assert_eq!(deals(&[("close>", "2027-04-01")]), ["Large"]);
        // Not equal: missing values differ too.
        assert_eq!(deals(&[("stage!", "lead")]), ["Large", "Medium"]);
        assert_eq!(
            deals(&[("amount!", "900")]),
            ["Large", "Medium", "Unpriced"]
        );
        assert_eq!(deals(&[("title^", "M")]), ["Medium"]);
        assert_eq!(deals(&[("title~", "ALL")]), ["Small"]);
        assert_eq!(deals(&[("title~", "e"), ("stage", "lead")]), ["Unpriced"]);

        // Text beginning with digits finds values the index keeps as
        // numbers (a phone without a plus sign).
        repo.create(
            Kind::Person,
            SpaceId::Private,
            &input(&[("name", "Ann"), ("phones", "0301234567")]),
        )
        .expect("p");
        let long = format!("{} Jones", "Very ".repeat(20));
        repo.create(Kind::Person, SpaceId::Private, &input(&[("name", &long)]))
            .expect("p");
        let people = |filters: &[(&str, &str)]| -> Vec<String> {
            repo.list(Kind::Person, &input(filters), false)
                .expect("list")
                .iter()
                .map(RecordView::title)
                .collect()
        };
        assert_eq!(people(&[("phones^", "030")]), ["Ann"]);
        assert_eq!(people(&[("phones~", "1234")]), ["Ann"]);
        // Past the 64 bytes the index keeps of a text, inside and as a prefix.
        assert_eq!(people(&[("name~", "jones")]), std::slice::from_ref(&long));
        assert_eq!(
            people(&[("name^", &long[..70])]),
            std::slice::from_ref(&long)
        );
        // A text the index keeps as a number (an amount with its currency),
        // found by a prefix that reaches into the currency.
        repo.create(
            Kind::Person,
            SpaceId::Private,
            &input(&[
                ("name", "Bea"),
                ("title", "5000 EUR"),
                ("tags", "alpha, omega"),
            ]),
        )
        .expect("p");
        assert_eq!(people(&[("title^", "5000 e")]), ["Bea"]);
        // On a list, each bound holds for some item: the same answer with
        // the index (the range) as without (a name prefix narrows first).
        assert_eq!(people(&[("tags>", "m"), ("tags<", "c")]), ["Bea"]);
        assert_eq!(
            people(&[("tags>", "m"), ("tags<", "c"), ("name^", "b")]),
            ["Bea"]
        );

        // What cannot be compared says why.
        for (field, value, says) in [
            ("amount~", "10", "numbers compare by value"),
            ("company>", "Acme", "a reference compares by = or !="),
            ("title^", " ", "give some text"),
        ] {
            let e = repo
                .list(Kind::Deal, &input(&[(field, value)]), false)
                .expect_err(field);
            assert!(e.to_string().contains(says), "{field}: {e}");
        }
        assert!(matches!(
            repo.list(Kind::Deal, &input(&[("close>", "someday")]), false),
            Err(NodeError::Invalid(_))
        ));
    }

    #[test]
    fn every_stored_change_is_signed_by_this_device() {
        let (_t, repo) = repo();
        let c = repo
            .create(Kind::Company, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("c");
        repo.edit("Acme", &input(&[("industry", "Steel")]), &[])
            .expect("edit");
        let hashes = repo.store().change_hashes(c.id).expect("hashes");
        assert_eq!(hashes.len(), 2);
        for h in hashes {
            let signed = repo
                .store()
                .signed_change(&h)
                .expect("read")
                .expect("stored");
            let change = rapport_trust::verify_change(&signed).expect("verifies");
            assert_eq!(change.hash().0.to_vec(), h);
            assert_eq!(DeviceId(signed.author), repo.device_id());
        }
    }
}
