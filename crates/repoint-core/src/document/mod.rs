//! Manifest files as text that can be changed with a minimal diff.
//!
//! A [`Stream`] keeps the original text of a YAML stream (or a JSON file)
//! and, for each document, a source tree ([`tree::Node`]) beside its JSON
//! value. Changes arrive as JSON Patch operations and are written back as
//! splices of the original text ([`edit`]), so an untouched document comes
//! out byte for byte as it went in, and a changed one differs only on the
//! lines that carry the change. Nothing is ever re-serialized unless an
//! operation cannot be expressed as a splice; then only that document is
//! rewritten.

pub mod build;
pub mod edit;
pub mod emit;
pub mod split;
pub mod tree;

use std::borrow::Cow;

use serde_json::Value;

use crate::patch::{self, PatchOp};
use edit::{Edit, Editor, Syntax};
use tree::Node;

/// Bounds on what a document may cost to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document, in bytes (default 16 MiB; the API server accepts
    /// at most 3 MiB per request).
    pub max_document_bytes: usize,
    /// Most JSON nodes a document may expand to, aliases included.
    pub max_nodes: usize,
    /// Deepest nesting.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_document_bytes: 16 << 20,
            max_nodes: 4_000_000,
            max_depth: 256,
        }
    }
}

/// A document that could not be read or written, with its location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: document {document} (line {line}, column {column}): {message}")]
pub struct DocumentError {
    /// File name as given (`-` for stdin).
    pub file: String,
    /// 0-based index of the document in the file.
    pub document: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// One document of a stream.
#[derive(Debug, Clone)]
pub struct Document {
    /// 0-based index in the stream.
    pub index: usize,
    /// Byte offset where the document starts (its `---`, or its content).
    pub start: usize,
    /// Source tree; `None` for an empty or pruned document.
    pub root: Option<Node>,
    /// The document as JSON; `Null` for an empty document. For a pruned
    /// document only `apiVersion`, `kind` and `metadata` are kept.
    pub value: Value,
    /// Whether the document was pruned at parse time (see [`Stream::parse_with`]):
    /// it passes through untouched and cannot be changed.
    pub pruned: bool,
}

/// A parsed file: its text and its documents.
#[derive(Debug, Clone)]
pub struct Stream {
    name: String,
    text: String,
    syntax: Syntax,
    documents: Vec<Document>,
    /// Byte offset of the start of each line, for locating positions
    /// without rescanning the text.
    line_starts: Vec<usize>,
}

impl Stream {
    /// Parse a YAML stream or a JSON document. `name` is used in errors.
    pub fn parse(name: &str, text: String, limits: Limits) -> Result<Self, DocumentError> {
        Self::parse_with(name, text, limits, 1, &|_| true)
    }

    /// [`Stream::parse`] with up to `threads` threads.
    pub fn parse_with_threads(
        name: &str,
        text: String,
        limits: Limits,
        threads: usize,
    ) -> Result<Self, DocumentError> {
        Self::parse_with(name, text, limits, threads, &|_| true)
    }

