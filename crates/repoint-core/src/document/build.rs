//! Turn YAML parser events into a source tree and a JSON value at once.
//!
//! Scalars and keys mean what they mean to kubectl (go-yaml v2 rules, see
//! [`super::resolve`]), and merge keys (`<<`) are expanded as go-yaml v2
//! expands them. Aliases are expanded into the JSON value under a budget,
//! so a "billion laughs" document fails fast instead of eating memory.

use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle as ParserStyle, Tag};
use serde_json::{Map, Value};

use super::resolve::{self, TagKind, Written};
use super::tree::{Entry, Node, NodeKind, ScalarStyle};

/// A parse failure inside one segment, positioned in the stream.
#[derive(Debug, Clone)]
pub struct BuildError {
    /// Byte offset in the stream.
    pub offset: usize,
    /// How many documents of this segment were complete before the error.
    pub documents_before: usize,
    /// What went wrong.
    pub message: String,
}

/// One parsed document of a segment.
#[derive(Debug, Clone)]
pub struct Built {
    /// Its source tree; `None` for an empty document.
    pub root: Option<Node>,
    /// Its value; `Null` for an empty document.
    pub value: Value,
    /// Byte offset where the document's content (or its `---`) starts.
    pub start: usize,
    /// Set by the caller when it drops the tree (see `Stream::parse_with`).
    pub pruned: bool,
}

/// Limits that keep hostile input bounded.
#[derive(Debug, Clone, Copy)]
pub struct BuildLimits {
    /// Most JSON nodes one document may expand to (aliases included).
    pub max_nodes: usize,
    /// Deepest nesting allowed.
    pub max_depth: usize,
}

/// What every document of a run shares, whichever thread reads it: the
/// nodes aliases may still expand to (an alias bomb per document, read in
/// parallel, would otherwise cost the per-document budget once per
/// thread), and the first segment that failed, after which later segments
/// stop: their documents would not be used.
#[derive(Debug)]
pub struct RunBudget {
    alias_nodes_left: std::sync::atomic::AtomicUsize,
    total: usize,
    first_failed: std::sync::atomic::AtomicUsize,
}

impl RunBudget {
    /// A budget of `alias_nodes` nodes that aliases may expand to in all.
    pub fn new(alias_nodes: usize) -> Self {
        Self {
            alias_nodes_left: alias_nodes.into(),
            total: alias_nodes,
            first_failed: usize::MAX.into(),
        }
    }

    /// Take `nodes` from the budget, or say that the run is over it.
    fn take(&self, nodes: usize) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        self.alias_nodes_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(nodes)
            })
            .map(|_| ())
            .map_err(|_| {
                format!(
                    "aliases in the input expand to more than {} nodes in all",
                    self.total
                )
            })
    }

    /// Segment `index` failed.
    pub fn failed(&self, index: usize) {
        self.first_failed
            .fetch_min(index, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a segment before `index` failed, so `index` need not be read.
    fn stop(&self, index: usize) -> bool {
        self.first_failed.load(std::sync::atomic::Ordering::Relaxed) < index
    }
}

/// A segment's place in its run: the budget it shares, and its index.
#[derive(Debug, Clone, Copy)]
pub struct InRun<'a> {
    pub budget: &'a RunBudget,
    pub segment: usize,
}

/// The message of a segment that stopped because an earlier one failed
/// (never shown: the earlier failure is).
pub const STOPPED: &str = "stopped: an earlier document failed";

/// Converts the parser's character offsets to byte offsets. Offsets are
/// asked for in (nearly) increasing order, so a forward cursor is enough.
struct Offsets<'a> {
    text: &'a str,
    ascii: bool,
    char_pos: usize,
    byte_pos: usize,
}

impl<'a> Offsets<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            ascii: text.is_ascii(),
            char_pos: 0,
            byte_pos: 0,
        }
    }

    fn byte(&mut self, char_index: usize) -> usize {
        if self.ascii {
            return char_index.min(self.text.len());
        }
        if char_index < self.char_pos {
            self.char_pos = 0;
            self.byte_pos = 0;
        }
        let rest = &self.text[self.byte_pos..];
        let step = rest
            .char_indices()
            .nth(char_index - self.char_pos)
            .map_or(rest.len(), |(i, _)| i);
        self.byte_pos += step;
        self.char_pos = char_index;
        self.byte_pos
    }
}

