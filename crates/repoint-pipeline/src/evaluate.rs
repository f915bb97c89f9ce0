//! Run the chain over parsed files, in parallel by document (results come
//! back in input order), then make what the results ask for beyond the
//! evaluated objects: pull Secrets and ServiceAccounts.

use std::path::{Path, PathBuf};

use repoint_config::Config;
use repoint_core::document::{Prepared, Reader};
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
    /// The namespace of objects that have none (generated objects go
    /// there). Empty, as Kubernetes' `NamespaceNone`: they stay without
    /// one, and so do the objects generated for them.
    pub namespace: String,
    /// Bounds on each input document.
    pub limits: Limits,
    /// How many documents are read, evaluated and (under
    /// [`Retain::Output`]) written before the next are read: enough to
    /// keep every thread busy, few enough that their trees are small
    /// beside the input.
    pub window: usize,
    /// Read a directory holding a kustomization as the base it is: its
    /// objects as `kubectl kustomize` builds them, the directory itself as
    /// the file (what `--output kustomize` lists under `resources:`).
    pub kustomize_bases: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            settings: Settings::default(),
            namespace: "default".into(),
            limits: Limits::default(),
            window: 512,
            kustomize_bases: false,
        }
    }
}

/// What an evaluation of files keeps of each document once its window is
/// evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retain {
    /// Every document's tree and value, whether a change can touch it or
    /// not (the kustomize overlay simulates over all of them).
    Everything,
    /// The trees of the documents a change can touch, and every object's
    /// result, changes among the findings (`check`, the JSON Patch
    /// listing).
    Results,
    /// What writing the new manifests needs, no more: each document's
    /// change is written and checked in its window
    /// ([`repoint_core::Stream::prepare`]), its findings other than
    /// changes are kept, and its tree and results are released. A document
    /// that generated objects may still change (ServiceAccounts), that
    /// pull Secrets are looked up in (Secrets), or whose indentation a
    /// later document decides is kept whole until the end.
    Output,
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
        let s = |p: &str| {
            repoint_core::pointer::get(value, p)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
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
    /// Per document: the objects policies were consulted about (none for
    /// a document released under [`Retain::Output`]).
    pub documents: Vec<Vec<ObjectResult>>,
    /// The changes of released documents, written and checked.
    pub prepared: Prepared,
    /// Released documents whose change could not be written (their
    /// error findings, in document order).
    pub failures: Vec<Finding>,
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
                prepared: Prepared::default(),
                failures: Vec::new(),
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

/// Load the config and its chain, read `inputs` (files, directories, `-`;
/// none: standard input), then parse and evaluate them a window of
/// [`Options::window`] documents at a time, keeping what `retain` says.
/// The config and its policies come first, so bad settings fail before any
/// input is read; every input is read, and every document parsed, before
/// anything is written, so a bad document anywhere fails the run whole.
pub fn files(
    config_path: &Path,
    inputs: &[PathBuf],
    options: &Options,
    retain: Retain,
) -> Result<Evaluated> {
    let mut findings = Vec::new();
    let mut evaluated = files_reporting(config_path, inputs, options, retain, &mut |f| {
        findings.push(f)
    })?;
    evaluated.findings = findings;
    Ok(evaluated)
}

/// [`files`], handing each finding to `report` once its window is
/// evaluated (in input order) instead of keeping it: a run that warns on
/// most objects of a long stream holds none of its warnings. The
/// evaluation's `findings` are then empty.
pub fn files_reporting(
    config_path: &Path,
    inputs: &[PathBuf],
    options: &Options,
    retain: Retain,
    report: &mut dyn FnMut(Finding),
) -> Result<Evaluated> {
    let config = Config::load(config_path)?;
    let chain = crate::chain::build(&config, &options.settings, false)?;
    let inputs = match options.kustomize_bases {
        true => input::read_all_with_bases(inputs, options.limits.max_input_bytes)?,
        false => input::read_all(inputs, options.limits.max_input_bytes)?,
    };
    // Keep the trees of what policies see, and of the ServiceAccounts and
    // Secrets that generated objects may merge into.
    let keep = |v: &Value| {
        retain == Retain::Everything
            || sites::objects(v)
                .into_iter()
                .any(|(_, o)| chain.is_relevant(o) || generated_may_touch(o))
    };
    let jobs = options.settings.jobs();
    // One alias budget for the whole run: a bomb in every file, or in
    // every document read in parallel, is bounded once, not once each.
    let budget = repoint_core::document::RunBudget::new(options.limits.max_alias_nodes);
    let mut files: Vec<Reading<'_>> = Vec::new();
    let mut inputs = inputs.into_iter();
    let mut requests = materialize::Requests::default();
    let mut left_out = Vec::new();
    let window = options.window.max(1);
    loop {
        // The next window of documents, from as many files as it takes.
        let mut work: Vec<(usize, usize)> = Vec::new();
        while work.len() < window {
            if files.last().is_none_or(|f| f.reader.is_done()) {
                let Some(input) = inputs.next() else { break };
                let reader = Reader::new(
                    &input.name,
                    input.text,
                    options.limits,
                    jobs,
                    &keep,
                    &budget,
                )?;
                if let Some(why) = input::left_out(&input.name, input.walked, &reader) {
                    left_out.push(why);
                    continue;
                }
                files.push(Reading {
                    path: input.path,
                    documents: Vec::with_capacity(reader.documents_at_least()),
                    reader,
                    prepared: Prepared::default(),
                    failures: Vec::new(),
                });
            }
            let f = files.len() - 1;
            if let Some(range) = files[f].reader.read(window - work.len())? {
                work.extend(range.map(|d| (f, d)));
            }
        }
        if work.is_empty() {
            break;
        }
        let done = repoint_core::parallel::map(&work, jobs, |_, &(f, d)| {
            evaluate_in_window(&chain, files[f].reader.stream(), d, retain)
        });
        for (&(f, d), done) in work.iter().zip(done) {
            requests.add_results(f, &done.objects, &options.namespace);
            done.findings.into_iter().for_each(&mut *report);
            let file = &mut files[f];
            if done.release {
                match done.change {
                    Some(Ok(prepared)) => file.prepared.append(prepared),
                    Some(Err(failure)) => file.failures.push(failure),
                    None => {}
                }
                file.documents.push(Vec::new());
                file.reader.stream_mut().release(d);
            } else {
                file.documents.push(done.objects);
            }
        }
    }
    let files = files.into_iter().map(Reading::finish).collect();
    let mut evaluated = materialized(&config, files, requests, Vec::new(), options)?;
    evaluated.warnings.splice(0..0, left_out);
    Ok(evaluated)
}

/// A file being read window by window, and what its documents came to:
/// a [`FileResult`] once read.
struct Reading<'r> {
    path: Option<PathBuf>,
    reader: Reader<'r>,
    documents: Vec<Vec<ObjectResult>>,
    prepared: Prepared,
    failures: Vec<Finding>,
}

