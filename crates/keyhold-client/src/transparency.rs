//! Key transparency on the client (docs/spec/transparency.md, "Client
//! checks"; the K ids are `TRANSPARENCY.md`'s). Every run checks that the
//! log's newest checkpoint is signed by the pinned log key and cosigned by a
//! quorum of pinned witnesses (K1, K2), extends the last one this device
//! accepted (K3), is fresh (K4), and that the key directory, at an epoch in
//! that checkpoint (K5), shows this account's device chain as this device
//! holds it: every version a head its devices wrote, the newest not
//! withheld and not long behind (K7, K8, K10). Collection heads are checked
//! against the heads the directory committed (K14). A failure keeps the
//! conflicting signed objects in an evidence file and blocks key changes.
//!
//! Without a pinned policy (`transparency.toml` in the home folder) nothing
//! is checked and `keyhold verify` says so.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use keyhold_core::transparency::{
    self as kt, Checkpoint, DirectoryLabel, DirectoryValue, KtError, LogEntry, Policy, VerifiedCheckpoint,
};
use keyhold_core::{DeviceChain, Head, HistoryVerifier, ObjectId, VerifiedRevision};
use keyhold_proto::{Bytes as B64, KtProof};
use serde::{Deserialize, Serialize};

use crate::client::{Client, Collection};
use crate::error::{ClientError, Result};
use crate::home::{Home, write_private};

/// The pinned policy's file in the home folder.
pub const POLICY_FILE: &str = "transparency.toml";
const STATE_FILE: &str = "transparency.json";
const EVIDENCE_DIR: &str = "evidence";
/// Clock skew allowed for witness times in the future.
const MAX_SKEW_SECS: u64 = 300;

/// The pinned key transparency policy (`transparency.toml`): the log, its
/// witnesses and auditors, and how fresh things must be.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The log's origin line.
    pub origin: String,
    /// The log's verifier key.
    pub log_key: String,
    /// The directory's VRF public key (hex or base64).
    pub vrf_key: String,
    /// Witnesses' verifier keys.
    pub witnesses: Vec<String>,
    /// How many must cosign (default: a majority).
    #[serde(default)]
    pub quorum: Option<usize>,
    /// Auditors' verifier keys.
    #[serde(default)]
    pub auditors: Vec<String>,
    /// Oldest acceptable checkpoint for reading, seconds (default 24 h).
    #[serde(default = "default_max_age")]
    pub max_age_secs: u64,
    /// Oldest acceptable checkpoint before a key change (adding or revoking
    /// a device, a new recovery key), seconds (default 1 h).
    #[serde(default = "default_key_change_max_age")]
    pub key_change_max_age_secs: u64,
    /// Longest an entry may go without an auditor's cosignature, seconds
    /// (default 2 h).
    #[serde(default = "default_audit_lag")]
    pub max_audit_lag_secs: u64,
    /// Longest a change of this account's devices or a commit may take to
    /// appear in the directory, seconds (default 15 min).
    #[serde(default = "default_publish_delay")]
    pub max_publish_delay_secs: u64,
}

fn default_max_age() -> u64 {
    86_400
}
fn default_key_change_max_age() -> u64 {
    3_600
}
fn default_audit_lag() -> u64 {
    7_200
}
fn default_publish_delay() -> u64 {
    900
}

impl PolicyFile {
    fn policy(&self) -> Policy {
        Policy {
            origin: self.origin.clone(),
            log_vkey: self.log_key.clone(),
            witnesses: self.witnesses.clone(),
            quorum: self.quorum.unwrap_or_else(|| Policy::majority(self.witnesses.len())),
            auditors: self.auditors.clone(),
            max_age_secs: self.max_age_secs,
            max_audit_lag_secs: self.max_audit_lag_secs,
        }
    }

    /// The VRF public key: 32 bytes, in hex or in base64 (as `GET /kt/info`
    /// states it).
    fn vrf_key(&self) -> Result<Vec<u8>> {
        use base64::Engine;
        let text = self.vrf_key.trim();
        hex_decode(text)
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .filter(|key| key.len() == 32)
            .ok_or_else(|| ClientError::Usage(format!("{POLICY_FILE}: vrf_key is not a 32-byte key in hex or base64")))
    }
}

/// What this device last verified (`transparency.json`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct KtState {
    /// The last checkpoint accepted (K3 compares the next one with it).
    checkpoint: Option<B64>,
    /// Per directory label (hex): the newest version seen (K7).
    #[serde(default)]
    versions: BTreeMap<String, u64>,
    /// The newest directory epoch verified (K5: never goes back).
    #[serde(default)]
    epoch: Option<u64>,
}

