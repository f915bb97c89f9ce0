//! A stream's changes held compactly until output, and the new text put
//! together piece by piece as it is written.
//!
//! A long stream of small changes (a mirror rewriting every image of
//! 100,000 Pods) is held as its edits until every document is read and
//! checked, and only then written. Two things keep that cheap: the edits'
//! texts share one buffer ([`Prepared`]), and the new text is never made
//! whole: [`Spliced`] hands out the original text's unchanged runs and the
//! edits' texts in order, for a writer to write as they come.

use std::borrow::Cow;
use std::cmp::Reverse;

use super::Rerendered;
use super::edit::{Edit, Joiner};

/// An edit as splicing reads it.
#[derive(Debug, Clone, Copy)]
struct View<'a> {
    start: usize,
    end: usize,
    text: &'a str,
    joiner: Joiner,
    depth: usize,
}

impl View<'_> {
    /// Edits go in order of place; of several insertions at one place, the
    /// deeper go first (see [`Edit::depth`]).
    fn order(&self) -> (usize, Reverse<usize>) {
        (self.start, Reverse(self.depth))
    }
}

impl<'a> From<&'a Edit> for View<'a> {
    fn from(e: &'a Edit) -> Self {
        Self {
            start: e.range.start,
            end: e.range.end,
            text: &e.text,
            joiner: e.joiner,
            depth: e.depth,
        }
    }
}

/// One held edit: its place, and where its text ends in its chunk's
/// buffer (it starts where the edit before it ends). 32 bytes.
#[derive(Debug, Clone)]
struct Held {
    start: usize,
    end: usize,
    text_end: usize,
    /// [`Edit::depth`]: a column, so far below `u32::MAX`; only its order
    /// matters, and saturating keeps that.
    depth: u32,
    joiner: Joiner,
}

/// Held edits and their texts. A file's edits fill chunks of a fixed
/// room one after another, and a chunk never grows once made: a list
/// grown by doubling would hold up to twice its edits, and for a moment
/// three times, while it is copied.
#[derive(Debug, Clone, Default)]
struct Chunk {
    texts: String,
    held: Vec<Held>,
}

/// The most room a chunk is made with: edits, and bytes of their texts.
/// A new chunk has as much room as the chunks before it together, up to
/// these, so that a file with few changes takes little.
const CHUNK_EDITS: usize = 4096;
const CHUNK_TEXT: usize = 256 << 10;

impl Chunk {
    fn has_room_for(&self, other: &Chunk) -> bool {
        self.held.capacity() - self.held.len() >= other.held.len()
            && self.texts.capacity() - self.texts.len() >= other.texts.len()
    }

    fn extend(&mut self, other: Chunk) {
        let shift = self.texts.len();
        self.texts.push_str(&other.texts);
        self.held.extend(other.held.into_iter().map(|h| Held {
            text_end: h.text_end + shift,
            ..h
        }));
    }

    fn views(&self) -> impl DoubleEndedIterator<Item = View<'_>> {
        self.held.iter().enumerate().map(|(i, h)| {
            let text_start = match i {
                0 => 0,
                _ => self.held[i - 1].text_end,
            };
            View {
                start: h.start,
                end: h.end,
                text: &self.texts[text_start..h.text_end],
                joiner: h.joiner,
                depth: h.depth as usize,
            }
        })
    }
}

/// Documents' changes, written and checked, waiting to be spliced in
/// ([`super::Stream::prepare`]): one list for all of a file's documents,
/// the edits' texts in shared buffers, so that a long stream of small
/// changes costs its edits' bytes and little more.
#[derive(Debug, Clone)]
pub struct Prepared {
    chunks: Vec<Chunk>,
    /// Whether the edits are in splicing order (they are when documents
    /// are added in stream order, as they are read).
    in_order: bool,
    pub(super) rerendered: Vec<Rerendered>,
}

