//! Regression tests for the YAML shapes that once came out invalid or with
//! the wrong meaning (issue 16), each named after its shape. Each states
//! the exact output: the minimal edit, not a re-rendered document, so a
//! splice that goes wrong fails here even though the safety net in
//! `Stream::render` would have covered it.

use repoint_core::actions::Action;
use repoint_core::patch::PatchOp;
use repoint_core::{Limits, Stream};
use repoint_tests::{mirror_actions, plan_stream};
use serde_json::{Value, json};

/// Mirror every image and add each of `secrets`, as registry-mirror and
/// pull-secrets do.
fn mirror_and_add(input: &str, secrets: &[&str]) -> String {
    let stream = Stream::parse("in.yaml", input.to_string(), Limits::default()).expect("parse");
    let secrets: Vec<Action> = secrets
        .iter()
        .map(|s| Action::AddPullSecret(s.to_string()))
        .collect();
    let changes = plan_stream(&stream, &[], |sites| {
        let more = if sites.images.is_empty() {
            &[][..]
        } else {
            &secrets
        };
        mirror_actions(sites, more)
    });
    assert!(!changes.is_empty(), "nothing to change in:\n{input}");
    render(&stream, &changes)
}

/// Apply raw JSON Patch operations to document 0.
fn patch(input: &str, ops: Value) -> String {
    let stream = Stream::parse("in.yaml", input.to_string(), Limits::default()).expect("parse");
    let ops: Vec<PatchOp> = serde_json::from_value(ops).expect("ops");
    render(&stream, &[(0, ops)])
}

fn render(stream: &Stream, changes: &[(usize, Vec<PatchOp>)]) -> String {
    stream
        .render(changes)
        .unwrap_or_else(|e| panic!("render: {e}"))
        .into_owned()
}

/// The value a text has, as repoint (and kubectl) read it.
fn value(text: &str) -> Value {
    let stream = Stream::parse("out.yaml", text.to_string(), Limits::default())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    stream.documents()[0].value.clone()
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n";

#[test]
fn anchor_on_double_quoted_image() {
    let input =
        format!("{POD}  containers:\n  - name: a\n    image: &img \"quay.io/org/app:v1\"\n");
    assert_eq!(
        mirror_and_add(&input, &[]),
        format!(
            "{POD}  containers:\n  - name: a\n    image: &img \"mirror.example.com/quay.io/org/app:v1\"\n"
        )
    );
}

#[test]
fn anchor_on_single_quoted_image() {
    let input = format!("{POD}  containers:\n  - name: a\n    image: &img 'quay.io/org/app:v1'\n");
    assert_eq!(
        mirror_and_add(&input, &[]),
        format!(
            "{POD}  containers:\n  - name: a\n    image: &img 'mirror.example.com/quay.io/org/app:v1'\n"
        )
    );
}

#[test]
fn tag_on_image() {
    let input = format!("{POD}  containers:\n  - name: a\n    image: !!str quay.io/org/app:v1\n");
    assert_eq!(
        mirror_and_add(&input, &[]),
        format!(
            "{POD}  containers:\n  - name: a\n    image: !!str mirror.example.com/quay.io/org/app:v1\n"
        )
    );
}

#[test]
fn anchor_on_empty_flow_list() {
    let input =
        format!("{POD}  imagePullSecrets: &ps []\n  containers:\n  - name: a\n    image: nginx\n");
    assert_eq!(
        mirror_and_add(&input, &["regcred"]),
        format!(
            "{POD}  imagePullSecrets: &ps [{{name: regcred}}]\n  containers:\n  - name: a\n    image: mirror.example.com/docker.io/library/nginx\n"
        )
    );
}

#[test]
fn empty_flow_list_receiving_several_items() {
    let input =
        format!("{POD}  imagePullSecrets: []\n  containers:\n  - name: a\n    image: nginx\n");
    let out = mirror_and_add(&input, &["a", "b"]);
    assert!(
        out.contains("  imagePullSecrets: [{name: a}, {name: b}]\n"),
        "{out}"
    );
}

#[test]
fn flow_mapping_ending_in_implicit_null() {
    let input = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: nginx}], hostNetwork: }\n";
    assert_eq!(
        mirror_and_add(input, &["regcred"]),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: mirror.example.com/docker.io/library/nginx}], hostNetwork: , imagePullSecrets: [{name: regcred}] }\n"
    );
}

#[test]
fn flow_mapping_ending_in_bare_key() {
    let input = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: nginx}], enableServiceLinks}\n";
    assert_eq!(
        mirror_and_add(input, &["regcred"]),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: mirror.example.com/docker.io/library/nginx}], enableServiceLinks, imagePullSecrets: [{name: regcred}]}\n"
    );
}

#[test]
fn flow_mapping_with_trailing_comma() {
    assert_eq!(
        patch(
            "a: {b: 1,}\n",
            json!([{"op": "add", "path": "/a/c", "value": 2}])
        ),
        "a: {b: 1, c: 2,}\n"
    );
    assert_eq!(
        patch(
            "a: {b: 1,}\nd: 2\n",
            json!([{"op": "replace", "path": "/a", "value": {"c": 3}}])
        ),
        "a: {c: 3}\nd: 2\n"
    );
}

