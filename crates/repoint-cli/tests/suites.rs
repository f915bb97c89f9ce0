//! `repoint test`: the built-in policies' suites and the example's pass;
//! a failing case is reported readably with exit 1, a broken suite with
//! where it is broken and exit 2; JUnit XML for CI.

use std::path::Path;

use repoint_tests::{Output, repo_root, run_command, temp_dir};

fn repoint_test(args: &[&str]) -> Output {
    let mut all = vec!["test"];
    all.extend_from_slice(args);
    run_command(Path::new(env!("CARGO_BIN_EXE_repoint")), &all, "")
}

#[test]
fn every_built_in_policy_ships_a_passing_suite() {
    let root = repo_root();
    for entry in std::fs::read_dir(root.join("policies")).expect("policies/") {
        let dir = entry.expect("entry").path();
        assert!(
            dir.join("repoint-test.yaml").is_file(),
            "{} has no repoint-test.yaml",
            dir.display()
        );
    }
    // The Python and JavaScript examples' suites need their builds; the
    // scaffold tests build and run them.
    let dirs = [
        root.join("policies"),
        root.join("examples/repoint-test.yaml"),
    ];
    for dir in &dirs {
        let out = repoint_test(&[&dir.to_string_lossy()]);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains(" 0 failed"), "{}", out.stdout);
        assert!(!out.stdout.contains("FAIL"), "{}", out.stdout);
    }
}

const SUITE_HEAD: &str = "apiVersion: repoint.dev/v1alpha1
kind: TestSuite
policy: builtin:registry-mirror
settings: {rules: [{match: docker.io, replace: mirror.corp.example/hub}]}
";

#[test]
fn a_failing_case_shows_what_differs_and_exits_1() {
    let dir = temp_dir("suite-failing");
    std::fs::write(
        dir.join("repoint-test.yaml"),
        format!(
            "{SUITE_HEAD}cases:
  - name: right
    input: {{apiVersion: v1, kind: Pod, metadata: {{name: p}}, spec: {{containers: [{{name: c, image: nginx}}]}}}}
    expect:
      output: {{apiVersion: v1, kind: Pod, metadata: {{name: p}}, spec: {{containers: [{{name: c, image: mirror.corp.example/hub/library/nginx}}]}}}}
  - name: wrong image, and a denial that never comes
    input: {{apiVersion: v1, kind: Pod, metadata: {{name: p}}, spec: {{containers: [{{name: c, image: nginx}}]}}}}
    expect:
      output: {{apiVersion: v1, kind: Pod, metadata: {{name: p}}, spec: {{containers: [{{name: c, image: nginx}}]}}}}
      denials: [nope]
  - name: left out means must not happen
    input: {{apiVersion: v1, kind: Pod, metadata: {{name: p}}, spec: {{containers: [{{name: c, image: redis}}]}}}}
"
        ),
    )
    .expect("suite");
    let out = repoint_test(&[&dir.to_string_lossy()]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.contains(&"  PASS  right"), "{}", out.stdout);
    assert!(
        lines.contains(&"  FAIL  wrong image, and a denial that never comes"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "output: document 0 /spec/containers/0/image: expected \"nginx\", got \"mirror.corp.example/hub/library/nginx\""
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("denials: expected 1 containing [\"nope\"], got []"),
        "{}",
        out.stdout
    );
    assert!(lines.contains(&"  FAIL  left out means must not happen"));
    assert!(
        out.stdout.ends_with("1 passed, 2 failed (1 suite)\n"),
        "{}",
        out.stdout
    );

    let junit = repoint_test(&[&dir.to_string_lossy(), "--format", "junit"]);
    assert_eq!(junit.code, 1);
    assert!(junit.stdout.starts_with("<?xml"), "{}", junit.stdout);
    assert!(
        junit
            .stdout
            .contains("<testsuites name=\"repoint\" tests=\"3\" failures=\"2\" errors=\"0\">"),
        "{}",
        junit.stdout
    );
    assert_eq!(junit.stdout.matches("<failure ").count(), 2);
    assert!(
        junit
            .stdout
            .contains("<testcase classname=\"repoint-suite-failing-")
    );
}

#[test]
fn discovery_skips_hidden_build_and_dependency_directories_and_symlinks() {
    let dir = temp_dir("suite-discovery");
    let suite = format!(
        "{SUITE_HEAD}cases:\n  - name: passes\n    input: {{apiVersion: v1, kind: ConfigMap, metadata: {{name: c}}}}\n"
    );
    std::fs::create_dir_all(dir.join("policy")).expect("mkdir");
    std::fs::write(dir.join("policy/repoint-test.yaml"), &suite).expect("suite");
    // Each of these holds a suite that cannot run; none may be found.
    for skipped in [
        ".venv/lib",
        "node_modules/pkg",
        "target/debug",
        "__pycache__",
    ] {
        std::fs::create_dir_all(dir.join(skipped)).expect("mkdir");
        std::fs::write(dir.join(skipped).join("repoint-test.yaml"), "broken: [").expect("suite");
    }
    // A link back up would loop if followed.
    std::os::unix::fs::symlink(&dir, dir.join("policy/loop")).expect("symlink");
    let out = repoint_test(&[&dir.to_string_lossy()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.ends_with("1 passed, 0 failed (1 suite)\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_broken_suite_says_where_and_exits_2() {
    let dir = temp_dir("suite-broken");
    std::fs::write(
        dir.join("repoint-test.yaml"),
        format!("{SUITE_HEAD}cases:\n  - name: typo\n    inptu: {{}}\n"),
    )
    .expect("suite");
    let out = repoint_test(&[&dir.to_string_lossy()]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("repoint-test.yaml:7: cases[0].inptu: unknown field `inptu`"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .ends_with("0 passed, 0 failed, 1 suite could not run (1 suite)\n"),
        "{}",
        out.stdout
    );

    // A policy not built yet: said once, with the path.
    let unbuilt = temp_dir("suite-unbuilt");
    std::fs::write(
        unbuilt.join("repoint-test.yaml"),
        "apiVersion: repoint.dev/v1alpha1\nkind: TestSuite\npolicy: policy.wasm\ncases: [{name: a, input: {}}]\n",
    )
    .expect("suite");
    let out = repoint_test(&[&unbuilt.to_string_lossy()]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("cannot read policy ")
            && out
                .stdout
                .contains("policy.wasm: No such file or directory")
            && out.stdout.matches("No such file").count() == 1,
        "{}",
        out.stdout
    );
    let empty = temp_dir("suite-none");
    let none = repoint_test(&[&empty.to_string_lossy()]);
    assert_eq!(none.code, 2);
    assert!(
        none.stderr.contains("no repoint-test.yaml under"),
        "{}",
        none.stderr
    );
}
