//! repoint's admission webhook: the same policy chains `repoint run` uses,
//! answering `AdmissionReview`s.
//!
//! - `POST /mutate/{set}`: allowed with a base64 `JSONPatch` that gives
//!   exactly what `repoint run` gives for the object, or denied;
//! - `POST /validate/{set}`: allowed or denied, never patched;
//! - `GET /healthz` (the process is up), `GET /readyz` (every policy is
//!   compiled and configured);
//! - `GET /metrics` on a separate router, for a plain-HTTP port.
//!
//! Each request gets fresh policy instances (the runtime instantiates
//! from `InstancePre` in a pooling allocator), so nothing crosses requests.
//! Evaluations run on the webhook's own threads (`pool`), at most `workers` at once; a
//! request that cannot get a worker within `queue_wait`, or is not done by
//! `timeout`, is answered at once by its set's failure policy, so the API
//! server never waits past its own timeout. A set whose policy runs out of
//! time is throttled, then cut off for a while (see `guard`), so the
//! other sets keep their latency.
//!
//! By job: `routes` (HTTP), `evaluation` (a chain on a worker, and its
//! verdict), `failure` (the failure policy's answers), `guard` (the
//! per-set throttle and circuit breaker), `labels` (outcomes and failure
//! causes as types), `metrics`, `admission` (the review's wire format),
//! `pool` (the evaluation threads) and `serve` (TLS serving).
//!
//! Depends on repoint-core (the failure policy and defaults it shares with
//! the config) and repoint-runtime (the chains), not on the config crate.

pub mod admission;
mod evaluation;
mod failure;
mod guard;
pub mod labels;
pub mod metrics;
pub mod pool;
mod routes;
pub mod serve;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use repoint_runtime::chain::Chain;
use tokio::sync::Semaphore;

use guard::Served;
use metrics::Metrics;
/// What to answer when a policy of a set fails or the server is
/// overloaded (the config's `failurePolicy`).
pub use repoint_core::webhook::FailurePolicy;

/// A named chain served at `/mutate/{name}` and `/validate/{name}`.
#[derive(Debug)]
pub struct PolicySet {
    pub name: String,
    pub chain: Chain,
    pub failure_policy: FailurePolicy,
}

/// Bounds and exclusions.
#[derive(Debug, Clone)]
pub struct Options {
    /// Requests from these namespaces are allowed untouched.
    pub exclude_namespaces: Vec<String>,
    /// Answer within this, whatever happens.
    pub timeout: Duration,
    /// Evaluations at once.
    pub workers: usize,
    /// How long a request may wait for a worker before the failure policy
    /// answers it.
    pub queue_wait: Duration,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Bytes of request bodies held at once across all connections.
    pub body_budget: usize,
    /// How long a request's body may take to arrive.
    pub body_timeout: Duration,
    /// What creates the pull Secrets policies ask for at admission (an
    /// admission response can only change the object); `None`: nothing
    /// does, and every response that adds one says so.
    pub reconciled: Option<Reconciled>,
}

/// The pull Secret a reconciler keeps present (`repoint serve --reconcile`,
/// or `repoint controller` beside the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// The Secret's name.
    pub secret_name: String,
    /// Namespaces it is never made in.
    pub excluded_namespaces: Vec<String>,
}

impl Reconciled {
    /// Why the pull Secret `namespace/name` a policy asked for is not made
    /// by `reconciled`, if it is not. (A reconciler's namespace selector
    /// is not checked: that needs the namespace's labels.)
    pub fn missing(reconciled: Option<&Self>, namespace: &str, name: &str) -> Option<String> {
        match reconciled {
            None => Some("nothing creates it at admission: add a `reconcile:` section for it and run `repoint serve --reconcile` or `repoint controller`".into()),
            Some(r) if r.secret_name != name => Some(format!(
                "the reconciler makes {:?}, not this one: name the same Secret in the policy and in `reconcile.secretName`",
                r.secret_name
            )),
            Some(r) if r.excluded_namespaces.iter().any(|n| n == namespace) => Some(format!(
                "the reconciler leaves namespace {namespace} out (`reconcile.excludeNamespaces`)"
            )),
            Some(_) => None,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            exclude_namespaces: repoint_core::webhook::DEFAULT_WEBHOOK_EXCLUDED
                .iter()
                .map(|s| s.to_string())
                .collect(),
            timeout: repoint_core::webhook::DEFAULT_WEBHOOK_TIMEOUT,
            workers: repoint_core::parallel::cores() * 2,
            queue_wait: Duration::from_millis(500),
            body_limit: repoint_core::webhook::DEFAULT_BODY_LIMIT,
            body_budget: repoint_core::webhook::DEFAULT_BODY_BUDGET,
            body_timeout: repoint_core::webhook::DEFAULT_BODY_TIMEOUT,
            reconciled: None,
        }
    }
}

/// The compiled policies: the sets, each chain on its runtime.
#[derive(Debug)]
struct Installed {
    sets: BTreeMap<String, Arc<Served>>,
}

/// The webhook's state, shared by every request.
#[derive(Debug)]
pub struct Webhook {
    /// Filled once every policy is compiled and configured (`/readyz`).
    installed: OnceLock<Installed>,
    options: Options,
    permits: Arc<Semaphore>,
    /// Bytes of request bodies that may be held at once.
    body_budget: Arc<Semaphore>,
    /// The threads evaluations run on.
    pool: pool::Pool,
    /// The server's metrics.
    pub metrics: Metrics,
}

impl Webhook {
    /// A webhook that is up but not ready until [`Webhook::install`].
    pub fn new(options: Options) -> Arc<Self> {
        Arc::new(Self {
            installed: OnceLock::new(),
            permits: Arc::new(Semaphore::new(options.workers.max(1))),
            body_budget: Arc::new(Semaphore::new(
                options.body_budget.clamp(1, Semaphore::MAX_PERMITS),
            )),
            pool: pool::Pool::new(options.workers.max(1)),
            options,
            metrics: Metrics::default(),
        })
    }

    /// Install the policy sets; the webhook is ready from now on.
    pub fn install(&self, sets: Vec<PolicySet>) {
        let workers = self.options.workers.max(1);
        let share = if sets.len() > 1 {
            (workers / 2).max(1)
        } else {
            workers
        };
        let sets = sets
            .into_iter()
            .map(|set| (set.name.clone(), Arc::new(Served::new(set, share))))
            .collect();
        let _ = self.installed.set(Installed { sets });
    }

    /// Whether every policy is compiled and configured.
    pub fn is_ready(&self) -> bool {
        self.installed.get().is_some()
    }
}
