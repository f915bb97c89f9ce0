//! The manifests as a library: what each set becomes, and what the target
//! server's version changes. (`crates/repoint-cli/tests/admission.rs`
//! applies them to a real API server.)

use std::path::PathBuf;
use std::sync::Arc;

use repoint_config::Config;
use repoint_manifests::{Error, Manifests, Request, build};
use repoint_runtime::probe::Offline;
use repoint_runtime::{PolicySource, Runtime, RuntimeOptions};
use serde_json::Value;

const CONFIG: &str = "apiVersion: repoint.dev/v1alpha1
kind: Config
policies:
- name: mirror
  module: builtin:registry-mirror
  settings: {rules: [{match: docker.io, replace: mirror.corp/hub}]}
- name: allowed
  module: builtin:allowed-registries
  settings: {allow: [mirror.corp]}
webhook:
  timeout: 3s
  excludeNamespaces: [monitoring]
  sets:
    rewrite: {policies: [mirror]}
    check: {policies: [allowed], failurePolicy: Ignore}
";

fn manifests(kube_version: Option<(u32, u32)>, url: Option<&str>) -> Result<Manifests, Error> {
    let config = Config::parse("repoint.yaml", CONFIG.into(), PathBuf::from(".")).expect("config");
    let runtime = Arc::new(
        Runtime::new(
            RuntimeOptions {
                cache_dir: None,
                ..RuntimeOptions::default()
            },
            Arc::new(Offline),
        )
        .expect("runtime"),
    );
    let mut policies = Vec::new();
    for entry in &config.file.policies {
        let loaded = runtime
            .load(&PolicySource::parse(&entry.module, &config.base_dir))
            .expect("load");
        policies.push(
            runtime
                .configure(&entry.name, Arc::new(loaded), &entry.settings.to_string())
                .expect("configure"),
        );
    }
    let chain = runtime.chain(policies, Vec::new()).expect("chain");
    build(&Request {
        config: &config,
        config_text: CONFIG,
        chain: &chain,
        namespace: "repoint-system",
        image: "registry.example/repoint:1",
        cert_manager: false,
        days: 30,
        kube_version,
        url,
    })
}

fn of_kind<'m>(m: &'m Manifests, kind: &str) -> &'m Value {
    m.documents
        .iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn each_set_is_a_webhook_of_its_kind_with_the_servers_deadline() {
    let m = manifests(None, None).expect("manifests");
    let mutating = &of_kind(&m, "MutatingWebhookConfiguration")["webhooks"][0];
    let validating = &of_kind(&m, "ValidatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(mutating["name"], "rewrite.mutate.repoint.dev");
    assert_eq!(
        mutating["clientConfig"]["service"]["path"],
        "/mutate/rewrite"
    );
    assert_eq!(mutating["failurePolicy"], "Fail");
    assert_eq!(validating["name"], "check.validate.repoint.dev");
    assert_eq!(validating["failurePolicy"], "Ignore");
    // The server answers within webhook.timeout; the API server waits a
    // second more.
    assert_eq!(mutating["timeoutSeconds"], 4);
    let excluded = &mutating["namespaceSelector"]["matchExpressions"][0];
    assert_eq!(excluded["key"], "kubernetes.io/metadata.name");
    assert_eq!(
        excluded["values"],
        serde_json::json!(["repoint-system", "monitoring"])
    );
    assert!(m.notes.is_empty());
    // Every document is written and read back.
    let yaml = m.to_yaml().expect("yaml");
    assert_eq!(yaml.matches("\n---\n").count() + 1, m.documents.len());
}

#[test]
fn an_old_server_gets_its_api_versions_and_a_note_about_labels() {
    let m = manifests(Some((1, 20)), None).expect("manifests");
    assert_eq!(
        of_kind(&m, "PodDisruptionBudget")["apiVersion"],
        "policy/v1beta1"
    );
    let hook = &of_kind(&m, "MutatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(
        hook["namespaceSelector"]["matchExpressions"][0]["key"],
        "repoint.dev/admission"
    );
    assert_eq!(m.notes.len(), 1);
    assert!(
        m.notes[0].contains("kubectl label namespace monitoring"),
        "{:?}",
        m.notes
    );
}

#[test]
fn a_url_must_be_https_with_a_host() {
    let m = manifests(None, Some("https://10.0.0.5:8443/")).expect("manifests");
    let hook = &of_kind(&m, "MutatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(
        hook["clientConfig"]["url"],
        "https://10.0.0.5:8443/mutate/rewrite"
    );
    for bad in ["http://x", "https://"] {
        assert!(
            matches!(manifests(None, Some(bad)), Err(Error::Url { .. })),
            "{bad}"
        );
    }
}
