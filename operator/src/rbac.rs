//! The exact permissions the operator's code uses, as a ClusterRole (deals and their children, in
//! every namespace) and a Role (its leader Lease and the platform PostgreSQL Secret, in its own
//! namespace). `timedeal-operator rbac` prints them; `manifests/base/rbac.yaml` is that output, and a
//! test fails when it is stale.
//!
//! What each rule is for:
//! - timedeals: the controller lists and watches them; the finalizer is added and removed with
//!   a patch; `timedeals/status` is patched with the phase, conditions and figures.
//! - deployments, statefulsets, services, horizontalpodautoscalers, ingresses,
//!   poddisruptionbudgets, networkpolicies: read before apply (get), watched as owned children
//!   (list, watch), applied server-side (create, patch). The HPA is deleted after retention, the
//!   PodDisruptionBudgets when they no longer apply, and the Redis Deployment of older releases
//!   once the StatefulSet replaces it.
//! - pods: listed (by the deal's label) when a deal's replicas are not all ready, to say why.
//! - configmaps: watched as owned children (list, watch), applied (create, patch).
//! - secrets: read before apply (get) and applied (create, patch). Never listed or watched: the
//!   operator has no business reading other Secrets.
//! - events: published (create) and aggregated into series (patch).
//! - leases (own namespace): leader election reads, creates and renews (a compare-and-swap
//!   update) one Lease.
//! - the platform PostgreSQL Secret (own namespace): read by name. The SMTP Secret of email
//!   reminders, when configured, is read the same way (the cluster-wide `get` on Secrets covers
//!   it, as it covers the deals' own).
//! - companies: watched (the deal gate and the company controller); `companies/status` patched.
//! - namespaces, resourcequotas, limitranges, rolebindings: an approved company's namespace and
//!   what it holds, read and applied server-side; `bind` on the ClusterRole
//!   `timedeal-portal-deals` lets the operator grant it to the portal in that namespace.
//! - the Secret `timedeal-portal` (own namespace): the portal's session key, read by name and
//!   made on first start (create cannot be narrowed to one name).
//! - the directory's ClusterRole (`directory`): it lists TimeDeals in every namespace and shows
//!   the approved ones; nothing else.
//! - the portal's own ClusterRoles (`portal`, `portal_deals`) are what the portal calls: it
//!   creates and reads Companies, and in each approved company's namespace creates, reads and
//!   deletes TimeDeals. No Secrets, no Namespaces.

use k8s_openapi::{
    api::rbac::v1::{ClusterRole, PolicyRule, Role},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

/// The name of the ClusterRole, the Role and the Lease.
pub const NAME: &str = "timedeal-operator";
/// The portal's ClusterRole (bound cluster-wide) and the one bound in each company's namespace.
pub const PORTAL: &str = "timedeal-portal";
pub const PORTAL_DEALS: &str = crate::company::tenancy::PORTAL_DEALS_ROLE;
/// The deal directory's ClusterRole.
pub const DIRECTORY: &str = "timedeal-directory";

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

fn named(group: &str, resource: &str, name: &str, verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        resource_names: Some(vec![name.into()]),
        ..rule(group, &[resource], verbs)
    }
}

/// Permissions in every namespace that holds deals.
pub fn cluster_role() -> ClusterRole {
    const CHILD: &[&str] = &["get", "list", "watch", "create", "patch"];
    const REMOVABLE: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            ..Default::default()
        },
        rules: Some(vec![
            rule(
                "timedeal.dev",
                &["timedeals"],
                &["get", "list", "watch", "patch"],
            ),
            rule("", &["namespaces"], &["get", "create", "patch"]),
            rule("timedeal.dev", &["timedeals/status"], &["get", "patch"]),
            rule("timedeal.dev", &["companies"], &["get", "list", "watch"]),
            rule("timedeal.dev", &["companies/status"], &["get", "patch"]),
            rule(
                "",
                &["resourcequotas", "limitranges"],
                &["get", "create", "patch"],
            ),
            rule(
                "rbac.authorization.k8s.io",
                &["rolebindings"],
                &["get", "create", "patch"],
            ),
            named(
                "rbac.authorization.k8s.io",
                "clusterroles",
                PORTAL_DEALS,
                &["bind"],
            ),
            rule("apps", &["deployments"], REMOVABLE),
            rule("apps", &["statefulsets"], CHILD),
            rule("", &["services"], CHILD),
            rule("", &["pods"], &["list"]),
            rule("autoscaling", &["horizontalpodautoscalers"], REMOVABLE),
            rule(
                "networking.k8s.io",
                &["ingresses", "networkpolicies"],
                CHILD,
            ),
            rule("policy", &["poddisruptionbudgets"], REMOVABLE),
            rule("", &["configmaps"], CHILD),
            rule("", &["secrets"], &["get", "create", "patch"]),
            rule("events.k8s.io", &["events"], &["create", "patch"]),
        ]),
        ..Default::default()
    }
}

/// The portal's rights in one company's namespace, granted there by the RoleBinding the operator
/// makes on approval: file a deal, read the company's deals, withdraw a pending one.
pub fn portal_deals() -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(PORTAL_DEALS.into()),
            ..Default::default()
        },
        rules: Some(vec![rule(
            "timedeal.dev",
            &["timedeals"],
            &["get", "list", "create", "delete"],
        )]),
        ..Default::default()
    }
}

