//! Identity through the real routers, the real SQLite store and a clock the tests move: local
//! accounts end to end (register, sign in, refresh rotation and reuse, sign out, throttling,
//! disabled users, admins), API keys end to end, the `tokens` mode's admins, users kept apart on
//! every route, and hostile credentials.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use conversa::api::extract::ClientIp;
use conversa::limits::memory::MemoryLimiter;
use conversa::limits::{ManualClock, RateLimit};
use conversa::testing::{body_text, multipart, test_config, FakeOpenAi};
use conversa::App;
use serde_json::{json, Value};
use tower::ServiceExt;

/// One server instance: the application over a data directory, with its own clock.
struct Instance {
    app: App,
    clock: Arc<ManualClock>,
}

/// A deployment: the fake model, a data directory, and the instances serving it.
struct Deployment {
    fake: FakeOpenAi,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Deployment {
    async fn new(env: &[(&str, &str)]) -> Self {
        Self {
            fake: FakeOpenAi::start().await,
            dir: tempfile::tempdir().unwrap(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// A local deployment (`CONVERSA_AUTH=local`) with more variables.
    async fn local(extra: &[(&str, &str)]) -> Self {
        let mut env = vec![("CONVERSA_AUTH", "local")];
        env.extend_from_slice(extra);
        Self::new(&env).await
    }

    /// Another instance over the same data (a second Lambda instance, or a restart).
    async fn instance(&self) -> Instance {
        let pairs: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let config = test_config(&self.fake.base_url, self.dir.path(), &pairs);
        let clock = Arc::new(ManualClock::now());
        let app = App::from_config(config)
            .await
            .unwrap()
            .with_rate_limit(RateLimit::new(
                Arc::new(MemoryLimiter::new()),
                clock.clone(),
            ))
            .unwrap();
        Instance { app, clock }
    }
}

/// A request's answer.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }

    #[track_caller]
    fn expect(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "{}", self.body);
        self
    }

    #[track_caller]
    fn refused(&self, status: StatusCode, code: &str) -> &Self {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.code(), code, "{}", self.body);
        assert!(!self.message().is_empty());
        self
    }
}

/// What a request carries besides its method and path.
#[derive(Default, Clone)]
struct Send<'a> {
    bearer: Option<&'a str>,
    authorization: Option<Vec<u8>>,
    json: Option<Value>,
    form: Option<(String, Vec<u8>)>,
    ip: Option<&'a str>,
}

fn bearer(token: &str) -> Send<'_> {
    Send {
        bearer: Some(token),
        ..Send::default()
    }
}

impl Instance {
    async fn call(&self, method: Method, uri: &str, send: Send<'_>) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = send.bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(raw) = send.authorization {
            req = req.header(
                header::AUTHORIZATION,
                axum::http::HeaderValue::from_bytes(&raw).unwrap(),
            );
        }
        let body = if let Some(j) = send.json {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(j.to_string())
        } else if let Some((ct, bytes)) = send.form {
            req = req.header(header::CONTENT_TYPE, ct);
            Body::from(bytes)
        } else {
            Body::empty()
        };
        let mut request = req.body(body).unwrap();
        if let Some(ip) = send.ip {
            request
                .extensions_mut()
                .insert(ClientIp(ip.parse::<IpAddr>().unwrap()));
        }
        let response = conversa::api::router(self.app.state.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = body_text(response).await;
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    async fn get(&self, uri: &str, token: &str) -> Reply {
        self.call(Method::GET, uri, bearer(token)).await
    }

    async fn post(&self, uri: &str, token: Option<&str>, body: Value) -> Reply {
        let send = Send {
            bearer: token,
            json: Some(body),
            ..Send::default()
        };
        self.call(Method::POST, uri, send).await
    }

    async fn register(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/api/auth/register",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    async fn login(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/api/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    async fn login_from(&self, ip: &str, email: &str, password: &str) -> Reply {
        let send = Send {
            json: Some(json!({"email": email, "password": password})),
            ip: Some(ip),
            ..Send::default()
        };
        self.call(Method::POST, "/api/auth/login", send).await
    }

    async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": refresh_token}),
        )
        .await
    }

    async fn config(&self) -> Value {
        let r = self
            .call(Method::GET, "/api/auth/config", Send::default())
            .await;
        r.expect(StatusCode::OK);
        r.body
    }
}

fn token(r: &Reply) -> String {
    r.body["access_token"].as_str().unwrap().to_owned()
}

fn refresh_of(r: &Reply) -> String {
    r.body["refresh_token"].as_str().unwrap().to_owned()
}

const ADMIN: &str = "ada@example.com";
/// Tiers the admin tests give people.
const TIERS: &str = r#"{"free": {"tokens_per_day": 100000}, "pro": {"usd_per_month": 20}}"#;
const PASSWORD: &str = "correct horse battery";

