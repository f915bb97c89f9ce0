//! Policies as OCI artifacts, in the layout the Wasm ecosystem uses for
//! components (the CNCF TAG Runtime "Wasm OCI artifact" format, as
//! `oci-wasm` writes it): an OCI image manifest whose config has the media
//! type `application/vnd.wasm.config.v0+json` and whose one layer is the
//! component, `application/wasm`.
//!
//! Pulled through the same transport as probes ([`Registries`]: the
//! config's endpoint, CA and insecure settings, docker's loopback rule,
//! Bearer or Basic challenges answered with the configured credentials),
//! every body read with a limit, every operation under one deadline, and
//! every byte checked against its digest. A local cache keyed by digest
//! (content-addressed blobs, plus the digest each tag last resolved to)
//! lets a restart or an offline run use what an earlier run pulled.
//!
//! Why not `oci-client`: it is async (the file pipeline has no runtime),
//! buffers whole layers without a size limit, and has its own idea of
//! insecure registries (plain http only) and none of `registries:`
//! endpoints; repoint's registry settings must mean the same thing for a
//! probe and for a pull.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use repoint_core::ImageRef;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::transport::{Basic, Call, Registries, Session};

/// The manifest's media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config's media type in a Wasm artifact.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The component layer's media type.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The largest manifest read.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// `oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]`, parsed and normalized
/// as an image reference (a name without a registry is on Docker Hub).
pub fn parse_reference(text: &str) -> Result<ImageRef, String> {
    let rest = text
        .strip_prefix("oci://")
        .ok_or_else(|| format!("{text:?} does not start with oci://"))?;
    let image = ImageRef::parse(rest).map_err(|e| format!("{text:?}: {e}"))?;
    if image.tag.is_none() && image.digest.is_none() {
        return Err(format!(
            "{text:?} names no tag or digest: pin it (`:1.0`, or `@sha256:...` to run exactly one build)"
        ));
    }
    if let Some(digest) = &image.digest
        && !digest.starts_with("sha256:")
    {
        return Err(format!("{text:?}: only sha256 digests are supported"));
    }
    Ok(image)
}

/// A pulled policy component.
#[derive(Debug)]
pub struct Pulled {
    /// The component's bytes (checked against `layer_digest`).
    pub bytes: Vec<u8>,
    /// The manifest's digest: what a tag resolved to.
    pub manifest_digest: String,
    /// The component layer's digest.
    pub layer_digest: String,
    /// Read from the cache, without asking the registry.
    pub cached: bool,
    /// For a tag: the digest it resolved to before, when that differs.
    pub previous_digest: Option<String>,
    /// For a tag the registry could not be asked about: why, and that the
    /// cached digest was used.
    pub stale: Option<String>,
}

/// How pulls go.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The cache directory (`blobs/sha256/...`, `tags/...`); `None`: no
    /// cache.
    pub cache: Option<PathBuf>,
    /// Never ask a registry: the cache only.
    pub offline: bool,
    /// All requests of one pull together.
    pub timeout: Duration,
    /// The largest component accepted.
    pub max_bytes: u64,
}

