//! Connecting as kubectl does: a kubeconfig (`--kubeconfig`, else
//! `KUBECONFIG`, else `~/.kube/config`) and its current or a named
//! `--context`; in a pod without one, the in-cluster service account.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::KubeError;

/// Which cluster to talk to.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// A kubeconfig file; `None` looks where kubectl looks.
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig; `None` uses its current context.
    pub context: Option<String>,
}

/// A client for `target`.
pub async fn connect(target: &Target) -> Result<Client, KubeError> {
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..KubeConfigOptions::default()
    };
    let loading =
        |e: &dyn std::fmt::Display| KubeError::Connect(format!("loading the kubeconfig: {e}"));
    let config = match &target.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                KubeError::Connect(format!("reading kubeconfig {}: {e}", path.display()))
            })?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| loading(&e))?
        }
        None if target.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| loading(&e))?,
        None => Config::infer().await.map_err(|e| loading(&e))?,
    };
    Client::try_from(config).map_err(|e| KubeError::Connect(e.to_string()))
}
