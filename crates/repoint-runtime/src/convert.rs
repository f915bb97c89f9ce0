//! Between the generated WIT types and repoint-core's types. What comes
//! back from a policy is checked here: an action the host cannot carry out
//! is an error naming what is wrong, never a panic or a silent skip.

use repoint_core::ImageRef;
use repoint_core::actions::{Action, EnsurePullSecret, PatchServiceAccount};
use repoint_core::patch::{OpKind, PatchOp};
use repoint_core::resource::ResourceView;
use repoint_core::sites::SiteKind;
use sha2::{Digest, Sha256};

use crate::bindings::repoint::policy::types::{self as wit, ResourceParts};
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

/// A resource as one policy is shown it: the parts it reads, and the
/// others emptied as the `selective-policy` world says. This is the one
/// place that decides what a policy sees; the resource it is given and the
/// key its answers are kept under are both made from it, field by field.
pub struct Shown<'a> {
    view: &'a ResourceView,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    labels: &'a [(String, String)],
    annotations: &'a [(String, String)],
    pull_secrets: &'a [String],
    service_account: Option<&'a str>,
    origin: ShownOrigin<'a>,
    object_json: &'a str,
}

/// The origin as shown: a file's position only to a policy reading it.
enum ShownOrigin<'a> {
    File {
        path: &'a str,
        document: u32,
        line: u32,
    },
    Cluster,
    Admission(crate::chain::Operation),
}

/// `view` from `origin` as a policy reading `parts` is shown it.
pub fn shown<'a>(view: &'a ResourceView, origin: &'a Origin, parts: ResourceParts) -> Shown<'a> {
    let reads = |part| parts.contains(part);
    let when = |part, given: Option<&'a str>| given.filter(|_| reads(part));
    Shown {
        view,
        namespace: when(ResourceParts::NAMESPACE, view.namespace.as_deref()),
        name: when(ResourceParts::NAME, view.name.as_deref()),
        labels: if reads(ResourceParts::LABELS) {
            &view.labels
        } else {
            &[]
        },
        annotations: if reads(ResourceParts::ANNOTATIONS) {
            &view.annotations
        } else {
            &[]
        },
        pull_secrets: if reads(ResourceParts::PULL_SECRETS) {
            &view.pull_secrets
        } else {
            &[]
        },
        service_account: when(
            ResourceParts::SERVICE_ACCOUNT,
            view.service_account.as_deref(),
        ),
        origin: match origin {
            Origin::File {
                path,
                document,
                line,
            } if reads(ResourceParts::ORIGIN) => ShownOrigin::File {
                path,
                document: u32::try_from(*document).unwrap_or(u32::MAX),
                line: u32::try_from(*line).unwrap_or(u32::MAX),
            },
            Origin::File { .. } => ShownOrigin::File {
                path: "",
                document: 0,
                line: 0,
            },
            Origin::Cluster => ShownOrigin::Cluster,
            Origin::Admission(op) => ShownOrigin::Admission(*op),
        },
        object_json: match (
            reads(ResourceParts::OBJECT_JSON),
            reads(ResourceParts::OBJECT_METADATA),
        ) {
            (true, true) => &view.object_json,
            (true, false) => &view.object_json_without_metadata,
            (false, _) => "",
        },
    }
}

impl Shown<'_> {
    /// The WIT resource.
    pub fn resource(&self) -> wit::Resource {
        let Self {
            view,
            namespace,
            name,
            labels,
            annotations,
            pull_secrets,
            service_account,
            origin,
            object_json,
        } = self;
        let owned = |s: &Option<&str>| s.map(str::to_string);
        wit::Resource {
            api_version: view.api_version.clone(),
            kind: view.kind.clone(),
            namespace: owned(namespace),
            name: owned(name),
            labels: labels.to_vec(),
            annotations: annotations.to_vec(),
            images: view
                .images
                .iter()
                .filter_map(|s| {
                    let image = image_ref(s.image.as_ref().ok()?);
                    Some(wit::ImageSite {
                        kind: site_kind(s.kind),
                        pointer: s.pointer.clone(),
                        container: s.container.clone(),
                        written: s.written.clone(),
                        image,
                    })
                })
                .collect(),
            pull_secrets: pull_secrets.to_vec(),
            pull_secrets_pointer: view.pull_secrets_pointer.clone(),
            service_account: owned(service_account),
            origin: match *origin {
                ShownOrigin::File {
                    path,
                    document,
                    line,
                } => wit::Origin::File(wit::FileOrigin {
                    path: path.to_string(),
                    document,
                    line,
                }),
                ShownOrigin::Cluster => wit::Origin::Cluster,
                ShownOrigin::Admission(op) => wit::Origin::Admission(operation(op)),
            },
            object_json: object_json.to_string(),
        }
    }

    /// The SHA-256 digest of every field of [`Shown::resource`], each
    /// length-prefixed: equal exactly when the resources shown are.
    pub fn key(&self) -> crate::answers::Key {
        let Self {
            view,
            namespace,
            name,
            labels,
            annotations,
            pull_secrets,
            service_account,
            origin,
            object_json,
        } = self;
        let mut key = Key(Sha256::new());
        key.text(&view.api_version);
        key.text(&view.kind);
        key.maybe(*namespace);
        key.maybe(*name);
        key.pairs(labels);
        key.pairs(annotations);
        let images = || {
            view.images
                .iter()
                .filter_map(|s| Some((s, s.image.as_ref().ok()?)))
        };
        key.count(images().count());
        for (site, image) in images() {
            key.0.update([site.kind as u8]);
            key.text(&site.pointer);
            key.maybe(site.container.as_deref());
            key.text(&site.written);
            key.text(&image.registry);
            key.text(&image.repository);
            key.maybe(image.tag.as_deref());
            key.maybe(image.digest.as_deref());
        }
        key.count(pull_secrets.len());
        for secret in *pull_secrets {
            key.text(secret);
        }
        key.maybe(view.pull_secrets_pointer.as_deref());
        key.maybe(*service_account);
        match *origin {
            ShownOrigin::File {
                path,
                document,
                line,
            } => {
                key.0.update([0]);
                key.text(path);
                key.0.update(document.to_le_bytes());
                key.0.update(line.to_le_bytes());
            }
            ShownOrigin::Cluster => key.0.update([1]),
            ShownOrigin::Admission(op) => key.0.update([2, op as u8]),
        }
        key.text(object_json);
        key.0.finalize().into()
    }
}

