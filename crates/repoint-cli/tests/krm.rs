//! `repoint fn`: the KRM function protocol, by hand and through the real
//! `kpt fn eval --exec` runner.
//!
//! kubectl's built-in kustomize cannot run exec functions (it has no
//! `--enable-exec`; kubernetes/kubectl#1498), so kpt, which runs functions
//! with the same kyaml library, is the real client here. The kpt test is
//! skipped when kpt is not on PATH unless `REPOINT_REQUIRE_KPT` is set (CI
//! sets it).

use std::path::{Path, PathBuf};

use repoint_tests::{
    Output, documents, find_program, objects_by_identity, program_or_skip, repo_root, run_command,
    temp_dir,
};
use serde_json::{Value, json};

fn repoint(args: &[&str], stdin: &str) -> Output {
    run_command(Path::new(env!("CARGO_BIN_EXE_repoint")), args, stdin)
}

/// The example config as a functionConfig, with the annotation kustomize
/// and kpt read; the token file is the example's, by absolute path.
fn function_config() -> Value {
    let text = std::fs::read_to_string(repo_root().join("examples/repoint.yaml")).expect("read");
    let mut config = documents(&text).remove(0);
    config["credentials"][0]["passwordFile"] = repo_root()
        .join("examples/mirror-token.txt")
        .display()
        .to_string()
        .into();
    config["metadata"] = json!({
        "name": "repoint",
        "annotations": {"config.kubernetes.io/function": "exec:\n  path: ./repoint-fn.sh\n"},
    });
    config
}

fn resource_list(items: Value, config: Value) -> String {
    serde_json::to_string_pretty(&json!({
        "apiVersion": "config.kubernetes.io/v1",
        "kind": "ResourceList",
        "items": items,
        "functionConfig": config,
    }))
    .expect("json")
}

fn deployment(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop",
                     "annotations": {"config.kubernetes.io/path": format!("{name}.yaml")}},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}},
    })
}

/// The one document `repoint fn` writes.
fn parse(text: &str) -> Value {
    documents(text).remove(0)
}

#[test]
fn items_are_patched_and_secrets_appended() {
    let input = resource_list(
        json!([
            deployment("web", "nginx:1.27"),
            deployment("db", "quay.io/acme/db:1")
        ]),
        function_config(),
    );
    let out = repoint(&["fn"], &input);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let list = parse(&out.stdout);
    assert_eq!(list["kind"], "ResourceList");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "two deployments and the pull Secret");
    let image = |i: usize| &items[i]["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(image(0), "mirror.corp.example/hub/library/nginx:1.27");
    assert_eq!(image(1), "mirror.corp.example/quay/acme/db:1");
    assert_eq!(
        items[0]["spec"]["template"]["spec"]["imagePullSecrets"],
        json!([{"name": "corp-registry"}])
    );
    // Annotations the orchestrator relies on come back untouched.
    assert_eq!(
        items[1]["metadata"]["annotations"]["config.kubernetes.io/path"],
        "db.yaml"
    );
    let secret = &items[2];
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["metadata"]["namespace"], "shop");
    let config: Value = serde_json::from_str(
        &repoint_credentials::unbase64(secret["data"][".dockerconfigjson"].as_str().expect("data"))
            .expect("base64"),
    )
    .expect("json");
    assert_eq!(config["auths"]["mirror.corp.example"]["username"], "robot");
    assert!(list.get("results").is_none(), "nothing to report");
    // The functionConfig is passed through.
    assert_eq!(list["functionConfig"], function_config());
}

