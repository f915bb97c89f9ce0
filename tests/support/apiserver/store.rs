//! The fixture's state: the resources it serves, the objects, a global
//! resource version, and the event history that watches replay. Every
//! operation behaves as the real API server's does for these resources
//! (status codes, reasons and messages included), so clients see the same
//! errors they would see from a cluster.

use std::collections::BTreeMap;

use repoint_core::patch::{self, PatchError, PatchOp};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::merge;
use super::selector::{FieldSelector, LabelSelector};

/// A kind of object the fixture serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// Defined by a CustomResourceDefinition.
    pub custom: bool,
}

impl Resource {
    fn builtin(group: &str, kind: &str, plural: &str, namespaced: bool, short: &[&str]) -> Self {
        Self {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            custom: false,
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, `pods`: how the API server names it in messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Storage key: the same for every version of a group's resource.
    fn key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }
}

/// The resources every fixture serves from the start.
fn builtin_resources() -> Vec<Resource> {
    vec![
        Resource::builtin("", "Namespace", "namespaces", false, &["ns"]),
        Resource::builtin("", "Pod", "pods", true, &["po"]),
        Resource::builtin("", "PodTemplate", "podtemplates", true, &[]),
        Resource::builtin(
            "",
            "ReplicationController",
            "replicationcontrollers",
            true,
            &["rc"],
        ),
        Resource::builtin("", "Secret", "secrets", true, &[]),
        Resource::builtin("", "ServiceAccount", "serviceaccounts", true, &["sa"]),
        Resource::builtin("", "ConfigMap", "configmaps", true, &["cm"]),
        Resource::builtin("apps", "Deployment", "deployments", true, &["deploy"]),
        Resource::builtin("apps", "StatefulSet", "statefulsets", true, &["sts"]),
        Resource::builtin("apps", "DaemonSet", "daemonsets", true, &["ds"]),
        Resource::builtin("apps", "ReplicaSet", "replicasets", true, &["rs"]),
        Resource::builtin("batch", "Job", "jobs", true, &[]),
        Resource::builtin("batch", "CronJob", "cronjobs", true, &["cj"]),
        Resource::builtin(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
        ),
    ]
}

/// An API error, rendered as a `Status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Box<Details>>,
}

/// What a `Status` says about the object concerned.
#[derive(Debug, Clone, PartialEq)]
pub struct Details {
    pub name: String,
    pub group: String,
    /// The resource (plural), or the kind for validation errors.
    pub kind: String,
    /// (reason, field, message) of each cause.
    pub causes: Vec<(&'static str, String, String)>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn about(mut self, resource: &Resource, name: &str) -> Self {
        self.details = Some(Box::new(Details {
            name: name.into(),
            group: resource.group.clone(),
            kind: resource.plural.clone(),
            causes: Vec::new(),
        }));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn not_found(resource: &Resource, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", resource.group_resource()),
        )
        .about(resource, name)
    }

    fn conflict(resource: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                resource.group_resource()
            ),
        )
        .about(resource, name)
    }

    /// A validation failure; `cause` is `field: message`.
    fn invalid(resource: &Resource, name: &str, cause: &str) -> Self {
        let (field, message) = cause.split_once(": ").unwrap_or(("", cause));
        let mut error = Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {cause}", resource.kind),
        );
        // Validation errors name the kind, and list their causes.
        error.details = Some(Box::new(Details {
            name: name.into(),
            group: resource.group.clone(),
            kind: resource.kind.clone(),
            causes: vec![("FieldValueInvalid", field.to_string(), message.to_string())],
        }));
        error
    }

    /// What the real server answers when `verb` is refused by RBAC.
    pub fn forbidden(resource: &Resource, verb: &str, namespace: Option<&str>, name: &str) -> Self {
        let subject = if name.is_empty() {
            resource.group_resource()
        } else {
            format!("{} \"{name}\"", resource.group_resource())
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        Self::new(
            403,
            "Forbidden",
            format!(
                "{subject} is forbidden: User \"{}\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
                super::USER,
                resource.plural,
                resource.group
            ),
        )
        .about(resource, name)
    }

    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = json!({"name": d.name, "group": d.group, "kind": d.kind});
            if !d.causes.is_empty() {
                status["details"]["causes"] = d
                    .causes
                    .iter()
                    .map(|(reason, field, message)| {
                        json!({"reason": reason, "message": message, "field": field})
                    })
                    .collect();
            }
        }
        status
    }
}

