//! `repoint images`: the image inventory (`repoint_pipeline::images`), as
//! text or JSON, every site or each image once.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::args::{ImagesArgs, ImagesFormat};

pub fn run(args: &ImagesArgs) -> Result<ExitCode> {
    let limits = crate::args::limits(args.max_document_size, args.max_input_size);
    let inventory =
        repoint_pipeline::images::inventory(&args.inputs, limits, repoint_core::parallel::cores())?;
    for warning in &inventory.left_out {
        eprintln!("repoint: warning: {warning}");
    }
    if !inventory.invalid.is_empty() {
        for line in &inventory.invalid {
            eprintln!("repoint: error: {line}");
        }
        bail!(
            "{} invalid image reference(s); nothing was printed",
            inventory.invalid.len()
        );
    }
    let rows = &inventory.rows;
    let unique = || {
        rows.iter()
            .map(|r| r.image.as_str())
            .collect::<BTreeSet<_>>()
    };
    let mut out = std::io::stdout().lock();
    match (args.format, args.unique) {
        (ImagesFormat::Json, false) => repoint_pipeline::render::write_json(&mut out, rows)?,
        (ImagesFormat::Json, true) => repoint_pipeline::render::write_json(&mut out, &unique())?,
        (ImagesFormat::Text, true) => {
            for image in unique() {
                writeln!(out, "{image}")?;
            }
        }
        (ImagesFormat::Text, false) => {
            for r in rows {
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
