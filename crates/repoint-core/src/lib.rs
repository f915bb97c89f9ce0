//! repoint's pure logic, shared by the host and by policies.
//!
//! This crate has no wasmtime, kube or tokio in it and builds for
//! `wasm32-wasip2`, so the guest SDK uses the very same image-reference
//! parser as the host: one implementation of image semantics everywhere.
//!
//! - [`reference`]: parse and normalize image references as container
//!   runtimes do (github.com/distribution/reference).
//! - [`glob`]: Go `path.Match` globs, as `FamiliarMatch` uses.
//! - [`matching`]: registry/path/glob image patterns and label selectors,
//!   as policies' settings write them.
//! - [`mirror`]: registry-mirror rules and the rewrite they describe,
//!   for the policy and for node mirror configuration.
//! - [`sites`]: where images and pull secrets are written in each kind of
//!   object, custom resources included.
//! - [`actions`]: what policies ask for, turned into JSON Patch and
//!   requests for pull Secrets and ServiceAccounts.
//! - [`patch`]: RFC 6902 JSON Patch.
//! - [`document`]: YAML/JSON files parsed with their source positions and
//!   written back with a minimal diff.
//! - [`pointer`]: RFC 6901 JSON Pointers.
//! - [`evaluation`], [`webhook`], [`probe`]: the defaults and settings that
//!   more than one crate reads, in one home.
//!
//! Depends on no other repoint crate: `saphyr-parser` (YAML events),
//! serde and `serde_json`, `base64`, `thiserror`.

pub mod actions;
pub mod bounded;
pub mod document;
pub mod evaluation;
pub mod glob;
pub mod matching;
pub mod mirror;
pub mod parallel;
pub mod patch;
pub mod pointer;
pub mod probe;
pub mod reference;
pub mod resource;
pub mod sites;
pub mod webhook;

pub use document::{DocumentError, Limits, Stream};

/// Label put on every object repoint generates or creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "repoint");
pub use reference::{ImageRef, ReferenceError, RegistryPath};

/// An error and its causes as one line, "what: why: why": for logs and
/// reports that take a string (anyhow's `{:#}` does the same for its own).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_chain_reads_outside_in() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading x.yaml")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("denied"));
        assert_eq!(super::error_chain(&e), "reading x.yaml: denied");
    }
}
