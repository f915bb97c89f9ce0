//! What a YAML scalar means to kubectl.
//!
//! kubectl, Helm, Argo CD and Flux read manifests with sigs.k8s.io/yaml:
//! go-yaml v2 decodes the text into Go values, which are marshalled to JSON,
//! which the API machinery decodes into unstructured objects (a JSON number
//! becomes an `int64` when it is one, a `float64` otherwise). This module
//! reproduces that chain for one scalar, so that the value repoint shows
//! policies and writes as JSON is the one the cluster gets, not the YAML 1.2
//! reading most YAML libraries (saphyr included) give:
//!
//! - `y`/`yes`/`on`/`true` (in three capitalizations) and their negations
//!   are booleans; `~`, `null` and the empty scalar are null;
//! - integers follow Go's base-prefix syntax after underscores are dropped:
//!   `0644` is octal 420, `0x1F`, `0o17` and `0b101` are integers, `1_000`
//!   is 1000; a number that fits no `int64` becomes a float, as the API
//!   machinery makes it;
//! - floats match YAML 1.1's `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
//!   (so `080` is 80); an integral float is an integer once it has been
//!   through JSON (`1.0` and `1e3` arrive as 1 and 1000); `.inf` and `.nan`
//!   cannot be marshalled to JSON, so kubectl refuses them;
//! - timestamps stay strings (go-yaml keeps their text when decoding into
//!   an `interface{}`); quoted and block scalars are strings;
//! - tags `!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!timestamp`
//!   force a type (an impossible one is an error), `!!binary` is base64
//!   decoded, and any other tag leaves the text as a string;
//! - mapping keys are resolved the same way and then written as strings:
//!   `y: 1` has the key `"true"`, `0x10: a` the key `"16"`, a float key is
//!   formatted as Go's `%g` of a `float32`; a null key is an error.
//!
//! The differential test in `tests/kubectl_semantics.rs` checks every rule
//! against the real kubectl.

use serde_json::{Number, Value};

/// A scalar as go-yaml v2 types it, before JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// `null`, `~`, empty.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer that fits an `int64`.
    Int(i64),
    /// An integer that fits only a `uint64`.
    Uint(u64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
}

/// How the scalar was written, as far as resolution cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// A plain scalar: resolved by its text.
    Plain,
    /// Quoted or block: a string unless tagged.
    Quoted,
}

/// The tag on a scalar, as resolution sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind<'a> {
    /// No tag.
    None,
    /// `!!name` (`tag:yaml.org,2002:name`).
    Core(&'a str),
    /// Any other tag.
    Other,
}

/// Resolve a scalar's text as go-yaml v2 does.
pub fn resolve(text: &str, written: Written, tag: TagKind<'_>) -> Result<Scalar, String> {
    match tag {
        TagKind::Other => return Ok(Scalar::Str(text.to_string())),
        TagKind::Core("str" | "timestamp") => return Ok(Scalar::Str(text.to_string())),
        TagKind::Core("binary") => return decode_base64(text).map(Scalar::Str),
        TagKind::Core(name @ ("null" | "bool" | "int" | "float")) => {
            let resolved = resolve_plain(text);
            return match (name, resolved) {
                ("null", v @ Scalar::Null) | ("bool", v @ Scalar::Bool(_)) => Ok(v),
                ("int", v @ (Scalar::Int(_) | Scalar::Uint(_))) => Ok(v),
                ("float", v @ Scalar::Float(_)) => Ok(v),
                ("float", Scalar::Int(i)) => Ok(Scalar::Float(i as f64)),
                ("float", Scalar::Uint(u)) => Ok(Scalar::Float(u as f64)),
                (name, _) => Err(format!("cannot decode {text:?} as a !!{name}")),
            };
        }
        // `!!map`, `!!seq` and unknown core tags on a scalar: go-yaml keeps
        // the text.
        TagKind::Core(_) => return Ok(Scalar::Str(text.to_string())),
        TagKind::None => {}
    }
    Ok(match written {
        Written::Quoted => Scalar::Str(text.to_string()),
        Written::Plain => resolve_plain(text),
    })
}