/// Why a check runs: reading tolerates an older checkpoint than a key change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Reading and syncing.
    Read,
    /// Adding or revoking a device, a new recovery key.
    KeyChange,
}

/// The outcome of a passed check, for `keyhold verify` and `status`.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// The log's tree size checked.
    pub size: u64,
    /// The directory epoch checked.
    pub epoch: u64,
    /// Newest witness cosignature, Unix seconds.
    pub verified_at: u64,
    /// Witnesses that cosigned.
    pub witnesses: Vec<String>,
    /// Auditors whose cosignature covers the epoch.
    pub auditors: Vec<String>,
    /// This account's device chain head as the directory shows it.
    pub chain_seq: Option<u64>,
    /// This account's identity anchor for safety numbers (the first
    /// directory value of its current chain).
    #[serde(skip)]
    pub anchor: Option<[u8; 32]>,
    /// The checkpoint is older than the policy allows for reading.
    pub stale: bool,
    /// What is not wrong but worth saying.
    pub warnings: Vec<String>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    data_encoding::HEXLOWER_PERMISSIVE.decode(text.trim().as_bytes()).ok()
}

/// Loads the pinned policy, if this device has one.
pub fn load_policy(home: &Home) -> Result<Option<PolicyFile>> {
    let path = home.dir().join(POLICY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ClientError::Io { path, source: e }),
    };
    let file: PolicyFile =
        toml::from_str(&text).map_err(|e| ClientError::Usage(format!("{}: not a transparency policy: {e}", path.display())))?;
    file.policy().validate().map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?;
    file.vrf_key()?;
    Ok(Some(file))
}

/// Pins `source` as this device's policy (checked first).
pub fn pin_policy(home: &Home, source: &std::path::Path) -> Result<()> {
    let text = std::fs::read(source).map_err(|e| ClientError::Io { path: source.to_owned(), source: e })?;
    let parsed: PolicyFile = toml::from_str(std::str::from_utf8(&text).unwrap_or_default())
        .map_err(|e| ClientError::Usage(format!("{}: not a transparency policy: {e}", source.display())))?;
    parsed.policy().validate().map_err(|e| ClientError::Usage(format!("{}: {e}", source.display())))?;
    parsed.vrf_key()?;
    std::fs::create_dir_all(home.dir()).map_err(|e| ClientError::Io { path: home.dir().to_owned(), source: e })?;
    write_private(&home.dir().join(POLICY_FILE), &text)
}

fn load_state(home: &Home) -> Result<KtState> {
    let path = home.dir().join(STATE_FILE);
    match std::fs::read(&path) {
        // A lost state would silently drop the rollback checks (K3, K5,
        // K7): a damaged one is an error the user resolves.
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Usage(format!(
                "{} is damaged ({e}); delete it to start over (this device then trusts the next checkpoint it sees \
                 as it did the first)",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KtState::default()),
        Err(e) => Err(ClientError::Io { path, source: e }),
    }
}

fn save_state(home: &Home, state: &KtState) -> Result<()> {
    let json = serde_json::to_vec_pretty(state).map_err(|e| ClientError::Usage(e.to_string()))?;
    write_private(&home.dir().join(STATE_FILE), &json)
}

/// Writes an evidence file (reason and the signed objects verbatim) and
/// returns the failure that names it.
fn fail(home: &Home, reason: String, notes: &[&[u8]]) -> ClientError {
    let dir = home.dir().join(EVIDENCE_DIR);
    let path = dir.join(format!("kt-{}.txt", SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())));
    let written = std::fs::create_dir_all(&dir).is_ok() && write_private(&path, &kt::evidence(&reason, notes)).is_ok();
    ClientError::Transparency { reason, evidence: written.then_some(path) }
}

fn malformed(e: KtError) -> ClientError {
    ClientError::Transparency { reason: e.to_string(), evidence: None }
}

/// The id of each entry of a verified chain, by seq.
fn chain_ids(account: keyhold_core::AccountId, entries: &[Vec<u8>]) -> Result<Vec<ObjectId>> {
    let mut ids = Vec::with_capacity(entries.len());
    let mut iter = entries.iter();
    let Some(first) = iter.next() else { return Ok(ids) };
    let mut chain = DeviceChain::genesis(account, first)?;
    ids.push(chain.head().id);
    for entry in iter {
        chain.append(entry)?;
        ids.push(chain.head().id);
    }
    Ok(ids)
}

