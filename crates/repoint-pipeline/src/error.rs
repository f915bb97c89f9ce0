//! What can go wrong in the pipeline, as one enum: each variant says what
//! was being done and keeps the error underneath as its `source`, so a
//! caller printing the chain (`{:#}` through anyhow) reads
//! "reading x.yaml: Permission denied" and a caller matching on it can.

use std::path::PathBuf;

use repoint_credentials::CredentialError;

/// A pipeline failure that stops the run (per-object problems are
/// findings, not errors).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config is unreadable or invalid (located in the config file).
    #[error(transparent)]
    Config(#[from] repoint_config::ConfigError),
    /// A policy could not be loaded or configured, or the engine set up.
    #[error(transparent)]
    Runtime(#[from] repoint_runtime::RuntimeError),
    /// The registry prober could not be set up (a CA file, say).
    #[error(transparent)]
    Probe(#[from] repoint_registry::SettingsError),
    /// An input document could not be parsed, or an output re-read.
    #[error(transparent)]
    Document(#[from] repoint_core::DocumentError),
    /// A kustomize base could not be built.
    #[error("{}: a kustomize base, which could not be built: {why}", .dir.display())]
    KustomizeBase { dir: PathBuf, why: String },
    /// A path given on the command line does not exist.
    #[error("{}: no such file or directory", .0.display())]
    NoSuchInput(PathBuf),
    /// An input could not be read (or is over its size limit).
    #[error("reading {what}")]
    Read {
        /// The file, or "standard input".
        what: String,
        #[source]
        source: repoint_core::bounded::ReadError,
    },
    /// A directory could not be walked.
    #[error("reading directory {}", dir.display())]
    Walk {
        dir: PathBuf,
        #[source]
        source: ignore::Error,
    },
    /// An input is not UTF-8.
    #[error("{what} is not UTF-8")]
    NotUtf8 {
        /// The file, or "standard input".
        what: String,
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// An output file or directory could not be written.
    #[error("{action} {}", path.display())]
    Write {
        /// "writing", "creating", "resolving".
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A generated object (a pull Secret, a ServiceAccount, an overlay
    /// file) could not be written as YAML that reads back as itself.
    #[error("writing {what}")]
    Emit {
        what: &'static str,
        #[source]
        source: repoint_core::document::EmitError,
    },
    /// A pull Secret could not be made as asked (the message names the
    /// Secret and registries, never a credential).
    #[error("{0}")]
    PullSecret(String),
    /// A configured credential could not be read.
    #[error("credentials for {registry}")]
    Credentials {
        registry: String,
        #[source]
        source: CredentialError,
    },
    /// The Secret `secretFrom.file` names could not be read.
    #[error("secretFrom")]
    SecretFrom(#[source] CredentialError),
    /// An output directory (a kustomize overlay, node configuration)
    /// cannot be written there.
    #[error("{0}")]
    Overlay(String),
    /// A KRM function's input is not a ResourceList it can work on.
    #[error("{0}")]
    ResourceList(String),
    /// The output could not be written (a reader that went away shows as
    /// `BrokenPipe` here).
    #[error("writing the output")]
    Output(#[source] std::io::Error),
    /// `--in-place` could not rewrite the files (it says which, if any,
    /// were written).
    #[error(transparent)]
    Rewrite(#[from] crate::files::RewriteError),
    /// The chain's change could not be applied to a document's value.
    #[error("applying the change to a document")]
    Patch(#[source] repoint_core::patch::PatchError),
}

/// The pipeline's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A failed write of `path`.
    pub(crate) fn write(
        action: &'static str,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> Self {
        Self::Write {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
