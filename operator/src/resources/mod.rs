//! Desired state: every child object of a deal, built by pure functions from the TimeDeal, the
//! operator's settings and the secrets reconcile already holds. Reconcile applies the result with
//! server-side apply; nothing here talks to the API server.

pub mod compute;
pub mod ingress;
pub mod network;
pub use timedeal_api::quantity;
pub mod redis;
pub mod scaling;
pub mod storefront;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use timedeal_api::TimeDeal;

/// What reconcile knows beyond the deal itself: the operator's defaults (flags, chart values).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Default images, overridable per deal by `spec.images`.
    pub tenant_image: String,
    pub redis_image: String,
    /// CPU and memory of each container whose deal gives none.
    pub storefront_resources: compute::Defaults,
    pub redis_resources: compute::Defaults,
    /// The Redis volume where the deal gives none.
    pub redis_storage: redis::StorageDefaults,
    /// Who may reach a deal's storefront.
    pub peers: network::Peers,
    /// Email reminders, where the platform has an SMTP server; none: calendar reminders only.
    pub mail: Option<Mail>,
    /// The randomness beacon storefronts key their pre-queue draw with (a drand chain's URL), or
    /// `none`.
    pub draw_beacon: String,
    /// The ingress-nginx cache zone the public head is cached in (its own Ingress); none: the
    /// head is routed with the rest and cached by nobody on the way.
    pub head_cache_zone: Option<String>,
}

/// The platform's SMTP server, as storefronts get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The sender of reminder mails, such as `Timedeal <deals@example.com>`.
    pub from: String,
    /// The Secret (in the operator's namespace) holding the SMTP URL, and its key.
    pub secret: String,
    pub key: String,
}

impl Settings {
    /// The given images with every other default.
    pub fn with_images(tenant_image: impl Into<String>, redis_image: impl Into<String>) -> Self {
        Self {
            tenant_image: tenant_image.into(),
            redis_image: redis_image.into(),
            storefront_resources: compute::Defaults::storefront(),
            redis_resources: compute::Defaults::redis(),
            redis_storage: redis::StorageDefaults::default(),
            peers: network::Peers::default(),
            mail: None,
            draw_beacon: timedeal_api::DRAND_QUICKNET.into(),
            head_cache_zone: None,
        }
    }
}

/// The pod-template annotation holding a fingerprint of the Secrets the pods read: a regenerated
/// or rotated secret changes it, and so rolls the pods onto the new value.
pub const CHECKSUM_ANNOTATION: &str = "timedeal.dev/secrets-checksum";

/// FNV-1a of a JSON value: stable across releases, unlike std's hasher. serde_json writes struct
/// fields in declaration order and maps sorted, so equal values hash equally.
pub fn fingerprint(value: &serde_json::Value) -> String {
    format!(
        "{:016x}",
        timedeal_api::storage::fnv1a(value.to_string().as_bytes())
    )
}

/// Secret values reconcile read from the deal's existing Secrets, or generated when missing, so
/// that applying the same deal twice never rotates them.
#[derive(Clone)]
pub struct Secrets {
    pub redis_password: String,
    pub signing_secret: String,
    /// What the operator presents to push the deal to each storefront replica.
    pub control_key: String,
    /// The deal's own PostgreSQL URL: the platform's host and database, the deal's role.
    pub postgres_url: String,
    /// That role's password, kept so the operator can read it back.
    pub postgres_password: String,
    /// A fingerprint of the shoppers' JWT key the deal names (`keySecretRef`), if any.
    pub jwt_key_fingerprint: Option<String>,
    /// The platform's SMTP URL, copied into the deal's Secret; none: no email reminders.
    pub smtp_url: Option<String>,
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

    /// The PostgreSQL schema (and role) of this deal: the recorded one, else one no other deal
    /// can have (see `timedeal_api::storage`).
    pub fn schema(&self) -> String {
        timedeal_api::storage::schema_of(self.td)
            .unwrap_or_else(|| schema_name(self.namespace, self.name))
    }
}

pub use timedeal_api::storage::schema_name;

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

