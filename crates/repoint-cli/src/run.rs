//! `repoint run` and `repoint check`: evaluate the chain over manifests,
//! then print the patched manifests (run) or the findings (check).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use repoint_config::Config;
use std::borrow::Cow;

use repoint_core::document::{self, emit, emit::IndentStyle};
use repoint_core::{Limits, Stream, patch, sites};
use serde_json::{Value, json};
use similar::TextDiff;

use crate::args::{CheckArgs, CheckFormat, EvalArgs, OutputFormat, RunArgs};
use crate::engine::{self, FileResult, ObjectMeta};
use crate::files;
use crate::input;
use crate::kustomize;
use crate::materialize::{self, Generated};
use crate::report::{self, Finding, Level};

/// Everything `run` and `check` share: config, chain, inputs, evaluation.
pub(crate) struct Evaluated {
    pub files: Vec<FileResult>,
    pub generated: Generated,
    pub findings: Vec<Finding>,
    /// Problems that are not about one object (credentials left out under
    /// `missingCredentials: warn`); already printed on stderr.
    pub warnings: Vec<String>,
}

/// `keep_all` keeps the full tree of every document, not only of those a
/// change can touch (the kustomize overlay simulates over all of them).
fn evaluate(
    config_path: &Path,
    inputs: &[std::path::PathBuf],
    eval: &EvalArgs,
    keep_all: bool,
) -> Result<Evaluated> {
    // Config and policies first: bad settings fail before any input is read.
    let config = Config::load(config_path)?;
    let chain = engine::build_chain(&config, &eval.options, false)?;
    let limits = Limits {
        max_document_bytes: eval.max_document_size.saturating_mul(1 << 20),
        ..Limits::default()
    };
    let jobs = eval.options.jobs();
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
    let streams = input::parse_all(input::read_all(inputs)?, limits, jobs, &keep)?;
    evaluate_streams(&config, &chain, streams, eval)
}

/// Run the chain over parsed streams, then make the pull Secrets and
/// ServiceAccounts the results ask for.
pub(crate) fn evaluate_streams(
    config: &Config,
    chain: &repoint_runtime::chain::Chain,
    streams: Vec<(Option<std::path::PathBuf>, Stream)>,
    eval: &EvalArgs,
) -> Result<Evaluated> {
    let files = engine::evaluate(chain, streams, eval.options.jobs());
    let mut generated = materialize::service_accounts(&files, &eval.namespace);
    let warnings = materialize::secrets(&files, config, &eval.namespace, &mut generated)?;
    for warning in &warnings {
        eprintln!("repoint: warning: {warning}");
    }
    let findings = report::findings(&files);
    Ok(Evaluated {
        files,
        generated,
        findings,
        warnings,
    })
}

/// Every change to file `i`'s documents: the chain's and the generated
/// ones (ServiceAccounts in the input that gain a pull secret).
pub(crate) fn file_changes(ev: &Evaluated, i: usize) -> Vec<(usize, Vec<patch::PatchOp>)> {
    let mut changes = ev.files[i].changes();
    for (d, ops) in ev.generated.patches_for(i) {
        match changes.iter_mut().find(|(c, _)| *c == d) {
            Some((_, existing)) => existing.extend(ops.iter().cloned()),
            None => changes.push((d, ops.clone())),
        }
    }
    changes
}

/// Files' patched texts (borrowed when nothing changes), in input order,
/// made as output is written: a batch of as many files as there are jobs
/// at a time, in parallel, so that few files' new texts are held at once.
/// `Stream::render_each` parses every changed document again; a document
/// whose change could not be written faithfully keeps its text and becomes
/// an error finding.
struct Renderer<'e> {
    ev: &'e Evaluated,
    jobs: usize,
    /// The first file not rendered yet.
    next: usize,
    /// Rendered, not yet handed out, in order.
    ready: std::collections::VecDeque<Cow<'e, str>>,
    failures: Vec<Finding>,
}

impl<'e> Renderer<'e> {
    fn new(ev: &'e Evaluated, jobs: usize) -> Self {
        Self {
            ev,
            jobs: jobs.max(1),
            next: 0,
            ready: Default::default(),
            failures: Vec::new(),
        }
    }

