//! The journal: every signed change this node accepted, and every invite it
//! issued or saw redeemed, appended to checksummed segment files and
//! fsync'd before a write is acknowledged. sled's documents, views and
//! indexes are a cache of it: a node whose sled store is damaged rebuilds
//! the store from the journal (see `rapport_node::recovery`).
//!
//! Layout of `DIR` (the data directory's `journal/`):
//!
//! ```text
//! 0000000000000001.seg   "rapport-journal/2\n", then frames
//! 0000000000000002.seg   a new segment once the last passes SEGMENT_BYTES
//! ```
//!
//! A frame is `len: u32 LE | crc32(payload): u32 LE | payload`; the top
//! bit of `len` ([`MORE`]) says that more frames of the same append
//! follow. Only the last segment is ever appended to, so only its tail can
//! be torn (a kill mid-append): [`Journal::open`] cuts it back to the end
//! of the last whole append, before the first frame that does not check
//! out. A kill can leave an append's first frames whole and the rest
//! missing (the kernel copies a large write a page at a time and stops at
//! the signal): those frames go too, so that a batch is replayed whole or
//! not at all. Nothing cut was acknowledged, since an append is synced
//! before the write it carries is reported done.
//!
//! Segments of version 1 (`rapport-journal/1`, before appends were marked)
//! are read as they are, every frame an append of its own; a journal whose
//! last segment is of version 1 continues in a new segment, so that no
//! version-1 segment holds a marked frame (a reader of version 1 would cut
//! it as damage: it refuses a version-2 segment instead).
//!
//! Compaction ([`Journal::compact`]) writes the kept frames to `DIR.new`,
//! then swaps directories (`DIR` → `DIR.old`, `DIR.new` → `DIR`); `open`
//! finishes or undoes a swap a crash interrupted.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rapport_model::{RecordId, SpaceId};

use crate::{Result, StoreError};

/// The first bytes of every segment file written now.
pub const SEGMENT_MAGIC: &[u8] = b"rapport-journal/2\n";
/// The first bytes of a segment written before appends were marked whole.
const SEGMENT_MAGIC_V1: &[u8] = b"rapport-journal/1\n";
/// In a frame's length: more frames of the same append follow.
pub const MORE: u32 = 1 << 31;
/// A segment is closed (and a new one started) once it passes this size.
/// Every open reads the last segment whole to find a torn tail, so it is
/// kept small enough for that to cost a few milliseconds.
pub const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// The largest frame payload accepted when reading: far above any change
/// (1 MiB) or invite, so a larger length means damage, not data.
pub const MAX_FRAME: u32 = 64 * 1024 * 1024;
const FRAME_HEADER: usize = 8;

/// Where a frame starts (or the journal ends): segment number and byte
/// offset in it. Ordered as the journal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

impl Position {
    pub fn encode(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.segment.to_be_bytes());
        b[8..].copy_from_slice(&self.offset.to_be_bytes());
        b
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let b: [u8; 16] = bytes.try_into().ok()?;
        let (s, o) = b.split_at(8);
        Some(Position {
            segment: u64::from_be_bytes(s.try_into().ok()?),
            offset: u64::from_be_bytes(o.try_into().ok()?),
        })
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.segment, self.offset)
    }
}

/// One journaled fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A signed change (encoded `SignedChange`) of `record`, which belongs
    /// to `space`: applied, waiting for its dependencies, or kept aside.
    Change {
        record: RecordId,
        space: SpaceId,
        change: Vec<u8>,
    },
    /// The state of an invite this node issued, by the hash of its secret
    /// (`InviteRecord` as JSON); a later entry for the same hash replaces
    /// an earlier one.
    Invite { hash: Vec<u8>, invite: Vec<u8> },
    /// This node erased `record` (a data-protection erasure): its changes
    /// are never replayed and never taken again. `erasure` is the kind the
    /// record was, a newline, and the erasure's id (the space's erase
    /// statement, or `local.<time>` for a private record).
    Erased { record: RecordId, erasure: String },
}

