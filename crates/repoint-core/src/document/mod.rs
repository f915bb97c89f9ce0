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
//!
//! Values are what kubectl reads ([`resolve`]: go-yaml v2 scalars, merge
//! keys expanded). Every changed document is parsed again before it is
//! handed out and its value compared with the value the operations give; a
//! splice that does not check out falls back to a re-rendered document,
//! checked the same way, and a document that still does not check out is a
//! [`DocumentError`] and keeps its original text.

pub mod build;
pub mod edit;
pub mod emit;
pub mod resolve;
mod spliced;
pub mod split;
pub mod tree;

pub use build::RunBudget;
pub use spliced::{Prepared, Spliced};

use std::borrow::Cow;

use serde_json::Value;

use crate::patch::{self, PatchOp};
use edit::{Edit, Editor, Syntax};
use tree::{Node, NodeKind, ScalarStyle};

/// Bounds on what a document may cost to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest input (a file, standard input), in bytes (default 256 MiB).
    pub max_input_bytes: u64,
    /// Largest document, in bytes (default 16 MiB; the API server accepts
    /// at most 3 MiB per request).
    pub max_document_bytes: usize,
    /// Most JSON nodes a document may expand to, aliases included.
    pub max_nodes: usize,
    /// Most nodes aliases may expand to in all the documents of a run,
    /// however many threads read them.
    pub max_alias_nodes: usize,
    /// Deepest nesting.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_bytes: 256 << 20,
            max_document_bytes: 16 << 20,
            max_nodes: 4_000_000,
            max_alias_nodes: 4_000_000,
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
    /// The piece of the stream that holds the document (its index among
    /// the stream's [`split`] segments), and the document's place in it:
    /// what is parsed again to check a change.
    segment: (usize, usize),
    /// Source tree; `None` for an empty or pruned document. Boxed, so a
    /// released document, which has none, is that much smaller.
    pub root: Option<Box<Node>>,
    /// The document as JSON; `Null` for an empty document. For a pruned
    /// document only `apiVersion`, `kind` and `metadata` are kept.
    pub value: Value,
    /// Whether the document was pruned at parse time (see [`Stream::parse_with`])
    /// or released since ([`Stream::release`]): it passes through untouched
    /// and cannot be changed.
    pub pruned: bool,
    /// How it indents, for itself and its neighbours; `None` when it was
    /// pruned at parse time or is empty.
    style: Option<edit::StyleHints>,
}

/// A stream rendered with its changes: the text, and the documents whose
/// change could not be written (they keep their original text).
#[derive(Debug)]
pub struct Rendered<'a> {
    /// The stream's new text, put together as it is written.
    pub text: Spliced<'a>,
    /// One error per document left unchanged because its change could not
    /// be written faithfully.
    pub failures: Vec<DocumentError>,
    /// The documents written anew from their value rather than by minimal
    /// edits.
    pub rerendered: Vec<Rerendered>,
}

/// A document written anew from its value, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rerendered {
    /// Its index in the stream.
    pub document: usize,
    /// `None` when its operations cannot be splices (a `remove`, a `move`,
    /// an insertion inside a list); otherwise what was wrong with the
    /// splices, which is a defect of the splice layer that the re-render
    /// covered.
    pub splice_problem: Option<String>,
}

