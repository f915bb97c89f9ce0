//! repoint's evaluation pipeline, the path every file-based command takes
//! and the pieces the cluster commands share:
//!
//! 1. [`chain`]: load the config's policies onto one runtime (settings
//!    checked, errors located in the config).
//! 2. [`input`]: expand directories (one walker for every command), read
//!    every input fully before anything is written.
//! 3. [`evaluate`]: parse the inputs a window of documents at a time and
//!    run the chain over every object of each window, in parallel, results
//!    in input order; for the manifests, each window's changes are written
//!    and checked and its trees released before the next window is read
//!    ([`evaluate::Retain`]); then [`materialize`] the pull Secrets and
//!    ServiceAccounts the results ask for.
//! 4. [`report`]: the findings (changes, denials, warnings, errors) and the
//!    exit status they call for, in text, JSON, SARIF or GitHub form.
//! 5. [`render`]: the patched manifests (YAML, JSON, a diff, JSON Patch),
//!    [`kustomize`]'s overlay, or [`krm`]'s ResourceList; a document whose
//!    change would not read back as the chain's value is never written and
//!    becomes an error finding.
//!
//! It writes to any `io::Write`; terminals, pipes and exit codes are the
//! binary's. The split from the crates below it: `repoint-core` knows
//! images, documents and patches; `repoint-runtime` runs policies;
//! `repoint-config` reads the config; this crate puts them in order.
//!
//! Depends on repoint-core, repoint-config, repoint-credentials,
//! repoint-runtime and repoint-registry (the registry prober a run uses,
//! and [`oci`]'s pulls of `oci://` policies), on
//! `ignore` for walking directories, `similar` for diffs and `tempfile`
//! for atomic writes; not on kube, tokio or an HTTP server.

pub mod chain;
mod error;
pub mod evaluate;
pub mod files;
pub mod images;
pub mod input;
pub mod krm;
pub mod kustomize;
pub mod materialize;
pub mod oci;
pub mod render;
pub mod report;

pub use chain::Settings;
pub use error::{Error, Result};
pub use evaluate::{Evaluated, FileResult, ObjectMeta, ObjectResult};
pub use report::{Finding, Level, Status};
