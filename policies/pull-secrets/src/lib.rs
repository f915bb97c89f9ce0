//! `pull-secrets`: make sure objects can pull their images.
//!
//! When an object's images (as earlier policies left them) come from one of
//! the `registries`, the policy adds `secretName` to the object's image pull
//! secrets (the pod spec's `imagePullSecrets`, or a custom resource's
//! configured field) and asks the host to ensure that Secret exists in the
//! object's namespace, holding credentials for exactly those registries.
//! With `serviceAccount: true` it patches the pod's ServiceAccount (its
//! `serviceAccountName`, or `default`) instead of the pod spec.
//!
//! Objects in `excludeNamespaces` are left alone, and images matching
//! `excludeImages` need nothing (`registries: ["*.icr.io"]` with
//! `excludeImages: [cp.icr.io]` leaves the one registry with other
//! credentials to another policy).
//!
//! It also warns about `imagePullSecrets` written inside a container, where
//! Kubernetes silently ignores them.

use std::collections::BTreeSet;

use repoint_policy::prelude::*;
use repoint_policy::{EnsurePullSecret, PatchServiceAccount};
use serde::Deserialize;

/// The policy's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// Name of the pull Secret.
    pub secret_name: String,
    /// Registries (patterns: host, host/path or glob) that need the secret.
    pub registries: Vec<ImagePattern>,
    /// Patch the ServiceAccount instead of the pod spec.
    #[serde(default)]
    pub service_account: bool,
    /// Namespaces (names or globs) whose objects are left alone.
    #[serde(default)]
    pub exclude_namespaces: Vec<Glob>,
    /// Images left alone (patterns, as in `registries`).
    #[serde(default)]
    pub exclude_images: Vec<ImagePattern>,
}

/// The pull-secrets policy.
#[derive(Debug)]
pub struct PullSecrets;

/// Pointers of `imagePullSecrets` lists written inside containers.
/// [`misplaced`] without parsing the object when its JSON text shows that
/// nothing can be misplaced: no `"imagePullSecrets"` at all, or exactly one
/// while the pod spec's own list is non-empty (so that one is the pod
/// spec's). Parsing a whole object costs more than the rest of the policy.
fn misplaced_in(resource: &Resource, prefix: &str) -> Vec<String> {
    let mentions = resource.object_json.matches("\"imagePullSecrets\"").count();
    if mentions == 0 || (mentions == 1 && !resource.pull_secrets.is_empty()) {
        return vec![];
    }
    misplaced(&resource.object(), prefix)
}

fn misplaced(object: &serde_json::Value, prefix: &str) -> Vec<String> {
    let Some(spec) = object.pointer(prefix) else {
        return vec![];
    };
    let mut found = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, c) in spec
            .get(list)
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
            .enumerate()
        {
            if c.get("imagePullSecrets").is_some() {
                found.push(format!("{prefix}/{list}/{i}/imagePullSecrets"));
            }
        }
    }
    found
}

impl Policy for PullSecrets {
    type Settings = Settings;

