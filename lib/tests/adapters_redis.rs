//! The Redis rate limiter against a real Redis (`REDIS_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is their job
#![cfg(feature = "redis")]

mod common;

use conversa::contract::Subject;
use conversa::limits::redis::RedisLimiter;
use conversa::limits::{RateLimiter, Window, KEEP_AFTER_SECS};

async fn limiter() -> Option<(RedisLimiter, String)> {
    let url = common::service("REDIS_URL", "Redis")?;
    Some((RedisLimiter::connect(&url).await.unwrap(), url))
}

conversa::limiter_contract_tests!(contract, async {
    let (limiter, _) = limiter().await?;
    Some(Subject::new(limiter))
});

#[tokio::test]
async fn counters_expire_after_their_window_and_the_margin() {
    let Some((limiter, url)) = limiter().await else {
        return;
    };
    let key = common::unique("ttl");
    // 20 s into a minute: 40 s are left, then the margin.
    let window = Window::minute(1_800_000_020_000);
    limiter.increment(&key, &window).await.unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(RedisLimiter::counter_key(&key, &window))
        .query_async(&mut conn)
        .await
        .unwrap();
    let expected = 40 + KEEP_AFTER_SECS;
    assert!((expected - 2..=expected).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn from_config_builds_the_redis_limiter() {
    let Some(url) = common::service("REDIS_URL", "Redis") else {
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
