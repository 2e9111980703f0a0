//! Isolation: only the deal's own storefront pods may reach the deal's Redis.

use k8s_openapi::{
    api::networking::v1::{
        NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
        NetworkPolicySpec,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::{redis, storefront, Deal};

pub fn redis_policy(deal: &Deal) -> NetworkPolicy {
    NetworkPolicy {
        metadata: deal.meta("redis", redis::COMPONENT),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(deal.pod_selector(redis::COMPONENT)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(deal.pod_selector(storefront::COMPONENT)),
                    ..Default::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(redis::PORT)),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
            }]),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing;

    #[test]
    fn only_the_deals_storefront_reaches_its_redis() {
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
    }
}
