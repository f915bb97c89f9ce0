//! Registry access over the OCI distribution API, through one transport
//! ([`transport`]: the config's `registries:` settings, TLS, Bearer and
//! Basic challenges): anonymous image probes (here), and policies as Wasm
//! OCI artifacts ([`artifact`]).
//!
//! A probe asks a registry, anonymously, whether an image can be pulled:
//! the answer behind the `probe-image` host import. This is what a
//! vendor's installer does: request the image manifest
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
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use repoint_core::ImageRef;
use repoint_core::probe::{ProbeAnswer, Prober};

pub mod artifact;
pub mod signature;
pub mod transport;

pub use transport::{Basic, Registries, SettingsError};
use transport::{Status, bearer_challenge};

/// Media types a manifest request accepts: OCI and Docker, single-platform
/// manifests and indexes, as container runtimes send them.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The settings live in repoint-core, so that the config crate can hold
/// them without this crate's HTTP and TLS stack.
pub use repoint_core::probe::{ProbeSettings, RegistrySettings};

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
    registries: Registries,
    cache: Mutex<HashMap<String, Arc<Slot>>>,
    permits: Permits,
}

impl RegistryProber {
    /// A prober with per-registry settings (keyed by the registry name as
    /// images spell it, normalized: `docker.io`, `quay.io`, `host:port`).
    pub fn new(
        registries: &BTreeMap<String, RegistrySettings>,
        settings: ProbeSettings,
    ) -> Result<Self, SettingsError> {
        Ok(Self {
            permits: Permits {
                free: Mutex::new(settings.concurrency.max(1)),
                released: Condvar::new(),
            },
            settings,
            registries: Registries::new(registries)?,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// HTTP requests sent so far (manifest and token requests).
    pub fn requests_sent(&self) -> u64 {
        self.registries.requests_sent()
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
        let registries = &self.registries;
        let endpoint = registries.endpoint(&image.registry);
        let agent = endpoint.agent.get();
        let reference = image
            .digest
            .as_deref()
            .or(image.tag.as_deref())
            .unwrap_or("latest");
        let path = format!("/v2/{}/manifests/{reference}", image.repository);
        let mut base = registries.base_of(&endpoint);
        let status = match self.manifest(agent, &base, &path, None, deadline) {
            Err(e) if endpoint.http_fallback && base.starts_with("https://") => {
                tracing::debug!("{base}: {e}; trying plain http");
                base = transport::plain(&base);
                let retried = self.manifest(agent, &base, &path, None, deadline)?;
                registries.remember_plain(&endpoint);
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
        let Some(token) = registries.token(agent, &challenge, &scope, None, deadline)? else {
            return Ok(ProbeAnswer::NeedsAuth);
        };
        let retried = self.manifest(agent, &base, &path, Some(&token), deadline)?;
        Ok(answer_for(retried.code))
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
        let request = |method: &str| {
            let request = ureq::http::Request::builder()
                .method(method)
                .uri(&url)
                .header("Accept", ACCEPT);
            match token {
                Some(t) => request.header("Authorization", format!("Bearer {t}")),
                None => request,
            }
            .body(())
            .map_err(|e| e.to_string())
        };
        let status = Status::of(&self.registries.send(agent, request("HEAD")?, deadline)?);
        if !matches!(status.code, 405 | 501) {
            return Ok(status);
        }
        Ok(Status::of(&self.registries.send(
            agent,
            request("GET")?,
            deadline,
        )?))
    }
}

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
    use crate::transport::Challenge;
    use repoint_core::probe::is_loopback;

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
