//! `allowed-registries`: a validating policy. Images must come from the
//! `allow` list (registries, registry/path prefixes or globs); optionally
//! they must be pinned by digest; `:latest` and untagged images can be
//! refused. Each violation is a denial, or a warning with
//! `enforcement: warn`. Objects in `excludeNamespaces` and images matching
//! `excludeImages` are not checked.

use repoint_policy::prelude::*;
use serde::Deserialize;

/// What a violation does.
#[derive(Debug, Default, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Reject the object.
    #[default]
    Deny,
    /// Accept it with a warning.
    Warn,
}

/// The policy's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// Where images may come from.
    pub allow: Vec<ImagePattern>,
    /// Every image must carry a digest.
    #[serde(default)]
    pub require_digest: bool,
    /// Refuse `:latest` and images with neither tag nor digest.
    #[serde(default = "yes")]
    pub deny_latest: bool,
    /// `deny` (default) or `warn`.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// Namespaces (names or globs) whose objects are left alone.
    #[serde(default)]
    pub exclude_namespaces: Vec<Glob>,
    /// Images left alone (patterns, as in `allow`).
    #[serde(default)]
    pub exclude_images: Vec<ImagePattern>,
}

fn yes() -> bool {
    true
}

/// The allowed-registries policy.
#[derive(Debug)]
pub struct AllowedRegistries;

impl Policy for AllowedRegistries {
    type Settings = Settings;

    fn info() -> Info {
        Info::validating(
            "allowed-registries",
            "Allow images only from listed registries; optionally require digests and refuse :latest",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .settings_schema(include_str!("../schema.json"))
    }

    fn validate(settings: &Settings) -> Result<(), String> {
        if settings.allow.is_empty() {
            return Err("allow: list at least one registry".into());
        }
        Ok(())
    }

    fn evaluate(settings: &Settings, resource: &Resource) -> Result<Vec<Action>, String> {
        if resource.in_namespaces(&settings.exclude_namespaces) {
            return Ok(vec![]);
        }
        let mut problems = Vec::new();
        for (site, image) in resource.image_refs() {
            if settings.exclude_images.iter().any(|p| p.matches(&image)) {
                continue;
            }
            let what = format!(
                "image {:?} ({})",
                site.written,
                site.container.as_deref().unwrap_or(&site.pointer)
            );
            if !settings.allow.iter().any(|p| p.matches(&image)) {
                let allowed: Vec<String> = settings.allow.iter().map(ToString::to_string).collect();
                problems.push(format!(
                    "{what} is not from an allowed registry (allowed: {})",
                    allowed.join(", ")
                ));
            }
            if settings.require_digest && image.digest.is_none() {
                problems.push(format!("{what} is not pinned by digest"));
            }
            if settings.deny_latest && image.digest.is_none() {
                match image.tag.as_deref() {
                    Some("latest") => problems.push(format!("{what} uses the :latest tag")),
                    None => problems.push(format!("{what} has no tag, so it pulls :latest")),
                    _ => {}
                }
            }
        }
        Ok(problems
            .into_iter()
            .map(|m| match settings.enforcement {
                Enforcement::Deny => Action::Deny(m),
                Enforcement::Warn => Action::Warn(m),
            })
            .collect())
    }

    /// Images only, and the namespace when namespaces are excluded.
    fn reads(settings: &Settings) -> ResourceParts {
        if settings.exclude_namespaces.is_empty() {
            ResourceParts::empty()
        } else {
            ResourceParts::NAMESPACE
        }
    }
}

export_policy!(AllowedRegistries);

#[cfg(test)]
mod tests {
    use repoint_policy::parse_settings;
    use repoint_policy::testing::resource;
    use serde_json::json;

    use super::*;

    fn run(settings: serde_json::Value, images: &[&str]) -> Vec<Action> {
        let s = parse_settings::<AllowedRegistries>(&settings.to_string()).expect("settings");
        let containers: Vec<_> = images
            .iter()
            .map(|i| json!({"name": "c", "image": i}))
            .collect();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}});
        AllowedRegistries::evaluate(&s, &resource(&pod)).expect("ok")
    }

    fn messages(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Deny(m) => format!("deny: {m}"),
                Action::Warn(m) => format!("warn: {m}"),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn allow_list_latest_and_digest() {
        let d = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582";
        let got = messages(&run(
            json!({"allow": ["mirror.corp", "*.corp.example"], "requireDigest": true}),
            &[
                "mirror.corp/a:1",
                &format!("x.corp.example/b@{d}"),
                "nginx",
                "mirror.corp/c:latest",
            ],
        ));
        assert_eq!(
            got,
            [
                "deny: image \"mirror.corp/a:1\" (c) is not pinned by digest",
                "deny: image \"nginx\" (c) is not from an allowed registry (allowed: mirror.corp, *.corp.example)",
                "deny: image \"nginx\" (c) is not pinned by digest",
                "deny: image \"nginx\" (c) has no tag, so it pulls :latest",
                "deny: image \"mirror.corp/c:latest\" (c) is not pinned by digest",
                "deny: image \"mirror.corp/c:latest\" (c) uses the :latest tag",
            ]
        );
    }

    #[test]
    fn warn_enforcement_and_latest_allowed() {
        let got = messages(&run(
            json!({"allow": ["docker.io"], "denyLatest": false, "enforcement": "warn"}),
            &["nginx", "quay.io/x/y:1"],
        ));
        assert_eq!(
            got,
            [
                "warn: image \"quay.io/x/y:1\" (c) is not from an allowed registry (allowed: docker.io)"
            ]
        );
    }

    #[test]
    fn settings_are_checked() {
        let bad = |v: serde_json::Value| {
            parse_settings::<AllowedRegistries>(&v.to_string()).expect_err("rejected")
        };
        assert!(bad(json!({"allow": []})).contains("allow"));
        assert!(
            bad(json!({"allow": ["a.io"], "enforcement": "audit"}))
                .contains("unknown variant `audit`")
        );
    }
}
