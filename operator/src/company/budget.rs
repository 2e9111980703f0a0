//! One budget for a company: the ResourceQuota of its namespace, the LimitRange that fills in
//! what a container leaves out, and the gate that admits its deals are all derived here, so a
//! deal the gate admits is never refused pods by the quota at its spike.
//!
//! A deal at its peak runs `maxReplicas` storefront pods (the autoscaler may go that far), one
//! more while a rollout surges (the storefront Deployment surges by one), and its Redis, each at
//! its actual requests: the deal's own `appResources`/`redisResources`, else the operator's.

use k8s_openapi::api::core::v1::ResourceRequirements;
use timedeal_api::{Company, TimeDealSpec};

use crate::resources::{compute, quantity::Quantity, Settings};

/// Pods and compute, in whole units the quota counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub pods: u64,
    /// Millicores requested.
    pub cpu_requests: u64,
    /// Mebibytes requested.
    pub memory_requests: u64,
    /// Mebibytes of memory limits.
    pub memory_limits: u64,
}

impl std::ops::Add for Footprint {
    type Output = Footprint;
    fn add(self, other: Footprint) -> Footprint {
        Footprint {
            pods: self.pods + other.pods,
            cpu_requests: self.cpu_requests + other.cpu_requests,
            memory_requests: self.memory_requests + other.memory_requests,
            memory_limits: self.memory_limits + other.memory_limits,
        }
    }
}

impl std::ops::Mul<u64> for Footprint {
    type Output = Footprint;
    fn mul(self, n: u64) -> Footprint {
        Footprint {
            pods: self.pods * n,
            cpu_requests: self.cpu_requests * n,
            memory_requests: self.memory_requests * n,
            memory_limits: self.memory_limits * n,
        }
    }
}

fn millis(text: &str) -> u64 {
    (Quantity::parse(text).map(|q| q.value()).unwrap_or(0.0) * 1000.0).ceil() as u64
}

fn mebibytes(text: &str) -> u64 {
    (Quantity::parse(text).map(|q| q.value()).unwrap_or(0.0) / (1024.0 * 1024.0)).ceil() as u64
}

/// One pod of a container with these requirements.
fn pod(requirements: &ResourceRequirements) -> Footprint {
    let get = |part: &Option<std::collections::BTreeMap<String, _>>, name: &str| {
        part.as_ref()
            .and_then(|amounts| amounts.get(name))
            .map(|a: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| a.0.clone())
            .unwrap_or_default()
    };
    Footprint {
        pods: 1,
        cpu_requests: millis(&get(&requirements.requests, "cpu")),
        memory_requests: mebibytes(&get(&requirements.requests, "memory")),
        memory_limits: mebibytes(&get(&requirements.limits, "memory")),
    }
}

/// One storefront pod and one Redis pod at the operator's default amounts.
fn default_pods(settings: &Settings) -> (Footprint, Footprint) {
    (
        pod(&compute::requirements(None, &settings.storefront_resources)),
        pod(&compute::requirements(None, &settings.redis_resources)),
    )
}

/// A deal at its peak: `maxReplicas` storefronts and one of surge, and its Redis, at its own
/// amounts.
pub fn deal(spec: &TimeDealSpec, settings: &Settings) -> Footprint {
    let capacity = &spec.capacity;
    let storefront = pod(&compute::requirements(
        capacity.app_resources.as_ref(),
        &settings.storefront_resources,
    ));
    let redis = pod(&compute::requirements(
        capacity.redis_resources.as_ref(),
        &settings.redis_resources,
    ));
    storefront * (capacity.max_replicas.max(1) as u64 + 1) + redis
}

/// What the company's quota holds: `maxPeakReplicas` storefronts at their peak, and per deal
/// one of surge and a Redis, at the operator's default amounts.
pub fn quota(company: &Company, settings: &Settings) -> Footprint {
    let quotas = &company.spec.quotas;
    let deals = quotas.max_deals.max(1) as u64;
    let (storefront, redis) = default_pods(settings);
    storefront * (quotas.max_peak_replicas.max(1) as u64 + deals) + redis * deals
}