/// A parsed file: its text and its documents.
#[derive(Debug, Clone)]
pub struct Stream {
    name: String,
    text: String,
    syntax: Syntax,
    /// The file's line ending, used for every line repoint adds.
    newline: &'static str,
    limits: build::BuildLimits,
    documents: Vec<Document>,
    /// The pieces the text is cut into, each parsed on its own.
    segments: Vec<split::Segment>,
    /// Where lines start, for locating positions without rescanning the
    /// text.
    lines: LineIndex,
    /// Whether every document has been read (see [`Reader`]).
    complete: bool,
    /// Each indentation habit as the first document read that shows it
    /// shows it.
    shown: edit::StyleHints,
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
        let budget = RunBudget::new(limits.max_alias_nodes);
        Self::parse_in_run(name, text, limits, threads, keep, &budget)
    }

    /// [`Stream::parse_with`], sharing `budget` with the other files of a
    /// run: aliases expand to at most its nodes across all of them, and
    /// once a document fails, the documents after it are not read.
    pub fn parse_in_run(
        name: &str,
        text: String,
        limits: Limits,
        threads: usize,
        keep: &(dyn Fn(&Value) -> bool + Sync),
        budget: &RunBudget,
    ) -> Result<Self, DocumentError> {
        let mut reader = Reader::new(name, text, limits, threads, keep, budget)?;
        while reader.read(usize::MAX)?.is_some() {}
        Ok(reader.finish())
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
        self.lines.position(&self.text, offset)
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

    /// The line of the key that holds the member at `pointer` (where a
    /// person looks for `bogus:`, not the line of its nested value); the
    /// value's line when the member is not in a mapping or not there.
    pub fn key_line_of(&self, doc: &Document, pointer: &str) -> usize {
        let key = pointer.rsplit_once('/').and_then(|(parent, token)| {
            let parent = doc.root.as_ref()?.get(parent)?;
            let NodeKind::Mapping { entries, .. } = &parent.kind else {
                return None;
            };
            let token = crate::pointer::tokens(&format!("/{token}"))?.pop()?;
            entries.iter().find(|e| e.key == token).map(|e| e.start)
        });
        match key {
            Some(start) => self.line_column(start).0,
            None => self.line_of(doc, pointer),
        }
    }

    /// Line and column of the value at `pointer` in a document.
    pub fn locate(&self, doc: &Document, pointer: &str) -> Option<(usize, usize)> {
        let node = doc.root.as_ref()?.get(pointer)?;
        Some(self.line_column(node.span.start))
    }

    /// The file's line ending: `\n`, `\r\n` or `\r`.
    pub fn newline(&self) -> &'static str {
        self.newline
    }

    /// How `doc` indents: as it does itself, and where it shows no habit,
    /// as the first document of the file that does (so a document with no
    /// list of its own indents a new one like its neighbours do).
    fn style_of(&self, doc: &Document) -> emit::IndentStyle {
        doc.style.unwrap_or_default().or(self.shown).style()
    }

    /// Whether the style `doc` would be written in is known already: it
    /// shows both habits itself, a document before it shows what it lacks,
    /// or every document is read (a [`Reader`] may not have reached a
    /// later one that does).
    pub fn style_settled(&self, doc: &Document) -> bool {
        // `shown` holds the first of each habit among the documents read,
        // and a habit `doc` lacks was first shown by another document.
        self.complete || doc.style.unwrap_or_default().or(self.shown).is_complete()
    }

    /// Drop a document's tree and value once nothing needs them: it
    /// passes through as it is, or with edits made before by
    /// [`Stream::prepare`]. What it showed of its style stays, for its
    /// neighbours.
    pub fn release(&mut self, index: usize) {
        if let Some(doc) = self.documents.get_mut(index) {
            doc.root = None;
            doc.value = Value::Null;
            doc.pruned = true;
        }
    }

    /// The checked edits that write `ops` into document `index`, to be
    /// handed to [`Stream::render_prepared`] later (after the document's
    /// tree is released): see [`Stream::render_each`].
    pub fn prepare(&self, index: usize, ops: &[PatchOp]) -> Result<Prepared, DocumentError> {
        let Some(doc) = self.documents.get(index) else {
            return Err(self.error_at(index, 0, "no such document"));
        };
        let (edits, rerendered) = self.document_edits(doc, ops)?;
        Ok(Prepared::of(edits, rerendered))
    }

    /// The stream with each document's operations applied, as text.
    /// `changes` pairs a document index with its operations. Documents
    /// without operations are copied byte for byte. The first document
    /// whose change cannot be written faithfully is an error.
    pub fn render(&self, changes: &[(usize, Vec<PatchOp>)]) -> Result<Cow<'_, str>, DocumentError> {
        let rendered = self.render_each(changes);
        match rendered.failures.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(rendered.text.to_text()),
        }
    }

    /// [`Stream::render`], document by document: a document whose change
    /// cannot be written faithfully keeps its text and is reported in
    /// [`Rendered::failures`]; the others are written.
    pub fn render_each(&self, changes: &[(usize, Vec<PatchOp>)]) -> Rendered<'_> {
        self.render_prepared(Prepared::none(), changes)
    }

    /// [`Stream::render_each`] with the edits of documents prepared before
    /// ([`Stream::prepare`]) spliced in too.
    pub fn render_prepared<'a>(
        &'a self,
        prepared: &'a Prepared,
        changes: &[(usize, Vec<PatchOp>)],
    ) -> Rendered<'a> {
        let mut now = Prepared::default();
        let mut failures = Vec::new();
        for (index, ops) in changes.iter().filter(|(_, ops)| !ops.is_empty()) {
            match self.prepare(*index, ops) {
                Ok(p) => now.append(p),
                Err(e) => failures.push(e),
            }
        }
        let mut rerendered = prepared.rerendered.clone();
        rerendered.append(&mut now.rerendered);
        // Prepared earlier or now, in document order all the same.
        rerendered.sort_by_key(|r| r.document);
        Rendered {
            text: Spliced::new(&self.text, prepared, now),
            failures,
            rerendered,
        }
    }

    /// Edits for one document, checked: splices when possible, otherwise
    /// the whole document re-rendered from its patched value; whichever is
    /// used, the new text is parsed again and must give the patched value.
    fn document_edits(
        &self,
        doc: &Document,
        ops: &[PatchOp],
    ) -> Result<(Vec<Edit>, Option<Rerendered>), DocumentError> {
        // Validate against the value first, so an operation that cannot
        // apply is an error rather than a silent half-edit.
        let mut patched = doc.value.clone();
        patch::apply(&mut patched, ops).map_err(|e| {
            self.error_at(doc.index, doc.start, &format!("cannot apply change: {e}"))
        })?;
        // A document of only comments has an empty scalar as its root:
        // nothing to edit, and no line of its own to write a value on.
        let written =
            |root: &&Node| !matches!(root.kind, NodeKind::Scalar(ScalarStyle::Empty { .. }));
        let Some(root) = doc.root.as_deref().filter(written) else {
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
            patched: &patched,
            syntax: self.syntax,
            style: self.style_of(doc),
            newline: self.newline,
        };
        let splices = editor
            .edits_for(ops)
            .ok()
            .filter(|edits| !overlapping(edits));
        let problem = match splices {
            Some(edits) => match self.check(doc, &edits, &patched) {
                Ok(()) => return Ok((edits, None)),
                Err(problem) => Some(problem),
            },
            None => None,
        };
        let rerender = vec![self.rerender(&patched, root, editor.style)];
        match self.check(doc, &rerender, &patched) {
            // A splice that did not check out is a defect of the splice
            // layer, not of the input: the re-render covers it (the fuzz
            // targets look for such splices).
            Ok(()) => Ok((
                rerender,
                Some(Rerendered {
                    document: doc.index,
                    splice_problem: problem,
                }),
            )),
            Err(again) => Err(self.error_at(
                doc.index,
                root.span.start,
                &format!(
                    "repoint could not write this change faithfully (the new text would read \
                     differently: {}); the document is left as it was",
                    problem.unwrap_or(again)
                ),
            )),
        }
    }

    /// The whole document written anew from its value, at the root's
    /// column, in the file's line ending.
    fn rerender(&self, patched: &Value, root: &Node, style: emit::IndentStyle) -> Edit {
        let text = match self.syntax {
            Syntax::Json => serde_json::to_string_pretty(patched).unwrap_or_default(),
            Syntax::Yaml => emit::document(patched, style)
                .trim_end_matches('\n')
                .to_string(),
        };
        // The root keeps its own indentation. After `--- ` on its line it
        // starts on a line of its own; after properties (`! key: value`)
        // it replaces them too, from the line's start.
        let line_start = edit::line_start(&self.text, root.span.start);
        let before = &self.text[line_start..root.span.start];
        let (start, column, lead) = if before.trim().is_empty() {
            (root.span.start, before.chars().count(), "")
        } else if before.trim_start().starts_with("---") {
            (root.span.start, 0, self.newline)
        } else {
            (line_start, 0, "")
        };
        let indent = format!("{}{}", self.newline, " ".repeat(column));
        let text = format!("{lead}{}", text.replace('\n', &indent));
        Edit::new(start..root.span.end, text)
    }

    /// Parse the document's segment with `edits` applied and compare the
    /// document's value with `expected`.
    fn check(&self, doc: &Document, edits: &[Edit], expected: &Value) -> Result<(), String> {
        let (segment, position) = &doc.segment;
        let range = &self.segments[*segment].range;
        let local: Vec<Edit> = edits
            .iter()
            .map(|e| Edit {
                range: e.range.start - range.start..e.range.end - range.start,
                ..e.clone()
            })
            .collect();
        let text = spliced::splice(&self.text[range.clone()], &local);
        if self.syntax == Syntax::Json {
            check_json(&self.name, &text).map_err(|e| e.message)?;
        }
        let values = build::segment_values(&text, 0, self.limits).map_err(|e| e.message)?;
        let reread = values.get(*position).ok_or("the document is gone")?;
        if let Some(pointer) = first_difference(reread, expected) {
            return Err(format!("at {pointer}"));
        }
        Ok(())
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

/// A stream read a window of documents at a time: each window's
/// documents are parsed (in parallel) when asked for, so that a caller
/// can evaluate them and [`Stream::release`] their trees before the next
/// window is read, and a long stream is never held whole as trees.
/// [`Stream::parse_in_run`] is one window as large as the stream.
pub struct Reader<'r> {
    stream: Stream,
    /// The first segment not read yet.
    next: usize,
    limits: Limits,
    threads: usize,
    keep: &'r (dyn Fn(&Value) -> bool + Sync),
    budget: &'r RunBudget,
}

