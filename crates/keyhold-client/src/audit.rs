//! `keyhold audit`: an independent auditor of a Keyhold key directory
//! (docs/spec/transparency.md, "Auditors"). It reads the log's entries in
//! order, checks that directory epochs appear once each and consecutively,
//! verifies akd's append-only proof of every step from one epoch root to
//! the next, and only then cosigns the checkpoint it verified and hands the
//! cosignature to the log. Clients that pin its key then know every step
//! up to that checkpoint was append-only (K6): no value was rewritten or
//! removed, even for labels they never look up.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keyhold_core::transparency::{self as kt, KtConfig, LogEntry, MerkleLog, NoteKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{ClientError, Result};
use crate::home::write_private;

/// How to run an auditor.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The log's base URL.
    pub log: String,
    /// The auditor's signing key (a 32-byte seed file, created if missing).
    pub key: PathBuf,
    /// The auditor's state (created on first run).
    pub state: PathBuf,
    /// The auditor's key name (default: derived from its key).
    pub name: Option<String>,
}

/// What one audit pass did.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// The auditor's verifier key (for clients' policies).
    pub vkey: String,
    /// The tree size verified and cosigned.
    pub size: u64,
    /// Directory epochs verified in this pass.
    pub epochs_verified: u64,
    /// The newest directory epoch verified.
    pub last_epoch: Option<u64>,
}

/// The auditor's state file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AuditState {
    origin: String,
    log_vkey: String,
    /// Leaf hashes of every entry verified, hex, in order.
    leaves: Vec<String>,
    last_epoch: Option<u64>,
    last_root: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

fn unhex32(text: &str) -> Option<[u8; 32]> {
    data_encoding::HEXLOWER.decode(text.as_bytes()).ok()?.try_into().ok()
}

fn audit_failure(why: String) -> ClientError {
    ClientError::Transparency { reason: format!("audit failed: {why}"), evidence: None }
}

fn load_key(path: &Path, name: Option<&str>) -> Result<NoteKey> {
    let seed: Zeroizing<[u8; 32]> = match std::fs::read(path) {
        Ok(bytes) => Zeroizing::new(
            bytes.as_slice().try_into().map_err(|_| ClientError::Usage(format!("{} is not a 32-byte key", path.display())))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = Zeroizing::new([0u8; 32]);
            getrandom::fill(seed.as_mut()).map_err(|e| ClientError::Usage(format!("randomness: {e}")))?;
            write_private(path, seed.as_ref())?;
            seed
        }
        Err(e) => return Err(ClientError::Io { path: path.to_owned(), source: e }),
    };
    let name = match name {
        Some(n) => n.to_owned(),
        None => {
            // Named after its public key: stable, and says nothing of the seed.
            let public =
                NoteKey::from_seed("auditor", *seed).map_err(|e| ClientError::Usage(format!("auditor key: {e}")))?.public_key();
            format!("keyhold-auditor-{}", hex(public.get(..4).unwrap_or_default()))
        }
    };
    NoteKey::from_seed(&name, *seed).map_err(|e| ClientError::Usage(format!("auditor key: {e}")))
}

/// The auditor's verifier key (creating its key file if needed).
pub fn auditor_vkey(options: &AuditOptions) -> Result<String> {
    Ok(load_key(&options.key, options.name.as_deref())?.cosigner_vkey())
}

