//! Random value changes: the input is a YAML stream, a NUL byte, then the
//! bytes that choose changes to its first document (set a scalar, insert
//! or remove a member or an item). The change goes through `patch::diff`
//! and render, and the output must read back as the changed value.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use repoint_core::patch;
use serde_json::{Value, json};

#[derive(Arbitrary, Debug)]
enum Change {
    Set {
        at: u16,
        value: NewValue,
    },
    Remove {
        at: u16,
    },
    Insert {
        at: u16,
        key: String,
        value: NewValue,
    },
}

#[derive(Arbitrary, Debug)]
enum NewValue {
    Text(String),
    Tricky(u8),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    List(Vec<String>),
    Map(Vec<(String, String)>),
}

/// Strings whose YAML text needs care.
const TRICKY: &[&str] = &[
    "yes",
    "0644",
    "1_000",
    "2024-01-01",
    "",
    " x",
    "a: b",
    "a #b",
    "- x",
    "<<",
    "~",
    "null",
    "x\ny",
    "\u{feff}",
    "\u{2028}",
    "'",
    "\"",
    "\\",
    "{a}",
    "[1]",
    "*x",
    "&x",
    "!x",
    "%x",
    "@x",
    "`x",
    "1:20",
    ".inf",
    "0x1F",
    "+1",
    "on",
    "\t",
    "#",
];

impl NewValue {
    fn json(&self) -> Value {
        match self {
            Self::Text(s) => json!(s),
            Self::Tricky(i) => json!(TRICKY[*i as usize % TRICKY.len()]),
            Self::Int(i) => json!(i),
            Self::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Self::Bool(b) => json!(b),
            Self::Null => Value::Null,
            Self::List(items) => json!(items),
            Self::Map(entries) => {
                Value::Object(entries.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let Some(stream) = repoint_fuzz::stream(&data[..split]) else {
        return;
    };
    // A manifest: a document whose value is a mapping.
    let Some(doc) = stream
        .documents()
        .iter()
        .find(|d| d.root.is_some() && d.value.is_object())
    else {
        return;
    };
    let mut u = Unstructured::new(data.get(split + 1..).unwrap_or_default());
    let Ok(changes) = Vec::<Change>::arbitrary(&mut u) else {
        return;
    };
    let mut value = doc.value.clone();
    for change in changes.iter().take(8) {
        let pointers = repoint_fuzz::pointers(&value);
        let pick = |at: &u16| pointers[*at as usize % pointers.len()].clone();
        match change {
            Change::Set { at, value: v } => {
                if let Some(slot) = value.pointer_mut(&pick(at)) {
                    *slot = v.json();
                }
            }
            Change::Remove { at } => {
                let p = pick(at);
                if let Some((parent, last)) = p.rsplit_once('/')
                    && let Some(container) = value.pointer_mut(parent)
                {
                    match container {
                        Value::Object(m) => {
                            m.shift_remove(&last.replace("~1", "/").replace("~0", "~"));
                        }
                        Value::Array(items) => {
                            if let Ok(i) = last.parse::<usize>()
                                && i < items.len()
                            {
                                items.remove(i);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Change::Insert { at, key, value: v } => match value.pointer_mut(&pick(at)) {
                Some(Value::Object(m)) => {
                    m.insert(key.clone(), v.json());
                }
                Some(Value::Array(items)) => items.push(v.json()),
                _ => {}
            },
        }
    }
    // The whole document must stay an object (or nothing) to be a manifest.
    if !value.is_object() {
        return;
    }
    let ops = patch::diff(&doc.value, &value);
    if ops.is_empty() {
        return;
    }
    repoint_fuzz::assert_renders(&stream, &[(doc.index, ops)], false);
});
