//! The image-reference grammar of github.com/distribution/reference, as plain
//! matchers instead of regular expressions.
//!
//! ```text
//! reference     := name [ ":" tag ] [ "@" digest ]
//! name          := [ domain "/" ] remote-name
//! domain        := host [ ":" port ]
//! host          := domain-name | "[" ipv6-chars "]"
//! domain-name   := component ( "." component )*      component: [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! remote-name   := path-component ( "/" path-component )*
//! path-component:= [a-z0-9]+ ( separator [a-z0-9]+ )*  separator: "." | "_" | "__" | "-"+
//! tag           := [\w][\w.-]{0,127}
//! digest        := algorithm ":" [0-9a-fA-F]{32,}      algorithm: [A-Za-z][A-Za-z0-9]* ( [-_+.] [A-Za-z][A-Za-z0-9]* )*
//! ```
//!
//! Each function answers exactly what the anchored upstream regular
//! expression of the same name would, so the conformance table's regexp cases
//! test them directly.

/// `[a-z0-9]+ (separator [a-z0-9]+)*`
pub fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    loop {
        // One run of lowercase alphanumerics is required here.
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // A separator: ".", "_", "__" or one or more "-".
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `path-component ("/" path-component)*`
pub fn is_remote_name(s: &str) -> bool {
    s.split('/').all(is_path_component)
}

fn is_domain_name_component(s: &str) -> bool {
    let b = s.as_bytes();
    match b {
        [] => false,
        [c] => c.is_ascii_alphanumeric(),
        [first, middle @ .., last] => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && middle
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        }
    }
}

/// `host (":" [0-9]+)?`: a registry host with an optional port.
pub fn is_domain_and_port(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        // IPv6 literal: "[" [a-fA-F0-9:]+ "]" then an optional port.
        let Some(close) = rest.find(']') else {
            return false;
        };
        let inside = &rest[..close];
        if inside.is_empty() || !inside.bytes().all(|c| c.is_ascii_hexdigit() || c == b':') {
            return false;
        }
        let after = &rest[close + 1..];
        if after.is_empty() {
            return true;
        }
        match after.strip_prefix(':') {
            Some(port) => (None, Some(port)),
            None => return false,
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(s), None),
        }
    };
    if let Some(host) = host
        && !host.split('.').all(is_domain_name_component)
    {
        return false;
    }
    match port {
        Some(p) => !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()),
        None => true,
    }
}

/// `anchoredNameRegexp`: splits a name into (domain, path). The domain is
/// empty when the first component cannot be one or when there is no `/`:
/// the regular expression tries the optional domain first, so a first
/// component that *can* be a domain *is* the domain here (Parse does not
/// apply Docker's `.`/`:`/`localhost` rule; that is normalization's job).
pub fn split_name(s: &str) -> Option<(&str, &str)> {
    if let Some((first, rest)) = s.split_once('/')
        && is_domain_and_port(first)
        && is_remote_name(rest)
    {
        return Some((first, rest));
    }
    is_remote_name(s).then_some(("", s))
}

/// `[\w][\w.-]{0,127}`
pub fn is_tag(s: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// `algorithm ":" [0-9a-fA-F]{32,}`: the digest grammar only; whether the
/// algorithm is known and the length fits it is checked in `validate_digest`.
pub fn is_digest_pattern(s: &str) -> bool {
    let Some((algorithm, hex)) = s.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    algorithm_ok && hex.len() >= 32 && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

/// `[a-f0-9]{64}`: a bare image ID, which is never a valid repository name.
pub fn is_identifier(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// The parts of a string matching `referenceRegexp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferenceParts<'a> {
    /// The name (domain and path, as written).
    pub name: &'a str,
    /// The tag, when present.
    pub tag: Option<&'a str>,
    /// The digest, when present.
    pub digest: Option<&'a str>,
}

/// `referenceRegexp`: `name (":" tag)? ("@" digest)?`, anchored.
pub fn split_reference(s: &str) -> Option<ReferenceParts<'_>> {
    // Neither name nor tag may contain "@", so the first "@" starts the digest.
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => {
            if !is_digest_pattern(digest) {
                return None;
            }
            (rest, Some(digest))
        }
        None => (s, None),
    };
    // A tag follows the last ":" unless a "/" comes after it, in which case
    // that ":" introduced a registry port.
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => {
            if !is_tag(tag) {
                return None;
            }
            (name, Some(tag))
        }
        _ => (rest, None),
    };
    split_name(name)?;
    Some(ReferenceParts { name, tag, digest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators() {
        assert!(is_path_component("a__b"));
        assert!(is_path_component("a---b"));
        assert!(!is_path_component("a___b"));
        assert!(!is_path_component("a._b"));
        assert!(!is_path_component("a-"));
    }

    #[test]
    fn port_without_tag() {
        let parts = split_reference("localhost:5000/app").expect("valid");
        assert_eq!(parts.name, "localhost:5000/app");
        assert_eq!(parts.tag, None);
    }
}