/// A local deployment with its first account (the admin) registered: its access token.
async fn with_admin(extra: &[(&str, &str)]) -> (Deployment, Instance, String) {
    let d = Deployment::local(extra).await;
    let i = d.instance().await;
    let r = i.register(ADMIN, PASSWORD).await;
    r.expect(StatusCode::CREATED);
    let t = token(&r);
    (d, i, t)
}

/// An admin adds a user; the user's access token.
async fn add_user(i: &Instance, admin: &str, email: &str) -> (String, String) {
    let r = i
        .post(
            "/api/admin/users",
            Some(admin),
            json!({"email": email, "password": PASSWORD, "name": "Bob"}),
        )
        .await;
    r.expect(StatusCode::CREATED);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let l = i.login(email, PASSWORD).await;
    l.expect(StatusCode::OK);
    (id, token(&l))
}

#[tokio::test]
async fn the_sign_in_page_learns_the_mode_and_the_first_run() {
    let d = Deployment::new(&[]).await;
    let none = d.instance().await;
    assert_eq!(
        none.config().await,
        json!({"mode": "none", "registration": "closed", "first_account": false, "oidc": null})
    );
    let d = Deployment::local(&[]).await;
    let i = d.instance().await;
    assert_eq!(
        i.config().await,
        json!({"mode": "local", "registration": "open", "first_account": true, "oidc": null}),
        "anyone may create the first account"
    );
    i.register(ADMIN, PASSWORD)
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(
        i.config().await,
        json!({"mode": "local", "registration": "closed", "first_account": false, "oidc": null})
    );
}

#[tokio::test]
async fn the_first_account_is_an_admin_and_registration_then_closes() {
    let d = Deployment::local(&[]).await;
    let i = d.instance().await;
    let r = i.register(ADMIN, PASSWORD).await;
    r.expect(StatusCode::CREATED);
    assert_eq!(r.body["user"]["role"], "admin");
    assert_eq!(r.body["user"]["email"], ADMIN);
    assert_eq!(r.body["user"]["tier"], "default");
    assert_eq!(r.body["user"]["auth"], "local");
    assert_eq!(r.body["expires_in"], 900);
    assert!(refresh_of(&r).starts_with("cvr_"));
    let me = i.get("/api/me", &token(&r)).await;
    me.expect(StatusCode::OK);
    assert_eq!(me.body["role"], "admin");
    assert_eq!(me.body["id"], r.body["user"]["id"]);

    i.register("eve@example.com", PASSWORD)
        .await
        .refused(StatusCode::FORBIDDEN, "forbidden");
    i.login("eve@example.com", PASSWORD)
        .await
        .refused(StatusCode::UNAUTHORIZED, "unauthorized");
    let users = i.get("/api/admin/users", &token(&r)).await;
    assert_eq!(
        users.body["items"].as_array().unwrap().len(),
        1,
        "nothing stored"
    );
}

