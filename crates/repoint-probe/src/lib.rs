//! Ask a registry, anonymously, whether an image can be pulled: the
//! answer behind the `probe-image` host import.
//!
//! This is what a vendor's installer does: request the image manifest
//! (`HEAD /v2/<repository>/manifests/<tag-or-digest>`, falling back to
//! `GET`) with no credentials, following the anonymous bearer-token flow
//! (`WWW-Authenticate: Bearer realm=...` -> token -> retry). A manifest
//! served means `anonymous`; a 401 or 403 that no anonymous token gets past
//! means `needs-auth`; 404 `not-found`; anything else (network error,
//! timeout, 5xx) `unknown`.
//!
//! Probes are bounded: a deadline per probe (all its requests together), a
//! limit on probes in flight, and one cache keyed by the normalized image,
//! so each unique image is asked about once per run (or once per TTL in a
//! long-running server), however many threads ask at the same time.
//!
//! Depends on repoint-core (image references, the probe settings) and on
//! `ureq` with rustls for HTTP; the only crate of repoint with an HTTP
//! client.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use repoint_core::ImageRef;
use repoint_core::probe::is_loopback;
use repoint_core::probe::{ProbeAnswer, Prober};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// Media types a manifest request accepts: OCI and Docker, single-platform
/// manifests and indexes, as container runtimes send them.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The settings live in repoint-core, so that the config crate can hold
/// them without this crate's HTTP and TLS stack.
pub use repoint_core::probe::{ProbeSettings, RegistrySettings};

/// A registry's settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The CA file could not be read.
    #[error("registries.{registry}.ca: cannot read {path}: {source}")]
    ReadCa {
        registry: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The CA file holds no certificate.
    #[error("registries.{registry}.ca: {path} holds no PEM certificate")]
    NoCertificate { registry: String, path: PathBuf },
    /// The endpoint is not `host[:port]` or an http(s) URL.
    #[error("registries.{registry}.endpoint: {endpoint:?} is not host[:port] or an http(s):// URL")]
    BadEndpoint { registry: String, endpoint: String },
}

/// Where and how to send one registry's requests.
#[derive(Debug, Clone)]
struct Endpoint {
    /// `scheme://host[:port]`, no trailing slash.
    base: String,
    /// Retry over plain http when https fails below HTTP (docker's rule for
    /// insecure registries).
    http_fallback: bool,
    agent: Arc<LazyAgent>,
}

/// An HTTP agent built on first use: reading the system's roots costs
/// about as much as the rest of a small `repoint run`, and most runs never
/// probe.
#[derive(Debug)]
struct LazyAgent {
    /// Trusted on top of the system roots.
    extra: Vec<Certificate<'static>>,
    /// TLS without verification.
    insecure: bool,
    agent: OnceLock<ureq::Agent>,
}

impl LazyAgent {
    fn new(extra: Vec<Certificate<'static>>, insecure: bool) -> Arc<Self> {
        Arc::new(Self {
            extra,
            insecure,
            agent: OnceLock::new(),
        })
    }

    fn get(&self) -> &ureq::Agent {
        self.agent.get_or_init(|| {
            let tls = if self.insecure {
                TlsConfig::builder().disable_verification(true).build()
            } else {
                let mut roots = system_roots();
                roots.extend(self.extra.iter().cloned());
                TlsConfig::builder()
                    .root_certs(RootCerts::from(roots))
                    .build()
            };
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .user_agent(concat!("repoint/", env!("CARGO_PKG_VERSION")))
                .tls_config(tls)
                .build()
                .into()
        })
    }
}

/// One cached answer, filled by the first caller while the others wait.
#[derive(Debug, Default)]
struct Slot {
    answer: OnceLock<(ProbeAnswer, Instant)>,
}

/// A counting semaphore: at most `limit` probes in flight.
#[derive(Debug)]
struct Permits {
    free: Mutex<usize>,
    released: Condvar,
}

impl Permits {
    fn acquire(&self) -> PermitGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.released.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        PermitGuard(self)
    }
}

