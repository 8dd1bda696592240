//! Recovery: the store is a cache of the journal. This module replays the
//! journal's tail into the store after a crash, rebuilds a damaged store
//! from the whole journal (moving the damaged one aside, never deleting
//! it), and writes and restores backups (the journal, the key and the
//! profile in one checksummed file).
//!
//! What the journal holds and what a rebuild derives:
//!
//! | state                               | after a rebuild                                  |
//! |-------------------------------------|--------------------------------------------------|
//! | signed changes (applied, waiting, kept aside) | journaled; judged again by the same rules |
//! | documents, views, indexes, usage    | derived from the changes                         |
//! | membership, removals, topic secrets | derived (the space documents are changes)        |
//! | invites and their redemption        | journaled                                        |
//! | refused changes' log, peer addresses | not kept: the log restarts, addresses are learned again from member entries and gossip |

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rapport_model::{RecordId, RecordView, SpaceId};
use rapport_proto::SignedChange;
use rapport_store::journal::{Frame, push_frame, read_frame, sync_dir};
use rapport_store::{Entry, Journal, RecordWrite, Store};
use rapport_trust::verify_change;
use sha2::{Digest, Sha256};

use crate::datadir::{self, DirState};
use crate::env::Environment;
use crate::ingest::ApplyReport;
use crate::repo::{Built, open_store};
use crate::{NodeError, Repo};

/// Who rejections found while replaying are attributed to.
pub(crate) const FROM_JOURNAL: &str = "the journal";
/// The first bytes of a backup file.
pub const BACKUP_MAGIC: &[u8] = b"rapport-backup/1\n";

/// Told how far a long replay has come: (records done, records in all).
pub type Progress<'a> = &'a dyn Fn(u64, u64);

/// What a rebuild found and did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RebuildReport {
    /// Journal entries read.
    pub entries: u64,
    /// Bytes of a torn last entry cut from the journal (never acknowledged).
    pub torn_bytes: u64,
    /// Shared spaces and records whose documents were rebuilt.
    pub spaces: u64,
    pub records: u64,
    /// Changes the rules refuse or hold now, as they did before.
    pub refused: u64,
    pub held: u64,
    /// Where the replaced store was moved (it is never deleted).
    pub moved_aside: Option<PathBuf>,
    /// Why the store was rebuilt.
    pub reason: String,
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Opens (or creates) the data directory's journal, saying if a torn tail
/// was cut.
pub(crate) fn open_journal(dir: &Path, create: bool) -> Result<Arc<Journal>, NodeError> {
    let (journal, opened) = Journal::open(&dir.join(datadir::JOURNAL_DIR), create)?;
    if opened.torn_bytes > 0 {
        tracing::warn!(
            bytes = opened.torn_bytes,
            "the journal ended in a write a crash interrupted; it was never acknowledged and was dropped"
        );
    }
    Ok(Arc::new(journal))
}

/// The file that says sled reported damage while the store was in use:
/// the next open rebuilds the store from the journal.
pub const DAMAGE_MARKER: &str = "store.damaged";

/// If `error` is sled reporting damage at run time (a page that does not
/// read back), remembers it in the data directory so that the next open
/// rebuilds the store, and says so; returns whether it did.
pub fn note_damage(dir: &Path, error: &NodeError) -> bool {
    let NodeError::Store(e) = error else {
        return false;
    };
    if !matches!(**e, rapport_store::StoreError::Damaged(_)) {
        return false;
    }
    mark_damaged(dir, &e.to_string())
}

/// Remembers damage sled reported (`what`) so that the next open rebuilds
/// the store; returns whether it could.
pub(crate) fn mark_damaged(dir: &Path, what: &str) -> bool {
    let marker = dir.join(DAMAGE_MARKER);
    match fs::write(&marker, what) {
        Ok(()) => {
            tracing::error!(error = %what, "the store reported damage; it will be rebuilt from the journal at the next start");
            true
        }
        Err(io) => {
            tracing::error!(error = %what, marker = %marker.display(), %io, "the store reported damage; run `rapport repair` with the node stopped");
            false
        }
    }
}

/// Opens the store of a set-up data directory: journals a store made
/// before journals existed, and rebuilds one that is missing or damaged
/// (or that reported damage while in use).
pub(crate) fn open_existing(dir: &Path, env: Arc<dyn Environment>) -> Result<Store, NodeError> {
    let store_dir = dir.join(datadir::STORE_DIR);
    if !Journal::exists(&dir.join(datadir::JOURNAL_DIR)) {
        migrate(dir)?;
    }
    // The journal's lock first: another process may be rebuilding.
    let journal = open_journal(dir, false)?;
    let leftover = dir.join(datadir::REBUILD_DIR);
    if leftover.exists() {
        // An interrupted rebuild; the journal it came from is whole.
        fs::remove_dir_all(&leftover).map_err(|e| NodeError::io(&leftover, e))?;
    }
    let marker = dir.join(DAMAGE_MARKER);
    let reason = if marker.exists() {
        drop(journal);
        let why = fs::read_to_string(&marker).unwrap_or_default();
        format!("sled reported damage while the store was in use: {why}")
    } else if store_dir.exists() {
        match open_store(&store_dir, false, Some(journal)) {
            Ok(store) => return Ok(store),
            Err(NodeError::Store(e)) if e.is_damage() => e.to_string(),
            Err(e) => return Err(e),
        }
    } else {
        drop(journal);
        "the store is missing".to_string()
    };
    tracing::error!(%reason, "the store cannot be used; rebuilding it from the journal");
    let report = rebuild(dir, env, &reason, &|_, _| {})?;
    if marker.exists() {
        fs::remove_file(&marker).map_err(|e| NodeError::io(&marker, e))?;
    }
    tracing::warn!(
        records = report.records,
        moved_aside = ?report.moved_aside,
        seconds = report.elapsed.as_secs_f64(),
        "rebuilt the store from the journal"
    );
    open_store(&store_dir, false, Some(open_journal(dir, false)?))
}