#[test]
fn implicit_null_replaced_by_scalar() {
    assert_eq!(
        patch(
            "spec:\n  serviceAccountName:\n  x: 1\n",
            json!([{"op": "replace", "path": "/spec/serviceAccountName", "value": "builder"}])
        ),
        "spec:\n  serviceAccountName: builder\n  x: 1\n"
    );
}

#[test]
fn implicit_null_replaced_by_list() {
    assert_eq!(
        patch(
            "spec:\n  imagePullSecrets:\n  x: 1\n",
            json!([{"op": "replace", "path": "/spec/imagePullSecrets", "value": [{"name": "a"}]}])
        ),
        "spec:\n  imagePullSecrets:\n  - name: a\n  x: 1\n"
    );
}

#[test]
fn block_scalar_image() {
    let input = format!(
        "{POD}  containers:\n  - name: a # the app\n    image: >-\n      quay.io/org/app:v1\n    imagePullPolicy: Always\n"
    );
    assert_eq!(
        mirror_and_add(&input, &[]),
        format!(
            "{POD}  containers:\n  - name: a # the app\n    image: mirror.example.com/quay.io/org/app:v1\n    imagePullPolicy: Always\n"
        )
    );
}

#[test]
fn replaced_collection_whose_last_leaf_is_a_block_scalar() {
    let out = patch(
        "a:\n  b: |\n    text\n  c: 1\nd: 2\n",
        json!([{"op": "replace", "path": "/a/b", "value": {"x": 1}}]),
    );
    assert_eq!(out, "a:\n  b:\n    x: 1\n  c: 1\nd: 2\n");
    let out = patch(
        "a:\n  b: |\n    text\nd: 2\n",
        json!([{"op": "add", "path": "/a/e", "value": 1}]),
    );
    assert_eq!(out, "a:\n  b: |\n    text\n  e: 1\nd: 2\n");
    let out = patch(
        "a:\n  b: |\n    text\nd: 2\n",
        json!([{"op": "replace", "path": "/a", "value": [1]}]),
    );
    assert_eq!(out, "a:\n- 1\nd: 2\n");
}

#[test]
fn nested_block_sequence_append() {
    let out = patch(
        "a:\n- - 1\n  - 2\n",
        json!([{"op": "add", "path": "/a/-", "value": [3]}, {"op": "add", "path": "/a/0/-", "value": 4}]),
    );
    assert_eq!(value(&out), json!({"a": [[1, 2, 4], [3]]}), "{out}");
    assert_eq!(out, "a:\n- - 1\n  - 2\n  - 4\n- - 3\n");
}

#[test]
fn explicit_key_mapping_gains_a_member() {
    assert_eq!(
        patch(
            "a:\n  ? b\n  : 1\n",
            json!([{"op": "add", "path": "/a/c", "value": 2}])
        ),
        "a:\n  ? b\n  : 1\n  c: 2\n"
    );
}

#[test]
fn wide_dash_item_becomes_a_mapping() {
    assert_eq!(
        patch(
            "a:\n-    x\n-    y\n",
            json!([{"op": "replace", "path": "/a/1", "value": {"k": 1, "l": [2]}}])
        ),
        "a:\n-    x\n-    k: 1\n     l:\n     - 2\n"
    );
}

#[test]
fn byte_order_mark_inside_a_value_is_escaped() {
    let out = patch(
        "a: x\n",
        json!([{"op": "replace", "path": "/a", "value": "x\u{feff}y\u{2028}"}]),
    );
    assert_eq!(out, "a: \"x\\uFEFFy\\u2028\"\n");
}

#[test]
fn long_key_is_written_as_an_explicit_key() {
    let key = "k".repeat(1100);
    let out = patch(
        "a:\n  b: 1\n",
        json!([{"op": "add", "path": "/a/long", "value": {&key: 1}}]),
    );
    assert_eq!(out, format!("a:\n  b: 1\n  long:\n    ? {key}\n    : 1\n"));
}

#[test]
fn alias_inside_a_flow_mapping_is_replaced_for_this_object_alone() {
    let input = "x: &c {name: a, image: nginx}\nspec: {containers: [*c]}\n";
    let out = patch(
        input,
        json!([{"op": "replace", "path": "/spec/containers/0/image", "value": "mirror/nginx"}]),
    );
    assert_eq!(
        out,
        "x: &c {name: a, image: nginx}\nspec: {containers: [{name: a, image: mirror/nginx}]}\n"
    );
}

#[test]
fn indented_root_document_rerendered() {
    // `remove` is never a splice: the document is re-rendered, at the
    // root's own indentation.
    let out = patch(
        "  a: 1\n  b:\n    c: 2\n",
        json!([{"op": "remove", "path": "/a"}]),
    );
    assert_eq!(out, "  b:\n    c: 2\n");
}

