//! Mode `oidc` against a real issuer: moto's Cognito (`AWS_ENDPOINT_URL`) creates user pools, app
//! clients, users and the `admin` group, and issues the ID and access tokens; its JWKS is served
//! to the server through a small key server in the test, which counts fetches, can go down, and
//! can add a key of the test's own (ES256, for tokens with claims moto never writes).
//!
//! moto signs every pool's tokens with one RSA key (`kid: dummy`) and puts the AWS issuer URL in
//! `iss` (`https://cognito-idp.<region>.amazonaws.com/<pool>`), so the server is configured with
//! that issuer and `CONVERSA_OIDC_JWKS_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Method, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use conversa::limits::memory::MemoryLimiter;
use conversa::limits::{Clock, ManualClock, RateLimit};
use conversa::testing::{body_text, test_config, FakeOpenAi};
use conversa::App;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower::ServiceExt;

const PASSWORD: &str = "Correct-Horse-42!";

/// moto's Cognito through its JSON API (no SDK needed: moto checks no signature).
struct Cognito {
    endpoint: String,
    http: reqwest::Client,
}

impl Cognito {
    fn new() -> Option<Self> {
        common::service("CONVERSA_TEST_COGNITO", "Cognito (moto)")?;
        let endpoint = common::service("AWS_ENDPOINT_URL", "moto (Cognito)")?;
        Some(Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        })
    }

    async fn call(&self, action: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "x-amz-target",
                format!("AWSCognitoIdentityProviderService.{action}"),
            )
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{action}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn pool(&self) -> String {
        let p = self
            .call(
                "CreateUserPool",
                json!({"PoolName": common::unique("pool"), "UsernameAttributes": ["email"], "AutoVerifiedAttributes": ["email"]}),
            )
            .await;
        let pool = p["UserPool"]["Id"].as_str().unwrap().to_owned();
        self.call(
            "CreateGroup",
            json!({"UserPoolId": pool, "GroupName": "admin"}),
        )
        .await;
        pool
    }

    async fn client(&self, pool: &str) -> String {
        let c = self
            .call(
                "CreateUserPoolClient",
                json!({"UserPoolId": pool, "ClientName": "web", "GenerateSecret": false,
                       "ExplicitAuthFlows": ["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]}),
            )
            .await;
        c["UserPoolClient"]["ClientId"].as_str().unwrap().to_owned()
    }

    async fn user(&self, pool: &str, email: &str, admin: bool) {
        self.call(
            "AdminCreateUser",
            json!({"UserPoolId": pool, "Username": email, "MessageAction": "SUPPRESS",
                   "UserAttributes": [{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}]}),
        )
        .await;
        self.call(
            "AdminSetUserPassword",
            json!({"UserPoolId": pool, "Username": email, "Password": PASSWORD, "Permanent": true}),
        )
        .await;
        if admin {
            self.call(
                "AdminAddUserToGroup",
                json!({"UserPoolId": pool, "Username": email, "GroupName": "admin"}),
            )
            .await;
        }
    }

    /// The ID and access tokens of a sign-in.
    async fn sign_in(&self, pool: &str, client: &str, email: &str) -> (String, String) {
        let r = self
            .call(
                "AdminInitiateAuth",
                json!({"UserPoolId": pool, "ClientId": client, "AuthFlow": "ADMIN_USER_PASSWORD_AUTH",
                       "AuthParameters": {"USERNAME": email, "PASSWORD": PASSWORD}}),
            )
            .await;
        let result = &r["AuthenticationResult"];
        (
            result["IdToken"].as_str().unwrap().to_owned(),
            result["AccessToken"].as_str().unwrap().to_owned(),
        )
    }

    async fn jwks(&self, pool: &str) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/{pool}/.well-known/jwks.json", self.endpoint))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["keys"].as_array().unwrap().clone()
    }
}

/// The issuer moto writes into a pool's tokens.
fn issuer_of(pool: &str) -> String {
    let region = pool.split('_').next().unwrap();
    format!("https://cognito-idp.{region}.amazonaws.com/{pool}")
}

/// Serves a key set (moto's keys, and keys the test adds), counting fetches; it can be down. It
/// also serves a discovery document naming itself as the issuer.
#[derive(Default)]
struct Keys {
    keys: Mutex<Vec<Value>>,
    down: AtomicBool,
    fetches: AtomicUsize,
    base: Mutex<String>,
}

async fn serve_keys(State(k): State<Arc<Keys>>) -> (StatusCode, axum::Json<Value>) {
    k.fetches.fetch_add(1, Ordering::SeqCst);
    if k.down.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({})));
    }
    let keys = k.keys.lock().unwrap().clone();
    (StatusCode::OK, axum::Json(json!({ "keys": keys })))
}

