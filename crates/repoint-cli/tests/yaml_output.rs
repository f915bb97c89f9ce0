//! What the CLI writes from YAML as users write it (issue 16): merge keys
//! cannot hide an image from any command, line endings are the file's own
//! everywhere, `.json` files are JSON, and exit codes survive a reader
//! that stops early.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use repoint_tests::{Output, repo_root, run_command, temp_dir};
use serde_json::Value;

fn repoint(args: &[&str], stdin: &str) -> Output {
    run_command(Path::new(env!("CARGO_BIN_EXE_repoint")), args, stdin)
}

fn example_config() -> String {
    repo_root()
        .join("examples/repoint.yaml")
        .display()
        .to_string()
}

fn allowed_config(dir: &Path) -> String {
    let path = dir.join("allowed.yaml");
    std::fs::write(
        &path,
        "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: allowed\n  module: builtin:allowed-registries\n  settings: {allow: [mirror.corp.example]}\n",
    )
    .expect("write config");
    path.display().to_string()
}

/// A Deployment whose pod template takes its containers from an anchor in
/// another object of the list, through a merge key.
const MERGED: &str = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: shared}
  data:
    note: the template below is shared
  x-template: &podspec
    containers:
    - name: app
      image: quay.io/org/app:v1
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web}
  spec:
    selector: {matchLabels: {app: web}}
    template:
      metadata: {labels: {app: web}}
      spec:
        <<: *podspec
        hostNetwork: false
";

#[test]
fn merge_keys_hide_no_image_from_images_check_or_run() {
    let out = repoint(&["images", "-"], MERGED);
    assert!(
        out.stdout.contains("quay.io/org/app:v1"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );

    let dir = temp_dir("merge-check");
    let out = repoint(
        &["check", "-c", &allowed_config(dir.as_path()), "-"],
        MERGED,
    );
    assert_eq!(
        out.code, 1,
        "a denied image behind a merge fails the check: {out:?}"
    );
    assert!(out.stdout.contains("quay.io/org/app:v1"), "{}", out.stdout);

    let out = repoint(&["run", "-c", &example_config(), "-o", "json", "-"], MERGED);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !out.stdout.contains("\"<<\""),
        "no merge key in JSON: {}",
        out.stdout
    );
    // The input List, then the generated Secret, in a List.
    let list: Value = serde_json::from_str(&out.stdout).expect("json");
    let items = list["items"][0]["items"].as_array().expect("items");
    let deployment = items
        .iter()
        .find(|i| i["kind"] == "Deployment")
        .expect("deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "mirror.corp.example/quay/org/app:v1"
    );

    // In YAML, the Deployment gets explicit containers after its merge;
    // the anchor, which the ConfigMap owns, is left alone.
    let out = repoint(&["run", "-c", &example_config(), "-"], MERGED);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("      image: quay.io/org/app:v1\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "        hostNetwork: false\n        containers:\n        - name: app\n          image: mirror.corp.example/quay/org/app:v1\n"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn in_place_keeps_crlf_line_endings_in_every_line_it_writes() {
    let dir = temp_dir("crlf");
    let path = dir.as_path().join("pod.yaml");
    let input = "apiVersion: v1\r\nkind: Pod\r\nmetadata:\r\n  name: p\r\n  namespace: shop\r\nspec:\r\n  containers:\r\n  - name: a\r\n    image: nginx\r\n";
    std::fs::write(&path, input).expect("write");
    let out = repoint(
        &[
            "run",
            "-c",
            &example_config(),
            "--in-place",
            &path.display().to_string(),
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let written = std::fs::read_to_string(&path).expect("read");
    assert!(
        written.contains("kind: Secret\r\n"),
        "the generated Secret follows: {written:?}"
    );
    assert!(
        written.contains("  imagePullSecrets:\r\n  - name: corp-registry\r\n"),
        "{written:?}"
    );
    assert!(
        !written.replace("\r\n", "").contains('\n'),
        "a bare LF: {written:?}"
    );
}

#[test]
fn a_json_file_with_comments_is_an_error_naming_the_line() {
    let dir = temp_dir("json-comments");
    let path = dir.as_path().join("pod.json");
    std::fs::write(
        &path,
        "{\n  \"apiVersion\": \"v1\",\n  // the kind\n  \"kind\": \"Pod\"\n}\n",
    )
    .expect("write");
    let out = repoint(
        &["run", "-c", &example_config(), &path.display().to_string()],
        "",
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("pod.json: document 0 (line 3"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("invalid JSON"), "{}", out.stderr);
}

/// Run repoint with its standard output already closed at the other end,
/// so every write fails with a broken pipe; the exit code and stderr.
fn with_closed_stdout(args: &[&str], stdin: &str) -> (i32, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = Command::new(env!("CARGO_BIN_EXE_repoint"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        let _ = input.write_all(stdin.as_bytes());
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("wait");
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn check_keeps_its_exit_code_when_stdout_closes_early() {
    let dir = temp_dir("closed-pipe");
    let denied = "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers:\n  - {name: a, image: nginx}\n";
    let config = allowed_config(dir.as_path());
    for format in ["text", "json", "sarif", "github"] {
        let (code, stderr) =
            with_closed_stdout(&["check", "-c", &config, "--format", format, "-"], denied);
        assert_eq!(
            code, 1,
            "check --format {format} behind a closed pipe: {stderr}"
        );
    }
    // A run with nothing to report ends quietly.
    let (code, stderr) = with_closed_stdout(
        &["run", "-c", &example_config(), "-o", "json", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: nginx}\n",
    );
    assert_eq!((code, stderr.as_str()), (0, ""));
}
