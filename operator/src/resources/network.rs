//! Isolation: every pod of a deal gets a NetworkPolicy that admits only what it needs.
//!
//! - Redis: reached only by the deal's own storefront pods, on its port; it reaches nothing.
//! - Storefront: reached by the ingress controller's namespace and the operator (its figures,
//!   `/internal/stats`, which carry the revenue), and by the metrics scraper's namespace when one
//!   is set; it reaches DNS, its own Redis, and PostgreSQL's port (in or outside the cluster),
//!   plus HTTPS when the deal verifies shoppers' tokens against a JWKS URL. Which pods answer
//!   DNS, on which ports, and the pod ports behind PostgreSQL's and SMTP's Services are the
//!   platform's to say (`Peers`).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::networking::v1::{
        NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
        NetworkPolicyPort, NetworkPolicySpec,
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::{redis, storefront, Deal};

/// Where the deal's traffic may come from and go to, besides its own pods (operator flags, chart
/// values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers {
    /// The namespace of the ingress controller.
    pub ingress_namespace: String,
    /// The operator's namespace; its pods carry `app.kubernetes.io/name: timedeal-operator`.
    pub operator_namespace: String,
    /// The namespace of the Prometheus that scrapes `/metrics`, if any.
    pub metrics_namespace: Option<String>,
    /// The labels of the cluster's DNS pods, in any namespace; empty: the DNS ports to anywhere
    /// (NodeLocal DNSCache answers on a node address no pod selector matches).
    pub dns_selector: BTreeMap<String, String>,
    /// The ports DNS answers on, as the pods see them (OpenShift's listen on 5353 behind 53).
    pub dns_ports: Vec<u16>,
    /// More ports PostgreSQL may be reached on besides its URL's: a NetworkPolicy sees the pod's
    /// port after a Service translates it (PgBouncer on 6432 behind a Service on 5432).
    pub postgres_ports: Vec<u16>,
    /// The same for the SMTP server.
    pub smtp_ports: Vec<u16>,
}

impl Default for Peers {
    fn default() -> Self {
        Self {
            ingress_namespace: "ingress-nginx".into(),
            operator_namespace: "timedeal-system".into(),
            metrics_namespace: None,
            dns_selector: BTreeMap::from([("k8s-app".into(), "kube-dns".into())]),
            dns_ports: vec![53],
            postgres_ports: vec![],
            smtp_ports: vec![],
        }
    }
}

/// Parses `key=value,key=value` (a DNS selector flag); empty gives no labels.
pub fn parse_labels(given: &str) -> Result<BTreeMap<String, String>, String> {
    given
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_owned(), value.trim().to_owned()))
            }
            _ => Err(format!(
                "{pair:?} is not key=value: give labels such as k8s-app=kube-dns, or nothing for \
                 any destination"
            )),
        })
        .collect()
}

/// A comma-separated list of ports, as a flag gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports(pub Vec<u16>);

impl std::str::FromStr for Ports {
    type Err = String;
    fn from_str(given: &str) -> Result<Self, String> {
        parse_ports(given).map(Ports)
    }
}

/// The ports DNS answers on, as a flag gives them: at least one, since a rule with no ports
/// admits every port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsPorts(pub Vec<u16>);

impl std::str::FromStr for DnsPorts {
    type Err = String;
    fn from_str(given: &str) -> Result<Self, String> {
        let ports = parse_ports(given)?;
        if ports.is_empty() {
            return Err(
                "give at least one port DNS answers on, such as 53: a rule without \
                 ports would let storefronts reach every port"
                    .into(),
            );
        }
        Ok(DnsPorts(ports))
    }
}

/// Labels as a flag gives them (`key=value,key=value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels(pub BTreeMap<String, String>);

impl std::str::FromStr for Labels {
    type Err = String;
    fn from_str(given: &str) -> Result<Self, String> {
        parse_labels(given).map(Labels)
    }
}

/// Parses a comma-separated list of ports (`5432,6432`); empty gives none.
pub fn parse_ports(given: &str) -> Result<Vec<u16>, String> {
    given
        .split(',')
        .map(str::trim)
        .filter(|port| !port.is_empty())
        .map(|port| match port.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{port:?} is not a port: give numbers from 1 to 65535, such as 5432,6432"
            )),
        })
        .collect()
}

