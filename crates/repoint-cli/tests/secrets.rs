//! Pull Secrets made real from configured credentials, and credentials
//! never shown: not on stderr at any log level, not in errors, diffs,
//! JSON patches or check output, and never to a policy.

use std::path::{Path, PathBuf};

use repoint_tests::{Output, dockerconfigjson, documents, run_command_env, temp_dir};
use serde_json::Value;

const PASSWORD: &str = "s3cr3t-Pa55w0rd-for-mirror";
const TOKEN: &str = "tok-9f8e7d6c5b4a-from-file";

fn repoint_env(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    run_command_env(Path::new(env!("CARGO_BIN_EXE_repoint")), args, stdin, env)
}

const WORKLOADS: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: web, image: nginx:1.27}\n---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: report, namespace: finance}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: r, image: quay.io/acme/report:1}\n";

/// Config: mirror docker.io and quay.io onto mirror.corp.example, secrets
/// for it from an env var; other.corp.example from a file (never asked).
fn setup(dir: &Path, extra: &str) -> String {
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).expect("write token");
    let config = dir.join("repoint.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: mirror\n  module: builtin:registry-mirror\n  settings: {{rules: [{{match: docker.io, replace: mirror.corp.example/hub}}, {{match: quay.io, replace: mirror.corp.example/quay}}]}}\n- name: secrets\n  module: builtin:pull-secrets\n  settings: {{secretName: corp-pull, registries: [mirror.corp.example]}}\ncredentials:\n- {{registry: mirror.corp.example, username: robot, passwordEnv: MIRROR_TOKEN}}\n- {{registry: other.corp.example, username: bot, passwordFile: token}}\n{extra}"
        ),
    )
    .expect("write config");
    config.display().to_string()
}

