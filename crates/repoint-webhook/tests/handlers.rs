//! The webhook's router driven with `oneshot`: every behaviour of the
//! admission endpoints, the probes and the metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use repoint_core::patch::{self, PatchOp};
use repoint_runtime::chain::Chain;
use repoint_runtime::probe::Offline;
use repoint_runtime::{PolicySource, Runtime, RuntimeOptions, builtins};
use repoint_webhook::{FailurePolicy, Options, PolicySet, Webhook};
use serde_json::{Value, json};
use tower::ServiceExt;

fn runtime() -> Arc<Runtime> {
    Arc::new(
        Runtime::new(
            RuntimeOptions {
                timeout: Duration::from_millis(300),
                memory: 64 << 20,
                cache_dir: None,
                concurrency: 16,
                ..RuntimeOptions::default()
            },
            Arc::new(Offline),
        )
        .expect("runtime"),
    )
}

fn chain(rt: &Arc<Runtime>, policies: &[(&str, PolicySource, Value)]) -> Chain {
    let configured = policies
        .iter()
        .map(|(name, source, settings)| {
            let loaded = Arc::new(rt.load(source).expect("load"));
            rt.configure(name, loaded, &settings.to_string())
                .expect("configure")
        })
        .collect();
    rt.chain(configured, Vec::new()).expect("chain")
}

fn mirror() -> (&'static str, PolicySource, Value) {
    (
        "mirror",
        PolicySource::Builtin("registry-mirror".into()),
        json!({"rules": [{"match": "docker.io", "replace": "mirror.corp.example/hub"}]}),
    )
}

fn secrets() -> (&'static str, PolicySource, Value) {
    (
        "secrets",
        PolicySource::Builtin("pull-secrets".into()),
        json!({"secretName": "corp-pull", "registries": ["mirror.corp.example"]}),
    )
}

fn allowed() -> (&'static str, PolicySource, Value) {
    (
        "allowed",
        PolicySource::Builtin("allowed-registries".into()),
        json!({"allow": ["mirror.corp.example", "quay.io"]}),
    )
}

fn misbehave(name: &'static str, mode: &str) -> (&'static str, PolicySource, Value) {
    let path = builtins::test_policy("misbehave").expect("misbehave built");
    (
        name,
        PolicySource::File(path.into()),
        json!({ "mode": mode }),
    )
}

/// Sets: `default` (mirror, secrets; Fail), `lint` (allowed; Ignore),
/// `loop-fail` and `loop-ignore` (a looping policy), `panic`, `oom` and
/// `count` (a policy counting its evaluations; Fail).
fn webhook(options: Options) -> Arc<Webhook> {
    let rt = runtime();
    let w = Webhook::new(options);
    let set = |name: &str, policies: Vec<(&str, PolicySource, Value)>, fp| PolicySet {
        name: name.into(),
        chain: chain(&rt, &policies),
        failure_policy: fp,
    };
    w.install(vec![
        set("default", vec![mirror(), secrets()], FailurePolicy::Fail),
        set("lint", vec![allowed()], FailurePolicy::Ignore),
        set(
            "loop-fail",
            vec![misbehave("spin", "loop")],
            FailurePolicy::Fail,
        ),
        set(
            "loop-ignore",
            vec![misbehave("spin", "loop")],
            FailurePolicy::Ignore,
        ),
        set(
            "panic",
            vec![misbehave("boom", "panic")],
            FailurePolicy::Fail,
        ),
        set("oom", vec![misbehave("hog", "oom")], FailurePolicy::Fail),
        set(
            "count",
            vec![misbehave("counter", "count")],
            FailurePolicy::Fail,
        ),
    ]);
    w
}

fn deployment(image: &str, namespace: Option<&str>) -> Value {
    let mut metadata = json!({"name": "web"});
    if let Some(ns) = namespace {
        metadata["namespace"] = ns.into();
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
    })
}

fn review(operation: &str, namespace: &str, object: Option<Value>) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "web",
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": object,
            "oldObject": null,
            "dryRun": false,
        },
    })
}