/// Pull the component `reference` names, from the cache where it can.
pub fn pull(
    registries: &Registries,
    reference: &ImageRef,
    basic: Option<Basic>,
    options: &PullOptions,
) -> Result<Pulled, String> {
    let cache = options.cache.as_deref().map(Cache::new);
    let tag_file = |cache: &Cache| {
        reference
            .tag
            .as_deref()
            .map(|tag| cache.tag_path(&reference.registry, &reference.repository, tag))
    };
    let remembered = cache
        .as_ref()
        .and_then(&tag_file)
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|d| d.trim().to_string());
    // A digest names exactly one build: the cache answers without a
    // request. So does a tag when the run is offline.
    let known = reference
        .digest
        .clone()
        .or_else(|| options.offline.then(|| remembered.clone()).flatten());
    if let (Some(cache), Some(digest)) = (&cache, &known)
        && let Some(found) = cache.component(digest, options.max_bytes)?
    {
        return Ok(Pulled {
            cached: true,
            previous_digest: None,
            stale: None,
            ..found
        });
    }
    if options.offline {
        return Err(match &known {
            Some(digest) => format!("{digest} is not in the cache, and the run is offline"),
            None => "the tag was never pulled here, and the run is offline".to_string(),
        });
    }
    let deadline = Instant::now() + options.timeout;
    let mut session = Session::new(registries, reference, "pull", basic, deadline);
    let target = reference
        .digest
        .as_deref()
        .or(reference.tag.as_deref())
        .unwrap_or("latest");
    let api = session.api();
    let manifest = match fetch(
        &mut session,
        &format!("{api}/manifests/{target}"),
        MANIFEST_MEDIA_TYPE,
        MAX_MANIFEST_BYTES,
    ) {
        Ok(manifest) => manifest,
        // The registry could not be reached: a tag pulled before still
        // names what it named then.
        Err(Failure::Unreachable(reason)) => {
            if let (Some(cache), Some(digest)) = (&cache, &remembered)
                && reference.digest.is_none()
                && let Some(found) = cache.component(digest, options.max_bytes)?
            {
                return Ok(Pulled {
                    cached: true,
                    previous_digest: None,
                    stale: Some(reason),
                    ..found
                });
            }
            return Err(reason);
        }
        Err(refused) => return Err(refused.into_reason()),
    };
    let manifest_digest = sha256(&manifest);
    if let Some(digest) = &reference.digest
        && *digest != manifest_digest
    {
        return Err(format!(
            "the registry served a manifest whose digest is {manifest_digest}, not {digest}"
        ));
    }
    let layer = component_layer(&manifest, options.max_bytes)?;
    let bytes = match cache.as_ref().map(|c| c.blob(&layer.digest, layer.size)) {
        Some(Ok(Some(bytes))) => bytes,
        Some(Err(e)) => return Err(e),
        _ => {
            let bytes = fetch(
                &mut session,
                &format!("{api}/blobs/{}", layer.digest),
                "application/octet-stream",
                layer.size,
            )
            .map_err(Failure::into_reason)?;
            check_blob(&bytes, &layer.digest, layer.size)?;
            bytes
        }
    };
    let previous_digest =
        remembered.filter(|d| reference.digest.is_none() && *d != manifest_digest);
    if let Some(cache) = &cache {
        cache.store(&manifest_digest, &manifest)?;
        cache.store(&layer.digest, &bytes)?;
        if let Some(path) = tag_file(cache) {
            write_atomically(&path, manifest_digest.as_bytes())?;
        }
    }
    Ok(Pulled {
        bytes,
        manifest_digest,
        layer_digest: layer.digest,
        cached: false,
        previous_digest,
        stale: None,
    })
}

/// Push `component` as `reference` (its tag, or its digest), with `config`
/// as the artifact's config document; returns the manifest's digest.
pub fn push(
    registries: &Registries,
    reference: &ImageRef,
    component: &[u8],
    config: &Value,
    basic: Option<Basic>,
    timeout: Duration,
) -> Result<String, String> {
    let layer_digest = sha256(component);
    let config = serde_json::to_vec(config).map_err(|e| e.to_string())?;
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer_digest, "size": component.len()}],
    }))
    .map_err(|e| e.to_string())?;
    let manifest_digest = sha256(&manifest);
    let mut session = Session::new(
        registries,
        reference,
        "pull,push",
        basic,
        Instant::now() + timeout,
    );
    for (digest, bytes) in [(&config_digest, &config[..]), (&layer_digest, component)] {
        upload_blob(&mut session, digest, bytes)?;
    }
    let target = reference.tag.as_deref().unwrap_or(manifest_digest.as_str());
    if let Some(digest) = &reference.digest
        && *digest != manifest_digest
    {
        return Err(format!(
            "the artifact's manifest digest is {manifest_digest}, not the {digest} the reference names"
        ));
    }
    let mut response = session.send(&Call {
        method: "PUT",
        target: format!("{}/manifests/{target}", session.api()),
        headers: vec![("Content-Type", MANIFEST_MEDIA_TYPE.to_string())],
        body: Some(&manifest),
    })?;
    expect(&mut response, &[201], "putting the manifest")?;
    Ok(manifest_digest)
}