    /// Parse with up to `threads` threads, each parsing whole documents
    /// (documents are independent once the stream is cut at its `---`
    /// lines; where threads are unavailable, as in WebAssembly, one does it
    /// all). Every document is fully checked, but only those for which
    /// `keep` is true keep their source tree and full value: the others
    /// (CRDs, ConfigMaps... everything no change can touch) are pruned as
    /// soon as they are read, which keeps memory near the input size.
    pub fn parse_with(
        name: &str,
        text: String,
        limits: Limits,
        threads: usize,
        keep: &(dyn Fn(&Value) -> bool + Sync),
    ) -> Result<Self, DocumentError> {
        let segments = split::split(&text);
        let syntax = match text.bytes().find(|c| !c.is_ascii_whitespace()) {
            Some(b'{' | b'[') => Syntax::Json,
            _ => Syntax::Yaml,
        };
        let build_limits = build::BuildLimits {
            max_nodes: limits.max_nodes,
            max_depth: limits.max_depth,
        };
        let build_one = |segment: &split::Segment| {
            if segment.range.len() > limits.max_document_bytes {
                return Err(build::BuildError {
                    offset: segment.range.start,
                    documents_before: 0,
                    message: format!(
                        "document is {:.1} MiB, larger than the limit of {:.1} MiB",
                        segment.range.len() as f64 / 1048576.0,
                        limits.max_document_bytes as f64 / 1048576.0
                    ),
                });
            }
            let mut built = build::build_segment(
                &text[segment.range.clone()],
                segment.range.start,
                build_limits,
            )?;
            for b in &mut built {
                if b.value.is_object() && !keep(&b.value) {
                    b.root = None;
                    b.value = summary(&b.value);
                    b.pruned = true;
                }
            }
            Ok(built)
        };
        let built = parallel_map(&segments, threads, &build_one);
        let mut documents: Vec<Document> = Vec::new();
        for result in built {
            let error = |documents: usize, offset: usize, message: String| {
                let (line, column) = line_column(&text, offset);
                DocumentError {
                    file: name.to_string(),
                    document: documents,
                    line,
                    column,
                    message,
                }
            };
            let built = result
                .map_err(|e| error(documents.len() + e.documents_before, e.offset, e.message))?;
            for b in built {
                if let (Some(root), false) = (&b.root, b.value.is_object() || b.value.is_null()) {
                    return Err(error(
                        documents.len(),
                        root.span.start,
                        format!(
                            "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                            describe(&b.value)
                        ),
                    ));
                }
                documents.push(Document {
                    index: documents.len(),
                    start: b.start,
                    root: b.root,
                    value: b.value,
                    pruned: b.pruned,
                });
            }
        }
        let line_starts = std::iter::once(0)
            .chain(
                text.bytes()
                    .enumerate()
                    .filter(|(_, c)| *c == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        Ok(Self {
            name: name.to_string(),
            text,
            syntax,
            documents,
            line_starts,
        })
    }

    /// The file name given at parse time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The original text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the file is JSON rather than YAML.
    pub fn is_json(&self) -> bool {
        self.syntax == Syntax::Json
    }

    /// The documents, in order.
    pub fn documents(&self) -> &[Document] {
        &self.documents
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line, column)
    }

    /// 1-based line of the first byte of a document's content.
    pub fn document_line(&self, doc: &Document) -> usize {
        let at = doc.root.as_ref().map_or(doc.start, |r| r.span.start);
        self.line_column(at).0
    }

    /// Line of the value at `pointer` in a document, or of its nearest
    /// existing parent (an `add` names a place that does not exist yet), or
    /// of the document itself.
    pub fn line_of(&self, doc: &Document, pointer: &str) -> usize {
        let mut p = pointer;
        loop {
            if let Some((line, _)) = self.locate(doc, p) {
                return line;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return self.document_line(doc),
            }
        }
    }

    /// Line and column of the value at `pointer` in a document.
    pub fn locate(&self, doc: &Document, pointer: &str) -> Option<(usize, usize)> {
        let node = doc.root.as_ref()?.get(pointer)?;
        Some(self.line_column(node.span.start))
    }

    /// The stream with each document's operations applied, as text.
    /// `changes` pairs a document index with its operations. Documents
    /// without operations are copied byte for byte.
    pub fn render(&self, changes: &[(usize, Vec<PatchOp>)]) -> Result<Cow<'_, str>, DocumentError> {
        let mut edits: Vec<Edit> = Vec::new();
        for (index, ops) in changes {
            if ops.is_empty() {
                continue;
            }
            let doc = self
                .documents
                .get(*index)
                .ok_or_else(|| self.error_at(*index, 0, "no such document"))?;
            edits.extend(self.document_edits(doc, ops)?);
        }
        Ok(splice(&self.text, edits))
    }

