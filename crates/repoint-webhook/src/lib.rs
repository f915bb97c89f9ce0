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
//! time is throttled, then cut off for a while (see `Served`), so the
//! other sets keep their latency.

pub mod admission;
pub mod metrics;
pub mod pool;
pub mod serve;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use repoint_runtime::FailureKind;
use repoint_runtime::chain::{Chain, ObjectError, Operation, Origin};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use admission::{AdmissionRequest, Verdict};
use metrics::Metrics;
/// What to answer when a policy of a set fails or the server is
/// overloaded (the config's `failurePolicy`).
pub use repoint_config::FailurePolicy;

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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            exclude_namespaces: vec!["kube-system".into()],
            timeout: Duration::from_secs(2),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
            queue_wait: Duration::from_millis(500),
            body_limit: 3 << 20,
        }
    }
}

/// The compiled policies: the sets, each chain on its runtime.
#[derive(Debug)]
struct Installed {
    sets: BTreeMap<String, Arc<Served>>,
}

/// Evaluations in a row that run out of time before a set's circuit opens.
const STRIKES_TO_OPEN: u32 = 3;
/// How long an open circuit answers by the failure policy alone.
const OPEN_FOR: Duration = Duration::from_secs(5);

/// A policy set as served: its chain, and what keeps a misbehaving policy
/// from taking the server with it.
///
/// - **Share.** When several sets are served, one set holds at most half
///   the workers, so a set whose policy loops cannot occupy them all.
/// - **Throttle.** After an evaluation runs out of time, the set runs one
///   evaluation at a time (the rest are answered by its failure policy at
///   once) until one completes in time.
/// - **Circuit.** After [`STRIKES_TO_OPEN`] in a row run out of time, the
///   set is answered by its failure policy alone for [`OPEN_FOR`], then
///   tries one evaluation again. A policy that always loops then burns a
///   core for one timeout in every few seconds, not constantly.
#[derive(Debug)]
struct Served {
    set: PolicySet,
    /// This set's share of the workers.
    share: Arc<Semaphore>,
    /// The one evaluation a throttled set may run.
    solo: Arc<Semaphore>,
    /// Evaluations in a row that ran out of time (0: healthy).
    strikes: AtomicU32,
    /// While the circuit is open: until when.
    open_until: Mutex<Option<Instant>>,
}

impl Served {
    /// Why this set cannot evaluate now, if it cannot; otherwise the solo
    /// permit a throttled set must hold.
    fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, String> {
        let strikes = self.strikes.load(Ordering::Relaxed);
        if strikes == 0 {
            return Ok(None);
        }
        let open_until = *self.open_until.lock().unwrap_or_else(|e| e.into_inner());
        if open_until.is_some_and(|t| Instant::now() < t) {
            return Err(format!(
                "{strikes} evaluations of this set in a row ran out of time; it is answered by its failure policy for {OPEN_FOR:?} before trying again"
            ));
        }
        self.solo.clone().try_acquire_owned().map(Some).map_err(|_| {
            "an evaluation of this set ran out of time; it runs one at a time until one completes in time".to_string()
        })
    }

