//! The accept loop: HTTP/1.1 and HTTP/2 (TLS via rustls when configured),
//! a header-read timeout with a real timer (slowloris, SECURITY G3), a
//! request timeout, and graceful shutdown that lets in-flight commits finish.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::app::{AppState, Peer, router};
use crate::blobs::{BlobError, BlobStore};
use crate::config::{Config, TlsConfig};
use crate::regions::Regions;
use crate::store::{MetaStore, StoreError};
use crate::transparency::Transparency;

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
    /// The configuration cannot be set up (regions, deployment key).
    #[error("{0}")]
    Setup(String),
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

/// Opens the stores (under `config.data_dir`, or the metadata database at
/// `config.database_url`) and binds the listen address.
pub async fn bind(config: &Config) -> Result<BoundServer, ServeError> {
    let regions = Regions::open(config).await?;
    let kt = Arc::new(Transparency::open(config, &regions).await?);
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let listener = TcpListener::bind(config.listen).await.map_err(|e| ServeError::Listen(config.listen, e))?;
    Ok(BoundServer {
        listener,
        state: Arc::new(
            AppState::new(regions, config.limits.clone())
                .with_metrics_token(config.metrics_token.clone())
                .with_transparency(Some(kt)),
        ),
        tls,
        header_timeout: Duration::from_secs(config.limits.header_timeout_secs.max(1)),
        request_timeout: Duration::from_secs(config.limits.request_timeout_secs.max(1)),
    })
}

/// What `keyhold serve --check-config` checks: the TLS files load, the
/// metadata database and the blob store answer. Changes nothing (a new
/// SQLite file or blob folder is not created). One line per check.
pub async fn check_config(config: &Config) -> Result<Vec<String>, ServeError> {
    config.check_regions().map_err(ServeError::Setup)?;
    let mut report = vec![format!("listen address: {}", config.listen)];
    if let Some(tls) = &config.tls {
        tls_acceptor(tls)?;
        report.push(format!("TLS: certificate {} and key {} load", tls.cert.display(), tls.key.display()));
    }
    for region in config.all_regions() {
        let name = &region.name;
        match &region.database_url {
            Some(url) => {
                let (_, applied, known) = MetaStore::probe(url).await?;
                report.push(format!(
                    "region {name}: metadata: PostgreSQL answers; {applied} of {known} migrations applied (the rest run when the server starts)"
                ));
            }
            None => {
                let file = region.data_dir.join("metadata.sqlite3");
                if file.exists() {
                    let (_, applied, known) = MetaStore::probe(&format!("sqlite://{}?mode=ro", file.display())).await?;
                    report.push(format!(
                        "region {name}: metadata: SQLite {}; {applied} of {known} migrations applied",
                        file.display()
                    ));
                } else {
                    report.push(format!("region {name}: metadata: SQLite {} (created when the server starts)", file.display()));
                }
            }
        }
        match &region.s3 {
            Some(s3) => {
                BlobStore::s3(s3)?.probe().await?;
                report.push(format!("region {name}: packs: S3 bucket {} answers with these credentials", s3.bucket));
            }
            None => {
                let dir = region.data_dir.join("blobs");
                if dir.exists() {
                    BlobStore::local(&dir)?.probe().await?;
                }
                report.push(format!("region {name}: packs: folder {}", dir.display()));
            }
        }
    }
    Ok(report)
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
        let publisher = state.transparency.clone().filter(|kt| kt.publishes()).map(|kt| {
            let state = state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(kt.epoch_interval());
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(e) = kt.tick(&state.regions).await {
                        tracing::error!(error = %e, "key transparency: publishing failed; retrying at the next epoch");
                    }
                }
            })
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
                    let stream = VersionDeadline::new(stream, header_timeout);
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
                        let stream = VersionDeadline::new(stream, header_timeout);
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                        if let Err(e) = watcher.watch(conn).await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
            }
        }
        janitor.abort();
        if let Some(publisher) = publisher {
            publisher.abort();
            if let Some(kt) = &state.transparency {
                kt.release().await;
            }
        }
        drop(listener);
        if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await.is_err() {
            tracing::warn!("some connections were still busy after 30 s; closing them");
        }
        Ok(())
    }
}

/// The HTTP/2 connection preface.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection that fails its reads if the client has not shown which HTTP
/// version it speaks within the header timeout (SECURITY G3).
///
/// hyper-util's version detection reads up to the 24-byte HTTP/2 preface
/// with no timer of its own, and hyper's HTTP/1 header timer starts only
/// after it: without this, a client that connects and sends nothing, or
/// trickles a prefix of the preface, holds its connection forever. The
/// deadline is disarmed as soon as the bytes read diverge from the preface
/// (HTTP/1, where hyper's timer takes over) or complete it (HTTP/2).
struct VersionDeadline<S> {
    inner: S,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    seen: usize,
}

impl<S> VersionDeadline<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        VersionDeadline { inner, deadline: Some(Box::pin(tokio::time::sleep(timeout))), seen: 0 }
    }

    /// Notes `new` bytes read; `true` once the HTTP version is decided.
    fn version_known(&mut self, new: &[u8]) -> bool {
        let start = self.seen.min(H2_PREFACE.len());
        self.seen = self.seen.saturating_add(new.len());
        let end = self.seen.min(H2_PREFACE.len());
        let expected = H2_PREFACE.get(start..end).unwrap_or_default();
        let matches = new.get(..expected.len()).is_some_and(|got| got == expected);
        !matches || self.seen >= H2_PREFACE.len()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for VersionDeadline<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(deadline) = this.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no request within the header timeout",
                )));
            }
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.deadline.is_some() && matches!(result, Poll::Ready(Ok(()))) {
            let new = buf.filled().get(before..).unwrap_or_default();
            // An empty read is end of stream: nothing more to time.
            if new.is_empty() || this.version_known(new) {
                this.deadline = None;
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for VersionDeadline<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