/// The deal directory's rights: it lists TimeDeals, in every namespace, to show the approved
/// ones. Nothing else, not even `get`.
pub fn directory() -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(DIRECTORY.into()),
            ..Default::default()
        },
        rules: Some(vec![rule("timedeal.dev", &["timedeals"], &["list"])]),
        ..Default::default()
    }
}

/// The portal's rights across the cluster: sign-up files an unapproved Company; pages read
/// Companies. No Secrets, no Namespaces.
pub fn portal() -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(PORTAL.into()),
            ..Default::default()
        },
        rules: Some(vec![rule(
            "timedeal.dev",
            &["companies"],
            &["get", "create"],
        )]),
        ..Default::default()
    }
}

/// Permissions in the operator's own namespace.
pub fn role(namespace: &str, postgres_secret: &str) -> Role {
    Role {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        rules: Some(vec![
            rule("coordination.k8s.io", &["leases"], &["create"]),
            named("coordination.k8s.io", "leases", NAME, &["get", "update"]),
            named("", "secrets", postgres_secret, &["get"]),
            named("", "secrets", crate::portal_keys::SECRET, &["get"]),
            rule("", &["secrets"], &["create"]),
        ]),
    }
}

/// Both, as the YAML committed in `manifests/base/rbac.yaml` (for the defaults: namespace
/// `timedeal-system`, Secret `timedeal-postgres`).
pub fn yaml(namespace: &str, postgres_secret: &str) -> String {
    format!(
        "# Generated by `timedeal-operator rbac`. Do not edit.\n{}---\n{}---\n{}---\n{}---\n{}",
        serde_yaml::to_string(&cluster_role()).expect("a ClusterRole serialises"),
        serde_yaml::to_string(&role(namespace, postgres_secret)).expect("a Role serialises"),
        serde_yaml::to_string(&portal()).expect("a ClusterRole serialises"),
        serde_yaml::to_string(&portal_deals()).expect("a ClusterRole serialises"),
        serde_yaml::to_string(&directory()).expect("a ClusterRole serialises"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(
        rules: &[PolicyRule],
        group: &str,
        resource: &str,
        name: Option<&str>,
        verb: &str,
    ) -> bool {
        rules.iter().any(|rule| {
            rule.api_groups
                .as_ref()
                .is_some_and(|g| g.iter().any(|g| g == group))
                && rule
                    .resources
                    .as_ref()
                    .is_some_and(|r| r.iter().any(|r| r == resource))
                && rule.verbs.iter().any(|v| v == verb)
                && rule
                    .resource_names
                    .as_ref()
                    .is_none_or(|names| name.is_some_and(|n| names.iter().any(|x| x == n)))
        })
    }

    /// Every call the operator makes, as (group, resource, name, verb).
    const CALLS: &[(&str, &str, Option<&str>, &str)] = &[
        ("timedeal.dev", "timedeals", None, "list"),
        ("timedeal.dev", "timedeals", None, "watch"),
        ("timedeal.dev", "timedeals", None, "patch"),
        ("timedeal.dev", "timedeals/status", None, "patch"),
        ("", "namespaces", None, "create"),
        ("", "namespaces", None, "get"),
        ("", "namespaces", None, "patch"),
        ("timedeal.dev", "companies", None, "watch"),
        ("timedeal.dev", "companies/status", None, "patch"),
        ("", "resourcequotas", None, "patch"),
        ("", "limitranges", None, "get"),
        ("rbac.authorization.k8s.io", "rolebindings", None, "patch"),
        (
            "rbac.authorization.k8s.io",
            "clusterroles",
            Some(PORTAL_DEALS),
            "bind",
        ),
        ("apps", "deployments", None, "patch"),
        ("apps", "deployments", None, "delete"),
        ("apps", "statefulsets", None, "watch"),
        ("apps", "statefulsets", None, "patch"),
        ("", "pods", None, "list"),
        ("policy", "poddisruptionbudgets", None, "delete"),
        ("", "configmaps", None, "watch"),
        ("autoscaling", "horizontalpodautoscalers", None, "delete"),
        ("", "secrets", None, "get"),
        ("", "configmaps", None, "patch"),
        ("events.k8s.io", "events", None, "create"),
    ];

    #[test]
    fn every_call_the_code_makes_is_granted() {
        let cluster = cluster_role().rules.unwrap();
        for (group, resource, name, verb) in CALLS {
            assert!(
                allows(&cluster, group, resource, *name, verb),
                "{verb} {group}/{resource}"
            );
        }
        let own = role("timedeal-system", "timedeal-postgres").rules.unwrap();
        for (resource, name, verb) in [
            ("leases", Some(NAME), "get"),
            ("leases", Some(NAME), "update"),
            ("leases", None, "create"),
        ] {
            assert!(
                allows(&own, "coordination.k8s.io", resource, name, verb),
                "{verb} {resource}"
            );
        }
        assert!(allows(
            &own,
            "",
            "secrets",
            Some("timedeal-postgres"),
            "get"
        ));
        assert!(allows(
            &own,
            "",
            "secrets",
            Some(crate::portal_keys::SECRET),
            "get"
        ));
        assert!(allows(&own, "", "secrets", None, "create"));
        assert!(!allows(&own, "", "secrets", Some("someone-elses"), "get"));
        assert!(
            !allows(&cluster, "", "secrets", None, "list"),
            "Secrets are never listed"
        );
    }
}