impl Client {
    /// Runs the key transparency checks for this account (module docs).
    /// `Ok(None)`: no policy is pinned, nothing was checked.
    pub async fn verify_transparency(&mut self, purpose: Purpose) -> Result<Option<Verification>> {
        let home = self.home().clone();
        let Some(file) = load_policy(&home)? else { return Ok(None) };
        let policy = file.policy();
        let vrf = file.vrf_key()?;
        let mut state = load_state(&home)?;
        let now = now_secs();
        let label = DirectoryLabel::Account(self.keys.account);
        let proof = self.api.kt_proof(&label.to_bytes(), true).await?;
        let note = match &proof {
            Some(p) => p.checkpoint.0.clone(),
            None => self.api.kt_checkpoint().await?,
        };
        let verified = self.accept_checkpoint(&policy, &mut state, &note).await?;
        let mut report = Verification {
            size: verified.checkpoint.size,
            epoch: 0,
            verified_at: verified.newest_witness_time,
            witnesses: verified.witness_times.iter().map(|(n, _)| n.clone()).collect(),
            auditors: Vec::new(),
            chain_seq: None,
            anchor: None,
            stale: false,
            warnings: Vec::new(),
        };
        let max_age = match purpose {
            Purpose::Read => file.max_age_secs,
            Purpose::KeyChange => file.key_change_max_age_secs.min(file.max_age_secs),
        };
        if let Err(e) = kt::check_fresh(&verified, now, max_age, MAX_SKEW_SECS) {
            match (purpose, &e) {
                (Purpose::Read, KtError::Stale { .. }) => {
                    report.stale = true;
                    report.warnings.push(format!(
                        "key transparency: the log has not moved for too long ({e}); the server may be showing this \
                         device a frozen view: key changes are blocked until it is fresh again"
                    ));
                }
                _ => {
                    return Err(ClientError::Transparency {
                        reason: format!("{e}; the log must be fresh before the account's keys change"),
                        evidence: None,
                    });
                }
            }
        }
        match proof {
            Some(p) => {
                let (epoch, root) = included_epoch(&verified, &p).map_err(|e| fail(&home, e, &[&note]))?;
                state.accept_epoch(epoch).map_err(|e| fail(&home, e, &[&note]))?;
                report.epoch = epoch;
                let history = kt::verify_history(&vrf, root, epoch, &label, &p.proof.0).map_err(|e| {
                    fail(&home, format!("the directory's history of this account does not verify: {e}"), &[&note])
                })?;
                report.chain_seq = self.check_own_history(&file, &mut state, &label, &history, &note)?;
                let mut by_version = history;
                by_version.sort_by_key(|(_, version, _)| *version);
                report.anchor = identity_anchor(&by_version);
                if !file.auditors.is_empty() {
                    match self.audit_coverage(&policy, &verified, p.entry_index, now, file.max_audit_lag_secs).await {
                        Ok(names) => report.auditors = names,
                        Err(e) if purpose == Purpose::Read => report.warnings.push(format!("key transparency: {e}")),
                        Err(e) => return Err(ClientError::Transparency { reason: e, evidence: None }),
                    }
                }
            }
            None => {
                // A new account appears at the next epoch; beyond that the
                // server is hiding it from the directory.
                let created = self.chain.time_of(0).unwrap_or(0);
                let age = now.saturating_sub(u64::try_from(created / 1000).unwrap_or(0));
                if age > file.max_publish_delay_secs {
                    return Err(fail(
                        &home,
                        format!("this account is not in the key directory {age} s after it was created: the server hides it"),
                        &[&note],
                    ));
                }
                report.warnings.push("key transparency: this account is not in the key directory yet (it is new)".into());
            }
        }
        save_state(&home, &state)?;
        Ok(Some(report))
    }

    /// K1–K3: verifies `note` and that it extends the last accepted
    /// checkpoint; keeps it as the new last one.
    async fn accept_checkpoint(&self, policy: &Policy, state: &mut KtState, note: &[u8]) -> Result<VerifiedCheckpoint> {
        let home = self.home().clone();
        let previous = state.checkpoint.as_ref().map(|c| c.0.clone());
        let with_previous = |note: &[u8]| -> Vec<Vec<u8>> { previous.iter().cloned().chain([note.to_vec()]).collect() };
        let verified = kt::verify_checkpoint(policy, note).map_err(|e| {
            let notes = with_previous(note);
            fail(
                &home,
                format!("the server's checkpoint of the key transparency log does not verify: {e}"),
                &notes.iter().map(Vec::as_slice).collect::<Vec<_>>(),
            )
        })?;
        if let Some(old_note) = &previous {
            let old = Checkpoint::from_note(old_note).map_err(malformed)?;
            let new = &verified.checkpoint;
            let proof = if new.size > old.size && old.size > 0 {
                self.api
                    .kt_consistency(old.size, new.size)
                    .await?
                    .into_iter()
                    .map(|h| <[u8; 32]>::try_from(h.as_slice()).map_err(|_| ClientError::Protocol("proof hash length".into())))
                    .collect::<Result<Vec<_>>>()?
            } else {
                Vec::new()
            };
            if let Err(e) = kt::check_consistency(&old, new, &proof) {
                let notes = with_previous(note);
                return Err(fail(
                    &home,
                    format!(
                        "the key transparency log forked or rolled back: the server's checkpoint ({} entries) does not \
                         extend the one this device accepted ({} entries): {e}",
                        new.size, old.size
                    ),
                    &notes.iter().map(Vec::as_slice).collect::<Vec<_>>(),
                ));
            }
        }
        state.checkpoint = Some(B64(note.to_vec()));
        Ok(verified)
    }

