//! Differential test against the real kubectl: repoint must read every
//! scalar and shape as kubectl does, and what repoint writes (a minimal
//! edit or a re-rendered document) must mean to kubectl exactly the value
//! repoint says it wrote.
//!
//! kubectl's reading is taken from `kubectl annotate --local -f FILE -o
//! json`: `--local` runs no request, but the file goes through the same
//! resource builder as `kubectl apply` and `kubectl create` (a
//! FileVisitor with apimachinery's YAMLOrJSONDecoder, which is
//! sigs.k8s.io/yaml's go-yaml v2 conversion to JSON, then unstructured
//! decoding). The annotation the command adds is taken out again before
//! comparing.
//!
//! Runs when kubectl is on PATH, and must run when
//! `REPOINT_REQUIRE_KUBECTL` is set (as CI sets it).

use std::path::Path;
use std::process::Command;

use repoint_core::actions::Action;
use repoint_core::document::first_difference;
use repoint_core::patch::PatchOp;
use repoint_core::{Limits, Stream};
use repoint_tests::{mirror_actions, plan_stream, program_or_skip};
use serde_json::{Value, json};

const PROBE: &str = "repoint.test/kubectl-reading";

/// Each case is the body of a ConfigMap's `data2` field (a field kubectl
/// does not know, so it keeps any shape).
const CASES: &[&str] = &[
    // YAML 1.1 booleans and nulls.
    "{a: yes, b: Yes, c: YES, d: y, e: Y, f: n, g: No, h: on, i: On, j: OFF, k: off, l: True, m: FALSE, n: oN}",
    "{a: ~, b: null, c: Null, d: NULL, e: , f: nULL}",
    // Integers in Go's literal syntax, underscores dropped.
    "{a: 0644, b: 0o17, c: 0x1F, d: 0X1f, e: 0b101, f: -0b101, g: 1_000, h: 1__0, i: +12, j: -0, k: 00, l: 0_7}",
    // Floats, and what JSON makes of them.
    "{a: 080, b: 08, c: 09.5, d: 1e3, e: 1E3, f: 1.0, g: 1., h: .5, i: -.5, j: 1e400, k: 1e+21, l: 0.1e1, m: 1.5e-7}",
    // Integers beyond int64.
    "{a: 9223372036854775807, b: 9223372036854775808, c: -9223372036854775808, d: -9223372036854775809, e: 12345678901234567890, f: 18446744073709551616}",
    // Strings that look like something else.
    "{a: 2024-01-01, b: 2001-12-14t21:59:43.10-05:00, c: '2024-01-01', d: 1:20, e: 1.2.3, f: \"1_000\", g: '0644', h: \"yes\", i: 127.0.0.1:5000/app, j: -x, k: +x, l: .x, m: 0x, n: 1e}",
    // Tags.
    "{a: !!str 0644, b: !!int \"12\", c: !!float 1, d: !!bool \"true\", e: !!binary aGVsbG8=, f: !custom 12, g: !!str yes, h: !!timestamp 2001-01-01, i: !!null ''}",
    // Quoted scalars and escapes.
    "{a: \"t\\tx\", b: \"\\u00e9\\x41\", c: \"\\N\\_\", d: 'it''s', e: \"multi\n  line\", f: 'single\n\n  gap'}",
    // Keys.
    "{y: 1, 1: one, 1.5: f, 0x10: hex, 1e6: big, False: t, '<<': quoted, \"yes\": q, 0.00001: small}",
    // Merges: one alias, a list (the first wins), an inline mapping, and
    // the order go-yaml v2 applies them in.
    "{base: &b {x: 1, y: 2}, other: &o {y: 3, z: 4}, m1: {<<: *b}, m2: {<<: [*b, *o]}, m3: {<<: [*o, *b]}, m4: {<<: {q: 1}, q: 2}, m5: {x: 9, <<: *b}, m6: {<<: *b, x: 9}}",
    // Anchors and aliases of scalars and collections.
    "{a: &s text, b: *s, c: &l [1, 2], d: *l, e: &m {k: v}, f: [*m, *m]}",
    // Flow shapes: implicit nulls, bare keys, trailing commas.
    "{a: {b: , c}, d: [1, 2,], e: {f: 1,}, g: [{h: 1}, {i}]}",
];

