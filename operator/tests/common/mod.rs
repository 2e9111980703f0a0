//! Shared by the operator's integration tests.
#![allow(dead_code)]

pub mod harness;

use std::{net::SocketAddr, sync::Arc};

use chrono::{DateTime, Utc};
use kube::Client;
use kube_fake_client::ClientBuilder;
use timedeal_api::TimeDeal;
use timedeal_operator::{
    clock::ManualClock,
    portal::{self, capacity::Limits, links::LinkKey, Portal},
};

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
        },
    );
    company.metadata.uid = Some(format!("uid-{name}"));
    company
}

/// "Now" for the portal's tests: ten days before the deals they request.
pub fn portal_now() -> DateTime<Utc> {
    "2026-11-21T09:00:00Z".parse().unwrap()
}

pub const LINK_KEY: &[u8] = b"portal-link-key-for-tests-0123456789";

/// The rental portal on a free loopback port, over an in-memory Kubernetes API.
pub struct PortalServer {
    pub client: Client,
    pub url: String,
    pub links: LinkKey,
}

impl PortalServer {
    pub async fn start(submissions_per_minute: u32) -> Self {
        Self::start_behind(submissions_per_minute, "").await
    }

    /// Behind the given trusted proxies (see `portal::client`).
    pub async fn start_behind(submissions_per_minute: u32, trusted_proxies: &str) -> Self {
        let client = ClientBuilder::new()
            .with_resource::<TimeDeal>()
            .with_status_subresource::<status_kind::TimeDeal>()
            .build()
            .await
            .unwrap();
        let client = with_namespaces(client);
        let links = LinkKey::new(LINK_KEY.to_vec()).unwrap();
        let portal = Arc::new(
            Portal::new(
                client.clone(),
                links.clone(),
                Limits::default(),
                Arc::new(ManualClock::at(portal_now())),
                submissions_per_minute,
            )
            .with_trusted_proxies(
                timedeal_operator::portal::client::TrustedProxies::parse(trusted_proxies).unwrap(),
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let app = portal::router(portal).into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app).await.unwrap()
        });
        Self { client, url, links }
    }
}

/// A complete, valid request as form fields.
pub fn valid_request() -> Vec<(&'static str, String)> {
    [
        ("company_name", "ACME Audio"),
        ("contact_email", "sales@acme-audio.example"),
        ("product_name", "NC-700 headphones"),
        ("description", "Over-ear, 30 hours of battery."),
        ("image_url", "https://cdn.acme-audio.example/nc700.png"),
        ("list_price", "299.00"),
        ("deal_price", "99.00"),
        ("currency", "USD"),
        ("stock", "500"),
        ("per_user_limit", "2"),
        ("date", "2026-12-01"),
        ("time", "12:00"),
        ("utc_offset", "+09:00"),
        ("duration_minutes", "60"),
        ("peak_shoppers", "30000"),
        ("host", "headphones.deals.example.com"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
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
/// quantities in `resources` are stored in canonical form (`cpu: 1.5` is read back as `1500m`),
/// and the given faults refuse or hang matching writes. Every other request goes to `inner`.
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
