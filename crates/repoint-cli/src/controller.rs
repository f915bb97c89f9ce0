//! `repoint controller` (and `repoint serve --reconcile`): keep the
//! config's `reconcile:` pull Secret in place, with repoint-kube's
//! reconciler, until SIGTERM or Ctrl-C.

use std::future::Future;
use std::process::ExitCode;

use anyhow::{Context, Result};
use repoint_config::Config;
use repoint_kube::reconcile::Spec;

use crate::args::{ConnectionArgs, ControllerArgs};

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

/// What the config's `reconcile:` section asks for
/// (`repoint_cluster::reconcile_spec`); its warnings go to the log.
pub fn spec(config: &Config) -> Result<Spec> {
    let (spec, warnings) = repoint_cluster::reconcile_spec(config)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(spec)
}
