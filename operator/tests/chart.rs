//! The Helm chart, checked without a cluster: `helm lint`, `helm template` with the defaults and
//! with every option on, every rendered object read into its k8s-openapi type (a misspelt field
//! fails: the object must survive the round trip unchanged), the CRD template identical to
//! `crds/timedeal.yaml`, and the RBAC rules identical to what the code calls (`rbac.rs`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::{Secret, Service, ServiceAccount},
        networking::v1::Ingress,
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use timedeal_operator::{metrics::Metrics, rbac};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    repo().join("charts/timedeal-operator")
}

fn helm() -> Command {
    let local = repo().join(".tools/bin/helm");
    let program = if local.exists() {
        local
    } else {
        PathBuf::from("helm")
    };
    let mut command = Command::new(program);
    command.env(
        "HELM_CACHE_HOME",
        std::env::temp_dir().join("timedeal-helm-cache"),
    );
    command
}

/// Every option the chart has, switched on.
const ALL_ON: &[&str] = &[
    "crds.install=true",
    "postgres.trial.enabled=true",
    "portal.ingress.enabled=true",
    "directory.ingress.enabled=true",
    "directory.ingress.tlsSecretName=directory-tls",
    "mail.from=Timedeal <deals@example.com>",
    "portal.ingress.className=nginx",
    "portal.ingress.tlsSecretName=portal-tls",
    "portal.secureCookies=true",
    "portal.trustedProxies={10.0.0.0/8,fd00::/8}",
    "metrics.serviceMonitor.enabled=true",
    "dealDefaults.metricsNamespace=monitoring",
    "metrics.prometheusRule.enabled=true",
    "metrics.grafanaDashboard.enabled=true",
    "podAnnotations.team=deals",
    "nodeSelector.pool=operators",
];

fn run(mut command: Command) -> Result<String, String> {
    let output = command.output().unwrap_or_else(|e| {
        panic!("cannot run helm ({e}); run `make setup`, which installs it into .tools/bin")
    });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{stderr}"))
    }
}

/// `helm template` of the chart with `sets`, as text.
fn template(sets: &[&str]) -> Result<String, String> {
    let mut command = helm();
    command.args(["template", "timedeal"]).arg(chart());
    command.args(["--namespace", "timedeal-system"]);
    for set in sets {
        command.args(["--set", set]);
    }
    run(command)
}

fn render(sets: &[&str]) -> Result<Vec<Value>, String> {
    let text = template(sets)?;
    Ok(serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_json::to_value(serde_yaml::Value::deserialize(doc).unwrap()).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect())
}

use serde::Deserialize;

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or("")
}

/// Reads the object as `K` and checks nothing was lost on the way back.
fn typed<K: DeserializeOwned + Serialize>(object: &Value) -> K {
    let name = format!("{} {}", kind(object), object["metadata"]["name"]);
    let typed: K = serde_json::from_value(object.clone())
        .unwrap_or_else(|e| panic!("{name} does not read as its type: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, object,
        "{name} has fields its type does not know (misspelt?)"
    );
    typed
}

fn check_types(objects: &[Value]) {
    for object in objects {
        match kind(object) {
            "Deployment" => drop(typed::<Deployment>(object)),
            "StatefulSet" => drop(typed::<StatefulSet>(object)),
            "Service" => drop(typed::<Service>(object)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(object)),
            "Secret" => drop(typed::<Secret>(object)),
            "ConfigMap" => drop(typed::<k8s_openapi::api::core::v1::ConfigMap>(object)),
            "Ingress" => drop(typed::<Ingress>(object)),
            "HorizontalPodAutoscaler" => drop(typed::<
                k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler,
            >(object)),
            "ClusterRole" => drop(typed::<ClusterRole>(object)),
            "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(object)),
            "Role" => drop(typed::<Role>(object)),
            "RoleBinding" => drop(typed::<RoleBinding>(object)),
            "CustomResourceDefinition" => drop(typed::<CustomResourceDefinition>(object)),
            // The Prometheus Operator's kinds have no k8s-openapi type; they are checked below.
            "ServiceMonitor" | "PodMonitor" | "PrometheusRule" => {
                assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1")
            }
            other => panic!("the chart renders a {other} that this test does not check"),
        }
    }
}

fn one<'a>(objects: &'a [Value], kind_name: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| kind(o) == kind_name).collect();
    assert_eq!(found.len(), 1, "one {kind_name} expected");
    found[0]
}