const TAG_CHANGE: u8 = 1;
const TAG_INVITE: u8 = 2;
const TAG_ERASED: u8 = 3;

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Entry::Change {
                record,
                space,
                change,
            } => {
                let mut b = Vec::with_capacity(34 + change.len());
                b.push(TAG_CHANGE);
                b.extend_from_slice(&record.to_bytes());
                match space {
                    SpaceId::Private => b.push(0),
                    SpaceId::Shared(s) => {
                        b.push(1);
                        b.extend_from_slice(&s.to_bytes());
                    }
                }
                b.extend_from_slice(change);
                b
            }
            Entry::Invite { hash, invite } => {
                let mut b = Vec::with_capacity(2 + hash.len() + invite.len());
                b.push(TAG_INVITE);
                b.push(hash.len().min(255) as u8);
                b.extend_from_slice(&hash[..hash.len().min(255)]);
                b.extend_from_slice(invite);
                b
            }
            Entry::Erased { record, erasure } => {
                let mut b = Vec::with_capacity(17 + erasure.len());
                b.push(TAG_ERASED);
                b.extend_from_slice(&record.to_bytes());
                b.extend_from_slice(erasure.as_bytes());
                b
            }
        }
    }

    pub fn decode(b: &[u8]) -> std::result::Result<Self, String> {
        let id = |b: &[u8]| -> std::result::Result<RecordId, String> {
            let a: [u8; 16] = b
                .get(..16)
                .and_then(|s| s.try_into().ok())
                .ok_or("a journal entry is cut short")?;
            Ok(RecordId::from_bytes(a))
        };
        match b.first() {
            Some(&TAG_CHANGE) => {
                let record = id(&b[1..])?;
                let (space, rest) = match b.get(17) {
                    Some(0) => (SpaceId::Private, &b[18..]),
                    Some(1) => (SpaceId::Shared(id(&b[18..])?), &b[34.min(b.len())..]),
                    _ => return Err("a journal entry names no space".into()),
                };
                Ok(Entry::Change {
                    record,
                    space,
                    change: rest.to_vec(),
                })
            }
            Some(&TAG_INVITE) => {
                let n = *b.get(1).ok_or("a journal entry is cut short")? as usize;
                let hash = b.get(2..2 + n).ok_or("a journal entry is cut short")?;
                Ok(Entry::Invite {
                    hash: hash.to_vec(),
                    invite: b[2 + n..].to_vec(),
                })
            }
            Some(&TAG_ERASED) => Ok(Entry::Erased {
                record: id(&b[1..])?,
                erasure: String::from_utf8_lossy(&b[17..]).into_owned(),
            }),
            other => Err(format!("unknown journal entry type {other:?}")),
        }
    }
}

/// Appends one frame holding `payload` to `out`.
pub fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    push_marked(out, payload, false);
}

/// [`push_frame`], with [`MORE`] set when frames of the same append follow.
fn push_marked(out: &mut Vec<u8>, payload: &[u8], more: bool) {
    let len = payload.len() as u32 | if more { MORE } else { 0 };
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What reading a frame found.
#[derive(Debug)]
pub enum Frame {
    Payload(Vec<u8>),
    /// The input ended cleanly between frames.
    End,
    /// A frame that does not check out (cut short, wrong checksum, absurd
    /// length): what follows cannot be trusted.
    Bad(String),
}

/// Reads the next frame from `r`.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Frame> {
    read_marked(r).map(|(frame, _)| frame)
}

/// [`read_frame`], and whether the frame says more of its append follow.
fn read_marked(r: &mut impl Read) -> std::io::Result<(Frame, bool)> {
    let mut header = [0u8; FRAME_HEADER];
    let got = read_full(r, &mut header)?;
    if got == 0 {
        return Ok((Frame::End, false));
    }
    if got < FRAME_HEADER {
        return Ok((Frame::Bad("a frame header is cut short".into()), false));
    }
    let marked = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let (len, more) = (marked & !MORE, marked & MORE != 0);
    read_payload(r, &header, len).map(|frame| (frame, more))
}

