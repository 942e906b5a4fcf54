//! Turns a chat turn into the SSE events of `API.md`: `meta`, `queued`…, `token`…, `title`, then
//! `done` or `error`, with `: ping` after 15 s of silence. Every event has an `id:` (its number in
//! the turn: 1 is `meta`), so a client that loses the stream resumes after the last id it got
//! (`GET /api/chat/stream/{message_id}` with `Last-Event-ID`). Each event's data is one JSON
//! document; its payload types here are what the wire carries and what the OpenAPI document
//! describes. A followed turn is rendered by the same functions as a live one.

use std::borrow::Cow;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, BoxStream, Stream, StreamExt};
use serde::Serialize;
use tokio_stream::wrappers::UnboundedReceiverStream;
use utoipa::openapi::schema::{Object, OneOf, Schema, Type};
use utoipa::openapi::{Discriminator, Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::ErrorDetail;
use crate::domain::{Citation, ConversationId, MessageId, Receipt};
use crate::service::chat::follow::Followed;
use crate::service::chat::recorder::Logged;
use crate::service::chat::{Turn, TurnEvent, TurnMeta, META_ID};

/// How long the stream may stay silent before a `: ping` comment.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);

/// The data of a `queued` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedData {
    /// The answer's place in line for its model (1 = next).
    pub position: usize,
}

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
    /// Why the answer ended: the provider's reason (`stop`, `length`, …), or `stopped` when
    /// someone stopped it (`POST /api/chat/stop/{message_id}`; the answer is stored
    /// `incomplete`). A replay of an answer whose events have expired says `incomplete` for an
    /// answer that was cut short.
    pub finish_reason: String,
    /// The receipt: the model that answered, its provider, tokens, cost, times.
    pub usage: Receipt,
    /// The passages of files the answer cites with `[n]`, in order of first citation; empty when
    /// it cites none.
    pub citations: Vec<Citation>,
}

/// The events of a turn with the schema of each one's data (`event: <name>`, `data: <JSON>`).
const EVENTS: [(&str, &str); 6] = [
    ("meta", "TurnMeta"),
    ("queued", "QueuedData"),
    ("token", "TokenData"),
    ("title", "TitleData"),
    ("done", "DoneData"),
    ("error", "ErrorDetail"),
];

fn event(id: u64, name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .id(id.to_string())
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_default())
}

/// The wire form of one turn event, numbered `id`.
pub fn to_event(id: u64, e: TurnEvent) -> Event {
    match e {
        TurnEvent::Queued { position } => event(id, "queued", &QueuedData { position }),
        TurnEvent::Token(text) => event(id, "token", &TokenData { text }),
        TurnEvent::Title {
            conversation_id,
            title,
        } => event(
            id,
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
            citations,
        } => event(
            id,
            "done",
            &DoneData {
                message_id,
                finish_reason,
                usage,
                citations,
            },
        ),
        TurnEvent::Error(e) => event(id, "error", &super::ApiError::from(e).body().error),
    }
}

/// The wire form of an event of a followed turn.
pub fn followed_event(f: Followed) -> Event {
    match f.event {
        Logged::Meta(meta) => event(f.id, "meta", &meta),
        Logged::Event(e) => to_event(f.id, e),
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
    let mut id = Object::with_type(Type::String);
    id.pattern = Some("^[1-9][0-9]*$".into());
    id.description = Some(
        "The event's number in the turn: 1 is `meta`, then one more per event. A followed turn \
         may merge tokens into one `token` event, numbered as the last of them. Send the last id \
         received as `Last-Event-ID` to resume."
            .into(),
    );
    let mut object = Object::with_type(Type::Object);
    object.description = Some(format!("The `{name}` event."));
    object.required = vec!["id".into(), "event".into(), "data".into()];
    object.properties.insert("id".into(), id.into());
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
            "One event: `meta` first, `queued` while the answer waits in line for its model, then \
             `token`… as the answer is written, `title` when a new conversation's automatic title \
             is ready, and last `done` (the answer is stored; `finish_reason` `stopped` when it \
             was stopped) or `error` (the stream ends; what was written is stored as \
             `incomplete`). Every event has an `id`. A `: ping` comment comes after 15 s of \
             silence."
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
            (QueuedData::name().into(), QueuedData::schema()),
            (TokenData::name().into(), TokenData::schema()),
            (TitleData::name().into(), TitleData::schema()),
            (DoneData::name().into(), DoneData::schema()),
            (Receipt::name().into(), Receipt::schema()),
            (Citation::name().into(), Citation::schema()),
            (ErrorDetail::name().into(), ErrorDetail::schema()),
        ]);
        <TurnMeta as ToSchema>::schemas(schemas);
        <QueuedData as ToSchema>::schemas(schemas);
        <TokenData as ToSchema>::schemas(schemas);
        <TitleData as ToSchema>::schemas(schemas);
        <DoneData as ToSchema>::schemas(schemas);
    }
}

