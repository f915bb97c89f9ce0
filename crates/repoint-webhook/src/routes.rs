//! The HTTP side: the admission endpoints, the probes and `/metrics`,
//! and what a request is before it is evaluated.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tracing::Instrument as _;

use crate::Webhook;
use crate::admission::{self, AdmissionRequest, Operation, Verdict};
use crate::labels::{Endpoint, Outcome};

impl Webhook {
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
                (Verdict::allow(), Outcome::Skipped)
            }
            // Every line logged while it is evaluated (a policy's own, too)
            // carries the request's uid.
            Ok(object) => {
                let span = tracing::info_span!("admission", uid = %uid, set = %set_name);
                self.evaluate_bounded(set, request, object, endpoint)
                    .instrument(span)
                    .await
            }
        };
        let took = started.elapsed();
        self.metrics.request(&set_name, endpoint, outcome, took);
        tracing::info!(
            uid,
            set = set_name,
            endpoint = endpoint.as_str(),
            outcome = outcome.as_str(),
            allowed = verdict.allowed,
            micros = took.as_micros() as u64,
            "admission review"
        );
        axum::Json(admission::response(&uid, &verdict)).into_response()
    }

    /// The object to evaluate, taken out of the request; or why the
    /// request is allowed untouched without running anything.
    fn object_to_evaluate(&self, request: &mut AdmissionRequest) -> Result<Value, &'static str> {
        if matches!(request.operation, Operation::Delete | Operation::Connect) {
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
}
