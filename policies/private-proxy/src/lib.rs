//! `private-proxy`: a vendor's installer flow. Each image is probed
//! anonymously (the host's `probe-image`):
//!
//! - `needs-auth`: rewritten to `<proxy>/<registry>/<repository>` with its
//!   tag and digest, so customers pull it through the vendor's
//!   pull-through proxy;
//! - already on the proxy, or on a `vendorRegistries` registry: kept as is;
//! - `anonymous`: left alone; `not-found`: left alone, with a warning;
//! - `unknown` (offline, registry down, timeout): as `onUnknown` says.
//!
//! Whenever an image goes through the proxy or comes from a vendor
//! registry, the pod gets `secretName` and the Secret is ensured in the
//! object's namespace and in every `additionalNamespaces` entry.
//!
//! Objects in `excludeNamespaces` and images matching `excludeImages` are
//! left alone: not probed, not rewritten, no secret.

use std::collections::BTreeSet;

use repoint_policy::prelude::*;
use repoint_policy::{EnsurePullSecret, RegistryPath};
use serde::Deserialize;

/// What to do with an image whose probe answered `unknown`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnknown {
    /// Send it through the proxy (which serves public images too).
    Rewrite,
    /// Leave it, with a warning.
    #[default]
    Keep,
    /// Deny the object.
    Deny,
}

/// How a proxied image is named below the proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NameUnderProxy {
    /// The registry and the full repository: `acme/api` becomes
    /// `PROXY/docker.io/acme/api`, `nginx` becomes
    /// `PROXY/docker.io/library/nginx`.
    #[default]
    Full,
    /// The name as written, without its tag and digest, as Replicated's
    /// proxy names images (kots' `MakeProxiedImageURL`): `acme/api` becomes
    /// `PROXY/acme/api`, `quay.io/acme/api` stays `PROXY/quay.io/acme/api`.
    AsWritten,
}

/// `written` without its digest and tag: the name as the manifest spells it.
fn untagged(written: &str) -> &str {
    let name = written.split_once('@').map_or(written, |(name, _)| name);
    match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    }
}

/// The policy's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// `HOST[/PATH]` of the pull-through proxy.
    pub proxy: String,
    /// Registries whose images are kept but need the secret.
    #[serde(default)]
    pub vendor_registries: Vec<ImagePattern>,
    /// Name of the pull Secret.
    pub secret_name: String,
    /// What `unknown` means.
    #[serde(default)]
    pub on_unknown: OnUnknown,
    /// Namespaces that also get the Secret.
    #[serde(default)]
    pub additional_namespaces: Vec<String>,
    /// How a proxied image is named below the proxy.
    #[serde(default)]
    pub name_under_proxy: NameUnderProxy,
    /// Namespaces (names or globs) whose objects are left alone.
    #[serde(default)]
    pub exclude_namespaces: Vec<Glob>,
    /// Images left alone (patterns, as in `vendorRegistries`).
    #[serde(default)]
    pub exclude_images: Vec<ImagePattern>,
}

fn proxy_path(settings: &Settings) -> Result<RegistryPath, String> {
    RegistryPath::parse(&settings.proxy)
        .map_err(|e| format!("proxy: {:?} is not HOST[/PATH]: {e}", settings.proxy))
}

/// The private-proxy policy.
#[derive(Debug)]
pub struct PrivateProxy;

/// What one image needs.
enum Verdict {
    Keep,
    KeepWithSecret,
    Proxy,
}

impl Policy for PrivateProxy {
    type Settings = Settings;