/// Writes the journal of a data directory made before journals existed,
/// from what its store holds, in a side directory renamed into place
/// once complete.
fn migrate(dir: &Path) -> Result<(), NodeError> {
    // sled's lock, held throughout, keeps other processes out.
    let store = open_store(&dir.join(datadir::STORE_DIR), false, None)?;
    let side = dir.join(datadir::MIGRATE_DIR);
    if side.exists() {
        // An interrupted migration: the store it came from is whole.
        fs::remove_dir_all(&side).map_err(|e| NodeError::io(&side, e))?;
    }
    let (journal, _) = Journal::open(&side, true)?;
    let store = store.with_journal(Arc::new(journal));
    let written = store.journal_everything()?;
    drop(store);
    let target = dir.join(datadir::JOURNAL_DIR);
    fs::rename(&side, &target).map_err(|e| NodeError::io(&target, e))?;
    let _ = fs::remove_file(dir.join(format!("{}.lock", datadir::MIGRATE_DIR)));
    sync_dir(dir)?;
    tracing::info!(
        entries = written,
        "wrote the journal of a store made before journals"
    );
    Ok(())
}

/// Rebuilds the store from the journal: into a side directory first, then
/// swapped in, with the store it replaces (if any) moved aside. A crash at
/// any point leaves either the old store or the new one in place.
pub fn rebuild(
    dir: &Path,
    env: Arc<dyn Environment>,
    reason: &str,
    progress: Progress<'_>,
) -> Result<RebuildReport, NodeError> {
    let started = Instant::now();
    let (journal, opened) = Journal::open(&dir.join(datadir::JOURNAL_DIR), false)?;
    let work = dir.join(datadir::REBUILD_DIR);
    if work.exists() {
        fs::remove_dir_all(&work).map_err(|e| NodeError::io(&work, e))?;
    }
    let journal = Arc::new(journal);
    let store = open_store(&work, true, Some(journal.clone()))?;
    let repo = Repo::with_store(dir, store, env.clone())?;
    let entries = journal.read(journal.start()?, journal.end())?;
    let mut report = repo.replay(entries, progress)?;
    repo.store().set_journal_mark(journal.end())?;
    repo.store().flush()?;
    drop(repo);
    let store_dir = dir.join(datadir::STORE_DIR);
    if store_dir.exists() {
        let stamp = env.now().as_second();
        let mut aside = dir.join(format!("store.replaced-{stamp}"));
        let mut n = 1;
        while aside.exists() {
            aside = dir.join(format!("store.replaced-{stamp}-{n}"));
            n += 1;
        }
        fs::rename(&store_dir, &aside).map_err(|e| NodeError::io(&store_dir, e))?;
        report.moved_aside = Some(aside);
    }
    fs::rename(&work, &store_dir).map_err(|e| NodeError::io(&store_dir, e))?;
    sync_dir(dir)?;
    report.torn_bytes = opened.torn_bytes;
    report.reason = reason.to_string();
    report.elapsed = started.elapsed();
    Ok(report)
}

/// `rapport repair`: rebuilds the store of a data directory no node has
/// open, and with `compact`, rewrites the journal without what the store
/// no longer holds.
pub fn repair(
    dir: &Path,
    compact: bool,
    progress: Progress<'_>,
) -> Result<(RebuildReport, Option<rapport_store::journal::Compacted>), NodeError> {
    if datadir::inspect(dir)? != DirState::Rapport {
        return Err(NodeError::NotInitialized {
            path: dir.to_path_buf(),
        });
    }
    let env: Arc<dyn Environment> = Arc::new(crate::env::System);
    // Journals an old store, and waits for (or reports) another process
    // holding the store.
    let opened = Repo::open_in(dir, crate::OpenMode::Existing, env.clone());
    let reason = match opened {
        Ok(repo) => {
            drop(repo);
            "asked for (`rapport repair`)".to_string()
        }
        Err(NodeError::Store(e)) if matches!(*e, rapport_store::StoreError::Locked { .. }) => {
            return Err(NodeError::Store(e));
        }
        Err(e) => e.to_string(),
    };
    let report = rebuild(dir, env.clone(), &reason, progress)?;
    let compacted = if compact {
        let repo = Repo::open_in(dir, crate::OpenMode::Existing, env)?;
        Some(repo.store().compact_journal()?)
    } else {
        None
    };
    Ok((report, compacted))
}

/// What `rapport privacy compact` did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PrivacyCompacted {
    pub journal_before: u64,
    pub journal_after: u64,
    /// Records erased on this node.
    pub erased: usize,
    /// Uploads, import error files and stores moved aside, removed.
    pub files_removed: usize,
    /// Import and merge logs rewritten (or removed) without erased records.
    pub logs_rewritten: usize,
}