/// A blob into the repository, unless it is there already.
fn upload_blob(session: &mut Session, digest: &str, bytes: &[u8]) -> Result<(), String> {
    let mut head = session.send(&Call {
        method: "HEAD",
        target: format!("{}/blobs/{digest}", session.api()),
        headers: vec![],
        body: None,
    })?;
    if head.status().as_u16() == 200 {
        return Ok(());
    }
    drain(&mut head);
    let mut start = session.send(&Call {
        method: "POST",
        target: format!("{}/blobs/uploads/", session.api()),
        headers: vec![],
        body: None,
    })?;
    expect(&mut start, &[202], "starting an upload")?;
    let location = start
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("the registry started an upload without a Location")?
        .to_string();
    let separator = if location.contains('?') { '&' } else { '?' };
    let mut put = session.send(&Call {
        method: "PUT",
        target: format!("{location}{separator}digest={digest}"),
        headers: vec![("Content-Type", "application/octet-stream".to_string())],
        body: Some(bytes),
    })?;
    expect(&mut put, &[201], "uploading a blob")
}

/// Read and drop what is left of a response, so the connection can be
/// reused (bounded: an error body is small).
fn drain(response: &mut ureq::http::Response<ureq::Body>) {
    let _ = response
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_vec();
}

/// `Ok` when the status is one of `codes`, else the registry's answer
/// (its error code, never a body longer than a line).
fn expect(
    response: &mut ureq::http::Response<ureq::Body>,
    codes: &[u16],
    doing: &str,
) -> Result<(), String> {
    let status = response.status().as_u16();
    if codes.contains(&status) {
        drain(response);
        return Ok(());
    }
    Err(format!(
        "{doing}: the registry answered {status}{}",
        registry_error(response)
    ))
}

/// ` (CODE: message)` from a distribution error body, or nothing.
fn registry_error(response: &mut ureq::http::Response<ureq::Body>) -> String {
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_vec()
        .unwrap_or_default();
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["errors"].get(0).cloned())
        .map(|e| {
            format!(
                " ({}: {})",
                e["code"].as_str().unwrap_or("?"),
                e["message"].as_str().unwrap_or("")
            )
        })
        .unwrap_or_default()
}

/// Why a fetch failed.
pub(crate) enum Failure {
    /// Nothing answered (network, TLS, deadline).
    Unreachable(String),
    /// The registry answered, but not with the thing.
    Refused(String),
    /// The registry has no such thing (404).
    NotFound(String),
}

impl Failure {
    pub(crate) fn into_reason(self) -> String {
        match self {
            Self::Unreachable(r) | Self::Refused(r) | Self::NotFound(r) => r,
        }
    }
}

/// GET `path` and read at most `limit` bytes of a 200 answer.
pub(crate) fn fetch(
    session: &mut Session,
    path: &str,
    accept: &str,
    limit: u64,
) -> Result<Vec<u8>, Failure> {
    let mut response = session
        .send(&Call {
            method: "GET",
            target: path.to_string(),
            headers: vec![("Accept", accept.to_string())],
            body: None,
        })
        .map_err(Failure::Unreachable)?;
    let status = response.status().as_u16();
    if status != 200 {
        let why = match status {
            401 | 403 => "credentials are needed, or these were refused (see `credentials:`)",
            404 => "not found",
            _ => "",
        };
        let reason = format!(
            "GET {path}: the registry answered {status}{}{}",
            registry_error(&mut response),
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        );
        return Err(if status == 404 {
            Failure::NotFound(reason)
        } else {
            Failure::Refused(reason)
        });
    }
    // One byte past the limit tells "too large" from "exactly the limit".
    let bytes = response
        .body_mut()
        .with_config()
        .limit(limit.saturating_add(1))
        .read_to_vec()
        .map_err(|e| Failure::Unreachable(format!("GET {path}: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(Failure::Refused(format!(
            "GET {path}: larger than the {limit} bytes allowed"
        )));
    }
    Ok(bytes)
}

