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

use repoint_policy::mirror::{MirrorSettings, Outcome};
use repoint_policy::prelude::*;

/// The policy's settings: the rule model shared with `repoint node-config`.
pub type Settings = MirrorSettings;

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
        settings.mirrors().map(|_| ())
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
        let mirrors = settings.mirrors()?;
        let mut actions = Vec::new();
        for (site, image) in resource.image_refs() {
            match mirrors.apply(&image) {
                Outcome::Rewritten { image: new, .. } => actions.push(set_image(site, &new)),
                Outcome::Invalid { candidate, .. } => {
                    let msg = format!(
                        "registry-mirror: cannot rewrite {} to {candidate}: not a valid image name",
                        site.written
                    );
                    // The warning is the report; a log line as well would
                    // say it twice.
                    actions.push(Action::Warn(msg));
                }
                Outcome::Unchanged => {}
            }
        }
        Ok(actions)
    }

    /// Images only, unless namespaces are excluded or a selector is set:
    /// then the object's namespace or labels too.
    fn reads(settings: &Settings) -> ResourceParts {
        let mut parts = ResourceParts::empty();
        if !settings.exclude_namespaces.is_empty() {
            parts |= ResourceParts::NAMESPACE;
        }
        if settings.selector.is_some() {
            parts |= ResourceParts::LABELS;
        }
        parts
    }
}

export_policy!(RegistryMirror);

#[cfg(test)]
mod tests;
