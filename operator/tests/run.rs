//! The pieces `timedeal-operator run` wires together that can be checked without a cluster: the
//! health and metrics endpoints (leader election is in `leader.rs`).

use std::sync::Arc;

use timedeal_operator::{metrics::Metrics, run::ops_router};

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