fn read_payload(
    r: &mut impl Read,
    header: &[u8; FRAME_HEADER],
    len: u32,
) -> std::io::Result<Frame> {
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_FRAME {
        return Ok(Frame::Bad(format!("a frame claims {len} bytes")));
    }
    if len == 0 {
        // Nothing writes an empty frame; zeros are what a file system
        // leaves past a size it grew but never wrote.
        return Ok(Frame::Bad("an empty frame (zeros)".into()));
    }
    let mut payload = vec![0u8; len as usize];
    if read_full(r, &mut payload)? < payload.len() {
        return Ok(Frame::Bad("a frame is cut short".into()));
    }
    if crc32fast::hash(&payload) != crc {
        return Ok(Frame::Bad("a frame's checksum does not match".into()));
    }
    Ok(Frame::Payload(payload))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// What opening the journal found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opened {
    pub segments: usize,
    /// Bytes cut from the last segment's torn tail (a kill mid-append).
    pub torn_bytes: u64,
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compacted {
    pub kept: u64,
    pub dropped: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    tail: Mutex<Tail>,
    /// `DIR.lock`, locked for as long as this journal is open: one process
    /// at a time may cut a torn tail, finish a swap or append.
    _lock: File,
}

/// How long opening waits for another process to let go of the journal.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes `DIR.lock` (beside the directory, so that a compaction's swap
/// does not move it), waiting a while for another process.
fn lock(dir: &Path) -> Result<File> {
    let path = sibling(dir, "lock");
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    let started = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: dir.display().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(&path, e)),
        }
    }
}

#[derive(Debug)]
struct Tail {
    file: File,
    segment: u64,
    len: u64,
    /// Appended since the last fsync.
    dirty: bool,
}

impl Journal {
    /// Whether a journal was ever set up at `dir` (or a compaction of it
    /// was interrupted).
    pub fn exists(dir: &Path) -> bool {
        dir.is_dir() || sibling(dir, "old").is_dir()
    }

    /// Opens the journal at `dir`, creating it if `create`; cuts a torn
    /// tail off the last segment.
    pub fn open(dir: &Path, create: bool) -> Result<(Journal, Opened)> {
        let lock = lock(dir)?;
        finish_swap(dir)?;
        if !dir.is_dir() {
            if !create {
                return Err(StoreError::Corrupt(format!(
                    "the journal at {} is missing",
                    dir.display()
                )));
            }
            fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
            sync_dir(dir.parent().unwrap_or(dir))?;
        }
        let mut segments = segment_numbers(dir)?;
        if segments.is_empty() {
            new_segment(dir, 1)?;
            segments.push(1);
        }
        let last = *segments.last().unwrap_or(&1);
        let path = segment_path(dir, last);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        let size = file.metadata().map_err(|e| io_error(&path, e))?.len();
        let (valid, version_1) = valid_length(&mut file).map_err(|e| io_error(&path, e))?;
        if valid == 0 && size >= SEGMENT_MAGIC.len() as u64 {
            // Not a torn tail: the header itself is wrong. Never cut it.
            return Err(StoreError::JournalDamaged {
                path: path.display().to_string(),
                reason: "it does not start like a Rapport journal segment".into(),
            });
        }
        let mut opened = Opened {
            segments: segments.len(),
            torn_bytes: 0,
        };
        if valid < size || valid < SEGMENT_MAGIC.len() as u64 {
            // A torn tail, or a segment created but not yet headed.
            opened.torn_bytes = size.saturating_sub(valid);
            if valid < SEGMENT_MAGIC.len() as u64 {
                file.set_len(0).map_err(|e| io_error(&path, e))?;
                file.write_all(SEGMENT_MAGIC)
                    .map_err(|e| io_error(&path, e))?;
            } else {
                file.set_len(valid).map_err(|e| io_error(&path, e))?;
            }
            file.sync_all().map_err(|e| io_error(&path, e))?;
            tracing::warn!(
                segment = %path.display(),
                bytes = opened.torn_bytes,
                "cut the journal's torn tail (a write that was interrupted and never acknowledged)"
            );
        }
        // Marked appends go into a segment of this version.
        let (mut file, last) = if version_1 {
            (new_segment(dir, last + 1)?, last + 1)
        } else {
            (file, last)
        };
        let path = segment_path(dir, last);
        let len = file.metadata().map_err(|e| io_error(&path, e))?.len();
        file.seek(SeekFrom::Start(len))
            .map_err(|e| io_error(&path, e))?;
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                tail: Mutex::new(Tail {
                    file,
                    segment: last,
                    len,
                    dirty: false,
                }),
                _lock: lock,
            },
            opened,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the next frame will go.
    pub fn end(&self) -> Position {
        let t = self.tail();
        Position {
            segment: t.segment,
            offset: t.len,
        }
    }