struct PermitGuard<'a>(&'a Permits);

impl Drop for PermitGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.released.notify_one();
    }
}

/// Answers probes over the network.
#[derive(Debug)]
pub struct RegistryProber {
    settings: ProbeSettings,
    configured: HashMap<String, Endpoint>,
    /// Agents for registries the config does not name: verifying, and not.
    verifying: Arc<LazyAgent>,
    unverified: Arc<LazyAgent>,
    cache: Mutex<HashMap<String, Arc<Slot>>>,
    /// Insecure endpoints that turned out to speak plain http: asked over
    /// http from then on.
    plain_http: Mutex<std::collections::HashSet<String>>,
    permits: Permits,
    requests: AtomicU64,
}

/// The system's trusted roots, read once.
fn system_roots() -> Vec<Certificate<'static>> {
    static ROOTS: OnceLock<Vec<Certificate<'static>>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!("reading system certificates: {e}");
            }
            found
                .certs
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect()
        })
        .clone()
}

impl RegistryProber {
    /// A prober with per-registry settings (keyed by the registry name as
    /// images spell it, normalized: `docker.io`, `quay.io`, `host:port`).
    pub fn new(
        registries: &BTreeMap<String, RegistrySettings>,
        settings: ProbeSettings,
    ) -> Result<Self, ProbeError> {
        let mut configured = HashMap::new();
        for (name, r) in registries {
            let mut extra = Vec::new();
            if let Some(path) = &r.ca {
                let pem = std::fs::read(path).map_err(|source| ProbeError::ReadCa {
                    registry: name.clone(),
                    path: path.clone(),
                    source,
                })?;
                extra.extend(ureq::tls::parse_pem(&pem).filter_map(|item| match item {
                    Ok(PemItem::Certificate(c)) => Some(c.to_owned()),
                    _ => None,
                }));
                if extra.is_empty() {
                    return Err(ProbeError::NoCertificate {
                        registry: name.clone(),
                        path: path.clone(),
                    });
                }
            }
            let target = r
                .endpoint
                .clone()
                .unwrap_or_else(|| repoint_core::probe::api_host(name));
            let (base, http_fallback) = match target.split_once("://") {
                Some(("http" | "https", rest)) if !rest.is_empty() => {
                    (target.trim_end_matches('/').to_string(), false)
                }
                Some(_) => {
                    return Err(ProbeError::BadEndpoint {
                        registry: name.clone(),
                        endpoint: target,
                    });
                }
                None if target.is_empty() || target.contains('/') => {
                    return Err(ProbeError::BadEndpoint {
                        registry: name.clone(),
                        endpoint: target,
                    });
                }
                // Without a scheme, a loopback endpoint is insecure as
                // docker has it: TLS unverified, then plain HTTP.
                None => (
                    format!("https://{target}"),
                    r.insecure || is_loopback(&target),
                ),
            };
            let unverified = r.insecure || (!target.contains("://") && is_loopback(&target));
            configured.insert(
                name.clone(),
                Endpoint {
                    base,
                    http_fallback,
                    agent: LazyAgent::new(extra, unverified),
                },
            );
        }
        Ok(Self {
            permits: Permits {
                free: Mutex::new(settings.concurrency.max(1)),
                released: Condvar::new(),
            },
            settings,
            configured,
            verifying: LazyAgent::new(Vec::new(), false),
            unverified: LazyAgent::new(Vec::new(), true),
            cache: Mutex::new(HashMap::new()),
            plain_http: Mutex::new(std::collections::HashSet::new()),
            requests: AtomicU64::new(0),
        })
    }

