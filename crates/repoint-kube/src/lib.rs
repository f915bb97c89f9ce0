//! Everything of repoint that talks to a Kubernetes API server, on kube-rs:
//! connecting the way kubectl does, listing the workloads policies are
//! consulted about, writing changes safely, and keeping pull secrets in
//! place as namespaces come and go.
//!
//! How a change is written: a JSON Patch that sets the `resourceVersion`
//! the change was computed from (a precondition: the server answers 409
//! Conflict when the object moved on) and then makes the chain's own
//! minimal diff, so nothing else in the object is touched. If the object
//! changed in between, repoint reads it again, evaluates again and retries
//! with backoff.
//!
//! Field ownership: the API server records every write under its field
//! manager (`repoint`, or `--field-manager`), operation `Update`, owning
//! the fields it set. A later client-side `kubectl apply` of the original
//! manifest leaves those fields as repoint set them (its three-way merge
//! changes only what the manifest changed); a `kubectl apply
//! --server-side` of it conflicts with repoint's manager on them; a
//! replace of the whole object puts the manifest's values back. The
//! README says so, and `crates/repoint-cli/tests/cluster.rs` shows it.
//!
//! Depends on repoint-core (patches, pointers, sites) and
//! repoint-credentials (pull Secret contents), and on kube-rs,
//! k8s-openapi, `json-patch` and tokio.

mod connect;
mod error;
pub mod inventory;
pub mod reconcile;
pub mod write;

pub use connect::{Target, connect};
pub use error::KubeError;
pub use kube::Client;

/// The field manager named on every write unless told otherwise.
pub const FIELD_MANAGER: &str = "repoint";
