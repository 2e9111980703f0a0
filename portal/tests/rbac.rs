//! The portal's RBAC in the chart is exactly what its code calls: every call a company's whole
//! journey makes (sign-up, approval, requests, the list, a deal's page, withdrawal) is recorded
//! at the Kubernetes API and checked against the chart's two portal ClusterRoles, and every verb
//! those roles grant is used.

mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
};

use common::{valid_request, PortalServer};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::Client;
use serde::Deserialize;
use serde_json::Value;

/// (verb, API group, resource, namespaced)
type Call = (String, String, String, bool);

/// What a request to the API server is, in RBAC's terms.
fn call_of(method: &http::Method, uri: &http::Uri) -> Call {
    let parts: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest.to_vec()),
        ["apis", group, _version, rest @ ..] => (group.to_string(), rest.to_vec()),
        _ => panic!("not an API path: {uri}"),
    };
    let (namespaced, rest) = match rest.as_slice() {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => (true, rest.to_vec()),
        _ => (false, rest),
    };
    let resource = match rest.as_slice() {
        [resource, _name, sub] => format!("{resource}/{sub}"),
        [resource, ..] => resource.to_string(),
        [] => panic!("no resource in {uri}"),
    };
    let named = rest.len() >= 2;
    let watch = uri.query().is_some_and(|q| q.contains("watch=true"));
    let verb = match (method.as_str(), named, watch) {
        ("GET", _, true) => "watch",
        ("GET", true, _) => "get",
        ("GET", false, _) => "list",
        ("POST", _, _) => "create",
        ("PATCH", _, _) => "patch",
        ("PUT", _, _) => "update",
        ("DELETE", _, _) => "delete",
        (other, _, _) => panic!("unexpected method {other}"),
    };
    (verb.into(), group, resource, namespaced)
}

/// Records every request, then hands it on.
fn recording(inner: Client, calls: Arc<Mutex<BTreeSet<Call>>>) -> Client {
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let (inner, calls) = (inner.clone(), calls.clone());
        async move {
            calls
                .lock()
                .unwrap()
                .insert(call_of(request.method(), request.uri()));
            inner.send(request).await
        }
    });
    Client::new(service, "default")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The chart's ClusterRole `name`, as `helm template` renders it.
fn chart_role(name: &str) -> ClusterRole {
    let local = repo().join(".tools/bin/helm");
    let program = if local.exists() {
        local
    } else {
        PathBuf::from("helm")
    };
    let output = Command::new(program)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("timedeal-helm-cache"),
        )
        .args(["template", "timedeal"])
        .arg(repo().join("charts/timedeal-operator"))
        .args(["--namespace", "timedeal-system"])
        .output()
        .expect("helm renders the chart; run `make setup`, which installs it");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let found = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_json::to_value(serde_yaml::Value::deserialize(doc).unwrap()).unwrap())
        .find(|o: &Value| o["kind"] == "ClusterRole" && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the chart has no ClusterRole {name}"));
    serde_json::from_value(found).unwrap()
}

/// Every (verb, group, resource) a role grants.
fn grants(role: &ClusterRole) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        assert!(rule.resource_names.is_none());
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    out.insert((verb.clone(), group.clone(), resource.clone()));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn the_charts_portal_roles_grant_exactly_what_a_companys_journey_calls() {
    let calls: Arc<Mutex<BTreeSet<Call>>> = Arc::default();
    let recorded = calls.clone();
    let portal = PortalServer::over(move |client| recording(client, recorded)).await;

    let acme = portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let response = acme.request(&portal, &valid_request()).await;
    let path = response.url().path().to_owned();
    let (_, page) = acme.page(&portal.at("/deals")).await;
    acme.page(&portal.at(&path)).await;
    acme.post(
        &portal,
        &format!("{path}/withdraw"),
        &[("csrf", common::csrf_of(&page))],
    )
    .await;
    assert!(portal.deals().await.is_empty(), "withdrawn");

    // The test's own calls (approving the company, reading what exists) are an admin's; what
    // is left is the portal's.
    let admin: BTreeSet<Call> = [
        ("patch", "timedeal.dev", "companies", false),
        ("list", "timedeal.dev", "timedeals", false),
    ]
    .into_iter()
    .map(|(v, g, r, n)| (v.into(), g.into(), r.into(), n))
    .collect();
    let made: BTreeSet<Call> = calls.lock().unwrap().difference(&admin).cloned().collect();

    let cluster = grants(&chart_role("timedeal-portal"));
    let per_company = grants(&chart_role("timedeal-portal-deals"));
    let mut used_cluster = BTreeSet::new();
    let mut used_per_company = BTreeSet::new();
    for (verb, group, resource, namespaced) in &made {
        let key = (verb.clone(), group.clone(), resource.clone());
        if *namespaced {
            assert!(
                per_company.contains(&key),
                "{key:?} in a company's namespace is not granted"
            );
            used_per_company.insert(key);
        } else {
            assert!(
                cluster.contains(&key),
                "{key:?} across the cluster is not granted"
            );
            used_cluster.insert(key);
        }
    }
    assert_eq!(
        used_cluster, cluster,
        "the portal's ClusterRole grants more than it uses"
    );
    assert_eq!(
        used_per_company, per_company,
        "the per-company role grants more than the portal uses"
    );
    for (_, _, resource) in cluster.iter().chain(&per_company) {
        assert!(!["secrets", "namespaces"].contains(&resource.as_str()));
    }
}
