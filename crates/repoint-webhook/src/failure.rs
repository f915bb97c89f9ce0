//! The failure policy's answers: what a set says when it cannot evaluate
//! (a policy failed, the server is overloaded, the set is throttled).

use crate::admission::Verdict;
use crate::guard::Served;
use crate::labels::{FailureCause, Outcome};
use crate::{FailurePolicy, Webhook};

impl Webhook {
    /// The failure policy's answer to a request `policy` (or `(server)`)
    /// could not be evaluated for, because of `cause`. Its outcome is
    /// `overloaded` or `throttled` for those causes, otherwise
    /// `failed-closed` or `failed-open`. Running out of time throttles the
    /// set.
    pub(crate) fn failed(
        &self,
        served: &Served,
        policy: &str,
        cause: FailureCause,
        message: String,
    ) -> (Verdict, Outcome) {
        let set = &served.set;
        if cause.is_out_of_time() {
            served.strike();
        }
        self.metrics
            .failure(&set.name, policy, cause, set.failure_policy);
        if cause.is_load() {
            tracing::debug!(set = set.name, kind = cause.as_str(), "{message}");
        } else {
            tracing::warn!(set = set.name, policy, kind = cause.as_str(), "{message}");
        }
        let (verdict, outcome) = match set.failure_policy {
            FailurePolicy::Fail => (
                Verdict::deny(500, format!("repoint: {message}")),
                Outcome::FailedClosed,
            ),
            FailurePolicy::Ignore => (
                Verdict::allow().with_warnings(vec![format!(
                    "repoint: {message}; allowed unchanged (failurePolicy: Ignore)"
                )]),
                Outcome::FailedOpen,
            ),
        };
        let outcome = match cause {
            FailureCause::Overloaded => Outcome::Overloaded,
            FailureCause::Throttled => Outcome::Throttled,
            _ => outcome,
        };
        (verdict, outcome)
    }
}
