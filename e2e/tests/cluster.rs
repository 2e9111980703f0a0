//! The CRD and the sample deals against a real API server: the cluster must accept exactly the
//! deals that the client-side validation accepts, and reject each invalid sample on its own rule.
//!
//! Needs a cluster reachable through `KUBECONFIG` and `kubectl`, so it is ignored by a plain
//! `cargo test`; `e2e/cluster.sh` runs it when a cluster answers and says SKIPPED otherwise.
//! It installs or updates the CRD, works in a namespace of its own and deletes that namespace.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Output,
};

use serde::Deserialize;
use serde_json::Value;
use timedeal_e2e::{kubectl, must, repo};

fn documents(file: &Path, namespace: &str) -> Vec<String> {
    let text = fs::read_to_string(file).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let mut value = Value::deserialize(doc).unwrap();
            value["metadata"]["namespace"] = Value::String(namespace.into());
            serde_json::to_string(&value).unwrap()
        })
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Checks that the API server's refusal names the field, and for CEL rules, the same message.
fn assert_rejected_for(file: &Path, output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "{} was accepted by the cluster",
        file.display()
    );
    let text = fs::read_to_string(file).unwrap();
    let expected = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .unwrap();
    let (field, message) = expected.split_once(": ").unwrap();
    assert!(
        stderr.contains(field),
        "{}: expected {field} in:\n{stderr}",
        file.display()
    );
    if timedeal_api::validation::rule_messages().contains(message) {
        assert!(
            stderr.contains(message),
            "{}: expected {message:?} in:\n{stderr}",
            file.display()
        );
    }
}

#[test]
#[ignore = "needs a Kubernetes cluster; run e2e/cluster.sh"]
fn the_cluster_agrees_with_the_client_side_validation() {
    let samples = repo().join("manifests/samples");
    must(
        kubectl(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            Some(&timedeal_api::crd_yaml()),
        ),
        "installing the CRD",
    );
    must(
        kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/timedeals.timedeal.dev",
            ],
            None,
        ),
        "waiting for the CRD",
    );
    let namespace = format!("timedeal-e2e-{}", std::process::id());
    must(
        kubectl(&["create", "namespace", &namespace], None),
        "creating the namespace",
    );
    let cleanup = scopeguard(namespace.clone());

    for file in yaml_files(&samples) {
        for doc in documents(&file, &namespace) {
            let output = kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&doc));
            must(output, &format!("applying {}", file.display()));
        }
    }
    for file in yaml_files(&samples.join("invalid")) {
        let doc = documents(&file, &namespace).remove(0);
        let output = kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&doc));
        assert_rejected_for(&file, &output);
    }
    for file in yaml_files(&samples.join("invalid-updates")) {
        let docs = documents(&file, &namespace);
        let stored: Value = serde_json::from_str(&docs[0]).unwrap();
        must(
            kubectl(&["apply", "-f", "-"], Some(&docs[0])),
            "creating the stored deal",
        );
        let name = stored["metadata"]["name"].as_str().unwrap();
        let status = serde_json::json!({ "status": stored["status"] }).to_string();
        must(
            kubectl(
                &[
                    "patch",
                    "-n",
                    &namespace,
                    "timedeal",
                    name,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    &status,
                ],
                None,
            ),
            "recording the status",
        );
        let output = kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&docs[1]));
        assert_rejected_for(&file, &output);
    }
    drop(cleanup);
}

/// Deletes the test namespace however the test ends.
fn scopeguard(namespace: String) -> impl Drop {
    struct Guard(String);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = kubectl(&["delete", "namespace", &self.0, "--wait=false"], None);
        }
    }
    Guard(namespace)
}