/// A mapping key waiting for its value.
struct PendingKey {
    /// The JSON key, or `None` for a merge (`<<`).
    key: Option<String>,
    span: std::ops::Range<usize>,
    start: usize,
}

enum Frame {
    Mapping {
        start: usize,
        flow: bool,
        anchor: usize,
        entries: Vec<Entry>,
        map: Map<String, Value>,
        /// Keys whose value came from a merge and no explicit entry since.
        merged: HashSet<String>,
        pending_key: Option<PendingKey>,
        nodes: usize,
    },
    Sequence {
        start: usize,
        flow: bool,
        anchor: usize,
        items: Vec<Node>,
        values: Vec<Value>,
        nodes: usize,
    },
}

struct Builder<'a> {
    text: &'a str,
    base: usize,
    limits: BuildLimits,
    run: Option<InRun<'a>>,
    /// Whether to keep the source tree (a check needs only the value).
    tree: bool,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Value, usize)>,
    expanded: usize,
    /// End of the previous event: a block scalar's header lies between it
    /// and the scalar's content.
    last_end: usize,
    done: Option<(Node, Value)>,
}

/// The message saphyr gives for `key:<TAB>value`, which go-yaml (and the
/// YAML spec) accept: a tab is separation whitespace.
const TAB_AFTER_COLON: &str = "':' must be followed by a valid YAML whitespace";

/// Parse one segment (`text` is the segment, `base` its offset in the
/// stream) into its documents.
pub fn build_segment(
    text: &str,
    base: usize,
    limits: BuildLimits,
    run: Option<InRun<'_>>,
) -> Result<Vec<Built>, BuildError> {
    build(text, base, limits, run, true)
}

/// The values of a segment's documents, without their source trees: what
/// checking a changed document needs, at less cost.
pub fn segment_values(
    text: &str,
    base: usize,
    limits: BuildLimits,
) -> Result<Vec<Value>, BuildError> {
    Ok(build(text, base, limits, None, false)?
        .into_iter()
        .map(|b| b.value)
        .collect())
}

fn build(
    text: &str,
    base: usize,
    limits: BuildLimits,
    run: Option<InRun<'_>>,
    tree: bool,
) -> Result<Vec<Built>, BuildError> {
    // saphyr refuses a tab right after a mapping's `:`. Where it does,
    // the parser is at that indicator, so the tab is separation and never
    // content: parse again with that one tab read as a space. Offsets stay
    // the same (both are one byte) and no scalar's text changes.
    let mut patched: Option<String> = None;
    loop {
        let input = patched.as_deref().unwrap_or(text);
        match build_text(input, base, limits, run, tree) {
            Err(Failure {
                tab_after_colon: Some(at),
                ..
            }) => {
                let copy = patched.get_or_insert_with(|| text.to_string());
                // Safe: a one-byte ASCII character replaces another.
                copy.replace_range(at..at + 1, " ");
            }
            other => return other.map_err(|e| e.error),
        }
    }
}

struct Failure {
    error: BuildError,
    /// Where the tab is, when the failure is saphyr's refusal of a tab
    /// right after a `:`.
    tab_after_colon: Option<usize>,
}

/// The tab saphyr refused: it marks the first character after the blanks
/// that follow the `:`.
fn refused_tab(text: &str, marked: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let colon = bytes[..marked.min(bytes.len())]
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))?;
    (bytes[colon] == b':' && bytes.get(colon + 1) == Some(&b'\t')).then_some(colon + 1)
}

