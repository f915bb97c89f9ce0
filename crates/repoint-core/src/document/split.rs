//! Cut a YAML stream into segments of (at most) one document each, by text.
//!
//! A line that starts with `---` or `...` followed by a space, a tab or the
//! end of the line is a document marker. The YAML spec forbids such a line
//! inside any content (block scalars and multi-line quoted scalars included),
//! so cutting there by text is exact. Cutting first lets each document be
//! parsed on its own: in parallel, with its own size limit, and with errors
//! that say which document they are in.

use std::ops::Range;

/// One piece of the stream and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Byte range in the stream.
    pub range: Range<usize>,
    /// 1-based line of `range.start`.
    pub line: usize,
}

fn marker_line(line: &[u8], marker: &[u8; 3]) -> bool {
    line.starts_with(marker) && matches!(line.get(3), None | Some(b' ' | b'\t' | b'\r' | b'\n'))
}

/// Whether a line holds YAML content (not blank, not only a comment).
fn has_content(line: &[u8]) -> bool {
    match line
        .iter()
        .find(|c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
    {
        None | Some(b'#') => false,
        Some(_) => true,
    }
}

/// Split `text` into segments. Concatenating the segments' ranges gives the
/// whole text back. A stream that is JSON (its first non-blank character is
/// `{` or `[`) is one segment.
pub fn split(text: &str) -> Vec<Segment> {
    let first = text.bytes().find(|c| !c.is_ascii_whitespace());
    if matches!(first, Some(b'{' | b'[')) {
        return vec![Segment {
            range: 0..text.len(),
            line: 1,
        }];
    }
    let bytes = text.as_bytes();
    let mut segments = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    // Whether the current segment already has a document in it (content or
    // a `---`); leading comments and blank lines belong to the next document.
    let mut occupied = false;
    // After a `...`, directives (`%YAML`) may follow before the next `---`.
    let mut after_end = false;
    let mut pos = 0;
    let mut line_no = 1;
    while pos < bytes.len() {
        // `\n`, `\r\n` and a lone `\r` all end a line.
        let end = match bytes[pos..].iter().position(|&c| c == b'\n' || c == b'\r') {
            None => bytes.len(),
            Some(i) if bytes[pos + i] == b'\r' && bytes.get(pos + i + 1) == Some(&b'\n') => {
                pos + i + 2
            }
            Some(i) => pos + i + 1,
        };
        let line = &bytes[pos..end];
        if marker_line(line, b"---") {
            if occupied && !after_end {
                segments.push(Segment {
                    range: start..pos,
                    line: start_line,
                });
                start = pos;
                start_line = line_no;
            }
            occupied = true;
            after_end = false;
        } else if marker_line(line, b"...") {
            // The end marker closes the current segment, marker included.
            segments.push(Segment {
                range: start..end,
                line: start_line,
            });
            start = end;
            start_line = line_no + 1;
            occupied = false;
            after_end = true;
        } else if after_end && line.starts_with(b"%") {
            // A directive of the next document: it goes with the next `---`.
            occupied = true;
        } else if has_content(line) {
            occupied = true;
            after_end = false;
        }
        pos = end;
        line_no += 1;
    }
    if start < bytes.len() || segments.is_empty() {
        segments.push(Segment {
            range: start..bytes.len(),
            line: start_line,
        });
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<&str> {
        split(text).into_iter().map(|s| &text[s.range]).collect()
    }

    #[test]
    fn leading_comments_stay_with_first_document() {
        assert_eq!(
            pieces("# c\n---\na: 1\n---\nb: 2\n"),
            ["# c\n---\na: 1\n", "---\nb: 2\n"]
        );
    }

    #[test]
    fn implicit_first_document() {
        assert_eq!(pieces("a: 1\n---\nb: 2"), ["a: 1\n", "---\nb: 2"]);
    }

    #[test]
    fn end_markers_and_directives() {
        assert_eq!(
            pieces("a: 1\n...\n%YAML 1.2\n---\nb: 2\n"),
            ["a: 1\n...\n", "%YAML 1.2\n---\nb: 2\n"]
        );
    }

    #[test]
    fn markers_need_a_separator() {
        assert_eq!(pieces("a: |\n  x\n---x: 1\n").len(), 1);
    }

    #[test]
    fn json_is_one_segment() {
        assert_eq!(pieces("{\"a\":\n---\n}").len(), 1);
    }

    #[test]
    fn carriage_returns_end_lines() {
        assert_eq!(pieces("a: 1\r---\rb: 2\r"), ["a: 1\r", "---\rb: 2\r"]);
        assert_eq!(pieces("a: 1\r\n---\r\nb: 2"), ["a: 1\r\n", "---\r\nb: 2"]);
    }

    #[test]
    fn line_numbers() {
        let s = split("a: 1\n---\nb: 2\n---\nc: 3\n");
        assert_eq!(s.iter().map(|s| s.line).collect::<Vec<_>>(), [1, 2, 4]);
    }
}
