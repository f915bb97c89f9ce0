//! Command-line arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Point container images at the registries you choose, and wire up the
/// pull secrets to fetch them.
#[derive(Debug, Parser)]
#[command(name = "repoint", version, about, propagate_version = true)]
pub struct Cli {
    /// Log level for messages on stderr (error, warn, info, debug, trace;
    /// default: info for `serve` and `controller`, warn otherwise);
    /// `REPOINT_LOG` takes a full tracing filter.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every image in the given manifests: an inventory for mirroring
    /// scripts.
    Images(ImagesArgs),
    /// Run the policy chain and print the patched manifests (works as a Helm
    /// post-renderer with `-`).
    Run(RunArgs),
    /// Run the policy chain and report what would change or is denied; exit
    /// 0 when nothing would, 1 otherwise, 2 on error.
    Check(CheckArgs),
    /// Run as a KRM function (kustomize/kpt): a ResourceList on stdin, its
    /// functionConfig the repoint config; the ResourceList with results on
    /// stdout.
    Fn(FnArgs),
    /// Evaluate the chain on the workloads of a live cluster, read-only,
    /// and report as `check` does (exit 0, 1 or 2).
    Audit(AuditArgs),
    /// Make the chain's changes to the workloads of a live cluster, and
    /// the pull Secrets and ServiceAccounts they need.
    Apply(ApplyArgs),
    /// Serve the policy sets as a Kubernetes admission webhook (TLS).
    Serve(Box<ServeArgs>),
    /// Keep the config's `reconcile:` pull Secret present and current in
    /// every matching namespace, and listed by its ServiceAccounts, until
    /// stopped.
    Controller(ControllerArgs),
    /// What a cluster needs to run the webhook.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Write the config's registry-mirror rules as node configuration:
    /// containerd hosts.toml files, a CRI-O/podman registries.conf, and a
    /// DaemonSet that installs the containerd files on every node.
    NodeConfig(NodeConfigArgs),
    /// Run the policy test suites (`repoint-test.yaml`) under PATH; exit 0
    /// when every case passes, 1 when one fails, 2 when a suite cannot run.
    Test(TestArgs),
    /// Start something new.
    #[command(subcommand)]
    New(NewCommand),
    /// Print a shell completion script (`repoint completions bash >
    /// /etc/bash_completion.d/repoint`).
    Completions(CompletionsArgs),
    /// Work with policy components.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Print the manifests that run `repoint serve` in a cluster, ready for
    /// `kubectl apply -f -`.
    Manifests(ManifestsArgs),
}

#[derive(Debug, Args)]
pub struct ManifestsArgs {
    /// The repoint config file (goes into a ConfigMap).
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// Namespace the server runs in (never evaluated itself).
    #[arg(long, short = 'n', default_value = "repoint")]
    pub namespace: String,
    /// The server's container image.
    #[arg(long, default_value = concat!("ghcr.io/repoint/repoint:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// Let cert-manager issue the serving certificate and inject the CA
    /// bundle, instead of a generated self-signed one.
    #[arg(long)]
    pub cert_manager: bool,
    /// Days the generated certificate is valid.
    #[arg(long, default_value_t = 825)]
    pub days: u32,
    /// The Kubernetes version of the target cluster (`1.20`, `v1.20.2`):
    /// the manifests use only what it serves. The newest behaviour when
    /// not given; `kubectl version` tells it.
    #[arg(long, value_name = "VERSION", value_parser = parse_kube_version)]
    pub kube_version: Option<(u32, u32)>,
    /// Call the server at this https URL (a server outside the cluster)
    /// instead of through its Service; the generated certificate names
    /// the URL's host.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

#[derive(Debug, Args)]
pub struct NodeConfigArgs {
    /// The repoint config file; its builtin:registry-mirror rules are read.
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// The directory to write (replaced whole on every run; refused if it
    /// holds files repoint did not write).
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: PathBuf,
    /// containerd's registry hosts directory on the nodes (its CRI
    /// `config_path`), where the DaemonSet installs the files.
    #[arg(long, value_name = "PATH", default_value = repoint_nodes::DEFAULT_HOSTS_DIR)]
    pub hosts_dir: String,
    /// Namespace of the ConfigMap and DaemonSet.
    #[arg(long, short = 'n', default_value = "kube-system")]
    pub namespace: String,
    /// The image whose `sh` installs the files (written through the
    /// config's rules, like the pause image).
    #[arg(long, default_value = repoint_nodes::DEFAULT_INSTALLER_IMAGE)]
    pub installer_image: String,
    /// The image the DaemonSet's pods idle in.
    #[arg(long, default_value = repoint_nodes::DEFAULT_PAUSE_IMAGE)]
    pub pause_image: String,
}

/// `1.20`, `v1.20.2` as (major, minor).
fn parse_kube_version(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{text:?} is not a Kubernetes version such as 1.20 or v1.20.2");
    let mut parts = text.trim_start_matches('v').split('.');
    let major = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let minor = parts
        .next()
        .and_then(|p| p.trim_end_matches('+').parse().ok())
        .ok_or_else(bad)?;
    Ok((major, minor))
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print a policy's info and check that it implements the contract.
    Inspect(InspectArgs),
    /// Push a policy component to a registry as a Wasm OCI artifact and
    /// print its digest.
    Push(PushArgs),
}

/// Output format of `repoint images`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImagesFormat {
    /// One line per image: `file:line  kind/name  container  image`.
    Text,
    /// One JSON array of objects (or of strings with `--unique`).
    Json,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Files or directories (searched for *.yaml, *.yml, *.json); `-` reads
    /// standard input. Nothing given reads standard input.
    pub inputs: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ImagesFormat::Text)]
    pub format: ImagesFormat,
    /// Print each normalized image once, sorted.
    #[arg(long)]
    pub unique: bool,
    /// Largest document to read, in MiB.
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub max_document_size: usize,
    /// Largest input (a file, standard input) to read, in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub max_input_size: u64,
}