    /// K7, K8, K10 for this account: every version of its directory entry
    /// is a head of the device chain this device verified, the newest is not
    /// ahead of it (withheld entries) nor long behind (a hidden change).
    fn check_own_history(
        &self,
        file: &PolicyFile,
        state: &mut KtState,
        label: &DirectoryLabel,
        history: &[(u64, u64, DirectoryValue)],
        note: &[u8],
    ) -> Result<Option<u64>> {
        let home = self.home().clone();
        let pinned = home.load_chain()?.ok_or_else(|| ClientError::Usage("this device has no pinned device chain".into()))?;
        let entries: Vec<Vec<u8>> = pinned.entries.into_iter().map(|e| e.0).collect();
        let ids = chain_ids(self.keys.account, &entries)?;
        let key = hex(&label.to_bytes());
        let newest = history.iter().max_by_key(|(_, version, _)| *version);
        if let Some((_, version, _)) = newest {
            kt::check_version(state.versions.get(&key).copied(), *version)
                .map_err(|e| fail(&home, format!("the key directory rolled this account's entry back: {e}"), &[note]))?;
        }
        for (epoch, version, value) in history {
            match ids.get(usize::try_from(value.seq).unwrap_or(usize::MAX)) {
                None => {
                    return Err(fail(
                        &home,
                        format!(
                            "the key directory shows this account's device chain at entry #{} (epoch {epoch}, version \
                             {version}), but the server shows this device only {} entries: it withholds a change of \
                             your devices (a revocation, or a device added behind your back)",
                            value.seq,
                            ids.len()
                        ),
                        &[note],
                    ));
                }
                Some(id) if id.0 != value.hash => {
                    return Err(fail(
                        &home,
                        format!(
                            "your account was changed by someone other than your devices: the key directory shows a \
                             device chain head (entry #{}, epoch {epoch}) that is not in the chain your devices signed \
                             (a forged account reset or a ghost device)",
                            value.seq
                        ),
                        &[note],
                    ));
                }
                Some(_) => {}
            }
        }
        let Some((_, version, latest)) = newest else { return Ok(None) };
        let head = self.chain.head();
        if latest.seq < head.seq {
            // Published at the next epoch; beyond the allowed delay the
            // server is hiding the change (a revocation kept from others).
            let changed = self.chain.time_of(latest.seq.saturating_add(1)).unwrap_or(0);
            let age = now_secs().saturating_sub(u64::try_from(changed / 1000).unwrap_or(0));
            if age > file.max_publish_delay_secs {
                return Err(fail(
                    &home,
                    format!(
                        "the key directory still shows this account's device chain at entry #{} although entry #{} \
                         was made {age} s ago: the server hides a change of your devices from others",
                        latest.seq,
                        latest.seq + 1
                    ),
                    &[note],
                ));
            }
        }
        state.versions.insert(key, *version);
        Ok(Some(latest.seq))
    }