fn build_text<'a>(
    text: &'a str,
    base: usize,
    limits: BuildLimits,
    run: Option<InRun<'a>>,
    tree: bool,
) -> Result<Vec<Built>, Failure> {
    let mut offsets = Offsets::new(text);
    let mut documents = Vec::new();
    let mut builder: Option<Builder<'_>> = None;
    let mut doc_start = base;
    for (n, event) in Parser::new_from_str(text).enumerate() {
        if n % 1024 == 0
            && let Some(run) = run
            && run.budget.stop(run.segment)
        {
            return Err(Failure {
                error: BuildError {
                    offset: base,
                    documents_before: documents.len(),
                    message: STOPPED.into(),
                },
                tab_after_colon: None,
            });
        }
        let (event, span) = match event {
            Ok(ok) => ok,
            Err(e) => {
                let offset = base + offsets.byte(e.marker().index());
                let tab_after_colon = (e.info() == TAB_AFTER_COLON)
                    .then(|| refused_tab(text, offset - base))
                    .flatten();
                return Err(Failure {
                    error: BuildError {
                        offset,
                        documents_before: documents.len(),
                        message: e.info().to_string(),
                    },
                    tab_after_colon,
                });
            }
        };
        let start = base + offsets.byte(span.start.index());
        let end = base + offsets.byte(span.end.index());
        let fail = |message: String| Failure {
            error: BuildError {
                offset: start,
                documents_before: documents.len(),
                message,
            },
            tab_after_colon: None,
        };
        match event {
            Event::DocumentStart(_) => {
                doc_start = start;
                builder = Some(Builder {
                    text,
                    base,
                    limits,
                    run,
                    tree,
                    stack: Vec::new(),
                    anchors: HashMap::new(),
                    expanded: 0,
                    last_end: start,
                    done: None,
                });
            }
            Event::DocumentEnd => {
                let b = builder
                    .take()
                    .ok_or_else(|| fail("document end without start".into()))?;
                let (root, value) = match b.done {
                    Some((node, value)) => (Some(node), value),
                    None => (None, Value::Null),
                };
                documents.push(Built {
                    root,
                    value,
                    start: doc_start,
                    pruned: false,
                });
            }
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
            other => {
                let b = builder
                    .as_mut()
                    .ok_or_else(|| fail("content outside a document".into()))?;
                b.event(other, start, end).map_err(fail)?;
                b.last_end = end;
            }
        }
    }
    Ok(documents)
}