/// One egress rule to anywhere on `ports` (TCP), each port once.
fn to_any(ports: impl IntoIterator<Item = u16>) -> NetworkPolicyEgressRule {
    let mut ports: Vec<u16> = ports.into_iter().collect();
    ports.sort_unstable();
    ports.dedup();
    NetworkPolicyEgressRule {
        to: None,
        ports: Some(
            ports
                .into_iter()
                .map(|p| tcp(IntOrString::Int(p.into())))
                .collect(),
        ),
    }
}

fn tcp(port: IntOrString) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(port),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// Pods matching `pods` (any, when `None`) in the namespace named `namespace`.
fn in_namespace(namespace: &str, pods: Option<BTreeMap<String, String>>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                namespace.to_owned(),
            )])),
            ..Default::default()
        }),
        pod_selector: pods.map(|labels| LabelSelector {
            match_labels: Some(labels),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn redis_policy(deal: &Deal) -> NetworkPolicy {
    NetworkPolicy {
        metadata: deal.meta("redis", redis::COMPONENT),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(deal.pod_selector(redis::COMPONENT)),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(deal.pod_selector(storefront::COMPONENT)),
                    ..Default::default()
                }]),
                ports: Some(vec![tcp(IntOrString::Int(redis::PORT))]),
            }]),
            // Redis calls no one.
            egress: Some(vec![]),
        }),
    }
}

/// `postgres_port` is the platform PostgreSQL's, from its URL.
/// `smtp_port`: the platform's SMTP server, where reminders are mailed; none: no mail.
/// `beacon_port`: the randomness beacon keying the draw; none: no beacon.
pub fn storefront_policy(
    deal: &Deal,
    peers: &Peers,
    postgres_port: u16,
    smtp_port: Option<u16>,
    beacon_port: Option<u16>,
) -> NetworkPolicy {
    let http = || Some(vec![tcp(IntOrString::String("http".into()))]);
    let mut from = vec![
        in_namespace(&peers.ingress_namespace, None),
        in_namespace(
            &peers.operator_namespace,
            Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_owned(),
                "timedeal-operator".to_owned(),
            )])),
        ),
    ];
    if let Some(metrics) = &peers.metrics_namespace {
        from.push(in_namespace(metrics, None));
    }
    let dns = NetworkPolicyEgressRule {
        to: (!peers.dns_selector.is_empty()).then(|| {
            vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector::default()),
                pod_selector: Some(LabelSelector {
                    match_labels: Some(peers.dns_selector.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }]
        }),
        ports: Some(
            peers
                .dns_ports
                .iter()
                .flat_map(|port| {
                    ["UDP", "TCP"]
                        .into_iter()
                        .map(|protocol| NetworkPolicyPort {
                            port: Some(IntOrString::Int((*port).into())),
                            protocol: Some(protocol.into()),
                            ..Default::default()
                        })
                })
                .collect(),
        ),
    };
    let own_redis = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            pod_selector: Some(deal.pod_selector(redis::COMPONENT)),
            ..Default::default()
        }]),
        ports: Some(vec![tcp(IntOrString::Int(redis::PORT))]),
    };
    // PostgreSQL may run anywhere (a managed service, another namespace): its ports only.
    let postgres = to_any(std::iter::once(postgres_port).chain(peers.postgres_ports.clone()));
    let mut egress = vec![dns, own_redis, postgres];
    let jwks = deal
        .td
        .spec
        .shopper_auth
        .as_ref()
        .and_then(|auth| auth.jwt.as_ref())
        .is_some_and(|jwt| jwt.jwks_url.is_some());
    // The shoppers' JWKS and the draw's beacon live outside the cluster, behind HTTPS.
    let mut outside: Vec<u16> = jwks.then_some(443).into_iter().chain(beacon_port).collect();
    outside.sort_unstable();
    outside.dedup();
    for port in outside {
        egress.push(to_any([port]));
    }
    if let Some(port) = smtp_port {
        egress.push(to_any(
            std::iter::once(port).chain(peers.smtp_ports.clone()),
        ));
    }
    NetworkPolicy {
        metadata: deal.meta("storefront", storefront::COMPONENT),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(deal.pod_selector(storefront::COMPONENT)),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(from),
                ports: http(),
            }]),
            egress: Some(egress),
        }),
    }
}