/// The component layer a manifest lists.
#[derive(Debug)]
struct Layer {
    digest: String,
    size: u64,
}

/// The one `application/wasm` layer of a Wasm artifact's manifest.
fn component_layer(manifest: &[u8], max_bytes: u64) -> Result<Layer, String> {
    let manifest: Value =
        serde_json::from_slice(manifest).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    match manifest["mediaType"].as_str() {
        None | Some(MANIFEST_MEDIA_TYPE) => {}
        Some(other) => {
            return Err(format!(
                "the reference names a {other}, not an OCI image manifest of a Wasm component"
            ));
        }
    }
    let config_type = manifest["config"]["mediaType"].as_str().unwrap_or("none");
    if config_type != CONFIG_MEDIA_TYPE {
        return Err(format!(
            "not a Wasm component artifact: its config is {config_type}, not {CONFIG_MEDIA_TYPE} (push policies with `repoint policy push`)"
        ));
    }
    let layers: Vec<&Value> = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["mediaType"] == LAYER_MEDIA_TYPE)
        .collect();
    let [layer] = layers[..] else {
        return Err(format!(
            "a Wasm component artifact has one {LAYER_MEDIA_TYPE} layer; this one has {}",
            layers.len()
        ));
    };
    let digest = layer["digest"]
        .as_str()
        .filter(|d| is_sha256(d))
        .ok_or("the component layer has no sha256 digest")?
        .to_string();
    let size = layer["size"]
        .as_u64()
        .ok_or("the component layer has no size")?;
    if size > max_bytes {
        return Err(format!(
            "the component is {size} bytes, more than the {max_bytes} allowed"
        ));
    }
    Ok(Layer { digest, size })
}

/// `sha256:<64 lowercase hex>`.
pub(crate) fn is_sha256(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// `sha256:HEX` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A blob is what its descriptor says, or the artifact was altered.
pub(crate) fn check_blob(bytes: &[u8], digest: &str, size: u64) -> Result<(), String> {
    let found = sha256(bytes);
    if found != digest || bytes.len() as u64 != size {
        return Err(format!(
            "the component layer does not match its digest {digest} (got {found}, {} bytes of {size}): the artifact was altered, refused",
            bytes.len()
        ));
    }
    Ok(())
}

/// The on-disk cache: blobs by digest, verified whenever read, and the
/// digest each tag last resolved to.
pub(crate) struct Cache<'a> {
    dir: &'a Path,
}

impl<'a> Cache<'a> {
    pub(crate) fn new(dir: &'a Path) -> Self {
        Self { dir }
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("blobs/sha256").join(hex)
    }

    pub(crate) fn tag_path(&self, registry: &str, repository: &str, tag: &str) -> PathBuf {
        self.dir
            .join("tags")
            .join(registry)
            .join(repository)
            .join(tag)
    }

    /// The cached blob `digest` of `size` bytes, if it is there and still
    /// is what its digest says (a blob that is not is an error: the cache
    /// was altered).
    pub(crate) fn blob(&self, digest: &str, size: u64) -> Result<Option<Vec<u8>>, String> {
        let path = self.blob_path(digest);
        let bytes = match repoint_core::bounded::read_regular_file(&path, size) {
            Ok(bytes) => bytes,
            Err(_) if !path.exists() => return Ok(None),
            Err(e) => return Err(format!("the cache's {}: {e}", path.display())),
        };
        check_blob(&bytes, digest, size)
            .map_err(|e| format!("the cache's {}: {e}", path.display()))?;
        Ok(Some(bytes))
    }