/// `rapport privacy compact`: erased records' bytes off the disk. The
/// journal is rewritten without their changes, the store rebuilt from it
/// into a new directory (sled keeps removed values in its files until it
/// reuses them), the old store and any moved aside by earlier rebuilds
/// removed, and the files beside them that may hold a person's data
/// (uploads, import error files) removed, and the import and merge logs
/// rewritten without erased records. No node may have the directory open.
pub fn privacy_compact(dir: &Path, progress: Progress<'_>) -> Result<PrivacyCompacted, NodeError> {
    if datadir::inspect(dir)? != DirState::Rapport {
        return Err(NodeError::NotInitialized {
            path: dir.to_path_buf(),
        });
    }
    let env: Arc<dyn Environment> = Arc::new(crate::env::System);
    let mut report = PrivacyCompacted::default();
    let erased = {
        let repo = Repo::open_in(dir, crate::OpenMode::Existing, env.clone())?;
        let compacted = repo.store().compact_journal()?;
        report.journal_before = compacted.bytes_before;
        report.journal_after = compacted.bytes_after;
        // Records a field was erased from: their import and merge logs
        // may hold the value.
        let mut ids = repo.store().erased_ids()?;
        for view in repo.store().spaces()? {
            ids.extend(view.rebases.iter().map(|r| r.record));
        }
        ids
    };
    report.erased = erased.len();
    let rebuilt = rebuild(dir, env, "privacy compaction", progress)?;
    let mut doomed: Vec<PathBuf> = rebuilt.moved_aside.into_iter().collect();
    for entry in fs::read_dir(dir)
        .map_err(|e| NodeError::io(dir, e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("store.replaced-") && !doomed.contains(&entry.path()) {
            doomed.push(entry.path());
        }
    }
    for path in doomed {
        fs::remove_dir_all(&path).map_err(|e| NodeError::io(&path, e))?;
        report.files_removed += 1;
    }
    let (removed, rewritten) = crate::import::forget_erased(dir, &erased)?;
    report.files_removed += removed;
    report.logs_rewritten += rewritten;
    report.logs_rewritten += crate::merge::forget_erased(dir, &erased)?;
    sync_dir(dir)?;
    tracing::info!(erased = report.erased, "privacy compaction done");
    Ok(report)
}

impl Repo {
    /// Replays what the journal holds past the point the store recorded
    /// (a crash between the journal's sync and sled's).
    pub(crate) fn replay_journal_tail(&self) -> Result<(), NodeError> {
        let Some(journal) = self.store().journal().cloned() else {
            return Ok(());
        };
        let end = journal.end();
        let from = match self.store().journal_mark()? {
            Some(mark) if mark >= end => {
                if mark > end {
                    tracing::warn!(%mark, %end, "the journal ends before the point the store recorded (the disk lost synced writes?)");
                    self.store().set_journal_mark(end)?;
                }
                return Ok(());
            }
            Some(mark) => mark,
            None => journal.start()?,
        };
        let report = self.replay(journal.read(from, end)?, &|_, _| {})?;
        self.store().set_journal_mark(end)?;
        self.store().flush()?;
        if report.entries > 0 {
            tracing::info!(
                entries = report.entries,
                records = report.records,
                "replayed the journal's tail into the store"
            );
        }
        Ok(())
    }

    /// Puts journal entries into the store (without journaling them
    /// again): invites as they were, space documents first, then records,
    /// every change verified and judged by the same rules as when it
    /// arrived. Entries the store already holds change nothing.
    pub(crate) fn replay(
        &self,
        entries: impl Iterator<
            Item = Result<(rapport_store::Position, Entry), rapport_store::StoreError>,
        >,
        progress: Progress<'_>,
    ) -> Result<RebuildReport, NodeError> {
        let _pause = self.store().pause_journal();
        let mut report = RebuildReport::default();
        let mut spaces: BTreeMap<RecordId, Vec<Vec<u8>>> = BTreeMap::new();
        let mut order: Vec<RecordId> = Vec::new();
        let mut records: HashMap<RecordId, (SpaceId, Vec<Vec<u8>>)> = HashMap::new();
        for item in entries {
            let (_, entry) = item?;
            report.entries += 1;
            match entry {
                Entry::Invite { hash, invite } => self.store().restore_invite(&hash, &invite)?,
                Entry::Erased { record, erasure } => {
                    self.store().restore_erased(record, &erasure)?;
                    records.remove(&record);
                }
                Entry::Change {
                    record,
                    space: SpaceId::Shared(space),
                    change,
                } if record == space => spaces.entry(space).or_default().push(change),
                Entry::Change {
                    record,
                    space,
                    change,
                } => {
                    records
                        .entry(record)
                        .or_insert_with(|| {
                            order.push(record);
                            (space, Vec::new())
                        })
                        .1
                        .push(change);
                }
            }
        }
        let total = (spaces.len() + order.len()) as u64;
        let mut done = 0u64;
        let mut applied = ApplyReport::default();
        let _guard = self.write_guard();
        for (space, changes) in spaces {
            let verified = verified(space, changes);
            let view = self.space(space)?;
            self.settle(
                space,
                space,
                view.as_ref(),
                verified,
                Some(FROM_JOURNAL),
                &mut applied,
            )?;
            report.spaces += 1;
            done += 1;
            progress(done, total);
        }
        let mut views: HashMap<RecordId, Option<rapport_model::SpaceView>> = HashMap::new();
        let mut private = Vec::new();
        for chunk in order.chunks(REPLAY_CHUNK) {
            let inputs: Vec<Journaled> = chunk
                .iter()
                .filter_map(|r| records.remove(r).map(|(s, c)| (*r, s, c)))
                .collect();
            // Shared records judged together per space, as from a peer.
            let mut runs: BTreeMap<RecordId, Vec<(RecordId, Vec<crate::ingest::Verified>)>> =
                BTreeMap::new();
            for (record, space, verified) in verify_in_parallel(inputs) {
                match space {
                    SpaceId::Private => {
                        if let Some(w) = self.rebuilt_private(record, verified)? {
                            private.push(w);
                        }
                    }
                    SpaceId::Shared(space_id) => {
                        let view = match views.get(&space_id) {
                            Some(v) => v.clone(),
                            None => {
                                let v = self.space(space_id)?;
                                views.insert(space_id, v.clone());
                                v
                            }
                        };
                        if self.misses_dependencies(&verified)? {
                            self.settle(
                                space_id,
                                record,
                                view.as_ref(),
                                verified,
                                Some(FROM_JOURNAL),
                                &mut applied,
                            )?;
                        } else {
                            runs.entry(space_id).or_default().push((record, verified));
                        }
                    }
                }
                report.records += 1;
                done += 1;
            }
            for (space_id, run) in runs {
                let view = views.get(&space_id).cloned().flatten();
                self.settle_run(space_id, view.as_ref(), run, FROM_JOURNAL, &mut applied)?;
            }
            let writes: Vec<RecordWrite<'_>> = private.iter().map(Built::write).collect();
            self.store().write_batch_deferred(&writes)?;
            private.clear();
            progress(done, total);
        }
        report.refused = applied.rejected as u64;
        report.held = applied.held as u64;
        Ok(report)
    }

    /// A private record's document with its own journaled changes put
    /// back, ready to write; `None` if it holds them all already.
    fn rebuilt_private(
        &self,
        record: RecordId,
        changes: Vec<crate::ingest::Verified>,
    ) -> Result<Option<Built>, NodeError> {
        let (mut doc, _) = self.candidate(record)?;
        let previous = self.store().view(record)?;
        let new: Vec<crate::ingest::Verified> = changes
            .into_iter()
            .filter(|(_, c)| doc.get_change_by_hash(&c.hash()).is_none())
            .collect();
        if new.is_empty() {
            return Ok(None);
        }
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut trial = doc.clone();
            trial
                .apply_changes(new.iter().map(|(_, c)| c.clone()))
                .map(|()| trial)
        }));
        match applied {
            Ok(Ok(trial)) => doc = trial,
            _ => {
                tracing::warn!(%record, "a journaled private change does not apply; skipped");
                return Ok(None);
            }
        }
        let view = match RecordView::read(&mut doc, record, None) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(%record, error = %e, "a journaled private record does not read; skipped");
                return Ok(None);
            }
        };
        Ok(Some(Built {
            heads: doc.get_heads().iter().map(|h| h.0).collect(),
            saved: rapport_model::stored::save(&mut doc),
            changes: new
                .into_iter()
                .map(|(s, c)| (c.hash().0.to_vec(), s))
                .collect(),
            view,
            previous,
        }))
    }

    /// `rapport backup`: a consistent copy of everything this node needs to
    /// come back (journal, device key, profile) in one checksummed file,
    /// written beside `out` and renamed into place once complete. Works
    /// while the node runs: the journal is only ever appended to, and the
    /// copy stops at the point synced when it began.
    pub fn backup(&self, out: &Path) -> Result<BackupReport, NodeError> {
        let started = Instant::now();
        let journal = self
            .store()
            .journal()
            .cloned()
            .ok_or_else(|| NodeError::Damaged {
                path: self.dir().to_path_buf(),
                reason: "this store has no journal".into(),
            })?;
        // The end first, then the sync: everything before it is durable
        // (writes that append meanwhile are not part of this backup).
        let end = journal.end();
        journal.sync()?;
        let key = fs::read(self.dir().join(datadir::KEY_FILE))
            .map_err(|e| NodeError::io(&self.dir().join(datadir::KEY_FILE), e))?;
        let profile = fs::read(self.dir().join(datadir::PROFILE_FILE))
            .map_err(|e| NodeError::io(&self.dir().join(datadir::PROFILE_FILE), e))?;
        let name = out
            .file_name()
            .ok_or_else(|| NodeError::Export(format!("{} is not a file name", out.display())))?;
        let mut tmp_name = name.to_os_string();
        tmp_name.push(".partial");
        let tmp = out.with_file_name(tmp_name);
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // It holds the device's secret key.
            options.mode(0o600);
        }
        let file = options.open(&tmp).map_err(|e| NodeError::io(&tmp, e))?;
        #[cfg(unix)]
        {
            // A `.partial` left by an earlier run keeps its own mode
            // otherwise, and this file holds the key.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(|e| NodeError::io(&tmp, e))?;
        }
        let mut w = HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            hash: Sha256::new(),
        };
        let io = |e| NodeError::io(&tmp, e);
        w.write_all(BACKUP_MAGIC).map_err(io)?;
        let header = serde_json::json!({
            "format": 1,
            "device": self.device_id().to_string(),
            "created": self.now().to_string(),
            "journal_end": end.to_string(),
        });
        let mut buf = Vec::new();
        push_frame(&mut buf, &tagged(b'H', header.to_string().as_bytes()));
        push_frame(&mut buf, &tagged(b'K', &key));
        push_frame(&mut buf, &tagged(b'P', &profile));
        w.write_all(&buf).map_err(io)?;
        let mut report = BackupReport::default();
        for item in journal.read(journal.start()?, end)? {
            let (_, entry) = item?;
            buf.clear();
            push_frame(&mut buf, &tagged(b'J', &entry.encode()));
            w.write_all(&buf).map_err(io)?;
            report.entries += 1;
        }
        let digest = w.hash.clone().finalize();
        let mut trailer = report.entries.to_le_bytes().to_vec();
        trailer.extend_from_slice(&digest);
        buf.clear();
        push_frame(&mut buf, &tagged(b'E', &trailer));
        w.write_all(&buf).map_err(io)?;
        let file = w.inner.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        report.bytes = file.metadata().map_err(io)?.len();
        drop(file);
        fs::rename(&tmp, out).map_err(|e| NodeError::io(out, e))?;
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        report.path = out.to_path_buf();
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