async fn serve_discovery(State(k): State<Arc<Keys>>) -> axum::Json<Value> {
    let base = k.base.lock().unwrap().clone();
    axum::Json(json!({
        "issuer": base,
        "jwks_uri": format!("{base}/jwks.json"),
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
    }))
}

async fn key_server(keys: Vec<Value>) -> (Arc<Keys>, String) {
    let state = Arc::new(Keys {
        keys: Mutex::new(keys),
        ..Keys::default()
    });
    let app = Router::new()
        .route("/jwks.json", get(serve_keys))
        .route("/.well-known/openid-configuration", get(serve_discovery))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    *state.base.lock().unwrap() = base.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (state, base)
}

/// An ES256 key of the test's own: its JWK and a way to sign claims with it.
struct EcKey {
    kid: String,
    pkcs8: Vec<u8>,
    jwk: Value,
}

impl EcKey {
    fn new(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        assert_eq!((point.len(), point[0]), (65, 4), "uncompressed P-256 point");
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..]),
        });
        Self {
            kid: kid.into(),
            pkcs8: pair.to_pkcs8v1().unwrap().as_ref().to_vec(),
            jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let header = Header {
            kid: Some(self.kid.clone()),
            ..Header::new(Algorithm::ES256)
        };
        encode(&header, claims, &EncodingKey::from_ec_der(&self.pkcs8)).unwrap()
    }
}

/// A pool with two app clients, alice (admin group) and bob, a second pool with the same users,
/// and a server in mode `oidc` for the first pool and client, reading keys from the key server.
struct Setup {
    cognito: Cognito,
    pool: String,
    client: String,
    other_client: String,
    other_pool: String,
    other_pool_client: String,
    keys: Arc<Keys>,
    keys_url: String,
    fake: FakeOpenAi,
    dir: tempfile::TempDir,
    app: App,
    clock: Arc<ManualClock>,
}

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

impl Setup {
    async fn new() -> Option<Self> {
        Self::with(&[]).await
    }

    async fn with(extra: &[(&str, &str)]) -> Option<Self> {
        let cognito = Cognito::new()?;
        let pool = cognito.pool().await;
        let client = cognito.client(&pool).await;
        let other_client = cognito.client(&pool).await;
        let other_pool = cognito.pool().await;
        let other_pool_client = cognito.client(&other_pool).await;
        for p in [&pool, &other_pool] {
            cognito.user(p, ALICE, true).await;
            cognito.user(p, BOB, false).await;
        }
        let (keys, base) = key_server(cognito.jwks(&pool).await).await;
        let keys_url = format!("{base}/jwks.json");
        let fake = FakeOpenAi::start().await;
        let dir = tempfile::tempdir().unwrap();
        let issuer = issuer_of(&pool);
        let mut env = vec![
            ("CONVERSA_AUTH", "oidc"),
            ("CONVERSA_OIDC_ISSUER", issuer.as_str()),
            ("CONVERSA_OIDC_AUDIENCE", client.as_str()),
            ("CONVERSA_OIDC_JWKS_URL", keys_url.as_str()),
        ];
        env.extend_from_slice(extra);
        let (app, clock) = build(&fake, &dir, &env).await;
        Some(Self {
            cognito,
            pool,
            client,
            other_client,
            other_pool,
            other_pool_client,
            keys,
            keys_url,
            fake,
            dir,
            app,
            clock,
        })
    }

    async fn tokens(&self, email: &str) -> (String, String) {
        self.cognito.sign_in(&self.pool, &self.client, email).await
    }

    async fn call(&self, method: Method, uri: &str, token: &str) -> (StatusCode, Value) {
        call(&self.app, method, uri, token).await
    }

    async fn get(&self, uri: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, uri, token).await
    }

    fn fetches(&self) -> usize {
        self.keys.fetches.load(Ordering::SeqCst)
    }

    /// Claims like Cognito's ID tokens for this pool and client, at the server's time.
    fn claims(&self, sub: &str) -> Value {
        let now = self.clock.now_secs();
        json!({
            "sub": sub, "iss": issuer_of(&self.pool), "aud": self.client, "token_use": "id",
            "email": "eve@example.com", "iat": now, "exp": now + 3600,
        })
    }
}