    /// K6: some pinned auditor's cosignature covers the entry (or is recent).
    async fn audit_coverage(
        &self,
        policy: &Policy,
        latest: &VerifiedCheckpoint,
        entry_index: u64,
        now: u64,
        max_lag: u64,
    ) -> std::result::Result<Vec<String>, String> {
        let audited = self.api.kt_audited().await.map_err(|e| format!("cannot fetch auditors' checkpoints: {e}"))?;
        let mut last_error = "no pinned auditor has cosigned this log".to_owned();
        for note in audited {
            let Ok(checked) = kt::verify_checkpoint(policy, &note) else { continue };
            if checked.auditor_times.is_empty() {
                continue;
            }
            if checked.checkpoint.size > latest.checkpoint.size {
                continue;
            }
            let proof = if checked.checkpoint.size < latest.checkpoint.size {
                match self.api.kt_consistency(checked.checkpoint.size, latest.checkpoint.size).await {
                    Ok(p) => p.into_iter().filter_map(|h| <[u8; 32]>::try_from(h.as_slice()).ok()).collect(),
                    Err(e) => return Err(format!("cannot fetch a consistency proof: {e}")),
                }
            } else {
                Vec::new()
            };
            if kt::check_consistency(&checked.checkpoint, &latest.checkpoint, &proof).is_err() {
                return Err("an auditor's checkpoint is not consistent with the newest one".into());
            }
            match kt::check_audited(&checked, entry_index, now, max_lag) {
                Ok(()) => return Ok(checked.auditor_times.iter().map(|(n, _)| n.clone()).collect()),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(format!("not audited: {last_error}"))
    }

    /// The collection's head the key directory committed (K14), verified
    /// (K1–K5, K7). Asked before the collection's own head, so that an
    /// honest server's head is never behind it.
    pub async fn committed_head(&self, coll: &Collection) -> Result<Option<CommittedHead>> {
        let home = self.home().clone();
        let Some(file) = load_policy(&home)? else { return Ok(None) };
        let policy = file.policy();
        let vrf = file.vrf_key()?;
        // A shared collection lives in its owner's account: the directory
        // labels its head with the owner's id.
        let owner = coll.shared.as_ref().map_or(self.keys.account, |view| view.list.owner());
        let label = DirectoryLabel::Collection(owner, coll.id);
        let Some(proof) = self.api.kt_proof(&label.to_bytes(), false).await? else { return Ok(None) };
        let note = proof.checkpoint.0.clone();
        let mut state = load_state(&home)?;
        let verified = self.accept_checkpoint(&policy, &mut state, &note).await?;
        let (epoch, root) = included_epoch(&verified, &proof).map_err(|e| fail(&home, e, &[&note]))?;
        state.accept_epoch(epoch).map_err(|e| fail(&home, e, &[&note]))?;
        let (version, value) = kt::verify_lookup(&vrf, root, epoch, &label, &proof.proof.0)
            .map_err(|e| fail(&home, format!("the directory's entry of this collection does not verify: {e}"), &[&note]))?;
        let key = hex(&label.to_bytes());
        kt::check_version(state.versions.get(&key).copied(), version)
            .map_err(|e| fail(&home, format!("the key directory rolled this collection's entry back: {e}"), &[&note]))?;
        state.versions.insert(key, version);
        save_state(&home, &state)?;
        Ok(Some(CommittedHead { seq: value.seq, id: ObjectId(value.hash), note }))
    }

    /// K14: the committed head must be on the history this device verified
    /// up to `head`; one beyond it means the server shows this device less
    /// than it committed for everyone.
    pub async fn check_committed_head(
        &self,
        coll: &Collection,
        committed: Option<&CommittedHead>,
        head: Option<&VerifiedRevision>,
    ) -> Result<()> {
        let home = self.home().clone();
        let Some(file) = load_policy(&home)? else { return Ok(()) };
        let delay = file.max_publish_delay_secs;
        let Some(committed) = committed else {
            // Never committed: fine while the collection is new.
            if let Some(h) = head {
                let first = self.api.revisions(coll.id, None).await?;
                let first = first.first().map(|s| self.open_revision(coll, s)).transpose()?;
                if first.as_ref().is_some_and(|r| r.revision.seq != 0) {
                    return Err(ClientError::Withheld("this collection's first revision".into()));
                }
                let written = first.map_or(h.revision.time_ms, |r| r.revision.time_ms);
                if age_secs(written) > delay {
                    return Err(ClientError::Transparency {
                        reason: format!(
                            "this collection has revisions since {} s ago but the key directory has none: the server \
                             keeps its history out of the directory (a forked or withheld write)",
                            age_secs(written)
                        ),
                        evidence: None,
                    });
                }
            }
            return Ok(());
        };
        let head = head.map(VerifiedRevision::head);
        let note = committed.note.clone();
        let seen = head.map_or(0, |h| h.seq.saturating_add(1));
        let fork = |why: String| fail(&home, why, &[&note]);
        match head {
            Some(h) if committed.seq == h.seq && committed.id != h.id => {
                return Err(fork(format!(
                    "the collection forked: the key directory committed revision #{} {}, this device holds {} at that \
                     place (the server shows devices different histories)",
                    h.seq,
                    committed.id.to_hex(),
                    h.id.to_hex()
                )));
            }
            Some(h) if committed.seq < h.seq => {
                // The committed revision must be an ancestor of our head.
                let after = committed.seq.checked_sub(1);
                let stored = self.api.revisions(coll.id, after).await?;
                let first = stored.first().map(|s| ObjectId::of(s));
                if first != Some(committed.id) {
                    return Err(fork(format!(
                        "the collection forked: the key directory committed revision #{} {}, which is not in the \
                         history this device verified",
                        committed.seq,
                        committed.id.to_hex()
                    )));
                }
                let revisions = stored.iter().map(|s| self.open_revision(coll, s)).collect::<Result<Vec<_>>>()?;
                let mut verifier = HistoryVerifier::new(coll.id, Some(Head { seq: committed.seq, id: committed.id }));
                let beyond: Vec<_> = revisions.into_iter().filter(|r| r.revision.seq > committed.seq).collect();
                verifier.extend(&beyond).map_err(|e| {
                    fork(format!(
                        "the collection forked: the committed revision #{} does not lead to this device's head: {e}",
                        committed.seq
                    ))
                })?;
                if !beyond.iter().any(|r| r.head() == h) {
                    return Err(fork(format!(
                        "the collection forked: revision #{} the key directory committed does not lead to this device's \
                         head #{}",
                        committed.seq, h.seq
                    )));
                }
                // K14, the writer's half: a revision the directory has not
                // committed long after it was written was withheld from
                // everyone else (or shown only on a fork).
                if let Some(oldest) = beyond.first() {
                    let age = age_secs(oldest.revision.time_ms);
                    if age > delay {
                        return Err(fork(format!(
                            "the key directory has not committed this collection's revision #{} although it was \
                             written {age} s ago: the server withholds it from everyone else",
                            oldest.revision.seq
                        )));
                    }
                }
            }
            _ if committed.seq >= seen => {
                return Err(fork(format!(
                    "the server withholds revisions of this collection: the key directory committed revision #{}, the \
                     server shows this device {}",
                    committed.seq,
                    head.map_or("none".to_owned(), |h| format!("#{}", h.seq))
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Seconds since `time_ms` (a time a device claimed; 0 if in the future).
fn age_secs(time_ms: i64) -> u64 {
    now_secs().saturating_sub(u64::try_from(time_ms / 1000).unwrap_or(0))
}

/// A collection head the key directory committed, with the checkpoint it
/// was proven under (evidence if the server shows something else).
#[derive(Debug, Clone)]
pub struct CommittedHead {
    /// Its place in the history.
    pub seq: u64,
    /// The revision's id.
    pub id: ObjectId,
    note: Vec<u8>,
}

impl KtState {
    /// K5: a directory epoch older than one already verified is a rollback.
    fn accept_epoch(&mut self, epoch: u64) -> std::result::Result<(), String> {
        kt::check_epoch(self.epoch, epoch).map_err(|e| {
            format!("the key directory went back to epoch {epoch} after this device verified {:?}: {e}", self.epoch)
        })?;
        self.epoch = Some(self.epoch.map_or(epoch, |e| e.max(epoch)));
        Ok(())
    }
}

/// K5: the proof's epoch has an entry in the verified checkpoint's tree.
fn included_epoch(verified: &VerifiedCheckpoint, proof: &KtProof) -> std::result::Result<(u64, [u8; 32]), String> {
    let inclusion = proof
        .inclusion
        .iter()
        .map(|h| <[u8; 32]>::try_from(h.0.as_slice()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| "malformed inclusion proof".to_owned())?;
    kt::check_inclusion(&verified.checkpoint, proof.entry_index, &proof.entry.0, &inclusion)
        .map_err(|e| format!("the directory epoch is not in the log's checkpoint: {e}"))?;
    match LogEntry::decode(&proof.entry.0) {
        Ok(LogEntry::Epoch { epoch, root, .. }) if epoch == proof.epoch => Ok((epoch, root)),
        _ => Err("the log entry of the proof is not the directory epoch it claims".into()),
    }
}

/// What `keyhold verify CONTACT` found.
#[derive(Debug, Clone, Serialize)]
pub struct ContactReport {
    /// The contact's account id.
    pub account: String,
    /// Verified, or why not.
    pub status: String,
    /// Every version of the contact's directory entry.
    pub history: Vec<ContactVersion>,
    /// A number both people compute alike from their accounts' first
    /// directory entries; compare it out of band (in person, by phone).
    pub safety_number: String,
}

/// One version of a contact's directory entry.
#[derive(Debug, Clone, Serialize)]
pub struct ContactVersion {
    /// The directory epoch it was published in.
    pub epoch: u64,
    /// Its version.
    pub version: u64,
    /// The device chain entry it names.
    pub seq: u64,
    /// That entry's id.
    pub head: String,
}

/// An account's identity: the first directory value of its current device
/// chain, i.e. after the last reset (a value whose seq does not grow).
/// `history` is sorted by version.
fn identity_anchor(history: &[(u64, u64, DirectoryValue)]) -> Option<[u8; 32]> {
    let start = history.windows(2).rposition(|w| matches!(w, [a, b] if b.2.seq <= a.2.seq)).map_or(0, |i| i + 1);
    history.get(start).map(|(_, _, v)| v.hash)
}

fn safety_number(a: (&keyhold_core::AccountId, &[u8; 32]), b: (&keyhold_core::AccountId, &[u8; 32])) -> String {
    let (first, second) = if a.0.as_bytes() <= b.0.as_bytes() { (a, b) } else { (b, a) };
    let mut hasher = blake3::Hasher::new_derive_key("keyhold v1 2026-12 safety number");
    for (account, anchor) in [first, second] {
        hasher.update(account.as_bytes());
        hasher.update(anchor);
    }
    let digest = hasher.finalize();
    digest
        .as_bytes()
        .chunks(4)
        .take(6)
        .filter_map(|c| <[u8; 4]>::try_from(c).ok())
        .map(|c| format!("{:05}", u32::from_be_bytes(c) % 100_000))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Client {
    /// A contact's key history as the directory shows everyone (K1–K7),
    /// checked against what this device saw of it before: a device chain
    /// only grows, so an entry that starts over is an account reset, which
    /// is refused until the two people compare safety numbers (K9).
    pub async fn verify_contact(&self, contact: keyhold_core::AccountId) -> Result<ContactReport> {
        let home = self.home().clone();
        let label = DirectoryLabel::Account(contact);
        let what = format!("account {}", contact.to_hex());
        let FreshHistory { history, note, verified, mut state, key } = self.fresh_history(&label, &what).await?;
        let anchor = identity_anchor(&history).ok_or_else(|| ClientError::Usage("empty history".into()))?;
        // This run's own check (Client::open) verified this account's history.
        let own = self.transparency.as_ref().and_then(|v| v.anchor).ok_or_else(|| ClientError::Transparency {
            reason: "this account is not in the key directory yet; try again after the next epoch".into(),
            evidence: None,
        })?;
        let number = safety_number((&self.keys.account, &own), (&contact, &anchor));
        let reset = history.windows(2).find(|w| matches!(w, [a, b] if b.2.seq <= a.2.seq));
        if let Some([_, after]) = reset {
            return Err(fail(
                &home,
                format!(
                    "{}'s account was reset at directory epoch {}: a new device chain replaced the old one. This is what a \
                     server substituting keys looks like; do not share with this account until its owner confirms, out of \
                     band, the safety number {number}",
                    contact.to_hex(),
                    after.0
                ),
                &[&note],
            ));
        }
        if let Some((_, version, _)) = history.last() {
            state.versions.insert(key, *version);
        }
        save_state(&home, &state)?;
        Ok(ContactReport {
            account: contact.to_hex(),
            status: format!(
                "verified as of {} ({} witness(es)); {} key change(s) on record",
                humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(verified.newest_witness_time)),
                verified.witness_times.len(),
                history.len().saturating_sub(1)
            ),
            history: history
                .iter()
                .map(|(epoch, version, v)| ContactVersion { epoch: *epoch, version: *version, seq: v.seq, head: hex(&v.hash) })
                .collect(),
            safety_number: number,
        })
    }
}

/// A label's complete history, verified under a fresh, witnessed checkpoint.
struct FreshHistory {
    /// `(epoch, version, value)`, by version.
    history: Vec<(u64, u64, DirectoryValue)>,
    /// The checkpoint's signed note (evidence).
    note: Vec<u8>,
    /// The checkpoint as verified.
    verified: VerifiedCheckpoint,
    /// The client's key transparency state, to save once the caller's own
    /// checks pass (with the newest version recorded under `key`).
    state: KtState,
    /// The label's key in `state.versions`.
    key: String,
}

impl Client {
    /// K1–K5 and K10 for someone else's label (a contact's account, a
    /// handle): the checkpoint verifies, is fresh enough for a key change,
    /// includes the proof's epoch, and the label's history verifies and does
    /// not go back behind the version this device saw before.
    async fn fresh_history(&self, label: &DirectoryLabel, what: &str) -> Result<FreshHistory> {
        let home = self.home().clone();
        let file = load_policy(&home)?.ok_or_else(|| {
            ClientError::Usage("no key transparency policy is pinned on this device (keyhold verify --pin-policy FILE)".into())
        })?;
        let policy = file.policy();
        let vrf = file.vrf_key()?;
        let mut state = load_state(&home)?;
        let proof = self.api.kt_proof(&label.to_bytes(), true).await?.ok_or_else(|| {
            ClientError::Usage(format!("{what} is not in the key directory (yet: try again after the next epoch)"))
        })?;
        let note = proof.checkpoint.0.clone();
        let verified = self.accept_checkpoint(&policy, &mut state, &note).await?;
        let max_age = file.key_change_max_age_secs.min(file.max_age_secs);
        kt::check_fresh(&verified, now_secs(), max_age, MAX_SKEW_SECS).map_err(|e| ClientError::Transparency {
            reason: format!("{e}: another account's keys are trusted only under a fresh log"),
            evidence: None,
        })?;
        let (epoch, root) = included_epoch(&verified, &proof).map_err(|e| fail(&home, e, &[&note]))?;
        state.accept_epoch(epoch).map_err(|e| fail(&home, e, &[&note]))?;
        let mut history = kt::verify_history(&vrf, root, epoch, label, &proof.proof.0)
            .map_err(|e| fail(&home, format!("the directory's history of {what} does not verify: {e}"), &[&note]))?;
        history.sort_by_key(|(_, version, _)| *version);
        let key = hex(&label.to_bytes());
        if let Some((_, version, _)) = history.last() {
            kt::check_version(state.versions.get(&key).copied(), *version)
                .map_err(|e| fail(&home, format!("the key directory rolled the entry of {what} back: {e}"), &[&note]))?;
        }
        Ok(FreshHistory { history, note, verified, state, key })
    }
}

impl Client {
    /// The account a handle names, as the key directory proves it: the
    /// directory's history of the handle (under a fresh, witnessed
    /// checkpoint) holds exactly one claim, the one the server serves, and a
    /// device of the claiming account's proven chain signed it. A handle
    /// that was ever bound to another claim is refused loudly: that is what
    /// a server re-pointing a name at an account of its own looks like.
    pub async fn verify_handle(&self, handle: &str) -> Result<keyhold_core::AccountId> {
        keyhold_core::share::validate_handle(handle)
            .map_err(|_| ClientError::Usage(format!("{handle:?} is not a handle (3 to 32 of a-z, 0-9, '.', '_', '-')")))?;
        let home = self.home().clone();
        let record =
            self.api.handle(handle).await?.ok_or_else(|| ClientError::Usage(format!("no account has the handle {handle}")))?;
        let label = DirectoryLabel::Handle(handle.to_owned());
        let FreshHistory { history, note, mut state, key, .. } =
            self.fresh_history(&label, &format!("the handle {handle}")).await?;
        if let Some((_, version, _)) = history.last() {
            state.versions.insert(key, *version);
        }
        save_state(&home, &state)?;
        let claim_id = keyhold_core::ObjectId::of(&record.claim.0);
        let mut hashes: Vec<[u8; 32]> = history.iter().map(|(_, _, v)| v.hash).collect();
        hashes.dedup();
        match hashes.as_slice() {
            [only] if *only == claim_id.0 => {}
            [_] => {
                return Err(fail(
                    &home,
                    format!(
                        "the server's claim of the handle {handle} is not the one the key directory holds: it substitutes an account"
                    ),
                    &[&note],
                ));
            }
            _ => {
                return Err(fail(
                    &home,
                    format!(
                        "the handle {handle} was bound to {} different claims over time: it was re-pointed at another account. \
                         Ask its owner, out of band, for their account id and use that",
                        hashes.len()
                    ),
                    &[&note],
                ));
            }
        }
        let (claim, _) = keyhold_core::share::HandleClaim::parse(&record.claim.0)?;
        if claim.handle != handle || claim.account.to_hex() != record.account {
            return Err(ClientError::Integrity(keyhold_core::Error::ContextMismatch("handle claim")));
        }
        let chain =
            if claim.account == self.keys.account { self.chain.clone() } else { self.proven_contact(claim.account).await?.chain };
        keyhold_core::share::HandleClaim::verify(&record.claim.0, |d| chain.device(d).map(|d| d.public.clone()))?;
        Ok(claim.account)
    }

    /// A contact as the command line names it: an account id (32 hex
    /// digits), or a handle, optionally `handle@server` (this device's
    /// server: accounts of other servers cannot be reached).
    pub async fn resolve_contact(&self, text: &str) -> Result<keyhold_core::AccountId> {
        let text = text.trim();
        let (name, server) = match text.split_once('@') {
            Some((name, server)) => (name, Some(server)),
            None => (text, None),
        };
        if let Some(server) = server {
            let own = self.config.server.trim_end_matches('/');
            let host = own.split("://").nth(1).unwrap_or(own);
            if server != host && server != own {
                return Err(ClientError::Usage(format!(
                    "{text}: that account is on another server ({server}); this device's server is {host}, and sharing \
                     across servers is not supported"
                )));
            }
        }
        if let Some(id) = keyhold_core::AccountId::from_hex(name) {
            return Ok(id);
        }
        self.verify_handle(name).await
    }
}
