//! What policies ask for, and how it becomes a JSON Patch.
//!
//! [`Action`] mirrors the WIT `action` variant. [`plan`] turns a policy's
//! actions on one object into a [`Plan`]: patch operations for the object
//! (deduplicated and idempotent: an image already at its target or a secret
//! already listed produces nothing), plus the requests that reach beyond the
//! object (pull Secrets to ensure, ServiceAccounts to patch), the denials
//! and the warnings.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::patch::PatchOp;
use crate::reference::ImageRef;
use crate::sites::Sites;

/// A request that a pull Secret exist.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EnsurePullSecret {
    /// Secret name.
    pub name: String,
    /// Namespace; `None` means the object's namespace.
    pub namespace: Option<String>,
    /// Registries whose credentials it must hold.
    pub registries: Vec<String>,
}

/// A request that a ServiceAccount list a pull secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PatchServiceAccount {
    /// ServiceAccount name; `None` means `default`.
    pub service_account: Option<String>,
    /// Namespace; `None` means the object's namespace.
    pub namespace: Option<String>,
    /// The Secret to list.
    pub secret: String,
}

/// One thing a policy asks for (the WIT `action` variant).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Rewrite the image at `pointer`.
    SetImage {
        /// Pointer of an image site.
        pointer: String,
        /// The new reference.
        image: ImageRef,
    },
    /// Append a Secret name to the object's pull secrets.
    AddPullSecret(String),
    /// Ensure a pull Secret exists.
    EnsurePullSecret(EnsurePullSecret),
    /// Add a pull secret to a ServiceAccount.
    PatchServiceAccount(PatchServiceAccount),
    /// Reject the object.
    Deny(String),
    /// Warn about the object.
    Warn(String),
    /// Raw patch operations.
    JsonPatch(Vec<PatchOp>),
}

/// An action that cannot be carried out on this object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// `set-image` named a pointer that is not an image site.
    #[error("set-image names {0}, which is not an image in this object")]
    NotAnImageSite(String),
    /// `add-pull-secret` on an object with no place for pull secrets.
    #[error("add-pull-secret {0:?}: this object has no place for image pull secrets")]
    NoPullSecretPlace(String),
    /// An empty secret name.
    #[error("a pull secret name must not be empty")]
    EmptySecretName,
}

/// The outcome of a policy's actions on one object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Operations on the object (pointers from the document root).
    pub patch: Vec<PatchOp>,
    /// Pull Secrets to ensure.
    pub ensure: Vec<EnsurePullSecret>,
    /// ServiceAccounts to patch.
    pub service_accounts: Vec<PatchServiceAccount>,
    /// Denial messages.
    pub denials: Vec<String>,
    /// Warning messages.
    pub warnings: Vec<String>,
}

impl Plan {
    /// Whether the object itself changes.
    pub fn changes_object(&self) -> bool {
        self.patch
            .iter()
            .any(|op| op.op != crate::patch::OpKind::Test)
    }
}

/// Turn actions on one object into a plan. `object` is the document value
/// the sites' pointers resolve in.
pub fn plan(object: &Value, sites: &Sites, actions: &[Action]) -> Result<Plan, ActionError> {
    let mut out = Plan::default();
    let mut new_secrets: Vec<String> = Vec::new();
    let mut extra: Vec<PatchOp> = Vec::new();
    // The last set-image per site wins; sites keep document order.
    let mut images: Vec<(usize, ImageRef)> = Vec::new();
    for action in actions {
        match action {
            Action::SetImage { pointer, image } => {
                let i = sites
                    .images
                    .iter()
                    .position(|s| &s.pointer == pointer)
                    .ok_or_else(|| ActionError::NotAnImageSite(pointer.clone()))?;
                images.retain(|(j, _)| *j != i);
                images.push((i, image.clone()));
            }
            Action::AddPullSecret(name) => {
                if name.is_empty() {
                    return Err(ActionError::EmptySecretName);
                }
                if sites.pull_secrets_pointer.is_none() {
                    return Err(ActionError::NoPullSecretPlace(name.clone()));
                }
                if !sites.pull_secrets.contains(name) && !new_secrets.contains(name) {
                    new_secrets.push(name.clone());
                }
            }
            Action::EnsurePullSecret(e) => {
                if e.name.is_empty() {
                    return Err(ActionError::EmptySecretName);
                }
                if !out.ensure.contains(e) {
                    out.ensure.push(e.clone());
                }
            }
            Action::PatchServiceAccount(p) => {
                if p.secret.is_empty() {
                    return Err(ActionError::EmptySecretName);
                }
                if !out.service_accounts.contains(p) {
                    out.service_accounts.push(p.clone());
                }
            }
            Action::Deny(m) => out.denials.push(m.clone()),
            Action::Warn(m) => out.warnings.push(m.clone()),
            Action::JsonPatch(ops) => extra.extend(ops.iter().cloned()),
        }
    }
    images.sort_by_key(|(i, _)| *i);
    for (i, image) in images {
        let site = &sites.images[i];
        // Converge: a site already naming this image (in any spelling) is
        // left as written.
        if site.image.as_ref().is_ok_and(|current| *current == image) {
            continue;
        }
        out.patch.push(PatchOp::replace(
            site.pointer.clone(),
            Value::String(image.to_string()),
        ));
    }
    if let Some(ptr) = &sites.pull_secrets_pointer {
        out.patch
            .extend(pull_secret_additions(object, ptr, &new_secrets));
    }
    out.patch.extend(extra);
    Ok(out)
}

