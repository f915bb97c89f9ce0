//! repoint's wasmtime host.
//!
//! A policy is a WebAssembly component implementing the `policy` world of
//! `wit/`. This crate
//! - loads policies from `.wasm` files or from the built-ins compiled from
//!   `policies/` and embedded at build time (`builtin:NAME`);
//! - compiles each component once, with wasmtime's on-disk cache (keyed by
//!   content hash, engine version and configuration) unless disabled, and
//!   keeps an `InstancePre` so each evaluation only instantiates;
//! - runs every evaluation in a fresh instance with an empty WASI sandbox,
//!   a deadline (epoch interruption) and a memory cap, and turns loops,
//!   memory exhaustion, panics and invalid answers into named errors for
//!   that object alone ([`PolicyFailure`]);
//! - runs policy chains over objects ([`chain`]), each policy seeing the
//!   previous one's output, and checks that the chain converges.
//!
//! - pre-initializes each configured policy ([`preinit`]), so that an
//!   evaluation's fresh instance starts in the configured state;
//! - shows a selective policy (one exporting `reads`) only the parts of a
//!   resource it reads, and reuses its answer for a resource whose shown
//!   parts repeat ([`answers`]).
//!
//! Depends on repoint-core (objects, sites, actions, the evaluation
//! defaults), wasmtime with WASI and wasmtime's pre-initializer (wizer),
//! sha2 and tempfile for the pre-initialized components' cache; the WIT
//! parser it uses is the bindings macro's, at build time only.

mod bindings {
    #![allow(
        missing_docs,
        unsafe_code,
        unused_qualifications,
        missing_debug_implementations
    )]
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "policy",
    });
}

/// The policies built from `policies/` (and `tests/policies/`) at build time.
pub mod builtins {
    include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

    /// The component bytes of a built-in policy.
    pub fn get(name: &str) -> Option<&'static [u8]> {
        BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
    }

    /// Names of the built-ins.
    pub fn names() -> Vec<&'static str> {
        BUILTINS.iter().map(|(n, _)| *n).collect()
    }

    /// Path of a test policy's component (for tests).
    pub fn test_policy(name: &str) -> Option<&'static str> {
        TEST_POLICIES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
    }
}

mod answers;
pub mod chain;
mod convert;
mod host;
pub mod preinit;
pub mod schema;
/// The probe seam, defined in `repoint-core` so network probers need no
/// runtime.
pub use repoint_core::probe;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use bindings::repoint::policy::types::ResourceParts;
use bindings::{Policy as PolicyBindings, PolicyPre};
use host::HostState;
pub use host::MemoryLimitExceeded;
use probe::Prober;

/// The contract version this host speaks.
pub const CONTRACT: &str = "repoint:policy@0.1.0";

/// How often the deadline clock ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Bytes of each linear memory and table a pooling slot keeps resident
/// between instantiations (a Rust policy touches about 1 MiB: its stack and
/// a small heap).
const KEEP_RESIDENT: usize = 2 << 20;
/// How many of a chain's policies keep their instance for the object's
/// convergence pass; later ones (rare: chains are short) are instantiated
/// afresh for it.
const REUSED_PER_OBJECT: usize = 8;
/// Epoch ticks after which an evaluation counts as slow (50 ms; a policy
/// normally answers in well under a millisecond).
const SLOW_TICKS: u64 = 5;

