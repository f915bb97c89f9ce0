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

use std::sync::Arc;

use serde_json::Value;

use repoint_core::actions::{self, Action, EnsurePullSecret, PatchServiceAccount};
use repoint_core::patch::{self, PatchOp};
use repoint_core::resource::{JsonForms, ResourceView, WithoutMetadata};
use repoint_core::sites::{self, ImageFields, Object, Sites};

use crate::answers::{self, Answers, Footprint, Key};
use crate::{
    ConfiguredPolicy, FailureKind, PolicyFailure, PolicyInstance, REUSED_PER_OBJECT, ResourceParts,
    Runtime, convert,
};

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

/// An outcome the chain came to, and how many times it asked each policy
/// (an answer, kept or not) on the way.
#[derive(Debug)]
struct Recalled {
    outcome: Outcome,
    asked: Vec<u32>,
}

impl Footprint for Arc<Recalled> {
    fn footprint(&self) -> usize {
        use answers::{PART, account_size, ensure_size, patch_size, text_size};
        let Outcome {
            patch,
            changed_by,
            ensure,
            service_accounts,
            denials,
            warnings,
        } = &self.outcome;
        let said = |f: &Finding| text_size(&f.policy) + text_size(&f.message);
        patch_size(patch)
            + changed_by.iter().map(|p| text_size(p)).sum::<usize>()
            + ensure
                .iter()
                .map(|e| text_size(&e.policy) + ensure_size(&e.item))
                .sum::<usize>()
            + service_accounts
                .iter()
                .map(|a| text_size(&a.policy) + account_size(&a.item))
                .sum::<usize>()
            + denials.iter().chain(warnings).map(said).sum::<usize>()
            + self.asked.len() * size_of::<u32>()
            + PART
    }
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
/// they see, on the runtime that configured them (made by
/// [`Runtime::chain`]).
#[derive(Debug, Clone)]
pub struct Chain {
    runtime: Arc<Runtime>,
    /// Policies in evaluation order.
    policies: Vec<ConfiguredPolicy>,
    /// Image and pull-secret locations of custom resources.
    image_fields: Vec<ImageFields>,
    /// The forms of the object's JSON its policies read (so each state's
    /// view carries them).
    json_forms: JsonForms,
    /// The outcomes it has come to, when they can be reused (see
    /// [`Remembered`]).
    outcomes: Option<Arc<Remembered>>,
}

/// The outcomes of a chain of selective policies none of which reads an
/// object's metadata beyond its namespace, labels and annotations.
///
/// Such a chain is a function of the object without its metadata and of
/// the metadata parts its policies read: policies see nothing else (see
/// [`crate::answers`]), and neither does the rest of the chain (finding
/// the images, planning each policy's actions, applying them) when no
/// image or pull-secret place lies in the metadata and no policy asks
/// for raw JSON Patch operations, which could read or write any of it.
/// So an object that agrees with one answered before in all of that gets
/// the outcome a fresh run of the chain would give it, without one: the
/// difference is only the time taken. An outcome is kept only when every
/// policy answered without calling the host, as for a policy's answers.
#[derive(Debug)]
struct Remembered {
    /// The metadata parts the policies read, between them.
    reads: ResourceParts,
    outcomes: Answers<Arc<Recalled>>,
}

/// What a chain's outcomes are remembered by, when they can be: see
/// [`Remembered`]. A policy reading an object's name or origin makes
/// every object its own, so nothing is kept.
fn remembered(policies: &[ConfiguredPolicy]) -> Option<Arc<Remembered>> {
    let mut reads = ResourceParts::empty();
    for policy in policies {
        policy.answers.as_ref()?;
        reads |= policy.reads?;
    }
    let unique = ResourceParts::NAME | ResourceParts::ORIGIN | ResourceParts::OBJECT_METADATA;
    if reads.intersects(unique) {
        return None;
    }
    Some(Arc::new(Remembered {
        reads,
        outcomes: Answers::default(),
    }))
}

impl Chain {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        policies: Vec<ConfiguredPolicy>,
        image_fields: Vec<ImageFields>,
    ) -> Self {
        let json_forms = json_forms(&policies);
        Self {
            runtime,
            outcomes: remembered(&policies),
            policies,
            image_fields,
            json_forms,
        }
    }

    /// The policies, in evaluation order.
    pub fn policies(&self) -> &[ConfiguredPolicy] {
        &self.policies
    }

    /// The custom resources' image and pull-secret locations.
    pub fn image_fields(&self) -> &[ImageFields] {
        &self.image_fields
    }