/// The whole event stream of a turn.
pub fn turn_stream(turn: Turn) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let meta = event(META_ID, "meta", &turn.meta);
    stream::once(async move { Ok(meta) })
        .chain(UnboundedReceiverStream::new(turn.events).map(|n| Ok(to_event(n.id, n.event))))
}

/// The SSE response of a turn.
pub fn response(turn: Turn) -> Sse<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
    Sse::new(turn_stream(turn)).keep_alive(KeepAlive::new().interval(PING_INTERVAL).text("ping"))
}

/// The SSE response of a followed turn; a failure to read its log midway ends it with `error`.
pub fn followed(
    events: BoxStream<'static, Result<Followed, crate::service::Error>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
    let mut last = 0;
    let stream = events
        .scan(false, |failed, item| {
            let out = if *failed {
                None
            } else {
                match item {
                    Ok(f) => Some(Ok(f)),
                    Err(e) => {
                        *failed = true;
                        Some(Err(e))
                    }
                }
            };
            futures::future::ready(out)
        })
        .map(move |item| {
            Ok(match item {
                Ok(f) => {
                    last = f.id;
                    followed_event(f)
                }
                // The failure takes the next number, so a client resuming after it is not told it
                // again.
                Err(e) => to_event(last + 1, TurnEvent::Error(e)),
            })
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(PING_INTERVAL).text("ping"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;

    use crate::service::chat::Numbered;

    fn turn() -> (tokio::sync::mpsc::UnboundedSender<Box<Numbered>>, Turn) {
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

    fn numbered(id: u64, event: TurnEvent) -> Box<Numbered> {
        Box::new(Numbered { id, event })
    }

    async fn next_text(body: &mut axum::body::Body) -> String {
        let frame = body.frame().await.unwrap().unwrap();
        String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_is_pinged_every_15_seconds() {
        let (tx, t) = turn();
        let mut body = response(t).into_response().into_body();
        assert!(next_text(&mut body)
            .await
            .starts_with("id: 1\nevent: meta\n"));
        // Nothing for 15 s: a comment line keeps proxies and clients from timing out.
        let ping = tokio::spawn(async move {
            let text = next_text(&mut body).await;
            (text, body)
        });
        tokio::time::advance(PING_INTERVAL + std::time::Duration::from_millis(10)).await;
        let (text, mut body) = ping.await.unwrap();
        assert_eq!(text, ": ping\n\n");
        tx.send(numbered(2, TurnEvent::Token("Hi".into()))).unwrap();
        assert_eq!(
            next_text(&mut body).await,
            "id: 2\nevent: token\ndata: {\"text\":\"Hi\"}\n\n"
        );
    }

    #[test]
    fn events_have_the_contract_shapes() {
        let e = |ev: TurnEvent| {
            let (tx, t) = turn();
            tx.send(numbered(2, ev)).unwrap();
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
                citations: vec![Citation {
                    n: 2,
                    file_id: Some("f1".into()),
                    filename: Some("report.pdf".into()),
                    page: Some(7),
                    sheet: None,
                    snippet: "Revenue grew.".into(),
                    memory: None,
                }],
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
                "cost_usd": 0.004_581, "time_to_first_token_ms": 420, "duration_ms": 3_100},
                "citations": [{"n": 2, "file_id": "f1", "filename": "report.pdf", "page": 7,
                    "sheet": null, "snippet": "Revenue grew."}]})
        );
    }

    #[tokio::test]
    async fn a_done_citing_nothing_says_so_with_an_empty_list() {
        let (tx, t) = turn();
        tx.send(numbered(
            2,
            TurnEvent::Done {
                message_id: MessageId::from("a1"),
                finish_reason: "stopped".into(),
                usage: crate::domain::Receipt {
                    model: "m".into(),
                    provider: "openai".into(),
                    prompt_tokens: 1,
                    completion_tokens: 0,
                    cost_usd: None,
                    time_to_first_token_ms: None,
                    duration_ms: 5,
                },
                citations: vec![],
            },
        ))
        .unwrap();
        drop(tx);
        let body = response(t).into_response().into_body();
        let text = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        let events = crate::testing::parse_sse(&text);
        assert_eq!(events[1].event, "done");
        assert_eq!(events[1].data["citations"], serde_json::json!([]));
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
            tx.send(numbered(2, TurnEvent::Error(e))).unwrap();
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