    /// The next file's new text; `None` after the last.
    fn next_file(&mut self) -> Option<Cow<'e, str>> {
        if self.ready.is_empty() && self.next < self.ev.files.len() {
            let ev = self.ev;
            let batch: Vec<usize> = (self.next..ev.files.len()).take(self.jobs).collect();
            self.next += batch.len();
            let results = repoint_core::parallel::map(&batch, self.jobs, |_, &j| {
                ev.files[j].stream.render_each(&file_changes(ev, j))
            });
            for (j, rendered) in batch.into_iter().zip(results) {
                let documents = ev.files[j].stream.documents();
                self.failures.extend(rendered.failures.iter().map(|e| {
                    let meta = documents
                        .get(e.document)
                        .map(|d| ObjectMeta::of(&d.value))
                        .unwrap_or_default();
                    report::document_error(e, &meta)
                }));
                self.ready.push_back(rendered.text);
            }
        }
        self.ready.pop_front()
    }

    /// Every finding: the evaluation's, and the failures of every file
    /// (those output did not reach, when a reader stopped early, too).
    fn findings(mut self) -> Vec<Finding> {
        while self.next_file().is_some() {}
        let mut findings = self.ev.findings.clone();
        findings.append(&mut self.failures);
        findings
    }
}

/// New documents as a YAML stream (each preceded by `---`), in the given
/// line ending; each is read back and checked before it is written.
fn generated_yaml(docs: &[&Value], newline: &str) -> Result<String> {
    let mut out = String::new();
    for doc in docs {
        let text = document::new_document(doc, IndentStyle::default())
            .map_err(|e| anyhow::anyhow!("writing a generated object: {e}"))?;
        out.push_str("---\n");
        out.push_str(&text);
    }
    Ok(emit::with_newline(out, newline))
}

/// Write file texts as one stream, with `---` between files, each
/// separator in the line ending of the file it introduces; returns whether
/// the stream so far ends with a line break.
fn write_stream(
    out: &mut impl Write,
    texts: impl IntoIterator<Item = (impl AsRef<str>, &'static str)>,
) -> Result<bool> {
    let mut first = true;
    let mut ends_with_newline = true;
    for (text, newline) in texts {
        let text = text.as_ref();
        if !first {
            if !ends_with_newline {
                out.write_all(newline.as_bytes())?;
            }
            if !text.trim_start().starts_with("---") {
                out.write_all(format!("---{newline}").as_bytes())?;
            }
        }
        out.write_all(text.as_bytes())?;
        first = false;
        ends_with_newline = text.is_empty() || text.ends_with(['\n', '\r']);
    }
    Ok(ends_with_newline)
}

/// Write a command's output; a reader that stopped early (`| head`, `|
/// true`) is not an error, and the command's exit code stands, so findings
/// are never hidden behind a closed pipe.
pub(crate) fn finish(code: ExitCode, write: impl FnOnce() -> Result<()>) -> Result<ExitCode> {
    match write() {
        Err(e) if is_broken_pipe(&e) => Ok(code),
        other => other.map(|()| code),
    }
}

/// Whether an error is a write to a reader that went away (directly, or
/// through serde_json's writer).
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let kind = e
        .downcast_ref::<std::io::Error>()
        .map(std::io::Error::kind)
        .or_else(|| e.downcast_ref::<serde_json::Error>()?.io_error_kind());
    kind == Some(std::io::ErrorKind::BrokenPipe)
}

/// Report object errors, denials and warnings on stderr; return the exit
/// code they call for.
pub(crate) fn report_stderr(findings: &[Finding]) -> ExitCode {
    let mut err = std::io::stderr().lock();
    for f in findings.iter().filter(|f| f.level != Level::Change) {
        let _ = writeln!(err, "repoint: {}", report::text_line(f));
    }
    exit_code(findings, false)
}

