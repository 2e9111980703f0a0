//! Autoscaling and disruption: the storefront's HorizontalPodAutoscaler (floor raised for the
//! warm-up, see `phase::scale_at`) and its PodDisruptionBudget.

use k8s_openapi::{
    api::{
        autoscaling::v2::{
            CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
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
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Voluntary disruptions (node drains) keep at least one storefront pod serving.
pub fn pdb(deal: &Deal) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: deal.meta("storefront", storefront::COMPONENT),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(deal.pod_selector(storefront::COMPONENT)),
            ..Default::default()
        }),
        ..Default::default()
    }
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
    }

    #[test]
    fn the_pdb_keeps_one_storefront_pod() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let spec = pdb(&deal).spec.unwrap();
        assert_eq!(spec.min_available, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap(),
            deal.selector(storefront::COMPONENT)
        );
    }
}
