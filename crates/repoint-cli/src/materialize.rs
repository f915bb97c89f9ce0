//! Requests that reach beyond the evaluated objects: ServiceAccounts that
//! must list a pull secret. An account present in the input is patched in
//! place; one that is not is emitted as a new document after the inputs.

use std::collections::BTreeMap;

use repoint_core::patch::PatchOp;
use repoint_core::sites;
use serde_json::{Value, json};

use crate::engine::FileResult;

/// Label put on every object repoint generates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "repoint");

/// Changes beyond the evaluated objects.
#[derive(Debug, Default)]
pub struct Generated {
    /// Extra operations on input documents: (file, document, ops).
    pub patches: Vec<(usize, usize, Vec<PatchOp>)>,
    /// New objects, each with the index of the file whose object asked for it.
    pub documents: Vec<(usize, Value)>,
}

impl Generated {
    /// Extra operations for one file's documents.
    pub fn patches_for(&self, file: usize) -> impl Iterator<Item = (usize, &Vec<PatchOp>)> {
        self.patches
            .iter()
            .filter(move |(f, _, _)| *f == file)
            .map(|(_, d, ops)| (*d, ops))
    }
}

/// Gather `patch-service-account` requests and turn them into patches of
/// existing ServiceAccounts or new ones. Objects without a namespace use
/// `default_namespace`.
pub fn service_accounts(files: &[FileResult], default_namespace: &str) -> Generated {
    // (namespace, account) -> (requesting file, secrets), in first-seen order.
    let mut wanted: BTreeMap<(String, String), (usize, Vec<String>)> = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for (f, file) in files.iter().enumerate() {
        for object in file.documents.iter().flatten() {
            let Ok(outcome) = &object.outcome else {
                continue;
            };
            for request in &outcome.service_accounts {
                let ns = request
                    .item
                    .namespace
                    .clone()
                    .or_else(|| object.meta.namespace.clone())
                    .unwrap_or_else(|| default_namespace.to_string());
                let name = request
                    .item
                    .service_account
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let key = (ns, name);
                let entry = wanted.entry(key.clone()).or_insert_with(|| {
                    order.push(key.clone());
                    (f, Vec::new())
                });
                if !entry.1.contains(&request.item.secret) {
                    entry.1.push(request.item.secret.clone());
                }
            }
        }
    }
    let mut generated = Generated::default();
    for key in order {
        let (requester, secrets) = &wanted[&key];
        match find_service_account(files, &key.0, &key.1, default_namespace) {
            Some((f, d, prefix, existing)) => {
                let present: Vec<&str> = existing
                    .get("imagePullSecrets")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|e| e.get("name").and_then(Value::as_str))
                            .collect()
                    })
                    .unwrap_or_default();
                let missing: Vec<Value> = secrets
                    .iter()
                    .filter(|s| !present.contains(&s.as_str()))
                    .map(|s| json!({ "name": s }))
                    .collect();
                if missing.is_empty() {
                    continue;
                }
                let ops = if existing
                    .get("imagePullSecrets")
                    .is_some_and(Value::is_array)
                {
                    missing
                        .into_iter()
                        .map(|m| PatchOp::add(format!("{prefix}/imagePullSecrets/-"), m))
                        .collect()
                } else {
                    vec![PatchOp::add(
                        format!("{prefix}/imagePullSecrets"),
                        Value::Array(missing),
                    )]
                };
                generated.patches.push((f, d, ops));
            }
            None => {
                let secrets: Vec<Value> = secrets.iter().map(|s| json!({ "name": s })).collect();
                generated.documents.push((
                    *requester,
                    json!({
                        "apiVersion": "v1",
                        "kind": "ServiceAccount",
                        "metadata": {
                            "name": key.1,
                            "namespace": key.0,
                            "labels": { MANAGED_BY.0: MANAGED_BY.1 },
                        },
                        "imagePullSecrets": secrets,
                    }),
                ));
            }
        }
    }
    generated
}

/// A ServiceAccount in the input: (file, document, object pointer, value).
fn find_service_account<'a>(
    files: &'a [FileResult],
    namespace: &str,
    name: &str,
    default_namespace: &str,
) -> Option<(usize, usize, String, &'a Value)> {
    for (f, file) in files.iter().enumerate() {
        for doc in file.stream.documents() {
            for (prefix, object) in sites::objects(&doc.value) {
                let s = |p: &str| object.pointer(p).and_then(Value::as_str);
                if s("/kind") == Some("ServiceAccount")
                    && s("/apiVersion") == Some("v1")
                    && s("/metadata/name") == Some(name)
                    && s("/metadata/namespace").unwrap_or(default_namespace) == namespace
                {
                    return Some((f, doc.index, prefix, object));
                }
            }
        }
    }
    None
}