/// Records replayed per sled transaction, and verified together.
const REPLAY_CHUNK: usize = 512;

/// A record's journaled changes, as read.
type Journaled = (RecordId, SpaceId, Vec<Vec<u8>>);

/// [`verified`] for many records, on every core: signature checks are
/// most of a rebuild's CPU.
fn verify_in_parallel(
    inputs: Vec<Journaled>,
) -> Vec<(RecordId, SpaceId, Vec<crate::ingest::Verified>)> {
    crate::parallel::map(inputs, |(r, s, c)| (r, s, verified(r, c)))
}

/// Verifies journaled changes again (a journal is a file on disk like any
/// other); drops, with a warning, any that fail.
fn verified(record: RecordId, changes: Vec<Vec<u8>>) -> Vec<crate::ingest::Verified> {
    changes
        .into_iter()
        .filter_map(|bytes| {
            let checked = SignedChange::decode(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|s| verify_change(&s).map(|c| (s, c)).map_err(|e| e.to_string()));
            match checked {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(%record, error = %e, "a journaled change does not verify; skipped");
                    None
                }
            }
        })
        .collect()
}

/// What `rapport backup` wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BackupReport {
    pub path: PathBuf,
    pub entries: u64,
    pub bytes: u64,
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
}

/// What `rapport restore` made.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreReport {
    pub dir: PathBuf,
    pub device: String,
    pub entries: u64,
    pub rebuild: RebuildReport,
}