    /// An evaluation ran out of time.
    fn strike(&self) {
        let strikes = self.strikes.fetch_add(1, Ordering::Relaxed) + 1;
        if strikes >= STRIKES_TO_OPEN {
            *self.open_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + OPEN_FOR);
        }
    }

    /// An evaluation completed in time.
    fn recovered(&self) {
        if self.strikes.swap(0, Ordering::Relaxed) > 0 {
            *self.open_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// The webhook's state, shared by every request.
#[derive(Debug)]
pub struct Webhook {
    /// Filled once every policy is compiled and configured (`/readyz`).
    installed: OnceLock<Installed>,
    options: Options,
    permits: Arc<Semaphore>,
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
            .map(|set| {
                let served = Served {
                    set,
                    share: Arc::new(Semaphore::new(share)),
                    solo: Arc::new(Semaphore::new(1)),
                    strikes: AtomicU32::new(0),
                    open_until: Mutex::new(None),
                };
                (served.set.name.clone(), Arc::new(served))
            })
            .collect();
        let _ = self.installed.set(Installed { sets });
    }

    /// Whether every policy is compiled and configured.
    pub fn is_ready(&self) -> bool {
        self.installed.get().is_some()
    }

    /// The admission endpoints and the probes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/mutate/{set}",
                post(
                    |State(w): State<Arc<Self>>, Path(set): Path<String>, body: Bytes| async move {
                        w.handle(set, body, Endpoint::Mutate).await
                    },
                ),
            )
            .route(
                "/validate/{set}",
                post(
                    |State(w): State<Arc<Self>>, Path(set): Path<String>, body: Bytes| async move {
                        w.handle(set, body, Endpoint::Validate).await
                    },
                ),
            )
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(|State(w): State<Arc<Self>>| async move {
                    if w.is_ready() {
                        (StatusCode::OK, "ready")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "policies are still loading",
                        )
                    }
                }),
            )
            .layer(DefaultBodyLimit::max(self.options.body_limit))
            .with_state(self.clone())
    }

    /// `/metrics`, for a separate plain-HTTP port.
    pub fn metrics_router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/metrics",
                get(|State(w): State<Arc<Self>>| async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        w.metrics.render(),
                    )
                }),
            )
            .with_state(self.clone())
    }

    async fn handle(
        self: Arc<Self>,
        set_name: String,
        body: Bytes,
        endpoint: Endpoint,
    ) -> Response {
        let started = Instant::now();
        let Some(installed) = self.installed.get() else {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "policies are still loading",
            )
                .into_response();
        };
        let Some(set) = installed.sets.get(&set_name).cloned() else {
            return (
                StatusCode::NOT_FOUND,
                format!("no policy set named {set_name:?}"),
            )
                .into_response();
        };
        let mut request = match admission::parse(&body) {
            Ok((_, request)) => request,
            Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
        };
        let uid = request.uid.clone();
        let (verdict, outcome) = match self.object_to_evaluate(&mut request) {
            Err(reason) => {
                tracing::debug!(uid, set = set_name, reason, "allowed without evaluation");
                (Verdict::allow(), "skipped")
            }
            Ok(object) => self.evaluate_bounded(set, request, object, endpoint).await,
        };
        let took = started.elapsed();
        self.metrics
            .request(&set_name, endpoint.as_str(), outcome, took);
        tracing::info!(
            uid,
            set = set_name,
            endpoint = endpoint.as_str(),
            outcome,
            allowed = verdict.allowed,
            micros = took.as_micros() as u64,
            "admission review"
        );
        axum::Json(admission::response(&uid, &verdict)).into_response()
    }

    /// The object to evaluate, taken out of the request; or why the
    /// request is allowed untouched without running anything.
    fn object_to_evaluate(&self, request: &mut AdmissionRequest) -> Result<Value, &'static str> {
        if matches!(request.operation.as_str(), "DELETE" | "CONNECT") {
            return Err("DELETE and CONNECT are not evaluated");
        }
        if request
            .namespace
            .as_ref()
            .is_some_and(|ns| self.options.exclude_namespaces.contains(ns))
        {
            return Err("namespace excluded");
        }
        request
            .object
            .take()
            .filter(Value::is_object)
            .ok_or("no object")
    }

    /// Evaluate on a worker, within the queue wait and the deadline; the
    /// failure policy answers otherwise.
    async fn evaluate_bounded(
        self: &Arc<Self>,
        served: Arc<Served>,
        request: AdmissionRequest,
        object: Value,
        endpoint: Endpoint,
    ) -> (Verdict, &'static str) {
        let deadline = tokio::time::Instant::now() + self.options.timeout;
        let solo = match served.admit() {
            Ok(solo) => solo,
            Err(why) => return self.failed(&served, "(server)", "throttled", why),
        };
        // The set's share, then a worker, both within the queue wait.
        let permits = tokio::time::timeout(self.options.queue_wait, async {
            let share = served.share.clone().acquire_owned().await?;
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
                    "overloaded",
                    "every worker is busy".into(),
                );
            }
        };
        let webhook = self.clone();
        let task_set = served.clone();
        let task = self.pool.run(move || {
            let _permits = (permits, solo);
            let answer = webhook.evaluate(&task_set, &request, object, endpoint);
            if !answer.1.starts_with("failed-") {
                task_set.recovered();
            }
            answer
        });
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Some(answer)) => answer,
            Ok(None) => self.failed(
                &served,
                "(server)",
                "trap",
                "the evaluation panicked".into(),
            ),
            Err(_) => self.failed(
                &served,
                "(server)",
                "deadline",
                format!("no answer within {:?}", self.options.timeout),
            ),
        }
    }

    /// The failure policy's answer; the request's outcome is `overloaded`
    /// or `throttled` for those kinds, otherwise `failed-closed` or
    /// `failed-open`. Running out of time throttles the set.
    fn failed(
        &self,
        served: &Served,
        policy: &str,
        kind: &'static str,
        message: String,
    ) -> (Verdict, &'static str) {
        let set = &served.set;
        if matches!(kind, "timeout" | "deadline") {
            served.strike();
        }
        self.metrics
            .failure(&set.name, policy, kind, set.failure_policy.as_str());
        if matches!(kind, "overloaded" | "throttled") {
            // Counted in metrics; a log line each would flood the log
            // exactly when the server is busiest.
            tracing::debug!(set = set.name, kind, "{message}");
        } else {
            tracing::warn!(set = set.name, policy, kind, "{message}");
        }
        let (verdict, outcome) = match set.failure_policy {
            FailurePolicy::Fail => (
                Verdict::deny(500, format!("repoint: {message}")),
                "failed-closed",
            ),
            FailurePolicy::Ignore => (
                Verdict::allow().with_warnings(vec![format!(
                    "repoint: {message}; allowed unchanged (failurePolicy: Ignore)"
                )]),
                "failed-open",
            ),
        };
        (
            verdict,
            match kind {
                "overloaded" => "overloaded",
                "throttled" => "throttled",
                _ => outcome,
            },
        )
    }

    /// Run the set's chain on the request's object (blocking).
    fn evaluate(
        &self,
        served: &Served,
        request: &AdmissionRequest,
        object: Value,
        endpoint: Endpoint,
    ) -> (Verdict, &'static str) {
        let set = &served.set;
        // Policies see the namespace the object will live in; the patch
        // never sets it (the API server does).
        let mut seen = object;
        if seen.pointer("/metadata/namespace").is_none()
            && let (Some(ns), Some(Value::Object(meta))) =
                (&request.namespace, seen.get_mut("metadata"))
        {
            meta.insert("namespace".into(), ns.clone().into());
        }
        let operation = match request.operation.as_str() {
            "UPDATE" => Operation::Update,
            _ => Operation::Create,
        };
        match set.chain.evaluate(&seen, &Origin::Admission(operation)) {
            Ok(None) => (Verdict::allow(), "skipped"),
            Ok(Some(outcome)) => {
                for policy in set.chain.policies() {
                    let name = &*policy.name;
                    let result = if outcome.denials.iter().any(|d| d.policy == name) {
                        "denied"
                    } else if outcome.changed_by.iter().any(|c| c == name) {
                        "changed"
                    } else {
                        "unchanged"
                    };
                    self.metrics.evaluation(&set.name, name, result);
                }
                let warnings: Vec<String> = outcome
                    .warnings
                    .iter()
                    .map(|w| format!("[{}] {}", w.policy, w.message))
                    .collect();
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
                        "denied",
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
                    (verdict, "patched")
                } else {
                    (Verdict::allow().with_warnings(warnings), "allowed")
                }
            }
            Err(e) => {
                let (policy, kind) = match &e {
                    ObjectError::Policy(f) => (
                        f.policy.clone(),
                        match &f.kind {
                            FailureKind::Timeout(_) => "timeout",
                            FailureKind::MemoryLimit(_) => "memory",
                            FailureKind::InvalidAction(_) => "invalid-action",
                            FailureKind::Error(_) => "error",
                            FailureKind::Trap(_) => "trap",
                        },
                    ),
                    ObjectError::InvalidImage { .. } => ("(image)".into(), "invalid-image"),
                    ObjectError::NotConverging { policies, .. } => {
                        (policies.join(","), "not-converging")
                    }
                };
                if let ObjectError::Policy(f) = &e {
                    self.metrics.evaluation(&set.name, &f.policy, "failed");
                }
                self.failed(served, &policy, kind, e.to_string())
            }
        }
    }
}

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Mutate,
    Validate,
}

