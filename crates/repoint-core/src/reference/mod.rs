//! Container image references, parsed and normalized exactly as Docker,
//! containerd and the kubelet do (github.com/distribution/reference).
//!
//! The main entry point is [`ImageRef::parse`], the equivalent of
//! `ParseNormalizedNamed`: `nginx` becomes `docker.io/library/nginx`, a first
//! path segment is a registry only when it contains `.` or `:` or is
//! `localhost`, and tag and digest are kept as written. [`ImageRef`]'s
//! `Display` is the full canonical form and [`ImageRef::familiar`] the short
//! one users type.
//!
//! The non-normalizing `Parse`, `ParseAnyReference`, `ParseDockerRef` and the
//! `With*` constructors exist too, mostly so the upstream conformance table
//! can be run against this code in full.

pub mod grammar;

use std::fmt;

/// The registry a name without one is pulled from.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The Docker Hub namespace of official images.
pub const OFFICIAL_PREFIX: &str = "library/";
/// The legacy Docker Hub host, canonicalized to [`DEFAULT_REGISTRY`].
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
/// Longest allowed repository path (below the registry), in bytes; upstream
/// checks the path, not the whole name.
pub const NAME_MAX_LENGTH: usize = 255;

/// Why a string is not a valid image reference. The variants mirror the
/// upstream sentinel errors so callers (and the conformance test) can tell
/// them apart; the messages are the upstream ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The string does not follow the reference grammar.
    #[error("invalid reference format")]
    InvalidFormat,
    /// The tag does not follow the tag grammar.
    #[error("invalid tag format")]
    TagInvalidFormat,
    /// The digest does not follow the digest grammar.
    #[error("invalid digest format")]
    DigestInvalidFormat,
    /// The digest's hex part has the wrong length for its algorithm.
    #[error("invalid checksum digest length")]
    DigestInvalidLength,
    /// The digest algorithm is not one of sha256, sha384, sha512.
    #[error("unsupported digest algorithm")]
    DigestUnsupported,
    /// The name is empty.
    #[error("repository name must have at least one component")]
    NameEmpty,
    /// The name has uppercase letters in its path.
    #[error("repository name must be lowercase")]
    NameContainsUppercase,
    /// The name is longer than [`NAME_MAX_LENGTH`].
    #[error("repository name must not be more than 255 characters")]
    NameTooLong,
    /// `ParseNamed` was given a name that is not already canonical.
    #[error("repository name must be canonical")]
    NameNotCanonical,
    /// A bare 64-hex image ID was given where a name is needed.
    #[error("cannot specify 64-byte hexadecimal strings")]
    HexIdentifier,
}

