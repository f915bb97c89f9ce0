//! The patched output of an evaluation, in every format `repoint run`
//! writes: the manifests as YAML (changed only where they must), the
//! patched objects as JSON, a unified diff, a JSON Patch listing, or the
//! files rewritten in place. Each writes to any `io::Write`.

use std::collections::VecDeque;
use std::io::Write;

use repoint_core::document::{self, Spliced, emit, emit::IndentStyle};
use repoint_core::{Limits, Stream, patch};
use serde_json::{Value, json};
use similar::TextDiff;

use crate::evaluate::{Evaluated, ObjectMeta};
use crate::materialize;
use crate::report::{self, Finding};
use crate::{Error, Result, files};

/// Files' patched texts, in input order, made as output is written: a
/// batch of as many files as there are jobs at a time, in parallel, so
/// that few files' changes are checked and held at once; each text is
/// handed out as its pieces ([`Spliced`]), never made whole for writing.
/// `Stream::render_each` parses every changed document again; a document
/// whose change could not be written faithfully keeps its text and becomes
/// an error finding.
#[derive(Debug)]
pub struct Renderer<'e> {
    ev: &'e Evaluated,
    jobs: usize,
    /// The first file not rendered yet.
    next: usize,
    /// Rendered, not yet handed out, in order.
    ready: VecDeque<Spliced<'e>>,
    failures: Vec<Finding>,
}

impl<'e> Renderer<'e> {
    /// Render `ev`'s files with `jobs` threads.
    pub fn new(ev: &'e Evaluated, jobs: usize) -> Self {
        Self {
            ev,
            jobs: jobs.max(1),
            next: 0,
            ready: VecDeque::new(),
            failures: Vec::new(),
        }
    }

    /// The next file's new text; `None` after the last.
    pub fn next_file(&mut self) -> Option<Spliced<'e>> {
        if self.ready.is_empty() && self.next < self.ev.files.len() {
            let ev = self.ev;
            let batch: Vec<usize> = (self.next..ev.files.len()).take(self.jobs).collect();
            self.next += batch.len();
            let results = repoint_core::parallel::map(&batch, self.jobs, |_, &j| {
                let file = &ev.files[j];
                file.stream
                    .render_prepared(&file.prepared, &ev.file_changes(j))
            });
            for (j, rendered) in batch.into_iter().zip(results) {
                let file = &ev.files[j];
                let documents = file.stream.documents();
                let mut failures = file.failures.clone();
                failures.extend(rendered.failures.iter().map(|e| {
                    let meta = documents
                        .get(e.document)
                        .map(|d| ObjectMeta::of(&d.value))
                        .unwrap_or_default();
                    report::document_error(e, &meta)
                }));
                // Those written in their window and those written now, in
                // document order, as if all were written now.
                failures.sort_by_key(|f| f.document);
                self.failures.append(&mut failures);
                self.ready.push_back(rendered.text);
            }
        }
        self.ready.pop_front()
    }

    /// Every finding: the evaluation's, and the failures of every file
    /// (those output did not reach, when a reader stopped early, too).
    pub fn findings(mut self) -> Vec<Finding> {
        while self.next_file().is_some() {}
        let mut findings = self.ev.findings.clone();
        findings.append(&mut self.failures);
        findings
    }
}

/// New documents as a YAML stream (each preceded by `---`), in the given
/// line ending; each is read back and checked before it is written.
pub fn generated_yaml(docs: &[&Value], newline: &str) -> Result<String> {
    let mut out = String::new();
    for doc in docs {
        let text =
            document::new_document(doc, IndentStyle::default()).map_err(|source| Error::Emit {
                what: "a generated object",
                source,
            })?;
        out.push_str("---\n");
        out.push_str(&text);
    }
    Ok(emit::with_newline(out, newline))
}

/// Write file texts as one stream, with `---` between files, each
/// separator in the line ending of the file it introduces; returns whether
/// the stream so far ends with a line break. When the stream holds more
/// than one document (`several`) and starts with a JSON document, it
/// starts with `---` too: kubectl reads a stream whose first character is
/// `{` as JSON only, and would fail at the first `---`.
fn write_stream<'t>(
    out: &mut impl Write,
    texts: impl IntoIterator<Item = (Spliced<'t>, &'static str)>,
    several: bool,
) -> std::io::Result<bool> {
    let mut first = true;
    let mut ends_with_newline = true;
    for (text, newline) in texts {
        if first && several && text.trimmed_start(1) == "{" {
            out.write_all(format!("---{newline}").as_bytes())?;
        }
        if !first {
            if !ends_with_newline {
                out.write_all(newline.as_bytes())?;
            }
            if text.trimmed_start(3) != "---" {
                out.write_all(format!("---{newline}").as_bytes())?;
            }
        }
        ends_with_newline = text.write_to(out)?;
        first = false;
    }
    Ok(ends_with_newline)
}

fn generated_documents(ev: &Evaluated) -> Vec<&Value> {
    ev.generated.documents.iter().map(|(_, d)| d).collect()
}

