//! Turn JSON Patch operations into edits of the original text.
//!
//! The operations repoint's actions produce are written as small splices:
//! - `replace` of a scalar rewrites just that scalar, in its quoting style
//!   (an implicit null `key:` gets its value after the `:`);
//! - `add` of a new mapping member inserts one entry after the mapping's
//!   last one, at the same indentation;
//! - `add` to the end of a sequence appends one item, copying the column of
//!   the existing `-` (or adds `, item` inside `[...]`);
//! - `add`/`replace` of a collection where a scalar (often `null`) was
//!   writes the collection in the surrounding style;
//! - a change to a value that arrives through an alias (`*base`) replaces
//!   that alias with the new value, and one that arrives through a merge
//!   (`<<: *base`) adds an explicit member after the merge, which go-yaml v2
//!   lets win: the anchor, which other objects may share, is never edited.
//!
//! Inserted text uses the file's own line ending. Anything else (`remove`,
//! `move`, `copy`, an insertion in the middle of a list) returns
//! [`Unsupported`], and the caller re-renders the whole document instead.
//! Either way the caller checks the result by parsing it again.

use std::ops::Range;

use serde_json::Value;

use super::emit::{self, After, IndentStyle};
use super::tree::{Node, NodeKind, ScalarStyle};
use crate::patch::{OpKind, PatchOp};

/// A splice of the stream text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// Bytes to replace (empty for an insertion).
    pub range: Range<usize>,
    /// Replacement text.
    pub text: String,
    /// Put between this insertion and an insertion just before it at the
    /// same place (items added to an empty flow collection: `[a, b]`).
    pub joiner: Joiner,
    /// For lines inserted after a block: the column they are indented to.
    /// Of several insertions at one place, the deeper go first, so that
    /// an item for an inner list is not read as part of an outer one's
    /// new item.
    pub depth: usize,
}

impl Edit {
    /// A plain splice.
    pub fn new(range: Range<usize>, text: String) -> Self {
        Self {
            range,
            text,
            joiner: Joiner::Nothing,
            depth: 0,
        }
    }
}

/// What goes between two insertions at one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joiner {
    /// Nothing: they are whole lines.
    Nothing,
    /// `, `: they are members of one flow collection.
    Comma,
}

impl Joiner {
    /// The text put between them.
    pub fn as_str(self) -> &'static str {
        match self {
            Joiner::Nothing => "",
            Joiner::Comma => ", ",
        }
    }
}

/// The operation cannot be expressed as a local edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported;

/// How the document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// YAML (block or flow).
    Yaml,
    /// JSON.
    Json,
}

/// Context needed to edit one document.
#[derive(Debug)]
pub struct Editor<'a> {
    /// The whole stream text.
    pub text: &'a str,
    /// The document's root node.
    pub root: &'a Node,
    /// The document's value after all its operations: what a change that
    /// must be written whole (through an alias or a merge) writes.
    pub patched: &'a Value,
    /// YAML or JSON.
    pub syntax: Syntax,
    /// Indentation habits of the document.
    pub style: IndentStyle,
    /// The file's line ending (`\n`, `\r\n` or `\r`).
    pub newline: &'static str,
}

/// Where a node sits in its parent.
#[derive(Clone)]
enum Slot<'a> {
    Root,
    /// Value of a mapping entry.
    Member {
        /// Where the entry starts (its key, or the `?` of an explicit key).
        entry_start: usize,
        key_end: usize,
        flow: bool,
    },
    /// Item of a sequence (block: after `- `).
    Item {
        seq: &'a Node,
    },
}

/// Where a pointer leads in the source tree.
enum Target<'a> {
    /// To a node written at that place.
    Node(&'a Node, Slot<'a>),
    /// To an alias, or to a member a merge supplies, at `pointer`: the
    /// value there must be written whole, for this object alone.
    Indirect(Indirect<'a>),
    /// Nowhere: the path does not exist as written.
    Missing,
}

#[derive(Clone)]
enum Indirect<'a> {
    /// Replace this alias (at `pointer`) with the value.
    Alias {
        node: &'a Node,
        slot: Slot<'a>,
        pointer: String,
    },
    /// Add an explicit `key` to this mapping, after its merges.
    Merged {
        map: &'a Node,
        key: String,
        pointer: String,
    },
}

