//! What happens to records while a node runs, as one feed: the search
//! index, and the events that open web pages, the HTTP API's event stream
//! and webhooks hear. All of it follows the store's watch feed, so
//! whatever writes a record (a form, the CLI, an integration, a peer's
//! change arriving by gossip or catch-up) is seen the same way.
//!
//! Events are numbered from 1 in the order they were seen. A cursor names
//! this run of the node and a number (`BOOT-SEQ`), so that a client that
//! comes back after a restart is told it missed events rather than being
//! handed another run's numbers. The last [`KEPT_EVENTS`] events are kept
//! in memory for clients that resume.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use rapport_model::{Kind, RecordId, RecordView, SpaceId};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::Repo;
use crate::search::{Found, SearchIndex};

/// Events kept for clients that resume from a cursor.
pub const KEPT_EVENTS: usize = 10_000;

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "record.created")]
    Created,
    #[serde(rename = "record.changed")]
    Changed,
    #[serde(rename = "record.deleted")]
    Deleted,
    #[serde(rename = "record.restored")]
    Restored,
    /// The record left this node: its space was left, or its author was
    /// removed from the space and the record is withdrawn.
    #[serde(rename = "record.removed")]
    Removed,
    /// A deal moved to another stage (sent after its `record.changed`).
    #[serde(rename = "deal.stage_changed")]
    StageChanged,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::Created,
        EventType::Changed,
        EventType::Deleted,
        EventType::Restored,
        EventType::Removed,
        EventType::StageChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "record.created",
            EventType::Changed => "record.changed",
            EventType::Deleted => "record.deleted",
            EventType::Restored => "record.restored",
            EventType::Removed => "record.removed",
            EventType::StageChanged => "deal.stage_changed",
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EventType::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not an event; events are: {}",
                    EventType::ALL.map(EventType::as_str).join(", ")
                )
            })
    }
}

/// One thing that happened to a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Where a client resumes after this event (`BOOT-SEQ`).
    pub cursor: String,
    pub event: EventType,
    pub id: RecordId,
    /// The record's kind; `None` when it was removed from this node.
    pub kind: Option<Kind>,
    pub space: Option<SpaceId>,
    /// The record as it is now (absent when removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordView>,
    /// For `deal.stage_changed`: the stage before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_stage: Option<String>,
}

/// A cursor older than the events kept, or from another run of the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "events before this cursor are no longer kept (the node restarted, or more than {KEPT_EVENTS} events happened since); read the records again, then follow from now"
)]
pub struct CursorGone;

/// What the follower remembers of each record, to tell events apart.
#[derive(Debug, Clone)]
struct Seen {
    deleted: bool,
    stage: Option<String>,
    /// Where it was: a client of that space hears it was removed.
    space: SpaceId,
}

#[derive(Debug, Default)]
struct History {
    next: u64,
    kept: VecDeque<(u64, Event)>,
}

/// The live feed of one running node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Live {
    index: Arc<RwLock<SearchIndex>>,
    ready: Arc<AtomicBool>,
    events: broadcast::Sender<Event>,
    history: Arc<Mutex<History>>,
    boot: Arc<String>,
    stopped: Arc<AtomicBool>,
}

impl Live {
    /// Starts following the store, after building the index from it.
    pub fn start(repo: Arc<Repo>) -> Live {
        let (events, _) = broadcast::channel(1024);
        let mut boot = [0u8; 4];
        // A fixed boot id only makes a stale cursor look current after a
        // restart; it is no secret.
        let _ = getrandom::fill(&mut boot);
        let live = Live {
            index: Arc::default(),
            ready: Arc::default(),
            events,
            history: Arc::new(Mutex::new(History {
                next: 1,
                kept: VecDeque::new(),
            })),
            boot: Arc::new(rapport_proto::hex(&boot)),
            stopped: Arc::default(),
        };
        // Subscribe before reading everything, so that nothing written
        // meanwhile is missed (it is applied twice at worst).
        let feed = repo.store().watch();
        let follower = live.clone();
        let weak = Arc::downgrade(&repo);
        drop(repo);
        let spawned = std::thread::Builder::new()
            .name("rapport-live".into())
            .spawn(move || follower.follow(weak, feed));
        if let Err(e) = spawned {
            tracing::error!("cannot start the search indexer: {e}");
        }
        live
    }

