//! Registry credentials, kept out of sight.
//!
//! Credentials come from a docker `config.json` (its `auths`, or a
//! credential helper run as docker runs it), from a username with a
//! password in an environment variable or a file, or from an existing
//! `kubernetes.io/dockerconfigjson` (or legacy `kubernetes.io/dockercfg`)
//! Secret manifest. They are held in
//! [`Password`], whose `Debug` and `Display` print `<redacted>`, and leave
//! this crate only inside a generated Secret's data
//! ([`dockerconfigjson`]). Error messages name the source and the
//! registry, never a value read from it.
//!
//! Depends on repoint-core (registry names, reading Secret manifests) and
//! `base64`; no network stack.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

/// A secret string. It cannot be printed by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wrap a secret.
    pub fn new(s: String) -> Self {
        Self(s)
    }

    /// The secret itself; call only to put it where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A username and its password (or token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user name (not secret).
    pub username: String,
    /// The password or token.
    pub password: Password,
}

/// Where one registry's credentials come from (the config's
/// `credentials:` entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A docker config.json; `None` means the default location
    /// (`$DOCKER_CONFIG/config.json`, then `~/.docker/config.json`).
    DockerConfig(Option<PathBuf>),
    /// A username with a password from an environment variable.
    PasswordEnv {
        /// User name.
        username: String,
        /// Variable name.
        variable: String,
    },
    /// A username with a password from a file (trailing newline ignored).
    PasswordFile {
        /// User name.
        username: String,
        /// The file.
        path: PathBuf,
    },
    /// A `kubernetes.io/dockerconfigjson` Secret manifest.
    SecretFile(PathBuf),
}

/// Why credentials could not be had. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (the I/O error).
        reason: String,
    },
    /// A file's content is not what it should be.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, without quoting the content.
        reason: String,
    },
    /// An environment variable is not set.
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    /// The source has nothing for this registry.
    #[error("{source_name} has no credentials for {registry}")]
    NotFound {
        /// Where we looked.
        source_name: String,
        /// The registry.
        registry: String,
    },
    /// A docker credential helper failed.
    #[error("credential helper docker-credential-{helper} failed for {registry}: {reason}")]
    Helper {
        /// Helper name.
        helper: String,
        /// The registry.
        registry: String,
        /// Why: the exit status, never the helper's output (which may
        /// hold the secret).
        reason: String,
    },
}

/// Normalize a registry the way docker keys credentials: no scheme, no
/// path, no trailing slash, lower case; `docker.io`, `index.docker.io`,
/// `registry-1.docker.io` and `https://index.docker.io/v1/` are one
/// registry, `docker.io`. Ports count.
pub fn registry_key(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        _ => host,
    }
}

/// The key a dockerconfigjson uses for a registry: Docker Hub's legacy URL,
/// which the kubelet and docker both match, or the host as is.
pub fn auths_key(registry: &str) -> String {
    match registry_key(registry).as_str() {
        "docker.io" => "https://index.docker.io/v1/".to_string(),
        other => other.to_string(),
    }
}

fn read(path: &Path) -> Result<String, CredentialError> {
    std::fs::read_to_string(path).map_err(|e| CredentialError::Read {
        path: path.to_path_buf(),
        reason: e.kind().to_string(),
    })
}

