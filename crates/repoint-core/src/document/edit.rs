//! Turn JSON Patch operations into edits of the original text.
//!
//! The operations repoint's actions produce are written as small splices:
//! - `replace` of a scalar rewrites just that scalar, in its quoting style;
//! - `add` of a new mapping member inserts one entry after the mapping's
//!   last one, at the same indentation;
//! - `add` to the end of a sequence appends one item, copying the column of
//!   the existing `-` (or adds `, item` inside `[...]`);
//! - `add`/`replace` of a collection where a scalar (often `null`) was
//!   writes the collection in the surrounding style.
//!
//! Anything else (`remove`, `move`, `copy`, a change under an alias or
//! inside a block scalar) returns [`Unsupported`], and the caller
//! re-renders the whole document instead.

use std::ops::Range;

use serde_json::Value;

use super::emit::{self, After, IndentStyle};
use super::tree::{Node, NodeKind, pointer_tokens};
use crate::patch::{OpKind, PatchOp};

/// A splice of the stream text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// Bytes to replace (empty for an insertion).
    pub range: Range<usize>,
    /// Replacement text.
    pub text: String,
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
    /// YAML or JSON.
    pub syntax: Syntax,
    /// Indentation habits of the document.
    pub style: IndentStyle,
}

/// Where a node sits in its parent.
#[derive(Clone)]
enum Slot<'a> {
    Root,
    /// Value of a mapping entry whose key starts at `key_start`.
    Member {
        key_start: usize,
        key_end: usize,
        flow: bool,
    },
    /// Item of a sequence (block: after `- `).
    Item {
        seq: &'a Node,
    },
}

impl<'a> Editor<'a> {
    /// Edits for one operation.
    pub fn edits(&self, op: &PatchOp) -> Result<Vec<Edit>, Unsupported> {
        match op.op {
            OpKind::Test => Ok(Vec::new()),
            OpKind::Add | OpKind::Replace => {
                let value = op.value.as_ref().ok_or(Unsupported)?;
                let tokens = pointer_tokens(&op.path).ok_or(Unsupported)?;
                if let Some((node, slot)) = self.resolve(&tokens) {
                    if op.op == OpKind::Add && matches!(slot, Slot::Item { .. }) {
                        // Adding at an existing index inserts before it.
                        return self.insert_before_item(node, &slot, value);
                    }
                    return self.replace(node, &slot, value);
                }
                if op.op == OpKind::Replace {
                    return Err(Unsupported);
                }
                let (last, parent_tokens) = tokens.split_last().ok_or(Unsupported)?;
                let (parent, _) = self.resolve(parent_tokens).ok_or(Unsupported)?;
                match &parent.kind {
                    NodeKind::Mapping { .. } => self.insert_member(parent, last, value),
                    NodeKind::Sequence { items, .. } => {
                        let at_end = last == "-" || last.parse::<usize>().ok() == Some(items.len());
                        if !at_end {
                            return Err(Unsupported);
                        }
                        self.append_item(parent, value)
                    }
                    _ => Err(Unsupported),
                }
            }
            OpKind::Remove | OpKind::Move | OpKind::Copy => Err(Unsupported),
        }
    }

