//! Running `kubectl` and `helm` for the real-cluster suites.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `program` with `args`, feeding it `stdin`, and collects what it printed.
pub fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    run(Path::new("kubectl"), args, stdin)
}

/// `helm` from `.tools/bin` (`make setup` puts it there), else from the PATH.
pub fn helm(args: &[&str]) -> Output {
    let local = repo().join(".tools/bin/helm");
    let program = if local.exists() {
        local
    } else {
        PathBuf::from("helm")
    };
    run(&program, args, None)
}

/// Its standard output, or a panic naming `what` with everything the command printed.
pub fn must(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
