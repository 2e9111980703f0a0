//! What an approved company's namespace holds, built from the Company and the operator's
//! defaults: the namespace itself (Pod Security `restricted`), a ResourceQuota and LimitRange from
//! the company's quotas, a default-deny NetworkPolicy (each deal's own policies then open exactly
//! what its pods need), and the RoleBinding that lets the portal file deals there.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::{
            LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
        },
        networking::v1::{NetworkPolicy, NetworkPolicySpec},
        rbac::v1::{RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::{
        api::resource::Quantity as Amount,
        apis::meta::v1::{LabelSelector, ObjectMeta},
    },
};
use kube::{Resource, ResourceExt};
use timedeal_api::Company;

use crate::resources::{quantity::canonical, Settings};

/// The label naming the company a namespace belongs to.
pub const COMPANY_LABEL: &str = "timedeal.dev/company";
/// The label an older release's portal put on the namespaces it created for deals.
pub const LEGACY_TENANT_LABEL: &str = "timedeal.dev/tenant";
/// The annotation by which an admin hands such a namespace to a Company: its UID, so neither a
/// display name nor a later Company of the same name can claim it.
pub const ADOPT_ANNOTATION: &str = "timedeal.dev/adopt-by-company-uid";
/// The name of the quota, limit range and default-deny policy in a company's namespace.
pub const NAME: &str = "timedeal-company";
/// The RoleBinding granting the portal its rights in a company's namespace.
pub const PORTAL_BINDING: &str = "timedeal-portal";
/// The ClusterRole that binding refers to (shipped by the chart; see `rbac::portal_deals`).
pub const PORTAL_DEALS_ROLE: &str = "timedeal-portal-deals";
/// The RoleBinding granting the operator its writes in a company's namespace.
pub const OPERATOR_BINDING: &str = "timedeal-operator";
/// The ClusterRole that binding refers to (shipped by the chart; see `rbac::tenant`).
pub const OPERATOR_TENANT_ROLE: &str = "timedeal-operator-tenant";

/// Where the portal runs: the subject of every company's RoleBinding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalAccount {
    pub namespace: String,
    pub name: String,
}

impl Default for PortalAccount {
    fn default() -> Self {
        Self {
            namespace: "timedeal-system".into(),
            name: "timedeal-portal".into(),
        }
    }
}

fn labels(company: &Company) -> BTreeMap<String, String> {
    [
        (COMPANY_LABEL.to_owned(), company.name_any()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "timedeal-operator".to_owned(),
        ),
    ]
    .into()
}

fn meta(company: &Company, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(company.spec.namespace.clone()),
        labels: Some(labels(company)),
        owner_references: company.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

/// The company's namespace: Pod Security `restricted` enforced (every deal pod already meets
/// it), owned by the Company, so deleting the Company deletes its namespace and deals.
pub fn namespace(company: &Company) -> Namespace {
    let mut labels = labels(company);
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".into(),
        );
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            "latest".into(),
        );
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(company.spec.namespace.clone()),
            labels: Some(labels),
            owner_references: company.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn amount(text: String) -> Amount {
    Amount(canonical(&text))
}

/// The quota: deals, pods, volumes and compute of the company's deals together at their peak
/// (`budget::quota`): the peak storefront replicas plus, per deal, its Redis and one pod of
/// rollout surge, at the operator's default requests and limits.
pub fn resource_quota(company: &Company, settings: &Settings) -> ResourceQuota {
    let deals = company.spec.quotas.max_deals.max(1) as u64;
    let total = super::budget::quota(company, settings);
    let hard: BTreeMap<String, Amount> = [
        (
            "count/timedeals.timedeal.dev".to_owned(),
            amount(deals.to_string()),
        ),
        ("pods".into(), amount(total.pods.to_string())),
        ("persistentvolumeclaims".into(), amount(deals.to_string())),
        ("services.loadbalancers".into(), amount("0".into())),
        ("services.nodeports".into(), amount("0".into())),
        (
            "requests.cpu".into(),
            amount(format!("{}m", total.cpu_requests)),
        ),
        (
            "requests.memory".into(),
            amount(format!("{}Mi", total.memory_requests)),
        ),
        (
            "limits.memory".into(),
            amount(format!("{}Mi", total.memory_limits)),
        ),
    ]
    .into();
    ResourceQuota {
        metadata: meta(company, NAME),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Requests and limits for any container that names none, so the quota never refuses a pod for
/// lacking them; the deal's own containers always carry theirs. No CPU limit unless the operator
/// sets one (`budget::container_defaults`).
pub fn limit_range(company: &Company, settings: &Settings) -> LimitRange {
    let (requests, limits) = super::budget::container_defaults(settings);
    let amounts = |pairs: BTreeMap<String, String>| -> BTreeMap<String, Amount> {
        pairs.into_iter().map(|(k, v)| (k, amount(v))).collect()
    };
    LimitRange {
        metadata: meta(company, NAME),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default_request: Some(amounts(requests)),
                default: (!limits.is_empty()).then(|| amounts(limits)),
                ..Default::default()
            }],
        }),
    }
}

