//! Turn YAML parser events into a source tree and a JSON value at once.
//!
//! Scalars resolve with the YAML 1.2 core schema (what `saphyr` and most
//! current tools use): `null`/`~`/empty, `true`/`false`, integers, floats,
//! everything else a string; quoted and block scalars are always strings.
//! Aliases are expanded into the JSON value under a budget, so a
//! "billion laughs" document fails fast instead of eating memory.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle as ParserStyle, Tag};
use serde_json::{Map, Number, Value};

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

enum Frame {
    Mapping {
        start: usize,
        flow: bool,
        anchor: usize,
        entries: Vec<Entry>,
        map: Map<String, Value>,
        pending_key: Option<(String, std::ops::Range<usize>)>,
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
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Value, usize)>,
    expanded: usize,
    done: Option<(Node, Value)>,
}

/// Parse one segment (`text` is the segment, `base` its offset in the
/// stream) into its documents.
pub fn build_segment(
    text: &str,
    base: usize,
    limits: BuildLimits,
) -> Result<Vec<Built>, BuildError> {
    let mut offsets = Offsets::new(text);
    let mut documents = Vec::new();
    let mut builder: Option<Builder<'_>> = None;
    let mut doc_start = base;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| BuildError {
            offset: base + offsets.byte(e.marker().index()),
            documents_before: documents.len(),
            message: e.info().to_string(),
        })?;
        let start = base + offsets.byte(span.start.index());
        let end = base + offsets.byte(span.end.index());
        let fail = |message: String| BuildError {
            offset: start,
            documents_before: documents.len(),
            message,
        };
        match event {
            Event::DocumentStart(_) => {
                doc_start = start;
                builder = Some(Builder {
                    text,
                    base,
                    limits,
                    stack: Vec::new(),
                    anchors: HashMap::new(),
                    expanded: 0,
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
            }
        }
    }
    Ok(documents)
}

