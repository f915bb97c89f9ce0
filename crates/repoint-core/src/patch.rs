//! RFC 6902 JSON Patch: the one representation of a change in repoint.
//!
//! Actions become patch operations; the same operations are applied to the
//! JSON value, rendered as minimal text edits of a YAML file, sent in an
//! admission response or sent to an API server.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pointer;

/// The operation of a patch step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// Add (or replace a member).
    Add,
    /// Remove.
    Remove,
    /// Replace.
    Replace,
    /// Move from `from`.
    Move,
    /// Copy from `from`.
    Copy,
    /// Test for equality.
    Test,
}

/// One JSON Patch operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchOp {
    /// What to do.
    pub op: OpKind,
    /// Target pointer.
    pub path: String,
    /// Source pointer for move and copy.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from: Option<String>,
    /// Value for add, replace and test.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value: Option<Value>,
}

impl PatchOp {
    /// `{"op":"add","path":path,"value":value}`
    pub fn add(path: impl Into<String>, value: Value) -> Self {
        Self {
            op: OpKind::Add,
            path: path.into(),
            from: None,
            value: Some(value),
        }
    }

    /// `{"op":"replace","path":path,"value":value}`
    pub fn replace(path: impl Into<String>, value: Value) -> Self {
        Self {
            op: OpKind::Replace,
            path: path.into(),
            from: None,
            value: Some(value),
        }
    }

    /// `{"op":"test","path":path,"value":value}`
    pub fn test(path: impl Into<String>, value: Value) -> Self {
        Self {
            op: OpKind::Test,
            path: path.into(),
            from: None,
            value: Some(value),
        }
    }
}

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The pointer is not a JSON Pointer.
    #[error("{0:?} is not a JSON Pointer")]
    BadPointer(String),
    /// The pointer's parent does not exist or is a scalar.
    #[error("no value at {0}")]
    Missing(String),
    /// An array index is out of range or not a number.
    #[error("bad array index in {0}")]
    BadIndex(String),
    /// A required `value` or `from` is absent.
    #[error("{op:?} at {path} needs a `{field}`")]
    MissingField {
        /// The operation.
        op: OpKind,
        /// Its path.
        path: String,
        /// The absent field.
        field: &'static str,
    },
    /// A `test` operation failed.
    #[error("test failed at {0}")]
    TestFailed(String),
    /// The root cannot be removed or moved.
    #[error("cannot {0:?} the whole document")]
    Root(OpKind),
}

/// Apply `ops` in order. On error the value may be partly patched; callers
/// that need atomicity patch a copy.
pub fn apply(value: &mut Value, ops: &[PatchOp]) -> Result<(), PatchError> {
    for op in ops {
        apply_one(value, op)?;
    }
    Ok(())
}

fn need_value(op: &PatchOp) -> Result<Value, PatchError> {
    op.value.clone().ok_or_else(|| PatchError::MissingField {
        op: op.op,
        path: op.path.clone(),
        field: "value",
    })
}

fn need_from(op: &PatchOp) -> Result<&str, PatchError> {
    op.from.as_deref().ok_or_else(|| PatchError::MissingField {
        op: op.op,
        path: op.path.clone(),
        field: "from",
    })
}

fn apply_one(doc: &mut Value, op: &PatchOp) -> Result<(), PatchError> {
    match op.op {
        OpKind::Add => add(doc, &op.path, need_value(op)?),
        OpKind::Replace => {
            let v = need_value(op)?;
            let target = pointer::get_mut(doc, &op.path)
                .ok_or_else(|| PatchError::Missing(op.path.clone()))?;
            *target = v;
            Ok(())
        }
        OpKind::Remove => remove(doc, &op.path).map(drop),
        OpKind::Move => {
            let from = need_from(op)?;
            let v = remove(doc, from)?;
            add(doc, &op.path, v)
        }
        OpKind::Copy => {
            let from = need_from(op)?;
            let v = pointer::get(doc, from)
                .cloned()
                .ok_or_else(|| PatchError::Missing(from.to_string()))?;
            add(doc, &op.path, v)
        }
        OpKind::Test => {
            let v = need_value(op)?;
            match pointer::get(doc, &op.path) {
                Some(actual) if *actual == v => Ok(()),
                _ => Err(PatchError::TestFailed(op.path.clone())),
            }
        }
    }
}

fn split_parent(path: &str) -> Result<(Vec<String>, String), PatchError> {
    let mut tokens =
        pointer::tokens(path).ok_or_else(|| PatchError::BadPointer(path.to_string()))?;
    let last = tokens.pop().ok_or(PatchError::Root(OpKind::Remove))?;
    Ok((tokens, last))
}

