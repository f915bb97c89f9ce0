//! What the admission webhook and the config that sets it up share: the
//! failure policy and the webhook's defaults, in one home (`repoint serve`,
//! `repoint webhook manifests` and the webhook crate all read them here).

use std::time::Duration;

use serde::Deserialize;

/// What the API server should do when a policy of a set fails (traps,
/// times out, exceeds memory) or the server is overloaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum FailurePolicy {
    /// Deny the request, naming the policy.
    #[default]
    Fail,
    /// Allow it unchanged, with a warning.
    Ignore,
}

impl FailurePolicy {
    /// As Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "Fail",
            Self::Ignore => "Ignore",
        }
    }
}

/// The webhook's answer deadline when `webhook.timeout` is not set.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// The namespaces the webhook skips when `webhook.excludeNamespaces` is
/// not set (the server's own is always skipped too).
pub const DEFAULT_WEBHOOK_EXCLUDED: &[&str] = &["kube-system"];
