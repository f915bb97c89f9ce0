//! Serving the webhook: TLS 1.2/1.3 (rustls), optional client
//! certificates, the certificate and key reloaded when their files change,
//! a plain-HTTP metrics port, and a graceful stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::Webhook;
use crate::labels::Closed;

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
    /// Connections held at once; one more is closed as soon as accepted.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers; also how
    /// long an HTTP/1 connection may sit idle between requests, and the
    /// HTTP/2 keep-alive ping's deadline.
    pub header_timeout: Duration,
}

/// Why the server could not start (or a certificate could not be loaded).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A PEM file could not be read or parsed.
    #[error("{}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{}: no certificate", .0.display())]
    NoCertificate(PathBuf),
    /// The client CA bundle cannot verify clients.
    #[error("{}", path.display())]
    ClientCa {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// rustls refused the certificate and key (a key that does not match).
    #[error("{} and {}", cert.display(), key.display())]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// An address could not be bound.
    #[error("listening on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Build the rustls config from the files (TLS 1.2 and 1.3 only).
pub fn tls_config(files: &TlsFiles) -> Result<ServerConfig, ServeError> {
    let pem = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ServeError::Pem { path, source }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(pem(&files.cert))?
        .collect::<Result<_, _>>()
        .map_err(pem(&files.cert))?;
    if certs.is_empty() {
        return Err(ServeError::NoCertificate(files.cert.clone()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(pem(&files.key))?;
    let tls = |source| ServeError::Tls {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(tls)?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let client_ca =
                |source: Box<dyn std::error::Error + Send + Sync>| ServeError::ClientCa {
                    path: ca.clone(),
                    source,
                };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(pem(ca))? {
                roots
                    .add(cert.map_err(pem(ca))?)
                    .map_err(|e| client_ca(Box::new(e)))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| client_ca(Box::new(e)))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(tls)?;
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
) -> Result<(), ServeError> {
    let config = Arc::new(RwLock::new(Arc::new(tls_config(&options.tls)?)));
    let listener = TcpListener::bind(options.addr)
        .await
        .map_err(|source| ServeError::Listen {
            addr: options.addr,
            source,
        })?;
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
                        tracing::warn!(
                            "certificate files changed but cannot be used yet: {}",
                            repoint_core::error_chain(&e)
                        )
                    }
                }
            }
        });
    }

    if let Some(addr) = options.metrics_addr {
        let metrics = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Listen { addr, source })?;
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
    let connections = Arc::new(tokio::sync::Semaphore::new(
        options
            .max_connections
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let mut accept_errors = AcceptErrors::default();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    accept_errors.succeeded();
                    a
                }
                Err(e) => {
                    // Out of file descriptors (EMFILE) and the like: wait,
                    // longer each time, instead of spinning on the error.
                    let wait = accept_errors.failed(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        _ = stop.changed() => break,
                    }
                }
            },
            _ = stop.changed() => break,
        };
        let Ok(held) = connections.clone().try_acquire_owned() else {
            webhook.metrics.closed(Closed::OverLimit);
            tracing::debug!(%peer, "over the connection limit; closed");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        // A poisoned lock still holds the last good config.
        let current = match config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let acceptor = TlsAcceptor::from(current);
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        let webhook = webhook.clone();
        let header_timeout = options.header_timeout;
        tokio::spawn(async move {
            let _held = held;
            let tls = match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    webhook.metrics.closed(Closed::Handshake);
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    webhook.metrics.closed(Closed::Handshake);
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(header_timeout)
                .keep_alive_timeout(header_timeout);
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                if e.downcast_ref::<hyper::Error>()
                    .is_some_and(hyper::Error::is_timeout)
                {
                    webhook.metrics.closed(Closed::HeaderTimeout);
                }
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

/// Accept errors in a row: how long to wait before the next accept, and
/// a log line at most once a second saying how many there were.
#[derive(Debug, Default)]
struct AcceptErrors {
    in_a_row: u32,
    unsaid: u64,
    last_said: Option<std::time::Instant>,
}

impl AcceptErrors {
    fn succeeded(&mut self) {
        self.in_a_row = 0;
    }

    /// 10 ms, doubling to a second.
    fn failed(&mut self, error: &std::io::Error) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.unsaid += 1;
        let wait = Duration::from_millis(10u64 << self.in_a_row.min(7)).min(Duration::from_secs(1));
        let due = self
            .last_said
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due {
            tracing::warn!(
                "accept failed {} time(s) since the last report: {error}; waiting {wait:?} before the next",
                self.unsaid
            );
            self.unsaid = 0;
            self.last_said = Some(std::time::Instant::now());
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_and_are_said_once_a_second() {
        let mut errors = AcceptErrors::default();
        let e = std::io::Error::other("too many open files");
        let waits: Vec<Duration> = (0..9).map(|_| errors.failed(&e)).collect();
        assert_eq!(waits[0], Duration::from_millis(20));
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(waits[8], Duration::from_secs(1));
        // Said once (the first); the other eight wait for the next report.
        assert_eq!(errors.unsaid, 8);
        errors.succeeded();
        assert_eq!(errors.failed(&e), Duration::from_millis(20));
    }
}