/// The default docker config: `$DOCKER_CONFIG/config.json`, then
/// `~/.docker/config.json`.
pub fn default_docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// One `auths` entry: `auth` (base64 `user:password`) or `username` and
/// `password`; an `identitytoken` is used as the password with the
/// `<token>` user, as docker does.
fn auth_entry(entry: &Value, path: &Path, registry: &str) -> Result<Credential, CredentialError> {
    let malformed = |what: &str| CredentialError::Malformed {
        path: path.to_path_buf(),
        reason: format!("the entry for {registry} {what}"),
    };
    let field = |k: &str| {
        entry
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(token) = field("identitytoken") {
        return Ok(Credential {
            username: "<token>".into(),
            password: Password::new(token.to_string()),
        });
    }
    if let (Some(u), Some(p)) = (field("username"), field("password")) {
        return Ok(Credential {
            username: u.to_string(),
            password: Password::new(p.to_string()),
        });
    }
    let auth =
        field("auth").ok_or_else(|| malformed("has neither auth nor username and password"))?;
    let decoded = BASE64
        .decode(auth.trim())
        .map_err(|_| malformed("has an auth that is not base64"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| malformed("has an auth that is not UTF-8"))?;
    let (u, p) = decoded
        .split_once(':')
        .ok_or_else(|| malformed("has an auth that is not user:password"))?;
    Ok(Credential {
        username: u.to_string(),
        password: Password::new(p.to_string()),
    })
}

/// Find `registry` in a dockerconfigjson-shaped value (`{"auths": {...}}`).
fn from_auths(
    doc: &Value,
    path: &Path,
    registry: &str,
) -> Result<Option<Credential>, CredentialError> {
    let Some(auths) = doc.get("auths") else {
        return Ok(None);
    };
    let auths = auths
        .as_object()
        .ok_or_else(|| CredentialError::Malformed {
            path: path.to_path_buf(),
            reason: "`auths` is not an object".into(),
        })?;
    let want = registry_key(registry);
    match auths.iter().find(|(k, _)| registry_key(k) == want) {
        Some((_, entry)) => auth_entry(entry, path, registry).map(Some),
        None => Ok(None),
    }
}

/// The most a credential helper may answer: a JSON object of a user name
/// and a token.
const HELPER_OUTPUT_LIMIT: u64 = 1 << 20;

/// Run `docker-credential-<helper> get` with the registry on stdin.
fn run_helper(helper: &str, registry: &str) -> Result<Credential, CredentialError> {
    let fail = |reason: String| CredentialError::Helper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        reason,
    };
    let server = if registry_key(registry) == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    };
    // The helper's stderr is never read: a helper may print anything there,
    // its secret included. Its stdout is read to a bound, and only parsed.
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {}", e.kind())))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| fail(format!("cannot write to it: {}", e.kind())))?;
    }
    let mut stdout = Vec::new();
    if let Some(out) = child.stdout.take() {
        use std::io::Read as _;
        out.take(HELPER_OUTPUT_LIMIT + 1)
            .read_to_end(&mut stdout)
            .map_err(|e| fail(format!("cannot read its answer: {}", e.kind())))?;
    }
    if stdout.len() as u64 > HELPER_OUTPUT_LIMIT {
        let _ = child.kill();
        let _ = child.wait();
        return Err(fail(format!(
            "its answer is larger than {HELPER_OUTPUT_LIMIT} bytes"
        )));
    }
    let status = child.wait().map_err(|e| fail(e.kind().to_string()))?;
    if !status.success() {
        // What a failing helper printed is not repeated: a helper that
        // printed its answer and then failed would put the secret in the
        // message. Docker's helpers say "credentials not found" when they
        // have none; that much is told.
        let why = if String::from_utf8_lossy(&stdout).contains("credentials not found") {
            "it has no credentials for this registry"
        } else {
            "its output is not shown, as it may hold a secret"
        };
        return Err(fail(format!("{status}; {why}")));
    }
    let out = std::process::Output {
        status,
        stdout,
        stderr: Vec::new(),
    };
    let v: Value =
        serde_json::from_slice(&out.stdout).map_err(|_| fail("its answer is not JSON".into()))?;
    let user = v
        .get("Username")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let secret = v
        .get("Secret")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("its answer has no Secret".into()))?;
    Ok(Credential {
        username: user.to_string(),
        password: Password::new(secret.to_string()),
    })
}

fn docker_config(path: &Path, registry: &str) -> Result<Credential, CredentialError> {
    let text = read(path)?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| CredentialError::Malformed {
        path: path.to_path_buf(),
        reason: format!("not valid JSON (line {}, column {})", e.line(), e.column()),
    })?;
    let want = registry_key(registry);
    // A per-registry helper wins, then an explicit entry, then the store.
    if let Some(helpers) = doc.get("credHelpers").and_then(Value::as_object)
        && let Some((_, helper)) = helpers.iter().find(|(k, _)| registry_key(k) == want)
    {
        let helper = helper.as_str().ok_or_else(|| CredentialError::Malformed {
            path: path.to_path_buf(),
            reason: format!("credHelpers entry for {registry} is not a string"),
        })?;
        return run_helper(helper, registry);
    }
    if let Some(found) = from_auths(&doc, path, registry)? {
        return Ok(found);
    }
    if let Some(store) = doc.get("credsStore").and_then(Value::as_str) {
        return run_helper(store, registry);
    }
    Err(CredentialError::NotFound {
        source_name: path.display().to_string(),
        registry: registry.to_string(),
    })
}

fn secret_file(path: &Path, registry: &str) -> Result<Credential, CredentialError> {
    let config = read_pull_secret(path)?;
    let doc: Value = serde_json::from_str(&config).map_err(|_| CredentialError::Malformed {
        path: path.to_path_buf(),
        reason: ".dockerconfigjson is not JSON".into(),
    })?;
    from_auths(&doc, path, registry)?.ok_or_else(|| CredentialError::NotFound {
        source_name: path.display().to_string(),
        registry: registry.to_string(),
    })
}

