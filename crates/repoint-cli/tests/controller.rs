//! `repoint controller` and `repoint serve --reconcile` against a real
//! kube-apiserver and controller manager (tests/support/kube.rs): the pull
//! Secret copied from a source Secret into every selected namespace and
//! listed by its accounts, kept there as namespaces, Secrets, accounts and
//! the source change, under exactly the RBAC `webhook manifests` grants.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use repoint_tests::cluster::TestCluster;
use repoint_tests::temp_dir;
use serde_json::{Value, json};

const SECRET: &str = "corp-pull";
const TOKEN: &str = "s3cr3t-source-token";
const ROTATED: &str = "r0tat3d-source-token";

/// A running `repoint controller` (or `serve`), stopped (SIGKILL) when
/// dropped.
struct Controller {
    child: Child,
    log: PathBuf,
}

impl Controller {
    /// `repoint controller`, its stderr in `log`.
    fn start(config: &Path, kubeconfig: &Path, log: &Path) -> Self {
        let mut args = vec![OsString::from("controller"), "-c".into(), config.into()];
        args.extend(["--kubeconfig".into(), kubeconfig.into()]);
        Self::spawn(&args, log)
    }

    /// `repoint ARGS`, its stderr in `log`.
    fn spawn(args: &[OsString], log: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_repoint"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log"))
            .spawn()
            .expect("start repoint");
        Self {
            child,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and the exit code.
    fn stop(mut self) -> i32 {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "still running after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait up to 20 s for `ready` to hold, showing the log if it never does.
fn eventually(controller: &Controller, what: &str, mut ready: impl FnMut() -> bool) {
    repoint_tests::wait_for(
        what,
        Duration::from_secs(20),
        || ready().then_some(()),
        || format!("controller log:\n{}", controller.log()),
    )
}

fn dockerconfigjson(token: &str) -> String {
    json!({"auths": {"mirror.corp.example": {"username": "robot", "password": token}}}).to_string()
}

fn source_secret(ns: &str, token: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "regcred", "namespace": ns},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": repoint_credentials::base64(&dockerconfigjson(token))},
    })
}

fn account(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}})
}

/// The token the pull Secret in `ns` carries, if it exists.
fn token_in(cluster: &TestCluster, ns: &str) -> Option<String> {
    let secret = cluster.get("v1", "Secret", Some(ns), SECRET)?;
    let doc = repoint_tests::dockerconfigjson(&secret);
    doc.pointer("/auths/mirror.corp.example/password")
        .and_then(Value::as_str)
        .map(String::from)
}

/// Whether ServiceAccount `ns/name` lists the pull Secret.
fn lists_secret(cluster: &TestCluster, ns: &str, name: &str) -> bool {
    listed(cluster.get("v1", "ServiceAccount", Some(ns), name))
}

/// `repoint.yaml` in `dir`: a Config with `body` after its header.
fn config_file(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("repoint.yaml");
    std::fs::write(
        &path,
        format!("apiVersion: repoint.dev/v1alpha1\nkind: Config\n{body}"),
    )
    .expect("config");
    path
}