    fn resolve(&self, tokens: &[String]) -> Option<(&'a Node, Slot<'a>)> {
        let mut node: &'a Node = self.root;
        let mut slot = Slot::Root;
        for t in tokens {
            match &node.kind {
                NodeKind::Mapping { flow, entries } => {
                    let e = entries.iter().find(|e| &e.key == t)?;
                    slot = Slot::Member {
                        key_start: e.key_span.start,
                        key_end: e.key_span.end,
                        flow: *flow,
                    };
                    node = &e.value;
                }
                NodeKind::Sequence { items, .. } => {
                    let i: usize = t.parse().ok()?;
                    slot = Slot::Item { seq: node };
                    node = items.get(i)?;
                }
                _ => return None,
            }
        }
        Some((node, slot))
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

    fn replace(
        &self,
        node: &Node,
        slot: &Slot<'_>,
        value: &Value,
    ) -> Result<Vec<Edit>, Unsupported> {
        let in_flow = self.in_flow(slot);
        let scalar_new = !matches!(value, Value::Array(a) if !a.is_empty())
            && !matches!(value, Value::Object(m) if !m.is_empty());
        match &node.kind {
            NodeKind::Alias => Err(Unsupported),
            NodeKind::Scalar(super::tree::ScalarStyle::Block) => Err(Unsupported),
            NodeKind::Scalar(style) if scalar_new || in_flow => {
                let text = match self.syntax {
                    Syntax::Json => serde_json::to_string(value).unwrap_or_default(),
                    Syntax::Yaml => emit::yaml_scalar(value, *style, in_flow),
                };
                Ok(vec![Edit {
                    range: node.span.clone(),
                    text,
                }])
            }
            _ if in_flow || node.is_flow() => Ok(vec![Edit {
                range: node.span.clone(),
                text: self.inline(value),
            }]),
            _ => {
                // A block collection replaces a block node or a scalar.
                match slot {
                    Slot::Member {
                        key_start, key_end, ..
                    } => {
                        let colon = self.text[*key_end..node.span.start.max(*key_end)]
                            .find(':')
                            .map(|i| key_end + i + 1)
                            .or_else(|| self.text[*key_end..].find(':').map(|i| key_end + i + 1))
                            .ok_or(Unsupported)?;
                        let mut text = String::new();
                        emit::block(
                            &mut text,
                            value,
                            After::Key(self.column(*key_start)),
                            self.style,
                        );
                        Ok(vec![Edit {
                            range: colon..node.span.end.max(colon),
                            text,
                        }])
                    }
                    Slot::Item { seq } => {
                        let mut text = String::new();
                        emit::block(
                            &mut text,
                            value,
                            After::Dash(self.column(seq.span.start)),
                            self.style,
                        );
                        Ok(vec![Edit {
                            range: node.span.clone(),
                            text,
                        }])
                    }
                    Slot::Root => Err(Unsupported),
                }
            }
        }
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
                Syntax::Yaml => emit::key_text(key, true),
            };
            let member = format!("{key_text}: {}", self.inline(value));
            return Ok(vec![self.flow_insert(
                map,
                entries.last().map(|e| (e.key_span.start, e.value.span.end)),
                member,
            )]);
        }
        let first = entries.first().ok_or(Unsupported)?;
        let col = self.column(first.key_span.start);
        let mut text = " ".repeat(col);
        text.push_str(&emit::key_text(key, false));
        text.push(':');
        emit::block(&mut text, value, After::Key(col), self.style);
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
        emit::block(&mut text, value, After::Dash(col), self.style);
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
            return Ok(vec![Edit {
                range: item.span.start..item.span.start,
                text: format!("{}, ", self.inline(value)),
            }]);
        }
        let col = self.column(seq.span.start);
        let line_start = self.line_start(item.span.start);
        let mut text = " ".repeat(col);
        text.push_str("- ");
        emit::block(&mut text, value, After::Dash(col), self.style);
        text.push('\n');
        Ok(vec![Edit {
            range: line_start..line_start,
            text,
        }])
    }

    /// Insert into `{...}` or `[...]`: after the last member (`last` is its
    /// start and end), on a new line when members are one per line.
    fn flow_insert(&self, node: &Node, last: Option<(usize, usize)>, member: String) -> Edit {
        match last {
            None => Edit {
                range: node.span.start + 1..node.span.start + 1,
                text: member,
            },
            Some((last_start, last_end)) => {
                let multiline = self.line_start(last_start) > node.span.start;
                let text = if multiline {
                    let line_start = self.line_start(last_start);
                    let indent: String = self.text[line_start..last_start]
                        .chars()
                        .take_while(|c| *c == ' ' || *c == '\t')
                        .collect();
                    format!(",\n{indent}{member}")
                } else {
                    format!(", {member}")
                };
                Edit {
                    range: last_end..last_end,
                    text,
                }
            }
        }
    }

    /// Insert whole lines right after the line on which `end` falls.
    fn line_insert(&self, end: usize, mut lines: String) -> Edit {
        let bytes = self.text.as_bytes();
        let at = if end > 0 && bytes[end - 1] == b'\n' {
            end
        } else {
            match self.text[end..].find('\n') {
                Some(i) => end + i + 1,
                None => {
                    // The document ends without a newline: start a line.
                    lines.insert(0, '\n');
                    return Edit {
                        range: self.text.len()..self.text.len(),
                        text: lines,
                    };
                }
            }
        };
        lines.push('\n');
        Edit {
            range: at..at,
            text: lines,
        }
    }

    fn line_start(&self, pos: usize) -> usize {
        self.text[..pos].rfind('\n').map_or(0, |i| i + 1)
    }

    /// Column of a byte position, in characters.
    pub fn column(&self, pos: usize) -> usize {
        self.text[self.line_start(pos)..pos].chars().count()
    }
}

/// Learn how the document indents nested mappings and block sequences:
/// from the first of `roots` that shows it (the document being edited,
/// then the rest of its file, so a document with no list of its own
/// indents a new one like its neighbours do).
pub fn detect_style<'n>(text: &str, roots: impl IntoIterator<Item = &'n Node>) -> IndentStyle {
    let mut style = IndentStyle::default();
    let (mut found_map, mut found_seq) = (false, false);
    let column = |pos: usize| {
        let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
        text[start..pos].chars().count()
    };
    for root in roots {
        if found_map && found_seq {
            break;
        }
        detect_in(root, &column, &mut style, &mut found_map, &mut found_seq);
    }
    style
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
                            let d =
                                column(e.value.span.start).saturating_sub(column(e.key_span.start));
                            if d > 0 {
                                style.mapping = d;
                                *found_map = true;
                            }
                        }
                        NodeKind::Sequence { flow: false, .. } if !*found_seq => {
                            style.sequence =
                                column(e.value.span.start).saturating_sub(column(e.key_span.start));
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
