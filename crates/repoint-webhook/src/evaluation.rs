//! Running a set's chain on a request's object: on a worker, within the
//! queue wait and the deadline, and the verdict it gives.

use std::sync::Arc;

use repoint_runtime::chain::{ObjectError, Operation as ChainOperation, Origin};
use serde_json::Value;

use crate::admission::{AdmissionRequest, Operation, Verdict};
use crate::guard::Served;
use crate::labels::{Endpoint, FailureCause, Outcome, PolicyResult};
use crate::{Reconciled, Webhook};

impl Webhook {
    /// Evaluate on a worker, within the queue wait and the deadline; the
    /// failure policy answers otherwise.
    pub(crate) async fn evaluate_bounded(
        self: &Arc<Self>,
        served: Arc<Served>,
        request: AdmissionRequest,
        object: Value,
        endpoint: Endpoint,
    ) -> (Verdict, Outcome) {
        let deadline = tokio::time::Instant::now() + self.options.timeout;
        let solo = match served.admit() {
            Ok(solo) => solo,
            Err(why) => return self.failed(&served, "(server)", FailureCause::Throttled, why),
        };
        // The set's share, then a worker, both within the queue wait.
        let permits = tokio::time::timeout(self.options.queue_wait, async {
            let share = served.share().clone().acquire_owned().await?;
            let worker = self.permits.clone().acquire_owned().await?;
            Ok::<_, tokio::sync::AcquireError>((share, worker))
        })
        .await;
        let permits = match permits {
            Ok(Ok(permits)) => permits,
            _ => {
                return self.failed(
                    &served,
                    "(server)",
                    FailureCause::Overloaded,
                    "every worker is busy".into(),
                );
            }
        };
        let webhook = self.clone();
        let task_set = served.clone();
        // The pool's thread logs under the request's span.
        let span = tracing::Span::current();
        let task = self.pool.run(move || {
            let _entered = span.enter();
            let _permits = (permits, solo);
            let answer = webhook.evaluate(&task_set, &request, object, endpoint);
            if !answer.1.is_failure() {
                task_set.recovered();
            }
            answer
        });
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Some(answer)) => answer,
            Ok(None) => self.failed(
                &served,
                "(server)",
                FailureCause::Trap,
                "the evaluation panicked".into(),
            ),
            Err(_) => self.failed(
                &served,
                "(server)",
                FailureCause::Deadline,
                format!("no answer within {:?}", self.options.timeout),
            ),
        }
    }

    /// Run the set's chain on the request's object (blocking).
    fn evaluate(
        &self,
        served: &Served,
        request: &AdmissionRequest,
        object: Value,
        endpoint: Endpoint,
    ) -> (Verdict, Outcome) {
        let set = &served.set;
        // Policies see the namespace the object will live in; the patch
        // never sets it (the API server does).
        let mut seen = object;
        if repoint_core::pointer::get(&seen, "/metadata/namespace").is_none()
            && let (Some(ns), Some(Value::Object(meta))) =
                (&request.namespace, seen.get_mut("metadata"))
        {
            meta.insert("namespace".into(), ns.clone().into());
        }
        let operation = match request.operation {
            Operation::Update => ChainOperation::Update,
            _ => ChainOperation::Create,
        };
        match set.chain.evaluate(&seen, &Origin::Admission(operation)) {
            Ok(None) => (Verdict::allow(), Outcome::Skipped),
            Ok(Some(outcome)) => {
                for policy in set.chain.policies() {
                    let name = &*policy.name;
                    let result = if outcome.denials.iter().any(|d| d.policy == name) {
                        PolicyResult::Denied
                    } else if outcome.changed_by.iter().any(|c| c == name) {
                        PolicyResult::Changed
                    } else {
                        PolicyResult::Unchanged
                    };
                    self.metrics.evaluation(&set.name, name, result);
                }
                let mut warnings: Vec<String> = outcome
                    .warnings
                    .iter()
                    .map(|w| format!("[{}] {}", w.policy, w.message))
                    .collect();
                for ensure in &outcome.ensure {
                    let namespace = ensure
                        .item
                        .namespace
                        .as_deref()
                        .or(request.namespace.as_deref())
                        .unwrap_or("default");
                    let name = &ensure.item.name;
                    if let Some(why) =
                        Reconciled::missing(self.options.reconciled.as_ref(), namespace, name)
                    {
                        warnings.push(format!(
                            "[{}] the pull Secret {namespace}/{name} must exist for this to pull its images; {why}",
                            ensure.policy
                        ));
                    }
                }
                if !outcome.denials.is_empty() {
                    let mut denying: Vec<&str> =
                        outcome.denials.iter().map(|d| d.policy.as_str()).collect();
                    denying.dedup();
                    for policy in denying {
                        self.metrics.denial(&set.name, policy);
                    }
                    let message = outcome
                        .denials
                        .iter()
                        .map(|d| format!("[{}] {}", d.policy, d.message))
                        .collect::<Vec<_>>()
                        .join("; ");
                    return (
                        Verdict::deny(403, format!("repoint: {message}")).with_warnings(warnings),
                        Outcome::Denied,
                    );
                }
                let ops: Vec<_> = outcome
                    .patch
                    .iter()
                    .filter(|op| !op.path.starts_with("/metadata/namespace"))
                    .collect();
                if endpoint == Endpoint::Mutate && !ops.is_empty() {
                    let mut verdict = Verdict::allow().with_warnings(warnings);
                    verdict.patch = Some(serde_json::to_value(&ops).unwrap_or_default());
                    (verdict, Outcome::Patched)
                } else {
                    (Verdict::allow().with_warnings(warnings), Outcome::Allowed)
                }
            }
            Err(e) => {
                let policy = match &e {
                    ObjectError::Policy(f) => {
                        self.metrics
                            .evaluation(&set.name, &f.policy, PolicyResult::Failed);
                        f.policy.clone()
                    }
                    ObjectError::InvalidImage { .. } => "(image)".into(),
                    ObjectError::NotConverging { policies, .. } => policies.join(","),
                };
                self.failed(served, &policy, FailureCause::of(&e), e.to_string())
            }
        }
    }
}
