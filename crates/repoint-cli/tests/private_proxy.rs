//! The vendor flow end to end: `repoint run` with `private-proxy` against
//! two live registries (Debian's docker-registry, one open, one behind
//! htpasswd basic auth). Private images go through the proxy, public and
//! vendor images stay, the pull secret lands where it must.

use std::path::Path;

use repoint_tests::registry::Registry;
use repoint_tests::{
    Output, dockerconfigjson, documents, find_object as find, run_command_env, temp_dir,
};
use serde_json::{Value, json};

const PROXY_TOKEN: &str = "proxy-token-for-tests-4c2a";
const VENDOR_TOKEN: &str = "vendor-token-for-tests-9b1e";

fn repoint(args: &[&str], stdin: &str) -> Output {
    run_command_env(
        Path::new(env!("CARGO_BIN_EXE_repoint")),
        args,
        stdin,
        &[("PROXY_TOKEN", PROXY_TOKEN), ("VENDOR_TOKEN", VENDOR_TOKEN)],
    )
}

fn containers(object: &Value) -> Vec<String> {
    let spec = object
        .pointer("/spec/template/spec")
        .or_else(|| object.pointer("/spec/jobTemplate/spec/template/spec"))
        .expect("pod spec");
    spec["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| c["image"].as_str().expect("image").to_string())
        .collect()
}

fn pull_secrets(object: &Value) -> Value {
    object
        .pointer("/spec/template/spec/imagePullSecrets")
        .or_else(|| object.pointer("/spec/jobTemplate/spec/template/spec/imagePullSecrets"))
        .cloned()
        .unwrap_or(Value::Null)
}

struct Setup {
    _public: Registry,
    private: Registry,
    config: String,
    manifests: String,
    digest: String,
}

/// Two registries, the config naming them (`public.example.test` and
/// `private.example.test`, probed at their loopback endpoints) and the
/// app's manifests. `None` when docker-registry is not installed.
fn setup(tag: &str, on_unknown: &str) -> Option<Setup> {
    let public = Registry::start(&format!("{tag}-public"), None)?;
    let private = Registry::start(&format!("{tag}-private"), Some(("vendor", "push-pass")))?;
    public.push("public/tool", "1.4");
    private.push("private/app", "2.0");
    let digest = private.push("private/worker", "3.1");
    let dir = temp_dir(&format!("proxy-{tag}"));
    let config = dir.join("repoint.yaml");
    std::fs::write(
        &config,
        format!(
            r#"apiVersion: repoint.dev/v1alpha1
kind: Config
registries:
  public.example.test: {{endpoint: "http://{public}"}}
  private.example.test: {{endpoint: "http://{private}"}}
probe: {{timeout: 2s, concurrency: 4}}
policies:
  - name: proxy
    module: builtin:private-proxy
    settings:
      proxy: proxy.vendor.test/proxy/my-app
      vendorRegistries: [registry.vendor.test]
      secretName: vendor-pull
      onUnknown: {on_unknown}
      additionalNamespaces: [monitoring, batch-jobs]
credentials:
  - {{registry: proxy.vendor.test, username: customer-42, passwordEnv: PROXY_TOKEN}}
  - {{registry: registry.vendor.test, username: customer-42, passwordEnv: VENDOR_TOKEN}}
"#,
            public = public.addr,
            private = private.addr,
        ),
    )
    .expect("config");
    let manifests = dir.join("app.yaml");
    std::fs::write(
        &manifests,
        format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: api, namespace: app}}
spec:
  template:
    spec:
      containers:
      - {{name: api, image: private.example.test/private/app:2.0}}
      - {{name: tool, image: public.example.test/public/tool:1.4}}
      - {{name: agent, image: registry.vendor.test/vendor/agent:3}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api-canary, namespace: app}}
spec:
  template:
    spec:
      containers:
      - {{name: api, image: private.example.test/private/app:2.0}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: worker, namespace: app}}
spec:
  schedule: "@hourly"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - {{name: w, image: "private.example.test/private/worker:3.1@{digest}"}}
---
apiVersion: batch/v1
kind: Job
metadata: {{name: cleanup, namespace: app}}
spec:
  template:
    spec:
      containers:
      - {{name: c, image: public.example.test/public/tool:1.4}}
"#
        ),
    )
    .expect("manifests");
    Some(Setup {
        _public: public,
        private,
        config: config.display().to_string(),
        manifests: manifests.display().to_string(),
        digest,
    })
}

fn decoded(secret: &Value) -> Value {
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "repoint"
    );
    dockerconfigjson(secret)
}

