//! The hand-written docs' config examples are configs repoint accepts
//! (the generated pages are checked by `xtask/tests/codegen.rs`).

use std::path::Path;

use repoint_tests::{repo_root, run_command, temp_dir};

/// Every YAML block of a hand-written page that is a repoint config (or a
/// test suite) is accepted by repoint: the config reference cannot show
/// a config that does not load.
#[test]
fn the_config_examples_in_the_docs_load() {
    let root = repo_root();
    let mut checked = 0;
    for page in ["docs/config.md", "docs/guide.md", "README.md"] {
        let text = std::fs::read_to_string(root.join(page)).expect(page);
        for (i, block) in text.split("```yaml\n").skip(1).enumerate() {
            let block = block.split("```").next().expect("block");
            if !block.contains("kind: Config") {
                continue;
            }
            let dir = temp_dir("doc-config");
            std::fs::write(dir.join("repoint.yaml"), block).expect("write");
            let config = dir.join("repoint.yaml");
            let out = run_command(
                Path::new(env!("CARGO_BIN_EXE_repoint")),
                &["check", "-c", &config.to_string_lossy(), "-"],
                "",
            );
            assert_eq!(out.code, 0, "{page}, YAML block {}: {}", i + 1, out.stderr);
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} config examples found");
}

/// The error the config reference quotes is the one repoint prints.
#[test]
fn the_config_reference_quotes_a_real_error() {
    let page = std::fs::read_to_string(repo_root().join("docs/config.md")).expect("config.md");
    let quoted = page
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a text block");
    let dir = temp_dir("doc-error");
    std::fs::write(
        dir.join("repoint.yaml"),
        "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: mirror\n  module: builtin:registry-mirror\n  settings: {rules: []}\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_repoint"))
        .args(["check", "-c", "repoint.yaml", "-"])
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end(), format!("repoint: error: {quoted}"));
}
