//! Node-level mirror configuration from the config's `registry-mirror`
//! rules (`repoint node-config`): containerd `hosts.toml` directories
//! ([`containerd`]), a CRI-O / podman `registries.conf` ([`crio`]), and a
//! ConfigMap and DaemonSet that install the containerd files on every node
//! ([`daemonset`]).
//!
//! Node mirrors are not rewrites: names stay as written, a pull falls back
//! to the upstream registry when the mirror fails, and they cover static
//! pods and every namespace. What a rule says that a node cannot (a glob, a
//! rule scoped to a path below a registry for containerd, namespace and
//! label scoping, image exclusions) is a [`NodeConfig::notes`] line naming
//! the rule, never dropped silently. The rules are read through
//! [`repoint_core::mirror`], the model the policy itself applies, so a rule
//! means the same here as in a manifest.
//!
//! Depends on repoint-config (the policies' settings, `registries:`) and
//! repoint-core (the mirror rules, loopback hosts, writing YAML); on `toml`
//! for the runtimes' files and `sha2` for the DaemonSet's rollout hash.

pub mod containerd;
pub mod crio;
pub mod daemonset;

use std::collections::BTreeMap;
use std::path::PathBuf;

use repoint_config::Config;
use repoint_core::RegistryPath;
use repoint_core::matching::ImagePattern;
use repoint_core::mirror::{MirrorSettings, Rewrite};
use repoint_core::probe::RegistrySettings;

/// Why the node configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A policy's settings are not registry-mirror settings.
    #[error(transparent)]
    Settings(#[from] repoint_config::ConfigError),
    /// A `registries.<name>.ca` file could not be read.
    #[error("reading the CA of registry {registry} ({}): {source}", path.display())]
    Ca {
        registry: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file would not serialize (a bug, reported rather than written).
    #[error("writing {file}: {why}")]
    Write { file: String, why: String },
    /// An image given for the DaemonSet is not an image reference.
    #[error("image {image:?}: {why}")]
    Image { image: String, why: String },
    /// The DaemonSet's documents would not read back as themselves.
    #[error("writing the DaemonSet manifest")]
    Emit(#[source] repoint_core::document::EmitError),
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// What to make.
#[derive(Debug)]
pub struct Request<'a> {
    pub config: &'a Config,
    /// Where the containerd files go on a node (`/etc/containerd/certs.d`,
    /// the runtime's `config_path`).
    pub hosts_dir: &'a str,
    /// Namespace of the ConfigMap and DaemonSet.
    pub namespace: &'a str,
    /// The image whose `sh` installs the files (rewritten by the rules,
    /// like every image).
    pub installer_image: &'a str,
    /// The image the DaemonSet's pods idle in.
    pub pause_image: &'a str,
}

/// The installer's image unless told otherwise: a shell and `cp`.
pub const DEFAULT_INSTALLER_IMAGE: &str = "docker.io/library/busybox:1.37.0";
/// The pause image every kubelet already has.
pub const DEFAULT_PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";
/// Where containerd reads registry hosts from when `config_path` points
/// there (the default from containerd 2.0 on).
pub const DEFAULT_HOSTS_DIR: &str = "/etc/containerd/certs.d";

/// One file of the output, by its path below the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFile {
    /// `/`-separated, relative: `containerd/docker.io/hosts.toml`.
    pub path: String,
    pub text: String,
}

/// Everything `repoint node-config` writes, and what it could not express.
#[derive(Debug)]
pub struct NodeConfig {
    pub files: Vec<NodeFile>,
    /// One line per rule or setting a node cannot express, naming it.
    pub notes: Vec<String>,
}

/// One mirror a node can be told about.
#[derive(Debug, Clone)]
pub(crate) struct NodeMirror {
    /// What the rule covers: a registry, or a registry and path.
    pub scope: RegistryPath,
    /// Where images under `scope` are pulled from instead: `scope`'s part
    /// of the name replaced by this.
    pub location: RegistryPath,
    /// The rule, for messages: `policy mirror rules[0] (docker.io)`.
    pub rule: String,
}

/// An `excludeImages` entry of a policy whose rules are on the nodes.
#[derive(Debug, Clone)]
pub(crate) struct Exclusion {
    pub pattern: ImagePattern,
    pub rule: String,
}

/// The rules as a node can take them, before any runtime's format.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub mirrors: Vec<NodeMirror>,
    pub exclusions: Vec<Exclusion>,
    pub notes: Vec<String>,
    pub registries: BTreeMap<String, RegistrySettings>,
    /// Each registry-mirror policy's settings (checked), in chain order,
    /// to write the DaemonSet's own images as the chain would.
    pub chain: Vec<MirrorSettings>,
}

