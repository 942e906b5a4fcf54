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
        TurnEvent::Error(e) => {
            let body = super::ApiError::from(e).body();
            event(
                "error",
                json!({ "code": body.error.code, "message": body.error.message }),
            )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConversationId, MessageId};
    use crate::service::chat::TurnMeta;
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;

    fn turn() -> (tokio::sync::mpsc::UnboundedSender<TurnEvent>, Turn) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let meta = TurnMeta {
            conversation_id: ConversationId::from("c1"),
            user_message_id: MessageId::from("u1"),
            assistant_message_id: MessageId::from("a1"),
            created_conversation: true,
            files: vec![],
            model: "gpt".into(),
        };
        (tx, Turn { meta, events: rx })
    }

    async fn next_text(body: &mut axum::body::Body) -> String {
        let frame = body.frame().await.unwrap().unwrap();
        String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_is_pinged_every_15_seconds() {
        let (tx, t) = turn();
        let mut body = response(t).into_response().into_body();
        assert!(next_text(&mut body).await.starts_with("event: meta\n"));
        // Nothing for 15 s: a comment line keeps proxies and clients from timing out.
        let ping = tokio::spawn(async move {
            let text = next_text(&mut body).await;
            (text, body)
        });
        tokio::time::advance(PING_INTERVAL + std::time::Duration::from_millis(10)).await;
        let (text, mut body) = ping.await.unwrap();
        assert_eq!(text, ": ping\n\n");
        tx.send(TurnEvent::Token("Hi".into())).unwrap();
        assert_eq!(
            next_text(&mut body).await,
            "event: token\ndata: {\"text\":\"Hi\"}\n\n"
        );
    }

    #[test]
    fn events_have_the_contract_shapes() {
        let e = |ev: TurnEvent| {
            let (tx, t) = turn();
            tx.send(ev).unwrap();
            drop(tx);
            t
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let text = rt.block_on(async {
            let t = e(TurnEvent::Done {
                message_id: MessageId::from("a1"),
                finish_reason: "stop".into(),
                usage: crate::domain::Receipt {
                    model: "claude".into(),
                    provider: "anthropic".into(),
                    prompt_tokens: 812,
                    completion_tokens: 143,
                    cost_usd: Some(0.004_581),
                    time_to_first_token_ms: Some(420),
                    duration_ms: 3_100,
                },
            });
            let body = response(t).into_response().into_body();
            String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap()
        });
        let events = crate::testing::parse_sse(&text);
        assert_eq!(events[1].event, "done");
        assert_eq!(
            events[1].data,
            serde_json::json!({"message_id": "a1", "finish_reason": "stop", "usage": {
                "model": "claude", "provider": "anthropic", "prompt_tokens": 812, "completion_tokens": 143,
                "cost_usd": 0.004_581, "time_to_first_token_ms": 420, "duration_ms": 3_100}})
        );
    }

    #[tokio::test]
    async fn an_error_event_carries_the_code_of_its_kind_and_a_safe_message() {
        use crate::service::Error;
        for (e, code, message) in [
            (
                Error::Upstream("provider said no".into()),
                "upstream_error",
                "provider said no",
            ),
            (
                Error::Unavailable("The answer could not be saved.".into()),
                "unavailable",
                "The answer could not be saved.",
            ),
            (
                Error::Internal("disk /var/x is corrupt".into()),
                "internal",
                "Something went wrong on our side. Please try again.",
            ),
        ] {
            let (tx, t) = turn();
            tx.send(TurnEvent::Error(e)).unwrap();
            drop(tx);
            let body = response(t).into_response().into_body();
            let text =
                String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
            let events = crate::testing::parse_sse(&text);
            assert_eq!(events[1].event, "error");
            assert_eq!(
                events[1].data,
                serde_json::json!({ "code": code, "message": message })
            );
        }
    }
}
