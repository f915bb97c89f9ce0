//! Where images and pull secrets are written in Kubernetes objects.
//!
//! Built-in workload kinds have one pod spec at a fixed place; custom
//! resources get their image and pull-secret locations from configuration
//! ([`ImageFields`]), and so can further images of built-in kinds: fields
//! by pointer, and the containers' environment variables that carry
//! images, as operators take their operands' images from `RELATED_IMAGE_*`
//! variables of their own Deployment. `List` objects (`kind: List` and `FooList`) are walked,
//! each item being a resource of its own.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::glob::Glob;
use crate::pointer;
use crate::reference::{ImageRef, ReferenceError};

/// What kind of place holds an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteKind {
    /// `containers[]`
    Container,
    /// `initContainers[]`
    InitContainer,
    /// `ephemeralContainers[]`
    EphemeralContainer,
    /// `volumes[].image.reference`
    ImageVolume,
    /// A configured field (a custom resource's, or an environment
    /// variable or other field of a built-in kind named in `imageFields`).
    Custom,
}

impl SiteKind {
    /// The kebab-case name used in output (`init-container`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::InitContainer => "init-container",
            Self::EphemeralContainer => "ephemeral-container",
            Self::ImageVolume => "image-volume",
            Self::Custom => "custom",
        }
    }
}

/// One image reference in an object.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSite {
    /// Kind of place.
    pub kind: SiteKind,
    /// JSON Pointer to the image string, from the document root.
    pub pointer: String,
    /// The container's or volume's name.
    pub container: Option<String>,
    /// The string as written.
    pub written: String,
    /// The parsed, normalized reference, or why it is invalid.
    pub image: Result<ImageRef, ReferenceError>,
}

/// Image and pull-secret locations of a custom resource kind, or further
/// image locations of a built-in workload kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageFields {
    /// API group (`postgres-operator.crunchydata.com`); empty for core.
    pub group: String,
    /// Kind (`PostgresCluster`).
    pub kind: String,
    /// JSON Pointers to image strings; a `*` token stands for every element
    /// of an array (or member of an object).
    #[serde(default)]
    pub images: Vec<String>,
    /// JSON Pointer to a `[{name: ...}]` pull-secret list, if the kind has
    /// one (not for built-in kinds: theirs is the pod spec's).
    #[serde(default)]
    pub pull_secrets: Option<String>,
    /// Built-in workload kinds only: names or globs (`RELATED_IMAGE_*`) of
    /// the pod spec's containers' environment variables whose `value` is
    /// an image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<Glob>,
}

/// An object inside a document: the document itself, or an item of a List.
#[derive(Debug, Clone, Copy)]
pub struct Object<'v> {
    /// Pointer from the document root to the object (empty for the root).
    pub prefix: &'v str,
    /// The object.
    pub value: &'v Value,
}

/// What repoint knows about one object's images and pull secrets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sites {
    /// Every image found, in document order.
    pub images: Vec<ImageSite>,
    /// Pointer (from the document root) where pull secrets live, whether the
    /// list exists yet or not.
    pub pull_secrets_pointer: Option<String>,
    /// Names already listed there.
    pub pull_secrets: Vec<String>,
    /// The pod spec's `serviceAccountName`.
    pub service_account: Option<String>,
    /// Pointers of `imagePullSecrets` written inside a container, where
    /// Kubernetes ignores them.
    pub misplaced_pull_secrets: Vec<String>,
}

/// Split `apiVersion` into its group (empty for the core group).
pub fn api_group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// Where the pod spec of a built-in workload kind is, relative to the object.
pub fn pod_spec_path(api_version: &str, kind: &str) -> Option<&'static str> {
    pod_spec_path_in_group(api_group(api_version), kind)
}

/// [`pod_spec_path`] by API group (empty for the core group).
pub fn pod_spec_path_in_group(group: &str, kind: &str) -> Option<&'static str> {
    match (group, kind) {
        ("", "Pod") => Some("/spec"),
        ("", "PodTemplate") => Some("/template/spec"),
        ("", "ReplicationController")
        | ("apps" | "extensions", "Deployment" | "ReplicaSet" | "DaemonSet")
        | ("apps", "StatefulSet")
        | ("batch", "Job") => Some("/spec/template/spec"),
        ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// The objects in a document: the document, or the items of a List
/// (recursively), each with its pointer prefix.
pub fn objects(value: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    collect_objects(String::new(), value, &mut out);
    out
}

fn collect_objects<'v>(prefix: String, value: &'v Value, out: &mut Vec<(String, &'v Value)>) {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    if let (true, Some(Value::Array(items))) =
        (kind == "List" || kind.ends_with("List"), value.get("items"))
    {
        for (i, item) in items.iter().enumerate() {
            collect_objects(format!("{prefix}/items/{i}"), item, out);
        }
        return;
    }
    if value.is_object() {
        out.push((prefix, value));
    }
}

/// One object of a document with its sites.
#[derive(Debug, Clone)]
pub struct ObjectSites<'v> {
    /// Pointer from the document root to the object.
    pub prefix: String,
    /// The object.
    pub value: &'v Value,
    /// Its images and pull-secret location.
    pub sites: Sites,
}

