//! Turns that survive anything, through the real routers: event ids, resuming a turn after any id
//! (on the instance that generates it and on another one), replaying a finished turn, stopping
//! the model from any instance, regenerating, editing and moving between branches, a turn whose
//! instance died. The real OpenAI adapter talks to the fake model server; each scenario runs on
//! SQLite and, when it is configured, on DynamoDB (moto).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use conversa::domain::{MessageId, Owner, Timestamp};
use conversa::testing::{
    body_text, eventually, parse_sse, streamed_text, test_app, FakeOpenAi, SseEvent, SseReader,
};
use conversa::App;
use serde_json::{json, Value};
use tower::ServiceExt;

/// Where the scenario's data lives.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // DynamoDB only with its feature
enum Backend {
    Sqlite,
    Dynamo,
}

struct Harness {
    fake: FakeOpenAi,
    app: App,
    dir: tempfile::TempDir,
    extra: Vec<(String, String)>,
}

impl Drop for Harness {
    /// A DynamoDB table made for the scenario goes with it.
    fn drop(&mut self) {
        #[cfg(feature = "dynamodb")]
        if let Some((_, table)) = self
            .extra
            .iter()
            .find(|(k, _)| k == "CONVERSA_DYNAMODB_TABLE")
        {
            let table = table.clone();
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let client = aws_sdk_dynamodb::Client::new(conversa::aws::sdk_config().await);
                    let _ = client.delete_table().table_name(table).send().await;
                });
            })
            .join();
        }
    }
}

/// The backends to run a scenario on: SQLite always, DynamoDB when it is configured.
fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Sqlite];
    #[cfg(feature = "dynamodb")]
    if common::service("AWS_ENDPOINT_URL", "DynamoDB").is_some() {
        out.push(Backend::Dynamo);
    }
    out
}

impl Harness {
    async fn new(backend: Backend, extra: &[(&str, &str)]) -> Self {
        let fake = FakeOpenAi::start().await;
        Self::with_fake(fake, backend, extra).await
    }

    async fn with_fake(fake: FakeOpenAi, backend: Backend, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut pairs: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        #[cfg(feature = "dynamodb")]
        if let Backend::Dynamo = backend {
            let table = common::unique("turns");
            let client = aws_sdk_dynamodb::Client::new(conversa::aws::sdk_config().await);
            conversa::store::dynamodb::ensure_table(&client, &table)
                .await
                .unwrap();
            pairs.push(("CONVERSA_STORE".into(), "dynamodb".into()));
            pairs.push(("CONVERSA_DYNAMODB_TABLE".into(), table));
        }
        let borrowed: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let app = test_app(&fake, dir.path(), &borrowed).await;
        Self {
            fake,
            app,
            dir,
            extra: pairs,
        }
    }

    /// Another instance on the same data: its own process memory, the same store.
    async fn another_instance(&self) -> App {
        let borrowed: Vec<(&str, &str)> = self
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        test_app(&self.fake, self.dir.path(), &borrowed).await
    }

