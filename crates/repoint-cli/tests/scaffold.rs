//! `repoint new policy`: from an empty directory, following only the
//! scaffold's README, a new policy builds, its suite passes, and `repoint
//! run` uses it.
//!
//! The Python and JavaScript projects are the examples in
//! `examples/policies/`, so these tests also prove that those build and
//! pass their suites. Their build tools (componentize-py, componentize-js)
//! are the ones `.ci/setup` installs into the examples (`.venv`,
//! `node_modules`) and are linked into the new project in place of the
//! README's install step; without them those tests skip, unless
//! `REPOINT_REQUIRE_COMPONENTIZE` is set (CI sets it).

use std::path::{Path, PathBuf};

use repoint_tests::{Output, repo_root, run_command, run_command_env, temp_dir};

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

/// `repoint policy inspect` on a component.
fn policy_inspect(component: &Path) -> Output {
    run_command(
        repoint(),
        &["policy", "inspect", &component.to_string_lossy()],
        "",
    )
}

/// PATH with the binary under test first, so the README's `repoint` is it.
fn path_with_repoint() -> String {
    let bin_dir = repoint().parent().expect("bin dir");
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Run each command in `dir` with `sh`, as a reader of the README would;
/// the outputs, each checked to succeed.
fn follow(dir: &Path, commands: &[String]) -> Vec<Output> {
    let path = path_with_repoint();
    commands
        .iter()
        .map(|command| {
            let script = format!("cd '{}' && {command}", dir.display());
            let out = run_command_env(Path::new("sh"), &["-c", &script], "", &[("PATH", &path)]);
            assert_eq!(out.code, 0, "{command}:\n{}\n{}", out.stdout, out.stderr);
            out
        })
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
    let outputs = follow(&dir, &commands);
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
    let inspect = policy_inspect(&dir.join("target/wasm32-wasip2/release/no_latest.wasm"));
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
    let sdk_for_python = run_command(
        repoint(),
        &[
            "new",
            "policy",
            "p",
            "--lang",
            "python",
            "--sdk",
            &dir_arg,
            "--dir",
            &root.join("p").to_string_lossy(),
        ],
        "",
    );
    assert_eq!(sdk_for_python.code, 2);
    assert!(
        sdk_for_python
            .stderr
            .contains("--sdk is for Rust policies only"),
        "{}",
        sdk_for_python.stderr
    );
    assert!(!root.join("p").exists(), "nothing is written");
}

/// A policy in another language: scaffold it as NAME, link the example's
/// installed build tool in, follow the rest of the README, and check the
/// suite's result and what `repoint run` and `policy inspect` say.
fn new_policy_in(lang: &str, installed: &str, install_step: &str) -> Option<PathBuf> {
    let tools = repo_root()
        .join("examples/policies")
        .join(lang)
        .join(installed);
    if !tools.exists() {
        assert!(
            std::env::var_os("REPOINT_REQUIRE_COMPONENTIZE").is_none(),
            "REPOINT_REQUIRE_COMPONENTIZE is set but {} is missing (run .ci/setup)",
            tools.display()
        );
        eprintln!("{} missing (run .ci/setup): skipping", tools.display());
        return None;
    }
    let dir = temp_dir(&format!("scaffold-{lang}")).join("registry-gate");
    let dir_arg = dir.to_string_lossy().into_owned();
    let out = run_command(
        repoint(),
        &[
            "new",
            "policy",
            "registry-gate",
            "--lang",
            lang,
            "--dir",
            &dir_arg,
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);

    let readme = std::fs::read_to_string(dir.join("README.md")).expect("README");
    let commands = readme_commands(&readme);
    assert_eq!(commands.len(), 4, "install, build, test, run: {commands:?}");
    assert!(commands[0].contains(install_step), "{commands:?}");
    std::os::unix::fs::symlink(&tools, dir.join(installed)).expect("link the build tool");
    let outputs = follow(&dir, &commands[1..]);

    assert!(dir.join("policy.wasm").is_file());
    assert!(
        outputs[1].stdout.contains("6 passed, 0 failed"),
        "{}",
        outputs[1].stdout
    );
    assert!(
        outputs[2]
            .stderr
            .contains("[registry-gate] mirror.corp.example/app:latest uses :latest; pin a version"),
        "{}",
        outputs[2].stderr
    );

    // A denial through `repoint run` exits 1 and names the image.
    let config = dir.join("repoint.yaml");
    let denied = run_command(
        repoint(),
        &["run", "-c", &config.to_string_lossy(), "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: web, image: 'nginx:1.27'}]}\n",
    );
    assert_eq!(denied.code, 1, "{}{}", denied.stdout, denied.stderr);
    assert!(
        denied
            .stderr
            .contains("nginx:1.27 comes from docker.io, which is not an allowed registry"),
        "{}",
        denied.stderr
    );

    // It says what it is, settings schema and contract included.
    let inspect = policy_inspect(&dir.join("policy.wasm"));
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    for expected in [
        "name:        registry-gate",
        "contract:    repoint:policy@0.1.0 (world selective-policy: info, configure, evaluate, reads;",
        "\"title\": \"registry-gate settings\"",
    ] {
        assert!(
            inspect.stdout.contains(expected),
            "{expected}: {}",
            inspect.stdout
        );
    }
    Some(dir)
}

#[test]
fn a_new_python_policy_builds_passes_its_suite_and_runs() {
    let Some(dir) = new_policy_in("python", ".venv", "pip install -r requirements.txt") else {
        return;
    };
    // Built against another version of the contract, it is refused, and
    // the message says so.
    for file in ["world.wit", "types.wit", "host.wit"] {
        let path = dir.join("wit").join(file);
        let text = std::fs::read_to_string(&path).expect("wit");
        std::fs::write(
            &path,
            text.replace("repoint:policy@0.1.0", "repoint:policy@0.2.0"),
        )
        .expect("wit");
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("README");
    follow(&dir, &readme_commands(&readme)[1..2]);
    let inspect = policy_inspect(&dir.join("policy.wasm"));
    assert_eq!(inspect.code, 2, "{}", inspect.stdout);
    assert!(
        inspect.stderr.contains(
            "it was built against repoint:policy@0.2.0, and this host speaks repoint:policy@0.1.0"
        ),
        "{}",
        inspect.stderr
    );
}

#[test]
fn a_new_javascript_policy_builds_passes_its_suite_and_runs() {
    let Some(dir) = new_policy_in("js", "node_modules", "npm install") else {
        return;
    };
    // Built without `--disable http fetch-event`, the component imports
    // wasi:http, which the sandbox does not grant: it is refused, saying so.
    follow(
        &dir,
        &["node_modules/.bin/componentize-js policy.js --wit wit --world-name policy -o with-http.wasm".to_string()],
    );
    let inspect = policy_inspect(&dir.join("with-http.wasm"));
    assert_eq!(inspect.code, 2, "{}", inspect.stdout);
    assert!(
        inspect.stderr.contains("is not a repoint policy component")
            && inspect
                .stderr
                .contains("component imports instance `wasi:http/"),
        "{}",
        inspect.stderr
    );
}
