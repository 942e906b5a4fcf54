//! The S3 blob store against a real S3 API (moto locally, `AWS_ENDPOINT_URL`), each run in its own
//! bucket, and the presigned-upload routes end to end: presign, `PUT` to the URL, complete.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is their job
#![cfg(all(feature = "s3", feature = "sqlite"))]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use conversa::blobs::s3::{ensure_bucket, S3Blobs};
use conversa::blobs::BlobStore;
use conversa::contract::Subject;
use conversa::{App, AppState};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn bucket(what: &str) -> Option<(aws_sdk_s3::Client, S3Blobs)> {
    common::service("AWS_ENDPOINT_URL", &format!("S3 ({what})"))?;
    let client = conversa::blobs::s3::client(conversa::aws::sdk_config().await);
    let name = common::unique("s3");
    ensure_bucket(&client, &name).await.unwrap();
    Some((client.clone(), S3Blobs::new(client, name)))
}

/// Empties the bucket, whatever is left in it, then deletes it.
async fn drop_bucket(client: aws_sdk_s3::Client, blobs: S3Blobs) {
    let left = client
        .list_objects_v2()
        .bucket(blobs.bucket())
        .send()
        .await
        .unwrap();
    for o in left.contents() {
        blobs.delete_prefix(o.key().unwrap()).await.unwrap();
    }
    for owner in ["alice/", "bob/", "local/"] {
        blobs.delete_prefix(owner).await.unwrap();
    }
    client
        .delete_bucket()
        .bucket(blobs.bucket())
        .send()
        .await
        .unwrap();
}

conversa::blob_contract_tests!(contract, async {
    let (client, blobs) = bucket("blob contract").await?;
    Some(Subject::new(blobs.clone()).with_teardown(drop_bucket(client, blobs)))
});

#[tokio::test]
async fn objects_are_encrypted_and_delete_prefix_pages_through_listings() {
    let Some((client, blobs)) = bucket("s3 encryption and paging").await else {
        return;
    };
    blobs
        .put("local/f/original", Bytes::from_static(b"x"), "text/plain")
        .await
        .unwrap();
    let head = client
        .head_object()
        .bucket(blobs.bucket())
        .key("local/f/original")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("AES256")
    );
    assert_eq!(head.content_type(), Some("text/plain"));
    // More objects than one listing page (1,000) holds.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..1_050 {
        let blobs = blobs.clone();
        set.spawn(async move {
            blobs
                .put(
                    &format!("local/many/{i:05}"),
                    Bytes::from_static(b"."),
                    "text/plain",
                )
                .await
        });
        if set.len() >= 32 {
            set.join_next().await.unwrap().unwrap().unwrap();
        }
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    blobs.delete_prefix("local/many/").await.unwrap();
    let left = client
        .list_objects_v2()
        .bucket(blobs.bucket())
        .prefix("local/many/")
        .send()
        .await
        .unwrap();
    assert_eq!(left.key_count(), Some(0));
    assert!(blobs.get("local/f/original").await.unwrap().is_some());
    drop_bucket(client, blobs).await;
}

#[tokio::test]
async fn presigned_urls_upload_and_download() {
    let Some((client, blobs)) = bucket("s3 presigned urls").await else {
        return;
    };
    let body = b"hello from the browser".to_vec();
    let put = blobs
        .presign_put(
            "local/p/original",
            "text/plain",
            body.len() as u64,
            Duration::from_secs(300),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!put.headers.contains_key("content-length"));
    let http = reqwest::Client::new();
    let mut req = http.put(&put.url).body(body.clone());
    for (k, v) in &put.headers {
        req = req.header(k, v);
    }
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    assert_eq!(
        blobs.get("local/p/original").await.unwrap(),
        Some(Bytes::from(body.clone()))
    );
    let get = blobs
        .presign_get("local/p/original", "notes.txt", Duration::from_secs(300))
        .await
        .unwrap()
        .unwrap();
    let res = http.get(&get.url).send().await.unwrap();
    assert!(res.status().is_success());
    assert_eq!(res.bytes().await.unwrap().to_vec(), body);
    drop_bucket(client, blobs).await;
}

// ---- the presigned-upload routes ----

struct Api {
    state: AppState,
    _dir: tempfile::TempDir,
}

fn state_with(blobs: Arc<dyn BlobStore>) -> Api {
    state_with_config(blobs, &[])
}

fn state_with_config(blobs: Arc<dyn BlobStore>, pairs: &[(&str, &str)]) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = pairs.to_vec();
    pairs.push(("CONVERSA_DATA_DIR", dir.path().to_str().unwrap()));
    let config = common::config(&pairs);
    let store = conversa::store::sqlite::SqliteStore::in_memory()
        .unwrap()
        .with_turn_log();
    let limiter = Arc::new(conversa::limits::memory::MemoryLimiter::new());
    let model = Arc::new(
        conversa::llm::openai::OpenAiModel::new(Some("unused"), Some("http://127.0.0.1:9"), "m")
            .unwrap(),
    );
    Api {
        state: App::new(
            config,
            store,
            blobs,
            limiter,
            Arc::new(conversa::llm::Registry::single(
                "m",
                conversa::llm::Provider::OpenAi,
                model,
            )),
        )
        .unwrap()
        .state,
        _dir: dir,
    }
}

