//! `repoint run` and `repoint check`: evaluate the chain over manifests,
//! then print the patched manifests (run) or the findings (check).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use repoint_config::Config;
use repoint_core::document::emit::{self, IndentStyle};
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
    let (runtime, chain) = engine::build_chain(&config, &eval.options, false)?;
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
    evaluate_streams(&config, &runtime, &chain, streams, eval)
}

/// Run the chain over parsed streams, then make the pull Secrets and
/// ServiceAccounts the results ask for.
pub(crate) fn evaluate_streams(
    config: &Config,
    runtime: &repoint_runtime::Runtime,
    chain: &repoint_runtime::chain::Chain,
    streams: Vec<(Option<std::path::PathBuf>, Stream)>,
    eval: &EvalArgs,
) -> Result<Evaluated> {
    let files = engine::evaluate(runtime, chain, streams, eval.options.jobs());
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

/// The patched text of file `i` (borrowed when nothing changes).
fn render_file(ev: &Evaluated, i: usize) -> Result<std::borrow::Cow<'_, str>> {
    Ok(ev.files[i].stream.render(&file_changes(ev, i))?)
}

/// New documents as a YAML stream (each preceded by `---`).
fn generated_yaml(docs: &[&Value]) -> String {
    docs.iter()
        .map(|d| format!("---\n{}", emit::document(d, IndentStyle::default())))
        .collect()
}

/// Write file texts as one stream, with `---` between files; returns
/// whether the stream so far ends with a newline.
fn write_stream(
    out: &mut impl Write,
    texts: impl IntoIterator<Item = Result<impl AsRef<str>>>,
) -> Result<bool> {
    let mut first = true;
    let mut ends_with_newline = true;
    for text in texts {
        let text = text?;
        let text = text.as_ref();
        if !first {
            if !ends_with_newline {
                out.write_all(b"\n")?;
            }
            if !text.trim_start().starts_with("---") {
                out.write_all(b"---\n")?;
            }
        }
        out.write_all(text.as_bytes())?;
        first = false;
        ends_with_newline = text.is_empty() || text.ends_with('\n');
    }
    Ok(ends_with_newline)
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
    if args.in_place {
        return write_in_place(&ev);
    }
    if let Some(dir) = kustomize_dir {
        return write_kustomize(&ev, dir);
    }
    let code = report_stderr(&ev.findings);
    let mut stdout = std::io::stdout().lock();
    let new_docs: Vec<&Value> = ev.generated.documents.iter().map(|(_, d)| d).collect();
    match &args.output {
        OutputFormat::Kustomize(_) => unreachable!("written above"),
        OutputFormat::Yaml => {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut stdout);
            let ends_with_newline =
                write_stream(&mut out, (0..ev.files.len()).map(|i| render_file(&ev, i)))?;
            if !new_docs.is_empty() && !ends_with_newline {
                out.write_all(b"\n")?;
            }
            out.write_all(generated_yaml(&new_docs).as_bytes())?;
            out.flush()?;
        }
        OutputFormat::Json => {
            let mut items = Vec::new();
            for i in 0..ev.files.len() {
                let text = render_file(&ev, i)?.into_owned();
                let reparsed = Stream::parse(ev.files[i].stream.name(), text, Limits::default())
                    .context("re-reading the patched output")?;
                items.extend(
                    reparsed
                        .documents()
                        .iter()
                        .filter(|d| !d.value.is_null())
                        .map(|d| d.value.clone()),
                );
            }
            items.extend(new_docs.into_iter().cloned());
            let out = match <[Value; 1]>::try_from(items) {
                Ok([one]) => one,
                Err(items) => json!({"apiVersion": "v1", "kind": "List", "items": items}),
            };
            serde_json::to_writer_pretty(&mut stdout, &out)?;
            writeln!(stdout)?;
        }
        OutputFormat::JsonPatch => {
            serde_json::to_writer_pretty(&mut stdout, &json_patches(&ev))?;
            writeln!(stdout)?;
        }
        OutputFormat::Diff => {
            for (i, file) in ev.files.iter().enumerate() {
                let after = render_file(&ev, i)?;
                if after != file.stream.text() {
                    let name = file.stream.name();
                    let diff = TextDiff::from_lines(file.stream.text(), &after);
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
                let text = generated_yaml(&shown.iter().collect::<Vec<_>>());
                let diff = TextDiff::from_lines("", &text);
                write!(
                    stdout,
                    "{}",
                    diff.unified_diff().header("/dev/null", "b/(generated)")
                )?;
            }
        }
    }
    drop(stdout);
    // Freeing every parsed tree one node at a time costs a few percent of a
    // large run for nothing: the process is about to exit.
    std::mem::forget(ev);
    Ok(code)
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
fn write_in_place(ev: &Evaluated) -> Result<ExitCode> {
    let code = report_stderr(&ev.findings);
    if ev.findings.iter().any(|f| f.level == Level::Error) {
        eprintln!("repoint: nothing was written because of the errors above");
        return Ok(code);
    }
    let mut written = 0;
    for (i, file) in ev.files.iter().enumerate() {
        let Some(path) = &file.path else { continue };
        let mut text = render_file(ev, i)?.into_owned();
        let own: Vec<&Value> = ev
            .generated
            .documents
            .iter()
            .filter(|(f, _)| *f == i)
            .map(|(_, d)| d)
            .collect();
        if !own.is_empty() {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&generated_yaml(&own));
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
    Ok(exit_code(&ev.findings, true))
}