/// The object of a kind with a name.
fn named<'a>(objects: &'a [Value], kind_name: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| kind(o) == kind_name && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind_name} {name}"))
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects.iter().map(|o| kind(o).to_owned()).collect();
    kinds.sort();
    kinds
}

#[test]
fn the_chart_lints_clean_with_defaults_and_with_every_option() {
    let mut command = helm();
    command.arg("lint").arg(chart()).arg("--strict");
    run(command).unwrap();
    let mut command = helm();
    command.arg("lint").arg(chart()).arg("--strict");
    for set in ALL_ON {
        command.args(["--set", set]);
    }
    run(command).unwrap();
}

/// Scraping every storefront with a NetworkPolicy that admits no Prometheus would leave every
/// alert and the dashboard empty: refused at install, naming the value to set.
#[test]
fn storefront_scraping_needs_the_scrapers_namespace() {
    let refused = render(&["metrics.serviceMonitor.enabled=true"]).unwrap_err();
    assert!(
        refused.contains("set dealDefaults.metricsNamespace"),
        "{refused}"
    );
    let objects = render(&[
        "metrics.serviceMonitor.enabled=true",
        "dealDefaults.metricsNamespace=monitoring",
    ])
    .unwrap();
    let operator: Deployment = typed(named(&objects, "Deployment", "timedeal-operator"));
    let env = operator.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert!(env.iter().any(
        |e| e.name == "TIMEDEAL_METRICS_NAMESPACE" && e.value.as_deref() == Some("monitoring")
    ));
}

#[test]
fn a_portal_ingress_needs_trusted_proxies_and_secure_cookies_unless_told_otherwise() {
    let refused =
        render(&["portal.ingress.enabled=true", "portal.secureCookies=true"]).unwrap_err();
    assert!(refused.contains("needs portal.trustedProxies"), "{refused}");
    let refused = render(&[
        "portal.ingress.enabled=true",
        "portal.trustedProxies={10.0.0.0/8}",
    ])
    .unwrap_err();
    assert!(
        refused.contains("needs portal.secureCookies=true"),
        "{refused}"
    );
    for sets in [
        &[
            "portal.ingress.enabled=true",
            "portal.trustedProxies={10.0.0.0/8}",
            "portal.secureCookies=true",
        ][..],
        &[
            "portal.ingress.enabled=true",
            "portal.ingress.allowNoTrustedProxies=true",
            "portal.ingress.allowPlainHttp=true",
        ][..],
    ] {
        let objects = render(sets).unwrap_or_else(|e| panic!("{sets:?}: {e}"));
        named(&objects, "Ingress", "timedeal-portal");
    }
}