    fn info() -> Info {
        Info::mutating(
            "private-proxy",
            "Send images that need credentials through a pull-through proxy; give the pods the proxy's pull secret",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .settings_schema(include_str!("../schema.json"))
    }

    fn validate(settings: &Settings) -> Result<(), String> {
        proxy_path(settings)?;
        if settings.secret_name.is_empty() {
            return Err("secretName: must not be empty".into());
        }
        Ok(())
    }

    fn evaluate(settings: &Settings, resource: &Resource) -> Result<Vec<Action>, String> {
        if resource.in_namespaces(&settings.exclude_namespaces) {
            return Ok(vec![]);
        }
        let proxy = proxy_path(settings)?;
        let mut actions = Vec::new();
        let mut registries = BTreeSet::new();
        for (site, image) in resource.image_refs() {
            if settings.exclude_images.iter().any(|p| p.matches(&image)) {
                continue;
            }
            let verdict = if image.is_under(&proxy)
                || settings.vendor_registries.iter().any(|p| p.matches(&image))
            {
                Verdict::KeepWithSecret
            } else {
                match probe_image(&image) {
                    ProbeResult::Anonymous => Verdict::Keep,
                    ProbeResult::NeedsAuth => Verdict::Proxy,
                    ProbeResult::NotFound => {
                        actions.push(Action::Warn(format!(
                            "{}: not found on its registry; left as it is",
                            site.written
                        )));
                        Verdict::Keep
                    }
                    ProbeResult::Unknown => match settings.on_unknown {
                        OnUnknown::Rewrite => Verdict::Proxy,
                        OnUnknown::Keep => {
                            actions.push(Action::Warn(format!(
                                "{}: the registry could not be asked whether it needs credentials; left as it is (onUnknown: keep)",
                                site.written
                            )));
                            Verdict::Keep
                        }
                        OnUnknown::Deny => {
                            actions.push(Action::Deny(format!(
                                "{}: the registry could not be asked whether it needs credentials (onUnknown: deny)",
                                site.written
                            )));
                            Verdict::Keep
                        }
                    },
                }
            };
            match verdict {
                Verdict::Keep => {}
                Verdict::KeepWithSecret => {
                    registries.insert(image.registry.clone());
                }
                Verdict::Proxy => {
                    // A registry's port cannot be a path segment.
                    if image.registry.contains(':') {
                        actions.push(Action::Warn(format!(
                            "{}: needs credentials, but {} has a port and cannot be a path under the proxy; left as it is",
                            site.written, image.registry
                        )));
                        continue;
                    }
                    let below = match settings.name_under_proxy {
                        NameUnderProxy::Full => format!("{}/{}", image.registry, image.repository),
                        NameUnderProxy::AsWritten => untagged(&site.written).to_string(),
                    };
                    let repository = match &proxy.path {
                        Some(p) => format!("{p}/{below}"),
                        None => below,
                    };
                    let proxied = ImageRef {
                        registry: proxy.registry.clone(),
                        repository,
                        tag: image.tag.clone(),
                        digest: image.digest.clone(),
                    };
                    // The name as written may be one a proxy path cannot
                    // carry (upper case is refused by the parser already,
                    // so this guards the joined form).
                    if ImageRef::parse(&proxied.to_string()).ok().as_ref() != Some(&proxied) {
                        actions.push(Action::Warn(format!(
                            "{}: needs credentials, but {proxied} is not a valid image name; left as it is",
                            site.written
                        )));
                        continue;
                    }
                    actions.push(set_image(site, &proxied));
                    registries.insert(proxy.registry.clone());
                }
            }
        }
        if registries.is_empty() {
            return Ok(actions);
        }
        if resource.pull_secrets_pointer.is_some() {
            actions.push(Action::AddPullSecret(settings.secret_name.clone()));
        } else {
            // The report names the object; the kind says what to configure.
            actions.push(Action::Warn(format!(
                "this {} needs the pull secret {} but has no place for it (configure imageFields.pullSecrets)",
                resource.kind, settings.secret_name
            )));
        }
        let registries: Vec<String> = registries.into_iter().collect();
        for namespace in std::iter::once(None).chain(
            settings
                .additional_namespaces
                .iter()
                .map(|n| Some(n.clone())),
        ) {
            actions.push(Action::EnsurePullSecret(EnsurePullSecret {
                name: settings.secret_name.clone(),
                namespace,
                registries: registries.clone(),
            }));
        }
        Ok(actions)
    }

    /// Images only, and the namespace when namespaces are excluded. Its
    /// answers that probed a registry are never reused.
    fn reads(settings: &Settings) -> ResourceParts {
        if settings.exclude_namespaces.is_empty() {
            ResourceParts::empty()
        } else {
            ResourceParts::NAMESPACE
        }
    }
}

export_policy!(PrivateProxy);

#[cfg(test)]
mod tests {
    use repoint_policy::parse_settings;
    use repoint_policy::testing::{answer_probes, resource};
    use serde_json::json;

    use super::*;

    fn settings(extra: serde_json::Value) -> Settings {
        let mut v = json!({
            "proxy": "proxy.example.com/proxy/my-app",
            "vendorRegistries": ["registry.example.com"],
            "secretName": "vendor-pull",
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        parse_settings::<PrivateProxy>(&v.to_string()).expect("settings")
    }

    fn pod(images: &[&str]) -> serde_json::Value {
        let containers: Vec<_> = images
            .iter()
            .map(|i| json!({"name": "c", "image": i}))
            .collect();
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "app"},
               "spec": {"containers": containers}})
    }

