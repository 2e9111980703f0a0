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
