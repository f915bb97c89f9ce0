//! Registry-mirror rules: the `registry-mirror` policy's settings and the
//! one rewrite they describe.
//!
//! The policy applies them to images in manifests; `repoint node-config`
//! writes the same rules as containerd and CRI-O mirror configuration. One
//! model, so a rule means the same on a node as in a manifest.
//!
//! Rules are tried in order; the first whose `match` covers an image wins.
//! - `replace: HOST[/PATH]` puts the target in place of the matched part:
//!   `match: quay.io, replace: mirror.corp/quay` turns `quay.io/org/api:v1`
//!   into `mirror.corp/quay/org/api:v1`.
//! - `prefix: HOST[/PATH]` puts the target in front of the full normalized
//!   name: `prefix: proxy.corp/proxy/app` turns `quay.io/org/api:v1` into
//!   `proxy.corp/proxy/app/quay.io/org/api:v1`.
//!
//! Tag and digest are kept exactly. An image already under any rule's
//! target is never rewritten again, so the rules converge.

use serde::Deserialize;

use crate::glob::Glob;
use crate::matching::{ImagePattern, LabelSelector};
use crate::reference::{ImageRef, RegistryPath};

/// The `registry-mirror` policy's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MirrorSettings {
    /// Ordered rules; the first match wins.
    pub rules: Vec<MirrorRule>,
    /// Namespaces (names or globs) whose objects are left alone.
    #[serde(default)]
    pub exclude_namespaces: Vec<Glob>,
    /// Images left alone (patterns, as in `match`).
    #[serde(default)]
    pub exclude_images: Vec<ImagePattern>,
    /// Only objects whose labels match are rewritten.
    #[serde(default)]
    pub selector: Option<LabelSelector>,
}

/// One rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorRule {
    /// Registry, registry/path prefix or glob.
    #[serde(rename = "match")]
    pub pattern: ImagePattern,
    /// Replace the matched part with this.
    #[serde(default)]
    pub replace: Option<String>,
    /// Prepend this to the full normalized name.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// How a rule rewrites, with its target parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// The target takes the place of the matched part.
    Replace(RegistryPath),
    /// The target goes in front of the full normalized name.
    Prefix(RegistryPath),
}

impl Rewrite {
    /// Where the rule sends images.
    pub fn target(&self) -> &RegistryPath {
        match self {
            Self::Replace(t) | Self::Prefix(t) => t,
        }
    }
}

/// The rules with their targets parsed, ready to apply; it borrows the
/// patterns from the settings, as the policy makes one per object.
#[derive(Debug, Clone)]
pub struct Mirrors<'a> {
    /// Each rule's pattern and rewrite, in order.
    pub rules: Vec<(&'a ImagePattern, Rewrite)>,
    /// Images never rewritten.
    pub exclude_images: &'a [ImagePattern],
}

/// What the rules make of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Rule `rule` (0-based) rewrites it to `image`.
    Rewritten {
        /// The rule's index.
        rule: usize,
        /// The new reference, tag and digest kept.
        image: ImageRef,
    },
    /// A rule matches, but the new name is not a valid image name (a
    /// registry port cannot become a path segment under a prefix).
    Invalid {
        /// The rule's index.
        rule: usize,
        /// The name the rule would write.
        candidate: String,
    },
    /// No rule applies: none matches, the image is excluded, or it is
    /// already under a rule's target.
    Unchanged,
}

fn parse_target(s: &str, field: &str, i: usize) -> Result<RegistryPath, String> {
    RegistryPath::parse(s).map_err(|e| format!("rules[{i}].{field}: {s:?} is not HOST[/PATH]: {e}"))
}

impl MirrorRule {
    /// The rule's rewrite; `i` is its index, for the message.
    pub fn rewrite(&self, i: usize) -> Result<Rewrite, String> {
        match (&self.replace, &self.prefix) {
            (Some(r), None) => Ok(Rewrite::Replace(parse_target(r, "replace", i)?)),
            (None, Some(p)) => Ok(Rewrite::Prefix(parse_target(p, "prefix", i)?)),
            _ => Err(format!(
                "rules[{i}]: give exactly one of `replace` or `prefix`"
            )),
        }
    }
}

