//! Turns a chat turn into the SSE events of `API.md`: `meta`, `token`…, `title`, then `done` or
//! `error`, with `: ping` after 15 s of silence. Each event's data is one JSON document; its
//! payload types here are what the wire carries and what the OpenAPI document describes.

use std::borrow::Cow;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use serde::Serialize;
use tokio_stream::wrappers::UnboundedReceiverStream;
use utoipa::openapi::schema::{Object, OneOf, Schema, Type};
use utoipa::openapi::{Discriminator, Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::ErrorDetail;
use crate::domain::{ConversationId, MessageId, Receipt};
use crate::service::chat::{Turn, TurnEvent, TurnMeta};

/// How long the stream may stay silent before a `: ping` comment.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);

/// The data of a `token` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenData {
    /// The next piece of the answer; append it to what came before.
    pub text: String,
}

/// The data of a `title` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct TitleData {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Its automatic title.
    pub title: String,
}

/// The data of a `done` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct DoneData {
    /// The stored answer's id.
    pub message_id: MessageId,
    /// Why the model stopped (`stop`, `length`, …, as the provider said).
    pub finish_reason: String,
    /// The receipt: the model that answered, its provider, tokens, cost, times.
    pub usage: Receipt,
}

/// The events of a turn with the schema of each one's data (`event: <name>`, `data: <JSON>`).
const EVENTS: [(&str, &str); 5] = [
    ("meta", "TurnMeta"),
    ("token", "TokenData"),
    ("title", "TitleData"),
    ("done", "DoneData"),
    ("error", "ErrorDetail"),
];

fn event(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_default())
}

/// The wire form of one turn event.
pub fn to_event(e: TurnEvent) -> Event {
    match e {
        TurnEvent::Token(text) => event("token", &TokenData { text }),
        TurnEvent::Title {
            conversation_id,
            title,
        } => event(
            "title",
            &TitleData {
                conversation_id,
                title,
            },
        ),
        TurnEvent::Done {
            message_id,
            finish_reason,
            usage,
        } => event(
            "done",
            &DoneData {
                message_id,
                finish_reason,
                usage,
            },
        ),
        TurnEvent::Error(e) => event("error", &super::ApiError::from(e).body().error),
    }
}

/// One server-sent event of a chat turn, for the OpenAPI document: an object with the event's
/// name and its `data`, a JSON document (`contentMediaType`) of the event's schema
/// (`contentSchema`), the form OpenAPI 3.1 gives events of a `text/event-stream`.
pub struct TurnEventSchema;

/// The schema name of the event called `name`: `meta` → `MetaEvent`.
fn event_schema_name(name: &str) -> String {
    let mut chars = name.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase());
    format!(
        "{}{}Event",
        first.into_iter().collect::<String>(),
        chars.as_str()
    )
}

/// `{event: "<name>", data: "<JSON of payload>"}`.
fn event_schema(name: &str, payload: &str) -> Schema {
    let mut data = Object::with_type(Type::String);
    data.description = Some(format!("A JSON document: {payload}."));
    data.content_media_type = "application/json".into();
    // utoipa's Object has no field for JSON Schema's `contentSchema`; its extensions are written
    // into the object as they are.
    data.extensions.get_or_insert_with(Default::default).insert(
        "contentSchema".into(),
        serde_json::json!({ "$ref": format!("#/components/schemas/{payload}") }),
    );
    let mut kind = Object::with_type(Type::String);
    kind.enum_values = Some(vec![name.into()]);
    let mut object = Object::with_type(Type::Object);
    object.description = Some(format!("The `{name}` event."));
    object.required = vec!["event".into(), "data".into()];
    object.properties.insert("event".into(), kind.into());
    object.properties.insert("data".into(), data.into());
    Schema::Object(object)
}

impl PartialSchema for TurnEventSchema {
    fn schema() -> RefOr<Schema> {
        let mut one_of = OneOf::new();
        let mut discriminator = Discriminator::new("event");
        for (name, _) in EVENTS {
            let schema = event_schema_name(name);
            one_of
                .items
                .push(Ref::from_schema_name(schema.clone()).into());
            discriminator
                .mapping
                .insert(name.into(), format!("#/components/schemas/{schema}"));
        }
        one_of.description = Some(
            "One event: `meta` first, then `token`… as the answer is written, `title` when a new \
             conversation's automatic title is ready, and last `done` (the answer is stored) or \
             `error` (the stream ends; what was written is stored as `incomplete`). A `: ping` \
             comment comes after 15 s of silence."
                .into(),
        );
        one_of.discriminator = Some(discriminator);
        Schema::OneOf(one_of).into()
    }
}

impl ToSchema for TurnEventSchema {
    fn name() -> Cow<'static, str> {
        "TurnEvent".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        for (name, payload) in EVENTS {
            schemas.push((event_schema_name(name), event_schema(name, payload).into()));
        }
        schemas.extend([
            (TurnMeta::name().into(), TurnMeta::schema()),
            (TokenData::name().into(), TokenData::schema()),
            (TitleData::name().into(), TitleData::schema()),
            (DoneData::name().into(), DoneData::schema()),
            (Receipt::name().into(), Receipt::schema()),
            (ErrorDetail::name().into(), ErrorDetail::schema()),
        ]);
        <TurnMeta as ToSchema>::schemas(schemas);
        <TokenData as ToSchema>::schemas(schemas);
        <TitleData as ToSchema>::schemas(schemas);
        <DoneData as ToSchema>::schemas(schemas);
    }
}

/// The whole event stream of a turn.
pub fn turn_stream(turn: Turn) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let meta = event("meta", &turn.meta);
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
