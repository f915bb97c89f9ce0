//! Errors that say what was refused: the verb, the resource and the
//! namespace, as RBAC needs them to grant it. They are told apart by the
//! Status the API server answers with (its `reason`, `code` and the types
//! of its causes), never by its message text, which servers word as they
//! like.

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No cluster to talk to.
    #[error("cannot connect to the cluster: {0}")]
    Connect(String),
    /// RBAC refused a request.
    #[error(
        "forbidden: cannot {verb} {resource} {scope} (grant the verb on the resource in a Role or ClusterRole): {message}"
    )]
    Forbidden {
        verb: String,
        /// `deployments.apps`, `secrets`.
        resource: String,
        /// `in namespace "a"` or `cluster-wide`.
        scope: String,
        message: String,
    },
    /// A write into a namespace that is being deleted: the server creates
    /// nothing in it any more.
    #[error("cannot {verb} {what}: namespace {namespace:?} is being deleted")]
    NamespaceTerminating {
        verb: String,
        what: String,
        namespace: String,
    },
    /// The object kept changing under us.
    #[error(
        "{what}: still conflicting after {attempts} attempts; another writer keeps changing it"
    )]
    Conflict { what: String, attempts: u32 },
    /// Anything else the API server answered.
    #[error("{verb} {what}: {message}")]
    Api {
        verb: String,
        what: String,
        code: u16,
        /// The Status `reason` (`Conflict`, `AlreadyExists`, `NotFound`,
        /// `Invalid`, ...); empty when the server gave none.
        reason: String,
        message: String,
    },
    /// The transport failed.
    #[error("{verb} {what}: {source}")]
    Transport {
        verb: String,
        what: String,
        #[source]
        source: kube::Error,
    },
    /// A policy's work on the object failed.
    #[error("{0}")]
    Evaluation(String),
}

/// Describe `error` from `verb` on `resource` (group-qualified plural) in
/// `namespace` (`None`: cluster-wide), for object `name` (empty for
/// collections).
pub(crate) fn describe(
    error: kube::Error,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
    name: &str,
) -> KubeError {
    let scope = match namespace {
        Some(ns) => format!("in namespace {ns:?}"),
        None => "cluster-wide".to_string(),
    };
    let what = match (name.is_empty(), namespace) {
        (true, _) => format!("{resource} {scope}"),
        (false, Some(ns)) => format!("{resource} {ns}/{name}"),
        (false, None) => format!("{resource} {name}"),
    };
    match error {
        // The NamespaceLifecycle admission plugin refuses with 403 and a
        // cause of this type.
        kube::Error::Api(status)
            if status.is_forbidden()
                && status
                    .details
                    .iter()
                    .flat_map(|d| d.causes.iter())
                    .any(|c| c.reason == NAMESPACE_TERMINATING) =>
        {
            KubeError::NamespaceTerminating {
                verb: verb.into(),
                what,
                namespace: namespace.unwrap_or_default().into(),
            }
        }
        kube::Error::Api(status) if status.is_forbidden() => KubeError::Forbidden {
            verb: verb.into(),
            resource: resource.into(),
            scope,
            message: status.message.clone(),
        },
        kube::Error::Api(status) => {
            // The reason for a 422 is often only among the causes.
            let causes: Vec<&str> = status
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .map(|c| c.message.as_str())
                .filter(|m| !m.is_empty() && !status.message.contains(m))
                .collect();
            let mut message = status.message.clone();
            if !causes.is_empty() {
                message = format!("{message}: {}", causes.join("; "));
            }
            KubeError::Api {
                verb: verb.into(),
                what,
                code: status.code,
                reason: status.reason.clone(),
                message,
            }
        }
        source => KubeError::Transport {
            verb: verb.into(),
            what,
            source,
        },
    }
}

/// The cause type (`StatusCause.reason`, `type` on the wire) of a refusal
/// by a terminating namespace (`v1.NamespaceTerminatingCause`).
const NAMESPACE_TERMINATING: &str = "NamespaceTerminating";

impl KubeError {
    /// The object changed since it was read: a 409 `Conflict`, as a
    /// write with a stale `resourceVersion` precondition gets.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Api { code, reason, .. } if reason_or_code(reason, "Conflict", *code, 409))
    }

    /// The object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { code, reason, .. } if reason_or_code(reason, "NotFound", *code, 404))
    }

    /// Someone created it first.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::Api { reason, .. } if reason == "AlreadyExists")
    }
}

/// kube-core's rule: the reason when the server gave one, else the code.
fn reason_or_code(reason: &str, wanted: &str, code: u16, wanted_code: u16) -> bool {
    if reason.is_empty() {
        code == wanted_code
    } else {
        reason == wanted
    }
}
