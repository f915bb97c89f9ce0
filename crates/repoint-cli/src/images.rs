//! `repoint images`: the image inventory.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, bail};
use repoint_core::Limits;
use repoint_core::sites;
use serde::Serialize;

use crate::args::{ImagesArgs, ImagesFormat};
use repoint_pipeline::input;

/// One row of the inventory (the JSON output's objects).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    file: String,
    document: usize,
    line: usize,
    api_version: Option<String>,
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    pointer: String,
    site: &'static str,
    container: Option<String>,
    written: String,
    image: String,
}

fn meta(value: &serde_json::Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

pub fn run(args: &ImagesArgs) -> Result<ExitCode> {
    let limits = Limits {
        max_document_bytes: args.max_document_size.saturating_mul(1 << 20),
        ..Limits::default()
    };
    let threads = repoint_core::parallel::cores();
    let has_images = |v: &serde_json::Value| {
        sites::find_all(v, &[])
            .iter()
            .any(|o| !o.sites.images.is_empty())
    };
    let streams = input::parse_all(input::read_all(&args.inputs)?, limits, threads, &has_images)?;
    let mut rows = Vec::new();
    let mut invalid = Vec::new();
    for (_, stream) in &streams {
        for doc in stream.documents() {
            for object in sites::find_all(&doc.value, &[]) {
                let value = object.value;
                for site in object.sites.images {
                    let (line, column) = stream.locate(doc, &site.pointer).unwrap_or((0, 0));
                    match site.image {
                        Ok(image) => rows.push(Row {
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
                        Err(e) => invalid.push(format!(
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
    if !invalid.is_empty() {
        for line in &invalid {
            eprintln!("repoint: error: {line}");
        }
        bail!(
            "{} invalid image reference(s); nothing was printed",
            invalid.len()
        );
    }
    let mut out = std::io::stdout().lock();
    match (args.format, args.unique) {
        (ImagesFormat::Json, false) => {
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        }
        (ImagesFormat::Json, true) => {
            let unique: BTreeSet<&str> = rows.iter().map(|r| r.image.as_str()).collect();
            serde_json::to_writer_pretty(&mut out, &unique)?;
            writeln!(out)?;
        }
        (ImagesFormat::Text, true) => {
            let unique: BTreeSet<&str> = rows.iter().map(|r| r.image.as_str()).collect();
            for image in unique {
                writeln!(out, "{image}")?;
            }
        }
        (ImagesFormat::Text, false) => {
            for r in &rows {
                writeln!(
                    out,
                    "{}:{}\t{}/{}\t{}\t{}",
                    r.file,
                    r.line,
                    r.kind.as_deref().unwrap_or("?"),
                    r.name.as_deref().unwrap_or("?"),
                    r.container.as_deref().unwrap_or("-"),
                    r.image
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
