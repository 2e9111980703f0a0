//! The CRD's own rules, evaluated without an API server.
//!
//! There is one source of truth for what a valid deal is: the OpenAPI schema and CEL rules of the
//! generated CRD. The API server enforces them on `kubectl apply`; this module enforces the very
//! same schema everywhere a deal arrives without one (the rental form, `tenant-app --deal`,
//! `timedeal-operator check`), in the order the API server does: defaults, structural schema
//! (types, required fields, minimums, lengths, patterns, enums, formats, unknown fields), then
//! the CEL `x-kubernetes-validations`.

use std::{fmt, sync::LazyLock};

use kube::core::cel::{apply_defaults, Validator};
use kube::CustomResourceExt;
use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::types::TimeDeal;

/// One rule broken by one field, in the API server's words: `spec.product.stock: ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, such as `spec.schedule.end` (empty for the whole object).
    pub field: String,
    /// What is wrong and what a valid value looks like.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Everything wrong with a deal: either it could not be read at all, or it broke rules.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not valid YAML or JSON: {0}")]
    Syntax(#[from] serde_yaml::Error),

    #[error("{}", list(.0))]
    Invalid(Vec<FieldError>),
}

fn list(errors: &[FieldError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

impl Error {
    /// The broken rules, one per field; empty when the input was not readable at all.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            Error::Invalid(errors) => errors,
            Error::Syntax(_) => &[],
        }
    }
}

const API_VERSION: &str = "timedeal.dev/v1alpha1";
const KIND: &str = "TimeDeal";

/// The `openAPIV3Schema` of the generated CRD: the schema the API server holds.
static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let crd = TimeDeal::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the derived CRD carries an openAPIV3Schema");
    serde_json::to_value(schema).expect("a CRD schema is JSON")
});

/// Reads a TimeDeal from YAML or JSON text and checks it against every rule of the CRD.
/// Defaults are filled in exactly as the API server would fill them.
pub fn parse(text: &str) -> Result<TimeDeal, Error> {
    from_value(&serde_yaml::from_str(text)?)
}

/// Reads every document of a multi-document YAML stream (`---` separated), checking each alone,
/// as `kubectl apply -f` would.
pub fn parse_all(text: &str) -> Vec<Result<TimeDeal, Error>> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| {
            let value = Value::deserialize(document)?;
            from_value(&value)
        })
        .collect()
}

/// Checks an already-parsed TimeDeal object and converts it to the typed resource.
pub fn from_value(value: &Value) -> Result<TimeDeal, Error> {
    let defaulted = validate(value).map_err(Error::Invalid)?;
    // Every field was just checked against the schema the types generate, so a failure here is a
    // disagreement between schema and types, reported rather than hidden.
    serde_json::from_value(defaulted).map_err(|e| {
        Error::Invalid(vec![FieldError {
            field: String::new(),
            message: format!("passes the CRD schema but does not map onto the TimeDeal type: {e}"),
        }])
    })
}

