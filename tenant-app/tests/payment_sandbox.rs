//! The payment sandbox on its own (`tenant-app payment-sandbox --listen ADDR`), spoken to by the
//! storefront's own HTTP provider: one payment per purchase key, the same key with another
//! amount refused, capture, reversal, lookup, and its modes switched over HTTP.

use std::{ffi::OsString, path::Path};

use timedeal_tenant_app::payments::{
    http::HttpProvider, Authorisation, PaymentError, PaymentProvider, Refund, State,
};
use timedeal_testkit::Service;

fn ask(key: &str, amount: i64) -> Authorisation {
    Authorisation {
        key: key.into(),
        order_id: 1_000_000_001,
        amount,
        currency: "EUR".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_sandbox_keeps_one_payment_per_purchase() {
    let binary = Path::new(env!("CARGO_BIN_EXE_tenant-app"));
    let sandbox = Service::start(binary, &[OsString::from("payment-sandbox")], &[]).unwrap();
    let provider = HttpProvider::new(&sandbox.url(), "deal_a");

    let reference = provider.authorise(&ask("p1", 500)).await.unwrap();
    assert_eq!(
        provider.authorise(&ask("p1", 500)).await.unwrap(),
        reference
    );
    assert!(matches!(
        provider.authorise(&ask("p1", 900)).await,
        Err(PaymentError::Declined(_))
    ));
    assert_eq!(
        provider.lookup("p1").await.unwrap().unwrap().state,
        State::Authorised
    );
    provider.capture("p1").await.unwrap();
    assert_eq!(
        provider.lookup("p1").await.unwrap().unwrap().state,
        State::Captured
    );
    assert!(provider.lookup("nobody").await.unwrap().is_none());
    let refund = provider.reverse("p1").await.unwrap();
    assert!(matches!(refund, Refund::Refunded(_)), "{refund:?}");
    assert_eq!(provider.reverse("p1").await.unwrap(), refund);
    assert_eq!(
        provider.authorise(&ask("p1", 500)).await,
        Err(PaymentError::Spent)
    );

    provider.authorise(&ask("p2", 500)).await.unwrap();
    assert_eq!(provider.reverse("p2").await.unwrap(), Refund::Voided);
    let listing = provider.charges().await.unwrap();
    assert_eq!(listing.charges.len(), 2);
    assert!((chrono::Utc::now() - listing.now).num_seconds().abs() < 5);
    assert!(HttpProvider::new(&sandbox.url(), "deal_b")
        .charges()
        .await
        .unwrap()
        .charges
        .is_empty());

    let client = reqwest::Client::new();
    let mode = format!("{}/v1/mode", sandbox.url());
    let set = client.put(&mode).json(&"decline").send().await.unwrap();
    assert_eq!(set.status(), 204);
    assert_eq!(
        client
            .get(&mode)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "\"decline\""
    );
    assert!(matches!(
        provider.authorise(&ask("p3", 500)).await,
        Err(PaymentError::Declined(_))
    ));
    let refused = client.put(&mode).json(&"sideways").send().await.unwrap();
    assert_eq!(refused.status(), 422, "an unknown mode is refused");
}
