//! Serving the webhook: TLS 1.2/1.3 (rustls), optional client
//! certificates, the certificate and key reloaded when their files change,
//! a plain-HTTP metrics port, and a graceful stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::Webhook;

/// Where the serving certificate, its key and the client CA are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// Require client certificates signed by this CA (PEM).
    pub client_ca: Option<PathBuf>,
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    pub tls: TlsFiles,
    /// Plain-HTTP `/metrics`.
    pub metrics_addr: Option<SocketAddr>,
    /// How often the certificate files are checked for changes.
    pub reload_interval: Duration,
    /// How long in-flight requests may finish after the stop signal.
    pub drain: Duration,
}

/// Build the rustls config from the files (TLS 1.2 and 1.3 only).
pub fn tls_config(files: &TlsFiles) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("{}: {e}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", files.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: {e}", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in
                CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?
            {
                roots
                    .add(cert.map_err(|e| format!("{}: {e}", ca.display()))?)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{} and {}: {e}", files.cert.display(), files.key.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn modified(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    let time = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut out = vec![time(&files.cert), time(&files.key)];
    if let Some(ca) = &files.client_ca {
        out.push(time(ca));
    }
    out
}

/// Serve until `shutdown` resolves, then stop accepting, let requests in
/// flight finish (up to `drain`) and return.
pub async fn serve(
    webhook: Arc<Webhook>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let config = Arc::new(RwLock::new(Arc::new(tls_config(&options.tls)?)));
    let listener = TcpListener::bind(options.addr)
        .await
        .map_err(|e| format!("listening on {}: {e}", options.addr))?;
    tracing::info!(addr = %options.addr, "serving admission reviews over TLS");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    // Reload the certificate when its files change; keep the old one if the
    // new files do not make a valid config (mid-rotation, say).
    {
        let (config, files, mut stop) = (config.clone(), options.tls.clone(), stop_rx.clone());
        let interval = options.reload_interval;
        tokio::spawn(async move {
            let mut seen = modified(&files);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.changed() => return,
                }
                let now = modified(&files);
                if now == seen {
                    continue;
                }
                match tls_config(&files) {
                    Ok(new) => {
                        if let Ok(mut c) = config.write() {
                            *c = Arc::new(new);
                        }
                        seen = now;
                        tracing::info!("reloaded the serving certificate");
                    }
                    Err(e) => {
                        tracing::warn!("certificate files changed but cannot be used yet: {e}")
                    }
                }
            }
        });
    }

    if let Some(addr) = options.metrics_addr {
        let metrics = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("listening on {addr}: {e}"))?;
        let router = webhook.metrics_router();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _ = axum::serve(metrics, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
        });
        tracing::info!(%addr, "serving /metrics over plain HTTP");
    }

    let router = webhook.router();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = stop_rx.clone();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(
            config
                .read()
                .map(|c| c.clone())
                .map_err(|e| e.to_string())?,
        );
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    tracing::info!("stopping: no new connections; letting requests in flight finish");
    drop(listener);
    if tokio::time::timeout(options.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {:?}; stopping anyway",
            options.drain
        );
    }
    Ok(())
}
