//! The corpus of real manifests (`../shared/corpus/`) through the document
//! layer: every document parses, untouched documents come out byte for byte,
//! image sites match counts made independently, and changes touch only the
//! lines that carry them.

use std::collections::BTreeMap;

use repoint_core::actions::Action;
use repoint_core::patch;
use repoint_core::{Limits, Stream};
use repoint_tests::{
    all_sites, corpus_files, corpus_image_fields, mirrored, parse_file, plan_stream, repo_root,
};
use serde_json::Value;

#[test]
fn untouched_documents_pass_through_byte_for_byte() {
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("tests/data/corpus_sites.json")).expect("read"),
    )
    .expect("json");
    for path in corpus_files() {
        let stream = parse_file(&path);
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        assert_eq!(
            stream.documents().len() as u64,
            expected["files"][&name]["documents"]
                .as_u64()
                .expect("count"),
            "{name}: document count"
        );
        let out = stream.render(&[]).expect("render");
        assert!(out == stream.text(), "{name}: output differs from input");
    }
}

#[test]
fn image_sites_match_independent_counts() {
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("tests/data/corpus_sites.json")).expect("read"),
    )
    .expect("json");
    let custom = corpus_image_fields();
    for path in corpus_files() {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let stream = parse_file(&path);
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for (_, sites) in all_sites(&stream, &custom) {
            for site in &sites.images {
                *counts.entry(site.kind.as_str().to_string()).or_default() += 1;
                assert!(
                    site.image.is_ok(),
                    "{name}: {} does not parse",
                    site.written
                );
            }
            if sites.service_account.is_some()
                || sites.images.iter().any(|s| s.kind.as_str() != "custom")
            {
                *counts.entry("pod-specs".into()).or_default() += 1;
            }
        }
        let mut want: BTreeMap<String, u64> = BTreeMap::new();
        for (k, v) in expected["files"][&name].as_object().expect("file entry") {
            if k != "documents" {
                want.insert(k.clone(), v.as_u64().expect("count"));
            }
        }
        assert_eq!(counts, want, "{name}");
    }
}

/// Lines of `a` and `b` that differ, for edits that keep the line count.
fn changed_lines(a: &str, b: &str) -> Vec<usize> {
    assert_eq!(a.lines().count(), b.lines().count(), "line count changed");
    a.lines()
        .zip(b.lines())
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i + 1)
        .collect()
}

#[test]
fn rewriting_every_image_changes_exactly_the_image_lines() {
    let custom = corpus_image_fields();
    for path in corpus_files() {
        let stream = parse_file(&path);
        let changes = plan_stream(&stream, &custom, |sites| {
            sites
                .images
                .iter()
                .map(|s| Action::SetImage {
                    pointer: s.pointer.clone(),
                    image: mirrored(s.image.as_ref().expect("valid image")),
                })
                .collect()
        });
        let mut expected_lines: Vec<usize> = Vec::new();
        for (index, ops) in &changes {
            let doc = &stream.documents()[*index];
            for op in ops {
                expected_lines.push(stream.locate(doc, &op.path).expect("locate").0);
            }
        }
        expected_lines.sort();
        let out = stream.render(&changes).expect("render").into_owned();
        assert_eq!(
            changed_lines(stream.text(), &out),
            expected_lines,
            "{}",
            path.display()
        );

        // What was written means what the patch says.
        let reparsed = Stream::parse("out", out.clone(), Limits::default()).expect("output parses");
        for (doc, new) in stream.documents().iter().zip(reparsed.documents()) {
            let mut want = doc.value.clone();
            if let Some((_, ops)) = changes.iter().find(|(i, _)| *i == doc.index) {
                patch::apply(&mut want, ops).expect("apply");
            }
            assert_eq!(want, new.value, "{} document {}", path.display(), doc.index);
        }

        // Converge: the rewritten images are already at their targets.
        let again = plan_stream(&reparsed, &custom, |sites| {
            sites
                .images
                .iter()
                .map(|s| Action::SetImage {
                    pointer: s.pointer.clone(),
                    image: s.image.clone().expect("valid"),
                })
                .collect()
        });
        assert!(again.is_empty(), "second run changes {again:?}");
    }
}

#[test]
fn adding_a_pull_secret_everywhere_only_inserts_lines() {
    let custom = corpus_image_fields();
    for path in corpus_files() {
        let stream = parse_file(&path);
        let changes = plan_stream(&stream, &custom, |sites| {
            if sites.images.is_empty() {
                vec![]
            } else {
                vec![Action::AddPullSecret("regcred".into())]
            }
        });
        assert!(!changes.is_empty());
        let out = stream.render(&changes).expect("render").into_owned();
        // Every input line is still there, in order; new lines only add
        // the secret.
        let mut input = stream.text().lines().peekable();
        for line in out.lines() {
            if input.peek() == Some(&line) {
                input.next();
            } else {
                let t = line.trim_start().trim_start_matches("- ");
                assert!(
                    t == "imagePullSecrets:"
                        || t == "name: regcred"
                        || t.starts_with("imagePullSecrets: [{name: regcred}"),
                    "{}: unexpected new line {line:?}",
                    path.display()
                );
            }
        }
        assert!(
            input.peek().is_none(),
            "{}: input lines lost",
            path.display()
        );
        let reparsed = Stream::parse("out", out, Limits::default()).expect("output parses");
        for (doc, new) in stream.documents().iter().zip(reparsed.documents()) {
            let mut want = doc.value.clone();
            if let Some((_, ops)) = changes.iter().find(|(i, _)| *i == doc.index) {
                patch::apply(&mut want, ops).expect("apply");
            }
            assert_eq!(want, new.value, "{} document {}", path.display(), doc.index);
        }
    }
}

#[test]
fn parallel_parse_equals_sequential_parse() {
    for path in corpus_files() {
        let text = std::fs::read_to_string(&path).expect("read");
        let one = Stream::parse("f", text.clone(), Limits::default()).expect("parse");
        let many = Stream::parse_with_threads("f", text, Limits::default(), 4).expect("parse");
        assert_eq!(one.documents().len(), many.documents().len());
        for (a, b) in one.documents().iter().zip(many.documents()) {
            assert_eq!((a.index, a.start, &a.value), (b.index, b.start, &b.value));
        }
    }
    // An error deep in a stream names the same document either way.
    let mut bad = "apiVersion: v1\nkind: ConfigMap\n---\n".repeat(50);
    bad.push_str("a: [\n");
    let e1 = Stream::parse("f", bad.clone(), Limits::default()).expect_err("bad");
    let e4 = Stream::parse_with_threads("f", bad, Limits::default(), 4).expect_err("bad");
    assert_eq!(e1, e4);
    assert_eq!(e1.document, 50);
}