/// Why a deal does not fit the company's quota, naming the first amount it exceeds; none when
/// it fits.
pub fn exceeds(spec: &TimeDealSpec, company: &Company, settings: &Settings) -> Option<String> {
    let need = deal(spec, settings);
    let have = quota(company, settings);
    let over = [
        ("pods", need.pods, have.pods, ""),
        ("requests.cpu", need.cpu_requests, have.cpu_requests, "m"),
        (
            "requests.memory",
            need.memory_requests,
            have.memory_requests,
            "Mi",
        ),
        (
            "limits.memory",
            need.memory_limits,
            have.memory_limits,
            "Mi",
        ),
    ]
    .into_iter()
    .find(|(_, need, have, _)| need > have)?;
    let (what, need, have, unit) = over;
    Some(format!(
        "at capacity.maxReplicas ({}) with one pod of rollout surge and its Redis, the deal \
         needs {what} {need}{unit} but the Company {}'s quota holds {have}{unit}: lower \
         capacity.maxReplicas or capacity.appResources, or raise quotas.maxPeakReplicas",
        spec.capacity.max_replicas,
        company.metadata.name.as_deref().unwrap_or_default(),
    ))
}

/// The LimitRange's amounts for a container that names none: the storefront's default requests,
/// and limits only where the operator sets one (never a CPU limit it does not set), each at
/// least its request so the pair is valid.
pub fn container_defaults(
    settings: &Settings,
) -> (
    std::collections::BTreeMap<String, String>,
    std::collections::BTreeMap<String, String>,
) {
    let web = compute::requirements(None, &settings.storefront_resources);
    let amounts = |part: Option<std::collections::BTreeMap<String, _>>| {
        part.unwrap_or_default()
            .into_iter()
            .map(
                |(k, v): (
                    String,
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity,
                )| { (k, v.0) },
            )
            .collect()
    };
    (amounts(web.requests), amounts(web.limits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{compute::Defaults, testing};

    fn company(max_peak: i32, max_deals: i32) -> Company {
        let mut company = Company::new(
            "acme",
            timedeal_api::CompanySpec {
                display_name: "ACME".into(),
                contact_email: "sales@acme.test".into(),
                namespace: "acme".into(),
                approved: true,
                quotas: timedeal_api::CompanyQuotas {
                    max_peak_replicas: max_peak,
                    max_deals,
                    ..Default::default()
                },
                hosts: vec![],
            },
        );
        company.metadata.uid = Some("uid".into());
        company
    }

    /// The sample deal at the operator's default sizes, going up to `max_replicas`.
    fn at_defaults(max_replicas: i32) -> TimeDealSpec {
        let mut spec = testing::sample().spec;
        spec.capacity.max_replicas = max_replicas;
        spec.capacity.app_resources = None;
        spec.capacity.redis_resources = None;
        spec
    }

    #[test]
    fn a_deal_at_the_defaults_within_max_peak_replicas_fits() {
        let settings = testing::settings();
        let spec = at_defaults(40);
        assert_eq!(exceeds(&spec, &company(40, 1), &settings), None);
        let one = deal(&spec, &settings);
        assert_eq!(one.pods, 40 + 1 + 1);
        assert_eq!(quota(&company(40, 1), &settings), one, "exactly the quota");
    }

    #[test]
    fn max_replicas_beyond_the_quota_is_refused_naming_pods() {
        let settings = testing::settings();
        let why = exceeds(&at_defaults(41), &company(40, 1), &settings).unwrap();
        assert!(why.contains("needs pods 43 but"), "{why}");
    }

    #[test]
    fn bigger_storefronts_are_counted_at_their_own_requests() {
        let settings = testing::settings();
        let mut spec = at_defaults(20);
        spec.capacity.app_resources = Some(timedeal_api::ComputeResources {
            requests: Some(timedeal_api::ResourceAmounts {
                cpu: Some("1".into()),
                memory: None,
            }),
            limits: None,
        });
        let why = exceeds(&spec, &company(40, 1), &settings).unwrap();
        assert!(why.contains("requests.cpu 21500m"), "{why}");
    }

    #[test]
    fn the_limit_range_never_invents_a_cpu_limit_and_its_pairs_are_valid() {
        let mut settings = testing::settings();
        settings.storefront_resources = Defaults {
            cpu_request: "250m".into(),
            memory_request: "512Mi".into(),
            cpu_limit: None,
            memory_limit: "256Mi".into(),
        };
        let (requests, limits) = container_defaults(&settings);
        assert_eq!(requests["cpu"], "250m");
        assert!(!limits.contains_key("cpu"), "no CPU limit: {limits:?}");
        assert_eq!(limits["memory"], "512Mi", "raised to the request");
    }
}