/// Errors of loading and configuring policies.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine could not be set up.
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    /// A policy file could not be read.
    // The reason is in the message and not a `source`, so that printing
    // the error with its chain (`{:#}`) does not say it twice.
    #[error("cannot read policy {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (too large, not a regular file, or the read's error).
        reason: repoint_core::bounded::ReadError,
    },
    /// No built-in policy has this name.
    #[error("no built-in policy {name:?} (built-ins: {known})")]
    UnknownBuiltin {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
    /// The bytes are not a component implementing the contract.
    #[error("{source_name} is not a repoint policy component ({CONTRACT}): {message}")]
    Invalid {
        /// Where the policy came from.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// The policy rejected its settings, or failed while checking them.
    #[error("policy {policy}: {failure}")]
    Configure {
        /// The policy's configured name.
        policy: String,
        /// Why.
        failure: FailureKind,
    },
    /// A chain was asked to hold a policy configured on another runtime,
    /// whose compiled code belongs to another engine.
    #[error("policy {policy} was configured on another runtime than its chain's")]
    ForeignPolicy {
        /// The policy's configured name.
        policy: String,
    },
}

/// Where a policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// `builtin:NAME`
    Builtin(String),
    /// A `.wasm` component file.
    File(PathBuf),
    /// `oci://REGISTRY/REPOSITORY:TAG` or `@sha256:DIGEST`: a component
    /// in a registry, which the caller pulls and hands to
    /// [`Runtime::load_bytes`] (the runtime has no network).
    Oci(String),
}

impl PolicySource {
    /// Parse `builtin:NAME`, `oci://...` or a path (relative paths are
    /// taken relative to `base`, the directory of the config file).
    pub fn parse(s: &str, base: &Path) -> Self {
        if s.starts_with("oci://") {
            return Self::Oci(s.to_string());
        }
        match s.strip_prefix("builtin:") {
            Some(name) => Self::Builtin(name.to_string()),
            None => Self::File(base.join(s)),
        }
    }
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Builtin(n) => write!(f, "builtin:{n}"),
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Oci(reference) => f.write_str(reference),
        }
    }
}

/// Bounds and knobs of a runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Deadline of one evaluation.
    pub timeout: Duration,
    /// Memory cap of one evaluation, in bytes.
    pub memory: usize,
    /// Where compiled code is cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// How many evaluations may run at once (instance slots of the pooling
    /// allocator); an evaluation beyond that fails at once as overloaded.
    pub concurrency: u32,
    /// The largest policy module file read.
    pub max_module_bytes: u64,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            timeout: repoint_core::evaluation::DEFAULT_TIMEOUT,
            memory: repoint_core::evaluation::DEFAULT_MEMORY,
            cache_dir: default_cache_dir(),
            concurrency: default_concurrency(),
            max_module_bytes: repoint_core::evaluation::DEFAULT_MODULE_BYTES,
        }
    }
}

/// Instance slots for one worker per core.
pub fn default_concurrency() -> u32 {
    repoint_core::evaluation::instance_slots(repoint_core::parallel::cores())
}

/// `$XDG_CACHE_HOME/repoint`, or `~/.cache/repoint`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache_dir_in(&base))
}

/// The cache under a cache home (`XDG_CACHE_HOME`): what a deployment
/// that sets the home mounts.
pub fn cache_dir_in(cache_home: &Path) -> PathBuf {
    cache_home.join("repoint")
}

/// What a policy says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Description.
    pub description: String,
    /// Whether it may change objects.
    pub mutating: bool,
    /// Settings JSON Schema, if published.
    pub settings_schema: Option<String>,
}

/// How a policy failed on one object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailureKind {
    /// It ran past its deadline.
    #[error("timed out after {0:?} (deadline exceeded)")]
    Timeout(Duration),
    /// It asked for more memory than its cap.
    #[error("exceeded its memory limit of {} MiB", .0 >> 20)]
    MemoryLimit(usize),
    /// It trapped (a Rust panic is a trap); with what it printed, if anything.
    #[error("trapped: {0}")]
    Trap(String),
    /// It returned an error.
    #[error("returned an error: {0}")]
    Error(String),
    /// It returned something the host cannot carry out.
    #[error("returned an invalid action: {0}")]
    InvalidAction(String),
}

/// A policy's failure on one object, naming the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {policy} {kind}")]
pub struct PolicyFailure {
    /// The policy's configured name.
    pub policy: String,
    /// What went wrong.
    pub kind: FailureKind,
}

