//! Writing to the cluster: guarded JSON Patches retried on conflict, and
//! the pull Secrets and ServiceAccount entries repoint keeps in place. It
//! creates and changes, and never deletes.
//!
//! The guard is the `resourceVersion` the change was computed from, set by
//! the patch itself: the API server treats a `resourceVersion` in the
//! patched object as a precondition and answers 409 `Conflict` when the
//! object has moved on. (A JSON Patch `test` of it fails too, but with a
//! 422 `Invalid` that cannot be told apart from a real refusal.)

use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use repoint_core::patch::PatchOp;
use serde_json::Value;

use crate::error::describe;
use crate::inventory::{Kind, builtin};
use repoint_core::MANAGED_BY;

use crate::{FIELD_MANAGER, KubeError};

/// What a write did.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// Nothing needed changing.
    Unchanged,
    /// Created (or, under dry run, would have been).
    Created,
    /// Patched with these operations (the guard left out).
    Patched(Vec<PatchOp>),
    /// A Secret's contents brought up to date (what changed is not shown:
    /// it is credentials).
    Updated,
}

/// Writes to one cluster.
#[derive(Clone)]
pub struct Writer {
    client: kube::Client,
    /// Send every write with `dryRun=All`: the server checks it and
    /// stores nothing.
    pub dry_run: bool,
    /// Attempts per object when it keeps changing under us.
    pub attempts: u32,
    /// First wait after a conflict; it doubles each time.
    pub backoff: Duration,
    /// The field manager every write is recorded under in `managedFields`.
    pub field_manager: String,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("dry_run", &self.dry_run)
            .field("attempts", &self.attempts)
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

impl Writer {
    pub fn new(client: kube::Client, dry_run: bool) -> Self {
        Self {
            client,
            dry_run,
            attempts: 5,
            backoff: Duration::from_millis(100),
            field_manager: FIELD_MANAGER.into(),
        }
    }