async fn build(
    fake: &FakeOpenAi,
    dir: &tempfile::TempDir,
    env: &[(&str, &str)],
) -> (App, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::now());
    let app = App::from_config(test_config(&fake.base_url, dir.path(), env))
        .await
        .unwrap()
        .with_rate_limit(RateLimit::new(
            Arc::new(MemoryLimiter::new()),
            clock.clone(),
        ))
        .unwrap();
    (app, clock)
}

async fn call(app: &App, method: Method, uri: &str, token: &str) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if !token.is_empty() {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = conversa::api::router(app.state.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let text = body_text(response).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[track_caller]
fn refused(reply: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(reply.0, status, "{}", reply.1);
    assert_eq!(reply.1["error"]["code"], code, "{}", reply.1);
}

/// A token with its payload replaced (the signature is the original's).
fn with_claims(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    edit(&mut claims);
    format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(claims.to_string()),
        parts[2]
    )
}

/// A token with its header replaced (payload and signature are the original's).
fn with_header(token: &str, header: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        parts[1],
        parts[2]
    )
}

fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn id_and_access_tokens_of_the_pool_are_accepted() {
    let Some(s) = Setup::new().await else { return };
    let (id, access) = s.tokens(ALICE).await;
    assert_eq!(claims_of(&id)["token_use"], "id");
    assert_eq!(claims_of(&access)["token_use"], "access");
    assert!(
        claims_of(&access).get("aud").is_none(),
        "Cognito access tokens have client_id"
    );
    let (status, me) = s.get("/api/me", &id).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], claims_of(&id)["sub"]);
    assert_eq!(me["email"], ALICE);
    assert_eq!(me["role"], "admin");
    assert_eq!(me["auth"], "oidc");
    assert_eq!(me["tier"], "default");
    let (status, me_again) = s.get("/api/me", &access).await;
    assert_eq!(status, StatusCode::OK, "{me_again}");
    assert_eq!(me_again["id"], me["id"]);
    let (bob_id, _) = s.tokens(BOB).await;
    let (_, bob) = s.get("/api/me", &bob_id).await;
    assert_eq!(bob["role"], "user");
    assert_eq!(s.fetches(), 1, "keys fetched once, then cached");
}

