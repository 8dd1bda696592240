//! The search index and live updates, both fed by the store's watch feed:
//! whatever writes a record (this user, a form, a peer's change arriving by
//! gossip or catch-up) updates the index and tells every open page.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use n0_future::Stream;
use rapport_model::{Kind, RecordId};
use rapport_node::Repo;
use rapport_node::search::{Found, SearchIndex};
use tokio::sync::broadcast;

use crate::App;

/// A record (or space) that changed, as sent to open pages.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Changed {
    pub id: RecordId,
    /// The record's kind; `None` for a space or a withdrawn record.
    pub kind: Option<Kind>,
}

#[derive(Debug, Clone)]
pub struct Live {
    index: Arc<RwLock<SearchIndex>>,
    ready: Arc<AtomicBool>,
    changes: broadcast::Sender<Changed>,
    stopped: Arc<AtomicBool>,
}

impl Live {
    /// Starts following the store, after building the index from it.
    pub fn start(repo: Arc<Repo>) -> Live {
        let (changes, _) = broadcast::channel(1024);
        let live = Live {
            index: Arc::default(),
            ready: Arc::default(),
            changes,
            stopped: Arc::default(),
        };
        // Subscribe before reading everything, so that nothing written
        // meanwhile is missed (it is applied twice at worst).
        let feed = repo.store().watch();
        let follower = live.clone();
        let weak = Arc::downgrade(&repo);
        drop(repo);
        let spawned = std::thread::Builder::new()
            .name("rapport-web-index".into())
            .spawn(move || follower.follow(weak, feed));
        if let Err(e) = spawned {
            tracing::error!("cannot start the search indexer: {e}");
        }
        live
    }

    fn follow(&self, repo: Weak<Repo>, feed: std::sync::mpsc::Receiver<RecordId>) {
        if let Some(repo) = repo.upgrade() {
            let started = std::time::Instant::now();
            let mut index = SearchIndex::new();
            for view in repo.all(None) {
                match view {
                    Ok(v) => index.put(&v),
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
            let mut changed = Vec::with_capacity(ids.len());
            {
                let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
                for id in ids {
                    match repo.store().view(id) {
                        Ok(Some(v)) => {
                            index.put(&v);
                            changed.push(Changed {
                                id,
                                kind: Some(v.kind),
                            });
                        }
                        Ok(None) => {
                            index.remove(id);
                            changed.push(Changed { id, kind: None });
                        }
                        Err(e) => tracing::warn!("search index: record {id}: {e}"),
                    }
                }
            }
            for c in changed {
                // No open page is not an error.
                let _ = self.changes.send(c);
            }
        }
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

    pub fn subscribe(&self) -> broadcast::Receiver<Changed> {
        self.changes.subscribe()
    }
}

/// `GET /events`: server-sent events, one `change` per record written, or
/// `reload` when this page fell too far behind to be told each.
pub(crate) async fn events(
    State(app): State<App>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = app.live.subscribe();
    let stream = n0_future::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(c) => Event::default()
                .event("change")
                .data(serde_json::to_string(&c).unwrap_or_default()),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                Event::default().event("reload").data("{}")
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::time::Duration;

    use rapport_model::{Kind, SpaceId};

    use crate::testing::TestUi;

    /// An open page hears of a record written after it connected, and the
    /// search box finds it, without anything being reloaded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_reaches_open_pages_and_the_search_index() {
        let t = TestUi::start().await;
        let (addr, cookie) = (t.ui.addr, t.cookie.clone());
        let listener = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            write!(
                stream,
                "GET /events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n"
            )
            .expect("write");
            let mut lines = BufReader::new(stream).lines();
            let status = lines.next().and_then(Result::ok).unwrap_or_default();
            assert!(status.contains("200"), "{status}");
            lines
                .map_while(Result::ok)
                .find(|l| l.starts_with("data:") && l.contains("\"company\""))
        });
        // Give the stream a moment to subscribe before the write.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let repo = t.repo().clone();
        let made = tokio::task::spawn_blocking(move || {
            repo.create(
                Kind::Company,
                SpaceId::Private,
                &[("name".into(), "Zephyr Logistics".into())],
            )
        })
        .await
        .expect("task")
        .expect("create");
        let heard = listener.await.expect("listener").expect("a change event");
        assert!(heard.contains(&made.id.to_string()), "{heard}");
        let found = t.get("/search?format=json&q=zephyr").await;
        assert!(found.body.contains("Zephyr Logistics"), "{}", found.body);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_need_a_session() {
        let t = TestUi::start().await;
        let stranger = t.logged_out();
        assert_eq!(stranger.get("/events").await.status, 401);
    }
}
