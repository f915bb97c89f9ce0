//! Where and how a registry's requests go, for probes and artifact pulls
//! and pushes alike: the config's `registries:` settings (endpoint, CA,
//! insecure), docker's rules for insecure and loopback registries (TLS
//! without verification, then plain HTTP, remembered per endpoint), one
//! deadline for all the requests of one operation, and the registry's
//! challenge answered: a Bearer token (anonymous, or with credentials) or
//! Basic credentials.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use repoint_core::probe::{RegistrySettings, is_loopback};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// A registry's settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
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
pub(crate) struct Endpoint {
    /// `scheme://host[:port]`, no trailing slash.
    pub(crate) base: String,
    /// Retry over plain http when https fails below HTTP (docker's rule for
    /// insecure registries).
    pub(crate) http_fallback: bool,
    pub(crate) agent: Arc<LazyAgent>,
}

/// An HTTP agent built on first use: reading the system's roots costs
/// about as much as the rest of a small `repoint run`, and most runs never
/// ask a registry anything.
#[derive(Debug)]
pub(crate) struct LazyAgent {
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

    pub(crate) fn get(&self) -> &ureq::Agent {
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

/// Every registry's endpoint and agent, built from the config's
/// `registries:` (keyed by the registry name as images spell it,
/// normalized: `docker.io`, `quay.io`, `host:port`).
#[derive(Debug)]
pub struct Registries {
    configured: HashMap<String, Endpoint>,
    /// Agents for registries the config does not name: verifying, and not.
    verifying: Arc<LazyAgent>,
    unverified: Arc<LazyAgent>,
    /// Insecure endpoints that turned out to speak plain http: asked over
    /// http from then on.
    plain_http: Mutex<HashSet<String>>,
    requests: AtomicU64,
}

impl Registries {
    /// The endpoints of `registries`; a CA that cannot be read or an
    /// endpoint that is not one is an error naming the setting.
    pub fn new(registries: &BTreeMap<String, RegistrySettings>) -> Result<Self, SettingsError> {
        let mut configured = HashMap::new();
        for (name, r) in registries {
            let mut extra = Vec::new();
            if let Some(path) = &r.ca {
                let pem = std::fs::read(path).map_err(|source| SettingsError::ReadCa {
                    registry: name.clone(),
                    path: path.clone(),
                    source,
                })?;
                extra.extend(ureq::tls::parse_pem(&pem).filter_map(|item| match item {
                    Ok(PemItem::Certificate(c)) => Some(c.to_owned()),
                    _ => None,
                }));
                if extra.is_empty() {
                    return Err(SettingsError::NoCertificate {
                        registry: name.clone(),
                        path: path.clone(),
                    });
                }
            }
            let target = r
                .endpoint
                .clone()
                .unwrap_or_else(|| repoint_core::probe::api_host(name));
            let bad = || SettingsError::BadEndpoint {
                registry: name.clone(),
                endpoint: target.clone(),
            };
            let (base, http_fallback) = match target.split_once("://") {
                Some(("http" | "https", rest)) if !rest.is_empty() => {
                    (target.trim_end_matches('/').to_string(), false)
                }
                Some(_) => return Err(bad()),
                None if target.is_empty() || target.contains('/') => return Err(bad()),
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
            configured,
            verifying: LazyAgent::new(Vec::new(), false),
            unverified: LazyAgent::new(Vec::new(), true),
            plain_http: Mutex::new(HashSet::new()),
            requests: AtomicU64::new(0),
        })
    }

    /// HTTP requests sent so far (every kind, tokens included).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn endpoint(&self, registry: &str) -> Endpoint {
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

    /// The base URL to use for `endpoint`: plain http once it turned out
    /// to speak it.
    pub(crate) fn base_of(&self, endpoint: &Endpoint) -> String {
        let known_plain = endpoint.http_fallback
            && self
                .plain_http
                .lock()
                .is_ok_and(|p| p.contains(&endpoint.base));
        if known_plain {
            plain(&endpoint.base)
        } else {
            endpoint.base.clone()
        }
    }

    /// Remember that `endpoint` speaks plain http.
    pub(crate) fn remember_plain(&self, endpoint: &Endpoint) {
        if let Ok(mut p) = self.plain_http.lock() {
            p.insert(endpoint.base.clone());
        }
    }

    /// Send one request within what is left of `deadline`.
    pub(crate) fn send<S: ureq::AsSendBody>(
        &self,
        agent: &ureq::Agent,
        request: ureq::http::Request<S>,
        deadline: Instant,
    ) -> Result<ureq::http::Response<ureq::Body>, String> {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or("deadline passed")?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let request = agent
            .configure_request(request)
            .timeout_global(Some(left))
            .build();
        agent.run(request).map_err(|e| e.to_string())
    }

    /// A token from the challenge's realm for `scope`, anonymous or with
    /// `basic`: `Ok(None)` when the token service refuses (401/403).
    pub(crate) fn token(
        &self,
        agent: &ureq::Agent,
        challenge: &Challenge,
        scope: &str,
        basic: Option<&Basic>,
        deadline: Instant,
    ) -> Result<Option<String>, String> {
        let mut url = format!(
            "{}{}scope={}",
            challenge.realm,
            if challenge.realm.contains('?') {
                "&"
            } else {
                "?"
            },
            percent(scope)
        );
        if let Some(service) = &challenge.service {
            url.push_str(&format!("&service={}", percent(service)));
        }
        let mut request = ureq::http::Request::get(url);
        if let Some(basic) = basic {
            request = request.header("Authorization", basic.header());
        }
        let request = request.body(()).map_err(|e| e.to_string())?;
        let mut response = self.send(agent, request, deadline)?;
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

/// `https://` made `http://`.
pub(crate) fn plain(base: &str) -> String {
    base.replacen("https://", "http://", 1)
}

/// A query value percent-encoded (RFC 3986 unreserved characters kept).
fn percent(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Credentials for a registry: a Basic challenge, or the token service.
/// The password never appears in `Debug`.
#[derive(Clone)]
pub struct Basic {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl std::fmt::Debug for Basic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Basic")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Basic {
    /// The `Authorization` header value.
    pub(crate) fn header(&self) -> String {
        use base64::Engine as _;
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// The response's status and its `WWW-Authenticate` challenge.
#[derive(Debug)]
pub(crate) struct Status {
    pub(crate) code: u16,
    pub(crate) challenge: Option<String>,
}

impl Status {
    pub(crate) fn of(response: &ureq::http::Response<ureq::Body>) -> Self {
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
pub(crate) struct Challenge {
    pub(crate) realm: String,
    pub(crate) service: Option<String>,
    pub(crate) scope: Option<String>,
}

/// The `Bearer` challenge of a `WWW-Authenticate` header (RFC 6750
/// parameters, quoted or not); `None` for another scheme or no realm.
pub(crate) fn bearer_challenge(header: &str) -> Option<Challenge> {
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

/// One operation's requests to one repository: the endpoint and scheme
/// that answered, the authorization once a challenge was answered (so a
/// push's many requests ask for a token once), and one deadline for all.
pub struct Session<'a> {
    registries: &'a Registries,
    endpoint: Endpoint,
    base: String,
    repository: String,
    /// `pull`, or `pull,push`.
    actions: &'static str,
    basic: Option<Basic>,
    authorization: Option<String>,
    deadline: Instant,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The authorization is a token or a password: never printed.
        f.debug_struct("Session")
            .field("base", &self.base)
            .field("repository", &self.repository)
            .field("actions", &self.actions)
            .field("basic", &self.basic)
            .finish_non_exhaustive()
    }
}

/// A request of a [`Session`]: method, a path under the endpoint (or an
/// absolute URL the registry handed out, such as an upload location),
/// headers and a body.
pub(crate) struct Call<'b> {
    pub(crate) method: &'static str,
    pub(crate) target: String,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Option<&'b [u8]>,
}

impl<'a> Session<'a> {
    /// A session for the repository of `image`.
    pub fn new(
        registries: &'a Registries,
        image: &repoint_core::ImageRef,
        actions: &'static str,
        basic: Option<Basic>,
        deadline: Instant,
    ) -> Self {
        let endpoint = registries.endpoint(&image.registry);
        let base = registries.base_of(&endpoint);
        Self {
            registries,
            endpoint,
            base,
            repository: image.repository.clone(),
            actions,
            basic,
            authorization: None,
            deadline,
        }
    }

    /// The repository's API path prefix, `/v2/<repository>`.
    pub(crate) fn api(&self) -> String {
        format!("/v2/{}", self.repository)
    }

    /// Send `call`, answering a 401's challenge once: a Bearer token for
    /// the repository (anonymous, or with the credentials), or the Basic
    /// credentials. An endpoint that may fall back to plain http does so
    /// when https fails below HTTP. `Err` for anything below HTTP.
    pub(crate) fn send(&mut self, call: &Call) -> Result<ureq::http::Response<ureq::Body>, String> {
        let response = match self.send_once(call) {
            Err(e) if self.endpoint.http_fallback && self.base.starts_with("https://") => {
                tracing::debug!("{}: {e}; trying plain http", self.base);
                self.base = plain(&self.base);
                let retried = self.send_once(call)?;
                self.registries.remember_plain(&self.endpoint);
                retried
            }
            other => other?,
        };
        if response.status().as_u16() != 401 {
            return Ok(response);
        }
        let status = Status::of(&response);
        let challenge = status.challenge.as_deref().unwrap_or_default();
        let agent = self.endpoint.agent.get();
        if let Some(bearer) = bearer_challenge(challenge) {
            let scope = format!("repository:{}:{}", self.repository, self.actions);
            match self.registries.token(
                agent,
                &bearer,
                &scope,
                self.basic.as_ref(),
                self.deadline,
            )? {
                Some(token) => self.authorization = Some(format!("Bearer {token}")),
                None => return Ok(response),
            }
        } else if challenge
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("basic")
            && let Some(basic) = &self.basic
        {
            self.authorization = Some(basic.header());
        } else {
            return Ok(response);
        }
        self.send_once(call)
    }

    fn send_once(&self, call: &Call) -> Result<ureq::http::Response<ureq::Body>, String> {
        let url = if call.target.starts_with("http://") || call.target.starts_with("https://") {
            call.target.clone()
        } else {
            format!("{}{}", self.base, call.target)
        };
        let mut request = ureq::http::Request::builder().method(call.method).uri(url);
        for (name, value) in &call.headers {
            request = request.header(*name, value);
        }
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let agent = self.endpoint.agent.get();
        match call.body {
            Some(body) => {
                let request = request.body(body).map_err(|e| e.to_string())?;
                self.registries.send(agent, request, self.deadline)
            }
            None => {
                let request = request.body(()).map_err(|e| e.to_string())?;
                self.registries.send(agent, request, self.deadline)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the README says: neither the password nor the authorization a
    /// session holds shows in its `Debug` form.
    #[test]
    fn debug_forms_leave_secrets_out() {
        let basic = Basic {
            username: "robot".into(),
            password: "hunter2-secret".into(),
        };
        let registries = Registries::new(&BTreeMap::new()).expect("registries");
        let image = repoint_core::ImageRef::parse("registry.example/p/m:1").expect("image");
        let mut session = Session::new(
            &registries,
            &image,
            "pull",
            Some(basic.clone()),
            Instant::now(),
        );
        session.authorization = Some("Bearer token-secret".into());
        for shown in [format!("{basic:?}"), format!("{session:?}")] {
            assert!(shown.contains("robot"), "{shown}");
            assert!(
                !shown.contains("hunter2-secret") && !shown.contains("token-secret"),
                "{shown}"
            );
        }
    }
}
