//! Every sample in `manifests/samples/` against the generated CRD's schema and CEL rules:
//! the valid ones pass, and each invalid one fails with exactly its own rule's message.

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::Value;
use timedeal_api::validation;

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/samples")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("samples are valid YAML"))
        .collect()
}

/// The `# expect: ...` line every invalid sample carries.
fn expectation(file: &Path, text: &str) -> String {
    text.lines()
        .find_map(|line| line.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{} has no `# expect:` line", file.display()))
        .to_owned()
}

/// Validates an invalid sample the way the API server would see it: a single document is a
/// create, two documents are the stored object and an update to it.
fn errors_of(file: &Path, docs: &[Value]) -> Vec<String> {
    let result = match docs {
        [new] => validation::validate(new),
        [old, new] => {
            validation::validate(old).unwrap_or_else(|e| {
                panic!(
                    "{}: the stored object itself must be valid: {e:?}",
                    file.display()
                )
            });
            validation::validate_update(new, old)
        }
        _ => panic!("{}: expected one or two documents", file.display()),
    };
    match result {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn valid_samples_pass_and_read_back_as_timedeals() {
    let files = yaml_files(&samples_dir());
    assert!(
        files.len() >= 2,
        "expected the sample deals in {}",
        samples_dir().display()
    );
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let deal = validation::parse(&text)
            .unwrap_or_else(|e| panic!("{} should be valid, got:\n{e}", file.display()));
        assert!(deal.spec.product.stock >= 1);
        assert!(deal.spec.schedule.end > deal.spec.schedule.start);
    }
}

/// Invalid creates live in `invalid/`, invalid updates (stored object, then the change) in
/// `invalid-updates/`.
fn invalid_samples() -> Vec<PathBuf> {
    let mut files = yaml_files(&samples_dir().join("invalid"));
    files.extend(yaml_files(&samples_dir().join("invalid-updates")));
    files
}

#[test]
fn each_invalid_sample_fails_with_exactly_its_own_message() {
    let files = invalid_samples();
    assert!(files.len() >= 10, "expected the invalid samples");
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let expected = expectation(&file, &text);
        let errors = errors_of(&file, &documents(&text));
        assert_eq!(
            errors,
            vec![expected],
            "{} must break exactly the rule it is named for",
            file.display()
        );
    }
}

#[test]
fn every_cel_rule_has_an_invalid_sample_that_breaks_it() {
    let messages = validation::rule_messages();
    assert!(
        messages.len() >= 10,
        "expected the CRD's CEL rules, found {messages:?}"
    );

    let expected: Vec<String> = invalid_samples()
        .iter()
        .map(|f| expectation(f, &fs::read_to_string(f).unwrap()))
        .collect();
    for message in messages {
        assert!(
            expected.iter().any(|e| e.ends_with(&message)),
            "no invalid sample breaks the rule {message:?}"
        );
    }
}
