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