/// How a node reaches a registry, from `registries:` (or by its name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reach {
    /// `https` or `http`.
    pub scheme: &'static str,
    /// `host[:port]`.
    pub host: String,
    /// TLS without verification (`insecure: true` on an https endpoint).
    pub skip_verify: bool,
    /// An extra trusted CA file.
    pub ca: Option<PathBuf>,
}

impl Plan {
    /// How to reach `registry`: its `registries:` endpoint, else its own
    /// name; loopback hosts over plain http, as docker does.
    pub fn reach(&self, registry: &str) -> Reach {
        let settings = self.registries.get(registry).cloned().unwrap_or_default();
        let (scheme, host) = match settings.endpoint.as_deref() {
            Some(url) if url.starts_with("http://") => ("http", &url["http://".len()..]),
            Some(url) if url.starts_with("https://") => ("https", &url["https://".len()..]),
            Some(host) => (loopback_scheme(host), host),
            None => (loopback_scheme(registry), registry),
        };
        let host = host.trim_end_matches('/').to_string();
        Reach {
            scheme,
            skip_verify: settings.insecure && scheme == "https",
            // Plain http has no certificate to check.
            ca: settings.ca.filter(|_| scheme == "https"),
            host,
        }
    }
}

fn loopback_scheme(host: &str) -> &'static str {
    if repoint_core::probe::is_loopback(host) {
        "http"
    } else {
        "https"
    }
}

/// Whether `pattern` may match images on `registry`: its registry part is
/// the registry, or a glob over it that matches it.
pub(crate) fn may_match_on(pattern: &ImagePattern, registry: &str) -> bool {
    match pattern {
        ImagePattern::Prefix(p) => p.registry.eq_ignore_ascii_case(registry),
        ImagePattern::Glob(g) => {
            let head = g.as_str().split('/').next().unwrap_or_default();
            repoint_core::glob::Glob::new(head).is_ok_and(|h| h.matches(registry))
        }
    }
}

/// Whether an earlier pattern takes every image of `later`'s scope first
/// (`Some(true)`), some of them (`Some(false)`), or none (`None`).
fn takes_first(earlier: &ImagePattern, later: &RegistryPath) -> Option<bool> {
    match earlier {
        ImagePattern::Prefix(e) if e.covers(later) => Some(true),
        // `docker.io/bitnami` before `docker.io`: some images go elsewhere,
        // which the later rule's own output does not change.
        ImagePattern::Prefix(_) => None,
        ImagePattern::Glob(glob) => {
            let segments: Vec<String> = std::iter::once(later.registry.clone())
                .chain(
                    later
                        .path
                        .iter()
                        .flat_map(|p| p.split('/').map(str::to_string)),
                )
                .collect();
            let n = earlier.segments();
            if segments.len() >= n {
                glob.matches(&segments[..n].join("/")).then_some(true)
            } else {
                // The glob reaches below the scope: it may take some of
                // its images. Whether it does depends on names not known
                // here, so say so.
                let head: Vec<&str> = glob.as_str().split('/').take(segments.len()).collect();
                repoint_core::glob::Glob::new(&head.join("/"))
                    .is_ok_and(|g| g.matches(&segments.join("/")))
                    .then_some(false)
            }
        }
    }
}

