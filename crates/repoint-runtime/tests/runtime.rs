//! The runtime against real components: the built-ins, and a policy that
//! misbehaves on purpose (loops, exhausts memory, panics, returns garbage,
//! rejects its settings). Every fault is a named error for that object, in
//! bounded time, and the runtime keeps working afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use repoint_runtime::chain::{Chain, ObjectError, Origin};
use repoint_runtime::probe::Offline;
use repoint_runtime::{FailureKind, PolicySource, Runtime, RuntimeError, RuntimeOptions, builtins};
use serde_json::{Value, json};

fn runtime(timeout: Duration) -> Arc<Runtime> {
    Arc::new(plain_runtime(timeout))
}

fn plain_runtime(timeout: Duration) -> Runtime {
    let options = RuntimeOptions {
        timeout,
        memory: 64 << 20,
        cache_dir: None,
        concurrency: 8,
        ..RuntimeOptions::default()
    };
    Runtime::new(options, Arc::new(Offline)).expect("runtime")
}

fn chain(
    rt: &Arc<Runtime>,
    policies: &[(&str, PolicySource, Value)],
) -> Result<Chain, RuntimeError> {
    let mut configured = Vec::new();
    for (name, source, settings) in policies {
        let loaded = Arc::new(rt.load(source)?);
        configured.push(rt.configure(name, loaded, &settings.to_string())?);
    }
    rt.chain(configured, Vec::new())
}

fn misbehave(mode: &str) -> (&'static str, PolicySource, Value) {
    let path = builtins::test_policy("misbehave").expect("misbehave built");
    (
        "bad",
        PolicySource::File(path.into()),
        json!({ "mode": mode }),
    )
}

fn pod(image: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "app"},
           "spec": {"containers": [{"name": "a", "image": image}]}})
}

fn origin() -> Origin {
    Origin::File {
        path: "test.yaml".into(),
        document: 0,
        line: 1,
    }
}

fn mirror() -> (&'static str, PolicySource, Value) {
    (
        "mirror",
        PolicySource::Builtin("registry-mirror".into()),
        json!({"rules": [{"match": "docker.io", "replace": "mirror.corp/hub"}]}),
    )
}

#[test]
fn builtins_are_embedded_and_describe_themselves() {
    let rt = runtime(Duration::from_secs(1));
    for name in ["registry-mirror", "pull-secrets", "allowed-registries"] {
        let loaded = rt.load(&PolicySource::Builtin(name.into())).expect(name);
        assert_eq!(loaded.info.name, name);
        assert_eq!(loaded.contract, "repoint:policy@0.1.0");
    }
    let err = rt
        .load(&PolicySource::Builtin("nope".into()))
        .expect_err("unknown");
    assert!(
        err.to_string().contains("no built-in policy \"nope\""),
        "{err}"
    );
}

/// `bytes` with every `from` replaced by `to`, which is as long, so the
/// component's length-prefixed names stay well formed.
fn replace_same_length(bytes: &[u8], from: &str, to: &str) -> (Vec<u8>, usize) {
    assert_eq!(from.len(), to.len());
    let (mut out, mut count, mut i) = (Vec::with_capacity(bytes.len()), 0, 0);
    while i < bytes.len() {
        if bytes[i..].starts_with(from.as_bytes()) {
            out.extend_from_slice(to.as_bytes());
            i += from.len();
            count += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    (out, count)
}

#[test]
fn a_component_built_against_another_contract_version_is_refused() {
    // A real policy, its imports and exports renamed as a build against
    // `package repoint:policy@1.0.0;` names them. (The scaffold test
    // builds one from an edited wit/ for real, where componentize-py is
    // installed.)
    let bytes = builtins::get("registry-mirror").expect("built-in");
    let (renamed, count) = replace_same_length(
        bytes,
        "repoint:policy/types@0.1.0",
        "repoint:policy/types@1.0.0",
    );
    assert!(count > 0, "the component names repoint:policy/types@0.1.0");
    let (renamed, _) = replace_same_length(
        &renamed,
        "repoint:policy/host@0.1.0",
        "repoint:policy/host@1.0.0",
    );
    let rt = runtime(Duration::from_secs(1));
    let err = rt
        .load_bytes(PolicySource::File("future.wasm".into()), &renamed)
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "future.wasm is not a repoint policy component (repoint:policy@0.1.0): it was built against repoint:policy@1.0.0, and this host speaks repoint:policy@0.1.0"
    );
}

#[test]
fn registry_mirror_rewrites_through_the_sandbox() {
    let rt = runtime(Duration::from_secs(1));
    let chain = chain(&rt, &[mirror()]).expect("chain");
    let outcome = chain
        .evaluate(&pod("nginx:1"), &origin())
        .expect("ok")
        .expect("relevant");
    assert_eq!(
        serde_json::to_value(&outcome.patch).expect("json"),
        json!([{"op": "replace", "path": "/spec/containers/0/image", "value": "mirror.corp/hub/library/nginx:1"}])
    );
    assert_eq!(outcome.changed_by, ["mirror"]);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"image": "nginx"}});
    assert!(
        chain.evaluate(&cm, &origin()).expect("ok").is_none(),
        "not consulted"
    );
}

