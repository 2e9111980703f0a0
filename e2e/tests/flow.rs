//! The whole flow on a real cluster: install the chart, rent a deal that starts a minute later,
//! wait until it is Ready and Live, let shoppers queue and buy through a port-forward, check the
//! figures the operator copies into the status, see the deal in the directory, then delete the
//! deal and see its children go.
//!
//! Needs a cluster reachable through `KUBECONFIG`, `kubectl`, `helm` (`make setup` installs it
//! into `.tools/bin`) and the two images loaded into the cluster, named by
//! `TIMEDEAL_E2E_OPERATOR_IMAGE` and `TIMEDEAL_E2E_TENANT_IMAGE` (`scripts/kind.sh` builds and
//! loads them into kind). It is ignored by a plain `cargo test`; `e2e/cluster.sh` runs it when a
//! cluster answers and both images are named, and says SKIPPED, with the reason, otherwise.
//! See `e2e/README.md` for each step and what it checks.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Output, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use timedeal_e2e::{helm, kubectl, must, repo};

const RELEASE: &str = "timedeal-e2e";
const SYSTEM: &str = "timedeal-e2e-system";
const SHOP: &str = "timedeal-e2e-shop";
const DEAL: &str = "e2e-tea";
const STOCK: i64 = 12;
const SHOPPERS: usize = 20;

/// An image reference split into repository and tag; the repository may hold a registry port.
fn split_image(image: &str) -> Option<(String, String)> {
    match image.rsplit_once(':') {
        Some((repository, tag))
            if !tag.is_empty() && !tag.contains('/') && !repository.is_empty() =>
        {
            Some((repository.into(), tag.into()))
        }
        _ => None,
    }
}

/// The image named by `variable`, as repository and tag.
fn image(variable: &str) -> (String, String) {
    let image = std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} must name an image the cluster can run; scripts/kind.sh builds and loads one")
    });
    split_image(&image).unwrap_or_else(|| {
        panic!(
            "{variable}={image}: give the image with an explicit tag, e.g. timedeal/tenant-app:e2e"
        )
    })
}

/// The local port in `kubectl port-forward`'s first line.
fn forwarded_port(line: &str) -> Option<u16> {
    // "Forwarding from 127.0.0.1:41234 -> 8080"
    line.split("127.0.0.1:")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The name of one running pod of the deal's `component` (storefront or redis).
fn pod_of(component: &str) -> String {
    must(
        kubectl(
            &[
                "-n",
                SHOP,
                "get",
                "pods",
                "-l",
                &format!("timedeal.dev/deal={DEAL},app.kubernetes.io/component={component}"),
                "--field-selector=status.phase=Running",
                "-o",
                "jsonpath={.items[0].metadata.name}",
            ],
            None,
        ),
        "finding a pod",
    )
}

/// Asks the API server to evict a pod, as `kubectl drain` does: refused with 429 when a
/// PodDisruptionBudget forbids it.
fn evict(pod: &str) -> Output {
    let eviction = json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": SHOP},
    });
    kubectl(
        &[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/{SHOP}/pods/{pod}/eviction"),
            "-f",
            "-",
        ],
        Some(&eviction.to_string()),
    )
}

/// `kubectl wait --for=condition=Ready` on the deal, five minutes at most.
fn wait_ready(what: &str) {
    must(
        kubectl(
            &[
                "-n",
                SHOP,
                "wait",
                "--for=condition=Ready",
                &format!("timedeal/{DEAL}"),
                "--timeout=5m",
            ],
            None,
        ),
        what,
    );
}

fn deal_status() -> Value {
    let text = must(
        kubectl(&["-n", SHOP, "get", "timedeal", DEAL, "-o", "json"], None),
        "reading the deal",
    );
    serde_json::from_str::<Value>(&text).unwrap()["status"].clone()
}

/// Polls `check` every 2 s until it gives a value; panics with `what` and the last state after
/// `limit`, printing progress so a slow cluster is visibly waiting rather than hung.
fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let started = Instant::now();
    let mut last_said = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(state) if started.elapsed() > limit => {
                panic!("{what}: not after {limit:?}; last seen: {state}")
            }
            Err(state) => {
                if last_said.elapsed() > Duration::from_secs(15) {
                    eprintln!(
                        "  waiting {}s for {what}: {state}",
                        started.elapsed().as_secs()
                    );
                    last_said = Instant::now();
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    }
}