fn parent_mut<'v>(
    doc: &'v mut Value,
    tokens: &[String],
    path: &str,
) -> Result<&'v mut Value, PatchError> {
    let mut node = doc;
    for t in tokens {
        node = match node {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| PatchError::Missing(path.to_string()))?;
    }
    Ok(node)
}

fn add(doc: &mut Value, path: &str, v: Value) -> Result<(), PatchError> {
    if path.is_empty() {
        *doc = v;
        return Ok(());
    }
    let (parents, last) = split_parent(path)?;
    match parent_mut(doc, &parents, path)? {
        Value::Object(m) => {
            m.insert(last, v);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .map_err(|_| PatchError::BadIndex(path.to_string()))?
            };
            if i > a.len() {
                return Err(PatchError::BadIndex(path.to_string()));
            }
            a.insert(i, v);
            Ok(())
        }
        _ => Err(PatchError::Missing(path.to_string())),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let (parents, last) = split_parent(path)?;
    match parent_mut(doc, &parents, path)? {
        Value::Object(m) => m
            .shift_remove(&last)
            .ok_or_else(|| PatchError::Missing(path.to_string())),
        Value::Array(a) => {
            let i = last
                .parse::<usize>()
                .map_err(|_| PatchError::BadIndex(path.to_string()))?;
            if i >= a.len() {
                return Err(PatchError::BadIndex(path.to_string()));
            }
            Ok(a.remove(i))
        }
        _ => Err(PatchError::Missing(path.to_string())),
    }
}

/// The operations that turn `from` into `to`, shaped for minimal text
/// edits: changed scalars are replaced, new members added, removed members
/// removed, items compared index by index and new ones appended at the
/// end; an array that shrank is replaced whole.
pub fn diff(from: &Value, to: &Value) -> Vec<PatchOp> {
    let mut ops = Vec::new();
    diff_into(&mut String::new(), from, to, &mut ops);
    ops
}

fn diff_into(path: &mut String, from: &Value, to: &Value, ops: &mut Vec<PatchOp>) {
    if from == to {
        return;
    }
    let len = path.len();
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                path.push('/');
                path.push_str(&pointer::escape(k));
                match b.get(k) {
                    Some(vb) => diff_into(path, va, vb, ops),
                    None => ops.push(PatchOp {
                        op: OpKind::Remove,
                        path: path.clone(),
                        from: None,
                        value: None,
                    }),
                }
                path.truncate(len);
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    ops.push(PatchOp::add(
                        format!("{path}/{}", pointer::escape(k)),
                        vb.clone(),
                    ));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() <= b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                path.push('/');
                path.push_str(&i.to_string());
                diff_into(path, va, vb, ops);
                path.truncate(len);
            }
            for vb in &b[a.len()..] {
                ops.push(PatchOp::add(format!("{path}/-"), vb.clone()));
            }
        }
        _ => ops.push(PatchOp::replace(path.clone(), to.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc6902_basics() {
        let mut v = json!({"a": [1, 2], "b": {"c": 1}});
        apply(
            &mut v,
            &[
                PatchOp::add("/a/-", json!(3)),
                PatchOp::add("/a/0", json!(0)),
                PatchOp::replace("/b/c", json!(2)),
                PatchOp::add("/b/d", json!("x")),
                PatchOp::test("/b/d", json!("x")),
            ],
        )
        .expect("applies");
        assert_eq!(v, json!({"a": [0, 1, 2, 3], "b": {"c": 2, "d": "x"}}));
        assert!(apply(&mut v, &[PatchOp::replace("/nope", json!(1))]).is_err());
    }

    #[test]
    fn diff_round_trips() {
        let cases = [
            (
                json!({"a": 1, "b": [1, 2]}),
                json!({"a": 2, "b": [1, 2, 3], "c": {"d": 1}}),
            ),
            (json!({"a": [{"x": 1}]}), json!({"a": [{"x": 2}, {"y": 1}]})),
            (json!({"a": [1, 2, 3]}), json!({"a": [3]})),
            (json!({"a": null}), json!({"a": [{"name": "s"}]})),
            (json!({"a": 1, "b": 2}), json!({"b": 2})),
        ];
        for (from, to) in cases {
            let ops = diff(&from, &to);
            let mut v = from.clone();
            apply(&mut v, &ops).expect("diff applies");
            assert_eq!(v, to, "{ops:?}");
        }
        assert_eq!(
            diff(
                &json!({"s": {"c": [{"image": "a"}]}}),
                &json!({"s": {"c": [{"image": "b"}], "p": [1]}})
            ),
            [
                PatchOp::replace("/s/c/0/image", json!("b")),
                PatchOp::add("/s/p", json!([1]))
            ]
        );
        assert!(diff(&json!({"a": 1}), &json!({"a": 1})).is_empty());
    }
}
