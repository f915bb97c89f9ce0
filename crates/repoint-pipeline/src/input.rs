//! Reading the manifests a command names: files, directories (one walker
//! for every command), standard input; all read before anything is written.
//!
//! A file named on the command line is a manifest, and anything wrong with
//! it is an error. A file found by walking a directory may be something
//! else that happens to be YAML or JSON (a kustomization, a Helm
//! `values.yaml`, a `package.json`, repoint's own config): when its first
//! document is not a Kubernetes object, it is left out with a warning that
//! names it ([`left_out`]), and the run goes on. A walked file whose first
//! document is an object is a manifest, held to every rule.

use std::path::{Path, PathBuf};

use repoint_core::document::Reader;
use repoint_core::{Limits, Stream};
use serde_json::Value;

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
    /// Found by walking a directory, rather than named.
    pub walked: bool,
}

/// Why a file found by walking a directory is not read as manifests, if it
/// is not: its first document with content (see [`Reader::first_value`])
/// is not a Kubernetes object, or is a kustomization or a repoint file.
/// Named files are never left out.
pub fn left_out(name: &str, walked: bool, reader: &Reader<'_>) -> Option<String> {
    if !walked {
        return None;
    }
    let first = reader.first_value()?;
    let field = |key: &str| first.get(key).and_then(Value::as_str);
    let why = match (first.is_object(), field("apiVersion"), field("kind")) {
        (false, _, _) => "its first document is not a mapping".to_string(),
        (true, Some(api), Some(kind)) if api.starts_with("kustomize.config.k8s.io/") => {
            format!("a kustomize {kind} file (kubectl kustomize builds it)")
        }
        (true, Some(api), Some(kind)) if api.starts_with("repoint.dev/") => {
            format!("a repoint {kind}, not a manifest")
        }
        (true, Some(_), Some(_)) => return None,
        (true, _, _) if is_kustomization_name(name) => {
            "a kustomization file (kubectl kustomize builds it)".to_string()
        }
        (true, _, _) => "its first document has no apiVersion and kind".to_string(),
    };
    Some(format!(
        "{name}: left out, not a Kubernetes manifest: {why}"
    ))
}

/// The names kustomize looks for in a directory.
fn is_kustomization_name(name: &str) -> bool {
    let file = Path::new(name).file_name().and_then(|f| f.to_str());
    matches!(
        file,
        Some("kustomization.yaml" | "kustomization.yml" | "Kustomization")
    )
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
}

/// Expand directories (recursively, sorted, manifest extensions only) and
/// keep files and `-` as given. No arguments means standard input. Each
/// source comes with whether it was found by walking.
pub fn expand(args: &[PathBuf]) -> Result<Vec<(Option<PathBuf>, bool)>> {
    if args.is_empty() {
        return Ok(vec![(None, false)]);
    }
    let mut out = Vec::new();
    for arg in args {
        if arg.as_os_str() == "-" {
            out.push((None, false));
        } else if arg.is_dir() {
            out.extend(walk(arg, is_manifest)?.into_iter().map(|p| (Some(p), true)));
        } else if arg.exists() {
            out.push((Some(arg.clone()), false));
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

/// The kustomization file kustomize would read in `dir`, if there is one.
pub fn kustomization_in(dir: &Path) -> Option<PathBuf> {
    ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// [`read_all`], except that a directory named on the command line that
/// holds a kustomization is read as a kustomize base: its text is what
/// `kubectl kustomize DIR` prints (the real kustomize, from `PATH`, so
/// generators, name prefixes and the base's own patches are as kustomize
/// makes them), and its path is the directory, which an overlay refers to.
pub fn read_all_with_bases(args: &[PathBuf], max_input_bytes: u64) -> Result<Vec<Input>> {
    let mut inputs = Vec::new();
    let mut plain = Vec::new();
    for arg in args {
        if arg.is_dir() && kustomization_in(arg).is_some() {
            if !plain.is_empty() {
                inputs.extend(read_all(&std::mem::take(&mut plain), max_input_bytes)?);
            }
            inputs.push(Input {
                name: format!("{} (kubectl kustomize)", arg.display()),
                path: Some(arg.clone()),
                text: kustomize_build(arg, max_input_bytes)?,
                walked: false,
            });
        } else {
            plain.push(arg.clone());
        }
    }
    if !plain.is_empty() || inputs.is_empty() {
        inputs.extend(read_all(&plain, max_input_bytes)?);
    }
    Ok(inputs)
}

/// `kubectl kustomize DIR`'s output, to `max_input_bytes`.
fn kustomize_build(dir: &Path, max_input_bytes: u64) -> Result<String> {
    let failed = |why: String| Error::KustomizeBase {
        dir: dir.to_path_buf(),
        why,
    };
    let mut child = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            failed(format!(
                "cannot run kubectl (needed to build the base): {e}"
            ))
        })?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    // stderr on its own thread, so that neither pipe can fill and stall
    // kubectl while the other is read.
    let errors = std::thread::spawn(move || {
        repoint_core::bounded::read_to_limit(stderr, 64 << 10).unwrap_or_default()
    });
    let out = repoint_core::bounded::read_to_limit(stdout, max_input_bytes);
    if out.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| failed(e.to_string()))?;
    let errors = String::from_utf8_lossy(&errors.join().unwrap_or_default())
        .trim()
        .to_string();
    let out = out.map_err(|e| failed(format!("reading its output: {e}")))?;
    if !status.success() {
        return Err(failed(format!(
            "kubectl kustomize failed ({status}): {errors}"
        )));
    }
    String::from_utf8(out)
        .map_err(|_| failed("kubectl kustomize printed text that is not UTF-8".into()))
}

/// Read every input fully before anything is written, each to
/// `max_input_bytes`. A file named twice (or through another path to it)
/// is read once, where it is first named.
pub fn read_all(args: &[PathBuf], max_input_bytes: u64) -> Result<Vec<Input>> {
    let mut inputs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (source, walked) in expand(args)? {
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
                    walked,
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
                    walked,
                }
            }
        };
        inputs.push(input);
    }
    Ok(inputs)
}

/// Parsed inputs, and the warnings for walked files left out.
#[derive(Debug, Default)]
pub struct Parsed {
    pub streams: Vec<(Option<PathBuf>, Stream)>,
    pub left_out: Vec<String>,
}

/// Parse each input with `threads` threads (across the documents of a
/// file); the first error in input order wins. Documents for which `keep` is
/// false are checked but pruned (see `Stream::parse_with`). Walked files
/// that are not manifests are left out ([`left_out`]).
pub fn parse_all(
    inputs: Vec<Input>,
    limits: Limits,
    threads: usize,
    keep: &(dyn Fn(&Value) -> bool + Sync),
) -> Result<Parsed> {
    // One alias budget for the whole run: a bomb in every file, or in
    // every document read in parallel, is bounded once, not once each.
    let budget = repoint_core::document::RunBudget::new(limits.max_alias_nodes);
    let mut parsed = Parsed::default();
    for Input {
        name,
        path,
        text,
        walked,
    } in inputs
    {
        let mut reader = Reader::new(&name, text, limits, threads, keep, &budget)?;
        if let Some(why) = left_out(&name, walked, &reader) {
            parsed.left_out.push(why);
            continue;
        }
        while reader.read(usize::MAX)?.is_some() {}
        parsed.streams.push((path, reader.finish()));
    }
    Ok(parsed)
}
