//! Minimal diffs: for set-image and add-pull-secret, in block and flow
//! style, JSON, with and without an existing `imagePullSecrets`, the output
//! differs from the input by exactly the expected lines.

use repoint_core::actions::Action;
use repoint_core::{Limits, Stream};
use repoint_tests::{mirrored, plan_stream, repo_root};
use similar::{ChangeTag, TextDiff};

/// Which change to make to every object with images.
#[derive(Clone, Copy)]
enum Change {
    Mirror,
    Secret,
    Both,
}

fn run(fixture: &str, change: Change) -> (String, String) {
    let path = repo_root().join("tests/fixtures/diff").join(fixture);
    let input = std::fs::read_to_string(&path).expect("read fixture");
    let stream = Stream::parse(fixture, input.clone(), Limits::default()).expect("parse");
    let changes = plan_stream(&stream, &[], |sites| {
        let mut actions = Vec::new();
        if matches!(change, Change::Mirror | Change::Both) {
            for s in &sites.images {
                actions.push(Action::SetImage {
                    pointer: s.pointer.clone(),
                    image: mirrored(s.image.as_ref().expect("valid")),
                });
            }
        }
        if matches!(change, Change::Secret | Change::Both) && !sites.images.is_empty() {
            actions.push(Action::AddPullSecret("regcred".into()));
        }
        actions
    });
    let output = stream.render(&changes).expect("render").into_owned();
    // The output must read back as the patched value.
    Stream::parse("output", output.clone(), Limits::default()).expect("output parses");
    (input, output)
}

/// The changed lines only, `-` for removed and `+` for added.
fn diff(a: &str, b: &str) -> Vec<String> {
    TextDiff::from_lines(a, b)
        .iter_all_changes()
        .filter_map(|c| match c.tag() {
            ChangeTag::Equal => None,
            ChangeTag::Delete => Some(format!("-{}", c.value().trim_end_matches('\n'))),
            ChangeTag::Insert => Some(format!("+{}", c.value().trim_end_matches('\n'))),
        })
        .collect()
}

fn assert_diff(fixture: &str, change: Change, expected: &[&str]) {
    let (input, output) = run(fixture, change);
    assert_eq!(diff(&input, &output), expected, "{fixture}:\n{output}");
}

#[test]
fn set_image_block_keeps_quotes_and_comments() {
    assert_diff(
        "block.yaml",
        Change::Mirror,
        &[
            r#"-          image: "busybox:1.36""#,
            r#"+          image: "mirror.example.com/docker.io/library/busybox:1.36""#,
            "-          image: 'nginx:1.27'   # pinned",
            "+          image: 'mirror.example.com/docker.io/library/nginx:1.27'   # pinned",
            "-          image: quay.io/org/agent:v2@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
            "+          image: mirror.example.com/quay.io/org/agent:v2@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
        ],
    );
}

#[test]
fn add_secret_block_without_list_follows_indentation() {
    // Dashes in this file sit two columns under their key; the new list does too.
    assert_diff(
        "block.yaml",
        Change::Secret,
        &["+      imagePullSecrets:", "+        - name: regcred"],
    );
}

#[test]
fn add_secret_after_a_comment_on_the_dash_line() {
    // kpt writes `- # comment` for an item whose first line is a comment;
    // the list's indentation comes from its dashes, not the comment.
    assert_diff(
        "comment-after-dash.yaml",
        Change::Both,
        &[
            "-      image: nginx",
            "+      image: mirror.example.com/docker.io/library/nginx",
            "+    imagePullSecrets:",
            "+    - name: regcred",
        ],
    );
}

#[test]
fn add_secret_block_with_list_appends() {
    assert_diff(
        "block-with-secrets.yaml",
        Change::Secret,
        &["+  - name: regcred"],
    );
}

#[test]
fn both_changes_block_with_list() {
    assert_diff(
        "block-with-secrets.yaml",
        Change::Both,
        &[
            "+  - name: regcred",
            "-    image: nginx",
            "+    image: mirror.example.com/docker.io/library/nginx",
        ],
    );
}

#[test]
fn set_image_flow() {
    assert_diff(
        "flow.yaml",
        Change::Mirror,
        &[
            r#"-spec: {containers: [{name: a, image: nginx}, {name: b, image: "quay.io/x/y:1"}]}"#,
            r#"+spec: {containers: [{name: a, image: mirror.example.com/docker.io/library/nginx}, {name: b, image: "mirror.example.com/quay.io/x/y:1"}]}"#,
        ],
    );
}

#[test]
fn add_secret_flow_without_list() {
    assert_diff(
        "flow.yaml",
        Change::Secret,
        &[
            r#"-spec: {containers: [{name: a, image: nginx}, {name: b, image: "quay.io/x/y:1"}]}"#,
            r#"+spec: {containers: [{name: a, image: nginx}, {name: b, image: "quay.io/x/y:1"}], imagePullSecrets: [{name: regcred}]}"#,
        ],
    );
}

#[test]
fn add_secret_flow_with_list() {
    assert_diff(
        "flow-with-secrets.yaml",
        Change::Secret,
        &[
            "-  imagePullSecrets: [{name: existing}]",
            "+  imagePullSecrets: [{name: existing}, {name: regcred}]",
        ],
    );
}

#[test]
fn add_secret_where_the_list_is_null() {
    assert_diff("null-secrets.yaml", Change::Secret, &["+  - name: regcred"]);
}

#[test]
fn document_without_trailing_newline() {
    let (input, output) = run("no-trailing-newline.yaml", Change::Both);
    assert_eq!(
        diff(&input, &output),
        [
            "-            image: busybox",
            "+            image: mirror.example.com/docker.io/library/busybox",
            "+          imagePullSecrets:",
            "+          - name: regcred",
        ]
    );
    assert!(!output.ends_with('\n'), "no newline added at the end");
}

#[test]
fn json_pretty_printed() {
    assert_diff(
        "pod.json",
        Change::Both,
        &[
            r#"-        "image": "nginx""#,
            r#"+        "image": "mirror.example.com/docker.io/library/nginx""#,
            r#"-    ]"#,
            r#"+    ],"#,
            r#"+    "imagePullSecrets": [{"name": "regcred"}]"#,
        ],
    );
}

#[test]
fn json_list_items_are_walked() {
    let (input, output) = run("list.json", Change::Mirror);
    assert_eq!(
        diff(&input, &output),
        [
            r#"-  {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [{"name": "a", "image": "nginx"}]}},"#,
            r#"+  {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [{"name": "a", "image": "mirror.example.com/docker.io/library/nginx"}]}},"#,
        ]
    );
    let value: serde_json::Value = serde_json::from_str(&output).expect("still JSON");
    assert_eq!(
        value["items"][1]["data"]["image"], "nginx",
        "a ConfigMap is not a workload"
    );
}

#[test]
fn second_run_changes_nothing() {
    for fixture in ["block.yaml", "flow.yaml", "pod.json", "null-secrets.yaml"] {
        let (_, once) = run(fixture, Change::Both);
        let stream = Stream::parse(fixture, once.clone(), Limits::default()).expect("parse");
        let again = plan_stream(&stream, &[], |sites| {
            let mut a: Vec<Action> = sites
                .images
                .iter()
                .map(|s| Action::SetImage {
                    pointer: s.pointer.clone(),
                    image: s.image.clone().expect("valid"),
                })
                .collect();
            a.push(Action::AddPullSecret("regcred".into()));
            a
        });
        assert!(again.is_empty(), "{fixture}: {again:?}");
    }
}
