//! The API server fixture is faithful: the real `kubectl` client drives it
//! through get, apply (client- and server-side), patch (JSON, merge and
//! strategic), replace with a stale resourceVersion, paged lists, RBAC
//! denials and `get --watch`, and sees what it would see from a cluster.

use repoint_tests::apiserver::ApiServer;

/// For trying the fixture by hand: `REPOINT_FIXTURE_SECONDS=300 cargo test
/// -p repoint-tests --test apiserver serve_by_hand -- --ignored` writes
/// `$TMPDIR/repoint-fixture.kubeconfig` and serves for that long.
#[test]
#[ignore]
fn serve_by_hand() {
    let server = ApiServer::start();
    let path = std::env::temp_dir().join("repoint-fixture.kubeconfig");
    server.write_kubeconfig(&path);
    eprintln!("KUBECONFIG={}", path.display());
    let seconds = std::env::var("REPOINT_FIXTURE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    std::thread::sleep(Duration::from_secs(seconds));
}

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use repoint_tests::{Output, program_or_skip, run_command, temp_dir};
use serde_json::Value;

/// kubectl pointed at the fixture.
struct Kubectl {
    program: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut all = vec![
            "--kubeconfig",
            self.kubeconfig.to_str().expect("utf-8 path"),
        ];
        all.extend_from_slice(args);
        run_command(&self.program, &all, stdin)
    }

    /// Run and require success; stdout.
    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert_eq!(out.code, 0, "kubectl {args:?} failed: {}", out.stderr);
        out.stdout
    }

    /// `kubectl create namespace` sends protobuf, which the fixture does not
    /// speak; a manifest goes as JSON.
    fn namespace(&self, name: &str) {
        let manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n");
        self.ok(&["apply", "--validate=false", "-f", "-"], &manifest);
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&all, "")).expect("kubectl prints JSON")
    }
}

fn kubectl(server: &ApiServer, tag: &str) -> Option<Kubectl> {
    let program = program_or_skip("kubectl", "REPOINT_REQUIRE_KUBECTL")?;
    let dir = temp_dir(tag);
    let kubeconfig = dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig);
    Some(Kubectl {
        program,
        kubeconfig,
    })
}

const DEPLOYMENT: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: team-a, labels: {app: web}}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: app, image: nginx:1.25}
      - {name: side, image: busybox:1.36}
";

fn images(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| c["image"].as_str().expect("image").to_string())
        .collect()
}