/// A parsed image reference: registry ("domain"), repository path, optional
/// tag, optional digest.
///
/// Built by [`ImageRef::parse`] it is always normalized (registry filled in,
/// `library/` added); built by [`parse_raw`] the registry may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// Registry host with optional port; empty only for non-normalized refs.
    pub registry: String,
    /// Repository path below the registry.
    pub repository: String,
    /// Tag without `:`.
    pub tag: Option<String>,
    /// Digest as `algorithm:hex`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parse and normalize as `ParseNormalizedNamed` does: what the kubelet
    /// will pull for this string.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if grammar::is_identifier(s) {
            return Err(ReferenceError::HexIdentifier);
        }
        let (registry, remainder) = split_docker_registry(s);
        // Uppercase in the path is reported before parsing, as upstream does,
        // so `Foo/Bar` says "must be lowercase" rather than "invalid format".
        let remote = remainder.split_once(':').map_or(&*remainder, |(r, _)| r);
        if remote.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::NameContainsUppercase);
        }
        let joined = format!("{registry}/{remainder}");
        parse_raw(&joined)
    }

    /// The repository name: `registry/repository`.
    pub fn name(&self) -> String {
        if self.registry.is_empty() {
            self.repository.clone()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The short name users type: `nginx`, `bitnami/redis`, `quay.io/org/app`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix(OFFICIAL_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The short form with tag and digest: `nginx:1.27`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    /// Tag, digest or both, as written after the name (`:v1@sha256:...`).
    pub fn suffix(&self) -> String {
        let mut s = String::new();
        self.push_suffix(&mut s);
        s
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(digest);
        }
    }

    /// The reference `ParseDockerRef` gives: tag `latest` added when there is
    /// neither tag nor digest, and the tag dropped when there is a digest.
    /// This is what a runtime actually resolves; repoint itself keeps what
    /// was written and uses this only to compare references.
    pub fn docker_ref(&self) -> Self {
        let mut r = self.clone();
        if r.digest.is_some() {
            r.tag = None;
        } else if r.tag.is_none() {
            r.tag = Some("latest".to_string());
        }
        r
    }

    /// Replace the name part, keeping tag and digest (`WithName` semantics
    /// for the name: validated by the grammar, no normalization).
    pub fn with_name(&self, name: &str) -> Result<Self, ReferenceError> {
        let bare = with_name(name)?;
        Ok(Self {
            tag: self.tag.clone(),
            digest: self.digest.clone(),
            ..bare
        })
    }

    /// Set the tag (`WithTag`).
    pub fn with_tag(mut self, tag: &str) -> Result<Self, ReferenceError> {
        if !grammar::is_tag(tag) {
            return Err(ReferenceError::TagInvalidFormat);
        }
        self.tag = Some(tag.to_string());
        Ok(self)
    }

    /// Set the digest (`WithDigest`: the grammar is checked, not the length).
    pub fn with_digest(mut self, digest: &str) -> Result<Self, ReferenceError> {
        if !grammar::is_digest_pattern(digest) {
            return Err(ReferenceError::DigestInvalidFormat);
        }
        self.digest = Some(digest.to_string());
        Ok(self)
    }

    /// Whether this image lives under `prefix`, compared at segment
    /// boundaries: the registry must be equal (port included) and the
    /// prefix's path must be a whole-segment prefix of the repository.
    /// `mirror.corp/quay` contains `mirror.corp/quay/org/app` but not
    /// `mirror.corp/quay-old/app` nor `mirror.corp:5000/quay/app`.
    pub fn is_under(&self, prefix: &RegistryPath) -> bool {
        self.registry.eq_ignore_ascii_case(&prefix.registry)
            && prefix
                .path
                .as_deref()
                .is_none_or(|path| path_is_under(&self.repository, path))
    }
}

/// Whether `path` is `prefix` or below it, at a segment boundary.
fn path_is_under(path: &str, prefix: &str) -> bool {
    path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

impl fmt::Display for ImageRef {
    /// The full canonical form: `docker.io/library/nginx:1.27@sha256:...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.registry.is_empty() {
            write!(f, "{}/", self.registry)?;
        }
        f.write_str(&self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A registry with an optional path below it, as used in rewrite targets and
/// matches: `mirror.corp`, `mirror.corp:5000/quay`, `docker.io/bitnami`.
///
/// Unlike an image name, the first segment is always the registry here, and
/// `docker.io` paths are not given a `library/` prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryPath {
    /// Registry host with optional port.
    pub registry: String,
    /// Path below the registry, without leading or trailing `/`.
    pub path: Option<String>,
}

impl RegistryPath {
    /// Parse `HOST[:PORT][/PATH]`.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let s = s.trim_end_matches('/');
        let (registry, path) = match s.split_once('/') {
            Some((r, p)) => (r, Some(p)),
            None => (s, None),
        };
        let registry = if registry == LEGACY_DEFAULT_REGISTRY {
            DEFAULT_REGISTRY
        } else {
            registry
        };
        if !grammar::is_domain_and_port(registry) {
            return Err(ReferenceError::InvalidFormat);
        }
        if let Some(p) = path
            && !grammar::is_remote_name(p)
        {
            return Err(if p.bytes().any(|c| c.is_ascii_uppercase()) {
                ReferenceError::NameContainsUppercase
            } else {
                ReferenceError::InvalidFormat
            });
        }
        Ok(Self {
            registry: registry.to_string(),
            path: path.map(str::to_string),
        })
    }
}

impl RegistryPath {
    /// Whether every image under `inner` is under this one too (the
    /// comparison of [`ImageRef::is_under`], between two prefixes):
    /// `docker.io` covers `docker.io/bitnami`, not the other way round.
    pub fn covers(&self, inner: &RegistryPath) -> bool {
        self.registry.eq_ignore_ascii_case(&inner.registry)
            && match (self.path.as_deref(), inner.path.as_deref()) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(outer), Some(inner)) => path_is_under(inner, outer),
            }
    }
}

impl fmt::Display for RegistryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.registry)?;
        if let Some(p) = &self.path {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

/// Docker's rule for telling a registry from a Docker Hub namespace
/// (`splitDockerDomain`). Returns (registry, rest-with-tag-and-digest).
fn split_docker_registry(name: &str) -> (&str, std::borrow::Cow<'_, str>) {
    use std::borrow::Cow;
    let Some((first, rest)) = name.split_once('/') else {
        // A single segment is always an official Docker Hub image, even
        // `localhost` or `example.com`.
        return (
            DEFAULT_REGISTRY,
            Cow::Owned(format!("{OFFICIAL_PREFIX}{name}")),
        );
    };
    let (registry, remote) = if first == "localhost" {
        (first, rest)
    } else if first == LEGACY_DEFAULT_REGISTRY {
        (DEFAULT_REGISTRY, rest)
    } else if first.contains(['.', ':']) {
        (first, rest)
    } else if first.bytes().any(|c| c.is_ascii_uppercase()) {
        // Not a valid Hub namespace; keep it as a "registry" and let the
        // grammar reject or accept it.
        (first, rest)
    } else {
        return (DEFAULT_REGISTRY, Cow::Borrowed(name));
    };
    if registry == DEFAULT_REGISTRY && !remote.contains('/') {
        return (registry, Cow::Owned(format!("{OFFICIAL_PREFIX}{remote}")));
    }
    (registry, Cow::Borrowed(remote))
}

/// Parse without normalizing (`Parse`): the registry is whatever the grammar
/// takes as a domain, possibly empty.
pub fn parse_raw(s: &str) -> Result<ImageRef, ReferenceError> {
    let Some(parts) = grammar::split_reference(s) else {
        if s.is_empty() {
            return Err(ReferenceError::NameEmpty);
        }
        if grammar::split_reference(&s.to_ascii_lowercase()).is_some() {
            return Err(ReferenceError::NameContainsUppercase);
        }
        return Err(ReferenceError::InvalidFormat);
    };
    let (registry, repository) =
        grammar::split_name(parts.name).ok_or(ReferenceError::InvalidFormat)?;
    if repository.len() > NAME_MAX_LENGTH {
        return Err(ReferenceError::NameTooLong);
    }
    if let Some(d) = parts.digest {
        validate_digest(d)?;
    }
    Ok(ImageRef {
        registry: registry.to_string(),
        repository: repository.to_string(),
        tag: parts.tag.map(str::to_string),
        digest: parts.digest.map(str::to_string),
    })
}

/// `ParseNamed`: accept only names already in canonical form.
pub fn parse_canonical(s: &str) -> Result<ImageRef, ReferenceError> {
    let r = ImageRef::parse(s)?;
    if r.to_string() != s {
        return Err(ReferenceError::NameNotCanonical);
    }
    Ok(r)
}

/// What `ParseAnyReference` returns: a named reference or a bare digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyReference {
    /// A named reference, normalized.
    Named(ImageRef),
    /// An image ID or digest with no name (`sha256:...`).
    Digest(String),
}

