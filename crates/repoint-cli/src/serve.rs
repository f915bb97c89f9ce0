//! `repoint serve`: the admission webhook. The server listens at once
//! (`/healthz` answers) and turns ready (`/readyz`) when every policy is
//! compiled and configured; SIGTERM or Ctrl-C stops it gracefully.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use repoint_config::Config;
use repoint_runtime::chain::Chain;
use repoint_webhook::serve::{ServeOptions, TlsFiles};
use repoint_webhook::{Options, PolicySet, Webhook};

use crate::args::ServeArgs;
use repoint_core::webhook;
use repoint_pipeline::chain;

/// Built-in policies that ask for pull Secrets. An admission response can
/// only change the object, so without a reconciler nothing makes them: say
/// so at startup (each response that adds one says it too).
fn warn_unmade_pull_secrets(config: &Config) {
    let asking: Vec<&str> = config
        .file
        .policies
        .iter()
        .filter(|p| {
            matches!(
                p.module.as_str(),
                "builtin:pull-secrets" | "builtin:private-proxy"
            )
        })
        .map(|p| p.name.as_str())
        .collect();
    if !asking.is_empty() {
        tracing::warn!(
            "policies {} add image pull secrets at admission, but no reconciler runs to create those Secrets (add a `reconcile:` section and run with --reconcile, or run `repoint controller`); each response that adds one carries a warning",
            asking.join(", ")
        );
    }
}

pub fn run(args: &ServeArgs) -> Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let reconcile = match args.reconcile {
        true => Some(crate::controller::spec(&config)?),
        false => None,
    };
    let tls = TlsFiles {
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
        client_ca: args.client_ca.clone(),
    };
    // Bad certificate files fail now, not at the first connection.
    repoint_webhook::serve::tls_config(&tls).context("TLS")?;
    let reconciled = reconcile.as_ref().map(|spec| repoint_webhook::Reconciled {
        secret_name: spec.secret_name.clone(),
        excluded_namespaces: spec.exclude_namespaces.clone(),
    });
    if reconciled.is_none() {
        warn_unmade_pull_secrets(&config);
    }
    let exclude = config.webhook_excluded_namespaces(&args.own_namespace);
    let timeout = config.webhook_timeout();
    let settings = args.eval.options.settings();
    let workers = settings.jobs() * 2;
    let webhook = Webhook::new(Options {
        exclude_namespaces: exclude,
        timeout,
        workers,
        // Waiting for a worker may use a quarter of the deadline; past
        // that, answering by the failure policy beats queueing.
        queue_wait: timeout / 4,
        body_budget: args.body_budget.unwrap_or(webhook::DEFAULT_BODY_BUDGET),
        body_timeout: args.body_timeout.unwrap_or(webhook::DEFAULT_BODY_TIMEOUT),
        reconciled,
        ..Options::default()
    });
    let options = ServeOptions {
        addr: args.addr,
        tls,
        metrics_addr: args.metrics_addr,
        reload_interval: args.reload_interval,
        drain: Duration::from_secs(10),
        max_connections: args
            .max_connections
            .unwrap_or(webhook::DEFAULT_MAX_CONNECTIONS),
        header_timeout: args
            .header_timeout
            .unwrap_or(webhook::DEFAULT_HEADER_TIMEOUT),
    };
    let threads = settings.jobs();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        // Evaluations run on the webhook's own threads; the blocking pool
        // only serves startup and certificate reloads.
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    tokio.block_on(async move {
        // One signal stops both the server and the reconciler.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            stop_signal().await;
            let _ = stop.send(true);
        });
        let when_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let server = tokio::spawn(repoint_webhook::serve::serve(
            webhook.clone(),
            options,
            when_stopped(),
        ));
        if let Some(spec) = reconcile {
            let connection = args.connection.clone();
            let stopping = when_stopped();
            // The webhook keeps answering whatever becomes of the
            // reconciler: admission matters more.
            tokio::spawn(async move {
                if let Err(e) = crate::controller::reconcile(spec, &connection, stopping).await {
                    tracing::error!("reconciler: {e:#}");
                }
            });
        }
        let installing = webhook.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let chain = chain::build_with(&config, &settings, true, |runtime| {
                runtime.on_slow_evaluation(repoint_webhook::pool::demote_current_thread)
            })?;
            let sets = policy_sets(&config, &chain)?;
            installing.install(sets);
            tracing::info!("every policy is compiled and configured: ready");
            Ok(())
        })
        .await
        .map_err(|e| anyhow!("loading policies: {e}"))??;
        server.await.map_err(|e| anyhow!("server task: {e}"))??;
        Ok(ExitCode::SUCCESS)
    })
}

/// The chain's policies grouped into the config's sets, in set order.
fn policy_sets(config: &Config, chain: &Chain) -> Result<Vec<PolicySet>> {
    config
        .webhook_sets()
        .into_iter()
        .map(|(name, policies, failure_policy)| {
            // The config's checks make sure every set names known policies.
            let chain = chain
                .subset(&policies)
                .ok_or_else(|| anyhow!("webhook set {name} names a policy the chain lacks"))?;
            Ok(PolicySet {
                name,
                chain,
                failure_policy,
            })
        })
        .collect()
}

/// Resolves on SIGTERM (what Kubernetes sends) or Ctrl-C.
pub(crate) async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("stop signal received");
}