impl Default for Prepared {
    fn default() -> Self {
        NONE.clone()
    }
}

/// No changes.
static NONE: Prepared = Prepared {
    chunks: Vec::new(),
    in_order: true,
    rerendered: Vec::new(),
};

impl Prepared {
    /// No changes, to borrow for as long as need be.
    pub(super) fn none() -> &'static Self {
        &NONE
    }

    /// One document's edits (and whether it was written anew).
    pub(super) fn of(mut edits: Vec<Edit>, rerendered: Option<Rerendered>) -> Self {
        edits.sort_by_key(|e| View::from(e).order());
        let mut chunk = Chunk {
            texts: String::with_capacity(edits.iter().map(|e| e.text.len()).sum()),
            held: Vec::with_capacity(edits.len()),
        };
        for e in &edits {
            chunk.texts.push_str(&e.text);
            chunk.held.push(Held {
                start: e.range.start,
                end: e.range.end,
                text_end: chunk.texts.len(),
                depth: u32::try_from(e.depth).unwrap_or(u32::MAX),
                joiner: e.joiner,
            });
        }
        Self {
            chunks: vec![chunk],
            in_order: true,
            rerendered: rerendered.into_iter().collect(),
        }
    }

    /// Whether there are no edits.
    pub(super) fn is_empty(&self) -> bool {
        self.chunks.iter().all(|c| c.held.is_empty())
    }

    /// The bytes of the edits' texts.
    fn text_len(&self) -> usize {
        self.chunks.iter().map(|c| c.texts.len()).sum()
    }

    /// Add `other`'s changes (of other documents) to these.
    pub fn append(&mut self, mut other: Prepared) {
        let follows = match (self.views().next_back(), other.views().next()) {
            (Some(last), Some(first)) => last.order() <= first.order(),
            _ => true,
        };
        self.in_order = self.in_order && other.in_order && follows;
        for chunk in other.chunks.drain(..).filter(|c| !c.held.is_empty()) {
            match self.chunks.last_mut() {
                Some(last) if last.has_room_for(&chunk) => last.extend(chunk),
                _ => {
                    let edits: usize = self.chunks.iter().map(|c| c.held.len()).sum();
                    let room = |so_far: usize, most: usize, needed: usize| {
                        so_far.clamp(16, most).max(needed)
                    };
                    let mut fresh = Chunk {
                        texts: String::with_capacity(room(
                            self.text_len(),
                            CHUNK_TEXT,
                            chunk.texts.len(),
                        )),
                        held: Vec::with_capacity(room(edits, CHUNK_EDITS, chunk.held.len())),
                    };
                    fresh.extend(chunk);
                    self.chunks.push(fresh);
                }
            }
        }
        self.rerendered.append(&mut other.rerendered);
    }

    fn views(&self) -> impl DoubleEndedIterator<Item = View<'_>> {
        self.chunks.iter().flat_map(Chunk::views)
    }
}

/// A stream's new text, not put together: its text and the edits to
/// splice into it, handed out in order by [`Spliced::try_for_each`].
#[derive(Debug)]
pub struct Spliced<'a> {
    text: &'a str,
    /// Edits prepared as their documents were read.
    before: &'a Prepared,
    /// Edits of the documents changed at the end.
    now: Prepared,
}

impl<'a> Spliced<'a> {
    pub(super) fn new(text: &'a str, before: &'a Prepared, now: Prepared) -> Self {
        Self { text, before, now }
    }

    /// Whether the new text is the original one.
    pub fn is_unchanged(&self) -> bool {
        self.before.is_empty() && self.now.is_empty()
    }