/// Options of every command that evaluates policies on files.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// Namespace for objects that have none (where generated objects go).
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// Leave objects that have no namespace, and the Secrets and
    /// ServiceAccounts generated for them, without one, for whoever
    /// applies them to place (a Helm release's namespace, `kubectl apply
    /// -n`). For Helm post-renderers: Helm tells a post-renderer neither
    /// the release nor its namespace.
    #[arg(long, conflicts_with = "namespace")]
    pub leave_namespace_unset: bool,
    /// Largest document to read, in MiB.
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub max_document_size: usize,
    /// Largest input (a file, standard input) to read, in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub max_input_size: u64,
    #[command(flatten)]
    pub options: EvalOptions,
}

/// How policies run: the options every evaluating command has, files or
/// cluster.
#[derive(Debug, Clone, Default, Args)]
pub struct EvalOptions {
    /// Do not use the on-disk cache of compiled policies.
    #[arg(long)]
    pub no_cache: bool,
    /// Documents evaluated at once (default: the number of cores).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Deadline per policy evaluation (overrides the config's limits.timeout).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Memory cap per policy evaluation, like 64Mi (overrides limits.memory).
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<usize>,
    /// Never touch the network: every registry probe answers `unknown`
    /// (as does the config's `offline: true`).
    #[arg(long)]
    pub offline: bool,
}

impl EvalOptions {
    /// The pipeline's settings these options ask for.
    pub fn settings(&self) -> repoint_pipeline::Settings {
        repoint_pipeline::Settings {
            no_cache: self.no_cache,
            jobs: self.jobs,
            timeout: self.timeout,
            memory: self.memory,
            offline: self.offline,
        }
    }
}

/// Input limits from `--max-document-size` and `--max-input-size` (MiB).
pub fn limits(max_document_mib: usize, max_input_mib: u64) -> repoint_core::Limits {
    repoint_core::Limits {
        max_document_bytes: max_document_mib.saturating_mul(1 << 20),
        max_input_bytes: max_input_mib.saturating_mul(1 << 20),
        ..repoint_core::Limits::default()
    }
}

