//! The state a policy's store holds, and what the host offers a policy.
//!
//! A policy gets WASI with nothing in it: no preopened directories, no
//! environment, no arguments, no sockets (the WASI context denies every
//! address and name lookup), a clock stuck at zero and deterministic
//! "randomness". Its stderr goes to a small in-memory buffer, so a panic
//! message can be reported. Beyond that it has only the contract's `log`
//! and `probe-image`.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView,
    WasiView,
};

use crate::bindings::repoint::policy::{host, types};
use crate::probe::{ProbeAnswer, Prober};

/// How much of a policy's stderr is kept (for panic messages).
const STDERR_CAPACITY: usize = 4096;

/// The error a store returns when a policy asks for more memory than its
/// cap; recognized after the call to name the failure.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded")]
pub struct MemoryLimitExceeded {
    /// The cap in bytes.
    pub limit: usize,
}

/// Caps linear memory and table growth. Failing the growth with an error
/// (rather than returning `false`) stops the policy at once with a named
/// cause, instead of letting it see an allocation failure and abort.
pub struct Limiter {
    memory: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            return Err(MemoryLimitExceeded { limit: self.memory }.into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// A clock that always reads zero: policies get no time source.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Everything one policy evaluation's store holds.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory cap.
    pub limiter: Limiter,
    /// Name of the policy (as configured), for log lines.
    pub policy: Arc<str>,
    /// Answers `probe-image`.
    pub prober: Arc<dyn Prober>,
    /// The policy's stderr.
    pub stderr: MemoryOutputPipe,
    /// Time spent waiting on registry probes since the deadline last
    /// looked: it does not count against the policy's deadline.
    pub probe_wait: Duration,
    /// Epoch ticks of the timeout still to come once the evaluation has
    /// turned slow (see `Runtime::on_slow_evaluation`).
    pub ticks_after_slow: u64,
    /// Whether this evaluation has turned slow.
    pub slow: bool,
    /// Log lines are dropped: the chain's convergence pass runs policies
    /// again on their own output, and what they logged was said once.
    pub quiet: bool,
    /// The evaluation called the host (`log`, `probe-image`), so its answer
    /// may depend on more than what it was shown.
    pub called_host: bool,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl HostState {
    /// A fresh, empty sandbox for `policy`.
    pub fn new(policy: Arc<str>, memory: usize, prober: Arc<dyn Prober>) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(Deterministic::new(vec![7, 1, 3, 5]))
            .insecure_random(Deterministic::new(vec![2, 4, 6, 8]))
            .insecure_random_seed(0)
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter { memory },
            policy,
            prober,
            stderr,
            probe_wait: Duration::ZERO,
            ticks_after_slow: 0,
            slow: false,
            quiet: false,
            called_host: false,
        }
    }

    /// What the policy wrote to stderr, as text.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_string()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: host::LogLevel, message: String) {
        self.called_host = true;
        if self.quiet {
            return;
        }
        let policy = &*self.policy;
        match level {
            host::LogLevel::Trace => tracing::trace!(policy, "{message}"),
            host::LogLevel::Debug => tracing::debug!(policy, "{message}"),
            host::LogLevel::Info => tracing::info!(policy, "{message}"),
            host::LogLevel::Warn => tracing::warn!(policy, "{message}"),
            host::LogLevel::Error => tracing::error!(policy, "{message}"),
        }
    }

    fn probe_image(&mut self, image: types::ImageRef) -> host::ProbeResult {
        self.called_host = true;
        let image = repoint_core::ImageRef {
            registry: image.registry,
            repository: image.repository,
            tag: image.tag,
            digest: image.digest,
        };
        let started = std::time::Instant::now();
        let answer = self.prober.probe(&image);
        self.probe_wait += started.elapsed();
        match answer {
            ProbeAnswer::Anonymous => host::ProbeResult::Anonymous,
            ProbeAnswer::NeedsAuth => host::ProbeResult::NeedsAuth,
            ProbeAnswer::NotFound => host::ProbeResult::NotFound,
            ProbeAnswer::Unknown => host::ProbeResult::Unknown,
        }
    }
}