pub(crate) fn exit_code(findings: &[Finding], changes_fail: bool) -> ExitCode {
    if findings.iter().any(|f| f.level == Level::Error) {
        ExitCode::from(2)
    } else if findings
        .iter()
        .any(|f| f.level == Level::Denied || (changes_fail && f.level == Level::Change))
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

pub fn run(args: &RunArgs) -> Result<ExitCode> {
    if args.in_place && (args.inputs.is_empty() || args.inputs.iter().any(|p| p.as_os_str() == "-"))
    {
        bail!("--in-place needs files to rewrite, not standard input");
    }
    if args.in_place && args.output != OutputFormat::Yaml {
        bail!(
            "--in-place writes manifests; it cannot be combined with --output {:?}",
            args.output
        );
    }
    let kustomize_dir = match &args.output {
        OutputFormat::Kustomize(dir) => Some(dir),
        _ => None,
    };
    let ev = evaluate(
        &args.config,
        &args.inputs,
        &args.eval,
        kustomize_dir.is_some(),
    )?;
    if let Some(dir) = kustomize_dir {
        return write_kustomize(&ev, dir);
    }
    if args.output == OutputFormat::JsonPatch {
        let code = report_stderr(&ev.findings);
        return finish(code, || {
            let mut stdout = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut stdout, &json_patches(&ev))?;
            writeln!(stdout)?;
            Ok(())
        });
    }
    let mut renderer = Renderer::new(&ev, args.eval.options.jobs());
    if args.in_place {
        let texts: Vec<Cow<'_, str>> = std::iter::from_fn(|| renderer.next_file()).collect();
        return write_in_place(&ev, &texts, &renderer.findings());
    }
    let new_docs: Vec<&Value> = ev.generated.documents.iter().map(|(_, d)| d).collect();
    let written = write_output(&args.output, &ev, &mut renderer, &new_docs);
    // Findings go to stderr after the output, once every file is rendered:
    // a document that could not be written is among them.
    let code = report_stderr(&renderer.findings());
    let result = finish(code, || written);
    // Freeing every parsed tree one node at a time costs a few percent of a
    // large run for nothing: the process is about to exit.
    std::mem::forget(ev);
    result
}

/// Print the patched manifests in `format` (YAML, JSON or a diff).
fn write_output(
    format: &OutputFormat,
    ev: &Evaluated,
    renderer: &mut Renderer<'_>,
    new_docs: &[&Value],
) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    let last_newline = ev.files.last().map_or("\n", |f| f.stream.newline());
    match format {
        OutputFormat::Kustomize(_) | OutputFormat::JsonPatch => unreachable!("written before"),
        OutputFormat::Yaml => {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut stdout);
            let ends_with_newline = write_stream(
                &mut out,
                std::iter::from_fn(|| renderer.next_file())
                    .zip(ev.files.iter().map(|f| f.stream.newline())),
            )?;
            if !new_docs.is_empty() && !ends_with_newline {
                out.write_all(last_newline.as_bytes())?;
            }
            out.write_all(generated_yaml(new_docs, last_newline)?.as_bytes())?;
            out.flush()?;
        }
        OutputFormat::Json => {
            let mut items = Vec::new();
            for file in &ev.files {
                let text = renderer.next_file().unwrap_or_default().into_owned();
                let reparsed = Stream::parse(file.stream.name(), text, Limits::default())
                    .context("re-reading the patched output")?;
                items.extend(
                    reparsed
                        .documents()
                        .iter()
                        .filter(|d| !d.value.is_null())
                        .map(|d| d.value.clone()),
                );
            }
            items.extend(new_docs.iter().map(|d| (*d).clone()));
            let out = match <[Value; 1]>::try_from(items) {
                Ok([one]) => one,
                Err(items) => json!({"apiVersion": "v1", "kind": "List", "items": items}),
            };
            serde_json::to_writer_pretty(&mut stdout, &out)?;
            writeln!(stdout)?;
        }
        OutputFormat::Diff => {
            for file in &ev.files {
                let after = renderer.next_file().unwrap_or_default();
                if after != file.stream.text() {
                    let name = file.stream.name();
                    let diff = TextDiff::from_lines(file.stream.text(), after.as_ref());
                    write!(
                        stdout,
                        "{}",
                        diff.unified_diff()
                            .header(&format!("a/{name}"), &format!("b/{name}"))
                    )?;
                }
            }
            if !new_docs.is_empty() {
                let shown: Vec<Value> = new_docs.iter().map(|d| materialize::redacted(d)).collect();
                let text = generated_yaml(&shown.iter().collect::<Vec<_>>(), "\n")?;
                let diff = TextDiff::from_lines("", &text);
                write!(
                    stdout,
                    "{}",
                    diff.unified_diff().header("/dev/null", "b/(generated)")
                )?;
            }
        }
    }
    Ok(())
}

