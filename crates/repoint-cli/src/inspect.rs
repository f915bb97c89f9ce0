//! `repoint policy inspect`: what a policy says about itself, and whether it
//! implements the contract (loading it instantiates it against the host's
//! imports and checks its exports).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use repoint_runtime::probe::Offline;
use repoint_runtime::{PolicySource, Runtime, RuntimeOptions};
use serde_json::json;

use crate::args::InspectArgs;

pub fn run(args: &InspectArgs) -> Result<ExitCode> {
    let options = RuntimeOptions {
        cache_dir: if args.no_cache {
            None
        } else {
            repoint_runtime::default_cache_dir()
        },
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::new(options, Arc::new(Offline))?;
    let source = PolicySource::parse(&args.module, std::path::Path::new(""));
    let repoint_pipeline::oci::LoadedFrom {
        loaded,
        digest,
        signed_with,
    } = crate::oci::load(&args.registry, &runtime, &source)?;
    let info = &loaded.info;
    let mut out = std::io::stdout().lock();
    if args.json {
        let v = json!({
            "source": source.to_string(),
            "digest": digest,
            "signedWith": signed_with,
            "name": info.name,
            "version": info.version,
            "description": info.description,
            "mutating": info.mutating,
            "contract": loaded.contract,
            "world": loaded.world(),
            "settingsSchema": info.settings_schema.as_deref().and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()),
        });
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        writeln!(out, "source:      {source}")?;
        if let Some(digest) = &digest {
            writeln!(out, "digest:      {digest}")?;
        }
        if let Some(key) = &signed_with {
            writeln!(out, "signed with: {key}")?;
        }
        writeln!(out, "name:        {}", info.name)?;
        writeln!(out, "version:     {}", info.version)?;
        writeln!(out, "description: {}", info.description)?;
        writeln!(out, "mutating:    {}", info.mutating)?;
        let exports = match loaded.world() {
            "policy" => "info, configure, evaluate",
            _ => "info, configure, evaluate, reads",
        };
        writeln!(
            out,
            "contract:    {} (world {}: {exports}; imports host, types)",
            loaded.contract,
            loaded.world()
        )?;
        match info.settings_schema.as_deref() {
            None => writeln!(out, "settings:    no schema published")?,
            Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(schema) => {
                    writeln!(out, "settings:")?;
                    let rows = repoint_runtime::schema::settings(&schema);
                    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
                    for row in &rows {
                        writeln!(out, "  {:width$}  {}", row.name, row.summary())?;
                    }
                    writeln!(out, "settings schema:")?;
                    for line in serde_json::to_string_pretty(&schema)?.lines() {
                        writeln!(out, "  {line}")?;
                    }
                }
                Err(e) => writeln!(out, "settings:    the published schema is not JSON ({e})")?,
            },
        }
    }
    Ok(ExitCode::SUCCESS)
}
