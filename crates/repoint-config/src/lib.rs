//! The repoint config file. Depends on repoint-core (image references, the
//! probe settings and webhook defaults it fills in) and
//! repoint-credentials, and on no network stack.
//!
//! ```yaml
//! apiVersion: repoint.dev/v1alpha1
//! kind: Config
//! policies:                 # evaluated in this order
//!   - name: mirror          # unique; used in reports
//!     module: builtin:registry-mirror   # or a path to a .wasm, relative to this file
//!     settings: {rules: [{match: quay.io, replace: mirror.corp.example/quay}]}
//! imageFields:              # images in custom resources
//!   - group: postgres-operator.crunchydata.com
//!     kind: PostgresCluster
//!     images: [/spec/image, /spec/backups/pgbackrest/image]
//!     pullSecrets: /spec/imagePullSecrets
//!   - group: apps            # and further images of built-in kinds
//!     kind: Deployment
//!     env: [RELATED_IMAGE_*]
//! limits: {timeout: 1s, memory: 64Mi}
//! ```
//!
//! The file is read with repoint-core's document layer, so every error
//! names the file, the line and the key: unknown keys, wrong types, bad
//! durations and sizes, duplicate policy names. A policy rejecting its
//! settings is located the same way by [`Config::locate`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use repoint_core::sites::ImageFields;
use repoint_core::{Limits, Stream};
use serde::Deserialize;
use serde_json::Value;

pub use repoint_core::webhook::{DEFAULT_WEBHOOK_EXCLUDED, DEFAULT_WEBHOOK_TIMEOUT};

/// The `apiVersion` this build reads.
pub const API_VERSION: &str = "repoint.dev/v1alpha1";

/// A config error, with where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error(transparent)]
    Syntax(#[from] repoint_core::DocumentError),
    /// A key or value is wrong.
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// Dotted path of the key (`policies[0].settings`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// One policy in the chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// Unique name, used in reports.
    pub name: String,
    /// `builtin:NAME` or a path to a `.wasm` component.
    pub module: String,
    /// Settings handed to the policy's `configure`, as JSON.
    #[serde(default = "empty_object")]
    pub settings: Value,
    /// The signature an `oci://` module must carry (over the config-wide
    /// `verify:`).
    #[serde(default)]
    pub verify: Option<VerifyEntry>,
}

/// Signatures a pulled policy must carry: cosign key-based signatures
/// (a `cosign.pub` PEM per key); one key verifying is enough.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VerifyEntry {
    /// Public key files (relative to the config's directory).
    pub keys: Vec<String>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Evaluation limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsEntry {
    /// Deadline of one evaluation (`1s`, `500ms`).
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    /// Memory cap of one evaluation (`64Mi`, `128M`, bytes).
    #[serde(default, deserialize_with = "size")]
    pub memory: Option<usize>,
    /// Largest policy module file to read (`128Mi`).
    #[serde(default, deserialize_with = "size")]
    pub module_size: Option<usize>,
}

/// One `credentials:` entry: a registry and exactly one source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialEntry {
    /// The registry (normalized the way docker does).
    pub registry: String,
    /// A docker config.json path, or `default`.
    #[serde(default)]
    pub docker_config: Option<String>,
    /// User name, with `passwordEnv` or `passwordFile`.
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password.
    #[serde(default)]
    pub password_file: Option<String>,
    /// A `kubernetes.io/dockerconfigjson` Secret manifest.
    #[serde(default)]
    pub secret_file: Option<String>,
}

/// How to reach one registry, for probes (`registries.<name>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    /// Where probes for this name go: `host[:port]` or an http(s) URL
    /// (`mirror` is another name for it, for air-gapped setups).
    #[serde(default, alias = "mirror")]
    pub endpoint: Option<String>,
    /// An extra trusted CA file (PEM), relative to the config.
    #[serde(default)]
    pub ca: Option<String>,
    /// Plain http, or TLS without verification.
    #[serde(default)]
    pub insecure: bool,
}

/// Bounds of registry probes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProbeEntry {
    /// Deadline of one probe (default 3s).
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    /// Probes in flight at once (default 8).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// How long `repoint serve` reuses an answer (default 5m); a run asks
    /// about each image once.
    #[serde(default, deserialize_with = "duration")]
    pub cache_ttl: Option<Duration>,
}

pub use repoint_core::webhook::FailurePolicy;

