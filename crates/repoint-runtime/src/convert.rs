//! Between the generated WIT types and repoint-core's types. What comes
//! back from a policy is checked here: an action the host cannot carry out
//! is an error naming what is wrong, never a panic or a silent skip.

use repoint_core::ImageRef;
use repoint_core::actions::{Action, EnsurePullSecret, PatchServiceAccount};
use repoint_core::patch::{OpKind, PatchOp};
use repoint_core::resource::ResourceView;
use repoint_core::sites::SiteKind;

use crate::bindings::repoint::policy::types as wit;
use crate::chain::Origin;

fn site_kind(k: SiteKind) -> wit::SiteKind {
    match k {
        SiteKind::Container => wit::SiteKind::Container,
        SiteKind::InitContainer => wit::SiteKind::InitContainer,
        SiteKind::EphemeralContainer => wit::SiteKind::EphemeralContainer,
        SiteKind::ImageVolume => wit::SiteKind::ImageVolume,
        SiteKind::Custom => wit::SiteKind::Custom,
    }
}

fn image_ref(r: &ImageRef) -> wit::ImageRef {
    wit::ImageRef {
        registry: r.registry.clone(),
        repository: r.repository.clone(),
        tag: r.tag.clone(),
        digest: r.digest.clone(),
    }
}

/// The WIT resource for a view.
pub fn resource(view: ResourceView, origin: &Origin) -> wit::Resource {
    wit::Resource {
        api_version: view.api_version,
        kind: view.kind,
        namespace: view.namespace,
        name: view.name,
        labels: view.labels,
        annotations: view.annotations,
        images: view
            .images
            .into_iter()
            .filter_map(|s| {
                let image = image_ref(s.image.as_ref().ok()?);
                Some(wit::ImageSite {
                    kind: site_kind(s.kind),
                    pointer: s.pointer,
                    container: s.container,
                    written: s.written,
                    image,
                })
            })
            .collect(),
        pull_secrets: view.pull_secrets,
        pull_secrets_pointer: view.pull_secrets_pointer,
        service_account: view.service_account,
        origin: match origin {
            Origin::File {
                path,
                document,
                line,
            } => wit::Origin::File(wit::FileOrigin {
                path: path.clone(),
                document: u32::try_from(*document).unwrap_or(u32::MAX),
                line: u32::try_from(*line).unwrap_or(u32::MAX),
            }),
            Origin::Cluster => wit::Origin::Cluster,
            Origin::Admission(op) => wit::Origin::Admission(match op {
                crate::chain::Operation::Create => wit::Operation::Create,
                crate::chain::Operation::Update => wit::Operation::Update,
                crate::chain::Operation::Delete => wit::Operation::Delete,
                crate::chain::Operation::Connect => wit::Operation::Connect,
            }),
        },
        object_json: view.object_json,
    }
}

/// Check a WIT image reference by parsing its canonical text with the one
/// parser: it must come back as exactly the same parts.
fn checked_image(r: &wit::ImageRef) -> Result<ImageRef, String> {
    let candidate = ImageRef {
        registry: r.registry.clone(),
        repository: r.repository.clone(),
        tag: r.tag.clone(),
        digest: r.digest.clone(),
    };
    let text = candidate.to_string();
    match ImageRef::parse(&text) {
        Ok(parsed) if parsed == candidate => Ok(candidate),
        Ok(parsed) => Err(format!(
            "set-image {text:?} is not in canonical form (it reads as {parsed})"
        )),
        Err(e) => Err(format!(
            "set-image {text:?} is not a valid image reference: {e}"
        )),
    }
}

fn patch_op(op: &wit::PatchOp) -> Result<PatchOp, String> {
    let value = match &op.value_json {
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| format!("json-patch value at {} is not JSON: {e}", op.path))?,
        ),
        None => None,
    };
    Ok(PatchOp {
        op: match op.op {
            wit::PatchOpKind::Add => OpKind::Add,
            wit::PatchOpKind::Remove => OpKind::Remove,
            wit::PatchOpKind::Replace => OpKind::Replace,
            wit::PatchOpKind::Move => OpKind::Move,
            wit::PatchOpKind::Copy => OpKind::Copy,
            wit::PatchOpKind::Test => OpKind::Test,
        },
        path: op.path.clone(),
        from: op.from.clone(),
        value,
    })
}

/// Core actions for what a policy returned.
pub fn actions(returned: Vec<wit::Action>) -> Result<Vec<Action>, String> {
    returned
        .into_iter()
        .map(|a| {
            Ok(match a {
                wit::Action::SetImage(s) => Action::SetImage {
                    image: checked_image(&s.image)?,
                    pointer: s.pointer,
                },
                wit::Action::AddPullSecret(name) => Action::AddPullSecret(name),
                wit::Action::EnsurePullSecret(e) => Action::EnsurePullSecret(EnsurePullSecret {
                    name: e.name,
                    namespace: e.namespace,
                    registries: e.registries,
                }),
                wit::Action::PatchServiceAccount(p) => {
                    Action::PatchServiceAccount(PatchServiceAccount {
                        service_account: p.service_account,
                        namespace: p.namespace,
                        secret: p.secret,
                    })
                }
                wit::Action::Deny(m) => Action::Deny(m),
                wit::Action::Warn(m) => Action::Warn(m),
                wit::Action::JsonPatch(ops) => {
                    Action::JsonPatch(ops.iter().map(patch_op).collect::<Result<_, _>>()?)
                }
            })
        })
        .collect()
}
