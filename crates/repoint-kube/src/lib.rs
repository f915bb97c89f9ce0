//! Everything of repoint that talks to a Kubernetes API server, on kube-rs:
//! connecting the way kubectl does, listing the workloads policies are
//! consulted about, writing changes safely, and keeping pull secrets in
//! place as namespaces come and go.
//!
//! How a change is written: a JSON Patch whose first operation is a `test`
//! of the `resourceVersion` the change was computed from. The patch is the
//! chain's own minimal diff, so nothing else in the object is touched, and
//! no field ownership is taken: Helm, Argo CD or kubectl applying the
//! object later never meets a field-manager conflict with repoint, as it
//! would after a server-side apply under a `repoint` manager (which would
//! also have to resend whole atomic lists in custom resources). If the
//! object changed in between, the test fails; repoint reads it again,
//! evaluates again and retries with backoff.

mod connect;
mod error;
pub mod inventory;
pub mod reconcile;
pub mod write;

pub use connect::{Target, connect};
pub use error::KubeError;
pub use kube::Client;

/// Field manager named on every write.
pub const FIELD_MANAGER: &str = "repoint";