    /// The runtime it evaluates on.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The chain of the named policies only, in the order named (a webhook
    /// set), on the same runtime; `None` naming one it does not have.
    pub fn subset<S: AsRef<str>>(&self, names: &[S]) -> Option<Self> {
        let policies = names
            .iter()
            .map(|name| {
                self.policies
                    .iter()
                    .find(|p| &*p.name == name.as_ref())
                    .cloned()
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            runtime: self.runtime.clone(),
            json_forms: json_forms(&policies),
            outcomes: remembered(&policies),
            policies,
            image_fields: self.image_fields.clone(),
        })
    }

    /// Whether policies are consulted about `object`.
    pub fn is_relevant(&self, object: &Value) -> bool {
        relevant(&self.sites(object))
    }

    /// The image sites of `object`.
    fn sites(&self, object: &Value) -> Sites {
        sites::find(
            Object {
                prefix: "",
                value: object,
            },
            &self.image_fields,
        )
    }

    /// Evaluate one object (pointers in the outcome are relative to it).
    /// `None` when the object is not one policies are consulted about.
    ///
    /// Each policy gets a fresh instance for this object, kept for the
    /// convergence pass and dropped with it.
    pub fn evaluate(
        &self,
        object: &Value,
        origin: &Origin,
    ) -> Result<Option<Outcome>, ObjectError> {
        let found = self.sites(object);
        if !relevant(&found) {
            return Ok(None);
        }
        // Where policies are shown the object without its metadata, that
        // text is also what its outcome is remembered by: written once for
        // both.
        let without_metadata = match object.as_object() {
            Some(members) if self.outcomes.is_some() && self.json_forms.without_metadata => {
                serde_json::to_string(&WithoutMetadata(members)).ok()
            }
            _ => None,
        };
        let key = self.outcome_key(object, &found, origin, without_metadata.as_deref());
        if let Some((remembered, key)) = &key
            && let Some(recalled) = remembered.outcomes.get(key)
        {
            // Every answer the run would have asked for came from memory.
            for (policy, &asked) in self.policies.iter().zip(&recalled.asked) {
                if let Some(answers) = &policy.answers {
                    answers.count_reuse(asked);
                }
            }
            return Ok(Some(recalled.outcome.clone()));
        }
        let snapshot = self.snapshot(object, found, without_metadata)?;
        let mut instances = Instances::new(self.policies.len());
        let first = self.first_pass(&mut instances, object, snapshot, origin)?;
        let mut outcome = first.outcome;
        if let (Some(settled), Some(last)) = (&first.changed, first.last_changer) {
            outcome.patch = patch::diff(object, settled);
            if !outcome.patch.is_empty() {
                self.check_settled(&mut instances, settled, first.snapshot, origin, last)?;
            }
        }
        if let Some((remembered, key)) = key
            && instances.reusable
        {
            let recalled = Recalled {
                outcome: outcome.clone(),
                asked: instances.asked,
            };
            remembered.outcomes.keep(key, Arc::new(recalled));
        }
        Ok(Some(outcome))
    }

    /// How many objects were given an outcome the chain had come to before
    /// (see [`Remembered`]).
    pub fn reused_outcomes(&self) -> u64 {
        self.outcomes.as_ref().map_or(0, |r| r.outcomes.reused())
    }