/// A change to an object, as a watch reports it.
#[derive(Debug, Clone)]
pub struct Event {
    pub revision: u64,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    /// The resource's storage key.
    pub resource: String,
    pub object: Value,
}

/// Which objects a list or watch wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    /// Whether the filter selects `object`.
    pub fn matches(&self, object: &Value) -> bool {
        let ns = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str);
        self.namespace
            .as_deref()
            .is_none_or(|want| ns == Some(want))
            && self.labels.matches(object)
            && self.fields.matches(object)
    }
}

/// How a PATCH body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    /// Server-side apply; the field manager is required.
    Apply,
}

/// A PATCH request's body and how to read it.
#[derive(Debug, Clone, Copy)]
pub struct PatchRequest<'b> {
    pub kind: PatchKind,
    pub body: &'b [u8],
    /// The `fieldManager` query parameter.
    pub field_manager: Option<&'b str>,
}

type ObjectKey = (String, String, String);

/// All state of the fixture.
#[derive(Debug)]
pub struct Store {
    pub resources: Vec<Resource>,
    objects: BTreeMap<ObjectKey, Value>,
    revision: u64,
    created: u64,
    history: Vec<Event>,
    pub events: broadcast::Sender<Event>,
}

impl Default for Store {
    fn default() -> Self {
        let mut store = Self {
            resources: builtin_resources(),
            objects: BTreeMap::new(),
            revision: 100,
            created: 0,
            history: Vec::new(),
            events: broadcast::channel(4096).0,
        };
        for ns in ["default", "kube-system", "kube-public"] {
            let namespaces = store.resource("", "namespaces").expect("built in");
            store
                .create(
                    &namespaces,
                    None,
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                    false,
                )
                .expect("seed namespace");
        }
        store
    }
}