/// The `.dockerconfigjson` of the pull Secret in a manifest file.
pub fn read_pull_secret(path: &Path) -> Result<String, CredentialError> {
    let malformed = |reason: &str| CredentialError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let text = read(path)?;
    let stream = repoint_core::Stream::parse(
        &path.display().to_string(),
        text,
        repoint_core::Limits::default(),
    )
    .map_err(|e| {
        malformed(&format!(
            "not a YAML manifest (line {}, column {})",
            e.line, e.column
        ))
    })?;
    let secret = stream
        .documents()
        .iter()
        .map(|d| &d.value)
        .find(|v| v.get("kind").and_then(Value::as_str) == Some("Secret"))
        .ok_or_else(|| malformed("holds no Secret"))?;
    dockerconfigjson_of(secret).map_err(|reason| malformed(&reason.to_string()))
}

/// Why a pull Secret's credentials could not be read. The messages name
/// the Secret's key (`.dockerconfigjson`, or `.dockercfg` for the legacy
/// type) and never quote its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedSecret {
    #[error(
        "is not a Secret of type kubernetes.io/dockerconfigjson (or the legacy kubernetes.io/dockercfg)"
    )]
    WrongType,
    #[error("data.{0} is not base64")]
    NotBase64(&'static str),
    #[error("data.{0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("has no {0}")]
    Missing(&'static str),
    #[error("{0} is not a JSON object")]
    NotJson(&'static str),
}

/// The `.dockerconfigjson` document of a pull Secret object (from `data` or
/// `stringData`). A legacy `kubernetes.io/dockercfg` Secret (what older
/// clusters and OpenShift's per-ServiceAccount secrets still carry) holds
/// the same registry entries without the `auths` wrapper, under
/// `.dockercfg`: it is read and returned in the modern form, so every
/// Secret repoint writes from it is of the modern type.
pub fn dockerconfigjson_of(secret: &Value) -> Result<String, MalformedSecret> {
    let (key, legacy) = match secret.get("type").and_then(Value::as_str) {
        Some("kubernetes.io/dockerconfigjson") => (".dockerconfigjson", false),
        Some("kubernetes.io/dockercfg") => (".dockercfg", true),
        _ => return Err(MalformedSecret::WrongType),
    };
    let field = |section: &str| {
        secret
            .get(section)
            .and_then(|data| data.get(key))
            .and_then(Value::as_str)
    };
    let config = if let Some(data) = field("data") {
        let bytes = BASE64
            .decode(data.trim())
            .map_err(|_| MalformedSecret::NotBase64(key))?;
        String::from_utf8(bytes).map_err(|_| MalformedSecret::NotUtf8(key))?
    } else if let Some(s) = field("stringData") {
        s.to_string()
    } else {
        return Err(MalformedSecret::Missing(key));
    };
    let Ok(Value::Object(entries)) = serde_json::from_str::<Value>(&config) else {
        return Err(MalformedSecret::NotJson(key));
    };
    if legacy {
        return Ok(json!({ "auths": entries }).to_string());
    }
    Ok(config)
}

impl Source {
    /// Look up the credentials for `registry`.
    pub fn resolve(&self, registry: &str) -> Result<Credential, CredentialError> {
        match self {
            Self::DockerConfig(path) => {
                let path = match path {
                    Some(p) => p.clone(),
                    None => default_docker_config().ok_or_else(|| CredentialError::NotFound {
                        source_name: "the default docker config (no $DOCKER_CONFIG or $HOME)"
                            .into(),
                        registry: registry.to_string(),
                    })?,
                };
                docker_config(&path, registry)
            }
            Self::PasswordEnv { username, variable } => {
                let value = std::env::var(variable)
                    .map_err(|_| CredentialError::MissingEnv(variable.clone()))?;
                Ok(Credential {
                    username: username.clone(),
                    password: Password::new(value),
                })
            }
            Self::PasswordFile { username, path } => Ok(Credential {
                username: username.clone(),
                password: Password::new(read(path)?.trim_end_matches(['\n', '\r']).to_string()),
            }),
            Self::SecretFile(path) => secret_file(path, registry),
        }
    }
}

/// The `.dockerconfigjson` document for these credentials, keyed as
/// docker and the kubelet expect.
pub fn dockerconfigjson(credentials: &BTreeMap<String, Credential>) -> String {
    let auths: serde_json::Map<String, Value> = credentials
        .iter()
        .map(|(registry, c)| {
            let auth = BASE64.encode(format!("{}:{}", c.username, c.password.expose()));
            (
                auths_key(registry),
                json!({"username": c.username, "password": c.password.expose(), "auth": auth}),
            )
        })
        .collect();
    json!({ "auths": auths }).to_string()
}

/// The `kubernetes.io/dockerconfigjson` Secret `namespace/name` carrying
/// `dockerconfigjson`, labelled as made by repoint (which is what lets
/// repoint update it later, and nothing else it finds).
pub fn pull_secret(namespace: &str, name: &str, dockerconfigjson: &str) -> Value {
    let (label, value) = repoint_core::MANAGED_BY;
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": repoint_core::actions::metadata(namespace, name, json!({ label: value })),
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64(dockerconfigjson)},
    })
}

