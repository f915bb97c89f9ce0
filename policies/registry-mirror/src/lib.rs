//! `registry-mirror`: point images at mirror or proxy registries.
//!
//! Rules are tried in order; the first whose `match` covers an image wins.
//! - `replace: HOST[/PATH]` puts the target in place of the matched part:
//!   `match: quay.io, replace: mirror.corp/quay` turns `quay.io/org/api:v1`
//!   into `mirror.corp/quay/org/api:v1`.
//! - `prefix: HOST[/PATH]` puts the target in front of the full normalized
//!   name: `prefix: proxy.corp/proxy/app` turns `quay.io/org/api:v1` into
//!   `proxy.corp/proxy/app/quay.io/org/api:v1`.
//!
//! Tag and digest are kept exactly. An image already under any rule's target
//! is never rewritten again, so the policy converges. Objects can be left
//! alone by namespace, image glob or label selector.

use repoint_policy::RegistryPath;
use repoint_policy::prelude::*;
use serde::Deserialize;

/// The policy's settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// Ordered rules; the first match wins.
    pub rules: Vec<Rule>,
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

/// One rewrite rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
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
enum Rewrite {
    Replace(RegistryPath),
    Prefix(RegistryPath),
}

impl Rewrite {
    fn target(&self) -> &RegistryPath {
        match self {
            Self::Replace(t) | Self::Prefix(t) => t,
        }
    }
}

fn parse_target(s: &str, field: &str, i: usize) -> Result<RegistryPath, String> {
    RegistryPath::parse(s).map_err(|e| format!("rules[{i}].{field}: {s:?} is not HOST[/PATH]: {e}"))
}

impl Rule {
    fn rewrite(&self, i: usize) -> Result<Rewrite, String> {
        match (&self.replace, &self.prefix) {
            (Some(r), None) => Ok(Rewrite::Replace(parse_target(r, "replace", i)?)),
            (None, Some(p)) => Ok(Rewrite::Prefix(parse_target(p, "prefix", i)?)),
            _ => Err(format!(
                "rules[{i}]: give exactly one of `replace` or `prefix`"
            )),
        }
    }
}

fn join(a: Option<&str>, b: &str) -> String {
    match a {
        Some(a) if !b.is_empty() => format!("{a}/{b}"),
        Some(a) => a.to_string(),
        None => b.to_string(),
    }
}

/// The registry-mirror policy.
#[derive(Debug)]
pub struct RegistryMirror;

impl Policy for RegistryMirror {
    type Settings = Settings;

    fn info() -> Info {
        Info::mutating(
            "registry-mirror",
            "Rewrite images onto mirror or proxy registries, by ordered rules",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .settings_schema(include_str!("../schema.json"))
    }

    fn validate(settings: &Settings) -> Result<(), String> {
        if settings.rules.is_empty() {
            return Err("rules: at least one rule is needed".into());
        }
        for (i, rule) in settings.rules.iter().enumerate() {
            rule.rewrite(i)?;
        }
        Ok(())
    }

    fn evaluate(settings: &Settings, resource: &Resource) -> Result<Vec<Action>, String> {
        if resource.in_namespaces(&settings.exclude_namespaces) {
            return Ok(vec![]);
        }
        if let Some(sel) = &settings.selector
            && !sel.matches(resource.label_pairs())
        {
            return Ok(vec![]);
        }
        let rewrites: Vec<Rewrite> = settings
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| r.rewrite(i))
            .collect::<Result<_, _>>()?;
        let mut actions = Vec::new();
        for (site, image) in resource.image_refs() {
            let already_there = rewrites.iter().any(|r| image.is_under(r.target()));
            if already_there || settings.exclude_images.iter().any(|p| p.matches(&image)) {
                continue;
            }
            let Some((rule, rewrite)) = settings
                .rules
                .iter()
                .zip(&rewrites)
                .find(|(r, _)| r.pattern.matches(&image))
            else {
                continue;
            };
            let below = match rewrite {
                Rewrite::Replace(_) => rule.pattern.remainder(&image).unwrap_or_default(),
                Rewrite::Prefix(_) => format!("{}/{}", image.registry, image.repository),
            };
            let registry = rewrite.target().registry.clone();
            let repository = join(rewrite.target().path.as_deref(), &below);
            let candidate = format!("{registry}/{repository}");
            // The new name must itself be a valid reference: a registry port
            // (`host:5000`) cannot become a path segment under a prefix.
            match ImageRef::parse(&candidate) {
                Ok(parsed) if parsed.registry == registry => {
                    let new = ImageRef {
                        registry,
                        repository,
                        tag: image.tag.clone(),
                        digest: image.digest.clone(),
                    };
                    actions.push(set_image(site, &new));
                }
                _ => {
                    let msg = format!(
                        "registry-mirror: cannot rewrite {} to {candidate}: not a valid image name",
                        site.written
                    );
                    // The warning is the report; a log line as well would
                    // say it twice.
                    actions.push(Action::Warn(msg));
                }
            }
        }
        Ok(actions)
    }
}

export_policy!(RegistryMirror);

#[cfg(test)]
mod tests;
