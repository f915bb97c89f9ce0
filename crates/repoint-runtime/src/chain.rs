//! Policy chains: policies run in config order on one object, each seeing
//! the object as the previous ones left it.
//!
//! The result for an object is the net change (a JSON Patch from the object
//! as it came to the object as the chain left it, so two policies touching
//! one field give one edit), plus what reaches beyond the object (pull
//! Secrets, ServiceAccounts), denials and warnings, each attributed to its
//! policy. A chain whose second run over its own output still changes
//! something does not converge, and that is an error for the object.
//!
//! Only objects that carry images or have a place for pull secrets are shown
//! to policies; everything else passes through untouched and unevaluated.

use serde_json::Value;

use repoint_core::actions::{self, EnsurePullSecret, PatchServiceAccount};
use repoint_core::patch::{self, PatchOp};
use repoint_core::resource::ResourceView;
use repoint_core::sites::{self, ImageFields, Object};

use crate::{ConfiguredPolicy, FailureKind, PolicyFailure, Runtime, convert};

/// The kind of write an admission request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// CREATE
    Create,
    /// UPDATE
    Update,
    /// DELETE
    Delete,
    /// CONNECT
    Connect,
}

/// Where an object came from (the WIT `origin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file or stdin.
    File {
        /// As given on the command line.
        path: String,
        /// 0-based document index.
        document: usize,
        /// 1-based line.
        line: usize,
    },
    /// A live cluster.
    Cluster,
    /// An admission request.
    Admission(Operation),
}

/// Something a policy said, attributed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The policy's configured name.
    pub policy: String,
    /// What it said.
    pub message: String,
}

/// A request beyond the object, attributed to its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributed<T> {
    /// The policy's configured name.
    pub policy: String,
    /// The request.
    pub item: T,
}

/// What the chain made of one object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The net change, pointers relative to the object.
    pub patch: Vec<PatchOp>,
    /// Policies whose actions changed the object.
    pub changed_by: Vec<String>,
    /// Pull Secrets to ensure.
    pub ensure: Vec<Attributed<EnsurePullSecret>>,
    /// ServiceAccounts to patch.
    pub service_accounts: Vec<Attributed<PatchServiceAccount>>,
    /// Denials.
    pub denials: Vec<Finding>,
    /// Warnings.
    pub warnings: Vec<Finding>,
}

/// Why an object could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObjectError {
    /// An image in the object does not parse; no policy was run.
    #[error("invalid image reference {written:?} at {pointer}: {reason}")]
    InvalidImage {
        /// Pointer of the image, relative to the object.
        pointer: String,
        /// As written.
        written: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A policy failed.
    #[error(transparent)]
    Policy(#[from] PolicyFailure),
    /// Running the chain on its own output changes the object again.
    #[error("policy chain does not converge: running it again on its own output still changes {} (policies involved: {})", describe(.changes), .policies.join(", "))]
    NotConverging {
        /// Policies that changed the object on the second run.
        policies: Vec<String>,
        /// What the second run changed.
        changes: Vec<PatchOp>,
    },
}

fn describe(ops: &[PatchOp]) -> String {
    ops.iter()
        .map(|o| o.path.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An ordered list of configured policies and the custom-resource fields
/// they see.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// Policies in evaluation order.
    pub policies: Vec<ConfiguredPolicy>,
    /// Image and pull-secret locations of custom resources.
    pub image_fields: Vec<ImageFields>,
}

impl Chain {
    /// Whether policies are consulted about `object`.
    pub fn is_relevant(&self, object: &Value) -> bool {
        let found = sites::find(
            Object {
                prefix: "",
                value: object,
            },
            &self.image_fields,
        );
        !found.images.is_empty() || found.pull_secrets_pointer.is_some()
    }

    /// Evaluate one object (pointers in the outcome are relative to it).
    /// `None` when the object is not one policies are consulted about.
    pub fn evaluate(
        &self,
        runtime: &Runtime,
        object: &Value,
        origin: &Origin,
    ) -> Result<Option<Outcome>, ObjectError> {
        if !self.is_relevant(object) {
            return Ok(None);
        }
        let (after, mut outcome) = self.run_once(runtime, object, origin)?;
        outcome.patch = patch::diff(object, &after);
        if !outcome.patch.is_empty() {
            let (again, second) = self.run_once(runtime, &after, origin)?;
            let changes = patch::diff(&after, &again);
            if !changes.is_empty() {
                return Err(ObjectError::NotConverging {
                    policies: second.changed_by,
                    changes,
                });
            }
        }
        Ok(Some(outcome))
    }

    /// One pass of the chain; returns the object as the last policy left it.
    fn run_once(
        &self,
        runtime: &Runtime,
        object: &Value,
        origin: &Origin,
    ) -> Result<(Value, Outcome), ObjectError> {
        let mut current = object.clone();
        let mut outcome = Outcome::default();
        for policy in &self.policies {
            let found = sites::find(
                Object {
                    prefix: "",
                    value: &current,
                },
                &self.image_fields,
            );
            if let Some(bad) = found.images.iter().find(|s| s.image.is_err()) {
                return Err(ObjectError::InvalidImage {
                    pointer: bad.pointer.clone(),
                    written: bad.written.clone(),
                    reason: bad
                        .image
                        .as_ref()
                        .err()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                });
            }
            let view = ResourceView::new(&current, "", &found);
            let returned = runtime.evaluate(policy, &convert::resource(view, origin))?;
            let invalid = |message: String| PolicyFailure {
                policy: policy.name.to_string(),
                kind: FailureKind::InvalidAction(message),
            };
            let actions = convert::actions(returned).map_err(invalid)?;
            let plan =
                actions::plan(&current, &found, &actions).map_err(|e| invalid(e.to_string()))?;
            if plan.changes_object() {
                patch::apply(&mut current, &plan.patch)
                    .map_err(|e| invalid(format!("its change cannot apply: {e}")))?;
                outcome.changed_by.push(policy.name.to_string());
            }
            let name = policy.name.to_string();
            let attribute = |message: String| Finding {
                policy: name.clone(),
                message,
            };
            outcome
                .denials
                .extend(plan.denials.into_iter().map(attribute));
            outcome
                .warnings
                .extend(plan.warnings.into_iter().map(attribute));
            outcome
                .ensure
                .extend(plan.ensure.into_iter().map(|item| Attributed {
                    policy: name.clone(),
                    item,
                }));
            outcome
                .service_accounts
                .extend(plan.service_accounts.into_iter().map(|item| Attributed {
                    policy: name.clone(),
                    item,
                }));
        }
        Ok((current, outcome))
    }
}
