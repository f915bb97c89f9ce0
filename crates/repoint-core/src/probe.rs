//! The `probe-image` host import's seam: can an image be pulled without
//! credentials? `repoint-probe` answers over the network (the OCI
//! distribution API); [`Offline`] answers `unknown` without touching it.

use crate::ImageRef;

/// What a registry said to an anonymous manifest request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeAnswer {
    /// Served without credentials.
    Anonymous,
    /// Credentials required.
    NeedsAuth,
    /// No such repository or tag.
    NotFound,
    /// No answer (offline, network error, timeout, server error).
    Unknown,
}

/// Answers probes. Implementations cache and bound their own work.
pub trait Prober: Send + Sync {
    /// Probe one image.
    fn probe(&self, image: &ImageRef) -> ProbeAnswer;
}

/// Answers `unknown` without touching the network.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offline;

impl Prober for Offline {
    fn probe(&self, _image: &ImageRef) -> ProbeAnswer {
        ProbeAnswer::Unknown
    }
}