/// Every object of a document (List items walked) with its sites.
pub fn find_all<'v>(document: &'v Value, custom: &[ImageFields]) -> Vec<ObjectSites<'v>> {
    objects(document)
        .into_iter()
        .map(|(prefix, value)| {
            let sites = find(
                Object {
                    prefix: &prefix,
                    value,
                },
                custom,
            );
            ObjectSites {
                prefix,
                value,
                sites,
            }
        })
        .collect()
}

fn str_at<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// Find the images and pull-secret location of one object.
pub fn find(object: Object<'_>, custom: &[ImageFields]) -> Sites {
    let api_version = str_at(object.value, "apiVersion").unwrap_or("");
    let kind = str_at(object.value, "kind").unwrap_or("");
    let mut sites = Sites::default();
    if (api_group(api_version), kind) == ("", "EphemeralContainers") {
        // What `kubectl debug` sends to pods/ephemeralcontainers on servers
        // before v1.22: the Pod's ephemeral containers alone. A running
        // Pod's pull secrets cannot change, so there is no place for them.
        pod_spec(object.prefix, object.value, &mut sites);
        sites.pull_secrets_pointer = None;
        sites.service_account = None;
        return sites;
    }
    let group = api_group(api_version);
    let configured = custom.iter().filter(|f| f.group == group && f.kind == kind);
    if let Some(path) = pod_spec_path_in_group(group, kind) {
        let spec = pointer::get(object.value, path);
        let base = format!("{}{path}", object.prefix);
        if let Some(spec) = spec {
            pod_spec(&base, spec, &mut sites);
        }
        for fields in configured {
            if let Some(spec) = spec {
                env_images(&base, spec, &fields.env, &mut sites);
            }
            configured_images(object, fields, &mut sites);
        }
        return sites;
    }
    for fields in configured {
        configured_images(object, fields, &mut sites);
        if let Some(ps) = &fields.pull_secrets {
            sites.pull_secrets_pointer = Some(format!("{}{ps}", object.prefix));
            sites.pull_secrets = secret_names(pointer::get(object.value, ps));
        }
    }
    sites
}

/// The images at `fields.images`' pointers, each once (a pointer that names
/// a container's `image` of a built-in kind is already a site).
fn configured_images(object: Object<'_>, fields: &ImageFields, sites: &mut Sites) {
    for pattern in &fields.images {
        for (ptr, v) in expand(object.value, pattern) {
            let Some(written) = v.as_str() else { continue };
            let pointer = format!("{}{ptr}", object.prefix);
            if sites.images.iter().any(|s| s.pointer == pointer) {
                continue;
            }
            sites.images.push(ImageSite {
                kind: SiteKind::Custom,
                pointer,
                container: None,
                written: written.to_string(),
                image: ImageRef::parse(written),
            });
        }
    }
}

/// The values of the containers' environment variables named by `names`
/// (a variable set from `valueFrom` has no image to rewrite here).
fn env_images(base: &str, spec: &Value, names: &[Glob], sites: &mut Sites) {
    if names.is_empty() {
        return;
    }
    for field in ["initContainers", "containers"] {
        let Some(list) = spec.get(field).and_then(Value::as_array) else {
            continue;
        };
        for (i, c) in list.iter().enumerate() {
            let Some(env) = c.get("env").and_then(Value::as_array) else {
                continue;
            };
            for (j, var) in env.iter().enumerate() {
                let (Some(name), Some(written)) = (str_at(var, "name"), str_at(var, "value"))
                else {
                    continue;
                };
                if !names.iter().any(|g| g.matches(name)) {
                    continue;
                }
                sites.images.push(ImageSite {
                    kind: SiteKind::Custom,
                    pointer: format!("{base}/{field}/{i}/env/{j}/value"),
                    container: str_at(c, "name").map(str::to_string),
                    written: written.to_string(),
                    image: ImageRef::parse(written),
                });
            }
        }
    }
}