impl Indirect<'_> {
    fn pointer(&self) -> &str {
        match self {
            Self::Alias { pointer, .. } | Self::Merged { pointer, .. } => pointer,
        }
    }
}

impl<'a> Editor<'a> {
    /// Edits for a document's operations, in order.
    pub fn edits_for(&self, ops: &[PatchOp]) -> Result<Vec<Edit>, Unsupported> {
        let mut edits = Vec::new();
        let mut indirect: Vec<Indirect<'a>> = Vec::new();
        for op in ops {
            match self.edits(op, &mut indirect)? {
                Some(e) => edits.extend(e),
                None => continue,
            }
        }
        // A value reached through an alias or a merge is written once,
        // whole, as the operations left it; a pointer under another one
        // is already covered by it.
        indirect.sort_by(|a, b| a.pointer().cmp(b.pointer()));
        let mut written: Vec<&str> = Vec::new();
        for target in &indirect {
            let p = target.pointer();
            if written
                .iter()
                .any(|w| p == *w || p.starts_with(&format!("{w}/")))
            {
                continue;
            }
            written.push(p);
            let value = crate::pointer::get(self.patched, p).ok_or(Unsupported)?;
            edits.extend(match target {
                Indirect::Alias { node, slot, .. } => self.replace(node, slot, value)?,
                Indirect::Merged { map, key, .. } => self.insert_member(map, key, value)?,
            });
        }
        Ok(edits)
    }

    /// Edits for one operation; a change that must be written whole is
    /// queued in `indirect` instead.
    fn edits(
        &self,
        op: &PatchOp,
        indirect: &mut Vec<Indirect<'a>>,
    ) -> Result<Option<Vec<Edit>>, Unsupported> {
        let (OpKind::Add | OpKind::Replace) = op.op else {
            return match op.op {
                OpKind::Test => Ok(Some(Vec::new())),
                _ => Err(Unsupported),
            };
        };
        let value = op.value.as_ref().ok_or(Unsupported)?;
        let tokens = crate::pointer::tokens(&op.path).ok_or(Unsupported)?;
        match self.resolve(&tokens) {
            Target::Node(node, slot) => {
                if op.op == OpKind::Add && matches!(slot, Slot::Item { .. }) {
                    // Adding at an existing index inserts before it.
                    return self.insert_before_item(node, &slot, value).map(Some);
                }
                return self.replace(node, &slot, value).map(Some);
            }
            Target::Indirect(target) => {
                indirect.push(target);
                return Ok(None);
            }
            Target::Missing => {}
        }
        if op.op == OpKind::Replace {
            return Err(Unsupported);
        }
        let (last, parent_tokens) = tokens.split_last().ok_or(Unsupported)?;
        let parent = match self.resolve(parent_tokens) {
            Target::Node(parent, _) => parent,
            Target::Indirect(target) => {
                indirect.push(target);
                return Ok(None);
            }
            Target::Missing => return Err(Unsupported),
        };
        match &parent.kind {
            NodeKind::Mapping { .. } => self.insert_member(parent, last, value).map(Some),
            NodeKind::Sequence { items, .. } => {
                let at_end = last == "-" || last.parse::<usize>().ok() == Some(items.len());
                if !at_end {
                    return Err(Unsupported);
                }
                self.append_item(parent, value).map(Some)
            }
            _ => Err(Unsupported),
        }
    }

