//! Turns a chat turn into the SSE events of `API.md`: `meta`, `token`…, `title`, then `done` or
//! `error`, with `: ping` after 15 s of silence.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use serde_json::json;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::service::chat::{Turn, TurnEvent};

/// How long the stream may stay silent before a `: ping` comment.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);

fn event(name: &str, data: serde_json::Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

/// The wire form of one turn event.
pub fn to_event(e: TurnEvent) -> Event {
    match e {
        TurnEvent::Token(text) => event("token", json!({ "text": text })),
        TurnEvent::Title {
            conversation_id,
            title,
        } => event(
            "title",
            json!({ "conversation_id": conversation_id, "title": title }),
        ),
        TurnEvent::Done {
            message_id,
            finish_reason,
            usage,
        } => event(
            "done",
            json!({ "message_id": message_id, "finish_reason": finish_reason, "usage": usage }),
        ),
        TurnEvent::Error { code, message } => {
            event("error", json!({ "code": code, "message": message }))
        }
    }
}

/// The whole event stream of a turn.
pub fn turn_stream(turn: Turn) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let meta = event("meta", serde_json::to_value(&turn.meta).unwrap_or_default());
    stream::once(async move { Ok(meta) })
        .chain(UnboundedReceiverStream::new(turn.events).map(|e| Ok(to_event(e))))
}

/// The SSE response of a turn.
pub fn response(turn: Turn) -> Sse<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
    Sse::new(turn_stream(turn)).keep_alive(KeepAlive::new().interval(PING_INTERVAL).text("ping"))
}
