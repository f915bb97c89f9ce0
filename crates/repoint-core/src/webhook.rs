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

/// Connections the server holds at once; one more is closed at once
/// (and counted).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How long a client may take to send a request's headers, and how long
/// an HTTP/1 connection may sit idle between requests.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request body (the API server sends at most 3 MiB objects).
pub const DEFAULT_BODY_LIMIT: usize = 3 << 20;

/// Bytes of request bodies held at once across every connection; a
/// request that would go over it is answered 503 at once.
pub const DEFAULT_BODY_BUDGET: usize = 32 << 20;

/// The namespaces the webhook skips when `webhook.excludeNamespaces` is
/// not set (the server's own is always skipped too).
pub const DEFAULT_WEBHOOK_EXCLUDED: &[&str] = &["kube-system"];