    /// The position of the first frame.
    pub fn start(&self) -> Result<Position> {
        let first = segment_numbers(&self.dir)?.first().copied().unwrap_or(1);
        Ok(Position {
            segment: first,
            offset: SEGMENT_MAGIC.len() as u64,
        })
    }

    /// Appends `entries` (not yet synced: see [`Journal::sync`]) and
    /// returns where the journal ended before and after. On any error the
    /// segment is cut back to where it was, so a failed append leaves no
    /// partial frame for a later one to follow.
    pub fn append(&self, entries: &[Entry]) -> Result<(Position, Position)> {
        let mut buf = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            push_marked(&mut buf, &e.encode(), i + 1 < entries.len());
        }
        let mut t = self.tail();
        if t.len >= SEGMENT_BYTES {
            let path = segment_path(&self.dir, t.segment);
            t.file.sync_data().map_err(|e| io_error(&path, e))?;
            let next = t.segment + 1;
            let file = new_segment(&self.dir, next)?;
            t.file = file;
            t.segment = next;
            t.len = SEGMENT_MAGIC.len() as u64;
            t.dirty = false;
        }
        let before = Position {
            segment: t.segment,
            offset: t.len,
        };
        if let Err(e) = t.file.write_all(&buf) {
            let path = segment_path(&self.dir, t.segment);
            let len = t.len;
            let _ = t.file.set_len(len);
            let _ = t.file.seek(SeekFrom::Start(len));
            return Err(io_error(&path, e));
        }
        t.len += buf.len() as u64;
        t.dirty = true;
        Ok((
            before,
            Position {
                segment: t.segment,
                offset: t.len,
            },
        ))
    }

    /// Cuts the journal back to `to` (the end before a write whose sled
    /// half failed), so that the write is gone from both.
    pub fn truncate(&self, to: Position) -> Result<()> {
        let mut t = self.tail();
        if to.segment != t.segment || to.offset > t.len {
            return Err(StoreError::Corrupt(format!(
                "cannot cut the journal back to {to}: it ends at {}:{}",
                t.segment, t.len
            )));
        }
        let path = segment_path(&self.dir, t.segment);
        t.file.set_len(to.offset).map_err(|e| io_error(&path, e))?;
        t.file
            .seek(SeekFrom::Start(to.offset))
            .map_err(|e| io_error(&path, e))?;
        // Durable at once: an entry taken back must not return after a crash.
        t.file.sync_data().map_err(|e| io_error(&path, e))?;
        t.len = to.offset;
        t.dirty = false;
        Ok(())
    }

    /// Makes every append so far durable (fdatasync of the last segment).
    pub fn sync(&self) -> Result<()> {
        let mut t = self.tail();
        if t.dirty {
            let path = segment_path(&self.dir, t.segment);
            t.file.sync_data().map_err(|e| io_error(&path, e))?;
            t.dirty = false;
        }
        Ok(())
    }

    /// Reads the entries from `from` up to `to` (exclusive), in order.
    pub fn read(&self, from: Position, to: Position) -> Result<Reader> {
        let segments = segment_numbers(&self.dir)?
            .into_iter()
            .filter(|s| *s >= from.segment && *s <= to.segment)
            .collect();
        Ok(Reader {
            dir: self.dir.clone(),
            segments,
            from,
            to,
            current: None,
        })
    }

    /// Bytes the journal occupies.
    pub fn size(&self) -> Result<u64> {
        let mut total = 0;
        for s in segment_numbers(&self.dir)? {
            let p = segment_path(&self.dir, s);
            total += fs::metadata(&p).map_err(|e| io_error(&p, e))?.len();
        }
        Ok(total)
    }

    /// Rewrites the journal with only the entries `keep` accepts, in
    /// order. Appends wait until it is done. Positions change: the caller
    /// records the new [`Journal::end`].
    pub fn compact(&self, mut keep: impl FnMut(Position, &Entry) -> bool) -> Result<Compacted> {
        let mut t = self.tail();
        let end = Position {
            segment: t.segment,
            offset: t.len,
        };
        let mut report = Compacted {
            bytes_before: self.size()?,
            ..Compacted::default()
        };
        let new_dir = sibling(&self.dir, "new");
        if new_dir.exists() {
            fs::remove_dir_all(&new_dir).map_err(|e| io_error(&new_dir, e))?;
        }
        fs::create_dir_all(&new_dir).map_err(|e| io_error(&new_dir, e))?;
        let mut segment = 1;
        let mut out = new_segment(&new_dir, segment)?;
        let mut len = SEGMENT_MAGIC.len() as u64;
        let start = self.start()?;
        let mut buf = Vec::new();
        for item in self.read(start, end)? {
            let (at, entry) = item?;
            if !keep(at, &entry) {
                report.dropped += 1;
                continue;
            }
            report.kept += 1;
            if len >= SEGMENT_BYTES {
                let p = segment_path(&new_dir, segment);
                out.write_all(&buf).map_err(|e| io_error(&p, e))?;
                out.sync_all().map_err(|e| io_error(&p, e))?;
                buf.clear();
                segment += 1;
                out = new_segment(&new_dir, segment)?;
                len = SEGMENT_MAGIC.len() as u64;
            }
            let before = buf.len();
            push_frame(&mut buf, &entry.encode());
            len += (buf.len() - before) as u64;
        }
        let p = segment_path(&new_dir, segment);
        out.write_all(&buf).map_err(|e| io_error(&p, e))?;
        out.sync_all().map_err(|e| io_error(&p, e))?;
        sync_dir(&new_dir)?;
        let old_dir = sibling(&self.dir, "old");
        fs::rename(&self.dir, &old_dir).map_err(|e| io_error(&self.dir, e))?;
        fs::rename(&new_dir, &self.dir).map_err(|e| io_error(&self.dir, e))?;
        sync_dir(self.dir.parent().unwrap_or(&self.dir))?;
        fs::remove_dir_all(&old_dir).map_err(|e| io_error(&old_dir, e))?;
        let path = segment_path(&self.dir, segment);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        file.seek(SeekFrom::Start(len))
            .map_err(|e| io_error(&path, e))?;
        *t = Tail {
            file,
            segment,
            len,
            dirty: false,
        };
        drop(t);
        report.bytes_after = self.size()?;
        Ok(report)
    }
}