#[test]
fn kubectl_applies_patches_and_reads_back() {
    let server = ApiServer::start();
    let Some(k) = kubectl(&server, "fixture-kubectl-apply") else {
        return;
    };
    // The fixture serves no OpenAPI schemas, so kubectl's client-side
    // schema validation is off; everything the server does is exercised.
    k.namespace("team-a");
    assert!(
        k.ok(
            &[
                "get",
                "serviceaccount",
                "default",
                "-n",
                "team-a",
                "-o",
                "name"
            ],
            ""
        )
        .contains("serviceaccount/default"),
        "a new namespace gets its default ServiceAccount"
    );

    // Client-side apply: create, then a strategic merge patch that keeps
    // the other container.
    assert!(
        k.ok(&["apply", "--validate=false", "-f", "-"], DEPLOYMENT)
            .contains("deployment.apps/web created")
    );
    let changed = DEPLOYMENT.replace("nginx:1.25", "nginx:1.27");
    assert!(
        k.ok(&["apply", "--validate=false", "-f", "-"], &changed)
            .contains("deployment.apps/web configured")
    );
    let web = k.json(&["get", "deployment", "web", "-n", "team-a"]);
    assert_eq!(images(&web), ["nginx:1.27", "busybox:1.36"]);
    assert!(
        web["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    assert_eq!(
        k.ok(&["apply", "--validate=false", "-f", "-"], &changed)
            .trim(),
        "deployment.apps/web unchanged"
    );

    // Each kind of patch.
    k.ok(&["patch", "deployment", "web", "-n", "team-a", "--type=json", "-p",
        r#"[{"op":"test","path":"/spec/template/spec/containers/1/name","value":"side"},{"op":"replace","path":"/spec/template/spec/containers/1/image","value":"busybox:1.37"}]"#], "");
    k.ok(
        &[
            "patch",
            "deployment",
            "web",
            "-n",
            "team-a",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"tier":"front"}}}"#,
        ],
        "",
    );
    k.ok(&["patch", "deployment", "web", "-n", "team-a", "-p",
        r#"{"spec":{"template":{"spec":{"imagePullSecrets":[{"name":"regcred"}],"containers":[{"name":"app","image":"nginx:1.28"}]}}}}"#], "");
    let web = k.json(&["get", "deployment", "web", "-n", "team-a"]);
    assert_eq!(images(&web), ["nginx:1.28", "busybox:1.37"]);
    assert_eq!(web["metadata"]["labels"]["tier"], "front");
    assert_eq!(
        web["spec"]["template"]["spec"]["imagePullSecrets"][0]["name"],
        "regcred"
    );
    let failed = k.run(&["patch", "deployment", "web", "-n", "team-a", "--type=json", "-p",
        r#"[{"op":"test","path":"/metadata/resourceVersion","value":"1"},{"op":"replace","path":"/spec/replicas","value":3}]"#], "");
    assert_ne!(failed.code, 0);
    assert!(
        failed.stderr.contains("The request is invalid")
            && failed
                .stderr
                .contains("testing value /metadata/resourceVersion failed: test failed"),
        "{}",
        failed.stderr
    );

    // Server-side apply records its field manager.
    let applied = changed.replace("nginx:1.27", "nginx:1.29");
    assert!(
        k.ok(
            &[
                "apply",
                "--server-side",
                "--validate=false",
                "--field-manager=team-a-ci",
                "-f",
                "-"
            ],
            &applied
        )
        .contains("serverside-applied")
    );
    let web = k.json(&[
        "get",
        "deployment",
        "web",
        "-n",
        "team-a",
        "--show-managed-fields",
    ]);
    assert_eq!(images(&web)[0], "nginx:1.29");
    let managers: Vec<&str> = web["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"team-a-ci"), "{managers:?}");

    // A replace carrying a stale resourceVersion is a conflict.
    let mut stale = web.clone();
    stale["metadata"]["resourceVersion"] = Value::String("1".into());
    let conflict = k.run(
        &["replace", "--validate=false", "-f", "-"],
        &stale.to_string(),
    );
    assert!(
        conflict.stderr.contains("Error from server (Conflict)"),
        "{}",
        conflict.stderr
    );
    assert!(
        conflict.stderr.contains("the object has been modified"),
        "{}",
        conflict.stderr
    );

    // A running Pod's spec is immutable but for images.
    let pod = k.ok(
        &[
            "run",
            "solo",
            "-n",
            "team-a",
            "--image=nginx:1.25",
            "--dry-run=client",
            "-o",
            "json",
        ],
        "",
    );
    k.ok(&["create", "--validate=false", "-f", "-"], &pod);
    k.ok(
        &[
            "set",
            "image",
            "pod/solo",
            "-n",
            "team-a",
            "solo=nginx:1.27",
        ],
        "",
    );
    let refused = k.run(
        &[
            "patch",
            "pod",
            "solo",
            "-n",
            "team-a",
            "-p",
            r#"{"spec":{"imagePullSecrets":[{"name":"regcred"}]}}"#,
        ],
        "",
    );
    assert!(
        refused
            .stderr
            .contains("pod updates may not change fields other than"),
        "{}",
        refused.stderr
    );

    // Delete.
    assert!(
        k.ok(&["delete", "pod", "solo", "-n", "team-a"], "")
            .contains("\"solo\" deleted")
    );
    assert!(
        k.run(&["get", "pod", "solo", "-n", "team-a"], "")
            .stderr
            .contains("(NotFound): pods \"solo\" not found")
    );
}

#[test]
fn kubectl_pages_selects_and_is_refused() {
    let server = ApiServer::start();
    let Some(k) = kubectl(&server, "fixture-kubectl-list") else {
        return;
    };
    for ns in ["a", "b"] {
        k.namespace(ns);
        for i in 0..3 {
            let tier = if i == 0 { "front" } else { "back" };
            let manifest = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}, namespace: {ns}, labels: {{tier: {tier}}}}}\ndata: {{k: v}}\n"
            );
            k.ok(&["apply", "--validate=false", "-f", "-"], &manifest);
        }
    }
    // A paged list returns every object once, in order.
    let names = k.ok(
        &["get", "configmaps", "-A", "--chunk-size=2", "-o", "name"],
        "",
    );
    assert_eq!(names.lines().count(), 6, "{names}");
    assert!(
        server.requests().iter().any(|r| r.contains("continue=")),
        "kubectl paged"
    );
    // Label selectors, in both syntaxes.
    let fronts = k.ok(
        &["get", "configmaps", "-A", "-l", "tier=front", "-o", "name"],
        "",
    );
    assert_eq!(fronts.lines().count(), 2, "{fronts}");
    let backs = k.ok(
        &[
            "get",
            "configmaps",
            "-n",
            "a",
            "-l",
            "tier in (back)",
            "-o",
            "name",
        ],
        "",
    );
    assert_eq!(
        backs.lines().collect::<Vec<_>>(),
        ["configmap/c1", "configmap/c2"]
    );
    // The human-readable listing works without server-side tables.
    assert!(k.ok(&["get", "namespaces"], "").contains("kube-system"));

    // RBAC: the verb, resource and namespace refused are named.
    server.deny("patch", "configmaps", Some("b"));
    let refused = k.run(
        &[
            "patch",
            "configmap",
            "c0",
            "-n",
            "b",
            "-p",
            r#"{"data":{"k":"w"}}"#,
        ],
        "",
    );
    assert!(
        refused.stderr.contains(r#"Error from server (Forbidden): configmaps "c0" is forbidden: User "repoint-test" cannot patch resource "configmaps" in API group "" in the namespace "b""#),
        "{}",
        refused.stderr
    );
    k.ok(
        &[
            "patch",
            "configmap",
            "c0",
            "-n",
            "a",
            "-p",
            r#"{"data":{"k":"w"}}"#,
        ],
        "",
    );
    server.deny("list", "configmaps", None);
    let refused = k.run(&["get", "configmaps", "-A"], "");
    assert!(
        refused
            .stderr
            .contains("cannot list resource \"configmaps\" in API group \"\" at the cluster scope"),
        "{}",
        refused.stderr
    );
}

/// Lines kubectl prints while it watches, read until `wanted` lines or
/// the deadline.
fn watch_lines(
    child: std::process::ChildStdout,
    wanted: usize,
) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(child)
            .lines()
            .map_while(Result::ok)
            .take(wanted)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn kubectl_watches_changes_as_they_happen() {
    let server = ApiServer::start();
    let Some(k) = kubectl(&server, "fixture-kubectl-watch") else {
        return;
    };
    k.namespace("w");
    let secret = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: w}}\nstringData: {{token: t}}\n"
        )
    };
    k.ok(&["apply", "--validate=false", "-f", "-"], &secret("before"));
    let mut watcher = Command::new(&k.program)
        .args([
            "--kubeconfig",
            path_str(&k.kubeconfig),
            "get",
            "secrets",
            "-n",
            "w",
            "--watch",
            "-o",
            "name",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kubectl --watch");
    let lines = watch_lines(watcher.stdout.take().expect("stdout"), 3);
    let first = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the listed secret");
    assert_eq!(first, "secret/before");
    k.ok(&["apply", "--validate=false", "-f", "-"], &secret("after"));
    let second = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the created secret");
    assert_eq!(second, "secret/after");
    k.ok(&["delete", "secret", "before", "-n", "w"], "");
    let third = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the deleted secret");
    assert_eq!(third, "secret/before");
    let _ = watcher.kill();
    let _ = watcher.wait();
    let stored = server
        .object("", "secrets", Some("w"), "after")
        .expect("stored");
    assert_eq!(
        stored["data"]["token"], "dA==",
        "stringData is folded into data"
    );
    assert!(server.requests().iter().any(|r| r.contains("watch=true")));
}

#[test]
fn kubectl_discovers_custom_resources() {
    let server = ApiServer::start();
    let Some(k) = kubectl(&server, "fixture-kubectl-crd") else {
        return;
    };
    let crd = "
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: postgresclusters.postgres-operator.crunchydata.com}
spec:
  group: postgres-operator.crunchydata.com
  names: {kind: PostgresCluster, plural: postgresclusters, singular: postgrescluster, shortNames: [postgres]}
  scope: Namespaced
  versions:
  - {name: v1beta1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
";
    k.ok(&["apply", "--validate=false", "-f", "-"], crd);
    let resources = k.ok(
        &[
            "api-resources",
            "--api-group=postgres-operator.crunchydata.com",
        ],
        "",
    );
    assert!(
        resources.contains("postgresclusters") && resources.contains("PostgresCluster"),
        "{resources}"
    );
    let cluster = "
apiVersion: postgres-operator.crunchydata.com/v1beta1
kind: PostgresCluster
metadata: {name: hippo, namespace: default}
spec: {image: registry.developers.crunchydata.com/crunchydata/crunchy-postgres:ubi8-16.2-0}
";
    k.ok(&["apply", "--validate=false", "-f", "-"], cluster);
    let got = k.json(&["get", "postgres", "hippo"]);
    assert_eq!(got["kind"], "PostgresCluster");
    // Custom resources take merge patches, not strategic ones.
    let refused = k.run(
        &[
            "patch",
            "postgrescluster",
            "hippo",
            "--type=strategic",
            "-p",
            r#"{"spec":{"port":5433}}"#,
        ],
        "",
    );
    assert!(
        refused.stderr.contains("UnsupportedMediaType")
            || refused.stderr.contains("unknown format"),
        "{}",
        refused.stderr
    );
    k.ok(
        &[
            "patch",
            "postgrescluster",
            "hippo",
            "--type=merge",
            "-p",
            r#"{"spec":{"port":5433}}"#,
        ],
        "",
    );
    assert_eq!(
        k.json(&["get", "postgresclusters", "hippo"])["spec"]["port"],
        5433
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
