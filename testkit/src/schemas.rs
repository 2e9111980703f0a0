//! The official Kubernetes schemas, through kubernetes-validate (installed by `make setup` into
//! `.tools/kubernetes-validate`), in strict mode: an unknown or mistyped field fails, as it does
//! for `kubectl apply` with server-side field validation.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The oldest Kubernetes the chart supports (its `kubeVersion`) and the newest the validator
/// knows.
pub const KUBERNETES: [&str; 2] = ["1.28.0", "1.35.0"];

/// What kubernetes-validate says of every `.yaml` file in `dir` for Kubernetes `version`: one
/// line per error or warning, none when every object validates. Panics, saying how to install
/// it, when the validator is missing.
pub fn validate(dir: &Path, version: &str) -> Vec<String> {
    let program = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.tools/kubernetes-validate/bin/kubernetes-validate");
    assert!(
        program.exists(),
        "kubernetes-validate is not installed at {}: run scripts/setup.sh",
        program.display()
    );
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "nothing to validate in {}",
        dir.display()
    );
    let output = Command::new(&program)
        .args(["--strict", "--quiet", "-k", version])
        .args(&files)
        .output()
        .unwrap();
    let mut said: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&output.stderr).lines())
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    if !output.status.success() && said.is_empty() {
        said.push(format!(
            "kubernetes-validate exited {:?}",
            output.status.code()
        ));
    }
    said
}