    fn info() -> Info {
        Info::mutating(
            "pull-secrets",
            "Add an image pull secret to objects whose images come from given registries, and ensure the Secret exists",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .settings_schema(include_str!("../schema.json"))
    }

    fn validate(settings: &Settings) -> Result<(), String> {
        if settings.secret_name.is_empty() {
            return Err("secretName: must not be empty".into());
        }
        if settings.registries.is_empty() {
            return Err("registries: list at least one registry".into());
        }
        Ok(())
    }

    fn evaluate(settings: &Settings, resource: &Resource) -> Result<Vec<Action>, String> {
        if resource.in_namespaces(&settings.exclude_namespaces) {
            return Ok(vec![]);
        }
        let mut actions = Vec::new();
        if let Some(pods) = resource
            .pull_secrets_pointer
            .as_deref()
            .and_then(|p| p.strip_suffix("/imagePullSecrets"))
        {
            for pointer in misplaced_in(resource, pods) {
                actions.push(Action::Warn(format!(
                    "imagePullSecrets at {pointer} is inside a container, where Kubernetes ignores it; \
                     it belongs in the pod spec"
                )));
            }
        }
        let registries: BTreeSet<String> = resource
            .image_refs()
            .into_iter()
            .filter(|(_, image)| {
                settings.registries.iter().any(|p| p.matches(image))
                    && !settings.exclude_images.iter().any(|p| p.matches(image))
            })
            .map(|(_, image)| image.registry)
            .collect();
        if registries.is_empty() {
            return Ok(actions);
        }
        if settings.service_account {
            actions.push(Action::PatchServiceAccount(PatchServiceAccount {
                service_account: resource.service_account.clone(),
                namespace: None,
                secret: settings.secret_name.clone(),
            }));
        } else if resource.pull_secrets_pointer.is_some() {
            actions.push(Action::AddPullSecret(settings.secret_name.clone()));
        } else {
            // The report names the object; the kind says what to configure.
            actions.push(Action::Warn(format!(
                "this {} pulls from {} but has no place for image pull secrets (configure imageFields.pullSecrets)",
                resource.kind,
                registries.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
            return Ok(actions);
        }
        actions.push(Action::EnsurePullSecret(EnsurePullSecret {
            name: settings.secret_name.clone(),
            namespace: None,
            registries: registries.into_iter().collect(),
        }));
        Ok(actions)
    }

    /// The pull secrets listed, the object's JSON without its metadata
    /// (for `imagePullSecrets` written inside a container), the
    /// ServiceAccount when patching it, and the namespace when namespaces
    /// are excluded.
    fn reads(settings: &Settings) -> ResourceParts {
        let mut parts = ResourceParts::PULL_SECRETS | ResourceParts::OBJECT_JSON;
        if settings.service_account {
            parts |= ResourceParts::SERVICE_ACCOUNT;
        }
        if !settings.exclude_namespaces.is_empty() {
            parts |= ResourceParts::NAMESPACE;
        }
        parts
    }
}

export_policy!(PullSecrets);

#[cfg(test)]
mod tests {
    use repoint_policy::parse_settings;
    use repoint_policy::testing::resource;
    use serde_json::json;

    use super::*;

    fn settings(v: serde_json::Value) -> Settings {
        parse_settings::<PullSecrets>(&v.to_string()).expect("settings")
    }

    fn pod(images: &[&str], extra: serde_json::Value) -> serde_json::Value {
        let containers: Vec<_> = images
            .iter()
            .map(|i| json!({"name": "c", "image": i}))
            .collect();
        let mut spec = json!({"containers": containers});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "app"}, "spec": spec})
    }

    #[test]
    fn adds_and_ensures_for_matching_registries_only() {
        let s = settings(
            json!({"secretName": "regcred", "registries": ["mirror.corp", "*.corp.example"]}),
        );
        let actions = PullSecrets::evaluate(
            &s,
            &resource(&pod(
                &["mirror.corp/a:1", "x.corp.example/b", "nginx"],
                json!({}),
            )),
        )
        .expect("ok");
        assert_eq!(actions.len(), 2, "{actions:?}");
        assert!(matches!(&actions[0], Action::AddPullSecret(n) if n == "regcred"));
        let Action::EnsurePullSecret(e) = &actions[1] else {
            panic!("{actions:?}")
        };
        assert_eq!(e.registries, ["mirror.corp", "x.corp.example"]);
        assert!(
            PullSecrets::evaluate(&s, &resource(&pod(&["nginx"], json!({}))))
                .expect("ok")
                .is_empty()
        );
    }

    #[test]
    fn service_account_mode() {
        let s = settings(
            json!({"secretName": "regcred", "registries": ["quay.io"], "serviceAccount": true}),
        );
        let actions = PullSecrets::evaluate(
            &s,
            &resource(&pod(
                &["quay.io/a/b"],
                json!({"serviceAccountName": "builder"}),
            )),
        )
        .expect("ok");
        let Action::PatchServiceAccount(p) = &actions[0] else {
            panic!("{actions:?}")
        };
        assert_eq!(p.service_account.as_deref(), Some("builder"));
        assert_eq!(p.secret, "regcred");
        assert!(matches!(&actions[1], Action::EnsurePullSecret(_)));
    }

    #[test]
    fn warns_about_secrets_inside_containers() {
        let s = settings(json!({"secretName": "regcred", "registries": ["quay.io"]}));
        let mut p = pod(&["nginx"], json!({}));
        p["spec"]["containers"][0]["imagePullSecrets"] = json!([{"name": "x"}]);
        let actions = PullSecrets::evaluate(&s, &resource(&p)).expect("ok");
        assert!(
            matches!(&actions[..], [Action::Warn(m)] if m.contains("/spec/containers/0/imagePullSecrets")),
            "{actions:?}"
        );
        // Beside a pod-level list, and with the pod-level list alone (the
        // case the text check answers without parsing).
        p["spec"]["imagePullSecrets"] = json!([{"name": "y"}]);
        let actions = PullSecrets::evaluate(&s, &resource(&p)).expect("ok");
        assert!(
            matches!(&actions[..], [Action::Warn(m)] if m.contains("/spec/containers/0/imagePullSecrets")),
            "{actions:?}"
        );
        let mut fine = pod(&["nginx"], json!({"imagePullSecrets": [{"name": "y"}]}));
        assert!(
            PullSecrets::evaluate(&s, &resource(&fine))
                .expect("ok")
                .is_empty()
        );
        fine["spec"]["imagePullSecrets"] = json!([]);
        assert!(
            PullSecrets::evaluate(&s, &resource(&fine))
                .expect("ok")
                .is_empty()
        );
    }

    #[test]
    fn settings_are_checked() {
        let bad = |v: serde_json::Value| {
            parse_settings::<PullSecrets>(&v.to_string()).expect_err("rejected")
        };
        assert!(bad(json!({"secretName": "", "registries": ["a.io"]})).contains("secretName"));
        assert!(bad(json!({"secretName": "s", "registries": []})).contains("registries"));
        assert!(bad(json!({"registries": ["a.io"]})).contains("missing field `secretName`"));
    }
}
