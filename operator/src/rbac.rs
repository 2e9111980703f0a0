//! The exact permissions the operator's code uses, as a ClusterRole (reading what it caches,
//! keeping TimeDeals and Companies, onboarding a company), a ClusterRole bound only in each
//! approved company's namespace (`tenant`: the deals' children, Secrets and the namespace's
//! policies), and a Role (its leader Lease and the platform PostgreSQL Secret, in its own
//! namespace). `timedeal-operator rbac` prints them; `manifests/base/rbac.yaml` is that output, and a
//! test fails when it is stale.
//!
//! What each rule is for:
//! - timedeals: the controller lists and watches them; the finalizer is added and removed with
//!   a patch; `timedeals/status` is patched with the phase, conditions and figures.
//! - deployments, statefulsets, services, horizontalpodautoscalers, ingresses,
//!   poddisruptionbudgets, networkpolicies: read before apply (get) and watched as owned children
//!   (list, watch) everywhere; applied server-side (create, patch) in company namespaces only. The
//!   HPA is deleted after retention, the PodDisruptionBudgets when they no longer apply, the
//!   public head's own Ingress when the platform stops caching it, and the Redis Deployment of
//!   older releases once the StatefulSet replaces it.
//! - pods: listed (by the deal's label) when a deal's replicas are not all ready, to say why.
//! - configmaps: watched as owned children (list, watch), applied (create, patch) in company
//!   namespaces.
//! - secrets: read before apply (get) and applied (create, patch), in company namespaces only.
//!   Never listed or watched, and never read elsewhere: the operator has no business with other
//!   Secrets.
//! - events: published (create) and aggregated into series (patch).
//! - leases (own namespace): leader election reads, creates and renews (a compare-and-swap
//!   update) one Lease.
//! - the platform PostgreSQL Secret (own namespace): read by name. The SMTP Secret of email
//!   reminders, when configured, is read the same way.
//! - companies: watched (the deal gate and the company controller); `companies/status` patched.
//! - namespaces, rolebindings: an approved company's namespace and its two RoleBindings, read and
//!   applied server-side; `bind` on the ClusterRoles `timedeal-portal-deals` and
//!   `timedeal-operator-tenant` lets the operator grant them, in that namespace, to the portal
//!   and to itself. The namespace's quota and limits are read everywhere and written through the
//!   tenant role.
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
/// The Secret holding the SMTP URL of email reminders (the chart's `mail.smtpSecretName`), read
/// by name in the operator's namespace.
pub const SMTP_SECRET: &str = "timedeal-smtp";
/// The deal directory's ClusterRole.
pub const DIRECTORY: &str = "timedeal-directory";
/// The operator's rights in each approved company's namespace (bound there, never cluster-wide).
pub const TENANT: &str = crate::company::tenancy::OPERATOR_TENANT_ROLE;

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

/// Permissions across the cluster: read and watch what the operator caches, keep TimeDeals and
/// Companies, and onboard a company (its namespace, and the RoleBindings that give the portal
/// and the operator itself their rights there). No write to Secrets, workloads or policies:
/// those go through [`tenant`], bound in each approved company's namespace only.
pub fn cluster_role() -> ClusterRole {
    const CACHED: &[&str] = &["get", "list", "watch"];
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
            rule("", &["resourcequotas", "limitranges"], &["get"]),
            rule(
                "rbac.authorization.k8s.io",
                &["rolebindings"],
                &["get", "create", "patch"],
            ),
            PolicyRule {
                resource_names: Some(vec![PORTAL_DEALS.into(), TENANT.into()]),
                ..rule("rbac.authorization.k8s.io", &["clusterroles"], &["bind"])
            },
            rule("apps", &["deployments", "statefulsets"], CACHED),
            rule("", &["services", "configmaps"], CACHED),
            rule("", &["pods"], &["list"]),
            rule("autoscaling", &["horizontalpodautoscalers"], CACHED),
            rule(
                "networking.k8s.io",
                &["ingresses", "networkpolicies"],
                CACHED,
            ),
            rule("policy", &["poddisruptionbudgets"], CACHED),
            rule("events.k8s.io", &["events"], &["create", "patch"]),
        ]),
        ..Default::default()
    }
}

/// What the operator writes in one approved company's namespace, granted there by the
/// RoleBinding it makes on approval (`company::tenancy::operator_binding`): each deal's children
/// and Secrets, and the namespace's quota, limits and default-deny policy.
pub fn tenant() -> ClusterRole {
    const WRITE: &[&str] = &["create", "patch"];
    const REMOVABLE: &[&str] = &["create", "patch", "delete"];
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(TENANT.into()),
            ..Default::default()
        },
        rules: Some(vec![
            rule("apps", &["deployments"], REMOVABLE),
            rule("apps", &["statefulsets"], WRITE),
            rule("", &["services", "configmaps"], WRITE),
            rule("autoscaling", &["horizontalpodautoscalers"], REMOVABLE),
            rule("networking.k8s.io", &["ingresses"], REMOVABLE),
            rule("networking.k8s.io", &["networkpolicies"], WRITE),
            rule("policy", &["poddisruptionbudgets"], REMOVABLE),
            rule("", &["secrets"], &["get", "create", "patch"]),
            rule("", &["resourcequotas", "limitranges"], WRITE),
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
            named("", "secrets", SMTP_SECRET, &["get"]),
            rule("", &["secrets"], &["create"]),
        ]),
    }
}

