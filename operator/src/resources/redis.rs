//! The deal's own Redis: a password Secret, a single-replica Deployment with AOF on, and a
//! Service. Only the storefront may reach it (see `network`).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy},
        core::v1::{
            Container, ContainerPort, EmptyDirVolumeSource, ExecAction, PodSpec, PodTemplateSpec,
            Probe, Secret, Service, Volume, VolumeMount,
        },
    },
    ByteString,
};

use super::{env_from_secret, resources, restricted, Deal, Secrets, Settings};

pub const COMPONENT: &str = "redis";
pub const PORT: i32 = 6379;
pub const PASSWORD_KEY: &str = "password";

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

/// `replicas` is 1 while the deal runs and 0 after retention.
pub fn deployment(deal: &Deal, settings: &Settings, replicas: i32) -> Deployment {
    let image = deal
        .td
        .spec
        .images
        .as_ref()
        .and_then(|i| i.redis.clone())
        .unwrap_or_else(|| settings.redis_image.clone());
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
    Deployment {
        metadata: deal.meta("redis", COMPONENT),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            // One writer at a time: never two Redis pods for one deal.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..Default::default()
            }),
            selector: deal.pod_selector(COMPONENT),
            template: PodTemplateSpec {
                metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    labels: Some(deal.labels(COMPONENT)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    containers: vec![Container {
                        name: "redis".into(),
                        image: Some(image),
                        args: Some(vec![
                            "redis-server".into(),
                            "--appendonly".into(),
                            "yes".into(),
                            "--dir".into(),
                            "/data".into(),
                            "--requirepass".into(),
                            "$(REDIS_PASSWORD)".into(),
                        ]),
                        env: Some(vec![password]),
                        ports: Some(vec![ContainerPort {
                            name: Some("redis".into()),
                            container_port: PORT,
                            ..Default::default()
                        }]),
                        readiness_probe: Some(ping.clone()),
                        liveness_probe: Some(Probe {
                            initial_delay_seconds: Some(10),
                            ..ping
                        }),
                        resources: resources(deal.td.spec.capacity.redis_resources.as_ref()),
                        security_context: Some(restricted(999)),
                        volume_mounts: Some(vec![VolumeMount {
                            name: "data".into(),
                            mount_path: "/data".into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }],
                    volumes: Some(vec![Volume {
                        name: "data".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
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

    #[test]
    fn redis_runs_with_aof_a_password_and_the_deal_resources() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let deployment = deployment(&deal, &testing::settings(), 1);
        let spec = deployment.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
        let pod = spec.template.spec.unwrap();
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("redis:7.2-alpine"));
        let args = container.args.clone().unwrap().join(" ");
        assert!(args.contains("--appendonly yes"), "{args}");
        assert!(args.contains("--requirepass $(REDIS_PASSWORD)"), "{args}");
        let env = &container.env.as_ref().unwrap()[0];
        let from = env
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
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
            pod_labels_subset(&deal)
        );
    }

    fn pod_labels_subset(deal: &Deal) -> BTreeMap<String, String> {
        deal.selector(COMPONENT)
    }

    #[test]
    fn a_per_deal_image_overrides_the_operator_default() {
        let mut td = testing::sample();
        td.spec.images = Some(timedeal_api::Images {
            tenant_app: None,
            redis: Some("registry.internal/redis:7".into()),
        });
        let deal = Deal::new(&td).unwrap();
        let deployment = deployment(&deal, &testing::settings(), 0);
        let spec = deployment.spec.unwrap();
        assert_eq!(spec.replicas, Some(0));
        assert_eq!(
            spec.template.spec.unwrap().containers[0].image.as_deref(),
            Some("registry.internal/redis:7")
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