    fn resolve(&self, tokens: &[String]) -> Target<'a> {
        let mut node: &'a Node = self.root;
        let mut slot = Slot::Root;
        for (i, t) in tokens.iter().enumerate() {
            match &node.kind {
                NodeKind::Mapping { flow, entries } => {
                    match entries.iter().find(|e| e.effective() && &e.key == t) {
                        Some(e) => {
                            slot = Slot::Member {
                                entry_start: e.start,
                                key_end: e.key_span.end,
                                flow: *flow,
                            };
                            node = &e.value;
                        }
                        None if entries.iter().any(|e| e.merge) => {
                            let pointer = crate::pointer::join(&tokens[..=i]);
                            if crate::pointer::get(self.patched, &pointer).is_none() {
                                return Target::Missing;
                            }
                            return Target::Indirect(Indirect::Merged {
                                map: node,
                                key: t.clone(),
                                pointer,
                            });
                        }
                        None => return Target::Missing,
                    }
                }
                NodeKind::Sequence { items, .. } => {
                    let Some(item) = t.parse::<usize>().ok().and_then(|i| items.get(i)) else {
                        return Target::Missing;
                    };
                    slot = Slot::Item { seq: node };
                    node = item;
                }
                NodeKind::Alias => return self.through_alias(node, slot, &tokens[..i]),
                NodeKind::Scalar(_) => return Target::Missing,
            }
        }
        if matches!(node.kind, NodeKind::Alias) {
            return self.through_alias(node, slot, tokens);
        }
        Target::Node(node, slot)
    }

    fn through_alias(&self, node: &'a Node, slot: Slot<'a>, tokens: &[String]) -> Target<'a> {
        match slot {
            // An alias as the whole document cannot be: aliases need an anchor first.
            Slot::Root => Target::Missing,
            slot => Target::Indirect(Indirect::Alias {
                node,
                slot,
                pointer: crate::pointer::join(tokens),
            }),
        }
    }

    fn in_flow(&self, slot: &Slot<'_>) -> bool {
        self.syntax == Syntax::Json
            || match slot {
                Slot::Root => false,
                Slot::Member { flow, .. } => *flow,
                Slot::Item { seq } => seq.is_flow(),
            }
    }

    /// Inline text for a value in flow context or JSON.
    fn inline(&self, v: &Value) -> String {
        match self.syntax {
            Syntax::Json => emit::json_inline(v),
            Syntax::Yaml => emit::flow(v),
        }
    }

    /// Generated text uses `\n`; the file may use another line ending.
    fn lines(&self, text: String) -> String {
        emit::with_newline(text, self.newline)
    }

    fn replace(
        &self,
        node: &Node,
        slot: &Slot<'_>,
        value: &Value,
    ) -> Result<Vec<Edit>, Unsupported> {
        let in_flow = self.in_flow(slot);
        let scalar_new = !matches!(value, Value::Array(a) if !a.is_empty())
            && !matches!(value, Value::Object(m) if !m.is_empty());
        let style = match node.kind {
            NodeKind::Scalar(style) => Some(style),
            NodeKind::Alias => Some(ScalarStyle::Plain),
            _ => None,
        };
        match style {
            Some(style) if scalar_new || in_flow => {
                let mut text = match self.syntax {
                    Syntax::Json => emit::json_inline(value),
                    Syntax::Yaml => emit::yaml_scalar(value, style, in_flow),
                };
                text.insert_str(0, empty_prefix(style));
                return Ok(vec![Edit::new(node.span.clone(), text)]);
            }
            _ => {}
        }
        if in_flow || node.is_flow() {
            let mut text = self.inline(value);
            if let Some(style) = style {
                text.insert_str(0, empty_prefix(style));
            }
            return Ok(vec![Edit::new(node.span.clone(), text)]);
        }
        // A block collection replaces a block node or a scalar.
        match slot {
            Slot::Member {
                entry_start,
                key_end,
                ..
            } => {
                let colon = self.colon_after(*key_end)?;
                let mut text = String::new();
                emit::block(
                    &mut text,
                    value,
                    After::Key(self.column(*entry_start)),
                    self.style,
                );
                Ok(vec![Edit::new(
                    colon..node.span.end.max(colon),
                    self.lines(text),
                )])
            }
            Slot::Item { .. } => {
                let mut text = String::new();
                emit::block(
                    &mut text,
                    value,
                    After::Dash(self.column(node.span.start)),
                    self.style,
                );
                Ok(vec![Edit::new(node.span.clone(), self.lines(text))])
            }
            Slot::Root => Err(Unsupported),
        }
    }

    /// Just after the `:` that follows a key (the value may start on a
    /// later line, after comments).
    fn colon_after(&self, key_end: usize) -> Result<usize, Unsupported> {
        let bytes = self.text.as_bytes();
        let mut i = key_end;
        while i < bytes.len() {
            match bytes[i] {
                b':' => return Ok(i + 1),
                b' ' | b'\t' | b'\r' | b'\n' => i += 1,
                b'#' => {
                    while i < bytes.len() && !matches!(bytes[i], b'\r' | b'\n') {
                        i += 1;
                    }
                }
                _ => break,
            }
        }
        Err(Unsupported)
    }

    fn insert_member(
        &self,
        map: &Node,
        key: &str,
        value: &Value,
    ) -> Result<Vec<Edit>, Unsupported> {
        let NodeKind::Mapping { flow, entries } = &map.kind else {
            return Err(Unsupported);
        };
        if *flow || self.syntax == Syntax::Json {
            let key_text = match self.syntax {
                Syntax::Json => emit::double_quoted(key),
                Syntax::Yaml => emit::flow_key(key).trim_end_matches(':').to_string(),
            };
            let member = format!("{key_text}: {}", self.inline(value));
            let last = entries
                .last()
                .map(|e| (e.start, e.value.span.end.max(e.key_span.end)));
            let mut edit = self.flow_insert(map, last, member);
            // `{a: }` ends in an implicit null right after its `:`, where a
            // `,` could not follow: `{a: , b: 1}`.
            if let Some((_, end)) = last
                && self.text.as_bytes().get(end.wrapping_sub(1)) == Some(&b':')
            {
                edit.text.insert(0, ' ');
            }
            return Ok(vec![edit]);
        }
        let first = entries.first().ok_or(Unsupported)?;
        let col = self.column(first.start);
        let mut text = " ".repeat(col);
        let mut entry = serde_json::Map::new();
        entry.insert(key.to_string(), value.clone());
        emit::block(
            &mut text,
            &Value::Object(entry),
            After::Dash(col),
            self.style,
        );
        Ok(vec![self.line_insert(map.span.end, text)])
    }

    fn append_item(&self, seq: &Node, value: &Value) -> Result<Vec<Edit>, Unsupported> {
        let NodeKind::Sequence { flow, items } = &seq.kind else {
            return Err(Unsupported);
        };
        if *flow || self.syntax == Syntax::Json {
            let item = self.inline(value);
            return Ok(vec![self.flow_insert(
                seq,
                items.last().map(|n| (n.span.start, n.span.end)),
                item,
            )]);
        }
        let col = self.column(seq.span.start);
        let mut text = " ".repeat(col);
        text.push_str("- ");
        emit::block(&mut text, value, After::Dash(col + 2), self.style);
        Ok(vec![self.line_insert(seq.span.end, text)])
    }

    fn insert_before_item(
        &self,
        item: &Node,
        slot: &Slot<'_>,
        value: &Value,
    ) -> Result<Vec<Edit>, Unsupported> {
        let Slot::Item { seq } = slot else {
            return Err(Unsupported);
        };
        if seq.is_flow() || self.syntax == Syntax::Json {
            return Ok(vec![Edit::new(
                item.span.start..item.span.start,
                format!("{}, ", self.inline(value)),
            )]);
        }
        let col = self.column(seq.span.start);
        let line_start = self.line_start(item.span.start);
        // Only an item whose dash starts its line can have a line put
        // before it (`- - a` has two items on one line).
        if !self.text[line_start..item.span.start]
            .trim_start()
            .strip_prefix('-')
            .is_some_and(|rest| rest.trim().is_empty())
        {
            return Err(Unsupported);
        }
        let mut text = " ".repeat(col);
        text.push_str("- ");
        emit::block(&mut text, value, After::Dash(col + 2), self.style);
        text.push('\n');
        Ok(vec![Edit::new(line_start..line_start, self.lines(text))])
    }

    /// Insert into `{...}` or `[...]`: after the last member (`last` is its
    /// start and end), on a new line when members are one per line.
    fn flow_insert(&self, node: &Node, last: Option<(usize, usize)>, member: String) -> Edit {
        match last {
            None => Edit {
                joiner: Joiner::Comma,
                ..Edit::new(node.span.start + 1..node.span.start + 1, member)
            },
            Some((last_start, last_end)) => {
                let multiline = self.line_start(last_start) > node.span.start;
                let text = if multiline {
                    let line_start = self.line_start(last_start);
                    let indent: String = self.text[line_start..last_start]
                        .chars()
                        .take_while(|c| *c == ' ' || *c == '\t')
                        .collect();
                    format!(",{}{indent}{member}", self.newline)
                } else {
                    format!(", {member}")
                };
                Edit::new(last_end..last_end, text)
            }
        }
    }

    /// Insert whole lines right after the line on which `end` falls.
    fn line_insert(&self, end: usize, lines: String) -> Edit {
        let depth = lines.chars().take_while(|c| *c == ' ').count();
        let lines = self.lines(lines);
        let bytes = self.text.as_bytes();
        let at = if end > 0 && bytes[end - 1] == b'\n' {
            end
        } else {
            match self.text[end..].find(['\n', '\r']) {
                Some(i) if self.text[end + i..].starts_with("\r\n") => end + i + 2,
                Some(i) => end + i + 1,
                None => {
                    // The document ends without a line break: start a line.
                    return Edit {
                        depth,
                        ..Edit::new(
                            self.text.len()..self.text.len(),
                            format!("{}{lines}", self.newline),
                        )
                    };
                }
            }
        };
        Edit {
            depth,
            ..Edit::new(at..at, format!("{lines}{}", self.newline))
        }
    }

    fn line_start(&self, pos: usize) -> usize {
        line_start(self.text, pos)
    }

    /// Column of a byte position, in characters.
    pub fn column(&self, pos: usize) -> usize {
        self.text[self.line_start(pos)..pos].chars().count()
    }
}