/// The go-yaml v2 reading of a plain, untagged scalar.
pub fn resolve_plain(s: &str) -> Scalar {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Scalar::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Scalar::Bool(false);
        }
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        _ => {}
    }
    match s.as_bytes()[0] {
        b'.' => {
            // go-yaml tries strconv.ParseFloat on the text as written.
            if is_yaml_float(s)
                && !s.contains('_')
                && let Some(f) = finite(s)
            {
                return Scalar::Float(f);
            }
            Scalar::Str(s.to_string())
        }
        b'0'..=b'9' | b'+' | b'-' => {
            let plain = s.replace('_', "");
            if let Some(i) = go_parse_int(&plain) {
                return Scalar::Int(i);
            }
            if let Some(u) = go_parse_uint(&plain) {
                return Scalar::Uint(u);
            }
            if is_yaml_float(&plain)
                && let Some(f) = finite(&plain)
            {
                return Scalar::Float(f);
            }
            Scalar::Str(s.to_string())
        }
        _ => Scalar::Str(s.to_string()),
    }
}

/// Go's ParseFloat refuses out-of-range values (it returns an error with
/// ±Inf), and go-yaml then keeps the text as a string.
fn finite(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, go-yaml's
/// yamlStyleFloat.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Split Go's base prefix off an unsigned literal: `0x`, `0o`, `0b`, a
/// leading `0` (octal), or none.
fn radix(digits: &str) -> (u32, &str) {
    let lower = |p: &str| {
        digits
            .get(..2)
            .is_some_and(|head| head.eq_ignore_ascii_case(p))
    };
    if lower("0x") {
        (16, &digits[2..])
    } else if lower("0o") {
        (8, &digits[2..])
    } else if lower("0b") {
        (2, &digits[2..])
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    }
}

fn parse_magnitude(digits: &str) -> Option<u64> {
    let (radix, body) = radix(digits);
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(body, radix).ok()
}

/// strconv.ParseInt(s, 0, 64).
fn go_parse_int(s: &str) -> Option<i64> {
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = parse_magnitude(digits)?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// strconv.ParseUint(s, 0, 64): no sign.
fn go_parse_uint(s: &str) -> Option<u64> {
    if s.starts_with(['-', '+']) {
        return None;
    }
    parse_magnitude(s)
}

impl Scalar {
    /// The JSON value kubectl sends for this scalar.
    pub fn into_json(self) -> Result<Value, String> {
        Ok(match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(b),
            Self::Int(i) => Value::from(i),
            Self::Uint(u) => number_from_f64(u as f64)?,
            Self::Float(f) => number_from_f64(f)?,
            Self::Str(s) => Value::String(s),
        })
    }

    /// The JSON object key sigs.k8s.io/yaml makes of this scalar.
    pub fn into_key(self) -> Result<String, String> {
        match self {
            Self::Str(s) => Ok(s),
            Self::Bool(b) => Ok(b.to_string()),
            Self::Int(i) => Ok(i.to_string()),
            Self::Float(f) => Ok(go_format_g32(f)),
            Self::Null => Err("a mapping key is null (kubectl cannot read it)".into()),
            Self::Uint(u) => Err(format!(
                "the mapping key {u} does not fit an int64 (kubectl cannot read it)"
            )),
        }
    }
}

/// A float as the API machinery holds it after JSON: an integer when it is
/// integral and fits an `int64`, else a float. NaN and infinities have no
/// JSON form.
pub fn number_from_f64(f: f64) -> Result<Value, String> {
    if !f.is_finite() {
        return Err(format!(
            "{f} has no JSON form (kubectl refuses .inf and .nan)"
        ));
    }
    // 2^63 is exactly representable; every integral float below it in
    // magnitude converts exactly.
    if f.fract() == 0.0 && f.abs() < 9_223_372_036_854_775_808.0 {
        return Ok(Value::from(f as i64));
    }
    Ok(Number::from_f64(f).map_or(Value::Null, Value::Number))
}

/// A JSON number as the API machinery holds it: an `int64` when its text is
/// one, else a `float64` (so an integer beyond `int64` becomes a float).
pub fn normalize_number(n: &Number) -> Value {
    if n.is_i64() {
        return Value::Number(n.clone());
    }
    match n.as_f64() {
        Some(f) if n.is_u64() => Number::from_f64(f).map_or(Value::Null, Value::Number),
        _ => Value::Number(n.clone()),
    }
}

/// Go's `strconv.FormatFloat(float64(float32(f)), 'g', -1, 32)`, which
/// sigs.k8s.io/yaml uses for float keys.
fn go_format_g32(f: f64) -> String {
    let x = f as f32;
    if x.is_nan() {
        return ".nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `d.ddde<exp>`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if x < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}{rest}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1;
    if point <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!(
            "{sign}{digits}{}",
            "0".repeat(point as usize - digits.len())
        )
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    }
}

/// go-yaml decodes `!!binary` with base64.StdEncoding after dropping line
/// breaks; Go's string then holds the bytes, which JSON marshalling turns
/// into UTF-8 with U+FFFD for invalid sequences.
fn decode_base64(text: &str) -> Result<String, String> {
    use base64::Engine;
    let clean: String = text.chars().filter(|c| !matches!(c, '\n' | '\r')).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|_| format!("{text:?} is not valid !!binary (base64)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plain(s: &str) -> Value {
        resolve(s, Written::Plain, TagKind::None)
            .and_then(Scalar::into_json)
            .unwrap_or_else(|e| json!({ "error": e }))
    }

    #[test]
    fn yaml_1_1_scalars() {
        assert_eq!(plain("yes"), json!(true));
        assert_eq!(plain("Off"), json!(false));
        assert_eq!(plain("oN"), json!("oN"));
        assert_eq!(plain("0644"), json!(420));
        assert_eq!(plain("1_000"), json!(1000));
        assert_eq!(plain("080"), json!(80));
        assert_eq!(plain("0x1F"), json!(31));
        assert_eq!(plain("0b101"), json!(5));
        assert_eq!(plain("-0b101"), json!(-5));
        assert_eq!(plain("1.0"), json!(1));
        assert_eq!(plain("1e3"), json!(1000));
        assert_eq!(plain(".5"), json!(0.5));
        assert_eq!(plain("1e400"), json!("1e400"));
        assert_eq!(plain("2024-01-01"), json!("2024-01-01"));
        assert_eq!(plain("1.2.3"), json!("1.2.3"));
        assert_eq!(plain("-"), json!("-"));
        assert_eq!(plain("9223372036854775808"), json!(9223372036854775808.0));
        assert!(plain(".inf").get("error").is_some());
    }

    #[test]
    fn keys() {
        let key = |s: &str| resolve_plain(s).into_key();
        assert_eq!(key("y").as_deref(), Ok("true"));
        assert_eq!(key("0x10").as_deref(), Ok("16"));
        assert_eq!(key("1.5").as_deref(), Ok("1.5"));
        assert_eq!(key("1e6").as_deref(), Ok("1e+06"));
        assert_eq!(key("123456.0").as_deref(), Ok("123456"));
        assert_eq!(key("0.0001").as_deref(), Ok("0.0001"));
        assert_eq!(key("0.00001").as_deref(), Ok("1e-05"));
        assert!(key("~").is_err());
    }

    #[test]
    fn tags() {
        let tagged = |s, t| resolve(s, Written::Quoted, TagKind::Core(t));
        assert_eq!(tagged("12", "int"), Ok(Scalar::Int(12)));
        assert_eq!(tagged("1", "float"), Ok(Scalar::Float(1.0)));
        assert_eq!(
            tagged("aGVsbG8=", "binary"),
            Ok(Scalar::Str("hello".into()))
        );
        assert!(tagged("x", "null").is_err());
        assert_eq!(
            resolve("yes", Written::Plain, TagKind::Core("str")),
            Ok(Scalar::Str("yes".into()))
        );
    }
}
