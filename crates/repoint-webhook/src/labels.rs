//! The answers and failures the webhook counts and logs, as types: each
//! is a metric label (`as_str`), so a label can only be one of these.

use repoint_runtime::FailureKind;
use repoint_runtime::chain::ObjectError;

/// Which endpoint a request came to (the `endpoint` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Mutate,
    Validate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutate => "mutate",
            Self::Validate => "validate",
        }
    }
}

/// Which route a response came from (the `route` label of
/// `repoint_http_responses_total`), known before the request is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Mutate,
    Validate,
    Healthz,
    Readyz,
    /// Any other path (answered 404).
    Other,
}

impl Route {
    /// The route of a request path.
    pub fn of(path: &str) -> Self {
        match path.split('/').nth(1) {
            Some("mutate") => Self::Mutate,
            Some("validate") => Self::Validate,
            _ if path == "/healthz" => Self::Healthz,
            _ if path == "/readyz" => Self::Readyz,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutate => "mutate",
            Self::Validate => "validate",
            Self::Healthz => "healthz",
            Self::Readyz => "readyz",
            Self::Other => "other",
        }
    }
}

/// Why the server closed a connection without an answer (the `reason`
/// label of `repoint_connections_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Over `--max-connections`: closed as soon as accepted.
    OverLimit,
    /// The TLS handshake failed or took too long.
    Handshake,
    /// The headers did not arrive within the header timeout (or an
    /// HTTP/1 connection sat idle that long).
    HeaderTimeout,
}

impl Closed {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OverLimit => "over-limit",
            Self::Handshake => "handshake",
            Self::HeaderTimeout => "header-timeout",
        }
    }
}

/// What became of one admission request (the `outcome` label of
/// `repoint_admission_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed as it is.
    Allowed,
    /// Allowed with a patch.
    Patched,
    /// A policy denied it.
    Denied,
    /// Not evaluated (an excluded namespace, a DELETE, nothing policies
    /// are consulted about).
    Skipped,
    /// A failure answered by `failurePolicy: Ignore`.
    FailedOpen,
    /// A failure answered by `failurePolicy: Fail`.
    FailedClosed,
    /// No worker within the queue wait: answered by the failure policy.
    Overloaded,
    /// The set is throttled or its circuit is open: answered by the
    /// failure policy.
    Throttled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Patched => "patched",
            Self::Denied => "denied",
            Self::Skipped => "skipped",
            Self::FailedOpen => "failed-open",
            Self::FailedClosed => "failed-closed",
            Self::Overloaded => "overloaded",
            Self::Throttled => "throttled",
        }
    }

    /// Whether the failure policy gave this answer.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Self::FailedOpen | Self::FailedClosed | Self::Overloaded | Self::Throttled
        )
    }
}

/// Why the failure policy answered (the `kind` label of
/// `repoint_policy_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCause {
    Timeout,
    Memory,
    Trap,
    Error,
    InvalidAction,
    InvalidImage,
    NotConverging,
    /// The whole answer took longer than the webhook's timeout.
    Deadline,
    Overloaded,
    Throttled,
}

impl FailureCause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Memory => "memory",
            Self::Trap => "trap",
            Self::Error => "error",
            Self::InvalidAction => "invalid-action",
            Self::InvalidImage => "invalid-image",
            Self::NotConverging => "not-converging",
            Self::Deadline => "deadline",
            Self::Overloaded => "overloaded",
            Self::Throttled => "throttled",
        }
    }

    /// The cause of an evaluation's error.
    pub fn of(error: &ObjectError) -> Self {
        match error {
            ObjectError::Policy(failure) => match failure.kind {
                FailureKind::Timeout(_) => Self::Timeout,
                FailureKind::MemoryLimit(_) => Self::Memory,
                FailureKind::InvalidAction(_) => Self::InvalidAction,
                FailureKind::Error(_) => Self::Error,
                FailureKind::Trap(_) => Self::Trap,
            },
            ObjectError::InvalidImage { .. } => Self::InvalidImage,
            ObjectError::NotConverging { .. } => Self::NotConverging,
        }
    }

    /// Running out of time: it throttles the set.
    pub fn is_out_of_time(self) -> bool {
        matches!(self, Self::Timeout | Self::Deadline)
    }

    /// The server's load, not a policy's fault: counted, not logged one
    /// by one (a line each would flood the log when it is busiest).
    pub fn is_load(self) -> bool {
        matches!(self, Self::Overloaded | Self::Throttled)
    }
}

/// What one policy did with an object (the `outcome` label of
/// `repoint_policy_evaluations_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyResult {
    Changed,
    Unchanged,
    Denied,
    Failed,
}

impl PolicyResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Changed => "changed",
            Self::Unchanged => "unchanged",
            Self::Denied => "denied",
            Self::Failed => "failed",
        }
    }
}