/// Nothing reaches a pod, and no pod reaches anything, unless a deal's own policy says so.
pub fn default_deny(company: &Company) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta(company, NAME),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ..Default::default()
        }),
    }
}

/// The portal may create, read and withdraw TimeDeals here, and nothing else.
pub fn portal_binding(company: &Company, portal: &PortalAccount) -> RoleBinding {
    RoleBinding {
        metadata: meta(company, PORTAL_BINDING),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: PORTAL_DEALS_ROLE.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: portal.name.clone(),
            namespace: Some(portal.namespace.clone()),
            ..Default::default()
        }]),
    }
}

/// The operator's own rights in the company's namespace: its ServiceAccount (`operator`), bound
/// to the tenant ClusterRole here only, so its writes to Secrets, workloads and policies reach
/// company namespaces and nowhere else.
pub fn operator_binding(company: &Company, operator: &PortalAccount) -> RoleBinding {
    RoleBinding {
        metadata: meta(company, OPERATOR_BINDING),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: OPERATOR_TENANT_ROLE.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: operator.name.clone(),
            namespace: Some(operator.namespace.clone()),
            ..Default::default()
        }]),
    }
}

/// Whether the operator may take `namespace` for `company`: it is new, already the company's, or
/// a tenant namespace an older release's portal created, which an admin handed to this very
/// Company by its UID (`ADOPT_ANNOTATION`). A matching name alone is never enough: sign-up
/// verifies neither who a company is nor its email.
pub fn may_take(namespace: Option<&Namespace>, company: &Company) -> bool {
    let Some(namespace) = namespace else {
        return true;
    };
    let owned = namespace
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == company.meta().uid.as_ref());
    let legacy_tenant = namespace
        .labels()
        .get(LEGACY_TENANT_LABEL)
        .is_some_and(|v| v == "true")
        && namespace.owner_references().is_empty();
    let handed_over = company.meta().uid.as_ref().is_some_and(|uid| {
        namespace
            .annotations()
            .get(ADOPT_ANNOTATION)
            .is_some_and(|named| named == uid)
    });
    owned || (legacy_tenant && handed_over)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn company() -> Company {
        let mut company = Company::new(
            "acme",
            timedeal_api::CompanySpec {
                display_name: "Acme".into(),
                contact_email: "sales@acme.test".into(),
                namespace: "company-acme".into(),
                approved: true,
                quotas: timedeal_api::CompanyQuotas {
                    max_deals: 2,
                    max_peak_replicas: 10,
                    max_stock: 1000,
                },
                hosts: Vec::new(),
            },
        );
        company.metadata.uid = Some("uid-acme".into());
        company
    }

    #[test]
    fn the_namespace_enforces_restricted_pod_security_and_belongs_to_the_company() {
        let ns = namespace(&company());
        let labels = ns.labels();
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
        assert_eq!(labels[COMPANY_LABEL], "acme");
        assert_eq!(ns.owner_references()[0].uid, "uid-acme");
        assert_eq!(ns.owner_references()[0].kind, "Company");
    }

    #[test]
    fn the_quota_counts_peak_storefronts_redis_and_surge_at_the_default_requests() {
        let quota = resource_quota(&company(), &Settings::with_images("s", "r"));
        let hard = quota.spec.unwrap().hard.unwrap();
        let get = |k: &str| hard[k].0.clone();
        assert_eq!(get("count/timedeals.timedeal.dev"), "2");
        // 10 peak + 2 surge storefronts, 2 Redis.
        assert_eq!(get("pods"), "14");
        // 12 × 250m + 2 × 500m
        assert_eq!(get("requests.cpu"), "4");
        // 12 × 128Mi + 2 × 512Mi = 2560Mi
        assert_eq!(get("requests.memory"), "2560Mi");
        assert_eq!(get("services.loadbalancers"), "0");
    }

    #[test]
    fn only_a_new_own_or_legacy_tenant_namespace_may_be_taken() {
        let acme = company();
        assert!(may_take(None, &acme));
        assert!(may_take(Some(&namespace(&acme)), &acme));
        let foreign = Namespace {
            metadata: ObjectMeta {
                name: Some("company-acme".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(!may_take(Some(&foreign), &acme), "kube-system, say");
        let mut other = acme.clone();
        other.metadata.uid = Some("uid-other".into());
        assert!(!may_take(Some(&namespace(&other)), &acme));
        let mut legacy = foreign.clone();
        legacy.metadata.labels = Some([(LEGACY_TENANT_LABEL.into(), "true".into())].into());
        assert!(
            !may_take(Some(&legacy), &acme),
            "a squatter with the same name does not get it"
        );
        legacy.metadata.annotations = Some([(ADOPT_ANNOTATION.into(), "uid-other".into())].into());
        assert!(!may_take(Some(&legacy), &acme), "handed to another Company");
        legacy.metadata.annotations = Some([(ADOPT_ANNOTATION.into(), "uid-acme".into())].into());
        assert!(
            may_take(Some(&legacy), &acme),
            "handed to this one by an admin"
        );
    }
}