    /// Registry answers by repository name: `private/...` needs auth,
    /// `public/...` is anonymous, `gone/...` is missing, the rest unknown.
    fn registry() {
        answer_probes(|image| {
            if image.repository.starts_with("private/") {
                ProbeResult::NeedsAuth
            } else if image.repository.starts_with("public/") {
                ProbeResult::Anonymous
            } else if image.repository.starts_with("gone/") {
                ProbeResult::NotFound
            } else {
                ProbeResult::Unknown
            }
        });
    }

    fn set_images(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::SetImage(s) => Some(ImageRef::from(&s.image).to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn private_images_go_through_the_proxy_public_ones_stay() {
        registry();
        let s = settings(json!({"additionalNamespaces": ["monitoring"]}));
        let actions = PrivateProxy::evaluate(
            &s,
            &resource(&pod(&[
                "quay.io/private/app:1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "quay.io/public/tool:2",
                "registry.example.com/vendor/agent:3",
                "proxy.example.com/proxy/my-app/ghcr.io/private/x:1",
            ])),
        )
        .expect("ok");
        assert_eq!(
            set_images(&actions),
            [
                "proxy.example.com/proxy/my-app/quay.io/private/app:1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            ]
        );
        assert!(matches!(&actions[1], Action::AddPullSecret(n) if n == "vendor-pull"));
        let ensured: Vec<(Option<String>, Vec<String>)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::EnsurePullSecret(e) => Some((e.namespace.clone(), e.registries.clone())),
                _ => None,
            })
            .collect();
        let both = vec![
            "proxy.example.com".to_string(),
            "registry.example.com".to_string(),
        ];
        assert_eq!(
            ensured,
            [(None, both.clone()), (Some("monitoring".into()), both)]
        );
    }

    #[test]
    fn public_only_objects_are_untouched() {
        registry();
        let s = settings(json!({"additionalNamespaces": ["monitoring"]}));
        let actions = PrivateProxy::evaluate(&s, &resource(&pod(&["quay.io/public/a:1", "nginx"])))
            .expect("ok");
        // `nginx` probes unknown here: kept with a warning (the default).
        assert!(
            actions.iter().all(|a| matches!(a, Action::Warn(_))),
            "{actions:?}"
        );
    }

    #[test]
    fn unknown_follows_the_setting() {
        registry();
        let image = "docker.io/library/busybox:1.36";
        let actions = PrivateProxy::evaluate(
            &settings(json!({"onUnknown": "rewrite"})),
            &resource(&pod(&[image])),
        )
        .expect("ok");
        assert_eq!(
            set_images(&actions),
            ["proxy.example.com/proxy/my-app/docker.io/library/busybox:1.36"]
        );
        let actions = PrivateProxy::evaluate(
            &settings(json!({"onUnknown": "deny"})),
            &resource(&pod(&[image])),
        )
        .expect("ok");
        assert!(matches!(&actions[..], [Action::Deny(m)] if m.contains("busybox")));
        let actions =
            PrivateProxy::evaluate(&settings(json!({})), &resource(&pod(&["quay.io/gone/x:1"])))
                .expect("ok");
        assert!(matches!(&actions[..], [Action::Warn(m)] if m.contains("not found")));
    }

    #[test]
    fn a_registry_port_cannot_go_under_the_proxy() {
        registry();
        let actions = PrivateProxy::evaluate(
            &settings(json!({})),
            &resource(&pod(&["localhost:5000/private/app:1"])),
        )
        .expect("ok");
        assert!(set_images(&actions).is_empty());
        assert!(matches!(&actions[..], [Action::Warn(m)] if m.contains("has a port")));
    }

    #[test]
    fn settings_are_checked() {
        let bad = |v: serde_json::Value| {
            parse_settings::<PrivateProxy>(&v.to_string()).expect_err("rejected")
        };
        assert!(bad(json!({"proxy": "Not Valid", "secretName": "s"})).contains("proxy"));
        assert!(bad(json!({"proxy": "p.example", "secretName": ""})).contains("secretName"));
        assert!(
            bad(json!({"proxy": "p.example", "secretName": "s", "onUnknown": "maybe"}))
                .contains("unknown variant `maybe`")
        );
    }
}