fn fault(mode: &str, timeout: Duration) -> (ObjectError, Duration) {
    let rt = runtime(timeout);
    let chain = chain(&rt, &[misbehave(mode)]).expect("chain");
    let started = Instant::now();
    let err = chain.evaluate(&pod("nginx"), &origin()).expect_err("fails");
    let took = started.elapsed();
    // The runtime is still healthy: a good policy on the same runtime works.
    let good = self::chain(&rt, &[mirror()]).expect("chain");
    assert!(
        good.evaluate(&pod("nginx"), &origin())
            .expect("ok")
            .is_some()
    );
    (err, took)
}

fn kind(e: &ObjectError) -> &FailureKind {
    match e {
        ObjectError::Policy(f) => {
            assert_eq!(f.policy, "bad");
            &f.kind
        }
        other => panic!("not a policy failure: {other}"),
    }
}

#[test]
fn a_looping_policy_times_out() {
    let (err, took) = fault("loop", Duration::from_millis(200));
    assert_eq!(
        kind(&err),
        &FailureKind::Timeout(Duration::from_millis(200))
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(err.to_string().contains("policy bad timed out"), "{err}");
}

#[test]
fn a_slow_evaluation_calls_the_hook_once_and_still_times_out_in_full() {
    static SLOW: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    fn hook() {
        SLOW.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    let mut rt = plain_runtime(Duration::from_millis(300));
    rt.on_slow_evaluation(hook);
    let rt = Arc::new(rt);
    let good = chain(&rt, &[mirror()]).expect("chain");
    good.evaluate(&pod("nginx"), &origin()).expect("ok");
    assert_eq!(
        SLOW.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a quick one is not slow"
    );
    let bad = chain(&rt, &[misbehave("loop")]).expect("chain");
    let started = Instant::now();
    let err = bad
        .evaluate(&pod("nginx"), &origin())
        .expect_err("times out");
    let took = started.elapsed();
    assert_eq!(
        kind(&err),
        &FailureKind::Timeout(Duration::from_millis(300))
    );
    assert_eq!(SLOW.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The whole timeout, not the 50 ms at which it turned slow.
    assert!(took >= Duration::from_millis(280), "took {took:?}");
}

#[test]
fn a_hungry_policy_hits_the_memory_cap() {
    let (err, took) = fault("oom", Duration::from_secs(5));
    assert_eq!(kind(&err), &FailureKind::MemoryLimit(64 << 20));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        err.to_string()
            .contains("exceeded its memory limit of 64 MiB"),
        "{err}"
    );
}

#[test]
fn a_panicking_policy_traps_with_its_message() {
    let (err, _) = fault("panic", Duration::from_secs(1));
    let FailureKind::Trap(msg) = kind(&err) else {
        panic!("{err}")
    };
    assert!(msg.contains("panicking on purpose"), "{msg}");
}

#[test]
fn garbage_actions_are_invalid() {
    let (err, _) = fault("garbage", Duration::from_secs(1));
    assert!(
        matches!(kind(&err), FailureKind::InvalidAction(m) if m.contains("/no/such/site")),
        "{err}"
    );
    let (err, _) = fault("bad-image", Duration::from_secs(1));
    assert!(
        matches!(kind(&err), FailureKind::InvalidAction(m) if m.contains("not a valid image reference")),
        "{err}"
    );
    let (err, _) = fault("fail", Duration::from_secs(1));
    assert_eq!(
        kind(&err),
        &FailureKind::Error("misbehave: failing on purpose".into())
    );
}

#[test]
fn rejected_settings_fail_at_configure() {
    let rt = runtime(Duration::from_secs(1));
    let path = builtins::test_policy("misbehave").expect("built");
    let err = chain(
        &rt,
        &[(
            "picky",
            PolicySource::File(path.into()),
            json!({"mode": "loop", "reject": "mode: not today"}),
        )],
    )
    .expect_err("rejected");
    assert_eq!(
        err.to_string(),
        "policy picky: returned an error: mode: not today"
    );
    let err = chain(
        &rt,
        &[(
            "mirror",
            PolicySource::Builtin("registry-mirror".into()),
            json!({"rules": 3}),
        )],
    )
    .expect_err("rejected");
    assert!(
        err.to_string()
            .contains("invalid settings: rules: invalid type"),
        "{err}"
    );
}

#[test]
fn a_chain_that_flips_does_not_converge() {
    let rt = runtime(Duration::from_secs(1));
    let path = builtins::test_policy("misbehave").expect("built");
    let flip = (
        "flip",
        PolicySource::File(path.into()),
        json!({"mode": "rewrite", "alternate": true}),
    );
    let chain = chain(&rt, &[flip]).expect("chain");
    let err = chain.evaluate(&pod("nginx"), &origin()).expect_err("flips");
    assert!(
        matches!(&err, ObjectError::NotConverging { policies, .. } if policies == &["flip"]),
        "{err}"
    );
    assert!(
        err.to_string().contains("policy chain does not converge"),
        "{err}"
    );
}

#[test]
fn each_policy_sees_the_previous_output() {
    let rt = runtime(Duration::from_secs(1));
    let path = builtins::test_policy("misbehave").expect("built");
    // busybox first, then the mirror rewrites the busybox image.
    let to_busybox = (
        "busybox",
        PolicySource::File(path.into()),
        json!({"mode": "rewrite"}),
    );
    let chain = chain(&rt, &[to_busybox, mirror()]).expect("chain");
    let outcome = chain
        .evaluate(&pod("quay.io/a/b"), &origin())
        .expect("ok")
        .expect("relevant");
    assert_eq!(outcome.patch.len(), 1, "one net edit: {:?}", outcome.patch);
    assert_eq!(
        outcome.patch[0].value,
        Some(json!("mirror.corp/hub/library/busybox"))
    );
    assert_eq!(outcome.changed_by, ["busybox", "mirror"]);
}

#[test]
fn invalid_images_stop_the_object_before_any_policy() {
    let rt = runtime(Duration::from_secs(1));
    let chain = chain(&rt, &[mirror()]).expect("chain");
    let err = chain
        .evaluate(&pod("Bad:Image"), &origin())
        .expect_err("invalid");
    assert!(matches!(err, ObjectError::InvalidImage { .. }), "{err}");
}

#[test]
fn the_sandbox_grants_no_files_environment_network_or_clock() {
    // The test process has PATH, HOME and more in its environment; the
    // policy sees none of it.
    let rt = runtime(Duration::from_secs(2));
    let chain = chain(&rt, &[misbehave("escape")]).expect("chain");
    let outcome = chain
        .evaluate(&pod("nginx"), &origin())
        .expect("ok")
        .expect("relevant");
    let said: Vec<&str> = outcome
        .warnings
        .iter()
        .map(|w| w.message.as_str())
        .collect();
    assert_eq!(said.len(), 5, "{said:?}");
    assert!(said[0].starts_with("file: Err("), "{}", said[0]);
    assert!(said[1].starts_with("dir: Err("), "{}", said[1]);
    assert_eq!(said[2], "env: []");
    assert!(said[3].starts_with("tcp: Err("), "{}", said[3]);
    assert_eq!(said[4], "clock: Ok(0)");
}

#[test]
fn a_chain_holds_only_its_own_runtimes_policies_and_subsets_keep_it() {
    let (one, two) = (
        runtime(Duration::from_secs(1)),
        runtime(Duration::from_secs(1)),
    );
    let loaded = Arc::new(one.load(&mirror().1).expect("load"));
    let configured = one
        .configure("mirror", loaded, &mirror().2.to_string())
        .expect("configure");
    let err = two
        .chain(vec![configured.clone()], Vec::new())
        .expect_err("another runtime's policy");
    assert!(
        matches!(err, RuntimeError::ForeignPolicy { ref policy } if policy == "mirror"),
        "{err}"
    );
    let chain = one.chain(vec![configured], Vec::new()).expect("its own");
    let subset = chain.subset(&["mirror"]).expect("named");
    assert!(Arc::ptr_eq(subset.runtime(), chain.runtime()));
    assert_eq!(subset.policies().len(), 1);
    assert!(chain.subset(&["absent"]).is_none());
    assert!(
        subset
            .evaluate(&pod("nginx"), &origin())
            .expect("ok")
            .is_some()
    );
}

fn shows(reads: Option<&[&str]>) -> (&'static str, PolicySource, Value) {
    let path = builtins::test_policy("misbehave").expect("built");
    let mut settings = json!({"mode": "show"});
    if let Some(parts) = reads {
        settings["reads"] = json!(parts);
    }
    ("show", PolicySource::File(path.into()), settings)
}

/// A Pod with every part of a resource filled in.
fn full_pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "app", "labels": {"app": "web"},
                        "annotations": {"note": "n"}},
           "spec": {"serviceAccountName": "runner", "imagePullSecrets": [{"name": "s"}],
                    "containers": [{"name": "a", "image": "nginx"}]}})
}

