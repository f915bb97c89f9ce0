//! Admission end to end: the real kube-apiserver (tests/support/kube.rs)
//! calls `repoint serve` through the webhook configurations `repoint
//! webhook manifests` prints (pointed at the loopback URL with `--url`,
//! with their CA bundle), and what `kubectl` creates comes back mutated
//! exactly as `repoint run` mutates the same file; a denial reaches kubectl
//! with the policy's message; `kubectl debug` containers are mirrored too;
//! and each webhook's `failurePolicy` holds when the server is gone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use repoint_tests::cluster::TestCluster;
use repoint_tests::{Output, documents, program_or_skip, run_command, temp_dir};

/// Poll `ready` for up to a minute.
fn eventually(what: &str, ready: impl FnMut() -> bool) {
    repoint_tests::eventually(what, Duration::from_secs(60), ready)
}
use serde_json::{Value, json};

const CONFIG: &str = r#"apiVersion: repoint.dev/v1alpha1
kind: Config
policies:
  - name: mirror
    module: builtin:registry-mirror
    settings: {rules: [{match: docker.io, replace: mirror.corp.example/hub}]}
  - name: secrets
    module: builtin:pull-secrets
    settings: {secretName: corp-registry, registries: [mirror.corp.example]}
  - name: only-ours
    module: builtin:allowed-registries
    settings: {allow: [mirror.corp.example]}
webhook:
  sets:
    rewrite: {policies: [mirror, secrets], failurePolicy: Ignore}
    enforce: {policies: [only-ours]}
credentials:
  - {registry: mirror.corp.example, username: robot, passwordFile: token.txt}
offline: true
"#;

fn repoint(args: &[&str]) -> Output {
    run_command(Path::new(env!("CARGO_BIN_EXE_repoint")), args, "")
}

/// `repoint serve`, killed when dropped.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every container image and the pull secrets of a pod spec.
fn pulled(spec: &Value) -> Value {
    let images = |field: &str| -> Vec<Value> {
        spec[field]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["image"].clone())
            .collect()
    };
    json!({
        "initContainers": images("initContainers"),
        "containers": images("containers"),
        "imagePullSecrets": spec.get("imagePullSecrets").cloned().unwrap_or(Value::Null),
    })
}