#[test]
fn private_images_go_through_the_proxy() {
    let Some(s) = setup("flow", "keep") else {
        return;
    };
    let out = repoint(&["run", "-c", &s.config, &s.manifests], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let objects = documents(&out.stdout);

    let api = find(&objects, "Deployment", "app", "api");
    assert_eq!(
        containers(api),
        [
            "proxy.vendor.test/proxy/my-app/private.example.test/private/app:2.0",
            "public.example.test/public/tool:1.4",
            "registry.vendor.test/vendor/agent:3",
        ]
    );
    assert_eq!(pull_secrets(api), json!([{"name": "vendor-pull"}]));
    let canary = find(&objects, "Deployment", "app", "api-canary");
    assert_eq!(
        containers(canary),
        ["proxy.vendor.test/proxy/my-app/private.example.test/private/app:2.0"]
    );
    // Tag and digest both kept.
    let worker = find(&objects, "CronJob", "app", "worker");
    assert_eq!(
        containers(worker),
        [format!(
            "proxy.vendor.test/proxy/my-app/private.example.test/private/worker:3.1@{}",
            s.digest
        )]
    );
    assert_eq!(pull_secrets(worker), json!([{"name": "vendor-pull"}]));
    // Public only: untouched, no secret.
    let cleanup = find(&objects, "Job", "app", "cleanup");
    assert_eq!(containers(cleanup), ["public.example.test/public/tool:1.4"]);
    assert_eq!(pull_secrets(cleanup), Value::Null);

    // The Secret in the app's namespace and in each additional one.
    let secrets: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Secret").collect();
    assert_eq!(secrets.len(), 3);
    for namespace in ["app", "monitoring", "batch-jobs"] {
        let config = decoded(find(&objects, "Secret", namespace, "vendor-pull"));
        let auths = config["auths"].as_object().expect("auths");
        assert_eq!(
            auths.keys().collect::<Vec<_>>(),
            ["proxy.vendor.test", "registry.vendor.test"],
            "{namespace}"
        );
        assert_eq!(auths["proxy.vendor.test"]["username"], "customer-42");
        assert_eq!(auths["proxy.vendor.test"]["password"], PROXY_TOKEN);
        assert_eq!(auths["registry.vendor.test"]["password"], VENDOR_TOKEN);
    }

    // Each unique image was asked about once, however many objects use it.
    assert_eq!(
        s.private.manifest_requests("private/app"),
        1,
        "{}",
        s.private.log()
    );
    assert_eq!(s.private.manifest_requests("private/worker"), 1);
}

#[test]
fn offline_answers_unknown_and_the_policy_decides() {
    let Some(s) = setup("offline", "keep") else {
        return;
    };
    let out = repoint(&["run", "--offline", "-c", &s.config, &s.manifests], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let objects = documents(&out.stdout);
    let api = find(&objects, "Deployment", "app", "api");
    assert_eq!(
        containers(api)[0],
        "private.example.test/private/app:2.0",
        "kept: onUnknown is keep"
    );
    assert!(
        out.stderr.contains("could not be asked"),
        "a warning says why: {}",
        out.stderr
    );
    // The vendor image still gets its secret: no probe is needed for it.
    assert_eq!(pull_secrets(api), json!([{"name": "vendor-pull"}]));
    // Not one request reached a registry.
    assert_eq!(s.private.manifest_requests("private/app"), 0);

    // onUnknown: deny refuses instead.
    let Some(s) = setup("offline-deny", "deny") else {
        return;
    };
    let out = repoint(&["check", "--offline", "-c", &s.config, &s.manifests], "");
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("denied"), "{}", out.stdout);
}

/// Waiting on a probe is the host's time, not the policy's: a registry
/// that never answers makes the probe `unknown` after the probe timeout,
/// and the policy (whose own deadline is shorter) is not killed for it.
#[test]
fn probe_time_does_not_count_against_the_policy_deadline() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dir = temp_dir("proxy-silent");
    let config = dir.join("repoint.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: repoint.dev/v1alpha1\nkind: Config\nregistries:\n  slow.example.test: {{endpoint: \"http://{}\"}}\nprobe: {{timeout: 700ms}}\nlimits: {{timeout: 200ms}}\npolicies:\n- name: proxy\n  module: builtin:private-proxy\n  settings: {{proxy: proxy.vendor.test, secretName: s, onUnknown: keep}}\n",
            silent.local_addr().expect("addr")
        ),
    )
    .expect("config");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: app}\nspec:\n  containers:\n  - {name: a, image: slow.example.test/a/b:1}\n";
    let started = std::time::Instant::now();
    let out = repoint(&["run", "-c", &config.display().to_string(), "-"], pod);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("could not be asked"), "{}", out.stderr);
    assert!(!out.stderr.contains("timed out"), "{}", out.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(out.stdout, pod, "unchanged");
}