    /// HTTP requests sent so far (manifest and token requests).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn endpoint(&self, registry: &str) -> Endpoint {
        if let Some(e) = self.configured.get(registry) {
            return e.clone();
        }
        let host = repoint_core::probe::api_host(registry);
        let insecure = is_loopback(&host);
        Endpoint {
            base: format!("https://{host}"),
            http_fallback: insecure,
            agent: if insecure {
                self.unverified.clone()
            } else {
                self.verifying.clone()
            },
        }
    }

    /// Probe without the cache.
    fn probe_uncached(&self, image: &ImageRef) -> ProbeAnswer {
        self.ask(image).unwrap_or_else(|e| {
            tracing::debug!(image = %image, "probe failed: {e}");
            ProbeAnswer::Unknown
        })
    }

    /// The manifest request, with the anonymous token dance on a `Bearer`
    /// challenge; `Err` for anything below HTTP (unknown).
    fn ask(&self, image: &ImageRef) -> Result<ProbeAnswer, String> {
        let deadline = Instant::now() + self.settings.timeout;
        let endpoint = self.endpoint(&image.registry);
        let agent = endpoint.agent.get();
        let reference = image
            .digest
            .as_deref()
            .or(image.tag.as_deref())
            .unwrap_or("latest");
        let path = format!("/v2/{}/manifests/{reference}", image.repository);
        let plain = |base: &str| base.replacen("https://", "http://", 1);
        let known_plain = endpoint.http_fallback
            && self
                .plain_http
                .lock()
                .is_ok_and(|p| p.contains(&endpoint.base));
        let mut base = if known_plain {
            plain(&endpoint.base)
        } else {
            endpoint.base.clone()
        };
        let status = match self.manifest(agent, &base, &path, None, deadline) {
            Err(e) if endpoint.http_fallback && base.starts_with("https://") => {
                tracing::debug!("{base}: {e}; trying plain http");
                base = plain(&base);
                let retried = self.manifest(agent, &base, &path, None, deadline)?;
                if let Ok(mut p) = self.plain_http.lock() {
                    p.insert(endpoint.base.clone());
                }
                retried
            }
            other => other?,
        };
        // Only a Bearer challenge can be answered anonymously; a Basic one
        // (or none) on a 401 means credentials are required.
        let challenge = match (
            status.code,
            status.challenge.as_deref().and_then(bearer_challenge),
        ) {
            (401, Some(challenge)) => challenge,
            (code, _) => return Ok(answer_for(code)),
        };
        let scope = challenge
            .scope
            .clone()
            .unwrap_or_else(|| format!("repository:{}:pull", image.repository));
        let Some(token) = self.anonymous_token(agent, &challenge, &scope, deadline)? else {
            return Ok(ProbeAnswer::NeedsAuth);
        };
        let retried = self.manifest(agent, &base, &path, Some(&token), deadline)?;
        Ok(answer_for(retried.code))
    }

    /// Send one request within what is left of the probe's deadline.
    fn send(
        &self,
        request: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
        deadline: Instant,
    ) -> Result<ureq::http::Response<ureq::Body>, String> {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or("probe deadline passed")?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        request
            .config()
            .timeout_global(Some(left))
            .build()
            .call()
            .map_err(|e| e.to_string())
    }

    /// `HEAD` the manifest, then `GET` if the registry does not do `HEAD`.
    fn manifest(
        &self,
        agent: &ureq::Agent,
        base: &str,
        path: &str,
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<Status, String> {
        let url = format!("{base}{path}");
        let prepare = |request: ureq::RequestBuilder<ureq::typestate::WithoutBody>| {
            let request = request.header("Accept", ACCEPT);
            match token {
                Some(t) => request.header("Authorization", format!("Bearer {t}")),
                None => request,
            }
        };
        let status = Status::of(&self.send(prepare(agent.head(&url)), deadline)?);
        if !matches!(status.code, 405 | 501) {
            return Ok(status);
        }
        Ok(Status::of(&self.send(prepare(agent.get(&url)), deadline)?))
    }

    /// An anonymous token from the challenge's realm: `Ok(None)` when the
    /// token service refuses (401/403).
    fn anonymous_token(
        &self,
        agent: &ureq::Agent,
        challenge: &Challenge,
        scope: &str,
        deadline: Instant,
    ) -> Result<Option<String>, String> {
        let mut request = agent.get(&challenge.realm).query("scope", scope);
        if let Some(service) = &challenge.service {
            request = request.query("service", service);
        }
        let mut response = self.send(request, deadline)?;
        match response.status().as_u16() {
            200..=299 => {}
            401 | 403 => return Ok(None),
            other => return Err(format!("token service answered {other}")),
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let json: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("token response: {e}"))?;
        json.get("token")
            .or_else(|| json.get("access_token"))
            .and_then(serde_json::Value::as_str)
            .map(|t| Some(t.to_string()))
            .ok_or_else(|| "token response has no token".to_string())
    }
}

