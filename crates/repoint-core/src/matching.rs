//! Matching images and objects, the way policies' settings name them.
//!
//! An [`ImagePattern`] is what users write in `match:`, `allow:` or
//! `registries:` settings:
//! - a registry, `quay.io` or `localhost:5000`: every image on it;
//! - a registry and path prefix, `docker.io/bitnami`: every image under it,
//!   compared at segment boundaries (`docker.io/bitnami-old` is not under it);
//! - a glob, `*.gcr.io` or `docker.io/bit*/*`: `*` and `?` never cross `/`
//!   (Go `path.Match`, as Docker's `FamiliarMatch`).
//!
//! A pattern covers the first N segments of an image's full name
//! (`registry/path/...`), N being the pattern's own segment count; the
//! registry-mirror policy replaces exactly that part.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::glob::{BadPattern, Glob};
use crate::reference::{ImageRef, ReferenceError, RegistryPath};

/// A registry, registry/path prefix or glob over image names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImagePattern {
    /// Registry, optionally with a path prefix.
    Prefix(RegistryPath),
    /// A glob over the first segments of the full name.
    Glob(Glob),
}

/// Why a pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Not a registry or registry/path.
    #[error("{0:?} is not a registry or registry/path: {1}")]
    Prefix(String, ReferenceError),
    /// A malformed glob.
    #[error(transparent)]
    Glob(#[from] BadPattern),
}

impl ImagePattern {
    /// Parse a pattern; globs are recognized by `*`, `?` or `[`.
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        if s.contains(['*', '?', '[']) {
            return Ok(Self::Glob(Glob::new(s.trim_end_matches('/'))?));
        }
        RegistryPath::parse(s)
            .map(Self::Prefix)
            .map_err(|e| PatternError::Prefix(s.to_string(), e))
    }

    /// How many leading segments of a name this pattern covers.
    pub fn segments(&self) -> usize {
        match self {
            Self::Prefix(p) => 1 + p.path.as_deref().map_or(0, |p| p.split('/').count()),
            Self::Glob(g) => g.as_str().split('/').count(),
        }
    }

    /// Whether `image` is matched.
    pub fn matches(&self, image: &ImageRef) -> bool {
        match self {
            Self::Prefix(p) => image.is_under(p),
            Self::Glob(g) => {
                let name = image.name();
                let n = self.segments();
                let head: Vec<&str> = name.splitn(n + 1, '/').take(n).collect();
                head.len() == n && g.matches(&head.join("/"))
            }
        }
    }

    /// The part of `image`'s repository path that lies below the matched
    /// segments (`None` when the pattern does not match).
    pub fn remainder(&self, image: &ImageRef) -> Option<String> {
        if !self.matches(image) {
            return None;
        }
        let below_registry = self.segments() - 1;
        Some(
            image
                .repository
                .split('/')
                .skip(below_registry)
                .collect::<Vec<_>>()
                .join("/"),
        )
    }
}

impl std::fmt::Display for ImagePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Prefix(p) => p.fmt(f),
            Self::Glob(g) => f.write_str(g.as_str()),
        }
    }
}

impl<'de> Deserialize<'de> for ImagePattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for ImagePattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A Kubernetes label selector (`matchLabels` and `matchExpressions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels that must be present with these values.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements.
    #[serde(default)]
    pub match_expressions: Vec<LabelRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelRequirement {
    /// Label key.
    pub key: String,
    /// How to compare.
    pub operator: SelectorOperator,
    /// Values for `In` and `NotIn`.
    #[serde(default)]
    pub values: Vec<String>,
}

/// A `matchExpressions` operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelectorOperator {
    /// The label's value is one of `values`.
    In,
    /// The label is absent or its value is not one of `values`.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl LabelSelector {
    /// Whether labels satisfy the selector (an empty selector matches all).
    pub fn matches<'a>(
        &self,
        labels: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
    ) -> bool {
        let get = |key: &str| {
            labels
                .clone()
                .into_iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v)
        };
        self.match_labels
            .iter()
            .all(|(k, v)| get(k) == Some(v.as_str()))
            && self.match_expressions.iter().all(|r| {
                let value = get(&r.key);
                match r.operator {
                    SelectorOperator::In => value.is_some_and(|v| r.values.iter().any(|x| x == v)),
                    SelectorOperator::NotIn => {
                        value.is_none_or(|v| !r.values.iter().any(|x| x == v))
                    }
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(s: &str) -> ImageRef {
        ImageRef::parse(s).expect(s)
    }

    #[test]
    fn prefixes_match_at_segment_boundaries() {
        let p = ImagePattern::parse("docker.io/bitnami").expect("valid");
        assert!(p.matches(&img("bitnami/redis:7")));
        assert!(!p.matches(&img("bitnami-old/redis")));
        assert_eq!(
            p.remainder(&img("bitnami/redis:7")).as_deref(),
            Some("redis")
        );
        let q = ImagePattern::parse("quay.io").expect("valid");
        assert_eq!(
            q.remainder(&img("quay.io/org/api:v1")).as_deref(),
            Some("org/api")
        );
    }

    #[test]
    fn globs_cover_their_segments() {
        let g = ImagePattern::parse("*.gcr.io").expect("valid");
        assert!(g.matches(&img("eu.gcr.io/proj/app")));
        assert!(!g.matches(&img("gcr.io/proj/app")));
        assert_eq!(
            g.remainder(&img("eu.gcr.io/proj/app")).as_deref(),
            Some("proj/app")
        );
        let h = ImagePattern::parse("docker.io/bit*").expect("valid");
        assert!(h.matches(&img("bitnami/redis")));
        assert!(!h.matches(&img("nginx")));
        assert!(ImagePattern::parse("[-x]").is_err());
        assert!(ImagePattern::parse("Not A Registry").is_err());
    }

    #[test]
    fn selectors() {
        let s: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]
        }))
        .expect("selector");
        assert!(s.matches([("app", "web")]));
        assert!(!s.matches([("app", "web"), ("tier", "db")]));
        assert!(!s.matches([("app", "api")]));
        assert!(LabelSelector::default().matches([]));
    }
}