/// A ServiceAccount repoint creates so that it lists `secrets`.
pub fn service_account(namespace: &str, name: &str, secrets: &[String]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(namespace, name, json!({ crate::MANAGED_BY.0: crate::MANAGED_BY.1 })),
        "imagePullSecrets": secrets.iter().map(|s| json!({ "name": s })).collect::<Vec<_>>(),
    })
}

/// The `metadata` of a generated object: `name`, `namespace` unless it is
/// empty (Kubernetes' `NamespaceNone`: the object goes where whoever applies
/// it puts it, beside the objects it was generated for) and `labels`.
pub fn metadata(namespace: &str, name: &str, labels: Value) -> Value {
    let mut metadata = json!({ "name": name });
    if !namespace.is_empty() {
        metadata["namespace"] = json!(namespace);
    }
    metadata["labels"] = labels;
    metadata
}

/// Operations that add each of `names` missing from the `[{name: ...}]`
/// list at `pointer` in `object` (a pod spec's or a ServiceAccount's
/// `imagePullSecrets`): appended to a list that exists, or the list
/// written whole where it is absent or null.
pub fn pull_secret_additions(object: &Value, pointer: &str, names: &[String]) -> Vec<PatchOp> {
    let present: Vec<&str> = crate::pointer::get(object, pointer)
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|e| e.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let mut missing: Vec<&String> = names
        .iter()
        .filter(|n| !present.contains(&n.as_str()))
        .collect();
    missing.dedup();
    let entries = missing.into_iter().map(|n| json!({ "name": n }));
    match crate::pointer::get(object, pointer) {
        Some(Value::Array(_)) => entries
            .map(|e| PatchOp::add(format!("{pointer}/-"), e))
            .collect(),
        _ if names.is_empty() => Vec::new(),
        _ => vec![PatchOp::add(pointer, Value::Array(entries.collect()))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sites::{self, Object};

    fn pod(extra: Value) -> Value {
        let mut v = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a", "image": "nginx:1"}]}});
        if let (Some(spec), Value::Object(extra)) = (v["spec"].as_object_mut(), extra) {
            spec.extend(extra);
        }
        v
    }

    fn plan_for(v: &Value, actions: &[Action]) -> Result<Plan, ActionError> {
        let s = sites::find(
            Object {
                prefix: "",
                value: v,
            },
            &[],
        );
        plan(v, &s, actions)
    }

    #[test]
    fn add_pull_secret_appends_and_dedupes() {
        let v = pod(json!({"imagePullSecrets": [{"name": "a"}]}));
        let p = plan_for(
            &v,
            &[
                Action::AddPullSecret("a".into()),
                Action::AddPullSecret("b".into()),
                Action::AddPullSecret("b".into()),
            ],
        )
        .expect("plan");
        assert_eq!(
            p.patch,
            [PatchOp::add(
                "/spec/imagePullSecrets/-",
                json!({"name": "b"})
            )]
        );
    }

    #[test]
    fn add_pull_secret_creates_the_list_once() {
        let v = pod(json!({}));
        let p = plan_for(
            &v,
            &[
                Action::AddPullSecret("a".into()),
                Action::AddPullSecret("b".into()),
            ],
        )
        .expect("plan");
        assert_eq!(
            p.patch,
            [PatchOp::add(
                "/spec/imagePullSecrets",
                json!([{"name": "a"}, {"name": "b"}])
            )]
        );
    }

    #[test]
    fn set_image_writes_canonical_form_and_skips_equal_images() {
        let v = pod(json!({}));
        let same = ImageRef::parse("docker.io/library/nginx:1").expect("valid");
        let p = plan_for(
            &v,
            &[Action::SetImage {
                pointer: "/spec/containers/0/image".into(),
                image: same,
            }],
        )
        .expect("plan");
        assert!(
            p.patch.is_empty(),
            "an equal image in another spelling is not rewritten"
        );
        let mirror = ImageRef::parse("mirror.corp/library/nginx:1").expect("valid");
        let p = plan_for(
            &v,
            &[Action::SetImage {
                pointer: "/spec/containers/0/image".into(),
                image: mirror,
            }],
        )
        .expect("plan");
        assert_eq!(
            p.patch,
            [PatchOp::replace(
                "/spec/containers/0/image",
                json!("mirror.corp/library/nginx:1")
            )]
        );
    }

    #[test]
    fn errors_and_requests() {
        let v = pod(json!({}));
        let bad = Action::SetImage {
            pointer: "/metadata/name".into(),
            image: ImageRef::parse("x").expect("valid"),
        };
        assert!(matches!(
            plan_for(&v, &[bad]),
            Err(ActionError::NotAnImageSite(_))
        ));
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        assert!(matches!(
            plan_for(&cm, &[Action::AddPullSecret("a".into())]),
            Err(ActionError::NoPullSecretPlace(_))
        ));
        let ensure = EnsurePullSecret {
            name: "regcred".into(),
            namespace: None,
            registries: vec!["quay.io".into()],
        };
        let p = plan_for(
            &v,
            &[
                Action::EnsurePullSecret(ensure.clone()),
                Action::EnsurePullSecret(ensure.clone()),
                Action::Warn("w".into()),
                Action::Deny("d".into()),
            ],
        )
        .expect("plan");
        assert_eq!(p.ensure, [ensure]);
        assert_eq!((p.warnings.len(), p.denials.len()), (1, 1));
        assert!(!p.changes_object());
    }
}