impl Builder<'_> {
    fn byte(&self, pos: usize) -> Option<u8> {
        self.text
            .as_bytes()
            .get(pos.checked_sub(self.base)?)
            .copied()
    }

    /// Whether the next completed node is a mapping key.
    fn expecting_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame::Mapping {
                pending_key: None,
                ..
            })
        )
    }

    fn event(&mut self, event: Event<'_>, start: usize, end: usize) -> Result<(), String> {
        match event {
            Event::Scalar(value, style, anchor, tag) => {
                self.charge(1)?;
                let (style, span) = self.scalar_span(style, &value, start, end);
                let tag = tag.as_deref().map_or(TagKind::None, tag_kind);
                let written = match style {
                    ScalarStyle::Plain | ScalarStyle::Empty { .. } => Written::Plain,
                    _ => Written::Quoted,
                };
                if self.expecting_key() {
                    let merge = written == Written::Plain
                        && value == "<<"
                        && matches!(tag, TagKind::None | TagKind::Core("merge"));
                    let resolved = resolve::resolve(&value, written, tag)?;
                    if anchor != 0
                        && let Ok(json) = resolved.clone().into_json()
                    {
                        self.anchors.insert(anchor, (json, 1));
                    }
                    let key = if merge {
                        None
                    } else {
                        Some(resolved.into_key()?)
                    };
                    return self.set_key(key, span, start);
                }
                let value = resolve::resolve(&value, written, tag)?.into_json()?;
                let node = Node {
                    span,
                    kind: NodeKind::Scalar(style),
                };
                self.complete(node, value, anchor, 1)
            }
            Event::SequenceStart(anchor, _) => {
                self.check_depth()?;
                self.charge(1)?;
                let content = self.skip_properties(start);
                let flow = self.byte(content) == Some(b'[');
                let start = if flow {
                    content
                } else {
                    self.block_sequence_dash()
                        .unwrap_or_else(|| self.block_sequence_start(content))
                };
                self.stack.push(Frame::Sequence {
                    start,
                    flow,
                    anchor,
                    items: Vec::new(),
                    values: Vec::new(),
                    nodes: 1,
                });
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.check_depth()?;
                self.charge(1)?;
                let content = self.skip_properties(start);
                let flow = self.byte(content) == Some(b'{');
                self.stack.push(Frame::Mapping {
                    start: content,
                    flow,
                    anchor,
                    entries: Vec::new(),
                    map: Map::new(),
                    merged: HashSet::new(),
                    pending_key: None,
                    nodes: 1,
                });
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Sequence {
                    start,
                    flow,
                    anchor,
                    items,
                    values,
                    nodes,
                }) => {
                    let end = if flow {
                        self.flow_end(start, end, b']')
                    } else {
                        items.last().map_or(start, |n| n.span.end)
                    };
                    let node = Node {
                        span: start..end,
                        kind: NodeKind::Sequence { flow, items },
                    };
                    self.complete(node, Value::Array(values), anchor, nodes)
                }
                _ => Err("unbalanced sequence end".into()),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Mapping {
                    start,
                    flow,
                    anchor,
                    entries,
                    map,
                    nodes,
                    ..
                }) => {
                    let end = if flow {
                        self.flow_end(start, end, b'}')
                    } else {
                        entries
                            .last()
                            .map_or(start, |e| e.value.span.end.max(e.key_span.end))
                    };
                    let node = Node {
                        span: start..end,
                        kind: NodeKind::Mapping { flow, entries },
                    };
                    self.complete(node, Value::Object(map), anchor, nodes)
                }
                _ => Err("unbalanced mapping end".into()),
            },
            Event::Alias(id) => {
                let count = self
                    .anchors
                    .get(&id)
                    .map(|(_, count)| *count)
                    .ok_or_else(|| "alias to an unknown anchor".to_string())?;
                // Charge before copying, so a bomb fails before it allocates:
                // this document's budget, and the run's.
                self.charge(count)?;
                if let Some(run) = self.run {
                    run.budget.take(count)?;
                }
                let value = self.anchors[&id].0.clone();
                let node = Node {
                    span: start..end,
                    kind: NodeKind::Alias,
                };
                if self.expecting_key() {
                    let key = match value {
                        Value::String(s) => s,
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        Value::Null => {
                            return Err("a mapping key is null (kubectl cannot read it)".into());
                        }
                        _ => return Err("a mapping key must be a scalar".into()),
                    };
                    return self.set_key(Some(key), start..end, start);
                }
                self.complete(node, value, 0, count)
            }
            _ => Ok(()),
        }
    }

    fn set_key(
        &mut self,
        key: Option<String>,
        span: std::ops::Range<usize>,
        event_start: usize,
    ) -> Result<(), String> {
        let start = self.explicit_key_start(event_start);
        if let Some(Frame::Mapping {
            map,
            merged,
            pending_key,
            ..
        }) = self.stack.last_mut()
        {
            if let Some(key) = &key
                && map.contains_key(key)
                && !merged.contains(key)
            {
                return Err(format!("duplicate mapping key {key:?}"));
            }
            *pending_key = Some(PendingKey { key, span, start });
        }
        Ok(())
    }

    /// Where an entry starts: at the `?` of an explicit key (`? key`),
    /// else where its key's first event starts.
    fn explicit_key_start(&self, start: usize) -> usize {
        let bytes = self.text.as_bytes();
        let mut i = start - self.base;
        while i > 0 && matches!(bytes[i - 1], b' ' | b'\t') {
            i -= 1;
        }
        if i > 0 && bytes[i - 1] == b'?' {
            return self.base + i - 1;
        }
        start
    }

    fn check_depth(&self) -> Result<(), String> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(format!(
                "nesting deeper than {} levels",
                self.limits.max_depth
            ));
        }
        Ok(())
    }

    /// Skip a node's properties (`&anchor`, `!tag`, `!<verbatim>`) and the
    /// blanks, line breaks and comments after them: where its content is.
    fn skip_properties(&self, pos: usize) -> usize {
        let (content, _) = properties(self.text.as_bytes(), pos - self.base);
        self.base + content
    }

    /// Where a flow collection really ends: just after its closing
    /// bracket. The parser's end event can sit on a trailing comma
    /// (`{a: 1,}`) or on the last item, so look for the bracket from there.
    fn flow_end(&self, start: usize, end: usize, close: u8) -> usize {
        let bytes = self.text.as_bytes();
        if end > start && self.byte(end - 1) == Some(close) {
            return end;
        }
        let mut i = end.saturating_sub(1).max(start) - self.base;
        while i < bytes.len() {
            match bytes[i] {
                b if b == close => return self.base + i + 1,
                b' ' | b'\t' | b'\r' | b'\n' | b',' => i += 1,
                b'#' => i = skip_blanks_and_comments(bytes, i),
                _ if self.base + i < end => i += 1,
                _ => break,
            }
        }
        end
    }

    /// Where a scalar is written: its content, without properties. The
    /// parser's end marker for a quoted scalar can run past the closing
    /// quote (over trailing blanks and a comment), so quoted scalars are
    /// measured from their opening quote; a block scalar runs from its
    /// header to the end of its last content line.
    fn scalar_span(
        &self,
        style: ParserStyle,
        value: &str,
        start: usize,
        end: usize,
    ) -> (ScalarStyle, std::ops::Range<usize>) {
        let bytes = self.text.as_bytes();
        match style {
            ParserStyle::Plain if value.is_empty() => {
                let (at, after_indicator) = self.empty_scalar_position(start);
                (ScalarStyle::Empty { after_indicator }, at..at)
            }
            ParserStyle::Plain => (
                ScalarStyle::Plain,
                self.skip_properties(start).min(end)..end,
            ),
            ParserStyle::SingleQuoted => {
                let start = self.skip_properties(start);
                let local = &bytes[start - self.base..];
                let mut i = 1;
                while i < local.len() {
                    if local[i] == b'\'' {
                        if local.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        return (ScalarStyle::SingleQuoted, start..start + i + 1);
                    }
                    i += 1;
                }
                (ScalarStyle::SingleQuoted, start..end)
            }
            ParserStyle::DoubleQuoted => {
                let start = self.skip_properties(start);
                let local = &bytes[start - self.base..];
                let mut i = 1;
                while i < local.len() {
                    match local[i] {
                        b'\\' => i += 2,
                        b'"' => return (ScalarStyle::DoubleQuoted, start..start + i + 1),
                        _ => i += 1,
                    }
                }
                (ScalarStyle::DoubleQuoted, start..end)
            }
            _ => {
                // The parser's span starts at the content; the header (`|`,
                // `>-`, `|2+`) is the first indicator after the properties
                // that follow the previous event.
                // Skipping comments can run past an empty scalar's start.
                let from = self.skip_properties(self.last_end.min(start)).min(start);
                let header = bytes[from - self.base..start - self.base]
                    .iter()
                    .position(|b| matches!(b, b'|' | b'>'))
                    .map_or(start, |i| from + i);
                let mut end = end;
                while end > header + 1
                    && matches!(self.byte(end - 1), Some(b' ' | b'\t' | b'\r' | b'\n'))
                {
                    end -= 1;
                }
                (ScalarStyle::Block, header..end)
            }
        }
    }

    /// An empty scalar (`key:`, `{key}`, `key: !tag`, `- `) is reported at
    /// odd places. Its value belongs after its properties if it has any,
    /// else, as a mapping value, right after the key's `:`, or right after
    /// the key when there is none (a bare flow key). Also says whether
    /// something (a `:` or a property) comes before that place.
    fn empty_scalar_position(&self, start: usize) -> (usize, bool) {
        let bytes = self.text.as_bytes();
        let local = start - self.base;
        if let (_, Some(end)) = properties(bytes, local) {
            return (self.base + end, true);
        }
        let Some(Frame::Mapping {
            pending_key: Some(key),
            ..
        }) = self.stack.last()
        else {
            return (start, true);
        };
        let i = skip_blanks_and_comments(bytes, key.span.end - self.base);
        if bytes.get(i) == Some(&b':') {
            (self.base + i + 1, true)
        } else {
            (key.span.end, false)
        }
    }

    /// The dash of a block sequence that starts now. The parser reports a
    /// sequence nested as the first item of another (`- - a`) at the inner
    /// dash, for both; so find it from the text: the first dash after the
    /// previous event (after the key, for a mapping's value), or, as an
    /// item of a block sequence, the dash after that item's own.
    fn block_sequence_dash(&self) -> Option<usize> {
        let bytes = self.text.as_bytes();
        let find_dash = |from: usize| {
            let mut i = from - self.base;
            loop {
                i = skip_blanks_and_comments(bytes, i);
                match bytes.get(i)? {
                    b':' | b'?' => i += 1,
                    b'&' | b'!' => i = property_end(bytes, i),
                    b'-' if matches!(
                        bytes.get(i + 1),
                        None | Some(b' ' | b'\t' | b'\r' | b'\n')
                    ) =>
                    {
                        return Some(self.base + i);
                    }
                    _ => return None,
                }
            }
        };
        match self.stack.last() {
            Some(Frame::Sequence {
                flow: false,
                start,
                items,
                ..
            }) => {
                let item_dash = if items.is_empty() {
                    *start
                } else {
                    find_dash(self.last_end)?
                };
                find_dash(item_dash + 1)
            }
            Some(Frame::Sequence { flow: true, .. }) => None,
            _ => find_dash(self.last_end),
        }
    }

    /// The parser puts a nested block sequence's start at its first item's
    /// content (a top-level one at its `-`); step back to the `-` so the
    /// sequence's span always covers it.
    fn block_sequence_start(&self, start: usize) -> usize {
        let bytes = self.text.as_bytes();
        let mut i = start - self.base;
        if bytes.get(i) == Some(&b'-')
            && matches!(bytes.get(i + 1), None | Some(b' ' | b'\t' | b'\r' | b'\n'))
        {
            return start;
        }
        // The parser marks the first item's content; walk back over
        // blanks and comments (`- # note` puts one between) to the dash.
        while i > 0 {
            i -= 1;
            match bytes[i] {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b'-' => return self.base + i,
                _ => match comment_start(bytes, i) {
                    Some(hash) => i = hash,
                    None => break,
                },
            }
        }
        start
    }

    /// Account for `nodes` new JSON nodes; aliases charge the size of what
    /// they expand to, before it is copied.
    fn charge(&mut self, nodes: usize) -> Result<(), String> {
        self.expanded += nodes;
        if self.expanded > self.limits.max_nodes {
            return Err(format!(
                "document expands to more than {} nodes through aliases or sheer size",
                self.limits.max_nodes
            ));
        }
        Ok(())
    }

    fn complete(
        &mut self,
        node: Node,
        value: Value,
        anchor: usize,
        count: usize,
    ) -> Result<(), String> {
        if anchor != 0 {
            self.anchors.insert(anchor, (value.clone(), count));
        }
        let tree = self.tree;
        match self.stack.last_mut() {
            None => {
                self.done = Some((node, value));
                Ok(())
            }
            Some(Frame::Sequence {
                items,
                values,
                nodes,
                ..
            }) => {
                *nodes += count;
                if tree {
                    items.push(node);
                }
                values.push(value);
                Ok(())
            }
            Some(Frame::Mapping {
                entries,
                map,
                merged,
                pending_key,
                nodes,
                ..
            }) => {
                *nodes += count;
                let Some(PendingKey { key, span, start }) = pending_key.take() else {
                    return Err("a mapping key must be a scalar".into());
                };
                match key {
                    Some(key) => {
                        // Most mappings have no merge: skip hashing the key.
                        if !merged.is_empty() {
                            merged.remove(&key);
                        }
                        if !tree {
                            map.insert(key, value);
                            return Ok(());
                        }
                        map.insert(key.clone(), value);
                        entries.push(Entry {
                            key,
                            key_span: span,
                            start,
                            value: node,
                            merge: false,
                            shadowed: false,
                        });
                    }
                    None => {
                        merge_into(map, merged, entries, value)?;
                        entries.push(Entry {
                            key: "<<".into(),
                            key_span: span,
                            start,
                            value: node,
                            merge: true,
                            shadowed: false,
                        });
                    }
                }
                Ok(())
            }
        }
    }
}

