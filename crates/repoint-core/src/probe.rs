//! The `probe-image` host import's seam: can an image be pulled without
//! credentials? `repoint-registry` answers over the network (the OCI
//! distribution API); [`Offline`] answers `unknown` without touching it.

use std::path::PathBuf;
use std::time::Duration;

use crate::ImageRef;

/// What a registry said to an anonymous manifest request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeAnswer {
    /// Served without credentials.
    Anonymous,
    /// Credentials required.
    NeedsAuth,
    /// No such repository or tag.
    NotFound,
    /// No answer (offline, network error, timeout, server error).
    Unknown,
}

/// Answers probes. Implementations cache and bound their own work.
pub trait Prober: Send + Sync {
    /// Probe one image.
    fn probe(&self, image: &ImageRef) -> ProbeAnswer;
}

/// Answers `unknown` without touching the network.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offline;

impl Prober for Offline {
    fn probe(&self, _image: &ImageRef) -> ProbeAnswer {
        ProbeAnswer::Unknown
    }
}

/// Registries docker treats as insecure without being told: loopback
/// hosts, reached over plain http.
pub fn is_loopback(host_port: &str) -> bool {
    let host = match host_port.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

/// The host that serves a registry's API: Docker Hub's is
/// registry-1.docker.io, every other registry's is its name.
pub fn api_host(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io".into(),
        other => other.into(),
    }
}

/// How to reach one registry (the config's `registries.<name>`).
#[derive(Debug, Clone, Default)]
pub struct RegistrySettings {
    /// Where probes for this name go: `host[:port]` or a URL with scheme.
    pub endpoint: Option<String>,
    /// An extra trusted CA (PEM), on top of the system roots.
    pub ca: Option<PathBuf>,
    /// Plain http, or TLS without verification.
    pub insecure: bool,
}

/// Bounds of probing (the config's `probe:`).
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// Deadline for one probe, all its requests together.
    pub timeout: Duration,
    /// Probes in flight at once.
    pub concurrency: usize,
    /// How long an answer is reused; `None`: for the life of the prober.
    pub cache_ttl: Option<Duration>,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            concurrency: 8,
            cache_ttl: None,
        }
    }
}
