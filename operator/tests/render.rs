//! `timedeal-operator render` of every sample deal at every phase: each child reads back into its
//! Kubernetes type without losing a field, validates strictly against the official schemas of
//! the oldest and newest Kubernetes the chart supports, and checkov's Kubernetes checks pass on
//! all of them, but for the exceptions below, each with its reason.

use std::{path::Path, process::Command};

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{ConfigMap, Secret, Service},
    networking::v1::{Ingress, NetworkPolicy},
    policy::v1::PodDisruptionBudget,
};
use serde_json::Value;
use timedeal_api::validation;

/// Checks that do not apply to a tenant workload, and why.
const EXCEPTIONS: &[(&str, &str)] = &[
    (
        "CKV_K8S_43",
        "image digests: images are pinned per deal in its status and changed only outside a \
         sale; an admin who wants digests sets them in the operator's image flags or \
         spec.images, which accept digest references",
    ),
    (
        "CKV_K8S_15",
        "imagePullPolicy Always: pinned images do not change under a tag the operator chose, \
         and pulling on every start would make a registry outage an outage of every deal",
    ),
    (
        "CKV_K8S_153",
        "snippet annotations: only the public head's own Ingress carries one, rendered here \
         with a cache zone named, and it is the operator's fixed text \
         (timedeal_api::head_cache::snippet, asserted below), never a tenant's; a cluster \
         that allows no snippets names no zone and gets no head Ingress",
    ),
    (
        "CKV_K8S_35",
        "secrets as environment variables: the pod spec carries only secretKeyRefs, never a \
         value; the storefront and Redis read them once at start and no shell reaches them",
    ),
];

fn operator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_timedeal-operator"))
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Upcoming, warming up, live, ended, and after retention.
fn moments(path: &Path) -> Vec<(&'static str, DateTime<Utc>)> {
    let td = validation::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    let schedule = &td.spec.schedule;
    let retention = schedule.retention.chrono();
    vec![
        ("upcoming", schedule.start - Duration::hours(2)),
        ("warming", schedule.start - Duration::seconds(30)),
        ("live", schedule.start + Duration::minutes(1)),
        ("ended", schedule.end + Duration::minutes(1)),
        ("retired", schedule.end + retention + Duration::minutes(1)),
    ]
}

fn samples() -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(repo().join("manifests/samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 3, "{paths:?}");
    paths
}

/// Reads `object` into `K` and back: equal means no field was unknown or mistyped.
fn round_trip<K: serde::de::DeserializeOwned + serde::Serialize>(object: &Value) {
    let typed: K =
        serde_json::from_value(object.clone()).unwrap_or_else(|e| panic!("{e}: {object:#}"));
    assert_eq!(&serde_json::to_value(typed).unwrap(), object);
}

#[test]
fn every_sample_renders_at_every_phase_and_passes_the_scanner() {
    // checkov skips hidden directories, which tempfile's default names are.
    let out = tempfile::Builder::new()
        .prefix("render-")
        .tempdir()
        .unwrap();
    let mut rendered = 0;
    for path in samples() {
        for (moment, at) in moments(&path) {
            let output = operator()
                .arg("render")
                .arg(&path)
                .args(["--at", &at.to_rfc3339()])
                // Where a file names no namespace, as a company's own namespace would hold it.
                .args(["--deal-namespace", "green-leaf"])
                // With the public head's own, cached, Ingress.
                .args(["--head-cache-zone", "timedeal_head"])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{}: {stderr}", path.display());
            let text = String::from_utf8(output.stdout).unwrap();
            assert_eq!(
                text.matches("kind: Ingress").count(),
                2,
                "the storefront's and the head's Ingress: {}",
                path.display()
            );
            for document in serde_yaml::Deserializer::from_str(&text) {
                let object: Value = serde::Deserialize::deserialize(document).unwrap();
                match object["kind"].as_str().unwrap() {
                    "Deployment" => round_trip::<Deployment>(&object),
                    "StatefulSet" => round_trip::<StatefulSet>(&object),
                    "Service" => round_trip::<Service>(&object),
                    "Secret" => round_trip::<Secret>(&object),
                    "ConfigMap" => round_trip::<ConfigMap>(&object),
                    "NetworkPolicy" => round_trip::<NetworkPolicy>(&object),
                    "Ingress" => {
                        round_trip::<Ingress>(&object);
                        let name = object["metadata"]["name"].as_str().unwrap();
                        let snippet = &object["metadata"]["annotations"]
                            ["nginx.ingress.kubernetes.io/configuration-snippet"];
                        if name.ends_with("-head") {
                            assert_eq!(
                                snippet.as_str(),
                                Some(timedeal_api::head_cache::snippet("timedeal_head").as_str())
                            );
                        } else {
                            assert!(snippet.is_null(), "{name} carries a snippet");
                        }
                    }
                    "PodDisruptionBudget" => round_trip::<PodDisruptionBudget>(&object),
                    "HorizontalPodAutoscaler" => round_trip::<HorizontalPodAutoscaler>(&object),
                    other => panic!("unexpected kind {other}"),
                }
            }
            let name = path.file_stem().unwrap().to_string_lossy();
            std::fs::write(out.path().join(format!("{name}-{moment}.yaml")), text).unwrap();
            rendered += 1;
        }
    }

    // Strictly against the official schemas of the oldest Kubernetes the chart supports and the
    // newest the validator knows: a mistyped or unknown field, or a string a YAML 1.1 reader
    // takes for a boolean (`--appendonly yes`), fails here as `kubectl apply` would.
    for version in timedeal_testkit::schemas::KUBERNETES {
        let report = timedeal_testkit::schemas::validate(out.path(), version);
        assert!(
            report.is_empty(),
            "against Kubernetes {version}:\n{}",
            report.join("\n")
        );
    }

    let checkov = repo().join(".tools/checkov/bin/checkov");
    assert!(
        checkov.exists(),
        "checkov is not installed at {}: run scripts/setup.sh",
        checkov.display()
    );
    let skips: Vec<&str> = EXCEPTIONS.iter().map(|(id, _)| *id).collect();
    let output = Command::new(&checkov)
        .args([
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--quiet",
            "--compact",
        ])
        .args(["--skip-check", &skips.join(",")])
        .arg("--directory")
        .arg(out.path())
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    // One report per framework; --quiet leaves out the passed checks, the summary counts them.
    let reports = match report {
        Value::Array(reports) => reports,
        single => vec![single],
    };
    let mut passed = 0;
    let mut failed = Vec::new();
    for report in &reports {
        passed += report["summary"]["passed"].as_u64().unwrap_or(0);
        for check in report["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            failed.push(format!(
                "{} {} on {} ({})",
                check["check_id"].as_str().unwrap_or("?"),
                check["check_name"].as_str().unwrap_or("?"),
                check["resource"].as_str().unwrap_or("?"),
                check["file_path"].as_str().unwrap_or("?"),
            ));
        }
    }
    assert!(failed.is_empty(), "checkov failed:\n{}", failed.join("\n"));
    assert!(
        passed > 100 * rendered / 5,
        "checkov passed only {passed} checks on {rendered} renders: did it scan them?"
    );
}

#[test]
fn render_of_a_missing_or_invalid_file_says_what_is_wrong() {
    let output = operator()
        .args(["render", "/nonexistent/deal.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
    let invalid = repo().join("manifests/samples/invalid/end-not-after-start.yaml");
    let output = operator().arg("render").arg(&invalid).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("schedule.end must be after"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