/// `rapport restore`: makes a new data directory at `dir` from a backup
/// file, after checking every frame and the file's checksum; refuses a
/// directory that is not empty. The node then catches up with its peers
/// as after any time offline.
pub fn restore(
    file: &Path,
    dir: &Path,
    progress: Progress<'_>,
) -> Result<RestoreReport, NodeError> {
    if let Ok(mut entries) = fs::read_dir(dir)
        && entries.next().is_some()
    {
        return Err(NodeError::Export(format!(
            "{} is not empty; restore makes a new data directory: give it a new or empty one with --data-dir",
            dir.display()
        )));
    }
    // First pass: the whole file checks out, or nothing is written.
    let checked = read_backup(file, &mut |_| Ok(()))?;
    datadir::create_private_dir(dir)?;
    let journal = open_journal(dir, true)?;
    let mut batch = Vec::new();
    let mut entries = 0u64;
    let mut batch_bytes = 0usize;
    read_backup(file, &mut |entry| {
        if let Entry::Change { change, .. } = &entry {
            batch_bytes += change.len();
        }
        batch.push(entry);
        entries += 1;
        // Bounded by bytes, not count: a backup's frames may be large.
        if batch.len() >= 4096 || batch_bytes >= 16 << 20 {
            journal.append(&batch)?;
            batch.clear();
            batch_bytes = 0;
        }
        Ok(())
    })?;
    journal.append(&batch)?;
    journal.sync()?;
    drop(journal);
    datadir::write_atomically(dir, datadir::KEY_FILE, &checked.key, true)?;
    // The profile last: until it is there, the directory is not set up.
    datadir::write_atomically(dir, datadir::PROFILE_FILE, &checked.profile, false)?;
    let (profile, _) = datadir::load(dir)?;
    let env: Arc<dyn Environment> = Arc::new(crate::env::System);
    let rebuild = rebuild(dir, env, "restored from a backup", progress)?;
    Ok(RestoreReport {
        dir: dir.to_path_buf(),
        device: profile.device,
        entries,
        rebuild,
    })
}

struct CheckedBackup {
    key: Vec<u8>,
    profile: Vec<u8>,
}

/// Reads a backup file, handing each journal entry to `entry`; fails on
/// any frame that does not check out, a missing or wrong trailer, or
/// anything after it.
fn read_backup(
    file: &Path,
    entry: &mut dyn FnMut(Entry) -> Result<(), rapport_store::StoreError>,
) -> Result<CheckedBackup, NodeError> {
    let bad = |why: String| {
        NodeError::Export(format!(
            "{} is not a usable Rapport backup: {why}",
            file.display()
        ))
    };
    let f = fs::File::open(file).map_err(|e| NodeError::io(file, e))?;
    let mut r = HashingReader {
        inner: BufReader::with_capacity(1 << 20, f),
        hash: Sha256::new(),
    };
    let mut magic = vec![0u8; BACKUP_MAGIC.len()];
    r.read_exact(&mut magic)
        .map_err(|_| bad("it is too short".into()))?;
    if magic != BACKUP_MAGIC {
        return Err(bad("it does not start like one".into()));
    }
    let (mut key, mut profile) = (None, None);
    let mut count = 0u64;
    loop {
        let before = r.hash.clone().finalize();
        let frame = read_frame(&mut r).map_err(|e| NodeError::io(file, e))?;
        let payload = match frame {
            Frame::Payload(p) => p,
            Frame::End => return Err(bad("it ends before its checksum (cut short?)".into())),
            Frame::Bad(why) => return Err(bad(why)),
        };
        let (tag, body) = payload
            .split_first()
            .ok_or_else(|| bad("an empty frame".into()))?;
        match tag {
            b'H' => {}
            b'K' => key = Some(body.to_vec()),
            b'P' => profile = Some(body.to_vec()),
            b'J' => {
                let e = Entry::decode(body).map_err(bad)?;
                entry(e)?;
                count += 1;
            }
            b'E' => {
                let n = body
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_le_bytes);
                if n != Some(count) {
                    return Err(bad(format!(
                        "it says it holds {n:?} entries, but {count} are there"
                    )));
                }
                if body.get(8..) != Some(&before[..]) {
                    return Err(bad("its checksum does not match its contents".into()));
                }
                let mut rest = [0u8; 1];
                if r.inner
                    .read(&mut rest)
                    .map_err(|e| NodeError::io(file, e))?
                    != 0
                {
                    return Err(bad("there is data after its end".into()));
                }
                break;
            }
            other => return Err(bad(format!("unknown frame type {other}"))),
        }
    }
    match (key, profile) {
        (Some(key), Some(profile)) => Ok(CheckedBackup { key, profile }),
        _ => Err(bad("it lacks the device key or the profile".into())),
    }
}

