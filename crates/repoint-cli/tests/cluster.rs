//! `repoint audit` and `repoint apply` end to end against a real
//! kube-apiserver and controller manager (tests/support/kube.rs): many
//! namespaces, mixed workloads, a custom resource, real concurrent
//! writers, RBAC refusals with real tokens, a terminating namespace, and
//! what repoint's writes leave in `managedFields`.

use std::path::{Path, PathBuf};

use repoint_tests::cluster::TestCluster;
use repoint_tests::{Output, run_command, temp_dir};
use serde_json::{Value, json};

fn repoint(args: &[&str]) -> Output {
    run_command(Path::new(env!("CARGO_BIN_EXE_repoint")), args, "")
}

/// `repoint apply --cluster` on one namespace.
fn apply_in(kubeconfig: &str, config: &str, namespace: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "apply",
        "--cluster",
        "-c",
        config,
        "--kubeconfig",
        kubeconfig,
        "-n",
        namespace,
    ];
    args.extend_from_slice(extra);
    repoint(&args)
}

/// One namespace of the shared control plane, the test config, and the
/// real kubectl pointed at that namespace.
struct Namespace {
    cluster: TestCluster,
    kubectl: PathBuf,
    config: String,
    kubeconfig: String,
    ns: String,
}

impl Namespace {
    /// `None` (the test skips) without a control plane or kubectl.
    fn start(tag: &str) -> Option<Self> {
        let cluster = TestCluster::start(tag)?;
        let kubectl = repoint_tests::program_or_skip("kubectl", "REPOINT_REQUIRE_KUBECTL")?;
        let config = config(&temp_dir(&format!("cluster-{tag}")));
        let ns = cluster.namespace(tag, &[]);
        Some(Self {
            kubectl,
            config: config.to_str().expect("utf-8").to_string(),
            kubeconfig: cluster.kubeconfig().to_str().expect("utf-8").to_string(),
            ns,
            cluster,
        })
    }

    /// `kubectl ARGS` in the namespace.
    fn kubectl(&self, args: &[&str], stdin: &str) -> Output {
        let mut all = vec!["--kubeconfig", &self.kubeconfig, "-n", &self.ns];
        all.extend_from_slice(args);
        run_command(&self.kubectl, &all, stdin)
    }

    /// `repoint apply --cluster EXTRA` on the namespace.
    fn apply(&self, extra: &[&str]) -> Output {
        apply_in(&self.kubeconfig, &self.config, &self.ns, extra)
    }

    /// A Deployment of the namespace as the server has it.
    fn deployment(&self, name: &str) -> Value {
        self.cluster
            .get("apps/v1", "Deployment", Some(&self.ns), name)
            .expect("deployment")
    }

    /// Its first container's image.
    fn image(&self, name: &str) -> Value {
        self.deployment(name)["spec"]["template"]["spec"]["containers"][0]["image"].clone()
    }
}

/// A config that mirrors Docker Hub and Crunchy's registry onto
/// mirror.corp.example and gives everything pulling from there the
/// `corp-registry` pull secret, on the pod spec and on the account.
fn config(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("token.txt"), "s3cr3t-token\n").expect("token");
    let path = dir.join("repoint.yaml");
    std::fs::write(
        &path,
        r#"apiVersion: repoint.dev/v1alpha1
kind: Config
policies:
  - name: mirror
    module: builtin:registry-mirror
    settings:
      rules:
        - {match: docker.io, replace: mirror.corp.example/hub}
        - {match: registry.developers.crunchydata.com, replace: mirror.corp.example/crunchy}
  - name: secrets
    module: builtin:pull-secrets
    settings: {secretName: corp-registry, registries: [mirror.corp.example]}
  - name: accounts
    module: builtin:pull-secrets
    settings: {secretName: corp-registry, registries: [mirror.corp.example], serviceAccount: true}
imageFields:
  - group: postgres-operator.crunchydata.com
    kind: PostgresCluster
    images: [/spec/image]
    pullSecrets: /spec/imagePullSecrets
credentials:
  - registry: mirror.corp.example
    username: robot
    passwordFile: token.txt
offline: true
"#,
    )
    .expect("config");
    path
}

fn deployment(ns: &str, name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": image}]}},
        },
    })
}

/// Objects already right: mirrored image, secret listed.
fn settled_deployment(ns: &str, name: &str) -> Value {
    let mut d = deployment(ns, name, "mirror.corp.example/hub/library/nginx:1.27");
    d["spec"]["template"]["spec"]["imagePullSecrets"] = json!([{"name": "corp-registry"}]);
    d
}

const CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "postgresclusters.postgres-operator.crunchydata.com"},
  "spec": {"group": "postgres-operator.crunchydata.com", "scope": "Namespaced",
    "names": {"kind": "PostgresCluster", "plural": "postgresclusters", "singular": "postgrescluster"},
    "versions": [{"name": "v1beta1", "served": true, "storage": true,
      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
}"#;

/// Seed the cluster; returns the objects that need a change, as
/// `namespace/kind.group/name` locations.
fn seed(cluster: &TestCluster) -> Vec<String> {
    let mut needs = Vec::new();
    let crd: Value = serde_json::from_str(CRD).expect("crd");
    if cluster
        .get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "postgresclusters.postgres-operator.crunchydata.com",
        )
        .is_none()
    {
        cluster.create(&crd);
    }
    for team in ["a", "b", "c", "d", "e", "f"] {
        let ns = cluster.namespace(&format!("team-{team}"), &[("team", team)]);
        cluster.create(&settled_deployment(&ns, "settled"));
        if team != "f" {
            let mut web = deployment(&ns, "web", "nginx:1.25");
            if team == "c" {
                // An account that does not exist yet: apply creates it.
                web["spec"]["template"]["spec"]["serviceAccountName"] = json!("builder");
            }
            cluster.create(&web);
            needs.push(format!("{ns}/deployment.apps/web"));
        }
        if team == "a" {
            cluster.create(&json!({
                "apiVersion": cluster.served_api_version("batch", "CronJob"), "kind": "CronJob",
                "metadata": {"name": "nightly", "namespace": ns},
                "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{"name": "job", "image": "docker.io/library/busybox:1.36"}]}}}}},
            }));
            needs.push(format!("{ns}/cronjob.batch/nightly"));
        }
        if team == "b" {
            cluster.create(&json!({
                "apiVersion": "postgres-operator.crunchydata.com/v1beta1", "kind": "PostgresCluster",
                "metadata": {"name": "hippo", "namespace": ns},
                "spec": {"image": "registry.developers.crunchydata.com/crunchydata/crunchy-postgres:ubi8-16.2-0", "postgresVersion": 16},
            }));
            needs.push(format!(
                "{ns}/postgrescluster.postgres-operator.crunchydata.com/hippo"
            ));
            cluster.create(&json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "cache", "namespace": ns},
                "spec": {"serviceName": "cache", "selector": {"matchLabels": {"app": "cache"}},
                    "template": {"metadata": {"labels": {"app": "cache"}}, "spec": {"containers": [{"name": "redis", "image": "redis:7"}]}}},
            }));
            needs.push(format!("{ns}/statefulset.apps/cache"));
        }
    }
    // The controller manager makes each Deployment's ReplicaSet and Pod,
    // and the StatefulSet's Pod: owned objects, which repoint leaves to
    // their owner when it lists the owner too. Wait for all of them, so
    // that no ReplicaSet appears between the audit's listing of
    // ReplicaSets and of Pods (its Pod would then look unowned). Team c's
    // web Pod never comes: its ServiceAccount does not exist yet.
    for (team, workloads) in [("a", 2), ("b", 3), ("c", 1), ("d", 2), ("e", 2), ("f", 1)] {
        let ns = cluster.ns(&format!("team-{team}"));
        eventually(&format!("a Pod for each workload in {ns}"), || {
            cluster.list("v1", "Pod", &ns).len() >= workloads
        });
    }
    needs.sort();
    needs
}

/// Poll `ready` for up to a minute.
fn eventually(what: &str, ready: impl FnMut() -> bool) {
    repoint_tests::eventually(what, std::time::Duration::from_secs(60), ready)
}

/// The writes repoint sent (it runs as the audited administrator) into
/// the test's namespaces (tests run side by side), as the API server's
/// audit log has them.
fn writes_by_repoint(cluster: &TestCluster) -> Vec<Value> {
    let ours = cluster.ns("");
    cluster
        .plane()
        .audit_events()
        .into_iter()
        .filter(|e| e["user"]["username"] == repoint_tests::kube::ADMIN)
        .filter(|e| {
            e["objectRef"]["namespace"]
                .as_str()
                .is_some_and(|ns| ns.starts_with(&ours))
        })
        .filter(|e| {
            matches!(
                e["verb"].as_str(),
                Some("create" | "update" | "patch" | "delete" | "deletecollection")
            )
        })
        .collect()
}

/// The locations `audit --format json` reports changes for.
fn changed_locations(out: &Output) -> Vec<String> {
    let findings: Vec<Value> =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    let mut locations: Vec<String> = findings
        .iter()
        .filter(|f| f["level"] == "change")
        .map(|f| f["file"].as_str().expect("file").to_string())
        .collect();
    locations.sort();
    locations.dedup();
    locations
}

