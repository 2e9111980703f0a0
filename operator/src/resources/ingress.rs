//! The deal's public entrance: an Ingress for the deal's host, with TLS when a secret is named,
//! and ingress-nginx's per-client rate limit. Only the storefront's public paths are routed;
//! `/internal/stats` and `/metrics` stay inside the cluster.
//!
//! Where the platform names an ingress-nginx cache zone, a second Ingress routes the public head
//! (`/api/queue/head`) alone, with buffering on and a snippet that caches it in that zone: the
//! head is the same bytes for every shopper, so the controller answers a waiting crowd's reads
//! and the storefronts see about one a second per controller pod.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use timedeal_api::head_cache::{snippet as head_cache_snippet, HEAD_PATH};

use super::{storefront, Deal};

/// The paths shoppers use, and how they match: the page, its API and files, the calendar entry
/// it offers, and the unsubscribe link (and one-click POST) of every reminder mail.
const PUBLIC_PATHS: &[(&str, &str)] = &[
    ("/", "Exact"),
    ("/api", "Prefix"),
    ("/static", "Prefix"),
    ("/openapi.json", "Exact"),
    ("/reminder.ics", "Exact"),
    ("/reminders/confirm", "Exact"),
    ("/reminders/unsubscribe", "Exact"),
];

/// ingress-nginx's per-client rate limit at `rate` a second.
fn rate_limit(rate: i32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "nginx.ingress.kubernetes.io/limit-rps".to_owned(),
            rate.to_string(),
        ),
        // Bursts up to five times the rate, as a refresh storm at the start produces.
        (
            "nginx.ingress.kubernetes.io/limit-burst-multiplier".to_owned(),
            "5".to_owned(),
        ),
    ])
}