/// Increments the engine's epoch until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The engine, the linker with the host's imports, and the deadline clock.
pub struct Runtime {
    /// Unique in the process: the policies configured here carry it.
    id: u64,
    engine: Engine,
    linker: Linker<HostState>,
    options: RuntimeOptions,
    prober: Arc<dyn Prober>,
    /// Called on the evaluating thread when an evaluation turns slow.
    on_slow: Option<fn()>,
    _ticker: Ticker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A compiled policy, ready to instantiate.
#[derive(Clone)]
pub struct LoadedPolicy {
    pre: PolicyPre<HostState>,
    /// The component as loaded, which configuring pre-initializes.
    bytes: Arc<[u8]>,
    /// Where it came from.
    pub source: PolicySource,
    /// What it says about itself.
    pub info: PolicyInfo,
    /// The contract package the component imports (e.g. `repoint:policy@0.1.0`).
    pub contract: String,
    /// Whether it exports `reads` (the `selective-policy` world).
    selective: bool,
}

impl LoadedPolicy {
    /// The contract world the component implements: `selective-policy`
    /// when it says which parts of a resource it reads, else `policy`.
    pub fn world(&self) -> &'static str {
        if self.selective {
            "selective-policy"
        } else {
            "policy"
        }
    }
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("source", &self.source)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// A configured instance of a policy, in its own store, kept while one
/// object is evaluated (never across objects).
pub(crate) struct PolicyInstance {
    store: Store<HostState>,
    bindings: PolicyBindings,
    /// Whether it has evaluated a resource already (the convergence pass
    /// evaluates in the first pass's instance).
    used: bool,
}

/// A loaded policy with its validated settings, under its configured name.
/// Made only by [`Runtime::configure`], and good only in a chain of that
/// runtime ([`Runtime::chain`] checks).
#[derive(Clone)]
pub struct ConfiguredPolicy {
    /// Name from the config (unique in a chain; used in reports).
    pub name: Arc<str>,
    /// The compiled policy.
    pub loaded: Arc<LoadedPolicy>,
    /// Settings as JSON.
    pub settings_json: Arc<str>,
    /// The component with these settings already configured (see
    /// [`preinit`]); `None` where it could not be pre-initialized, and
    /// each evaluation configures a fresh instance.
    configured: Option<PolicyPre<HostState>>,
    /// The parts of a resource it reads (its `reads` export, asked once
    /// configured); `None` for a policy without one, which reads them all.
    reads: Option<ResourceParts>,
    /// Its answers so far, when they can be reused: it says what it reads,
    /// and that leaves out the object's metadata (which names it).
    answers: Option<Arc<answers::Answers>>,
    /// The runtime that configured it.
    runtime: u64,
}

impl ConfiguredPolicy {
    /// The names of the resource parts the policy reads beyond those every
    /// policy is given (WIT `resource-parts`); `None` when it does not say
    /// (no `reads` export), so it is shown everything.
    pub fn reads(&self) -> Option<Vec<&'static str>> {
        let parts = self.reads?;
        Some(
            PART_NAMES
                .iter()
                .filter(|(part, _)| parts.contains(*part))
                .map(|(_, name)| *name)
                .collect(),
        )
    }

    /// How many of its evaluations were answered with an answer it had
    /// already given to a resource whose shown parts were the same.
    pub fn reused_answers(&self) -> u64 {
        self.answers.as_ref().map_or(0, |a| a.reused())
    }
}

/// The WIT names of the resource parts, in the contract's order.
const PART_NAMES: [(ResourceParts, &str); 9] = [
    (ResourceParts::NAMESPACE, "namespace"),
    (ResourceParts::NAME, "name"),
    (ResourceParts::LABELS, "labels"),
    (ResourceParts::ANNOTATIONS, "annotations"),
    (ResourceParts::PULL_SECRETS, "pull-secrets"),
    (ResourceParts::SERVICE_ACCOUNT, "service-account"),
    (ResourceParts::ORIGIN, "origin"),
    (ResourceParts::OBJECT_JSON, "object-json"),
    (ResourceParts::OBJECT_METADATA, "object-metadata"),
];