#[tokio::test]
async fn admins_by_group_reach_admin_routes_and_others_get_403() {
    let Some(s) = Setup::new().await else { return };
    let (alice, _) = s.tokens(ALICE).await;
    let (bob, bob_access) = s.tokens(BOB).await;
    s.get("/api/me", &bob).await;
    let (status, users) = s.get("/api/admin/users", &alice).await;
    assert_eq!(status, StatusCode::OK, "{users}");
    let mut listed: Vec<(&str, &str)> = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["email"].as_str().unwrap(), u["role"].as_str().unwrap()))
        .collect();
    // Both first signed in at the same instant of the test clock: the order between them is the
    // ids' (random subs), so compare them as a set.
    listed.sort_unstable();
    assert_eq!(listed, [(ALICE, "admin"), (BOB, "user")]);
    refused(
        &s.get("/api/admin/users", &bob).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    refused(
        &s.get("/api/admin/users", &bob_access).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused() {
    let Some(s) = Setup::new().await else { return };
    // A key of the test's own, for nbf (which moto never writes), served from the start.
    let ec = EcKey::new("test-es256");
    s.keys.keys.lock().unwrap().push(ec.jwk.clone());
    let (id, _) = s.tokens(ALICE).await;
    let exp = claims_of(&id)["exp"].as_i64().unwrap();
    let iat = claims_of(&id)["iat"].as_i64().unwrap();
    s.clock.set((exp + 59) * 1000);
    assert_eq!(
        s.get("/api/me", &id).await.0,
        StatusCode::OK,
        "within the leeway"
    );
    s.clock.set((exp + 61) * 1000);
    refused(
        &s.get("/api/me", &id).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    // Issued "in the future" for this server's clock.
    s.clock.set((iat - 120) * 1000);
    refused(
        &s.get("/api/me", &id).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    s.clock.set(iat * 1000);
    let now = s.clock.now_secs();
    let mut claims = s.claims("eve");
    claims["nbf"] = json!(now + 600);
    let early = ec.sign(&claims);
    refused(
        &s.get("/api/me", &early).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    s.clock.set((now + 600 - 59) * 1000);
    assert_eq!(
        s.get("/api/me", &early).await.0,
        StatusCode::OK,
        "valid from nbf − leeway"
    );
}

#[tokio::test]
async fn tokens_of_another_pool_or_another_app_client_are_refused() {
    let Some(s) = Setup::new().await else { return };
    // Same key (moto signs every pool with it), another issuer.
    let (id, access) = s
        .cognito
        .sign_in(&s.other_pool, &s.other_pool_client, ALICE)
        .await;
    for t in [&id, &access] {
        refused(
            &s.get("/api/me", t).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
    }
    // Same pool, another app client: `aud` (ID token) and `client_id` (access token) differ.
    let (id, access) = s.cognito.sign_in(&s.pool, &s.other_client, ALICE).await;
    assert_eq!(claims_of(&access)["client_id"], s.other_client.as_str());
    for t in [&id, &access] {
        refused(
            &s.get("/api/me", t).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
    }
    // A token of no declared use.
    let ec = EcKey::new("test-use");
    s.keys.keys.lock().unwrap().push(ec.jwk.clone());
    let mut claims = s.claims("eve");
    claims["token_use"] = json!("refresh");
    // The key set was fetched when the first token came; the new key needs the next minute.
    s.clock.advance(Duration::from_secs(61));
    refused(
        &s.get("/api/me", &ec.sign(&claims)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let mut claims = s.claims("eve");
    claims.as_object_mut().unwrap().remove("aud");
    refused(
        &s.get("/api/me", &ec.sign(&claims)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_eq!(
        s.get("/api/me", &ec.sign(&s.claims("eve"))).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let Some(s) = Setup::new().await else { return };
    let (alice, _) = s.tokens(ALICE).await;
    let (bob, _) = s.tokens(BOB).await;
    assert_eq!(s.get("/api/me", &alice).await.0, StatusCode::OK);
    let public = s.cognito.jwks(&s.pool).await[0].clone();

    // Bob adds himself to the admin group; the signature no longer matches.
    let tampered = with_claims(&bob, |c| c["cognito:groups"] = json!(["admin"]));
    // A key id the provider never had.
    let unknown_kid = with_header(
        &alice,
        &json!({"alg": "RS256", "kid": "not-a-key", "typ": "JWT"}),
    );
    // No signature at all.
    let none = format!(
        "{}.{}.",
        B64.encode(json!({"alg": "none", "kid": "dummy"}).to_string()),
        alice.split('.').nth(1).unwrap()
    );
    // HMAC keyed with what is public: the modulus, and the whole JWK.
    let hs256 = |secret: &[u8]| {
        let header = Header {
            kid: Some("dummy".into()),
            ..Header::new(Algorithm::HS256)
        };
        let mut claims = claims_of(&bob);
        claims["cognito:groups"] = json!(["admin"]);
        encode(&header, &claims, &EncodingKey::from_secret(secret).unwrap()).unwrap()
    };
    let forged = [
        tampered,
        unknown_kid,
        none,
        hs256(public["n"].as_str().unwrap().as_bytes()),
        hs256(public.to_string().as_bytes()),
        with_header(&alice, &json!({"alg": "ES256", "kid": "dummy"})),
        with_header(&alice, &json!({"alg": "PS256", "kid": "dummy"})),
        alice.split('.').take(2).collect::<Vec<_>>().join("."),
        format!("{alice}.extra"),
    ];
    for (n, token) in forged.iter().enumerate() {
        let r = s.get("/api/me", token).await;
        assert_eq!(r.0, StatusCode::UNAUTHORIZED, "forgery {n}: {}", r.1);
        assert_eq!(r.1["error"]["code"], "unauthorized");
    }
    refused(
        &s.get("/api/admin/users", &forged[0]).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    // An EC key's token presented as RS256: the key decides the algorithm.
    let ec = EcKey::new("test-alg");
    s.keys.keys.lock().unwrap().push(ec.jwk.clone());
    s.clock.advance(Duration::from_secs(61));
    let good = ec.sign(&s.claims("eve"));
    assert_eq!(
        s.get("/api/me", &good).await.0,
        StatusCode::OK,
        "ES256 is accepted"
    );
    let relabelled = with_header(&good, &json!({"alg": "RS256", "kid": "test-alg"}));
    refused(
        &s.get("/api/me", &relabelled).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

#[tokio::test]
async fn keys_are_fetched_on_first_use_and_again_for_an_unknown_kid_at_most_once_a_minute() {
    let Some(s) = Setup::new().await else { return };
    assert_eq!(s.fetches(), 0, "nothing fetched at start");
    call(&s.app, Method::GET, "/health", "").await;
    assert_eq!(s.fetches(), 0);
    let (alice, _) = s.tokens(ALICE).await;
    assert_eq!(s.get("/api/me", &alice).await.0, StatusCode::OK);
    assert_eq!(s.fetches(), 1);

    // The provider rotates in a new key.
    let ec = EcKey::new("rotated-in");
    s.keys.keys.lock().unwrap().push(ec.jwk.clone());
    let new = ec.sign(&s.claims("eve"));
    refused(
        &s.get("/api/me", &new).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    refused(
        &s.get("/api/me", &new).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_eq!(
        s.fetches(),
        1,
        "within a minute of the last fetch: no other"
    );
    s.clock.advance(Duration::from_secs(61));
    assert_eq!(s.get("/api/me", &new).await.0, StatusCode::OK);
    assert_eq!(s.fetches(), 2);
    let unknown = with_header(&alice, &json!({"alg": "RS256", "kid": "never"}));
    for _ in 0..3 {
        refused(
            &s.get("/api/me", &unknown).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
    }
    assert_eq!(
        s.fetches(),
        2,
        "garbage kids cannot make the server hammer the provider"
    );
    assert_eq!(s.get("/api/me", &alice).await.0, StatusCode::OK);
}

#[tokio::test]
async fn with_the_key_endpoint_down_cached_keys_work_and_new_ones_are_503() {
    let Some(s) = Setup::new().await else { return };
    let (alice, _) = s.tokens(ALICE).await;
    s.keys.down.store(true, Ordering::SeqCst);
    let cold = s.get("/api/me", &alice).await;
    refused(&cold, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(
        !cold.1.to_string().contains(&s.keys_url),
        "no internals: {}",
        cold.1
    );
    s.keys.down.store(false, Ordering::SeqCst);
    s.clock.advance(Duration::from_secs(61));
    assert_eq!(s.get("/api/me", &alice).await.0, StatusCode::OK);

    s.keys.down.store(true, Ordering::SeqCst);
    let ec = EcKey::new("while-down");
    s.keys.keys.lock().unwrap().push(ec.jwk.clone());
    s.clock.advance(Duration::from_secs(61));
    let new = ec.sign(&s.claims("eve"));
    refused(
        &s.get("/api/me", &new).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    assert_eq!(
        s.get("/api/me", &alice).await.0,
        StatusCode::OK,
        "the cached key keeps working"
    );
    let before = s.fetches();
    refused(
        &s.get("/api/me", &new).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    assert_eq!(
        s.fetches(),
        before,
        "a failed fetch is not retried within the minute"
    );
    s.keys.down.store(false, Ordering::SeqCst);
    s.clock.advance(Duration::from_secs(61));
    assert_eq!(s.get("/api/me", &new).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_sign_in_page_gets_the_providers_endpoints_from_its_discovery_document() {
    let Some(fake_setup) = Cognito::new() else {
        return;
    };
    drop(fake_setup);
    let (keys, base) = key_server(vec![]).await;
    let ec = EcKey::new("discovered");
    keys.keys.lock().unwrap().push(ec.jwk.clone());
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (app, clock) = build(
        &fake,
        &dir,
        &[
            ("CONVERSA_AUTH", "oidc"),
            ("CONVERSA_OIDC_ISSUER", &base),
            ("CONVERSA_OIDC_AUDIENCE", "conversa-web"),
            ("CONVERSA_OIDC_GROUPS_CLAIM", "groups"),
            ("CONVERSA_OIDC_SCOPES", "openid email profile groups"),
        ],
    )
    .await;
    let (status, config) = call(&app, Method::GET, "/api/auth/config", "").await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(
        config,
        json!({"mode": "oidc", "registration": "closed", "first_account": false, "oidc": {
            "issuer": base, "client_id": "conversa-web",
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "scopes": "openid email profile groups",
        }})
    );
    // Keys through the document's jwks_uri; a generic provider's ID token has no token_use.
    let now = clock.now_secs();
    let token = ec.sign(
        &json!({"sub": "alice", "iss": base, "aud": ["conversa-web", "other"],
        "groups": ["admin", "staff"], "name": "Alice Admin", "iat": now, "exp": now + 900}),
    );
    let (status, me) = call(&app, Method::GET, "/api/me", &token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        (me["role"].as_str(), me["name"].as_str()),
        (Some("admin"), Some("Alice Admin"))
    );
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_not_trusted() {
    if Cognito::new().is_none() {
        return;
    }
    let (_keys, base) = key_server(vec![]).await;
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The document names `base`; the configuration says `base/` (another string).
    let configured = format!("{base}/");
    let (app, _) = build(
        &fake,
        &dir,
        &[
            ("CONVERSA_AUTH", "oidc"),
            ("CONVERSA_OIDC_ISSUER", &configured),
            ("CONVERSA_OIDC_AUDIENCE", "conversa-web"),
        ],
    )
    .await;
    refused(
        &call(&app, Method::GET, "/api/auth/config", "").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
}

#[tokio::test]
async fn a_configuration_that_cannot_work_stops_the_start_naming_the_variable() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    for (pairs, var) in [
        (vec![("CONVERSA_AUTH", "oidc")], "CONVERSA_OIDC_ISSUER"),
        (
            vec![
                ("CONVERSA_AUTH", "oidc"),
                ("CONVERSA_OIDC_ISSUER", "https://idp.example.com"),
            ],
            "CONVERSA_OIDC_AUDIENCE",
        ),
        (
            vec![
                ("CONVERSA_AUTH", "oidc"),
                ("CONVERSA_OIDC_ISSUER", "idp.example.com"),
                ("CONVERSA_OIDC_AUDIENCE", "x"),
            ],
            "CONVERSA_OIDC_ISSUER",
        ),
    ] {
        let mut map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        map.insert("OPENAI_BASE_URL".into(), fake.base_url.clone());
        map.insert("CONVERSA_DATA_DIR".into(), dir.path().display().to_string());
        let err = conversa::Config::from_lookup(|k| map.get(k).cloned()).unwrap_err();
        assert_eq!(err.var, var, "{err}");
    }
}

/// The AWS stack hands the functions the app client's id through an SSM parameter.
#[cfg(feature = "ssm")]
#[tokio::test]
async fn the_audience_can_come_from_an_ssm_parameter() {
    let Some(s) = Setup::new().await else { return };
    let name = format!("/conversa/{}/oidc-client-id", common::unique("stack"));
    let ssm = aws_sdk_ssm::Client::new(conversa::aws::sdk_config().await);
    ssm.put_parameter()
        .name(&name)
        .value(&s.client)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let issuer = issuer_of(&s.pool);
    let (app, _) = build(
        &s.fake,
        &s.dir,
        &[
            ("CONVERSA_AUTH", "oidc"),
            ("CONVERSA_OIDC_ISSUER", &issuer),
            ("CONVERSA_OIDC_AUDIENCE_PARAMETER", &name),
            ("CONVERSA_OIDC_JWKS_URL", &s.keys_url),
        ],
    )
    .await;
    let (id, _) = s.tokens(ALICE).await;
    let (status, me) = call(&app, Method::GET, "/api/me", &id).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let (other, _) = s.cognito.sign_in(&s.pool, &s.other_client, ALICE).await;
    refused(
        &call(&app, Method::GET, "/api/me", &other).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    ssm.delete_parameter().name(&name).send().await.unwrap();
}

#[tokio::test]
async fn a_user_of_the_provider_keeps_their_conversations_apart() {
    let Some(s) = Setup::new().await else { return };
    let (alice, _) = s.tokens(ALICE).await;
    let (bob, _) = s.tokens(BOB).await;
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/chat/send-simple")
        .header(header::AUTHORIZATION, format!("Bearer {alice}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"message": "alice's plans"}).to_string()))
        .unwrap();
    let response = conversa::api::router(s.app.state.clone())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let turn: Value = serde_json::from_str(&body_text(response).await).unwrap();
    let id = turn["conversation_id"].as_str().unwrap();
    let uri = format!("/api/conversations/{id}");
    assert_eq!(s.get(&uri, &alice).await.0, StatusCode::OK);
    refused(&s.get(&uri, &bob).await, StatusCode::NOT_FOUND, "not_found");
    let (_, list) = s.get("/api/conversations", &bob).await;
    assert!(list["items"].as_array().unwrap().is_empty());
}
