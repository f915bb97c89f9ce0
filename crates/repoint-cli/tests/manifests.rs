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