impl Reading<'_> {
    fn finish(self) -> FileResult {
        FileResult {
            path: self.path,
            stream: self.reader.finish(),
            documents: self.documents,
            prepared: self.prepared,
            failures: self.failures,
        }
    }
}

/// What a window made of one document.
struct InWindow {
    objects: Vec<ObjectResult>,
    /// Its findings (under [`Retain::Output`], other than changes).
    findings: Vec<Finding>,
    /// Whether its tree and results can go (under [`Retain::Output`]).
    release: bool,
    /// When released with a change: the change written and checked, or
    /// why it could not be.
    change: Option<std::result::Result<Prepared, Finding>>,
}

/// Whether generated objects may change an object (ServiceAccounts gain
/// pull secrets) or be looked up in it (an existing pull Secret is reused).
fn generated_may_touch(object: &Value) -> bool {
    matches!(
        object.get("kind").and_then(Value::as_str),
        Some("ServiceAccount" | "Secret")
    )
}

fn evaluate_in_window(chain: &Chain, stream: &Stream, d: usize, retain: Retain) -> InWindow {
    let objects = evaluate_document(chain, stream, d);
    let mut findings = Vec::new();
    // Changes are findings where every result is kept (`check`); where
    // only the manifests are, they are the output.
    let changes = retain != Retain::Output;
    report::document_findings(stream, d, &objects, changes, &mut findings);
    let mut in_window = InWindow {
        objects,
        findings,
        release: false,
        change: None,
    };
    if retain != Retain::Output {
        return in_window;
    }
    let objects = &in_window.objects;
    let doc = &stream.documents()[d];
    let ops: Vec<PatchOp> = objects
        .iter()
        .flat_map(ObjectResult::document_patch)
        .collect();
    in_window.release = !sites::objects(&doc.value)
        .into_iter()
        .any(|(_, o)| generated_may_touch(o))
        && (ops.is_empty() || stream.style_settled(doc));
    if in_window.release && !ops.is_empty() {
        in_window.change = Some(
            stream
                .prepare(d, &ops)
                .map_err(|e| report::document_error(&e, &ObjectMeta::of(&doc.value))),
        );
    }
    in_window
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
    let mut requests = materialize::Requests::default();
    for (f, file) in files.iter().enumerate() {
        for objects in &file.documents {
            requests.add_results(f, objects, &options.namespace);
        }
    }
    let findings = report::findings(&files);
    materialized(config, files, requests, findings, options)
}

/// The evaluation, with the pull Secrets and ServiceAccounts `requests`
/// ask for made.
fn materialized(
    config: &Config,
    files: Vec<FileResult>,
    requests: materialize::Requests,
    findings: Vec<Finding>,
    options: &Options,
) -> Result<Evaluated> {
    let mut generated =
        materialize::service_accounts(&files, requests.accounts, &options.namespace);
    let mut warnings = materialize::secrets(
        &files,
        requests.secrets,
        config,
        &options.namespace,
        &mut generated,
    )?;
    warnings.extend(materialize::whole_accounts_warning(&generated));
    Ok(Evaluated {
        files,
        generated,
        findings,
        warnings,
    })
}
