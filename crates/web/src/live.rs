//! Live updates of open pages: the node's feed of record events
//! (`rapport_node::live`), as server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use n0_future::Stream;
use tokio::sync::broadcast;

use crate::App;

/// `GET /events`: server-sent events, one `change` per record written, or
/// `reload` when this page fell too far behind to be told each.
pub(crate) async fn events(
    State(app): State<App>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = app.live.subscribe();
    let stream = n0_future::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(c) => Event::default().event("change").data(
                serde_json::json!({ "id": c.id, "kind": c.kind, "event": c.event }).to_string(),
            ),
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
