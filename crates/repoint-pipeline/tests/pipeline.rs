//! The pipeline as a library, without the binary: files in, an
//! evaluation, every output format, findings and their status.

use std::path::{Path, PathBuf};

use repoint_pipeline::evaluate::{self, Options};
use repoint_pipeline::krm::{self, ResourceList};
use repoint_pipeline::render::{self, Renderer};
use repoint_pipeline::report::{Level, Status};
use repoint_pipeline::{Error, Settings, chain, input, kustomize};
use repoint_tests::{MIRROR_AND_SECRETS as MIRROR, documents, temp_dir};

const POD: &str = "# the web pod
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: team}
spec:
  containers:
  - name: app
    image: nginx:1.25   # pinned
";

const UNTOUCHED: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: c}
data: {k: v}
";

fn offline() -> Options {
    Options {
        settings: Settings {
            offline: true,
            no_cache: true,
            jobs: Some(2),
            ..Settings::default()
        },
        ..Options::default()
    }
}

/// A directory with the config and two manifests.
fn project(tag: &str, config: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("repoint.yaml"), config).expect("config");
    std::fs::write(dir.join("token.txt"), "s3cr3t-value\n").expect("token");
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    std::fs::write(manifests.join("pod.yaml"), POD).expect("pod");
    std::fs::write(manifests.join("cm.yaml"), UNTOUCHED).expect("cm");
    (dir.join("repoint.yaml"), manifests)
}

/// The test project's manifests evaluated, keeping what `retain` says.
fn evaluated(tag: &str, retain: evaluate::Retain) -> (evaluate::Evaluated, PathBuf) {
    let (config, manifests) = project(tag, MIRROR);
    let ev = evaluate::files(
        &config,
        std::slice::from_ref(&manifests),
        &offline(),
        retain,
    )
    .expect("evaluation");
    (ev, manifests)
}

fn yaml_of(ev: &evaluate::Evaluated) -> String {
    let mut out = Vec::new();
    let mut renderer = Renderer::new(ev, 2);
    render::yaml(&mut out, ev, &mut renderer).expect("yaml");
    assert!(renderer.findings().iter().all(|f| f.level != Level::Error));
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn files_are_read_in_path_order_and_changed_only_where_the_chain_says() {
    let (ev, _) = evaluated("pipeline-yaml", evaluate::Retain::Results);
    let names: Vec<&str> = ev.files.iter().map(|f| f.stream.name()).collect();
    assert!(
        names[0].ends_with("cm.yaml") && names[1].ends_with("pod.yaml"),
        "{names:?}"
    );
    let text = yaml_of(&ev);
    // The comments and the layout stay; only the image and the pull
    // secret change; the generated Secret follows the inputs.
    assert!(text.contains("# the web pod"), "{text}");
    assert!(
        text.contains("image: mirror.corp/hub/library/nginx:1.25   # pinned"),
        "{text}"
    );
    assert!(text.contains("imagePullSecrets"), "{text}");
    let docs = documents(&text);
    assert_eq!(docs.len(), 3, "{text}");
    assert_eq!(docs[2]["kind"], "Secret");
    assert_eq!(docs[2]["metadata"]["namespace"], "team");
    assert!(ev.warnings.is_empty());
}

#[test]
fn findings_and_status_follow_the_changes() {
    let (ev, _) = evaluated("pipeline-findings", evaluate::Retain::Results);
    assert!(
        ev.findings
            .iter()
            .any(|f| f.level == Level::Change && f.kind.as_deref() == Some("Pod") && f.line >= 2)
    );
    // A change is the point of `run` and a finding for `check`.
    assert_eq!(Status::of(&ev.findings, false), Status::Clean);
    assert_eq!(Status::of(&ev.findings, true), Status::Findings);
    assert_eq!(Status::Findings.code(), 1);
    assert_eq!(Status::Error.code(), 2);
}

#[test]
fn json_patch_listing_and_diff_never_show_the_credential() {
    let (ev, _) = evaluated("pipeline-patches", evaluate::Retain::Results);
    let listing = render::json_patches(&ev);
    let entries = listing.as_array().expect("array");
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "Pod" && e["document"] == 0)
    );
    let secret = entries
        .iter()
        .find(|e| e["file"].is_null())
        .expect("generated");
    assert_eq!(secret["patch"][0]["op"], "add");
    let mut diff = Vec::new();
    render::diff(&mut diff, &ev, &mut Renderer::new(&ev, 1)).expect("diff");
    let diff = String::from_utf8(diff).expect("utf-8");
    assert!(
        diff.contains("+    image: mirror.corp/hub/library/nginx:1.25"),
        "{diff}"
    );
    for shown in [listing.to_string(), diff] {
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(!shown.contains(&base64_of("robot:s3cr3t-value")), "{shown}");
    }
    // The manifests do carry it: that is where it belongs.
    assert!(yaml_of(&ev).contains("kind: Secret"));
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn json_output_is_a_list_of_the_patched_objects() {
    let (ev, _) = evaluated("pipeline-json", evaluate::Retain::Results);
    let mut out = Vec::new();
    render::json(&mut out, &ev, &mut Renderer::new(&ev, 2)).expect("json");
    let list: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert_eq!(
        items[1]["spec"]["containers"][0]["image"],
        "mirror.corp/hub/library/nginx:1.25"
    );
}

