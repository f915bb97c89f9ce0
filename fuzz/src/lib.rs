//! What the fuzz targets share: reading an input as a stream, and the
//! property every render must have.
//!
//! The targets (in `fuzz_targets/`) are run by `cargo xtask fuzz`, which
//! seeds them from `../shared/` at run time:
//! - `reference`: image references parse, print and parse back the same;
//! - `document`: any stream that parses renders back byte for byte;
//! - `edits`: set-image and add-pull-secret, as the action planner writes
//!   them, always splice and read back as the planned value;
//! - `diff`: random value changes through `patch::diff` read back as the
//!   changed value, whether spliced or re-rendered;
//! - `patterns`: globs, image patterns, label selectors and JSON Pointers
//!   never panic and keep their round trips.

use repoint_core::patch::PatchOp;
use repoint_core::{Limits, Stream};
use serde_json::Value;

/// Parse fuzz bytes as a YAML stream, if they are UTF-8 and parse.
pub fn stream(data: &[u8]) -> Option<Stream> {
    let text = std::str::from_utf8(data).ok()?;
    let limits = Limits {
        max_document_bytes: 1 << 20,
        max_nodes: 100_000,
        max_alias_nodes: 100_000,
        max_depth: 64,
        ..Limits::default()
    };
    Stream::parse("fuzz.yaml", text.to_string(), limits).ok()
}

/// Render `changes` and check the output: it parses, has the same number
/// of documents, and each changed document reads back as its patched
/// value. With `splices_only`, a document that had to be re-rendered
/// because its splices did not check out is a finding too.
pub fn assert_renders(stream: &Stream, changes: &[(usize, Vec<PatchOp>)], splices_only: bool) {
    let rendered = stream.render_each(changes);
    assert!(
        rendered.failures.is_empty(),
        "a change could not be written: {:?}\n--- input\n{}",
        rendered.failures,
        stream.text()
    );
    if splices_only {
        let defects: Vec<_> = rendered
            .rerendered
            .iter()
            .filter(|r| r.splice_problem.is_some())
            .collect();
        assert!(
            defects.is_empty(),
            "splices did not check out: {defects:?}\n--- input\n{}\n--- ops\n{changes:?}",
            stream.text()
        );
    }
    let out = Stream::parse("out.yaml", rendered.text.to_string(), Limits::default())
        .unwrap_or_else(|e| panic!("output does not parse: {e}\n--- output\n{}", rendered.text));
    assert_eq!(
        out.documents().len(),
        stream.documents().len(),
        "document count"
    );
    for (index, ops) in changes {
        let mut expected = stream.documents()[*index].value.clone();
        repoint_core::patch::apply(&mut expected, ops).expect("ops apply");
        let got = &out.documents()[*index].value;
        if let Some(at) = repoint_core::document::first_difference(got, &expected) {
            panic!(
                "document {index} reads back differently at {at}\n--- output\n{}",
                rendered.text
            );
        }
    }
}

/// Every JSON Pointer in a value, the root included, in document order.
pub fn pointers(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), value)];
    while let Some((at, v)) = stack.pop() {
        match v {
            Value::Object(m) => {
                for (k, child) in m.iter().rev() {
                    stack.push((
                        format!("{at}/{}", repoint_core::pointer::escape(k)),
                        child,
                    ));
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate().rev() {
                    stack.push((format!("{at}/{i}"), child));
                }
            }
            _ => {}
        }
        out.push(at);
    }
    out
}