#[test]
fn the_default_install_renders_typed_objects_with_least_privilege() {
    let objects = render(&[]).unwrap();
    check_types(&objects);
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Deployment",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Role",
            "RoleBinding",
            "Service",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
            "ServiceAccount"
        ]
    );

    // The CRD template is crds/timedeal.yaml, kept on uninstall.
    let committed: Vec<CustomResourceDefinition> = serde_yaml::Deserializer::from_str(
        &std::fs::read_to_string(repo().join("crds/timedeal.yaml")).unwrap(),
    )
    .map(|doc| CustomResourceDefinition::deserialize(doc).unwrap())
    .collect();
    let rendered: Vec<CustomResourceDefinition> = objects
        .iter()
        .filter(|o| kind(o) == "CustomResourceDefinition")
        .map(|o| {
            let mut crd: CustomResourceDefinition = typed(o);
            let annotations = crd.metadata.annotations.take().unwrap();
            assert_eq!(annotations["helm.sh/resource-policy"], "keep");
            crd
        })
        .collect();
    assert_eq!(committed.len(), 2, "Company and TimeDeal");
    assert!(
        rendered == committed,
        "the chart's CRDs differ from crds/timedeal.yaml: run `make crd`"
    );

    // RBAC: exactly what the code calls.
    let cluster_role: ClusterRole = typed(named(&objects, "ClusterRole", rbac::NAME));
    assert_eq!(cluster_role.rules, rbac::cluster_role().rules);
    let tenant: ClusterRole = typed(named(&objects, "ClusterRole", rbac::TENANT));
    assert_eq!(tenant.rules, rbac::tenant().rules);
    let portal_deals: ClusterRole = typed(named(&objects, "ClusterRole", rbac::PORTAL_DEALS));
    assert_eq!(portal_deals.rules, rbac::portal_deals().rules);
    let portal: ClusterRole = typed(named(&objects, "ClusterRole", rbac::PORTAL));
    assert_eq!(portal.rules, rbac::portal().rules);
    let directory: ClusterRole = typed(named(&objects, "ClusterRole", rbac::DIRECTORY));
    assert_eq!(directory.rules, rbac::directory().rules);
    let role: Role = typed(one(&objects, "Role"));
    assert_eq!(
        role.rules,
        rbac::role("timedeal-system", "timedeal-postgres").rules
    );
    assert_eq!(role.metadata.namespace.as_deref(), Some("timedeal-system"));

    // The portal: its own ServiceAccount, bound to its own ClusterRole only; no Secret mounted
    // but its key and the database URL, through the kubelet.
    let binding: ClusterRoleBinding =
        typed(named(&objects, "ClusterRoleBinding", "timedeal-portal"));
    assert_eq!(binding.role_ref.name, rbac::PORTAL);
    assert_eq!(binding.subjects.unwrap()[0].name, "timedeal-portal");
    let portal: Deployment = typed(named(&objects, "Deployment", "timedeal-portal"));
    let pod = portal.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("timedeal-portal"));
    let container = &pod.containers[0];
    assert_eq!(
        container.command.as_deref(),
        Some(&["/usr/local/bin/timedeal-portal".to_owned()][..])
    );
    let secrets: Vec<String> = container
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
        .map(|r| format!("{}/{}", r.name, r.key))
        .collect();
    // Its own database user, never the platform's.
    assert_eq!(
        secrets,
        [
            "timedeal-postgres-portal/url",
            "timedeal-portal/session-key"
        ]
    );
    let service: k8s_openapi::api::core::v1::Service =
        typed(named(&objects, "Service", "timedeal-portal"));
    assert_eq!(
        service.spec.unwrap().selector.unwrap()["app.kubernetes.io/name"],
        "timedeal-portal"
    );
    // The directory: its own ServiceAccount bound to its own ClusterRole (list TimeDeals), no
    // Secret at all, scaled on CPU from its replicas up.
    let binding: ClusterRoleBinding =
        typed(named(&objects, "ClusterRoleBinding", "timedeal-directory"));
    assert_eq!(binding.role_ref.name, rbac::DIRECTORY);
    assert_eq!(binding.subjects.unwrap()[0].name, "timedeal-directory");
    let directory: Deployment = typed(named(&objects, "Deployment", "timedeal-directory"));
    let spec = directory.spec.unwrap();
    assert_eq!(
        spec.replicas, None,
        "the autoscaler keeps the count; one here would reset it on every upgrade"
    );
    let fixed = render(&["directory.maxReplicas=3", "directory.replicaCount=3"]).unwrap();
    let fixed: Deployment = typed(named(&fixed, "Deployment", "timedeal-directory"));
    assert_eq!(
        fixed.spec.unwrap().replicas,
        Some(3),
        "no autoscaler: a fixed count"
    );
    let pod = spec.template.spec.unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("timedeal-directory")
    );
    let container = &pod.containers[0];
    assert_eq!(
        container.command.as_deref(),
        Some(&["/usr/local/bin/timedeal-directory".to_owned()][..])
    );
    assert!(container
        .env
        .iter()
        .flatten()
        .all(|e| e.value_from.is_none()));
    assert!(container.resources.as_ref().unwrap().requests.is_some());
    let hpa: k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler = typed(named(
        &objects,
        "HorizontalPodAutoscaler",
        "timedeal-directory",
    ));
    let hpa = hpa.spec.unwrap();
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(2), 10));
    assert_eq!(hpa.scale_target_ref.name, "timedeal-directory");

    // The operator binds nothing to the portal's ServiceAccount.
    let operator_binding: ClusterRoleBinding =
        typed(named(&objects, "ClusterRoleBinding", "timedeal-operator"));
    assert_eq!(
        operator_binding.subjects.unwrap()[0].name,
        "timedeal-operator"
    );

    // The operator: two replicas, probes, resources, locked down.
    let deployment: Deployment = typed(named(&objects, "Deployment", "timedeal-operator"));
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("timedeal-operator")
    );
    assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("ghcr.io/timedeal/timedeal-operator:0.1.0")
    );
    assert!(container.liveness_probe.is_some() && container.readiness_probe.is_some());
    assert!(container.resources.as_ref().unwrap().requests.is_some());
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let env: Vec<&str> = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    for name in [
        "POD_NAME",
        "POD_NAMESPACE",
        "TIMEDEAL_POSTGRES_SECRET",
        "TIMEDEAL_TENANT_IMAGE",
    ] {
        assert!(env.contains(&name), "{name} missing: {env:?}");
    }
}

