//! `repoint controller` (and `repoint serve --reconcile`): keep the
//! config's `reconcile:` pull Secret in place, with repoint-kube's
//! reconciler, until SIGTERM or Ctrl-C.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use repoint_config::{Config, MissingCredentials};
use repoint_kube::reconcile::{DEFAULT_EXCLUDED, Source, Spec};

use crate::args::{ConnectionArgs, ControllerArgs};
use repoint_pipeline::materialize::{self, PullSecretSource};

pub fn run(args: &ControllerArgs) -> Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let spec = spec(&config)?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    tokio.block_on(reconcile(
        spec,
        &args.connection,
        crate::serve::stop_signal(),
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Connect, and reconcile until `shutdown`.
pub async fn reconcile(
    spec: Spec,
    connection: &ConnectionArgs,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let client = repoint_kube::connect(&connection.target()).await?;
    repoint_kube::reconcile::run(client, spec, shutdown).await?;
    Ok(())
}

/// What the config's `reconcile:` section asks for, its contents read
/// now unless they come from a Secret in the cluster (followed live).
pub fn spec(config: &Config) -> Result<Spec> {
    let entry = config.file.reconcile.as_ref().ok_or_else(|| {
        anyhow!(
            "{}: no `reconcile:` section (it names the pull Secret to keep in place)",
            config.name()
        )
    })?;
    let registries: Vec<String> = entry
        .registries
        .iter()
        .map(|r| repoint_credentials::registry_key(r))
        .collect();
    let (source, registries) = match &config.file.secret_from {
        Some(from) => match (&from.file, &from.namespace, &from.name) {
            (Some(file), _, _) => (
                Source::Fixed(materialize::secret_from_file(config, file)?),
                registries,
            ),
            (None, Some(namespace), Some(name)) => (
                Source::Secret {
                    namespace: namespace.clone(),
                    name: name.clone(),
                },
                registries,
            ),
            _ => bail!("secretFrom: give `file`, or `namespace` and `name`"),
        },
        None => {
            let sources = config.credential_sources()?;
            let mut wanted = registries;
            if wanted.is_empty() {
                for (registry, _) in &sources {
                    if !wanted.contains(registry) {
                        wanted.push(registry.clone());
                    }
                }
            }
            let mut warnings = Vec::new();
            let contents = materialize::pull_secret_contents(
                config,
                &PullSecretSource::Credentials(sources),
                "(each namespace)",
                &entry.secret_name,
                &wanted,
                &mut warnings,
            )?;
            for w in warnings {
                tracing::warn!("{w}");
            }
            let contents = contents.ok_or_else(|| {
                anyhow!("reconcile: no credentials could be found for any registry")
            })?;
            // Checked against `credentials` just now.
            (Source::Fixed(contents), Vec::new())
        }
    };
    Ok(Spec {
        secret_name: entry.secret_name.clone(),
        source,
        registries,
        registries_required: config.file.missing_credentials == MissingCredentials::Error,
        namespace_selector: entry.namespace_selector.clone(),
        exclude_namespaces: entry
            .exclude_namespaces
            .clone()
            .unwrap_or_else(|| DEFAULT_EXCLUDED.map(String::from).to_vec()),
        service_accounts: entry.accounts(),
        resync: entry.resync.unwrap_or(Duration::from_secs(600)),
        retry: Duration::from_secs(10),
    })
}