/// go-yaml v2's merge: a mapping's members (or, for a sequence of
/// mappings, each mapping's members, the first mapping winning) are
/// written into the merging mapping as they come, so a merge overrides the
/// keys before it and the keys after it override the merge.
fn merge_into(
    map: &mut Map<String, Value>,
    merged: &mut HashSet<String>,
    entries: &mut [Entry],
    value: Value,
) -> Result<(), String> {
    let sources: Vec<Map<String, Value>> = match value {
        Value::Object(m) => vec![m],
        Value::Array(items) => items
            .into_iter()
            .rev()
            .map(|item| match item {
                Value::Object(m) => Ok(m),
                _ => Err(()),
            })
            .collect::<Result<_, _>>()
            .map_err(|()| MERGE_NEEDS_MAPS.to_string())?,
        _ => return Err(MERGE_NEEDS_MAPS.into()),
    };
    for source in sources {
        for (key, v) in source {
            if !merged.contains(&key)
                && let Some(entry) = entries.iter_mut().find(|e| e.effective() && e.key == key)
            {
                entry.shadowed = true;
            }
            merged.insert(key.clone());
            map.insert(key, v);
        }
    }
    Ok(())
}

const MERGE_NEEDS_MAPS: &str = "a merge (<<) needs a mapping or a sequence of mappings";

