//! Prometheus metrics in the text exposition format: counters by label
//! set and latency histograms. Hand-rolled: a few maps behind one lock,
//! touched once per request, are cheaper than a registry crate's
//! machinery and easy to read.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::labels::{Closed, Endpoint, FailureCause, Outcome, PolicyResult, Route};
use crate::{FailurePolicy, PolicySet};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<Labels, u64>,
    policy_evaluations: BTreeMap<Labels, u64>,
    denials: BTreeMap<Labels, u64>,
    failures: BTreeMap<Labels, u64>,
    responses: BTreeMap<Labels, u64>,
    closed: BTreeMap<Labels, u64>,
    latency: BTreeMap<Labels, Histogram>,
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add one to a counter of `family`.
    fn count(&self, family: fn(&mut Inner) -> &mut BTreeMap<Labels, u64>, labels: Labels) {
        *family(&mut self.lock()).entry(labels).or_default() += 1;
    }

    /// One admission request answered.
    pub fn request(&self, set: &str, endpoint: Endpoint, outcome: Outcome, took: Duration) {
        let (endpoint, outcome) = (endpoint.as_str(), outcome.as_str());
        self.count(
            |m| &mut m.requests,
            vec![
                ("set", set.into()),
                ("endpoint", endpoint.into()),
                ("outcome", outcome.into()),
            ],
        );
        let mut m = self.lock();
        let h = m
            .latency
            .entry(vec![("set", set.into()), ("endpoint", endpoint.into())])
            .or_default();
        let secs = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Any HTTP response, rejected requests included.
    pub fn response(&self, route: Route, status: u16) {
        self.count(
            |m| &mut m.responses,
            vec![
                ("route", route.as_str().into()),
                ("status", status.to_string()),
            ],
        );
    }

    /// A connection closed without an answer.
    pub fn closed(&self, reason: Closed) {
        self.count(|m| &mut m.closed, vec![("reason", reason.as_str().into())]);
    }

    /// A policy ran on an object.
    pub fn evaluation(&self, set: &str, policy: &str, outcome: PolicyResult) {
        let outcome = outcome.as_str();
        self.count(
            |m| &mut m.policy_evaluations,
            vec![
                ("set", set.into()),
                ("policy", policy.into()),
                ("outcome", outcome.into()),
            ],
        );
    }

    /// A policy denied an object.
    pub fn denial(&self, set: &str, policy: &str) {
        self.count(
            |m| &mut m.denials,
            vec![("set", set.into()), ("policy", policy.into())],
        );
    }

    /// A policy (or the server, as `(server)`) failed; `failure_policy`
    /// says what the answer was.
    pub fn failure(
        &self,
        set: &str,
        policy: &str,
        kind: FailureCause,
        failure_policy: FailurePolicy,
    ) {
        let (kind, failure_policy) = (kind.as_str(), failure_policy.as_str());
        self.count(
            |m| &mut m.failures,
            vec![
                ("set", set.into()),
                ("policy", policy.into()),
                ("kind", kind.into()),
                ("failure_policy", failure_policy.into()),
            ],
        );
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let m = self.lock();
        let mut out = String::new();
        counter(
            &mut out,
            "repoint_admission_requests_total",
            "Admission requests answered, by policy set, endpoint and outcome.",
            &m.requests,
        );
        counter(
            &mut out,
            "repoint_policy_evaluations_total",
            "Policy evaluations, by set, policy and outcome.",
            &m.policy_evaluations,
        );
        counter(
            &mut out,
            "repoint_policy_denials_total",
            "Objects denied, by set and policy.",
            &m.denials,
        );
        counter(
            &mut out,
            "repoint_policy_failures_total",
            "Policy failures, by set, policy, kind and the failure policy applied.",
            &m.failures,
        );
        counter(
            &mut out,
            "repoint_http_responses_total",
            "Every HTTP response, by route and status (rejected requests and body timeouts too).",
            &m.responses,
        );
        counter(
            &mut out,
            "repoint_connections_closed_total",
            "Connections closed without an answer, by reason.",
            &m.closed,
        );
        let name = "repoint_admission_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to answer an admission request.\n# TYPE {name} histogram"
        );
        for (labels, h) in &m.latency {
            let base = label_text(labels);
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{base},le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(out, "{name}_bucket{{{base},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum{{{base}}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{{base}}} {}", h.count);
        }
        out
    }
}

/// What the policy sets answered from memory, read from their chains
/// when scraped: each policy's answers given again (a policy in several
/// sets keeps one set of answers), and each set's outcomes given again
/// (see `repoint_runtime::chain`).
pub(crate) fn reuse(sets: &[&PolicySet]) -> String {
    let mut answers: BTreeMap<Labels, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<Labels, u64> = BTreeMap::new();
    for set in sets {
        outcomes.insert(vec![("set", set.name.clone())], set.chain.reused_outcomes());
        for policy in set.chain.policies() {
            answers.insert(
                vec![("policy", policy.name.to_string())],
                policy.reused_answers(),
            );
        }
    }
    let mut out = String::new();
    counter(
        &mut out,
        "repoint_policy_answers_reused_total",
        "Policy evaluations answered with the answer the policy gave to the same shown parts before, by policy.",
        &answers,
    );
    counter(
        &mut out,
        "repoint_set_outcomes_reused_total",
        "Objects given the outcome their policy set came to for an object alike but for its metadata, by set.",
        &outcomes,
    );
    out
}

fn label_text(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn counter(out: &mut String, name: &str, help: &str, values: &BTreeMap<Labels, u64>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, v) in values {
        let _ = writeln!(out, "{name}{{{}}} {v}", label_text(labels));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let m = Metrics::default();
        m.request(
            "default",
            Endpoint::Mutate,
            Outcome::Patched,
            Duration::from_micros(700),
        );
        m.request(
            "default",
            Endpoint::Mutate,
            Outcome::Patched,
            Duration::from_millis(30),
        );
        m.failure("lint", "loop", FailureCause::Timeout, FailurePolicy::Ignore);
        let text = m.render();
        assert!(text.contains(
            r#"repoint_admission_requests_total{set="default",endpoint="mutate",outcome="patched"} 2"#
        ));
        assert!(text.contains(
            r#"repoint_admission_duration_seconds_bucket{set="default",endpoint="mutate",le="0.001"} 1"#
        ));
        assert!(text.contains(
            r#"repoint_admission_duration_seconds_bucket{set="default",endpoint="mutate",le="+Inf"} 2"#
        ));
        assert!(text.contains(
            r#"repoint_policy_failures_total{set="lint",policy="loop",kind="timeout",failure_policy="Ignore"} 1"#
        ));
    }
}
