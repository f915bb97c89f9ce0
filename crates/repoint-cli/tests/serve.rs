//! `repoint serve` over real TLS: AdmissionReview bodies for the example
//! manifests posted by a rustls client, patches applied and compared with
//! `repoint run`; metrics on the plain port; JSON logs; the certificate
//! reloaded when its files change; mTLS; a graceful stop on SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use repoint_core::patch::{self, PatchOp};
use repoint_tests::registry::free_port;
use repoint_tests::{Issued, issue};
use repoint_tests::{objects_by_identity, repo_root, run_command, temp_dir};
use serde_json::{Value, json};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

struct Server {
    child: Child,
    addr: String,
    metrics: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CONFIG: &str = "apiVersion: repoint.dev/v1alpha1
kind: Config
policies:
  - name: mirror
    module: builtin:registry-mirror
    settings:
      rules:
        - {match: docker.io, replace: mirror.corp.example/hub}
        - {match: quay.io, replace: mirror.corp.example/quay}
        - {match: ghcr.io, replace: mirror.corp.example/ghcr}
  - name: secrets
    module: builtin:pull-secrets
    settings: {secretName: corp-registry, registries: [mirror.corp.example]}
  - name: allowed
    module: builtin:allowed-registries
    settings: {allow: [mirror.corp.example]}
webhook:
  sets:
    default: {policies: [mirror, secrets], failurePolicy: Fail}
    lint: {policies: [allowed], failurePolicy: Ignore}
  timeout: 2s
";

fn start(dir: &Path, server: &Issued, client_ca: Option<&str>) -> Server {
    std::fs::write(dir.join("repoint.yaml"), CONFIG).expect("config");
    std::fs::write(dir.join("tls.crt"), &server.cert).expect("cert");
    std::fs::write(dir.join("tls.key"), &server.key).expect("key");
    let addr = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let log = dir.join("serve.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_repoint"));
    command
        .args(["--log-level", "info", "serve", "-c"])
        .arg(dir.join("repoint.yaml"))
        .args(["--addr", &addr, "--metrics-addr", &metrics])
        .arg("--tls-cert")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("tls.key"))
        .args(["--reload-interval", "100ms"]);
    if let Some(ca) = client_ca {
        std::fs::write(dir.join("client-ca.crt"), ca).expect("client CA");
        command.arg("--client-ca").arg(dir.join("client-ca.crt"));
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start repoint serve");
    Server {
        child,
        addr,
        metrics,
        log,
    }
}

fn agent(ca: &str, client: Option<&Issued>) -> ureq::Agent {
    let ca = Certificate::from_pem(ca.as_bytes()).expect("CA PEM");
    let mut tls = TlsConfig::builder().root_certs(RootCerts::new_with_certs(&[ca]));
    if let Some(c) = client {
        tls = tls.client_cert(Some(ClientCert::new_with_certs(
            &[Certificate::from_pem(c.cert.as_bytes()).expect("cert")],
            PrivateKey::from_pem(c.key.as_bytes()).expect("key"),
        )));
    }
    ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn wait_ready(server: &Server, agent: &ureq::Agent) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(r) = agent.get(format!("https://{}/readyz", server.addr)).call()
            && r.status() == 200
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "repoint serve never became ready:\n{}",
        std::fs::read_to_string(&server.log).unwrap_or_default()
    );
}

fn review(object: &Value, uid: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": object["kind"]},
            "namespace": object["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {"username": "test"},
            "object": object,
            "dryRun": false,
        },
    })
}

fn post(agent: &ureq::Agent, url: &str, body: &Value) -> Value {
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .expect("post");
    assert_eq!(response.status(), 200);
    serde_json::from_str(&response.body_mut().read_to_string().expect("body")).expect("json")
}

fn apply(response: &Value, object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(encoded) = response["response"]["patch"].as_str() {
        let ops: Vec<PatchOp> =
            serde_json::from_str(&repoint_credentials::unbase64(encoded).expect("base64"))
                .expect("patch");
        patch::apply(&mut out, &ops).expect("applies");
    }
    out
}