#[test]
fn the_pull_secret_is_kept_in_every_selected_namespace() {
    let Some(cluster) = TestCluster::start("controller") else {
        return;
    };
    let dir = temp_dir("controller");
    // A label unique to this run: on a real cluster the controller must
    // only ever touch the test's own namespaces.
    let run = format!("run-{}", std::process::id());
    let selected = [("repoint-test", run.as_str())];

    let platform = cluster.namespace("platform", &[]);
    cluster.create(&source_secret(&platform, TOKEN));
    let a = cluster.namespace("team-a", &selected);
    cluster.create(&account(&a, "builder"));
    let b = cluster.namespace("team-b", &selected);
    let skipped = cluster.namespace("skipped", &selected);
    let other = cluster.namespace("other", &[("repoint-test", "someone-else")]);
    // A Secret of that name repoint did not make: left alone.
    let foreign = cluster.namespace("foreign", &selected);
    let mut theirs = source_secret(&foreign, "their-own-token");
    theirs["metadata"]["name"] = json!(SECRET);
    cluster.create(&theirs);

    let config = config_file(
        &dir,
        &format!(
            "secretFrom: {{namespace: {platform}, name: regcred}}
reconcile:
  secretName: {SECRET}
  registries: [mirror.corp.example]
  namespaceSelector: repoint-test={run}
  excludeNamespaces: [{skipped}]
  serviceAccounts: [default, builder]
  resync: 1h
"
        ),
    );
    let controller = Controller::start(&config, cluster.kubeconfig(), &dir.join("controller.log"));

    // Namespaces that exist at start: the Secret, and the accounts.
    eventually(&controller, "team-a and team-b have the Secret", || {
        token_in(&cluster, &a).as_deref() == Some(TOKEN)
            && token_in(&cluster, &b).as_deref() == Some(TOKEN)
    });
    eventually(&controller, "the accounts list it", || {
        lists_secret(&cluster, &a, "default")
            && lists_secret(&cluster, &a, "builder")
            && lists_secret(&cluster, &b, "default")
    });
    let made = cluster
        .get("v1", "Secret", Some(&a), SECRET)
        .expect("secret");
    assert_eq!(made["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(
        made["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "repoint"
    );
    // `builder` is the namespace owner's to create: not made in team-b.
    assert!(
        cluster
            .get("v1", "ServiceAccount", Some(&b), "builder")
            .is_none()
    );

    // A namespace created after start gets the Secret and the account.
    let c = cluster.namespace("team-c", &selected);
    eventually(&controller, "the new namespace team-c is set up", || {
        token_in(&cluster, &c).as_deref() == Some(TOKEN) && lists_secret(&cluster, &c, "default")
    });

    // A namespace deleted while it runs: nothing to say about it.
    let doomed = cluster.namespace("doomed", &selected);
    eventually(&controller, "the doomed namespace is set up", || {
        token_in(&cluster, &doomed).as_deref() == Some(TOKEN)
    });
    cluster.delete("v1", "Namespace", None, &doomed);
    eventually(&controller, "the namespace controller finalised it", || {
        cluster.get("v1", "Namespace", None, &doomed).is_none()
    });

    // A deleted Secret is recreated.
    cluster.delete("v1", "Secret", Some(&a), SECRET);
    eventually(&controller, "the deleted Secret is back", || {
        token_in(&cluster, &a).as_deref() == Some(TOKEN)
    });

    // An edited Secret is put back.
    let mut edited = cluster
        .get("v1", "Secret", Some(&a), SECRET)
        .expect("secret");
    edited["data"][".dockerconfigjson"] =
        json!(repoint_credentials::base64(&dockerconfigjson("tampered")));
    cluster.replace(&edited);
    eventually(&controller, "the edited Secret is restored", || {
        token_in(&cluster, &a).as_deref() == Some(TOKEN)
    });

    // A namespace relabelled to match is set up.
    let relabelled = cluster.namespace("relabelled", &[]);
    cluster.replace(&json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": relabelled, "labels": {"repoint-test": run}}}));
    eventually(&controller, "the relabelled namespace is set up", || {
        token_in(&cluster, &relabelled).as_deref() == Some(TOKEN)
    });

    // An account created later, or stripped of the entry, lists it again.
    cluster.create(&account(&b, "builder"));
    cluster.replace(&account(&a, "default"));
    eventually(&controller, "the accounts list it again", || {
        lists_secret(&cluster, &b, "builder") && lists_secret(&cluster, &a, "default")
    });

    // The source changes: every copy follows.
    cluster.replace(&source_secret(&platform, ROTATED));
    eventually(&controller, "every copy carries the rotated token", || {
        [&a, &b, &c]
            .iter()
            .all(|ns| token_in(&cluster, ns).as_deref() == Some(ROTATED))
    });

    // Never touched: unselected, excluded, the source's own namespace, and
    // a Secret someone else made (whose refusal is logged).
    assert_eq!(token_in(&cluster, &other), None);
    assert_eq!(token_in(&cluster, &skipped), None);
    assert_eq!(token_in(&cluster, &platform), None);
    assert_eq!(
        token_in(&cluster, &foreign).as_deref(),
        Some("their-own-token")
    );
    assert!(!lists_secret(&cluster, &other, "default"));
    assert!(!lists_secret(&cluster, &skipped, "default"));

    let log = controller.log();
    assert!(log.contains("was not made by repoint"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains(&doomed) && l.contains("\"level\":\"WARN\"")),
        "the deleted namespace is not an error:\n{log}"
    );
    assert!(log.contains("secret/corp-pull created"), "{log}");
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "logs are JSON lines:\n{log}"
    );
    assert_eq!(controller.stop(), 0);
    let log = std::fs::read_to_string(dir.join("controller.log")).expect("log");
    assert!(log.contains("reconciler stopped"), "{log}");
    for secret in [TOKEN, ROTATED, "their-own-token"] {
        assert!(
            !log.contains(secret),
            "a credential reached the log:\n{log}"
        );
        let encoded = repoint_credentials::base64(&dockerconfigjson(secret));
        assert!(!log.contains(&encoded), "a credential reached the log");
    }
}

#[test]
fn a_missing_source_leaves_everything_as_it_is_until_it_appears() {
    let Some(cluster) = TestCluster::start("controller-source") else {
        return;
    };
    let dir = temp_dir("controller-source");
    let run = format!("late-{}", std::process::id());
    let platform = cluster.namespace("platform", &[]);
    let a = cluster.namespace("team-a", &[("repoint-test", run.as_str())]);
    let config = config_file(
        &dir,
        &format!(
            "secretFrom: {{namespace: {platform}, name: regcred}}
reconcile: {{secretName: {SECRET}, namespaceSelector: repoint-test={run}}}
"
        ),
    );
    let controller = Controller::start(&config, cluster.kubeconfig(), &dir.join("controller.log"));
    eventually(&controller, "the missing source is reported", || {
        controller.log().contains("does not exist")
    });
    assert_eq!(token_in(&cluster, &a), None);
    cluster.create(&source_secret(&platform, TOKEN));
    eventually(&controller, "the source's arrival is copied", || {
        token_in(&cluster, &a).as_deref() == Some(TOKEN)
    });
    // Said once, when it happened; not once per namespace or retry.
    let log = controller.log();
    assert_eq!(log.matches("does not exist").count(), 1, "{log}");
}

#[test]
fn a_bad_selector_or_a_missing_section_is_an_error_at_start() {
    let Some(cluster) = TestCluster::start("controller-errors") else {
        return;
    };
    let dir = temp_dir("controller-errors");
    let config = dir.join("repoint.yaml");
    let kubeconfig = cluster.kubeconfig().to_string_lossy().into_owned();
    let run = |text: &str| {
        std::fs::write(&config, text).expect("config");
        repoint_tests::run_command(
            Path::new(env!("CARGO_BIN_EXE_repoint")),
            &[
                "controller",
                "-c",
                &config.to_string_lossy(),
                "--kubeconfig",
                &kubeconfig,
            ],
            "",
        )
    };
    let head =
        "apiVersion: repoint.dev/v1alpha1\nkind: Config\nsecretFrom: {namespace: p, name: r}\n";
    let none = run(head);
    assert_eq!(none.code, 2);
    assert!(
        none.stderr.contains("no `reconcile:` section"),
        "{}",
        none.stderr
    );
    let bad = run(&format!(
        "{head}reconcile: {{secretName: s, namespaceSelector: 'team in x'}}\n"
    ));
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("reconcile.namespaceSelector \"team in x\""),
        "{}",
        bad.stderr
    );
}

/// The objects of a YAML stream of `kind`.
fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

#[test]
fn serve_reconciles_with_exactly_the_rbac_its_manifests_grant() {
    let Some(cluster) = TestCluster::start("rbac") else {
        return;
    };
    let dir = temp_dir("controller-rbac");
    let platform = cluster.namespace("platform", &[]);
    cluster.create(&source_secret(&platform, TOKEN));
    let a = cluster.namespace("team-a", &[("pull-secrets", "yes")]);
    cluster.create(&account(&a, "builder"));
    let server_ns = cluster.namespace("repoint", &[]);
    // The example config, as shipped, with the test's source namespace.
    let example = std::fs::read_to_string(
        repoint_tests::repo_root().join("examples/keep-pull-secret/repoint.yaml"),
    )
    .expect("example");
    assert!(example.contains("secretFrom: {namespace: platform, name: regcred}"));
    let config = dir.join("repoint.yaml");
    std::fs::write(
        &config,
        example.replace(
            "{namespace: platform,",
            &format!("{{namespace: {platform},"),
        ),
    )
    .expect("config");
    let repoint = Path::new(env!("CARGO_BIN_EXE_repoint"));
    let config_arg = config.to_string_lossy().into_owned();
    let out = repoint_tests::run_command(
        repoint,
        &["webhook", "manifests", "-c", &config_arg, "-n", &server_ns],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let objects = repoint_tests::documents(&out.stdout);

    // The server runs the reconciler, under a ClusterRole that names the
    // Secret and the accounts, and a Role for the source in its namespace.
    let deployment = of_kind(&objects, "Deployment")[0];
    let server_args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        server_args
            .as_array()
            .is_some_and(|a| a.contains(&json!("--reconcile"))),
        "{server_args}"
    );
    let role = of_kind(&objects, "Role")[0];
    assert_eq!(role["metadata"]["namespace"], platform.as_str());
    assert_eq!(role["rules"][0]["resourceNames"], json!(["regcred"]));
    let tls = of_kind(&objects, "Secret")[0];
    for (field, file) in [("tls.crt", "tls.crt"), ("tls.key", "tls.key")] {
        let pem = repoint_credentials::unbase64(tls["data"][field].as_str().expect("pem"))
            .expect("base64");
        std::fs::write(dir.join(file), pem).expect("write");
    }

    // Exactly the identity and grants of the manifests, on the real
    // server: the ServiceAccount, its roles and bindings.
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ] {
        for object in of_kind(&objects, kind) {
            cluster.create(object);
        }
    }
    let account_name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .expect("the server's account");
    let token = repoint_tests::wait_for(
        "the server's account has a token",
        Duration::from_secs(60),
        || {
            cluster
                .get("v1", "ServiceAccount", Some(&server_ns), account_name)
                .and_then(|sa| sa["secrets"][0]["name"].as_str().map(String::from))
                .and_then(|secret| cluster.get("v1", "Secret", Some(&server_ns), &secret))
                .and_then(|secret| secret["data"]["token"].as_str().map(String::from))
                .and_then(|t| repoint_credentials::unbase64(&t))
        },
        String::new,
    );
    let kubeconfig = cluster
        .plane()
        .kubeconfig_with_token("repoint-server", &token);
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    if let Some(kubectl) = repoint_tests::program_or_skip("kubectl", "REPOINT_REQUIRE_KUBECTL") {
        let kubectl = |args: &[&str]| {
            let mut all = vec!["--kubeconfig", kubeconfig.as_str()];
            all.extend_from_slice(args);
            repoint_tests::run_command(&kubectl, &all, "")
        };
        let every = kubectl(&["get", "secrets", "-A"]);
        assert_ne!(every.code, 0);
        assert!(
            every.stderr.contains("cannot list resource \"secrets\""),
            "{}",
            every.stderr
        );
        let pinned = kubectl(&["get", "serviceaccount", "-n", &a, "builder"]);
        assert_eq!(pinned.code, 0, "{}", pinned.stderr);
    }

    let addr = format!("127.0.0.1:{}", repoint_tests::registry::free_port());
    let mut args: Vec<OsString> = ["serve", "--reconcile", "-c", &config_arg, "--addr", &addr]
        .map(OsString::from)
        .to_vec();
    args.extend([
        "--tls-cert".into(),
        dir.join("tls.crt").into(),
        "--tls-key".into(),
        dir.join("tls.key").into(),
        "--kubeconfig".into(),
        kubeconfig.clone().into(),
    ]);
    let server = Controller::spawn(&args, &dir.join("serve.log"));

    eventually(&server, "team-a is set up", || {
        token_in(&cluster, &a).as_deref() == Some(TOKEN)
            && lists_secret(&cluster, &a, "builder")
            && lists_secret(&cluster, &a, "default")
    });
    // A namespace made after start, by someone else.
    let b = cluster.namespace("team-b", &[("pull-secrets", "yes")]);
    eventually(&server, "the new namespace is set up", || {
        token_in(&cluster, &b).as_deref() == Some(TOKEN) && lists_secret(&cluster, &b, "default")
    });
    let log = server.log();
    assert!(!log.contains("forbidden"), "{log}");
    assert_eq!(server.stop(), 0);
}

