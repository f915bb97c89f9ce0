//! Everything a cluster needs to run `repoint serve` (`repoint webhook
//! manifests`): the namespace, account, config, the files and passwords
//! the config reads (as a Secret, [`carried`]), serving certificate (made
//! here, or cert-manager's), Deployment, Service, disruption budget, the
//! reconciler's RBAC when the config has `reconcile:`, and one webhook
//! configuration entry per policy set, with the set's failure policy and
//! a `timeoutSeconds` derived from the server's own deadline. What the
//! target API server serves (`kube_version`) decides the API versions and
//! how namespaces are skipped; `crates/repoint-cli/tests/admission.rs`
//! applies the output to a real v1.20 server.
//!
//! Depends on repoint-config (the sets, timeouts, excluded namespaces,
//! `reconcile:`), repoint-runtime (whether a set's policies mutate),
//! repoint-core (writing the documents) and repoint-credentials (base64);
//! on rcgen for the self-signed certificate.

mod carried;

use std::time::Duration;

use repoint_config::{Config, ReconcileEntry, SecretFrom};
use repoint_core::document::emit::IndentStyle;
use repoint_core::webhook;
use repoint_runtime::chain::Chain;
use serde_json::{Value, json};

/// Why the manifests could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `url` is not an https URL with a host.
    #[error("--url {url:?}: {why}")]
    Url { url: String, why: &'static str },
    /// The self-signed certificate could not be made.
    #[error("{what}")]
    Certificate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    /// A document would not read back as itself.
    #[error("writing the manifests")]
    Emit(#[source] repoint_core::document::EmitError),
    /// A file or variable the config names could not be carried into the
    /// cluster.
    #[error("{key}: {why}")]
    Carried { key: String, why: String },
    /// The config's text could not be rewritten to name the carried files.
    #[error("rewriting the config for the ConfigMap: {0}")]
    Config(String),
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// What to make manifests for.
#[derive(Debug)]
pub struct Request<'a> {
    /// The config, and its text as the ConfigMap carries it.
    pub config: &'a Config,
    pub config_text: &'a str,
    /// The config's chain (a set is mutating if any policy in it mutates).
    pub chain: &'a Chain,
    /// Namespace the server runs in (never evaluated itself).
    pub namespace: &'a str,
    /// The server's container image.
    pub image: &'a str,
    /// cert-manager issues the certificate and injects the CA bundle.
    pub cert_manager: bool,
    /// Days the generated certificate is valid.
    pub days: u32,
    /// The target server's (major, minor); `None`: the newest behaviour.
    pub kube_version: Option<(u32, u32)>,
    /// Call the server at this https URL instead of through its Service.
    pub url: Option<&'a str>,
}

/// The manifests, and notes for whoever applies them.
#[derive(Debug)]
pub struct Manifests {
    pub documents: Vec<Value>,
    /// Things to do by hand (labelling namespaces on old servers).
    pub notes: Vec<String>,
}

impl Manifests {
    /// One YAML stream for `kubectl apply -f -`, each document read back
    /// and checked before it is written.
    pub fn to_yaml(&self) -> Result<String> {
        let mut out = String::new();
        for doc in &self.documents {
            out.push_str("---\n");
            out.push_str(
                &repoint_core::document::new_document(doc, IndentStyle::default())
                    .map_err(Error::Emit)?,
            );
        }
        Ok(out)
    }
}

const NAME: &str = "repoint";
const LABELS: &str = "app.kubernetes.io/name";
/// The server's `XDG_CACHE_HOME`, where its cache is
/// ([`repoint_runtime::cache_dir_in`]).
const CACHE_HOME: &str = "/var/cache";
/// Room for the compiled policies and pulled artifacts of a few configs
/// (a compiled interpreter-carrying policy is tens of MiB); past it the
/// kubelet evicts the pod.
const CACHE_SIZE_LIMIT: &str = "512Mi";

fn labels() -> Value {
    json!({LABELS: NAME, "app.kubernetes.io/managed-by": NAME})
}

/// A self-signed CA and a serving certificate for the Service's names.
struct Serving {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

/// What the target API server serves, as far as the manifests care.
#[derive(Debug, Clone, Copy)]
struct Target {
    /// `kubernetes.io/metadata.name` on every namespace (v1.21 and later).
    namespace_name_label: bool,
    /// `policy/v1` PodDisruptionBudget and `batch/v1` CronJob (v1.21).
    v1_disruption_budgets_and_cronjobs: bool,
}

impl Target {
    fn of(version: Option<(u32, u32)>) -> Self {
        let since_1_21 = version.is_none_or(|v| v >= (1, 21));
        Self {
            namespace_name_label: since_1_21,
            v1_disruption_budgets_and_cronjobs: since_1_21,
        }
    }
}

/// The namespace label the webhooks skip on servers older than v1.21,
/// which do not label namespaces with their names.
const SKIP_LABEL: (&str, &str) = ("repoint.dev/admission", "skip");

fn self_signed(namespace: &str, url_host: Option<&str>, days: u32) -> Result<Serving> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let now = std::time::SystemTime::now();
    let until = now + Duration::from_secs(u64::from(days) * 86_400);
    let certificate = |what| move |source| Error::Certificate { what, source };
    let ca_key = KeyPair::generate().map_err(certificate("generating the CA key"))?;
    let mut ca =
        CertificateParams::new(Vec::<String>::new()).map_err(certificate("CA parameters"))?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, format!("{NAME} webhook CA"));
    ca.not_before = now.into();
    ca.not_after = until.into();
    let ca_cert = ca
        .self_signed(&ca_key)
        .map_err(certificate("signing the CA"))?;
    let key = KeyPair::generate().map_err(certificate("generating the serving key"))?;
    let mut names = vec![
        format!("{NAME}.{namespace}.svc"),
        format!("{NAME}.{namespace}.svc.cluster.local"),
        format!("{NAME}.{namespace}"),
    ];
    // rcgen makes an IP address SAN of a name that parses as one.
    names.extend(url_host.map(String::from));
    let mut serving =
        CertificateParams::new(names.clone()).map_err(certificate("certificate parameters"))?;
    serving
        .distinguished_name
        .push(DnType::CommonName, names[0].clone());
    serving.not_before = now.into();
    serving.not_after = until.into();
    let cert = serving
        .signed_by(&key, &ca_cert, &ca_key)
        .map_err(certificate("signing the serving certificate"))?;
    Ok(Serving {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Admission rules: the workload kinds (and the containers `kubectl debug`
/// adds to a running Pod), and the custom resources the config names in
/// `imageFields`. `matchPolicy: Equivalent` sends other served versions
/// of a kind too; batch/v1beta1 is named for servers where CronJob has no
/// v1 to be equivalent to.
fn rules(config: &Config, target: Target) -> Vec<Value> {
    let ops = json!(["CREATE", "UPDATE"]);
    let batch = if target.v1_disruption_budgets_and_cronjobs {
        json!(["v1"])
    } else {
        json!(["v1", "v1beta1"])
    };
    let mut rules = vec![
        json!({"operations": ops, "apiGroups": [""], "apiVersions": ["v1"],
               "resources": ["pods", "pods/ephemeralcontainers", "replicationcontrollers", "podtemplates"],
               "scope": "Namespaced"}),
        json!({"operations": ops, "apiGroups": ["apps"], "apiVersions": ["v1"],
               "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"], "scope": "Namespaced"}),
        json!({"operations": ops, "apiGroups": ["batch"], "apiVersions": batch,
               "resources": ["jobs", "cronjobs"], "scope": "Namespaced"}),
    ];
    // An entry for a built-in workload kind only adds image fields: the
    // rules above already cover it.
    let custom = config
        .file
        .image_fields
        .iter()
        .filter(|f| repoint_core::sites::pod_spec_path_in_group(&f.group, &f.kind).is_none());
    for f in custom {
        rules.push(json!({
            "operations": ops,
            "apiGroups": [f.group],
            "apiVersions": ["*"],
            // Kubernetes' plural of a kind, as CRDs almost always spell it.
            "resources": [format!("{}s", f.kind.to_lowercase())],
            "scope": "*",
        }));
    }
    rules
}

/// What the reconciler of `serve --reconcile` needs, and no more: the
/// Secret and the accounts it keeps are granted by name (its list and
/// watch requests pin the name with a field selector, which is what lets
/// RBAC grant them by `resourceNames`); only `create` cannot be limited
/// by name. A source Secret in the cluster is readable in its namespace
/// only.
fn reconciler_rbac(config: &Config, reconcile: &ReconcileEntry, ns: &str) -> Vec<Value> {
    let accounts = reconcile.accounts();
    let by_name = ["get", "list", "watch", "patch"];
    let mut rules = vec![
        json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}),
        json!({"apiGroups": [""], "resources": ["secrets"],
               "resourceNames": [reconcile.secret_name], "verbs": by_name}),
        json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}),
        json!({"apiGroups": [""], "resources": ["serviceaccounts"],
               "resourceNames": accounts, "verbs": by_name}),
    ];
    if accounts.iter().any(|a| a == "default") {
        rules.push(
            json!({"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["create"]}),
        );
    }
    let role_name = format!("{NAME}-reconciler");
    let subject = json!([{"kind": "ServiceAccount", "name": NAME, "namespace": ns}]);
    let mut docs = vec![
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": role_name, "labels": labels()}, "rules": rules}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": role_name, "labels": labels()},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
               "subjects": subject}),
    ];
    if let Some(SecretFrom {
        namespace: Some(source_ns),
        name: Some(source),
        ..
    }) = &config.file.secret_from
    {
        let name = format!("{NAME}-secret-source");
        docs.push(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": source_ns, "labels": labels()},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [source],
                       "verbs": ["get", "list", "watch"]}]}),
        );
        docs.push(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": source_ns, "labels": labels()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": subject}),
        );
    }
    docs
}