    /// Hand out the new text's pieces in order; the first error stops it.
    pub fn try_for_each<E>(&self, mut f: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
        if self.before.in_order && self.now.in_order {
            // Both lists are in order: merge them as they go, earlier edits
            // first where two go at one place, as sorting them together
            // would.
            let mut before = self.before.views().peekable();
            let mut now = self.now.views().peekable();
            let merged = std::iter::from_fn(|| match (before.peek(), now.peek()) {
                (Some(b), Some(n)) if n.order() < b.order() => now.next(),
                (Some(_), _) => before.next(),
                (None, _) => now.next(),
            });
            pieces(self.text, merged, &mut f)
        } else {
            // Sorted together, earlier edits first where two go at one
            // place (the sort is stable).
            let mut all: Vec<View<'_>> = self.before.views().chain(self.now.views()).collect();
            all.sort_by_key(View::order);
            pieces(self.text, all.into_iter(), &mut f)
        }
    }

    /// Write the new text to `out`, piece by piece; returns whether it is
    /// empty or ends with a line break, seen on the way.
    pub fn write_to(&self, out: &mut impl std::io::Write) -> std::io::Result<bool> {
        let mut last = None;
        self.try_for_each(|piece| {
            last = piece.chars().next_back().or(last);
            out.write_all(piece.as_bytes())
        })?;
        Ok(last.is_none_or(|c| c == '\n' || c == '\r'))
    }

    /// The new text, made whole (borrowed when nothing changes).
    pub fn to_text(&self) -> Cow<'a, str> {
        if self.is_unchanged() {
            return Cow::Borrowed(self.text);
        }
        let mut out = String::with_capacity(self.text.len() + self.now.text_len());
        let _ = self.try_for_each(|piece| {
            out.push_str(piece);
            Ok::<(), ()>(())
        });
        Cow::Owned(out)
    }

    /// The start of the new text after leading whitespace, up to `n` bytes
    /// (fewer at a character boundary or the end).
    pub fn trimmed_start(&self, n: usize) -> String {
        let mut start = String::new();
        let _ = self.try_for_each(|piece| {
            let piece = match start.is_empty() {
                true => piece.trim_start(),
                false => piece,
            };
            for c in piece.chars() {
                if start.len() + c.len_utf8() > n {
                    return Err(());
                }
                start.push(c);
            }
            Ok(())
        });
        start
    }
}

impl std::fmt::Display for Spliced<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.try_for_each(|piece| f.write_str(piece))
    }
}

/// `text` with `edits` (in splicing order) spliced in, handed to `f` piece
/// by piece: the one implementation of splicing.
fn pieces<'e, E>(
    text: &str,
    edits: impl Iterator<Item = View<'e>>,
    f: &mut impl FnMut(&str) -> Result<(), E>,
) -> Result<(), E> {
    let mut pos = 0;
    let mut last_insertion: Option<usize> = None;
    for e in edits {
        f(&text[pos..e.start.max(pos)])?;
        let insertion = e.start == e.end;
        if insertion && last_insertion == Some(e.start) {
            f(e.joiner.as_str())?;
        }
        last_insertion = insertion.then_some(e.start);
        f(e.text)?;
        pos = pos.max(e.end);
    }
    f(&text[pos..])
}

