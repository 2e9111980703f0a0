//! The deal's own Redis: a password Secret, a single-replica StatefulSet keeping its append-only
//! file on a PersistentVolumeClaim, a Service, and a PodDisruptionBudget while the deal sells.
//! Only the storefront may reach it (see `network`).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec},
        core::v1::{
            Container, ContainerPort, ExecAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
            PodSpec, PodTemplateSpec, Probe, Secret, Service, VolumeMount,
            VolumeResourceRequirements,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{
        api::resource::Quantity, apis::meta::v1::ObjectMeta, util::intstr::IntOrString,
    },
    ByteString,
};

use super::{compute, env_from_secret, pod_security, restricted, Deal, Secrets, Settings};

pub const COMPONENT: &str = "redis";
pub const PORT: i32 = 6379;
pub const PASSWORD_KEY: &str = "password";
/// Redis runs as a high uid no host account uses; its volume is made writable by `fsGroup`.
const REDIS_USER: i64 = 10999;

pub fn secret_name(deal: &Deal) -> String {
    deal.child("redis-auth")
}

pub fn secret(deal: &Deal, secrets: &Secrets) -> Secret {
    Secret {
        metadata: deal.meta("redis-auth", COMPONENT),
        data: Some(BTreeMap::from([(
            PASSWORD_KEY.to_owned(),
            ByteString(secrets.redis_password.clone().into_bytes()),
        )])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// The operator's choices for the Redis volume, where the deal makes none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageDefaults {
    pub size: String,
    pub class_name: Option<String>,
}

impl Default for StorageDefaults {
    fn default() -> Self {
        Self {
            size: "1Gi".into(),
            class_name: None,
        }
    }
}

/// The share of the memory limit Redis may fill before it refuses writes; the rest is for the
/// AOF rewrite buffer and the process itself, so the kernel never kills it first.
const MAXMEMORY_SHARE: f64 = 0.8;

/// `replicas` is 1 while the deal runs and 0 after retention; the volume claim stays until the
/// deal (and so the StatefulSet) is deleted. `image` is the deal's pinned Redis image.
pub fn stateful_set(
    deal: &Deal,
    settings: &Settings,
    image: &str,
    replicas: i32,
    checksum: &str,
) -> StatefulSet {
    let capacity = &deal.td.spec.capacity;
    let resources =
        compute::requirements(capacity.redis_resources.as_ref(), &settings.redis_resources);
    let mut args = vec![
        "redis-server".to_owned(),
        "--appendonly".into(),
        "yes".into(),
        // At most one second of writes is lost when the node fails; the storefront restores
        // stock and orders from PostgreSQL when Redis comes back without them.
        "--appendfsync".into(),
        "everysec".into(),
        "--dir".into(),
        "/data".into(),
        "--requirepass".into(),
        "$(REDIS_PASSWORD)".into(),
        // Full means refusing writes, never dropping a reservation or a queue place.
        "--maxmemory-policy".into(),
        "noeviction".into(),
    ];
    if let Some(limit) = compute::memory_limit_bytes(&resources) {
        args.push("--maxmemory".into());
        args.push(((limit as f64 * MAXMEMORY_SHARE) as u64).to_string());
    }
    let storage = capacity.redis_storage.clone().unwrap_or_default();
    let size = storage
        .size
        .unwrap_or_else(|| settings.redis_storage.size.clone());
    let class = storage
        .storage_class_name
        .or_else(|| settings.redis_storage.class_name.clone());
    let password = env_from_secret("REDIS_PASSWORD", &secret_name(deal), PASSWORD_KEY);
    let ping = Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                "redis-cli --no-auth-warning -a \"$REDIS_PASSWORD\" ping | grep -q PONG".into(),
            ]),
        }),
        period_seconds: Some(5),
        ..Default::default()
    };
    StatefulSet {
        metadata: deal.meta("redis", COMPONENT),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(deal.child("redis")),
            selector: deal.pod_selector(COMPONENT),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_scaled: Some("Retain".into()),
                    when_deleted: Some("Delete".into()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(deal.labels(COMPONENT)),
                    annotations: Some(BTreeMap::from([(
                        super::CHECKSUM_ANNOTATION.to_owned(),
                        checksum.to_owned(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security(REDIS_USER)),
                    termination_grace_period_seconds: Some(30),
                    containers: vec![Container {
                        name: "redis".into(),
                        image: Some(image.to_owned()),
                        args: Some(args),
                        env: Some(vec![password]),
                        ports: Some(vec![ContainerPort {
                            name: Some("redis".into()),
                            container_port: PORT,
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        }]),
                        readiness_probe: Some(ping.clone()),
                        liveness_probe: Some(Probe {
                            initial_delay_seconds: Some(10),
                            ..ping
                        }),
                        resources: Some(resources),
                        security_context: Some(restricted(REDIS_USER)),
                        volume_mounts: Some(vec![VolumeMount {
                            name: "data".into(),
                            mount_path: "/data".into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    labels: Some(deal.labels(COMPONENT)),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: class,
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_owned(),
                            Quantity(super::quantity::canonical(&size)),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A StatefulSet's claim templates (and selector) cannot change once it is made, and the API
/// server refuses every apply that would change them: the live ones are kept, whatever the
/// deal, its labels or the chart's defaults say now. The new size or class reaches a deal only
/// with a new StatefulSet. Answers whether the wanted ones differed.
pub fn keep_claims(desired: &mut StatefulSet, live: Option<&StatefulSet>) -> bool {
    let (Some(spec), Some(live_spec)) = (desired.spec.as_mut(), live.and_then(|l| l.spec.as_ref()))
    else {
        return false;
    };
    fn json(v: &impl serde::Serialize) -> serde_json::Value {
        serde_json::to_value(v).expect("claims serialise")
    }
    let differs = !crate::apply::covers(
        &json(&live_spec.volume_claim_templates),
        &json(&spec.volume_claim_templates),
    ) || !crate::apply::covers(&json(&live_spec.selector), &json(&spec.selector));
    spec.volume_claim_templates = live_spec.volume_claim_templates.clone();
    spec.selector = live_spec.selector.clone();
    differs
}

/// While the deal warms up or sells, Redis may not be evicted: a drain waits for the end of the
/// sale (or for the admin) rather than moving the queue and every reservation mid-sale. An
/// unready Redis may always go, so a broken pod never blocks a drain.
pub fn pdb(deal: &Deal) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: deal.meta("redis", COMPONENT),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(0)),
            selector: Some(deal.pod_selector(COMPONENT)),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn service(deal: &Deal) -> Service {
    deal.service("redis", COMPONENT, "redis", PORT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing;

    fn build(td: &timedeal_api::TimeDeal, replicas: i32) -> StatefulSet {
        let deal = Deal::new(td).unwrap();
        stateful_set(
            &deal,
            &testing::settings(),
            "redis:7.2-alpine",
            replicas,
            "c0ffee",
        )
    }

    #[test]
    fn redis_keeps_its_aof_on_a_claim_and_never_evicts_a_key() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let spec = build(&td, 1).spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(
            spec.service_name.as_deref(),
            Some("winter-headphones-redis")
        );
        let retention = spec.persistent_volume_claim_retention_policy.unwrap();
        assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
        assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
        let claim = &spec.volume_claim_templates.unwrap()[0];
        let claim_spec = claim.spec.as_ref().unwrap();
        assert_eq!(
            claim_spec
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"]
                .0,
            "1Gi"
        );
        assert_eq!(claim_spec.storage_class_name, None);
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.security_context.unwrap().fs_group, Some(REDIS_USER));
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("redis:7.2-alpine"));
        let args = container.args.clone().unwrap().join(" ");
        for expected in [
            "--appendonly yes",
            "--appendfsync everysec",
            "--maxmemory-policy noeviction",
            // 80 % of the sample's 512Mi limit.
            "--maxmemory 429496729",
            "--requirepass $(REDIS_PASSWORD)",
        ] {
            assert!(args.contains(expected), "{expected} in {args}");
        }
        let from = container.env.as_ref().unwrap()[0]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .clone()
            .unwrap();
        assert_eq!(from.name, "winter-headphones-redis-auth");
        let resources = container.resources.as_ref().unwrap();
        assert_eq!(resources.requests.as_ref().unwrap()["memory"].0, "256Mi");
        assert_eq!(resources.limits.as_ref().unwrap()["memory"].0, "512Mi");
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert!(container.readiness_probe.is_some() && container.liveness_probe.is_some());
        assert_eq!(
            spec.selector.match_labels.unwrap(),
            deal.selector(COMPONENT)
        );
        assert_eq!(
            spec.template.metadata.unwrap().annotations.unwrap()[super::super::CHECKSUM_ANNOTATION],
            "c0ffee"
        );
    }

    #[test]
    fn without_amounts_redis_is_guaranteed_and_the_deal_may_choose_its_volume() {
        let mut td = testing::sample();
        td.spec.capacity.redis_resources = None;
        td.spec.capacity.redis_storage = Some(timedeal_api::RedisStorage {
            size: Some("2.5Gi".into()),
            storage_class_name: Some("fast-ssd".into()),
        });
        let spec = build(&td, 0).spec.unwrap();
        assert_eq!(spec.replicas, Some(0));
        let resources = spec.template.spec.unwrap().containers[0]
            .resources
            .clone()
            .unwrap();
        assert_eq!(resources.requests, resources.limits, "Guaranteed QoS");
        let claim = spec.volume_claim_templates.unwrap()[0]
            .spec
            .clone()
            .unwrap();
        assert_eq!(claim.storage_class_name.as_deref(), Some("fast-ssd"));
        assert_eq!(
            claim.resources.unwrap().requests.unwrap()["storage"].0,
            "2560Mi",
            "written as the API server stores it"
        );
    }

    #[test]
    fn the_redis_pdb_forbids_evicting_a_healthy_redis() {
        let td = testing::sample();
        let spec = pdb(&Deal::new(&td).unwrap()).spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
    }

    #[test]
    fn the_password_secret_and_service_belong_to_the_deal() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let secret = secret(&deal, &testing::secrets());
        assert_eq!(
            secret.data.unwrap()[PASSWORD_KEY].0,
            b"redis-password-for-tests".to_vec()
        );
        let service = service(&deal);
        assert_eq!(
            service.metadata.name.as_deref(),
            Some("winter-headphones-redis")
        );
        let spec = service.spec.unwrap();
        assert_eq!(spec.ports.unwrap()[0].port, 6379);
        assert_eq!(spec.selector.unwrap(), deal.selector(COMPONENT));
    }
}