/// One entry per changed object: `{file, document, apiVersion, kind,
/// namespace, name, patch}`; generated objects get a patch that adds them.
fn json_patches(ev: &Evaluated) -> Value {
    let mut entries = Vec::new();
    let entry = |file: Option<&str>, document: Option<usize>, meta: &ObjectMeta, patch: Value| {
        json!({
            "file": file, "document": document, "apiVersion": meta.api_version, "kind": meta.kind,
            "namespace": meta.namespace, "name": meta.name, "patch": patch,
        })
    };
    for (i, file) in ev.files.iter().enumerate() {
        for (d, objects) in file.documents.iter().enumerate() {
            for object in objects {
                let ops = object.document_patch();
                if !ops.is_empty() {
                    entries.push(entry(
                        Some(file.stream.name()),
                        Some(d),
                        &object.meta,
                        json!(ops),
                    ));
                }
            }
        }
        for (d, ops) in ev.generated.patches_for(i) {
            let meta = ObjectMeta::of(&file.stream.documents()[d].value);
            entries.push(entry(Some(file.stream.name()), Some(d), &meta, json!(ops)));
        }
    }
    for (_, doc) in &ev.generated.documents {
        // Credentials belong in the manifests, not in a patch listing.
        let add = patch::PatchOp::add("", materialize::redacted(doc));
        entries.push(entry(None, None, &ObjectMeta::of(doc), json!([add])));
    }
    Value::Array(entries)
}

/// Rewrite changed files atomically (temp file beside it, then rename);
/// nothing is written if any object failed.
fn write_in_place(
    ev: &Evaluated,
    texts: &[Cow<'_, str>],
    findings: &[Finding],
) -> Result<ExitCode> {
    let code = report_stderr(findings);
    if findings.iter().any(|f| f.level == Level::Error) {
        eprintln!("repoint: nothing was written because of the errors above");
        return Ok(code);
    }
    let mut written = 0;
    for (i, file) in ev.files.iter().enumerate() {
        let Some(path) = &file.path else { continue };
        let mut text = texts[i].to_string();
        let own: Vec<&Value> = ev
            .generated
            .documents
            .iter()
            .filter(|(f, _)| *f == i)
            .map(|(_, d)| d)
            .collect();
        if !own.is_empty() {
            let newline = file.stream.newline();
            if !text.is_empty() && !text.ends_with(['\n', '\r']) {
                text.push_str(newline);
            }
            text.push_str(&generated_yaml(&own, newline)?);
        }
        if text == file.stream.text() {
            continue;
        }
        files::atomic_write(path, &text, None)
            .with_context(|| format!("writing {}", path.display()))?;
        written += 1;
    }
    eprintln!("repoint: rewrote {written} file(s)");
    Ok(code)
}

/// Write the change as a kustomize overlay; nothing is written if any
/// object failed.
fn write_kustomize(ev: &Evaluated, dir: &Path) -> Result<ExitCode> {
    let code = report_stderr(&ev.findings);
    if ev.findings.iter().any(|f| f.level == Level::Error) {
        eprintln!("repoint: nothing was written because of the errors above");
        return Ok(code);
    }
    let mut objects = Vec::new();
    let mut resources = Vec::new();
    for (i, file) in ev.files.iter().enumerate() {
        let documents = file.stream.documents().iter().map(|d| &d.value);
        objects.extend(kustomize::object_changes(documents, &file_changes(ev, i))?);
        resources.push(match &file.path {
            Some(path) => kustomize::Resource::File(path),
            None => kustomize::Resource::Stdin(file.stream.text()),
        });
    }
    let overlay = kustomize::Overlay {
        resources,
        objects,
        generated: ev.generated.documents.iter().map(|(_, d)| d).collect(),
    };
    for note in kustomize::write(dir, &overlay)? {
        eprintln!("repoint: note: {note}");
    }
    Ok(code)
}

pub fn check(args: &CheckArgs) -> Result<ExitCode> {
    let ev = evaluate(&args.config, &args.inputs, &args.eval, false)?;
    finish(exit_code(&ev.findings, true), || write_check(args, &ev))
}

fn write_check(args: &CheckArgs, ev: &Evaluated) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match args.format {
        CheckFormat::Text => report::write_text(&mut stdout, &ev.findings)?,
        CheckFormat::Json => {
            serde_json::to_writer_pretty(&mut stdout, &ev.findings)?;
            writeln!(stdout)?;
        }
        CheckFormat::Sarif => {
            serde_json::to_writer_pretty(&mut stdout, &report::sarif(&ev.findings))?;
            writeln!(stdout)?;
        }
        CheckFormat::Github => report::write_github(&mut stdout, &ev.findings)?,
    }
    Ok(())
}
