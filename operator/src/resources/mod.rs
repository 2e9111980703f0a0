//! Desired state: every child object of a deal, built by pure functions from the TimeDeal, the
//! operator's settings and the secrets reconcile already holds. Reconcile applies the result with
//! server-side apply; nothing here talks to the API server.

pub mod ingress;
pub mod network;
pub mod redis;
pub mod scaling;
pub mod storefront;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use timedeal_api::TimeDeal;

/// What reconcile knows beyond the deal itself.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Default images, overridable per deal by `spec.images`.
    pub tenant_image: String,
    pub redis_image: String,
}

/// Secret values reconcile read from the deal's existing Secrets, or generated when missing, so
/// that applying the same deal twice never rotates them.
#[derive(Clone)]
pub struct Secrets {
    pub redis_password: String,
    pub signing_secret: String,
    /// The platform PostgreSQL URL, from the Secret named in the operator's flags.
    pub postgres_url: String,
}

/// One deal's identity, shared by every builder.
#[derive(Debug, Clone)]
pub struct Deal<'a> {
    pub td: &'a TimeDeal,
    pub name: &'a str,
    pub namespace: &'a str,
    owner: OwnerReference,
}

/// Why a deal cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("the TimeDeal has no {0}; it cannot own children")]
    MissingMetadata(&'static str),
}

impl<'a> Deal<'a> {
    pub fn new(td: &'a TimeDeal) -> Result<Self, BuildError> {
        let name = td
            .metadata
            .name
            .as_deref()
            .ok_or(BuildError::MissingMetadata("metadata.name"))?;
        let namespace = td
            .metadata
            .namespace
            .as_deref()
            .ok_or(BuildError::MissingMetadata("metadata.namespace"))?;
        let owner = td
            .controller_owner_ref(&())
            .ok_or(BuildError::MissingMetadata("metadata.uid"))?;
        Ok(Self {
            td,
            name,
            namespace,
            owner,
        })
    }

