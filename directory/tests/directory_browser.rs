//! The directory in a real headless Chromium: the listing with its countdowns, a category
//! chosen and a search typed, and the calendar reminder offered. Screenshots go to
//! `$TIMEDEAL_SCREENSHOTS` (default `target/screenshots`).

use std::{ffi::OsString, path::Path, time::Duration};

use chrono::{SecondsFormat, Utc};
use fantoccini::Locator;
use timedeal_testkit::{
    browser::{click, shot, wait_text, ChromeDriver},
    Service,
};

fn deal(name: &str, product: &str, category: &str, starts_in: i64) -> String {
    let start = Utc::now() + chrono::Duration::seconds(starts_in);
    let end = start + chrono::Duration::hours(1);
    let ts = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    format!(
        r#"apiVersion: timedeal.dev/v1alpha1
kind: TimeDeal
metadata: {{ name: {name}, namespace: shops }}
spec:
  company: {{ name: ACME, contactEmail: sales@acme.example }}
  approved: true
  product: {{ name: "{product}", listPrice: 29900, dealPrice: 9900, stock: 100, category: {category} }}
  schedule: {{ start: "{start}", end: "{end}" }}
  ingress: {{ host: {name}.deals.example.com }}
"#,
        start = ts(start),
        end = ts(end),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_finds_a_deal_and_takes_a_reminder_in_chromium() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("deals.yaml"),
        [
            deal("headphones", "NC-700 headphones", "audio", -120),
            deal("speaker", "Boom speaker", "audio", 5400),
            deal("kettle", "Steel kettle", "kitchen", 3 * 3600),
        ]
        .join("---\n"),
    )
    .unwrap();
    let directory = Service::start(
        Path::new(env!("CARGO_BIN_EXE_timedeal-directory")),
        &[
            OsString::from("--deals"),
            folder.path().as_os_str().to_owned(),
        ],
        &[],
    )
    .unwrap();
    let driver = ChromeDriver::start();
    let client = driver.browser(430, 1100).await;
    let run = async {
        client.goto(&directory.url()).await.unwrap();
        let listed = wait_text(&client, "deals", Duration::from_secs(5), |t| {
            t.contains("Ends in 00:5") && t.contains("Starts in 01:2")
        })
        .await;
        assert!(listed.contains("Steel kettle"), "{listed}");
        shot(&client, "directory-1-all.png").await;

        click(&client, Locator::Css("#category option[value='audio']")).await;
        let search = client.find(Locator::Id("q")).await.unwrap();
        search.send_keys("speaker").await.unwrap();
        click(&client, Locator::Css("#filters button")).await;
        let found = wait_text(&client, "deals", Duration::from_secs(5), |t| {
            !t.contains("Steel kettle")
        })
        .await;
        assert!(
            found.contains("Boom speaker") && !found.contains("NC-700"),
            "{found}"
        );
        let url = client.current_url().await.unwrap();
        assert!(url.query().unwrap().contains("category=audio"), "{url}");
        let reminder = client
            .find(Locator::Css("a.reminder"))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap();
        assert_eq!(
            reminder.as_deref(),
            Some("/deals/shops/speaker/reminder.ics")
        );
        shot(&client, "directory-2-found.png").await;
    };
    run.await;
    client.close().await.unwrap();
}