impl fmt::Display for AnyReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Named(r) => r.fmt(f),
            Self::Digest(d) => f.write_str(d),
        }
    }
}

/// `ParseAnyReference`: a 64-hex ID or a digest stands alone; anything else
/// is a normalized name.
pub fn parse_any(s: &str) -> Result<AnyReference, ReferenceError> {
    if grammar::is_identifier(s) {
        return Ok(AnyReference::Digest(format!("sha256:{s}")));
    }
    if validate_digest(s).is_ok() {
        return Ok(AnyReference::Digest(s.to_string()));
    }
    ImageRef::parse(s).map(AnyReference::Named)
}

/// `WithName`: a bare name, validated against the grammar, not normalized.
pub fn with_name(name: &str) -> Result<ImageRef, ReferenceError> {
    let (registry, repository) = grammar::split_name(name).ok_or(ReferenceError::InvalidFormat)?;
    if repository.len() > NAME_MAX_LENGTH {
        return Err(ReferenceError::NameTooLong);
    }
    Ok(ImageRef {
        registry: registry.to_string(),
        repository: repository.to_string(),
        tag: None,
        digest: None,
    })
}

/// Check a digest the way go-digest's `Parse` does: known algorithm, right
/// length, lowercase hex.
pub fn validate_digest(d: &str) -> Result<(), ReferenceError> {
    let Some((algorithm, hex)) = d.split_once(':') else {
        return Err(ReferenceError::DigestInvalidFormat);
    };
    if algorithm.is_empty() || hex.is_empty() {
        return Err(ReferenceError::DigestInvalidFormat);
    }
    let size = match algorithm {
        "sha256" => 32,
        "sha384" => 48,
        "sha512" => 64,
        _ => {
            let well_formed = algorithm.split(['.', '+', '_', '-']).all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            }) && hex
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'=' | b'_' | b'-'));
            return Err(if well_formed {
                ReferenceError::DigestUnsupported
            } else {
                ReferenceError::DigestInvalidFormat
            });
        }
    };
    if hex.len() != size * 2 {
        return Err(ReferenceError::DigestInvalidLength);
    }
    if !hex
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(ReferenceError::DigestInvalidFormat);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ImageRef {
        ImageRef::parse(s).expect(s)
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(p("nginx").to_string(), "docker.io/library/nginx");
        assert_eq!(
            p("bitnami/redis:7").to_string(),
            "docker.io/bitnami/redis:7"
        );
        assert_eq!(
            p("index.docker.io/nginx").to_string(),
            "docker.io/library/nginx"
        );
        assert_eq!(p("localhost/app").registry, "localhost");
        assert_eq!(p("registry:5000/app").registry, "registry:5000");
        assert_eq!(p("quay.io/org/app:v1").familiar(), "quay.io/org/app:v1");
        assert_eq!(p("docker.io/library/nginx:1").familiar(), "nginx:1");
    }

    #[test]
    fn keeps_tag_and_digest_together() {
        let d = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582";
        let r = p(&format!("gcr.io/x/app:v1@{d}"));
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest.as_deref(), Some(d));
        assert_eq!(r.docker_ref().tag, None);
    }

    #[test]
    fn under_prefix_at_segment_boundaries() {
        let target = RegistryPath::parse("mirror.corp/quay").expect("valid");
        assert!(p("mirror.corp/quay/org/app").is_under(&target));
        assert!(p("mirror.corp/quay").is_under(&target));
        assert!(!p("mirror.corp/quay-old/app").is_under(&target));
        assert!(!p("mirror.corp:5000/quay/app").is_under(&target));
        let hub = RegistryPath::parse("docker.io").expect("valid");
        assert!(p("nginx").is_under(&hub));
    }
}
