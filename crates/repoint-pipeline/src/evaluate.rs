//! Run the chain over parsed files, in parallel by document (results come
//! back in input order), then make what the results ask for beyond the
//! evaluated objects: pull Secrets and ServiceAccounts.

use std::path::{Path, PathBuf};

use repoint_config::Config;
use repoint_core::patch::PatchOp;
use repoint_core::{Limits, Stream, sites};
use repoint_runtime::chain::{Chain, ObjectError, Origin, Outcome};
use serde_json::Value;

use crate::materialize::{self, Generated};
use crate::report::{self, Finding};
use crate::{Result, Settings, input};

/// What an evaluation of files needs besides the config.
#[derive(Debug, Clone)]
pub struct Options {
    /// How policies run.
    pub settings: Settings,
    /// The namespace of objects that have none (generated objects go there).
    pub namespace: String,
    /// Bounds on each input document.
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            settings: Settings::default(),
            namespace: "default".into(),
            limits: Limits::default(),
        }
    }
}

/// Identity of an object, for reports.
#[derive(Debug, Clone, Default)]
pub struct ObjectMeta {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl ObjectMeta {
    pub fn of(value: &Value) -> Self {
        let s = |p: &str| value.pointer(p).and_then(Value::as_str).map(str::to_string);
        Self {
            api_version: s("/apiVersion"),
            kind: s("/kind"),
            namespace: s("/metadata/namespace"),
            name: s("/metadata/name").or_else(|| s("/metadata/generateName")),
        }
    }
}

/// What the chain made of one object of a document.
#[derive(Debug)]
pub struct ObjectResult {
    /// Pointer of the object in its document (empty, or `/items/N`).
    pub prefix: String,
    pub meta: ObjectMeta,
    /// 1-based line where the object starts.
    pub line: usize,
    pub outcome: Result<Outcome, ObjectError>,
}

impl ObjectResult {
    /// The object's change with pointers from the document root.
    pub fn document_patch(&self) -> Vec<PatchOp> {
        match &self.outcome {
            Ok(o) => o
                .patch
                .iter()
                .map(|op| PatchOp {
                    path: format!("{}{}", self.prefix, op.path),
                    from: op.from.as_ref().map(|f| format!("{}{f}", self.prefix)),
                    ..op.clone()
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// A parsed file and what the chain made of each of its documents.
#[derive(Debug)]
pub struct FileResult {
    /// Where to write back with `--in-place` (`None` for stdin).
    pub path: Option<PathBuf>,
    pub stream: Stream,
    /// Per document: the objects policies were consulted about.
    pub documents: Vec<Vec<ObjectResult>>,
}

impl FileResult {
    /// Per changed document: (index, operations).
    pub fn changes(&self) -> Vec<(usize, Vec<PatchOp>)> {
        self.documents
            .iter()
            .enumerate()
            .map(|(i, objects)| {
                (
                    i,
                    objects
                        .iter()
                        .flat_map(ObjectResult::document_patch)
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, ops)| !ops.is_empty())
            .collect()
    }
}

/// Evaluate every document of every file with `jobs` threads (nothing
/// beyond the objects: see [`streams`] for that).
pub fn documents(
    chain: &Chain,
    files: Vec<(Option<PathBuf>, Stream)>,
    jobs: usize,
) -> Vec<FileResult> {
    let work: Vec<(usize, usize)> = files
        .iter()
        .enumerate()
        .flat_map(|(f, (_, s))| (0..s.documents().len()).map(move |d| (f, d)))
        .collect();
    let done = repoint_core::parallel::map(&work, jobs, |_, &(f, d)| {
        evaluate_document(chain, &files[f].1, d)
    });
    let mut done = done.into_iter();
    files
        .into_iter()
        .map(|(path, stream)| {
            let documents = (0..stream.documents().len())
                .map(|_| done.next().unwrap_or_default())
                .collect();
            FileResult {
                path,
                stream,
                documents,
            }
        })
        .collect()
}

fn evaluate_document(chain: &Chain, stream: &Stream, index: usize) -> Vec<ObjectResult> {
    let doc = &stream.documents()[index];
    let mut results = Vec::new();
    for (prefix, object) in sites::objects(&doc.value) {
        let line = stream.line_of(doc, &prefix);
        let origin = Origin::File {
            path: stream.name().to_string(),
            document: index,
            line,
        };
        // `Ok(None)`: not an object policies are consulted about.
        let outcome = match chain.evaluate(object, &origin) {
            Ok(None) => continue,
            Ok(Some(outcome)) => Ok(outcome),
            Err(e) => Err(e),
        };
        results.push(ObjectResult {
            meta: ObjectMeta::of(object),
            prefix,
            line,
            outcome,
        });
    }
    results
}

/// Everything an evaluation of files produced, in input order.
#[derive(Debug)]
pub struct Evaluated {
    pub files: Vec<FileResult>,
    /// ServiceAccount patches and new objects beyond the evaluated ones.
    pub generated: Generated,
    /// The evaluation's findings (rendering may add errors: see
    /// [`crate::render::Renderer::findings`]).
    pub findings: Vec<Finding>,
    /// Problems that are not about one object (credentials left out under
    /// `missingCredentials: warn`).
    pub warnings: Vec<String>,
}

impl Evaluated {
    /// Every change to file `i`'s documents: the chain's and the generated
    /// ones (ServiceAccounts in the input that gain a pull secret).
    pub fn file_changes(&self, i: usize) -> Vec<(usize, Vec<PatchOp>)> {
        let mut changes = self.files[i].changes();
        for (d, ops) in self.generated.patches_for(i) {
            match changes.iter_mut().find(|(c, _)| *c == d) {
                Some((_, existing)) => existing.extend(ops.iter().cloned()),
                None => changes.push((d, ops.clone())),
            }
        }
        changes
    }
}

/// Load the config and its chain, read and parse `inputs` (files,
/// directories, `-`; none: standard input) and evaluate them. The config
/// and its policies come first, so bad settings fail before any input is
/// read. `keep_all` keeps the full tree of every document, not only of
/// those a change can touch (the kustomize overlay simulates over all).
pub fn files(
    config_path: &Path,
    inputs: &[PathBuf],
    options: &Options,
    keep_all: bool,
) -> Result<Evaluated> {
    let config = Config::load(config_path)?;
    let chain = crate::chain::build(&config, &options.settings, false)?;
    // Keep the trees of what policies see, and of the ServiceAccounts and
    // Secrets that generated objects may merge into.
    let keep = |v: &Value| {
        keep_all
            || sites::objects(v).into_iter().any(|(_, o)| {
                chain.is_relevant(o)
                    || matches!(
                        o.get("kind").and_then(Value::as_str),
                        Some("ServiceAccount" | "Secret")
                    )
            })
    };
    let jobs = options.settings.jobs();
    let parsed = input::parse_all(
        input::read_all(inputs, options.limits.max_input_bytes)?,
        options.limits,
        jobs,
        &keep,
    )?;
    streams(&config, &chain, parsed, options)
}

/// Run `chain` over parsed streams, then make the pull Secrets and
/// ServiceAccounts the results ask for.
pub fn streams(
    config: &Config,
    chain: &Chain,
    streams: Vec<(Option<PathBuf>, Stream)>,
    options: &Options,
) -> Result<Evaluated> {
    let files = documents(chain, streams, options.settings.jobs());
    let mut generated = materialize::service_accounts(&files, &options.namespace);
    let warnings = materialize::secrets(&files, config, &options.namespace, &mut generated)?;
    let findings = report::findings(&files);
    Ok(Evaluated {
        files,
        generated,
        findings,
        warnings,
    })
}