#[tokio::test]
async fn with_open_registration_later_accounts_are_users_and_an_email_registers_once() {
    let (d, i, _) = with_admin(&[("CONVERSA_REGISTRATION", "open")]).await;
    let r = i.register("bob@example.com", PASSWORD).await;
    r.expect(StatusCode::CREATED);
    assert_eq!(r.body["user"]["role"], "user");
    for same in [
        "bob@example.com",
        "  BOB@Example.COM ",
        "\u{FF42}ob@example.com",
    ] {
        i.register(same, PASSWORD)
            .await
            .refused(StatusCode::CONFLICT, "conflict");
    }
    let j = d.instance().await;
    j.login("Bob@EXAMPLE.com", PASSWORD)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn bad_registrations_are_refused_with_a_reason_and_store_nothing() {
    let d = Deployment::local(&[]).await;
    let i = d.instance().await;
    let long = "x".repeat(1025);
    for (email, password, status, code) in [
        (
            "a@example.com",
            "123456789",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
        (
            "a@example.com",
            long.as_str(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
        (
            "not an email",
            PASSWORD,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
        (
            "a@@example.com",
            PASSWORD,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
        (
            "a@example",
            PASSWORD,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
    ] {
        let r = i.register(email, password).await;
        r.refused(status, code);
        assert!(
            !r.message().contains(password),
            "the password is not echoed"
        );
    }
    let r = i.register("a@example.com", &long).await;
    assert!(r.message().contains("1024"), "{}", r.message());
    i.post(
        "/api/auth/register",
        None,
        json!({"email": "a@example.com"}),
    )
    .await
    .refused(StatusCode::BAD_REQUEST, "bad_request");
    i.post(
        "/api/auth/register",
        None,
        json!({"email": "a@example.com", "password": PASSWORD, "role": "admin"}),
    )
    .await
    .refused(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(i.config().await["first_account"], true, "nothing stored");
}

#[tokio::test]
async fn emails_are_one_form_whatever_the_case_width_or_spaces() {
    let d = Deployment::local(&[]).await;
    let i = d.instance().await;
    let r = i.register(" \u{FF21}LICE@Example.COM ", PASSWORD).await;
    r.expect(StatusCode::CREATED);
    assert_eq!(r.body["user"]["email"], "alice@example.com");
    for typed in [
        "alice@example.com",
        "ALICE@EXAMPLE.COM",
        "\u{FF41}lice@example.com ",
    ] {
        i.login(typed, PASSWORD).await.expect(StatusCode::OK);
    }
    let k = i
        .post(
            "/api/admin/users",
            Some(&token(&r)),
            json!({"email": "\u{212A}im@example.com", "password": PASSWORD}),
        )
        .await;
    k.expect(StatusCode::CREATED);
    assert_eq!(k.body["email"], "kim@example.com", "the Kelvin sign is a K");
    i.login("kim@example.com", PASSWORD)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_email_and_a_wrong_password_answer_alike() {
    let (_d, i, _) = with_admin(&[]).await;
    let wrong_password = i.login(ADMIN, "not the password").await;
    let unknown = i.login("nobody@example.com", PASSWORD).await;
    wrong_password.refused(StatusCode::UNAUTHORIZED, "unauthorized");
    unknown.refused(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(wrong_password.body, unknown.body);
    i.login(ADMIN, &"x".repeat(1025))
        .await
        .refused(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
}

#[tokio::test]
async fn ten_failed_sign_ins_for_an_email_wait_fifteen_minutes() {
    let (_d, i, _) = with_admin(&[]).await;
    for n in 0..10 {
        let ip = format!("198.51.100.{n}");
        i.login_from(&ip, ADMIN, "wrong password!")
            .await
            .refused(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let r = i.login_from("203.0.113.9", ADMIN, PASSWORD).await;
    r.refused(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    // Another email from the same addresses is not held back.
    i.login_from("198.51.100.1", "other@example.com", "x")
        .await
        .refused(StatusCode::UNAUTHORIZED, "unauthorized");
    i.clock.advance(Duration::from_secs(retry));
    i.login_from("203.0.113.9", ADMIN, PASSWORD)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn ten_failed_sign_ins_from_an_address_hold_that_address_back() {
    let (_d, i, _) = with_admin(&[]).await;
    for n in 0..10 {
        i.login_from(
            "192.0.2.7",
            &format!("guess{n}@example.com"),
            "wrong password!",
        )
        .await
        .refused(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    i.login_from("192.0.2.7", ADMIN, PASSWORD)
        .await
        .refused(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    i.login_from("192.0.2.8", ADMIN, PASSWORD)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_family() {
    let (_d, i, _) = with_admin(&[]).await;
    let first = i.login(ADMIN, PASSWORD).await;
    let other = i.login(ADMIN, PASSWORD).await;
    let r1 = refresh_of(&first);
    let second = i.refresh(&r1).await;
    second.expect(StatusCode::OK);
    let r2 = refresh_of(&second);
    assert_ne!(r1, r2);
    assert_ne!(token(&first), token(&second));
    i.get("/api/me", &token(&second))
        .await
        .expect(StatusCode::OK);

    // The old token again: someone has a copy. The whole family goes.
    i.refresh(&r1)
        .await
        .refused(StatusCode::UNAUTHORIZED, "unauthorized");
    i.refresh(&r2)
        .await
        .refused(StatusCode::UNAUTHORIZED, "unauthorized");
    // Another sign-in is another family.
    i.refresh(&refresh_of(&other)).await.expect(StatusCode::OK);
    for bad in ["", "cvr_short", "not-a-token", &"x".repeat(20_000)] {
        i.refresh(bad)
            .await
            .refused(StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_leave_one_winner_then_none() {
    let (_d, i, _) = with_admin(&[]).await;
    let r = refresh_of(&i.login(ADMIN, PASSWORD).await);
    let (a, b) = tokio::join!(i.refresh(&r), i.refresh(&r));
    let ok = [&a, &b]
        .iter()
        .filter(|x| x.status == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "{} {}", a.body, b.body);
    let winner = if a.status == StatusCode::OK { &a } else { &b };
    i.refresh(&refresh_of(winner))
        .await
        .refused(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn signing_out_revokes_the_family() {
    let (_d, i, _) = with_admin(&[]).await;
    let r = refresh_of(&i.login(ADMIN, PASSWORD).await);
    let out = i
        .post("/api/auth/logout", None, json!({"refresh_token": r}))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    i.refresh(&r)
        .await
        .refused(StatusCode::UNAUTHORIZED, "unauthorized");
    let unknown = i
        .post(
            "/api/auth/logout",
            None,
            json!({"refresh_token": "cvr_unknownunknownunknownunknownunknownunkno"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn access_tokens_live_fifteen_minutes() {
    let (_d, i, t) = with_admin(&[]).await;
    let r = refresh_of(&i.login(ADMIN, PASSWORD).await);
    i.clock.advance(Duration::from_secs(15 * 60));
    i.get("/api/me", &t).await.expect(StatusCode::OK); // within the leeway
    i.clock.advance(Duration::from_secs(61));
    i.get("/api/me", &t)
        .await
        .refused(StatusCode::UNAUTHORIZED, "unauthorized");
    let fresh = i.refresh(&r).await;
    fresh.expect(StatusCode::OK);
    i.get("/api/me", &token(&fresh))
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn the_signing_key_is_made_once_and_kept_with_the_data() {
    let (d, _i, t) = with_admin(&[]).await;
    let restarted = d.instance().await;
    restarted.get("/api/me", &t).await.expect(StatusCode::OK);
}

#[tokio::test]
async fn tokens_signed_with_another_secret_or_changed_are_refused() {
    let secret_a = "a".repeat(40);
    let secret_b = "b".repeat(40);
    let a = Deployment::local(&[("CONVERSA_JWT_SECRET", &secret_a)]).await;
    let ia = a.instance().await;
    let t = token(&ia.register(ADMIN, PASSWORD).await);
    ia.get("/api/me", &t).await.expect(StatusCode::OK);
    // The same data under another secret.
    let b = Deployment {
        env: vec![
            ("CONVERSA_AUTH".into(), "local".into()),
            ("CONVERSA_JWT_SECRET".into(), secret_b),
        ],
        fake: FakeOpenAi::start().await,
        dir: a.dir,
    };
    let ib = b.instance().await;
    ib.get("/api/me", &t)
        .await
        .refused(StatusCode::UNAUTHORIZED, "unauthorized");

    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = t.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("someone-else");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    let unsigned = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    for forged in [tampered, unsigned] {
        ia.get("/api/me", &forged)
            .await
            .refused(StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn a_disabled_user_gets_403_on_every_route_until_enabled() {
    let (_d, i, admin) = with_admin(&[]).await;
    let (bob, bob_token) = add_user(&i, &admin, "bob@example.com").await;
    let bob_refresh = refresh_of(&i.login("bob@example.com", PASSWORD).await);
    let off = i
        .call(
            Method::PATCH,
            &format!("/api/admin/users/{bob}"),
            Send {
                bearer: Some(&admin),
                json: Some(json!({"disabled": true})),
                ..Send::default()
            },
        )
        .await;
    off.expect(StatusCode::OK);
    assert_eq!(off.body["disabled"], true);
    for uri in ["/api/me", "/api/conversations", "/api/models", "/api/keys"] {
        i.get(uri, &bob_token)
            .await
            .refused(StatusCode::FORBIDDEN, "forbidden");
    }
    i.post(
        "/api/chat/send-simple",
        Some(&bob_token),
        json!({"message": "hi"}),
    )
    .await
    .refused(StatusCode::FORBIDDEN, "forbidden");
    i.refresh(&bob_refresh)
        .await
        .refused(StatusCode::FORBIDDEN, "forbidden");
    i.login("bob@example.com", PASSWORD)
        .await
        .refused(StatusCode::FORBIDDEN, "forbidden");
    // An admin cannot lock themselves out.
    let me = i.get("/api/me", &admin).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    i.call(
        Method::PATCH,
        &format!("/api/admin/users/{me}"),
        Send {
            bearer: Some(&admin),
            json: Some(json!({"disabled": true})),
            ..Send::default()
        },
    )
    .await
    .refused(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
    i.call(
        Method::PATCH,
        &format!("/api/admin/users/{bob}"),
        Send {
            bearer: Some(&admin),
            json: Some(json!({"disabled": false})),
            ..Send::default()
        },
    )
    .await
    .expect(StatusCode::OK);
    i.get("/api/me", &bob_token).await.expect(StatusCode::OK);
}

#[tokio::test]
async fn a_user_disabled_on_another_instance_is_refused_here_within_a_minute() {
    let (d, a, admin) = with_admin(&[]).await;
    let (bob, bob_token) = add_user(&a, &admin, "bob@example.com").await;
    let b = d.instance().await;
    b.get("/api/me", &bob_token).await.expect(StatusCode::OK);
    a.call(
        Method::PATCH,
        &format!("/api/admin/users/{bob}"),
        Send {
            bearer: Some(&admin),
            json: Some(json!({"disabled": true})),
            ..Send::default()
        },
    )
    .await
    .expect(StatusCode::OK);
    b.clock.advance(Duration::from_secs(60));
    b.get("/api/me", &bob_token)
        .await
        .refused(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn admin_routes_need_an_admin() {
    let (_d, i, admin) = with_admin(&[]).await;
    let (_, bob) = add_user(&i, &admin, "bob@example.com").await;
    i.get("/api/admin/users", &bob)
        .await
        .refused(StatusCode::FORBIDDEN, "forbidden");
    i.post(
        "/api/admin/users",
        Some(&bob),
        json!({"email": "mallory@example.com", "password": PASSWORD}),
    )
    .await
    .refused(StatusCode::FORBIDDEN, "forbidden");
    i.call(Method::GET, "/api/admin/users", Send::default())
        .await
        .refused(StatusCode::UNAUTHORIZED, "unauthorized");
    let list = i.get("/api/admin/users", &admin).await;
    list.expect(StatusCode::OK);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let mut keys: Vec<&str> = items[1]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "disabled",
            "email",
            "id",
            "last_active_at",
            "name",
            "role",
            "tier",
            "usage_this_month"
        ]
    );
    assert_eq!(items[0]["email"], ADMIN);
    assert_eq!(items[1]["email"], "bob@example.com");
    assert_eq!(items[1]["name"], "Bob");
    assert_eq!(
        items[1]["usage_this_month"],
        json!({"turns": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}),
        "nothing used yet"
    );
    assert!(
        items[1]["last_active_at"].is_string(),
        "bob used the API: {}",
        items[1]
    );
    let page = i.get("/api/admin/users?limit=1", &admin).await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 1);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let rest = i
        .get(&format!("/api/admin/users?limit=1&cursor={cursor}"), &admin)
        .await;
    assert_eq!(rest.body["items"][0]["email"], "bob@example.com");
}

#[tokio::test]
async fn admins_change_tiers_and_roles_and_add_people() {
    let (_d, i, admin) =
        with_admin(&[("CONVERSA_DEFAULT_TIER", "free"), ("CONVERSA_TIERS", TIERS)]).await;
    let (bob, bob_token) = add_user(&i, &admin, "bob@example.com").await;
    assert_eq!(i.get("/api/me", &bob_token).await.body["tier"], "free");
    let patch = |body: Value| Send {
        bearer: Some(&admin),
        json: Some(body),
        ..Send::default()
    };
    let uri = format!("/api/admin/users/{bob}");
    let r = i
        .call(Method::PATCH, &uri, patch(json!({"tier": "pro"})))
        .await;
    r.expect(StatusCode::OK);
    assert_eq!(r.body["tier"], "pro");
    assert_eq!(
        i.get("/api/me", &bob_token).await.body["tier"],
        "pro",
        "at once on this instance"
    );
    i.call(Method::PATCH, &uri, patch(json!({"role": "admin"})))
        .await
        .expect(StatusCode::OK);
    i.get("/api/admin/users", &bob_token)
        .await
        .expect(StatusCode::OK);
    i.call(Method::PATCH, &uri, patch(json!({"tier": "gold tier!"})))
        .await
        .refused(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
    let unknown = i
        .call(Method::PATCH, &uri, patch(json!({"tier": "gold"})))
        .await;
    unknown.refused(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
    assert!(
        unknown.message().contains("default, free, pro"),
        "{}",
        unknown.body
    );
    i.call(Method::PATCH, &uri, patch(json!({"role": "owner"})))
        .await
        .refused(StatusCode::BAD_REQUEST, "bad_request");
    i.call(
        Method::PATCH,
        "/api/admin/users/nobody",
        patch(json!({"tier": "pro"})),
    )
    .await
    .refused(StatusCode::NOT_FOUND, "not_found");
    i.post(
        "/api/admin/users",
        Some(&admin),
        json!({"email": "BOB@example.com", "password": PASSWORD}),
    )
    .await
    .refused(StatusCode::CONFLICT, "conflict");
    let added = i
        .post(
            "/api/admin/users",
            Some(&admin),
            json!({"email": "cy@example.com", "password": PASSWORD, "role": "admin", "tier": "pro"}),
        )
        .await;
    added.expect(StatusCode::CREATED);
    assert_eq!(
        (added.body["role"].as_str(), added.body["tier"].as_str()),
        (Some("admin"), Some("pro"))
    );
}

#[tokio::test]
async fn local_routes_are_not_found_in_other_modes() {
    let d = Deployment::new(&[]).await;
    let i = d.instance().await;
    i.login(ADMIN, PASSWORD)
        .await
        .refused(StatusCode::NOT_FOUND, "not_found");
    i.register(ADMIN, PASSWORD)
        .await
        .refused(StatusCode::NOT_FOUND, "not_found");
    let me = i.call(Method::GET, "/api/me", Send::default()).await;
    me.expect(StatusCode::OK);
    assert_eq!(
        me.body,
        json!({"id": "local", "email": null, "name": null, "role": "admin", "tier": "default", "auth": "none"})
    );
}

const TOKENS: &str = "alice:alice-token-0123456789,bob:bob-token-0123456789ab";
const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789ab";

#[tokio::test]
async fn in_tokens_mode_admins_are_listed_in_conversa_admins() {
    let d = Deployment::new(&[
        ("CONVERSA_AUTH_TOKENS", TOKENS),
        ("CONVERSA_ADMINS", "alice"),
        ("CONVERSA_TIERS", TIERS),
    ])
    .await;
    let i = d.instance().await;
    let me = i.get("/api/me", ALICE).await;
    assert_eq!(me.body["role"], "admin");
    assert_eq!(me.body["auth"], "tokens");
    assert_eq!(i.get("/api/me", BOB).await.body["role"], "user");
    i.get("/api/admin/users", BOB)
        .await
        .refused(StatusCode::FORBIDDEN, "forbidden");
    let users = i.get("/api/admin/users", ALICE).await;
    users.expect(StatusCode::OK);
    let ids: Vec<&str> = users.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alice", "bob"]);
    i.call(
        Method::PATCH,
        "/api/admin/users/bob",
        Send {
            bearer: Some(ALICE),
            json: Some(json!({"role": "admin"})),
            ..Send::default()
        },
    )
    .await
    .refused(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
    let tier = i
        .call(
            Method::PATCH,
            "/api/admin/users/bob",
            Send {
                bearer: Some(ALICE),
                json: Some(json!({"tier": "pro"})),
                ..Send::default()
            },
        )
        .await;
    assert_eq!(tier.body["tier"], "pro");
    assert_eq!(i.get("/api/me", BOB).await.body["tier"], "pro");
}

#[tokio::test]
async fn api_keys_are_shown_once_work_as_bearer_tokens_and_stop_when_deleted() {
    let (_d, i, admin) = with_admin(&[]).await;
    let created = i
        .post(
            "/api/keys",
            Some(&admin),
            json!({"name": "  nightly export "}),
        )
        .await;
    created.expect(StatusCode::CREATED);
    let key = created.body["key"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("cvk_") && key.len() == 47, "{key}");
    assert_eq!(created.body["name"], "nightly export");

    let me = i.get("/api/me", &key).await;
    me.expect(StatusCode::OK);
    assert_eq!(me.body["email"], ADMIN);
    assert_eq!(me.body["role"], "admin");
    i.post(
        "/api/chat/send-simple",
        Some(&key),
        json!({"message": "hello from a script"}),
    )
    .await
    .expect(StatusCode::OK);
    let mine = i.get("/api/conversations", &admin).await;
    assert_eq!(
        mine.body["items"].as_array().unwrap().len(),
        1,
        "the key acts for its owner"
    );

    let list = i.get("/api/keys", &admin).await;
    list.expect(StatusCode::OK);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let item = &list.body["items"][0];
    assert_eq!(item["id"], id.as_str());
    assert!(item.get("key").is_none(), "never shown again: {item}");
    assert!(item["last_used_at"].is_string(), "{item}");
    assert!(!list.body.to_string().contains(&key));

    // A key cannot make more keys.
    i.post("/api/keys", Some(&key), json!({"name": "more"}))
        .await
        .refused(StatusCode::FORBIDDEN, "forbidden");
    // Nor delete another person's.
    let (_, bob) = add_user(&i, &admin, "bob@example.com").await;
    let uri = format!("/api/keys/{id}");
    i.call(Method::DELETE, &uri, bearer(&bob))
        .await
        .refused(StatusCode::NOT_FOUND, "not_found");
    i.call(Method::DELETE, &uri, bearer(&admin))
        .await
        .expect(StatusCode::NO_CONTENT);
    i.get("/api/me", &key)
        .await
        .refused(StatusCode::UNAUTHORIZED, "unauthorized");
    i.call(Method::DELETE, &uri, bearer(&admin))
        .await
        .refused(StatusCode::NOT_FOUND, "not_found");
    assert!(i.get("/api/keys", &admin).await.body["items"]
        .as_array()
        .unwrap()
        .is_empty());
    for name in ["", "   ", &"n".repeat(101)] {
        i.post("/api/keys", Some(&admin), json!({"name": name}))
            .await
            .refused(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
    }
    let forged = format!("cvk_{}", "A".repeat(43));
    i.get("/api/me", &forged)
        .await
        .refused(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_key_deleted_on_one_instance_stops_on_another_within_a_minute() {
    let d = Deployment::new(&[("CONVERSA_AUTH_TOKENS", TOKENS)]).await;
    let (a, b) = (d.instance().await, d.instance().await);
    let created = a
        .post("/api/keys", Some(ALICE), json!({"name": "ci"}))
        .await;
    let key = created.body["key"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    b.get("/api/me", &key).await.expect(StatusCode::OK);
    a.call(Method::DELETE, &format!("/api/keys/{id}"), bearer(ALICE))
        .await
        .expect(StatusCode::NO_CONTENT);
    a.get("/api/me", &key)
        .await
        .refused(StatusCode::UNAUTHORIZED, "unauthorized");
    b.clock.advance(Duration::from_secs(60));
    b.get("/api/me", &key)
        .await
        .refused(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn without_sign_in_there_are_no_keys() {
    let d = Deployment::new(&[]).await;
    let i = d.instance().await;
    i.post("/api/keys", None, json!({"name": "x"}))
        .await
        .refused(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn every_route_keeps_users_apart_admins_included() {
    let d = Deployment::new(&[("CONVERSA_AUTH_TOKENS", TOKENS), ("CONVERSA_ADMINS", "bob")]).await;
    let i = d.instance().await;
    let turn = i
        .post(
            "/api/chat/send-simple",
            Some(ALICE),
            json!({"message": "secret plans"}),
        )
        .await;
    turn.expect(StatusCode::OK);
    let conv = turn.body["conversation_id"].as_str().unwrap().to_owned();
    let (ct, body) = multipart(&[(
        "file",
        Some("notes.txt"),
        Some("text/plain"),
        b"alice's notes",
    )]);
    let up = i
        .call(
            Method::POST,
            "/api/files",
            Send {
                bearer: Some(ALICE),
                form: Some((ct, body)),
                ..Send::default()
            },
        )
        .await;
    up.expect(StatusCode::CREATED);
    let file = up.body["id"].as_str().unwrap().to_owned();

    let c = format!("/api/conversations/{conv}");
    let f = format!("/api/files/{file}");
    let reads = [
        (Method::GET, c.clone(), None),
        (Method::GET, format!("{c}/messages"), None),
        (Method::GET, format!("{c}/export"), None),
        (Method::PATCH, c.clone(), Some(json!({"title": "mine now"}))),
        (Method::GET, f.clone(), None),
        (Method::GET, format!("{f}/download"), None),
        (Method::GET, format!("{f}/text"), None),
        (
            Method::POST,
            "/api/chat/send-simple".into(),
            Some(json!({"message": "hi", "conversation_id": conv})),
        ),
        (
            Method::POST,
            "/api/chat/send-simple".into(),
            Some(json!({"message": "hi", "file_ids": [file]})),
        ),
        (Method::DELETE, c.clone(), None),
    ];
    for (method, uri, body) in reads {
        let send = Send {
            bearer: Some(BOB),
            json: body,
            ..Send::default()
        };
        i.call(method.clone(), &uri, send)
            .await
            .refused(StatusCode::NOT_FOUND, "not_found");
    }
    assert!(i.get("/api/conversations", BOB).await.body["items"]
        .as_array()
        .unwrap()
        .is_empty());
    // Alice still has everything.
    i.get(&c, ALICE).await.expect(StatusCode::OK);
    i.get(&format!("{f}/text"), ALICE)
        .await
        .expect(StatusCode::OK);
    i.get(&f, ALICE).await.expect(StatusCode::OK);
}

#[tokio::test]
async fn malformed_and_oversized_credentials_are_one_generic_401() {
    let d = Deployment::new(&[("CONVERSA_AUTH_TOKENS", TOKENS)]).await;
    let i = d.instance().await;
    let oversized = format!("Bearer {}", "a".repeat(17 * 1024));
    let cases: Vec<Vec<u8>> = vec![
        b"Basic YWxpY2U6cGFzc3dvcmQ=".to_vec(),
        b"Bearer".to_vec(),
        b"Bearer ".to_vec(),
        b"Bearer alice-token-0123456789 extra".to_vec(),
        b"Bearer \xff\xfe\xfd".to_vec(),
        b"Token alice-token-0123456789".to_vec(),
        format!("Bearer {ALICE}x").into_bytes(),
        format!("Bearer cvk_{}", "A".repeat(43)).into_bytes(),
        b"Bearer cvk_".to_vec(),
        b"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.".to_vec(),
        oversized.into_bytes(),
    ];
    let mut messages = std::collections::BTreeSet::new();
    for raw in cases {
        let r = i
            .call(
                Method::GET,
                "/api/conversations",
                Send {
                    authorization: Some(raw.clone()),
                    ..Send::default()
                },
            )
            .await;
        r.refused(StatusCode::UNAUTHORIZED, "unauthorized");
        messages.insert(r.message().to_owned());
    }
    let none = i
        .call(Method::GET, "/api/conversations", Send::default())
        .await;
    none.refused(StatusCode::UNAUTHORIZED, "unauthorized");
    messages.insert(none.message().to_owned());
    assert_eq!(messages.len(), 1, "one generic message: {messages:?}");
    // Nobody was stored for any of them.
    let users = i.get("/api/admin/users", ALICE).await;
    assert_eq!(
        users.status,
        StatusCode::FORBIDDEN,
        "alice is no admin here"
    );
    let d2 = Deployment {
        env: vec![
            ("CONVERSA_AUTH_TOKENS".into(), TOKENS.into()),
            ("CONVERSA_ADMINS".into(), "alice".into()),
        ],
        fake: FakeOpenAi::start().await,
        dir: d.dir,
    };
    let j = d2.instance().await;
    let ids: Vec<String> = j.get("/api/admin/users", ALICE).await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["alice"], "only the one who signed in");
}

#[tokio::test]
async fn the_openapi_document_lists_the_identity_routes() {
    let d = Deployment::new(&[]).await;
    let i = d.instance().await;
    let doc = i
        .call(Method::GET, "/api/openapi.json", Send::default())
        .await
        .body;
    for (path, methods) in [
        ("/api/auth/config", &["get"][..]),
        ("/api/me", &["get"]),
        ("/api/auth/register", &["post"]),
        ("/api/auth/login", &["post"]),
        ("/api/auth/refresh", &["post"]),
        ("/api/auth/logout", &["post"]),
        ("/api/keys", &["get", "post"]),
        ("/api/keys/{id}", &["delete"]),
        ("/api/admin/users", &["get", "post"]),
        ("/api/admin/users/{id}", &["patch"]),
    ] {
        let item = doc["paths"][path]
            .as_object()
            .unwrap_or_else(|| panic!("{path}"));
        let mut have: Vec<&str> = item
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "parameters")
            .collect();
        have.sort_unstable();
        let mut want = methods.to_vec();
        want.sort_unstable();
        assert_eq!(have, want, "{path}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for schema in [
        "Me",
        "SessionReply",
        "AuthConfigReply",
        "NewKey",
        "KeyItem",
        "AdminUser",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    let login = &doc["paths"]["/api/auth/login"]["post"]["responses"];
    for status in ["200", "401", "429"] {
        assert!(login[status].is_object(), "{status}: {login}");
    }
}

#[tokio::test]
async fn the_conversations_function_serves_sign_in_keys_and_admin_routes() {
    let (_d, i, admin) = with_admin(&[]).await;
    let router = conversa::api::conversations::router(i.app.state.clone());
    for (uri, token) in [
        ("/api/auth/config", None),
        ("/api/me", Some(admin.as_str())),
        ("/api/keys", Some(admin.as_str())),
        ("/api/admin/users", Some(admin.as_str())),
    ] {
        let mut req = Request::builder().uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let response = router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
    }
    // The chat function checks the same tokens.
    let chat = conversa::api::chat::router(i.app.state.clone());
    let response = chat
        .oneshot(
            Request::builder()
                .uri("/api/models")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_served_document_asks_for_the_bearer_token_only_where_people_sign_in() {
    let security =
        |doc: &Value, path: &str, method: &str| doc["paths"][path][method]["security"].clone();
    let none = Deployment::new(&[]).await.instance().await;
    let doc = none
        .call(Method::GET, "/api/openapi.json", Send::default())
        .await
        .body;
    assert_eq!(
        security(&doc, "/api/me", "get"),
        Value::Null,
        "mode none takes no token"
    );
    let d = Deployment::new(&[("CONVERSA_AUTH_TOKENS", TOKENS)]).await;
    let i = d.instance().await;
    let doc = i
        .call(Method::GET, "/api/openapi.json", Send::default())
        .await
        .body;
    for (path, method) in [
        ("/api/me", "get"),
        ("/api/conversations", "get"),
        ("/api/chat/send", "post"),
        ("/api/keys", "post"),
        ("/api/admin/users/{id}", "patch"),
        ("/api/files/{id}/download", "get"),
    ] {
        assert_eq!(
            security(&doc, path, method),
            json!([{"bearer": []}]),
            "{path}"
        );
    }
    // Every operation that asks for the token documents its two refusals.
    let paths = doc["paths"].as_object().unwrap();
    let mut secured = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if op.get("security").is_some() {
                secured += 1;
                for status in ["401", "403"] {
                    assert_eq!(
                        op["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} documents {status}"
                    );
                }
            }
        }
    }
    assert!(secured > 20, "{secured} operations ask for the token");
    for (path, method) in [
        ("/api/auth/config", "get"),
        ("/api/auth/login", "post"),
        ("/health", "get"),
        ("/api/openapi.json", "get"),
    ] {
        assert_eq!(
            security(&doc, path, method),
            Value::Null,
            "{path} is public"
        );
    }
}