/// The port of an SMTP URL as the storefront's mail crate reads it: the URL's own, else 465
/// for `smtps://`, 587 for STARTTLS (`?tls=...`) and 25 for plain `smtp://`.
pub fn smtp_port(url: &str) -> u16 {
    let Ok(url) = reqwest::Url::parse(url) else {
        return 25;
    };
    url.port().unwrap_or(match url.scheme() {
        "smtps" => 465,
        _ if url.query_pairs().any(|(key, _)| key == "tls") => 587,
        _ => 25,
    })
}

/// The port of the draw's beacon (`https://` 443, `http://` 80, or the URL's own); none for
/// `none`.
pub fn beacon_port(url: &str) -> Option<u16> {
    let url = reqwest::Url::parse(url).ok()?;
    url.port_or_known_default()
}

/// The port of a PostgreSQL URL (`postgres://user:pw@host:port/db`), 5432 when it names none.
pub fn postgres_port(url: &str) -> u16 {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|url| url.port())
        .unwrap_or(5432)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing;

    #[test]
    fn the_smtp_port_is_the_one_the_mail_crate_dials() {
        assert_eq!(smtp_port("smtp://mail.example"), 25);
        assert_eq!(smtp_port("smtp://u:p@mail.example?tls=required"), 587);
        assert_eq!(smtp_port("smtps://mail.example"), 465);
        assert_eq!(smtp_port("smtp://mail.example:2525"), 2525);
    }

    #[test]
    fn only_the_deals_storefront_reaches_its_redis_and_redis_reaches_no_one() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let spec = redis_policy(&deal).spec.unwrap();
        assert_eq!(
            spec.pod_selector.unwrap().match_labels.unwrap(),
            deal.selector("redis")
        );
        let rule = &spec.ingress.unwrap()[0];
        let peer = &rule.from.as_ref().unwrap()[0];
        let allowed = peer
            .pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .clone()
            .unwrap();
        assert_eq!(allowed["app.kubernetes.io/component"], "storefront");
        assert_eq!(allowed["timedeal.dev/deal"], "winter-headphones");
        assert!(
            peer.namespace_selector.is_none(),
            "no other namespace may reach it"
        );
        assert_eq!(
            rule.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(6379))
        );
        assert_eq!(spec.egress, Some(vec![]));
        assert!(spec.policy_types.unwrap().contains(&"Egress".to_owned()));
    }

    fn namespaces(rule: &NetworkPolicyIngressRule) -> Vec<String> {
        rule.from
            .iter()
            .flatten()
            .filter_map(|peer| {
                peer.namespace_selector
                    .as_ref()?
                    .match_labels
                    .as_ref()?
                    .get("kubernetes.io/metadata.name")
                    .cloned()
            })
            .collect()
    }

    #[test]
    fn the_storefront_is_reached_only_through_the_ingress_and_by_the_operator() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let spec = storefront_policy(&deal, &Peers::default(), 5432, None, None)
            .spec
            .unwrap();
        let rule = &spec.ingress.unwrap()[0];
        assert_eq!(namespaces(rule), ["ingress-nginx", "timedeal-system"]);
        let operator = &rule.from.as_ref().unwrap()[1];
        assert_eq!(
            operator
                .pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["app.kubernetes.io/name"],
            "timedeal-operator",
            "not any pod of the operator's namespace"
        );
        let with_metrics = Peers {
            metrics_namespace: Some("monitoring".into()),
            ..Peers::default()
        };
        let spec_m = storefront_policy(&deal, &with_metrics, 5432, None, None)
            .spec
            .unwrap();
        assert_eq!(
            namespaces(&spec_m.ingress.unwrap()[0]),
            ["ingress-nginx", "timedeal-system", "monitoring"]
        );
        let egress = spec.egress.unwrap();
        let ports: Vec<_> = egress
            .iter()
            .flat_map(|rule| rule.ports.iter().flatten())
            .map(|p| (p.protocol.clone().unwrap(), p.port.clone().unwrap()))
            .collect();
        assert_eq!(
            ports,
            [
                ("UDP".to_owned(), IntOrString::Int(53)),
                ("TCP".to_owned(), IntOrString::Int(53)),
                ("TCP".to_owned(), IntOrString::Int(6379)),
                ("TCP".to_owned(), IntOrString::Int(5432)),
            ],
            "DNS, its Redis, PostgreSQL: nothing else"
        );
        let mailing = storefront_policy(&deal, &Peers::default(), 5432, Some(587), None);
        let last = mailing.spec.unwrap().egress.unwrap().pop().unwrap();
        assert_eq!(last.ports.unwrap()[0].port, Some(IntOrString::Int(587)));
        let beacon = storefront_policy(
            &deal,
            &Peers::default(),
            5432,
            None,
            beacon_port(timedeal_api::DRAND_QUICKNET),
        );
        let last = beacon.spec.unwrap().egress.unwrap().pop().unwrap();
        assert_eq!(
            last.ports.unwrap()[0].port,
            Some(IntOrString::Int(443)),
            "the draw's beacon is reached over HTTPS"
        );
        assert_eq!(beacon_port("none"), None);
        assert_eq!(beacon_port("http://beacon.internal:8081"), Some(8081));
        let redis_peer = &egress[1].to.as_ref().unwrap()[0];
        assert_eq!(
            redis_peer.pod_selector.as_ref().unwrap().match_labels,
            Some(deal.selector("redis"))
        );
    }

    #[test]
    fn dns_and_egress_ports_follow_the_platform() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let peers = Peers {
            dns_selector: parse_labels("").unwrap(),
            dns_ports: parse_ports("53,5353").unwrap(),
            postgres_ports: parse_ports("6432").unwrap(),
            smtp_ports: parse_ports("2525, 587").unwrap(),
            ..Peers::default()
        };
        let egress = storefront_policy(&deal, &peers, 5432, Some(587), None)
            .spec
            .unwrap()
            .egress
            .unwrap();
        let ports = |rule: &NetworkPolicyEgressRule| -> Vec<(String, IntOrString)> {
            rule.ports
                .iter()
                .flatten()
                .map(|p| (p.protocol.clone().unwrap(), p.port.clone().unwrap()))
                .collect()
        };
        assert_eq!(egress[0].to, None, "DNS anywhere: NodeLocal DNSCache");
        assert_eq!(
            ports(&egress[0]),
            [
                ("UDP".to_owned(), IntOrString::Int(53)),
                ("TCP".to_owned(), IntOrString::Int(53)),
                ("UDP".to_owned(), IntOrString::Int(5353)),
                ("TCP".to_owned(), IntOrString::Int(5353)),
            ]
        );
        assert_eq!(
            ports(&egress[2]),
            [
                ("TCP".to_owned(), IntOrString::Int(5432)),
                ("TCP".to_owned(), IntOrString::Int(6432))
            ],
            "PgBouncer's pod port behind PostgreSQL's Service"
        );
        assert_eq!(
            ports(egress.last().unwrap()),
            [
                ("TCP".to_owned(), IntOrString::Int(587)),
                ("TCP".to_owned(), IntOrString::Int(2525))
            ]
        );
        assert!(parse_ports("0").is_err() && parse_ports("http").is_err());
        assert!(""
            .parse::<DnsPorts>()
            .unwrap_err()
            .contains("at least one port"));
        assert!(parse_labels("k8s-app").unwrap_err().contains("key=value"));
        assert_eq!(
            parse_labels("k8s-app=kube-dns").unwrap(),
            Peers::default().dns_selector
        );
    }

    #[test]
    fn the_postgres_port_comes_from_the_url() {
        assert_eq!(
            postgres_port("postgres://u:p@db.platform:6432/timedeal"),
            6432
        );
        assert_eq!(postgres_port("postgres://u:p@db.platform/timedeal"), 5432);
        assert_eq!(postgres_port("postgresql://db:5433"), 5433);
        assert_eq!(postgres_port("postgres://u:p@[::1]:6000/x"), 6000);
    }
}