impl std::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("stream", &self.stream.name)
            .field("segments", &self.stream.segments.len())
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl<'r> Reader<'r> {
    /// Check the file's syntax as a whole (JSON or YAML) and cut it into
    /// segments; no document is parsed yet. See [`Stream::parse_with`] for
    /// `keep`, [`Stream::parse_in_run`] for `budget`.
    pub fn new(
        name: &str,
        text: String,
        limits: Limits,
        threads: usize,
        keep: &'r (dyn Fn(&Value) -> bool + Sync),
        budget: &'r RunBudget,
    ) -> Result<Self, DocumentError> {
        // A file named `.json` is JSON: it is held to JSON's grammar, so
        // comments and other YAML-only syntax are errors rather than
        // quietly read as YAML. Other text (standard input, `.yaml`) is
        // edited as JSON when it is JSON, and read as YAML otherwise.
        let syntax = if name.ends_with(".json") {
            check_json(name, &text)?;
            Syntax::Json
        } else {
            match text.bytes().find(|c| !c.is_ascii_whitespace()) {
                Some(b'{' | b'[') if check_json(name, &text).is_ok() => Syntax::Json,
                _ => Syntax::Yaml,
            }
        };
        let mut segments = split::split(&text);
        // Kept as long as the stream: without the room it grew into.
        segments.shrink_to_fit();
        let stream = Stream {
            name: name.to_string(),
            newline: detect_newline(&text),
            lines: LineIndex::new(&text),
            text,
            syntax,
            limits: build::BuildLimits {
                max_nodes: limits.max_nodes,
                max_depth: limits.max_depth,
            },
            // Most segments hold one document.
            documents: Vec::with_capacity(segments.len()),
            complete: segments.is_empty(),
            segments,
            shown: edit::StyleHints::default(),
        };
        Ok(Self {
            stream,
            next: 0,
            limits,
            threads,
            keep,
            budget,
        })
    }

    /// How many documents the stream holds at least (its segments; most
    /// hold one).
    pub fn documents_at_least(&self) -> usize {
        self.stream.segments.len()
    }

    /// Parse the next `segments` segments (at least one); returns the
    /// indices of the documents they hold, `None` once every segment is
    /// read. The first error in stream order wins.
    pub fn read(
        &mut self,
        segments: usize,
    ) -> Result<Option<std::ops::Range<usize>>, DocumentError> {
        if self.is_done() {
            return Ok(None);
        }
        let window = self.next
            ..self
                .stream
                .segments
                .len()
                .min(self.next.saturating_add(segments.max(1)));
        let (limits, keep, budget) = (self.limits, self.keep, self.budget);
        let (text, build_limits) = (&self.stream.text, self.stream.limits);
        let first = window.start;
        let build_one = |offset: usize, segment: &split::Segment| {
            let index = first + offset;
            if segment.range.len() > limits.max_document_bytes {
                budget.failed(index);
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
            let run = build::InRun {
                budget,
                segment: index,
            };
            let mut built = build::build_segment(
                &text[segment.range.clone()],
                segment.range.start,
                build_limits,
                Some(run),
            )
            .inspect_err(|_| budget.failed(index))?;
            let mut hints = Vec::with_capacity(built.len());
            for b in &mut built {
                if b.value.is_object() && !keep(&b.value) {
                    b.root = None;
                    b.value = summary(&b.value);
                    b.pruned = true;
                }
                // Only what is kept teaches style, as it always has: a
                // pruned document is nobody's neighbour.
                hints.push(b.root.as_ref().map(|root| edit::StyleHints::of(text, root)));
            }
            Ok((first + offset, built, hints))
        };
        let built = crate::parallel::map(
            &self.stream.segments[window.clone()],
            self.threads,
            build_one,
        );
        self.next = window.end;
        let stream = &mut self.stream;
        let before = stream.documents.len();
        for result in built {
            let (segment, built, hints) = result.map_err(|e| {
                stream.error_at(
                    stream.documents.len() + e.documents_before,
                    e.offset,
                    &e.message,
                )
            })?;
            for (in_segment, (b, hints)) in built.into_iter().zip(hints).enumerate() {
                if let (Some(root), false) = (&b.root, b.value.is_object() || b.value.is_null()) {
                    return Err(stream.error_at(
                        stream.documents.len(),
                        root.span.start,
                        &format!(
                            "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                            describe(&b.value)
                        ),
                    ));
                }
                stream.shown = stream.shown.or(hints.unwrap_or_default());
                stream.documents.push(Document {
                    index: stream.documents.len(),
                    start: b.start,
                    segment: (segment, in_segment),
                    root: b.root.map(Box::new),
                    value: b.value,
                    pruned: b.pruned,
                    style: hints,
                });
            }
        }
        let read = before..stream.documents.len();
        self.stream.complete = self.is_done();
        Ok(Some(read))
    }

    /// The value of the first document with content, parsed on its own
    /// and not kept: how a directory walk tells a manifest from another
    /// YAML or JSON file (a kustomization, a `package.json`) before any of
    /// it is evaluated. `None` when no document has content, or when the
    /// first one is too large or does not parse (reading it says so).
    pub fn first_value(&self) -> Option<Value> {
        for segment in &self.stream.segments {
            if segment.range.len() > self.limits.max_document_bytes {
                return None;
            }
            let text = &self.stream.text[segment.range.clone()];
            let values =
                build::segment_values(text, segment.range.start, self.stream.limits).ok()?;
            if let Some(value) = values.into_iter().find(|v| !v.is_null()) {
                return Some(value);
            }
        }
        None
    }

    /// Whether every segment is read.
    pub fn is_done(&self) -> bool {
        self.next >= self.stream.segments.len()
    }

    /// The stream so far: every document read, in order.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// [`Reader::stream`], to release documents done with.
    pub fn stream_mut(&mut self) -> &mut Stream {
        &mut self.stream
    }

    /// The stream, once every window is read (documents not read yet are
    /// not in it).
    pub fn finish(self) -> Stream {
        self.stream
    }
}

/// Why a new document could not be written faithfully.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The written text does not parse back.
    #[error("the YAML written for it does not read back: {0}")]
    Unreadable(String),
    /// It parses back as something else, first at this pointer.
    #[error("the YAML written for it would read differently at {0}")]
    Differs(String),
}