impl EvalArgs {
    /// The evaluation options these arguments ask for.
    pub fn options(&self) -> repoint_pipeline::evaluate::Options {
        repoint_pipeline::evaluate::Options {
            settings: self.options.settings(),
            namespace: if self.leave_namespace_unset {
                String::new()
            } else {
                self.namespace.clone()
            },
            limits: limits(self.max_document_size, self.max_input_size),
            ..repoint_pipeline::evaluate::Options::default()
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    repoint_config::parse_duration(s)
}

fn parse_size(s: &str) -> Result<usize, String> {
    repoint_config::parse_size(s)
}

/// Output of `repoint run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputFormat {
    /// The manifests, changed only where they must (minimal diff).
    Yaml,
    /// The patched objects as JSON (a `List` when there are several).
    Json,
    /// One JSON array of `{file, document, apiVersion, kind, namespace, name, patch}`.
    JsonPatch,
    /// A unified diff against the input.
    Diff,
    /// A kustomize overlay written into the directory.
    Kustomize(PathBuf),
}

fn parse_output(s: &str) -> Result<OutputFormat, String> {
    Ok(match s {
        "yaml" => OutputFormat::Yaml,
        "json" => OutputFormat::Json,
        "json-patch" => OutputFormat::JsonPatch,
        "diff" => OutputFormat::Diff,
        _ => match s.strip_prefix("kustomize=") {
            Some(dir) if !dir.is_empty() => OutputFormat::Kustomize(PathBuf::from(dir)),
            _ => {
                return Err(format!(
                    "unknown output {s:?}; expected yaml, json, json-patch, diff or kustomize=DIR"
                ));
            }
        },
    })
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The repoint config file.
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// Files or directories (*.yaml, *.yml, *.json); `-` or nothing reads stdin.
    pub inputs: Vec<PathBuf>,
    /// Output: yaml (the manifests, changed only where they must), json,
    /// json-patch (one array of per-object patches), diff, or kustomize=DIR
    /// (an overlay over the untouched inputs, written into DIR).
    #[arg(long, short = 'o', value_parser = parse_output, default_value = "yaml", value_name = "FORMAT")]
    pub output: OutputFormat,
    /// Rewrite the input files instead of printing (atomically; nothing is
    /// written if any object fails).
    #[arg(long)]
    pub in_place: bool,
    #[command(flatten)]
    pub eval: EvalArgs,
}

/// Output of `repoint check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// `file:line: level: Kind/name: [policy] message`
    Text,
    /// One JSON array of findings.
    Json,
    /// SARIF 2.1.0, for code-scanning uploads.
    Sarif,
    /// GitHub Actions workflow commands (annotations).
    Github,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The repoint config file.
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// Files or directories (*.yaml, *.yml, *.json); `-` or nothing reads stdin.
    pub inputs: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    #[command(flatten)]
    pub eval: EvalArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The repoint config file (its `webhook:` section names the sets).
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// Address for admission reviews (TLS).
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub addr: std::net::SocketAddr,
    /// Serving certificate chain (PEM); reloaded when the file changes.
    #[arg(long)]
    pub tls_cert: PathBuf,
    /// Serving private key (PEM); reloaded when the file changes.
    #[arg(long)]
    pub tls_key: PathBuf,
    /// Require client certificates signed by this CA (PEM): mTLS.
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// Address for plain-HTTP Prometheus `/metrics`.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The server's own namespace, whose requests are never evaluated.
    #[arg(long, env = "POD_NAMESPACE", default_value = "repoint")]
    pub own_namespace: String,
    /// How often the certificate files are checked for changes.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub reload_interval: Duration,
    /// Connections held at once; one more is closed as soon as it is
    /// accepted (default 1024).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// How long a client may take to send a request's headers (and the
    /// TLS handshake), and how long an idle connection is kept (default
    /// 10s).
    #[arg(long, value_parser = parse_duration)]
    pub header_timeout: Option<Duration>,
    /// How long a request's body may take to arrive; later, it is answered
    /// 408 (default 10s).
    #[arg(long, value_parser = parse_duration)]
    pub body_timeout: Option<Duration>,
    /// Bytes of request bodies held at once across all connections; a
    /// request over it is answered 503 at once (default 32Mi).
    #[arg(long, value_parser = parse_size)]
    pub body_budget: Option<usize>,
    /// Also run the reconciler of the config's `reconcile:` section, as
    /// `repoint controller` does.
    #[arg(long)]
    pub reconcile: bool,
    /// The cluster the reconciler talks to (default: in-cluster).
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub eval: EvalArgs,
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// The repoint config file (its `reconcile:` section says what to keep).
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct FnArgs {
    #[command(flatten)]
    pub eval: EvalArgs,
}

#[derive(Debug, Subcommand)]
pub enum NewCommand {
    /// A policy project that builds at once: an example rule, its test
    /// suite, a config using it, and a README.
    Policy(NewPolicyArgs),
}

/// The languages `repoint new policy` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyLanguage {
    /// A crate on the repoint-policy SDK, built for wasm32-wasip2.
    Rust,
    /// A module built with componentize-py (PyPI).
    Python,
    /// A module built with componentize-js (npm).
    Js,
}