    fn api(&self, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) if kind.namespaced => {
                Api::namespaced_with(self.client.clone(), ns, &kind.resource)
            }
            _ => Api::all_with(self.client.clone(), &kind.resource),
        }
    }

    fn patch_params(&self) -> PatchParams {
        let mut params = PatchParams {
            field_manager: Some(self.field_manager.clone()),
            ..PatchParams::default()
        };
        params.dry_run = self.dry_run;
        params
    }

    fn post_params(&self) -> PostParams {
        PostParams {
            dry_run: self.dry_run,
            field_manager: Some(self.field_manager.clone()),
        }
    }

    /// The object, or `None` when it does not exist.
    pub async fn get(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, KubeError> {
        let found = self
            .api(kind, namespace)
            .get_opt(name)
            .await
            .map_err(|e| describe(e, "get", &kind.group_resource(), namespace, name))?;
        found
            .map(|o| {
                let mut value = serde_json::to_value(o)
                    .map_err(|e| KubeError::Evaluation(format!("decoding {name}: {e}")))?;
                value["apiVersion"] = Value::String(kind.resource.api_version.clone());
                value["kind"] = Value::String(kind.resource.kind.clone());
                Ok(value)
            })
            .transpose()
    }

    /// Patch the object with what `plan` makes of it, guarded by its
    /// `resourceVersion`. `current` is the object as last read (it
    /// is read when `None`). When the object changed in between, it is
    /// read again and planned again, with doubling waits, up to
    /// `attempts` times.
    pub async fn patch_guarded(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
        current: Option<Value>,
        mut plan: impl FnMut(&Value) -> Result<Vec<PatchOp>, KubeError>,
    ) -> Result<Written, KubeError> {
        let resource = kind.group_resource();
        let what = match namespace {
            Some(ns) => format!("{resource} {ns}/{name}"),
            None => format!("{resource} {name}"),
        };
        let mut current = current;
        let mut wait = self.backoff;
        for attempt in 1..=self.attempts {
            let object = match current.take() {
                Some(o) => o,
                None => self
                    .get(kind, namespace, name)
                    .await?
                    .ok_or_else(|| KubeError::Api {
                        verb: "get".into(),
                        what: what.clone(),
                        code: 404,
                        reason: "NotFound".into(),
                        message: "it no longer exists".into(),
                    })?,
            };
            let ops = plan(&object)?;
            if ops.is_empty() {
                return Ok(Written::Unchanged);
            }
            let version = repoint_core::pointer::get(&object, "/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            let mut guarded = vec![PatchOp::replace("/metadata/resourceVersion", version)];
            guarded.extend(ops.iter().cloned());
            let patch = json_patch_of(&guarded)
                .map_err(|e| KubeError::Evaluation(format!("encoding the patch of {what}: {e}")))?;
            let sent = self
                .api(kind, namespace)
                .patch(name, &self.patch_params(), &Patch::Json::<()>(patch))
                .await;
            match sent {
                Ok(_) => return Ok(Written::Patched(ops)),
                Err(e) => {
                    let error = describe(e, "patch", &resource, namespace, name);
                    if !error.is_conflict() {
                        return Err(error);
                    }
                    tracing::debug!(%what, attempt, "changed since read; reading again");
                    if attempt < self.attempts {
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                }
            }
        }
        Err(KubeError::Conflict {
            what,
            attempts: self.attempts,
        })
    }

    /// Create the object `make` builds, unless one of that name exists:
    /// then it gets what `plan` makes of it, as a guarded patch. Someone
    /// creating it first sends us round again.
    async fn create_or_patch(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        make: impl Fn() -> Value,
        mut plan: impl FnMut(&Value) -> Result<Vec<PatchOp>, KubeError>,
    ) -> Result<Written, KubeError> {
        for _ in 0..self.attempts {
            if let Some(existing) = self.get(kind, Some(namespace), name).await? {
                return self
                    .patch_guarded(kind, Some(namespace), name, Some(existing), &mut plan)
                    .await;
            }
            let object: DynamicObject = serde_json::from_value(make()).map_err(|e| {
                KubeError::Evaluation(format!("{} {namespace}/{name}: {e}", kind.resource.kind))
            })?;
            match self
                .api(kind, Some(namespace))
                .create(&self.post_params(), &object)
                .await
            {
                Ok(_) => return Ok(Written::Created),
                Err(e) => {
                    let error =
                        describe(e, "create", &kind.group_resource(), Some(namespace), name);
                    if !error.is_already_exists() {
                        return Err(error);
                    }
                }
            }
        }
        Err(KubeError::Conflict {
            what: format!("{} {namespace}/{name}", kind.group_resource()),
            attempts: self.attempts,
        })
    }

    /// Make the Secret `desired` (as it should be: name, namespace,
    /// labels, type and data) exist in `namespace`. A Secret repoint made
    /// is brought up to date; one it did not make is never overwritten.
    pub async fn ensure_secret(
        &self,
        namespace: &str,
        desired: &Value,
    ) -> Result<Written, KubeError> {
        let kind = builtin("", "Secret", "secrets");
        let name = repoint_core::pointer::get(desired, "/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let label = format!(
            "/metadata/labels/{}",
            repoint_core::pointer::escape(MANAGED_BY.0)
        );
        let written = self
            .create_or_patch(&kind, namespace, name, || desired.clone(), |existing| {
                if existing.get("type") == desired.get("type")
                    && existing.get("data") == desired.get("data")
                {
                    return Ok(Vec::new());
                }
                if repoint_core::pointer::get(existing, &label).and_then(Value::as_str) != Some(MANAGED_BY.1) {
                    return Err(KubeError::Evaluation(format!(
                        "Secret {namespace}/{name} exists and was not made by repoint (no {}={} label); it is left as it is, though its contents differ from the configured pull secret",
                        MANAGED_BY.0, MANAGED_BY.1
                    )));
                }
                if existing.get("type") != desired.get("type") {
                    return Err(KubeError::Evaluation(format!(
                        "Secret {namespace}/{name} has type {}, not {}; a Secret's type cannot change, so delete it to let repoint recreate it",
                        existing.get("type").unwrap_or(&Value::Null),
                        desired.get("type").unwrap_or(&Value::Null)
                    )));
                }
                let data = desired.get("data").cloned().unwrap_or(Value::Null);
                Ok(vec![PatchOp::add("/data", data)])
            })
            .await?;
        // The patch carries credentials: report only that it happened.
        Ok(match written {
            Written::Patched(_) => Written::Updated,
            other => other,
        })
    }

    /// Make the ServiceAccount, if it exists, list each of `secrets` in
    /// its `imagePullSecrets`; `None` when there is no such account.
    pub async fn patch_account_pull_secrets(
        &self,
        namespace: &str,
        account: &str,
        secrets: &[String],
    ) -> Result<Option<Written>, KubeError> {
        let kind = builtin("", "ServiceAccount", "serviceaccounts");
        let Some(existing) = self.get(&kind, Some(namespace), account).await? else {
            return Ok(None);
        };
        self.patch_guarded(
            &kind,
            Some(namespace),
            account,
            Some(existing),
            listing(secrets),
        )
        .await
        .map(Some)
    }

    /// Make the ServiceAccount list each of `secrets` in its
    /// `imagePullSecrets`, creating the account if it does not exist.
    pub async fn ensure_account_pull_secrets(
        &self,
        namespace: &str,
        account: &str,
        secrets: &[String],
    ) -> Result<Written, KubeError> {
        let kind = builtin("", "ServiceAccount", "serviceaccounts");
        self.create_or_patch(
            &kind,
            namespace,
            account,
            || repoint_core::actions::service_account(namespace, account, secrets),
            listing(secrets),
        )
        .await
    }
}

/// The plan that makes a ServiceAccount list each of `secrets`.
fn listing(secrets: &[String]) -> impl FnMut(&Value) -> Result<Vec<PatchOp>, KubeError> + '_ {
    |sa| {
        Ok(repoint_core::actions::pull_secret_additions(
            sa,
            "/imagePullSecrets",
            secrets,
        ))
    }
}

/// The JSON Patch kube sends, operation by operation from core's model
/// (the one repoint computes, applies and renders), each pointer parsed:
/// one that is not a pointer is refused here, not by the server.
fn json_patch_of(ops: &[PatchOp]) -> Result<json_patch::Patch, String> {
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{
        AddOperation, CopyOperation, MoveOperation, PatchOperation, RemoveOperation,
        ReplaceOperation, TestOperation,
    };
    use repoint_core::patch::OpKind;
    let pointer = |p: &str| PointerBuf::parse(p).map_err(|e| format!("{p:?}: {e}"));
    let value = |op: &PatchOp| {
        op.value
            .clone()
            .ok_or_else(|| format!("{:?} at {} has no value", op.op, op.path))
    };
    let from = |op: &PatchOp| {
        op.from
            .as_deref()
            .ok_or_else(|| format!("{:?} to {} has no from", op.op, op.path))
            .and_then(pointer)
    };
    let operations = ops
        .iter()
        .map(|op| {
            let path = pointer(&op.path)?;
            Ok(match op.op {
                OpKind::Add => PatchOperation::Add(AddOperation {
                    path,
                    value: value(op)?,
                }),
                OpKind::Remove => PatchOperation::Remove(RemoveOperation { path }),
                OpKind::Replace => PatchOperation::Replace(ReplaceOperation {
                    path,
                    value: value(op)?,
                }),
                OpKind::Move => PatchOperation::Move(MoveOperation {
                    from: from(op)?,
                    path,
                }),
                OpKind::Copy => PatchOperation::Copy(CopyOperation {
                    from: from(op)?,
                    path,
                }),
                OpKind::Test => PatchOperation::Test(TestOperation {
                    path,
                    value: value(op)?,
                }),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(json_patch::Patch(operations))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_sent_patch_is_core_s_patch_op_for_op() {
        let ops = vec![
            PatchOp::replace("/metadata/resourceVersion", json!("7")),
            PatchOp::add(
                "/metadata/labels/app.kubernetes.io~1managed-by",
                json!("repoint"),
            ),
            PatchOp {
                op: repoint_core::patch::OpKind::Move,
                path: "/b".into(),
                from: Some("/a".into()),
                value: None,
            },
        ];
        let sent = json_patch_of(&ops).expect("converts");
        // What kube puts on the wire reads back as the same operations.
        let wire = serde_json::to_value(&sent).expect("serializes");
        let back: Vec<PatchOp> = serde_json::from_value(wire).expect("core reads it");
        assert_eq!(back, ops);
        let mut bad = ops[0].clone();
        bad.path = "metadata".into();
        assert!(json_patch_of(&[bad]).is_err());
    }
}