#[test]
fn in_place_rewrites_only_the_changed_file_with_its_generated_objects() {
    let (ev, manifests) = evaluated("pipeline-in-place", evaluate::Retain::Results);
    let mut renderer = Renderer::new(&ev, 2);
    let texts: Vec<_> = std::iter::from_fn(|| renderer.next_file()).collect();
    assert_eq!(
        render::write_in_place(&ev, &texts).expect("write"),
        vec![manifests.join("pod.yaml")]
    );
    assert_eq!(
        std::fs::read_to_string(manifests.join("cm.yaml")).expect("cm"),
        UNTOUCHED
    );
    let pod = std::fs::read_to_string(manifests.join("pod.yaml")).expect("pod");
    assert!(pod.starts_with("# the web pod\n"), "{pod}");
    assert_eq!(documents(&pod).len(), 2, "{pod}");
}

#[test]
fn the_overlay_names_the_inputs_and_renames_through_images() {
    let (ev, manifests) = evaluated("pipeline-overlay", evaluate::Retain::Everything);
    let dir = manifests.parent().expect("parent").join("overlay");
    kustomize::write(&dir, &kustomize::overlay(&ev).expect("overlay")).expect("write");
    let kustomization =
        std::fs::read_to_string(dir.join("kustomization.yaml")).expect("kustomization");
    assert!(
        kustomization.contains("../manifests/pod.yaml"),
        "{kustomization}"
    );
    assert!(
        kustomization.contains("newName: mirror.corp/hub/library/nginx"),
        "{kustomization}"
    );
    // A directory holding someone else's kustomization is refused.
    let theirs = temp_dir("pipeline-overlay-theirs");
    std::fs::write(theirs.join("kustomization.yaml"), "resources: []\n").expect("write");
    let refused = kustomize::write(&theirs, &kustomize::overlay(&ev).expect("overlay"));
    assert!(matches!(refused, Err(Error::Overlay(_))), "{refused:?}");
}

#[test]
fn a_resource_list_comes_back_with_its_items_changed_and_results() {
    let list = format!(
        "apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems:\n- {}\nfunctionConfig:\n{}",
        "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: c, image: nginx}]}}",
        MIRROR
            .replace(
                "credentials:\n- {registry: mirror.corp, username: robot, passwordFile: token.txt}\n",
                "missingCredentials: warn\n"
            )
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    let options = offline();
    let list =
        ResourceList::parse(list, options.limits, 1, temp_dir("pipeline-krm")).expect("list");
    let chain = chain::build(&list.config, &options.settings, false).expect("chain");
    let ev = evaluate::streams(&list.config, &chain, vec![(None, list.stream)], &options)
        .expect("evaluation");
    let out = krm::output(&ev).expect("output");
    let value = &documents(&out)[0];
    assert_eq!(
        value["items"][0]["spec"]["containers"][0]["image"],
        "mirror.corp/hub/library/nginx"
    );
    // The left-out credential is a warning result, not an error.
    let results = value["results"].as_array().expect("results");
    assert!(results.iter().any(|r| {
        r["severity"] == "warning"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("mirror.corp"))
    }));
}

