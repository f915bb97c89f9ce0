//! Suites found, run and reported on as a library, without the binary.

use repoint_suite::{DiscoverError, discover, junit_report, run_suite, status, text_report};
use repoint_tests::temp_dir;

const SUITE: &str = r#"apiVersion: repoint.dev/v1alpha1
kind: TestSuite
policy: builtin:registry-mirror
settings: {rules: [{match: docker.io, replace: mirror.corp/hub}]}
cases:
  - name: moves to the mirror
    input: {apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: c, image: nginx}]}}
    expect:
      output: {apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: c, image: mirror.corp/hub/library/nginx}]}}
  - name: wrongly expects no change
    input: {apiVersion: v1, kind: Pod, metadata: {name: q}, spec: {containers: [{name: c, image: nginx}]}}
  - name: an empty rule list is refused
    settings: {rules: []}
    expect: {settingsError: "rules"}
"#;

#[test]
fn a_suite_is_found_run_and_reported_case_by_case() {
    let dir = temp_dir("suite-lib");
    std::fs::create_dir_all(dir.join("a/node_modules")).expect("mkdir");
    std::fs::write(dir.join("a/repoint-test.yaml"), SUITE).expect("write");
    // Skipped like every walk of repoint: not a suite of this project.
    std::fs::write(dir.join("a/node_modules/repoint-test.yaml"), "broken").expect("write");
    let found = discover(std::slice::from_ref(&dir)).expect("discover");
    assert_eq!(found, vec![dir.join("a/repoint-test.yaml")]);

    let result = run_suite(&found[0], true);
    let cases = result.outcome.as_ref().expect("ran");
    let failures: Vec<_> = cases.iter().map(|c| c.failure.is_some()).collect();
    assert_eq!(failures, [false, true, false], "{cases:?}");
    let results = [result];
    assert_eq!(status(&results), 1);
    let text = text_report(&results);
    assert!(text.contains("PASS  moves to the mirror"), "{text}");
    assert!(text.contains("FAIL  wrongly expects no change"), "{text}");
    assert!(text.contains("2 passed, 1 failed (1 suite)"), "{text}");
    assert!(junit_report(&results).contains("failures=\"1\""));
}

#[test]
fn a_broken_suite_is_reported_not_raised() {
    let dir = temp_dir("suite-lib-broken");
    let path = dir.join("repoint-test.yaml");
    std::fs::write(
        &path,
        "apiVersion: repoint.dev/v1alpha1\nkind: TestSuite\ncases: []\n",
    )
    .expect("write");
    let results = [run_suite(&path, true)];
    let reason = results[0].outcome.as_ref().expect_err("broken");
    assert!(reason.0.contains("either `policy`"), "{reason}");
    assert_eq!(status(&results), 2);
    let empty = temp_dir("suite-lib-empty");
    assert!(matches!(
        discover(std::slice::from_ref(&empty)),
        Err(DiscoverError::NoSuites(p)) if p == empty
    ));
}
