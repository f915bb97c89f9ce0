//! The source tree: where each node of a document is written, so that a
//! change can be made by replacing or inserting a few bytes of the original
//! text instead of re-serializing the document.

use std::ops::Range;

/// How a scalar is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    /// `plain`
    Plain,
    /// `'single'`
    SingleQuoted,
    /// `"double"`
    DoubleQuoted,
    /// `|` or `>` block scalar; its span runs from the header to the end
    /// of its last content line.
    Block,
    /// Nothing written: the implicit null of `key:`, of `key: !tag` or of
    /// a bare flow key `{key}`. Its span is empty: right after the
    /// properties if there are any, else right after the `:`, else right
    /// after the key.
    Empty {
        /// A `:` or a property comes before the span, so a value written
        /// there needs only a space; a bare flow key needs `: ` too.
        after_indicator: bool,
    },
}

/// What a node is, and its children.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// A scalar.
    Scalar(ScalarStyle),
    /// A mapping; keys are the resolved key strings.
    Mapping {
        /// `{...}` (flow) or indented (block).
        flow: bool,
        /// Entries in source order.
        entries: Vec<Entry>,
    },
    /// A sequence.
    Sequence {
        /// `[...]` (flow) or `- ` items (block).
        flow: bool,
        /// Items in source order.
        items: Vec<Node>,
    },
    /// An alias (`*name`); what it points to cannot be edited in place.
    Alias,
}

/// One mapping entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The key as a string (JSON object key); `<<` for a merge.
    pub key: String,
    /// Where the key is written (its content, without properties).
    pub key_span: Range<usize>,
    /// Where the entry starts: its `?` for an explicit key, else the key's
    /// first property or the key itself.
    pub start: usize,
    /// The value.
    pub value: Node,
    /// A merge (`<<: *base`): its value's members are merged into the
    /// mapping, as go-yaml v2 does.
    pub merge: bool,
    /// A later merge supplies this key, so this entry's value is not the
    /// mapping's (go-yaml v2 lets the last writer win).
    pub shadowed: bool,
}

impl Entry {
    /// Whether the mapping's value for `key` is this entry's value.
    pub fn effective(&self) -> bool {
        !self.merge && !self.shadowed
    }
}

/// A node and the bytes of the stream it occupies.
///
/// For a block sequence the span starts at the first `-`; for a block
/// mapping at its first entry; for flow collections it covers the
/// brackets. A block collection ends where its last child ends. Node
/// properties (`&anchor`, `!tag`) are not part of the span.
#[derive(Debug, Clone)]
pub struct Node {
    /// Byte range in the stream text.
    pub span: Range<usize>,
    /// What the node is.
    pub kind: NodeKind,
}

impl Node {
    /// Follow an RFC 6901 JSON Pointer. Returns `None` when a step does not
    /// exist as written (it goes through an alias, a merge or a scalar).
    pub fn get(&self, pointer: &str) -> Option<&Node> {
        let mut node = self;
        for token in crate::pointer::tokens(pointer)? {
            node = node.child(&token)?;
        }
        Some(node)
    }

    /// The child named by one unescaped pointer token.
    pub fn child(&self, token: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Mapping { entries, .. } => entries
                .iter()
                .find(|e| e.effective() && e.key == token)
                .map(|e| &e.value),
            NodeKind::Sequence { items, .. } => items.get(token.parse::<usize>().ok()?),
            _ => None,
        }
    }

    /// Whether this node is a flow collection.
    pub fn is_flow(&self) -> bool {
        matches!(
            self.kind,
            NodeKind::Mapping { flow: true, .. } | NodeKind::Sequence { flow: true, .. }
        )
    }
}
