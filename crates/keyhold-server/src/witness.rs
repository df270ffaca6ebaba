//! `keyhold witness`: an independent witness of a Keyhold transparency log
//! (C2SP tlog-witness). It keeps the newest checkpoint it cosigned and
//! cosigns only checkpoints that verify under the log's key and extend that
//! one (a consistency proof), so a log operator cannot get two histories
//! cosigned. Run by someone other than the operator, ideally in another
//! jurisdiction; its state is one small file, written durably before it
//! answers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use keyhold_core::transparency::{self as kt, AddCheckpoint, NoteKey, WitnessRefusal, WitnessState};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::regions::seed_file;
use crate::serve::ServeError;

/// Largest `add-checkpoint` body: a checkpoint, a few cosignatures and a
/// proof of at most 64 hashes fit well within it.
const MAX_BODY: usize = 64 * 1024;

/// How to run a witness.
#[derive(Debug, Clone)]
pub struct WitnessOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The witness's signing key (a 32-byte seed file, created if missing).
    pub key: PathBuf,
    /// The witness's state file (created on first start).
    pub state: PathBuf,
    /// The log's base URL, asked for its origin and key on first start.
    pub log: String,
    /// The log's verifier key, if known in advance (otherwise the one the
    /// log states on first start is pinned).
    pub log_vkey: Option<String>,
    /// The witness's key name (default: derived from its key).
    pub name: Option<String>,
}

/// The witness's state file (`docs/spec/transparency.md`, "Witness state").
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateFile {
    origin: String,
    log_vkey: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    root: String,
}

struct Witness {
    key: NoteKey,
    origin: String,
    log_vkey: String,
    path: PathBuf,
    state: Mutex<Option<WitnessState>>,
}

/// A witness bound to its address, ready to serve.
pub struct BoundWitness {
    listener: TcpListener,
    witness: Arc<Witness>,
}

impl BoundWitness {
    /// The witness's verifier key, for clients' transparency policies.
    pub fn vkey(&self) -> String {
        self.witness.key.cosigner_vkey()
    }

    /// The log it witnesses.
    pub fn origin(&self) -> &str {
        &self.witness.origin
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let app = Router::new()
            .route("/add-checkpoint", post(add_checkpoint))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self.witness);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| ServeError::Setup(format!("witness: {e}")))
    }
}

/// Loads (or creates) the witness's key and state and binds its address.
/// On first start it asks the log for its origin and key and pins them.
pub async fn bind_witness(options: &WitnessOptions) -> Result<BoundWitness, ServeError> {
    let setup = |what: String| ServeError::Setup(format!("witness: {what}"));
    let seed = seed_file(&options.key, "witness key")?;
    let name = match &options.name {
        Some(name) => name.clone(),
        None => {
            // Named after its public key: stable, and says nothing of the seed.
            let public = NoteKey::from_seed("witness", *seed).map_err(|e| setup(e.to_string()))?.public_key();
            format!("keyhold-witness-{}", hex(public.get(..4).unwrap_or_default()))
        }
    };
    let key = NoteKey::from_seed(&name, *seed).map_err(|e| setup(e.to_string()))?;
    let stored = match std::fs::read(&options.state) {
        Ok(bytes) => serde_json::from_slice::<StateFile>(&bytes)
            .map_err(|e| setup(format!("state file {} is unreadable: {e}", options.state.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let info = fetch_info(&options.log).await.map_err(setup)?;
            if let Some(vkey) = &options.log_vkey {
                if vkey != &info.log_vkey {
                    return Err(setup(format!(
                        "the log at {} states key {}, not the --log-key given ({vkey})",
                        options.log, info.log_vkey
                    )));
                }
            }
            let fresh = StateFile { origin: info.origin, log_vkey: info.log_vkey, size: 0, root: String::new() };
            write_state(&options.state, &fresh).map_err(|e| setup(format!("{}: {e}", options.state.display())))?;
            fresh
        }
        Err(e) => return Err(setup(format!("{}: {e}", options.state.display()))),
    };
    let state = if stored.size == 0 {
        None
    } else {
        let root = decode_root(&stored.root).ok_or_else(|| setup(format!("state file {}: bad root", options.state.display())))?;
        Some(WitnessState { origin: stored.origin.clone(), size: stored.size, root })
    };
    let listener = TcpListener::bind(options.listen).await.map_err(|e| ServeError::Listen(options.listen, e))?;
    Ok(BoundWitness {
        listener,
        witness: Arc::new(Witness {
            key,
            origin: stored.origin,
            log_vkey: stored.log_vkey,
            path: options.state.clone(),
            state: Mutex::new(state),
        }),
    })
}

async fn fetch_info(log: &str) -> Result<keyhold_proto::KtInfo, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().map_err(|e| e.to_string())?;
    let url = format!("{}/kt/info", log.trim_end_matches('/'));
    let response = http.get(&url).send().await.map_err(|e| format!("cannot reach the log at {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("the log at {url} answered {}", response.status()));
    }
    response.json().await.map_err(|e| format!("the log at {url} answered something unreadable: {e}"))
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    let Ok(request) = AddCheckpoint::decode(&body) else {
        return (StatusCode::BAD_REQUEST, "malformed add-checkpoint request\n").into_response();
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut state = witness.state.lock().await;
    match kt::witness_add_checkpoint(&witness.origin, &witness.log_vkey, state.as_ref(), &request, &witness.key, now) {
        Ok((next, line)) => {
            let stored = StateFile {
                origin: witness.origin.clone(),
                log_vkey: witness.log_vkey.clone(),
                size: next.size,
                root: encode_root(&next.root),
            };
            // Durable before the cosignature leaves: a witness that forgot
            // what it signed could be made to sign a fork after a crash.
            if let Err(e) = write_state(&witness.path, &stored) {
                tracing::error!(error = %e, "witness: cannot save state");
                return (StatusCode::INTERNAL_SERVER_ERROR, "cannot save state\n").into_response();
            }
            tracing::info!(size = next.size, "cosigned a checkpoint");
            *state = Some(next);
            let mut response = Response::new(axum::body::Body::from(line));
            response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
            response
        }
        Err(refusal) => {
            tracing::warn!(?refusal, "refused a checkpoint");
            match refusal {
                WitnessRefusal::UnknownLog => (StatusCode::NOT_FOUND, "unknown log\n").into_response(),
                WitnessRefusal::BadSignature => {
                    (StatusCode::FORBIDDEN, "the checkpoint is not signed by the log's key\n").into_response()
                }
                WitnessRefusal::Conflict { known_size } => {
                    let mut response = (StatusCode::CONFLICT, format!("{known_size}\n")).into_response();
                    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/x.tlog.size"));
                    response
                }
                WitnessRefusal::BadProof => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "the checkpoint does not extend the one this witness cosigned\n")
                        .into_response()
                }
                _ => (StatusCode::BAD_REQUEST, "malformed add-checkpoint request\n").into_response(),
            }
        }
    }
}

fn write_state(path: &Path, state: &StateFile) -> std::io::Result<()> {
    use std::io::Write;
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

fn decode_root(text: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()?.try_into().ok()
}

fn encode_root(root: &[u8; 32]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(root)
}