/// One policy set served at `/mutate/{name}` and `/validate/{name}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicySetEntry {
    /// Names of policies from `policies:`, in order.
    pub policies: Vec<String>,
    /// `Fail` (default) or `Ignore`.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
}

/// The admission webhook (`repoint serve`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookEntry {
    /// Policy sets by name; absent: one set `default` with every policy.
    #[serde(default)]
    pub sets: Option<BTreeMap<String, PolicySetEntry>>,
    /// Namespaces whose requests are allowed untouched (default:
    /// `kube-system`, plus the server's own, given on the command line).
    #[serde(default)]
    pub exclude_namespaces: Option<Vec<String>>,
    /// Answer within this, whatever happens (default 2s); a policy still
    /// running then is treated as failed.
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
}

/// What to do when a requested registry has no credentials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingCredentials {
    /// Fail the run (default).
    #[default]
    Error,
    /// Warn and leave that registry out of the Secret.
    Warn,
}

/// Where to copy an existing pull secret from: a manifest file, or (for
/// `audit`, `apply` and `controller`) a Secret in the cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFrom {
    /// A Secret manifest file, relative to the config.
    #[serde(default)]
    pub file: Option<String>,
    /// The namespace of a Secret in the cluster.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The name of a Secret in the cluster.
    #[serde(default)]
    pub name: Option<String>,
}

/// Keeping a pull Secret present in namespaces (`repoint controller`,
/// `repoint serve --reconcile`). Its contents come from `secretFrom` (a
/// Secret in the cluster is followed as it changes) or `credentials`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReconcileEntry {
    /// The Secret's name in each namespace.
    pub secret_name: String,
    /// Registries the Secret must carry (default: every `credentials:`
    /// registry, or whatever `secretFrom` carries).
    #[serde(default)]
    pub registries: Vec<String>,
    /// Only namespaces whose labels match this selector, in kubectl's
    /// syntax (`team=payments,env in (prod,staging)`); absent: every one.
    #[serde(default)]
    pub namespace_selector: Option<String>,
    /// Namespaces never touched (default: `kube-system`, `kube-public`,
    /// `kube-node-lease`).
    #[serde(default)]
    pub exclude_namespaces: Option<Vec<String>>,
    /// ServiceAccounts that must list the Secret (default: `default`).
    /// `default` is created if missing; others are patched where they exist.
    #[serde(default)]
    pub service_accounts: Option<Vec<String>>,
    /// Check every namespace again this often, whatever the watches say
    /// (default 10m).
    #[serde(default, deserialize_with = "duration")]
    pub resync: Option<Duration>,
}

impl ReconcileEntry {
    /// The accounts that list the Secret: as configured, or `default`.
    pub fn accounts(&self) -> Vec<String> {
        self.service_accounts
            .clone()
            .unwrap_or_else(|| vec!["default".into()])
    }
}

/// The config file's contents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigFile {
    /// Must be [`API_VERSION`].
    pub api_version: String,
    /// Must be `Config`.
    pub kind: String,
    /// Name and annotations: read by kustomize when the config is the
    /// `functionConfig` of `repoint fn`; repoint ignores it.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// The chain, in order.
    #[serde(default)]
    pub policies: Vec<PolicyEntry>,
    /// Custom-resource image and pull-secret locations.
    #[serde(default)]
    pub image_fields: Vec<ImageFields>,
    /// Evaluation limits.
    #[serde(default)]
    pub limits: Option<LimitsEntry>,
    /// Registry credentials for the pull Secrets repoint generates. Never
    /// passed to a policy.
    #[serde(default)]
    pub credentials: Vec<CredentialEntry>,
    /// `error` (default) or `warn`.
    #[serde(default)]
    pub missing_credentials: MissingCredentials,
    /// Copy this existing pull secret instead of building one from
    /// `credentials`.
    #[serde(default)]
    pub secret_from: Option<SecretFrom>,
    /// Per registry name (as images spell it): where and how to probe it.
    #[serde(default)]
    pub registries: BTreeMap<String, RegistryEntry>,
    /// Answer every probe `unknown` without touching the network.
    #[serde(default)]
    pub offline: bool,
    /// The signature every `oci://` policy must carry, unless its own
    /// `verify:` says otherwise.
    #[serde(default)]
    pub verify: Option<VerifyEntry>,
    /// Bounds of registry probes.
    #[serde(default)]
    pub probe: Option<ProbeEntry>,
    /// The admission webhook.
    #[serde(default)]
    pub webhook: Option<WebhookEntry>,
    /// Pull secrets kept in place by the reconciler.
    #[serde(default)]
    pub reconcile: Option<ReconcileEntry>,
}

