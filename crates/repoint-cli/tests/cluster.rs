//! `repoint audit` and `repoint apply` end to end against an API server:
//! the fixture in `tests/`, or the real cluster `REPOINT_TEST_KUBECONFIG`
//! names. Many namespaces, mixed workloads, a custom resource.

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
            // A Deployment's ReplicaSet and Pod: fixed once, at the owner.
            let web = cluster
                .get("apps/v1", "Deployment", Some(&ns), "web")
                .expect("web");
            let rs = json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": "web-5d4f", "namespace": ns, "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                    "uid": web["metadata"]["uid"], "controller": true}]},
                "spec": {"selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}}},
            });
            cluster.create(&rs);
            let rs = cluster
                .get("apps/v1", "ReplicaSet", Some(&ns), "web-5d4f")
                .expect("rs");
            cluster.create(&json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web-5d4f-x1", "namespace": ns, "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4f",
                    "uid": rs["metadata"]["uid"], "controller": true}]},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
            }));
            cluster.create(&json!({
                "apiVersion": "batch/v1", "kind": "CronJob",
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
    needs.sort();
    needs
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
    let cluster = TestCluster::start("cluster-e2e");
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
        !audited
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

    // Neither dry run writes anything: the server's stores nothing, the
    // client's sends no write at all.
    if let Some(fixture) = cluster.fixture() {
        let writes = || {
            fixture
                .requests()
                .iter()
                .filter(|r| !r.starts_with("GET"))
                .count()
        };
        let (before, sent) = (fixture.revision(), writes());
        let mut dry = base("apply");
        dry.extend(["--cluster".into(), "--dry-run=client".into()]);
        let out = run(dry);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("patched (dry run)"), "{}", out.stdout);
        assert_eq!((fixture.revision(), writes()), (before, sent));
        let before = fixture.revision();
        let mut dry = base("apply");
        dry.extend(["--cluster".into(), "--dry-run=server".into()]);
        let out = run(dry);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("(server dry run)"), "{}", out.stdout);
        assert_eq!(fixture.revision(), before, "dry run stored nothing");
        assert!(
            fixture
                .requests()
                .iter()
                .any(|r| r.starts_with("PATCH") && r.contains("dryRun=All"))
        );
    }

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
    let pod = cluster
        .get("v1", "Pod", Some(&a), "web-5d4f-x1")
        .expect("pod");
    assert_eq!(
        pod["spec"]["containers"][0]["image"], "nginx:1.25",
        "owned pods are left to their owner"
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

#[test]
fn conflicts_are_retried_and_refusals_named() {
    let cluster = TestCluster::start("cluster-faults");
    let Some(fixture) = cluster.fixture() else {
        eprintln!("refusals and races are staged by the fixture; skipped on a real cluster");
        return;
    };
    let dir = temp_dir("cluster-faults");
    let config = config(&dir);
    let ns = cluster.namespace("racy", &[]);
    cluster.create(&deployment(&ns, "web", "nginx:1.25"));
    cluster.create(&deployment(&ns, "api", "nginx:1.25"));
    let kubeconfig = cluster.kubeconfig().to_str().expect("utf-8");
    let config = config.to_str().expect("utf-8");

    // Another writer changes `web` before each of repoint's first two
    // patches: the guarded patch fails, repoint reads again and retries.
    fixture.interfere("deployments", Some(&ns), "web", 2);
    let out = apply_in(kubeconfig, config, &ns, &["-l", "app=web"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let web = cluster
        .get("apps/v1", "Deployment", Some(&ns), "web")
        .expect("web");
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "mirror.corp.example/hub/library/nginx:1.25"
    );
    assert_eq!(
        web["metadata"]["annotations"]["fixture.repoint.dev/touched"], "2",
        "the other writer's change survives"
    );
    let patches = fixture
        .requests()
        .iter()
        .filter(|r| r.starts_with("PATCH") && r.contains("/deployments/web"))
        .count();
    assert_eq!(patches, 3, "two conflicts, then success");
    let api = cluster
        .get("apps/v1", "Deployment", Some(&ns), "api")
        .expect("api");
    assert_eq!(
        api["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.25",
        "the selector kept api out"
    );

    // RBAC: the refused verb, resource and namespace are named.
    fixture.deny("patch", "deployments", Some(&ns));
    let out = apply_in(kubeconfig, config, &ns, &[]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "forbidden: cannot patch deployments.apps in namespace \"{ns}\""
        )),
        "{}",
        out.stderr
    );
    fixture.deny("list", "statefulsets", None);
    let out = repoint(&["audit", "-c", config, "--kubeconfig", kubeconfig]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("forbidden: cannot list statefulsets.apps cluster-wide"),
        "{}",
        out.stderr
    );
}

#[test]
fn apply_leaves_what_is_not_its_own_and_what_cannot_change() {
    let cluster = TestCluster::start("cluster-leaves");
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
    assert!(
        out.stdout
            .contains(&format!("deployment.apps/web in {ns} patched")),
        "{}",
        out.stdout
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
