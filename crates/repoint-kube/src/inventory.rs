//! What lives in the cluster that policies are consulted about: the
//! workload kinds, and the custom resources a config names in
//! `imageFields` (resolved through discovery), listed a page at a time.

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;
use serde_json::Value;

use crate::KubeError;
use crate::error::describe;

/// A kind of object to list.
#[derive(Debug, Clone)]
pub struct Kind {
    pub resource: ApiResource,
    pub namespaced: bool,
}

impl Kind {
    /// `deployments.apps`, `pods`: how kubectl and RBAC name it.
    pub fn group_resource(&self) -> String {
        if self.resource.group.is_empty() {
            self.resource.plural.clone()
        } else {
            format!("{}.{}", self.resource.plural, self.resource.group)
        }
    }
}

/// The built-in kinds with a pod template or pod spec, by group and kind.
/// Their versions come from discovery: a v1.20 server serves CronJob only
/// as `batch/v1beta1`, a v1.25 one only as `batch/v1`.
const WORKLOADS: [(&str, &str); 9] = [
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"),
    ("batch", "CronJob"),
    ("batch", "Job"),
    ("", "ReplicationController"),
    ("", "PodTemplate"),
    ("", "Pod"),
];

/// A core (v1) kind that every server serves: Secret, ServiceAccount.
pub fn builtin(group: &str, kind: &str, plural: &str) -> Kind {
    Kind {
        resource: ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, "v1", kind),
            plural,
        ),
        namespaced: kind != "Namespace",
    }
}

/// Each custom kind in `custom` (group, kind), then the workload kinds, at
/// the versions the cluster prefers, as its discovery documents say. A
/// kind the cluster does not serve (a CRD not installed, a kind newer or
/// older than the server) is left out with a warning: one config serves
/// clusters of different versions and operators.
pub async fn kinds(
    client: &kube::Client,
    custom: &[(String, String)],
) -> Result<(Vec<Kind>, Vec<String>), KubeError> {
    let wanted: Vec<(&str, &str, bool)> = custom
        .iter()
        .map(|(g, k)| (g.as_str(), k.as_str(), true))
        .chain(WORKLOADS.iter().map(|(g, k)| (*g, *k, false)))
        .collect();
    let mut groups: Vec<&str> = wanted.iter().map(|(g, _, _)| *g).collect();
    groups.sort_unstable();
    groups.dedup();
    let discovery = kube::Discovery::new(client.clone())
        .filter(&groups)
        .run()
        .await
        .map_err(|e| describe(e, "discover", &groups.join(","), None, ""))?;
    let mut kinds = Vec::new();
    let mut warnings = Vec::new();
    for (group, kind, from_config) in wanted {
        let found = discovery
            .get(group)
            .and_then(|served| served_kind(served, kind));
        match found {
            Some((resource, capabilities)) => kinds.push(Kind {
                resource,
                namespaced: capabilities.scope == Scope::Namespaced,
            }),
            None if from_config => warnings.push(format!(
                "imageFields names {kind} in group {group}, which the cluster does not serve; skipped"
            )),
            None => {
                let group = if group.is_empty() { "core" } else { group };
                warnings.push(format!(
                    "the cluster does not serve {kind} in group {group}; skipped"
                ));
            }
        }
    }
    Ok((kinds, warnings))
}

/// `kind` in a discovered group: at the group's preferred version, or else
/// at its most stable version that has the kind (batch/v1 has no CronJob
/// before v1.21, and kube-rs's `recommended_kind` looks only at the
/// preferred version).
pub fn served_kind(
    group: &kube::discovery::ApiGroup,
    kind: &str,
) -> Option<(ApiResource, kube::discovery::ApiCapabilities)> {
    group.recommended_kind(kind).or_else(|| {
        group
            .resources_by_stability()
            .into_iter()
            .find(|(resource, _)| resource.kind == kind)
    })
}

/// Which objects to list.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// One namespace, or all.
    pub namespace: Option<String>,
    /// A label selector (`app=web,tier!=db`).
    pub selector: Option<String>,
    /// Objects per page (`limit`); 0 means the API server's default of 500.
    pub page_size: u32,
}

/// An object as listed, with its kind.
#[derive(Debug, Clone)]
pub struct LiveObject {
    pub kind: Kind,
    /// The object, with `apiVersion` and `kind` set (lists leave them out).
    pub value: Value,
}

impl LiveObject {
    fn text(&self, pointer: &str) -> Option<&str> {
        repoint_core::pointer::get(&self.value, pointer).and_then(Value::as_str)
    }

    pub fn name(&self) -> &str {
        self.text("/metadata/name").unwrap_or("")
    }

    pub fn namespace(&self) -> Option<&str> {
        self.text("/metadata/namespace")
    }

    pub fn uid(&self) -> Option<&str> {
        self.text("/metadata/uid")
    }

    /// `deployment.apps/web`, as kubectl names it.
    pub fn display_name(&self) -> String {
        let kind = self.kind.resource.kind.to_lowercase();
        match self.kind.resource.group.as_str() {
            "" => format!("{kind}/{}", self.name()),
            group => format!("{kind}.{group}/{}", self.name()),
        }
    }

    /// The uids of the controllers that own it.
    fn controllers(&self) -> impl Iterator<Item = &str> {
        repoint_core::pointer::get(&self.value, "/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|r| r.get("controller") == Some(&Value::Bool(true)))
            .filter_map(|r| r.get("uid").and_then(Value::as_str))
    }
}

/// Every object of `kind` in `selection`, following `continue` tokens
/// page by page; `progress` hears the count after each page.
pub async fn list(
    client: &kube::Client,
    kind: &Kind,
    selection: &Selection,
    mut progress: impl FnMut(usize),
) -> Result<Vec<LiveObject>, KubeError> {
    let api: Api<DynamicObject> = match (&selection.namespace, kind.namespaced) {
        (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &kind.resource),
        _ => Api::all_with(client.clone(), &kind.resource),
    };
    let page_size = if selection.page_size > 0 {
        selection.page_size
    } else {
        500
    };
    let mut params = ListParams::default().limit(page_size);
    if let Some(selector) = &selection.selector {
        params = params.labels(selector);
    }
    let mut objects = Vec::new();
    loop {
        let page = api.list(&params).await.map_err(|e| {
            describe(
                e,
                "list",
                &kind.group_resource(),
                selection.namespace.as_deref(),
                "",
            )
        })?;
        for item in page.items {
            let mut value = serde_json::to_value(item)
                .map_err(|e| KubeError::Evaluation(format!("decoding a listed object: {e}")))?;
            value["apiVersion"] = Value::String(kind.resource.api_version.clone());
            value["kind"] = Value::String(kind.resource.kind.clone());
            objects.push(LiveObject {
                kind: kind.clone(),
                value,
            });
        }
        progress(objects.len());
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    Ok(objects)
}

/// Leave out the objects whose controller is itself among `objects` (a
/// ReplicaSet's Pods, a Deployment's ReplicaSets, a CronJob's Jobs): the
/// fix belongs at the owner, once. Returns the kept objects and how many
/// were left out.
pub fn without_owned(objects: Vec<LiveObject>) -> (Vec<LiveObject>, usize) {
    let uids: std::collections::HashSet<String> = objects
        .iter()
        .filter_map(|o| o.uid().map(String::from))
        .collect();
    let before = objects.len();
    let kept: Vec<LiveObject> = objects
        .into_iter()
        .filter(|o| !o.controllers().any(|uid| uids.contains(uid)))
        .collect();
    let skipped = before - kept.len();
    (kept, skipped)
}
