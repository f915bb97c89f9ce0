//! Shell-style globs with Go's `path.Match` semantics, the matching that
//! `reference.FamiliarMatch` (and so Docker tooling) applies to image names:
//! `*` matches any run of characters except `/`, `?` one character except
//! `/`, `[a-z]`/`[^a-z]` a class, `\` escapes. Policies use the same globs for
//! registries (`*.gcr.io`) and repositories (`docker.io/bitnami/*`).

use crate::reference::ImageRef;

/// A pattern that is not well formed (`[-x]`, a trailing `\`, an open `[`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid glob pattern {pattern:?}")]
pub struct BadPattern {
    /// The offending pattern.
    pub pattern: String,
}

/// A validated glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
}

impl Glob {
    /// Validate `pattern` once so that matching cannot fail later.
    pub fn new(pattern: &str) -> Result<Self, BadPattern> {
        // Matching against the empty string walks the whole pattern and
        // reports every syntax error, as Go's Match does.
        path_match(pattern, "")?;
        Ok(Self {
            pattern: pattern.to_string(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        path_match(&self.pattern, name).unwrap_or(false)
    }
}

impl serde::Serialize for Glob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.pattern)
    }
}

impl<'de> serde::Deserialize<'de> for Glob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// `reference.FamiliarMatch`: match against the familiar string
/// (`nginx:1.27`), then against the familiar name (`nginx`).
pub fn familiar_match(pattern: &str, image: &ImageRef) -> Result<bool, BadPattern> {
    if path_match(pattern, &image.familiar())? {
        return Ok(true);
    }
    path_match(pattern, &image.familiar_name())
}

/// Go's `path.Match(pattern, name)`.
pub fn path_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let bad = || BadPattern {
        pattern: pattern.to_string(),
    };
    let mut pat = pattern;
    let mut name = name;
    'pattern: while !pat.is_empty() {
        let (star, chunk, rest) = scan_chunk(pat);
        pat = rest;
        if star && chunk.is_empty() {
            // A trailing * matches the rest unless it contains a '/'.
            return Ok(!name.contains('/'));
        }
        let attempt = match_chunk(chunk, name).map_err(|()| bad())?;
        if let Some(t) = attempt
            && (t.is_empty() || !pat.is_empty())
        {
            name = t;
            continue;
        }
        if star {
            // Let the star swallow more, but never a '/'.
            for (i, c) in name.char_indices() {
                if c == '/' {
                    break;
                }
                let after = &name[i + c.len_utf8()..];
                if let Some(t) = match_chunk(chunk, after).map_err(|()| bad())? {
                    if pat.is_empty() && !t.is_empty() {
                        continue;
                    }
                    name = t;
                    continue 'pattern;
                }
            }
        }
        // No match; still report a malformed remainder of the pattern.
        while !pat.is_empty() {
            let (_, chunk, rest) = scan_chunk(pat);
            pat = rest;
            match_chunk(chunk, "").map_err(|()| bad())?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Split off leading stars and the following chunk up to the next star
/// outside a class.
fn scan_chunk(pattern: &str) -> (bool, &str, &str) {
    let trimmed = pattern.trim_start_matches('*');
    let star = trimmed.len() != pattern.len();
    let b = trimmed.as_bytes();
    let mut in_range = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &trimmed[..i], &trimmed[i..])
}

/// Match one star-free chunk at the start of `s`. `Ok(Some(rest))` on a
/// match, `Ok(None)` on no match, `Err` on a malformed chunk.
fn match_chunk<'s>(mut chunk: &str, mut s: &'s str) -> Result<Option<&'s str>, ()> {
    let mut failed = false;
    while let Some(c) = chunk.chars().next() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            '[' => {
                let mut r = '\0';
                if !failed {
                    let ch = s.chars().next().ok_or(())?;
                    r = ch;
                    s = &s[ch.len_utf8()..];
                }
                chunk = &chunk[1..];
                let negated = chunk.starts_with('^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.starts_with(']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_escaped(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if let Some(rest) = chunk.strip_prefix('-') {
                        let (h, rest) = get_escaped(rest)?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    let ch = s.chars().next().ok_or(())?;
                    if ch == '/' {
                        failed = true;
                    }
                    s = &s[ch.len_utf8()..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                let literal = if c == '\\' {
                    chunk = &chunk[1..];
                    chunk.chars().next().ok_or(())?
                } else {
                    c
                };
                if !failed {
                    match s.chars().next() {
                        Some(ch) if ch == literal => s = &s[ch.len_utf8()..],
                        _ => failed = true,
                    }
                }
                chunk = &chunk[literal.len_utf8()..];
            }
        }
    }
    Ok(if failed { None } else { Some(s) })
}

/// One possibly escaped character of a class; a class must not end here.
fn get_escaped(chunk: &str) -> Result<(char, &str), ()> {
    let mut chunk = chunk;
    if chunk.is_empty() || chunk.starts_with('-') || chunk.starts_with(']') {
        return Err(());
    }
    if let Some(rest) = chunk.strip_prefix('\\') {
        chunk = rest;
    }
    let c = chunk.chars().next().ok_or(())?;
    let rest = &chunk[c.len_utf8()..];
    if rest.is_empty() {
        return Err(());
    }
    Ok((c, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_path_match_semantics() {
        assert_eq!(path_match("*.gcr.io", "eu.gcr.io"), Ok(true));
        assert_eq!(path_match("*.gcr.io", "gcr.io"), Ok(false));
        assert_eq!(path_match("docker.io/*", "docker.io/a/b"), Ok(false));
        assert_eq!(path_match("a[b-d]c", "acc"), Ok(true));
        assert_eq!(path_match("a[^b-d]c", "acc"), Ok(false));
        assert_eq!(path_match("a\\*", "a*"), Ok(true));
        assert!(path_match("[-x]", "x").is_err());
        assert!(path_match("ab\\", "ab").is_err());
        assert!(Glob::new("[").is_err());
    }
}