/// Whether an account, as stored, lists the pull Secret.
fn listed(account: Option<Value>) -> bool {
    account
        .and_then(|sa| sa.get("imagePullSecrets").cloned())
        .and_then(|l| l.as_array().cloned())
        .is_some_and(|l| l.iter().any(|e| e["name"] == SECRET))
}

#[test]
fn credentials_are_the_source_when_there_is_no_secret_from() {
    let Some(cluster) = TestCluster::start("controller-credentials") else {
        return;
    };
    let dir = temp_dir("controller-credentials");
    let run = format!("creds-{}", std::process::id());
    let a = cluster.namespace("team-a", &[("repoint-test", run.as_str())]);
    std::fs::write(dir.join("token.txt"), format!("{TOKEN}\n")).expect("token");
    let config = config_file(
        &dir,
        &format!(
            "credentials:
  - {{registry: mirror.corp.example, username: robot, passwordFile: token.txt}}
reconcile: {{secretName: {SECRET}, namespaceSelector: repoint-test={run}}}
"
        ),
    );
    // Two reconcilers side by side (the webhook's two replicas): they race
    // on every write, and neither undoes the other or reports an error.
    let controller = Controller::start(&config, cluster.kubeconfig(), &dir.join("controller.log"));
    let twin = Controller::start(&config, cluster.kubeconfig(), &dir.join("twin.log"));
    eventually(
        &controller,
        "the Secret carries the configured credentials",
        || {
            token_in(&cluster, &a).as_deref() == Some(TOKEN)
                && lists_secret(&cluster, &a, "default")
        },
    );
    for running in [controller, twin] {
        let log = running.log();
        assert!(!log.contains(TOKEN));
        assert!(
            !log.contains("\"level\":\"WARN\"") && !log.contains("\"level\":\"ERROR\""),
            "{log}"
        );
        assert_eq!(running.stop(), 0);
    }
    let account = cluster
        .get("v1", "ServiceAccount", Some(&a), "default")
        .expect("account");
    assert_eq!(
        account["imagePullSecrets"],
        json!([{"name": SECRET}]),
        "listed once"
    );
}
