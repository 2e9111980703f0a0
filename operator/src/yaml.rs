//! YAML that every reader reads alike. A YAML 1.1 reader (kubectl's, PyYAML's) takes a plain
//! `yes`, `off` or `0755` for a boolean or a number where a YAML 1.2 reader sees a string, so
//! `--appendonly yes` or `proxy-buffering: off` would reach the API server as booleans. Here a
//! string is written plain only when it cannot be read as anything else under either version;
//! every other string is double-quoted (JSON's escapes are YAML's), and text of several lines
//! is a literal block.

use serde_json::Value;

/// The words a YAML 1.1 or 1.2 reader takes for a boolean or null.
const SPECIAL: [&str; 22] = [
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "Y", "N", "Yes", "No", "On",
    "Off", "True", "False", "Null", "NULL", "YES", "NO",
];

/// A string that reads back as itself in any YAML: it starts with a letter, `_` or `/`, holds
/// only letters, digits and `_ . / -`, and is no special word (`ON`, `OFF`, `TRUE`, `FALSE` are
/// caught by their letters' case-insensitive match).
fn plain(text: &str) -> bool {
    let mut chars = text.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '_' || first == '/')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !SPECIAL.contains(&text)
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        )
}

/// Text of several lines that a literal block keeps exactly: no carriage returns, tabs or other
/// control characters, no line ending in a space, and a first line with text that does not
/// start with one (it sets the block's indentation).
fn block(text: &str) -> bool {
    text.contains('\n')
        && text
            .split('\n')
            .find(|line| !line.is_empty())
            .is_some_and(|line| !line.starts_with(' '))
        && !text
            .chars()
            .any(|c| (c.is_control() && c != '\n') || yaml_unsafe(c))
        && text.split('\n').all(|line| !line.ends_with(' '))
}

/// Characters JSON leaves as they are but YAML readers do not: DEL and the C1 controls (which
/// YAML 1.1 readers refuse, or fold NEL into a space) and the Unicode line and paragraph
/// separators (line breaks to YAML 1.1).
fn yaml_unsafe(c: char) -> bool {
    matches!(c, '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}')
}

fn scalar(text: &str) -> String {
    if plain(text) {
        return text.to_owned();
    }
    let json = serde_json::to_string(text).expect("a string serialises");
    if !json.chars().any(yaml_unsafe) {
        return json;
    }
    json.chars()
        .map(|c| {
            if yaml_unsafe(c) {
                format!("\\u{:04x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One document: `value` in block style, ending with a newline.
pub fn document(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(map, 0, &mut out),
        Value::Array(items) if !items.is_empty() => write_list(items, 0, &mut out),
        other => {
            out.push_str(&inline(other).expect("a scalar or empty collection"));
            out.push('\n');
        }
    }
    out
}

/// A scalar or an empty list or map on one line; `None` for anything that needs lines of its own.
fn inline(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some("null".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !block(s) => Some(scalar(s)),
        Value::Array(items) if items.is_empty() => Some("[]".into()),
        Value::Object(map) if map.is_empty() => Some("{}".into()),
        _ => None,
    }
}

fn write_map(map: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (key, value) in map {
        out.push_str(&pad);
        out.push_str(&scalar(key));
        out.push(':');
        write_value(value, indent, out);
    }
}

fn write_list(items: &[Value], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for item in items {
        out.push_str(&pad);
        out.push('-');
        match item {
            // A map or list in a list: its first line beside the dash, the rest below it.
            Value::Object(map) if !map.is_empty() => {
                let mut nested = String::new();
                write_map(map, indent + 2, &mut nested);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            Value::Array(inner) if !inner.is_empty() => {
                let mut nested = String::new();
                write_list(inner, indent + 2, &mut nested);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            other => write_value(other, indent, out),
        }
    }
}

/// What follows a key's colon or a list's dash.
fn write_value(value: &Value, indent: usize, out: &mut String) {
    if let Some(line) = inline(value) {
        out.push(' ');
        out.push_str(&line);
        out.push('\n');
        return;
    }
    match value {
        Value::String(text) => {
            let chomp = if text.ends_with("\n\n") {
                "+"
            } else if text.ends_with('\n') {
                ""
            } else {
                "-"
            };
            out.push_str(&format!(" |{chomp}\n"));
            let pad = " ".repeat(indent + 2);
            let body = text.strip_suffix('\n').unwrap_or(text);
            for line in body.split('\n') {
                if !line.is_empty() {
                    out.push_str(&pad);
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        Value::Object(map) => {
            out.push('\n');
            write_map(map, indent + 2, out);
        }
        Value::Array(items) => {
            out.push('\n');
            write_list(items, indent + 2, out);
        }
        _ => unreachable!("scalars are inline"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What the text reads back as: YAML 1.2 (serde_yaml) here; the render test also runs a
    /// YAML 1.1 reader over the samples.
    fn back(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn strings_a_yaml_1_1_reader_would_misread_are_quoted() {
        let value = json!({"args": ["--appendonly", "yes", "--port", "6379"],
            "annotations": {"nginx.ingress.kubernetes.io/proxy-buffering": "off",
                "mode": "0755", "time": "1:20", "empty": "", "null": "null", "ON": "On"}});
        let text = document(&value);
        for quoted in [
            "\"yes\"", "\"off\"", "\"0755\"", "\"1:20\"", "\"\"", "\"null\"", "\"On\"", "\"ON\"",
            "\"6379\"",
        ] {
            assert!(text.contains(quoted), "{quoted} in {text}");
        }
        assert!(text.contains("- --appendonly\n") || text.contains("- \"--appendonly\"\n"));
        assert_eq!(back(&text), value);
    }

    #[test]
    fn any_object_reads_back_as_itself() {
        let value = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "shop", "labels": {}, "annotations": {"a": "x: y # z"}},
            "spec": {"replicas": 3, "paused": false, "selector": null,
                "list": [[1, 2], [], [{"a": [{"b": "c"}]}], {"k": "v", "l": [true]}],
                "text": "line one\nline two\n", "kept": "a\n\n", "bare": "one\ntwo",
                "separators": "a\u{2028}b\u{2029}c\nd", "c1": "del\u{7f} nel\u{85}",
                "odd": " leading\nx", "cr": "a\r\nb", "unicode": "héllo → ✓", "tab": "a\tb",
                "ratio": 1.5, "negative": -3}
        });
        let text = document(&value);
        assert_eq!(back(&text), value, "{text}");
        assert!(text.contains("text: |\n"), "{text}");
        assert!(text.contains("bare: |-\n"), "{text}");
        assert!(
            !text.chars().any(yaml_unsafe),
            "separators and C1 controls are escaped: {text}"
        );
    }
}