/// A new document (a generated Secret, a patch file) as block YAML ending
/// in `\n`, read back and checked like every changed document: the text
/// must mean `value` to kubectl.
pub fn new_document(value: &Value, style: emit::IndentStyle) -> Result<String, EmitError> {
    let text = emit::document(value, style);
    let limits = build::BuildLimits {
        max_nodes: usize::MAX,
        max_depth: usize::MAX,
    };
    let values =
        build::segment_values(&text, 0, limits).map_err(|e| EmitError::Unreadable(e.message))?;
    let reread = values.first().unwrap_or(&Value::Null);
    match first_difference(reread, value) {
        None => Ok(text),
        Some(at) => Err(EmitError::Differs(at)),
    }
}

/// Whether any two edits overlap (insertions at one point do not).
fn overlapping(edits: &[Edit]) -> bool {
    let mut edits: Vec<&Edit> = edits.iter().collect();
    edits.sort_by_key(|e| e.range.start);
    edits.windows(2).any(|w| {
        let (a, b) = (&w[0], &w[1]);
        a.range.end > b.range.start
            || (a.range.start == b.range.start && !a.range.is_empty() && !b.range.is_empty())
    })
}

/// The first place where `a` and `b` differ as kubectl would see them
/// (numbers compare by value: `1` and `1.0` are the same), as a JSON
/// Pointer (`/` for the root); `None` when they are the same.
pub fn first_difference(a: &Value, b: &Value) -> Option<String> {
    let mut tokens = difference(a, b)?;
    if tokens.is_empty() {
        return Some("/".into());
    }
    // Gathered from the difference up to the root.
    tokens.reverse();
    Some(crate::pointer::join(tokens))
}

