//! The directory in a cluster: it lists the TimeDeals of every namespace from the API server
//! (here the in-memory one), follows their changes, and keeps its last listing while the API
//! server refuses it.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{SecondsFormat, Utc};
use kube::{
    api::{Patch, PatchParams},
    client::Body,
    Api, Client,
};
use kube_fake_client::ClientBuilder;
use serde_json::{json, Value};
use timedeal_api::TimeDeal;
use timedeal_directory::{http::router, source, Directory};

fn deal(namespace: &str, name: &str, approved: bool, starts_in_hours: i64) -> TimeDeal {
    let start = Utc::now() + chrono::Duration::hours(starts_in_hours);
    let end = start + chrono::Duration::hours(1);
    let ts = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    serde_yaml::from_str(&format!(
        r#"apiVersion: timedeal.dev/v1alpha1
kind: TimeDeal
metadata: {{ name: {name}, namespace: {namespace} }}
spec:
  company: {{ name: {namespace}, contactEmail: hello@example.com }}
  approved: {approved}
  product: {{ name: "{name}", listPrice: 19900, dealPrice: 9900, stock: 100, category: audio }}
  schedule: {{ start: "{start}", end: "{end}" }}
  ingress: {{ host: {name}.deals.example.com }}
"#,
        start = ts(start),
        end = ts(end),
    ))
    .unwrap()
}

/// The in-memory API server, refusing every call with 403 while `refusing` is set (as an API
/// server does when the directory's permissions are taken away).
async fn api_server(deals: Vec<TimeDeal>, refusing: Arc<AtomicBool>) -> Client {
    let mut builder = ClientBuilder::new().with_resource::<TimeDeal>();
    for deal in deals {
        builder = builder.with_object(deal);
    }
    let inner = builder.build().await.unwrap();
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let (inner, refusing) = (inner.clone(), refusing.clone());
        async move {
            if refusing.load(Ordering::SeqCst) {
                let body = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                    "reason": "Forbidden", "code": 403,
                    "message": "timedeals.timedeal.dev is forbidden"});
                return Ok::<_, kube::Error>(
                    http::Response::builder()
                        .status(403)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
            inner.send(request).await
        }
    });
    Client::new(service, "default")
}

async fn serve(directory: Directory) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router(Arc::new(directory)))
            .await
            .unwrap()
    });
    format!("http://{address}")
}

async fn names(base: &str) -> Vec<String> {
    let listing: Value = reqwest::get(format!("{base}/api/deals"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut names: Vec<String> = listing["deals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["product"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

async fn eventually(base: &str, expected: &[&str]) {
    for _ in 0..100 {
        if names(base).await == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the directory lists {:?}, not {expected:?}",
        names(base).await
    );
}

#[tokio::test]
async fn the_directory_lists_every_namespaces_deals_and_follows_their_changes() {
    let refusing = Arc::new(AtomicBool::new(false));
    let client = api_server(
        vec![
            deal("acme-audio", "headphones", true, 3),
            deal("bean-there", "espresso", true, 5),
            deal("bean-there", "pending-tea", false, 6),
        ],
        refusing.clone(),
    )
    .await;
    let deals = source::follow_cluster(client.clone(), Duration::from_millis(100))
        .await
        .unwrap();
    let base = serve(Directory::new(
        deals,
        chrono::Duration::days(1),
        Arc::new(timedeal_api::clock::SystemClock),
    ))
    .await;

    // Both companies' approved deals; the unapproved one is not public.
    assert_eq!(names(&base).await, ["espresso", "headphones"]);

    // The admin approves the tea and suspends the headphones: the listing follows.
    let teas: Api<TimeDeal> = Api::namespaced(client.clone(), "bean-there");
    teas.patch(
        "pending-tea",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"approved": true}})),
    )
    .await
    .unwrap();
    Api::<TimeDeal>::namespaced(client.clone(), "acme-audio")
        .patch(
            "headphones",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    eventually(&base, &["espresso", "pending-tea"]).await;

    // The API server refuses for a while: the last listing stays served.
    refusing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(names(&base).await, ["espresso", "pending-tea"]);
    refusing.store(false, Ordering::SeqCst);
    teas.delete("pending-tea", &Default::default())
        .await
        .unwrap();
    eventually(&base, &["espresso"]).await;
}

#[tokio::test]
async fn a_directory_that_may_not_list_deals_says_so_at_start() {
    let client = api_server(Vec::new(), Arc::new(AtomicBool::new(true))).await;
    let error = source::follow_cluster(client, Duration::from_secs(1))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("forbidden"), "{error}");
    assert!(error.contains("list on timedeals.timedeal.dev"), "{error}");
}
