//! The accept loop: HTTP/1.1 and HTTP/2 (TLS via rustls when configured),
//! a header-read timeout with a real timer (slowloris, SECURITY G3), a
//! request timeout, and graceful shutdown that lets in-flight commits finish.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::app::{AppState, Peer, router};
use crate::blobs::{BlobError, BlobStore};
use crate::config::{Config, TlsConfig};
use crate::store::{MetaStore, StoreError};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The metadata store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blob store could not be opened.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// Listening failed.
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, #[source] std::io::Error),
    /// TLS files are unusable.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// A server bound to its address, ready to serve.
pub struct BoundServer {
    listener: TcpListener,
    state: Arc<AppState>,
    tls: Option<TlsAcceptor>,
    header_timeout: Duration,
    request_timeout: Duration,
}

/// Opens the stores under `config.data_dir` and binds the listen address.
pub async fn bind(config: &Config) -> Result<BoundServer, ServeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| ServeError::Listen(config.listen, e))?;
    let meta = MetaStore::open(&config.data_dir.join("metadata.sqlite3")).await?;
    let blobs = BlobStore::local(&config.data_dir.join("blobs"))?;
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let listener = TcpListener::bind(config.listen).await.map_err(|e| ServeError::Listen(config.listen, e))?;
    Ok(BoundServer {
        listener,
        state: Arc::new(AppState::new(meta, blobs, config.limits.clone())),
        tls,
        header_timeout: Duration::from_secs(config.limits.header_timeout_secs.max(1)),
        request_timeout: Duration::from_secs(config.limits.request_timeout_secs.max(1)),
    })
}

fn tls_acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, ServeError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| ServeError::Tls(format!("{}: {e}", p.display())));
    let certs = rustls_pemfile::certs(&mut read(&tls.cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", tls.cert.display())))?;
    let key = rustls_pemfile::private_key(&mut read(&tls.key)?.as_slice())
        .map_err(|e| ServeError::Tls(format!("{}: {e}", tls.key.display())))?
        .ok_or_else(|| ServeError::Tls(format!("{}: no private key found", tls.key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl BoundServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then waits (up to 30 s) for
    /// in-flight requests to finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let BoundServer { listener, state, tls, header_timeout, request_timeout } = self;
        let app = router(state.clone())
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, request_timeout));
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
        builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(30)));
        let graceful = GracefulShutdown::new();
        let janitor = tokio::spawn({
            let state = state.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    state.forget_idle_clients();
                }
            }
        });
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: log, back off, go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let service = app.clone().map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(Peer(peer.ip()));
                req
            });
            let service = TowerToHyperService::new(service);
            match &tls {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let builder = builder.clone();
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let Ok(Ok(stream)) = tokio::time::timeout(header_timeout, acceptor.accept(stream)).await else {
                            tracing::debug!(%peer, "TLS handshake failed or timed out");
                            return;
                        };
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                        if let Err(e) = watcher.watch(conn).await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
            }
        }
        janitor.abort();
        drop(listener);
        if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await.is_err() {
            tracing::warn!("some connections were still busy after 30 s; closing them");
        }
        Ok(())
    }
}