    /// The cached manifest `digest` (at most `limit` bytes), if it is
    /// there; one that is not what its digest says is an error.
    pub(crate) fn manifest(&self, digest: &str, limit: u64) -> Result<Option<Vec<u8>>, String> {
        if !is_sha256(digest) {
            return Ok(None);
        }
        let path = self.blob_path(digest);
        let Ok(manifest) = repoint_core::bounded::read_regular_file(&path, limit) else {
            return Ok(None);
        };
        if sha256(&manifest) != digest {
            return Err(format!(
                "the cache's {} does not match its digest: the cache was altered",
                path.display()
            ));
        }
        Ok(Some(manifest))
    }

    /// The component of the cached manifest `digest`, if both are cached.
    fn component(&self, digest: &str, max_bytes: u64) -> Result<Option<Pulled>, String> {
        let Some(manifest) = self.manifest(digest, MAX_MANIFEST_BYTES)? else {
            return Ok(None);
        };
        let layer = component_layer(&manifest, max_bytes)?;
        Ok(self.blob(&layer.digest, layer.size)?.map(|bytes| Pulled {
            bytes,
            manifest_digest: digest.to_string(),
            layer_digest: layer.digest,
            cached: true,
            previous_digest: None,
            stale: None,
        }))
    }

    pub(crate) fn store(&self, digest: &str, bytes: &[u8]) -> Result<(), String> {
        write_atomically(&self.blob_path(digest), bytes)
    }
}

/// Write `path` whole or not at all (a temporary file beside it, renamed).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("writing the cache's {}: {e}", path.display());
    let dir = path
        .parent()
        .ok_or_else(|| fail(std::io::ErrorKind::NotFound.into()))?;
    std::fs::create_dir_all(dir).map_err(fail)?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("blob"),
        std::process::id()
    ));
    std::fs::write(&temp, bytes).map_err(fail)?;
    std::fs::rename(&temp, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_pinned_oci_names() {
        let r = parse_reference("oci://localhost:5000/policies/mirror:1.2").expect("parses");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("localhost:5000", "policies/mirror", Some("1.2"))
        );
        let d = format!("oci://ghcr.io/acme/p@sha256:{}", "a".repeat(64));
        assert!(parse_reference(&d).expect("digest").digest.is_some());
        for bad in [
            "localhost:5000/p:1",
            "oci://localhost:5000/p",
            "oci://Bad/Name:1",
        ] {
            assert!(parse_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn manifests_must_be_wasm_artifacts() {
        let manifest = |config: &str, layers: Value| {
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST_MEDIA_TYPE,
                "config": {"mediaType": config, "digest": sha256(b"{}"), "size": 2},
                "layers": layers,
            }))
            .expect("json")
        };
        let wasm = |size: u64| json!({"mediaType": LAYER_MEDIA_TYPE, "digest": sha256(b"x"), "size": size});
        let ok = component_layer(&manifest(CONFIG_MEDIA_TYPE, json!([wasm(1)])), 10).expect("ok");
        assert_eq!((ok.digest, ok.size), (sha256(b"x"), 1));
        let image = component_layer(
            &manifest("application/vnd.oci.image.config.v1+json", json!([wasm(1)])),
            10,
        );
        assert!(
            image
                .expect_err("refused")
                .contains("not a Wasm component artifact")
        );
        let two = component_layer(&manifest(CONFIG_MEDIA_TYPE, json!([wasm(1), wasm(1)])), 10);
        assert!(two.expect_err("refused").contains("this one has 2"));
        let big = component_layer(&manifest(CONFIG_MEDIA_TYPE, json!([wasm(11)])), 10);
        assert!(
            big.expect_err("refused")
                .contains("more than the 10 allowed")
        );
        assert!(check_blob(b"y", &sha256(b"x"), 1).is_err());
    }
}
