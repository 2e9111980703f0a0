//! The pieces `timedeal-operator run` wires together that can be checked without a cluster:
//! leader election over a Lease in the in-memory API, and the health and metrics endpoints.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use kube_fake_client::ClientBuilder;
use serde_json::json;
use timedeal_operator::{leader::Leadership, metrics::Metrics, run::ops_router};

const TTL: Duration = Duration::from_secs(3);

#[tokio::test]
async fn only_one_replica_leads_and_a_replica_that_loses_the_lease_stops() {
    let client = ClientBuilder::new().build().await.unwrap();
    let a = Leadership::new(
        client.clone(),
        "timedeal-system",
        "timedeal-operator",
        "a",
        TTL,
    );
    let b = Leadership::new(
        client.clone(),
        "timedeal-system",
        "timedeal-operator",
        "b",
        TTL,
    );
    assert!(
        a.try_acquire().await,
        "the first replica takes the free Lease"
    );
    assert!(!b.try_acquire().await, "the second waits while it is held");
    assert!(a.try_acquire().await, "the holder renews");

    // While `a` renews, `b` cannot take over.
    let holding = tokio::spawn(async move {
        a.hold().await;
    });
    tokio::time::sleep(TTL + Duration::from_secs(1)).await;
    assert!(!b.try_acquire().await);
    assert!(!holding.is_finished());

    // Someone else takes the Lease (as after a network partition): `a` notices and stops.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "timedeal-system");
    leases
        .patch(
            "timedeal-operator",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "holderIdentity": "c",
                "renewTime": k8s_openapi::jiff::Timestamp::now().to_string(),
            }})),
        )
        .await
        .unwrap();
    tokio::time::timeout(TTL * 2, holding)
        .await
        .expect("the replica that lost the Lease stops holding")
        .unwrap();

    // `c` never renews; once its Lease expires, the standby takes over.
    tokio::time::timeout(TTL * 4, b.acquire())
        .await
        .expect("the standby takes the expired Lease");
    let lease = leases.get("timedeal-operator").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("b"));
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let metrics = Arc::new(Metrics::new());
    metrics.reconciles.inc();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, ops_router(metrics)).await.unwrap() });

    for path in ["/healthz", "/readyz"] {
        let response = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    assert!(
        text.contains("timedeal_operator_reconciles_total 1"),
        "{text}"
    );
    assert!(text.contains("timedeal_operator_leader 0"), "{text}");
    assert!(text.contains("# EOF"), "{text}");
}