    /// The digest of everything the chain's outcome on `object` depends
    /// on, when that leaves out its name (see [`Remembered`]): the object
    /// without its metadata, the metadata parts the policies read, and
    /// where it comes from but a file's position (which no policy reads).
    /// `without_metadata` is the object's JSON without its metadata when
    /// already written.
    fn outcome_key<'r>(
        &'r self,
        object: &Value,
        found: &Sites,
        origin: &Origin,
        without_metadata: Option<&str>,
    ) -> Option<(&'r Remembered, Key)> {
        use sha2::Digest;
        let remembered = self.outcomes.as_deref()?;
        let members = object.as_object()?;
        let in_metadata =
            |pointer: &str| pointer == "/metadata" || pointer.starts_with("/metadata/");
        if found.images.iter().any(|s| in_metadata(&s.pointer))
            || found
                .pull_secrets_pointer
                .as_deref()
                .is_some_and(in_metadata)
        {
            return None;
        }
        let mut digest = DigestWriter(sha2::Sha256::new());
        match without_metadata {
            Some(text) => digest.0.update(text),
            None => serde_json::to_writer(&mut digest, &WithoutMetadata(members)).ok()?,
        }
        let metadata = members.get("metadata");
        for (part, field) in [
            (ResourceParts::NAMESPACE, "namespace"),
            (ResourceParts::LABELS, "labels"),
            (ResourceParts::ANNOTATIONS, "annotations"),
        ] {
            // Each part as JSON after a separator no JSON text contains.
            digest.0.update([0xff]);
            if remembered.reads.contains(part) {
                let value = metadata.and_then(|m| m.get(field));
                serde_json::to_writer(&mut digest, &value).ok()?;
            }
        }
        digest.0.update(match origin {
            Origin::File { .. } => [0, 0],
            Origin::Cluster => [1, 0],
            Origin::Admission(op) => [2, *op as u8],
        });
        Some((remembered, digest.0.finalize().into()))
    }

    /// What policies are shown of `object`: its image sites and the view
    /// of it, built once per state of the object rather than per policy.
    /// `without_metadata`: the object's JSON without its metadata, when
    /// already written.
    fn snapshot(
        &self,
        object: &Value,
        found: Sites,
        without_metadata: Option<String>,
    ) -> Result<Snapshot, ObjectError> {
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
        let mut forms = self.json_forms;
        forms.without_metadata &= without_metadata.is_none();
        let mut view = ResourceView::with_json(object, "", &found, forms);
        if let Some(text) = without_metadata {
            view.object_json_without_metadata = text;
        }
        Ok(Snapshot {
            found,
            view,
            whole: std::cell::OnceCell::new(),
        })
    }

    /// What the policy at `index` would do to `object`, checked.
    fn plan(
        &self,
        instances: &mut Instances,
        index: usize,
        object: &Value,
        snapshot: &Snapshot,
        origin: &Origin,
        pass: Pass,
    ) -> Result<actions::Plan, ObjectError> {
        let policy = &self.policies[index];
        instances.asked[index] += 1;
        let invalid = |message: String| PolicyFailure {
            policy: policy.name.to_string(),
            kind: FailureKind::InvalidAction(message),
        };
        let parts = policy.reads.unwrap_or_else(ResourceParts::all);
        let shown = convert::shown(&snapshot.view, origin, parts);
        let key = policy
            .answers
            .as_ref()
            .map(|answers| (answers, shown.key()));
        let known = key.as_ref().and_then(|(answers, key)| answers.get(key));
        let actions: Arc<[Action]> = match known {
            Some(actions) => actions,
            None => {
                // The whole resource is built once per state, for every
                // policy shown all of it; a narrower one for its policy.
                let narrower;
                let resource = if parts == ResourceParts::all() {
                    snapshot.whole.get_or_init(|| shown.resource())
                } else {
                    narrower = shown.resource();
                    &narrower
                };
                let answer = instances.with(index, |slot| {
                    self.runtime
                        .evaluate(policy, slot, resource, pass == Pass::Check)
                })?;
                let actions: Arc<[Action]> =
                    convert::actions(answer.actions).map_err(invalid)?.into();
                if answer.called_host {
                    instances.reusable = false;
                } else if let Some((answers, key)) = key
                    && answer.fresh
                {
                    answers.keep(key, actions.clone());
                }
                actions
            }
        };
        if actions.iter().any(|a| matches!(a, Action::JsonPatch(_))) {
            instances.reusable = false;
        }
        actions::plan(object, &snapshot.found, &actions).map_err(|e| invalid(e.to_string()).into())
    }

    /// Apply `policy`'s change: to `changed`, which is copied from
    /// `original` on the first change (an object no policy changes is
    /// never copied). Returns the snapshot of the new state.
    fn apply(
        &self,
        policy: &ConfiguredPolicy,
        plan: &actions::Plan,
        original: &Value,
        changed: &mut Option<Value>,
    ) -> Result<Snapshot, ObjectError> {
        let object = changed.get_or_insert_with(|| original.clone());
        patch::apply(object, &plan.patch).map_err(|e| PolicyFailure {
            policy: policy.name.to_string(),
            kind: FailureKind::InvalidAction(format!("its change cannot apply: {e}")),
        })?;
        self.snapshot(object, self.sites(object), None)
    }

    /// The chain in order, each policy seeing the object as the previous
    /// ones left it.
    fn first_pass(
        &self,
        instances: &mut Instances,
        object: &Value,
        mut snapshot: Snapshot,
        origin: &Origin,
    ) -> Result<FirstPass, ObjectError> {
        let mut changed: Option<Value> = None;
        let mut outcome = Outcome::default();
        let mut last_changer = None;
        for (index, policy) in self.policies.iter().enumerate() {
            let current = changed.as_ref().unwrap_or(object);
            let plan = self.plan(instances, index, current, &snapshot, origin, Pass::First)?;
            let name = policy.name.to_string();
            if plan.changes_object() {
                snapshot = self.apply(policy, &plan, object, &mut changed)?;
                outcome.changed_by.push(name.clone());
                last_changer = Some(index);
            }
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
        Ok(FirstPass {
            changed,
            snapshot,
            outcome,
            last_changer,
        })
    }

    /// The convergence check: the chain run again on its own result must
    /// leave it alone. Policies are functions of their settings and the
    /// object, so only those up to the last one that changed anything need
    /// to run again: each later one already saw exactly this object.
    fn check_settled(
        &self,
        instances: &mut Instances,
        settled: &Value,
        mut snapshot: Snapshot,
        origin: &Origin,
        last_changer: usize,
    ) -> Result<(), ObjectError> {
        // Once a policy changes the object again, the rest of the chain
        // runs on that: the pass converges if the object ends as it began,
        // and otherwise every policy involved is named.
        let mut changed: Option<Value> = None;
        let mut changed_by = Vec::new();
        for (index, policy) in self.policies.iter().enumerate() {
            if changed.is_none() && index > last_changer {
                break;
            }
            let current = changed.as_ref().unwrap_or(settled);
            let plan = self.plan(instances, index, current, &snapshot, origin, Pass::Check)?;
            if plan.changes_object() {
                snapshot = self.apply(policy, &plan, settled, &mut changed)?;
                changed_by.push(policy.name.to_string());
            }
        }
        let changes = changed.map_or_else(Vec::new, |again| patch::diff(settled, &again));
        if changes.is_empty() {
            // Nothing, or edits that the rest of the chain undid again.
            Ok(())
        } else {
            Err(ObjectError::NotConverging {
                policies: changed_by,
                changes,
            })
        }
    }
}