impl Builder<'_> {
    fn event(&mut self, event: Event<'_>, start: usize, end: usize) -> Result<(), String> {
        match event {
            Event::Scalar(value, style, anchor, tag) => {
                let (style, end) = self.scalar_extent(style, start, end);
                self.charge(1)?;
                let value = resolve_scalar(&value, style, tag.as_deref())?;
                let node = Node {
                    span: start..end,
                    kind: NodeKind::Scalar(style),
                };
                self.complete(node, value, anchor, 1)
            }
            Event::SequenceStart(anchor, _) => {
                self.check_depth()?;
                self.charge(1)?;
                let flow = self.text.as_bytes().get(start - self.base) == Some(&b'[');
                let start = if flow {
                    start
                } else {
                    self.block_sequence_start(start)
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
                let flow = self.text.as_bytes().get(start - self.base) == Some(&b'{');
                self.stack.push(Frame::Mapping {
                    start,
                    flow,
                    anchor,
                    entries: Vec::new(),
                    map: Map::new(),
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
                        end
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
                        end
                    } else {
                        entries.last().map_or(start, |e| e.value.span.end)
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
                // Charge before copying, so a bomb fails before it allocates.
                self.charge(count)?;
                let value = self.anchors[&id].0.clone();
                let node = Node {
                    span: start..end,
                    kind: NodeKind::Alias,
                };
                self.complete(node, value, 0, count)
            }
            _ => Ok(()),
        }
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

    /// Where a scalar really ends. The parser's end marker for a quoted
    /// scalar can run past the closing quote (over trailing blanks and a
    /// comment), so quoted scalars are measured from their opening quote.
    fn scalar_extent(&self, style: ParserStyle, start: usize, end: usize) -> (ScalarStyle, usize) {
        let local = &self.text.as_bytes()[start - self.base..];
        match style {
            ParserStyle::Plain => (ScalarStyle::Plain, end),
            ParserStyle::SingleQuoted => {
                let mut i = 1;
                while i < local.len() {
                    if local[i] == b'\'' {
                        if local.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        return (ScalarStyle::SingleQuoted, start + i + 1);
                    }
                    i += 1;
                }
                (ScalarStyle::SingleQuoted, end)
            }
            ParserStyle::DoubleQuoted => {
                let mut i = 1;
                while i < local.len() {
                    match local[i] {
                        b'\\' => i += 2,
                        b'"' => return (ScalarStyle::DoubleQuoted, start + i + 1),
                        _ => i += 1,
                    }
                }
                (ScalarStyle::DoubleQuoted, end)
            }
            _ => (ScalarStyle::Block, end),
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
                items.push(node);
                values.push(value);
                Ok(())
            }
            Some(Frame::Mapping {
                entries,
                map,
                pending_key,
                nodes,
                ..
            }) => {
                *nodes += count;
                match pending_key.take() {
                    None => {
                        let key = match value {
                            Value::String(s) => s,
                            Value::Null => "null".to_string(),
                            Value::Bool(b) => b.to_string(),
                            Value::Number(n) => n.to_string(),
                            _ => return Err("a mapping key must be a scalar".into()),
                        };
                        if map.contains_key(&key) {
                            return Err(format!("duplicate mapping key {key:?}"));
                        }
                        *pending_key = Some((key, node.span));
                        Ok(())
                    }
                    Some((key, key_span)) => {
                        map.insert(key.clone(), value);
                        entries.push(Entry {
                            key,
                            key_span,
                            value: node,
                        });
                        Ok(())
                    }
                }
            }
        }
    }
}

/// Resolve a scalar to JSON with the YAML 1.2 core schema.
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag
        && tag.is_yaml_core_schema()
    {
        return Ok(match tag.suffix.as_str() {
            "str" | "binary" | "timestamp" => Value::String(text.to_string()),
            "null" => Value::Null,
            "bool" => Value::Bool(
                resolve_plain(text)
                    .as_bool()
                    .ok_or_else(|| format!("{text:?} is not a !!bool"))?,
            ),
            "int" | "float" => match resolve_plain(text) {
                v @ Value::Number(_) => v,
                _ => return Err(format!("{text:?} is not a !!{}", tag.suffix)),
            },
            _ => resolve_plain(text),
        });
    }
    if style != ScalarStyle::Plain || tag.is_some() {
        return Ok(Value::String(text.to_string()));
    }
    Ok(resolve_plain(text))
}

/// The core-schema resolution of a plain scalar.
pub fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Value::String(s.to_string());
    }
    if let Some(n) = parse_int(s) {
        return Value::Number(n);
    }
    if is_core_float(s)
        && let Ok(f) = s.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(s.to_string())
}

fn parse_int(s: &str) -> Option<Number> {
    if let Some(oct) = s.strip_prefix("0o") {
        return u64::from_str_radix(oct, 8).ok().map(Number::from);
    }
    if let Some(hex) = s.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).ok().map(Number::from);
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if let Ok(i) = s.parse::<i64>() {
        return Some(Number::from(i));
    }
    if let Ok(u) = s.trim_start_matches('+').parse::<u64>() {
        return Some(Number::from(u));
    }
    s.parse::<f64>().ok().and_then(Number::from_f64)
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_core_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - f;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let e = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == e {
            return false;
        }
    }
    i == b.len()
}

/// If byte `i` is inside a comment, where the comment's `#` is: the first
/// `#` of the line that starts it or follows a blank. Only called between a
/// block sequence's dash and its first item, where no scalar can hold a `#`.
fn comment_start(bytes: &[u8], i: usize) -> Option<usize> {
    let line_start = bytes[..i]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    (line_start..=i)
        .find(|&h| bytes[h] == b'#' && (h == line_start || matches!(bytes[h - 1], b' ' | b'\t')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_schema() {
        assert_eq!(resolve_plain("1.5"), serde_json::json!(1.5));
        assert_eq!(resolve_plain("080"), serde_json::json!(80));
        assert_eq!(resolve_plain("1.2.3"), serde_json::json!("1.2.3"));
        assert_eq!(resolve_plain("="), serde_json::json!("="));
        assert_eq!(resolve_plain("-"), serde_json::json!("-"));
        assert_eq!(resolve_plain("yes"), serde_json::json!("yes"));
        assert_eq!(resolve_plain("~"), Value::Null);
    }
}