/// The manifests, every file's patched text in order, then the generated
/// objects.
pub fn yaml(out: &mut impl Write, ev: &Evaluated, renderer: &mut Renderer<'_>) -> Result<()> {
    let new_docs = generated_documents(ev);
    let last_newline = ev.files.last().map_or("\n", |f| f.stream.newline());
    let generated = generated_yaml(&new_docs, last_newline)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    let ends_with_newline = write_stream(
        &mut out,
        std::iter::from_fn(|| renderer.next_file())
            .zip(ev.files.iter().map(|f| f.stream.newline())),
        ev.files.len() > 1 || !new_docs.is_empty(),
    )
    .map_err(Error::Output)?;
    let mut tail = || -> std::io::Result<()> {
        if !new_docs.is_empty() && !ends_with_newline {
            out.write_all(last_newline.as_bytes())?;
        }
        out.write_all(generated.as_bytes())?;
        out.flush()
    };
    tail().map_err(Error::Output)
}

/// The patched objects as JSON: the one object, or a `v1` `List` of all.
pub fn json(out: &mut impl Write, ev: &Evaluated, renderer: &mut Renderer<'_>) -> Result<()> {
    let mut items = Vec::new();
    for file in &ev.files {
        let text = renderer
            .next_file()
            .map(|t| t.to_text().into_owned())
            .unwrap_or_default();
        let reparsed = Stream::parse(file.stream.name(), text, Limits::default())?;
        items.extend(
            reparsed
                .documents()
                .iter()
                .filter(|d| !d.value.is_null())
                .map(|d| d.value.clone()),
        );
    }
    items.extend(generated_documents(ev).into_iter().cloned());
    let value = match <[Value; 1]>::try_from(items) {
        Ok([one]) => one,
        Err(items) => json!({"apiVersion": "v1", "kind": "List", "items": items}),
    };
    write_json(out, &value)
}

/// A value as indented JSON and a line break.
pub fn write_json(out: &mut impl Write, value: &impl serde::Serialize) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .map_err(Error::Output)
}

/// A unified diff of every changed file, then of the generated objects
/// (credentials redacted: a diff is for reading).
pub fn diff(out: &mut impl Write, ev: &Evaluated, renderer: &mut Renderer<'_>) -> Result<()> {
    for file in &ev.files {
        let after = renderer
            .next_file()
            .map(|t| t.to_text())
            .unwrap_or_default();
        if after != file.stream.text() {
            let name = file.stream.name();
            let diff = TextDiff::from_lines(file.stream.text(), after.as_ref());
            write!(
                out,
                "{}",
                diff.unified_diff()
                    .header(&format!("a/{name}"), &format!("b/{name}"))
            )
            .map_err(Error::Output)?;
        }
    }
    let new_docs = generated_documents(ev);
    if !new_docs.is_empty() {
        let shown: Vec<Value> = new_docs.iter().map(|d| materialize::redacted(d)).collect();
        let text = generated_yaml(&shown.iter().collect::<Vec<_>>(), "\n")?;
        let diff = TextDiff::from_lines("", &text);
        write!(
            out,
            "{}",
            diff.unified_diff().header("/dev/null", "b/(generated)")
        )
        .map_err(Error::Output)?;
    }
    Ok(())
}

/// One entry per changed object: `{file, document, apiVersion, kind,
/// namespace, name, patch}`; generated objects get a patch that adds them
/// (credentials redacted: they belong in the manifests, not in a listing).
pub fn json_patches(ev: &Evaluated) -> Value {
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
        let add = patch::PatchOp::add("", materialize::redacted(doc));
        entries.push(entry(None, None, &ObjectMeta::of(doc), json!([add])));
    }
    Value::Array(entries)
}

/// Input file `i`'s new text (`text`, from a [`Renderer`]) with the
/// objects generated for it appended; `None` when it does not change.
fn in_place_text(ev: &Evaluated, i: usize, text: &Spliced<'_>) -> Result<Option<String>> {
    let file = &ev.files[i];
    let own: Vec<&Value> = ev
        .generated
        .documents
        .iter()
        .filter(|(f, _)| *f == i)
        .map(|(_, d)| d)
        .collect();
    if text.is_unchanged() && own.is_empty() {
        return Ok(None);
    }
    let mut text = text.to_string();
    if !own.is_empty() {
        let newline = file.stream.newline();
        if !text.is_empty() && !text.ends_with(['\n', '\r']) {
            text.push_str(newline);
        }
        text.push_str(&generated_yaml(&own, newline)?);
    }
    Ok((text != file.stream.text()).then_some(text))
}

/// Rewrite the files that change, all or nothing: every new text is first
/// written and synced beside its file (through a symbolic link, beside
/// its target; mode, owner and group kept), and only when all are staged
/// are they renamed into place. Returns the files written. The caller
/// decides whether to write at all (never when an object failed).
pub fn write_in_place(ev: &Evaluated, texts: &[Spliced<'_>]) -> Result<Vec<std::path::PathBuf>> {
    // Each new text is made and staged in turn, so that only one is held
    // at a time; nothing is renamed into place until all are staged.
    let mut staged = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let file = &ev.files[i];
        if let (Some(path), Some(text)) = (&file.path, in_place_text(ev, i, text)?) {
            staged.push(files::stage(path, &text, file.stream.text())?);
        }
    }
    Ok(files::commit(staged)?)
}