    fn follow(&self, repo: Weak<Repo>, feed: std::sync::mpsc::Receiver<RecordId>) {
        let mut seen: HashMap<RecordId, Seen> = HashMap::new();
        if let Some(repo) = repo.upgrade() {
            let started = std::time::Instant::now();
            let mut index = SearchIndex::new();
            for view in repo.all(None) {
                match view {
                    Ok(v) => {
                        index.put(&v);
                        seen.insert(v.id, seen_of(&v));
                    }
                    Err(e) => tracing::warn!("search index: a record could not be read: {e}"),
                }
            }
            tracing::info!(
                "search index: {} records in {:.1} s",
                index.len(),
                started.elapsed().as_secs_f64()
            );
            *self.index.write().unwrap_or_else(|p| p.into_inner()) = index;
            self.ready.store(true, Ordering::Release);
        }
        loop {
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            let first = match feed.recv_timeout(Duration::from_millis(500)) {
                Ok(id) => id,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let Some(repo) = repo.upgrade() else { return };
            let mut ids: Vec<RecordId> = std::iter::once(first).chain(feed.try_iter()).collect();
            ids.sort();
            ids.dedup();
            let mut happened = Vec::with_capacity(ids.len());
            {
                let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
                for id in ids {
                    match repo.store().view(id) {
                        Ok(Some(v)) => {
                            index.put(&v);
                            let before = seen.insert(v.id, seen_of(&v));
                            happened.extend(events_of(before.as_ref(), v));
                        }
                        Ok(None) => {
                            index.remove(id);
                            // A space document is written through the same
                            // feed; only records this node held are events.
                            if let Some(was) = seen.remove(&id) {
                                happened.push((
                                    EventType::Removed,
                                    id,
                                    None,
                                    Detail::Space(was.space),
                                ));
                            }
                        }
                        Err(e) => tracing::warn!("search index: record {id}: {e}"),
                    }
                }
            }
            for (event, id, record, detail) in happened {
                self.publish(event, id, record, detail);
            }
        }
    }

    fn publish(&self, event: EventType, id: RecordId, record: Option<RecordView>, detail: Detail) {
        let (previous_stage, removed_from) = match detail {
            Detail::None => (None, None),
            Detail::Stage(s) => (Some(s), None),
            Detail::Space(s) => (None, Some(s)),
        };
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let seq = history.next;
        history.next += 1;
        let e = Event {
            cursor: format!("{}-{seq}", self.boot),
            event,
            id,
            kind: record.as_ref().map(|r| r.kind),
            space: record.as_ref().map(|r| r.space).or(removed_from),
            record,
            previous_stage,
        };
        history.kept.push_back((seq, e.clone()));
        while history.kept.len() > KEPT_EVENTS {
            history.kept.pop_front();
        }
        // Sent under the lock, so that a client that reads the history and
        // then subscribes (also under it) misses nothing in between.
        // No listener is not an error.
        let _ = self.events.send(e);
    }

    /// The cursor of the newest event: where a client that starts now
    /// resumes from.
    pub fn cursor(&self) -> String {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        format!("{}-{}", self.boot, history.next - 1)
    }

    /// Events after `cursor` that are still kept, and a receiver of every
    /// later one: nothing is missed or repeated between the two.
    pub fn resume(
        &self,
        cursor: Option<&str>,
    ) -> Result<(Vec<Event>, broadcast::Receiver<Event>), CursorGone> {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.events.subscribe();
        let Some(cursor) = cursor else {
            return Ok((Vec::new(), rx));
        };
        let after = cursor
            .split_once('-')
            .filter(|(boot, _)| *boot == self.boot.as_str())
            .and_then(|(_, seq)| seq.parse::<u64>().ok())
            .filter(|seq| *seq < history.next)
            .ok_or(CursorGone)?;
        let oldest = history.kept.front().map_or(history.next, |(s, _)| *s);
        if after + 1 < oldest {
            return Err(CursorGone);
        }
        let missed = history
            .kept
            .iter()
            .filter(|(s, _)| *s > after)
            .map(|(_, e)| e.clone())
            .collect();
        Ok((missed, rx))
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Searches every live record; see [`SearchIndex::query`].
    pub fn search(&self, query: &str, limit: usize) -> Found {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .query(query, limit)
    }

    /// Whether the index has read the whole store yet.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }
}

fn seen_of(v: &RecordView) -> Seen {
    Seen {
        deleted: v.deleted,
        space: v.space,
        stage: (v.kind == Kind::Deal)
            .then(|| v.text("stage").map(str::to_string))
            .flatten(),
    }
}

/// What an event says beside the record.
#[derive(Debug, Clone, PartialEq)]
enum Detail {
    None,
    /// A deal's stage before it changed.
    Stage(String),
    /// The space a removed record was in.
    Space(SpaceId),
}

type Happened = (EventType, RecordId, Option<RecordView>, Detail);

/// The events one write of a record makes, given what was seen before.
fn events_of(before: Option<&Seen>, v: RecordView) -> Vec<Happened> {
    let id = v.id;
    let first = match before {
        None if v.deleted => return Vec::new(),
        None => EventType::Created,
        Some(b) if !b.deleted && v.deleted => EventType::Deleted,
        Some(b) if b.deleted && !v.deleted => EventType::Restored,
        Some(b) if b.deleted => return Vec::new(),
        Some(_) => EventType::Changed,
    };
    let moved = match before {
        Some(b) if first == EventType::Changed && v.kind == Kind::Deal => {
            let now = v.text("stage");
            (b.stage.as_deref() != now).then(|| b.stage.clone().unwrap_or_default())
        }
        _ => None,
    };
    let mut out = vec![(first, id, Some(v.clone()), Detail::None)];
    if let Some(previous) = moved {
        out.push((
            EventType::StageChanged,
            id,
            Some(v),
            Detail::Stage(previous),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_model::FieldValue;

    fn deal(stage: &str, deleted: bool) -> RecordView {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("title".into(), FieldValue::Text("Rollout".into()));
        fields.insert("stage".into(), FieldValue::Text(stage.into()));
        RecordView {
            id: RecordId::from_bytes([7; 16]),
            kind: Kind::Deal,
            space: SpaceId::Private,
            deleted,
            merged_into: None,
            updated: 0,
            fields,
            conflicts: Default::default(),
        }
    }

    fn types(before: Option<&Seen>, v: RecordView) -> Vec<EventType> {
        events_of(before, v).into_iter().map(|e| e.0).collect()
    }

    #[test]
    fn a_write_is_told_apart_by_what_was_seen_before() {
        let lead = seen_of(&deal("lead", false));
        let gone = seen_of(&deal("lead", true));
        assert_eq!(types(None, deal("lead", false)), [EventType::Created]);
        assert_eq!(
            types(Some(&lead), deal("lead", false)),
            [EventType::Changed]
        );
        assert_eq!(
            types(Some(&lead), deal("won", false)),
            [EventType::Changed, EventType::StageChanged]
        );
        assert_eq!(types(Some(&lead), deal("lead", true)), [EventType::Deleted]);
        assert_eq!(
            types(Some(&gone), deal("lead", false)),
            [EventType::Restored]
        );
        assert!(types(None, deal("lead", true)).is_empty());
        let moved = events_of(Some(&lead), deal("won", false));
        assert_eq!(moved[1].3, Detail::Stage("lead".into()));
    }

    /// A client that fell behind takes back, from the cursor of the last
    /// event it handled, exactly the events it missed; another run's
    /// cursor is refused rather than misread.
    #[test]
    fn resuming_from_a_cursor_gives_exactly_the_missed_events() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo =
            Arc::new(Repo::open(&tmp.path().join("data"), crate::OpenMode::Create).expect("open"));
        let live = Live::start(repo.clone());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !live.ready() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let (none, mut rx) = live.resume(None).expect("from now");
        assert!(none.is_empty());
        let mut made = Vec::new();
        for name in ["A", "B", "C", "D"] {
            let v = repo
                .create(
                    Kind::Company,
                    SpaceId::Private,
                    &[("name".into(), name.into())],
                )
                .expect("create");
            made.push(v.id);
        }
        let first = loop {
            match rx.try_recv() {
                Ok(e) => break e,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("no event: {e}"),
            }
        };
        assert_eq!(first.event, EventType::Created);
        let until = std::time::Instant::now() + Duration::from_secs(10);
        let missed = loop {
            let (missed, _) = live.resume(Some(&first.cursor)).expect("kept");
            if missed.len() == 3 || std::time::Instant::now() > until {
                break missed;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut ids: Vec<RecordId> = std::iter::once(first.id)
            .chain(missed.iter().map(|e| e.id))
            .collect();
        // One batch of the store's feed is told in id order.
        ids.sort();
        made.sort();
        assert_eq!(ids, made, "every event once");
        let (after_last, _) = live.resume(Some(&live.cursor())).expect("kept");
        assert!(after_last.is_empty());
        assert_eq!(live.resume(Some("00000000-1")).err(), Some(CursorGone));
        assert_eq!(live.resume(Some("garbage")).err(), Some(CursorGone));
        live.stop();
    }

    #[test]
    fn event_names_read_back() {
        for e in EventType::ALL {
            assert_eq!(e.as_str().parse::<EventType>(), Ok(e));
            assert_eq!(
                serde_json::to_value(e).ok(),
                Some(serde_json::Value::String(e.as_str().into()))
            );
        }
        assert!("record.exploded".parse::<EventType>().is_err());
    }
}