#[test]
fn every_option_renders_typed_objects_and_alerts_on_exported_metrics() {
    let objects = render(ALL_ON).unwrap();
    check_types(&objects);
    let kinds = kinds(&objects);
    for kind in [
        "Ingress",
        "StatefulSet",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
    ] {
        assert!(
            kinds.contains(&kind.to_owned()),
            "{kind} missing: {kinds:?}"
        );
    }
    let secrets: Vec<&Value> = objects.iter().filter(|o| kind(o) == "Secret").collect();
    assert_eq!(
        secrets.len(),
        2,
        "the trial PostgreSQL's platform and portal users'; the portal's key is the operator's \
         to generate"
    );
    // The portal's user is the one the operator grants, and its password is its own.
    let portal_url = secrets
        .iter()
        .find(|s| s["metadata"]["name"] == "timedeal-postgres-portal")
        .and_then(|s| s["stringData"]["url"].as_str())
        .unwrap();
    assert!(
        portal_url.starts_with("postgres://timedeal_portal:"),
        "{portal_url}"
    );
    let platform = secrets
        .iter()
        .find(|s| s["metadata"]["name"] == "timedeal-postgres")
        .unwrap();
    assert_ne!(
        platform["stringData"]["password"],
        secrets
            .iter()
            .find(|s| s["metadata"]["name"] == "timedeal-postgres-portal")
            .unwrap()["stringData"]["password"]
    );

    // Each alert watches metrics something exports.
    let rule = one(&objects, "PrometheusRule");
    let alerts = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    let names: Vec<&str> = alerts
        .iter()
        .map(|a| a["alert"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "TimedealDealDegraded",
            "TimedealStockLow",
            "TimedealStorefrontErrors",
            "TimedealQueueStalled",
            "TimedealDealNotReadyAtStart",
            "TimedealRedisRestored",
            "TimedealChargesWithoutOrders",
            "TimedealOrderCommitsFailing",
            "TimedealAtMaxReplicas",
            "TimedealOperatorNotLeading",
        ]
    );
    let exported = exported_metrics();
    let metric = regex::Regex::new(r"timedeal_[a-z_]+").unwrap();
    for alert in alerts {
        let expr = alert["expr"].as_str().unwrap();
        let used: Vec<&str> = metric.find_iter(expr).map(|m| m.as_str()).collect();
        assert!(!used.is_empty(), "{expr}");
        for name in used {
            assert!(
                exported.contains(&format!("\n{name}"))
                    || exported.contains(&format!("\n{name}{{")),
                "{} reads {name}, which nothing exports:\n{exported}",
                alert["alert"]
            );
        }
    }
}