/// What a value written in place of an implicit null needs before it:
/// `key:` -> `key: value`, and a bare flow key `{key}` has no `:` yet.
fn empty_prefix(style: ScalarStyle) -> &'static str {
    match style {
        ScalarStyle::Empty {
            after_indicator: true,
        } => " ",
        ScalarStyle::Empty {
            after_indicator: false,
        } => ": ",
        _ => "",
    }
}

/// Where the line holding byte `pos` starts (any of `\n`, `\r\n`, `\r`
/// ends a line).
pub fn line_start(text: &str, pos: usize) -> usize {
    text[..pos].rfind(['\n', '\r']).map_or(0, |i| i + 1)
}

/// How one document indents what it nests, as far as it shows: the extra
/// columns of its first nested block mapping and of its first block
/// sequence (found at parse time, kept when the tree is released, so a
/// neighbour edited later can still learn from it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StyleHints {
    /// Extra columns for a mapping nested under a key, if it has one.
    pub mapping: Option<usize>,
    /// Columns between a key and the `-` of its block sequence, if it has one.
    pub sequence: Option<usize>,
}

impl StyleHints {
    /// What `root` shows.
    pub fn of(text: &str, root: &Node) -> Self {
        let mut style = IndentStyle::default();
        let (mut found_map, mut found_seq) = (false, false);
        let column = |pos: usize| text[line_start(text, pos)..pos].chars().count();
        detect_in(root, &column, &mut style, &mut found_map, &mut found_seq);
        Self {
            mapping: found_map.then_some(style.mapping),
            sequence: found_seq.then_some(style.sequence),
        }
    }

