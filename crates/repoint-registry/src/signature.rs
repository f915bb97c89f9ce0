//! Cosign key-based signatures of pulled artifacts, as `cosign sign --key`
//! stores them: in the artifact's repository under the tag
//! `sha256-<hex>.sig`, an OCI manifest whose layers are "simple signing"
//! payloads (`application/vnd.dev.cosign.simplesigning.v1+json`) naming the
//! signed manifest's digest, each with its ECDSA P-256 / SHA-256 signature
//! in the annotation `dev.cosignproject.cosign/signature` (base64, ASN.1
//! DER). Public keys are cosign's `cosign.pub`: a PEM `PUBLIC KEY`
//! (SubjectPublicKeyInfo) of a P-256 key.
//!
//! Why not the `sigstore` crate: it is async and brings its own OCI and
//! HTTP stack, and what a key-based signature needs is a SHA-256 ECDSA
//! check, which `ring` (already linked for TLS) does. Keyless signatures
//! (Fulcio certificates, Rekor entries) need those services, which are out
//! of reach here; [`verify`] is the seam where they would go.

use std::time::Instant;

use base64::Engine as _;
use repoint_core::ImageRef;
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use serde_json::Value;

use crate::artifact::{Cache, Failure, PullOptions, check_blob, fetch, is_sha256};
use crate::transport::{Basic, Registries, Session};

/// The media type of a cosign signature payload.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the payload's signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The `critical.type` of a cosign image signature payload.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey,
/// prime256v1, then the 65-byte uncompressed point as a bit string).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// The largest signature manifest and payload read.
const MAX_SIGNATURE_BYTES: u64 = 256 << 10;
const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A cosign public key, with the name it is reported by (its file).
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// Where it came from.
    pub name: String,
    /// The uncompressed P-256 point.
    point: Vec<u8>,
}

impl PublicKey {
    /// A `-----BEGIN PUBLIC KEY-----` PEM of a P-256 key.
    pub fn from_pem(name: &str, pem: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{name}: {why}");
        let body = pem
            .split("-----BEGIN PUBLIC KEY-----")
            .nth(1)
            .and_then(|rest| rest.split("-----END PUBLIC KEY-----").next())
            .ok_or_else(|| bad("not a PEM public key (cosign.pub)"))?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.split_whitespace().collect::<String>())
            .map_err(|e| bad(&format!("the PEM body is not base64: {e}")))?;
        let point = der
            .strip_prefix(&P256_SPKI_PREFIX[..])
            .filter(|p| p.len() == 65 && p[0] == 0x04)
            .ok_or_else(|| bad("not an ECDSA P-256 public key, which cosign keys are"))?;
        Ok(Self {
            name: name.to_string(),
            point: point.to_vec(),
        })
    }

    fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(payload, signature)
            .is_ok()
    }
}