/// Removes everything the test made, however it ends. The CRD stays (it would delete every
/// deal in the cluster); the release's other objects and both namespaces go.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = kubectl(
            &[
                "-n",
                SHOP,
                "delete",
                "timedeal",
                DEAL,
                "--ignore-not-found",
                "--timeout=60s",
            ],
            None,
        );
        let _ = helm(&[
            "uninstall",
            RELEASE,
            "-n",
            SYSTEM,
            "--wait",
            "--timeout",
            "2m",
        ]);
        // The Company owns its namespace: both go.
        let _ = kubectl(
            &[
                "delete",
                "company",
                "e2e-tea",
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
        let _ = kubectl(
            &[
                "delete",
                "namespace",
                SYSTEM,
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
    }
}

/// `kubectl port-forward` to the storefront's Service on a free local port.
struct PortForward {
    child: Child,
    url: String,
}

impl PortForward {
    fn start(namespace: &str, service: &str) -> Self {
        let mut child = Command::new("kubectl")
            .args([
                "-n",
                namespace,
                "port-forward",
                &format!("svc/{service}"),
                ":80",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kubectl port-forward");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = forwarded_port(&line)
            .unwrap_or_else(|| panic!("unexpected port-forward output: {line:?}"));
        Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One shopper through the JSON API: join, wait to be admitted, order one item. The session and
/// the queue ticket travel in headers, as from an app. Returns whether an order was confirmed.
async fn shop(client: reqwest::Client, base: Arc<String>, index: usize) -> Result<bool, String> {
    let mut session: Option<String> = None;
    let mut ticket: Option<String> = None;
    let mut send = async |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = client.request(method, format!("{base}{path}"));
        if let Some(session) = &session {
            request = request.header("x-timedeal-session", session);
        }
        if let Some(ticket) = &ticket {
            request = request.header("x-timedeal-ticket", ticket);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("shopper {index}: {e}"))?;
        if let Some(value) = response.headers().get("x-timedeal-session") {
            session = Some(value.to_str().unwrap().to_owned());
        }
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if let Some(issued) = body["queueTicket"].as_str() {
            ticket = Some(issued.to_owned());
        }
        Ok::<_, String>((status, body))
    };

    loop {
        let (status, body) = send(reqwest::Method::POST, "/api/queue", None).await?;
        match status.as_u16() {
            200..=299 => break,
            // The pre-queue opens five minutes before the start; the storefront may still be
            // catching up with a deal file written moments ago.
            429 | 503 => tokio::time::sleep(Duration::from_secs(1)).await,
            _ => return Err(format!("shopper {index} could not join: {status} {body}")),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let token = loop {
        let (_, body) = send(reqwest::Method::GET, "/api/queue", None).await?;
        match body["state"].as_str() {
            Some("admitted") => break body["admissionToken"].as_str().unwrap().to_owned(),
            Some("closed") => return Ok(false),
            _ if Instant::now() > deadline => {
                return Err(format!("shopper {index} never admitted: {body}"))
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(
                    body["pollAfterMs"].as_u64().unwrap_or(500).min(1000),
                ))
                .await
            }
        }
    };
    let order =
        json!({"quantity": 1, "idempotencyKey": format!("e2e-{index}"), "admissionToken": token});
    let (status, body) = send(reqwest::Method::POST, "/api/orders", Some(order)).await?;
    match (status.as_u16(), body["error"]["code"].as_str()) {
        (201, _) => Ok(true),
        (_, Some("sold_out" | "insufficient_stock")) => Ok(false),
        _ => Err(format!(
            "shopper {index}: unexpected answer to the order: {status} {body}"
        )),
    }
}

#[test]
#[ignore = "needs a Kubernetes cluster and the images; run e2e/cluster.sh"]
fn a_deal_runs_from_approval_to_deletion_on_a_cluster() {
    let (operator_repository, operator_tag) = image("TIMEDEAL_E2E_OPERATOR_IMAGE");
    let (tenant_repository, tenant_tag) = image("TIMEDEAL_E2E_TENANT_IMAGE");
    let _cleanup = Cleanup;

    eprintln!("1. installing the chart as {RELEASE} in {SYSTEM} (with the trial PostgreSQL)");
    let chart = repo().join("charts/timedeal-operator");
    must(
        helm(&[
            "upgrade",
            "--install",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            SYSTEM,
            "--create-namespace",
            "--set",
            &format!("image.repository={operator_repository}"),
            "--set",
            &format!("image.tag={operator_tag}"),
            "--set",
            &format!("tenantImage.repository={tenant_repository}"),
            "--set",
            &format!("tenantImage.tag={tenant_tag}"),
            "--set",
            "postgres.trial.enabled=true",
            "--set",
            "operator.figuresInterval=5",
            "--wait",
            "--timeout",
            "5m",
        ]),
        "helm install",
    );

    eprintln!("2. renting a deal of {STOCK} items that starts in a minute, approved");
    // The shop is a company: approved, the operator makes its namespace.
    let company = json!({
        "apiVersion": "timedeal.dev/v1alpha1",
        "kind": "Company",
        "metadata": {"name": "e2e-tea"},
        "spec": {
            "displayName": "E2E Tea", "contactEmail": "e2e@tea.example",
            "namespace": SHOP, "approved": true, "hosts": ["tea.e2e.example"]
        }
    });
    must(
        kubectl(&["apply", "-f", "-"], Some(&company.to_string())),
        "applying the Company",
    );
    must(
        kubectl(
            &[
                "wait",
                "--for=condition=Ready",
                "--timeout=60s",
                "company/e2e-tea",
            ],
            None,
        ),
        "waiting for the company's namespace",
    );
    let start = chrono::Utc::now() + chrono::Duration::seconds(60);
    let end = start + chrono::Duration::minutes(15);
    let deal = json!({
        "apiVersion": "timedeal.dev/v1alpha1",
        "kind": "TimeDeal",
        "metadata": {"name": DEAL, "namespace": SHOP},
        "spec": {
            "company": {"name": "E2E Tea", "contactEmail": "e2e@tea.example"},
            "approved": true,
            "product": {
                "name": "Sencha, 100 g", "listPrice": 18000, "dealPrice": 9000,
                "currency": "KRW", "stock": STOCK, "perUserLimit": 1
            },
            "schedule": {"start": start.to_rfc3339(), "end": end.to_rfc3339(), "warmUp": "30s"},
            "queue": {"admissionRate": 20, "preQueueOpens": "5m"},
            "capacity": {
                "minReplicas": 1, "peakReplicas": 2, "maxReplicas": 3,
                "appResources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                "redisResources": {"requests": {"cpu": "50m", "memory": "64Mi"}}
            },
            "ingress": {"host": "tea.e2e.example"}
        }
    });
    must(
        kubectl(&["apply", "-f", "-"], Some(&deal.to_string())),
        "applying the deal",
    );

    eprintln!("3. waiting until the deal is Ready");
    wait_ready("waiting for Ready");
    let status = deal_status();
    assert_eq!(status["url"], "http://tea.e2e.example/", "{status}");

    eprintln!("3b. mid-sale: a drain, and an operator upgrade");
    eventually("the warm-up", Duration::from_secs(120), || {
        let phase = deal_status()["phase"].clone();
        if phase == "WarmingUp" || phase == "Live" {
            Ok(())
        } else {
            Err(phase.to_string())
        }
    });
    let generation = |kind: &str| {
        must(
            kubectl(
                &[
                    "-n",
                    SHOP,
                    "get",
                    kind,
                    "-o",
                    "jsonpath={.metadata.generation}",
                ],
                None,
            ),
            "reading a generation",
        )
    };
    let storefront_generation = generation(&format!("deployment/{DEAL}-storefront"));
    let redis_generation = generation(&format!("statefulset/{DEAL}-redis"));
    // A drain may take a storefront pod (the budget allows a quarter) but not Redis while the
    // deal sells.
    let storefront_pod = pod_of("storefront");
    let evicted = evict(&storefront_pod);
    assert!(
        evicted.status.success(),
        "{}",
        String::from_utf8_lossy(&evicted.stderr)
    );
    let refused = evict(&pod_of("redis"));
    assert!(!refused.status.success(), "Redis was evicted mid-sale");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("disruption budget"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // `helm upgrade` of the operator with new default images: no pod of the live deal restarts;
    // the status says what it will move to after the sale.
    must(
        helm(&[
            "upgrade",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            SYSTEM,
            "--reuse-values",
            "--set",
            "tenantImage.tag=after-the-sale",
            "--wait",
            "--timeout",
            "5m",
        ]),
        "helm upgrade",
    );
    eventually("the upgrade deferred", Duration::from_secs(120), || {
        let status = deal_status();
        match status["pendingUpgrade"]["tenantApp"].as_str() {
            Some(image) if image.ends_with(":after-the-sale") => Ok(()),
            _ => Err(status.to_string()),
        }
    });
    assert_eq!(
        generation(&format!("deployment/{DEAL}-storefront")),
        storefront_generation
    );
    assert_eq!(
        generation(&format!("statefulset/{DEAL}-redis")),
        redis_generation
    );
    wait_ready("waiting for Ready after the drain");

    eprintln!("4. shoppers join the pre-queue and buy once the deal is Live");
    let forward = PortForward::start(SHOP, &format!("{DEAL}-storefront"));
    let base = Arc::new(forward.url.clone());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let confirmed = runtime.block_on(async {
        let client = reqwest::Client::new();
        let shoppers: Vec<_> = (0..SHOPPERS)
            .map(|i| tokio::spawn(shop(client.clone(), base.clone(), i)))
            .collect();
        let mut confirmed = 0;
        for shopper in shoppers {
            if shopper.await.unwrap().unwrap_or_else(|e| panic!("{e}")) {
                confirmed += 1;
            }
        }
        confirmed
    });
    assert_eq!(
        confirmed, STOCK,
        "{SHOPPERS} shoppers on a stock of {STOCK}, one each"
    );

    eprintln!("5. the operator copies the figures into the status");
    let status = eventually(
        "SoldOut with the figures in the status",
        Duration::from_secs(120),
        || {
            let status = deal_status();
            let done = status["phase"] == "SoldOut"
                && status["stock"]["sold"] == STOCK
                && status["stock"]["remaining"] == 0
                && status["orders"]["confirmed"] == STOCK;
            if done {
                Ok(status)
            } else {
                Err(status.to_string())
            }
        },
    );
    assert_eq!(status["revenue"], STOCK * 9000, "{status}");
    assert!(status["soldOutAt"].is_string(), "{status}");
    drop(forward);

    eprintln!("5b. the directory lists the deal, sold out, from the cluster's TimeDeals");
    let directory = PortForward::start(SYSTEM, "timedeal-directory");
    let listed = eventually(
        "the deal sold out in the directory",
        Duration::from_secs(60),
        || {
            let listing: Value = runtime
                .block_on(async {
                    reqwest::get(format!("{}/api/deals", directory.url))
                        .await?
                        .json()
                        .await
                })
                .map_err(|e| e.to_string())?;
            listing["deals"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|d| d["id"] == format!("{SHOP}/{DEAL}") && d["state"] == "sold_out")
                .cloned()
                .ok_or_else(|| listing.to_string())
        },
    );
    assert_eq!(listed["remaining"], 0, "{listed}");
    drop(directory);

    eprintln!("6. deleting the deal: final figures, then every child goes");
    must(
        kubectl(
            &["-n", SHOP, "delete", "timedeal", DEAL, "--timeout=2m"],
            None,
        ),
        "deleting the deal",
    );
    let events = must(
        kubectl(
            &[
                "-n",
                SHOP,
                "get",
                "events",
                "--field-selector",
                "reason=FinalFigures",
                "-o",
                "json",
            ],
            None,
        ),
        "listing events",
    );
    let events: Value = serde_json::from_str(&events).unwrap();
    assert_eq!(
        events["items"].as_array().unwrap().len(),
        1,
        "one FinalFigures Event: {events}"
    );
    let selector = format!("timedeal.dev/deal={DEAL}");
    eventually(
        "the deal's children to be gone",
        Duration::from_secs(120),
        || {
            let left = must(
            kubectl(&[
                "-n", SHOP, "get",
                "deployments,statefulsets,services,horizontalpodautoscalers,ingresses,poddisruptionbudgets,networkpolicies,configmaps,secrets",
                "-l", &selector, "-o", "name",
            ], None),
            "listing the children",
        );
            if left.trim().is_empty() {
                Ok(())
            } else {
                Err(left)
            }
        },
    );
    eprintln!("done: the deal ran from approval to deletion");
}

// The parts that run without a cluster.

#[test]
fn image_references_split_into_repository_and_tag() {
    assert_eq!(
        split_image("ghcr.io/timedeal/tenant-app:e2e"),
        Some(("ghcr.io/timedeal/tenant-app".into(), "e2e".into()))
    );
    assert_eq!(
        split_image("localhost:5000/timedeal-operator:0.1.0"),
        Some(("localhost:5000/timedeal-operator".into(), "0.1.0".into()))
    );
    assert_eq!(split_image("localhost:5000/timedeal-operator"), None);
    assert_eq!(split_image("tenant-app"), None);
    assert_eq!(split_image("tenant-app:"), None);
}

#[test]
fn the_forwarded_port_is_read_from_kubectl() {
    assert_eq!(
        forwarded_port("Forwarding from 127.0.0.1:41234 -> 8080\n"),
        Some(41234)
    );
    assert_eq!(forwarded_port("error: unable to forward"), None);
}