/// The message of every CEL rule in the CRD: what a person sees when a deal breaks one.
pub fn rule_messages() -> std::collections::BTreeSet<String> {
    fn walk(schema: &Value, out: &mut std::collections::BTreeSet<String>) {
        match schema {
            Value::Object(map) => {
                for rule in map
                    .get("x-kubernetes-validations")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(message) = rule.get("message").and_then(Value::as_str) {
                        out.insert(message.to_owned());
                    }
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Default::default();
    walk(&SCHEMA, &mut out);
    out
}

/// Checks a new TimeDeal object (as JSON) and returns it with defaults applied.
pub fn validate(object: &Value) -> Result<Value, Vec<FieldError>> {
    check(object, None)
}

/// Checks a change from `old` to `new`, including the transition rules (those on `oldSelf`, such
/// as prices and stock being frozen once the deal has started).
pub fn validate_update(new: &Value, old: &Value) -> Result<Value, Vec<FieldError>> {
    check(new, Some(old))
}

fn check(object: &Value, old: Option<&Value>) -> Result<Value, Vec<FieldError>> {
    let mut errors = Vec::new();
    let object = without_nulls(object);
    let Value::Object(fields) = &object else {
        return Err(vec![FieldError {
            field: String::new(),
            message: "a TimeDeal must be a mapping with apiVersion, kind, metadata and spec".into(),
        }]);
    };
    check_type_meta(fields, &mut errors);

    let defaulted = apply_defaults(&SCHEMA, &object);
    let mut body = defaulted.clone();
    if let Value::Object(map) = &mut body {
        // The API server owns these; the CRD schema does not describe them.
        for key in ["apiVersion", "kind", "metadata"] {
            map.remove(key);
        }
    }
    check_schema(&SCHEMA, &body, "", &mut errors);

    // CEL rules assume the structure the schema guarantees; like the API server, evaluate them
    // only on a structurally valid object.
    if errors.is_empty() {
        let old = old.map(|o| apply_defaults(&SCHEMA, &without_nulls(o)));
        if let Err(failures) = Validator::new().validate(&SCHEMA, &defaulted, old.as_ref()) {
            errors.extend(failures.into_vec().into_iter().map(|failure| FieldError {
                field: failure.field_path.trim_start_matches('.').to_owned(),
                message: failure.message,
            }));
        }
    }

    if errors.is_empty() {
        Ok(defaulted)
    } else {
        Err(errors)
    }
}

fn check_type_meta(fields: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    let mut expect = |key: &str, wanted: &str| match fields.get(key).and_then(Value::as_str) {
        Some(found) if found == wanted => {}
        found => errors.push(FieldError {
            field: key.into(),
            message: match found {
                Some(found) => format!("is {found:?}; a deal needs {key}: {wanted}"),
                None => format!("Required value: a deal needs {key}: {wanted}"),
            },
        }),
    };
    expect("apiVersion", API_VERSION);
    expect("kind", KIND);
    let name = fields
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str);
    if name.is_none_or(str::is_empty) {
        errors.push(FieldError {
            field: "metadata.name".into(),
            message: "Required value: give the deal a name".into(),
        });
    }
}

/// Absent and `null` mean the same to the API server for optional fields; drop the nulls so the
/// schema only ever sees values.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Walks a structural schema the way the API server's schema validation does.
fn check_schema(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let mut fail = |message: String| {
        errors.push(FieldError {
            field: path.to_owned(),
            message,
        })
    };
    let shown = || serde_json::to_string(value).unwrap_or_default();

    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !matches!(type_name(value), "integer" | "string") {
            fail(format!(
                "Invalid value: {}: must be an integer or a string",
                shown()
            ));
        }
        return;
    }

    if let Some(wanted) = schema.get("type").and_then(Value::as_str) {
        let found = type_name(value);
        let fits = found == wanted || (wanted == "number" && found == "integer");
        if !fits {
            fail(format!(
                "Invalid value: {}: must be of type {wanted}, not {found}",
                shown()
            ));
            return;
        }
    }

    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let options: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
            fail(format!(
                "Unsupported value: {}: supported values: {}",
                shown(),
                options.join(", ")
            ));
        }
    }

    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !fields.contains_key(name) {
                    errors.push(FieldError {
                        field: join(path, name),
                        message: "Required value".into(),
                    });
                }
            }
            let additional = schema.get("additionalProperties");
            let open =
                schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            for (key, item) in fields {
                let item_path = join(path, key);
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(item_schema), _) => check_schema(item_schema, item, &item_path, errors),
                    (None, Some(item_schema)) if item_schema.is_object() => {
                        check_schema(item_schema, item, &item_path, errors)
                    }
                    _ if open => {}
                    _ => {
                        let known: Vec<&str> = properties
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        errors.push(FieldError {
                            field: item_path,
                            message: format!(
                                "unknown field; known fields here: {}",
                                known.join(", ")
                            ),
                        });
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_schema(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::String(text) => {
            let length = text.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
                if length < min {
                    fail(format!(
                        "Invalid value: {}: must have at least {min} characters",
                        shown()
                    ));
                }
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
                if length > max {
                    fail(format!("Too long: may not be more than {max} characters"));
                }
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                if !pattern_matches(pattern, text) {
                    fail(format!(
                        "Invalid value: {}: should match '{pattern}'",
                        shown()
                    ));
                }
            }
            if schema.get("format").and_then(Value::as_str) == Some("date-time")
                && chrono::DateTime::parse_from_rfc3339(text).is_err()
            {
                fail(format!(
                    "Invalid value: {}: must be an RFC 3339 date-time such as 2026-12-01T12:00:00+09:00",
                    shown()
                ));
            }
        }
        Value::Number(number) => {
            let n = number.as_f64().unwrap_or_default();
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if n < min {
                    fail(format!(
                        "Invalid value: {number}: should be greater than or equal to {min}"
                    ));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if n > max {
                    fail(format!(
                        "Invalid value: {number}: should be less than or equal to {max}"
                    ));
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

fn pattern_matches(pattern: &str, text: &str) -> bool {
    static CACHE: LazyLock<std::sync::Mutex<std::collections::HashMap<String, Regex>>> =
        LazyLock::new(Default::default);
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let regex = cache.entry(pattern.to_owned()).or_insert_with(|| {
        Regex::new(pattern).expect("CRD patterns are valid regular expressions")
    });
    regex.is_match(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deal() -> Value {
        json!({
            "apiVersion": "timedeal.dev/v1alpha1",
            "kind": "TimeDeal",
            "metadata": { "name": "tea" },
            "spec": {
                "company": { "name": "Green Leaf", "contactEmail": "a@b.example" },
                "product": { "name": "Tea", "listPrice": 100, "dealPrice": 50, "stock": 10 },
                "schedule": { "start": "2027-03-01T10:00:00Z", "end": "2027-03-01T11:00:00Z" },
                "ingress": { "host": "tea.example.com" }
            }
        })
    }

    #[test]
    fn fills_in_defaults_as_the_api_server_would() {
        let defaulted = validate(&deal()).unwrap();
        assert_eq!(defaulted["spec"]["approved"], json!(false));
        assert_eq!(defaulted["spec"]["product"]["currency"], json!("USD"));
        assert_eq!(defaulted["spec"]["product"]["perUserLimit"], json!(1));
        assert_eq!(defaulted["spec"]["queue"]["admissionRate"], json!(50));
        assert_eq!(defaulted["spec"]["capacity"]["peakReplicas"], json!(4));
        assert_eq!(defaulted["spec"]["schedule"]["warmUp"], json!("10m"));
    }

    #[test]
    fn parse_returns_the_typed_deal_with_defaults() {
        let deal = parse(&serde_json::to_string(&deal()).unwrap()).unwrap();
        assert_eq!(deal.spec.queue.session_ttl, crate::Duration::from_secs(300));
        assert_eq!(deal.spec.capacity.max_replicas, 10);
        assert!(!deal.spec.approved);
    }

    #[test]
    fn nulls_count_as_absent() {
        let mut object = deal();
        object["spec"]["product"]["imageUrl"] = Value::Null;
        object["spec"]["images"] = Value::Null;
        assert!(validate(&object).is_ok());
    }

    #[test]
    fn reports_every_broken_rule_at_once() {
        let mut object = deal();
        object["spec"]["product"]["stock"] = json!("ten");
        object["spec"]["queue"] = json!({ "maxActive": 0 });
        object["spec"]["ingress"] = json!({});
        let fields: Vec<String> = validate(&object)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.ingress.host",
                "spec.product.stock",
                "spec.queue.maxActive"
            ]
        );
    }

    #[test]
    fn wrong_kind_and_missing_name_are_named() {
        let mut object = deal();
        object["kind"] = json!("Deployment");
        object["metadata"] = json!({});
        let errors = validate(&object).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            r#"kind: is "Deployment"; a deal needs kind: TimeDeal"#
        );
        assert_eq!(
            errors[1].to_string(),
            "metadata.name: Required value: give the deal a name"
        );
        assert!(parse("just a string")
            .unwrap_err()
            .to_string()
            .contains("must be a mapping"));
        assert!(parse("spec: [")
            .unwrap_err()
            .to_string()
            .contains("not valid YAML or JSON"));
    }

    #[test]
    fn prices_and_stock_may_change_until_the_deal_has_started() {
        let old = deal();
        let mut new = deal();
        new["spec"]["product"]["dealPrice"] = json!(40);
        new["spec"]["product"]["stock"] = json!(20);
        assert!(
            validate_update(&new, &old).is_ok(),
            "no status yet: changes allowed"
        );

        let mut scheduled = old.clone();
        scheduled["status"] = json!({ "phase": "Scheduled" });
        assert!(
            validate_update(&new, &scheduled).is_ok(),
            "not started: changes allowed"
        );

        let mut started = old.clone();
        started["status"] = json!({ "phase": "Live", "startedAt": "2027-03-01T10:00:01Z" });
        let errors = validate_update(&new, &started).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "spec.product");

        let mut renamed = started.clone();
        renamed["spec"]["product"]["name"] = json!("Green tea");
        assert!(
            validate_update(&renamed, &started).is_ok(),
            "other fields stay editable"
        );
    }

    #[test]
    fn the_redis_volume_is_fixed_once_the_deal_exists() {
        let mut old = deal();
        old["spec"]["capacity"] = json!({"redisStorage": {"size": "1Gi"}});
        for changed in [
            json!({"redisStorage": {"size": "5Gi"}}),
            json!({"redisStorage": {"size": "1Gi", "storageClassName": "fast"}}),
            json!({}),
        ] {
            let mut new = old.clone();
            new["spec"]["capacity"] = changed.clone();
            let errors = validate_update(&new, &old).unwrap_err();
            assert_eq!(errors[0].field, "spec.capacity.redisStorage", "{changed}");
        }
        let mut added = deal();
        added["spec"]["capacity"] = json!({"redisStorage": {"size": "1Gi"}});
        assert!(validate_update(&added, &deal()).is_err(), "nor added later");
        let mut scaled = old.clone();
        scaled["spec"]["capacity"]["maxReplicas"] = json!(30);
        assert!(
            validate_update(&scaled, &old).is_ok(),
            "the rest stays editable"
        );
    }
}