    /// Whether it shows both habits.
    pub fn is_complete(self) -> bool {
        self.mapping.is_some() && self.sequence.is_some()
    }

    /// Each habit not shown here taken from `other`.
    pub fn or(self, other: Self) -> Self {
        Self {
            mapping: self.mapping.or(other.mapping),
            sequence: self.sequence.or(other.sequence),
        }
    }

    /// The style to write with: the habits shown, defaults for the rest.
    pub fn style(self) -> IndentStyle {
        let default = IndentStyle::default();
        IndentStyle {
            mapping: self.mapping.unwrap_or(default.mapping),
            sequence: self.sequence.unwrap_or(default.sequence),
        }
    }
}

fn detect_in(
    root: &Node,
    column: &dyn Fn(usize) -> usize,
    style: &mut IndentStyle,
    found_map: &mut bool,
    found_seq: &mut bool,
) {
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        match &node.kind {
            NodeKind::Mapping {
                flow: false,
                entries,
            } => {
                for e in entries {
                    match &e.value.kind {
                        NodeKind::Mapping { flow: false, .. } if !*found_map => {
                            let d = column(e.value.span.start).saturating_sub(column(e.start));
                            if d > 0 {
                                style.mapping = d;
                                *found_map = true;
                            }
                        }
                        NodeKind::Sequence { flow: false, .. } if !*found_seq => {
                            style.sequence =
                                column(e.value.span.start).saturating_sub(column(e.start));
                            *found_seq = true;
                        }
                        _ => {}
                    }
                    stack.push(&e.value);
                }
            }
            NodeKind::Sequence { flow: false, items } => stack.extend(items.iter()),
            _ => {}
        }
        if *found_map && *found_seq {
            break;
        }
    }
}
