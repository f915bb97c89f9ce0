//! Reading the manifests named on the command line.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use repoint_core::{Limits, Stream};

/// An input file's display name and text.
#[derive(Debug)]
pub struct Input {
    /// Name used in messages and output (`-` for standard input).
    pub name: String,
    /// Where it was read from; `None` for standard input.
    pub path: Option<PathBuf>,
    /// The text.
    pub text: String,
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
}

/// Expand directories (recursively, sorted, manifest extensions only) and
/// keep files and `-` as given. No arguments means standard input.
pub fn expand(args: &[PathBuf]) -> Result<Vec<Option<PathBuf>>> {
    if args.is_empty() {
        return Ok(vec![None]);
    }
    let mut out = Vec::new();
    for arg in args {
        if arg.as_os_str() == "-" {
            out.push(None);
        } else if arg.is_dir() {
            let mut found = Vec::new();
            walk(arg, &mut found)
                .with_context(|| format!("reading directory {}", arg.display()))?;
            found.sort();
            out.extend(found.into_iter().map(Some));
        } else if arg.exists() {
            out.push(Some(arg.clone()));
        } else {
            bail!("{}: no such file or directory", arg.display());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_manifest(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Read every input fully before anything is written.
pub fn read_all(args: &[PathBuf]) -> Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for source in expand(args)? {
        let input = match source {
            None => {
                let mut bytes = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .context("reading standard input")?;
                let text = String::from_utf8(bytes).context("standard input is not UTF-8")?;
                Input {
                    name: "-".into(),
                    path: None,
                    text,
                }
            }
            Some(path) => {
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let text = String::from_utf8(bytes)
                    .with_context(|| format!("{} is not UTF-8", path.display()))?;
                Input {
                    name: path.display().to_string(),
                    path: Some(path),
                    text,
                }
            }
        };
        inputs.push(input);
    }
    Ok(inputs)
}

/// Parse each input with `threads` threads (across the documents of a
/// file); the first error in input order wins. Documents for which `keep` is
/// false are checked but pruned (see `Stream::parse_with`).
pub fn parse_all(
    inputs: Vec<Input>,
    limits: Limits,
    threads: usize,
    keep: &(dyn Fn(&serde_json::Value) -> bool + Sync),
) -> Result<Vec<(Option<PathBuf>, Stream)>> {
    inputs
        .into_iter()
        .map(|input| {
            let stream = Stream::parse_with(&input.name, input.text, limits, threads, keep)?;
            Ok((input.path, stream))
        })
        .collect()
}