fn secret_names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e.get("name").and_then(Value::as_str).or_else(|| e.as_str()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn pod_spec(base: &str, spec: &Value, sites: &mut Sites) {
    for (field, kind) in [
        ("initContainers", SiteKind::InitContainer),
        ("containers", SiteKind::Container),
        ("ephemeralContainers", SiteKind::EphemeralContainer),
    ] {
        let Some(list) = spec.get(field).and_then(Value::as_array) else {
            continue;
        };
        for (i, c) in list.iter().enumerate() {
            if let Some(written) = str_at(c, "image") {
                sites.images.push(ImageSite {
                    kind,
                    pointer: format!("{base}/{field}/{i}/image"),
                    container: str_at(c, "name").map(str::to_string),
                    written: written.to_string(),
                    image: ImageRef::parse(written),
                });
            }
            if c.get("imagePullSecrets").is_some() {
                sites
                    .misplaced_pull_secrets
                    .push(format!("{base}/{field}/{i}/imagePullSecrets"));
            }
        }
    }
    if let Some(volumes) = spec.get("volumes").and_then(Value::as_array) {
        for (i, v) in volumes.iter().enumerate() {
            if let Some(written) = pointer::get(v, "/image/reference").and_then(Value::as_str) {
                sites.images.push(ImageSite {
                    kind: SiteKind::ImageVolume,
                    pointer: format!("{base}/volumes/{i}/image/reference"),
                    container: str_at(v, "name").map(str::to_string),
                    written: written.to_string(),
                    image: ImageRef::parse(written),
                });
            }
        }
    }
    sites.pull_secrets_pointer = Some(format!("{base}/imagePullSecrets"));
    sites.pull_secrets = secret_names(spec.get("imagePullSecrets"));
    sites.service_account = str_at(spec, "serviceAccountName").map(str::to_string);
}

/// Expand a pointer pattern whose `*` tokens match every element.
pub fn expand<'v>(value: &'v Value, pattern: &str) -> Vec<(String, &'v Value)> {
    let Some(tokens) = pointer::tokens(pattern) else {
        return Vec::new();
    };
    let mut current: Vec<(Vec<String>, &Value)> = vec![(Vec::new(), value)];
    for token in &tokens {
        let mut next = Vec::new();
        for (path, v) in current {
            match (token.as_str(), v) {
                ("*", Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        let mut p = path.clone();
                        p.push(i.to_string());
                        next.push((p, item));
                    }
                }
                ("*", Value::Object(map)) => {
                    for (k, item) in map {
                        let mut p = path.clone();
                        p.push(k.clone());
                        next.push((p, item));
                    }
                }
                (t, Value::Object(map)) => {
                    if let Some(item) = map.get(t) {
                        let mut p = path;
                        p.push(t.to_string());
                        next.push((p, item));
                    }
                }
                (t, Value::Array(items)) => {
                    if let Some(item) = t.parse::<usize>().ok().and_then(|i| items.get(i)) {
                        let mut p = path;
                        p.push(t.to_string());
                        next.push((p, item));
                    }
                }
                _ => {}
            }
        }
        current = next;
    }
    current
        .into_iter()
        .map(|(p, v)| (pointer::join(&p), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cronjob_nesting_and_volumes() {
        let v = json!({"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "a", "image": "busybox"}],
            "volumes": [{"name": "v", "image": {"reference": "quay.io/x/y:1"}}],
            "serviceAccountName": "sa"}}}}}});
        let s = find(
            Object {
                prefix: "",
                value: &v,
            },
            &[],
        );
        assert_eq!(s.images.len(), 2);
        assert_eq!(
            s.images[0].pointer,
            "/spec/jobTemplate/spec/template/spec/containers/0/image"
        );
        assert_eq!(s.images[1].kind, SiteKind::ImageVolume);
        assert_eq!(s.service_account.as_deref(), Some("sa"));
        assert_eq!(
            s.pull_secrets_pointer.as_deref(),
            Some("/spec/jobTemplate/spec/template/spec/imagePullSecrets")
        );
    }

    #[test]
    fn an_operators_related_image_variables_and_fields_of_a_built_in_kind() {
        let v = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"annotations": {"operand": "quay.io/acme/db:1"}},
            "spec": {"template": {"spec": {"containers": [{"name": "manager", "image": "quay.io/acme/operator:2",
                "env": [{"name": "WATCH_NAMESPACE", "value": "shop"},
                        {"name": "RELATED_IMAGE_DB", "value": "quay.io/acme/db:1"},
                        {"name": "RELATED_IMAGE_FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
                        {"name": "RELATED_IMAGE_BACKUP", "value": "quay.io/acme/backup:3"}]}]}}}});
        let fields = ImageFields {
            group: "apps".into(),
            kind: "Deployment".into(),
            images: vec![
                "/metadata/annotations/operand".into(),
                // Already a site: found once.
                "/spec/template/spec/containers/0/image".into(),
            ],
            pull_secrets: None,
            env: vec![Glob::new("RELATED_IMAGE_*").expect("glob")],
        };
        let s = find(
            Object {
                prefix: "",
                value: &v,
            },
            std::slice::from_ref(&fields),
        );
        let found: Vec<(&str, &str, Option<&str>)> = s
            .images
            .iter()
            .map(|i| {
                (
                    i.pointer.as_str(),
                    i.written.as_str(),
                    i.container.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                (
                    "/spec/template/spec/containers/0/image",
                    "quay.io/acme/operator:2",
                    Some("manager")
                ),
                (
                    "/spec/template/spec/containers/0/env/1/value",
                    "quay.io/acme/db:1",
                    Some("manager")
                ),
                (
                    "/spec/template/spec/containers/0/env/3/value",
                    "quay.io/acme/backup:3",
                    Some("manager")
                ),
                ("/metadata/annotations/operand", "quay.io/acme/db:1", None),
            ]
        );
        assert_eq!(s.images[1].kind, SiteKind::Custom);
        // The pod spec's pull secrets stay where they are.
        assert_eq!(
            s.pull_secrets_pointer.as_deref(),
            Some("/spec/template/spec/imagePullSecrets")
        );
        // Another kind is not affected.
        let mut other = v.clone();
        other["kind"] = json!("StatefulSet");
        let s = find(
            Object {
                prefix: "",
                value: &other,
            },
            std::slice::from_ref(&fields),
        );
        assert_eq!(s.images.len(), 1);
    }

    #[test]
    fn postgres_cluster_custom_resource() {
        let v = json!({"apiVersion": "postgres-operator.crunchydata.com/v1beta1", "kind": "PostgresCluster",
            "spec": {"image": "registry.example.com/crunchy/postgres:16",
                     "backups": {"pgbackrest": {"image": "registry.example.com/crunchy/pgbackrest:2"}},
                     "imagePullSecrets": [{"name": "vendor"}]}});
        let fields = ImageFields {
            group: "postgres-operator.crunchydata.com".into(),
            kind: "PostgresCluster".into(),
            images: vec![
                "/spec/image".into(),
                "/spec/backups/pgbackrest/image".into(),
            ],
            pull_secrets: Some("/spec/imagePullSecrets".into()),
            env: vec![],
        };
        let s = find(
            Object {
                prefix: "",
                value: &v,
            },
            std::slice::from_ref(&fields),
        );
        let pointers: Vec<&str> = s.images.iter().map(|i| i.pointer.as_str()).collect();
        assert_eq!(pointers, ["/spec/image", "/spec/backups/pgbackrest/image"]);
        assert!(s.images.iter().all(|i| i.kind == SiteKind::Custom));
        assert_eq!(s.pull_secrets, ["vendor"]);
        assert_eq!(
            s.pull_secrets_pointer.as_deref(),
            Some("/spec/imagePullSecrets")
        );
        // Another group with the same kind is not matched.
        let other = json!({"apiVersion": "example.com/v1", "kind": "PostgresCluster", "spec": {"image": "x"}});
        assert!(
            find(
                Object {
                    prefix: "",
                    value: &other
                },
                &[fields]
            )
            .images
            .is_empty()
        );
    }

    #[test]
    fn list_items_and_misplaced_pull_secrets() {
        let v = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ConfigMap"},
            {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [
                {"name": "a", "image": "nginx", "imagePullSecrets": [{"name": "x"}]}]}}]});
        let objs = objects(&v);
        assert_eq!(objs.len(), 2);
        let (prefix, pod) = &objs[1];
        let s = find(Object { prefix, value: pod }, &[]);
        assert_eq!(s.images[0].pointer, "/items/1/spec/containers/0/image");
        assert_eq!(
            s.misplaced_pull_secrets,
            ["/items/1/spec/containers/0/imagePullSecrets"]
        );
    }

    #[test]
    fn wildcards() {
        let v = json!({"spec": {"a": [{"image": "x"}, {"image": "y"}, {}]}});
        let got: Vec<String> = expand(&v, "/spec/a/*/image")
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(got, ["/spec/a/0/image", "/spec/a/1/image"]);
    }
}