fn tag_kind(tag: &Tag) -> TagKind<'_> {
    const CORE: &str = "tag:yaml.org,2002:";
    if tag.is_yaml_core_schema() {
        TagKind::Core(&tag.suffix)
    } else if let Some(name) = tag.suffix.strip_prefix(CORE) {
        TagKind::Core(name)
    } else {
        TagKind::Other
    }
}

/// The node properties (`&anchor`, `!tag`, `!<verbatim>`) at byte `i`:
/// where the content after them starts (past blanks, line breaks and
/// comments), and where the last property ends (`None` without any).
fn properties(bytes: &[u8], mut i: usize) -> (usize, Option<usize>) {
    let mut last = None;
    while matches!(bytes.get(i), Some(b'&' | b'!')) {
        i = property_end(bytes, i);
        last = Some(i);
        i = skip_blanks_and_comments(bytes, i);
    }
    (i.min(bytes.len()), last)
}

/// The end of the one property starting at byte `i`: anchor names and tags
/// end at a blank, a line break or a flow indicator; a verbatim tag at its
/// `>`.
fn property_end(bytes: &[u8], mut i: usize) -> usize {
    if bytes.get(i..i + 2) == Some(b"!<") {
        while i < bytes.len() && bytes[i] != b'>' {
            i += 1;
        }
        return (i + 1).min(bytes.len());
    }
    while i < bytes.len()
        && !matches!(
            bytes[i],
            b' ' | b'\t' | b'\r' | b'\n' | b',' | b'[' | b']' | b'{' | b'}'
        )
    {
        i += 1;
    }
    i
}