/// The tokens of the path to the first difference, innermost first. The
/// path is only built when there is a difference: every changed document
/// is compared whole, and almost all compare equal.
fn difference(a: &Value, b: &Value) -> Option<Vec<String>> {
    let inside = |token: String, found: Option<Vec<String>>| {
        found.map(|mut tokens| {
            tokens.push(token);
            tokens
        })
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            if x.len() != y.len() {
                return Some(Vec::new());
            }
            x.iter().find_map(|(k, v)| match y.get(k) {
                Some(w) => inside(k.clone(), difference(v, w)),
                None => Some(vec![k.clone()]),
            })
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(Vec::new());
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (v, w))| inside(i.to_string(), difference(v, w)))
        }
        (Value::Number(x), Value::Number(y)) => {
            let same = match (x.as_i64(), y.as_i64()) {
                (Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            };
            (!same).then(Vec::new)
        }
        (x, y) => (x != y).then(Vec::new),
    }
}

/// Hold JSON text to JSON's grammar, with the place of the first error.
fn check_json(name: &str, text: &str) -> Result<(), DocumentError> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
    let mut document = 0;
    loop {
        match stream.next() {
            None => return Ok(()),
            Some(Ok(_)) => document += 1,
            Some(Err(e)) => {
                return Err(DocumentError {
                    file: name.to_string(),
                    document,
                    line: e.line(),
                    column: e.column(),
                    message: format!("invalid JSON: {e}"),
                });
            }
        }
    }
}

