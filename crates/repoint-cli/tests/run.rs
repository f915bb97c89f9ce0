//! `repoint run`, `check` and `policy inspect` end to end: the real binary,
//! the real built-in policies, the flows of DESIGN.md, the corpus, faults.

use std::path::Path;

use repoint_tests::{Output, corpus_files, repo_root, run_command, run_command_env, temp_dir};
use serde_json::{Value, json};

fn repoint(args: &[&str], stdin: &str) -> Output {
    run_command(Path::new(env!("CARGO_BIN_EXE_repoint")), args, stdin)
}

fn fixture(name: &str) -> String {
    repo_root()
        .join("tests/fixtures/flows")
        .join(name)
        .display()
        .to_string()
}

fn example(name: &str) -> String {
    repo_root()
        .join("examples")
        .join(name)
        .display()
        .to_string()
}

fn write_config(dir: &Path, body: &str) -> String {
    let path = dir.join("repoint.yaml");
    std::fs::write(
        &path,
        format!("apiVersion: repoint.dev/v1alpha1\nkind: Config\n{body}"),
    )
    .expect("write");
    path.display().to_string()
}

/// Changed lines between two texts (`-old` / `+new`).
fn diff(a: &str, b: &str) -> Vec<String> {
    similar::TextDiff::from_lines(a, b)
        .iter_all_changes()
        .filter(|c| c.tag() != similar::ChangeTag::Equal)
        .map(|c| format!("{}{}", c.tag(), c.value().trim_end()))
        .collect()
}

#[test]
fn quickstart_mirrors_and_adds_the_pull_secret() {
    let out = repoint(
        &["run", "-c", &example("repoint.yaml"), &example("manifests")],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    for expected in [
        "image: mirror.corp.example/hub/library/nginx:1.27",
        "image: mirror.corp.example/quay/acme/shop-api:v1.0.1@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
        "image: mirror.corp.example/ghcr/acme/shop-migrations:2.4.0",
        "image: mirror.corp.example/hub/bitnami/redis:7.2",
        "\"reference\": \"mirror.corp.example/quay/acme/debug-tools:1.0\"",
        "- name: corp-registry",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?}:\n{}",
            out.stdout
        );
    }
    // The Service, which has no images, is untouched and not evaluated.
    assert!(out.stdout.contains("kind: Service\nmetadata:\n  name: storefront\n  namespace: shop\nspec:\n  selector: {app: storefront}"));
}