impl Api {
    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let res = conversa::api::files::router(self.state.clone())
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value)
    }

    async fn presign(
        &self,
        filename: &str,
        content_type: &str,
        size: usize,
    ) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/api/files/presign",
            Some(json!({"filename": filename, "content_type": content_type, "size": size})),
        )
        .await
    }
}

async fn upload(reply: &Value, body: &[u8]) {
    let mut req = reqwest::Client::new()
        .put(reply["upload_url"].as_str().unwrap())
        .body(body.to_vec());
    for (k, v) in reply["headers"].as_object().unwrap() {
        req = req.header(k.as_str(), v.as_str().unwrap());
    }
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
}

#[tokio::test]
async fn presign_put_complete_then_read_the_text() {
    let Some((client, blobs)) = bucket("presigned upload routes").await else {
        return;
    };
    let api = state_with(Arc::new(blobs.clone()));
    let text = "Quarterly numbers: revenue grew 12%.\n".repeat(50);
    let (status, reply) = api
        .presign("q4 notes.md", "text/markdown", text.len())
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["method"], "PUT");
    assert_eq!(reply["headers"]["content-type"], "text/markdown");
    assert!(reply["expires_at"].as_str().unwrap().ends_with('Z'));
    let id = reply["file_id"].as_str().unwrap().to_owned();

    let (status, meta) = api
        .call(Method::GET, &format!("/api/files/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["status"], "processing");

    let (status, err) = api
        .call(Method::POST, &format!("/api/files/{id}/complete"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "before the bytes arrive: {err}"
    );
    assert_eq!(err["error"]["code"], "bad_request");

    upload(&reply, text.as_bytes()).await;
    let (status, meta) = api
        .call(Method::POST, &format!("/api/files/{id}/complete"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{meta}");
    assert_eq!(meta["status"], "ready");
    assert_eq!(meta["file_type"], "text");
    assert_eq!(meta["size"], text.len());
    assert_eq!(meta["char_count"], text.chars().count());
    let (status, again) = api
        .call(Method::POST, &format!("/api/files/{id}/complete"), None)
        .await;
    assert_eq!(
        (status, &again),
        (StatusCode::OK, &meta),
        "completing twice is harmless"
    );

    let (status, body) = api
        .call(Method::GET, &format!("/api/files/{id}/text"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["text"].as_str().unwrap().trim(), text.trim());

    let (status, _) = api
        .call(Method::POST, "/api/files/nope/complete", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    blobs.delete_prefix("local/").await.unwrap();
    client
        .delete_bucket()
        .bucket(blobs.bucket())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn content_that_contradicts_its_claim_fails_the_file() {
    let Some((client, blobs)) = bucket("presigned upload mismatch").await else {
        return;
    };
    let api = state_with(Arc::new(blobs.clone()));
    let body = b"this is not a PDF at all";
    let (status, reply) = api
        .presign("report.pdf", "application/pdf", body.len())
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    upload(&reply, body).await;
    let id = reply["file_id"].as_str().unwrap();
    let (status, meta) = api
        .call(Method::POST, &format!("/api/files/{id}/complete"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["status"], "failed");
    assert!(
        meta["error"].as_str().unwrap().contains("report.pdf"),
        "{meta}"
    );
    blobs.delete_prefix("local/").await.unwrap();
    client
        .delete_bucket()
        .bucket(blobs.bucket())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn presign_refuses_what_it_cannot_take() {
    let Some((client, blobs)) = bucket("presign refusals").await else {
        return;
    };
    let api = state_with(Arc::new(blobs.clone()));
    let (status, err) = api
        .presign("huge.pdf", "application/pdf", 100 * 1024 * 1024 + 1)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    assert_eq!(err["error"]["code"], "payload_too_large");
    let (status, err) = api
        .presign("setup.exe", "application/x-msdownload", 10)
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{err}");
    let (status, _) = api.presign("empty.txt", "text/plain", 0).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = api
        .call(
            Method::POST,
            "/api/files/presign",
            Some(json!({"filename": "a.txt", "size": 3, "conversation_id": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .call(
            Method::POST,
            "/api/files/presign",
            Some(json!({"filename": "a.txt"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    client
        .delete_bucket()
        .bucket(blobs.bucket())
        .send()
        .await
        .unwrap();
}

// ---- downloads: a redirect to a presigned GET where storage can sign ----

const ALICE: &str = "Bearer alice-token-0123456789abcdef";
const BOB: &str = "Bearer bob-token-0123456789abcdef0000";
const TOKENS: &str = "alice:alice-token-0123456789abcdef,bob:bob-token-0123456789abcdef0000";

/// `Authorization: <auth>`, unless `auth` is empty (a store without tokens).
fn authorized(req: axum::http::request::Builder, auth: &str) -> axum::http::request::Builder {
    if auth.is_empty() {
        req
    } else {
        req.header("authorization", auth)
    }
}

impl Api {
    async fn send(&self, req: Request<Body>) -> axum::response::Response {
        conversa::api::files::router(self.state.clone())
            .oneshot(req)
            .await
            .unwrap()
    }

    /// Uploads through `POST /api/files` as `auth`; the new file's id.
    async fn upload_as(&self, auth: &str, filename: &str, bytes: &[u8]) -> String {
        let (ct, body) =
            conversa::testing::multipart(&[("file", Some(filename), Some("text/plain"), bytes)]);
        let res = self
            .send(
                authorized(Request::post("/api/files"), auth)
                    .header("content-type", ct)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let meta: Value = serde_json::from_slice(&bytes).unwrap();
        meta["id"].as_str().unwrap().to_owned()
    }

    async fn download_as(&self, auth: &str, id: &str) -> axum::response::Response {
        self.send(
            authorized(Request::get(format!("/api/files/{id}/download")), auth)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }
}

#[tokio::test]
async fn downloads_redirect_to_a_presigned_url_after_the_owner_check() {
    let Some((client, blobs)) = bucket("download redirect").await else {
        return;
    };
    let api = state_with_config(Arc::new(blobs.clone()), &[("CONVERSA_AUTH_TOKENS", TOKENS)]);
    let content = "Quarterly numbers: revenue grew 12%.\n".repeat(400);
    let id = api
        .upload_as(ALICE, "q4 notes.txt", content.as_bytes())
        .await;

    // Another user's file is 404, with no URL to follow.
    let res = api.download_as(BOB, &id).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.headers().get("location").is_none());
    let res = api.download_as(ALICE, "no-such-file").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let res = api.download_as(ALICE, &id).await;
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    assert!(
        location.starts_with(endpoint.trim_end_matches('/')),
        "{location} is on {endpoint}"
    );
    assert!(location.contains("X-Amz-Expires=300"), "{location}");

    // What a browser does with the redirect: a plain GET of the URL, no credentials of ours.
    let got = reqwest::Client::new().get(&location).send().await.unwrap();
    assert_eq!(got.status(), reqwest::StatusCode::OK);
    assert_eq!(
        got.headers()["content-disposition"].to_str().unwrap(),
        "attachment; filename=\"q4 notes.txt\"; filename*=UTF-8''q4%20notes.txt"
    );
    assert_eq!(got.bytes().await.unwrap().as_ref(), content.as_bytes());
    drop_bucket(client, blobs).await;
}

#[tokio::test]
async fn downloads_under_the_redirect_threshold_are_served_directly() {
    let Some((client, blobs)) = bucket("download threshold").await else {
        return;
    };
    let api = state_with_config(
        Arc::new(blobs.clone()),
        &[("CONVERSA_DOWNLOAD_REDIRECT_BYTES", "1000")],
    );
    let small = api.upload_as("", "small.txt", b"just a few bytes").await;
    let res = api.download_as("", &small).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"small.txt\""));
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), b"just a few bytes");

    let large = api
        .upload_as("", "large.txt", "0123456789".repeat(100).as_bytes())
        .await;
    let res = api.download_as("", &large).await;
    assert_eq!(
        res.status(),
        StatusCode::FOUND,
        "1,000 bytes reach the threshold"
    );
    drop_bucket(client, blobs).await;
}

#[tokio::test]
async fn local_disk_downloads_carry_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = conversa::blobs::local::LocalBlobs::new(dir.path()).unwrap();
    let api = state_with_config(Arc::new(blobs), &[("CONVERSA_AUTH_TOKENS", TOKENS)]);
    let content = "Quarterly numbers.\n".repeat(100);
    let id = api
        .upload_as(ALICE, "q4 notes.txt", content.as_bytes())
        .await;
    let res = api.download_as(BOB, &id).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = api.download_as(ALICE, &id).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("location").is_none());
    assert_eq!(
        res.headers()["content-disposition"],
        "attachment; filename=\"q4 notes.txt\"; filename*=UTF-8''q4%20notes.txt"
    );
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), content.as_bytes());
}

#[tokio::test]
async fn local_disk_cannot_presign() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = conversa::blobs::local::LocalBlobs::new(dir.path()).unwrap();
    let api = state_with(Arc::new(blobs));
    let (status, err) = api.presign("a.txt", "text/plain", 3).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("use POST /api/files"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_bucket_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let err = common::build(&[
        ("CONVERSA_BLOBS", "s3"),
        ("CONVERSA_DATA_DIR", dir.path().to_str().unwrap()),
    ])
    .await
    .err()
    .unwrap();
    assert_eq!(err, "CONVERSA_S3_BUCKET: required when CONVERSA_BLOBS=s3");
}
