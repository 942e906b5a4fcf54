//! The Redis rate limiter against a real Redis (`REDIS_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is their job
#![cfg(feature = "redis")]

mod common;

use conversa::limits::redis::RedisLimiter;

#[tokio::test]
async fn the_limiter_passes_the_contract() {
    let Some(url) = common::service("REDIS_URL", "redis limiter contract") else {
        return;
    };
    let limiter = RedisLimiter::connect(&url).await.unwrap();
    conversa::limits::contract::run_all(&limiter).await;
}

#[tokio::test]
async fn counters_expire_with_their_window() {
    let Some(url) = common::service("REDIS_URL", "redis counter expiry") else {
        return;
    };
    let limiter = RedisLimiter::connect(&url).await.unwrap();
    let key = common::unique("ttl");
    let now = chrono::Utc::now().timestamp_millis();
    limiter.hit_at(&key, 5, now).await.unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let counter = RedisLimiter::counter_key(&key, conversa::limits::window(now).0);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&counter)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((60..=120).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn from_config_builds_the_redis_limiter() {
    let Some(url) = common::service("REDIS_URL", "redis from_config") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = common::build(&[
        ("CONVERSA_LIMITER", "redis"),
        ("REDIS_URL", &url),
        ("CONVERSA_DATA_DIR", dir.path().to_str().unwrap()),
    ])
    .await
    .unwrap();
    state.limiter.health().await.unwrap();
}

#[tokio::test]
async fn a_missing_url_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let err = common::build(&[
        ("CONVERSA_LIMITER", "redis"),
        ("CONVERSA_DATA_DIR", dir.path().to_str().unwrap()),
    ])
    .await
    .err()
    .unwrap();
    assert!(err.starts_with("REDIS_URL: required"), "{err}");
}

#[tokio::test]
async fn a_down_server_is_a_startup_error() {
    // Nothing listens on port 1.
    match RedisLimiter::connect("redis://127.0.0.1:1").await {
        Ok(_) => panic!("connected to nothing"),
        Err(e) => assert!(e.to_string().contains("unavailable"), "{e}"),
    }
}
