//! A real registry for tests: Debian's `docker-registry` (the CNCF
//! Distribution server) on a free loopback port, open or behind htpasswd
//! basic auth, and a small client that pushes images through the
//! distribution API.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A running `docker-registry serve`, stopped and cleaned up on drop.
#[derive(Debug)]
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Basic-auth user and password, when the registry requires them.
    pub credentials: Option<(String, String)>,
    /// `https` when it serves TLS, else `http`.
    pub scheme: &'static str,
    child: Child,
    dir: PathBuf,
}

/// The registry binary, or why there is none. CI sets
/// `REPOINT_REQUIRE_REGISTRY`, and then a missing binary fails the test.
pub fn registry_binary() -> Option<PathBuf> {
    let found = crate::find_program("docker-registry");
    if found.is_none() {
        assert!(
            std::env::var_os("REPOINT_REQUIRE_REGISTRY").is_none(),
            "REPOINT_REQUIRE_REGISTRY is set but docker-registry is not on PATH (apt-get install docker-registry)"
        );
        eprintln!("docker-registry is not installed (apt-get install docker-registry): skipping");
    }
    found
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Registry {
    /// Start an open registry, or one requiring `user`/`password` (a bcrypt
    /// htpasswd file written here). `None` when the binary is missing.
    pub fn start(tag: &str, basic_auth: Option<(&str, &str)>) -> Option<Self> {
        Self::start_with(tag, basic_auth, None)
    }

    /// Start a registry serving TLS with this certificate chain and key
    /// (PEM).
    pub fn start_tls(tag: &str, certificate: &str, key: &str) -> Option<Self> {
        Self::start_with(tag, None, Some((certificate, key)))
    }

    fn start_with(
        tag: &str,
        basic_auth: Option<(&str, &str)>,
        tls: Option<(&str, &str)>,
    ) -> Option<Self> {
        let binary = registry_binary()?;
        let dir = crate::temp_dir(&format!("registry-{tag}"));
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.join("data").display()
        );
        if let Some((certificate, key)) = tls {
            std::fs::write(dir.join("tls.crt"), certificate).expect("certificate");
            std::fs::write(dir.join("tls.key"), key).expect("key");
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.join("tls.crt").display(),
                dir.join("tls.key").display()
            ));
        }
        if let Some((user, password)) = basic_auth {
            let hash = bcrypt::hash(password, 4).expect("bcrypt");
            std::fs::write(dir.join("htpasswd"), format!("{user}:{hash}\n")).expect("htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: repoint-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        std::fs::write(dir.join("config.yml"), config).expect("config");
        let log = std::fs::File::create(dir.join("registry.log")).expect("log");
        let child = Command::new(binary)
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let registry = Self {
            addr,
            credentials: basic_auth.map(|(u, p)| (u.to_string(), p.to_string())),
            scheme: if tls.is_some() { "https" } else { "http" },
            child,
            dir,
        };
        registry.wait_ready();
        Some(registry)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "docker-registry did not listen on {}: {}",
            self.addr,
            std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
        );
    }

    /// A client for pushing: it trusts this registry's own certificate
    /// (the test made it; what is under test is the other side).
    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .disable_verification(true)
                    .build(),
            )
            .build()
            .into()
    }

    fn authorize<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.credentials {
            Some((u, p)) => req.header(
                "Authorization",
                format!("Basic {}", repoint_credentials::base64(&format!("{u}:{p}"))),
            ),
            None => req,
        }
    }

    /// Upload one blob; returns its digest.
    fn push_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = format!("sha256:{:x}", Sha256::digest(bytes));
        let agent = Self::agent();
        let start = self
            .authorize(agent.post(format!(
                "{}://{}/v2/{repository}/blobs/uploads/",
                self.scheme, self.addr
            )))
            .send_empty()
            .expect("start upload");
        assert_eq!(start.status().as_u16(), 202, "starting a blob upload");
        let location = start
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .expect("upload location")
            .to_string();
        let location = if location.starts_with('/') {
            format!("{}://{}{location}", self.scheme, self.addr)
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let done = self
            .authorize(agent.put(format!("{location}{separator}digest={digest}")))
            .header("Content-Type", "application/octet-stream")
            .send(bytes)
            .expect("finish upload");
        assert_eq!(done.status().as_u16(), 201, "finishing a blob upload");
        digest
    }

    /// Push a one-layer OCI image as `repository:tag`; returns the
    /// manifest's digest.
    pub fn push(&self, repository: &str, tag: &str) -> String {
        let layer = format!("layer of {repository}:{tag}").into_bytes();
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer_digest = self.push_blob(repository, &layer);
        self.push_manifest(
            repository,
            tag,
            config,
            serde_json::json!([{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                "digest": layer_digest, "size": layer.len()}]),
        )
    }

    /// Push `config` and an OCI image manifest of it and `layers` (already
    /// pushed) as `repository:tag`; returns the manifest's digest.
    fn push_manifest(
        &self,
        repository: &str,
        tag: &str,
        config: &[u8],
        layers: serde_json::Value,
    ) -> String {
        let config_digest = self.push_blob(repository, config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config.len()},
            "layers": layers,
        })
        .to_string();
        let response = self
            .authorize(Self::agent().put(format!(
                "{}://{}/v2/{repository}/manifests/{tag}",
                self.scheme, self.addr
            )))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .send(manifest.as_bytes())
            .expect("put manifest");
        assert_eq!(
            response.status().as_u16(),
            201,
            "pushing the manifest {tag}"
        );
        format!("sha256:{:x}", Sha256::digest(manifest.as_bytes()))
    }

    /// Manifest requests repoint sent for `repository`, from the registry's
    /// access log (`"HEAD /v2/<repository>/manifests/..." ... "repoint/..."`).
    pub fn manifest_requests(&self, repository: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default();
        let needle = format!(" /v2/{repository}/manifests/");
        log.lines()
            .filter(|l| l.contains(&needle) && l.contains("\"repoint/") && l.contains(" - - ["))
            .count()
    }

    /// Requests for `path` (`/v2/hub/app/manifests/1`, any query) the
    /// access log shows from a client whose user agent starts with `agent`
    /// (`containerd/`, `skopeo/`).
    pub fn requests_from(&self, agent: &str, path: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default();
        let (plain, queried) = (format!(" {path} "), format!(" {path}?"));
        let agent = format!("\"{agent}");
        log.lines()
            .filter(|l| l.contains(" - - [") && l.contains(&agent))
            .filter(|l| l.contains(&plain) || l.contains(&queried))
            .count()
    }

    /// Sign the manifest `digest` of `repository` as `cosign sign --key`
    /// does: a simple-signing payload naming the digest, pushed as a
    /// layer of the manifest tagged `sha256-<hex>.sig`, its ECDSA P-256
    /// SHA-256 signature (ASN.1 DER, base64) in the layer's
    /// `dev.cosignproject.cosign/signature` annotation. `signed` is the
    /// digest the payload names (the manifest's own, or another for a
    /// forged one).
    pub fn push_cosign_signature(
        &self,
        repository: &str,
        digest: &str,
        signed: &str,
        key: &CosignKey,
    ) {
        let payload = serde_json::json!({
            "critical": {
                "identity": {"docker-reference": format!("{}/{repository}", self.addr)},
                "image": {"docker-manifest-digest": signed},
                "type": "cosign container image signature",
            },
            "optional": null,
        })
        .to_string();
        let rng = ring::rand::SystemRandom::new();
        let signature = key.pair.sign(&rng, payload.as_bytes()).expect("sign");
        let payload_digest = self.push_blob(repository, payload.as_bytes());
        let config =
            br#"{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let tag = format!("{}.sig", digest.replacen(':', "-", 1));
        self.push_manifest(
            repository,
            &tag,
            config,
            serde_json::json!([{
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "digest": payload_digest, "size": payload.len(),
                "annotations": {"dev.cosignproject.cosign/signature":
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, signature.as_ref())},
            }]),
        );
    }

    /// Where the registry keeps the blob `digest` (`sha256:...`) on disk,
    /// for tests that alter what it serves.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.dir
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cosign key pair: ECDSA P-256, as `cosign generate-key-pair` makes,
/// with the public half as the PEM `cosign.pub` holds.
pub struct CosignKey {
    pair: ring::signature::EcdsaKeyPair,
    /// `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo).
    pub public_pem: String,
}

impl CosignKey {
    pub fn generate() -> Self {
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("key pair");
        // SubjectPublicKeyInfo: id-ecPublicKey, prime256v1, the point.
        let mut der = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        der.extend_from_slice(pair.public_key().as_ref());
        let body = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect();
        let public_pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        );
        Self { pair, public_pem }
    }
}

impl std::fmt::Debug for CosignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosignKey").finish_non_exhaustive()
    }
}
