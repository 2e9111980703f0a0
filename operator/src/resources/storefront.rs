//! The storefront (`tenant-app`): a ConfigMap holding the deal, a Secret with its signing key and
//! store URLs, a Deployment with probes, resources and a non-root security context, and a Service.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{
            ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, HTTPGetAction,
            PodSpec, PodTemplateSpec, Probe, Secret, SecretVolumeSource, Service, Volume,
            VolumeMount,
        },
    },
    apimachinery::pkg::{apis::meta::v1::ObjectMeta, util::intstr::IntOrString},
    ByteString,
};
use timedeal_api::ShopperAuthMode;

use super::{
    compute, env_from_secret as from_secret, pod_security, redis, restricted, Deal, Secrets,
    Settings,
};

pub const COMPONENT: &str = "storefront";
pub const PORT: i32 = 8080;
pub const DEAL_FILE: &str = "deal.yaml";
const DEAL_DIR: &str = "/etc/timedeal/deal";
const JWT_DIR: &str = "/etc/timedeal/jwt";

/// The annotation numbering the versions of the deal document (the storefront never goes back
/// to a lower one, however late an older copy reaches it).
pub const REVISION_ANNOTATION: &str = "timedeal.dev/revision";

/// The deal as the storefront reads it: the TimeDeal's name, the spec it sells by and the
/// document's `revision`. Capacity and images are the operator's business and left at their
/// defaults, so scaling a deal does not rewrite the file every storefront replica watches.
pub fn config_map(deal: &Deal, revision: i64) -> ConfigMap {
    let mut spec = deal.td.spec.clone();
    spec.capacity = timedeal_api::Capacity::default();
    spec.images = None;
    let document = serde_json::json!({
        "apiVersion": "timedeal.dev/v1alpha1",
        "kind": "TimeDeal",
        "metadata": {
            "name": deal.name,
            "namespace": deal.namespace,
            "annotations": {REVISION_ANNOTATION: revision.to_string()},
        },
        "spec": spec,
    });
    let yaml = serde_yaml::to_string(&document).expect("a TimeDeal always serialises");
    ConfigMap {
        metadata: deal.meta("deal", COMPONENT),
        data: Some(BTreeMap::from([(DEAL_FILE.to_owned(), yaml)])),
        ..Default::default()
    }
}

/// The deal document a ConfigMap holds.
pub fn document(map: &ConfigMap) -> Option<&str> {
    map.data.as_ref()?.get(DEAL_FILE).map(String::as_str)
}

/// The revision of the deal document a ConfigMap holds.
fn revision_of(map: &ConfigMap) -> Option<i64> {
    let document: serde_json::Value = serde_yaml::from_str(document(map)?).ok()?;
    document["metadata"]["annotations"][REVISION_ANNOTATION]
        .as_str()?
        .parse()
        .ok()
}

/// The revision the document should carry: the live one while its content stands, a higher one
/// (the deal's generation, which only grows) once it changes.
pub fn revision(deal: &Deal, live: Option<&ConfigMap>, generation: i64) -> i64 {
    let current = live.and_then(revision_of);
    match (live, current) {
        (Some(live), Some(current)) if config_map(deal, current).data == live.data => current,
        (_, current) => generation.max(current.unwrap_or(0) + 1),
    }
}

/// The key of the storefront Secret holding the token signing secret.
pub const SIGNING_KEY: &str = "signing-secret";
/// The key holding the key the operator presents to push the deal to each replica.
pub const CONTROL_KEY: &str = "control-key";
/// The key holding the platform's SMTP URL, when it has one.
pub const SMTP_URL_KEY: &str = "smtp-url";
/// The key holding the password of the deal's PostgreSQL role.
pub const POSTGRES_PASSWORD_KEY: &str = "postgres-password";

pub fn secret_name(deal: &Deal) -> String {
    deal.child("storefront-keys")
}

pub fn secret(deal: &Deal, secrets: &Secrets) -> Secret {
    let redis_url = format!(
        "redis://:{}@{}:{}",
        secrets.redis_password,
        deal.child("redis"),
        redis::PORT
    );
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    Secret {
        metadata: deal.meta("storefront-keys", COMPONENT),
        data: Some(
            BTreeMap::from([
                (SIGNING_KEY.to_owned(), bytes(&secrets.signing_secret)),
                (CONTROL_KEY.to_owned(), bytes(&secrets.control_key)),
                ("postgres-url".to_owned(), bytes(&secrets.postgres_url)),
                (
                    POSTGRES_PASSWORD_KEY.to_owned(),
                    bytes(&secrets.postgres_password),
                ),
                ("redis-url".to_owned(), bytes(&redis_url)),
            ])
            .into_iter()
            .chain(
                secrets
                    .smtp_url
                    .as_deref()
                    .map(|url| (SMTP_URL_KEY.to_owned(), bytes(url))),
            )
            .collect(),
        ),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

fn value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    }
}