/// Read the config's registry-mirror rules as a node can take them.
pub(crate) fn plan(config: &Config) -> Result<Plan> {
    let mut plan = Plan {
        registries: config.registry_settings(),
        ..Plan::default()
    };
    // Every rule so far, across policies in chain order: a later policy
    // only sees what earlier ones left, so an earlier match wins there too.
    let mut earlier: Vec<(ImagePattern, String)> = Vec::new();
    for (p, entry) in config.file.policies.iter().enumerate() {
        if entry.module != "builtin:registry-mirror" {
            if entry.module == "builtin:private-proxy" || !entry.module.starts_with("builtin:") {
                plan.notes.push(format!(
                    "policy {} ({}): its rewrites are not node configuration; node-config writes the rules of builtin:registry-mirror policies",
                    entry.name, entry.module
                ));
            }
            continue;
        }
        let invalid = |message: String| {
            config.invalid(
                &format!("/policies/{p}/settings"),
                &format!("policies[{p}].settings"),
                message,
            )
        };
        let settings: MirrorSettings =
            serde_json::from_value(entry.settings.clone()).map_err(|e| invalid(e.to_string()))?;
        let mirrors = settings.mirrors().map_err(invalid)?;
        let name = &entry.name;
        if !settings.exclude_namespaces.is_empty() {
            plan.notes.push(format!(
                "policy {name}: excludeNamespaces does not apply on nodes: a node mirror serves every pod, kube-system and static pods included"
            ));
        }
        if settings.selector.is_some() {
            plan.notes.push(format!(
                "policy {name}: selector does not apply on nodes: a node mirror serves every pod"
            ));
        }
        for (i, (pattern, rewrite)) in mirrors.rules.iter().enumerate() {
            let rule = format!("policy {name} rules[{i}] ({pattern})");
            let ImagePattern::Prefix(scope) = *pattern else {
                plan.notes.push(format!(
                    "{rule}: a glob is not node configuration: containerd and CRI-O name registries one by one; add a rule per registry it is meant for"
                ));
                earlier.push(((*pattern).clone(), rule));
                continue;
            };
            let first = earlier
                .iter()
                .filter_map(|(e, r)| takes_first(e, scope).map(|all| (all, r.clone())))
                .min_by_key(|(all, _)| !*all);
            earlier.push(((*pattern).clone(), rule.clone()));
            match first {
                Some((true, by)) => {
                    plan.notes.push(format!(
                        "{rule}: never applies, {by} matches its images first; left out"
                    ));
                    continue;
                }
                Some((false, by)) => plan.notes.push(format!(
                    "{rule}: {by} takes some of its images first in manifests; on nodes they go to this rule's mirror"
                )),
                None => {}
            }
            if let Some(excluded) = settings
                .exclude_images
                .iter()
                .find(|x| matches!(x, ImagePattern::Prefix(x) if x.covers(scope)))
            {
                plan.notes.push(format!(
                    "{rule}: never applies, excludeImages {excluded} leaves all its images out; left out"
                ));
                continue;
            }
            let location = match rewrite {
                Rewrite::Replace(target) => target.clone(),
                Rewrite::Prefix(target) => RegistryPath {
                    registry: target.registry.clone(),
                    path: Some(match &target.path {
                        Some(path) => format!("{path}/{scope}"),
                        None => scope.to_string(),
                    }),
                },
            };
            // A registry port cannot be a path segment under a prefix.
            if RegistryPath::parse(&location.to_string()).is_err() {
                plan.notes.push(format!(
                    "{rule}: {location} is not a valid repository path; left out"
                ));
                continue;
            }
            plan.mirrors.push(NodeMirror {
                scope: scope.clone(),
                location,
                rule,
            });
        }
        for pattern in &settings.exclude_images {
            plan.exclusions.push(Exclusion {
                pattern: pattern.clone(),
                rule: format!("policy {name} excludeImages {pattern}"),
            });
        }
        plan.chain.push(settings);
    }
    Ok(plan)
}

/// Everything for the nodes: the containerd directory, the CRI-O file,
/// the DaemonSet that installs the containerd files, and the notes.
pub fn build(request: &Request<'_>) -> Result<NodeConfig> {
    let plan = plan(request.config)?;
    let mut notes = plan.notes.clone();
    let containerd = containerd::files(&plan, request.config, request.hosts_dir, &mut notes)?;
    let crio = crio::files(&plan, request.config, &mut notes)?;
    if plan.mirrors.is_empty() {
        notes.push(
            "no rule is node configuration: the files list no mirror (add a builtin:registry-mirror policy whose rules match registries)".into(),
        );
    }
    let manifest = daemonset::manifest(request, &plan, &containerd)?;
    let mut files = Vec::new();
    files.extend(containerd.into_iter().map(|f| NodeFile {
        path: format!("{}/{}", containerd::DIR, f.path),
        text: f.text,
    }));
    files.extend(crio);
    files.push(NodeFile {
        path: daemonset::FILE.into(),
        text: manifest,
    });
    Ok(NodeConfig { files, notes })
}

/// Read a registry's CA file, for copying beside the runtime's files.
pub(crate) fn read_ca(registry: &str, path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Ca {
        registry: registry.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

/// A header for a generated file: where it came from and what made it.
pub(crate) fn header(comment: &str, config: &Config) -> String {
    format!(
        "{comment} Written by `repoint node-config` from {}; edit the config, not this file.\n",
        config.name()
    )
}

#[cfg(test)]
mod tests;