#[test]
fn audit_reports_exactly_what_apply_changes_and_apply_converges() {
    // `audit` and `apply` of the whole cluster: on a cluster of its own.
    let Some(cluster) = TestCluster::start_own("e2e") else {
        return;
    };
    let dir = temp_dir("cluster-e2e");
    let config = config(&dir);
    let needs = seed(&cluster);
    let kubeconfig = cluster.kubeconfig().to_str().expect("utf-8").to_string();
    let config = config.to_str().expect("utf-8").to_string();
    let base = |cmd: &'static str| -> Vec<String> {
        vec![
            cmd.into(),
            "-c".into(),
            config.clone(),
            "--kubeconfig".into(),
            kubeconfig.clone(),
            "--chunk-size".into(),
            "2".into(),
        ]
    };
    let run = |args: Vec<String>| repoint(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // Audit: exactly the objects that need a change, exit 1.
    let mut audit = base("audit");
    audit.extend(["--format".into(), "json".into()]);
    let out = run(audit.clone());
    assert_eq!(out.code, 1, "{}", out.stderr);
    let audited = changed_locations(&out);
    // On a real cluster other namespaces have findings too; ours are
    // those in the test's namespaces, and must be exactly `needs`.
    let team = cluster.ns("team-");
    let ours = |locations: Vec<String>| -> Vec<String> {
        locations
            .into_iter()
            .filter(|l| l.starts_with(&team))
            .collect()
    };
    assert_eq!(
        ours(audited.clone()),
        needs,
        "audit reports the objects that need a change: {audited:?}"
    );
    assert!(
        !ours(audited.clone())
            .iter()
            .any(|l| l.contains("replicaset") || l.contains("/pod/")),
        "owned objects are skipped: {audited:?}"
    );
    assert!(
        out.stderr
            .contains("owned by an evaluated controller skipped"),
        "summary: {}",
        out.stderr
    );
    let text = run(base("audit"));
    assert!(
        text.stdout.contains("NAMESPACE") && text.stdout.contains("POLICY"),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.contains("s3cr3t") && !text.stderr.contains("s3cr3t"));

    // Neither dry run writes anything: the client's sends no write at all,
    // the server's sends every write with dryRun=All and nothing changes.
    let web_before = cluster
        .get("apps/v1", "Deployment", Some(&cluster.ns("team-a")), "web")
        .expect("web");
    let sent = writes_by_repoint(&cluster).len();
    let mut dry = base("apply");
    dry.extend(["--cluster".into(), "--dry-run=client".into()]);
    let out = run(dry);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("patched (dry run)"), "{}", out.stdout);
    assert_eq!(
        writes_by_repoint(&cluster).len(),
        sent,
        "a client dry run writes nothing"
    );
    let mut dry = base("apply");
    dry.extend(["--cluster".into(), "--dry-run=server".into()]);
    let out = run(dry);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("(server dry run)"), "{}", out.stdout);
    let writes = writes_by_repoint(&cluster);
    assert!(writes.len() > sent, "the server dry run sent its writes");
    for write in &writes[sent..] {
        let uri = write["requestURI"].as_str().unwrap_or("");
        assert!(uri.contains("dryRun=All"), "a write without dryRun: {uri}");
    }
    let web_after = cluster
        .get("apps/v1", "Deployment", Some(&cluster.ns("team-a")), "web")
        .expect("web");
    // The Deployment controller may write its status at any time, so the
    // resourceVersion can move; the spec and its generation must not.
    assert_eq!(
        (&web_after["metadata"]["generation"], &web_after["spec"]),
        (&web_before["metadata"]["generation"], &web_before["spec"]),
        "the server dry run stored nothing"
    );
    assert!(
        cluster
            .get("v1", "Secret", Some(&cluster.ns("team-a")), "corp-registry")
            .is_none()
    );

    // Apply: exactly those objects, plus each namespace's Secret and account.
    let mut apply = base("apply");
    apply.push("--cluster".into());
    let out = run(apply.clone());
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let patched: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| l.ends_with(" patched") && !l.starts_with("serviceaccount/"))
        .map(|l| {
            let (what, rest) = l.split_once(" in ").expect("namespaced");
            format!("{}/{what}", rest.trim_end_matches(" patched"))
        })
        .collect();
    let mut patched = ours(patched);
    patched.sort();
    assert_eq!(patched, needs, "{}", out.stdout);
    assert!(!out.stdout.contains("s3cr3t") && !out.stderr.contains("s3cr3t"));
    let a = cluster.ns("team-a");
    let web = cluster
        .get("apps/v1", "Deployment", Some(&a), "web")
        .expect("web");
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "mirror.corp.example/hub/library/nginx:1.25"
    );
    assert_eq!(
        web["spec"]["template"]["spec"]["imagePullSecrets"],
        json!([{"name": "corp-registry"}])
    );
    let secret = cluster
        .get("v1", "Secret", Some(&a), "corp-registry")
        .expect("the pull secret exists");
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "repoint"
    );
    let account = cluster
        .get("v1", "ServiceAccount", Some(&a), "default")
        .expect("default account");
    assert_eq!(
        account["imagePullSecrets"],
        json!([{"name": "corp-registry"}])
    );
    let builder = cluster
        .get(
            "v1",
            "ServiceAccount",
            Some(&cluster.ns("team-c")),
            "builder",
        )
        .expect("the missing account is created");
    assert_eq!(
        builder["imagePullSecrets"],
        json!([{"name": "corp-registry"}])
    );
    assert_eq!(
        builder["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "repoint"
    );
    let b = cluster.ns("team-b");
    let hippo = cluster
        .get(
            "postgres-operator.crunchydata.com/v1beta1",
            "PostgresCluster",
            Some(&b),
            "hippo",
        )
        .expect("hippo");
    assert_eq!(
        hippo["spec"]["image"],
        "mirror.corp.example/crunchy/crunchydata/crunchy-postgres:ubi8-16.2-0"
    );
    assert_eq!(
        hippo["spec"]["postgresVersion"], 16,
        "the rest is untouched"
    );
    // Owned objects are left to their owner: repoint wrote no Pod and no
    // ReplicaSet; the Deployment controller rolled the new template out.
    let owned: Vec<Value> = writes_by_repoint(&cluster)
        .into_iter()
        .filter(|w| {
            matches!(
                w["objectRef"]["resource"].as_str(),
                Some("pods" | "replicasets")
            )
        })
        .collect();
    assert!(owned.is_empty(), "{owned:?}");
    eventually(
        "the Deployment controller rolls out the mirrored image",
        || {
            cluster.list("apps/v1", "ReplicaSet", &a).iter().any(|rs| {
                rs["spec"]["template"]["spec"]["containers"][0]["image"]
                    == "mirror.corp.example/hub/library/nginx:1.25"
            })
        },
    );

    // A second apply changes nothing, and the audit is clean for ours.
    let out = run(apply);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.trim(), "nothing to change", "{}", out.stdout);
    let out = run(audit);
    let left = ours(changed_locations(&out));
    assert!(left.is_empty(), "{left:?}");

    // New credentials: the Secrets repoint made are brought up to date,
    // without the credentials appearing anywhere.
    std::fs::write(dir.join("token.txt"), "r0tat3d-token\n").expect("token");
    let out = run(base("apply")
        .into_iter()
        .chain(["--cluster".into()])
        .collect());
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains(&format!("secret/corp-registry in {a} updated")),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("r0tat3d") && !out.stderr.contains("r0tat3d"));
    let rotated = cluster
        .get("v1", "Secret", Some(&a), "corp-registry")
        .expect("secret");
    assert_ne!(rotated["data"], secret["data"]);
}

