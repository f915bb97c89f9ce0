//! `repoint webhook manifests`: the objects parse, carry the settings a
//! production webhook needs, and the CA bundle verifies the generated
//! serving certificate for the Service's name.

use std::path::Path;
use std::sync::Arc;

use repoint_tests::{objects_by_identity, program_or_skip, run_command, temp_dir};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::{Value, json};

const CONFIG: &str = "apiVersion: repoint.dev/v1alpha1
kind: Config
imageFields:
  - group: postgres-operator.crunchydata.com
    kind: PostgresCluster
    images: [/spec/image]
    pullSecrets: /spec/imagePullSecrets
policies:
  - name: mirror
    module: builtin:registry-mirror
    settings: {rules: [{match: docker.io, replace: mirror.corp.example/hub}]}
  - name: allowed
    module: builtin:allowed-registries
    settings: {allow: [mirror.corp.example]}
webhook:
  sets:
    default: {policies: [mirror], failurePolicy: Fail}
    lint: {policies: [allowed], failurePolicy: Ignore}
  excludeNamespaces: [kube-system, kube-public]
  timeout: 2s
";

fn manifests(
    extra: &[&str],
) -> (
    String,
    std::collections::BTreeMap<repoint_tests::ObjectId, Value>,
) {
    let dir = temp_dir("manifests");
    let config = dir.join("repoint.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    let config = config.display().to_string();
    let mut args = vec!["webhook", "manifests", "-c", &config];
    args.extend(extra);
    let out = run_command(Path::new(env!("CARGO_BIN_EXE_repoint")), &args, "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let objects = objects_by_identity(&out.stdout);
    (out.stdout, objects)
}

fn get<'a>(
    objects: &'a std::collections::BTreeMap<repoint_tests::ObjectId, Value>,
    kind: &str,
) -> &'a Value {
    objects
        .iter()
        .find(|(id, _)| id.1 == kind)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn decode(v: &Value) -> String {
    repoint_credentials::unbase64(v.as_str().expect("a string")).expect("base64")
}

#[test]
fn everything_a_cluster_needs() {
    let (text, objects) = manifests(&[]);
    let kinds: Vec<&str> = objects.keys().map(|id| id.1.as_str()).collect();
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
    assert_eq!(get(&objects, "ConfigMap")["data"]["repoint.yaml"], CONFIG);
    // Without `reconcile:` the server reads nothing from the cluster, and
    // is granted nothing.
    for kind in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        assert!(!kinds.contains(&kind), "{kind} granted without need");
    }

    let deployment = get(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(!container["args"].to_string().contains("--reconcile"));
    // The cache outlives a container restart, beside the read-only root.
    assert!(!container["args"].to_string().contains("--no-cache"));
    assert!(
        container["env"]
            .as_array()
            .expect("env")
            .contains(&json!({"name": "XDG_CACHE_HOME", "value": "/var/cache"}))
    );
    assert!(
        container["volumeMounts"]
            .as_array()
            .expect("mounts")
            .contains(&json!({"name": "cache", "mountPath": "/var/cache/repoint"}))
    );
    assert!(pod["volumes"].as_array().expect("volumes").contains(&json!(
        {"name": "cache", "emptyDir": {"sizeLimit": "512Mi"}}
    )));
    assert_eq!(
        get(&objects, "PodDisruptionBudget")["spec"]["minAvailable"],
        1
    );

    // The mutating set at /mutate/default, the validating one at
    // /validate/lint, each with its failure policy.
    let mutating = &get(&objects, "MutatingWebhookConfiguration")["webhooks"];
    assert_eq!(mutating.as_array().map(Vec::len), Some(1));
    let hook = &mutating[0];
    assert_eq!(hook["clientConfig"]["service"]["path"], "/mutate/default");
    assert_eq!(hook["sideEffects"], "NoneOnDryRun");
    assert_eq!(hook["reinvocationPolicy"], "IfNeeded");
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["timeoutSeconds"], 3);
    assert_eq!(
        hook["namespaceSelector"]["matchExpressions"][0],
        json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn",
               "values": ["repoint", "kube-system", "kube-public"]})
    );
    let resources: Vec<&Value> = hook["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|r| r["resources"].as_array().expect("resources"))
        .collect();
    for r in ["pods", "deployments", "cronjobs", "postgresclusters"] {
        assert!(resources.iter().any(|x| *x == r), "{r} not in the rules");
    }
    let validating = &get(&objects, "ValidatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(
        validating["clientConfig"]["service"]["path"],
        "/validate/lint"
    );
    assert_eq!(validating["failurePolicy"], "Ignore");
    assert!(validating.get("reinvocationPolicy").is_none());

    // The CA bundle verifies the Secret's certificate for the Service name.
    let secret = get(&objects, "Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let bundle = decode(&hook["clientConfig"]["caBundle"]);
    assert_eq!(bundle, decode(&validating["clientConfig"]["caBundle"]));
    assert_eq!(bundle, decode(&secret["data"]["ca.crt"]));
    let serving = CertificateDer::from_pem_slice(decode(&secret["data"]["tls.crt"]).as_bytes())
        .expect("serving certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(bundle.as_bytes()).expect("CA"))
        .expect("root");
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("verifier");
    for name in ["repoint.repoint.svc", "repoint.repoint.svc.cluster.local"] {
        verifier
            .verify_server_cert(
                &serving,
                &[],
                &ServerName::try_from(name).expect("name"),
                &[],
                UnixTime::now(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(
        verifier
            .verify_server_cert(
                &serving,
                &[],
                &ServerName::try_from("evil.example.com").expect("name"),
                &[],
                UnixTime::now(),
            )
            .is_err()
    );

    // kubectl reads them (through kustomize, which needs no cluster).
    if let Some(kubectl) = program_or_skip("kubectl", "REPOINT_REQUIRE_KUBECTL") {
        let dir = temp_dir("manifests-kubectl");
        std::fs::write(dir.join("all.yaml"), &text).expect("write");
        std::fs::write(dir.join("kustomization.yaml"), "resources: [all.yaml]\n").expect("write");
        let out = run_command(&kubectl, &["kustomize", &dir.display().to_string()], "");
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(objects_by_identity(&out.stdout), objects);
    }
}

#[test]
fn cert_manager_instead_of_a_generated_certificate() {
    let (_, objects) = manifests(&["--cert-manager", "-n", "webhooks"]);
    assert!(!objects.keys().any(|id| id.1 == "Secret"));
    let certificate = get(&objects, "Certificate");
    assert_eq!(certificate["spec"]["secretName"], "repoint-tls");
    assert_eq!(certificate["spec"]["dnsNames"][0], "repoint.webhooks.svc");
    let mutating = get(&objects, "MutatingWebhookConfiguration");
    assert_eq!(
        mutating["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "webhooks/repoint"
    );
    assert!(
        mutating["webhooks"][0]["clientConfig"]
            .get("caBundle")
            .is_none()
    );
}

/// What the config reads at run time goes into the cluster as a Secret the
/// server mounts, never into the ConfigMap: a password file, a password
/// from the environment, a Secret to copy, a registry's CA.
#[test]
fn credentials_and_files_the_config_reads_go_in_a_secret() {
    const PASSWORD: &str = "pa55-from-file-never-in-configmap";
    const FROM_ENV: &str = "pa55-from-env-never-in-configmap";
    let dir = temp_dir("manifests-files");
    std::fs::write(dir.join("token"), format!("{PASSWORD}\n")).expect("token");
    std::fs::write(
        dir.join("ca.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .expect("ca");
    let source = "apiVersion: v1\nkind: Secret\nmetadata: {name: regcred}\ntype: kubernetes.io/dockerconfigjson\nstringData: {.dockerconfigjson: '{\"auths\":{}}'}\n";
    std::fs::write(dir.join("regcred.yaml"), source).expect("secret");
    let config_text = "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n  - name: secrets\n    module: builtin:pull-secrets\n    settings: {secretName: corp-pull, registries: [mirror.corp.example]}\ncredentials:\n  - {registry: mirror.corp.example, username: robot, passwordFile: token}\n  - {registry: quay.io, username: bot, passwordEnv: QUAY_TOKEN}\nsecretFrom: {file: regcred.yaml}\nregistries:\n  mirror.corp.example: {ca: ca.pem}\n";
    let config = dir.join("repoint.yaml");
    std::fs::write(&config, config_text).expect("config");
    let config = config.display().to_string();
    let repoint = Path::new(env!("CARGO_BIN_EXE_repoint"));
    let out = repoint_tests::run_command_env(
        repoint,
        &["webhook", "manifests", "-c", &config],
        "",
        &[("QUAY_TOKEN", FROM_ENV)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains(PASSWORD) && !out.stderr.contains(FROM_ENV));
    let objects = objects_by_identity(&out.stdout);
    let files = objects
        .values()
        .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == "repoint-files")
        .expect("the files Secret");
    let data = files["data"].as_object().expect("data");
    assert_eq!(
        decode(&data["credentials-0-password"]),
        format!("{PASSWORD}\n")
    );
    assert_eq!(decode(&data["credentials-1-password-env"]), FROM_ENV);
    assert_eq!(decode(&data["secret-from.yaml"]), source);
    assert!(decode(&data["registry-0-ca.pem"]).starts_with("-----BEGIN CERTIFICATE-----"));

    // The ConfigMap's config names the mounted files, holds no password,
    // and is otherwise the config as written.
    let carried = get(&objects, "ConfigMap")["data"]["repoint.yaml"]
        .as_str()
        .expect("config text")
        .to_string();
    assert!(
        !carried.contains(PASSWORD) && !carried.contains(FROM_ENV),
        "{carried}"
    );
    let expected = config_text
        .replace(
            "passwordFile: token",
            "passwordFile: /etc/repoint/files/credentials-0-password",
        )
        .replace(
            "{file: regcred.yaml}",
            "{file: /etc/repoint/files/secret-from.yaml}",
        )
        .replace("{ca: ca.pem}", "{ca: /etc/repoint/files/registry-0-ca.pem}");
    assert_eq!(carried, expected);

    let pod = &get(&objects, "Deployment")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert!(container["env"].as_array().expect("env").contains(&json!(
        {"name": "QUAY_TOKEN", "valueFrom": {"secretKeyRef": {"name": "repoint-files", "key": "credentials-1-password-env"}}}
    )));
    assert!(
        container["volumeMounts"]
            .as_array()
            .expect("mounts")
            .contains(&json!(
                {"name": "files", "mountPath": "/etc/repoint/files", "readOnly": true}
            ))
    );
    assert!(pod["volumes"].as_array().expect("volumes").contains(&json!(
        {"name": "files", "secret": {"secretName": "repoint-files"}}
    )));

    // What cannot be carried fails, naming the key, before anything is printed.
    let out = run_command(repoint, &["webhook", "manifests", "-c", &config], "");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr
            .contains("credentials[1].passwordEnv: QUAY_TOKEN is not set"),
        "{}",
        out.stderr
    );
    std::fs::remove_file(dir.join("token")).expect("remove");
    let out = repoint_tests::run_command_env(
        repoint,
        &["webhook", "manifests", "-c", &config],
        "",
        &[("QUAY_TOKEN", FROM_ENV)],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("credentials[0].passwordFile: cannot read"),
        "{}",
        out.stderr
    );
    std::fs::remove_dir_all(dir).ok();
}