/// One audit pass: verifies every entry added since the last pass and
/// cosigns the newest checkpoint.
pub async fn audit_once(options: &AuditOptions) -> Result<AuditReport> {
    let key = load_key(&options.key, options.name.as_deref())?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let base = options.log.trim_end_matches('/').to_owned();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let response = http.get(&url).send().await?;
            if !response.status().is_success() {
                return Err(ClientError::Protocol(format!("{url} answered {}", response.status())));
            }
            Ok::<_, ClientError>(response.bytes().await?.to_vec())
        }
    };
    let mut state: AuditState = match std::fs::read(&options.state) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Usage(format!("{} is not an auditor state file: {e}", options.state.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let info: keyhold_proto::KtInfo = serde_json::from_slice(&get("/kt/info".into()).await?)
                .map_err(|e| ClientError::Protocol(format!("/kt/info: {e}")))?;
            AuditState { origin: info.origin, log_vkey: info.log_vkey, ..AuditState::default() }
        }
        Err(e) => return Err(ClientError::Io { path: options.state.clone(), source: e }),
    };
    let note = get("/kt/checkpoint".into()).await?;
    let checkpoint = kt::verify_log_signature(&state.origin, &state.log_vkey, &note)
        .map_err(|e| audit_failure(format!("the log's checkpoint does not verify: {e}")))?;
    let mut log = MerkleLog::new();
    for leaf in &state.leaves {
        log.append_leaf_hash(unhex32(leaf).ok_or_else(|| ClientError::Usage("auditor state: bad leaf hash".into()))?);
    }
    let known = log.size();
    if checkpoint.size < known {
        return Err(audit_failure(format!("the log shrank from {known} to {} entries", checkpoint.size)));
    }
    let mut epochs_verified = 0;
    let mut next = known;
    while next < checkpoint.size {
        let page: keyhold_proto::KtEntries =
            serde_json::from_slice(&get(format!("/kt/entries?from={next}&to={}", checkpoint.size)).await?)
                .map_err(|e| ClientError::Protocol(format!("/kt/entries: {e}")))?;
        if page.entries.is_empty() {
            return Err(audit_failure(format!("the log does not serve entry {next}")));
        }
        for entry in page.entries {
            let parsed = LogEntry::decode(&entry.0).map_err(|e| audit_failure(format!("entry {next}: {e}")))?;
            if let LogEntry::Epoch { epoch, root, .. } = parsed {
                kt::check_epoch_order(state.last_epoch, epoch)
                    .map_err(|e| audit_failure(format!("entry {next}: directory epochs out of order: {e}")))?;
                if let (Some(previous_epoch), Some(previous_root)) = (state.last_epoch, state.last_root.as_deref()) {
                    let previous_root =
                        unhex32(previous_root).ok_or_else(|| ClientError::Usage("auditor state: bad root".into()))?;
                    let proof_bytes = get(format!("/kt/audit/{epoch}")).await?;
                    let proof = kt::decode_audit_proof(&proof_bytes)
                        .map_err(|e| audit_failure(format!("epoch {epoch}: malformed append-only proof: {e}")))?;
                    akd::auditor::audit_verify::<KtConfig>(
                        vec![previous_root, root],
                        akd::AppendOnlyProof { proofs: vec![proof], epochs: vec![previous_epoch] },
                    )
                    .await
                    .map_err(|e| audit_failure(format!("epoch {previous_epoch} to {epoch} is not append-only: {e}")))?;
                    epochs_verified += 1;
                }
                state.last_epoch = Some(epoch);
                state.last_root = Some(hex(&root));
            }
            let leaf = kt::leaf_hash(&entry.0);
            log.append_leaf_hash(leaf);
            state.leaves.push(hex(&leaf));
            next += 1;
            if next == checkpoint.size {
                break;
            }
        }
    }
    let root = log.root(checkpoint.size).map_err(|e| audit_failure(e.to_string()))?;
    if root != checkpoint.root {
        return Err(audit_failure("the entries served do not hash to the checkpoint's root".into()));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let line = kt::cosign(&note, &key, now).map_err(|e| audit_failure(e.to_string()))?;
    let body = keyhold_proto::KtAuditorCosignature {
        size: checkpoint.size,
        line: String::from_utf8(line).map_err(|_| audit_failure("cosignature is not text".into()))?,
    };
    let response = http.post(format!("{base}/kt/audited")).json(&body).send().await?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        return Err(ClientError::Protocol(format!(
            "the log refused this auditor's cosignature ({status}): {}; is this auditor's key ({}) in the server's \
             [transparency] auditors?",
            text.chars().take(200).collect::<String>(),
            key.cosigner_vkey()
        )));
    }
    let json = serde_json::to_vec(&state).map_err(|e| ClientError::Usage(e.to_string()))?;
    let tmp = options.state.with_extension("tmp");
    write_private_replace(&tmp, &json)?;
    std::fs::rename(&tmp, &options.state).map_err(|e| ClientError::Io { path: options.state.clone(), source: e })?;
    Ok(AuditReport { vkey: key.cosigner_vkey(), size: checkpoint.size, epochs_verified, last_epoch: state.last_epoch })
}

fn write_private_replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let _ = std::fs::remove_file(path);
    write_private(path, bytes)
}
