//! The generated documentation is current (this is `cargo xtask codegen
//! --check`), and the check fails, naming the file, when it is not.

use std::path::Path;

use repoint_tests::{Output, repo_root, run_command_env, temp_dir};

fn codegen(root: &Path, check: bool) -> Output {
    codegen_env(root, check, &[])
}

fn codegen_env(root: &Path, check: bool, env: &[(&str, &str)]) -> Output {
    let root = root.to_string_lossy();
    let mut args = vec!["codegen", "--root", &root];
    if check {
        args.push("--check");
    }
    run_command_env(Path::new(env!("CARGO_BIN_EXE_xtask")), &args, "", env)
}

#[test]
fn generated_docs_are_up_to_date() {
    // An option's environment variable, set here, must not leak into the
    // pages.
    let out = codegen_env(&repo_root(), true, &[("POD_NAMESPACE", "elsewhere")]);
    assert_eq!(
        out.code, 0,
        "the generated docs are stale; run `cargo xtask codegen`:\n{}",
        out.stderr
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn the_check_names_what_is_missing_stale_or_left_over() {
    // A root with the sources only: everything is missing.
    let root = temp_dir("codegen");
    copy_dir(&repo_root().join("wit"), &root.join("wit"));
    copy_dir(&repo_root().join("policies"), &root.join("policies"));
    let out = codegen(&root, true);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("docs/contract.md: missing"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("run `cargo xtask codegen`"),
        "{}",
        out.stderr
    );

    // Written, it checks clean.
    assert_eq!(codegen(&root, false).code, 0);
    assert_eq!(codegen(&root, true).code, 0);

    // A changed doc comment makes the contract page stale; a page for a
    // policy that is gone is left over.
    let world = root.join("wit/world.wit");
    let text = std::fs::read_to_string(&world).expect("world.wit");
    std::fs::write(
        &world,
        text.replace("/// Describe the policy.", "/// Say what the policy is."),
    )
    .expect("write");
    std::fs::write(root.join("docs/policies/gone.md"), "old").expect("write");
    let out = codegen(&root, true);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("docs/contract.md: out of date"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("docs/policies/gone.md: no longer generated"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("docs/cli.md"), "{}", out.stderr);
    assert_eq!(codegen(&root, false).code, 0);
    let contract = std::fs::read_to_string(root.join("docs/contract.md")).expect("contract");
    assert!(contract.contains("Say what the policy is."));
    assert!(!root.join("docs/policies/gone.md").exists());
}