fn skip_blanks_and_comments(bytes: &[u8], mut i: usize) -> usize {
    loop {
        match bytes.get(i) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => i += 1,
            Some(b'#') => {
                while i < bytes.len() && !matches!(bytes[i], b'\r' | b'\n') {
                    i += 1;
                }
            }
            _ => return i,
        }
    }
}

/// If byte `i` is inside a comment, where the comment's `#` is: the first
/// `#` of the line that starts it or follows a blank. Only called between a
/// block sequence's dash and its first item, where no scalar can hold a `#`.
fn comment_start(bytes: &[u8], i: usize) -> Option<usize> {
    let line_start = bytes[..i]
        .iter()
        .rposition(|&b| b == b'\n' || b == b'\r')
        .map_or(0, |p| p + 1);
    (line_start..=i)
        .find(|&h| bytes[h] == b'#' && (h == line_start || matches!(bytes[h - 1], b' ' | b'\t')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Value {
        let limits = BuildLimits {
            max_nodes: 1000,
            max_depth: 10,
        };
        match build_segment(text, 0, limits, None) {
            Ok(mut docs) => docs.remove(0).value,
            Err(e) => serde_json::json!({ "error": e.message }),
        }
    }

    #[test]
    fn merges_as_go_yaml_v2() {
        let base = "a: &a {p: 1, q: 1}\nb: &b {q: 2, r: 2}\n";
        assert_eq!(
            value(&format!("{base}m: {{<<: [*a, *b]}}"))["m"],
            serde_json::json!({"p": 1, "q": 1, "r": 2})
        );
        // A merge overrides the keys before it; the keys after it win.
        assert_eq!(value(&format!("{base}m: {{p: 9, <<: *a}}"))["m"]["p"], 1);
        assert_eq!(value(&format!("{base}m: {{<<: *a, p: 9}}"))["m"]["p"], 9);
        assert_eq!(value("m: {'<<': 1}")["m"]["<<"], 1);
        assert!(value("m: {<<: 1}").get("error").is_some());
        assert!(value("m: {p: 1, p: 2}").get("error").is_some());
    }

    #[test]
    fn tab_after_colon() {
        assert_eq!(
            value("a:\tx\nb:\t'y:\tz'\nc:\t\t1\n"),
            serde_json::json!({"a": "x", "b": "y:\tz", "c": 1})
        );
    }

    #[test]
    fn block_scalar_after_a_tag_and_comments_does_not_panic() {
        // Found by the edits fuzz target.
        let limits = BuildLimits {
            max_nodes: 1000,
            max_depth: 10,
        };
        let _ = build_segment("\n!\n# \n>\n#", 0, limits, None);
    }

    #[test]
    fn spans_skip_properties() {
        let limits = BuildLimits {
            max_nodes: 1000,
            max_depth: 10,
        };
        let text = "a: &x \"q\"\nb: !t [1]\n";
        let built = build_segment(text, 0, limits, None).expect("parse");
        let root = built[0].root.as_ref().expect("root");
        assert_eq!(&text[root.get("/a").expect("a").span.clone()], "\"q\"");
        let b = root.get("/b").expect("b");
        assert!(b.is_flow());
        assert_eq!(&text[b.span.clone()], "[1]");
    }
}
