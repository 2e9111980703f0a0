//! The deal's public entrance: an Ingress for the deal's host, with TLS when a secret is named,
//! and ingress-nginx's per-client rate limit. Only the storefront's public paths are routed;
//! `/internal/stats` and `/metrics` stay inside the cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

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

pub fn ingress(deal: &Deal) -> Ingress {
    let settings = &deal.td.spec.ingress;
    let mut meta = deal.meta("storefront", storefront::COMPONENT);
    let rate = settings.rate_limit_per_second;
    meta.annotations = Some(BTreeMap::from([
        (
            "nginx.ingress.kubernetes.io/limit-rps".to_owned(),
            rate.to_string(),
        ),
        // Bursts up to five times the rate, as a refresh storm at the start produces.
        (
            "nginx.ingress.kubernetes.io/limit-burst-multiplier".to_owned(),
            "5".to_owned(),
        ),
        // Live updates are long-lived server-sent event streams.
        (
            "nginx.ingress.kubernetes.io/proxy-read-timeout".to_owned(),
            "3600".to_owned(),
        ),
        (
            "nginx.ingress.kubernetes.io/proxy-buffering".to_owned(),
            "off".to_owned(),
        ),
    ]));
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: deal.child("storefront"),
            port: Some(ServiceBackendPort {
                name: Some("http".into()),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
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
                    paths: PUBLIC_PATHS
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