    /// Edits for one document: splices when possible, otherwise the whole
    /// document re-rendered from its patched value.
    fn document_edits(&self, doc: &Document, ops: &[PatchOp]) -> Result<Vec<Edit>, DocumentError> {
        // Validate against the value first, so an operation that cannot
        // apply is an error rather than a silent half-edit.
        let mut patched = doc.value.clone();
        patch::apply(&mut patched, ops).map_err(|e| {
            self.error_at(doc.index, doc.start, &format!("cannot apply change: {e}"))
        })?;
        let Some(root) = doc.root.as_ref() else {
            let what = if doc.pruned {
                "a document pruned at parse time"
            } else {
                "an empty document"
            };
            return Err(self.error_at(doc.index, doc.start, &format!("cannot change {what}")));
        };
        let editor = Editor {
            text: &self.text,
            root,
            syntax: self.syntax,
            style: edit::detect_style(
                &self.text,
                std::iter::once(root).chain(
                    self.documents
                        .iter()
                        .filter(|d| d.index != doc.index)
                        .filter_map(|d| d.root.as_ref()),
                ),
            ),
        };
        let mut edits = Vec::new();
        let mut splice_ok = true;
        for op in ops {
            match editor.edits(op) {
                Ok(e) => edits.extend(e),
                Err(edit::Unsupported) => {
                    splice_ok = false;
                    break;
                }
            }
        }
        if splice_ok && !overlapping(&mut edits) {
            return Ok(edits);
        }
        let text = match self.syntax {
            Syntax::Json => serde_json::to_string_pretty(&patched).unwrap_or_default(),
            Syntax::Yaml => emit::document(&patched, editor.style)
                .trim_end_matches('\n')
                .to_string(),
        };
        Ok(vec![Edit {
            range: root.span.clone(),
            text,
        }])
    }

    fn error_at(&self, document: usize, offset: usize, message: &str) -> DocumentError {
        let (line, column) = self.line_column(offset);
        DocumentError {
            file: self.name.clone(),
            document,
            line,
            column,
            message: message.to_string(),
        }
    }
}

/// Map `f` over `items` with up to `threads` scoped threads, keeping order.
/// Threads take the next item as they finish one, so a run of large
/// documents does not leave the other threads idle.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: &(dyn Fn(&T) -> R + Sync),
) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            done.push((i, f(item)));
        }
        done
    };
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, work).ok())
            .collect();
        // This thread works too; where threads cannot be spawned
        // (WebAssembly) it simply does everything.
        let mut all = work();
        for h in helpers {
            all.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        all
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Sort edits by position (keeping the order of insertions at one point)
/// and say whether any two overlap.
fn overlapping(edits: &mut [Edit]) -> bool {
    edits.sort_by_key(|e| e.range.start);
    edits.windows(2).any(|w| {
        let (a, b) = (&w[0], &w[1]);
        a.range.end > b.range.start
            || (a.range.start == b.range.start && !a.range.is_empty() && !b.range.is_empty())
    })
}

fn splice(text: &str, mut edits: Vec<Edit>) -> Cow<'_, str> {
    if edits.is_empty() {
        return Cow::Borrowed(text);
    }
    edits.sort_by_key(|e| e.range.start);
    let mut out =
        String::with_capacity(text.len() + edits.iter().map(|e| e.text.len()).sum::<usize>());
    let mut pos = 0;
    for e in edits {
        out.push_str(&text[pos..e.range.start.max(pos)]);
        out.push_str(&e.text);
        pos = pos.max(e.range.end);
    }
    out.push_str(&text[pos..]);
    Cow::Owned(out)
}

/// What a pruned document keeps: its identity.
fn summary(v: &Value) -> Value {
    let mut m = serde_json::Map::new();
    for key in ["apiVersion", "kind", "metadata"] {
        if let Some(x) = v.get(key) {
            m.insert(key.to_string(), x.clone());
        }
    }
    Value::Object(m)
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}
