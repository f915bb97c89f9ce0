//! The real control plane of the cluster tests (tests/support/kube.rs),
//! checked with the real kubectl, and the API server behaviours that
//! repoint-kube relies on, shown on the real server: how a stale write, a
//! duplicate create and a write into a terminating namespace are answered.

use std::path::Path;

use repoint_tests::cluster::TestCluster;
use repoint_tests::{Output, program_or_skip, run_command};
use serde_json::{Value, json};

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Option<Output> {
    let kubectl = program_or_skip("kubectl", "REPOINT_REQUIRE_KUBECTL")?;
    let config = kubeconfig.to_str().expect("utf-8");
    let mut all = vec!["--kubeconfig", config];
    all.extend_from_slice(args);
    Some(run_command(&kubectl, &all, ""))
}

#[test]
fn kubectl_talks_to_it_with_tokens_and_certificates_under_rbac() {
    let Some(cluster) = TestCluster::start("plane") else {
        return;
    };
    let plane = cluster.plane();
    let Some(version) = kubectl(cluster.kubeconfig(), &["version", "-o", "json"]) else {
        return;
    };
    assert_eq!(version.code, 0, "{}", version.stderr);
    let version: Value = serde_json::from_str(&version.stdout).expect("json");
    assert_eq!(
        version["serverVersion"]["gitVersion"],
        repoint_tests::kube::VERSION
    );

    // A client certificate in system:masters is an administrator.
    let admin =
        plane.kubeconfig_with_certificate("cert-admin", "cert-admin", Some("system:masters"));
    let out = kubectl(&admin, &["get", "namespace", "default", "-o", "name"]).expect("kubectl");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "namespace/default");

    // An unprivileged token is refused until a Role grants the verb.
    let ns = cluster.namespace("rbac", &[]);
    let tester = plane.kubeconfig_of_tester(0);
    let out = kubectl(&tester, &["get", "secrets", "-n", &ns]).expect("kubectl");
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("User \"tester-0\" cannot list resource \"secrets\""),
        "{}",
        out.stderr
    );
    cluster.create(&json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "read-secrets", "namespace": ns},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
    }));
    cluster.create(&json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "read-secrets", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-secrets"},
        "subjects": [{"kind": "User", "name": "tester-0"}],
    }));
    let out = kubectl(&tester, &["get", "secrets", "-n", &ns, "-o", "name"]).expect("kubectl");
    assert_eq!(out.code, 0, "{}", out.stderr);

    // The controller manager runs: namespaces get their account and token.
    let account = cluster
        .get("v1", "ServiceAccount", Some(&ns), "default")
        .expect("default account");
    assert!(account["secrets"][0]["name"].is_string(), "{account}");
}

/// `PATCH` with `body` (a JSON Patch) as the administrator; the answer's
/// status code and body.
fn json_patch(cluster: &TestCluster, path: &str, body: Value) -> (u16, Value) {
    let request = http::Request::patch(path)
        .header("Content-Type", "application/json-patch+json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("request");
    status_of(cluster, request)
}

fn status_of(cluster: &TestCluster, request: http::Request<Vec<u8>>) -> (u16, Value) {
    let client = cluster.client();
    cluster.block_on(async move {
        match client.request::<Value>(request).await {
            Ok(object) => (200, object),
            Err(kube::Error::Api(status)) => (
                status.code,
                serde_json::to_value(&status).expect("status json"),
            ),
            Err(e) => panic!("request failed: {e}"),
        }
    })
}

#[test]
fn stale_writes_duplicates_and_terminating_namespaces_are_told_by_reason() {
    let Some(cluster) = TestCluster::start("reasons") else {
        return;
    };
    let ns = cluster.namespace("reasons", &[]);
    cluster.create(&json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": ns}, "data": {"a": "1"}}));
    let current = cluster.get("v1", "ConfigMap", Some(&ns), "c").expect("c");
    let version = current["metadata"]["resourceVersion"].clone();
    cluster.replace(&json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": ns}, "data": {"a": "2"}}));
    let path = format!("/api/v1/namespaces/{ns}/configmaps/c");

    // A failed `test` of the old resourceVersion: 422 Invalid, no cause
    // that says so. It cannot be told from a real refusal.
    let (code, status) = json_patch(
        &cluster,
        &path,
        json!([{"op": "test", "path": "/metadata/resourceVersion", "value": version},
               {"op": "add", "path": "/data/b", "value": "x"}]),
    );
    assert_eq!(
        (code, status["reason"].as_str()),
        (422, Some("Invalid")),
        "{status}"
    );

    // The old resourceVersion set by the patch: a precondition, 409
    // Conflict. This is the guard repoint-kube sends.
    let (code, status) = json_patch(
        &cluster,
        &path,
        json!([{"op": "replace", "path": "/metadata/resourceVersion", "value": version},
               {"op": "add", "path": "/data/b", "value": "x"}]),
    );
    assert_eq!(
        (code, status["reason"].as_str()),
        (409, Some("Conflict")),
        "{status}"
    );
    let unchanged = cluster.get("v1", "ConfigMap", Some(&ns), "c").expect("c");
    assert!(unchanged["data"].get("b").is_none(), "nothing was written");

    // With the current one it goes through.
    let fresh = unchanged["metadata"]["resourceVersion"].clone();
    let (code, patched) = json_patch(
        &cluster,
        &path,
        json!([{"op": "replace", "path": "/metadata/resourceVersion", "value": fresh},
               {"op": "add", "path": "/data/b", "value": "x"}]),
    );
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["data"]["b"], "x");

    // A second create: 409 AlreadyExists.
    let request = http::Request::post(format!("/api/v1/namespaces/{ns}/configmaps"))
        .header("Content-Type", "application/json")
        .body(
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c"}}))
            .expect("json"),
        )
        .expect("request");
    let (code, status) = status_of(&cluster, request);
    assert_eq!(
        (code, status["reason"].as_str()),
        (409, Some("AlreadyExists")),
        "{status}"
    );

    // A namespace held in Terminating by a finalizer on its content:
    // creates are refused with 403 Forbidden and a NamespaceTerminating
    // cause.
    let doomed = cluster.namespace("doomed", &[]);
    cluster.create(&json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "namespace": doomed, "finalizers": ["repoint.dev/test-hold"]}}));
    cluster.delete("v1", "Namespace", None, &doomed);
    let request = || {
        http::Request::post(format!("/api/v1/namespaces/{doomed}/secrets"))
            .header("Content-Type", "application/json")
            .body(
                serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "s"}}))
                .expect("json"),
            )
            .expect("request")
    };
    // The admission plugin sees the deletion through its informer: wait
    // for it (what a create let in meanwhile made, the namespace
    // controller deletes).
    let (code, status) = repoint_tests::wait_for(
        "creates in the deleted namespace are refused",
        std::time::Duration::from_secs(30),
        || Some(status_of(&cluster, request())).filter(|(code, _)| *code != 200 && *code != 409),
        String::new,
    );
    assert_eq!(
        (code, status["reason"].as_str()),
        (403, Some("Forbidden")),
        "{status}"
    );
    assert_eq!(
        status["details"]["causes"][0]["reason"], "NamespaceTerminating",
        "{status}"
    );
    cluster.release_finalizers("v1", "ConfigMap", &doomed, "held");
}