impl MirrorSettings {
    /// The rules parsed, or what is wrong with them.
    pub fn mirrors(&self) -> Result<Mirrors<'_>, String> {
        if self.rules.is_empty() {
            return Err("rules: at least one rule is needed".into());
        }
        let rules = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| Ok((&r.pattern, r.rewrite(i)?)))
            .collect::<Result<_, String>>()?;
        Ok(Mirrors {
            rules,
            exclude_images: &self.exclude_images,
        })
    }
}

fn join(a: Option<&str>, b: &str) -> String {
    match a {
        Some(a) if !b.is_empty() => format!("{a}/{b}"),
        Some(a) => a.to_string(),
        None => b.to_string(),
    }
}

impl Mirrors<'_> {
    /// What the rules do to `image`.
    pub fn apply(&self, image: &ImageRef) -> Outcome {
        let already_there = self.rules.iter().any(|(_, r)| image.is_under(r.target()));
        if already_there || self.exclude_images.iter().any(|p| p.matches(image)) {
            return Outcome::Unchanged;
        }
        let Some((rule, (pattern, rewrite))) = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, (p, _))| p.matches(image))
        else {
            return Outcome::Unchanged;
        };
        let below = match rewrite {
            Rewrite::Replace(_) => pattern.remainder(image).unwrap_or_default(),
            Rewrite::Prefix(_) => format!("{}/{}", image.registry, image.repository),
        };
        let registry = rewrite.target().registry.clone();
        let repository = join(rewrite.target().path.as_deref(), &below);
        let candidate = format!("{registry}/{repository}");
        match ImageRef::parse(&candidate) {
            Ok(parsed) if parsed.registry == registry => Outcome::Rewritten {
                rule,
                image: ImageRef {
                    registry,
                    repository,
                    tag: image.tag.clone(),
                    digest: image.digest.clone(),
                },
            },
            _ => Outcome::Invalid { rule, candidate },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json_rules: &str) -> MirrorSettings {
        serde_json::from_str(&format!("{{\"rules\": {json_rules}}}")).expect("settings")
    }

    fn applied(m: &Mirrors, image: &str) -> Outcome {
        m.apply(&ImageRef::parse(image).expect("image"))
    }

    #[test]
    fn replace_and_prefix_keep_tag_and_digest() {
        let s = settings(
            r#"[{"match": "quay.io", "replace": "mirror.corp/quay"},
                {"match": "ghcr.io", "prefix": "proxy.corp/p"}]"#,
        );
        let m = s.mirrors().expect("valid rules");
        let Outcome::Rewritten { rule, image } = applied(&m, "quay.io/org/api:v1") else {
            panic!("rewritten");
        };
        assert_eq!(
            (rule, image.to_string()),
            (0, "mirror.corp/quay/org/api:v1".into())
        );
        let Outcome::Rewritten { rule, image } = applied(&m, "ghcr.io/o/a:2") else {
            panic!("rewritten");
        };
        assert_eq!(
            (rule, image.to_string()),
            (1, "proxy.corp/p/ghcr.io/o/a:2".into())
        );
        assert_eq!(
            applied(&m, "mirror.corp/quay/org/api:v1"),
            Outcome::Unchanged
        );
        assert_eq!(applied(&m, "docker.io/library/nginx"), Outcome::Unchanged);
    }

    #[test]
    fn a_port_under_a_prefix_is_invalid() {
        let s = settings(r#"[{"match": "localhost:5000", "prefix": "proxy.corp"}]"#);
        let m = s.mirrors().expect("valid rules");
        assert_eq!(
            applied(&m, "localhost:5000/app:1"),
            Outcome::Invalid {
                rule: 0,
                candidate: "proxy.corp/localhost:5000/app".into()
            }
        );
    }

    #[test]
    fn rules_need_one_target() {
        let settings: MirrorSettings =
            serde_json::from_str(r#"{"rules": [{"match": "quay.io"}]}"#).expect("settings");
        assert_eq!(
            settings.mirrors().expect_err("no target"),
            "rules[0]: give exactly one of `replace` or `prefix`"
        );
    }
}
