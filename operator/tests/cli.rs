//! The operator binary's own sub-commands, run as a user would run them.

use std::{path::Path, process::Command};

fn operator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_timedeal-operator"))
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn committed_crd_matches_what_the_code_generates() {
    let output = operator().arg("crd").output().unwrap();
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).unwrap();
    let committed = std::fs::read_to_string(repo().join("crds/timedeal.yaml")).unwrap();
    assert!(
        generated == committed,
        "crds/timedeal.yaml is stale: regenerate it with `make crd` and commit the result"
    );
}

#[test]
fn check_accepts_the_sample_deals() {
    let output = operator()
        .arg("check")
        .arg(repo().join("manifests/samples"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("valid TimeDeal winter-headphones"),
        "{stdout}"
    );
    assert!(stdout.contains("all valid"), "{stdout}");
}

#[test]
fn check_rejects_an_invalid_deal_naming_the_rule() {
    let file = repo().join("manifests/samples/invalid/end-not-after-start.yaml");
    let output = operator().arg("check").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("spec.schedule.end: schedule.end must be after schedule.start"),
        "{stdout}"
    );
}

#[test]
fn check_of_a_missing_file_says_so() {
    let output = operator()
        .args(["check", "/nonexistent/deal.yaml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("/nonexistent/deal.yaml: cannot read"),
        "{stderr}"
    );
}

#[test]
fn committed_rbac_matches_what_the_code_needs() {
    let output = operator().arg("rbac").output().unwrap();
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).unwrap();
    let committed = std::fs::read_to_string(repo().join("manifests/base/rbac.yaml")).unwrap();
    assert!(
        generated == committed,
        "manifests/base/rbac.yaml is stale: regenerate it with `make rbac` and commit the result"
    );
}

#[test]
fn run_against_an_unreachable_cluster_exits_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             contexts:\n- name: gone\n  context:\n    cluster: gone\n    user: nobody\ncurrent-context: gone\n\
             users:\n- name: nobody\n  user:\n    token: not-a-real-token\n"
        ),
    )
    .unwrap();
    let output = operator()
        .args(["run", "--listen", "127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot reach the Kubernetes API server"),
        "{stderr}"
    );
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one line, not a stack of retries: {stderr}"
    );
}

#[test]
fn run_without_any_cluster_configuration_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let output = operator()
        .arg("run")
        .env("KUBECONFIG", dir.path().join("missing"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("set KUBECONFIG"), "{stderr}");
}
