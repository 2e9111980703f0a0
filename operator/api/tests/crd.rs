//! The shape of the generated CRD: what `kubectl explain` and `kubectl get td` will show.

use kube::CustomResourceExt;
use serde_json::Value;
use timedeal_api::TimeDeal;

/// Walks every property and collects the paths that lack a description.
fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let here = format!("{path}.{name}");
            let text = property
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            if text.trim().is_empty() {
                out.push(here.clone());
            }
            undocumented(property, &here, out);
        }
    }
    for nested in ["items", "additionalProperties"] {
        if let Some(inner) = schema.get(nested).filter(|v| v.is_object()) {
            undocumented(inner, &format!("{path}[]"), out);
        }
    }
}

#[test]
fn every_field_has_a_description() {
    let crd = serde_json::to_value(TimeDeal::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut missing = Vec::new();
    undocumented(schema, "", &mut missing);
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

#[test]
fn names_scope_and_subresources_match_the_design() {
    let crd = TimeDeal::crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("timedeals.timedeal.dev"));
    assert_eq!(crd.spec.group, "timedeal.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["td".to_string()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<&str> = version
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Phase", "Sold", "Stock", "Waiting", "URL", "Age"]);
}

#[test]
fn every_string_checked_by_a_regex_rule_has_a_length_bound() {
    // The API server estimates the cost of `matches()` from maxLength and refuses a CRD whose
    // rules could run unbounded.
    fn walk(schema: &Value, path: &str, out: &mut Vec<String>) {
        if let Some(rules) = schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
        {
            // metadata.name is bounded by the API server itself (253 characters).
            let uses_regex = rules.iter().any(|r| {
                r["rule"].as_str().is_some_and(|s| {
                    let s = s.replace("self.metadata.name.matches(", "");
                    s.contains("matches(") || s.contains("startsWith(")
                })
            });
            if uses_regex && schema.get("maxLength").is_none() {
                out.push(path.to_owned());
            }
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                walk(property, &format!("{path}.{name}"), out);
            }
        }
    }
    let crd = serde_json::to_value(TimeDeal::crd()).unwrap();
    let mut unbounded = Vec::new();
    walk(
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        "",
        &mut unbounded,
    );
    assert!(
        unbounded.is_empty(),
        "regex rules on unbounded strings: {unbounded:?}"
    );
}