/// A key being written: every variable-length part is preceded by its
/// length, so no two different resources hash the same bytes.
struct Key(Sha256);

impl Key {
    fn count(&mut self, n: usize) {
        self.0.update((n as u64).to_le_bytes());
    }
    fn text(&mut self, s: &str) {
        self.count(s.len());
        self.0.update(s.as_bytes());
    }
    fn maybe(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.0.update([1]);
                self.text(s);
            }
            None => self.0.update([0]),
        }
    }
    fn pairs(&mut self, pairs: &[(String, String)]) {
        self.count(pairs.len());
        for (k, v) in pairs {
            self.text(k);
            self.text(v);
        }
    }
}

fn operation(op: crate::chain::Operation) -> wit::Operation {
    match op {
        crate::chain::Operation::Create => wit::Operation::Create,
        crate::chain::Operation::Update => wit::Operation::Update,
        crate::chain::Operation::Delete => wit::Operation::Delete,
        crate::chain::Operation::Connect => wit::Operation::Connect,
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

#[cfg(test)]
mod tests {
    use repoint_core::sites::{self, Object};
    use serde_json::{Value, json};

    use super::*;

    fn view(object: &Value) -> ResourceView {
        let found = sites::find(
            Object {
                prefix: "",
                value: object,
            },
            &[],
        );
        let forms = repoint_core::resource::JsonForms {
            whole: true,
            without_metadata: true,
        };
        ResourceView::with_json(object, "", &found, forms)
    }

    /// Objects that differ in one part each, and in ways a careless
    /// encoding would confuse (`a`+`bc` against `ab`+`c`, none against
    /// empty).
    fn variants() -> Vec<Value> {
        let base = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "bc"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        let mut out = vec![base.clone()];
        let mut with = |pointer: &str, value: Value| {
            let mut v = base.clone();
            *v.pointer_mut(pointer).expect("pointer") = value;
            out.push(v);
        };
        with("/metadata/name", json!("q"));
        with("/metadata/namespace", json!(""));
        with("/metadata/labels", json!({"ab": "c"}));
        with("/metadata/labels", json!({}));
        with("/metadata", json!({"name": "p", "labels": {"a": "bc"}}));
        with(
            "/metadata",
            json!({"name": "p", "namespace": "ns", "labels": {"a": "bc"}, "uid": "u"}),
        );
        with("/spec/containers/0/image", json!("nginx:1"));
        with("/spec/containers/0/name", json!("d"));
        with(
            "/spec",
            json!({"containers": [{"name": "c", "image": "nginx"}], "serviceAccountName": "x"}),
        );
        out
    }

    #[test]
    fn keys_are_equal_exactly_when_the_shown_resources_are() {
        let origins = [
            Origin::File {
                path: "a.yaml".into(),
                document: 0,
                line: 1,
            },
            Origin::File {
                path: "a.yaml".into(),
                document: 1,
                line: 9,
            },
            Origin::Cluster,
            Origin::Admission(crate::chain::Operation::Create),
        ];
        let parts = [
            ResourceParts::empty(),
            ResourceParts::NAMESPACE,
            ResourceParts::NAME | ResourceParts::LABELS,
            ResourceParts::ORIGIN,
            ResourceParts::SERVICE_ACCOUNT,
            ResourceParts::OBJECT_JSON,
            ResourceParts::OBJECT_JSON | ResourceParts::OBJECT_METADATA,
            ResourceParts::all(),
        ];
        let views: Vec<ResourceView> = variants().iter().map(view).collect();
        for parts in parts {
            let all: Vec<(crate::answers::Key, String)> = views
                .iter()
                .flat_map(|v| origins.iter().map(move |o| (v, o)))
                .map(|(v, o)| {
                    let shown = shown(v, o, parts);
                    (shown.key(), format!("{:?}", shown.resource()))
                })
                .collect();
            for (a_key, a) in &all {
                for (b_key, b) in &all {
                    assert_eq!(a_key == b_key, a == b, "{parts:?}: {a} / {b}");
                }
            }
        }
    }
}