/// Both, as the YAML committed in `manifests/base/rbac.yaml` (for the defaults: namespace
/// `timedeal-system`, Secret `timedeal-postgres`).
pub fn yaml(namespace: &str, postgres_secret: &str) -> String {
    format!(
        "# Generated by `timedeal-operator rbac`. Do not edit.\n{}---\n{}---\n{}---\n{}---\n{}---\n{}",
        serde_yaml::to_string(&cluster_role()).expect("a ClusterRole serialises"),
        serde_yaml::to_string(&tenant()).expect("a ClusterRole serialises"),
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

    /// Every call the operator makes anywhere in the cluster, as (group, resource, name, verb).
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
        ("", "resourcequotas", None, "get"),
        ("", "limitranges", None, "get"),
        ("rbac.authorization.k8s.io", "rolebindings", None, "patch"),
        // A server-side apply that makes the object needs create as well.
        ("rbac.authorization.k8s.io", "rolebindings", None, "create"),
        (
            "rbac.authorization.k8s.io",
            "clusterroles",
            Some(PORTAL_DEALS),
            "bind",
        ),
        (
            "rbac.authorization.k8s.io",
            "clusterroles",
            Some(TENANT),
            "bind",
        ),
        // The children the controller owns, watched in every namespace.
        ("apps", "statefulsets", None, "watch"),
        ("apps", "deployments", None, "watch"),
        ("", "services", None, "watch"),
        ("autoscaling", "horizontalpodautoscalers", None, "watch"),
        ("networking.k8s.io", "ingresses", None, "watch"),
        ("networking.k8s.io", "networkpolicies", None, "watch"),
        ("policy", "poddisruptionbudgets", None, "watch"),
        ("", "pods", None, "list"),
        ("", "configmaps", None, "watch"),
        ("events.k8s.io", "events", None, "create"),
    ];

    /// Every call it makes in a company's namespace only.
    const TENANT_CALLS: &[(&str, &str, Option<&str>, &str)] = &[
        ("apps", "deployments", None, "patch"),
        ("apps", "deployments", None, "delete"),
        ("apps", "statefulsets", None, "patch"),
        ("policy", "poddisruptionbudgets", None, "delete"),
        ("autoscaling", "horizontalpodautoscalers", None, "delete"),
        ("", "secrets", None, "get"),
        ("", "secrets", None, "patch"),
        ("", "configmaps", None, "patch"),
        ("", "resourcequotas", None, "patch"),
        ("", "limitranges", None, "patch"),
        ("networking.k8s.io", "networkpolicies", None, "patch"),
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
        let tenant = tenant().rules.unwrap();
        for (group, resource, name, verb) in TENANT_CALLS {
            assert!(
                allows(&tenant, group, resource, *name, verb),
                "{verb} {group}/{resource} in a company's namespace"
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
        assert!(allows(&own, "", "secrets", Some(SMTP_SECRET), "get"));
        assert!(!allows(&own, "", "secrets", Some("someone-elses"), "get"));
        assert!(
            !allows(&cluster, "", "secrets", None, "list"),
            "Secrets are never listed"
        );
    }

    #[test]
    fn no_write_to_secrets_workloads_or_policies_is_granted_cluster_wide() {
        let cluster = cluster_role().rules.unwrap();
        let kept: &[(&str, &str)] = &[
            ("", "secrets"),
            ("apps", "deployments"),
            ("apps", "statefulsets"),
            ("", "services"),
            ("", "configmaps"),
            ("", "pods"),
            ("autoscaling", "horizontalpodautoscalers"),
            ("networking.k8s.io", "ingresses"),
            ("networking.k8s.io", "networkpolicies"),
            ("policy", "poddisruptionbudgets"),
            ("", "resourcequotas"),
            ("", "limitranges"),
            ("rbac.authorization.k8s.io", "roles"),
            ("rbac.authorization.k8s.io", "clusterroles"),
            ("rbac.authorization.k8s.io", "clusterrolebindings"),
        ];
        for (group, resource) in kept {
            for verb in [
                "create",
                "update",
                "patch",
                "delete",
                "deletecollection",
                "escalate",
            ] {
                assert!(
                    !allows(&cluster, group, resource, None, verb),
                    "{verb} {group}/{resource} is granted cluster-wide"
                );
            }
        }
        assert!(
            !allows(&cluster, "", "secrets", None, "get"),
            "no Secret read everywhere"
        );
        // Nothing granted cluster-wide goes unused: each rule's verbs appear in CALLS.
        for rule in &cluster {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    let group = &rule.api_groups.as_ref().unwrap()[0];
                    let used = CALLS.iter().any(|(g, r, _, v)| g == group && r == resource && v == verb)
                        // Reads of what is cached come together: get, list and watch.
                        || (["get", "list", "watch"].contains(&verb.as_str())
                            && CALLS.iter().any(|(g, r, _, _)| g == group && r == resource))
                        || (resource == "events" && verb == "patch")
                        || (resource == "clusterroles" && verb == "bind");
                    assert!(
                        used,
                        "{verb} {group}/{resource} is granted cluster-wide but not used"
                    );
                }
            }
        }
    }
}