/// A merge patch of `name`'s annotations by the tests' own client: another
/// writer, as a controller or a person would be.
fn touch(cluster: &TestCluster, ns: &str, name: &str, n: usize) {
    let patch = json!({"metadata": {"annotations": {"other-writer/touched": n.to_string()}}});
    cluster.merge_patch("apps/v1", "Deployment", ns, name, &patch);
}

/// The audit events of repoint's requests on Deployment `ns/name`.
fn repoint_requests_on(cluster: &TestCluster, ns: &str, name: &str) -> Vec<(String, u64)> {
    cluster
        .plane()
        .audit_events()
        .into_iter()
        .filter(|e| e["user"]["username"] == repoint_tests::kube::ADMIN)
        .filter(|e| {
            e["objectRef"]["resource"] == "deployments"
                && e["objectRef"]["namespace"] == ns
                && e["objectRef"]["name"] == name
        })
        .map(|e| {
            (
                e["verb"].as_str().unwrap_or("").to_string(),
                e["responseStatus"]["code"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn a_real_concurrent_writer_is_retried_not_overwritten() {
    let Some(cluster) = TestCluster::start("racy") else {
        return;
    };
    let dir = temp_dir("cluster-racy");
    let config = config(&dir);
    let ns = cluster.namespace("racy", &[]);
    cluster.create(&deployment(&ns, "web", "nginx:1.25"));
    cluster.create(&deployment(&ns, "api", "nginx:1.25"));
    let kubeconfig = cluster.kubeconfig().to_str().expect("utf-8").to_string();
    let config = config.to_str().expect("utf-8").to_string();

    // The other writer starts once repoint has listed the Deployments,
    // and changes `web` until repoint's first patch of it arrives: that
    // patch was computed from a version that is gone.
    let listed = |cluster: &TestCluster| {
        cluster.plane().audit_events().iter().any(|e| {
            e["user"]["username"] == repoint_tests::kube::ADMIN
                && e["verb"] == "list"
                && e["objectRef"]["resource"] == "deployments"
        })
    };
    let (result, writes) = std::thread::scope(|scope| {
        let repoint = scope.spawn(|| apply_in(&kubeconfig, &config, &ns, &["-l", "app=web"]));
        let mut writes = 0;
        while !listed(&cluster) && !repoint.is_finished() {
            std::thread::yield_now();
        }
        while repoint_requests_on(&cluster, &ns, "web")
            .iter()
            .all(|(verb, _)| verb != "patch")
            && !repoint.is_finished()
        {
            writes += 1;
            touch(&cluster, &ns, "web", writes);
        }
        (repoint.join().expect("repoint"), writes)
    });
    assert_eq!(result.code, 0, "{}{}", result.stdout, result.stderr);
    assert!(writes > 0, "the other writer never got in");
    let patches: Vec<u64> = repoint_requests_on(&cluster, &ns, "web")
        .into_iter()
        .filter(|(verb, _)| verb == "patch")
        .map(|(_, code)| code)
        .collect();
    assert_eq!(
        patches.first(),
        Some(&409),
        "the first patch was stale: {patches:?}"
    );
    assert_eq!(
        patches.last(),
        Some(&200),
        "and a later one went through: {patches:?}"
    );
    let web = cluster
        .get("apps/v1", "Deployment", Some(&ns), "web")
        .expect("web");
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "mirror.corp.example/hub/library/nginx:1.25"
    );
    assert_eq!(
        web["metadata"]["annotations"]["other-writer/touched"],
        writes.to_string(),
        "the other writer's change survives"
    );
    let api = cluster
        .get("apps/v1", "Deployment", Some(&ns), "api")
        .expect("api");
    assert_eq!(
        api["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.25",
        "the selector kept api out"
    );
}

#[test]
fn created_then_applied_at_once_succeeds_every_time() {
    // The issue's repro: `kubectl create deployment`, then `repoint apply`
    // at once, while the Deployment controller writes the new object's
    // status. 20 runs, 20 successes.
    let Some(at) = Namespace::start("at-once") else {
        return;
    };
    let mut conflicts = 0;
    for run in 0..20 {
        let name = format!("web-{run}");
        let created = at.kubectl(&["create", "deployment", &name, "--image=nginx:1.25"], "");
        assert_eq!(created.code, 0, "{}", created.stderr);
        let out = at.apply(&["-l", &format!("app={name}")]);
        assert_eq!(out.code, 0, "run {run}: {}{}", out.stdout, out.stderr);
        assert_eq!(
            at.image(&name),
            "mirror.corp.example/hub/library/nginx:1.25",
            "run {run}"
        );
        conflicts += repoint_requests_on(&at.cluster, &at.ns, &name)
            .iter()
            .filter(|(verb, code)| verb == "patch" && *code == 409)
            .count();
    }
    eprintln!("20 of 20 runs succeeded; {conflicts} stale patches were retried");
}

#[test]
fn refusals_by_real_rbac_are_named() {
    let Some(cluster) = TestCluster::start("refused") else {
        return;
    };
    let dir = temp_dir("cluster-refused");
    let config = config(&dir);
    let config = config.to_str().expect("utf-8");
    let ns = cluster.namespace("refused", &[]);
    cluster.create(&deployment(&ns, "web", "nginx:1.25"));
    let rbac = "rbac.authorization.k8s.io/v1";
    let bind = |kind: &str, name: &str, namespace: Option<&str>, user: &str| {
        let mut metadata = json!({"name": name});
        let binding_kind = if kind == "Role" {
            "RoleBinding"
        } else {
            "ClusterRoleBinding"
        };
        if let Some(ns) = namespace {
            metadata["namespace"] = json!(ns);
        }
        cluster.create(&json!({
            "apiVersion": rbac, "kind": binding_kind, "metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
            "subjects": [{"kind": "User", "name": user}],
        }));
    };
    let every_workload = json!([
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"], "verbs": ["get", "list"]},
        {"apiGroups": ["batch"], "resources": ["cronjobs", "jobs"], "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["pods", "replicationcontrollers", "podtemplates"], "verbs": ["get", "list"]},
        {"apiGroups": ["postgres-operator.crunchydata.com"], "resources": ["postgresclusters"], "verbs": ["get", "list"]},
    ]);

    // tester-1 may read everything in the namespace and make the pull
    // secret and the accounts, but not patch Deployments.
    let mut rules = every_workload.as_array().expect("rules").clone();
    rules.push(json!({"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["get", "create", "patch"]}));
    cluster.create(&json!({"apiVersion": rbac, "kind": "Role",
        "metadata": {"name": "no-patch", "namespace": ns}, "rules": rules}));
    bind("Role", "no-patch", Some(&ns), "tester-1");
    let tester = cluster.plane().kubeconfig_of_tester(1);
    let out = apply_in(tester.to_str().expect("utf-8"), config, &ns, &[]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "forbidden: cannot patch deployments.apps in namespace \"{ns}\""
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains(&format!("secret/corp-registry in {ns} created")),
        "{}",
        out.stdout
    );

    // tester-2 may list every workload kind cluster-wide but StatefulSets.
    let mut rules = every_workload.as_array().expect("rules").clone();
    rules[0]["resources"] = json!(["deployments", "daemonsets", "replicasets"]);
    let name = format!("{ns}-no-statefulsets");
    cluster.create(&json!({"apiVersion": rbac, "kind": "ClusterRole",
        "metadata": {"name": name}, "rules": rules}));
    bind("ClusterRole", &name, None, "tester-2");
    let tester = cluster.plane().kubeconfig_of_tester(2);
    let out = repoint(&[
        "audit",
        "-c",
        config,
        "--kubeconfig",
        tester.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("forbidden: cannot list statefulsets.apps cluster-wide"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_terminating_namespace_is_said_and_its_workloads_kept_pulling() {
    let Some(cluster) = TestCluster::start("ending") else {
        return;
    };
    let dir = temp_dir("cluster-ending");
    let config = config(&dir);
    let config = config.to_str().expect("utf-8");
    let kubeconfig = cluster.kubeconfig().to_str().expect("utf-8");
    // Held in Terminating by finalizers on its Deployment: the namespace
    // controller deletes the rest, the Deployment stays.
    let ns = cluster.namespace("ending", &[]);
    let mut web = deployment(&ns, "web", "nginx:1.25");
    web["metadata"]["finalizers"] = json!(["repoint.dev/test-hold"]);
    cluster.create(&web);
    cluster.delete("v1", "Namespace", None, &ns);
    eventually("the namespace is terminating and refuses creates", || {
        let out = apply_in(kubeconfig, config, &ns, &["--dry-run=server"]);
        out.stderr.contains("is being deleted")
    });
    let out = apply_in(kubeconfig, config, &ns, &[]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "cannot create secrets {ns}/corp-registry: namespace \"{ns}\" is being deleted"
        )),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("grant the verb"),
        "no RBAC hint: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "{ns}/deployment.apps/web: not patched: it needs secret/corp-registry in {ns}"
        )),
        "{}",
        out.stderr
    );
    let web = cluster
        .get("apps/v1", "Deployment", Some(&ns), "web")
        .expect("web");
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.25",
        "left pulling from where it could"
    );
    cluster.release_finalizers("apps/v1", "Deployment", &ns, "web");
}

/// The managers of `object`'s `managedFields`: (manager, operation).
fn managers(object: &Value) -> Vec<(String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or("").to_string(),
                m["operation"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Whether `manager`'s entry owns the first container's `image`.
fn owns_image(object: &Value, manager: &str) -> bool {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["manager"] == manager)
        .any(|m| {
            m["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
                .as_object()
                .into_iter()
                .flatten()
                .any(|(_, container)| container.get("f:image").is_some())
        })
}

#[test]
fn field_ownership_is_what_the_readme_says() {
    let Some(at) = Namespace::start("owners") else {
        return;
    };
    let kubectl = |args: &[&str], stdin: &str| at.kubectl(args, stdin);
    let image = |name: &str| at.image(name);
    let mirrored = json!("mirror.corp.example/hub/library/nginx:1.25");
    let manifest =
        |name: &str| serde_json::to_string(&deployment(&at.ns, name, "nginx:1.25")).expect("json");

    // kubectl apply (client-side), repoint apply, and kubectl apply of the
    // same manifest again: kubectl's three-way merge sends every field of
    // the manifest that differs from the live object, so the image goes
    // back; what the manifest does not name (the pull secret repoint
    // added) stays.
    let out = kubectl(&["apply", "-f", "-"], &manifest("client"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = at.apply(&["-l", "app=client"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let object = at.deployment("client");
    assert!(
        managers(&object).contains(&("repoint".into(), "Update".into())),
        "repoint's patch is recorded under its field manager: {:?}",
        managers(&object)
    );
    assert!(owns_image(&object, "repoint"), "and owns the image it set");
    let out = kubectl(&["apply", "-f", "-"], &manifest("client"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        image("client"),
        json!("nginx:1.25"),
        "client-side apply puts the image back"
    );
    let object = at.deployment("client");
    assert_eq!(
        object["spec"]["template"]["spec"]["imagePullSecrets"],
        json!([{"name": "corp-registry"}]),
        "and keeps the pull secret"
    );

    // kubectl apply --server-side of the original manifest conflicts with
    // repoint on the image; with --force-conflicts it takes the field back.
    let out = kubectl(&["apply", "--server-side", "-f", "-"], &manifest("server"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = at.apply(&["-l", "app=server", "--field-manager", "platform-mirror"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let object = at.deployment("server");
    assert!(
        owns_image(&object, "platform-mirror"),
        "--field-manager names the manager: {:?}",
        managers(&object)
    );
    let out = kubectl(&["apply", "--server-side", "-f", "-"], &manifest("server"));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("conflict") && out.stderr.contains("platform-mirror"),
        "{}",
        out.stderr
    );
    assert_eq!(image("server"), mirrored);
    let out = kubectl(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        &manifest("server"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        image("server"),
        json!("nginx:1.25"),
        "forced, the manifest wins"
    );

    // A replace of the whole object (kubectl replace; a Helm upgrade that
    // sends the chart's object) puts the original image back and drops
    // the pull secret repoint added.
    let out = kubectl(&["create", "-f", "-"], &manifest("replaced"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = at.apply(&["-l", "app=replaced"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = kubectl(&["replace", "-f", "-"], &manifest("replaced"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(image("replaced"), json!("nginx:1.25"));
    let object = at.deployment("replaced");
    assert!(
        object["spec"]["template"]["spec"]
            .get("imagePullSecrets")
            .is_none()
    );
}

#[test]
fn apply_leaves_what_is_not_its_own_and_what_cannot_change() {
    let Some(cluster) = TestCluster::start("leaves") else {
        return;
    };
    let dir = temp_dir("cluster-leaves");
    let config = config(&dir);
    let config = config.to_str().expect("utf-8");
    let kubeconfig = cluster.kubeconfig().to_str().expect("utf-8");

    // A pull Secret of that name that repoint did not make is not
    // overwritten, though it holds other registries; the rest goes on.
    let ns = cluster.namespace("foreign", &[]);
    cluster.create(&json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "corp-registry", "namespace": ns},
        "stringData": {".dockerconfigjson": r#"{"auths":{"other.example":{"auth":"eDp5"}}}"#},
    }));
    let before = cluster
        .get("v1", "Secret", Some(&ns), "corp-registry")
        .expect("secret");
    cluster.create(&deployment(&ns, "web", "nginx:1.25"));
    let out = apply_in(kubeconfig, config, &ns, &[]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "Secret {ns}/corp-registry exists and was not made by repoint"
        )),
        "{}",
        out.stderr
    );
    let after = cluster
        .get("v1", "Secret", Some(&ns), "corp-registry")
        .expect("secret");
    assert_eq!(after["data"], before["data"]);
    // That Secret carries no credentials for the mirror: the Deployment
    // keeps pulling from where it can.
    assert!(
        out.stderr.contains(&format!(
            "{ns}/deployment.apps/web: not patched: it needs secret/corp-registry in {ns}"
        )),
        "{}",
        out.stderr
    );
    let web = cluster
        .get("apps/v1", "Deployment", Some(&ns), "web")
        .expect("web");
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );

    // A running Pod's spec changes only in its images: one that also needs
    // a pull secret is reported and left whole, not half-patched.
    let ns = cluster.namespace("solo", &[]);
    cluster.create(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "solo", "namespace": ns},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
    }));
    let out = apply_in(kubeconfig, config, &ns, &[]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("a running Pod may change only its images"),
        "{}",
        out.stderr
    );
    let pod = cluster.get("v1", "Pod", Some(&ns), "solo").expect("pod");
    assert_eq!(pod["spec"]["containers"][0]["image"], "nginx:1.25");
    assert!(pod["spec"].get("imagePullSecrets").is_none());
}

#[test]
fn kinds_the_server_does_not_serve_are_skipped_with_a_warning() {
    // A server with batch/v1beta1 turned off: on v1.20 it has no CronJob.
    let Some(cluster) =
        TestCluster::start_own_with("unserved", &["--runtime-config=batch/v1beta1=false"])
    else {
        return;
    };
    let dir = temp_dir("cluster-unserved");
    let config = config(&dir);
    let config = config.to_str().expect("utf-8");
    let kubeconfig = cluster.kubeconfig().to_str().expect("utf-8");
    let ns = cluster.namespace("unserved", &[]);
    cluster.create(&deployment(&ns, "web", "nginx:1.25"));
    let out = repoint(&[
        "audit",
        "-c",
        config,
        "--kubeconfig",
        kubeconfig,
        "-n",
        &ns,
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the cluster does not serve CronJob in group batch; skipped"),
        "{}",
        out.stderr
    );
    // The PostgresCluster CRD is not installed here either.
    assert!(
        out.stderr.contains(
            "imageFields names PostgresCluster in group postgres-operator.crunchydata.com, which the cluster does not serve; skipped"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(
        changed_locations(&out),
        [format!("{ns}/deployment.apps/web")]
    );
}

/// The names in a ServiceAccount's `imagePullSecrets`.
fn account_pull_secrets(ns: &Namespace, account: &str) -> Vec<String> {
    let sa = ns
        .cluster
        .get("v1", "ServiceAccount", Some(&ns.ns), account)
        .expect("account");
    sa["imagePullSecrets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["name"].as_str().expect("name").to_string())
        .collect()
}

/// What `repoint run`'s warning on accounts it writes whole says, on a
/// real API server: `kubectl apply` of such an account replaces the live
/// `imagePullSecrets` (an atomic list), dropping an entry the cluster
/// added, as OpenShift adds `default-dockercfg-*`; `repoint apply` adds to
/// the live list and keeps it.
#[test]
fn an_account_written_whole_replaces_the_live_pull_secrets_and_apply_adds() {
    let Some(ns) = Namespace::start("whole-account") else {
        return;
    };
    eventually("the controller manager made the default account", || {
        ns.cluster
            .get("v1", "ServiceAccount", Some(&ns.ns), "default")
            .is_some()
    });
    let cluster_added = json!({"imagePullSecrets": [{"name": "default-dockercfg-x7k2p"}]});
    ns.cluster
        .merge_patch("v1", "ServiceAccount", &ns.ns, "default", &cluster_added);
    let dir = temp_dir("whole-account");
    let app = dir.join("app.json");
    std::fs::write(&app, deployment(&ns.ns, "web", "nginx:1.27").to_string()).expect("app");
    let run = repoint(&["run", "-c", &ns.config, app.to_str().expect("utf-8")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "ServiceAccount {}/default written whole: `kubectl apply` over a live account replaces its imagePullSecrets",
            ns.ns
        )),
        "{}",
        run.stderr
    );
    let applied = ns.kubectl(&["apply", "-f", "-"], &run.stdout);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert_eq!(account_pull_secrets(&ns, "default"), ["corp-registry"]);

    ns.cluster
        .merge_patch("v1", "ServiceAccount", &ns.ns, "default", &cluster_added);
    let out = ns.apply(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        account_pull_secrets(&ns, "default"),
        ["default-dockercfg-x7k2p", "corp-registry"]
    );
}

/// The real helm with repoint as its post-renderer, installing
/// `examples/helm/chart` on the real API server. The chart names no
/// namespace and Helm tells a post-renderer neither the release nor its
/// namespace, so the pull Secret is generated without one and Helm puts it
/// in the release namespace, owned by the release. A second release in
/// that namespace generating the same Secret is refused by Helm before it
/// creates anything (the Secret belongs to the first); in another namespace
/// a release gets its own; uninstalling a release deletes its Secret.
#[test]
fn helm_releases_own_the_pull_secret_in_their_namespace() {
    let Some(ns) = Namespace::start("helm") else {
        return;
    };
    let Some(helm) = repoint_tests::helm() else {
        return;
    };
    let other = ns.cluster.namespace("helm-other", &[]);
    let root = repoint_tests::repo_root();
    let chart = root.join("examples/helm/chart");
    let script = root.join("examples/helm/post-render.sh");
    let home = temp_dir("helm-home");
    let helm_in = |namespace: &str, args: &[&str]| -> Output {
        let mut all = vec!["--kubeconfig", &ns.kubeconfig, "-n", namespace];
        all.extend_from_slice(args);
        repoint_tests::run_helm(&helm, &all, &home, env!("CARGO_BIN_EXE_repoint"))
    };
    let install = |release: &str, namespace: &str| {
        helm_in(
            namespace,
            &[
                "install",
                release,
                chart.to_str().expect("utf-8"),
                "--post-renderer",
                script.to_str().expect("utf-8"),
            ],
        )
    };
    let secret_of = |namespace: &str| {
        ns.cluster
            .get("v1", "Secret", Some(namespace), "corp-registry")
    };
    let owner = |secret: &Value| {
        let annotations = &secret["metadata"]["annotations"];
        (
            annotations["meta.helm.sh/release-name"].clone(),
            annotations["meta.helm.sh/release-namespace"].clone(),
        )
    };

    let out = install("shop", &ns.ns);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let secret = secret_of(&ns.ns).expect("the pull Secret in the release namespace");
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(owner(&secret), (json!("shop"), json!(ns.ns)));
    let pod = &ns.deployment("shop")["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["image"],
        "mirror.corp.example/ghcr/acme/shop:2.4.0"
    );
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "corp-registry"}]));

    let refused = install("shop-canary", &ns.ns);
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        refused.stderr.contains(&format!(
            "Secret \"corp-registry\" in namespace \"{}\" exists and cannot be imported into the current release",
            ns.ns
        )),
        "{}",
        refused.stderr
    );
    assert!(
        ns.cluster
            .get("apps/v1", "Deployment", Some(&ns.ns), "shop-canary")
            .is_none(),
        "nothing of the refused release is created"
    );
    assert_eq!(
        owner(&secret_of(&ns.ns).expect("still there")),
        (json!("shop"), json!(ns.ns))
    );

    let out = install("shop", &other);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        owner(&secret_of(&other).expect("its own Secret")),
        (json!("shop"), json!(other))
    );

    let out = helm_in(&ns.ns, &["uninstall", "shop"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        secret_of(&ns.ns).is_none(),
        "the release's Secret goes with it"
    );
    assert!(
        secret_of(&other).is_some(),
        "the other release keeps its own"
    );
}
