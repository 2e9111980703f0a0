//! CPU and memory of each container: the deal's own amounts, completed by the operator's
//! defaults, so no pod runs without the CPU request its autoscaler divides by, and written in the
//! API server's canonical form so what is read back equals what was applied.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::ResourceRequirements, apimachinery::pkg::api::resource::Quantity as Amount,
};
use timedeal_api::{ComputeResources, ResourceAmounts};

use super::quantity::{canonical, Quantity};

/// The operator's amounts for a container whose deal gives none (operator flags, chart values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub cpu_request: String,
    pub memory_request: String,
    /// `None`: no CPU limit.
    pub cpu_limit: Option<String>,
    pub memory_limit: String,
}

impl Defaults {
    /// The storefront: a quarter of a core requested (the HPA's 100 %), bursting to one core.
    pub fn storefront() -> Self {
        Self {
            cpu_request: "250m".into(),
            memory_request: "128Mi".into(),
            cpu_limit: Some("1".into()),
            memory_limit: "256Mi".into(),
        }
    }

    /// Redis: requests equal to limits (Guaranteed QoS), so a node under pressure evicts it last.
    pub fn redis() -> Self {
        Self {
            cpu_request: "500m".into(),
            memory_request: "512Mi".into(),
            cpu_limit: Some("500m".into()),
            memory_limit: "512Mi".into(),
        }
    }
}

/// What one container gets: for each of CPU and memory, the deal's request (or, as Kubernetes
/// does, its limit when it gives only that), else the default; the deal's limit, else the default
/// limit raised to the request so the pair stays valid.
pub fn requirements(deal: Option<&ComputeResources>, defaults: &Defaults) -> ResourceRequirements {
    let given = |amounts: Option<&ResourceAmounts>, cpu: bool| {
        amounts.and_then(|a| if cpu { a.cpu.clone() } else { a.memory.clone() })
    };
    let requests_given = deal.and_then(|d| d.requests.as_ref());
    let limits_given = deal.and_then(|d| d.limits.as_ref());
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    for (name, cpu, default_request, default_limit) in [
        (
            "cpu",
            true,
            &defaults.cpu_request,
            defaults.cpu_limit.as_ref(),
        ),
        (
            "memory",
            false,
            &defaults.memory_request,
            Some(&defaults.memory_limit),
        ),
    ] {
        let limit = given(limits_given, cpu);
        let request = given(requests_given, cpu)
            .or_else(|| limit.clone())
            .unwrap_or_else(|| default_request.clone());
        let limit = limit.or_else(|| default_limit.map(|l| larger(l, &request)));
        requests.insert(name.to_owned(), Amount(canonical(&request)));
        if let Some(limit) = limit {
            limits.insert(name.to_owned(), Amount(canonical(&limit)));
        }
    }
    ResourceRequirements {
        requests: Some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        ..Default::default()
    }
}

fn larger(a: &str, b: &str) -> String {
    let value = |s: &str| Quantity::parse(s).map(|q| q.value()).unwrap_or(0.0);
    if value(b) > value(a) {
        b.to_owned()
    } else {
        a.to_owned()
    }
}

/// The memory limit in bytes, if the container has one.
pub fn memory_limit_bytes(requirements: &ResourceRequirements) -> Option<u64> {
    let limit = requirements.limits.as_ref()?.get("memory")?;
    Quantity::parse(&limit.0).ok().map(|q| q.whole())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amounts(cpu: Option<&str>, memory: Option<&str>) -> Option<ResourceAmounts> {
        Some(ResourceAmounts {
            cpu: cpu.map(Into::into),
            memory: memory.map(Into::into),
        })
    }

    fn of<'a>(map: &'a Option<BTreeMap<String, Amount>>, key: &str) -> Option<&'a str> {
        map.as_ref()?.get(key).map(|q| q.0.as_str())
    }

    #[test]
    fn a_deal_without_amounts_gets_every_default() {
        let r = requirements(None, &Defaults::storefront());
        assert_eq!(of(&r.requests, "cpu"), Some("250m"));
        assert_eq!(of(&r.requests, "memory"), Some("128Mi"));
        assert_eq!(of(&r.limits, "cpu"), Some("1"));
        assert_eq!(of(&r.limits, "memory"), Some("256Mi"));
    }

    #[test]
    fn the_deals_amounts_win_and_are_completed() {
        let deal = ComputeResources {
            requests: amounts(None, Some("1.5Gi")),
            limits: amounts(Some("1.5"), None),
        };
        let r = requirements(Some(&deal), &Defaults::storefront());
        // A limit alone is also the request, as Kubernetes reads it; canonical as stored.
        assert_eq!(of(&r.requests, "cpu"), Some("1500m"));
        assert_eq!(of(&r.limits, "cpu"), Some("1500m"));
        assert_eq!(of(&r.requests, "memory"), Some("1536Mi"));
        // The default limit (256Mi) is below the request: raised to it.
        assert_eq!(of(&r.limits, "memory"), Some("1536Mi"));
    }

    #[test]
    fn redis_defaults_are_guaranteed() {
        let r = requirements(None, &Defaults::redis());
        assert_eq!(r.requests, r.limits);
        assert_eq!(memory_limit_bytes(&r), Some(512 * 1024 * 1024));
    }

    #[test]
    fn no_default_cpu_limit_means_none() {
        let defaults = Defaults {
            cpu_limit: None,
            ..Defaults::storefront()
        };
        let r = requirements(None, &defaults);
        assert_eq!(of(&r.limits, "cpu"), None);
        assert_eq!(of(&r.requests, "cpu"), Some("250m"));
    }
}