/// The line ending a text uses: that of its first line.
fn detect_newline(text: &str) -> &'static str {
    match text.find(['\n', '\r']) {
        Some(i) if text[i..].starts_with("\r\n") => "\r\n",
        Some(i) if text.as_bytes()[i] == b'\r' => "\r",
        _ => "\n",
    }
}

/// Byte offsets where the lines after the one at `from` start (`from` is
/// a line's start); `\n`, `\r\n` and a lone `\r` end a line.
fn line_starts_after(text: &str, from: usize) -> impl Iterator<Item = usize> + '_ {
    let bytes = text.as_bytes();
    bytes
        .get(from..)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(move |(i, &c)| {
            let at = from + i;
            let ends = c == b'\n' || (c == b'\r' && bytes.get(at + 1) != Some(&b'\n'));
            ends.then_some(at + 1)
        })
}

/// How many lines [`LineIndex`] counts at most to find a position.
const LINE_SAMPLE: usize = 32;

/// The start of every [`LINE_SAMPLE`]th line of a text. A position is
/// found from the sample before it by counting fewer than that many lines:
/// the start of every line took 8 bytes a line, on a stream of small
/// manifests half the size of the input again, for as long as the run.
#[derive(Debug, Clone)]
struct LineIndex {
    samples: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        Self {
            samples: std::iter::once(0)
                .chain(line_starts_after(text, 0))
                .step_by(LINE_SAMPLE)
                .collect(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset of `text`.
    fn position(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        // The first sample is 0, so there is always one at or before.
        let sample = self.samples.partition_point(|&s| s <= offset).max(1) - 1;
        let mut start = self.samples.get(sample).copied().unwrap_or(0);
        let mut line = sample * LINE_SAMPLE + 1;
        for next in line_starts_after(text, start).take_while(|&next| next <= offset) {
            (start, line) = (next, line + 1);
        }
        let column = text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line, column)
    }
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
    LineIndex { samples: vec![0] }.position(text, offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sampled_line_index_places_every_offset_as_a_full_one_does() {
        // Every line ending, lines of every length, multi-byte characters,
        // and more lines than several samples hold.
        let mut text = String::new();
        for i in 0..(LINE_SAMPLE * 5 + 3) {
            text.push_str(&"é".repeat(i % 4));
            text.push_str(["\n", "\r\n", "\r", "\n\n"][i % 4]);
        }
        text.push_str("last");
        let starts: Vec<usize> = std::iter::once(0)
            .chain(line_starts_after(&text, 0))
            .collect();
        let index = LineIndex::new(&text);
        for offset in (0..=text.len()).filter(|&o| text.is_char_boundary(o)) {
            let line = starts.partition_point(|&s| s <= offset);
            let column = text[starts[line - 1]..offset].chars().count() + 1;
            assert_eq!(index.position(&text, offset), (line, column), "{offset}");
            assert_eq!(line_column(&text, offset), (line, column), "{offset}");
        }
        assert_eq!(index.position("", 0), (1, 1));
    }

    /// A document whose aliases expand to about `10 * 10 * 10` nodes.
    fn small_bomb(i: usize) -> String {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: b{i}}}\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        )
    }

    #[test]
    fn the_alias_budget_bounds_the_whole_run_at_any_thread_count() {
        let limits = Limits {
            max_nodes: 2_000,
            max_alias_nodes: 5_000,
            ..Limits::default()
        };
        // Each document is within its own budget...
        assert!(Stream::parse("one.yaml", small_bomb(0), limits).is_ok());
        // ...but eight of them are not within the run's, however many
        // threads read them.
        let text: String = (0..8).map(|i| format!("---\n{}", small_bomb(i))).collect();
        for threads in [1, 2, 4] {
            let e = Stream::parse_with("bombs.yaml", text.clone(), limits, threads, &|_| true)
                .expect_err("over the run's budget");
            assert!(
                e.message
                    .contains("aliases in the input expand to more than 5000 nodes in all"),
                "{threads} threads: {e}"
            );
        }
        // The budget is shared by the files of a run.
        let budget = RunBudget::new(1_500);
        let keep = |_: &Value| true;
        assert!(Stream::parse_in_run("a.yaml", small_bomb(0), limits, 1, &keep, &budget).is_ok());
        assert!(Stream::parse_in_run("b.yaml", small_bomb(1), limits, 1, &keep, &budget).is_err());
    }

    #[test]
    fn the_first_failure_in_input_order_is_reported_whatever_stops() {
        let mut text = String::from("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad\n");
        for i in 0..50 {
            text.push_str(&format!("---\n{}", small_bomb(i)));
        }
        for threads in [1, 4] {
            let e = Stream::parse_with("x.yaml", text.clone(), Limits::default(), threads, &|_| {
                true
            })
            .expect_err("bad first document");
            assert_eq!((e.document, e.line), (0, 5), "{threads} threads: {e}");
            assert!(!e.message.contains(build::STOPPED), "{e}");
        }
    }

    #[test]
    fn a_splice_that_does_not_check_out_is_refused() {
        let stream =
            Stream::parse("a.yaml", "a: 1\nb: 2\n".into(), Limits::default()).expect("parse");
        let doc = &stream.documents()[0];
        let wrong = [Edit::new(3..4, "x".into())];
        assert_eq!(
            stream.check(doc, &wrong, &json!({"a": 1, "b": 2})),
            Err("at /a".to_string())
        );
        let broken = [Edit::new(3..4, "[".into())];
        assert!(
            stream
                .check(doc, &broken, &json!({"a": 1, "b": 2}))
                .is_err()
        );
        let right = [Edit::new(3..4, "1.0".into())];
        assert_eq!(stream.check(doc, &right, &json!({"a": 1, "b": 2})), Ok(()));
    }

    #[test]
    fn a_document_that_cannot_be_written_keeps_its_text_and_is_reported() {
        let text = "metadata: {name: x}\n---\nb: 2\n";
        let keep_second = |v: &Value| v.get("b").is_some();
        let stream = Stream::parse_with("s.yaml", text.into(), Limits::default(), 1, &keep_second)
            .expect("parse");
        let rendered = stream.render_each(&[
            (0, vec![PatchOp::replace("/metadata/name", json!("y"))]),
            (1, vec![PatchOp::replace("/b", json!(4))]),
        ]);
        assert_eq!(
            rendered.text.to_string(),
            "metadata: {name: x}\n---\nb: 4\n"
        );
        assert_eq!(rendered.failures.len(), 1);
        assert_eq!(rendered.failures[0].document, 0);
        assert!(
            rendered.failures[0].message.contains("pruned"),
            "{:?}",
            rendered.failures
        );
        assert!(
            stream
                .render(&[(0, vec![PatchOp::replace("/metadata/name", json!("y"))])])
                .is_err()
        );
    }

    #[test]
    fn numbers_compare_by_value() {
        assert_eq!(first_difference(&json!({"a": 1}), &json!({"a": 1.0})), None);
        assert_eq!(
            first_difference(&json!({"a": [1, 2]}), &json!({"a": [1, 3]})),
            Some("/a/1".into())
        );
        assert_eq!(first_difference(&json!(1), &json!("1")), Some("/".into()));
        assert_eq!(
            first_difference(
                &json!({"a/b": {"c~": [0, {"d": 1}]}}),
                &json!({"a/b": {"c~": [0, {"d": 2}]}})
            ),
            Some("/a~1b/c~0/1/d".into())
        );
        assert_eq!(
            first_difference(&json!({"a": {"b": 1}}), &json!({"a": {"c": 1}})),
            Some("/a/b".into())
        );
    }
}
