//! RFC 6901 JSON Pointers, as strings: the one place that splits, escapes
//! and joins them (patches, source trees, image fields, config errors and
//! the kustomize overlay all address values this way).

/// The unescaped tokens of a pointer (`""` is the root: no tokens);
/// `None` if it is not a pointer (it must be empty or start with `/`).
pub fn tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    // `~1` first: `~01` is the token `~1`, not `/`.
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// One token escaped for a pointer (`~` as `~0`, `/` as `~1`).
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The pointer of these tokens, each escaped.
pub fn join<I, S>(tokens: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    tokens.into_iter().fold(String::new(), |mut acc, t| {
        acc.push('/');
        acc.push_str(&escape(t.as_ref()));
        acc
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_escape_and_join_round_trip() {
        assert_eq!(join(["a/b", "c~d"]), "/a~1b/c~0d");
        assert_eq!(tokens("/a~1b/c~0d"), Some(vec!["a/b".into(), "c~d".into()]));
        // RFC 6901's own example of the order: `~01` is `~1`.
        assert_eq!(tokens("/~01"), Some(vec!["~1".into()]));
        assert_eq!(tokens(""), Some(vec![]));
        assert_eq!(tokens("/"), Some(vec![String::new()]));
        assert_eq!(tokens("a/b"), None);
        assert_eq!(
            escape("app.kubernetes.io/managed-by"),
            "app.kubernetes.io~1managed-by"
        );
    }
}