/// Block-style cases (the text under `data2:`, indented by two).
const BLOCK_CASES: &[&str] = &[
    "  lit: |\n    a\n     b\n  keep: |+\n    c\n\n  strip: >-\n    d\n    e\n\n    f\n  plain: g\n    h\n",
    "  ? explicit\n  : value\n  ? other\n",
    "  tab:\tvalue\n  tabs:\t\t'q'\n",
    "  list:\n  - a\n  -   b\n  - - c\n    - d\n  -\n",
    "  base: &base\n    containers:\n    - name: a\n      image: quay.io/org/app:v1\n  merged:\n    <<: *base\n    nodeName: n1\n",
];

fn kubectl() -> Option<std::path::PathBuf> {
    program_or_skip("kubectl", "REPOINT_REQUIRE_KUBECTL")
}

fn configmap(i: usize, body: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\ndata2: {body}\n")
}

fn block_configmap(i: usize, body: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b{i}\ndata2:\n{body}")
}

/// kubectl's reading of a file: the objects, in order, without the probe
/// annotation; or kubectl's error.
fn kubectl_reads(kubectl: &Path, dir: &Path, name: &str, text: &str) -> Result<Vec<Value>, String> {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write case");
    let out = Command::new(kubectl)
        .args(["annotate", "--local", "-o", "json", "-f"])
        .arg(&path)
        .arg(format!("{PROBE}=1"))
        .output()
        .expect("run kubectl");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    // One JSON object per input object, one after the other.
    let mut items: Vec<Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("kubectl prints JSON");
    for item in &mut items {
        let metadata = item["metadata"].as_object_mut().expect("metadata");
        let annotations = metadata["annotations"]
            .as_object_mut()
            .expect("annotations");
        annotations.remove(PROBE);
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
    Ok(items)
}

fn repoint_reads(name: &str, text: &str) -> Result<Vec<Value>, String> {
    let stream =
        Stream::parse(name, text.to_string(), Limits::default()).map_err(|e| e.to_string())?;
    Ok(stream
        .documents()
        .iter()
        .map(|d| d.value.clone())
        .filter(|v| !v.is_null())
        .collect())
}

fn assert_same(what: &str, text: &str, kubectl: &[Value], repoint: &[Value]) {
    assert_eq!(kubectl.len(), repoint.len(), "{what}: object count\n{text}");
    for (k, r) in kubectl.iter().zip(repoint) {
        if let Some(at) = first_difference(k, r) {
            panic!(
                "{what}: kubectl and repoint differ at {at}\n--- text\n{text}\n--- kubectl\n{k:#}\n--- repoint\n{r:#}"
            );
        }
    }
}

fn all_cases() -> String {
    let mut text = String::new();
    for (i, case) in CASES.iter().enumerate() {
        text.push_str("---\n");
        text.push_str(&configmap(i, case));
    }
    for (i, case) in BLOCK_CASES.iter().enumerate() {
        text.push_str("---\n");
        text.push_str(&block_configmap(i, case));
    }
    text
}

#[test]
fn repoint_reads_every_case_as_kubectl_does() {
    let Some(kubectl) = kubectl() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    // One case a file, so a difference names its case.
    for (i, case) in CASES.iter().enumerate() {
        let text = configmap(i, case);
        let k = kubectl_reads(&kubectl, dir.path(), "case.yaml", &text).expect("kubectl reads it");
        let r = repoint_reads("case.yaml", &text).expect("repoint reads it");
        assert_same(&format!("case {i}"), &text, &k, &r);
    }
    for (i, case) in BLOCK_CASES.iter().enumerate() {
        for newline in ["\n", "\r\n"] {
            let text = block_configmap(i, case).replace('\n', newline);
            let k =
                kubectl_reads(&kubectl, dir.path(), "case.yaml", &text).expect("kubectl reads it");
            let r = repoint_reads("case.yaml", &text).expect("repoint reads it");
            assert_same(&format!("block case {i} ({newline:?})"), &text, &k, &r);
        }
    }
}

/// Where kubectl refuses a document, repoint refuses it too.
#[test]
fn what_kubectl_refuses_repoint_refuses() {
    let Some(kubectl) = kubectl() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    for (i, body) in [
        "{a: .inf}",
        "{a: -.Inf}",
        "{a: .nan}",
        "{~: a}",
        "{m: {<<: 1}}",
        "{m: {<<: [1]}}",
        "{a: !!int x}",
        "{? [complex] : no}",
    ]
    .iter()
    .enumerate()
    {
        let text = configmap(i, body);
        let k = kubectl_reads(&kubectl, dir.path(), "bad.yaml", &text);
        assert!(k.is_err(), "kubectl accepted {body}: {k:?}");
        let r = repoint_reads("bad.yaml", &text);
        assert!(r.is_err(), "repoint accepted {body}: {r:?}");
    }
}

/// The one difference the README states: kubectl lets a repeated key's
/// last value win; repoint refuses the document, naming the key, rather
/// than guess which one its author meant.
#[test]
fn duplicate_keys_are_the_stated_difference() {
    let Some(kubectl) = kubectl() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let text = configmap(0, "{a: 1, a: 2}");
    let k = kubectl_reads(&kubectl, dir.path(), "dup.yaml", &text).expect("kubectl reads it");
    assert_eq!(k[0]["data2"], json!({"a": 2}));
    let e = repoint_reads("dup.yaml", &text).expect_err("repoint refuses");
    assert!(e.contains("duplicate mapping key \"a\""), "{e}");
}

/// A re-rendered document (every case is re-rendered by a `remove`, which
/// is never a splice) means to kubectl what repoint says it does.
#[test]
fn rerendered_documents_mean_the_same_to_kubectl() {
    let Some(kubectl) = kubectl() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let text = all_cases();
    let stream = Stream::parse("all.yaml", text.clone(), Limits::default()).expect("parse");
    let changes: Vec<(usize, Vec<PatchOp>)> = stream
        .documents()
        .iter()
        .filter(|d| !d.value.is_null())
        .map(|d| {
            let op: PatchOp =
                serde_json::from_value(json!({"op": "remove", "path": "/metadata/name"}))
                    .expect("op");
            let add = PatchOp::add("/metadata/name", d.value["metadata"]["name"].clone());
            (d.index, vec![op, add])
        })
        .collect();
    let out = stream.render(&changes).expect("render").into_owned();
    assert_ne!(out, text, "every document was re-rendered");
    let expected = repoint_reads("all.yaml", &text).expect("repoint reads the cases");
    let k = kubectl_reads(&kubectl, dir.path(), "rerendered.yaml", &out)
        .expect("kubectl reads the output");
    assert_same("re-rendered", &out, &k, &expected);
}

/// Minimal edits (mirror every image, add pull secrets) on manifests in
/// many styles: kubectl reads the output as the patched value.
#[test]
fn minimal_edits_mean_the_chains_change_to_kubectl() {
    let Some(kubectl) = kubectl() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n";
    let shapes = [
        format!(
            "{pod}spec:\n  containers:\n  - name: a\n    image: &img \"quay.io/org/app:v1\"\n  - name: b\n    image: *img\n"
        ),
        format!(
            "{pod}spec:\n  imagePullSecrets: &ps []\n  containers:\n  - {{name: a, image: 'nginx'}}\n"
        ),
        format!("{pod}spec: {{containers: [{{name: a, image: nginx}}], hostNetwork: }}\n"),
        format!("{pod}spec: {{containers: [{{name: a, image: nginx}}], enableServiceLinks}}\n"),
        format!(
            "{pod}spec:\n  containers:\n  - name: a\n    image: >-\n      quay.io/org/app:v1\n"
        ),
        format!(
            "{pod}spec:\n  containers:\n  -   name: a\n      image: !!str nginx:1.25\n  initContainers:\n  - image: busybox\n    name: init\n"
        ),
        format!(
            "{pod}x: &base\n  containers:\n  - name: a\n    image: nginx\nspec:\n  <<: *base\n  hostNetwork: yes\n"
        ),
        format!("{pod}spec:\n  containers:\n  - name: a\n    image: nginx\n").replace('\n', "\r\n"),
        format!(
            "  {}",
            format!("{pod}spec:\n  containers:\n  - name: a\n    image: nginx\n")
                .replace('\n', "\n  ")
                .trim_end()
        ),
    ];
    let secrets = [
        Action::AddPullSecret("a".into()),
        Action::AddPullSecret("b".into()),
    ];
    for (i, input) in shapes.iter().enumerate() {
        let stream = Stream::parse("in.yaml", input.clone(), Limits::default()).expect("parse");
        let changes = plan_stream(&stream, &[], |sites| mirror_actions(sites, &secrets));
        let mut expected = stream.documents()[0].value.clone();
        repoint_core::patch::apply(&mut expected, &changes[0].1).expect("apply");
        let out = stream.render(&changes).expect("render").into_owned();
        let k = kubectl_reads(&kubectl, dir.path(), "edited.yaml", &out).expect("kubectl reads it");
        assert_same(&format!("shape {i}"), &out, &k, &[expected]);
    }
}