/// The chart's alert rules as a Prometheus rule file pass `promtool check rules`, and each
/// alert fires on its cue in `promtool test rules` (`alerts.test.yaml`).
#[test]
fn the_alert_rules_pass_promtool_and_each_fires_on_its_cue() {
    let objects = render(ALL_ON).unwrap();
    let rule = one(&objects, "PrometheusRule");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        timedeal_operator::yaml::document(&rule["spec"]),
    )
    .unwrap();
    std::fs::copy(
        repo().join("operator/tests/alerts.test.yaml"),
        dir.path().join("alerts.test.yaml"),
    )
    .unwrap();
    let promtool = |args: &[&str]| {
        let output = Command::new("promtool")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run promtool ({e}): run `make setup`"));
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "promtool {args:?}:\n{said}");
        said
    };
    let checked = promtool(&["check", "rules", "rules.yaml"]);
    assert!(checked.contains("SUCCESS: 10 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts.test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// A deal whose every health series is present.
fn all_series() -> timedeal_operator::metrics::DealHealth {
    timedeal_operator::metrics::DealHealth {
        degraded: true,
        live_stock_ratio: Some(0.5),
        unready_after_start: true,
        at_max_replicas: true,
    }
}

/// Every metric the operator and a storefront export, each with a sample.
fn exported_metrics() -> String {
    let operator = Metrics::new();
    operator.deal("ns", "d", all_series());
    let storefront = timedeal_tenant_app::metrics::Metrics::new();
    storefront.order("confirmed");
    storefront.rejection("sold_out");
    storefront.admissions.inc();
    storefront
        .requests
        .get_or_create(&timedeal_tenant_app::metrics::RouteLabels {
            method: "POST",
            route: "/api/buy",
            status: 200,
        })
        .observe(0.01);
    format!("{}{}", operator.encode(), storefront.encode())
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_that_are_exported() {
    let objects = render(ALL_ON).unwrap();
    let map = objects
        .iter()
        .find(|o| kind(o) == "ConfigMap" && o["metadata"]["name"] == "timedeal-dashboard")
        .expect("the dashboard ConfigMap");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: Value =
        serde_json::from_str(map["data"]["timedeal.json"].as_str().unwrap()).unwrap();
    let exported = exported_metrics();
    let series: std::collections::BTreeSet<&str> = exported
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let metric = regex::Regex::new(r"\btimedeal_[a-z0-9_]+").unwrap();
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in metric.find_iter(expr) {
                assert!(
                    series.contains(name.as_str()),
                    "panel {:?} queries {}, which nothing exports",
                    panel["title"],
                    name.as_str()
                );
                queried.push(name.as_str().to_owned());
            }
        }
    }
    for wanted in [
        "timedeal_operator_deals",
        "timedeal_queue_waiting",
        "timedeal_queue_admitted",
        "timedeal_queue_admissions_total",
        "timedeal_orders_total",
        "timedeal_stock_remaining",
        "timedeal_http_request_duration_seconds_bucket",
        "timedeal_http_request_duration_seconds_count",
    ] {
        assert!(
            queried.iter().any(|q| q == wanted),
            "no panel shows {wanted}"
        );
    }
    // Off by default.
    let default = render(&[]).unwrap();
    assert!(!default
        .iter()
        .any(|o| o["metadata"]["name"] == "timedeal-dashboard"));
}

/// The chart's output, with the defaults and with every option on, validates strictly against
/// the official schemas of the oldest and newest Kubernetes it supports; only the Prometheus
/// operator's kinds, which those schemas do not hold, go unchecked.
#[test]
fn the_chart_renders_what_the_official_schemas_accept() {
    let out = tempfile::tempdir().unwrap();
    // helm's own text, as `kubectl apply` would read it.
    for (name, sets) in [("defaults", &[][..]), ("all-on", ALL_ON)] {
        std::fs::write(
            out.path().join(format!("{name}.yaml")),
            template(sets).unwrap(),
        )
        .unwrap();
    }
    for version in timedeal_testkit::schemas::KUBERNETES {
        let report: Vec<String> = timedeal_testkit::schemas::validate(out.path(), version)
            .into_iter()
            .filter(|line| {
                !(line.starts_with("WARN")
                    && line.contains("with api version monitoring.coreos.com/v1"))
            })
            .collect();
        assert!(
            report.is_empty(),
            "against Kubernetes {version}:\n{}",
            report.join("\n")
        );
    }
}

#[test]
fn values_the_schema_forbids_are_refused() {
    for bad in [
        "replicaCount=0",
        "portal.replicaCount=0",
        "operator.logLevel=loud",
        "postgres.trial.storage=lots",
        "portal.maxReplicas=1",
    ] {
        let error = render(&[bad]).expect_err(bad);
        assert!(
            error.contains("values don't meet the specifications of the schema"),
            "{bad}: {error}"
        );
    }
    let error = render(&["unknownKey=1"]).expect_err("unknown key");
    assert!(error.contains("unknownKey"), "{error}");
}

/// `kubectl kustomize manifests/base`, parsed.
fn kustomize_base() -> Vec<Value> {
    let output = Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo().join("manifests/base"))
        .output()
        .expect("kubectl is needed to render manifests/base");
    assert!(
        output.status.success(),
        "kubectl kustomize manifests/base failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_yaml::Deserializer::from_str(&String::from_utf8_lossy(&output.stdout))
        .map(|doc| serde_json::to_value(serde_yaml::Value::deserialize(doc).unwrap()).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

#[test]
fn the_kustomize_base_installs_what_the_chart_installs() {
    let chart = render(&[]).unwrap();
    let mut base = kustomize_base();
    // kustomize writes the CRD's whole-number bounds as integers (`1` for `1.0`), so the CRD is
    // compared as a typed value below rather than round-tripped.
    let plain = ["Namespace", "CustomResourceDefinition"];
    check_types(
        &base
            .iter()
            .filter(|o| !plain.contains(&kind(o)))
            .cloned()
            .collect::<Vec<_>>(),
    );

    // The base brings its namespace (Helm makes it with --create-namespace); otherwise the same
    // kinds, and every namespaced object lands in timedeal-system.
    let namespace = one(&base, "Namespace")["metadata"]["name"].clone();
    assert_eq!(namespace, "timedeal-system");
    base.retain(|o| kind(o) != "Namespace");
    assert_eq!(kinds(&base), kinds(&chart));
    for object in &base {
        let cluster_scoped = [
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
        ];
        if !cluster_scoped.contains(&kind(object)) {
            assert_eq!(
                object["metadata"]["namespace"],
                namespace,
                "{}",
                kind(object)
            );
        }
    }

    // The same RBAC rules, bound to the same ServiceAccount.
    for (kind_name, name) in [
        ("ClusterRole", rbac::NAME),
        ("ClusterRole", rbac::PORTAL_DEALS),
        ("ClusterRole", rbac::PORTAL),
        ("ClusterRole", rbac::DIRECTORY),
        ("Role", rbac::NAME),
    ] {
        assert_eq!(
            named(&base, kind_name, name)["rules"],
            named(&chart, kind_name, name)["rules"],
            "{kind_name} {name}"
        );
    }
    for (binding, name) in [
        ("ClusterRoleBinding", "timedeal-operator"),
        ("ClusterRoleBinding", "timedeal-portal"),
        ("ClusterRoleBinding", "timedeal-directory"),
        ("RoleBinding", "timedeal-operator"),
    ] {
        for field in ["subjects", "roleRef"] {
            assert_eq!(
                named(&base, binding, name)[field],
                named(&chart, binding, name)[field],
                "{binding} {name}"
            );
        }
    }

    // The same CRD, and the same operator container: image, arguments, environment, ports,
    // probes, resources and security.
    let crds = |objects: &[Value]| {
        objects
            .iter()
            .filter(|o| kind(o) == "CustomResourceDefinition")
            .map(|o| {
                serde_json::from_value::<CustomResourceDefinition>(o.clone())
                    .unwrap()
                    .spec
            })
            .collect::<Vec<_>>()
    };
    assert!(
        crds(&base) == crds(&chart),
        "the base's CRDs differ from the chart's"
    );
    for deployment in ["timedeal-operator", "timedeal-portal", "timedeal-directory"] {
        let pod = |objects: &[Value]| {
            named(objects, "Deployment", deployment)["spec"]["template"]["spec"].clone()
        };
        let (base_pod, chart_pod) = (pod(&base), pod(&chart));
        assert_eq!(base_pod["securityContext"], chart_pod["securityContext"]);
        assert_eq!(
            base_pod["serviceAccountName"],
            chart_pod["serviceAccountName"]
        );
        assert_eq!(
            base_pod["containers"], chart_pod["containers"],
            "{deployment}"
        );
        assert_eq!(
            named(&base, "Deployment", deployment)["spec"]["replicas"],
            named(&chart, "Deployment", deployment)["spec"]["replicas"]
        );
    }
    let services = |objects: &[Value]| {
        let mut services: Vec<(Value, Value)> = objects
            .iter()
            .filter(|o| kind(o) == "Service")
            .map(|s| (s["metadata"]["name"].clone(), s["spec"]["ports"].clone()))
            .collect();
        services.sort_by_key(|(name, _)| name.to_string());
        services
    };
    assert_eq!(services(&base), services(&chart));
}

/// The images cannot be built here (no Docker engine), so their recipes are checked as text:
/// every workspace member is in the build context (cargo needs them all), base images are pinned,
/// the build is locked, and the final stage runs as a non-root user.
#[test]
fn the_dockerfiles_build_from_a_complete_context_into_non_root_images() {
    let ignored: Vec<String> = std::fs::read_to_string(repo().join(".dockerignore"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    for member in &workspace_members() {
        for pattern in &ignored {
            assert!(
                !(member == pattern || member.starts_with(&format!("{pattern}/"))),
                ".dockerignore drops the workspace member {member} ({pattern})"
            );
        }
    }
    for (dockerfile, binary) in [
        ("operator/Dockerfile", "timedeal-operator"),
        ("tenant-app/Dockerfile", "tenant-app"),
    ] {
        let text = std::fs::read_to_string(repo().join(dockerfile)).unwrap();
        let bases: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("FROM "))
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(
            bases.len(),
            2,
            "{dockerfile}: a build stage and a final stage"
        );
        for base in &bases {
            // A version in the tag (rust:1.95.0-…) or, for distroless, in the name (…-debian12).
            let (_, tag) = base
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("{dockerfile}: {base} has no tag"));
            assert!(
                base.chars().any(|c| c.is_ascii_digit()) && tag != "latest",
                "{dockerfile}: {base} is not pinned to a version"
            );
        }
        assert!(
            text.contains("cargo build --release --locked"),
            "{dockerfile}: locked release build"
        );
        let final_stage = text.rsplit("FROM ").next().unwrap();
        let user = final_stage
            .lines()
            .find_map(|l| l.strip_prefix("USER "))
            .unwrap_or_else(|| panic!("{dockerfile}: the final stage sets no USER"));
        assert!(
            !["0", "root"].contains(&user.split(':').next().unwrap()),
            "{dockerfile}: runs as {user}"
        );
        assert!(
            final_stage.contains(&format!("/usr/local/bin/{binary}")),
            "{dockerfile}: {binary}"
        );
    }
}

/// The `[workspace] members` of the root Cargo.toml, which keeps them on one line.
fn workspace_members() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("members"))
        .expect("Cargo.toml lists its workspace members on one line");
    let list = line
        .split_once('[')
        .unwrap()
        .1
        .trim_end()
        .trim_end_matches(']');
    list.split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}

/// Every value the schema knows is in the README's values table, with its default when that
/// default is a plain value, so the install section cannot drift from the chart.
#[test]
fn the_readme_documents_every_value_with_its_default() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json")).unwrap())
            .unwrap();
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `")).collect();

    fn leaves(schema: &Value, path: String, out: &mut Vec<String>) {
        match schema["properties"].as_object() {
            Some(properties) => {
                for (key, child) in properties {
                    let next = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    leaves(child, next, out);
                }
            }
            None => out.push(path),
        }
    }
    let mut keys = Vec::new();
    leaves(&schema, String::new(), &mut keys);
    assert!(keys.len() > 30, "{keys:?}");

    for key in keys {
        let row = rows
            .iter()
            .find(|row| {
                row.split(" | ")
                    .next()
                    .unwrap()
                    .contains(&format!("`{key}`"))
            })
            .unwrap_or_else(|| panic!("the README's values table does not list `{key}`"));
        let default = key.split('.').fold(&values, |value, part| &value[part]);
        let plain = match default {
            Value::String(text) if !text.is_empty() => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            Value::Bool(flag) => Some(flag.to_string()),
            _ => None,
        };
        if let Some(plain) = plain {
            assert!(
                row.contains(&format!("`{plain}`")),
                "the README gives `{key}` another default than values.yaml ({plain}):\n{row}"
            );
        }
    }
}
