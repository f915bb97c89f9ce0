//! The image inventory (`repoint images`): every image site of every
//! object, located, with the image normalized as a container runtime
//! would pull it.

use std::path::PathBuf;

use repoint_core::{Limits, Stream, sites};
use serde::Serialize;
use serde_json::Value;

use crate::{Result, input};

/// One image site (the JSON output's objects).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub file: String,
    pub document: usize,
    pub line: usize,
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// Where the image is written in the object.
    pub pointer: String,
    /// What kind of site (`container`, `init-container`, `custom`, ...).
    pub site: &'static str,
    pub container: Option<String>,
    /// As written in the manifest.
    pub written: String,
    /// Normalized (`docker.io/library/nginx:1.25`).
    pub image: String,
}

/// The inventory of some inputs: the rows, and one located message per
/// image reference that does not parse.
#[derive(Debug, Default)]
pub struct Inventory {
    pub rows: Vec<Row>,
    pub invalid: Vec<String>,
    /// Walked files that are not manifests, each with why.
    pub left_out: Vec<String>,
}

fn meta(value: &Value, pointer: &str) -> Option<String> {
    repoint_core::pointer::get(value, pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Read and parse `inputs` (as every command does) and list their images.
pub fn inventory(inputs: &[PathBuf], limits: Limits, threads: usize) -> Result<Inventory> {
    let has_images = |v: &Value| {
        sites::find_all(v, &[])
            .iter()
            .any(|o| !o.sites.images.is_empty())
    };
    let parsed = input::parse_all(
        input::read_all(inputs, limits.max_input_bytes)?,
        limits,
        threads,
        &has_images,
    )?;
    let mut inventory = Inventory {
        left_out: parsed.left_out,
        ..Inventory::default()
    };
    for (_, stream) in &parsed.streams {
        add_stream(&mut inventory, stream);
    }
    Ok(inventory)
}

fn add_stream(inventory: &mut Inventory, stream: &Stream) {
    for doc in stream.documents() {
        for object in sites::find_all(&doc.value, &[]) {
            let value = object.value;
            for site in object.sites.images {
                let (line, column) = stream.locate(doc, &site.pointer).unwrap_or((0, 0));
                match site.image {
                    Ok(image) => inventory.rows.push(Row {
                        file: stream.name().to_string(),
                        document: doc.index,
                        line,
                        api_version: meta(value, "/apiVersion"),
                        kind: meta(value, "/kind"),
                        namespace: meta(value, "/metadata/namespace"),
                        name: meta(value, "/metadata/name"),
                        pointer: site.pointer,
                        site: site.kind.as_str(),
                        container: site.container,
                        written: site.written,
                        image: image.to_string(),
                    }),
                    Err(e) => inventory.invalid.push(format!(
                        "{}: document {} (line {line}, column {column}): invalid image reference {:?} at {}: {e}",
                        stream.name(),
                        doc.index,
                        site.written,
                        site.pointer
                    )),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_located_and_normalized_and_bad_references_said() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: nginx:1.25\n  - name: d\n    image: nginx@sha256:abc\n";
        let stream = Stream::parse("pod.yaml", text.into(), Limits::default()).expect("parse");
        let mut inventory = Inventory::default();
        add_stream(&mut inventory, &stream);
        assert_eq!(inventory.rows.len(), 1);
        let row = &inventory.rows[0];
        assert_eq!(row.image, "docker.io/library/nginx:1.25");
        assert_eq!((row.line, row.container.as_deref()), (7, Some("c")));
        assert_eq!(inventory.invalid.len(), 1);
        assert!(
            inventory.invalid[0].starts_with("pod.yaml: document 0 (line 9"),
            "{:?}",
            inventory.invalid
        );
    }
}