#[test]
fn a_resource_list_that_is_not_one_says_what_it_found() {
    let wrong = "apiVersion: v1\nkind: List\nitems: []\n".to_string();
    let e = ResourceList::parse(wrong, Default::default(), 1, PathBuf::from("."))
        .expect_err("not a ResourceList");
    assert!(matches!(e, Error::ResourceList(_)));
    assert!(
        e.to_string()
            .contains("found apiVersion \"v1\", kind \"List\""),
        "{e}"
    );
}

#[test]
fn input_errors_name_the_path_and_keep_their_cause() {
    let missing = Path::new("/nonexistent/repoint/input.yaml");
    match input::read_all(&[missing.to_path_buf()], 1 << 20) {
        Err(Error::NoSuchInput(p)) => assert_eq!(p, missing),
        other => panic!("{other:?}"),
    }
    let dir = temp_dir("pipeline-utf8");
    std::fs::write(dir.join("bad.yaml"), [0xff, 0xfe, b'\n']).expect("write");
    let e = input::read_all(&[dir.join("bad.yaml")], 1 << 20).expect_err("not UTF-8");
    assert!(e.to_string().ends_with("bad.yaml is not UTF-8"), "{e}");
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn bad_settings_fail_before_any_input_is_read_and_point_at_the_config() {
    let (config, _) = project(
        "pipeline-settings",
        "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: mirror\n  module: builtin:registry-mirror\n  settings: {rules: []}\n",
    );
    let e = evaluate::files(
        &config,
        &[PathBuf::from("/nonexistent/input.yaml")],
        &offline(),
        evaluate::Retain::Results,
    )
    .expect_err("bad settings");
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    let message = e.to_string();
    assert!(message.contains("policies[0].settings"), "{message}");
    assert!(message.contains(":6"), "{message}");
}

#[test]
fn settings_fill_in_from_the_config_and_the_defaults() {
    let config = repoint_config::Config::parse(
        "c",
        "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies: []\nlimits: {timeout: 250ms}\n"
            .into(),
        PathBuf::from("."),
    )
    .expect("config");
    let options = Settings {
        jobs: Some(3),
        memory: Some(1 << 20),
        ..Settings::default()
    }
    .runtime_options(&config);
    assert_eq!(options.timeout, std::time::Duration::from_millis(250));
    assert_eq!(options.memory, 1 << 20);
    assert_eq!(
        options.concurrency,
        repoint_core::evaluation::instance_slots(3)
    );
    assert_eq!(
        Settings {
            jobs: Some(0),
            ..Settings::default()
        }
        .jobs(),
        1
    );
}

/// A stream whose writing depends on more than each document: the first
/// Pod shows no block list of its own, so the list it gains is indented
/// like the second Pod's (a later document); a ServiceAccount gains the
/// pull secret after every Pod is evaluated; a Pod named in flow style
/// changes too; a ConfigMap passes through.
const NEIGHBOURS: &str = "apiVersion: v1
kind: Pod
metadata:
    name: first
    namespace: team
spec:
    containers: [{name: app, image: nginx:1.25}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: team}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c, namespace: team}
data: {k: v}
---
apiVersion: v1
kind: Pod
metadata:
    name: second
    namespace: team
spec:
    containers:
        -   name: app
            image: redis:7.2
---
{apiVersion: v1, kind: Pod, metadata: {name: third, namespace: other}, spec: {containers: [{name: a, image: busybox}]}}
";

/// What `run` writes for `inputs` (its YAML, its findings but changes,
/// the generated objects).
fn run_output(
    config: &Path,
    inputs: &[PathBuf],
    retain: evaluate::Retain,
    window: usize,
) -> String {
    let options = Options {
        window,
        ..offline()
    };
    let ev = evaluate::files(config, inputs, &options, retain).expect("evaluation");
    let mut out = Vec::new();
    let mut renderer = Renderer::new(&ev, 2);
    render::yaml(&mut out, &ev, &mut renderer).expect("yaml");
    let mut text = String::from_utf8(out).expect("utf-8");
    for f in renderer
        .findings()
        .iter()
        .filter(|f| f.level != Level::Change)
    {
        text.push_str(&format!("\n# {f:?}"));
    }
    text
}

