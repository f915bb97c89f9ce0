//! `module: oci://...`: a policy pulled from a registry with the config's
//! `registries:` settings and `credentials:`, cached by digest under the
//! runtime's cache directory (`oci/`), so a restart or an offline run uses
//! what was pulled before. A tag is resolved once per load and its digest
//! logged; a digest that changed behind a tag is a warning.

use std::path::PathBuf;

use repoint_config::Config;
use repoint_registry::artifact::{self, PullOptions};
use repoint_registry::signature::{self, PublicKey};
use repoint_registry::{Basic, Registries};

pub use repoint_registry::artifact::{Pulled, parse_reference, sha256};

/// How long one pull or push (all its requests together) may take.
pub const PULL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The cache of pulled artifacts under the runtime's `cache_dir`.
pub fn cache_dir(runtime_cache: Option<&std::path::Path>) -> Option<PathBuf> {
    runtime_cache.map(|dir| dir.join("oci"))
}

/// The Basic credentials `config` has for `registry`, if any. An error
/// names the credential entry, never its secret.
pub fn credentials_for(config: &Config, registry: &str) -> Result<Option<Basic>, String> {
    let sources = config.credential_sources().map_err(|e| e.to_string())?;
    let Some((_, source)) = sources.iter().find(|(r, _)| r == registry) else {
        return Ok(None);
    };
    let credential = source.resolve(registry).map_err(|e| e.to_string())?;
    Ok(Some(Basic {
        username: credential.username,
        password: credential.password.expose().to_string(),
    }))
}

/// The cosign public keys in `files`.
fn public_keys(files: &[PathBuf]) -> Result<Vec<PublicKey>, String> {
    files
        .iter()
        .map(|file| {
            let name = file.display().to_string();
            let bytes = repoint_core::bounded::read_regular_file(file, 64 << 10)
                .map_err(|reason| format!("verify: {name}: {reason}"))?;
            PublicKey::from_pem(&name, &String::from_utf8_lossy(&bytes))
                .map_err(|why| format!("verify: {why}"))
        })
        .collect()
}

/// A pulled policy component, and the key file its signature verified
/// with when keys were asked for.
#[derive(Debug)]
pub struct Fetched {
    pub pulled: Pulled,
    pub signed_with: Option<String>,
}

/// Pull the component `reference` (an `oci://` module) names for the
/// policy `policy`, logging what the tag resolved to; with `keys` (files
/// of cosign public keys), only when a signature made with one of them
/// verifies.
pub fn pull(
    config: &Config,
    policy: &str,
    reference: &str,
    keys: &[PathBuf],
    cache: Option<PathBuf>,
    offline: bool,
    max_bytes: u64,
) -> Result<Fetched, String> {
    let image = parse_reference(reference)?;
    let keys = public_keys(keys)?;
    let registries = Registries::new(&config.registry_settings()).map_err(|e| e.to_string())?;
    let basic = credentials_for(config, &image.registry)?;
    let options = PullOptions {
        cache,
        offline,
        timeout: PULL_TIMEOUT,
        max_bytes,
    };
    let pulled = artifact::pull(&registries, &image, basic.clone(), &options)?;
    let mut signed_with = None;
    if !keys.is_empty() {
        let key = signature::verify(
            &registries,
            &image,
            &pulled.manifest_digest,
            &keys,
            basic,
            &options,
        )
        .map_err(|why| format!("{} is refused: {why}", pulled.manifest_digest))?;
        tracing::info!(
            "policy {policy}: {reference} ({}) is signed with {key}",
            pulled.manifest_digest
        );
        signed_with = Some(key);
    }
    if let Some(previous) = &pulled.previous_digest {
        tracing::warn!(
            "policy {policy}: {reference} now names {}, not the {previous} it named when last pulled here",
            pulled.manifest_digest
        );
    }
    if let Some(why) = &pulled.stale {
        tracing::warn!(
            "policy {policy}: {reference} could not be resolved ({why}); using {} from the cache, what it named when last pulled",
            pulled.manifest_digest
        );
    }
    tracing::info!(
        "policy {policy}: {reference} is {}{}",
        pulled.manifest_digest,
        if pulled.cached { " (cached)" } else { "" }
    );
    Ok(Fetched {
        pulled,
        signed_with,
    })
}

/// Push `component` as `reference` (an `oci://` name with a tag), with
/// `artifact_config` as its config document; returns the manifest digest.
pub fn push(
    config: &Config,
    reference: &str,
    component: &[u8],
    artifact_config: &serde_json::Value,
) -> Result<String, String> {
    let image = parse_reference(reference)?;
    if image.digest.is_some() {
        return Err(format!(
            "{reference}: push to a tag; the digest is what the push prints"
        ));
    }
    let registries = Registries::new(&config.registry_settings()).map_err(|e| e.to_string())?;
    let basic = credentials_for(config, &image.registry)?;
    artifact::push(
        &registries,
        &image,
        component,
        artifact_config,
        basic,
        PULL_TIMEOUT,
    )
}