/// Iterates journal entries with their positions.
#[derive(Debug)]
pub struct Reader {
    dir: PathBuf,
    segments: std::collections::VecDeque<u64>,
    from: Position,
    to: Position,
    current: Option<(u64, u64, BufReader<File>)>,
}

impl Iterator for Reader {
    type Item = Result<(Position, Entry)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let segment = self.segments.pop_front()?;
                let path = segment_path(&self.dir, segment);
                let opened = File::open(&path).and_then(|mut f| {
                    let mut magic = [0u8; SEGMENT_MAGIC.len()];
                    let n = read_full(&mut f, &mut magic)?;
                    if n < magic.len() || segment_version_1(&magic).is_none() {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "not a Rapport journal segment",
                        ));
                    }
                    let mut offset = SEGMENT_MAGIC.len() as u64;
                    if segment == self.from.segment && self.from.offset > offset {
                        f.seek(SeekFrom::Start(self.from.offset))?;
                        offset = self.from.offset;
                    }
                    Ok((segment, offset, BufReader::with_capacity(1 << 20, f)))
                });
                match opened {
                    Ok(c) => self.current = Some(c),
                    Err(e) => return Some(Err(io_error(&path, e))),
                }
            }
            let (segment, offset, reader) = self.current.as_mut()?;
            let here = Position {
                segment: *segment,
                offset: *offset,
            };
            if here >= self.to {
                self.segments.clear();
                self.current = None;
                return None;
            }
            match read_frame(reader) {
                Ok(Frame::Payload(p)) => {
                    *offset += (FRAME_HEADER + p.len()) as u64;
                    return Some(
                        Entry::decode(&p)
                            .map(|e| (here, e))
                            .map_err(|e| StoreError::Corrupt(format!("journal at {here}: {e}"))),
                    );
                }
                Ok(Frame::End) => self.current = None,
                Ok(Frame::Bad(why)) => {
                    self.segments.clear();
                    self.current = None;
                    return Some(Err(StoreError::Corrupt(format!(
                        "journal at {here}: {why}"
                    ))));
                }
                Err(e) => {
                    self.current = None;
                    return Some(Err(io_error(&segment_path(&self.dir, here.segment), e)));
                }
            }
        }
    }
}

