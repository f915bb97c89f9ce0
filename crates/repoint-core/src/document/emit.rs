//! Write JSON values as YAML (block or flow) or JSON text, for the few
//! places where new text is needed: new entries, replaced values, and the
//! fallback re-rendering of a document.

use serde_json::Value;

use super::resolve::{Scalar, resolve_plain};
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
/// string by kubectl (go-yaml v2, which reads `yes`, `0644` and `1_000` as
/// a boolean and numbers), by YAML 1.2 parsers, and by readers that take
/// timestamps and sexagesimal numbers (`2024-01-01`, `1:20`) as such.
pub fn plain_safe(s: &str, in_flow: bool) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.trim() != s || !matches!(resolve_plain(s), Scalar::Str(_)) || s == "<<" {
        return false;
    }
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return false;
    }
    // Something starting like a number that go-yaml keeps as a string may
    // still be a timestamp (`2024-01-01`) or a base-60 number (`1:20`) to
    // another reader (YAML 1.1 tools, go-yaml v3).
    if (first.is_ascii_digit() || first == '+') && s[1..].contains(['-', ':']) {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') || s.contains(":\t") {
        return false;
    }
    if s.chars().any(needs_escape) {
        return false;
    }
    !(in_flow && s.contains([',', '[', ']', '{', '}']))
}

/// Whether a character must be escaped in YAML text: anything outside
/// YAML's printable set, the byte order mark, and the characters YAML 1.1
/// (go-yaml v2) reads as line breaks (NEL, LS, PS).
fn needs_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}'
        | '\u{fffe}' | '\u{ffff}')
}

/// A double-quoted scalar that is both valid YAML and valid JSON: `\"`,
/// `\\`, `\n`, `\t`, `\r`, and `\uXXXX` for every other character that
/// needs escaping.
pub fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A scalar value as YAML text, keeping `style` (the style of the scalar it
/// replaces) where the new value allows it.
pub fn yaml_scalar(v: &Value, style: ScalarStyle, in_flow: bool) -> String {
    match v {
        Value::String(s) => match style {
            ScalarStyle::SingleQuoted if !s.chars().any(needs_escape) => {
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
                out.push_str(&flow_key(k));
                out.push(' ');
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

/// YAML limits an implicit key (`key: value`) to 1024 characters; a longer
/// key is written as an explicit one (`? key` then `: value`).
const LONGEST_IMPLICIT_KEY: usize = 1000;

/// Write a block mapping key and its `:`, at the current position, which
/// is column `col`.
fn push_key(out: &mut String, k: &str, col: usize) {
    let text = key_text(k, false);
    if text.chars().count() > LONGEST_IMPLICIT_KEY {
        out.push_str("? ");
        out.push_str(&text);
        newline(out, col);
    } else {
        out.push_str(&text);
    }
    out.push(':');
}

/// A flow mapping key and its `:` (`? key:` when it is too long).
pub fn flow_key(k: &str) -> String {
    let text = key_text(k, true);
    if text.chars().count() > LONGEST_IMPLICIT_KEY {
        format!("? {text}:")
    } else {
        format!("{text}:")
    }
}

/// Where block output continues from.
#[derive(Debug, Clone, Copy)]
pub enum After {
    /// Right after `key:` whose entry starts at this column.
    Key(usize),
    /// Right after a `- ` whose content starts at this column (the dash's
    /// column plus two, or more for `-   item`).
    Dash(usize),
}

/// Write `v` in block style, continuing after a key or a dash.
pub fn block(out: &mut String, v: &Value, after: After, style: IndentStyle) {
    match (v, after) {
        (Value::Object(map), After::Key(col)) if !map.is_empty() => {
            for (k, item) in map {
                newline(out, col + style.mapping);
                push_key(out, k, col + style.mapping);
                block(out, item, After::Key(col + style.mapping), style);
            }
        }
        (Value::Object(map), After::Dash(col)) if !map.is_empty() => {
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    newline(out, col);
                }
                push_key(out, k, col);
                block(out, item, After::Key(col), style);
            }
        }
        (Value::Array(items), After::Key(col)) if !items.is_empty() => {
            for item in items {
                newline(out, col + style.sequence);
                out.push_str("- ");
                block(out, item, After::Dash(col + style.sequence + 2), style);
            }
        }
        (Value::Array(items), After::Dash(col)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    newline(out, col);
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
                push_key(&mut out, k, 0);
                block(&mut out, item, After::Key(0), style);
                out.push('\n');
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str("- ");
                block(&mut out, item, After::Dash(2), style);
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

/// Text written here (with `\n` line breaks) in another line ending.
/// Safe on anything this module writes: a line break inside a scalar is
/// always escaped, so every `\n` is a line's end.
pub fn with_newline(text: String, newline: &str) -> String {
    if newline == "\n" {
        text
    } else {
        text.replace('\n', newline)
    }
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
        assert!(!plain_safe("0644", false));
        assert!(!plain_safe("1_000", false));
        assert!(!plain_safe("2024-01-01", false));
        assert!(!plain_safe("on", false));
        assert!(!plain_safe("<<", false));
        assert!(!plain_safe("a\u{feff}b", false));
        assert_eq!(
            double_quoted("a\u{2028}\u{7f}\"\n"),
            "\"a\\u2028\\u007F\\\"\\n\""
        );
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
        let mut out = String::from("-    ");
        block(
            &mut out,
            &json!({"a": 1, "b": [2, 3]}),
            After::Dash(5),
            IndentStyle::default(),
        );
        assert_eq!(out, "-    a: 1\n     b:\n     - 2\n     - 3");
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
