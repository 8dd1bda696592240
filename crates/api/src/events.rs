//! `GET /api/v1/events`: server-sent events of what happens to records,
//! from the node's live feed. Each event has `id:` its cursor, `event:`
//! its type and JSON `data:` ([`EventBody`]); a client that reconnects
//! with `Last-Event-ID` (browsers do it by themselves) or `?after=`
//! gets what it missed. When that is no longer kept (the node restarted,
//! or too much happened since), the stream starts with a `reset` event
//! and follows from now.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use rapport_model::SpaceId;
use rapport_node::live::Event;
use tokio::sync::broadcast::error::RecvError;

use crate::dto::{EventBody, Reset};
use crate::problem::{Problem, ProblemDocument};
use crate::routes::{AppState, Auth, in_scope};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    #[serde(default)]
    after: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(
        ("after" = Option<String>, Query, description = "Resume after this cursor (an event's id)"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this cursor (what an EventSource sends when it reconnects); wins over `after`"),
    ),
    responses(
        (status = 200, description = "A stream of server-sent events: `event:` record.created, record.changed, record.deleted, record.restored, record.removed, deal.stage_changed (`data`: EventBody) or reset (`data`: Reset); `id:` the cursor", content_type = "text/event-stream", body = EventBody),
        (status = 503, description = "The node does not follow its records (it is starting)", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn events(
    State(state): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Problem> {
    let Query(query) = query?;
    let live = state.ops.live().cloned().ok_or_else(|| {
        Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "needs_node",
            "this node does not publish events",
        )
    })?;
    let cursor = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(query.after);
    let (missed, rx, reset) = match live.resume(cursor.as_deref()) {
        Ok((missed, rx)) => (missed, rx, None),
        Err(gone) => {
            let (_, rx) = live
                .resume(None)
                .map_err(|e| Problem::internal(e.to_string()))?;
            (Vec::new(), rx, Some(gone.to_string()))
        }
    };
    let scope = caller.space;
    let stream = Feed {
        first: reset.map(reset_event).into_iter().collect(),
        missed: missed.into_iter(),
        rx,
        scope,
        stopping: state.stopping.clone(),
        recheck: tokio::time::interval_at(
            tokio::time::Instant::now() + TOKEN_RECHECK,
            TOKEN_RECHECK,
        ),
        ops: state.ops.clone(),
        token: caller.token,
    }
    .into_stream();
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct Feed {
    first: Vec<SseEvent>,
    missed: std::vec::IntoIter<Event>,
    rx: tokio::sync::broadcast::Receiver<Event>,
    scope: Option<SpaceId>,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// When to check again that the stream's token is still valid.
    recheck: tokio::time::Interval,
    ops: rapport_node::ops::Ops,
    /// The token's name.
    token: Option<String>,
}

/// How soon an open stream ends after its token is revoked.
const TOKEN_RECHECK: Duration = Duration::from_secs(5);

impl Feed {
    /// Whether the token the stream was opened with is still there.
    async fn token_valid(&self) -> bool {
        let Some(name) = self.token.clone() else {
            return true;
        };
        let ops = self.ops.clone();
        tokio::task::spawn_blocking(move || {
            ops.integrations()
                .tokens()
                .is_ok_and(|tokens| tokens.iter().any(|t| t.name == name))
        })
        .await
        .unwrap_or(false)
    }

    fn into_stream(self) -> impl Stream<Item = Result<SseEvent, Infallible>> {
        futures_util::stream::unfold(self, |mut feed| async move {
            let next = feed.next().await?;
            Some((Ok(next), feed))
        })
    }

    /// The next event to send; `None` ends the stream (the server stops).
    async fn next(&mut self) -> Option<SseEvent> {
        if let Some(e) = self.first.pop() {
            return Some(e);
        }
        for e in self.missed.by_ref() {
            if let Some(sse) = to_sse(&e, self.scope) {
                return Some(sse);
            }
        }
        loop {
            if *self.stopping.borrow() {
                return None;
            }
            tokio::select! {
                _ = self.stopping.changed() => return None,
                _ = self.recheck.tick() => {
                    if !self.token_valid().await {
                        return None;
                    }
                }
                got = self.rx.recv() => match got {
                    Ok(e) => {
                        if let Some(sse) = to_sse(&e, self.scope) {
                            return Some(sse);
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        return Some(reset_event(format!(
                            "this stream fell {n} events behind and skipped them; read what you need again, then follow from here"
                        )));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    }
}

/// An event as SSE, if a caller limited to `scope` may hear of it. A
/// record removed from the node has no space any more: only callers of
/// the whole node hear of it.
fn to_sse(e: &Event, scope: Option<SpaceId>) -> Option<SseEvent> {
    if !in_scope(scope, e.space) {
        return None;
    }
    let body = EventBody::from(e);
    let data = serde_json::to_string(&body).ok()?;
    Some(
        SseEvent::default()
            .id(e.cursor.clone())
            .event(e.event.as_str())
            .data(data),
    )
}

fn reset_event(reason: String) -> SseEvent {
    let data = serde_json::to_string(&Reset { reason }).unwrap_or_default();
    SseEvent::default().event("reset").data(data)
}