fn tagged(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + body.len());
    v.push(tag);
    v.extend_from_slice(body);
    v
}

struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct HashingReader<R: Read> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OpenMode;
    use crate::ingest::tests::{add, all_changes, node, sync};
    use crate::repo::tests::input;
    use rapport_model::{Kind, Role};

    /// What a space's documents are, by id, with their heads.
    type SpaceItems = Vec<(RecordId, Vec<[u8; 32]>)>;

    /// Everything a user or a peer could notice about a node's data.
    #[derive(Debug, PartialEq)]
    struct State {
        records: Vec<RecordView>,
        spaces: Vec<String>,
        items: Vec<(SpaceId, SpaceItems)>,
        changes: usize,
        usage: Vec<u64>,
    }

    fn state(r: &Repo) -> State {
        let mut records: Vec<RecordView> = r.all(None).map(|v| v.expect("view")).collect();
        records.sort_by_key(|v| v.id);
        let spaces = r.spaces().expect("spaces");
        let mut items = Vec::new();
        let mut usage = Vec::new();
        for s in &spaces {
            let space = SpaceId::Shared(s.id);
            let held: Vec<_> = r
                .store()
                .space_items(space)
                .map(|i| i.expect("item"))
                .collect();
            items.push((space, held));
            usage.push(r.store().space_usage(space).expect("usage"));
        }
        State {
            records,
            spaces: spaces
                .iter()
                .map(|s| serde_json::to_string(s).expect("json"))
                .collect(),
            items,
            changes: r.store().change_count(),
            usage,
        }
    }

    /// Node `d` holds a space where a writer was removed and kept writing
    /// (its later changes held aside, its own record withdrawn), a private
    /// record, and an open invite: what a rebuild must reproduce.
    fn busy_node() -> (Vec<tempfile::TempDir>, Repo, RecordId) {
        let (ta, a) = node();
        let (tw, w) = node();
        let (td, d) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &w, Role::Writer);
        add(&a, shared.id, &d, Role::Writer);
        a.create(Kind::Company, space, &input(&[("name", "Acme")]))
            .expect("acme");
        sync(&w, &a, space);
        sync(&d, &a, space);
        w.edit("Acme", &input(&[("industry", "Steel")]), &[])
            .expect("w edits");
        sync(&a, &w, space);
        a.remove_members(shared.id, &w.device_id().to_string())
            .expect("remove");
        let evil = w
            .create(Kind::Company, space, &input(&[("name", "Evil Co")]))
            .expect("evil");
        w.edit("Acme", &input(&[("industry", "Evil")]), &[])
            .expect("w edits after removal");
        // d hears w's late changes before the removal.
        let acme = d.resolve("Acme").expect("acme").id;
        d.apply_remote(space, evil.id, all_changes(&w, evil.id), w.device_id())
            .expect("apply");
        d.apply_remote(space, acme, all_changes(&w, acme), w.device_id())
            .expect("apply");
        sync(&d, &a, space);
        d.create(Kind::Person, SpaceId::Private, &input(&[("name", "Dana")]))
            .expect("private");
        d.create(
            Kind::Deal,
            space,
            &input(&[("title", "Pilot"), ("company", "Acme")]),
        )
        .expect("deal");
        (vec![ta, tw, td], d, shared.id)
    }

    #[test]
    fn a_damaged_store_is_rebuilt_with_the_same_records_spaces_and_verdicts() {
        let (_dirs, d, _) = busy_node();
        let before = state(&d);
        assert!(
            d.resolve("Evil Co").is_err(),
            "the removed writer's record shows"
        );
        assert_eq!(
            d.resolve("Acme").expect("acme").text("industry"),
            Some("Steel")
        );
        let dir = d.dir().to_path_buf();
        drop(d);
        // sled's files replaced by garbage.
        let db = dir.join(datadir::STORE_DIR).join("db");
        fs::write(&db, vec![0xa5; 4096]).expect("damage");
        let d = Repo::open(&dir, OpenMode::Existing).expect("opens, rebuilt");
        assert_eq!(state(&d), before);
        let aside: Vec<_> = fs::read_dir(&dir)
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("store.replaced-")
            })
            .collect();
        assert_eq!(aside.len(), 1, "the damaged store is kept aside");
        // It goes on working: a write after the rebuild is journaled too.
        d.create(
            Kind::Company,
            SpaceId::Private,
            &input(&[("name", "After")]),
        )
        .expect("write");
        let before = state(&d);
        drop(d);
        fs::remove_dir_all(dir.join(datadir::STORE_DIR)).expect("remove store");
        let d = Repo::open(&dir, OpenMode::Existing).expect("opens, rebuilt");
        assert_eq!(state(&d), before);
    }

    #[test]
    fn a_compacted_journal_drops_superseded_entries_and_still_rebuilds_everything() {
        let (_dirs, d, _) = busy_node();
        let before = state(&d);
        let dir = d.dir().to_path_buf();
        let journal = d.store().journal().cloned().expect("journal");
        let all: Vec<Entry> = journal
            .read(journal.start().expect("start"), journal.end())
            .expect("read")
            .map(|e| e.expect("entry").1)
            .collect();
        // What compaction must drop: a change journaled twice (a replay
        // after a crash can do that), and a change the store does not
        // hold for that record (refused, or erased).
        let Some(Entry::Change {
            record,
            space,
            change,
        }) = all.last().cloned()
        else {
            panic!("the journal ends with a change")
        };
        let stranger = RecordId::new(1, [9; 10]);
        journal
            .append(&[
                Entry::Change {
                    record,
                    space,
                    change: change.clone(),
                },
                Entry::Change {
                    record: stranger,
                    space,
                    change,
                },
            ])
            .expect("append");
        let count = |j: &Journal| {
            j.read(j.start().expect("start"), j.end())
                .expect("read")
                .count()
        };
        let entries = count(&journal);
        let report = d.store().compact_journal().expect("compact");
        assert_eq!(report.kept as usize + report.dropped as usize, entries);
        assert_eq!(report.dropped, 2, "{report:?}");
        assert_eq!(count(&journal) as u64, report.kept);
        assert_eq!(
            d.store().journal_mark().expect("mark"),
            Some(journal.end()),
            "the store's mark follows the rewritten journal"
        );
        drop(journal);
        drop(d);
        fs::remove_dir_all(dir.join(datadir::STORE_DIR)).expect("lose the store");
        let d = Repo::open(&dir, OpenMode::Existing).expect("rebuilt");
        assert_eq!(state(&d), before);
    }

    #[test]
    fn damage_reported_while_running_rebuilds_the_store_at_the_next_open() {
        let (_t, r) = node();
        r.create(Kind::Company, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("c");
        let before = state(&r);
        let dir = r.dir().to_path_buf();
        let other = NodeError::NotFound("x".into());
        assert!(!note_damage(&dir, &other), "only store damage is noted");
        let damage = NodeError::from(rapport_store::StoreError::Damaged("a page".into()));
        assert!(note_damage(&dir, &damage));
        drop(r);
        let r = Repo::open(&dir, OpenMode::Existing).expect("open");
        assert_eq!(state(&r), before);
        assert!(!dir.join(DAMAGE_MARKER).exists());
        assert!(
            fs::read_dir(&dir).expect("dir").any(|e| e
                .expect("e")
                .file_name()
                .to_string_lossy()
                .starts_with("store.replaced-")),
            "the store was not rebuilt"
        );
    }

    #[test]
    fn invites_survive_a_rebuild_once_redeemed_and_open_ones_still_work() {
        let (_ta, a) = node();
        let shared = a.create_space("Joint").expect("space");
        let (used, _) = a
            .create_invite(shared.id, 3600, Role::Writer, None)
            .expect("invite");
        let (open, _) = a
            .create_invite(shared.id, 3600, Role::Reader, None)
            .expect("invite");
        let claim = a.identity();
        a.redeem_invite(shared.id, &used, &"ab".repeat(32), &claim, &[])
            .expect("redeem");
        let dir = a.dir().to_path_buf();
        drop(a);
        rebuild(&dir, Arc::new(crate::env::System), "test", &|_, _| {}).expect("rebuild");
        let a = Repo::open(&dir, OpenMode::Existing).expect("open");
        let again = a.redeem_invite(shared.id, &used, &"cd".repeat(32), &claim, &[]);
        assert!(again.is_err(), "a used ticket works again after a rebuild");
        a.redeem_invite(shared.id, &open, &"ef".repeat(32), &claim, &[])
            .expect("the open ticket still works");
    }

    #[test]
    fn a_write_journaled_but_not_in_sled_is_replayed_at_open() {
        let (_t, r) = node();
        r.create(Kind::Company, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("c");
        let dir = r.dir().to_path_buf();
        let journal = r.store().journal().cloned().expect("journal");
        let mark = r.store().journal_mark().expect("mark").expect("set");
        assert_eq!(mark, journal.end());
        // A crash after the journal's sync and before sled's: the journal
        // holds a write the store does not.
        let (_t2, other) = node();
        let lost = other
            .create(
                Kind::Company,
                SpaceId::Private,
                &input(&[("name", "Globex")]),
            )
            .expect("c");
        let entries: Vec<Entry> = other
            .store()
            .change_hashes(lost.id)
            .expect("hashes")
            .iter()
            .map(|h| Entry::Change {
                record: lost.id,
                space: SpaceId::Private,
                change: other
                    .store()
                    .signed_change(h)
                    .expect("get")
                    .expect("some")
                    .encode(),
            })
            .collect();
        journal.append(&entries).expect("append");
        journal.sync().expect("sync");
        drop(journal);
        drop(r);
        let r = Repo::open(&dir, OpenMode::Existing).expect("open");
        assert_eq!(r.resolve("Globex").expect("replayed").id, lost.id);
        assert_eq!(
            r.store().journal_mark().expect("mark"),
            Some(r.store().journal().expect("j").end())
        );
    }

    #[test]
    fn a_store_made_before_journals_gets_one_and_can_then_be_rebuilt() {
        let (_t, r) = node();
        let dir = r.dir().to_path_buf();
        r.create(Kind::Company, SpaceId::Private, &input(&[("name", "Acme")]))
            .expect("c");
        let shared = r.create_space("Joint").expect("space");
        r.create(
            Kind::Company,
            SpaceId::Shared(shared.id),
            &input(&[("name", "Globex")]),
        )
        .expect("c");
        let before = state(&r);
        drop(r);
        fs::remove_dir_all(dir.join(datadir::JOURNAL_DIR)).expect("no journal");
        let r = Repo::open(&dir, OpenMode::Existing).expect("open journals it");
        assert_eq!(state(&r), before);
        drop(r);
        fs::remove_dir_all(dir.join(datadir::STORE_DIR)).expect("lose the store");
        let r = Repo::open(&dir, OpenMode::Existing).expect("rebuilt");
        assert_eq!(state(&r), before);
    }

    #[test]
    fn a_backup_restores_to_a_working_node_and_damage_is_refused() {
        let (_dirs, d, space) = busy_node();
        let before = state(&d);
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("d.backup");
        let report = d.backup(&file).expect("backup");
        assert!(report.entries > 0);
        let device = d.device_id();
        drop(d);
        let target = tmp.path().join("restored");
        let restored = restore(&file, &target, &|_, _| {}).expect("restore");
        assert_eq!(restored.device, device.to_string());
        let r = Repo::open(&target, OpenMode::Existing).expect("open");
        assert_eq!(state(&r), before);
        assert_eq!(r.device_id(), device);
        r.create(
            Kind::Company,
            SpaceId::Shared(space),
            &input(&[("name", "New")]),
        )
        .expect("a restored member writes");
        // Restoring over a data directory is refused, untouched.
        let err = restore(&file, &target, &|_, _| {}).expect_err("not empty");
        assert!(err.to_string().contains("not empty"), "{err}");
        // Any flipped byte, a cut, or extra bytes are refused before anything is written.
        let bytes = fs::read(&file).expect("read");
        let cases = [
            ("flipped", {
                let mut b = bytes.clone();
                let i = b.len() / 2;
                b[i] ^= 1;
                b
            }),
            ("cut", bytes[..bytes.len() - 10].to_vec()),
            ("extended", [bytes.clone(), b"x".to_vec()].concat()),
        ];
        for (what, damaged) in cases {
            let bad = tmp.path().join(what);
            fs::write(&bad, damaged).expect("write");
            let into = tmp.path().join(format!("into-{what}"));
            let err = restore(&bad, &into, &|_, _| {}).expect_err(what);
            assert!(
                err.to_string().contains("not a usable Rapport backup"),
                "{what}: {err}"
            );
            assert!(!into.exists(), "{what}: something was written");
        }
    }

    /// A record created before record ids named their creator (its id
    /// does not name the device that wrote its first change), stored then
    /// and so in the journal: a rebuild from the journal restores it, as
    /// the journal's history is judged by the rules of its time. The same
    /// change arriving from a peer today is refused.
    #[test]
    fn a_record_from_before_ids_named_their_creator_is_rebuilt_from_the_journal_but_refused_from_a_peer()
     {
        let (_ta, a) = node();
        let (_tw, w) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &w, Role::Writer);
        sync(&w, &a, space);
        let old = RecordId::new(1_600_000_000_000, [7; 10]);
        assert!(!rapport_model::space::record_creator_matches(
            old,
            &w.device_id().0
        ));
        let mut doc = rapport_model::doc::create(
            w.device_id().actor_id(),
            Kind::Company,
            space,
            &[(
                "name".into(),
                rapport_model::FieldValue::Text("Old Co".into()),
            )],
            jiff::Timestamp::now(),
        )
        .expect("doc");
        let change = doc.get_last_local_change().expect("change").clone();
        let signed = w.key().sign_change(&change).expect("sign");
        // Node A accepted it under the rules of its time: stored, and so
        // journaled.
        {
            let _guard = a.write_guard();
            let view = a.store().space_shared(shared.id).expect("view");
            a.settle(
                shared.id,
                old,
                view.as_deref(),
                vec![(signed.clone(), change)],
                Some(FROM_JOURNAL),
                &mut ApplyReport::default(),
            )
            .expect("settle");
        }
        assert_eq!(a.resolve("Old Co").expect("old").id, old);

        let dir = a.dir().to_path_buf();
        drop(a);
        fs::remove_dir_all(dir.join(datadir::STORE_DIR)).expect("remove store");
        let a = Repo::open(&dir, OpenMode::Existing).expect("opens, rebuilt");
        let restored = a.resolve("Old Co").expect("restored from the journal");
        assert_eq!((restored.id, restored.title().as_str()), (old, "Old Co"));

        let (_tb, b) = node();
        add(&a, shared.id, &b, Role::Reader);
        sync(&b, &a, space);
        let report = b
            .apply_remote(space, old, vec![signed.encode()], a.device_id())
            .expect("apply");
        assert_eq!((report.applied, report.rejected), (0, 1), "{report:?}");
        assert!(
            b.resolve("Old Co").is_err(),
            "a peer's unbound record applied"
        );
        assert!(
            b.store()
                .rejections()
                .expect("log")
                .iter()
                .any(|r| r.reason.contains("only the record's creator")),
        );
    }
}