fn backend(deal: &Deal) -> IngressBackend {
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: deal.child("storefront"),
            port: Some(ServiceBackendPort {
                name: Some("http".into()),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// An Ingress for the deal's host routing `paths` to the storefront.
fn routing(deal: &Deal, meta: ObjectMeta, paths: &[(&str, &str)]) -> Ingress {
    let settings = &deal.td.spec.ingress;
    let backend = backend(deal);
    Ingress {
        metadata: meta,
        spec: Some(IngressSpec {
            ingress_class_name: settings.class_name.clone(),
            tls: settings.tls_secret_name.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: Some(vec![settings.host.clone()]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(settings.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: paths
                        .iter()
                        .map(|(path, kind)| HTTPIngressPath {
                            path: Some((*path).into()),
                            path_type: (*kind).into(),
                            backend: backend.clone(),
                        })
                        .collect(),
                }),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Ingress of the public head alone, cached in the controller's `zone` (see
/// [`timedeal_api::head_cache::snippet`]). ingress-nginx runs it only with snippet annotations allowed.
pub fn head_ingress(deal: &Deal, zone: &str) -> Ingress {
    let mut meta = deal.meta("head", storefront::COMPONENT);
    // A page reads the head once a second: ten times the deal's limit lets many pages share
    // one address (an office, a carrier's NAT) without their reads failing, while a client
    // that bypasses the cache (a cookie) is still held to a rate.
    let rate = deal.td.spec.ingress.rate_limit_per_second;
    let mut annotations = rate_limit(rate.saturating_mul(10));
    annotations.extend([
        // nginx caches only what it buffers.
        (
            "nginx.ingress.kubernetes.io/proxy-buffering".to_owned(),
            "on".to_owned(),
        ),
        (
            "nginx.ingress.kubernetes.io/configuration-snippet".to_owned(),
            head_cache_snippet(zone),
        ),
    ]);
    meta.annotations = Some(annotations);
    routing(deal, meta, &[(HEAD_PATH, "Exact")])
}

pub fn ingress(deal: &Deal) -> Ingress {
    let mut meta = deal.meta("storefront", storefront::COMPONENT);
    let mut annotations = rate_limit(deal.td.spec.ingress.rate_limit_per_second);
    annotations.extend([
        // Live updates are long-lived server-sent event streams.
        (
            "nginx.ingress.kubernetes.io/proxy-read-timeout".to_owned(),
            "3600".to_owned(),
        ),
        (
            "nginx.ingress.kubernetes.io/proxy-buffering".to_owned(),
            "off".to_owned(),
        ),
    ]);
    meta.annotations = Some(annotations);
    routing(deal, meta, PUBLIC_PATHS)
}

/// Where shoppers find the deal.
pub fn url(deal: &Deal) -> String {
    let settings = &deal.td.spec.ingress;
    let scheme = if settings.tls_secret_name.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}/", settings.host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing;

    #[test]
    fn the_ingress_serves_the_host_with_tls_class_and_rate_limit() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let ingress = ingress(&deal);
        let annotations = ingress.metadata.annotations.unwrap();
        assert_eq!(annotations["nginx.ingress.kubernetes.io/limit-rps"], "20");
        let spec = ingress.spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let tls = &spec.tls.unwrap()[0];
        assert_eq!(tls.secret_name.as_deref(), Some("headphones-deals-tls"));
        let rule = &spec.rules.unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("headphones.deals.example.com"));
        let paths: Vec<_> = rule
            .http
            .as_ref()
            .unwrap()
            .paths
            .iter()
            .map(|p| p.path.clone().unwrap())
            .collect();
        assert!(paths.contains(&"/api".to_owned()));
        assert!(!paths
            .iter()
            .any(|p| p.starts_with("/internal") || p == "/metrics"));
        assert_eq!(url(&deal), "https://headphones.deals.example.com/");
    }

    #[test]
    fn the_head_ingress_routes_the_head_alone_buffered_and_cached_in_the_zone() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let head = head_ingress(&deal, "timedeal_head");
        assert_eq!(
            head.metadata.name.as_deref(),
            Some("winter-headphones-head")
        );
        let annotations = head.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/proxy-buffering"],
            "on"
        );
        assert_eq!(annotations["nginx.ingress.kubernetes.io/limit-rps"], "200");
        let snippet = &annotations["nginx.ingress.kubernetes.io/configuration-snippet"];
        assert!(
            snippet.starts_with("proxy_cache timedeal_head;\n"),
            "{snippet}"
        );
        assert!(snippet.contains("proxy_no_cache $http_cookie"), "{snippet}");
        assert!(routes(&head, HEAD_PATH));
        assert!(!routes(&head, "/api/queue"));
        assert!(!routes(&head, "/api/queue/head/x"));
        // The storefront's own Ingress still routes the head where no zone is named.
        assert!(routes(&ingress(&deal), HEAD_PATH));
    }

    /// Whether `ingress` sends a request for `path` (query left out) to the storefront, as the
    /// Ingress API defines matching: Exact is the whole path, Prefix whole path elements.
    fn routes(ingress: &Ingress, path: &str) -> bool {
        let path = path.split('?').next().unwrap();
        ingress.spec.as_ref().unwrap().rules.as_ref().unwrap()[0]
            .http
            .as_ref()
            .unwrap()
            .paths
            .iter()
            .any(|p| {
                let route = p.path.as_deref().unwrap();
                match p.path_type.as_str() {
                    "Exact" => path == route,
                    _ => {
                        route == "/"
                            || path == route
                            || path.starts_with(&format!("{}/", route.trim_end_matches('/')))
                    }
                }
            })
    }

    #[test]
    fn every_link_a_shopper_gets_is_routed_and_nothing_internal_is() {
        let td = testing::sample();
        let ingress = ingress(&Deal::new(&td).unwrap());
        for path in [
            "/",
            "/api/queue/join",
            "/api/events",
            "/static/app.js",
            "/openapi.json",
            "/reminder.ics",
            // The confirmation link of the first mail to a left address.
            "/reminders/confirm?token=0123456789abcdef0123456789abcdef",
            // Every reminder mail's unsubscribe link, and its one-click POST.
            "/reminders/unsubscribe?token=0123456789abcdef0123456789abcdef",
        ] {
            assert!(routes(&ingress, path), "{path} is not routed");
        }
        for path in [
            "/internal/stats",
            "/internal/deal",
            "/metrics",
            "/healthz",
            "/readyz",
        ] {
            assert!(!routes(&ingress, path), "{path} is routed");
        }
    }

    #[test]
    fn without_a_tls_secret_the_deal_is_plain_http() {
        let mut td = testing::sample();
        td.spec.ingress.tls_secret_name = None;
        let deal = Deal::new(&td).unwrap();
        assert!(ingress(&deal).spec.unwrap().tls.is_none());
        assert_eq!(url(&deal), "http://headphones.deals.example.com/");
    }
}
