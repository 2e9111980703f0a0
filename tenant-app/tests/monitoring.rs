//! The chart's dashboard and alerts against a real Prometheus (Debian's `prometheus`, installed by
//! `make setup`) on loopback, scraping two storefront replicas through a short storm, labelled as
//! the chart's PodMonitor labels them: every dashboard query and every alert expression
//! evaluates, Prometheus loads every rule, and the storefront panels show data.

mod common;

use std::{path::PathBuf, process::Command, time::Duration};

use common::{admitted, client, eventually, postgres, DealFile, Storefront};
use reqwest::StatusCode;
use serde_json::Value;
use timedeal_testkit::RedisServer;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The chart's PrometheusRule spec and dashboard, as `helm template` renders them.
fn chart() -> (Value, Value) {
    let output = Command::new(repo().join(".tools/bin/helm"))
        .args(["template", "timedeal"])
        .arg(repo().join("charts/timedeal-operator"))
        .args(["--set", "metrics.prometheusRule.enabled=true"])
        .args(["--set", "metrics.grafanaDashboard.enabled=true"])
        .args(["--set", "metrics.serviceMonitor.enabled=true"])
        .args(["--set", "dealDefaults.metricsNamespace=monitoring"])
        .output()
        .expect("helm runs: run `make setup`, which installs it into .tools/bin");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let mut rules = Value::Null;
    let mut dashboard = Value::Null;
    for document in serde_yaml::Deserializer::from_str(&text) {
        let object: Value = serde::Deserialize::deserialize(document).unwrap();
        match object["kind"].as_str() {
            Some("PrometheusRule") => rules = object["spec"].clone(),
            Some("ConfigMap") if object["data"]["timedeal.json"].is_string() => {
                dashboard = serde_json::from_str(object["data"]["timedeal.json"].as_str().unwrap())
                    .unwrap();
            }
            _ => {}
        }
    }
    assert!(rules.is_object() && dashboard.is_object());
    (rules, dashboard)
}

/// Every `expr` in the dashboard's panels.
fn panel_queries(dashboard: &Value, out: &mut Vec<String>) {
    match dashboard {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => panel_queries(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| panel_queries(v, out)),
        _ => {}
    }
}

/// Grafana's variables at "All", as the dashboard opens.
fn with_all(expr: &str) -> String {
    expr.replace("$namespace", ".*").replace("$deal", ".*")
}

struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prometheus on a free loopback port, scraping `targets` (`(host:port, pod)`) every second
/// with the labels the PodMonitor gives, and evaluating `rules` every second.
fn prometheus(targets: &[(String, &str)], rules: &Value) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_json::to_string(rules).unwrap(),
    )
    .unwrap();
    let static_configs: Vec<Value> = targets
        .iter()
        .map(|(address, pod)| {
            serde_json::json!({"targets": [address],
                "labels": {"namespace": "acme", "deal": "monitoring", "pod": pod}})
        })
        .collect();
    let config = serde_json::json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yaml"],
        "scrape_configs": [{"job_name": "storefronts", "static_configs": static_configs}],
    });
    std::fs::write(
        dir.path().join("prometheus.yml"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus runs: run `make setup`, which installs Debian's prometheus");
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

async fn query(prometheus: &Prometheus, expr: &str) -> Value {
    let response = client()
        .get(format!("{}/api/v1/query", prometheus.url))
        .query(&[("query", expr)])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{expr}: {body}");
    assert_eq!(body["status"], "success", "{expr}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alerts_read_two_storefronts_through_a_storm() {
    let (rules, dashboard) = chart();
    let redis = RedisServer::start().unwrap();
    let deal = DealFile::live("monitoring");
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    let replica = shop.replica(&redis, &[]);
    let address = |url: String| url.trim_start_matches("http://").to_owned();
    let prometheus = prometheus(
        &[(address(shop.url()), "a"), (address(replica.url()), "b")],
        &rules,
    );
    eventually("Prometheus ready", Duration::from_secs(30), || async {
        client()
            .get(format!("{}/-/ready", prometheus.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    eventually("both targets up", Duration::from_secs(30), || async {
        let body = query(&prometheus, "sum(up)").await;
        body["data"]["result"][0]["value"][1] == "2"
    })
    .await;

    // A short storm: shoppers on both replicas join, are admitted and buy.
    let mut bought = 0;
    for i in 0..8 {
        let shop = if i % 2 == 0 { &shop } else { &replica };
        let (shopper, token) = admitted(shop).await;
        let (code, answer) = shopper.order(1, &format!("storm-{i}"), &token).await;
        assert!(code.is_success(), "{answer}");
        bought += 1;
    }
    assert_eq!(bought, 8);
    eventually("the orders scraped", Duration::from_secs(30), || async {
        let body = query(
            &prometheus,
            "sum(timedeal_orders_total{outcome=\"confirmed\"})",
        )
        .await;
        body["data"]["result"][0]["value"][1] == "8"
    })
    .await;
    // Two more scrapes, so every rate has its points.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Every dashboard query evaluates; the storefront's panels show the storm.
    let mut queries = Vec::new();
    panel_queries(&dashboard["panels"], &mut queries);
    assert!(queries.len() >= 10, "{queries:?}");
    for expr in &queries {
        let body = query(&prometheus, &with_all(expr)).await;
        let storefront_only = !expr.contains("timedeal_operator_") && !expr.contains("5..");
        if storefront_only {
            assert!(
                !body["data"]["result"].as_array().unwrap().is_empty(),
                "no data for {expr}"
            );
        }
    }
    // The dashboard's variables list the deal's namespace and name.
    for (label, selector) in [
        ("namespace", "timedeal_queue_waiting"),
        ("deal", "timedeal_queue_waiting"),
    ] {
        let body = query(&prometheus, &format!("count by ({label}) ({selector})")).await;
        assert!(
            !body["data"]["result"].as_array().unwrap().is_empty(),
            "no {label} values"
        );
    }

    // Every alert expression evaluates, and Prometheus loaded and ran every rule.
    let alerts = rules["groups"][0]["rules"].as_array().unwrap();
    for alert in alerts {
        query(&prometheus, alert["expr"].as_str().unwrap()).await;
    }
    eventually("every rule evaluated", Duration::from_secs(20), || async {
        let body: Value = client()
            .get(format!("{}/api/v1/rules", prometheus.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let loaded = body["data"]["groups"][0]["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        loaded.len() == alerts.len() && loaded.iter().all(|r| r["health"] == "ok")
    })
    .await;
    // The operator is not scraped here, so Prometheus sees no leader at all: that alert is
    // pending (a cluster scrapes it through the ServiceMonitor).
    let body = query(
        &prometheus,
        "ALERTS{alertname=\"TimedealOperatorNotLeading\"}",
    )
    .await;
    assert!(
        !body["data"]["result"].as_array().unwrap().is_empty(),
        "{body}"
    );
}