/// The registries (normalized) a dockerconfigjson document has entries for.
pub fn registries_in(dockerconfigjson: &str) -> Vec<String> {
    serde_json::from_str::<Value>(dockerconfigjson)
        .ok()
        .and_then(|v| {
            v.get("auths")
                .and_then(Value::as_object)
                .map(|m| m.keys().map(|k| registry_key(k)).collect())
        })
        .unwrap_or_default()
}

/// Base64, for Secret `data`.
pub fn base64(s: &str) -> String {
    BASE64.encode(s)
}

/// Decode base64 Secret data.
pub fn unbase64(s: &str) -> Option<String> {
    BASE64
        .decode(s.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_keys_normalize_like_docker() {
        for s in [
            "docker.io",
            "index.docker.io",
            "https://index.docker.io/v1/",
            "registry-1.docker.io",
        ] {
            assert_eq!(registry_key(s), "docker.io", "{s}");
        }
        assert_eq!(registry_key("https://Quay.io/"), "quay.io");
        assert_eq!(registry_key("http://localhost:5000/v2/"), "localhost:5000");
        assert_ne!(registry_key("localhost:5000"), registry_key("localhost"));
        assert_eq!(auths_key("docker.io"), "https://index.docker.io/v1/");
    }

    #[test]
    fn passwords_never_print() {
        let c = Credential {
            username: "robot".into(),
            password: Password::new("hunter2".into()),
        };
        assert_eq!(
            format!("{c:?}"),
            "Credential { username: \"robot\", password: <redacted> }"
        );
        assert_eq!(c.password.to_string(), "<redacted>");
    }

    #[test]
    fn dockerconfigjson_round_trips() {
        let mut m = BTreeMap::new();
        m.insert(
            "docker.io".to_string(),
            Credential {
                username: "u".into(),
                password: Password::new("p".into()),
            },
        );
        let doc = dockerconfigjson(&m);
        let v: Value = serde_json::from_str(&doc).expect("json");
        assert_eq!(v["auths"]["https://index.docker.io/v1/"]["auth"], "dTpw");
        assert_eq!(registries_in(&doc), ["docker.io"]);
        let found = from_auths(&v, Path::new("x"), "index.docker.io")
            .expect("ok")
            .expect("found");
        assert_eq!(found.password.expose(), "p");
    }

    #[test]
    fn legacy_dockercfg_secrets_read_as_dockerconfigjson() {
        let entries = r#"{"https://index.docker.io/v1/":{"auth":"dTpw"}}"#;
        let modern = json!({"auths": serde_json::from_str::<Value>(entries).expect("json")});
        let data =
            json!({"type": "kubernetes.io/dockercfg", "data": {".dockercfg": base64(entries)}});
        let string_data =
            json!({"type": "kubernetes.io/dockercfg", "stringData": {".dockercfg": entries}});
        for secret in [data, string_data] {
            let read = dockerconfigjson_of(&secret).expect("legacy secret");
            assert_eq!(serde_json::from_str::<Value>(&read).expect("json"), modern);
            assert_eq!(registries_in(&read), ["docker.io"]);
        }
        // The legacy key is what a malformed legacy Secret's error names.
        let wrong_key = json!({"type": "kubernetes.io/dockercfg", "data": {".dockerconfigjson": base64(entries)}});
        assert_eq!(
            dockerconfigjson_of(&wrong_key)
                .expect_err("no key")
                .to_string(),
            "has no .dockercfg"
        );
        let not_object =
            json!({"type": "kubernetes.io/dockercfg", "stringData": {".dockercfg": "[1]"}});
        assert_eq!(
            dockerconfigjson_of(&not_object)
                .expect_err("not an object")
                .to_string(),
            ".dockercfg is not a JSON object"
        );
        let opaque = json!({"type": "Opaque", "stringData": {".dockercfg": entries}});
        assert_eq!(
            dockerconfigjson_of(&opaque),
            Err(MalformedSecret::WrongType)
        );
    }
}
