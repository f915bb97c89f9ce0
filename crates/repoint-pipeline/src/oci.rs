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
use repoint_runtime::{LoadedPolicy, PolicySource, Runtime, RuntimeError};

pub use repoint_registry::artifact::sha256;
use repoint_registry::artifact::{Pulled, parse_reference};

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
struct Fetched {
    pulled: Pulled,
    signed_with: Option<String>,
}

/// Pull the component `reference` (an `oci://` module) names for the
/// policy `policy`, logging what the tag resolved to; with `keys` (files
/// of cosign public keys), only when a signature made with one of them
/// verifies.
fn pull(
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

/// Why a policy did not load: its pull (an `oci://` module), or the
/// component itself.
#[derive(Debug)]
pub enum LoadError {
    /// The pull or the signature check of `reference` failed.
    Pull { reference: String, why: String },
    /// The component was read but is not a policy the host can run.
    Load(RuntimeError),
}

/// A policy loaded from any source, and for an `oci://` one the digest it
/// pulled and the key its signature verified with.
#[derive(Debug)]
pub struct LoadedFrom {
    pub loaded: LoadedPolicy,
    pub digest: Option<String>,
    pub signed_with: Option<String>,
}

/// Load `source` as the policy `policy` on `runtime`, every reader's one
/// way: a builtin or a file directly, an `oci://` module pulled first
/// ([`pull`], with `config`'s registry settings and credentials, `keys`,
/// the runtime's cache and its bound on module size).
pub fn load(
    runtime: &Runtime,
    config: &Config,
    policy: &str,
    source: &PolicySource,
    keys: &[PathBuf],
    offline: bool,
) -> Result<LoadedFrom, LoadError> {
    let PolicySource::Oci(reference) = source else {
        return Ok(LoadedFrom {
            loaded: runtime.load(source).map_err(LoadError::Load)?,
            digest: None,
            signed_with: None,
        });
    };
    let options = runtime.options();
    let fetched = pull(
        config,
        policy,
        reference,
        keys,
        cache_dir(options.cache_dir.as_deref()),
        offline,
        options.max_module_bytes,
    )
    .map_err(|why| LoadError::Pull {
        reference: reference.clone(),
        why,
    })?;
    Ok(LoadedFrom {
        loaded: runtime
            .load_bytes(source.clone(), &fetched.pulled.bytes)
            .map_err(LoadError::Load)?,
        digest: Some(fetched.pulled.manifest_digest),
        signed_with: fetched.signed_with,
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
