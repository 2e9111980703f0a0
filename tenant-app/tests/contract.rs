//! The API's contract: schemathesis (installed by `make setup` into `.tools/schemathesis`)
//! generates requests, valid and invalid, from the storefront's own `/openapi.json` and checks
//! every answer against it (`--checks all`): no 5xx, only the statuses, headers and bodies the
//! document lists, invalid input refused, valid input accepted.

mod common;

use std::path::Path;

use common::{postgres, DealFile, Storefront};
use timedeal_testkit::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_its_openapi_document_says() {
    let program =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/schemathesis/bin/schemathesis");
    assert!(
        program.exists(),
        "schemathesis is missing at {}: run `make setup`",
        program.display()
    );
    let redis = RedisServer::start().unwrap();
    let shop = Storefront::start(&redis, &postgres().url(), &DealFile::live("contract"), &[]);
    let report = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(&program)
        .arg("run")
        .arg(format!("{}/openapi.json", shop.url()))
        .args([
            "--checks",
            "all",
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--no-color",
        ])
        .args(["--generation-database", "none", "--request-timeout", "10"])
        .arg("--report-dir")
        .arg(report.path())
        // Schemathesis keeps a cache where it runs: not in the repository.
        .current_dir(report.path())
        .output()
        .await
        .expect("run schemathesis");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found the API off its contract:\n{text}"
    );
}

/// "Remind me" on the storefront: a calendar entry a parser reads, with alarms 12 hours and 1
/// hour before the start, leading back to the address the shopper came by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storefront_gives_a_calendar_entry_with_two_reminders() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        starts_in: 3600,
        ..DealFile::live("reminded")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    let page = common::get_text(&shop.url()).await;
    assert!(
        page.contains("href=\"/reminder.ics\""),
        "the page offers it"
    );
    let response = reqwest::get(format!("{}/reminder.ics", shop.url()))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/calendar; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let event = timedeal_testkit::ics::event(&text);
    assert_eq!(event.properties["URL"], format!("{}/", shop.url()));
    assert_eq!(event.triggers, ["-PT12H", "-PT1H"]);
}