/// What a manifest response's status means.
fn answer_for(code: u16) -> ProbeAnswer {
    match code {
        200..=299 => ProbeAnswer::Anonymous,
        401 | 403 => ProbeAnswer::NeedsAuth,
        404 => ProbeAnswer::NotFound,
        _ => ProbeAnswer::Unknown,
    }
}

/// Where a registry name is served when the config says nothing: Docker
/// Hub's API is not at `docker.io`.
/// What matters of a response.
#[derive(Debug)]
struct Status {
    code: u16,
    challenge: Option<String>,
}

impl Status {
    fn of(response: &ureq::http::Response<ureq::Body>) -> Self {
        Self {
            code: response.status().as_u16(),
            challenge: response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        }
    }
}

/// A `Bearer` challenge's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Challenge {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
}

/// Parse `Bearer realm="...",service="...",scope="..."` (RFC 7235
/// auth-params; quoted values may hold commas). `None` for other schemes
/// or a challenge without a realm.
fn bearer_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, params) = header.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    let mut rest = params.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        found.insert(key, value);
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        realm: found.remove("realm")?,
        service: found.remove("service"),
        scope: found.remove("scope"),
    })
}

impl Prober for RegistryProber {
    fn probe(&self, image: &ImageRef) -> ProbeAnswer {
        let key = image.to_string();
        let slot = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = |s: &Arc<Slot>| match (s.answer.get(), self.settings.cache_ttl) {
                (Some((_, at)), Some(ttl)) => at.elapsed() < ttl,
                _ => true,
            };
            match cache.get(&key) {
                Some(s) if fresh(s) => s.clone(),
                _ => {
                    let s = Arc::new(Slot::default());
                    cache.insert(key.clone(), s.clone());
                    s
                }
            }
        };
        slot.answer
            .get_or_init(|| {
                let _permit = self.permits.acquire();
                let answer = self.probe_uncached(image);
                tracing::debug!(image = %key, ?answer, "probed");
                (answer, Instant::now())
            })
            .0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges() {
        assert_eq!(
            bearer_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#
            ),
            Some(Challenge {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
        // Commas inside quotes, spaces after commas, unquoted values.
        let c = bearer_challenge(
            r#"bearer realm="http://127.0.0.1:5001/token", scope="repository:a/b:pull,push", service=reg"#,
        )
        .expect("parsed");
        assert_eq!(c.scope.as_deref(), Some("repository:a/b:pull,push"));
        assert_eq!(c.service.as_deref(), Some("reg"));
        assert_eq!(bearer_challenge(r#"Basic realm="Registry Realm""#), None);
        assert_eq!(bearer_challenge(r#"Bearer service="x""#), None, "no realm");
        assert_eq!(bearer_challenge(r#"Bearer realm="unterminated"#), None);
    }

    #[test]
    fn loopback_registries() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com:5000"));
    }

    #[test]
    fn endpoints_are_checked() {
        let bad = |endpoint: &str| {
            let mut r = BTreeMap::new();
            r.insert(
                "quay.io".to_string(),
                RegistrySettings {
                    endpoint: Some(endpoint.into()),
                    ..Default::default()
                },
            );
            RegistryProber::new(&r, ProbeSettings::default()).expect_err("rejected")
        };
        assert!(
            bad("ftp://x")
                .to_string()
                .contains("registries.quay.io.endpoint")
        );
        assert!(bad("host/path").to_string().contains("not host[:port]"));
    }
}
