//! The check that receipts add up, for any store: turns of two users through the real routers
//! (complete answers, a continued conversation, an answer cut midway, a provider that reports no
//! usage), then the sum of the stored receipts must equal what `/api/usage` reports to each user,
//! what `/api/admin/usage` reports grouped by user, by model and by day, and the users' usage in
//! `/api/admin/users`. Title calls are counted under the title model, with no turns.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support: failing loudly is its job

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::body_text;

/// Two users (`ann` is an admin) in mode `tokens`.
pub const USERS: &str = "ann:ann-token-0123456789ab,bob:bob-token-0123456789ab";
const ANN: &str = "ann-token-0123456789ab";
const BOB: &str = "bob-token-0123456789ab";
/// Prices of the fake's models.
pub const PRICES: &str = r#"{"chat-model": {"input": 2.5, "output": 10}, "title-model": {"input": 0.15, "output": 0.6}}"#;

/// The variables the check needs besides the store's: mode `tokens`, `ann` an admin, prices.
pub fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CONVERSA_AUTH_TOKENS", USERS),
        ("CONVERSA_ADMINS", "ann"),
        ("CONVERSA_PRICES", PRICES),
    ]
}

async fn call(
    router: &Router,
    method: Method,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let response = router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let text = body_text(response).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get(router: &Router, uri: &str, token: &str) -> Value {
    let (s, v) = call(router, Method::GET, uri, token, None).await;
    assert_eq!(s, StatusCode::OK, "{uri}: {v}");
    v
}

/// Totals as numbers: turns, prompt, completion, and cost in nano-dollars (`None`: no price).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Sum {
    turns: u64,
    prompt: u64,
    completion: u64,
    cost: Option<u64>,
}

impl Sum {
    fn of(v: &Value) -> Self {
        Self {
            turns: v["turns"].as_u64().unwrap(),
            prompt: v["prompt_tokens"].as_u64().unwrap(),
            completion: v["completion_tokens"].as_u64().unwrap(),
            cost: v["cost_usd"].as_f64().map(|c| (c * 1e9).round() as u64),
        }
    }

    fn receipt(v: &Value) -> Self {
        Self {
            turns: 1,
            prompt: v["prompt_tokens"].as_u64().unwrap(),
            completion: v["completion_tokens"].as_u64().unwrap(),
            cost: v["cost_usd"].as_f64().map(|c| (c * 1e9).round() as u64),
        }
    }

    fn add(self, o: Sum) -> Sum {
        Sum {
            turns: self.turns + o.turns,
            prompt: self.prompt + o.prompt,
            completion: self.completion + o.completion,
            cost: self.cost.zip(o.cost).map(|(a, b)| a + b),
        }
    }

    fn zero() -> Sum {
        Sum {
            cost: Some(0),
            ..Sum::default()
        }
    }
}

/// The sum of the receipts stored on a user's answers.
async fn stored_receipts(router: &Router, token: &str) -> Sum {
    let list = get(router, "/api/conversations?limit=200", token).await;
    let mut sum = Sum::zero();
    for c in list["items"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        let messages = get(
            router,
            &format!("/api/conversations/{id}/messages?limit=200"),
            token,
        )
        .await;
        for m in messages["items"].as_array().unwrap() {
            if m["role"] == "assistant" && !m["usage"].is_null() {
                sum = sum.add(Sum::receipt(&m["usage"]));
            }
        }
    }
    sum
}

fn item<'a>(items: &'a Value, field: &str, key: &str) -> &'a Value {
    items
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i[field] == key)
        .unwrap_or_else(|| panic!("no {field} {key} in {items}"))
}

/// Runs the turns and checks that everything adds up. `router` serves every route of an
/// application configured with [`env`] on a fresh store.
pub async fn receipts_add_up(router: Router) {
    // Ann: a new conversation, a second turn in it, and an answer cut midway (it keeps a
    // receipt); Bob: an answer whose provider reports no usage (the server counts it).
    let (s, first) = call(
        &router,
        Method::POST,
        "/api/chat/send-simple",
        ANN,
        Some(json!({"message": "What is in the quarterly report?"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let conv = first["conversation_id"].as_str().unwrap().to_owned();
    let (s, v) = call(
        &router,
        Method::POST,
        "/api/chat/send-simple",
        ANN,
        Some(json!({"message": "And the second quarter?", "conversation_id": conv})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(
        &router,
        Method::POST,
        "/api/chat/send-simple",
        ANN,
        Some(json!({"message": "Tell me everything [[drop]]"})),
    )
    .await;
    assert!(s.is_server_error(), "a cut answer fails: {s} {v}");
    let (s, v) = call(
        &router,
        Method::POST,
        "/api/chat/send-simple",
        BOB,
        Some(json!({"message": "Hello there [[no-usage]]"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let mut receipts = Sum::zero();
    let mut all_users = Sum::zero();
    let admin_users = get(&router, "/api/admin/users", ANN).await;
    for (user, token, answers) in [("ann", ANN, 3), ("bob", BOB, 1)] {
        let stored = stored_receipts(&router, token).await;
        assert_eq!(stored.turns, answers, "{user}: one receipt per answer");
        let usage = get(&router, "/api/usage", token).await;
        let by_model = &usage["by_model"];
        // The answers are the chat model's; the titles are the title model's, with no turns.
        assert_eq!(
            Sum::of(item(by_model, "model", "chat-model")),
            stored,
            "{user}: {usage}"
        );
        let titles = Sum::of(item(by_model, "model", "title-model"));
        assert_eq!(titles.turns, 0, "{user}");
        assert!(titles.prompt > 0, "{user}: title calls count");
        let totals = Sum::of(&usage["totals"]);
        assert_eq!(totals, stored.add(titles), "{user}: {usage}");
        // By day adds up to the same.
        let days = usage["by_day"]
            .as_array()
            .unwrap()
            .iter()
            .map(Sum::of)
            .fold(Sum::zero(), Sum::add);
        assert_eq!(days, totals, "{user}");
        // The admin's view of the same user.
        let admin = get(&router, "/api/admin/usage?group_by=user", ANN).await;
        assert_eq!(
            Sum::of(item(&admin["items"], "key", user)),
            totals,
            "{user}: {admin}"
        );
        assert_eq!(
            Sum::of(&item(&admin_users["items"], "id", user)["usage_this_month"]),
            totals,
            "{user}: {admin_users}"
        );
        // A user's budget counts what they spent (nothing is in flight any more).
        assert_eq!(
            usage["budget"]["used"]["tokens_per_month"]
                .as_u64()
                .unwrap(),
            totals.prompt + totals.completion
        );
        receipts = receipts.add(stored);
        all_users = all_users.add(totals);
    }
    for group_by in ["user", "model", "day"] {
        let admin = get(
            &router,
            &format!("/api/admin/usage?group_by={group_by}"),
            ANN,
        )
        .await;
        assert_eq!(Sum::of(&admin["totals"]), all_users, "{group_by}: {admin}");
        let items = admin["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(Sum::of)
            .fold(Sum::zero(), Sum::add);
        assert_eq!(
            items, all_users,
            "{group_by}: the groups add up to the totals"
        );
        if group_by == "model" {
            assert_eq!(
                Sum::of(item(&admin["items"], "key", "chat-model")),
                receipts
            );
        }
    }
    // Everything was priced: the answers cost what their receipts say.
    assert!(receipts.cost.is_some_and(|c| c > 0));
    // Not for users.
    let (s, _) = call(&router, Method::GET, "/api/admin/usage", BOB, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