/// Send one request through the router; the body as text.
async fn send(router: axum::Router, request: Request<Body>) -> (StatusCode, String) {
    let response = router.oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn post(w: &Arc<Webhook>, path: &str, body: &Value) -> (StatusCode, Value) {
    post_raw(w, path, body.to_string().into_bytes()).await
}

/// POST `body`; the answer as JSON, or as a JSON string when it is not.
async fn post_raw(w: &Arc<Webhook>, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let (status, text) = send(w.router(), request).await;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// A CREATE of `object` in namespace `shop`, posted to `path`.
async fn create(w: &Arc<Webhook>, path: &str, object: &Value) -> (StatusCode, Value) {
    post(w, path, &review("CREATE", "shop", Some(object.clone()))).await
}

async fn get(router: axum::Router, path: &str) -> (StatusCode, String) {
    send(
        router,
        Request::get(path).body(Body::empty()).expect("request"),
    )
    .await
}

/// The response's patch, decoded and applied to `object`.
fn patched(response: &Value, object: &Value) -> Value {
    let encoded = response["response"]["patch"].as_str().expect("a patch");
    assert_eq!(response["response"]["patchType"], "JSONPatch");
    let ops: Vec<PatchOp> =
        serde_json::from_str(&repoint_credentials::unbase64(encoded).expect("base64"))
            .expect("JSON Patch");
    let mut out = object.clone();
    patch::apply(&mut out, &ops).expect("the patch applies");
    out
}

#[tokio::test]
async fn mutation_is_the_same_as_repoint_run() {
    let w = webhook(Options::default());
    let object = deployment("nginx:1.27", Some("shop"));
    let (status, body) = create(&w, "/mutate/default", &object).await;
    assert_eq!(status, StatusCode::OK);
    let r = &body["response"];
    assert_eq!(r["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(r["allowed"], true);
    let after = patched(&body, &object);
    // What the same chain gives for the object outside the webhook.
    let rt = runtime();
    let outcome = chain(&rt, &[mirror(), secrets()])
        .evaluate(
            &object,
            &repoint_runtime::chain::Origin::Admission(repoint_runtime::chain::Operation::Create),
        )
        .expect("evaluates")
        .expect("relevant");
    let mut expected = object.clone();
    patch::apply(&mut expected, &outcome.patch).expect("applies");
    assert_eq!(after, expected);
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][0]["image"],
        "mirror.corp.example/hub/library/nginx:1.27"
    );
    assert_eq!(
        after["spec"]["template"]["spec"]["imagePullSecrets"],
        json!([{"name": "corp-pull"}])
    );
}

#[tokio::test]
async fn namespace_from_the_request_and_generate_name() {
    let w = webhook(Options::default());
    // No namespace in the object, a generateName and no name: the patch
    // must not set a namespace (the API server does).
    let mut object = deployment("nginx:1.27", None);
    object["metadata"] = json!({"generateName": "web-"});
    let (_, body) = create(&w, "/mutate/default", &object).await;
    let after = patched(&body, &object);
    assert!(after["metadata"].get("namespace").is_none(), "{after}");
    assert_eq!(after["metadata"]["generateName"], "web-");
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][0]["image"],
        "mirror.corp.example/hub/library/nginx:1.27"
    );
}

#[tokio::test]
async fn update_uses_the_new_object() {
    let w = webhook(Options::default());
    let old = deployment("nginx:1.26", Some("shop"));
    let new = deployment("nginx:1.27", Some("shop"));
    let mut body = review("UPDATE", "shop", Some(new.clone()));
    body["request"]["oldObject"] = old;
    let (_, response) = post(&w, "/mutate/default", &body).await;
    let after = patched(&response, &new);
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][0]["image"],
        "mirror.corp.example/hub/library/nginx:1.27"
    );
}

#[tokio::test]
async fn nothing_to_change_means_no_patch() {
    let w = webhook(Options::default());
    let object = deployment("quay.io/acme/app:1", Some("shop"));
    let (_, body) = create(&w, "/mutate/default", &object).await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none());
    // A ConfigMap has no images: allowed without evaluation.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}});
    let (_, body) = create(&w, "/mutate/default", &cm).await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none());
}

#[tokio::test]
async fn denial_with_code_and_message_and_validate_never_patches() {
    let w = webhook(Options::default());
    let object = deployment("ghcr.io/acme/app:1", Some("shop"));
    let (_, body) = create(&w, "/validate/lint", &object).await;
    let r = &body["response"];
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    assert!(
        r["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("[allowed]") && m.contains("ghcr.io/acme/app")),
        "{r}"
    );
    // validate on the mutating set: allowed, and no patch even though the
    // chain would change the object.
    let object = deployment("nginx:1.27", Some("shop"));
    let (_, body) = create(&w, "/validate/default", &object).await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none());
}