/// `text` with `edits` spliced in, whole (borrowed when there are none).
pub(super) fn splice<'t>(text: &'t str, edits: &[Edit]) -> Cow<'t, str> {
    if edits.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut views: Vec<View<'_>> = edits.iter().map(View::from).collect();
    views.sort_by_key(View::order);
    let added: usize = edits.iter().map(|e| e.text.len() + 2).sum();
    let mut out = String::with_capacity(text.len() + added);
    let _ = pieces(text, views.into_iter(), &mut |piece| {
        out.push_str(piece);
        Ok::<(), ()>(())
    });
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(start: usize, end: usize, text: &str) -> Edit {
        Edit::new(start..end, text.to_string())
    }

    /// Edits of "documents" in and out of order, and at one place from
    /// both lists: pieces in order come out as splicing them all at once.
    #[test]
    fn merged_pieces_are_the_text_spliced_at_once() {
        let text = "aaaa\nbbbb\ncccc\ndddd\n";
        let first = vec![edit(1, 2, "A"), edit(0, 0, "<")];
        let second = vec![edit(6, 8, "BB")];
        let third = vec![edit(10, 10, "+"), edit(12, 13, "C")];
        let all: Vec<Edit> = [&first[..], &second[..], &third[..]].concat();
        let expected = splice(text, &all).into_owned();
        assert_eq!(expected, "<aAaa\nbBBb\n+ccCc\ndddd\n");

        // Prepared in stream order, the third document changed at the end.
        let mut before = Prepared::of(first.clone(), None);
        before.append(Prepared::of(second.clone(), None));
        let spliced = Spliced::new(text, &before, Prepared::of(third.clone(), None));
        assert!(before.in_order);
        assert_eq!(spliced.to_string(), expected);
        assert_eq!(spliced.to_text(), expected);

        // Out of order: sorted together instead.
        let mut before = Prepared::of(third, None);
        before.append(Prepared::of(first, None));
        assert!(!before.in_order);
        let spliced = Spliced::new(text, &before, Prepared::of(second, None));
        assert_eq!(spliced.to_string(), expected);

        // Insertions at one place from both lists: the earlier first, with
        // the joiner between them.
        let flow = |t: &str| Edit {
            joiner: Joiner::Comma,
            ..edit(2, 2, t)
        };
        let before = Prepared::of(vec![flow("x")], None);
        let spliced = Spliced::new("[a]", &before, Prepared::of(vec![flow("y")], None));
        assert_eq!(spliced.to_string(), splice("[a]", &[flow("x"), flow("y")]));
        assert_eq!(spliced.to_string(), "[ax, y]");
    }

    #[test]
    fn what_writing_a_stream_asks_of_a_text() {
        let none = Prepared::none();
        let unchanged = Spliced::new("  \n{\"a\": 1}", none, Prepared::default());
        assert!(unchanged.is_unchanged());
        assert_eq!(unchanged.trimmed_start(1), "{");
        assert!(!unchanged.write_to(&mut Vec::new()).expect("write"));
        assert!(matches!(unchanged.to_text(), Cow::Borrowed(_)));

        // The start and the end both in edits' texts.
        let edits = Prepared::of(vec![edit(0, 2, " \n-"), edit(5, 5, "\n")], None);
        let spliced = Spliced::new("ab--x", none, edits);
        assert_eq!(spliced.to_string(), " \n---x\n");
        assert_eq!(spliced.trimmed_start(3), "---");
        assert_eq!(spliced.trimmed_start(2), "--");
        let mut written = Vec::new();
        assert!(spliced.write_to(&mut written).expect("write"));
        assert_eq!(written, b" \n---x\n");
        let empty = Spliced::new("", none, Prepared::default());
        assert!(empty.write_to(&mut Vec::new()).expect("write"));
    }
}

#[cfg(test)]
mod chunks {
    use super::*;

    /// Many documents' edits appended one by one fill chunks of bounded
    /// room, none of which grows, and splice as one list would.
    #[test]
    fn appended_edits_fill_bounded_chunks() {
        let text = "x\n".repeat(20_000);
        let mut prepared = Prepared::default();
        let mut all = Vec::new();
        for line in 0..10_000 {
            let e = Edit::new(line * 2..line * 2 + 1, format!("y{line}"));
            all.push(e.clone());
            prepared.append(Prepared::of(vec![e], None));
        }
        assert!(prepared.in_order);
        assert!(prepared.chunks.len() > 2, "{}", prepared.chunks.len());
        assert_eq!(size_of::<Held>(), 32);
        for c in &prepared.chunks {
            assert!(c.held.capacity() <= CHUNK_EDITS && c.texts.capacity() <= CHUNK_TEXT);
        }
        let spliced = Spliced::new(&text, Prepared::none(), prepared);
        assert_eq!(spliced.to_string(), splice(&text, &all));
    }
}