fn shown(chain: &Chain, object: &Value) -> String {
    let outcome = chain
        .evaluate(object, &origin())
        .expect("ok")
        .expect("relevant");
    outcome.warnings[0].message.clone()
}

#[test]
fn a_selective_policy_is_shown_only_the_parts_it_reads() {
    let rt = runtime(Duration::from_secs(2));
    let everything = chain(&rt, &[shows(None)]).expect("chain");
    assert_eq!(everything.policies()[0].reads().map(|r| r.len()), Some(9));
    let all = shown(&everything, &full_pod("p"));
    assert!(
        all.starts_with(
            r#"namespace=Some("app") name=Some("p") labels=[("app", "web")] annotations=[("note", "n")] pull-secrets=["s"] service-account=Some("runner") origin=Origin::File(FileOrigin { path: "test.yaml", document: 0, line: 1 }) object-json="#
        ),
        "{all}"
    );
    assert!(!all.contains("object-json=0 bytes"), "{all}");

    let narrow = chain(&rt, &[shows(Some(&["namespace", "service-account"]))]).expect("chain");
    assert_eq!(
        narrow.policies()[0].reads(),
        Some(vec!["namespace", "service-account"])
    );
    assert_eq!(
        shown(&narrow, &full_pod("p")),
        r#"namespace=Some("app") name=None labels=[] annotations=[] pull-secrets=[] service-account=Some("runner") origin=Origin::File(FileOrigin { path: "", document: 0, line: 0 }) object-json=0 bytes images=1"#
    );
}

