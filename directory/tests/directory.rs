//! The directory as shoppers and their browsers reach it: the `timedeal-directory` binary over
//! a folder of deal files, listing by state, day, category and search, answering `304` to a
//! current ETag, and giving calendar entries that a calendar parser reads.

use std::{ffi::OsString, path::Path, time::Duration};

use chrono::{SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use timedeal_testkit::Service;

/// A deal file starting `starts_in` seconds from now.
fn deal(name: &str, category: &str, fulfilment: &str, starts_in: i64, price: i64) -> String {
    let start = Utc::now() + chrono::Duration::seconds(starts_in);
    let end = start + chrono::Duration::hours(1);
    let ts = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    format!(
        r#"apiVersion: timedeal.dev/v1alpha1
kind: TimeDeal
metadata:
  name: {name}
  namespace: shops
  annotations:
    timedeal.dev/storefront-url: http://127.0.0.1:9/{name}/
spec:
  company: {{ name: Bean There, contactEmail: hello@beanthere.example }}
  approved: true
  product:
    name: "{name}, the deal"
    description: Freshly roasted, delivered in a day.
    listPrice: 19900
    dealPrice: {price}
    stock: 100
    category: {category}
    fulfilment: {fulfilment}
  schedule: {{ start: "{start}", end: "{end}" }}
  ingress: {{ host: {name}.deals.example.com }}
"#,
        start = ts(start),
        end = ts(end),
    )
}

fn write_deals(folder: &Path) {
    std::fs::write(
        folder.join("deals.yaml"),
        [
            deal("espresso", "food-drink", "coupon", -60, 0),
            deal("grinder", "kitchen", "shipping", 3 * 3600, 9900),
            deal("kettle", "kitchen", "pickup", 9 * 24 * 3600, 4900),
        ]
        .join("---\n"),
    )
    .unwrap();
    // A broken file is left out; the others are listed.
    std::fs::write(folder.join("broken.yaml"), "kind: TimeDeal\nspec: {}\n").unwrap();
}

fn start(folder: &Path) -> Service {
    Service::start(
        Path::new(env!("CARGO_BIN_EXE_timedeal-directory")),
        &[OsString::from("--deals"), folder.as_os_str().to_owned()],
        &[],
    )
    .expect("start the directory")
}

async fn listing(service: &Service, query: &str) -> (StatusCode, Value) {
    let response = reqwest::get(format!("{}/api/deals{query}", service.url()))
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

fn ids(listing: &Value) -> Vec<String> {
    listing["deals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["id"]
                .as_str()
                .unwrap()
                .trim_start_matches("shops/")
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_lists_by_state_day_category_and_search() {
    let folder = tempfile::tempdir().unwrap();
    write_deals(folder.path());
    let directory = start(folder.path());

    let (code, all) = listing(&directory, "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(ids(&all), ["espresso", "grinder", "kettle"]);
    assert_eq!(all["deals"][0]["state"], "live");
    assert_eq!(all["deals"][0]["fulfilment"], "coupon");
    assert_eq!(
        all["deals"][0]["storefrontUrl"],
        "http://127.0.0.1:9/espresso/"
    );
    assert_eq!(
        all["categories"],
        serde_json::json!(["food-drink", "kitchen"])
    );

    for (query, expected) in [
        ("?state=live", vec!["espresso"]),
        ("?state=upcoming", vec!["grinder", "kettle"]),
        ("?category=kitchen", vec!["grinder", "kettle"]),
        ("?day=week&category=kitchen", vec!["grinder"]),
        ("?q=KETTLE", vec!["kettle"]),
        ("?q=roasted%20day&state=live", vec!["espresso"]),
        ("?q=nothing-like-it", vec![]),
    ] {
        let (code, found) = listing(&directory, query).await;
        assert_eq!(code, StatusCode::OK, "{query}");
        assert_eq!(ids(&found), expected, "{query}");
    }
    let (code, refused) = listing(&directory, "?day=tomorrow").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(refused["error"]["code"], "invalid_parameter");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("today or week"));

    let page = reqwest::get(format!("{}/?category=kitchen", directory.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("grinder, the deal") && !page.contains("espresso, the deal"));
    assert!(
        page.contains("/deals/shops/grinder/reminder.ics"),
        "upcoming deals offer a reminder"
    );
    assert!(
        page.contains("href=\"http://127.0.0.1:9/grinder/\""),
        "each links to its storefront"
    );

    let openapi: Value = reqwest::get(format!("{}/openapi.json", directory.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(openapi["paths"]["/api/deals"]["get"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_an_etag_and_a_matching_one_gets_304_on_every_replica() {
    let folder = tempfile::tempdir().unwrap();
    write_deals(folder.path());
    let first = start(folder.path());
    let second = start(folder.path());
    let http = reqwest::Client::new();
    for path in [
        "/api/deals?state=upcoming",
        "/",
        "/deals/shops/grinder/reminder.ics",
    ] {
        let response = http
            .get(format!("{}{path}", first.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            response.headers()["cache-control"],
            "public, max-age=5, stale-while-revalidate=30"
        );
        let tag = response.headers()["etag"].to_str().unwrap().to_owned();
        // Another replica holds the same deals, so it gives the same tag.
        let again = http
            .get(format!("{}{path}", second.url()))
            .header("if-none-match", &tag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()["etag"], tag.as_str());
        assert!(again.bytes().await.unwrap().is_empty());
    }

    // An edited deal changes the listing, and its tag.
    let response = http
        .get(format!("{}/api/deals", first.url()))
        .send()
        .await
        .unwrap();
    let before = response.headers()["etag"].to_str().unwrap().to_owned();
    std::fs::write(
        folder.path().join("more.yaml"),
        deal("scale", "kitchen", "shipping", 7200, 2900),
    )
    .unwrap();
    let mut changed = false;
    for _ in 0..50 {
        let response = http
            .get(format!("{}/api/deals", first.url()))
            .header("if-none-match", &before)
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::OK {
            let listing: Value = response.json().await.unwrap();
            assert!(ids(&listing).contains(&"scale".to_owned()));
            changed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(changed, "the new deal was listed within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reminder_is_a_calendar_entry_a_parser_reads() {
    let folder = tempfile::tempdir().unwrap();
    write_deals(folder.path());
    let directory = start(folder.path());
    let response = reqwest::get(format!(
        "{}/deals/shops/grinder/reminder.ics",
        directory.url()
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/calendar; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let event = timedeal_testkit::ics::event(&text);
    assert!(event.properties["SUMMARY"].starts_with("grinder\\, the deal by Bean There"));
    assert_eq!(event.properties["URL"], "http://127.0.0.1:9/grinder/");
    assert!(event.properties["DTSTART"].ends_with('Z'));
    assert_eq!(event.triggers, ["-PT12H", "-PT1H"]);

    let missing = reqwest::get(format!(
        "{}/deals/shops/nothing/reminder.ics",
        directory.url()
    ))
    .await
    .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_security_headers_and_hsts_only_over_https() {
    let folder = tempfile::tempdir().unwrap();
    write_deals(folder.path());
    let directory = start(folder.path());
    let http = reqwest::Client::new();
    for path in [
        "/",
        "/api/deals",
        "/deals/shops/grinder/reminder.ics",
        "/static/directory.js",
        "/openapi.json",
        "/no-such-page",
    ] {
        for https in [false, true] {
            let mut request = http.get(format!("{}{path}", directory.url()));
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
