//! Bad input gets a clear JSON error with a stable code and changes nothing; bad configuration
//! stops start-up with a message naming the setting; and the operational endpoints answer.

mod common;

use std::{process::Command, time::Duration};

use common::{binary, client, eventually, postgres, DealFile, Shopper, Storefront, SECRET};
use reqwest::StatusCode;
use serde_json::{json, Value};
use timedeal_testkit::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let redis = RedisServer::start().unwrap();
    let shop = Storefront::start(&redis, &postgres().url(), &DealFile::live("bad-input"), &[]);
    let client = client();
    let shopper = Shopper::new(&client, &shop.url());
    shopper.join().await;
    let token = shopper
        .wait_for_turn(Duration::from_secs(10))
        .await
        .unwrap();
    let session = shopper.session().unwrap();
    let post = |body: reqwest::Body, content_type: &'static str| {
        client
            .post(format!("{}/api/orders", shop.url()))
            .header("x-timedeal-session", &session)
            .header("content-type", content_type)
            .body(body)
    };
    let expect = |code: StatusCode, error: &'static str| {
        move |(status, body): (StatusCode, Value)| {
            assert_eq!(status, code, "{body}");
            assert_eq!(body["error"]["code"], error, "{body}");
            assert!(!body["error"]["message"].as_str().unwrap().is_empty());
        }
    };
    async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }

    expect(StatusCode::BAD_REQUEST, "invalid_json")(
        answer(post("{\"quantity\": 1,".into(), "application/json")).await,
    );
    expect(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")(
        answer(post(
            "quantity=1".into(),
            "application/x-www-form-urlencoded",
        ))
        .await,
    );
    // The storefront answers 413 as soon as the body passes the limit and closes the
    // connection; a client still sending may see the close before the answer, so such an
    // attempt is made again (every answer that does arrive must be the 413).
    let mut too_large = None;
    for _ in 0..5 {
        let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(64 * 1024));
        // A client of its own, with no pool: the connection the storefront closes must not be
        // handed to the next request.
        let once = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let request = once
            .post(format!("{}/api/orders", shop.url()))
            .header("x-timedeal-session", &session)
            .header("content-type", "application/json")
            .body(big);
        match request.send().await {
            Ok(response) => {
                too_large = Some((response.status(), response.json().await.unwrap()));
                break;
            }
            Err(error) if error.is_request() => continue,
            Err(error) => panic!("{error}"),
        }
    }
    expect(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")(
        too_large.expect("an answer to an oversized body"),
    );
    let order = |body: Value| post(body.to_string().into(), "application/json");
    for quantity in [json!(-1), json!(0), json!(3), json!(i64::MAX)] {
        expect(StatusCode::BAD_REQUEST, "invalid_quantity")(
            answer(order(
                json!({"quantity": quantity, "idempotencyKey": "k", "admissionToken": token}),
            ))
            .await,
        );
    }
    for quantity in [json!(1e30), json!("two"), json!(1.5), Value::Null] {
        expect(StatusCode::BAD_REQUEST, "invalid_body")(
            answer(order(
                json!({"quantity": quantity, "idempotencyKey": "k", "admissionToken": token}),
            ))
            .await,
        );
    }
    expect(StatusCode::BAD_REQUEST, "invalid_body")(
        answer(order(
            json!({"quantity": 1, "idempotencyKey": "k", "admissionToken": token, "price": 1}),
        ))
        .await,
    );
    expect(StatusCode::BAD_REQUEST, "invalid_body")(answer(order(json!({"quantity": 1}))).await);
    expect(StatusCode::BAD_REQUEST, "invalid_idempotency_key")(
        answer(order(
            json!({"quantity": 1, "idempotencyKey": "no spaces", "admissionToken": token}),
        ))
        .await,
    );

    let get = |path: &str| {
        client
            .get(format!("{}{path}", shop.url()))
            .header("x-timedeal-session", &session)
    };
    expect(StatusCode::NOT_FOUND, "not_found")(answer(get("/api/orders/424242")).await);
    expect(StatusCode::BAD_REQUEST, "invalid_order_id")(answer(get("/api/orders/abc")).await);
    expect(StatusCode::BAD_REQUEST, "invalid_order_id")(answer(get("/api/orders/-4")).await);
    expect(StatusCode::NOT_FOUND, "not_found")(
        answer(
            client
                .post(format!("{}/api/orders/999/cancel", shop.url()))
                .header("x-timedeal-session", &session),
        )
        .await,
    );
    expect(StatusCode::NOT_FOUND, "not_found")(answer(get("/api/nothing-here")).await);

    // Nothing changed.
    let stats = shop.stats().await;
    assert_eq!(stats["stock"]["remaining"], 100, "{stats}");
    assert_eq!(stats["stock"]["reserved"], 0, "{stats}");
    assert_eq!(shop.count_orders("confirmed").await, 0);
    assert!(shopper.orders().await.is_empty());

    // The refusals are counted by code.
    let metrics = common::get_text(&format!("{}/metrics", shop.url())).await;
    assert!(
        metrics.contains("timedeal_rejections_total{reason=\"invalid_quantity\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("timedeal_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains("timedeal_stock_remaining 100"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_or_ended_deal_takes_no_one_and_no_orders() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile::live("pausing");
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    let client = client();
    let shopper = Shopper::new(&client, &shop.url());
    shopper.join().await;
    let token = shopper
        .wait_for_turn(Duration::from_secs(10))
        .await
        .unwrap();

    shop.rewrite(&DealFile {
        suspend: true,
        ..deal.clone()
    });
    eventually(
        "the suspension to apply",
        Duration::from_secs(5),
        || async { shopper.status().await["deal"] == "suspended" },
    )
    .await;
    let (code, answer) = shopper.order(1, "while-paused", &token).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(answer["error"]["code"], "deal_suspended");
    let newcomer = Shopper::new(&client, &shop.url());
    let (code, answer) = newcomer.join().await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(answer["error"]["code"], "deal_suspended");

    // Ended: read-only.
    shop.rewrite(&DealFile {
        starts_in: -7200,
        lasts: 3600,
        ..deal.clone()
    });
    eventually("the end to apply", Duration::from_secs(5), || async {
        shopper.status().await["deal"] == "ended"
    })
    .await;
    let (_, answer) = shopper.order(1, "after-the-end", &token).await;
    assert_eq!(answer["error"]["code"], "deal_ended");
    assert!(shopper.orders().await.is_empty());

    // A broken edit is ignored: the last good spec stays.
    std::fs::write(&shop.deal_path, "spec: [").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(shopper.status().await["deal"], "ended");
    assert!(shop.service.log().contains("keeping the last good spec"));
    assert_eq!(shop.count_orders("confirmed").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operational_endpoints_answer() {
    let redis = RedisServer::start().unwrap();
    let shop = Storefront::start(&redis, &postgres().url(), &DealFile::live("ops"), &[]);
    let get = |path: &'static str| {
        let url = format!("{}{path}", shop.url());
        async move { reqwest::get(url).await.unwrap() }
    };
    assert_eq!(get("/healthz").await.status(), StatusCode::OK);
    let ready: Value = get("/readyz").await.json().await.unwrap();
    assert_eq!(ready, json!({"redis": "ok", "postgres": "ok"}));
    let stats = shop.stats().await;
    assert_eq!(stats["deal"], "ops");
    assert_eq!(stats["state"], "live");
    assert_eq!(
        stats["stock"],
        json!({"remaining": 100, "sold": 0, "reserved": 0})
    );
    assert_eq!(stats["orders"], json!({"confirmed": 0, "cancelled": 0}));

    let openapi: Value = get("/openapi.json").await.json().await.unwrap();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/deal",
        "/api/queue",
        "/api/orders",
        "/api/orders/{id}",
        "/api/orders/{id}/cancel",
        "/api/events",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} is not documented"
        );
    }
    for schema in [
        "QueueStatus",
        "Order",
        "PlaceOrder",
        "ErrorBody",
        "DealView",
    ] {
        assert!(
            openapi["components"]["schemas"][schema].is_object(),
            "{schema} is not documented"
        );
    }

    let page = get("/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("td_session="));
    assert!(!page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Secure"));
    let html = page.text().await.unwrap();
    assert!(html.contains("ACME NC-700 headphones"));
    let behind_tls = reqwest::Client::new()
        .get(format!("{}/", shop.url()))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(behind_tls.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .ends_with("; Secure"));
    assert!(html.contains("99.00 USD"));
    assert!(html.contains("Live now"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_over_its_rate_limit_is_slowed_down() {
    let redis = RedisServer::start().unwrap();
    let shop = Storefront::start(
        &redis,
        &postgres().url(),
        &DealFile::live("rate-limited"),
        &["--rate-limit-per-second", "1", "--rate-limit-burst", "3"],
    );
    let client = client();
    let mut codes = Vec::new();
    for _ in 0..6 {
        let response = client
            .get(format!("{}/api/deal", shop.url()))
            .send()
            .await
            .unwrap();
        codes.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
        }
    }
    assert_eq!(&codes[..3], &[StatusCode::OK; 3]);
    assert!(
        codes[3..].contains(&StatusCode::TOO_MANY_REQUESTS),
        "{codes:?}"
    );
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new(binary())
        .args(args)
        .env_remove("TIMEDEAL_POSTGRES_URL")
        .env_remove("TIMEDEAL_SIGNING_SECRET")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_stops_start_up_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let deal = dir.path().join("deal.yaml");
    std::fs::write(&deal, DealFile::live("config").yaml()).unwrap();
    let deal = deal.to_str().unwrap();
    let pg = ("TIMEDEAL_POSTGRES_URL", "postgres://u@127.0.0.1:1/db");
    let secret = ("TIMEDEAL_SIGNING_SECRET", SECRET);
    let short = ("TIMEDEAL_SIGNING_SECRET", "short");
    // Extra flags, environment, exit code, and what the message must say.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], i32, &'a str);
    let cases: &[Case] = &[
        (
            &[],
            &[secret],
            2,
            "--postgres-url (TIMEDEAL_POSTGRES_URL) is required",
        ),
        (&[], &[pg], 2, "a signing secret is required"),
        (
            &[],
            &[pg, short],
            2,
            "the signing secret is 5 characters long",
        ),
        (
            &["--postgres-schema", "Bad-Name"],
            &[pg, secret],
            2,
            "--postgres-schema \"Bad-Name\" is not a plain schema name",
        ),
        (
            &["--payment-failure-rate", "2"],
            &[pg, secret],
            2,
            "--payment-failure-rate 2 must be between 0 and 1",
        ),
        (
            &["--redis-url", "http://x"],
            &[pg, secret],
            2,
            "--redis-url \"http://x\" must start with redis://",
        ),
        // Unreachable stores fail with the reason, not a hang.
        (
            &["--redis-url", "redis://127.0.0.1:1"],
            &[pg, secret],
            1,
            "redis://127.0.0.1:1",
        ),
    ];
    for (flags, envs, expected, message) in cases {
        let mut args = vec!["--deal", deal];
        args.extend_from_slice(flags);
        let (code, err) = run(&args, envs);
        assert_eq!(code, *expected, "{flags:?}: {err}");
        assert!(err.contains(message), "{flags:?}: {err}");
        assert!(
            !err.contains(SECRET) && !err.contains("short"),
            "a secret was echoed: {err}"
        );
    }
    let (code, err) = run(&["--deal", "/nonexistent.yaml"], &[pg, secret]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read the deal file /nonexistent.yaml"),
        "{err}"
    );
}

#[test]
fn help_documents_every_setting() {
    let output = Command::new(binary()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--deal",
        "--listen",
        "--redis-url",
        "--postgres-url",
        "--postgres-schema",
        "--signing-secret",
        "--signing-secret-file",
        "--jwt-key-file",
        "--payment-delay",
        "--payment-failure-rate",
        "--rate-limit-per-second",
        "--rate-limit-burst",
        "--log-format",
        "TIMEDEAL_POSTGRES_URL",
        "TIMEDEAL_SIGNING_SECRET",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}
