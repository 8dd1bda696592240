//! Live updates of open pages: the node's feed of record events
//! (`rapport_node::live`), as server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use n0_future::{Stream, StreamExt};
use rapport_node::live;
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::App;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventsQuery {
    /// The feed's cursor when the page began to read (`data-since`).
    #[serde(default)]
    since: Option<String>,
}

/// `GET /events`: server-sent events, one `change` per record written, or
/// `reload` when this page fell too far behind to be told each. Changes
/// since the page's cursor (`?since=`, or `Last-Event-ID` when the browser
/// reconnects) come first: a change that landed while the page was being
/// read and sent still refreshes it.
pub(crate) async fn events(
    State(app): State<App>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.since);
    let (first, rx) = match app.live.resume(from.as_deref()) {
        Ok((missed, rx)) => (missed.iter().map(change).collect(), rx),
        // Too far behind (or another boot of the node): read it all again.
        Err(live::CursorGone) => (vec![reload()], app.live.subscribe()),
    };
    let later = n0_future::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(c) => change(&c),
            Err(broadcast::error::RecvError::Lagged(_)) => reload(),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((event, rx))
    });
    let stream = n0_future::stream::iter(first).chain(later).map(Ok);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn change(c: &live::Event) -> Event {
    Event::default()
        .event("change")
        .id(c.cursor.clone())
        .data(serde_json::json!({ "id": c.id, "kind": c.kind, "event": c.event }).to_string())
}

fn reload() -> Event {
    Event::default().event("reload").data("{}")
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
        let t = std::sync::Arc::new(TestUi::start().await);
        let ui = t.clone();
        let listener =
            tokio::task::spawn_blocking(move || events_from(&ui, "/events", "\"company\""));
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
        let heard = listener.await.expect("listener");
        assert!(
            heard
                .iter()
                .any(|l| l.starts_with("data:") && l.contains(&made.id.to_string())),
            "{heard:?}"
        );
        let found = t.get("/search?format=json&q=zephyr").await;
        assert!(found.body.contains("Zephyr Logistics"), "{}", found.body);
    }

    /// The lines of the event stream at `path` (with its query) up to one
    /// holding `until`.
    fn events_from(t: &TestUi, path: &str, until: &'static str) -> Vec<String> {
        let (addr, cookie) = (t.ui.addr, t.cookie.clone());
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n"
        )
        .expect("write");
        let mut lines = BufReader::new(stream).lines().map_while(Result::ok);
        let status = lines.next().unwrap_or_default();
        assert!(status.contains("200"), "{status}");
        let mut seen = Vec::new();
        for line in lines {
            let done = line.contains(until);
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    }

    /// A page carries the feed's cursor from before it read anything; a
    /// change made after that, before its live connection opened, still
    /// reaches it. A cursor the node no longer knows asks for a reload.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_made_while_a_page_was_on_its_way_still_reaches_it() {
        let t = TestUi::start().await;
        let page = t.get("/k/company").await;
        let since = page
            .body
            .split("data-since=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page's cursor")
            .to_string();
        let repo = t.repo().clone();
        let made = tokio::task::spawn_blocking(move || {
            repo.create(
                Kind::Company,
                SpaceId::Private,
                &[("name".into(), "Late Arrival".into())],
            )
        })
        .await
        .expect("task")
        .expect("create");
        let id = made.id.to_string();
        let t = std::sync::Arc::new(t);
        let ui = t.clone();
        let path = format!("/events?since={since}");
        let heard = tokio::task::spawn_blocking(move || events_from(&ui, &path, "\"company\""))
            .await
            .expect("listener");
        assert!(
            heard
                .iter()
                .any(|l| l.starts_with("data:") && l.contains(&id)),
            "{heard:?}"
        );
        assert!(
            heard.iter().any(|l| l.starts_with("id:")),
            "events carry their cursor, for a reconnecting browser: {heard:?}"
        );
        let ui = t.clone();
        let stale =
            tokio::task::spawn_blocking(move || events_from(&ui, "/events?since=0000-1", "reload"))
                .await
                .expect("listener");
        assert!(stale.iter().any(|l| l == "event: reload"), "{stale:?}");
    }

    /// Every page that refreshes itself carries the cursor it resumes
    /// from, taken before it read anything.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_page_that_follows_changes_carries_its_cursor() {
        let t = TestUi::start().await;
        let repo = t.repo().clone();
        let acme = tokio::task::spawn_blocking(move || repo.resolve("Acme Corporation"))
            .await
            .expect("task")
            .expect("demo company");
        let record = format!("/r/{}", acme.id);
        let mut followed = 0;
        for path in [
            "/",
            "/board",
            "/k/company",
            "/k/deal?where=amount%3E%3D1000",
            record.as_str(),
            "/fields",
            "/duplicates",
            "/spaces",
        ] {
            let page = t.get(path).await;
            assert_eq!(page.status, 200, "{path}");
            let watch = page
                .body
                .split("data-watch=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default();
            if !watch.is_empty() {
                followed += 1;
                assert!(
                    page.body.contains("data-since=\""),
                    "{path} follows `{watch}` without a cursor"
                );
            }
        }
        assert!(followed >= 7, "only {followed} pages follow changes");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_need_a_session() {
        let t = TestUi::start().await;
        let stranger = t.logged_out();
        assert_eq!(stranger.get("/events").await.status, 401);
    }
}
