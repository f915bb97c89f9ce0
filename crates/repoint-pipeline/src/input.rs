//! Reading the manifests a command names: files, directories (one walker
//! for every command), standard input; all read before anything is written.

use std::path::{Path, PathBuf};

use repoint_core::{Limits, Stream};

use crate::{Error, Result};

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
            out.extend(walk(arg, is_manifest)?.into_iter().map(Some));
        } else if arg.exists() {
            out.push(Some(arg.clone()));
        } else {
            return Err(Error::NoSuchInput(arg.clone()));
        }
    }
    Ok(out)
}

/// Every file under `dir` that `wanted` keeps, in path order: the one
/// directory walker of every command. It is ripgrep's (the `ignore`
/// crate): symbolic links are not followed (a `loop -> .` link is not a
/// way to read a file forty times), and hidden, git-ignored, `target`,
/// `node_modules` and `__pycache__` paths are skipped.
pub fn walk(dir: &Path, wanted: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let walker = ignore::WalkBuilder::new(dir)
        .follow_links(false)
        .filter_entry(|entry| {
            !matches!(
                entry.file_name().to_str(),
                Some("target" | "node_modules" | "__pycache__")
            ) || entry.depth() == 0
        })
        .build();
    for entry in walker {
        let entry = entry.map_err(|source| Error::Walk {
            dir: dir.to_path_buf(),
            source,
        })?;
        if entry.file_type().is_some_and(|t| t.is_file()) && wanted(entry.path()) {
            found.push(entry.into_path());
        }
    }
    found.sort();
    Ok(found)
}

/// Read every input fully before anything is written, each to
/// `max_input_bytes`. A file named twice (or through another path to it)
/// is read once, where it is first named.
pub fn read_all(args: &[PathBuf], max_input_bytes: u64) -> Result<Vec<Input>> {
    let mut inputs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for source in expand(args)? {
        let identity = source
            .as_ref()
            .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()));
        if !seen.insert(identity) {
            continue;
        }
        let input = match source {
            None => {
                let bytes = repoint_core::bounded::read_to_limit(std::io::stdin(), max_input_bytes)
                    .map_err(|source| Error::Read {
                        what: "standard input".into(),
                        source,
                    })?;
                let text = String::from_utf8(bytes).map_err(|source| Error::NotUtf8 {
                    what: "standard input".into(),
                    source,
                })?;
                Input {
                    name: "-".into(),
                    path: None,
                    text,
                }
            }
            Some(path) => {
                let name = path.display().to_string();
                let bytes =
                    repoint_core::bounded::read_file(&path, max_input_bytes).map_err(|source| {
                        Error::Read {
                            what: name.clone(),
                            source,
                        }
                    })?;
                let text = String::from_utf8(bytes).map_err(|source| Error::NotUtf8 {
                    what: name.clone(),
                    source,
                })?;
                Input {
                    name,
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
    // One alias budget for the whole run: a bomb in every file, or in
    // every document read in parallel, is bounded once, not once each.
    let budget = repoint_core::document::RunBudget::new(limits.max_alias_nodes);
    inputs
        .into_iter()
        .map(|input| {
            let stream =
                Stream::parse_in_run(&input.name, input.text, limits, threads, keep, &budget)?;
            Ok((input.path, stream))
        })
        .collect()
}
