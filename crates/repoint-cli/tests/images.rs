//! `repoint images` end to end: the real binary on the corpus, on stdin,
//! and on bad input.

use std::path::Path;

use repoint_tests::{Output, corpus_files, run_command, shared_dir};
use serde_json::Value;

fn repoint(args: &[&str], stdin: &str) -> Output {
    run_command(Path::new(env!("CARGO_BIN_EXE_repoint")), args, stdin)
}

/// A failed run: exit 2, nothing on stdout, and a message containing each
/// of `needles` on stderr.
fn assert_fails(out: &Output, needles: &[&str]) {
    assert_eq!(out.code, 2, "exit code; stderr: {}", out.stderr);
    assert!(out.stdout.is_empty(), "partial output: {}", out.stdout);
    for n in needles {
        assert!(out.stderr.contains(n), "stderr lacks {n:?}: {}", out.stderr);
    }
}

#[test]
fn json_inventory_of_the_corpus() {
    let corpus = shared_dir().join("corpus");
    let out = repoint(
        &[
            "images",
            "--format",
            "json",
            corpus.to_str().expect("utf-8"),
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows: Value = serde_json::from_str(&out.stdout).expect("json");
    let rows = rows.as_array().expect("array");
    // 7+3 + 3 + 12 + 4+1 pod-spec images (tests/data/corpus_sites.json).
    assert_eq!(rows.len(), 30);
    let controller = rows
        .iter()
        .find(|r| r["name"] == "ingress-nginx-controller")
        .expect("controller row");
    assert_eq!(controller["kind"], "Deployment");
    assert_eq!(controller["apiVersion"], "apps/v1");
    assert_eq!(controller["namespace"], "ingress-nginx");
    assert_eq!(controller["site"], "container");
    assert_eq!(controller["container"], "controller");
    assert_eq!(
        controller["pointer"],
        "/spec/template/spec/containers/0/image"
    );
    assert_eq!(controller["line"], 446);
    assert!(
        controller["file"]
            .as_str()
            .expect("file")
            .ends_with("ingress-nginx_cloud_deploy.yaml")
    );
    assert!(controller["document"].as_u64().is_some());
    // Implicit docker.io images are normalized, the written text kept.
    let grafana = rows
        .iter()
        .find(|r| r["written"] == "grafana/grafana:13.1.3")
        .expect("grafana");
    assert_eq!(grafana["image"], "docker.io/grafana/grafana:13.1.3");
}

#[test]
fn unique_text_from_stdin() {
    let text = std::fs::read_to_string(&corpus_files()[1]).expect("read");
    let out = repoint(&["images", "--unique", "-"], &text);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            "registry.k8s.io/ingress-nginx/controller:v1.15.1@sha256:594ceea76b01c592858f803f9ff4d2cb40542cae2060410b2c95f75907d659e1",
            "registry.k8s.io/ingress-nginx/kube-webhook-certgen:v1.6.9@sha256:01038e7de14b78d702d2849c3aad72fd25903c4765af63cf16aa3398f5d5f2dd",
        ]
    );
}

#[test]
fn malformed_yaml_names_file_document_and_line() {
    let input = "apiVersion: v1\nkind: Pod\n---\napiVersion: v1\nkind: Pod\nspec:\n  containers: [\n  - oops: {\n";
    let out = repoint(&["images", "-"], input);
    assert_fails(&out, &["-: document 1 (line ", "column"]);
}

#[test]
fn non_mapping_document_is_an_error() {
    let out = repoint(
        &["images", "-"],
        "apiVersion: v1\nkind: Pod\n---\n- a\n- b\n",
    );
    assert_fails(&out, &["document 1 (line 4, column 1)", "found a sequence"]);
}

#[test]
fn alias_bomb_fails_fast() {
    let mut bomb =
        String::from("apiVersion: v1\nkind: ConfigMap\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let started = std::time::Instant::now();
    let out = repoint(&["images", "-"], &bomb);
    assert_fails(&out, &["document 0", "line ", "more than"]);
    assert!(
        started.elapsed().as_secs() < 10,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn huge_document_is_refused_with_bounded_memory() {
    // One 50 MB ConfigMap. Run under a 1 GiB address-space limit: reading
    // it costs its size, parsing it would cost far more.
    let dir = tempfile_dir();
    let path = dir.join("huge.yaml");
    let mut text =
        String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: huge\ndata:\n");
    let line = format!("  k{{}}: {}\n", "x".repeat(1000));
    let mut i = 0;
    while text.len() < 50 << 20 {
        text.push_str(&line.replace("{}", &i.to_string()));
        i += 1;
    }
    std::fs::write(&path, &text).expect("write");
    let script = format!(
        "ulimit -v 1048576; exec {} images {}",
        env!("CARGO_BIN_EXE_repoint"),
        path.display()
    );
    let out = run_command(Path::new("/bin/sh"), &["-c", &script], "");
    assert_fails(
        &out,
        &[
            "huge.yaml: document 0 (line 1, column 1)",
            "larger than the limit of 16.0 MiB",
        ],
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn invalid_image_references_are_all_reported_with_locations() {
    let input = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    image: Nginx:latest\n  - name: b\n    image: \"quay.io/x/y:bad tag\"\n";
    let out = repoint(&["images", "-"], input);
    assert_fails(
        &out,
        &[
            "-: document 0 (line 7, column 12): invalid image reference \"Nginx:latest\"",
            "repository name must be lowercase",
            "(line 9, column 12)",
            "invalid reference format",
            "2 invalid image reference(s)",
        ],
    );
}

#[test]
fn missing_file_is_an_error() {
    let out = repoint(&["images", "/nonexistent/x.yaml"], "");
    assert_fails(&out, &["/nonexistent/x.yaml: no such file or directory"]);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("repoint-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