#[test]
fn proxy_prefix_flow_with_a_postgres_cluster_custom_resource() {
    let input = std::fs::read_to_string(fixture("postgres.yaml")).expect("read");
    let out = repoint(
        &[
            "run",
            "-c",
            &fixture("postgres-config.yaml"),
            &fixture("postgres.yaml"),
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        diff(&input, &out.stdout),
        [
            "-  image: registry.example.com/crunchydata/crunchy-postgres:ubi9-16.4-2",
            "+  image: proxy.example.com/proxy/my-app/registry.example.com/crunchydata/crunchy-postgres:ubi9-16.4-2",
            "-      image: registry.example.com/crunchydata/crunchy-pgbackrest:ubi9-2.53-1",
            "+      image: proxy.example.com/proxy/my-app/registry.example.com/crunchydata/crunchy-pgbackrest:ubi9-2.53-1",
            "+  imagePullSecrets:",
            "+  - name: vendor-pull",
        ]
    );
}

#[test]
fn pull_secret_on_service_accounts() {
    let out = repoint(
        &[
            "run",
            "-c",
            &fixture("sa-config.yaml"),
            &fixture("sa-workloads.yaml"),
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let input = std::fs::read_to_string(fixture("sa-workloads.yaml")).expect("read");
    // The existing `builder` account (used by the Job) is patched in place;
    // the Deployment's namespace gets its `default` account generated.
    assert_eq!(
        diff(&input, &out.stdout),
        [
            "+imagePullSecrets:",
            "+- name: corp-registry",
            "-        image: nginx:1.27",
            "+        image: mirror.corp.example/hub/library/nginx:1.27",
            "-        image: docker.io/library/busybox:1.36",
            "+        image: mirror.corp.example/hub/library/busybox:1.36",
            "+---",
            "+apiVersion: v1",
            "+kind: ServiceAccount",
            "+metadata:",
            "+  name: default",
            "+  namespace: shop",
            "+  labels:",
            "+    app.kubernetes.io/managed-by: repoint",
            "+imagePullSecrets:",
            "+- name: corp-registry",
        ]
    );
    // Pod specs are not given the secret in this mode.
    assert!(!out.stdout.contains("      imagePullSecrets"));
}

fn corpus_config(dir: &Path) -> String {
    write_config(
        dir,
        "policies:\n- name: mirror\n  module: builtin:registry-mirror\n  settings:\n    rules:\n    - {match: docker.io, replace: mirror.corp.example/hub}\n    - {match: quay.io, replace: mirror.corp.example/quay}\n    - {match: ghcr.io, replace: mirror.corp.example/ghcr}\n    - {match: registry.k8s.io, replace: mirror.corp.example/k8s}\nimageFields:\n- {group: monitoring.coreos.com, kind: Prometheus, images: [/spec/image]}\n- {group: monitoring.coreos.com, kind: Alertmanager, images: [/spec/image]}\n",
    )
}

#[test]
fn corpus_every_matching_image_rewritten_nothing_else_and_converges() {
    let dir = temp_dir("corpus");
    let config = corpus_config(&dir);
    for file in corpus_files() {
        let input = std::fs::read_to_string(&file).expect("read");
        let out = repoint(
            &[
                "run",
                "--no-cache",
                "-c",
                &config,
                file.to_str().expect("utf-8"),
            ],
            "",
        );
        assert_eq!(out.code, 0, "{}: {}", file.display(), out.stderr);
        // Every changed line is an image line, rewritten onto the mirror;
        // the line count is unchanged, so every other line is untouched.
        assert_eq!(input.lines().count(), out.stdout.lines().count());
        let mut rewritten = 0;
        for (a, b) in input.lines().zip(out.stdout.lines()) {
            if a != b {
                let (ka, _) = a.split_once("image: ").expect("an image line changed");
                let (kb, vb) = b.split_once("image: ").expect("an image line");
                assert_eq!(ka, kb);
                assert!(vb.starts_with("mirror.corp.example/"), "{b}");
                rewritten += 1;
            }
        }
        // Every image of a matching registry was rewritten (the corpus has
        // images on docker.io, quay.io, ghcr.io and registry.k8s.io, and one
        // on public.ecr.aws, which no rule matches).
        let images = repoint(
            &["images", "--format", "json", file.to_str().expect("utf-8")],
            "",
        );
        let rows: Value = serde_json::from_str(&images.stdout).expect("json");
        let matching = rows
            .as_array()
            .expect("rows")
            .iter()
            .filter(|r| {
                let i = r["image"].as_str().expect("image");
                ["docker.io/", "quay.io/", "ghcr.io/", "registry.k8s.io/"]
                    .iter()
                    .any(|p| i.starts_with(p))
            })
            .count();
        let custom = if file.to_string_lossy().contains("kube-prometheus") {
            2
        } else {
            0
        };
        assert_eq!(rewritten, matching + custom, "{}", file.display());
        // A second run over the output changes nothing.
        let again = repoint(&["run", "-c", &config, "-"], &out.stdout);
        assert_eq!(again.code, 0, "{}", again.stderr);
        assert!(
            again.stdout == out.stdout,
            "{}: second run changed the output",
            file.display()
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_faulty_policy_fails_its_object_and_the_run_goes_on() {
    let dir = temp_dir("fault");
    let misbehave = repoint_runtime::builtins::test_policy("misbehave").expect("built");
    let config = write_config(
        &dir,
        &format!(
            "policies:\n- name: mirror\n  module: builtin:registry-mirror\n  settings: {{rules: [{{match: docker.io, replace: m.corp/hub}}]}}\n- name: looper\n  module: {misbehave}\n  settings: {{mode: loop}}\nlimits: {{timeout: 200ms}}\n"
        ),
    );
    let input = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - {name: a, image: nginx}\n";
    let started = std::time::Instant::now();
    let out = repoint(&["run", "-c", &config, "-"], input);
    assert!(started.elapsed().as_secs() < 10);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("-:1: error: Pod/a: [looper] policy looper timed out after 200ms"),
        "{}",
        out.stderr
    );
    // The failed object passes through unchanged.
    assert_eq!(out.stdout, input);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn one_bad_object_does_not_stop_the_others() {
    let dir = temp_dir("isolate");
    let config = corpus_config(&dir);
    let input = "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers:\n  - {name: a, image: \"Not/Valid:Image\"}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: good}\nspec:\n  containers:\n  - {name: a, image: nginx}\n";
    let out = repoint(&["run", "-c", &config, "-"], input);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("-:6: error: Pod/bad: invalid image reference \"Not/Valid:Image\""),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("image: \"Not/Valid:Image\""));
    assert!(
        out.stdout
            .contains("image: mirror.corp.example/hub/library/nginx")
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn config_errors_name_the_key_and_line_and_print_nothing() {
    let dir = temp_dir("config");
    let cases = [
        (
            "polices: []\n",
            "repoint.yaml:3: polices: unknown field `polices`",
        ),
        (
            "policies:\n- name: m\n  module: builtin:registry-mirror\n  settings: {rules: []}\n",
            "repoint.yaml:6: policies[0].settings: policy m rejected its settings: rules: at least one rule is needed",
        ),
        (
            "policies:\n- name: m\n  module: builtin:nope\n",
            "repoint.yaml:5: policies[0].module: no built-in policy \"nope\"",
        ),
        (
            "limits: {memory: lots}\n",
            "repoint.yaml:3: limits.memory: \"lots\" is not a size",
        ),
    ];
    for (body, expected) in cases {
        let config = write_config(&dir, body);
        let out = repoint(&["run", "-c", &config, &example("manifests")], "");
        assert_eq!(out.code, 2, "{body}");
        assert!(out.stdout.is_empty());
        assert!(out.stderr.contains(expected), "{body}: {}", out.stderr);
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn output_formats() {
    let config = example("repoint.yaml");
    let pod = example("manifests/debug-pod.json");
    let out = repoint(&["run", "-c", &config, "-o", "json-patch", &pod], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let patches: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(patches[0]["kind"], "Pod");
    assert_eq!(patches[0]["document"], 0);
    assert_eq!(
        patches[0]["patch"],
        json!([
            {"op": "replace", "path": "/spec/containers/0/image", "value": "mirror.corp.example/hub/library/busybox"},
            {"op": "replace", "path": "/spec/volumes/0/image/reference", "value": "mirror.corp.example/quay/acme/debug-tools:1.0"},
            {"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "corp-registry"}]}
        ])
    );
    let out = repoint(&["run", "-c", &config, "-o", "json", &pod], "");
    let list: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(
        list["kind"], "List",
        "the Pod and its generated pull Secret"
    );
    assert_eq!(
        list["items"][0]["spec"]["imagePullSecrets"],
        json!([{"name": "corp-registry"}])
    );
    assert_eq!(list["items"][1]["kind"], "Secret");
    let out = repoint(&["run", "-c", &config, "-o", "diff", &pod], "");
    assert!(
        out.stdout
            .starts_with(&format!("--- a/{pod}\n+++ b/{pod}\n@@")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("+    \"imagePullSecrets\": [{\"name\": \"corp-registry\"}]")
    );
}

#[test]
fn a_symlink_loop_in_a_directory_is_not_followed() {
    let dir = temp_dir("symlink-loop");
    let original = std::fs::read_to_string(example("manifests/shop.yaml")).expect("read");
    std::fs::write(dir.join("app.yaml"), &original).expect("write");
    std::os::unix::fs::symlink(".", dir.join("loop")).expect("symlink");
    let arg = dir.to_str().expect("utf-8");
    let out = repoint(&["run", "-c", &example("repoint.yaml"), arg], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let once = repoint(
        &[
            "run",
            "-c",
            &example("repoint.yaml"),
            dir.join("app.yaml").to_str().expect("utf-8"),
        ],
        "",
    );
    assert_eq!(
        out.stdout, once.stdout,
        "the file is read once, not through the loop"
    );
}

/// A directory holds more than manifests: files found by walking that are
/// not Kubernetes objects are left out with a warning naming them, and the
/// run goes on; named, the same file is an error; a walked manifest with a
/// bad document is still an error.
#[test]
fn walked_files_that_are_not_manifests_are_left_out_with_a_warning() {
    let dir = temp_dir("walk-non-manifests");
    let original = std::fs::read_to_string(example("manifests/shop.yaml")).expect("read");
    std::fs::create_dir_all(dir.join("base")).expect("mkdir");
    std::fs::write(dir.join("base/app.yaml"), &original).expect("write");
    let others = [
        (
            "base/kustomization.yaml",
            "resources: [app.yaml]\nimages:\n- {name: nginx, newTag: '1.27'}\n",
            "a kustomization file",
        ),
        (
            "overlay/kustomization.yml",
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../base]\n",
            "a kustomize Kustomization file",
        ),
        (
            "package.json",
            "{\"name\": \"policy\", \"version\": \"1.0.0\"}\n",
            "no apiVersion and kind",
        ),
        (
            "mappingTable.json",
            "[[\"a\", 1], [\"b\", 2]]\n",
            "not a mapping",
        ),
        (
            "chart/values.yaml",
            "replicaCount: 2\nimage: {repository: nginx, tag: '1.27'}\n",
            "no apiVersion and kind",
        ),
        (
            "repoint-test.yaml",
            "apiVersion: repoint.dev/v1alpha1\nkind: TestSuite\npolicy: builtin:registry-mirror\ncases: []\n",
            "a repoint TestSuite",
        ),
    ];
    for (path, text, _) in &others {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    let arg = dir.to_str().expect("utf-8");
    let out = repoint(&["run", "-c", &example("repoint.yaml"), arg], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    for (path, _, why) in &others {
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains(&dir.join(path).display().to_string()))
            .unwrap_or_else(|| panic!("no warning for {path}: {}", out.stderr));
        assert!(
            line.starts_with("repoint: warning: ")
                && line.contains("left out, not a Kubernetes manifest")
                && line.contains(why),
            "{line}"
        );
    }
    let alone = repoint(
        &[
            "run",
            "-c",
            &example("repoint.yaml"),
            dir.join("base/app.yaml").to_str().expect("utf-8"),
        ],
        "",
    );
    assert_eq!(out.stdout, alone.stdout, "only the manifest is read");
    // `repoint images` walks the same way.
    let images = repoint(&["images", "--unique", arg], "");
    assert_eq!(images.code, 0, "{}", images.stderr);
    assert!(
        images.stderr.contains("package.json: left out"),
        "{}",
        images.stderr
    );

    // Named, a file that is not a manifest is an error.
    let named = repoint(
        &[
            "run",
            "-c",
            &example("repoint.yaml"),
            dir.join("mappingTable.json").to_str().expect("utf-8"),
        ],
        "",
    );
    assert_eq!(named.code, 2, "{}", named.stderr);
    assert!(
        named.stderr.contains("expected a Kubernetes object"),
        "{}",
        named.stderr
    );
    // A walked manifest whose later document is broken fails the run.
    std::fs::write(
        dir.join("base/app.yaml"),
        format!("{original}---\n- not: an object\n"),
    )
    .expect("write");
    let broken = repoint(&["run", "-c", &example("repoint.yaml"), arg], "");
    assert_eq!(broken.code, 2, "{}", broken.stderr);
    assert!(broken.stdout.is_empty());
    std::fs::remove_dir_all(dir).ok();
}

/// An operator takes its operands' images from `RELATED_IMAGE_*` variables
/// of its own Deployment: with `imageFields` naming them, they are rewritten
/// with the container images.
#[test]
fn an_operators_related_image_variables_are_rewritten() {
    let dir = temp_dir("related-images");
    let config = write_config(
        &dir,
        "policies:\n- name: mirror\n  module: builtin:registry-mirror\n  settings: {rules: [{match: quay.io, replace: mirror.corp.example/quay}]}\nimageFields:\n- {group: apps, kind: Deployment, env: ['RELATED_IMAGE_*']}\n",
    );
    let input = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: pgo, namespace: postgres-operator}\nspec:\n  template:\n    spec:\n      containers:\n      - name: operator\n        image: quay.io/crunchy/postgres-operator:v5.7\n        env:\n        - name: PGO_NAMESPACE\n          value: postgres-operator\n        - name: RELATED_IMAGE_POSTGRES_16\n          value: quay.io/crunchy/crunchy-postgres:ubi8-16.4-1\n        - name: RELATED_IMAGE_PGBACKREST\n          value: \"quay.io/crunchy/crunchy-pgbackrest:ubi8-2.53-1\"\n";
    let out = repoint(&["run", "-c", &config, "-"], input);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        diff(input, &out.stdout),
        [
            "-        image: quay.io/crunchy/postgres-operator:v5.7",
            "+        image: mirror.corp.example/quay/crunchy/postgres-operator:v5.7",
            "-          value: quay.io/crunchy/crunchy-postgres:ubi8-16.4-1",
            "+          value: mirror.corp.example/quay/crunchy/crunchy-postgres:ubi8-16.4-1",
            "-          value: \"quay.io/crunchy/crunchy-pgbackrest:ubi8-2.53-1\"",
            "+          value: \"mirror.corp.example/quay/crunchy/crunchy-pgbackrest:ubi8-2.53-1\"",
        ]
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn in_place_rewrites_atomically() {
    let dir = temp_dir("inplace");
    let file = dir.join("app.yaml");
    let original = std::fs::read_to_string(example("manifests/shop.yaml")).expect("read");
    std::fs::write(&file, &original).expect("write");
    let untouched = dir.join("svc.yaml");
    std::fs::write(
        &untouched,
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
    )
    .expect("write");
    let out = repoint(
        &[
            "run",
            "-c",
            &example("repoint.yaml"),
            "--in-place",
            dir.to_str().expect("utf-8"),
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let rewritten = std::fs::read_to_string(&file).expect("read");
    assert!(rewritten.contains("mirror.corp.example/hub/library/nginx:1.27"));
    assert_eq!(
        std::fs::read_to_string(&untouched).expect("read"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
    assert_eq!(leftovers.len(), 2, "no temp files left: {leftovers:?}");
    let out = repoint(
        &["run", "-c", &example("repoint.yaml"), "--in-place", "-"],
        "",
    );
    assert_eq!(out.code, 2);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn check_exit_codes_and_formats() {
    let dir = temp_dir("check");
    let config = write_config(
        &dir,
        "policies:\n- name: allowed\n  module: builtin:allowed-registries\n  settings: {allow: [mirror.corp.example]}\n",
    );
    let clean = "apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec:\n  containers:\n  - {name: a, image: mirror.corp.example/a:1}\n";
    let out = repoint(&["check", "-c", &config, "-"], clean);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);

    let dirty = "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers:\n  - {name: a, image: nginx}\n";
    let out = repoint(&["check", "-c", &config, "-"], dirty);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.starts_with(
            "-:1: denied: Pod/bad: [allowed] image \"nginx\" (a) is not from an allowed registry"
        ),
        "{}",
        out.stdout
    );
    let out = repoint(&["check", "-c", &config, "--format", "sarif", "-"], dirty);
    let sarif: Value = serde_json::from_str(&out.stdout).expect("sarif json");
    assert_eq!(sarif["version"], "2.1.0");
    let result = &sarif["runs"][0]["results"][0];
    assert_eq!(result["ruleId"], "repoint/denied");
    assert_eq!(
        result["locations"][0]["physicalLocation"]["region"]["startLine"],
        1
    );
    let out = repoint(&["check", "-c", &config, "--format", "github", "-"], dirty);
    assert!(
        out.stdout
            .starts_with("::error file=-,line=1,title=repoint denied (allowed)::Pod/bad: image"),
        "{}",
        out.stdout
    );
    let out = repoint(&["check", "-c", &config, "--format", "json", "-"], dirty);
    let findings: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(findings[0]["level"], "denied");
    assert_eq!(findings[0]["policy"], "allowed");

    // Changes fail the check too, each at the line of the change.
    let out = repoint(
        &[
            "check",
            "-c",
            &example("repoint.yaml"),
            &example("manifests/nightly-report.yaml"),
        ],
        "",
    );
    assert_eq!(out.code, 1);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].ends_with("nightly-report.yaml:16: change: CronJob/nightly-report (namespace shop): [mirror, secrets] would change /spec/jobTemplate/spec/template/spec/containers/0/image from \"ghcr.io/acme/reporter:latest\" to \"mirror.corp.example/ghcr/acme/reporter:latest\""), "{}", out.stdout);
    assert!(lines[1].contains("would add [{\"name\":\"corp-registry\"}] at /spec/jobTemplate/spec/template/spec/imagePullSecrets"), "{}", out.stdout);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn policy_inspect() {
    let out = repoint(&["policy", "inspect", "builtin:registry-mirror"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("name:        registry-mirror"));
    assert!(
        out.stdout.contains(
            "contract:    repoint:policy@0.1.0 (world selective-policy: info, configure, evaluate, reads; imports host, types)"
        ),
        "{}",
        out.stdout
    );
    let out = repoint(
        &["policy", "inspect", "--json", "builtin:allowed-registries"],
        "",
    );
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["mutating"], false);
    assert_eq!(v["world"], "selective-policy");
    assert_eq!(v["settingsSchema"]["required"], json!(["allow"]));
    // The text form lists the settings, then the schema itself.
    let out = repoint(&["policy", "inspect", "builtin:allowed-registries"], "");
    assert!(
        out.stdout.contains(
            "settings:\n  allow              array of string, required: Registries, registry/path prefixes or globs images may come from.\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("  enforcement        \"deny\" | \"warn\", default \"deny\"\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("settings schema:\n  {\n    \"$schema\": \"https://json-schema.org/draft/2020-12/schema\","),
        "{}",
        out.stdout
    );
    let dir = temp_dir("inspect");
    let not_wasm = dir.join("x.wasm");
    std::fs::write(&not_wasm, b"not a component").expect("write");
    let out = repoint(
        &["policy", "inspect", not_wasm.to_str().expect("utf-8")],
        "",
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("is not a repoint policy component"),
        "{}",
        out.stderr
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_policy_warning_is_one_line_without_colour_codes_off_a_terminal() {
    let dir = temp_dir("one-warning");
    let config = write_config(
        &dir,
        "policies:\n- name: m\n  module: builtin:registry-mirror\n  settings: {rules: [{match: 'localhost:5000', prefix: proxy.corp/p}]}\n",
    );
    let pod = "kind: Pod\napiVersion: v1\nmetadata: {name: a}\nspec: {containers: [{name: c, image: 'localhost:5000/app:v1'}]}\n";
    let out = repoint(&["run", "-c", &config, "-"], pod);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr.matches("cannot rewrite").count(),
        1,
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains('\x1b'), "{:?}", out.stderr);
}

#[test]
fn the_convergence_pass_does_not_repeat_a_policys_log_lines() {
    let misbehave = repoint_runtime::builtins::test_policy("misbehave").expect("built");
    let dir = temp_dir("log-once");
    // The spy runs first, so the convergence pass runs it again.
    let config = write_config(
        &dir,
        &format!(
            "policies:\n- name: spy\n  module: {}\n  settings: {{mode: log-everything}}\n- name: mirror\n  module: builtin:registry-mirror\n  settings: {{rules: [{{match: docker.io, replace: m.corp/hub}}]}}\n",
            misbehave
        ),
    );
    let pod = "kind: Pod\napiVersion: v1\nmetadata: {name: a}\nspec: {containers: [{name: c, image: nginx}]}\n";
    let out = run_command_env(
        Path::new(env!("CARGO_BIN_EXE_repoint")),
        &["run", "-c", &config, "-"],
        pod,
        &[("REPOINT_LOG", "info")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("m.corp/hub/library/nginx"),
        "{}",
        out.stdout
    );
    let logged = out
        .stderr
        .lines()
        .filter(|l| l.contains("policy=\"spy\"") || l.contains("policy=spy"))
        .count();
    assert_eq!(logged, 1, "{}", out.stderr);
}

#[test]
fn each_object_starts_from_the_configured_state_without_configuring_again() {
    let misbehave = repoint_runtime::builtins::test_policy("misbehave").expect("built");
    let dir = temp_dir("preinit");
    // `count` warns with how many times its instance has evaluated, and
    // `announce` logs each run of `configure`.
    let config = write_config(
        &dir,
        &format!(
            "policies:\n- name: counter\n  module: {misbehave}\n  settings: {{mode: count, announce: true}}\n"
        ),
    );
    let pods: String = (0..4)
        .map(|i| format!("---\nkind: Pod\napiVersion: v1\nmetadata: {{name: p{i}}}\nspec: {{containers: [{{name: c, image: nginx}}]}}\n"))
        .collect();
    let out = run_command_env(
        Path::new(env!("CARGO_BIN_EXE_repoint")),
        // Without the cache, so that the snapshot is made in this run.
        &["run", "--no-cache", "-j", "1", "-c", &config, "-"],
        &pods,
        &[("REPOINT_LOG", "info")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Every object gets a fresh instance...
    let fresh = out
        .stderr
        .matches("[counter] evaluation 1 of this instance")
        .count();
    assert_eq!(fresh, 4, "{}", out.stderr);
    assert!(!out.stderr.contains("evaluation 2"), "{}", out.stderr);
    // ...made from the pre-initialized component: `configure` ran twice in
    // all (checking the settings, then once for the snapshot), not once
    // per object.
    assert_eq!(
        out.stderr.matches("configure ran").count(),
        2,
        "{}",
        out.stderr
    );
}