#[test]
fn the_api_server_calls_repoint_serve_as_its_manifests_configure() {
    // Its webhooks judge every namespace: on a control plane of its own.
    let Some(cluster) = TestCluster::start_own("admission") else {
        return;
    };
    let Some(kubectl) = program_or_skip("kubectl", "REPOINT_REQUIRE_KUBECTL") else {
        return;
    };
    let dir = temp_dir("admission");
    let config = dir.join("repoint.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    std::fs::write(dir.join("token.txt"), "s3cr3t\n").expect("token");
    let config = config.to_str().expect("utf-8");
    let kubeconfig = cluster.kubeconfig().to_str().expect("utf-8").to_string();
    let ns = cluster.namespace("apps", &[]);
    let kubectl = |args: &[&str]| {
        let mut all = vec!["--kubeconfig", kubeconfig.as_str(), "-n", ns.as_str()];
        all.extend_from_slice(args);
        run_command(&kubectl, &all, "")
    };

    // The manifests, for this server's version and a server on loopback.
    let port = repoint_tests::registry::free_port();
    let url = format!("https://127.0.0.1:{port}");
    let out = repoint(&[
        "webhook",
        "manifests",
        "-c",
        config,
        "-n",
        &cluster.ns("repoint"),
        "--kube-version",
        repoint_tests::kube::VERSION,
        "--url",
        &url,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let objects = documents(&out.stdout);
    let of_kind = |kind: &str| -> Vec<Value> {
        objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .cloned()
            .collect()
    };
    let tls = of_kind("Secret")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "repoint-tls")
        .expect("the serving Secret");
    for field in ["tls.crt", "tls.key", "ca.crt"] {
        let pem = repoint_credentials::unbase64(tls["data"][field].as_str().expect("pem"))
            .expect("base64");
        std::fs::write(dir.join(field), pem).expect("write");
    }
    let metrics_port = repoint_tests::registry::free_port();
    let serve = |log: &str| -> Server {
        let log = dir.join(log);
        let child = Command::new(env!("CARGO_BIN_EXE_repoint"))
            .args([
                "serve",
                "-c",
                config,
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
            ])
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start repoint serve");
        Server { child, log }
    };
    let server = serve("serve.log");
    let ca = ureq::tls::Certificate::from_pem(&std::fs::read(dir.join("ca.crt")).expect("ca"))
        .expect("CA");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
                .build(),
        )
        .build()
        .into();
    eventually("repoint serve is ready", || {
        agent
            .get(format!("{url}/readyz"))
            .call()
            .is_ok_and(|r| r.status() == 200)
    });

    // The webhook configurations, as printed.
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        for object in of_kind(kind) {
            assert!(
                object["webhooks"][0]["clientConfig"]["url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with(&url))
            );
            cluster.create(&object);
        }
    }
    let pod = |name: &str, image: &str| -> String {
        serde_json::to_string(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "app", "image": image}]},
        }))
        .expect("json")
    };
    let apply = |file: &Path| kubectl(&["apply", "-f", file.to_str().expect("utf-8")]);
    // The API server picks new configurations up from a watch: wait for
    // them to be in force (a server-side dry run is admitted too).
    std::fs::write(dir.join("probe.json"), pod("probe", "nginx:1.25")).expect("probe");
    eventually("the webhooks are in force", || {
        let out = kubectl(&[
            "apply",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            dir.join("probe.json").to_str().expect("utf-8"),
        ]);
        out.code == 0
            && out
                .stdout
                .contains("mirror.corp.example/hub/library/nginx:1.25")
    });

    // How often the mirror, and the set it is in, have answered from
    // memory so far (the probes above may repeat one Pod).
    const MIRROR: &str = r#"repoint_policy_answers_reused_total{policy="mirror"}"#;
    const REWRITE: &str = r#"repoint_set_outcomes_reused_total{set="rewrite"}"#;
    let reused = || -> ([u64; 2], String) {
        let metrics = agent
            .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .call()
            .expect("metrics")
            .body_mut()
            .read_to_string()
            .expect("text");
        let counter = |line: &str| -> u64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
                .expect("the counter")
        };
        ([counter(MIRROR), counter(REWRITE)], metrics)
    };
    let (reused_before, _) = reused();

    // A Deployment and a bare Pod come back as `repoint run` makes them.
    let deployment = dir.join("deployment.yaml");
    std::fs::write(
        &deployment,
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      initContainers:\n        - {{name: init, image: busybox:1.36}}\n      containers:\n        - {{name: app, image: nginx:1.25}}\n        - {{name: sidecar, image: docker.io/envoyproxy/envoy:v1.30.0}}\n"
        ),
    )
    .expect("deployment");
    let bare = dir.join("pod.json");
    std::fs::write(&bare, pod("solo", "redis:7")).expect("pod");
    for (file, kind, name, spec) in [
        (&deployment, "Deployment", "web", "/spec/template/spec"),
        (&bare, "Pod", "solo", "/spec"),
    ] {
        let out = apply(file);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let run = repoint(&["run", "-c", config, file.to_str().expect("utf-8")]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let produced = documents(&run.stdout);
        let expected = produced
            .iter()
            .find(|d| d["kind"] == kind)
            .expect("the object, beside its pull Secret");
        let api_version = if kind == "Pod" { "v1" } else { "apps/v1" };
        let live = cluster
            .get(api_version, kind, Some(&ns), name)
            .expect("created");
        assert_eq!(
            pulled(live.pointer(spec).expect("spec")),
            pulled(expected.pointer(spec).expect("spec")),
            "{kind} {name} as admitted, against repoint run"
        );
        assert_ne!(
            pulled(live.pointer(spec).expect("spec")),
            pulled(
                documents(&std::fs::read_to_string(file).expect("file"))[0]
                    .pointer(spec)
                    .expect("spec")
            ),
            "{kind} {name} was changed"
        );
    }
    // The Deployment's own Pods, made by the controller manager, are
    // admitted the same way.
    let web_pods = || -> Vec<Value> {
        cluster
            .list("v1", "Pod", &ns)
            .into_iter()
            .filter(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("web-"))
            })
            .collect()
    };
    eventually("the Deployment's Pod exists", || !web_pods().is_empty());
    let made = web_pods().into_iter().next().expect("pod");
    assert_eq!(
        made["spec"]["containers"][0]["image"],
        "mirror.corp.example/hub/library/nginx:1.25"
    );
    // The ReplicaSet's Pods differ only in their metadata: the mirror
    // (which reads only images) and its set answer all but the first of
    // them from memory.
    eventually("the Deployment's three Pods exist", || {
        web_pods().len() == 3
    });
    let (reused_after, metrics) = reused();
    for (before, after) in reused_before.iter().zip(reused_after) {
        assert!(after >= before + 2, "{reused_before:?} before: {metrics}");
    }

    // A denial reaches kubectl with the policy's message.
    let evil = dir.join("evil.json");
    std::fs::write(&evil, pod("evil", "evil.example/miner:1")).expect("pod");
    let out = apply(&evil);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("denied the request")
            && out.stderr.contains("[only-ours]")
            && out.stderr.contains("evil.example/miner:1"),
        "{}",
        out.stderr
    );

    // `kubectl debug` adds an ephemeral container: its image is mirrored.
    // This kubectl no longer speaks v1.20's form of it (an
    // EphemeralContainers object on pods/ephemeralcontainers, which it
    // refuses to encode), so the test sends what kubectl 1.20's `kubectl
    // alpha debug` sent: read the subresource, add a container, put it.
    let path = format!("/api/v1/namespaces/{ns}/pods/solo/ephemeralcontainers");
    let client = cluster.client();
    let put = cluster.block_on(async {
        let mut current: Value = client
            .request(http::Request::get(&path).body(Vec::new()).expect("request"))
            .await
            .expect("read pods/ephemeralcontainers");
        assert_eq!(current["kind"], "EphemeralContainers");
        current["ephemeralContainers"] = json!([{
            "name": "debugger", "image": "busybox:1.36", "imagePullPolicy": "IfNotPresent",
            "terminationMessagePolicy": "File", "stdin": true, "tty": true,
        }]);
        client
            .request::<Value>(
                http::Request::put(&path)
                    .header("Content-Type", "application/json")
                    .body(serde_json::to_vec(&current).expect("json"))
                    .expect("request"),
            )
            .await
    });
    assert!(put.is_ok(), "{put:?}");
    let solo = cluster.get("v1", "Pod", Some(&ns), "solo").expect("solo");
    assert_eq!(
        solo["spec"]["ephemeralContainers"][0]["image"],
        "mirror.corp.example/hub/library/busybox:1.36",
        "{}",
        std::fs::read_to_string(&server.log).unwrap_or_default()
    );

    // The server stops: the `enforce` webhook (failurePolicy Fail) refuses
    // what it cannot check; without it, `rewrite` (Ignore) lets a Pod in
    // as written.
    drop(server);
    let late = dir.join("late.json");
    std::fs::write(&late, pod("late", "nginx:1.25")).expect("pod");
    let out = apply(&late);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr.contains("failed calling webhook") && out.stderr.contains("enforce."),
        "{}",
        out.stderr
    );
    cluster.delete(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        None,
        "repoint",
    );
    eventually("only the Ignore webhook is left in force", || {
        apply(&late).code == 0
    });
    let late = cluster.get("v1", "Pod", Some(&ns), "late").expect("late");
    assert_eq!(late["spec"]["containers"][0]["image"], "nginx:1.25");
    cluster.delete(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        None,
        "repoint",
    );
}