#[test]
fn answers_are_reused_only_for_the_same_shown_parts_and_never_after_a_host_call() {
    let rt = runtime(Duration::from_secs(2));
    // Reads the namespace only: Pods that differ by name share an answer,
    // and one in another namespace does not.
    let narrow = chain(&rt, &[shows(Some(&["namespace"]))]).expect("chain");
    let first = shown(&narrow, &full_pod("one"));
    assert_eq!(shown(&narrow, &full_pod("two")), first);
    assert_eq!(narrow.policies()[0].reused_answers(), 1);
    let mut elsewhere = full_pod("three");
    elsewhere["metadata"]["namespace"] = json!("other");
    assert!(shown(&narrow, &elsewhere).starts_with(r#"namespace=Some("other")"#));
    assert_eq!(narrow.policies()[0].reused_answers(), 1);
    // Another image is another answer.
    let mut other_image = full_pod("four");
    other_image["spec"]["containers"][0]["image"] = json!("redis");
    shown(&narrow, &other_image);
    assert_eq!(narrow.policies()[0].reused_answers(), 1);

    // A policy reading the name shares nothing between differently named Pods.
    let named = chain(&rt, &[shows(Some(&["name"]))]).expect("chain");
    assert_ne!(
        shown(&named, &full_pod("one")),
        shown(&named, &full_pod("two"))
    );
    assert_eq!(named.policies()[0].reused_answers(), 0);

    // One reading the object's JSON is shown it without the metadata, and
    // Pods alike but for their names share an answer.
    let spec = chain(&rt, &[shows(Some(&["object-json"]))]).expect("chain");
    let without_metadata =
        json!({"apiVersion": "v1", "kind": "Pod", "spec": full_pod("p")["spec"]});
    let length = without_metadata.to_string().len();
    assert!(shown(&spec, &full_pod("one")).contains(&format!("object-json={length} bytes")));
    shown(&spec, &full_pod("two"));
    assert_eq!(spec.policies()[0].reused_answers(), 1);
    // One reading the metadata too is never answered from memory.
    let whole = chain(&rt, &[shows(Some(&["object-json", "object-metadata"]))]).expect("chain");
    let length = full_pod("one").to_string().len();
    assert!(shown(&whole, &full_pod("one")).contains(&format!("object-json={length} bytes")));
    shown(&whole, &full_pod("one"));
    assert_eq!(whole.policies()[0].reused_answers(), 0);

    // Nor is an answer given after calling the host: here a log line,
    // which must be written for each object.
    let path = builtins::test_policy("misbehave").expect("built");
    let logs = (
        "logs",
        PolicySource::File(path.into()),
        json!({"mode": "log-everything", "reads": []}),
    );
    let logging = chain(&rt, &[logs]).expect("chain");
    for _ in 0..2 {
        logging.evaluate(&full_pod("one"), &origin()).expect("ok");
    }
    assert_eq!(logging.policies()[0].reused_answers(), 0);
}

#[test]
fn a_policy_without_reads_sees_everything_and_is_never_reused() {
    // A component of the plain `policy` world, as the Python and JavaScript
    // toolchains build for `-w policy`: the mirror with its `reads` export
    // renamed (every length-prefixed name `reads`, so the core export and
    // the alias naming it agree).
    let bytes = builtins::get("registry-mirror").expect("built-in");
    let (plain, count) = replace_same_length(bytes, "\u{5}reads", "\u{5}xeads");
    assert!(count > 0, "the component names its reads export");
    let rt = runtime(Duration::from_secs(2));
    let loaded = rt
        .load_bytes(PolicySource::File("plain.wasm".into()), &plain)
        .expect("a plain policy loads");
    assert_eq!(loaded.world(), "policy");
    let settings = mirror().2.to_string();
    let configured = rt
        .configure("mirror", Arc::new(loaded), &settings)
        .expect("configure");
    assert_eq!(configured.reads(), None);
    let chain = rt.chain(vec![configured], Vec::new()).expect("chain");
    for name in ["one", "two", "three"] {
        let outcome = chain
            .evaluate(&full_pod(name), &origin())
            .expect("ok")
            .expect("relevant");
        assert_eq!(outcome.changed_by, ["mirror"]);
    }
    assert_eq!(chain.policies()[0].reused_answers(), 0);

    // The built-in itself says it reads nothing beyond the images. The
    // first Pod's first-pass answer is kept; its convergence pass runs in
    // the same instance, which has evaluated already, so that answer is
    // not. The second and third Pods are the first but for their names:
    // the chain's outcome for the first is theirs, with the two answers
    // (first pass and convergence) it took.
    let selective = chain_of(&rt, mirror());
    assert_eq!(selective.policies()[0].reads(), Some(vec![]));
    for name in ["one", "two", "three"] {
        selective.evaluate(&full_pod(name), &origin()).expect("ok");
    }
    assert_eq!(selective.policies()[0].reused_answers(), 4);
    assert_eq!(selective.reused_outcomes(), 2);
}

fn chain_of(rt: &Arc<Runtime>, policy: (&str, PolicySource, Value)) -> Chain {
    chain(rt, &[policy]).expect("chain")
}

/// The three built-ins as the README's examples chain them: the mirror
/// (selecting by label), pull secrets, and allowed registries warning.
fn three_builtins() -> Vec<(&'static str, PolicySource, Value)> {
    vec![
        (
            "mirror",
            PolicySource::Builtin("registry-mirror".into()),
            json!({"rules": [{"match": "docker.io", "replace": "mirror.corp/hub"}],
                   "selector": {"matchLabels": {"app": "web"}}}),
        ),
        (
            "secrets",
            PolicySource::Builtin("pull-secrets".into()),
            json!({"secretName": "corp", "registries": ["mirror.corp"],
                   "excludeNamespaces": ["kube-system"]}),
        ),
        (
            "allowed",
            PolicySource::Builtin("allowed-registries".into()),
            json!({"allow": ["mirror.corp"], "enforcement": "warn"}),
        ),
    ]
}

#[test]
fn an_object_like_one_answered_before_gets_the_outcome_a_fresh_chain_gives() {
    let rt = runtime(Duration::from_secs(2));
    let remembering = chain(&rt, &three_builtins()).expect("chain");
    let named = |name: &str| full_pod(name);
    let relabelled = {
        let mut p = full_pod("three");
        p["metadata"]["labels"] = json!({"app": "db"});
        p
    };
    let elsewhere = {
        let mut p = full_pod("four");
        p["metadata"]["namespace"] = json!("other");
        p
    };
    let listed = {
        let mut p = full_pod("five");
        p["spec"]["imagePullSecrets"] = json!([{"name": "corp"}]);
        p
    };
    let objects = [
        named("one"),
        named("two"),
        relabelled,
        named("six"),
        elsewhere,
        listed,
        named("seven"),
    ];
    for object in &objects {
        // A chain of its own for each object: nothing remembered.
        let fresh = chain(&rt, &three_builtins()).expect("chain");
        let expected = fresh.evaluate(object, &origin());
        assert_eq!(fresh.reused_outcomes(), 0);
        assert_eq!(
            remembering.evaluate(object, &origin()),
            expected,
            "{object}"
        );
    }
    // "two", "six" and "seven" are "one" but for their names; the others
    // differ in what a policy reads (labels the mirror selects by, the
    // namespace, the listed pull secrets).
    assert_eq!(remembering.reused_outcomes(), 3);
    let subset = remembering.subset(&["mirror"]).expect("named");
    assert_eq!(subset.reused_outcomes(), 0, "a subset remembers its own");
}

#[test]
fn outcomes_are_not_reused_after_raw_patches_or_host_calls() {
    let rt = runtime(Duration::from_secs(2));
    let reading_nothing = |mode: &str| {
        let mut policy = misbehave(mode);
        policy.2["reads"] = json!([]);
        policy
    };
    // Reads nothing, and sets the labels: the change depends on the labels
    // the object has, which no policy was shown.
    let relabelling = chain(&rt, &[reading_nothing("relabel")]).expect("chain");
    let mut bare = full_pod("bare");
    bare["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("labels");
    let patch = |object: &Value| {
        relabelling
            .evaluate(object, &origin())
            .expect("ok")
            .expect("relevant")
            .patch
    };
    let added = patch(&bare);
    let replaced = patch(&full_pod("labelled"));
    assert_ne!(added, replaced, "{added:?} {replaced:?}");
    assert_eq!(relabelling.reused_outcomes(), 0);

    let logging = chain(&rt, &[mirror(), reading_nothing("log-everything")]).expect("chain");
    for name in ["one", "two"] {
        logging.evaluate(&full_pod(name), &origin()).expect("ok");
    }
    assert_eq!(logging.reused_outcomes(), 0);
}