#[tokio::test]
async fn warnings_go_to_the_response() {
    let w = webhook(Options::default());
    let mut object = deployment("quay.io/acme/app:1", Some("shop"));
    // A pull secret inside a container: pull-secrets warns.
    object["spec"]["template"]["spec"]["containers"][0]["imagePullSecrets"] =
        json!([{"name": "x"}]);
    let (_, body) = create(&w, "/mutate/default", &object).await;
    let warnings = body["response"]["warnings"].as_array().expect("warnings");
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.contains("[secrets]") && w.contains("inside a container"))),
        "{warnings:?}"
    );
}

/// An admission response can only change the object: when a policy asks
/// for a pull Secret and no reconciler makes that one, the response says so.
#[tokio::test]
async fn a_pull_secret_nothing_makes_is_a_warning() {
    let secret_warnings = |body: &Value| -> Vec<String> {
        body["response"]["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str())
            .filter(|w| w.contains("the pull Secret"))
            .map(str::to_string)
            .collect()
    };
    let reconciled = |name: &str| {
        Some(repoint_webhook::Reconciled {
            secret_name: name.into(),
            excluded_namespaces: vec!["kube-system".into(), "legacy".into()],
        })
    };
    for (reconciled, namespace, expected) in [
        (None, "shop", Some("nothing creates it at admission")),
        (
            reconciled("other-pull"),
            "shop",
            Some("the reconciler makes \"other-pull\""),
        ),
        (
            reconciled("corp-pull"),
            "legacy",
            Some("leaves namespace legacy out"),
        ),
        (reconciled("corp-pull"), "shop", None),
    ] {
        let w = webhook(Options {
            reconciled,
            ..Options::default()
        });
        let (_, body) = post(
            &w,
            "/mutate/default",
            &review(
                "CREATE",
                namespace,
                Some(deployment("nginx:1.27", Some(namespace))),
            ),
        )
        .await;
        assert_eq!(body["response"]["allowed"], true, "{body}");
        assert!(
            body["response"].get("patch").is_some(),
            "still patched: {body}"
        );
        let found = secret_warnings(&body);
        match expected {
            Some(why) => assert!(
                found.len() == 1
                    && found[0].starts_with(&format!(
                        "[secrets] the pull Secret {namespace}/corp-pull must exist"
                    ))
                    && found[0].contains(why),
                "{namespace}: {found:?}"
            ),
            None => assert!(found.is_empty(), "{found:?}"),
        }
    }
}

#[tokio::test]
async fn delete_connect_excluded_namespaces_and_dry_run() {
    let w = webhook(Options {
        exclude_namespaces: vec!["kube-system".into(), "repoint".into()],
        ..Options::default()
    });
    for (operation, namespace) in [
        ("DELETE", "shop"),
        ("CONNECT", "shop"),
        ("CREATE", "kube-system"),
        ("CREATE", "repoint"),
    ] {
        let object = deployment("nginx:1.27", Some(namespace));
        let (_, body) = post(
            &w,
            "/mutate/default",
            &review(operation, namespace, Some(object)),
        )
        .await;
        assert_eq!(body["response"]["allowed"], true, "{operation} {namespace}");
        assert!(
            body["response"].get("patch").is_none(),
            "{operation} {namespace}"
        );
    }
    // dryRun: the same answer, and nothing else happens (repoint never
    // writes to the cluster from admission).
    let object = deployment("nginx:1.27", Some("shop"));
    let mut dry = review("CREATE", "shop", Some(object.clone()));
    dry["request"]["dryRun"] = true.into();
    let (_, body) = post(&w, "/mutate/default", &dry).await;
    assert!(patched(&body, &object)["spec"]["template"]["spec"]["imagePullSecrets"].is_array());
}

#[tokio::test]
async fn bad_requests_get_400_with_a_reason_and_unknown_sets_404() {
    let w = webhook(Options {
        body_limit: 4096,
        ..Options::default()
    });
    let (status, body) = post_raw(&w, "/mutate/default", b"{not json".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.as_str()
            .is_some_and(|b| b.contains("malformed AdmissionReview")),
        "{body}"
    );
    let (status, body) = post(
        &w,
        "/mutate/default",
        &json!({"apiVersion": "v1", "kind": "Pod"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.as_str()
            .is_some_and(|b| b.contains("admission.k8s.io/v1")),
        "{body}"
    );
    let (status, _) = post(&w, "/mutate/nope", &review("CREATE", "shop", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Over the body limit.
    let big = "x".repeat(8192);
    let (status, _) = post(&w, "/mutate/default", &json!({"padding": big})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn failure_policies() {
    let w = webhook(Options::default());
    let object = deployment("nginx:1.27", Some("shop"));
    // Fail: denied, naming the policy.
    for (set, policy, what) in [
        ("loop-fail", "spin", "timed out"),
        ("panic", "boom", "trapped"),
        ("oom", "hog", "memory"),
    ] {
        let (_, body) = create(&w, &format!("/mutate/{set}"), &object).await;
        let r = &body["response"];
        assert_eq!(r["allowed"], false, "{set}");
        let message = r["status"]["message"].as_str().expect("message");
        assert!(
            message.contains(policy) && message.contains(what),
            "{set}: {message}"
        );
    }
    // Ignore: allowed unchanged, with a warning.
    let (_, body) = create(&w, "/mutate/loop-ignore", &object).await;
    let r = &body["response"];
    assert_eq!(r["allowed"], true);
    assert!(r.get("patch").is_none());
    assert!(
        r["warnings"][0]
            .as_str()
            .is_some_and(|m| m.contains("spin") && m.contains("failurePolicy: Ignore")),
        "{r}"
    );
    // Counted.
    let (_, metrics) = get(w.metrics_router(), "/metrics").await;
    assert!(metrics.contains(
        r#"repoint_policy_failures_total{set="loop-fail",policy="spin",kind="timeout",failure_policy="Fail"} 1"#
    ), "{metrics}");
    assert!(metrics.contains(
        r#"repoint_policy_failures_total{set="loop-ignore",policy="spin",kind="timeout",failure_policy="Ignore"} 1"#
    ));
    assert!(metrics.contains(r#"kind="memory""#));
}

#[tokio::test]
async fn overload_answers_at_once_with_the_failure_policy() {
    // One worker, tied up by a looping policy; the next request may not
    // wait more than 50 ms for it.
    let w = webhook(Options {
        workers: 1,
        queue_wait: Duration::from_millis(50),
        ..Options::default()
    });
    let object = deployment("nginx:1.27", Some("shop"));
    let busy = {
        let w = w.clone();
        let body = review("CREATE", "shop", Some(object.clone()));
        tokio::spawn(async move { post(&w, "/mutate/loop-ignore", &body).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    let (_, body) = create(&w, "/mutate/default", &object).await;
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    let r = &body["response"];
    assert_eq!(r["allowed"], false, "default fails closed: {r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("busy"))
    );
    busy.await.expect("busy request");
    // With the worker free again, requests are evaluated.
    let (_, body) = create(&w, "/mutate/default", &object).await;
    assert_eq!(body["response"]["allowed"], true);
    let (_, metrics) = get(w.metrics_router(), "/metrics").await;
    assert!(metrics.contains(r#"outcome="overloaded"} 1"#), "{metrics}");
}

#[tokio::test]
async fn a_looping_set_keeps_to_its_share_then_is_throttled_then_cut_off() {
    let w = webhook(Options {
        workers: 4,
        queue_wait: Duration::from_millis(50),
        ..Options::default()
    });
    let object = deployment("nginx:1.27", Some("shop"));
    let spin = |n: usize| {
        (0..n)
            .map(|_| {
                let w = w.clone();
                let body = review("CREATE", "shop", Some(object.clone()));
                tokio::spawn(async move { post(&w, "/mutate/loop-ignore", &body).await.1 })
            })
            .collect::<Vec<_>>()
    };
    let warning = |body: &Value| {
        body["response"]["warnings"][0]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    // Share: of 4 workers the looping set may hold 2; a third request of
    // it is turned away, while another set is served at once.
    let spinning = spin(3);
    tokio::time::sleep(Duration::from_millis(60)).await;
    let started = std::time::Instant::now();
    let (_, body) = create(&w, "/mutate/default", &object).await;
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert!(body["response"]["patch"].is_string(), "{body}");
    let mut said = Vec::new();
    for task in spinning {
        said.push(warning(&task.await.expect("request")));
    }
    said.sort();
    assert!(said[0].contains("every worker is busy"), "{said:?}");
    assert!(
        said[1].contains("timed out") && said[2].contains("timed out"),
        "{said:?}"
    );

    // Throttled after running out of time: one evaluation at a time.
    let spinning = spin(2);
    let mut said = Vec::new();
    for task in spinning {
        said.push(warning(&task.await.expect("request")));
    }
    said.sort();
    assert!(said[0].contains("runs one at a time"), "{said:?}");
    assert!(said[1].contains("timed out"), "{said:?}");

    // Three in a row: answered by the failure policy alone, at once.
    let started = std::time::Instant::now();
    let said = warning(&spin(1).pop().expect("one").await.expect("request"));
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert!(
        said.contains("3 evaluations of this set in a row ran out of time"),
        "{said}"
    );
    assert!(
        said.contains("allowed unchanged (failurePolicy: Ignore)"),
        "{said}"
    );
    // Other sets are untouched.
    let (_, body) = create(&w, "/mutate/default", &object).await;
    assert!(body["response"]["patch"].is_string(), "{body}");
    let (_, metrics) = get(w.metrics_router(), "/metrics").await;
    assert!(metrics.contains(
        r#"repoint_policy_failures_total{set="loop-ignore",policy="(server)",kind="throttled",failure_policy="Ignore"} 2"#
    ), "{metrics}");
    assert!(metrics.contains(r#"repoint_admission_requests_total{set="loop-ignore",endpoint="mutate",outcome="throttled"} 2"#), "{metrics}");
}

#[tokio::test]
async fn no_state_crosses_requests() {
    // The same object twice gives the same answer: every request gets
    // fresh instances.
    let w = webhook(Options::default());
    let object = deployment("nginx:1.27", Some("shop"));
    let (_, a) = create(&w, "/mutate/default", &object).await;
    let (_, b) = create(&w, "/mutate/default", &object).await;
    assert_eq!(a, b);
    // A policy that counts its evaluations in a static counts one, request
    // after request: no instance (and no memory) is reused.
    for _ in 0..3 {
        let (_, body) = create(&w, "/mutate/count", &object).await;
        assert_eq!(
            body["response"]["warnings"],
            json!(["[counter] evaluation 1 of this instance"]),
            "{body}"
        );
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let rt = runtime();
    let w = Webhook::new(Options::default());
    assert_eq!(get(w.router(), "/healthz").await.0, StatusCode::OK);
    assert_eq!(
        get(w.router(), "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (status, _) = post(&w, "/mutate/default", &review("CREATE", "shop", None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "not ready yet");
    w.install(vec![PolicySet {
        name: "default".into(),
        chain: chain(&rt, &[mirror()]),
        failure_policy: FailurePolicy::Fail,
    }]);
    assert_eq!(get(w.router(), "/readyz").await.0, StatusCode::OK);
    let object = deployment("nginx:1.27", Some("shop"));
    create(&w, "/mutate/default", &object).await;
    let (status, metrics) = get(w.metrics_router(), "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(metrics.contains(
        r#"repoint_admission_requests_total{set="default",endpoint="mutate",outcome="patched"} 1"#
    ), "{metrics}");
    assert!(metrics.contains(
        r#"repoint_policy_evaluations_total{set="default",policy="mirror",outcome="changed"} 1"#
    ));
    assert!(metrics.contains("repoint_admission_duration_seconds_bucket"));
}

/// Everything logged in this test binary, as JSON lines.
fn captured_logs() -> Arc<std::sync::Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        logs
    })
    .clone()
}

struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_policys_log_lines_carry_the_request_uid() {
    let logs = captured_logs();
    let rt = runtime();
    let w = Webhook::new(Options::default());
    w.install(vec![PolicySet {
        name: "logged".into(),
        chain: chain(&rt, &[misbehave("chatty", "log-everything")]),
        failure_policy: FailurePolicy::Fail,
    }]);
    let mut body = review("CREATE", "shop", Some(deployment("nginx", None)));
    body["request"]["uid"] = json!("uid-of-the-logged-request");
    let (status, _) = post(&w, "/mutate/logged", &body).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(logs.lock().expect("logs").clone()).expect("utf-8");
    let line = text
        .lines()
        .find(|l| l.contains("\"policy\":\"chatty\""))
        .unwrap_or_else(|| panic!("the policy logged nothing:\n{text}"));
    assert!(line.contains("uid-of-the-logged-request"), "{line}");
}
