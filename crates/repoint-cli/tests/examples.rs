//! The flows under `examples/`, end to end through the binary, with every
//! generated Secret decoded and checked field by field.

use std::path::{Path, PathBuf};

use repoint_tests::{
    Output, corpus_files, dockerconfigjson, documents, find_object as find, objects_by_identity,
    repo_root, run_command_env,
};
use serde_json::{Value, json};

fn example(path: &str) -> String {
    repo_root()
        .join("examples")
        .join(path)
        .display()
        .to_string()
}

/// Run the binary with extra environment variables (through env(1)).
fn repoint_env(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    run_command_env(Path::new(env!("CARGO_BIN_EXE_repoint")), args, stdin, env)
}

fn count(objects: &[Value], kind: &str) -> usize {
    objects.iter().filter(|o| o["kind"] == kind).count()
}

/// Check a generated pull Secret field by field and return its decoded
/// `.dockerconfigjson`.
fn check_pull_secret(secret: &Value, namespace: &str, name: &str) -> Value {
    assert_eq!(secret["apiVersion"], "v1");
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(secret["metadata"]["name"], name);
    assert_eq!(secret["metadata"]["namespace"], namespace);
    assert_eq!(
        secret["metadata"]["labels"],
        json!({"app.kubernetes.io/managed-by": "repoint"})
    );
    assert_eq!(
        secret["data"].as_object().map(|d| d.len()),
        Some(1),
        "only .dockerconfigjson"
    );
    dockerconfigjson(secret)
}

/// One `auths` entry: username, password, and `auth` = base64(user:pass).
fn check_auth(config: &Value, registry: &str, username: &str, password: &str) {
    let auths = config["auths"].as_object().expect("auths");
    assert_eq!(
        auths.keys().collect::<Vec<_>>(),
        [registry],
        "only the requested registry"
    );
    let entry = &auths[registry];
    assert_eq!(entry["username"], username);
    assert_eq!(entry["password"], password);
    assert_eq!(
        entry["auth"],
        repoint_credentials::base64(&format!("{username}:{password}"))
    );
}