impl std::fmt::Debug for ConfiguredPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredPolicy")
            .field("name", &self.name)
            .field("loaded", &self.loaded)
            .field("settings_json", &self.settings_json)
            .field("preinitialized", &self.configured.is_some())
            .field("reads", &self.reads())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Set up an engine with epoch interruption and the host's imports.
    pub fn new(options: RuntimeOptions, prober: Arc<dyn Prober>) -> Result<Self, RuntimeError> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        // Instances come from pre-allocated slots that are reset and reused,
        // instead of a fresh mmap/munmap of linear memory per evaluation.
        // A Rust component has a handful of core instances and two memories.
        // An evaluation keeps up to REUSED_PER_OBJECT instances alive (one
        // per policy of its chain, for the convergence pass).
        let slots = options.concurrency.max(1) * REUSED_PER_OBJECT as u32;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            .total_core_instances(slots * 8)
            .total_memories(slots * 4)
            .total_tables(slots * 8)
            .total_stacks(slots)
            .max_memory_size(options.memory)
            // Reset a used slot by rewriting only the pages it dirtied
            // (found with Linux's PAGEMAP_SCAN) and keep them resident,
            // instead of madvise: no page faults on the next instantiation
            // and no TLB shootdowns across the server's threads.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = &options.cache_dir {
            match cache(dir) {
                Ok(cache) => {
                    config.cache(Some(cache));
                }
                // A cache is an optimization: run without it rather than fail.
                Err(e) => tracing::warn!("compiled-code cache disabled: {e}"),
            }
        }
        let engine = Engine::new(&config).map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        PolicyBindings::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.weak();
        let ticker_stop = stop.clone();
        std::thread::Builder::new()
            .name("repoint-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticker_engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| RuntimeError::Engine(format!("cannot start the deadline clock: {e}")))?;
        static RUNTIMES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(Self {
            id: RUNTIMES.fetch_add(1, Ordering::Relaxed),
            engine,
            linker,
            options,
            prober,
            on_slow: None,
            _ticker: Ticker { stop },
        })
    }

    /// Call `hook` on the evaluating thread when an evaluation has run for
    /// 50 ms of its own time (probe waits excluded), which a well-behaved
    /// policy never does. The server uses it to lower that thread's
    /// priority, so a looping policy yields the cores to the requests
    /// that are not stuck while it runs to its timeout.
    pub fn on_slow_evaluation(&mut self, hook: fn()) {
        self.on_slow = Some(hook);
    }

    /// The options in force.
    pub fn options(&self) -> &RuntimeOptions {
        &self.options
    }

    /// The names `loaded` imports and exports (interfaces and functions),
    /// as a Wasm OCI artifact's config lists them.
    pub fn interfaces(&self, loaded: &LoadedPolicy) -> (Vec<String>, Vec<String>) {
        let component = loaded.pre.instance_pre().component().component_type();
        let names = |items: &mut dyn Iterator<Item = &str>| items.map(str::to_string).collect();
        (
            names(&mut component.imports(&self.engine).map(|(name, _)| name)),
            names(&mut component.exports(&self.engine).map(|(name, _)| name)),
        )
    }

    /// A chain of `policies`, each configured on this runtime (see
    /// [`Runtime::configure`]), in evaluation order, that sees the custom
    /// resources of `image_fields`. The chain holds the runtime: it
    /// evaluates on it and on no other.
    pub fn chain(
        self: &Arc<Self>,
        policies: Vec<ConfiguredPolicy>,
        image_fields: Vec<repoint_core::sites::ImageFields>,
    ) -> Result<chain::Chain, RuntimeError> {
        if let Some(foreign) = policies.iter().find(|p| p.runtime != self.id) {
            return Err(RuntimeError::ForeignPolicy {
                policy: foreign.name.to_string(),
            });
        }
        Ok(chain::Chain::new(self.clone(), policies, image_fields))
    }

    /// Load and compile a policy, and ask for its info.
    pub fn load(&self, source: &PolicySource) -> Result<LoadedPolicy, RuntimeError> {
        let bytes: std::borrow::Cow<'static, [u8]> = match source {
            PolicySource::Builtin(name) => {
                builtins::get(name)
                    .map(Into::into)
                    .ok_or_else(|| RuntimeError::UnknownBuiltin {
                        name: name.clone(),
                        known: builtins::names().join(", "),
                    })?
            }
            PolicySource::File(path) => {
                repoint_core::bounded::read_regular_file(path, self.options.max_module_bytes)
                    .map(Into::into)
                    .map_err(|reason| RuntimeError::Read {
                        path: path.clone(),
                        reason,
                    })?
            }
            PolicySource::Oci(reference) => {
                return Err(RuntimeError::Invalid {
                    source_name: reference.clone(),
                    message: "an oci:// module is pulled first (repoint_pipeline::oci) and loaded with load_bytes".into(),
                });
            }
        };
        self.load_bytes(source.clone(), &bytes)
    }

    /// Load a policy from component bytes.
    pub fn load_bytes(
        &self,
        source: PolicySource,
        bytes: &[u8],
    ) -> Result<LoadedPolicy, RuntimeError> {
        let invalid = |message: String| RuntimeError::Invalid {
            source_name: source.to_string(),
            message,
        };
        let component =
            Component::new(&self.engine, bytes).map_err(|e| invalid(format!("{e:#}")))?;
        let contract = contract_version(&component, &self.engine);
        let selective = component
            .component_type()
            .exports(&self.engine)
            .any(|(name, _)| name == "reads");
        if let Some(found) = &contract
            && found != CONTRACT
        {
            return Err(invalid(format!(
                "it was built against {found}, and this host speaks {CONTRACT}"
            )));
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(PolicyPre::new)
            .map_err(|e| invalid(format!("{e:#}")))?;
        let mut store = self.store("(loading)");
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| invalid(format!("{e:#}")))?;
        let info = instance
            .call_info(&mut store)
            .map_err(|e| invalid(format!("info() failed: {e:#}")))?;
        Ok(LoadedPolicy {
            pre,
            bytes: bytes.into(),
            source,
            info: PolicyInfo {
                name: info.name,
                version: info.version,
                description: info.description,
                mutating: info.mutating,
                settings_schema: info.settings_schema,
            },
            contract: contract.unwrap_or_else(|| CONTRACT.to_string()),
            selective,
        })
    }

    /// Give a loaded policy its name and settings, checking the settings
    /// with the policy's own `configure`.
    pub fn configure(
        &self,
        name: &str,
        loaded: Arc<LoadedPolicy>,
        settings_json: &str,
    ) -> Result<ConfiguredPolicy, RuntimeError> {
        let mut policy = ConfiguredPolicy {
            name: name.into(),
            loaded,
            settings_json: settings_json.into(),
            configured: None,
            reads: None,
            answers: None,
            runtime: self.id,
        };
        let mut store = self.store(name);
        let failed = |failure| RuntimeError::Configure {
            policy: name.to_string(),
            failure,
        };
        let (_, instance) = self
            .instantiate_configured(&policy, &mut store)
            .map_err(failed)?;
        policy.reads = self.declared_reads(&instance, &mut store).map_err(failed)?;
        if policy
            .reads
            .is_some_and(|parts| !parts.contains(ResourceParts::OBJECT_METADATA))
        {
            policy.answers = Some(Arc::default());
        }
        policy.configured = self.preinitialize(&policy);
        Ok(policy)
    }

    /// What a configured instance's `reads` export answers; `None` when
    /// it has none (a component of the plain `policy` world).
    fn declared_reads(
        &self,
        instance: &wasmtime::component::Instance,
        store: &mut Store<HostState>,
    ) -> Result<Option<ResourceParts>, FailureKind> {
        if instance
            .get_export_index(&mut *store, None, "reads")
            .is_none()
        {
            return Ok(None);
        }
        let reads = instance
            .get_typed_func::<(), (ResourceParts,)>(&mut *store, "reads")
            .map_err(|e| {
                FailureKind::Error(format!(
                    "its `reads` export is not the contract's `func() -> resource-parts`: {e:#}"
                ))
            })?;
        self.arm_deadline(store);
        let (parts,) = reads
            .call(&mut *store, ())
            .map_err(|e| self.classify(e, store))?;
        Ok(Some(parts))
    }

    /// `policy`'s component with its settings configured, ready to
    /// instantiate; `None` (logged) where that cannot be done.
    fn preinitialize(&self, policy: &ConfiguredPolicy) -> Option<PolicyPre<HostState>> {
        let configured = preinit::configured(
            &self.linker,
            || self.store(&policy.name),
            &policy.loaded.bytes,
            &policy.settings_json,
            self.options.cache_dir.as_deref(),
        )
        .and_then(|component| PolicyPre::new(self.linker.instantiate_pre(&component)?));
        match configured {
            Ok(pre) => Some(pre),
            Err(e) => {
                tracing::debug!(
                    policy = &*policy.name,
                    "not pre-initialized, each evaluation configures a fresh instance: {e:#}"
                );
                None
            }
        }
    }

    /// Start the store's deadline for one call: the whole timeout, with a
    /// stop after the first `SLOW_TICKS` when there is a slow hook.
    fn arm_deadline(&self, store: &mut Store<HostState>) {
        let total = self.epoch_ticks();
        let first = match self.on_slow {
            Some(_) if total > SLOW_TICKS => SLOW_TICKS,
            _ => total,
        };
        let state = store.data_mut();
        state.slow = false;
        state.ticks_after_slow = total - first;
        store.set_epoch_deadline(first + 1);
    }

    /// The timeout in epoch ticks.
    fn epoch_ticks(&self) -> u64 {
        self.options
            .timeout
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis())
            .max(1) as u64
    }

    fn store(&self, policy: &str) -> Store<HostState> {
        let state = HostState::new(policy.into(), self.options.memory, self.prober.clone());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        self.arm_deadline(&mut store);
        let on_slow = self.on_slow;
        store.epoch_deadline_callback(move |mut ctx| {
            let state = ctx.data_mut();
            // Time spent waiting on registry probes (bounded by their own
            // timeout) is the host's, not the policy's: give it back.
            let waited = std::mem::take(&mut state.probe_wait);
            let credit = waited.as_millis().div_ceil(EPOCH_TICK.as_millis()) as u64;
            if credit > 0 {
                return Ok(wasmtime::UpdateDeadline::Continue(credit));
            }
            if !state.slow && state.ticks_after_slow > 0 {
                state.slow = true;
                if let Some(hook) = on_slow {
                    hook();
                }
                return Ok(wasmtime::UpdateDeadline::Continue(state.ticks_after_slow));
            }
            Err(Trap::Interrupt.into())
        });
        store
    }

    /// Instantiate and configure in `store`.
    fn instantiate_configured(
        &self,
        policy: &ConfiguredPolicy,
        store: &mut Store<HostState>,
    ) -> Result<(PolicyBindings, wasmtime::component::Instance), FailureKind> {
        let instance = policy
            .loaded
            .pre
            .instance_pre()
            .instantiate(&mut *store)
            .map_err(|e| self.classify(e, store))?;
        let bindings =
            PolicyBindings::new(&mut *store, &instance).map_err(|e| self.classify(e, store))?;
        match bindings.call_configure(&mut *store, &policy.settings_json) {
            Ok(Ok(())) => Ok((bindings, instance)),
            Ok(Err(message)) => Err(FailureKind::Error(message)),
            Err(e) => Err(self.classify(e, store)),
        }
    }

    /// Evaluate one resource with `policy`'s instance in `slot`, which is
    /// instantiated and configured on first use. A failed call drops the
    /// instance, since a trapped instance cannot be entered again.
    /// `quiet`: the policy's log lines are dropped (the convergence pass).
    pub(crate) fn evaluate(
        &self,
        policy: &ConfiguredPolicy,
        slot: &mut Option<PolicyInstance>,
        resource: &bindings::repoint::policy::types::Resource,
        quiet: bool,
    ) -> Result<Answer, PolicyFailure> {
        let fail = |kind| PolicyFailure {
            policy: policy.name.to_string(),
            kind,
        };
        let mut live = match slot.take() {
            Some(mut live) => {
                // Each call gets the whole timeout.
                self.arm_deadline(&mut live.store);
                live
            }
            None => {
                let mut store = self.store(&policy.name);
                let bindings = match &policy.configured {
                    Some(configured) => configured
                        .instantiate(&mut store)
                        .map_err(|e| self.classify(e, &store)),
                    None => self
                        .instantiate_configured(policy, &mut store)
                        .map(|(bindings, _)| bindings),
                }
                .map_err(fail)?;
                PolicyInstance {
                    store,
                    bindings,
                    used: false,
                }
            }
        };
        let fresh = !std::mem::replace(&mut live.used, true);
        let state = live.store.data_mut();
        state.quiet = quiet;
        state.called_host = false;
        match live.bindings.call_evaluate(&mut live.store, resource) {
            Ok(Ok(actions)) => {
                let called_host = live.store.data().called_host;
                *slot = Some(live);
                Ok(Answer {
                    actions,
                    called_host,
                    fresh,
                })
            }
            Ok(Err(message)) => {
                *slot = Some(live);
                Err(fail(FailureKind::Error(message)))
            }
            Err(e) => Err(fail(self.classify(e, &live.store))),
        }
    }

    /// Name a failed call: deadline, memory cap, or another trap.
    fn classify(&self, e: wasmtime::Error, store: &Store<HostState>) -> FailureKind {
        if let Some(limit) = e.downcast_ref::<MemoryLimitExceeded>() {
            return FailureKind::MemoryLimit(limit.limit);
        }
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return FailureKind::Timeout(self.options.timeout);
        }
        let printed = store.data().stderr_text();
        let trap = e
            .downcast_ref::<Trap>()
            .map_or_else(|| format!("{e:#}"), |t| t.to_string());
        if printed.is_empty() {
            FailureKind::Trap(trap)
        } else {
            FailureKind::Trap(format!("{trap}; it printed: {printed}"))
        }
    }
}

/// What one evaluation returned.
pub(crate) struct Answer {
    /// The policy's actions, unchecked.
    pub(crate) actions: Vec<bindings::repoint::policy::types::Action>,
    /// Whether it called the host (logged or probed) on the way.
    pub(crate) called_host: bool,
    /// Whether it was the instance's first evaluation: the answer a fresh
    /// instance gives, which alone may be reused for another object.
    pub(crate) fresh: bool,
}

fn cache(dir: &Path) -> wasmtime::Result<wasmtime::Cache> {
    let mut config = wasmtime::CacheConfig::new();
    config.with_directory(dir.join("wasmtime"));
    wasmtime::Cache::new(config)
}

/// The `repoint:policy@VERSION` package a component imports or exports, if
/// it names one.
fn contract_version(component: &Component, engine: &Engine) -> Option<String> {
    let ty = component.component_type();
    ty.imports(engine)
        .map(|(name, _)| name)
        .chain(ty.exports(engine).map(|(name, _)| name))
        .find_map(|name| {
            let rest = name.strip_prefix("repoint:policy/")?;
            let version = rest.split_once('@').map(|(_, v)| v)?;
            Some(format!("repoint:policy@{version}"))
        })
}