    async fn call_on(
        &self,
        app: &App,
        method: Method,
        uri: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> axum::response::Response {
        let mut req = Request::builder().method(method).uri(uri);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        conversa::api::router(app.state.clone())
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap()
    }

    async fn json(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let response = self.call_on(&self.app, method, uri, body, &[]).await;
        let status = response.status();
        let text = body_text(response).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A turn's SSE stream, read as it comes.
    async fn open(
        &self,
        uri: &str,
        body: Value,
    ) -> SseReader<impl futures::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin>
    {
        let response = self
            .call_on(&self.app, Method::POST, uri, Some(body), &[])
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        SseReader::new(response.into_body().into_data_stream())
    }

    /// A whole turn.
    async fn turn(&self, body: Value) -> Vec<SseEvent> {
        self.open("/api/chat/send", body).await.rest().await
    }

    /// `GET /api/chat/stream/{id}` on `app`, read to the end.
    async fn follow_on(
        &self,
        app: &App,
        id: &str,
        headers: &[(&str, &str)],
        query: &str,
    ) -> (StatusCode, Vec<SseEvent>) {
        let response = self
            .call_on(
                app,
                Method::GET,
                &format!("/api/chat/stream/{id}{query}"),
                None,
                headers,
            )
            .await;
        let status = response.status();
        let text = body_text(response).await;
        (status, parse_sse(&text))
    }

    async fn message(&self, id: &str) -> conversa::domain::Message {
        self.app
            .store
            .get_message(&Owner::local(), &MessageId::from(id))
            .await
            .unwrap()
            .unwrap()
    }

    /// The current branch (or every message), as `(role, content)` pairs.
    async fn messages(&self, conversation: &str, all: bool) -> Vec<Value> {
        let (s, page) = self
            .json(
                Method::GET,
                &format!("/api/conversations/{conversation}/messages?all={all}"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        page["items"].as_array().unwrap().clone()
    }
}

fn meta(events: &[SseEvent]) -> &Value {
    assert_eq!(events[0].event, "meta", "{events:?}");
    &events[0].data
}

fn id_of(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_event_of_a_turn_has_a_rising_id() {
    for backend in backends() {
        let h = Harness::new(backend, &[]).await;
        let events = h.turn(json!({ "message": "number these events" })).await;
        let ids: Vec<u64> = events.iter().map(|e| e.id.unwrap()).collect();
        assert_eq!(
            ids,
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "{backend:?}"
        );
        assert_eq!(events.last().unwrap().event, "done");
    }
}

#[tokio::test]
async fn a_client_that_loses_the_stream_resumes_and_gets_every_token_once() {
    for backend in backends() {
        let h = Harness::new(backend, &[]).await;
        let mut live = h
            .open("/api/chat/send", json!({ "message": "go slowly [[slow]]" }))
            .await;
        let mut before = Vec::new();
        while before
            .iter()
            .filter(|e: &&SseEvent| e.event == "token")
            .count()
            < 5
        {
            before.push(live.next().await.unwrap());
        }
        // The connection drops.
        drop(live);
        let answer = id_of(meta(&before), "assistant_message_id");
        let last = before.last().unwrap().id.unwrap().to_string();
        let (s, after) = h
            .follow_on(&h.app, &answer, &[("last-event-id", &last)], "")
            .await;
        assert_eq!(s, StatusCode::OK);
        assert!(after.iter().all(|e| e.id.unwrap() > last.parse().unwrap()));
        assert_eq!(after.last().unwrap().event, "done", "{backend:?} {after:?}");
        let text = format!("{}{}", streamed_text(&before), streamed_text(&after));
        let stored = h.message(&answer).await;
        assert_eq!(text, stored.content, "{backend:?}: each token exactly once");
        assert_eq!(stored.content.split_whitespace().count(), 40);
        // `?after=` does the same, and the header wins over it.
        let (_, again) = h
            .follow_on(&h.app, &answer, &[("last-event-id", &last)], "?after=0")
            .await;
        assert_eq!(streamed_text(&again), streamed_text(&after));
    }
}

#[tokio::test]
async fn another_instance_follows_a_turn_live_through_the_store() {
    for backend in backends() {
        let h = Harness::new(backend, &[]).await;
        let elsewhere = h.another_instance().await;
        let mut live = h
            .open("/api/chat/send", json!({ "message": "follow me [[slow]]" }))
            .await;
        let first = live.next().await.unwrap();
        let answer = id_of(&first.data, "assistant_message_id");
        // A second tab on another instance, from the start, while the answer is generated.
        let (s, followed) = h.follow_on(&elsewhere, &answer, &[], "").await;
        assert_eq!(s, StatusCode::OK);
        let rest = live.rest().await;
        assert_eq!(followed[0].event, "meta");
        assert_eq!(followed.last().unwrap().event, "done", "{backend:?}");
        assert_eq!(streamed_text(&followed), streamed_text(&rest));
        assert_eq!(
            followed.last().unwrap().id,
            rest.last().unwrap().id,
            "the same numbering"
        );
    }
}

#[tokio::test]
async fn a_finished_turn_replays_from_any_id() {
    for backend in backends() {
        let h = Harness::new(backend, &[]).await;
        let events = h
            .turn(json!({ "message": "replay this answer please" }))
            .await;
        let answer = id_of(meta(&events), "assistant_message_id");
        let (_, replay) = h.follow_on(&h.app, &answer, &[], "").await;
        assert_eq!(replay[0].data, events[0].data, "the same meta");
        assert_eq!(streamed_text(&replay), streamed_text(&events));
        assert!(
            replay.iter().filter(|e| e.event == "token").count()
                < events.iter().filter(|e| e.event == "token").count(),
            "tokens are merged"
        );
        assert_eq!(replay.last().unwrap().data, events.last().unwrap().data);
        assert_eq!(replay.last().unwrap().id, events.last().unwrap().id);
        // From the middle: exactly the tokens after it.
        let cut = 4;
        let (_, tail) = h
            .follow_on(&h.app, &answer, &[], &format!("?after={cut}"))
            .await;
        let expected: String = events
            .iter()
            .filter(|e| e.event == "token" && e.id.unwrap() > cut)
            .filter_map(|e| e.data["text"].as_str())
            .collect();
        assert_eq!(streamed_text(&tail), expected);
        // Past the end: the turn's last event says how it ended.
        let (_, beyond) = h
            .follow_on(&h.app, &answer, &[("last-event-id", "999")], "")
            .await;
        assert_eq!(beyond.len(), 1);
        assert_eq!(beyond[0].event, "done");
    }
}

#[tokio::test]
async fn an_id_past_the_end_of_a_running_turn_waits_for_it() {
    let h = Harness::new(Backend::Sqlite, &[]).await;
    let mut live = h
        .open(
            "/api/chat/send",
            json!({ "message": "wait for it [[slow]]" }),
        )
        .await;
    let answer = id_of(&live.next().await.unwrap().data, "assistant_message_id");
    // Id 30 does not exist yet: the stream waits for it, then carries on to the end.
    let (_, tail) = h
        .follow_on(&h.app, &answer, &[("last-event-id", "30")], "")
        .await;
    let all = live.rest().await;
    assert!(tail.iter().all(|e| e.id.unwrap() > 30));
    assert_eq!(tail.last().unwrap().event, "done");
    let expected: String = all
        .iter()
        .filter(|e| e.event == "token" && e.id.unwrap() > 30)
        .filter_map(|e| e.data["text"].as_str())
        .collect();
    assert_eq!(streamed_text(&tail), expected);
}

#[tokio::test]
async fn following_refuses_what_is_not_an_answer_of_yours() {
    let h = Harness::new(
        Backend::Sqlite,
        &[(
            "CONVERSA_AUTH_TOKENS",
            "alice:alice-token-0123456789,bob:bob-token-0123456789",
        )],
    )
    .await;
    let response = h
        .call_on(
            &h.app,
            Method::POST,
            "/api/chat/send",
            Some(json!({ "message": "mine" })),
            &[("authorization", "Bearer alice-token-0123456789")],
        )
        .await;
    let events = parse_sse(&body_text(response).await);
    let answer = id_of(meta(&events), "assistant_message_id");
    let question = id_of(meta(&events), "user_message_id");
    let alice = [("authorization", "Bearer alice-token-0123456789")];
    let bob = [("authorization", "Bearer bob-token-0123456789")];
    for (who, id) in [
        (&bob, answer.as_str()),
        (&alice, question.as_str()),
        (&alice, "nope"),
    ] {
        for (method, path) in [(Method::GET, "stream"), (Method::POST, "stop")] {
            let r = h
                .call_on(
                    &h.app,
                    method.clone(),
                    &format!("/api/chat/{path}/{id}"),
                    None,
                    who,
                )
                .await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path} {id}");
        }
    }
    let r = h
        .call_on(
            &h.app,
            Method::GET,
            &format!("/api/chat/stream/{answer}"),
            None,
            &[alice[0], ("last-event-id", "three")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_stop_aborts_the_model_and_keeps_what_was_said() {
    for backend in backends() {
        let h = Harness::new(backend, &[]).await;
        let mut live = h
            .open(
                "/api/chat/send",
                json!({ "message": "a long story [[slower]]" }),
            )
            .await;
        let mut seen = Vec::new();
        while seen
            .iter()
            .filter(|e: &&SseEvent| e.event == "token")
            .count()
            < 2
        {
            seen.push(live.next().await.unwrap());
        }
        let answer = id_of(meta(&seen), "assistant_message_id");
        // Asked on another instance: the flag travels through the store.
        let elsewhere = h.another_instance().await;
        let stop = h
            .call_on(
                &elsewhere,
                Method::POST,
                &format!("/api/chat/stop/{answer}"),
                None,
                &[],
            )
            .await;
        assert_eq!(stop.status(), StatusCode::ACCEPTED);
        assert_eq!(
            serde_json::from_str::<Value>(&body_text(stop).await).unwrap(),
            json!({ "status": "stopping" })
        );
        seen.extend(live.rest().await);
        let done = seen.last().unwrap();
        assert_eq!(done.event, "done", "{backend:?} {seen:?}");
        assert_eq!(done.data["finish_reason"], "stopped");
        let said = streamed_text(&seen);
        assert!(said.split_whitespace().count() < 40, "cut short: {said}");
        let stored = h.message(&answer).await;
        assert_eq!(stored.status, conversa::domain::MessageStatus::Incomplete);
        assert_eq!(stored.content, said);
        let usage = stored.usage.unwrap();
        assert!(usage.completion_tokens > 0, "what was generated is counted");
        assert_eq!(
            done.data["usage"]["completion_tokens"],
            usage.completion_tokens
        );
        eventually(
            Duration::from_secs(5),
            "the model's request to be aborted",
            || async { (h.fake.aborted() >= 1).then_some(()) },
        )
        .await;
        // Stopping again: it has finished.
        let (s, body) = h
            .json(Method::POST, &format!("/api/chat/stop/{answer}"), None)
            .await;
        assert_eq!((s, body), (StatusCode::OK, json!({ "status": "finished" })));
        let conversation = id_of(meta(&seen), "conversation_id");
        let (_, c) = h
            .json(
                Method::GET,
                &format!("/api/conversations/{conversation}"),
                None,
            )
            .await;
        assert_eq!(c["generating_message_id"], Value::Null);
    }
}

#[tokio::test]
async fn a_stop_asked_twice_answers_finished_once_the_turn_ends() {
    let h = Harness::new(Backend::Sqlite, &[]).await;
    let mut live = h
        .open(
            "/api/chat/send",
            json!({ "message": "again and again [[slower]]" }),
        )
        .await;
    let answer = id_of(&live.next().await.unwrap().data, "assistant_message_id");
    let uri = format!("/api/chat/stop/{answer}");
    let (first, second) = tokio::join!(
        h.json(Method::POST, &uri, None),
        h.json(Method::POST, &uri, None)
    );
    // One of them asked; the other, finding it asked, waited for the end.
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::ACCEPTED]);
    let rest = live.rest().await;
    assert_eq!(rest.last().unwrap().data["finish_reason"], "stopped");
}

#[tokio::test]
async fn the_conversation_names_the_answer_being_generated() {
    for backend in backends() {
        let h = Harness::new(backend, &[]).await;
        let mut live = h
            .open(
                "/api/chat/send",
                json!({ "message": "still writing [[slow]]" }),
            )
            .await;
        let m = live.next().await.unwrap().data;
        let conversation = id_of(&m, "conversation_id");
        let (_, c) = h
            .json(
                Method::GET,
                &format!("/api/conversations/{conversation}"),
                None,
            )
            .await;
        assert_eq!(
            c["generating_message_id"], m["assistant_message_id"],
            "{backend:?}"
        );
        assert_eq!(c["current_message_id"], m["assistant_message_id"]);
        let (_, list) = h.json(Method::GET, "/api/conversations", None).await;
        assert_eq!(
            list["items"][0]["generating_message_id"],
            m["assistant_message_id"]
        );
        // The branch shows the question and the answer being written.
        let branch = h.messages(&conversation, false).await;
        assert_eq!(branch.len(), 2);
        assert_eq!(branch[1]["id"], m["assistant_message_id"]);
        assert_eq!(branch[1]["parent_id"], m["user_message_id"]);
        live.rest().await;
        let (_, c) = h
            .json(
                Method::GET,
                &format!("/api/conversations/{conversation}"),
                None,
            )
            .await;
        assert_eq!(c["generating_message_id"], Value::Null);
        assert_eq!(c["message_count"], 2);
    }
}

#[tokio::test]
async fn regenerate_answers_again_beside_the_first_answer() {
    for backend in backends() {
        let h = Harness::new(backend, &[]).await;
        let first = h.turn(json!({ "message": "tell me once" })).await;
        let m = meta(&first);
        let (conversation, question, answer) = (
            id_of(m, "conversation_id"),
            id_of(m, "user_message_id"),
            id_of(m, "assistant_message_id"),
        );
        let again = h
            .open("/api/chat/regenerate", json!({ "message_id": answer }))
            .await
            .rest()
            .await;
        let m2 = meta(&again);
        assert_eq!(m2["user_message_id"], question.as_str());
        assert_eq!(m2["created_conversation"], false);
        assert_ne!(m2["assistant_message_id"], answer.as_str());
        assert_eq!(again.last().unwrap().event, "done");
        assert_eq!(streamed_text(&again), "Echo: tell me once");
        let second = id_of(m2, "assistant_message_id");
        let branch = h.messages(&conversation, false).await;
        let ids: Vec<&str> = branch.iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [question.as_str(), second.as_str()], "{backend:?}");
        let all = h.messages(&conversation, true).await;
        assert_eq!(all.len(), 3);
        assert_eq!(all[2]["parent_id"], question.as_str());
        // Back to the first answer.
        let (s, c) = h
            .json(
                Method::PUT,
                &format!("/api/conversations/{conversation}/current"),
                Some(json!({ "message_id": answer })),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{c}");
        assert_eq!(c["current_message_id"], answer.as_str());
        // The model was asked the same question, without the first answer in its history.
        let asked = h.fake.chat_requests();
        let last = asked.last().unwrap();
        assert_eq!(conversa::testing::last_user_text(last), "tell me once");
        assert!(!last.to_string().contains("Echo: tell me once"));
        // A user message cannot be regenerated; an unknown one is not found; the model is checked.
        for (body, status) in [
            (
                json!({ "message_id": question }),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (json!({ "message_id": "nope" }), StatusCode::NOT_FOUND),
            (
                json!({ "message_id": answer, "model": "gpt-99" }),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (json!({ "id": answer }), StatusCode::BAD_REQUEST),
        ] {
            let (s, e) = h
                .json(Method::POST, "/api/chat/regenerate", Some(body))
                .await;
            assert_eq!(s, status, "{e}");
        }
    }
}

#[tokio::test]
async fn an_edit_starts_a_branch_and_the_history_follows_it() {
    for backend in backends() {
        let h = Harness::new(backend, &[]).await;
        let one = h.turn(json!({ "message": "alpha question" })).await;
        let conversation = id_of(meta(&one), "conversation_id");
        let a1 = id_of(meta(&one), "assistant_message_id");
        let two = h
            .turn(json!({ "message": "beta question", "conversation_id": conversation }))
            .await;
        let u2 = id_of(meta(&two), "user_message_id");
        let a2 = id_of(meta(&two), "assistant_message_id");
        // Edit the second question: its new text with its parent.
        let edited = h
            .turn(json!({ "message": "gamma question", "parent_id": a1 }))
            .await;
        assert_eq!(meta(&edited)["conversation_id"], conversation.as_str());
        let asked = h.fake.chat_requests();
        let history = asked.last().unwrap().to_string();
        assert!(history.contains("alpha question") && !history.contains("beta question"));
        let texts = |ms: Vec<Value>| -> Vec<String> {
            ms.iter()
                .map(|m| m["content"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            texts(h.messages(&conversation, false).await),
            [
                "alpha question",
                "Echo: alpha question",
                "gamma question",
                "Echo: gamma question"
            ],
            "{backend:?}"
        );
        // Back to the first version of the second question: down to its answer.
        let (s, c) = h
            .json(
                Method::PUT,
                &format!("/api/conversations/{conversation}/current"),
                Some(json!({ "message_id": u2 })),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(c["current_message_id"], a2.as_str());
        assert_eq!(
            texts(h.messages(&conversation, false).await)[2..],
            ["beta question", "Echo: beta question"]
        );
        // A continued message follows the current branch.
        let three = h
            .turn(json!({ "message": "delta question", "conversation_id": conversation }))
            .await;
        let branch = h.messages(&conversation, false).await;
        assert_eq!(branch.len(), 6);
        assert_eq!(branch[4]["parent_id"], a2.as_str());
        assert_eq!(branch[5]["id"], meta(&three)["assistant_message_id"]);
        // Editing the first message: a new first message.
        let root = h
            .turn(json!({ "message": "omega", "conversation_id": conversation, "parent_id": null }))
            .await;
        let branch = h.messages(&conversation, false).await;
        assert_eq!(branch.len(), 2);
        assert_eq!(branch[0]["parent_id"], Value::Null);
        assert_eq!(branch[0]["id"], meta(&root)["user_message_id"]);
        assert_eq!(h.messages(&conversation, true).await.len(), 10);
        // A parent of another conversation is not found, and nothing is stored.
        let other = h.turn(json!({ "message": "elsewhere" })).await;
        let foreign = id_of(meta(&other), "assistant_message_id");
        let (s, _) = h
            .json(
                Method::POST,
                "/api/chat/send",
                Some(json!({ "message": "x", "conversation_id": conversation, "parent_id": foreign })),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(h.messages(&conversation, true).await.len(), 10);
        let (s, _) = h
            .json(
                Method::PUT,
                &format!("/api/conversations/{conversation}/current"),
                Some(json!({ "message_id": foreign })),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn a_regenerate_and_a_send_at_once_both_land() {
    for backend in backends() {
        let h = Harness::new(backend, &[]).await;
        let one = h.turn(json!({ "message": "first words" })).await;
        let conversation = id_of(meta(&one), "conversation_id");
        let a1 = id_of(meta(&one), "assistant_message_id");
        let (again, next) = tokio::join!(
            async {
                h.open("/api/chat/regenerate", json!({ "message_id": a1 }))
                    .await
                    .rest()
                    .await
            },
            h.turn(
                json!({ "message": "next words", "conversation_id": conversation, "parent_id": a1 })
            )
        );
        assert_eq!(again.last().unwrap().event, "done", "{backend:?}");
        assert_eq!(next.last().unwrap().event, "done");
        let all = h.messages(&conversation, true).await;
        assert_eq!(all.len(), 5, "{all:?}");
        let by_id = |id: &Value| all.iter().find(|m| &m["id"] == id).unwrap().clone();
        let regenerated = by_id(&meta(&again)["assistant_message_id"]);
        assert_eq!(regenerated["parent_id"], meta(&one)["user_message_id"]);
        assert_eq!(regenerated["status"], "complete");
        let question = by_id(&meta(&next)["user_message_id"]);
        assert_eq!(question["parent_id"], a1.as_str());
        let answer = by_id(&meta(&next)["assistant_message_id"]);
        assert_eq!(answer["status"], "complete");
        let (_, c) = h
            .json(
                Method::GET,
                &format!("/api/conversations/{conversation}"),
                None,
            )
            .await;
        assert_eq!(c["message_count"], 5);
        assert_eq!(c["generating_message_id"], Value::Null);
    }
}

#[tokio::test]
async fn answers_waiting_for_a_busy_model_are_told_their_place() {
    let fake = FakeOpenAi::start().await;
    let models = json!([{ "id": "chat-model", "provider": "openai", "base_url": fake.base_url,
        "api_key_env": "FAKE_KEY", "max_concurrent": 1, "default": true },
        { "id": "title-model", "provider": "openai", "base_url": fake.base_url, "api_key_env": "FAKE_KEY" }])
    .to_string();
    std::env::set_var("FAKE_KEY", "test-key");
    let h = Harness::with_fake(
        fake,
        Backend::Sqlite,
        &[("CONVERSA_MODELS", &models), ("CONVERSA_CHAT_MODEL", "")],
    )
    .await;
    let mut first = h
        .open("/api/chat/send", json!({ "message": "busy [[slow]]" }))
        .await;
    let mut head = Vec::new();
    while !head.iter().any(|e: &SseEvent| e.event == "token") {
        head.push(first.next().await.unwrap());
    }
    let second = h.turn(json!({ "message": "after you" })).await;
    assert_eq!(second[1].event, "queued", "{second:?}");
    assert_eq!(second[1].data, json!({ "position": 1 }));
    assert_eq!(second[1].id, Some(2));
    assert_eq!(second.last().unwrap().event, "done");
    assert_eq!(streamed_text(&second), "Echo: after you");
    first.rest().await;
}

#[tokio::test]
async fn a_turn_whose_instance_died_is_ended_by_whoever_finds_it() {
    for backend in backends() {
        let h = Harness::new(backend, &[]).await;
        let events = h.turn(json!({ "message": "about to crash" })).await;
        let conversation = id_of(meta(&events), "conversation_id");
        let owner = Owner::local();
        // A turn that began long ago, wrote a few events, and was never heard of again.
        let (_, c) = h
            .json(
                Method::GET,
                &format!("/api/conversations/{conversation}"),
                None,
            )
            .await;
        let conv = h
            .app
            .store
            .get_conversation(&owner, &conversation.as_str().into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c["id"], conversation.as_str());
        let question = h
            .message(&id_of(meta(&events), "assistant_message_id"))
            .await;
        let long_ago = Timestamp::from_millis(Timestamp::now().millis() - 3_600_000 + 60_000);
        let mut placeholder = question.clone();
        placeholder.id = MessageId::generate();
        placeholder.content = String::new();
        placeholder.usage = None;
        placeholder.status = conversa::domain::MessageStatus::Incomplete;
        placeholder.created_at = long_ago;
        h.app
            .store
            .begin_turn(
                &owner,
                &conversa::store::TurnStart {
                    conversation: conv,
                    created: false,
                    user: None,
                    answer: placeholder.clone(),
                },
            )
            .await
            .unwrap();
        h.app
            .turns
            .begin(
                &owner,
                &placeholder.id,
                &placeholder.conversation_id,
                long_ago,
            )
            .await
            .unwrap();
        let logged = |id: u64, name: &str, data: Value| conversa::turns::LoggedEvent {
            id,
            name: name.into(),
            data: data.to_string(),
        };
        h.app
            .turns
            .append(
                &owner,
                &placeholder.id,
                &[
                    logged(1, "meta", meta(&events).clone()),
                    logged(2, "token", json!({ "text": "half " })),
                    logged(3, "token", json!({ "text": "an answer" })),
                ],
                false,
                long_ago,
            )
            .await
            .unwrap();
        let (s, followed) = h
            .follow_on(&h.app, placeholder.id.as_str(), &[], "?after=1")
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(streamed_text(&followed), "half an answer", "{backend:?}");
        let last = followed.last().unwrap();
        assert_eq!((last.event.as_str(), last.id), ("error", Some(4)));
        assert_eq!(last.data["code"], "unavailable");
        let stored = h.message(placeholder.id.as_str()).await;
        assert_eq!(stored.content, "half an answer");
        assert_eq!(stored.status, conversa::domain::MessageStatus::Incomplete);
        let (_, c) = h
            .json(
                Method::GET,
                &format!("/api/conversations/{conversation}"),
                None,
            )
            .await;
        assert_eq!(c["generating_message_id"], Value::Null);
        let (s, body) = h
            .json(
                Method::POST,
                &format!("/api/chat/stop/{}", placeholder.id),
                None,
            )
            .await;
        assert_eq!((s, body), (StatusCode::OK, json!({ "status": "finished" })));
    }
}