#[test]
fn denials_and_warnings_become_results() {
    let mut config = function_config();
    config["policies"] = json!([{
        "name": "allowed",
        "module": "builtin:allowed-registries",
        "settings": {"allow": ["mirror.corp.example"]},
    }]);
    let input = resource_list(json!([deployment("web", "nginx:1.27")]), config);
    let out = repoint(&["fn"], &input);
    assert_eq!(out.code, 1, "an error result fails the function");
    let list = parse(&out.stdout);
    let results = list["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["severity"], "error");
    assert_eq!(results[0]["tags"]["policy"], "allowed");
    assert_eq!(
        results[0]["resourceRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "shop"})
    );
    assert!(
        results[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nginx")),
        "{results:?}"
    );
    assert!(out.stderr.contains("denied"), "{}", out.stderr);

    // Left-out credentials under `missingCredentials: warn` are warnings.
    let mut config = function_config();
    config["credentials"] = json!([]);
    config["missingCredentials"] = "warn".into();
    let input = resource_list(json!([deployment("web", "nginx:1.27")]), config);
    let out = repoint(&["fn"], &input);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let list = parse(&out.stdout);
    let results = list["results"].as_array().expect("results");
    assert_eq!(results[0]["severity"], "warning");
    assert!(
        results[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no credentials are configured for mirror.corp.example")),
        "{results:?}"
    );
}

#[test]
fn bad_input_is_named() {
    let cases = [
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
            "expected a config.kubernetes.io/v1 ResourceList",
        ),
        (
            "apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems: []\n",
            "no functionConfig",
        ),
        (
            "apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems: []\nfunctionConfig: {apiVersion: repoint.dev/v1alpha1, kind: Config, polices: []}\n",
            "polices",
        ),
        ("a: [\n", "ResourceList"),
    ];
    for (input, expected) in cases {
        let out = repoint(&["fn"], input);
        assert_eq!(out.code, 2, "{input}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{input}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{input}: nothing on stdout");
    }
}

fn kpt() -> Option<PathBuf> {
    program_or_skip("kpt", "REPOINT_REQUIRE_KPT")
}

/// `kpt fn eval --exec` runs `repoint fn` over a package in place: the
/// files end up holding the objects `repoint run` prints, the generated
/// Secret in a new file.
#[test]
fn kpt_runs_it_as_an_exec_function() {
    let Some(kpt) = kpt() else { return };
    let dir = temp_dir("krm-kpt");
    let package = dir.join("package");
    std::fs::create_dir_all(&package).expect("mkdir");
    let shop = repo_root().join("examples/manifests/shop.yaml");
    std::fs::copy(&shop, package.join("shop.yaml")).expect("copy");
    let script = dir.join("repoint-fn.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nexec '{}' fn\n", env!("CARGO_BIN_EXE_repoint")),
    )
    .expect("script");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let config = dir.join("fn-config.yaml");
    std::fs::write(
        &config,
        serde_json::to_string(&function_config()).expect("json"),
    )
    .expect("config");

    let out = run_command(
        &kpt,
        &[
            "fn",
            "eval",
            &package.display().to_string(),
            "--exec",
            &script.display().to_string(),
            "--fn-config",
            &config.display().to_string(),
        ],
        "",
    );
    assert_eq!(out.code, 0, "kpt: {}{}", out.stdout, out.stderr);

    let mut written = String::new();
    let mut files = Vec::new();
    collect_yaml(&package, &mut files);
    files.sort();
    assert_eq!(
        files.len(),
        2,
        "shop.yaml and the Secret's new file: {files:?}"
    );
    for f in &files {
        written.push_str("---\n");
        written.push_str(&std::fs::read_to_string(f).expect("read"));
    }
    let expected = run_output(&shop);
    assert_eq!(
        objects_by_identity(&written),
        objects_by_identity(&expected.stdout)
    );
}

/// What `repoint run` with the example config prints for `input`.
fn run_output(input: &Path) -> Output {
    let config = repo_root().join("examples/repoint.yaml");
    let out = repoint(
        &[
            "run",
            "-c",
            &config.display().to_string(),
            &input.display().to_string(),
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    out
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect_yaml(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
}

/// A kustomize that can run exec functions: a standalone `kustomize`, or a
/// kubectl whose built-in one has `--enable-exec` (none does as of 1.33).
fn kustomize_with_exec() -> Option<Vec<String>> {
    if let Some(k) = find_program("kustomize") {
        return Some(vec![k.display().to_string(), "build".into()]);
    }
    let kubectl = find_program("kubectl")?;
    let help = run_command(&kubectl, &["kustomize", "--help"], "");
    help.stdout
        .contains("--enable-exec")
        .then(|| vec![kubectl.display().to_string(), "kustomize".into()])
}

/// The documented kustomize setup: `transformers:` naming the config,
/// whose annotation points at a script that runs `repoint fn`.
#[test]
fn kustomize_runs_it_as_an_exec_function_when_it_can() {
    let Some(command) = kustomize_with_exec() else {
        eprintln!(
            "no kustomize with --enable-exec here (kubectl's has none: kubernetes/kubectl#1498); skipping"
        );
        return;
    };
    let dir = temp_dir("krm-kustomize");
    let shop = repo_root().join("examples/manifests/shop.yaml");
    std::fs::copy(&shop, dir.join("shop.yaml")).expect("copy");
    std::fs::write(
        dir.join("repoint-fn.sh"),
        format!("#!/bin/sh\nexec '{}' fn\n", env!("CARGO_BIN_EXE_repoint")),
    )
    .expect("script");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("repoint-fn.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
    }
    std::fs::write(
        dir.join("repoint-fn.yaml"),
        serde_json::to_string(&function_config()).expect("json"),
    )
    .expect("config");
    std::fs::write(
        dir.join("kustomization.yaml"),
        "resources: [shop.yaml]\ntransformers: [repoint-fn.yaml]\n",
    )
    .expect("kustomization");
    let dir_arg = dir.display().to_string();
    let mut args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
    args.extend([dir_arg.as_str(), "--enable-alpha-plugins", "--enable-exec"]);
    let out = run_command(Path::new(&command[0]), &args, "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let expected = run_output(&shop);
    assert_eq!(
        objects_by_identity(&out.stdout),
        objects_by_identity(&expected.stdout)
    );
}