impl Endpoint {
    fn as_str(self) -> &'static str {
        match self {
            Self::Mutate => "mutate",
            Self::Validate => "validate",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> Served {
        let options = repoint_runtime::RuntimeOptions {
            cache_dir: None,
            concurrency: 1,
            ..Default::default()
        };
        let runtime =
            repoint_runtime::Runtime::new(options, Arc::new(repoint_runtime::probe::Offline))
                .expect("runtime");
        Served {
            set: PolicySet {
                name: "s".into(),
                chain: Arc::new(runtime)
                    .chain(Vec::new(), Vec::new())
                    .expect("an empty chain"),
                failure_policy: FailurePolicy::Fail,
            },
            share: Arc::new(Semaphore::new(2)),
            solo: Arc::new(Semaphore::new(1)),
            strikes: AtomicU32::new(0),
            open_until: Mutex::new(None),
        }
    }

    #[test]
    fn throttle_and_circuit_open_expire_and_recover() {
        let s = served();
        assert!(matches!(s.admit(), Ok(None)), "healthy: no solo permit");
        s.strike();
        let solo = s.admit().expect("throttled: one at a time").expect("solo");
        assert!(s.admit().is_err(), "a second one at once is turned away");
        drop(solo);
        assert!(matches!(s.admit(), Ok(Some(_))));
        // Completing in time ends the throttle.
        s.recovered();
        assert!(matches!(s.admit(), Ok(None)));
        // Three in a row open the circuit, even with the solo permit free.
        for _ in 0..STRIKES_TO_OPEN {
            s.strike();
        }
        let why = s.admit().expect_err("open");
        assert!(why.contains("3 evaluations"), "{why}");
        // Once the open period has passed, one evaluation is tried again.
        *s.open_until.lock().expect("lock") = Some(Instant::now() - Duration::from_millis(1));
        assert!(matches!(s.admit(), Ok(Some(_))));
        s.recovered();
        assert!(matches!(s.admit(), Ok(None)));
        assert!(s.open_until.lock().expect("lock").is_none());
    }
}
