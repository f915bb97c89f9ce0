//! `repoint new policy`: from an empty directory, following only the
//! scaffold's README, a new Rust policy builds, its suite passes, and
//! `repoint run` uses it.

use std::path::Path;

use repoint_tests::{run_command, run_command_env, temp_dir};

fn repoint() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_repoint"))
}

/// The commands of the README's first `sh` block, comments left out.
fn readme_commands(readme: &str) -> Vec<String> {
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```sh block in the README");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn a_new_rust_policy_builds_passes_its_suite_and_runs() {
    let root = temp_dir("scaffold");
    let dir = root.join("no-latest");
    let dir_arg = dir.to_string_lossy().into_owned();
    let out = run_command(
        repoint(),
        &["new", "policy", "no-latest", "--dir", &dir_arg],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);

    let readme = std::fs::read_to_string(dir.join("README.md")).expect("README");
    let commands = readme_commands(&readme);
    assert_eq!(commands.len(), 3, "build, test, run: {commands:?}");
    // `repoint` on PATH is the binary under test.
    let bin_dir = repoint().parent().expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut outputs = Vec::new();
    for command in &commands {
        let script = format!("cd {dir_arg} && {command}");
        let out = run_command_env(Path::new("sh"), &["-c", &script], "", &[("PATH", &path)]);
        assert_eq!(out.code, 0, "{command}:\n{}\n{}", out.stdout, out.stderr);
        outputs.push(out);
    }
    assert!(
        dir.join("target/wasm32-wasip2/release/no_latest.wasm")
            .is_file()
    );
    assert!(
        outputs[1].stdout.contains("4 passed, 0 failed"),
        "{}",
        outputs[1].stdout
    );
    assert!(
        outputs[2]
            .stderr
            .contains("[no-latest] mirror.corp.example/app:latest uses :latest"),
        "{}",
        outputs[2].stderr
    );

    // It says what it is, and the project stands outside any workspace.
    let inspect = run_command(
        repoint(),
        &[
            "policy",
            "inspect",
            &dir.join("target/wasm32-wasip2/release/no_latest.wasm")
                .to_string_lossy(),
        ],
        "",
    );
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    assert!(
        inspect.stdout.contains("name:        no-latest"),
        "{}",
        inspect.stdout
    );

    // It never writes over something.
    let again = run_command(
        repoint(),
        &["new", "policy", "no-latest", "--dir", &dir_arg],
        "",
    );
    assert_eq!(again.code, 2);
    assert!(
        again.stderr.contains("is not empty; nothing was written"),
        "{}",
        again.stderr
    );
    let bad = run_command(
        repoint(),
        &["new", "policy", "No Latest", "--dir", &dir_arg],
        "",
    );
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("not a valid policy name"),
        "{}",
        bad.stderr
    );
}
