//! Autoscaling and disruption: the storefront's HorizontalPodAutoscaler (floor raised for the
//! warm-up, see `phase::scale_at`; quick to grow, slow to shrink) and its PodDisruptionBudget.

use k8s_openapi::{
    api::{
        autoscaling::v2::{
            CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules,
            HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec,
            MetricSpec, MetricTarget, ResourceMetricSource,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::{storefront, Deal};

pub fn hpa(deal: &Deal, floor: i32, max: i32) -> HorizontalPodAutoscaler {
    HorizontalPodAutoscaler {
        metadata: deal.meta("storefront", storefront::COMPONENT),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: deal.child("storefront"),
            },
            min_replicas: Some(floor),
            max_replicas: max,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(deal.td.spec.capacity.target_cpu_utilization),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            behavior: Some(spike()),
        }),
        ..Default::default()
    }
}

/// A flash sale's traffic arrives in seconds and leaves in minutes: scale up at once (doubling,
/// or four pods, every 15 s, whichever is more), scale down only after five calm minutes and by
/// a tenth a minute, so a lull between waves does not shed the capacity the next wave needs.
fn spike() -> HorizontalPodAutoscalerBehavior {
    let policy = |type_: &str, value, period_seconds| HPAScalingPolicy {
        type_: type_.into(),
        value,
        period_seconds,
    };
    HorizontalPodAutoscalerBehavior {
        scale_up: Some(HPAScalingRules {
            stabilization_window_seconds: Some(0),
            select_policy: Some("Max".into()),
            policies: Some(vec![policy("Percent", 100, 15), policy("Pods", 4, 15)]),
        }),
        scale_down: Some(HPAScalingRules {
            stabilization_window_seconds: Some(300),
            select_policy: Some("Min".into()),
            policies: Some(vec![policy("Percent", 10, 60)]),
        }),
    }
}

/// A drain may take a quarter of the storefront pods at a time (at least one), and always an
/// unready one; with a floor below two replicas there is no budget, since keeping the only pod
/// would block the drain outright.
pub fn pdb(deal: &Deal, floor: i32) -> Option<PodDisruptionBudget> {
    (floor >= 2).then(|| PodDisruptionBudget {
        metadata: deal.meta("storefront", storefront::COMPONENT),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::String("25%".into())),
            selector: Some(deal.pod_selector(storefront::COMPONENT)),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing;

    #[test]
    fn the_hpa_scales_the_storefront_on_cpu_between_floor_and_max() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let spec = hpa(&deal, 6, 20).spec.unwrap();
        assert_eq!(spec.scale_target_ref.name, "winter-headphones-storefront");
        assert_eq!(spec.scale_target_ref.kind, "Deployment");
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(6), 20));
        let metric = &spec.metrics.unwrap()[0];
        let target = &metric.resource.as_ref().unwrap().target;
        assert_eq!(target.average_utilization, Some(60));
        let behavior = spec.behavior.unwrap();
        let up = behavior.scale_up.unwrap();
        assert_eq!(up.stabilization_window_seconds, Some(0));
        assert!(up.policies.unwrap().iter().all(|p| p.period_seconds <= 15));
        let down = behavior.scale_down.unwrap();
        assert!(down.stabilization_window_seconds.unwrap() >= 300);
    }

    #[test]
    fn the_pdb_never_blocks_a_drain_it_need_not_block() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        assert!(pdb(&deal, 1).is_none(), "one pod: no budget");
        let spec = pdb(&deal, 2).unwrap().spec.unwrap();
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.max_unavailable,
            Some(IntOrString::String("25%".into()))
        );
        assert_eq!(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap(),
            deal.selector(storefront::COMPONENT)
        );
    }
}