/// Whether an object with these sites is shown to policies: it carries
/// images or has a place for pull secrets.
fn relevant(found: &Sites) -> bool {
    !found.images.is_empty() || found.pull_secrets_pointer.is_some()
}

/// The forms of the object's JSON `policies` read.
fn json_forms(policies: &[ConfiguredPolicy]) -> JsonForms {
    let mut forms = JsonForms::default();
    for parts in policies
        .iter()
        .map(|p| p.reads.unwrap_or_else(ResourceParts::all))
    {
        if parts.contains(ResourceParts::OBJECT_JSON) {
            if parts.contains(ResourceParts::OBJECT_METADATA) {
                forms.whole = true;
            } else {
                forms.without_metadata = true;
            }
        }
    }
    forms
}

/// The image sites of an object and the view policies are shown parts of.
struct Snapshot {
    found: Sites,
    view: ResourceView,
    /// The resource policies that read every part are shown, once built.
    whole: std::cell::OnceCell<crate::bindings::repoint::policy::types::Resource>,
}

/// The first pass's result.
struct FirstPass {
    /// The object as the chain left it, if any policy changed it.
    changed: Option<Value>,
    /// Its snapshot.
    snapshot: Snapshot,
    outcome: Outcome,
    /// The last policy that changed the object.
    last_changer: Option<usize>,
}

/// Which pass over the chain a policy runs in: the one that decides, or
/// the convergence check, whose log lines are dropped (they were said in
/// the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    First,
    Check,
}

/// The chain's policy instances for one object, and whether its outcome
/// can be kept for others (see [`Remembered`]).
struct Instances {
    slots: Vec<Option<PolicyInstance>>,
    /// No policy has called the host or asked for raw patch operations.
    reusable: bool,
    /// How many times each policy was asked, from memory or not.
    asked: Vec<u32>,
}

impl Instances {
    fn new(policies: usize) -> Self {
        Self {
            slots: (0..policies.min(REUSED_PER_OBJECT)).map(|_| None).collect(),
            reusable: true,
            asked: vec![0; policies],
        }
    }

    /// Run `f` with the slot of the policy at `index`; policies past the
    /// reused ones get a slot of their own, dropped afterwards.
    fn with<R>(&mut self, index: usize, f: impl FnOnce(&mut Option<PolicyInstance>) -> R) -> R {
        match self.slots.get_mut(index) {
            Some(slot) => f(slot),
            None => f(&mut None),
        }
    }
}

/// A digest written to as JSON is serialized, so the JSON is never held.
struct DigestWriter(sha2::Sha256);

impl std::io::Write for DigestWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(&mut self.0, bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