/// The pod's security context: non-root, the runtime's seccomp profile, and volumes writable by
/// the container's group.
pub(crate) fn pod_security(user: i64) -> k8s_openapi::api::core::v1::PodSecurityContext {
    use k8s_openapi::api::core::v1::{PodSecurityContext, SeccompProfile};
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        run_as_group: Some(user),
        fs_group: Some(user),
        fs_group_change_policy: Some("OnRootMismatch".into()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
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
        super::Settings::with_images("ghcr.io/timedeal/tenant-app:0.1.0", "redis:7.2-alpine")
    }

    pub fn secrets() -> super::Secrets {
        super::Secrets {
            redis_password: "redis-password-for-tests".into(),
            signing_secret: "signing-secret-for-tests-0123456789".into(),
            control_key: "control-key-for-tests-0123456789abcdef".into(),
            postgres_url:
                "postgres://td_acme_audio_winter_headphones:pw@postgres.platform:5432/timedeal"
                    .into(),
            postgres_password: "pw".into(),
            jwt_key_fingerprint: None,
            smtp_url: None,
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
}

/// Every child of one deal, as it should be now. `None` children should not exist now.
pub struct Bundle {
    pub redis_secret: k8s_openapi::api::core::v1::Secret,
    pub redis: k8s_openapi::api::apps::v1::StatefulSet,
    pub redis_service: k8s_openapi::api::core::v1::Service,
    /// Only while the deal warms up or sells.
    pub redis_pdb: Option<k8s_openapi::api::policy::v1::PodDisruptionBudget>,
    pub redis_policy: k8s_openapi::api::networking::v1::NetworkPolicy,
    pub storefront_policy: k8s_openapi::api::networking::v1::NetworkPolicy,
    pub deal_config: k8s_openapi::api::core::v1::ConfigMap,
    pub storefront_secret: k8s_openapi::api::core::v1::Secret,
    pub storefront: k8s_openapi::api::apps::v1::Deployment,
    pub storefront_service: k8s_openapi::api::core::v1::Service,
    /// Only with a floor of two replicas or more.
    pub pdb: Option<k8s_openapi::api::policy::v1::PodDisruptionBudget>,
    pub ingress: k8s_openapi::api::networking::v1::Ingress,
    /// Only where the platform names a cache zone: the public head's own, cached, Ingress.
    pub head_ingress: Option<k8s_openapi::api::networking::v1::Ingress>,
    /// Absent after retention: nothing runs, so nothing scales.
    pub hpa: Option<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>,
}

impl Bundle {
    /// Every child that should exist, as JSON with its kind, in the order reconcile applies them.
    pub fn objects(&self) -> Vec<serde_json::Value> {
        fn value<T: serde::Serialize>(object: &T) -> serde_json::Value {
            serde_json::to_value(object).expect("k8s objects serialise")
        }
        let mut objects = Vec::new();
        objects.extend(self.hpa.as_ref().map(value));
        objects.extend([
            value(&self.redis_secret),
            value(&self.storefront_secret),
            value(&self.deal_config),
            value(&self.redis_policy),
            value(&self.storefront_policy),
            value(&self.redis),
            value(&self.redis_service),
            value(&self.storefront),
            value(&self.storefront_service),
        ]);
        objects.extend(self.redis_pdb.as_ref().map(value));
        objects.extend(self.pdb.as_ref().map(value));
        objects.push(value(&self.ingress));
        objects.extend(self.head_ingress.as_ref().map(value));
        objects
    }
}

/// What the clock and the deal's pins decide for this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub scale: crate::phase::Scale,
    /// Warming up or live: Redis may not be evicted.
    pub selling: bool,
    /// The images the pods run.
    pub pinned: timedeal_api::Pinned,
    /// The revision of the deal document the storefronts read.
    pub revision: i64,
}

/// The desired children of an approved deal.
pub fn bundle(deal: &Deal, settings: &Settings, secrets: &Secrets, plan: &Plan) -> Bundle {
    use crate::phase::Scale;
    let (floor, hpa) = match plan.scale {
        Scale::Autoscaled { floor, max } => (floor, Some(scaling::hpa(deal, floor, max))),
        Scale::Off => (0, None),
    };
    let running = hpa.is_some();
    // Storefronts mail reminders only with both a sender and a server.
    let mail_from = settings
        .mail
        .as_ref()
        .filter(|_| secrets.smtp_url.is_some())
        .map(|mail| mail.from.as_str());
    let redis_secret = redis::secret(deal, secrets);
    let storefront_secret = storefront::secret(deal, secrets);
    let redis_checksum = fingerprint(&serde_json::json!([redis_secret.data]));
    let storefront_checksum = fingerprint(&serde_json::json!([
        storefront_secret.data,
        secrets.jwt_key_fingerprint
    ]));
    Bundle {
        redis: redis::stateful_set(
            deal,
            settings,
            &plan.pinned.redis,
            if running { 1 } else { 0 },
            &redis_checksum,
        ),
        redis_secret,
        redis_service: redis::service(deal),
        redis_pdb: (plan.selling && running).then(|| redis::pdb(deal)),
        redis_policy: network::redis_policy(deal),
        storefront_policy: network::storefront_policy(
            deal,
            &settings.peers,
            network::postgres_port(&secrets.postgres_url),
            mail_from.and(secrets.smtp_url.as_deref().map(network::smtp_port)),
            network::beacon_port(&settings.draw_beacon),
        ),
        deal_config: storefront::config_map(deal, plan.revision),
        storefront: storefront::deployment(
            deal,
            settings,
            &plan.pinned.tenant_app,
            if running { None } else { Some(0) },
            &storefront_checksum,
            mail_from,
        ),
        storefront_secret,
        storefront_service: storefront::service(deal),
        pdb: scaling::pdb(deal, floor),
        ingress: ingress::ingress(deal),
        head_ingress: settings
            .head_cache_zone
            .as_deref()
            .map(|zone| ingress::head_ingress(deal, zone)),
        hpa,
    }
}

#[cfg(test)]
mod bundle_tests {
    use super::*;
    use crate::phase::Scale;

    fn plan(scale: Scale, selling: bool) -> Plan {
        Plan {
            scale,
            selling,
            pinned: timedeal_api::Pinned {
                tenant_app: "ghcr.io/timedeal/tenant-app:0.1.0".into(),
                redis: "redis:7.2-alpine".into(),
                template: "test".into(),
            },
            revision: 1,
        }
    }

    /// A company's namespace enforces Pod Security `restricted`: every pod a deal runs must pass
    /// its checks, or the API server refuses it.
    #[test]
    fn every_pod_a_deal_runs_meets_the_restricted_pod_security_standard() {
        use k8s_openapi::api::core::v1::PodSpec;
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let running = bundle(
            &deal,
            &testing::settings(),
            &testing::secrets(),
            &plan(Scale::Autoscaled { floor: 2, max: 20 }, true),
        );
        let pods: [(&str, &PodSpec); 2] = [
            (
                "storefront",
                running
                    .storefront
                    .spec
                    .as_ref()
                    .unwrap()
                    .template
                    .spec
                    .as_ref()
                    .unwrap(),
            ),
            (
                "redis",
                running
                    .redis
                    .spec
                    .as_ref()
                    .unwrap()
                    .template
                    .spec
                    .as_ref()
                    .unwrap(),
            ),
        ];
        for (name, pod) in pods {
            assert!(
                pod.host_network != Some(true) && pod.host_pid != Some(true),
                "{name}"
            );
            assert!(pod.host_ipc != Some(true), "{name}");
            for volume in pod.volumes.iter().flatten() {
                assert!(volume.host_path.is_none(), "{name}: {}", volume.name);
            }
            let pod_security = pod.security_context.clone().unwrap_or_default();
            let containers = pod
                .containers
                .iter()
                .chain(pod.init_containers.iter().flatten());
            for container in containers {
                let what = format!("{name}/{}", container.name);
                let security = container.security_context.clone().unwrap_or_default();
                assert_eq!(security.allow_privilege_escalation, Some(false), "{what}");
                assert_ne!(security.privileged, Some(true), "{what}");
                let capabilities = security.capabilities.clone().unwrap_or_default();
                assert_eq!(capabilities.drop, Some(vec!["ALL".to_owned()]), "{what}");
                assert!(
                    capabilities
                        .add
                        .iter()
                        .flatten()
                        .all(|c| c == "NET_BIND_SERVICE"),
                    "{what}"
                );
                let non_root = security.run_as_non_root.or(pod_security.run_as_non_root);
                assert_eq!(non_root, Some(true), "{what}");
                assert_ne!(
                    security.run_as_user.or(pod_security.run_as_user),
                    Some(0),
                    "{what}"
                );
                let seccomp = security
                    .seccomp_profile
                    .clone()
                    .or(pod_security.seccomp_profile.clone())
                    .map(|p| p.type_);
                assert!(
                    matches!(seccomp.as_deref(), Some("RuntimeDefault" | "Localhost")),
                    "{what}: {seccomp:?}"
                );
                assert!(
                    container
                        .ports
                        .iter()
                        .flatten()
                        .all(|p| p.host_port.is_none()),
                    "{what}"
                );
            }
        }
    }

    #[test]
    fn a_running_deal_has_every_child_and_a_retired_one_runs_nothing() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let running = bundle(
            &deal,
            &testing::settings(),
            &testing::secrets(),
            &plan(Scale::Autoscaled { floor: 2, max: 20 }, true),
        );
        assert!(running.hpa.is_some());
        assert_eq!(running.redis.spec.as_ref().unwrap().replicas, Some(1));
        assert_eq!(running.storefront.spec.as_ref().unwrap().replicas, None);
        let metas = [
            &running.redis_secret.metadata,
            &running.redis.metadata,
            &running.redis_service.metadata,
            &running.redis_pdb.as_ref().unwrap().metadata,
            &running.redis_policy.metadata,
            &running.storefront_policy.metadata,
            &running.deal_config.metadata,
            &running.storefront_secret.metadata,
            &running.storefront.metadata,
            &running.storefront_service.metadata,
            &running.pdb.as_ref().unwrap().metadata,
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

        let retired = bundle(
            &deal,
            &testing::settings(),
            &testing::secrets(),
            &plan(Scale::Off, false),
        );
        assert!(retired.hpa.is_none() && retired.pdb.is_none() && retired.redis_pdb.is_none());
        assert_eq!(retired.redis.spec.unwrap().replicas, Some(0));
        assert_eq!(retired.storefront.spec.unwrap().replicas, Some(0));
    }

    #[test]
    fn redis_is_protected_from_drains_only_while_the_deal_sells() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let build = |selling| {
            bundle(
                &deal,
                &testing::settings(),
                &testing::secrets(),
                &plan(Scale::Autoscaled { floor: 6, max: 20 }, selling),
            )
        };
        assert!(build(true).redis_pdb.is_some());
        assert!(build(false).redis_pdb.is_none());
    }

    #[test]
    fn a_new_secret_value_rolls_the_pods_that_read_it() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let scale = Scale::Autoscaled { floor: 2, max: 20 };
        let checksums = |secrets: &Secrets| {
            let b = bundle(&deal, &testing::settings(), secrets, &plan(scale, false));
            let of = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>| {
                t.as_ref().unwrap().annotations.as_ref().unwrap()[CHECKSUM_ANNOTATION].clone()
            };
            (
                of(&b.storefront.spec.unwrap().template.metadata),
                of(&b.redis.spec.unwrap().template.metadata),
            )
        };
        let before = checksums(&testing::secrets());
        assert_eq!(before, checksums(&testing::secrets()), "stable");
        let rotated_postgres = Secrets {
            postgres_url: "postgres://timedeal:new@postgres.platform:5432/timedeal".into(),
            ..testing::secrets()
        };
        let after = checksums(&rotated_postgres);
        assert_ne!(after.0, before.0, "the storefront rolls");
        assert_eq!(after.1, before.1, "Redis does not read that Secret");
        let new_redis_password = Secrets {
            redis_password: "regenerated".into(),
            ..testing::secrets()
        };
        let after = checksums(&new_redis_password);
        assert_ne!(after.0, before.0, "the storefront's Redis URL changed");
        assert_ne!(after.1, before.1, "Redis takes the new password");
        let rotated_jwt_key = Secrets {
            jwt_key_fingerprint: Some("0123".into()),
            smtp_url: None,
            ..testing::secrets()
        };
        assert_ne!(checksums(&rotated_jwt_key).0, before.0, "the shoppers' key");
    }

    /// Every sample deal, in every phase, gets pods whose containers request what the
    /// autoscaler's metrics divide by: without a CPU request the HPA never scales.
    #[test]
    fn every_container_requests_what_its_autoscaler_measures() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/samples");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let mut td =
                timedeal_api::validation::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
            td.metadata.uid = Some("uid".into());
            td.metadata.namespace.get_or_insert_with(|| "shop".into());
            let deal = Deal::new(&td).unwrap();
            let b = bundle(
                &deal,
                &testing::settings(),
                &testing::secrets(),
                &plan(Scale::Autoscaled { floor: 2, max: 20 }, true),
            );
            let hpa = b.hpa.unwrap().spec.unwrap();
            assert_eq!(
                hpa.scale_target_ref.name,
                b.storefront.metadata.name.clone().unwrap()
            );
            let pods = [
                b.storefront.spec.unwrap().template.spec.unwrap(),
                b.redis.spec.unwrap().template.spec.unwrap(),
            ];
            for metric in hpa.metrics.unwrap() {
                let resource = metric.resource.unwrap().name;
                for container in &pods[0].containers {
                    let requests = container
                        .resources
                        .as_ref()
                        .and_then(|r| r.requests.as_ref());
                    assert!(
                        requests.is_some_and(|r| r.contains_key(&resource)),
                        "{}: container {} has no {resource} request",
                        path.display(),
                        container.name
                    );
                }
            }
            for pod in &pods {
                for container in &pod.containers {
                    let resources = container.resources.as_ref().unwrap();
                    for key in ["cpu", "memory"] {
                        assert!(resources.requests.as_ref().unwrap().contains_key(key));
                    }
                    assert!(resources.limits.as_ref().unwrap().contains_key("memory"));
                }
            }
            checked += 1;
        }
        assert!(checked >= 3, "the samples were found");
    }

    /// Every name and label value derived from the longest name the CRD allows fits 63
    /// characters, including the `controller-revision-hash` label the StatefulSet controller
    /// puts on Redis's pods (`<StatefulSet>-<up to 10 characters>`).
    #[test]
    fn the_longest_deal_name_fits_every_derived_name_and_label() {
        let mut td = testing::sample();
        let longest = format!("a{}", "b".repeat(45));
        assert!(
            timedeal_api::validation::validate(&serde_json::json!({
                "apiVersion": "timedeal.dev/v1alpha1", "kind": "TimeDeal",
                "metadata": {"name": format!("{longest}c")},
                "spec": serde_json::to_value(&td.spec).unwrap()
            }))
            .is_err(),
            "one character more is refused"
        );
        td.metadata.name = Some(longest.clone());
        let deal = Deal::new(&td).unwrap();
        let all = bundle(
            &deal,
            &testing::settings(),
            &testing::secrets(),
            &plan(Scale::Autoscaled { floor: 2, max: 20 }, true),
        );
        let redis = all.redis.metadata.name.clone().unwrap();
        assert!(redis.len() + 1 + 10 <= 63, "{redis}: the revision label");
        let mut names = Vec::new();
        for object in [
            serde_json::to_value(&all.redis).unwrap(),
            serde_json::to_value(&all.redis_secret).unwrap(),
            serde_json::to_value(&all.redis_service).unwrap(),
            serde_json::to_value(&all.storefront).unwrap(),
            serde_json::to_value(&all.storefront_secret).unwrap(),
            serde_json::to_value(&all.storefront_service).unwrap(),
            serde_json::to_value(&all.storefront_policy).unwrap(),
            serde_json::to_value(&all.redis_policy).unwrap(),
            serde_json::to_value(&all.deal_config).unwrap(),
            serde_json::to_value(&all.ingress).unwrap(),
            serde_json::to_value(all.pdb.as_ref().unwrap()).unwrap(),
            serde_json::to_value(all.hpa.as_ref().unwrap()).unwrap(),
        ] {
            names.push(object["metadata"]["name"].as_str().unwrap().to_owned());
            for labels in [
                &object["metadata"]["labels"],
                &object["spec"]["template"]["metadata"]["labels"],
            ] {
                for value in labels.as_object().into_iter().flat_map(|l| l.values()) {
                    names.push(value.as_str().unwrap().to_owned());
                }
            }
        }
        for name in names {
            assert!(name.len() <= 63, "{name} is {} characters", name.len());
        }
    }
}
