//! The cluster-scoped kinds Timedeal uses, served in memory for tests that talk to
//! kube-fake-client (which treats every custom kind as namespaced and cannot route
//! `/api/v1/namespaces`).

use std::sync::Arc;

use kube::Client;

/// The fake client learns which kinds have a status subresource from a default instance; the real
/// TimeDeal has no sensible default, so a stand-in of the same group, version and kind is used.
pub mod status_kind {
    #[derive(
        kube::CustomResource,
        serde::Serialize,
        serde::Deserialize,
        Clone,
        Debug,
        Default,
        schemars::JsonSchema,
    )]
    #[kube(
        group = "timedeal.dev",
        version = "v1alpha1",
        kind = "TimeDeal",
        namespaced,
        derive = "Default"
    )]
    pub struct StandInSpec {}
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// The in-memory API treats every custom kind as namespaced and cannot route
/// `/api/v1/namespaces` (it reads every `namespaces` segment as the start of a namespaced path),
/// so this client serves the cluster-scoped kinds the operator uses itself, as the API server
/// does: Namespaces and Companies (create, list, get, merge patch, server-side apply, status,
/// delete), with uids, generations and resource versions. Every other request goes to `inner`.
pub fn with_cluster_scoped(inner: Client) -> Client {
    use std::{collections::BTreeMap, sync::Mutex};

    use http::{Method, Response, StatusCode};
    use kube::client::Body;
    use serde_json::{json, Value};

    const COLLECTIONS: [(&str, &str, &str); 2] = [
        ("/api/v1/namespaces", "v1", "Namespace"),
        (
            "/apis/timedeal.dev/v1alpha1/companies",
            "timedeal.dev/v1alpha1",
            "Company",
        ),
    ];
    type Store = BTreeMap<(usize, String), Value>;
    let store: Arc<Mutex<Store>> = Arc::default();
    let versions: Arc<std::sync::atomic::AtomicU64> = Arc::default();
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let (inner, store, versions) = (inner.clone(), store.clone(), versions.clone());
        async move {
            let path = request.uri().path().to_owned();
            let Some((collection, (_, api_version, kind), rest)) = COLLECTIONS
                .iter()
                .enumerate()
                .find_map(|(i, c)| path.strip_prefix(c.0).map(|rest| (i, c, rest)))
            else {
                return inner.send(request).await;
            };
            // `COLLECTION`, `COLLECTION/NAME` or `COLLECTION/NAME/status`; deeper paths under
            // namespaces are namespaced objects.
            let parts: Vec<&str> = rest.split('/').skip(1).collect();
            let (name, status_only) = match (rest.is_empty(), parts.as_slice()) {
                (true, _) => (None, false),
                (false, [name]) => (Some(name.to_string()), false),
                (false, [name, "status"]) if collection == 1 => (Some(name.to_string()), true),
                _ => return inner.send(request).await,
            };
            let reply = |status: StatusCode, body: Value| {
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap()
            };
            let plural = if collection == 0 {
                "namespaces"
            } else {
                "companies"
            };
            let failure = |code: u16, reason: &str, message: String| {
                reply(
                    StatusCode::from_u16(code).unwrap(),
                    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "message": message, "reason": reason, "code": code}),
                )
            };
            let not_found =
                |name: &str| failure(404, "NotFound", format!("{plural} \"{name}\" not found"));
            let next_version =
                || (versions.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1).to_string();
            let method = request.method().clone();
            let content_type = request
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            match (method, name) {
                (Method::GET, None) => {
                    let items: Vec<Value> = store
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|((c, _), _)| *c == collection)
                        .map(|(_, v)| v.clone())
                        .collect();
                    Ok(reply(
                        StatusCode::OK,
                        json!({"apiVersion": api_version, "kind": format!("{kind}List"),
                            "metadata": {"resourceVersion": next_version()}, "items": items}),
                    ))
                }
                (Method::GET, Some(name)) => Ok(
                    match store.lock().unwrap().get(&(collection, name.clone())) {
                        Some(object) => reply(StatusCode::OK, object.clone()),
                        None => not_found(&name),
                    },
                ),
                (Method::POST, None) => {
                    let body = request.into_body().collect_bytes().await?;
                    let mut object: Value = serde_json::from_slice(&body).unwrap();
                    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
                    let mut store = store.lock().unwrap();
                    if store.contains_key(&(collection, name.clone())) {
                        return Ok(failure(
                            409,
                            "AlreadyExists",
                            format!("{plural} \"{name}\" already exists"),
                        ));
                    }
                    object["apiVersion"] = json!(api_version);
                    object["kind"] = json!(kind);
                    object["metadata"]["uid"] = json!(format!("{plural}-{}", store.len() + 1));
                    object["metadata"]["generation"] = json!(1);
                    object["metadata"]["resourceVersion"] = json!(next_version());
                    object["metadata"]["creationTimestamp"] =
                        json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
                    if let Some(map) = object.as_object_mut() {
                        map.remove("status");
                    }
                    store.insert((collection, name), object.clone());
                    Ok(reply(StatusCode::CREATED, object))
                }
                (Method::PATCH, Some(name)) => {
                    let body = request.into_body().collect_bytes().await?;
                    let patch: Value = if content_type.contains("yaml") {
                        serde_yaml::from_slice(&body).unwrap()
                    } else {
                        serde_json::from_slice(&body).unwrap()
                    };
                    let apply = content_type.starts_with("application/apply-patch");
                    let mut store = store.lock().unwrap();
                    let key = (collection, name.clone());
                    if !store.contains_key(&key) {
                        if !apply {
                            return Ok(not_found(&name));
                        }
                        let uid = format!("{plural}-{}", store.len() + 1);
                        store.insert(
                            key.clone(),
                            json!({"apiVersion": api_version, "kind": kind,
                                "metadata": {"name": name, "uid": uid,
                                    "generation": 1, "resourceVersion": next_version()}}),
                        );
                    }
                    let object = store.get_mut(&key).unwrap();
                    let before = object.clone();
                    if status_only {
                        merge_patch(&mut object["status"], &patch["status"]);
                    } else {
                        let mut patch = patch.clone();
                        if let Some(map) = patch.as_object_mut() {
                            // The status is written through its subresource only.
                            map.remove("status");
                            map.remove("apiVersion");
                            map.remove("kind");
                        }
                        merge_patch(object, &patch);
                        if object.get("spec") != before.get("spec") {
                            let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
                            object["metadata"]["generation"] = json!(generation + 1);
                        }
                    }
                    if *object != before {
                        object["metadata"]["resourceVersion"] = json!(next_version());
                    }
                    Ok(reply(StatusCode::OK, object.clone()))
                }
                (Method::DELETE, Some(name)) => Ok(
                    match store.lock().unwrap().remove(&(collection, name.clone())) {
                        Some(object) => reply(StatusCode::OK, object),
                        None => not_found(&name),
                    },
                ),
                (method, _) => Ok(failure(
                    405,
                    "MethodNotAllowed",
                    format!("{method} on {plural} is not served by this test API"),
                )),
            }
        }
    });
    Client::new(service, "default")
}