/// `replicas` is the Deployment's own count: `None` while the HPA owns it, `Some(0)` after
/// retention. `image` is the deal's pinned storefront image; `checksum` that of the Secrets its
/// pods read, so a new secret rolls them. `mail_from`: the sender of reminder mails, when the
/// deal's Secret holds the platform's SMTP URL.
pub fn deployment(
    deal: &Deal,
    settings: &Settings,
    image: &str,
    replicas: Option<i32>,
    checksum: &str,
    mail_from: Option<&str>,
) -> Deployment {
    let spec = &deal.td.spec;
    let keys = secret_name(deal);
    let mut env = vec![
        value("TIMEDEAL_DEAL", format!("{DEAL_DIR}/{DEAL_FILE}")),
        value("TIMEDEAL_LISTEN", format!("0.0.0.0:{PORT}")),
        value("TIMEDEAL_LOG_FORMAT", "json"),
        value("TIMEDEAL_POSTGRES_SCHEMA", deal.schema()),
        from_secret("TIMEDEAL_SIGNING_SECRET", &keys, SIGNING_KEY),
        from_secret("TIMEDEAL_CONTROL_KEY", &keys, CONTROL_KEY),
        from_secret("TIMEDEAL_POSTGRES_URL", &keys, "postgres-url"),
        from_secret("TIMEDEAL_REDIS_URL", &keys, "redis-url"),
        // The ingress limits each client; the storefront sees only the ingress's address.
        value("TIMEDEAL_RATE_LIMIT", "0"),
    ];
    // Set only when it differs from the storefront's own default, so a platform on the default
    // never changes a running deal's pods.
    if settings.draw_beacon != timedeal_api::DRAND_QUICKNET {
        env.push(value("TIMEDEAL_DRAW_BEACON", settings.draw_beacon.clone()));
    }
    if let Some(from) = mail_from {
        env.push(from_secret("TIMEDEAL_SMTP_URL", &keys, SMTP_URL_KEY));
        env.push(value("TIMEDEAL_MAIL_FROM", from));
    }
    let mut mounts = vec![VolumeMount {
        name: "deal".into(),
        mount_path: DEAL_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    }];
    let mut volumes = vec![Volume {
        name: "deal".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: deal.child("deal"),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let jwt_key = spec
        .shopper_auth
        .as_ref()
        .filter(|auth| auth.mode == ShopperAuthMode::Jwt)
        .and_then(|auth| auth.jwt.as_ref())
        .and_then(|jwt| jwt.key_secret_ref.as_ref());
    if let Some(key) = jwt_key {
        env.push(value(
            "TIMEDEAL_JWT_KEY_FILE",
            format!("{JWT_DIR}/{}", key.key),
        ));
        mounts.push(VolumeMount {
            name: "jwt".into(),
            mount_path: JWT_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(Volume {
            name: "jwt".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(key.name.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    Deployment {
        metadata: deal.meta("storefront", COMPONENT),
        spec: Some(DeploymentSpec {
            replicas,
            selector: deal.pod_selector(COMPONENT),
            // One new pod at a time, none taken away first: the company's quota holds exactly
            // one pod of surge per deal (`company::budget`).
            strategy: Some(k8s_openapi::api::apps::v1::DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(k8s_openapi::api::apps::v1::RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
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
                    security_context: Some(pod_security(10001)),
                    containers: vec![Container {
                        name: "tenant-app".into(),
                        image: Some(image.to_owned()),
                        env: Some(env),
                        ports: Some(vec![ContainerPort {
                            name: Some("http".into()),
                            container_port: PORT,
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        }]),
                        readiness_probe: Some(http_probe("/readyz", 5)),
                        liveness_probe: Some(Probe {
                            initial_delay_seconds: Some(10),
                            ..http_probe("/healthz", 10)
                        }),
                        resources: Some(compute::requirements(
                            spec.capacity.app_resources.as_ref(),
                            &settings.storefront_resources,
                        )),
                        security_context: Some(restricted(10001)),
                        volume_mounts: Some(mounts),
                        ..Default::default()
                    }],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn service(deal: &Deal) -> Service {
    deal.service("storefront", COMPONENT, "http", 80)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing;

    fn autoscaled(deal: &Deal) -> Deployment {
        let image = "ghcr.io/timedeal/tenant-app:0.1.0";
        deployment(deal, &testing::settings(), image, None, "c0ffee", None)
    }

    fn env_of(deployment: &Deployment) -> BTreeMap<String, EnvVar> {
        deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect()
    }

    #[test]
    fn the_config_map_holds_a_deal_the_storefront_accepts() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let map = config_map(&deal, 3);
        let yaml = &map.data.unwrap()[DEAL_FILE];
        let parsed = timedeal_api::validation::parse(yaml).unwrap();
        assert_eq!(parsed.metadata.name.as_deref(), Some("winter-headphones"));
        // Everything the storefront sells by is there; scaling stays the operator's business.
        assert_eq!(parsed.spec.product, td.spec.product);
        assert_eq!(parsed.spec.schedule, td.spec.schedule);
        assert_eq!(parsed.spec.queue, td.spec.queue);
        assert_eq!(parsed.spec.shopper_auth, td.spec.shopper_auth);
        assert_eq!(parsed.spec.suspend, td.spec.suspend);
        assert_eq!(parsed.spec.capacity, timedeal_api::Capacity::default());
        assert_eq!(
            parsed.metadata.annotations.unwrap()[REVISION_ANNOTATION],
            "3"
        );
        let mut rescaled = td.clone();
        rescaled.spec.capacity.max_replicas = 30;
        assert_eq!(
            config_map(&Deal::new(&rescaled).unwrap(), 3),
            config_map(&deal, 3)
        );
    }

    #[test]
    fn the_storefront_gets_its_settings_from_env_and_secrets() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let deployment = autoscaled(&deal);
        let env = env_of(&deployment);
        assert_eq!(
            env["TIMEDEAL_DEAL"].value.as_deref(),
            Some("/etc/timedeal/deal/deal.yaml")
        );
        assert_eq!(
            env["TIMEDEAL_LISTEN"].value.as_deref(),
            Some("0.0.0.0:8080")
        );
        assert_eq!(
            env["TIMEDEAL_POSTGRES_SCHEMA"].value.as_deref(),
            Some("td_0b1c2d3e000040008000000000000001"),
            "from the deal's UID"
        );
        for (name, key) in [
            ("TIMEDEAL_SIGNING_SECRET", "signing-secret"),
            ("TIMEDEAL_POSTGRES_URL", "postgres-url"),
            ("TIMEDEAL_REDIS_URL", "redis-url"),
        ] {
            let from = env[name]
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap();
            assert_eq!(
                (from.name.as_str(), from.key.as_str()),
                ("winter-headphones-storefront-keys", key)
            );
            assert!(env[name].value.is_none(), "{name} must not be inline");
        }
        let spec = deployment.spec.unwrap();
        assert_eq!(spec.replicas, None, "the HPA owns the replica count");
        let container = &spec.template.spec.unwrap().containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("ghcr.io/timedeal/tenant-app:0.1.0")
        );
        let readiness = container
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(readiness.path.as_deref(), Some("/readyz"));
        let liveness = container
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(liveness.path.as_deref(), Some("/healthz"));
        let resources = container.resources.as_ref().unwrap();
        assert_eq!(resources.requests.as_ref().unwrap()["cpu"].0, "500m");
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.read_only_root_filesystem, Some(true));
    }

    #[test]
    fn a_jwt_key_secret_is_mounted_as_a_file() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../manifests/samples/timedeal-jwt.yaml"),
        )
        .unwrap();
        let mut td = timedeal_api::validation::parse(&text).unwrap();
        td.metadata.uid = Some("uid".into());
        td.metadata.namespace.get_or_insert_with(|| "shop".into());
        let deal = Deal::new(&td).unwrap();
        let deployment = autoscaled(&deal);
        let env = env_of(&deployment);
        let jwt = td.spec.shopper_auth.as_ref().unwrap().jwt.as_ref().unwrap();
        match &jwt.key_secret_ref {
            Some(key) => {
                assert_eq!(
                    env["TIMEDEAL_JWT_KEY_FILE"].value.as_deref(),
                    Some(format!("/etc/timedeal/jwt/{}", key.key).as_str())
                );
                let volumes = deployment
                    .spec
                    .unwrap()
                    .template
                    .spec
                    .unwrap()
                    .volumes
                    .unwrap();
                assert!(volumes.iter().any(|v| v
                    .secret
                    .as_ref()
                    .and_then(|s| s.secret_name.as_deref())
                    == Some(key.name.as_str())));
            }
            None => assert!(!env.contains_key("TIMEDEAL_JWT_KEY_FILE")),
        }
    }

    #[test]
    fn the_keys_secret_carries_the_redis_url_with_its_password() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        let data = secret(&deal, &testing::secrets()).data.unwrap();
        assert_eq!(
            String::from_utf8(data["redis-url"].0.clone()).unwrap(),
            "redis://:redis-password-for-tests@winter-headphones-redis:6379"
        );
        assert_eq!(
            data["signing-secret"].0,
            b"signing-secret-for-tests-0123456789".to_vec()
        );
        let service = service(&deal);
        assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 80);
    }

    #[test]
    fn the_revision_stays_while_the_document_stands_and_only_grows() {
        let td = testing::sample();
        let deal = Deal::new(&td).unwrap();
        assert_eq!(revision(&deal, None, 4), 4);
        let live = config_map(&deal, 4);
        assert_eq!(revision(&deal, Some(&live), 9), 4, "unchanged content");
        let mut rescaled = td.clone();
        rescaled.spec.capacity.max_replicas = 40;
        assert_eq!(revision(&Deal::new(&rescaled).unwrap(), Some(&live), 9), 4);
        let mut suspended = td.clone();
        suspended.spec.suspend = true;
        let suspended = Deal::new(&suspended).unwrap();
        assert_eq!(revision(&suspended, Some(&live), 9), 9);
        // Never lower than what the storefronts were given, whatever the generation says.
        let ahead = config_map(&deal, 12);
        assert_eq!(revision(&suspended, Some(&ahead), 9), 13);
    }
}