/// A loaded config: its contents and its source, for locating errors.
#[derive(Debug, Clone)]
pub struct Config {
    /// The contents.
    pub file: ConfigFile,
    /// The directory relative module paths start from.
    pub base_dir: PathBuf,
    source: Stream,
}

/// Where a deserialization error is: the key as dotted text
/// (`policies[0].settings`) and as a JSON Pointer (`/policies/0/settings`).
pub fn key_path(path: &serde_path_to_error::Path) -> (String, String) {
    use serde_path_to_error::Segment;
    let mut dotted = String::new();
    let mut pointer = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => {
                dotted.push_str(&format!("[{index}]"));
                pointer.push_str(&format!("/{index}"));
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !dotted.is_empty() {
                    dotted.push('.');
                }
                dotted.push_str(key);
                pointer.push('/');
                pointer.push_str(&repoint_core::pointer::escape(key));
            }
            Segment::Unknown => {}
        }
    }
    (dotted, pointer)
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&path.display().to_string(), text, base_dir)
    }

    /// A config with no policies, registries or credentials: what reads an
    /// `oci://` reference outside any config (`policy inspect` without
    /// `-c`, a suite's `policy:`) goes by.
    pub fn empty(base_dir: PathBuf) -> Self {
        Self::parse(
            "(no config)",
            "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies: []\n".into(),
            base_dir,
        )
        .expect("the empty config is valid")
    }

    /// Parse config text; `name` is used in errors.
    pub fn parse(name: &str, text: String, base_dir: PathBuf) -> Result<Self, ConfigError> {
        let source = Stream::parse(name, text, Limits::default())?;
        let value = match source.documents() {
            [doc] => doc.value.clone(),
            docs => {
                return Err(ConfigError::Invalid {
                    file: name.to_string(),
                    line: 1,
                    key: "(file)".into(),
                    message: format!("expected one YAML document, found {}", docs.len()),
                });
            }
        };
        let mut config = Self {
            file: ConfigFile {
                api_version: String::new(),
                kind: String::new(),
                metadata: None,
                policies: vec![],
                image_fields: vec![],
                limits: None,
                credentials: vec![],
                missing_credentials: MissingCredentials::Error,
                secret_from: None,
                registries: BTreeMap::new(),
                offline: false,
                verify: None,
                probe: None,
                webhook: None,
                reconcile: None,
            },
            base_dir,
            source,
        };
        config.file = serde_path_to_error::deserialize(value).map_err(|e| {
            let (dotted, pointer) = key_path(e.path());
            let inner = e.into_inner().to_string();
            config.invalid(
                &pointer,
                if dotted.is_empty() {
                    "(top level)"
                } else {
                    &dotted
                },
                inner,
            )
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.file.api_version != API_VERSION {
            return Err(self.invalid(
                "/apiVersion",
                "apiVersion",
                format!("expected {API_VERSION}, found {:?}", self.file.api_version),
            ));
        }
        if self.file.kind != "Config" {
            return Err(self.invalid(
                "/kind",
                "kind",
                format!("expected Config, found {:?}", self.file.kind),
            ));
        }
        for (i, p) in self.file.policies.iter().enumerate() {
            if p.name.is_empty() {
                return Err(self.invalid(
                    &format!("/policies/{i}/name"),
                    &format!("policies[{i}].name"),
                    "must not be empty".into(),
                ));
            }
            if let Some(j) = self.file.policies[..i]
                .iter()
                .position(|q| q.name == p.name)
            {
                return Err(self.invalid(
                    &format!("/policies/{i}/name"),
                    &format!("policies[{i}].name"),
                    format!(
                        "{:?} is already the name of policies[{j}]; names must be unique",
                        p.name
                    ),
                ));
            }
        }
        for (i, p) in self.file.policies.iter().enumerate() {
            let Some(verify) = &p.verify else { continue };
            if !p.module.starts_with("oci://") {
                return Err(self.invalid(
                    &format!("/policies/{i}/verify"),
                    &format!("policies[{i}].verify"),
                    "only an oci:// module carries a signature to verify".into(),
                ));
            }
            if verify.keys.is_empty() {
                return Err(self.invalid(
                    &format!("/policies/{i}/verify/keys"),
                    &format!("policies[{i}].verify.keys"),
                    "name at least one public key".into(),
                ));
            }
        }
        if self.file.verify.as_ref().is_some_and(|v| v.keys.is_empty()) {
            return Err(self.invalid(
                "/verify/keys",
                "verify.keys",
                "name at least one public key".into(),
            ));
        }
        if let Some(sets) = self.file.webhook.as_ref().and_then(|w| w.sets.as_ref()) {
            for (set, entry) in sets {
                let valid_name = !set.is_empty()
                    && set
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !valid_name {
                    return Err(self.invalid(
                        &format!("/webhook/sets/{set}"),
                        &format!("webhook.sets.{set}"),
                        "a set name is a URL path segment: lower-case letters, digits and `-`"
                            .into(),
                    ));
                }
                for (i, name) in entry.policies.iter().enumerate() {
                    if !self.file.policies.iter().any(|p| &p.name == name) {
                        return Err(self.invalid(
                            &format!("/webhook/sets/{set}/policies/{i}"),
                            &format!("webhook.sets.{set}.policies[{i}]"),
                            format!("no policy named {name:?} in `policies:`"),
                        ));
                    }
                }
            }
        }
        if let Some(from) = &self.file.secret_from {
            let in_cluster = from.namespace.is_some() || from.name.is_some();
            let complete = from.namespace.is_some() && from.name.is_some();
            if from.file.is_some() == in_cluster || (in_cluster && !complete) {
                return Err(self.invalid(
                    "/secretFrom",
                    "secretFrom",
                    "give either `file` (a Secret manifest) or both `namespace` and `name` (a Secret in the cluster)".into(),
                ));
            }
        }
        if let Some(r) = &self.file.reconcile {
            self.check_reconcile(r)?;
        }
        for (i, f) in self.file.image_fields.iter().enumerate() {
            let invalid = |message: String| {
                self.invalid(
                    &format!("/imageFields/{i}"),
                    &format!("imageFields[{i}]"),
                    message,
                )
            };
            match repoint_core::sites::pod_spec_path_in_group(&f.group, &f.kind) {
                Some(spec) if f.pull_secrets.is_some() => {
                    return Err(invalid(format!(
                        "{} keeps its pull secrets in the pod spec ({spec}/imagePullSecrets); `pullSecrets` is for custom resources",
                        f.kind
                    )));
                }
                None if !f.env.is_empty() => {
                    return Err(invalid(format!(
                        "`env` names containers' environment variables, which only built-in workload kinds (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob...) have; {}/{} is not one: give its image fields in `images`",
                        if f.group.is_empty() { "core" } else { &f.group },
                        f.kind
                    )));
                }
                _ => {}
            }
            for (j, ptr) in f.images.iter().chain(&f.pull_secrets).enumerate() {
                if !ptr.starts_with('/') {
                    return Err(invalid(format!(
                        "{ptr:?} (entry {j}) is not a JSON Pointer; it must start with `/`"
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_reconcile(&self, r: &ReconcileEntry) -> Result<(), ConfigError> {
        // A DNS-1123 subdomain, as the API server requires of a Secret's
        // name and a ServiceAccount's.
        let valid_name = |n: &str| {
            !n.is_empty()
                && n.len() <= 253
                && n.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                })
        };
        if !valid_name(&r.secret_name) {
            return Err(self.invalid(
                "/reconcile/secretName",
                "reconcile.secretName",
                format!(
                    "{:?} is not a valid Secret name (lower-case letters, digits, `-` and `.`)",
                    r.secret_name
                ),
            ));
        }
        for (i, account) in r.service_accounts.iter().flatten().enumerate() {
            if !valid_name(account) {
                return Err(self.invalid(
                    &format!("/reconcile/serviceAccounts/{i}"),
                    &format!("reconcile.serviceAccounts[{i}]"),
                    format!("{account:?} is not a valid ServiceAccount name"),
                ));
            }
        }
        if self.file.secret_from.is_none() && self.file.credentials.is_empty() {
            return Err(self.invalid(
                "/reconcile",
                "reconcile",
                "the pull Secret needs contents: give `secretFrom` or `credentials`".into(),
            ));
        }
        Ok(())
    }

    /// A path from the config: `~/` is the home directory, relative paths
    /// start at the config's directory.
    pub fn path(&self, p: &str) -> PathBuf {
        if let Some(rest) = p.strip_prefix("~/")
            && let Some(home) = std::env::var_os("HOME")
        {
            return PathBuf::from(home).join(rest);
        }
        self.base_dir.join(p)
    }

    /// Each `credentials:` entry as (normalized registry, source), checked:
    /// exactly one source per entry.
    pub fn credential_sources(
        &self,
    ) -> Result<Vec<(String, repoint_credentials::Source)>, ConfigError> {
        use repoint_credentials::Source;
        let mut out = Vec::new();
        for (i, c) in self.file.credentials.iter().enumerate() {
            let at = |field: &str, message: String| {
                self.invalid(
                    &format!("/credentials/{i}/{field}"),
                    &format!("credentials[{i}].{field}"),
                    message,
                )
            };
            let password = match (&c.password_env, &c.password_file) {
                (Some(_), Some(_)) => {
                    return Err(at(
                        "passwordEnv",
                        "give passwordEnv or passwordFile, not both".into(),
                    ));
                }
                (Some(v), None) => Some(Source::PasswordEnv {
                    username: String::new(),
                    variable: v.clone(),
                }),
                (None, Some(f)) => Some(Source::PasswordFile {
                    username: String::new(),
                    path: self.path(f),
                }),
                (None, None) => None,
            };
            let mut sources = Vec::new();
            if let Some(d) = &c.docker_config {
                sources.push(Source::DockerConfig(if d == "default" {
                    None
                } else {
                    Some(self.path(d))
                }));
            }
            if let Some(f) = &c.secret_file {
                sources.push(Source::SecretFile(self.path(f)));
            }
            match (&c.username, password) {
                (Some(user), Some(p)) => sources.push(match p {
                    Source::PasswordEnv { variable, .. } => Source::PasswordEnv {
                        username: user.clone(),
                        variable,
                    },
                    Source::PasswordFile { path, .. } => Source::PasswordFile {
                        username: user.clone(),
                        path,
                    },
                    other => other,
                }),
                (Some(_), None) => {
                    return Err(at(
                        "username",
                        "a username needs passwordEnv or passwordFile".into(),
                    ));
                }
                (None, Some(_)) => {
                    return Err(at(
                        "username",
                        "passwordEnv and passwordFile need a username".into(),
                    ));
                }
                (None, None) => {}
            }
            if sources.len() != 1 {
                return Err(at(
                    "registry",
                    format!(
                        "give exactly one source (dockerConfig, username with passwordEnv or passwordFile, or secretFile); found {}",
                        sources.len()
                    ),
                ));
            }
            let registry = repoint_credentials::registry_key(&c.registry);
            if registry.is_empty() {
                return Err(at("registry", "must not be empty".into()));
            }
            out.extend(sources.into_iter().map(|s| (registry.clone(), s)));
        }
        Ok(out)
    }

    /// An error at the key found by JSON Pointer `pointer` (falling back to
    /// its nearest existing parent).
    pub fn invalid(&self, pointer: &str, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.source.name().to_string(),
            line: self.locate(pointer),
            key: key.to_string(),
            message,
        }
    }

    /// The line of the key at `pointer` (of its value when it has no key,
    /// or of its nearest parent when it is not there).
    pub fn locate(&self, pointer: &str) -> usize {
        match self.source.documents().first() {
            Some(doc) => self.source.key_line_of(doc, pointer),
            None => 1,
        }
    }

    /// The config file's name as given.
    pub fn name(&self) -> &str {
        self.source.name()
    }

    /// How soon the webhook answers, whatever happens (`webhook.timeout`,
    /// default [`DEFAULT_WEBHOOK_TIMEOUT`]): the server's deadline, and the
    /// `timeoutSeconds` `webhook manifests` derives from it.
    pub fn webhook_timeout(&self) -> Duration {
        self.file
            .webhook
            .as_ref()
            .and_then(|w| w.timeout)
            .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT)
    }

    /// The namespaces the webhook never evaluates: the server's own
    /// (`own`) first, then `webhook.excludeNamespaces` (default
    /// [`DEFAULT_WEBHOOK_EXCLUDED`]).
    pub fn webhook_excluded_namespaces(&self, own: &str) -> Vec<String> {
        let configured = self
            .file
            .webhook
            .as_ref()
            .and_then(|w| w.exclude_namespaces.clone())
            .unwrap_or_else(|| {
                DEFAULT_WEBHOOK_EXCLUDED
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            });
        std::iter::once(own.to_string())
            .chain(configured.into_iter().filter(|ns| ns != own))
            .collect()
    }

    /// Evaluation timeout (default 1 s).
    pub fn timeout(&self) -> Duration {
        self.file
            .limits
            .as_ref()
            .and_then(|l| l.timeout)
            .unwrap_or(repoint_core::evaluation::DEFAULT_TIMEOUT)
    }

    /// Per-registry probe settings, keyed by normalized registry name,
    /// with CA paths resolved against the config's directory.
    pub fn registry_settings(&self) -> BTreeMap<String, repoint_core::probe::RegistrySettings> {
        self.file
            .registries
            .iter()
            .map(|(name, r)| {
                (
                    repoint_credentials::registry_key(name),
                    repoint_core::probe::RegistrySettings {
                        endpoint: r.endpoint.clone(),
                        ca: r.ca.as_deref().map(|p| self.path(p)),
                        insecure: r.insecure,
                    },
                )
            })
            .collect()
    }

    /// Probe bounds, defaults filled in; `serve` keeps answers for
    /// `cacheTtl`, a run for its whole life (`long_running: false`).
    pub fn probe_settings(&self, long_running: bool) -> repoint_core::probe::ProbeSettings {
        let entry = self.file.probe.clone();
        let defaults = repoint_core::probe::ProbeSettings::default();
        repoint_core::probe::ProbeSettings {
            timeout: entry
                .as_ref()
                .and_then(|p| p.timeout)
                .unwrap_or(defaults.timeout),
            concurrency: entry
                .as_ref()
                .and_then(|p| p.concurrency)
                .unwrap_or(defaults.concurrency),
            cache_ttl: long_running.then(|| {
                entry
                    .as_ref()
                    .and_then(|p| p.cache_ttl)
                    .unwrap_or(Duration::from_secs(300))
            }),
        }
    }

    /// The webhook's policy sets: `(name, policy names, failure policy)`;
    /// without `webhook.sets`, one set `default` with every policy.
    pub fn webhook_sets(&self) -> Vec<(String, Vec<String>, FailurePolicy)> {
        match self.file.webhook.as_ref().and_then(|w| w.sets.as_ref()) {
            Some(sets) => sets
                .iter()
                .map(|(name, e)| (name.clone(), e.policies.clone(), e.failure_policy))
                .collect(),
            None => vec![(
                "default".into(),
                self.file.policies.iter().map(|p| p.name.clone()).collect(),
                FailurePolicy::Fail,
            )],
        }
    }

    /// The key files the `oci://` policy `index` must be signed with
    /// (its own `verify:`, else the config's), resolved against the
    /// config's directory; empty: no signature is asked for.
    pub fn verify_keys(&self, index: usize) -> Vec<PathBuf> {
        let entry = &self.file.policies[index];
        if !entry.module.starts_with("oci://") {
            return Vec::new();
        }
        self.keys_of(entry.verify.as_ref().or(self.file.verify.as_ref()))
    }

    /// The key files an `oci://` reference read outside the chain (`policy
    /// inspect -c`) must be signed with: those of the first policy whose
    /// module it is, else the config-wide `verify:`.
    pub fn verify_keys_for_module(&self, module: &str) -> Vec<PathBuf> {
        match self.file.policies.iter().position(|p| p.module == module) {
            Some(index) => self.verify_keys(index),
            None => self.keys_of(self.file.verify.as_ref()),
        }
    }

    fn keys_of(&self, verify: Option<&VerifyEntry>) -> Vec<PathBuf> {
        verify
            .map(|v| v.keys.iter().map(|k| self.path(k)).collect())
            .unwrap_or_default()
    }

    /// The largest policy module read (default 128 MiB).
    pub fn module_size(&self) -> u64 {
        self.file
            .limits
            .as_ref()
            .and_then(|l| l.module_size)
            .map_or(repoint_core::evaluation::DEFAULT_MODULE_BYTES, |s| s as u64)
    }

    /// Evaluation memory cap (default 64 MiB).
    pub fn memory(&self) -> usize {
        self.file
            .limits
            .as_ref()
            .and_then(|l| l.memory)
            .unwrap_or(repoint_core::evaluation::DEFAULT_MEMORY)
    }
}

/// Parse `1s`, `500ms`, `2m`, `1h`, `1.5s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 1s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?} is not a duration like 500ms, 1s or 2m")),
    };
    if secs <= 0.0 || !secs.is_finite() {
        return Err(format!("{s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parse `64Mi`, `1Gi`, `128M`, `65536`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 64Mi or 1Gi"))?;
    let mult: usize = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "K" | "k" => 1000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return Err(format!("{s:?} is not a size like 64Mi or 1Gi")),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{s:?} is out of range"))
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let v = Value::deserialize(d)?;
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("a size must be a positive whole number")),
        Value::String(s) => parse_size(&s).map(Some).map_err(serde::de::Error::custom),
        _ => Err(serde::de::Error::custom(
            "a size is a number of bytes or a string like 64Mi",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse("cfg.yaml", text.to_string(), PathBuf::new())
    }

    const HEAD: &str = "apiVersion: repoint.dev/v1alpha1\nkind: Config\n";

    #[test]
    fn full_config() {
        let c = parse(&format!(
            "{HEAD}policies:\n- name: m\n  module: builtin:registry-mirror\n  settings: {{rules: []}}\nimageFields:\n- group: g\n  kind: K\n  images: [/spec/image]\n  pullSecrets: /spec/s\nlimits: {{timeout: 250ms, memory: 32Mi}}\n"
        ))
        .expect("valid");
        assert_eq!(
            c.file.policies[0].settings,
            serde_json::json!({"rules": []})
        );
        assert_eq!(c.timeout(), Duration::from_millis(250));
        assert_eq!(c.memory(), 32 << 20);
        assert_eq!(c.locate("/policies/0/settings"), 6);
        // An unknown key is shown where it is written, not where its
        // nested value starts.
        let unknown = Config::parse(
            "c.yaml",
            format!("# a comment\n{HEAD}bogus:\n  nested: 1\npolicies: []\n"),
            PathBuf::from("."),
        )
        .expect_err("unknown key");
        assert!(
            unknown
                .to_string()
                .starts_with("c.yaml:4: bogus: unknown field"),
            "{unknown}"
        );
    }

    #[test]
    fn the_empty_config_has_nothing() {
        let empty = Config::empty(PathBuf::from("/base"));
        assert!(empty.file.policies.is_empty());
        assert!(empty.credential_sources().expect("none").is_empty());
        assert_eq!(
            empty.verify_keys_for_module("oci://r.example/p:1"),
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn the_webhook_defaults_have_one_home() {
        let bare = parse(HEAD).expect("valid");
        assert_eq!(bare.webhook_timeout(), DEFAULT_WEBHOOK_TIMEOUT);
        assert_eq!(
            bare.webhook_excluded_namespaces("repoint"),
            ["repoint", "kube-system"]
        );
        let set = parse(&format!(
            "{HEAD}webhook: {{timeout: 1s, excludeNamespaces: [monitoring, repoint]}}\n"
        ))
        .expect("valid");
        assert_eq!(set.webhook_timeout(), Duration::from_secs(1));
        assert_eq!(
            set.webhook_excluded_namespaces("repoint"),
            ["repoint", "monitoring"],
            "the server's own first, once"
        );
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let e = parse(&format!(
            "{HEAD}policies:\n- name: m\n  module: x.wasm\n  setings: {{}}\n"
        ))
        .expect_err("unknown");
        let msg = e.to_string();
        assert!(
            msg.starts_with("cfg.yaml:6: policies[0].setings: unknown field `setings`"),
            "{msg}"
        );
        let e = parse(&format!("{HEAD}polices: []\n")).expect_err("unknown");
        assert!(
            e.to_string()
                .starts_with("cfg.yaml:3: polices: unknown field `polices`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_types_and_values() {
        let e = parse(&format!("{HEAD}limits:\n  timeout: soon\n")).expect_err("bad");
        assert!(
            e.to_string()
                .starts_with("cfg.yaml:4: limits.timeout: \"soon\" is not a duration"),
            "{e}"
        );
        let e = parse(&format!("{HEAD}policies: {{}}\n")).expect_err("bad");
        assert!(
            e.to_string()
                .starts_with("cfg.yaml:3: policies: invalid type: map"),
            "{e}"
        );
        let e = parse("apiVersion: v1\nkind: Config\n").expect_err("bad");
        assert!(
            e.to_string()
                .starts_with("cfg.yaml:1: apiVersion: expected repoint.dev/v1alpha1"),
            "{e}"
        );
        let e = parse(&format!(
            "{HEAD}policies:\n- {{name: a, module: x}}\n- {{name: a, module: z}}\n"
        ))
        .expect_err("dup");
        assert!(
            e.to_string().starts_with("cfg.yaml:5: policies[1].name:"),
            "{e}"
        );
    }

    #[test]
    fn credentials_need_exactly_one_source() {
        let ok = parse(&format!(
            "{HEAD}credentials:\n- {{registry: 'https://index.docker.io/v1/', dockerConfig: default}}\n- {{registry: p.example, username: robot, passwordEnv: TOKEN}}\n"
        ))
        .expect("valid");
        let sources = ok.credential_sources().expect("sources");
        assert_eq!(sources[0].0, "docker.io");
        assert_eq!(
            sources[1].1,
            repoint_credentials::Source::PasswordEnv {
                username: "robot".into(),
                variable: "TOKEN".into()
            }
        );
        let two = parse(&format!(
            "{HEAD}credentials:\n- registry: a.io\n  dockerConfig: default\n  secretFile: s.yaml\n"
        ))
        .expect("parses");
        let e = two.credential_sources().expect_err("two sources");
        assert!(
            e.to_string()
                .starts_with("cfg.yaml:4: credentials[0].registry: give exactly one source"),
            "{e}"
        );
        let lone = parse(&format!(
            "{HEAD}credentials:\n- {{registry: a.io, passwordEnv: X}}\n"
        ))
        .expect("parses");
        assert!(
            lone.credential_sources()
                .expect_err("no user")
                .to_string()
                .contains("need a username")
        );
    }

    #[test]
    fn reconcile_needs_a_valid_name_and_a_source() {
        let ok = parse(&format!(
            "{HEAD}secretFrom: {{namespace: platform, name: regcred}}\nreconcile:\n  secretName: regcred\n  namespaceSelector: team in (a,b)\n  serviceAccounts: [default, builder]\n  resync: 5m\n"
        ))
        .expect("valid");
        let r = ok.file.reconcile.expect("section");
        assert_eq!(r.resync, Some(Duration::from_secs(300)));
        assert_eq!(r.namespace_selector.as_deref(), Some("team in (a,b)"));
        let bad_name = parse(&format!(
            "{HEAD}credentials:\n- {{registry: a.io, dockerConfig: default}}\nreconcile:\n  secretName: Reg_Cred\n"
        ))
        .expect_err("bad name");
        assert!(
            bad_name.to_string().starts_with(
                "cfg.yaml:6: reconcile.secretName: \"Reg_Cred\" is not a valid Secret name"
            ),
            "{bad_name}"
        );
        let no_source =
            parse(&format!("{HEAD}reconcile: {{secretName: regcred}}\n")).expect_err("no source");
        assert!(
            no_source
                .to_string()
                .contains("reconcile: the pull Secret needs contents"),
            "{no_source}"
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64Mi"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn image_fields_keep_to_what_a_kind_has() {
        let env_on_custom = parse(&format!(
            "{HEAD}policies:\n- name: m\n  module: builtin:registry-mirror\n  settings: {{rules: []}}\nimageFields:\n- group: g\n  kind: K\n  env: [RELATED_IMAGE_*]\n"
        ))
        .expect_err("refused")
        .to_string();
        assert!(
            env_on_custom.contains("imageFields[0]") && env_on_custom.contains("g/K is not one"),
            "{env_on_custom}"
        );
        let secrets_on_builtin = parse(&format!(
            "{HEAD}policies:\n- name: m\n  module: builtin:registry-mirror\n  settings: {{rules: []}}\nimageFields:\n- group: apps\n  kind: Deployment\n  pullSecrets: /spec/s\n"
        ))
        .expect_err("refused")
        .to_string();
        assert!(
            secrets_on_builtin.contains("/spec/template/spec/imagePullSecrets"),
            "{secrets_on_builtin}"
        );
        let bad_glob = parse(&format!(
            "{HEAD}policies:\n- name: m\n  module: builtin:registry-mirror\n  settings: {{rules: []}}\nimageFields:\n- group: apps\n  kind: Deployment\n  env: ['RELATED_[']\n"
        ))
        .expect_err("refused")
        .to_string();
        assert!(bad_glob.contains("invalid glob pattern"), "{bad_glob}");
        let config = parse(&format!(
            "{HEAD}policies:\n- name: m\n  module: builtin:registry-mirror\n  settings: {{rules: []}}\nimageFields:\n- group: apps\n  kind: Deployment\n  images: [/metadata/annotations/operand]\n  env: [RELATED_IMAGE_*]\n"
        ))
        .expect("valid");
        assert_eq!(
            config.file.image_fields[0].env[0].as_str(),
            "RELATED_IMAGE_*"
        );
    }
}
