//! Globs, image patterns, label selectors and JSON Pointers: no input
//! panics, a literal glob matches itself, and pointer tokens round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repoint_core::glob::{Glob, path_match};
use repoint_core::matching::{ImagePattern, LabelSelector};
use repoint_core::ImageRef;
use repoint_core::pointer;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, name) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(glob) = Glob::new(pattern) {
        let _ = glob.matches(name);
    }
    let _ = path_match(pattern, name);
    let literal: String = name
        .chars()
        .flat_map(|c| {
            let escape = matches!(c, '*' | '?' | '[' | '\\');
            escape.then_some('\\').into_iter().chain([c])
        })
        .collect();
    if !name.contains('/') {
        assert_eq!(
            path_match(&literal, name),
            Ok(true),
            "{literal:?} vs {name:?}"
        );
    }
    if let Ok(p) = ImagePattern::parse(pattern)
        && let Ok(image) = ImageRef::parse(name)
    {
        let _ = p.matches(&image);
        let _ = p.remainder(&image);
    }
    if let Ok(selector) = serde_json::from_str::<LabelSelector>(pattern) {
        let labels: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(name).unwrap_or_default();
        let _ = selector.matches(
            labels
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?))),
        );
    }
    if let Some(tokens) = pointer::tokens(text) {
        let again = pointer::join(&tokens);
        assert_eq!(pointer::tokens(&again), Some(tokens.clone()));
        for t in &tokens {
            assert_eq!(
                pointer::tokens(&format!("/{}", pointer::escape(t))),
                Some(vec![t.clone()])
            );
        }
    }
});