/// The tag cosign keeps the signatures of `digest` under.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// Check that the manifest `manifest_digest` of `reference`'s repository
/// carries a cosign signature made with one of `keys`; returns the name of
/// the key that verified. Signatures are read from the registry (and
/// cached), or from the cache when offline or when the registry cannot be
/// reached; they are checked again every time.
pub fn verify(
    registries: &Registries,
    reference: &ImageRef,
    manifest_digest: &str,
    keys: &[PublicKey],
    basic: Option<Basic>,
    options: &PullOptions,
) -> Result<String, String> {
    let tag = signature_tag(manifest_digest);
    let cache = options.cache.as_deref().map(Cache::new);
    let tag_file = cache
        .as_ref()
        .map(|c| c.tag_path(&reference.registry, &reference.repository, &tag));
    let remembered = tag_file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|d| d.trim().to_string())
        .filter(|d| is_sha256(d));
    let cached_manifest = || -> Result<Option<Vec<u8>>, String> {
        match (&cache, &remembered) {
            (Some(cache), Some(digest)) => cache.manifest(digest, MAX_SIGNATURE_BYTES),
            _ => Ok(None),
        }
    };
    let mut session = Session::new(
        registries,
        reference,
        "pull",
        basic,
        Instant::now() + options.timeout,
    );
    let api = session.api();
    let mut online = !options.offline;
    let manifest = if options.offline {
        cached_manifest()?.ok_or_else(|| {
            format!("its signature ({tag}) is not in the cache, and the run is offline")
        })?
    } else {
        match fetch(
            &mut session,
            &format!("{api}/manifests/{tag}"),
            MANIFEST_TYPES,
            MAX_SIGNATURE_BYTES,
        ) {
            Ok(bytes) => bytes,
            Err(Failure::Unreachable(why)) => {
                online = false;
                cached_manifest()?.ok_or(why)?
            }
            Err(Failure::NotFound(_)) => {
                return Err(format!(
                    "it is not signed: `verify:` asks for a cosign signature, and the registry has none ({tag})"
                ));
            }
            Err(refused) => return Err(refused.into_reason()),
        }
    };
    let parsed: Value = serde_json::from_slice(&manifest)
        .map_err(|e| format!("its signature manifest is not JSON: {e}"))?;
    let mut reasons = Vec::new();
    let layers = parsed["layers"].as_array().cloned().unwrap_or_default();
    for (i, layer) in layers
        .iter()
        .filter(|l| l["mediaType"] == SIMPLE_SIGNING)
        .enumerate()
    {
        let n = i + 1;
        let (Some(digest), Some(size), Some(encoded)) = (
            layer["digest"].as_str().filter(|d| is_sha256(d)),
            layer["size"].as_u64().filter(|s| *s <= MAX_SIGNATURE_BYTES),
            layer["annotations"][SIGNATURE_ANNOTATION].as_str(),
        ) else {
            reasons.push(format!(
                "signature {n}: no digest, size or signature annotation"
            ));
            continue;
        };
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            reasons.push(format!("signature {n}: the annotation is not base64"));
            continue;
        };
        let payload = match cache.as_ref().map(|c| c.blob(digest, size)) {
            Some(Ok(Some(bytes))) => bytes,
            Some(Err(e)) => return Err(e),
            _ if !online => {
                reasons.push(format!("signature {n}: its payload is not in the cache"));
                continue;
            }
            _ => {
                let bytes = fetch(
                    &mut session,
                    &format!("{api}/blobs/{digest}"),
                    "application/octet-stream",
                    size,
                )
                .map_err(Failure::into_reason)?;
                check_blob(&bytes, digest, size)?;
                bytes
            }
        };
        let claims: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        let signed = claims["critical"]["image"]["docker-manifest-digest"].as_str();
        if claims["critical"]["type"] != PAYLOAD_TYPE || signed != Some(manifest_digest) {
            reasons.push(format!(
                "signature {n}: its payload signs {}, not this manifest",
                signed.unwrap_or("something else")
            ));
            continue;
        }
        if let Some(key) = keys.iter().find(|k| k.verifies(&payload, &signature)) {
            if let (Some(cache), Some(path)) = (&cache, &tag_file) {
                cache.store(digest, &payload)?;
                let manifest_digest = crate::artifact::sha256(&manifest);
                cache.store(&manifest_digest, &manifest)?;
                crate::artifact::write_atomically(path, manifest_digest.as_bytes())?;
            }
            return Ok(key.name.clone());
        }
        reasons.push(format!(
            "signature {n}: made with none of the keys ({})",
            keys.iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if reasons.is_empty() {
        reasons.push(format!("{tag} holds no cosign signature"));
    }
    Err(format!("no signature verifies: {}", reasons.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_tags_and_keys() {
        assert_eq!(
            signature_tag("sha256:abc"),
            "sha256-abc.sig",
            "cosign's triangulation tag"
        );
        assert!(PublicKey::from_pem("k", "nothing").is_err());
        // An RSA key's SPKI is refused by name.
        let rsa = "-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAL8x\n-----END PUBLIC KEY-----\n";
        assert!(
            PublicKey::from_pem("rsa.pub", rsa)
                .expect_err("refused")
                .contains("P-256")
        );
    }
}
