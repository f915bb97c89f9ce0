//! The chain a config describes: every policy loaded, configured with its
//! settings and checked, in order, on one runtime.

use std::sync::Arc;
use std::time::Duration;

use repoint_config::Config;
use repoint_registry::RegistryProber;
use repoint_runtime::chain::Chain;
use repoint_runtime::probe::{Offline, Prober};
use repoint_runtime::{FailureKind, PolicySource, Runtime, RuntimeError, RuntimeOptions};

use crate::Result;

/// How policies run: what every evaluating command lets its user choose,
/// files or cluster. Unset values come from the config, then from the
/// defaults in `repoint_core::evaluation`.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Do not use the on-disk cache of compiled policies.
    pub no_cache: bool,
    /// Documents evaluated at once (`None`: one per core).
    pub jobs: Option<usize>,
    /// Deadline per policy evaluation, over the config's `limits.timeout`.
    pub timeout: Option<Duration>,
    /// Memory cap per evaluation, over the config's `limits.memory`.
    pub memory: Option<usize>,
    /// Every registry probe answers `unknown` (as the config's `offline`).
    pub offline: bool,
}

impl Settings {
    /// Threads to use: `jobs`, or one per core; at least one.
    pub fn jobs(&self) -> usize {
        self.jobs
            .unwrap_or_else(repoint_core::parallel::cores)
            .max(1)
    }

    /// The runtime options these settings and `config` ask for.
    pub fn runtime_options(&self, config: &Config) -> RuntimeOptions {
        RuntimeOptions {
            timeout: self.timeout.unwrap_or_else(|| config.timeout()),
            memory: self.memory.unwrap_or_else(|| config.memory()),
            cache_dir: if self.no_cache {
                None
            } else {
                repoint_runtime::default_cache_dir()
            },
            concurrency: repoint_core::evaluation::instance_slots(self.jobs()),
            max_module_bytes: config.module_size(),
        }
    }
}

/// Load every policy of the config and check its settings. A
/// `long_running` process (the webhook) keeps probe answers for the
/// config's `probe.cacheTtl` rather than for its whole life.
pub fn build(config: &Config, settings: &Settings, long_running: bool) -> Result<Chain> {
    build_with(config, settings, long_running, |_| {})
}

/// [`build`], with `prepare` run on the runtime before any policy is
/// loaded (the server installs its slow-evaluation hook there).
pub fn build_with(
    config: &Config,
    settings: &Settings,
    long_running: bool,
    prepare: impl FnOnce(&mut Runtime),
) -> Result<Chain> {
    let prober: Arc<dyn Prober> = if settings.offline || config.file.offline {
        Arc::new(Offline)
    } else {
        Arc::new(RegistryProber::new(
            &config.registry_settings(),
            config.probe_settings(long_running),
        )?)
    };
    let mut runtime = Runtime::new(settings.runtime_options(config), prober)?;
    prepare(&mut runtime);
    load(
        config,
        &Arc::new(runtime),
        settings.offline || config.file.offline,
    )
}

/// Load and configure the config's policies, in order, on `runtime`;
/// errors point at the config's line. `oci://` modules are pulled (from
/// the cache only when `offline`).
pub fn load(config: &Config, runtime: &Arc<Runtime>, offline: bool) -> Result<Chain> {
    let mut policies = Vec::new();
    for (i, entry) in config.file.policies.iter().enumerate() {
        let source = PolicySource::parse(&entry.module, &config.base_dir);
        let invalid = |message: String| {
            config.invalid(
                &format!("/policies/{i}/module"),
                &format!("policies[{i}].module"),
                message,
            )
        };
        let loaded = crate::oci::load(
            runtime,
            config,
            &entry.name,
            &source,
            &config.verify_keys(i),
            offline,
        )
        .map_err(|e| match e {
            crate::oci::LoadError::Pull { reference, why } => {
                invalid(format!("policy {}: {reference}: {why}", entry.name))
            }
            crate::oci::LoadError::Load(e) => invalid(e.to_string()),
        })?
        .loaded;
        // Settings came from YAML, so they are JSON values already: the
        // encoding cannot fail.
        let settings = entry.settings.to_string();
        let configured = runtime
            .configure(&entry.name, Arc::new(loaded), &settings)
            .map_err(|e| {
                let message = match e {
                    // The policy's own words, as it returned them.
                    RuntimeError::Configure {
                        failure: FailureKind::Error(words),
                        ..
                    } => format!("policy {} rejected its settings: {words}", entry.name),
                    RuntimeError::Configure { failure, .. } => {
                        format!("policy {} rejected its settings: {failure}", entry.name)
                    }
                    other => other.to_string(),
                };
                config.invalid(
                    &format!("/policies/{i}/settings"),
                    &format!("policies[{i}].settings"),
                    message,
                )
            })?;
        policies.push(configured);
    }
    Ok(runtime.chain(policies, config.file.image_fields.clone())?)
}