/// The store's and journal's I/O errors in words that say what to do.
pub fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            StoreError::DiskFull {
                path: path.display().to_string(),
            }
        }
        std::io::ErrorKind::ReadOnlyFilesystem => StoreError::ReadOnly {
            path: path.display().to_string(),
        },
        _ => StoreError::Io {
            path: path.display().to_string(),
            source: e,
        },
    }
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    dir.with_file_name(name)
}

/// Completes or undoes a compaction's directory swap that a crash cut.
fn finish_swap(dir: &Path) -> Result<()> {
    let old = sibling(dir, "old");
    let new = sibling(dir, "new");
    if old.is_dir() {
        if dir.is_dir() {
            // The swap happened; only removing the old copy was left.
            fs::remove_dir_all(&old).map_err(|e| io_error(&old, e))?;
        } else {
            // Cut between the two renames: the old journal is whole.
            fs::rename(&old, dir).map_err(|e| io_error(dir, e))?;
            tracing::warn!(journal = %dir.display(), "an interrupted journal compaction was undone");
        }
    }
    if new.is_dir() {
        fs::remove_dir_all(&new).map_err(|e| io_error(&new, e))?;
    }
    Ok(())
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016x}.seg"))
}

fn segment_numbers(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if let Ok(n) = u64::from_str_radix(stem, 16) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Creates segment `n` with its header, durably (file and directory).
fn new_segment(dir: &Path, n: u64) -> Result<File> {
    let path = segment_path(dir, n);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    file.write_all(SEGMENT_MAGIC)
        .map_err(|e| io_error(&path, e))?;
    file.sync_all().map_err(|e| io_error(&path, e))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Whether `magic` starts a segment: `Some(true)` for one of version 1.
fn segment_version_1(magic: &[u8]) -> Option<bool> {
    if magic == SEGMENT_MAGIC {
        Some(false)
    } else if magic == SEGMENT_MAGIC_V1 {
        Some(true)
    } else {
        None
    }
}

/// The length of the part of a segment made of whole appends of valid
/// frames (0: not a segment), and whether it is of version 1.
fn valid_length(file: &mut File) -> std::io::Result<(u64, bool)> {
    file.seek(SeekFrom::Start(0))?;
    let mut r = BufReader::with_capacity(1 << 20, &mut *file);
    let mut magic = [0u8; SEGMENT_MAGIC.len()];
    let version_1 = match read_full(&mut r, &mut magic)? {
        n if n < magic.len() => return Ok((0, false)),
        _ => match segment_version_1(&magic) {
            Some(v1) => v1,
            None => return Ok((0, false)),
        },
    };
    let mut read = SEGMENT_MAGIC.len() as u64;
    let mut whole = read;
    while let (Frame::Payload(p), more) = read_marked(&mut r)? {
        read += (FRAME_HEADER + p.len()) as u64;
        if !more {
            whole = read;
        }
    }
    Ok((whole, version_1))
}

/// Makes a directory's entries (files created or renamed in it) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(n: u8) -> Entry {
        Entry::Change {
            record: RecordId::new(n as u64, [n; 10]),
            space: if n.is_multiple_of(2) {
                SpaceId::Private
            } else {
                SpaceId::Shared(RecordId::new(7, [7; 10]))
            },
            change: vec![n; 100 + n as usize],
        }
    }

    fn all(j: &Journal) -> Vec<Entry> {
        j.read(j.start().expect("start"), j.end())
            .expect("read")
            .map(|r| r.expect("entry").1)
            .collect()
    }

    #[test]
    fn entries_come_back_in_order_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let entries: Vec<Entry> = (0..10)
            .map(change)
            .chain([Entry::Invite {
                hash: vec![9; 32],
                invite: b"{}".to_vec(),
            }])
            .collect();
        {
            let (j, _) = Journal::open(&path, true).expect("open");
            j.append(&entries[..4]).expect("append");
            j.append(&entries[4..]).expect("append");
            j.sync().expect("sync");
            assert_eq!(all(&j), entries);
        }
        let (j, opened) = Journal::open(&path, false).expect("reopen");
        assert_eq!(opened.torn_bytes, 0);
        assert_eq!(all(&j), entries);
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let (j, _) = Journal::open(&path, true).expect("open");
        j.append(&[change(1), change(2)]).expect("append");
        j.sync().expect("sync");
        drop(j);
        // A kill mid-append: half a frame at the end.
        let seg = segment_path(&path, 1);
        let mut torn = Vec::new();
        push_frame(&mut torn, &change(3).encode());
        let mut f = OpenOptions::new().append(true).open(&seg).expect("seg");
        f.write_all(&torn[..torn.len() / 2]).expect("write");
        drop(f);
        let (j, opened) = Journal::open(&path, false).expect("reopen");
        assert_eq!(opened.torn_bytes, (torn.len() / 2) as u64);
        assert_eq!(all(&j), vec![change(1), change(2)]);
        j.append(&[change(4)]).expect("append");
        assert_eq!(all(&j), vec![change(1), change(2), change(4)]);
        // Zeros past the end (a size grown but never written) are cut too.
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&seg).expect("seg");
        f.write_all(&[0u8; 64]).expect("write");
        drop(f);
        let (j, opened) = Journal::open(&path, false).expect("reopen");
        assert_eq!(opened.torn_bytes, 64);
        assert_eq!(all(&j), vec![change(1), change(2), change(4)]);
        // A flipped bit in the last frame is a torn tail too.
        drop(j);
        let mut bytes = fs::read(&seg).expect("read");
        let last = bytes.len() - 3;
        bytes[last] ^= 0x40;
        fs::write(&seg, &bytes).expect("write");
        let (j, opened) = Journal::open(&path, false).expect("reopen");
        assert!(opened.torn_bytes > 0);
        assert_eq!(all(&j), vec![change(1), change(2)]);
    }

    #[test]
    fn a_segment_with_a_wrong_header_is_reported_never_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let (j, _) = Journal::open(&path, true).expect("open");
        j.append(&[change(1)]).expect("append");
        j.sync().expect("sync");
        drop(j);
        let seg = segment_path(&path, 1);
        let mut bytes = fs::read(&seg).expect("read");
        bytes[0] ^= 0xff;
        fs::write(&seg, &bytes).expect("write");
        let err = Journal::open(&path, false).expect_err("damaged");
        assert!(matches!(err, StoreError::JournalDamaged { .. }), "{err}");
        assert_eq!(
            fs::read(&seg).expect("read"),
            bytes,
            "the segment was changed"
        );
    }

    #[test]
    fn segments_roll_and_read_across_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let (j, _) = Journal::open(&path, true).expect("open");
        let big = Entry::Change {
            record: RecordId::new(1, [1; 10]),
            space: SpaceId::Private,
            change: vec![5; (SEGMENT_BYTES / 2) as usize],
        };
        for _ in 0..5 {
            j.append(std::slice::from_ref(&big)).expect("append");
        }
        assert!(j.end().segment >= 3, "{}", j.end());
        let middle = j.end();
        j.append(&[change(1)]).expect("append");
        assert_eq!(all(&j).len(), 6);
        let tail: Vec<Entry> = j
            .read(middle, j.end())
            .expect("read")
            .map(|r| r.expect("entry").1)
            .collect();
        assert_eq!(tail, vec![change(1)]);
    }

    #[test]
    fn a_failed_append_leaves_no_partial_frame() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let (j, _) = Journal::open(&path, true).expect("open");
        let (before, _) = j.append(&[change(1)]).expect("append");
        let (mid, _) = j.append(&[change(2)]).expect("append");
        j.truncate(mid).expect("truncate");
        assert_eq!(all(&j), vec![change(1)]);
        assert!(before < mid);
    }

    #[test]
    fn compaction_keeps_what_is_asked_and_survives_an_interrupted_swap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let (j, _) = Journal::open(&path, true).expect("open");
        j.append(&(0..8).map(change).collect::<Vec<_>>())
            .expect("append");
        let report = j
            .compact(|_, e| matches!(e, Entry::Change { change, .. } if change[0] % 3 != 0))
            .expect("compact");
        assert_eq!((report.kept, report.dropped), (5, 3));
        assert!(report.bytes_after < report.bytes_before);
        let kept: Vec<Entry> = [1, 2, 4, 5, 7].into_iter().map(change).collect();
        assert_eq!(all(&j), kept);
        j.append(&[change(9)]).expect("append after compaction");
        drop(j);
        // A crash between the two renames of the next compaction.
        fs::rename(&path, sibling(&path, "old")).expect("rename");
        fs::create_dir_all(sibling(&path, "new")).expect("new");
        let (j, _) = Journal::open(&path, false).expect("reopen");
        assert_eq!(all(&j).len(), 6);
        assert!(!sibling(&path, "new").exists());
    }

    #[test]
    fn entries_round_trip() {
        for e in [
            change(1),
            change(2),
            Entry::Invite {
                hash: vec![1, 2, 3],
                invite: b"{\"a\":1}".to_vec(),
            },
        ] {
            assert_eq!(Entry::decode(&e.encode()).expect("decode"), e);
        }
        assert!(Entry::decode(&[1, 2, 3]).is_err());
        assert!(Entry::decode(&[]).is_err());
    }

    #[test]
    fn an_append_cut_after_some_of_its_frames_is_cut_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let (j, _) = Journal::open(&path, true).expect("open");
        j.append(&[change(1)]).expect("append");
        let (before, _) = j
            .append(&(0..200).map(|n| change(n as u8)).collect::<Vec<_>>())
            .expect("a batch");
        j.sync().expect("sync");
        drop(j);
        // A kill while the kernel copied the batch: 189 whole frames, the
        // 190th cut short, the rest never written.
        let seg = segment_path(&path, 1);
        let mut frames = Vec::new();
        for n in 0..190u8 {
            push_frame(&mut frames, &change(n).encode());
        }
        let cut = before.offset + frames.len() as u64 - 5;
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .and_then(|f| f.set_len(cut))
            .expect("cut");
        let (j, opened) = Journal::open(&path, false).expect("reopen");
        assert_eq!(all(&j), vec![change(1)], "none of the batch");
        assert_eq!(opened.torn_bytes, cut - before.offset);
        // Appends go on after the last whole one.
        j.append(&[change(7), change(8)]).expect("append");
        j.sync().expect("sync");
        drop(j);
        let (j, _) = Journal::open(&path, false).expect("reopen");
        assert_eq!(all(&j), vec![change(1), change(7), change(8)]);
    }

    #[test]
    fn a_journal_of_version_1_is_read_and_goes_on_in_a_segment_of_version_2() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        fs::create_dir_all(&path).expect("dir");
        // As a node before marked appends wrote it: one frame per entry.
        let mut old = SEGMENT_MAGIC_V1.to_vec();
        for n in 1..=3 {
            push_frame(&mut old, &change(n).encode());
        }
        fs::write(segment_path(&path, 1), &old).expect("write");
        let (j, opened) = Journal::open(&path, false).expect("open");
        assert_eq!(opened.torn_bytes, 0);
        assert_eq!(all(&j), vec![change(1), change(2), change(3)]);
        j.append(&[change(4), change(5)]).expect("append");
        j.sync().expect("sync");
        drop(j);
        assert_eq!(
            fs::read(segment_path(&path, 1)).expect("read"),
            old,
            "untouched"
        );
        let new = fs::read(segment_path(&path, 2)).expect("a new segment");
        assert!(new.starts_with(SEGMENT_MAGIC));
        let (j, _) = Journal::open(&path, false).expect("reopen");
        assert_eq!(
            all(&j),
            vec![change(1), change(2), change(3), change(4), change(5)]
        );
    }
}
