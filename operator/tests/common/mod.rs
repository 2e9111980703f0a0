//! Shared by the operator's integration tests.
#![allow(dead_code)]

pub mod harness;

use std::sync::Arc;

use kube::Client;

pub use timedeal_testkit::kube_api::status_kind;

/// Namespaces and Companies served as the API server does (see `timedeal_testkit::kube_api`).
pub use timedeal_testkit::kube_api::with_cluster_scoped as with_namespaces;

/// A Company owning `namespace`, approved or not, with the default quotas.
pub fn company(name: &str, namespace: &str, approved: bool) -> timedeal_api::Company {
    let mut company = timedeal_api::Company::new(
        name,
        timedeal_api::CompanySpec {
            display_name: format!("{name} Inc."),
            contact_email: format!("sales@{name}.test"),
            namespace: namespace.into(),
            approved,
            quotas: Default::default(),
            hosts: vec!["*.deals.example.com".into()],
        },
    );
    company.metadata.uid = Some(format!("uid-{name}"));
    company
}

/// A fault the strict API injects into writes whose path contains `path`.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Refused as the API server refuses: a quota, an invalid object, Pod Security admission.
    Refuse {
        path: &'static str,
        code: u16,
        reason: &'static str,
        message: &'static str,
    },
    /// Never answered, as a call to an overloaded or partitioned API server.
    Hang { path: &'static str },
}

/// Makes the in-memory API as strict as a real API server where the operator depends on it:
/// quantities in `resources` are stored in canonical form (`cpu: 1.5` is read back as `1500m`);
/// empty lists and label-like maps are dropped, as Go's `omitempty` drops them (`egress: []` is
/// read back as absent); a change to an immutable field (a StatefulSet's claim templates or
/// selector, a Deployment's selector, a Service's `clusterIP`) is refused with 422 as the API
/// server refuses it; and the given faults refuse or hang matching writes. Every other request
/// goes to `inner`.
pub fn strict(inner: Client, faults: Arc<std::sync::Mutex<Vec<Fault>>>) -> Client {
    use http::{Method, Response, StatusCode};
    use kube::client::Body;
    use serde_json::{json, Value};
    use timedeal_operator::resources::quantity;

    fn canonicalise(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    // A ResourceQuota's `hard`, a LimitRange's amounts: maps of quantities.
                    let amounts = ["hard", "default", "defaultRequest", "max", "min"];
                    if amounts.contains(&key.as_str()) {
                        if let Value::Object(entries) = child {
                            for amount in entries.values_mut() {
                                if let Value::String(text) = amount {
                                    if quantity::Quantity::parse(text).is_ok() {
                                        *text = quantity::canonical(text);
                                    }
                                }
                            }
                        }
                    }
                    if key == "resources" {
                        for part in ["requests", "limits"] {
                            if let Some(Value::Object(amounts)) = child.get_mut(part) {
                                for amount in amounts.values_mut() {
                                    if let Value::String(text) = amount {
                                        *text = quantity::canonical(text);
                                    }
                                }
                            }
                        }
                    }
                    canonicalise(child);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(canonicalise),
            _ => {}
        }
    }

    /// Drops what `omitempty` drops: empty lists anywhere but inside a list, and empty maps of
    /// the map-typed fields (a struct-typed `{}`, such as `podSelector: {}`, stays).
    fn drop_empties(value: &mut Value) {
        const MAPS: [&str; 6] = [
            "labels",
            "annotations",
            "matchLabels",
            "nodeSelector",
            "data",
            "stringData",
        ];
        match value {
            Value::Object(map) => {
                map.retain(|key, child| match child {
                    Value::Array(items) => !items.is_empty(),
                    Value::Object(entries) => !(entries.is_empty() && MAPS.contains(&key.as_str())),
                    _ => true,
                });
                map.values_mut().for_each(drop_empties);
            }
            Value::Array(items) => items.iter_mut().for_each(drop_empties),
            _ => {}
        }
    }

    /// The immutable fields of the object at `path` that `body` would change, as the API server
    /// names them.
    fn immutable_changes(path: &str, body: &Value, current: &Value) -> Vec<&'static str> {
        let fields: &[(&str, &str)] = if path.contains("/statefulsets/") {
            &[
                ("/spec/volumeClaimTemplates", "spec.volumeClaimTemplates"),
                ("/spec/selector", "spec.selector"),
                ("/spec/serviceName", "spec.serviceName"),
            ]
        } else if path.contains("/deployments/") {
            &[("/spec/selector", "spec.selector")]
        } else if path.contains("/services/") {
            &[("/spec/clusterIP", "spec.clusterIP")]
        } else {
            &[]
        };
        fields
            .iter()
            .filter(
                |(pointer, _)| match (body.pointer(pointer), current.pointer(pointer)) {
                    (Some(wanted), Some(live)) => !timedeal_operator::apply::covers(live, wanted),
                    _ => false,
                },
            )
            .map(|(_, name)| *name)
            .collect()
    }

    let service = tower::service_fn(move |request: http::Request<Body>| {
        let (inner, faults) = (inner.clone(), faults.clone());
        async move {
            let writes = matches!(
                *request.method(),
                Method::PATCH | Method::POST | Method::PUT
            );
            if !writes {
                return inner.send(request).await;
            }
            let path = request.uri().path().to_owned();
            let fault = faults
                .lock()
                .unwrap()
                .iter()
                .find(|f| match f {
                    Fault::Refuse { path: p, .. } | Fault::Hang { path: p } => path.contains(p),
                })
                .cloned();
            match fault {
                Some(Fault::Hang { .. }) => {
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                }
                Some(Fault::Refuse {
                    code,
                    reason,
                    message,
                    ..
                }) => {
                    let body = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "message": message, "reason": reason, "code": code});
                    return Ok(Response::builder()
                        .status(StatusCode::from_u16(code).unwrap())
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap());
                }
                None => {}
            }
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await?;
            let bytes = match serde_json::from_slice::<Value>(&bytes) {
                Ok(mut object) => {
                    canonicalise(&mut object);
                    drop_empties(&mut object);
                    if parts.method == Method::PATCH {
                        let read = http::Request::get(parts.uri.clone())
                            .body(Vec::new())
                            .unwrap();
                        if let Ok(current) = inner.request::<Value>(read).await {
                            let changed = immutable_changes(&path, &object, &current);
                            if !changed.is_empty() {
                                let message = format!(
                                    "{}: Forbidden: field is immutable",
                                    changed.join(", ")
                                );
                                let body = json!({"apiVersion": "v1", "kind": "Status",
                                    "status": "Failure", "message": message,
                                    "reason": "Invalid", "code": 422});
                                return Ok(Response::builder()
                                    .status(StatusCode::UNPROCESSABLE_ENTITY)
                                    .header("content-type", "application/json")
                                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                                    .unwrap());
                            }
                        }
                    }
                    serde_json::to_vec(&object).unwrap()
                }
                Err(_) => bytes.to_vec(),
            };
            inner
                .send(http::Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    });
    Client::new(service, "default")
}
