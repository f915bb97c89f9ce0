//! `cargo xtask fuzz [--seconds N] [TARGET]`: run the cargo-fuzz targets in
//! `fuzz/` for N seconds each (default 60), seeded from `../shared/` at run
//! time, and fail on any finding.
//!
//! Seeds are written to `target/fuzz-seeds/TARGET` (never into the tree):
//! the corpus manifests cut into single documents for the document,
//! edits and diff targets, the conformance table's inputs for the
//! reference target, and its inputs as glob patterns for the patterns
//! target. Each target's own corpus (what libFuzzer learns) is kept in
//! `target/fuzz-corpus/TARGET`, so later runs start from it. cargo-fuzz
//! needs a nightly compiler's flags; `RUSTC_BOOTSTRAP=1` lets the pinned
//! stable toolchain accept them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

const TARGETS: &[&str] = &["reference", "document", "edits", "diff", "patterns"];

/// libFuzzer's default of 4096 bytes would cut most manifests short.
const MAX_LEN: usize = 16 * 1024;

pub fn run(args: &[String]) -> Result<()> {
    let mut seconds = 60;
    let mut only: Option<&str> = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds: missing value")?;
                seconds = v.parse().with_context(|| format!("--seconds: {v:?}"))?;
            }
            name if TARGETS.contains(&name) => only = TARGETS.iter().copied().find(|t| *t == name),
            other => bail!("unknown argument {other} (targets: {})", TARGETS.join(", ")),
        }
    }
    let root = crate::bench::root();
    let shared = crate::bench::shared();
    if !shared.join("corpus").is_dir() {
        bail!(
            "shared test data not found at {} (set REPOINT_SHARED_DIR)",
            shared.display()
        );
    }
    let targets: Vec<&str> = match only {
        Some(t) => vec![t],
        None => TARGETS.to_vec(),
    };
    for target in targets {
        let seeds = root.join("target/fuzz-seeds").join(target);
        let corpus = root.join("target/fuzz-corpus").join(target);
        write_seeds(target, &shared, &seeds)?;
        std::fs::create_dir_all(&corpus)?;
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(root.join("fuzz"))
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "--release", target])
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-max_len={MAX_LEN}"))
            .arg("-print_final_stats=1")
            .status()
            .context("running cargo fuzz (cargo install cargo-fuzz)")?;
        if !status.success() {
            bail!(
                "fuzz target {target} failed: a finding (its input is saved under fuzz/artifacts/{target}) or a build error, as printed above"
            );
        }
    }
    Ok(())
}

/// Write the seed inputs for `target` into `dir`, replacing what was there.
fn write_seeds(target: &str, shared: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let seeds: Vec<String> = match target {
        "reference" | "patterns" => reference_inputs(shared)?,
        _ => corpus_documents(shared)?,
    };
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:05}")), seed)?;
    }
    Ok(())
}

/// The conformance table's inputs.
fn reference_inputs(shared: &Path) -> Result<Vec<String>> {
    let path = shared.join("conformance/reference_cases.json");
    let table: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(table["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|case| case["input"].as_str().map(str::to_string))
        .collect())
}

/// The corpus manifests, one document a seed, those up to MAX_LEN.
fn corpus_documents(shared: &Path) -> Result<Vec<String>> {
    let mut seeds = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(shared.join("corpus"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        for segment in repoint_core::document::split::split(&text) {
            let doc = &text[segment.range];
            if doc.len() <= MAX_LEN && doc.contains("kind:") {
                seeds.push(doc.to_string());
            }
        }
    }
    Ok(seeds)
}
