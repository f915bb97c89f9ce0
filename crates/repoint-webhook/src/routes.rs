//! The HTTP side: the admission endpoints, the probes and `/metrics`,
//! and what a request is before it is evaluated.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument as _;

use crate::Webhook;
use crate::admission::{self, AdmissionRequest, Operation, Verdict};
use crate::labels::{Endpoint, Outcome, Route};

impl Webhook {
    /// The admission endpoints and the probes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/mutate/{set}",
                post(
                    |State(w): State<Arc<Self>>,
                     Path(set): Path<String>,
                     headers: HeaderMap,
                     body: Body| async move {
                        w.receive(set, &headers, body, Endpoint::Mutate).await
                    },
                ),
            )
            .route(
                "/validate/{set}",
                post(
                    |State(w): State<Arc<Self>>,
                     Path(set): Path<String>,
                     headers: HeaderMap,
                     body: Body| async move {
                        w.receive(set, &headers, body, Endpoint::Validate).await
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
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                count_response,
            ))
            .with_state(self.clone())
    }

    /// Read a request's body within the limits (its size, the budget of
    /// bodies held across connections, the body timeout), then answer it.
    async fn receive(
        self: Arc<Self>,
        set: String,
        headers: &HeaderMap,
        body: Body,
        endpoint: Endpoint,
    ) -> Response {
        let (body, _held) = match self.read_body(headers, body).await {
            Ok(read) => read,
            Err(answer) => return answer,
        };
        self.handle(set, body, endpoint).await
    }

    /// The body, and its share of the budget (held until it is answered);
    /// or the answer that refuses it, at once.
    async fn read_body(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Bytes, OwnedSemaphorePermit), Response> {
        let limit = self.options.body_limit;
        let length = headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let too_large = || {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {limit} bytes"),
            )
                .into_response()
        };
        if length.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        // A body of unknown length may grow to the limit: that is what it
        // holds of the budget.
        let share = u32::try_from(length.unwrap_or(limit).max(1)).unwrap_or(u32::MAX);
        let Ok(held) = self.body_budget.clone().try_acquire_many_owned(share) else {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "too many request bodies in flight; try again",
            )
                .into_response());
        };
        match tokio::time::timeout(self.options.body_timeout, axum::body::to_bytes(body, limit))
            .await
        {
            Ok(Ok(bytes)) => Ok((bytes, held)),
            Ok(Err(e)) => {
                let over = e
                    .into_inner()
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                Err(if over {
                    too_large()
                } else {
                    (StatusCode::BAD_REQUEST, "the body could not be read").into_response()
                })
            }
            Err(_) => Err((
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {:?}",
                    self.options.body_timeout
                ),
            )
                .into_response()),
        }
    }

    /// The text of `/metrics`: the server's counters, and what its
    /// policy sets answered from memory once they are installed.
    fn metrics_text(&self) -> String {
        let mut text = self.metrics.render();
        if let Some(installed) = self.installed.get() {
            let sets: Vec<&crate::PolicySet> = installed.sets.values().map(|s| &s.set).collect();
            text.push_str(&crate::metrics::reuse(&sets));
        }
        text
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
                        w.metrics_text(),
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

/// Count every response by route and status: rejected requests (400,
/// 404, 408, 413, 503) as much as answered ones.
async fn count_response(State(w): State<Arc<Webhook>>, request: Request, next: Next) -> Response {
    let route = Route::of(request.uri().path());
    let response = next.run(request).await;
    w.metrics.response(route, response.status().as_u16());
    response
}