#[test]
fn the_manifests_are_what_the_target_server_accepts() {
    let Some(cluster) = TestCluster::start("versions") else {
        return;
    };
    let Some(kubectl) = program_or_skip("kubectl", "REPOINT_REQUIRE_KUBECTL") else {
        return;
    };
    let dir = temp_dir("admission-versions");
    let config = dir.join("repoint.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    std::fs::write(dir.join("token.txt"), "s3cr3t\n").expect("token");
    let config = config.to_str().expect("utf-8");
    let ns = cluster.namespace("server", &[]);
    let kubeconfig = cluster.kubeconfig().to_str().expect("utf-8");
    let dry_run = |extra: &[&str]| {
        let mut args = vec!["webhook", "manifests", "-c", config, "-n", ns.as_str()];
        args.extend_from_slice(extra);
        let out = repoint(&args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let file = dir.join("manifests.yaml");
        std::fs::write(&file, &out.stdout).expect("manifests");
        let applied = run_command(
            &kubectl,
            &[
                "--kubeconfig",
                kubeconfig,
                "apply",
                "--dry-run=server",
                "-f",
                file.to_str().expect("utf-8"),
            ],
            "",
        );
        (out, applied)
    };
    // For the newest servers: policy/v1, which v1.20 does not serve.
    let (_, applied) = dry_run(&[]);
    assert_ne!(applied.code, 0);
    assert!(
        applied.stderr.contains("PodDisruptionBudget") && applied.stderr.contains("policy/v1"),
        "{}",
        applied.stderr
    );
    // For this server's version: all of it is accepted, and the webhooks
    // skip namespaces by a label, since v1.20 puts no name label on them.
    let (out, applied) = dry_run(&["--kube-version", repoint_tests::kube::VERSION]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert!(
        out.stderr
            .contains("kubectl label namespace kube-system repoint.dev/admission=skip"),
        "{}",
        out.stderr
    );
    let objects = documents(&out.stdout);
    let namespace = objects
        .iter()
        .find(|o| o["kind"] == "Namespace")
        .expect("namespace");
    assert_eq!(
        namespace["metadata"]["labels"]["repoint.dev/admission"],
        "skip"
    );
}