#[test]
fn documents_written_window_by_window_come_out_as_written_all_at_once() {
    // Pull secrets on the Pods, and on their ServiceAccounts (patched
    // after every Pod is evaluated, in the input or as new documents).
    let on_accounts = MIRROR.replace(
        "registries: [mirror.corp]}",
        "registries: [mirror.corp], serviceAccount: true}",
    );
    for (tag, config) in [("pods", MIRROR), ("accounts", on_accounts.as_str())] {
        let (config, manifests) = project(&format!("pipeline-windows-{tag}"), config);
        std::fs::write(manifests.join("neighbours.yaml"), NEIGHBOURS).expect("write");
        let mut inputs = vec![manifests];
        inputs.extend(repoint_tests::corpus_files());
        // Every document kept to the end, as check and the JSON Patch
        // listing keep them: the reference.
        let whole = run_output(&config, &inputs, evaluate::Retain::Results, usize::MAX);
        assert!(
            whole.contains("mirror.corp/hub/library/redis:7.2"),
            "{whole}"
        );
        if tag == "pods" {
            assert!(
                whole.contains("spec:\n    containers: [{name: app, image: mirror.corp/hub/library/nginx:1.25}]\n    imagePullSecrets:\n        - name: mirror-pull\n"),
                "the first Pod's new list is indented like the second's: {whole}"
            );
        } else {
            assert!(
                whole.contains("kind: ServiceAccount\nmetadata: {name: default, namespace: team}\nimagePullSecrets:"),
                "{whole}"
            );
        }
        for window in [1, 2, 7, 512] {
            let streamed = run_output(&config, &inputs, evaluate::Retain::Output, window);
            assert!(
                streamed == whole,
                "{tag}, window of {window}: {}",
                similar::TextDiff::from_lines(&whole, &streamed).unified_diff()
            );
        }
    }
}

#[test]
fn a_bad_document_in_a_later_window_fails_the_run_and_says_where() {
    let (config, manifests) = project("pipeline-windows-bad", MIRROR);
    // The bad document is read windows after the first are evaluated: the
    // run still fails as a whole, at its file, document and line.
    let mut text = NEIGHBOURS.to_string();
    text.push_str("---\napiVersion: v1\nkind: Pod\nmetadata: {name: bad\n");
    std::fs::write(manifests.join("neighbours.yaml"), &text).expect("write");
    for window in [1, 2, 512] {
        let options = Options {
            window,
            ..offline()
        };
        let e = evaluate::files(
            &config,
            std::slice::from_ref(&manifests),
            &options,
            evaluate::Retain::Output,
        )
        .expect_err("a bad document");
        let Error::Document(e) = &e else {
            panic!("window of {window}: {e:?}");
        };
        assert!(e.file.ends_with("neighbours.yaml"), "{e}");
        assert_eq!(e.document, 5, "window of {window}: {e}");
        let bad_line = text.lines().count();
        assert!(
            e.line >= bad_line - 1 && e.line <= bad_line + 1,
            "window of {window}: {e}"
        );
    }
}

#[test]
fn findings_handed_out_window_by_window_are_those_kept_to_the_end() {
    // A policy that warns on nearly every object: a long run holds none
    // of the warnings when they are handed out as each window is done.
    let warn = "apiVersion: repoint.dev/v1alpha1
kind: Config
policies:
- name: allowed
  module: builtin:allowed-registries
  settings: {allow: [mirror.corp], denyLatest: false, enforcement: warn}
";
    let (config, manifests) = project("pipeline-reported", warn);
    std::fs::write(manifests.join("neighbours.yaml"), NEIGHBOURS).expect("write");
    let mut inputs = vec![manifests];
    inputs.extend(repoint_tests::corpus_files());
    let kept = evaluate::files(&config, &inputs, &offline(), evaluate::Retain::Results)
        .expect("evaluation")
        .findings;
    let kept: Vec<String> = kept
        .iter()
        .filter(|f| f.level != Level::Change)
        .map(|f| format!("{f:?}"))
        .collect();
    assert!(kept.len() > 10, "{}: {kept:?}", kept.len());
    for window in [1, 7, 512] {
        let options = Options {
            window,
            ..offline()
        };
        let mut reported = Vec::new();
        let ev = evaluate::files_reporting(
            &config,
            &inputs,
            &options,
            evaluate::Retain::Output,
            &mut |f| reported.push(format!("{f:?}")),
        )
        .expect("evaluation");
        assert!(ev.findings.is_empty(), "window of {window}");
        assert!(reported == kept, "window of {window}: {}", {
            let (kept, reported) = (kept.join("\n"), reported.join("\n"));
            similar::TextDiff::from_lines(&kept, &reported)
                .unified_diff()
                .to_string()
        });
    }
}
