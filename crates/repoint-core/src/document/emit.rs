//! Write JSON values as YAML (block or flow) or JSON text, for the few
//! places where new text is needed: new entries, replaced values, and the
//! fallback re-rendering of a document.

use serde_json::Value;

use super::build::resolve_plain;
use super::tree::ScalarStyle;

/// The indentation habits of a document, so new entries look like their
/// neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndentStyle {
    /// Extra columns for a mapping nested under a key.
    pub mapping: usize,
    /// Columns between a key and the `-` of its block sequence: 0 for
    /// `key:\n- a` (kubectl's style), 2 for `key:\n  - a`.
    pub sequence: usize,
}

impl Default for IndentStyle {
    fn default() -> Self {
        Self {
            mapping: 2,
            sequence: 0,
        }
    }
}

/// Whether `s` can be written as a plain scalar and read back as the same
/// string, by YAML 1.2 parsers and by the YAML 1.1 parsers kubectl and Helm
/// use (which read `yes`/`on`/`y` as booleans).
pub fn plain_safe(s: &str, in_flow: bool) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.trim() != s || !matches!(resolve_plain(s), Value::String(_)) {
        return false;
    }
    if matches!(
        s.to_ascii_lowercase().as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off"
    ) {
        return false;
    }
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    if s.chars().any(|c| c.is_control()) {
        return false;
    }
    !(in_flow && s.contains([',', '[', ']', '{', '}']))
}

/// A double-quoted YAML scalar; JSON string escapes are valid YAML ones.
pub fn double_quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// A scalar value as YAML text, keeping `style` (the style of the scalar it
/// replaces) where the new value allows it.
pub fn yaml_scalar(v: &Value, style: ScalarStyle, in_flow: bool) -> String {
    match v {
        Value::String(s) => match style {
            ScalarStyle::SingleQuoted if !s.chars().any(|c| c.is_control()) => {
                format!("'{}'", s.replace('\'', "''"))
            }
            ScalarStyle::DoubleQuoted => double_quoted(s),
            _ if plain_safe(s, in_flow) => s.clone(),
            _ => double_quoted(s),
        },
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) | Value::Object(_) => flow(v),
    }
}

/// A value as one line of JSON with a space after `:` and `,`, the way
/// people write inline JSON: `{"name": "regcred"}`.
pub fn json_inline(v: &Value) -> String {
    match v {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(json_inline).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", double_quoted(k), json_inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        scalar => serde_json::to_string(scalar).unwrap_or_default(),
    }
}

/// A value as one line of YAML flow syntax: `{name: regcred}`.
pub fn flow(v: &Value) -> String {
    let mut out = String::new();
    write_flow(&mut out, v);
    out
}

fn write_flow(out: &mut String, v: &Value) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_flow(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&key_text(k, true));
                out.push_str(": ");
                write_flow(out, item);
            }
            out.push('}');
        }
        scalar => out.push_str(&yaml_scalar(scalar, ScalarStyle::Plain, true)),
    }
}

/// A mapping key as YAML text.
pub fn key_text(k: &str, in_flow: bool) -> String {
    if plain_safe(k, in_flow) {
        k.to_string()
    } else {
        double_quoted(k)
    }
}

/// Where block output continues from.
#[derive(Debug, Clone, Copy)]
pub enum After {
    /// Right after `key:` written at this column.
    Key(usize),
    /// Right after `- ` whose dash is at this column.
    Dash(usize),
}

/// Write `v` in block style, continuing after a key or a dash.
pub fn block(out: &mut String, v: &Value, after: After, style: IndentStyle) {
    match (v, after) {
        (Value::Object(map), After::Key(col)) if !map.is_empty() => {
            for (k, item) in map {
                newline(out, col + style.mapping);
                out.push_str(&key_text(k, false));
                out.push(':');
                block(out, item, After::Key(col + style.mapping), style);
            }
        }
        (Value::Object(map), After::Dash(col)) if !map.is_empty() => {
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    newline(out, col + 2);
                }
                out.push_str(&key_text(k, false));
                out.push(':');
                block(out, item, After::Key(col + 2), style);
            }
        }
        (Value::Array(items), After::Key(col)) if !items.is_empty() => {
            for item in items {
                newline(out, col + style.sequence);
                out.push_str("- ");
                block(out, item, After::Dash(col + style.sequence), style);
            }
        }
        (Value::Array(items), After::Dash(col)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    newline(out, col + 2);
                }
                out.push_str("- ");
                block(out, item, After::Dash(col + 2), style);
            }
        }
        (scalar, After::Key(_)) => {
            out.push(' ');
            out.push_str(&yaml_scalar(scalar, ScalarStyle::Plain, false));
        }
        (scalar, After::Dash(_)) => out.push_str(&yaml_scalar(scalar, ScalarStyle::Plain, false)),
    }
}

/// A whole document's root value in block style at column 0, ending in a
/// newline.
pub fn document(v: &Value, style: IndentStyle) -> String {
    let mut out = String::new();
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, item) in map {
                out.push_str(&key_text(k, false));
                out.push(':');
                block(&mut out, item, After::Key(0), style);
                out.push('\n');
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str("- ");
                block(&mut out, item, After::Dash(0), style);
                out.push('\n');
            }
        }
        scalar => {
            out.push_str(&yaml_scalar(scalar, ScalarStyle::Plain, false));
            out.push('\n');
        }
    }
    out
}

fn newline(out: &mut String, indent: usize) {
    out.push('\n');
    out.extend(std::iter::repeat_n(' ', indent));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quoting() {
        assert!(plain_safe("quay.io/org/app:v1@sha256:abc", false));
        assert!(!plain_safe("yes", false));
        assert!(!plain_safe("1.0", false));
        assert!(!plain_safe("a: b", false));
        assert!(!plain_safe("a,b", true));
        assert_eq!(
            yaml_scalar(&json!("it's"), ScalarStyle::SingleQuoted, false),
            "'it''s'"
        );
    }

    #[test]
    fn block_shapes() {
        let mut out = String::from("imagePullSecrets:");
        block(
            &mut out,
            &json!([{"name": "a"}]),
            After::Key(2),
            IndentStyle::default(),
        );
        assert_eq!(out, "imagePullSecrets:\n  - name: a");
        assert_eq!(
            document(
                &json!({"a": {"b": [1, {"c": "d", "e": []}]}}),
                IndentStyle {
                    mapping: 2,
                    sequence: 2
                }
            ),
            "a:\n  b:\n    - 1\n    - c: d\n      e: []\n"
        );
    }
}