    /// `<deal>-<suffix>`: every child's name.
    pub fn child(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    /// The labels every child carries; `component` is `storefront` or `redis`.
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "app.kubernetes.io/name".into(),
                format!("timedeal-{component}"),
            ),
            ("app.kubernetes.io/instance".into(), self.name.to_owned()),
            ("app.kubernetes.io/component".into(), component.to_owned()),
            ("app.kubernetes.io/part-of".into(), "timedeal".into()),
            (
                "app.kubernetes.io/managed-by".into(),
                "timedeal-operator".into(),
            ),
            ("timedeal.dev/deal".into(), self.name.to_owned()),
        ])
    }

    /// The labels that select a component's pods (a subset that never changes).
    pub fn selector(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/component".into(), component.to_owned()),
            ("timedeal.dev/deal".into(), self.name.to_owned()),
        ])
    }

    /// Metadata of a child: its name, the deal's namespace, labels, and the deal as controller.
    pub fn meta(&self, suffix: &str, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.child(suffix)),
            namespace: Some(self.namespace.to_owned()),
            labels: Some(self.labels(component)),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// A label selector matching a component's pods.
    pub fn pod_selector(
        &self,
        component: &str,
    ) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
            match_labels: Some(self.selector(component)),
            ..Default::default()
        }
    }

    /// A ClusterIP Service `<deal>-<suffix>` sending `port` to the pods' port named `target`.
    pub fn service(
        &self,
        suffix: &str,
        component: &str,
        target: &str,
        port: i32,
    ) -> k8s_openapi::api::core::v1::Service {
        use k8s_openapi::{
            api::core::v1::{Service, ServicePort, ServiceSpec},
            apimachinery::pkg::util::intstr::IntOrString,
        };
        Service {
            metadata: self.meta(suffix, component),
            spec: Some(ServiceSpec {
                selector: Some(self.selector(component)),
                ports: Some(vec![ServicePort {
                    name: Some(target.into()),
                    port,
                    target_port: Some(IntOrString::String(target.into())),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The PostgreSQL schema of this deal: unique per namespace and name, and a valid identifier.
    pub fn schema(&self) -> String {
        schema_name(self.namespace, self.name)
    }
}

/// `td_<namespace>_<name>` in lowercase letters, digits and underscores; names too long for
/// PostgreSQL's 63 characters are shortened and keep a hash of the full name, so two deals never
/// share a schema.
pub fn schema_name(namespace: &str, name: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    let full = format!("td_{}_{}", clean(namespace), clean(name));
    if full.len() <= 63 {
        return full;
    }
    // FNV-1a: stable across releases, unlike std's hasher.
    let hash = format!("{namespace}/{name}")
        .bytes()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
    format!("{}_{:012x}", &full[..50], hash & 0xffff_ffff_ffff)
}

/// `name: value` map of resource quantities, as the API takes it.
pub(crate) fn quantities(
    amounts: Option<&timedeal_api::ResourceAmounts>,
) -> Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>> {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let amounts = amounts?;
    let map: BTreeMap<_, _> = [("cpu", &amounts.cpu), ("memory", &amounts.memory)]
        .into_iter()
        .filter_map(|(key, value)| value.clone().map(|v| (key.to_owned(), Quantity(v))))
        .collect();
    (!map.is_empty()).then_some(map)
}

pub(crate) fn resources(
    compute: Option<&timedeal_api::ComputeResources>,
) -> Option<k8s_openapi::api::core::v1::ResourceRequirements> {
    let compute = compute?;
    Some(k8s_openapi::api::core::v1::ResourceRequirements {
        requests: quantities(compute.requests.as_ref()),
        limits: quantities(compute.limits.as_ref()),
        ..Default::default()
    })
}

/// An environment variable taken from a key of a Secret, so the value never sits in the pod spec.
pub(crate) fn env_from_secret(
    name: &str,
    secret: &str,
    key: &str,
) -> k8s_openapi::api::core::v1::EnvVar {
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The restricted security context every container runs with.
pub(crate) fn restricted(user: i64) -> k8s_openapi::api::core::v1::SecurityContext {
    use k8s_openapi::api::core::v1::{Capabilities, SeccompProfile, SecurityContext};
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        run_as_group: Some(user),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use timedeal_api::{validation, TimeDeal};

    /// The complete sample deal, as the API server would hand it over.
    pub fn sample() -> TimeDeal {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../manifests/samples/timedeal.yaml"),
        )
        .unwrap();
        let mut td = validation::parse(&text).unwrap();
        td.metadata.uid = Some("0b1c2d3e-0000-4000-8000-000000000001".into());
        td
    }

    pub fn settings() -> super::Settings {
        super::Settings {
            tenant_image: "ghcr.io/timedeal/tenant-app:0.1.0".into(),
            redis_image: "redis:7.2-alpine".into(),
        }
    }

    pub fn secrets() -> super::Secrets {
        super::Secrets {
            redis_password: "redis-password-for-tests".into(),
            signing_secret: "signing-secret-for-tests-0123456789".into(),
            postgres_url: "postgres://timedeal:pw@postgres.platform:5432/timedeal".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_named_labelled_and_owned_by_the_deal() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let meta = deal.meta("redis", "redis");
        assert_eq!(meta.name.as_deref(), Some("winter-headphones-redis"));
        assert_eq!(meta.namespace.as_deref(), Some("acme-audio"));
        let labels = meta.labels.unwrap();
        assert_eq!(labels["timedeal.dev/deal"], "winter-headphones");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "timedeal-operator");
        let owner = &meta.owner_references.unwrap()[0];
        assert_eq!(owner.kind, "TimeDeal");
        assert_eq!(owner.api_version, "timedeal.dev/v1alpha1");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.uid, "0b1c2d3e-0000-4000-8000-000000000001");
    }

    #[test]
    fn a_deal_without_a_uid_cannot_own_children() {
        let mut td = testing::sample();
        td.metadata.uid = None;
        assert_eq!(
            Deal::new(&td).unwrap_err(),
            BuildError::MissingMetadata("metadata.uid")
        );
    }

    #[test]
    fn schema_names_are_unique_and_valid() {
        assert_eq!(
            schema_name("acme-audio", "winter-headphones"),
            "td_acme_audio_winter_headphones"
        );
        let long = schema_name(&"n".repeat(60), &"d".repeat(60));
        assert_eq!(long.len(), 63);
        assert_ne!(long, schema_name(&"n".repeat(60), &"d".repeat(61)));
    }
}

/// Every child of one deal, as it should be now.
pub struct Bundle {
    pub redis_secret: k8s_openapi::api::core::v1::Secret,
    pub redis: k8s_openapi::api::apps::v1::Deployment,
    pub redis_service: k8s_openapi::api::core::v1::Service,
    pub redis_policy: k8s_openapi::api::networking::v1::NetworkPolicy,
    pub deal_config: k8s_openapi::api::core::v1::ConfigMap,
    pub storefront_secret: k8s_openapi::api::core::v1::Secret,
    pub storefront: k8s_openapi::api::apps::v1::Deployment,
    pub storefront_service: k8s_openapi::api::core::v1::Service,
    pub pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget,
    pub ingress: k8s_openapi::api::networking::v1::Ingress,
    /// Absent after retention: nothing runs, so nothing scales.
    pub hpa: Option<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>,
}

/// The desired children of an approved deal at the given scale.
pub fn bundle(
    deal: &Deal,
    settings: &Settings,
    secrets: &Secrets,
    scale: crate::phase::Scale,
) -> Bundle {
    use crate::phase::Scale;
    let (running, hpa) = match scale {
        Scale::Autoscaled { floor, max } => (true, Some(scaling::hpa(deal, floor, max))),
        Scale::Off => (false, None),
    };
    Bundle {
        redis_secret: redis::secret(deal, secrets),
        redis: redis::deployment(deal, settings, if running { 1 } else { 0 }),
        redis_service: redis::service(deal),
        redis_policy: network::redis_policy(deal),
        deal_config: storefront::config_map(deal),
        storefront_secret: storefront::secret(deal, secrets),
        storefront: storefront::deployment(deal, settings, if running { None } else { Some(0) }),
        storefront_service: storefront::service(deal),
        pdb: scaling::pdb(deal),
        ingress: ingress::ingress(deal),
        hpa,
    }
}

#[cfg(test)]
mod bundle_tests {
    use super::*;
    use crate::phase::Scale;

    #[test]
    fn a_running_deal_has_every_child_and_a_retired_one_runs_nothing() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let running = bundle(
            &deal,
            &testing::settings(),
            &testing::secrets(),
            Scale::Autoscaled { floor: 2, max: 20 },
        );
        assert!(running.hpa.is_some());
        assert_eq!(running.redis.spec.as_ref().unwrap().replicas, Some(1));
        assert_eq!(running.storefront.spec.as_ref().unwrap().replicas, None);
        let metas = [
            &running.redis_secret.metadata,
            &running.redis.metadata,
            &running.redis_service.metadata,
            &running.redis_policy.metadata,
            &running.deal_config.metadata,
            &running.storefront_secret.metadata,
            &running.storefront.metadata,
            &running.storefront_service.metadata,
            &running.pdb.metadata,
            &running.ingress.metadata,
            &running.hpa.as_ref().unwrap().metadata,
        ];
        for meta in metas {
            assert_eq!(
                meta.owner_references.as_ref().unwrap()[0].name,
                "winter-headphones"
            );
            assert_eq!(
                meta.labels.as_ref().unwrap()["timedeal.dev/deal"],
                "winter-headphones"
            );
        }

        let retired = bundle(&deal, &testing::settings(), &testing::secrets(), Scale::Off);
        assert!(retired.hpa.is_none());
        assert_eq!(retired.redis.spec.unwrap().replicas, Some(0));
        assert_eq!(retired.storefront.spec.unwrap().replicas, Some(0));
    }
}