impl PolicyLanguage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rust => "rust",
            Self::Python => "python",
            Self::Js => "js",
        }
    }
}

#[derive(Debug, Args)]
pub struct NewPolicyArgs {
    /// The policy's name (also its crate's).
    pub name: String,
    /// The language to write it in.
    #[arg(long, value_enum, default_value_t = PolicyLanguage::Rust)]
    pub lang: PolicyLanguage,
    /// Where to create it (default: ./NAME); must be empty or absent.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The repoint-policy SDK's directory, for a Rust policy (default:
    /// the one this repoint was built from).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// How `repoint test` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestFormat {
    /// One line per case, then the counts.
    Text,
    /// JUnit XML, for CI systems.
    Junit,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Suite files, or directories searched for `repoint-test.yaml` files
    /// (default: the current directory).
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = TestFormat::Text)]
    pub format: TestFormat,
    /// Do not use the on-disk cache of compiled policies.
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A `.wasm` component, `builtin:NAME` or `oci://REGISTRY/REPOSITORY:TAG`
    /// (or `@sha256:DIGEST`).
    pub module: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Do not use the on-disk caches (compiled policies, pulled artifacts).
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Where `oci://` references are pulled from and pushed to.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// A repoint config whose `registries:` (endpoint, ca, insecure) and
    /// `credentials:` apply to the registry.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Pull nothing: use what the cache holds.
    #[arg(long)]
    pub offline: bool,
    /// Accept the artifact only with a cosign signature made with this
    /// public key (repeatable: any one of them). Without it, the `verify:`
    /// keys of the `-c` config apply: those of a policy with this module,
    /// else the config-wide ones.
    #[arg(long = "key", value_name = "FILE")]
    pub keys: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The policy component (`.wasm`).
    pub file: PathBuf,
    /// `oci://REGISTRY/REPOSITORY:TAG`.
    pub reference: String,
    /// A repoint config whose `registries:` and `credentials:` apply to the
    /// registry.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
}

/// Which cluster, as kubectl finds it.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// The kubeconfig file (default: `KUBECONFIG`, then `~/.kube/config`,
    /// then the in-cluster service account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
}

impl ConnectionArgs {
    pub fn target(&self) -> repoint_kube::Target {
        repoint_kube::Target {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }
}

/// Which cluster, and which of its objects.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Only this namespace (default: all namespaces).
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Only objects with these labels (`app=web,tier!=db`).
    #[arg(long, short = 'l', value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Objects per list request; large lists are read page by page.
    #[arg(long, default_value_t = 500)]
    pub chunk_size: u32,
    /// Also evaluate Pods, ReplicaSets and Jobs whose controller is
    /// evaluated too (by default the fix is made once, at the owner).
    #[arg(long)]
    pub include_owned: bool,
    /// Read the cluster (the default for audit; required for apply).
    #[arg(long)]
    pub cluster: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The repoint config file.
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    #[command(flatten)]
    pub eval: EvalOptions,
}

/// `--dry-run` of `apply`, as kubectl spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    /// Write for real.
    None,
    /// Send every write with `dryRun=All`: the API server checks it
    /// (admission included) and stores nothing.
    Server,
    /// Send nothing; print what would be written.
    Client,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The repoint config file.
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// none (write), server (the API server checks and stores nothing) or
    /// client (send nothing).
    #[arg(long, value_enum, default_value_t = DryRun::None, num_args = 0..=1, default_missing_value = "client", require_equals = true)]
    pub dry_run: DryRun,
    /// The field manager repoint's writes are recorded under in
    /// `managedFields` (what a later `kubectl apply --server-side` names
    /// in a conflict).
    #[arg(long, value_name = "NAME", default_value = repoint_kube::FIELD_MANAGER)]
    pub field_manager: String,
    #[command(flatten)]
    pub eval: EvalOptions,
}