#[test]
fn postgres_cluster_from_a_private_registry() {
    let out = repoint_env(
        &[
            "run",
            "-c",
            &example("postgres/repoint.yaml"),
            &example("postgres/cluster.yaml"),
        ],
        "",
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let objects = documents(&out.stdout);
    assert_eq!(objects.len(), 2, "the cluster and its pull Secret");
    let cluster = find(&objects, "PostgresCluster", "orders", "orders-db");
    assert_eq!(
        cluster["spec"]["image"],
        "registry.corp.example/crunchy/crunchydata/crunchy-postgres:ubi8-16.2-0"
    );
    assert_eq!(
        cluster["spec"]["backups"]["pgbackrest"]["image"],
        "registry.corp.example/crunchy/crunchydata/crunchy-pgbackrest:ubi8-2.49-0"
    );
    assert_eq!(
        cluster["spec"]["imagePullSecrets"],
        json!([{"name": "crunchy-pull"}])
    );
    // Only the changed lines differ from the input.
    let input = std::fs::read_to_string(example("postgres/cluster.yaml")).expect("read");
    let changed = similar::TextDiff::from_lines(&input, &out.stdout)
        .iter_all_changes()
        .filter(|c| c.tag() == similar::ChangeTag::Delete)
        .count();
    assert_eq!(changed, 2, "the two image lines");

    let secret = find(&objects, "Secret", "orders", "crunchy-pull");
    let config = check_pull_secret(secret, "orders", "crunchy-pull");
    // From docker-config.json's `auth` (deploy:example-password-not-real).
    check_auth(
        &config,
        "registry.corp.example",
        "deploy",
        "example-password-not-real",
    );
}

#[test]
fn mirror_everything_with_the_secret_on_default_service_accounts() {
    let token = "example-cache-token-7d1e";
    let args = [
        "run",
        "-c",
        &example("mirror-everything/repoint.yaml"),
        &example("mirror-everything/workloads.yaml"),
    ];
    let out = repoint_env(&args, "", &[("CACHE_TOKEN", token)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let objects = documents(&out.stdout);

    // Every image, from every registry, under the cache with its full name.
    let images: Vec<&str> = objects
        .iter()
        .flat_map(|o| {
            let spec = o
                .pointer("/spec/template/spec")
                .or_else(|| o.pointer("/spec/jobTemplate/spec/template/spec"));
            spec.and_then(|s| s["containers"].as_array())
                .into_iter()
                .flatten()
                .map(|c| c["image"].as_str().expect("image"))
        })
        .collect();
    assert_eq!(
        images,
        [
            "cache.corp.example/docker.io/library/nginx:1.27",
            "cache.corp.example/quay.io/prometheus/nginx-exporter:v1.1.0",
            "cache.corp.example/registry.k8s.io/kubectl:v1.31.0",
            "cache.corp.example/ghcr.io/acme/reporter:2.0",
        ]
    );
    // Pods carry no pull secret of their own: the ServiceAccounts do.
    assert!(!out.stdout.contains("      imagePullSecrets"));
    let web = find(&objects, "ServiceAccount", "web", "default");
    assert_eq!(web["imagePullSecrets"], json!([{"name": "cache-pull"}]));
    assert_eq!(
        web["automountServiceAccountToken"], false,
        "the existing account is patched, not replaced"
    );
    let jobs = find(&objects, "ServiceAccount", "jobs", "default");
    assert_eq!(jobs["imagePullSecrets"], json!([{"name": "cache-pull"}]));
    assert_eq!(
        jobs["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "repoint"
    );
    assert_eq!(count(&objects, "ServiceAccount"), 2);

    assert_eq!(count(&objects, "Secret"), 2, "one per namespace");
    for namespace in ["web", "jobs"] {
        let secret = find(&objects, "Secret", namespace, "cache-pull");
        let config = check_pull_secret(secret, namespace, "cache-pull");
        check_auth(&config, "cache.corp.example", "ci-robot", token);
    }

    // Without the token: a clear error naming the variable, nothing printed.
    let out = repoint_env(&args, "", &[]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("CACHE_TOKEN"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[test]
fn copy_an_existing_pull_secret_into_the_apps_namespaces() {
    let out = repoint_env(
        &[
            "run",
            "-c",
            &example("copy-secret/repoint.yaml"),
            &example("copy-secret/app.yaml"),
        ],
        "",
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let objects = documents(&out.stdout);
    let source =
        documents(&std::fs::read_to_string(example("copy-secret/regcred.yaml")).expect("read"));
    let source_config: Value = serde_json::from_str(
        &repoint_credentials::unbase64(
            source[0]["data"][".dockerconfigjson"]
                .as_str()
                .expect("data"),
        )
        .expect("base64"),
    )
    .expect("json");

    assert_eq!(count(&objects, "Secret"), 2, "one per namespace of the app");
    for namespace in ["shop-frontend", "shop-backend"] {
        let secret = find(&objects, "Secret", namespace, "regcred");
        let config = check_pull_secret(secret, namespace, "regcred");
        assert_eq!(config, source_config, "a faithful copy");
        check_auth(
            &config,
            "registry.example.com",
            "shop-deployer",
            "example-not-a-real-password",
        );
    }
    for (kind, namespace, name) in [
        ("Deployment", "shop-frontend", "storefront"),
        ("StatefulSet", "shop-backend", "orders"),
        ("Job", "shop-backend", "migrate"),
    ] {
        let object = find(&objects, kind, namespace, name);
        assert_eq!(
            object["spec"]["template"]["spec"]["imagePullSecrets"],
            json!([{"name": "regcred"}]),
            "{kind}/{name}"
        );
    }
}

fn post_render(stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut env = env.to_vec();
    env.push(("REPOINT", env!("CARGO_BIN_EXE_repoint")));
    let script = example("helm/post-render.sh");
    run_command_env(Path::new("/bin/sh"), &[&script], stdin, &env)
}

/// Helm runs the post-renderer with the rendered chart on stdin; the
/// script must give what `repoint run` gives, leave untouched documents
/// byte for byte, and fail on a denial so Helm stops.
#[test]
fn helm_post_renderer_script() {
    let rendered = std::fs::read_to_string(example("helm/rendered-chart.yaml")).expect("read");
    let out = post_render(&rendered, &[("REPOINT_NAMESPACE", "shop")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let direct = repoint_env(
        &["run", "-c", &example("repoint.yaml"), "-n", "shop", "-"],
        &rendered,
        &[],
    );
    assert_eq!(out.stdout, direct.stdout);
    // The ServiceAccount, ConfigMap and Service documents are unchanged,
    // `# Source:` comments included.
    let untouched = rendered
        .split("# Source: shop/templates/deployment.yaml")
        .next()
        .expect("prefix");
    assert!(out.stdout.starts_with(untouched));
    let objects = documents(&out.stdout);
    let deployment = find(&objects, "Deployment", "default", "shop");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "mirror.corp.example/ghcr/acme/shop:2.4.0"
    );
    // The Secret goes to the release namespace.
    let secret = find(&objects, "Secret", "shop", "corp-registry");
    let config = check_pull_secret(secret, "shop", "corp-registry");
    let token = std::fs::read_to_string(example("mirror-token.txt")).expect("token");
    check_auth(&config, "mirror.corp.example", "robot", token.trim());

    // Without REPOINT_NAMESPACE (what Helm gives it), the Secret names no
    // namespace and lands beside the chart's objects, wherever they go.
    let unset = post_render(&rendered, &[]);
    assert_eq!(unset.code, 0, "{}", unset.stderr);
    let secret = documents(&unset.stdout)
        .into_iter()
        .find(|o| o["kind"] == "Secret")
        .expect("the pull Secret");
    assert!(secret["metadata"].get("namespace").is_none(), "{secret}");
    assert_eq!(dockerconfigjson(&secret), config);

    // A denial stops the install: non-zero exit.
    let deny = std::env::temp_dir().join(format!("repoint-helm-deny-{}.yaml", std::process::id()));
    std::fs::write(
        &deny,
        "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: allowed\n  module: builtin:allowed-registries\n  settings: {allow: [mirror.corp.example]}\n",
    )
    .expect("write");
    let out = post_render(
        &rendered,
        &[("REPOINT_CONFIG", &deny.display().to_string())],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("ghcr.io/acme/shop"), "{}", out.stderr);
}

/// The real helm: `examples/helm/chart` renders as the fixture above (so
/// the fixture is what Helm hands a post-renderer), and `helm template
/// --post-renderer` gives what `repoint run --leave-namespace-unset` gives,
/// with the pull Secret left without a namespace (Helm tells the
/// post-renderer none; it installs the Secret into the release's, as
/// `cluster::helm_releases_own_the_pull_secret_in_their_namespace` shows).
#[test]
fn helm_renders_the_chart_and_runs_the_post_renderer() {
    let Some(helm) = repoint_tests::helm() else {
        return;
    };
    let home = repoint_tests::temp_dir("helm-template-home");
    let chart = example("helm/chart");
    let helm_template = |args: &[&str]| {
        let mut all = vec!["template", "shop", &chart];
        all.extend_from_slice(args);
        repoint_tests::run_helm(&helm, &all, &home, env!("CARGO_BIN_EXE_repoint"))
    };
    let rendered = std::fs::read_to_string(example("helm/rendered-chart.yaml")).expect("read");
    let plain = helm_template(&[]);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert_eq!(plain.stdout, rendered);

    let script = example("helm/post-render.sh");
    let out = helm_template(&["-n", "team-a", "--post-renderer", &script]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let direct = repoint_env(
        &[
            "run",
            "-c",
            &example("repoint.yaml"),
            "--leave-namespace-unset",
            "-",
        ],
        &rendered,
        &[],
    );
    assert_eq!(direct.code, 0, "{}", direct.stderr);
    assert_eq!(documents(&out.stdout), documents(&direct.stdout));
    let objects = documents(&out.stdout);
    let secret = objects
        .iter()
        .find(|o| o["kind"] == "Secret")
        .expect("the pull Secret");
    assert_eq!(secret["metadata"]["name"], "corp-registry");
    assert!(
        secret["metadata"].get("namespace").is_none(),
        "no namespace: Helm places it: {secret}"
    );
    assert!(
        objects
            .iter()
            .all(|o| o["metadata"].get("namespace").is_none())
    );
}

/// ingress-nginx's static manifest is `helm template` output of its chart:
/// a real rendered chart through the post-renderer.
#[test]
fn helm_post_renderer_on_a_real_rendered_chart() {
    let path: PathBuf = corpus_files()
        .into_iter()
        .find(|p| p.to_string_lossy().contains("ingress-nginx"))
        .expect("ingress-nginx in the corpus");
    let rendered = std::fs::read_to_string(&path).expect("read");
    let config = std::env::temp_dir().join(format!("repoint-helm-k8s-{}.yaml", std::process::id()));
    std::fs::write(
        &config,
        "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: mirror\n  module: builtin:registry-mirror\n  settings: {rules: [{match: registry.k8s.io, replace: mirror.corp.example/k8s}]}\n",
    )
    .expect("write");
    let out = post_render(
        &rendered,
        &[("REPOINT_CONFIG", &config.display().to_string())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let before = objects_by_identity(&rendered);
    let after = objects_by_identity(&out.stdout);
    assert_eq!(before.len(), after.len());
    let rewritten = out
        .stdout
        .matches("mirror.corp.example/k8s/ingress-nginx/")
        .count();
    assert_eq!(
        rewritten,
        rendered.matches("registry.k8s.io/ingress-nginx/").count()
    );
    assert!(rewritten >= 3, "controller and two webhook jobs");
    // Digests stay pinned.
    assert_eq!(
        out.stdout.matches("@sha256:").count(),
        rendered.matches("@sha256:").count()
    );
}

/// The vendor example, offline: nothing can be probed, so `onUnknown: keep`
/// keeps the images; the vendor registry's image still gets the secret, in
/// the app's namespace and the additional one.
#[test]
fn private_proxy_example_offline() {
    let key = "license-key-example-3f9";
    let out = repoint_env(
        &[
            "run",
            "--offline",
            "-c",
            &example("private-proxy/repoint.yaml"),
            &example("private-proxy/app.yaml"),
        ],
        "",
        &[("VENDOR_LICENSE_KEY", key)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let objects = documents(&out.stdout);
    let app = find(&objects, "Deployment", "my-app", "my-app");
    assert_eq!(
        app["spec"]["template"]["spec"]["imagePullSecrets"],
        json!([{"name": "vendor-pull"}])
    );
    assert_eq!(
        app["spec"]["template"]["spec"]["containers"][0]["image"],
        "quay.io/vendor-private/my-app:4.2.0"
    );
    for namespace in ["my-app", "my-app-monitoring"] {
        let config = check_pull_secret(
            find(&objects, "Secret", namespace, "vendor-pull"),
            namespace,
            "vendor-pull",
        );
        check_auth(&config, "registry.vendor.example", "customer", key);
    }
    assert_eq!(out.stderr.matches("could not be asked").count(), 2);
}
