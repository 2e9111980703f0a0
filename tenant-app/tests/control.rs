//! The operator's push of a new version of the deal (`/internal/deal`): taken by the replica at
//! once, never older than what it serves, and guarded by the control key.

mod common;

use std::time::Duration;

use common::{client, postgres, DealFile, Storefront};
use reqwest::StatusCode;
use serde_json::Value;
use timedeal_testkit::RedisServer;

const KEY: &str = "control-key-for-tests-0123456789abcdef";

/// The deal document as the operator writes it, with a revision.
fn document(deal: &DealFile, revision: i64) -> String {
    deal.yaml().replacen(
        "metadata:\n",
        &format!("metadata:\n  annotations:\n    timedeal.dev/revision: \"{revision}\"\n"),
        1,
    )
}

async fn push(base: &str, key: &str, body: String) -> (StatusCode, Value) {
    let response = client()
        .put(format!("{base}/internal/deal"))
        .bearer_auth(key)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn state(base: &str) -> String {
    let stats = common::get_json(&format!("{base}/internal/stats")).await;
    stats["state"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_suspension_is_served_at_once_and_never_undone_by_an_older_copy() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile::live("pushed");
    let store = Storefront::start(&redis, &postgres().url(), &deal, &["--control-key", KEY]);
    let base = store.url();
    assert_eq!(state(&base).await, "live");

    // What it serves, for the operator to compare; only with the key.
    let anonymous = client()
        .get(format!("{base}/internal/deal"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = push(&base, "wrong-key", document(&deal, 1)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(state(&base).await, "live", "nothing changed");

    // Revision 3 suspends the deal: served on the answer, not a second later.
    let suspended = DealFile {
        suspend: true,
        ..deal.clone()
    };
    let (status, body) = push(&base, KEY, document(&suspended, 3)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revision"], 3);
    assert_eq!(body["suspended"], true);
    assert_eq!(state(&base).await, "suspended");

    // An older revision is refused, pushed or from a late copy of the file.
    let (status, body) = push(&base, KEY, document(&deal, 2)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "older_revision");
    std::fs::write(&store.deal_path, document(&deal, 2)).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        state(&base).await,
        "suspended",
        "the file's revision 2 is older"
    );

    // Another deal's document, or an invalid one, changes nothing either.
    let other = DealFile::live("someone-else");
    let (status, body) = push(&base, KEY, document(&other, 9)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("other_deal"))
    );
    let (status, body) = push(&base, KEY, "kind: nonsense".into()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not a valid TimeDeal"));

    // Revision 4 resumes it.
    let (status, body) = push(&base, KEY, document(&deal, 4)).await;
    assert_eq!(
        (status, body["suspended"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    assert_eq!(state(&base).await, "live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_control_key_pushes_are_off() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile::live("unpushed");
    let store = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    let (status, body) = push(&store.url(), KEY, document(&deal, 1)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("control key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_carries_the_security_headers_and_hsts_only_over_https() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile::live("headers");
    let store = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    let base = store.url();
    for path in [
        "/",
        "/reminder.ics",
        "/reminders/unsubscribe?token=0123456789abcdef0123456789abcdef",
        "/api/deal",
        "/api/queue/status",
        "/static/app.js",
        "/static/pow.js",
        "/static/app.css",
        "/openapi.json",
        "/no-such-page",
    ] {
        for https in [false, true] {
            let mut request = client().get(format!("{base}{path}"));
            if https {
                // As the ingress says when it terminated TLS.
                request = request.header("x-forwarded-proto", "https");
            }
            let response = request.send().await.unwrap();
            if let Some(problem) = timedeal_testkit::headers::problem(response.headers(), https) {
                panic!("{path} (https: {https}): {problem}");
            }
        }
    }
}