impl Store {
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// A served resource by group and plural.
    pub fn resource(&self, group: &str, plural: &str) -> Option<Resource> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.plural == plural)
            .cloned()
    }

    /// The served resource for a group, version and plural.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<Resource> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// Objects of `resource` that `filter` selects, in storage order
    /// (namespace, then name), starting after `after`.
    pub fn list(
        &self,
        resource: &Resource,
        filter: &Filter,
        after: Option<&(String, String)>,
    ) -> Vec<((String, String), Value)> {
        let key = resource.key();
        self.objects
            .iter()
            .filter(|((r, ns, name), _)| {
                *r == key && after.is_none_or(|(a_ns, a_name)| (ns, name) > (a_ns, a_name))
            })
            .filter(|(_, o)| filter.matches(o))
            .map(|((_, ns, name), o)| ((ns.clone(), name.clone()), self.as_version(resource, o)))
            .collect()
    }

    pub fn get(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.objects
            .get(&(
                resource.key(),
                namespace.unwrap_or("").to_string(),
                name.to_string(),
            ))
            .map(|o| self.as_version(resource, o))
            .ok_or_else(|| ApiError::not_found(resource, name))
    }

    /// Objects are stored in the version they were written in; a CRD
    /// serving one version at a time makes that the only one.
    fn as_version(&self, resource: &Resource, object: &Value) -> Value {
        let mut object = object.clone();
        object["apiVersion"] = Value::String(resource.api_version());
        object
    }

    /// Events after `since` that `filter` selects, and a receiver for the
    /// ones to come (subscribed before the backlog is read, so none is
    /// missed). Without `since`, the backlog is an `ADDED` per object.
    pub fn watch(
        &self,
        resource: &Resource,
        filter: &Filter,
        since: Option<u64>,
    ) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let receiver = self.events.subscribe();
        let key = resource.key();
        let backlog = match since {
            Some(rv) if rv > 0 => self
                .history
                .iter()
                .filter(|e| e.revision > rv && e.resource == key && filter.matches(&e.object))
                .cloned()
                .collect(),
            _ => self
                .list(resource, filter, None)
                .into_iter()
                .map(|(_, object)| Event {
                    revision: self.revision,
                    kind: "ADDED",
                    resource: key.clone(),
                    object,
                })
                .collect(),
        };
        (backlog, receiver)
    }

    fn namespace_of<'b>(
        &self,
        resource: &Resource,
        path_ns: Option<&'b str>,
        body: &'b Value,
    ) -> Result<Option<&'b str>, ApiError> {
        if !resource.namespaced {
            return Ok(None);
        }
        let body_ns = body
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        match (path_ns, body_ns) {
            (Some(p), Some(b)) if p != b => Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )),
            (Some(p), _) => Ok(Some(p)),
            (None, Some(b)) => Ok(Some(b)),
            (None, None) => Err(ApiError::bad_request(
                "an empty namespace may not be set during creation",
            )),
        }
    }

    fn check_type(&self, resource: &Resource, body: &Value) -> Result<(), ApiError> {
        let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
        if !api_version.is_empty() && api_version != resource.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({})",
                resource.api_version()
            )));
        }
        if !kind.is_empty() && kind != resource.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                resource.kind
            )));
        }
        Ok(())
    }

    /// Create an object (POST).
    pub fn create(
        &mut self,
        resource: &Resource,
        path_ns: Option<&str>,
        mut body: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was in an unknown format",
            ));
        }
        self.check_type(resource, &body)?;
        let namespace = self
            .namespace_of(resource, path_ns, &body)?
            .map(str::to_string);
        let mut name = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            let Some(prefix) = body
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
            else {
                return Err(ApiError::invalid(
                    resource,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            };
            name = format!("{prefix}{:05x}", self.created + 1);
        }
        if let Some(ns) = &namespace {
            let namespaces = self.resource("", "namespaces").expect("built in");
            self.get(&namespaces, None, ns)?;
        }
        let key = (
            resource.key(),
            namespace.clone().unwrap_or_default(),
            name.clone(),
        );
        if self.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", resource.group_resource()),
            )
            .about(resource, &name));
        }
        normalize(resource, &mut body, &name)?;
        body["apiVersion"] = Value::String(resource.api_version());
        body["kind"] = Value::String(resource.kind.clone());
        let metadata = body["metadata"].as_object_mut().expect("normalized");
        metadata.insert("name".into(), Value::String(name.clone()));
        if let Some(ns) = &namespace {
            metadata.insert("namespace".into(), Value::String(ns.clone()));
        }
        metadata.remove("resourceVersion");
        self.created += 1;
        metadata.insert(
            "uid".into(),
            Value::String(format!("00000000-0000-4000-8000-{:012x}", self.created)),
        );
        metadata.insert("creationTimestamp".into(), Value::String(now()));
        if has_generation(resource) {
            metadata.insert("generation".into(), json!(1));
        }
        if resource.kind == "Namespace" {
            body["status"] = json!({"phase": "Active"});
        }
        if dry_run {
            return Ok(body);
        }
        let stored = self.store(key, body, "ADDED");
        if resource.kind == "Namespace" {
            // What the service-account controller does in a real cluster.
            let accounts = self.resource("", "serviceaccounts").expect("built in");
            let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}});
            self.create(&accounts, Some(&name), account, false)?;
        }
        if resource.kind == "CustomResourceDefinition" {
            self.register(&stored)?;
        }
        Ok(stored)
    }

    /// Replace an object (PUT), guarded by its `resourceVersion` when the
    /// body carries one.
    pub fn update(
        &mut self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        mut body: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.check_type(resource, &body)?;
        let current = self.get(resource, namespace, name)?;
        let body_name = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        self.namespace_of(resource, namespace, &body)?;
        let wanted = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let actual = current
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !wanted.is_empty() && wanted != actual {
            return Err(ApiError::conflict(resource, name));
        }
        normalize(resource, &mut body, name)?;
        body["apiVersion"] = Value::String(resource.api_version());
        body["kind"] = Value::String(resource.kind.clone());
        for system in ["uid", "creationTimestamp", "namespace", "generation"] {
            match current["metadata"].get(system) {
                Some(v) => body["metadata"][system] = v.clone(),
                None => {
                    if let Some(m) = body["metadata"].as_object_mut() {
                        m.remove(system);
                    }
                }
            }
        }
        if resource.kind == "Pod" {
            check_pod_update(resource, name, &current, &body)?;
        }
        if has_generation(resource) && strip_meta(&current) != strip_meta(&body) {
            let generation = current
                .pointer("/metadata/generation")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            body["metadata"]["generation"] = json!(generation + 1);
        }
        if without_version(&current) == without_version(&body) {
            // A no-op write: the real server keeps the resource version.
            return Ok(current);
        }
        if dry_run {
            return Ok(body);
        }
        let key = (
            resource.key(),
            namespace.unwrap_or("").to_string(),
            name.to_string(),
        );
        Ok(self.store(key, body, "MODIFIED"))
    }

    /// Apply a PATCH of the given kind; server-side apply creates a missing
    /// object.
    pub fn patch(
        &mut self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        request: PatchRequest<'_>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let PatchRequest {
            kind,
            body,
            field_manager,
        } = request;
        if kind == PatchKind::Strategic && resource.custom {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        let current = match self.get(resource, namespace, name) {
            Ok(o) => Some(o),
            Err(e) if kind == PatchKind::Apply && e.code == 404 => None,
            Err(e) => return Err(e),
        };
        let mut patched = current.clone().unwrap_or_else(|| json!({}));
        match kind {
            PatchKind::Json => {
                let ops: Vec<PatchOp> = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                patch::apply(&mut patched, &ops).map_err(|e| {
                    let message = match &e {
                        PatchError::TestFailed(path) => {
                            format!("testing value {path} failed: test failed")
                        }
                        other => other.to_string(),
                    };
                    // As the real server words a patch that does not apply:
                    // a generic message, the reason among the causes.
                    let mut error = ApiError::new(
                        422,
                        "Invalid",
                        "the server rejected our request due to an error in our request",
                    );
                    error.details = Some(Box::new(Details {
                        name: String::new(),
                        group: String::new(),
                        kind: String::new(),
                        causes: vec![("UnexpectedServerResponse", String::new(), message)],
                    }));
                    error
                })?;
            }
            PatchKind::Merge => merge::merge_patch(&mut patched, &parse_json(body)?),
            PatchKind::Strategic => merge::strategic_merge(&mut patched, &parse_json(body)?)
                .map_err(ApiError::bad_request)?,
            PatchKind::Apply => {
                let Some(manager) = field_manager.filter(|m| !m.is_empty()) else {
                    return Err(ApiError::bad_request(
                        "PATCH requests for apply must supply fieldManager (--field-manager for kubectl)",
                    ));
                };
                let applied = parse_yaml(body)?;
                self.check_type(resource, &applied)?;
                if resource.custom {
                    merge::merge_patch(&mut patched, &applied);
                } else {
                    merge::strategic_merge(&mut patched, &applied)
                        .map_err(ApiError::bad_request)?;
                }
                record_manager(&mut patched, manager, &resource.api_version());
            }
        }
        match current {
            None => {
                patched["metadata"]["name"] = Value::String(name.into());
                self.create(resource, namespace, patched, dry_run)
            }
            Some(current) => {
                if patched.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
                    return Err(ApiError::bad_request(
                        "metadata.name: the name may not be changed by a patch",
                    ));
                }
                let uid = current.pointer("/metadata/uid");
                if patched
                    .pointer("/metadata/uid")
                    .is_some_and(|u| Some(u) != uid)
                {
                    return Err(ApiError::conflict(resource, name));
                }
                self.update(resource, namespace, name, patched, dry_run)
            }
        }
    }

    /// Delete an object; a namespace takes its contents with it.
    pub fn delete(
        &mut self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let current = self.get(resource, namespace, name)?;
        if !dry_run {
            if resource.kind == "Namespace" {
                let inside: Vec<ObjectKey> = self
                    .objects
                    .keys()
                    .filter(|(_, ns, _)| ns == name)
                    .cloned()
                    .collect();
                for key in inside {
                    self.remove(key);
                }
            }
            self.remove((
                resource.key(),
                namespace.unwrap_or("").to_string(),
                name.to_string(),
            ));
        }
        Ok(json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": name,
                "group": resource.group,
                "kind": resource.plural,
                "uid": current.pointer("/metadata/uid"),
            },
        }))
    }

    /// Another writer changes the object (an annotation), as a controller
    /// racing the client would.
    pub fn touch(&mut self, resource: &Resource, namespace: Option<&str>, name: &str) {
        let key = (
            resource.key(),
            namespace.unwrap_or("").to_string(),
            name.to_string(),
        );
        if let Some(mut object) = self.objects.get(&key).cloned() {
            let touched = object
                .pointer("/metadata/annotations/fixture.repoint.dev~1touched")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            let metadata = object["metadata"]
                .as_object_mut()
                .expect("stored objects have metadata");
            let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
            annotations["fixture.repoint.dev/touched"] = Value::String((touched + 1).to_string());
            self.store(key, object, "MODIFIED");
        }
    }

    fn store(&mut self, key: ObjectKey, mut object: Value, kind: &'static str) -> Value {
        self.revision += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.revision.to_string());
        self.objects.insert(key.clone(), object.clone());
        self.emit(key.0, kind, object.clone());
        object
    }

    fn remove(&mut self, key: ObjectKey) {
        if let Some(mut object) = self.objects.remove(&key) {
            self.revision += 1;
            object["metadata"]["resourceVersion"] = Value::String(self.revision.to_string());
            self.emit(key.0, "DELETED", object);
        }
    }

    fn emit(&mut self, resource: String, kind: &'static str, object: Value) {
        let event = Event {
            revision: self.revision,
            kind,
            resource,
            object,
        };
        self.history.push(event.clone());
        // No receiver is not an error: nobody is watching.
        let _ = self.events.send(event);
    }

    /// A CustomResourceDefinition makes its served version a resource.
    fn register(&mut self, crd: &Value) -> Result<(), ApiError> {
        let s = |p: &str| {
            crd.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let version = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .and_then(|vs| {
                vs.iter()
                    .find(|v| v.get("served") == Some(&Value::Bool(true)))
            })
            .and_then(|v| v.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("v1")
            .to_string();
        let resource = Resource {
            group: s("/spec/group"),
            version,
            kind: s("/spec/names/kind"),
            plural: s("/spec/names/plural"),
            singular: s("/spec/names/singular"),
            namespaced: s("/spec/scope") != "Cluster",
            short_names: crd
                .pointer("/spec/names/shortNames")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            custom: true,
        };
        if resource.group.is_empty() || resource.kind.is_empty() || resource.plural.is_empty() {
            return Err(ApiError::bad_request(
                "spec.group, spec.names.kind and spec.names.plural are required",
            ));
        }
        self.resources
            .retain(|r| !(r.group == resource.group && r.plural == resource.plural));
        self.resources.push(resource);
        Ok(())
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

fn parse_yaml(body: &[u8]) -> Result<Value, ApiError> {
    let text =
        String::from_utf8(body.to_vec()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let stream = repoint_core::Stream::parse("apply", text, repoint_core::Limits::default())
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    stream
        .documents()
        .first()
        .map(|d| d.value.clone())
        .ok_or_else(|| ApiError::bad_request("error decoding YAML: empty body"))
}

/// Server-side apply bookkeeping: one `managedFields` entry per manager.
fn record_manager(object: &mut Value, manager: &str, api_version: &str) {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    let metadata = object["metadata"].as_object_mut().expect("just made");
    let fields = metadata.entry("managedFields").or_insert_with(|| json!([]));
    if let Value::Array(entries) = fields {
        entries.retain(|e| {
            e.get("manager").and_then(Value::as_str) != Some(manager)
                || e.get("operation").and_then(Value::as_str) != Some("Apply")
        });
        entries.push(json!({
            "manager": manager,
            "operation": "Apply",
            "apiVersion": api_version,
            "time": now(),
            "fieldsType": "FieldsV1",
            // Field ownership is not tracked; clients decode an empty set.
            "fieldsV1": {},
        }));
    }
}

/// What the real server does to every written object: metadata present,
/// Secret `stringData` folded into `data`, and a dockerconfigjson Secret
/// validated.
fn normalize(resource: &Resource, body: &mut Value, name: &str) -> Result<(), ApiError> {
    if !body.get("metadata").is_some_and(Value::is_object) {
        body["metadata"] = Value::Object(Map::new());
    }
    if resource.kind == "Secret" {
        if let Some(Value::Object(string_data)) =
            body.as_object_mut().and_then(|o| o.remove("stringData"))
        {
            let data = body
                .as_object_mut()
                .expect("checked")
                .entry("data")
                .or_insert_with(|| json!({}));
            for (k, v) in string_data {
                data[k] = Value::String(repoint_credentials::base64(v.as_str().unwrap_or("")));
            }
        }
        if body.get("type").and_then(Value::as_str) == Some("kubernetes.io/dockerconfigjson")
            && body.pointer("/data/.dockerconfigjson").is_none()
        {
            return Err(ApiError::invalid(
                resource,
                name,
                "data[.dockerconfigjson]: Required value",
            ));
        }
    }
    Ok(())
}

/// A running Pod's spec may change only in its images (and a few
/// scheduling fields this fixture does not model).
fn check_pod_update(
    resource: &Resource,
    name: &str,
    current: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    let without_images = |pod: &Value| {
        let mut spec = pod.get("spec").cloned().unwrap_or(Value::Null);
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            if let Some(Value::Array(containers)) = spec.get_mut(list) {
                for c in containers {
                    if let Some(c) = c.as_object_mut() {
                        c.remove("image");
                    }
                }
            }
        }
        spec
    };
    if without_images(current) != without_images(new) {
        return Err(ApiError::invalid(
            resource,
            name,
            "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
    Ok(())
}

fn has_generation(resource: &Resource) -> bool {
    !resource.group.is_empty() || resource.kind == "ReplicationController"
}

fn strip_meta(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

fn without_version(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    o
}

/// The current time as RFC 3339 in UTC, whole seconds.
pub fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
