//! Build the policy chain from a config and run it over parsed files, in
//! parallel by document; results come back in input order.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use repoint_config::Config;
use repoint_core::patch::PatchOp;
use repoint_core::{Stream, sites};
use repoint_probe::RegistryProber;
use repoint_runtime::chain::{Chain, ObjectError, Origin, Outcome};
use repoint_runtime::probe::{Offline, Prober};
use repoint_runtime::{PolicySource, Runtime, RuntimeError, RuntimeOptions};
use serde_json::Value;

use crate::args::EvalOptions;

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

/// Load every policy of the config and check its settings. A
/// `long_running` process (the webhook) keeps probe answers for the
/// config's `probe.cacheTtl` rather than for its whole life.
pub fn build_chain(config: &Config, eval: &EvalOptions, long_running: bool) -> Result<Chain> {
    build_chain_with(config, eval, long_running, |_| {})
}

/// [`build_chain`], with `prepare` run on the runtime before any policy is
/// loaded (the server installs its slow-evaluation hook there).
pub fn build_chain_with(
    config: &Config,
    eval: &EvalOptions,
    long_running: bool,
    prepare: impl FnOnce(&mut Runtime),
) -> Result<Chain> {
    let options = runtime_options(config, eval);
    let prober: Arc<dyn Prober> = if eval.offline || config.file.offline {
        Arc::new(Offline)
    } else {
        Arc::new(RegistryProber::new(
            &config.registry_settings(),
            config.probe_settings(long_running),
        )?)
    };
    let mut runtime = Runtime::new(options, prober)?;
    prepare(&mut runtime);
    load_chain(config, &Arc::new(runtime))
}

/// The runtime options a config and the command line ask for.
pub fn runtime_options(config: &Config, eval: &EvalOptions) -> RuntimeOptions {
    RuntimeOptions {
        timeout: eval.timeout.unwrap_or_else(|| config.timeout()),
        memory: eval.memory.unwrap_or_else(|| config.memory()),
        cache_dir: if eval.no_cache {
            None
        } else {
            repoint_runtime::default_cache_dir()
        },
        // Each worker holds one instance at a time; leave room for checks.
        concurrency: u32::try_from(eval.jobs() * 2 + 4).unwrap_or(u32::MAX),
    }
}

/// Load and configure the config's policies, in order, on `runtime`;
/// errors point at the config's line.
pub fn load_chain(config: &Config, runtime: &Arc<Runtime>) -> Result<Chain> {
    let mut policies = Vec::new();
    for (i, entry) in config.file.policies.iter().enumerate() {
        let source = PolicySource::parse(&entry.module, &config.base_dir);
        let loaded = runtime.load(&source).map_err(|e| {
            config.invalid(
                &format!("/policies/{i}/module"),
                &format!("policies[{i}].module"),
                e.to_string(),
            )
        })?;
        let settings = serde_json::to_string(&entry.settings).context("encoding settings")?;
        let configured = runtime
            .configure(&entry.name, Arc::new(loaded), &settings)
            .map_err(|e| {
                let message = match e {
                    RuntimeError::Configure { failure, .. } => {
                        format!("policy {} rejected its settings: {failure}", entry.name)
                    }
                    other => other.to_string(),
                };
                config.invalid(
                    &format!("/policies/{i}/settings"),
                    &format!("policies[{i}].settings"),
                    message,
                )
            })?;
        policies.push(configured);
    }
    Ok(runtime.chain(policies, config.file.image_fields.clone())?)
}

/// Evaluate every document of every file with `jobs` threads.
pub fn evaluate(
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