#[test]
fn crlf_line_endings_everywhere() {
    let input =
        format!("{POD}  containers:\n  - name: a\n    image: nginx\n").replace('\n', "\r\n");
    let out = mirror_and_add(&input, &["regcred"]);
    assert!(!out.replace("\r\n", "").contains('\n'), "{out:?}");
    assert!(
        out.contains("  imagePullSecrets:\r\n  - name: regcred\r\n"),
        "{out:?}"
    );
}

#[test]
fn cr_line_endings() {
    let input = format!("{POD}  containers:\n  - name: a\n    image: nginx\n").replace('\n', "\r");
    let out = mirror_and_add(&input, &["regcred"]);
    assert!(!out.contains('\n'), "{out:?}");
    assert_eq!(
        value(&out)["spec"]["imagePullSecrets"],
        json!([{"name": "regcred"}])
    );
}

#[test]
fn rerender_keeps_every_scalars_meaning() {
    let input = "a: 1\nhostNetwork: yes\ndefaultMode: 0644\ndate: \"2024-01-01\"\nnum: \"1_000\"\ns: \"on\"\n";
    let out = patch(input, json!([{"op": "remove", "path": "/a"}]));
    assert_eq!(
        value(&out),
        json!({"hostNetwork": true, "defaultMode": 420, "date": "2024-01-01", "num": "1_000", "s": "on"})
    );
    assert_eq!(
        out,
        "hostNetwork: true\ndefaultMode: 420\ndate: \"2024-01-01\"\nnum: \"1_000\"\ns: \"on\"\n"
    );
}

#[test]
fn comment_after_a_block_scalar_stays_on_its_line() {
    let out = patch(
        "a: 1\nb: >-\n  text\n# trailing comment\n",
        json!([{"op": "remove", "path": "/a"}]),
    );
    assert_eq!(out, "b: text\n# trailing comment\n");
}

#[test]
fn merge_key_image_is_rewritten_for_this_object_alone() {
    let input = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a}
  spec: &spec
    containers:
    - name: app
      image: quay.io/org/app:v1
- apiVersion: v1
  kind: Pod
  metadata: {name: b}
  spec:
    <<: *spec
    nodeName: n1
";
    let stream = Stream::parse("in.yaml", input.into(), Limits::default()).expect("parse");
    let b = &stream.documents()[0].value["items"][1];
    assert_eq!(b["spec"]["containers"][0]["image"], "quay.io/org/app:v1");
    // Only pod b changes: its image must not be changed through the
    // anchor that pod a owns.
    let out = patch(
        input,
        json!([{"op": "replace", "path": "/items/1/spec/containers/0/image", "value": "mirror/app:v1"}]),
    );
    assert_eq!(
        out,
        input.replace(
            "    nodeName: n1\n",
            "    nodeName: n1\n    containers:\n    - name: app\n      image: mirror/app:v1\n"
        )
    );
    let items = &value(&out)["items"];
    assert_eq!(
        items[0]["spec"]["containers"][0]["image"],
        "quay.io/org/app:v1"
    );
    assert_eq!(items[1]["spec"]["containers"][0]["image"], "mirror/app:v1");
}

#[test]
fn json_with_comments_is_an_error_with_a_location() {
    let text = "{\n  // a comment\n  \"apiVersion\": \"v1\"\n}\n";
    let e = Stream::parse("pod.json", text.into(), Limits::default()).expect_err("not JSON");
    assert_eq!((e.line, e.column > 0), (2, true), "{e}");
    assert!(e.to_string().contains("invalid JSON"), "{e}");
}

#[test]
fn tab_after_colon_reads_as_kubectl_reads_it() {
    assert_eq!(
        value("a:\tx\nb:\t\"y:\tz\"\n"),
        json!({"a": "x", "b": "y:\tz"})
    );
}

#[test]
fn implicit_null_after_a_tag_replaced() {
    // Found by the diff fuzz target: the value goes after the tag.
    assert_eq!(
        patch(
            "a: !custom\nb: 1\n",
            json!([{"op": "replace", "path": "/a", "value": "v"}])
        ),
        "a: !custom v\nb: 1\n"
    );
    // A custom tag makes a scalar a string to kubectl: a number written
    // after it would not read back as a number, so the document is
    // re-rendered without the tag.
    assert_eq!(
        patch(
            "a: !custom\nb: 1\n",
            json!([{"op": "replace", "path": "/a", "value": 5}])
        ),
        "a: 5\nb: 1\n"
    );
    assert_eq!(
        patch(
            "x: {a: !t , b}\n",
            json!([{"op": "replace", "path": "/x/a", "value": "v"}, {"op": "replace", "path": "/x/b", "value": "w"}])
        ),
        "x: {a: !t v , b: w}\n"
    );
}

#[test]
fn tagged_root_rerendered_from_its_line_start() {
    // Found by the diff fuzz target: `! a: 1` puts a tag before the root
    // mapping's first key; the re-render starts at the line, not after it.
    let out = patch(
        "! a: 1\nb: 2\nc: 3\n",
        json!([{"op": "remove", "path": "/b"}]),
    );
    assert_eq!(value(&out), json!({"a": 1, "c": 3}), "{out}");
    assert_eq!(out, "a: 1\nc: 3\n");
}