/// The host of an `https://HOST[:PORT][/PATH]` URL (an IPv6 address
/// without its brackets).
fn url_host(url: &str) -> Result<String> {
    let bad = |why| Error::Url {
        url: url.to_string(),
        why,
    };
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| bad("the API server calls webhooks over https"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(bad("names no host"));
    }
    Ok(host.to_string())
}

/// The manifests `request` asks for.
pub fn build(request: &Request<'_>) -> Result<Manifests> {
    let Request {
        config,
        config_text,
        chain,
        namespace: ns,
        image,
        cert_manager,
        days,
        kube_version,
        url,
    } = *request;
    let mut notes = Vec::new();
    let target = Target::of(kube_version);
    let url_host = match url {
        Some(url) => Some(url_host(url)?),
        None => None,
    };
    let timeout = config.webhook_timeout();
    let excluded = config.webhook_excluded_namespaces(ns);

    let mut namespace_labels = labels();
    if !target.namespace_name_label {
        namespace_labels[SKIP_LABEL.0] = SKIP_LABEL.1.into();
        let others: Vec<&String> = excluded.iter().filter(|e| *e != ns).collect();
        if !others.is_empty() {
            notes.push(format!(
                "servers before v1.21 do not label namespaces with their names; label the other excluded namespaces for the webhooks to skip them: kubectl label namespace {} {}={}",
                others
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                SKIP_LABEL.0,
                SKIP_LABEL.1
            ));
        }
    }
    let carried = carried::Carried::of(config)?;
    notes.extend(carried.notes.iter().cloned());
    let mut docs = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": namespace_labels}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": NAME, "namespace": ns, "labels": labels()}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": NAME, "namespace": ns, "labels": labels()},
               "data": {"repoint.yaml": carried.config_text(config_text)?}}),
    ];
    let secret_name = format!("{NAME}-tls");
    // The root filesystem is read-only; the cache (compiled policies and
    // pulled `oci://` artifacts) lives in an emptyDir, which outlives a
    // container restart but not the pod, so a restarted server is ready in
    // milliseconds instead of compiling and pulling again. Only this pod
    // writes it, and pulled blobs are checked against their digests on
    // every read.
    let mut volumes = vec![
        json!({"name": "config", "configMap": {"name": NAME}}),
        json!({"name": "tls", "secret": {"secretName": secret_name}}),
        json!({"name": "cache", "emptyDir": {"sizeLimit": CACHE_SIZE_LIMIT}}),
    ];
    let mut mounts = vec![
        json!({"name": "config", "mountPath": "/etc/repoint", "readOnly": true}),
        json!({"name": "tls", "mountPath": "/etc/repoint/tls", "readOnly": true}),
        json!({"name": "cache",
               "mountPath": repoint_runtime::cache_dir_in(std::path::Path::new(CACHE_HOME))}),
    ];
    if !carried.data.is_empty() {
        let data: serde_json::Map<String, Value> = carried
            .data
            .iter()
            .map(|(k, v)| (k.clone(), repoint_credentials::base64(v).into()))
            .collect();
        docs.push(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": carried::SECRET, "namespace": ns, "labels": labels()},
            "type": "Opaque", "data": data}));
        volumes.push(json!({"name": "files", "secret": {"secretName": carried::SECRET}}));
        mounts.push(json!({"name": "files", "mountPath": carried::MOUNT, "readOnly": true}));
    }
    let mut env = vec![
        json!({"name": "POD_NAMESPACE",
               "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}),
        json!({"name": "XDG_CACHE_HOME", "value": CACHE_HOME}),
    ];
    env.extend(carried.env.iter().cloned());
    // Either the CA bundle goes into the webhook configurations, or
    // cert-manager injects it (annotation on them).
    let mut ca_bundle = None;
    let mut ca_injection = None;
    if cert_manager {
        docs.push(json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
            "metadata": {"name": NAME, "namespace": ns, "labels": labels()},
            "spec": {"selfSigned": {}}}));
        docs.push(
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": NAME, "namespace": ns, "labels": labels()},
            "spec": {
                "secretName": secret_name,
                "dnsNames": [format!("{NAME}.{ns}.svc"), format!("{NAME}.{ns}.svc.cluster.local")],
                "issuerRef": {"name": NAME, "kind": "Issuer"},
            }}),
        );
        ca_injection = Some(json!({"cert-manager.io/inject-ca-from": format!("{ns}/{NAME}")}));
    } else {
        let serving = self_signed(ns, url_host.as_deref(), days)?;
        docs.push(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": secret_name, "namespace": ns, "labels": labels()},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": repoint_credentials::base64(&serving.cert_pem),
            "tls.key": repoint_credentials::base64(&serving.key_pem),
            "ca.crt": repoint_credentials::base64(&serving.ca_pem),
        }}));
        ca_bundle = Some(repoint_credentials::base64(&serving.ca_pem));
    }
    let mut server_args = vec![
        "serve",
        "-c",
        "/etc/repoint/repoint.yaml",
        "--addr",
        "0.0.0.0:8443",
        "--metrics-addr",
        "0.0.0.0:9090",
        "--tls-cert",
        "/etc/repoint/tls/tls.crt",
        "--tls-key",
        "/etc/repoint/tls/tls.key",
    ];
    // The server's bounds, written out so they can be read and changed in
    // the Deployment (the defaults of `repoint serve`).
    let bounds = [
        (
            "--max-connections",
            webhook::DEFAULT_MAX_CONNECTIONS.to_string(),
        ),
        (
            "--header-timeout",
            format!("{}s", webhook::DEFAULT_HEADER_TIMEOUT.as_secs()),
        ),
        (
            "--body-timeout",
            format!("{}s", webhook::DEFAULT_BODY_TIMEOUT.as_secs()),
        ),
        (
            "--body-budget",
            format!("{}Mi", webhook::DEFAULT_BODY_BUDGET >> 20),
        ),
    ];
    for (flag, value) in &bounds {
        server_args.push(flag);
        server_args.push(value);
    }
    if let Some(reconcile) = &config.file.reconcile {
        server_args.push("--reconcile");
        docs.extend(reconciler_rbac(config, reconcile, ns));
    }
    let probe = |path: &str| {
        json!({"httpGet": {"path": path, "port": "https", "scheme": "HTTPS"},
                                     "periodSeconds": 5, "timeoutSeconds": 2})
    };
    docs.push(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": ns, "labels": labels()},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {LABELS: NAME}},
            "template": {
                "metadata": {"labels": labels()},
                "spec": {
                    "serviceAccountName": NAME,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "server",
                        "image": image,
                        "args": server_args,
                        "env": env,
                        "ports": [{"name": "https", "containerPort": 8443},
                                  {"name": "metrics", "containerPort": 9090}],
                        "readinessProbe": probe("/readyz"),
                        "livenessProbe": probe("/healthz"),
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                      "limits": {"memory": "256Mi"}},
                        "securityContext": {"readOnlyRootFilesystem": true,
                                            "allowPrivilegeEscalation": false,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    }));
    docs.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": ns, "labels": labels()},
        "spec": {"selector": {LABELS: NAME}, "ports": [
            {"name": "https", "port": 443, "targetPort": "https"},
            {"name": "metrics", "port": 9090, "targetPort": "metrics"},
        ]},
    }));
    docs.push(json!({
        "apiVersion": if target.v1_disruption_budgets_and_cronjobs { "policy/v1" } else { "policy/v1beta1" },
        "kind": "PodDisruptionBudget",
        "metadata": {"name": NAME, "namespace": ns, "labels": labels()},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {LABELS: NAME}}},
    }));

    let mut mutating = Vec::new();
    let mut validating = Vec::new();
    for (set, policies, failure_policy) in config.webhook_sets() {
        let mutates = chain
            .policies()
            .iter()
            .filter(|p| policies.contains(&p.name.to_string()))
            .any(|p| p.loaded.info.mutating);
        let path = format!("/{}/{set}", if mutates { "mutate" } else { "validate" });
        let mut client = match url {
            Some(url) => json!({"url": format!("{}{path}", url.trim_end_matches('/'))}),
            None => json!({"service": {"name": NAME, "namespace": ns, "path": path, "port": 443}}),
        };
        if let Some(bundle) = &ca_bundle {
            client["caBundle"] = bundle.clone().into();
        }
        let mut hook = json!({
            "name": format!("{set}.{}.repoint.dev", if mutates { "mutate" } else { "validate" }),
            "admissionReviewVersions": ["v1"],
            "clientConfig": client,
            "sideEffects": "NoneOnDryRun",
            "failurePolicy": failure_policy.as_str(),
            "matchPolicy": "Equivalent",
            // The server answers within its own timeout; a second more for
            // the network (the API server allows 1 to 30).
            "timeoutSeconds": (timeout.as_secs() + 1).clamp(1, 30),
            "namespaceSelector": if target.namespace_name_label {
                json!({"matchExpressions": [{
                    "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": excluded,
                }]})
            } else {
                json!({"matchExpressions": [{
                    "key": SKIP_LABEL.0, "operator": "NotIn", "values": [SKIP_LABEL.1],
                }]})
            },
            "rules": rules(config, target),
        });
        if mutates {
            hook["reinvocationPolicy"] = "IfNeeded".into();
            mutating.push(hook);
        } else {
            validating.push(hook);
        }
    }
    for (kind, hooks) in [
        ("MutatingWebhookConfiguration", mutating),
        ("ValidatingWebhookConfiguration", validating),
    ] {
        if hooks.is_empty() {
            continue;
        }
        let mut metadata = json!({"name": NAME, "labels": labels()});
        if let Some(annotations) = &ca_injection {
            metadata["annotations"] = annotations.clone();
        }
        docs.push(json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
            "metadata": metadata,
            "webhooks": hooks,
        }));
    }
    Ok(Manifests {
        documents: docs,
        notes,
    })
}