#[test]
fn one_secret_per_namespace_with_only_the_requested_registry() {
    let dir = temp_dir("gen");
    let config = setup(&dir, "");
    let out = repoint_env(
        &["run", "-c", &config, "-"],
        WORKLOADS,
        &[("MIRROR_TOKEN", PASSWORD)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let docs = documents(&out.stdout);
    let secrets: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Secret").collect();
    assert_eq!(secrets.len(), 2);
    for (secret, ns) in secrets.iter().zip(["shop", "finance"]) {
        assert_eq!(secret["metadata"]["name"], "corp-pull");
        assert_eq!(secret["metadata"]["namespace"], ns);
        assert_eq!(
            secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "repoint"
        );
        assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
        let auths = dockerconfigjson(secret)["auths"].clone();
        let auths = auths.as_object().expect("auths");
        assert_eq!(
            auths.keys().collect::<Vec<_>>(),
            ["mirror.corp.example"],
            "only the requested registry"
        );
        let entry = &auths["mirror.corp.example"];
        assert_eq!(entry["username"], "robot");
        assert_eq!(entry["password"], PASSWORD);
        assert_eq!(
            repoint_credentials::unbase64(entry["auth"].as_str().expect("auth")).expect("b64"),
            format!("robot:{PASSWORD}")
        );
    }
    // The Secrets follow the input documents.
    assert_eq!(docs[0]["kind"], "Deployment");
    assert_eq!(docs[1]["kind"], "Job");
    std::fs::remove_dir_all(dir).ok();
}

/// A cluster-wide run over IBM Cloud's registries: `*.icr.io` needs the
/// secret, but cp.icr.io has other credentials (and none configured here),
/// and kube-system is not repoint's to touch.
#[test]
fn excluded_registries_and_namespaces_get_no_secret() {
    let dir = temp_dir("exclude");
    let config = dir.join("repoint.yaml");
    let pod = |ns: &str, name: &str, image: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  containers:\n  - {{name: c, image: '{image}'}}\n"
        )
    };
    let input = [
        pod("shop", "api", "us.icr.io/acme/api:1"),
        pod("shop", "entitled", "cp.icr.io/cp/db2:11"),
        pod("kube-system", "agent", "us.icr.io/acme/agent:2"),
    ]
    .join("---\n");
    let run = |exclusions: &str| {
        std::fs::write(
            &config,
            format!("apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: secrets\n  module: builtin:pull-secrets\n  settings: {{secretName: icr, registries: ['*.icr.io']{exclusions}}}\ncredentials:\n- {{registry: us.icr.io, username: iamapikey, passwordEnv: ICR_KEY}}\n"),
        )
        .expect("write config");
        repoint_env(
            &["run", "-c", &config.display().to_string(), "-"],
            &input,
            &[("ICR_KEY", PASSWORD)],
        )
    };
    // Without exclusions the run fails: nothing is configured for cp.icr.io.
    let out = run("");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("cp.icr.io"), "{}", out.stderr);

    let out = run(", excludeImages: [cp.icr.io], excludeNamespaces: ['kube-*']");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let docs = documents(&out.stdout);
    let named = |name: &str| {
        docs.iter()
            .find(|d| d["metadata"]["name"] == name)
            .expect(name)
    };
    assert_eq!(named("api")["spec"]["imagePullSecrets"][0]["name"], "icr");
    assert!(named("entitled")["spec"].get("imagePullSecrets").is_none());
    assert!(named("agent")["spec"].get("imagePullSecrets").is_none());
    let secrets: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Secret").collect();
    assert_eq!(secrets.len(), 1, "one Secret, in shop");
    assert_eq!(secrets[0]["metadata"]["namespace"], "shop");
    let auths = dockerconfigjson(secrets[0])["auths"].clone();
    assert_eq!(
        auths.as_object().expect("auths").keys().collect::<Vec<_>>(),
        ["us.icr.io"]
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn an_existing_secret_is_reused_and_a_lacking_one_is_an_error() {
    let dir = temp_dir("reuse");
    let config = setup(&dir, "");
    let good = repoint_credentials::base64(r#"{"auths":{"mirror.corp.example":{"auth":"eDp5"}}}"#);
    let with_secret = format!(
        "{WORKLOADS}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: corp-pull, namespace: shop}}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {good}\n"
    );
    let out = repoint_env(
        &["run", "-c", &config, "-"],
        &with_secret,
        &[("MIRROR_TOKEN", PASSWORD)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let secrets = documents(&out.stdout)
        .into_iter()
        .filter(|d| d["kind"] == "Secret")
        .count();
    assert_eq!(
        secrets, 2,
        "the shop Secret is reused, finance gets a new one"
    );

    let lacking = repoint_credentials::base64(r#"{"auths":{"elsewhere.example":{"auth":"eDp5"}}}"#);
    let conflicting = with_secret.replace(&good, &lacking);
    let out = repoint_env(
        &["run", "-c", &config, "-"],
        &conflicting,
        &[("MIRROR_TOKEN", PASSWORD)],
    );
    assert_eq!(out.code, 2);
    assert!(out.stdout.is_empty(), "nothing written");
    assert!(
        out.stderr
            .contains("Secret shop/corp-pull in - has no credentials for mirror.corp.example"),
        "{}",
        out.stderr
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn failure_modes_are_clear_and_write_nothing() {
    let dir = temp_dir("fail");
    // The password variable is not set.
    let config = setup(&dir, "");
    let out = repoint_env(&["run", "-c", &config, "-"], WORKLOADS, &[]);
    assert_eq!((out.code, out.stdout.as_str()), (2, ""));
    assert!(
        out.stderr.contains(
            "credentials for mirror.corp.example: environment variable MIRROR_TOKEN is not set"
        ),
        "{}",
        out.stderr
    );

    // No credentials for the registry: an error, or a warning when asked.
    let plain = dir.join("plain");
    std::fs::create_dir_all(&plain).expect("dir");
    let cfg = plain.join("repoint.yaml");
    let body = "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: secrets\n  module: builtin:pull-secrets\n  settings: {secretName: s, registries: [quay.io]}\n";
    std::fs::write(&cfg, body).expect("write");
    let cfg_s = cfg.display().to_string();
    let out = repoint_env(&["run", "-c", &cfg_s, "-"], WORKLOADS, &[]);
    assert_eq!((out.code, out.stdout.as_str()), (2, ""));
    assert!(
        out.stderr
            .contains("no credentials are configured for quay.io (needed by Secret finance/s)"),
        "{}",
        out.stderr
    );
    std::fs::write(&cfg, format!("{body}missingCredentials: warn\n")).expect("write");
    let out = repoint_env(&["run", "-c", &cfg_s, "-"], WORKLOADS, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("warning: no credentials are configured for quay.io")
    );

    // A bad docker config.json and an unreadable password file.
    std::fs::write(
        plain.join("config.json"),
        "{\"auths\": {\"quay.io\": {\"auth\": \"%%%\"}}}",
    )
    .expect("write");
    std::fs::write(
        &cfg,
        format!("{body}credentials:\n- {{registry: quay.io, dockerConfig: config.json}}\n"),
    )
    .expect("write");
    let out = repoint_env(&["run", "-c", &cfg_s, "-"], WORKLOADS, &[]);
    assert_eq!((out.code, out.stdout.as_str()), (2, ""));
    assert!(
        out.stderr
            .contains("config.json: the entry for quay.io has an auth that is not base64"),
        "{}",
        out.stderr
    );
    std::fs::write(
        &cfg,
        format!(
            "{body}credentials:\n- {{registry: quay.io, username: u, passwordFile: nope.txt}}\n"
        ),
    )
    .expect("write");
    let out = repoint_env(&["run", "-c", &cfg_s, "-"], WORKLOADS, &[]);
    assert_eq!((out.code, out.stdout.as_str()), (2, ""));
    assert!(
        out.stderr.contains("nope.txt: entity not found"),
        "{}",
        out.stderr
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn docker_config_credential_helpers_and_secret_copy() {
    let dir = temp_dir("helper");
    // A credential helper on PATH, answering as docker's helpers do.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let helper = bin.join("docker-credential-fake");
    std::fs::write(
        &helper,
        format!("#!/bin/sh\nread server\necho \"{{\\\"ServerURL\\\":\\\"$server\\\",\\\"Username\\\":\\\"helper-user\\\",\\\"Secret\\\":\\\"{TOKEN}\\\"}}\"\n"),
    )
    .expect("write helper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(
        dir.join("config.json"),
        r#"{"credHelpers": {"quay.io": "fake"}}"#,
    )
    .expect("write");
    let cfg = dir.join("repoint.yaml");
    std::fs::write(&cfg, "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: secrets\n  module: builtin:pull-secrets\n  settings: {secretName: s, registries: [quay.io]}\ncredentials:\n- {registry: 'https://quay.io/', dockerConfig: config.json}\n").expect("write");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = repoint_env(
        &["run", "-c", &cfg.display().to_string(), "-"],
        WORKLOADS,
        &[("PATH", &path)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let docs = documents(&out.stdout);
    let secret = docs.iter().find(|d| d["kind"] == "Secret").expect("secret");
    let entry = &dockerconfigjson(secret)["auths"]["quay.io"];
    assert_eq!(
        (entry["username"].as_str(), entry["password"].as_str()),
        (Some("helper-user"), Some(TOKEN))
    );

    // secretFrom copies an existing pull secret into the namespace that needs it.
    let source = repoint_credentials::base64(r#"{"auths":{"quay.io":{"auth":"dTpw"}}}"#);
    std::fs::write(dir.join("regcred.yaml"), format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: regcred, namespace: vendor}}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {source}\n")).expect("write");
    std::fs::write(&cfg, "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: secrets\n  module: builtin:pull-secrets\n  settings: {secretName: s, registries: [quay.io]}\nsecretFrom: {file: regcred.yaml}\n").expect("write");
    let out = repoint_env(
        &["run", "-c", &cfg.display().to_string(), "-"],
        WORKLOADS,
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let docs = documents(&out.stdout);
    let secret = docs.iter().find(|d| d["kind"] == "Secret").expect("secret");
    assert_eq!(secret["metadata"]["namespace"], "finance");
    assert_eq!(secret["data"][".dockerconfigjson"], source.as_str());

    // A legacy kubernetes.io/dockercfg Secret (registry entries without the
    // `auths` wrapper, under .dockercfg) is read by secretFrom and by a
    // credentials entry's secretFile, and what repoint writes is of the
    // modern type.
    let legacy = r#"{"quay.io":{"auth":"dTpw","email":"u@example.com"}}"#;
    std::fs::write(
        dir.join("legacy.yaml"),
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: old, namespace: vendor}}\ntype: kubernetes.io/dockercfg\ndata:\n  .dockercfg: {}\n", repoint_credentials::base64(legacy)),
    )
    .expect("write");
    for source in [
        "secretFrom: {file: legacy.yaml}",
        "credentials:\n- {registry: quay.io, secretFile: legacy.yaml}",
    ] {
        std::fs::write(&cfg, format!("apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: secrets\n  module: builtin:pull-secrets\n  settings: {{secretName: s, registries: [quay.io]}}\n{source}\n")).expect("write");
        let out = repoint_env(
            &["run", "-c", &cfg.display().to_string(), "-"],
            WORKLOADS,
            &[],
        );
        assert_eq!(out.code, 0, "{source}: {}", out.stderr);
        let docs = documents(&out.stdout);
        let secret = docs.iter().find(|d| d["kind"] == "Secret").expect("secret");
        assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson", "{source}");
        let entry = &dockerconfigjson(secret)["auths"]["quay.io"];
        assert_eq!(entry["auth"], "dTpw", "{source}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_failing_helper_that_printed_its_answer_leaks_nothing() {
    let dir = temp_dir("helper-fails");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    // Prints a whole answer, secret included, on both streams, then fails.
    let answer = format!(r#"{{"Username":"helper-user","Secret":"{TOKEN}"}}"#);
    let helper = bin.join("docker-credential-leaky");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh
read server
echo '{answer}'
echo '{answer}' >&2
exit 1
"
        ),
    )
    .expect("write helper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(
        dir.join("config.json"),
        r#"{"credHelpers": {"quay.io": "leaky"}}"#,
    )
    .expect("write");
    let cfg = dir.join("repoint.yaml");
    std::fs::write(&cfg, "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: secrets\n  module: builtin:pull-secrets\n  settings: {secretName: s, registries: [quay.io]}\ncredentials:\n- {registry: quay.io, dockerConfig: config.json}\n").expect("write");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let auth = repoint_credentials::base64(&format!("helper-user:{TOKEN}"));
    for command in ["run", "check"] {
        let out = repoint_env(
            &[command, "-c", &cfg.display().to_string(), "-"],
            WORKLOADS,
            &[("PATH", &path), ("REPOINT_LOG", "trace")],
        );
        assert_eq!(out.code, 2, "{command}: {}", out.stderr);
        assert!(
            out.stderr.contains(
                "credential helper docker-credential-leaky failed for quay.io: exit status: 1"
            ),
            "{command}: {}",
            out.stderr
        );
        for shown in [&out.stdout, &out.stderr] {
            for secret in [TOKEN, auth.as_str(), &repoint_credentials::base64(TOKEN)] {
                assert!(
                    !shown.contains(secret),
                    "{command} shows the secret:\n{shown}"
                );
            }
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn credentials_never_leak() {
    let dir = temp_dir("leak");
    let config = setup(&dir, "");
    let auth = repoint_credentials::base64(&format!("robot:{PASSWORD}"));
    let forbidden = [PASSWORD, TOKEN, auth.as_str()];
    let env = [("MIRROR_TOKEN", PASSWORD), ("REPOINT_LOG", "trace")];
    let check = |what: &str, text: &str| {
        for secret in forbidden {
            assert!(!text.contains(secret), "{what} shows a credential:\n{text}");
        }
    };
    for args in [
        vec!["run", "-c", &config, "-"],
        vec!["run", "-c", &config, "-o", "diff", "-"],
        vec!["run", "-c", &config, "-o", "json-patch", "-"],
        vec!["check", "-c", &config, "-"],
        vec!["check", "-c", &config, "--format", "sarif", "-"],
        vec!["images", "-"],
        vec![
            "--log-level",
            "trace",
            "run",
            "-c",
            &config,
            "-o",
            "yaml",
            "-",
        ],
    ] {
        let out = repoint_env(&args, WORKLOADS, &env);
        assert!(out.code <= 1, "{args:?}: {}", out.stderr);
        check(&format!("stderr of {args:?}"), &out.stderr);
        if args.contains(&"diff")
            || args.contains(&"json-patch")
            || args[0] == "check"
            || args[0] == "images"
        {
            check(&format!("stdout of {args:?}"), &out.stdout);
        }
    }
    // The kustomize overlay: only the generated Secret's own file holds
    // credentials; kustomization.yaml and the patches do not.
    let overlay = dir.join("overlay");
    let target = format!("kustomize={}", overlay.display());
    let out = repoint_env(&["run", "-c", &config, "-o", &target, "-"], WORKLOADS, &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    check("stderr of the overlay run", &out.stderr);
    let mut overlay_files = Vec::new();
    for sub in ["", "patches", "generated"] {
        for entry in std::fs::read_dir(overlay.join(sub)).expect("overlay dir") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                overlay_files.push(path);
            }
        }
    }
    let secret_files: Vec<&PathBuf> = overlay_files
        .iter()
        .filter(|p| p.to_string_lossy().contains("generated/secret-"))
        .collect();
    assert_eq!(secret_files.len(), 2, "{overlay_files:?}");
    for path in overlay_files.iter().filter(|p| !secret_files.contains(p)) {
        let text = std::fs::read_to_string(path).expect("read");
        check(&path.display().to_string(), &text);
    }
    // The KRM function at trace level: stderr stays clean.
    let list = serde_json::json!({
        "apiVersion": "config.kubernetes.io/v1",
        "kind": "ResourceList",
        "items": documents(WORKLOADS),
        "functionConfig": documents(&std::fs::read_to_string(&config).expect("config"))[0],
    });
    let out = repoint_env(&["fn"], &list.to_string(), &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    check("stderr of fn", &out.stderr);
    let items = documents(&out.stdout)[0]["items"].clone();
    assert!(
        items
            .as_array()
            .is_some_and(|i| i.iter().any(|o| o["kind"] == "Secret")),
        "the function emits the Secret: {items:?}"
    );

    // The manifests themselves do carry the Secret (that is their job).
    let out = repoint_env(&["run", "-c", &config, "-"], WORKLOADS, &env);
    let docs = documents(&out.stdout);
    let secret = docs.iter().find(|d| d["kind"] == "Secret").expect("secret");
    assert_eq!(
        dockerconfigjson(secret)["auths"]["mirror.corp.example"]["password"],
        PASSWORD
    );
    // The diff shows the Secret redacted.
    let out = repoint_env(&["run", "-c", &config, "-o", "diff", "-"], WORKLOADS, &env);
    assert!(
        out.stdout.contains("+  .dockerconfigjson: <redacted>"),
        "{}",
        out.stdout
    );
    // A failing run's error message carries no credential either.
    let out = repoint_env(
        &["run", "-c", &config, "-"],
        WORKLOADS,
        &[("REPOINT_LOG", "trace")],
    );
    assert_eq!(out.code, 2);
    check("an error", &out.stderr);

    // A policy that logs everything it receives sees no credential.
    let misbehave = repoint_runtime::builtins::test_policy("misbehave").expect("built");
    let spy = dir.join("spy.yaml");
    std::fs::write(
        &spy,
        std::fs::read_to_string(&config).expect("read").replace(
            "policies:\n",
            &format!("policies:\n- name: spy\n  module: {misbehave}\n  settings: {{mode: log-everything}}\n"),
        ) + "",
    )
    .expect("write");
    let out = repoint_env(
        &["run", "-c", &spy.display().to_string(), "-"],
        WORKLOADS,
        &env,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("object-json"),
        "the spy logged what it got"
    );
    check("the spy's log", &out.stderr);
    std::fs::remove_dir_all(dir).ok();
}

/// Every way loading a credential can fail says what failed and never
/// what it read: the secret, its base64 and its `user:secret` base64 stay
/// out of stdout, stderr and the trace log.
#[test]
fn credential_loading_errors_never_show_the_secret() {
    use repoint_credentials::base64;
    let dir = temp_dir("leak-errors");
    let secret = PASSWORD;
    let forbidden = [
        secret.to_string(),
        base64(secret),
        base64(&format!("robot:{secret}")),
        base64(&format!(
            r#"{{"auths":{{"quay.io":{{"auth":"{}"}}}}}}"#,
            base64(&format!("robot{secret}"))
        )),
    ];
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).expect("write");
        name.to_string()
    };
    // Each source holds the secret and is broken in its own way.
    let sources = [
        // `auth` that is not `user:password` once decoded.
        format!(
            "dockerConfig: {}",
            write(
                "no-colon.json",
                &format!(
                    r#"{{"auths": {{"quay.io": {{"auth": "{}"}}}}}}"#,
                    base64(&format!("robot{secret}"))
                )
            )
        ),
        // `auth` that is not base64 at all.
        format!(
            "dockerConfig: {}",
            write(
                "not-b64.json",
                &format!(r#"{{"auths": {{"quay.io": {{"auth": "{secret}!"}}}}}}"#)
            )
        ),
        // A docker config that is not JSON, around the secret.
        format!(
            "dockerConfig: {}",
            write(
                "not-json.json",
                &format!(r#"{{"auths": {{"quay.io": {{"password": "{secret}" "#)
            )
        ),
        // A docker config without this registry, but with the secret for another.
        format!(
            "dockerConfig: {}",
            write(
                "other.json",
                &format!(
                    r#"{{"auths": {{"other.example": {{"username": "u", "password": "{secret}"}}}}}}"#
                )
            )
        ),
        // A Secret manifest whose .dockerconfigjson is not JSON.
        format!(
            "secretFile: {}",
            write(
                "bad-secret.yaml",
                &format!(
                    "apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
                    base64(&format!("{{not json {secret}"))
                )
            )
        ),
        // A legacy dockercfg Secret manifest whose .dockercfg is not JSON.
        format!(
            "secretFile: {}",
            write(
                "bad-legacy.yaml",
                &format!(
                    "apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ntype: kubernetes.io/dockercfg\nstringData:\n  .dockercfg: '{{\"quay.io\": {{\"password\": \"{secret}\"'\n"
                )
            )
        ),
        // A Secret manifest of the wrong type.
        format!(
            "secretFile: {}",
            write(
                "opaque.yaml",
                &format!(
                    "apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ntype: Opaque\nstringData: {{password: {secret}}}\n"
                )
            )
        ),
        // A password file that is a directory, and one that is missing.
        "username: robot\n  passwordFile: .".to_string(),
        "username: robot\n  passwordFile: missing.txt".to_string(),
    ];
    for (i, source) in sources.iter().enumerate() {
        let config = dir.join(format!("c{i}.yaml"));
        std::fs::write(
            &config,
            format!("apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: secrets\n  module: builtin:pull-secrets\n  settings: {{secretName: s, registries: [quay.io]}}\ncredentials:\n- registry: quay.io\n  {source}\n"),
        )
        .expect("config");
        let out = repoint_env(
            &[
                "--log-level",
                "trace",
                "run",
                "-c",
                &config.display().to_string(),
                "-",
            ],
            WORKLOADS,
            &[("REPOINT_LOG", "trace")],
        );
        assert_eq!(out.code, 2, "{source}: {}{}", out.stdout, out.stderr);
        for shown in [&out.stdout, &out.stderr] {
            for f in &forbidden {
                assert!(
                    !shown.contains(f.as_str()),
                    "{source} shows the secret:\n{shown}"
                );
            }
        }
    }
}