#[test]
fn admission_over_tls_matches_repoint_run() {
    let dir = temp_dir("serve-tls");
    let first = issue(&["127.0.0.1", "localhost"]);
    let server = start(&dir, &first, None);
    let client = agent(&first.ca, None);
    wait_ready(&server, &client);

    // Every object of the example manifests, as the API server would send
    // it, against what `repoint run` prints for the same chain.
    let manifests = repo_root().join("examples/manifests/shop.yaml");
    let text = std::fs::read_to_string(&manifests).expect("read");
    let inputs = objects_by_identity(&text);
    let config = dir.join("run.yaml");
    std::fs::write(
        &config,
        CONFIG.replace("  - name: allowed\n    module: builtin:allowed-registries\n    settings: {allow: [mirror.corp.example]}\n", "")
            .split("webhook:")
            .next()
            .expect("head")
            .to_string()
            + "missingCredentials: warn\n",
    )
    .expect("run config");
    let expected = run_command(
        Path::new(env!("CARGO_BIN_EXE_repoint")),
        &[
            "run",
            "-c",
            &config.display().to_string(),
            &manifests.display().to_string(),
        ],
        "",
    );
    assert_eq!(expected.code, 0, "{}", expected.stderr);
    let expected = objects_by_identity(&expected.stdout);
    let mut patched = 0;
    for (i, (id, object)) in inputs.iter().enumerate() {
        let response = post(
            &client,
            &format!("https://{}/mutate/default", server.addr),
            &review(object, &format!("uid-{i}")),
        );
        assert_eq!(response["response"]["uid"], format!("uid-{i}"));
        assert_eq!(response["response"]["allowed"], true, "{id:?}: {response}");
        if response["response"].get("patch").is_some() {
            patched += 1;
        }
        assert_eq!(&apply(&response, object), &expected[id], "{id:?}");
    }
    assert!(
        patched >= 2,
        "the Deployment and the StatefulSet are patched"
    );

    // The lint set denies nothing here (Ignore, validation only) but warns
    // or denies per image; its answer is well-formed and unpatched.
    let deployment = inputs
        .values()
        .find(|o| o["kind"] == "Deployment")
        .expect("deployment");
    let response = post(
        &client,
        &format!("https://{}/validate/lint", server.addr),
        &review(deployment, "uid-lint"),
    );
    assert_eq!(
        response["response"]["allowed"], false,
        "docker.io is not allowed"
    );
    assert!(response["response"].get("patch").is_none());

    // Metrics on the plain port.
    let metrics = ureq::get(format!("http://{}/metrics", server.metrics))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("text");
    assert!(
        metrics.contains(
            r#"repoint_admission_requests_total{set="default",endpoint="mutate",outcome="patched"}"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"repoint_policy_denials_total{set="lint",policy="allowed"} 1"#),
        "{metrics}"
    );

    // Structured logs carry each request's uid.
    let log = std::fs::read_to_string(&server.log).expect("log");
    let line = log
        .lines()
        .find(|l| l.contains("uid-lint"))
        .unwrap_or_else(|| panic!("no log line for uid-lint:\n{log}"));
    let entry: Value = serde_json::from_str(line).expect("a JSON log line");
    assert_eq!(entry["uid"], "uid-lint");
    assert_eq!(entry["set"], "lint");

    // A new certificate from another CA: picked up without a restart.
    let second = issue(&["127.0.0.1"]);
    std::fs::write(dir.join("tls.key"), &second.key).expect("key");
    std::fs::write(dir.join("tls.crt"), &second.cert).expect("cert");
    let renewed = agent(&second.ca, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match renewed
            .get(format!("https://{}/healthz", server.addr))
            .call()
        {
            Ok(r) if r.status() == 200 => break,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("the new certificate was not served: {other:?}"),
        }
    }
    // (A fresh client: a pooled keep-alive connection keeps its session.)
    assert!(
        agent(&first.ca, None)
            .get(format!("https://{}/healthz", server.addr))
            .call()
            .is_err(),
        "the old CA no longer verifies the server"
    );

    // SIGTERM: a graceful stop, exit 0.
    stop(server);
}

fn stop(mut server: Server) {
    let pid = server.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(log.contains("stop signal received"), "{log}");
}

#[test]
fn client_certificates_are_required_with_a_client_ca() {
    let dir = temp_dir("serve-mtls");
    let server_cert = issue(&["127.0.0.1"]);
    let client = issue(&["api-server"]);
    let server = start(&dir, &server_cert, Some(&client.ca));
    let with_cert = agent(&server_cert.ca, Some(&client));
    wait_ready(&server, &with_cert);
    let without = agent(&server_cert.ca, None);
    assert!(
        without
            .get(format!("https://{}/healthz", server.addr))
            .call()
            .is_err(),
        "no client certificate, no connection"
    );
    let stranger = issue(&["someone"]);
    assert!(
        agent(&server_cert.ca, Some(&stranger))
            .get(format!("https://{}/healthz", server.addr))
            .call()
            .is_err(),
        "a certificate from another CA is refused"
    );
    stop(server);
}

#[test]
fn bad_certificate_files_fail_at_start() {
    let dir = temp_dir("serve-bad");
    std::fs::write(dir.join("repoint.yaml"), CONFIG).expect("config");
    std::fs::write(dir.join("tls.crt"), "not a certificate").expect("cert");
    std::fs::write(dir.join("tls.key"), "not a key").expect("key");
    let out = run_command(
        Path::new(env!("CARGO_BIN_EXE_repoint")),
        &[
            "serve",
            "-c",
            &dir.join("repoint.yaml").display().to_string(),
            "--addr",
            "127.0.0.1:0",
            "--tls-cert",
            &dir.join("tls.crt").display().to_string(),
            "--tls-key",
            &dir.join("tls.key").display().to_string(),
        ],
        "",
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("tls.crt"), "{}", out.stderr);
}
