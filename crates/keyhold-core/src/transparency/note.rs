//! Checkpoints as C2SP signed notes, `cosignature/v1` cosignatures, the
//! pinned policy and the client's checkpoint checks K1, K2, K4, K6 (spec:
//! `transparency.md`, "Checkpoints", "Cosignatures", "Verifying a
//! checkpoint").

use std::collections::BTreeSet;

use ed25519_dalek::{Signature as EdSignature, Signer as _, SigningKey, VerifyingKey};
use signed_note::{
    Note, NoteError, Signature as NoteSignature, Signer as NoteSigner, StandardVerifier, Verifier as NoteVerifier, VerifierList,
    is_key_name_valid, key_id,
};
use tlog_tiles::{Checkpoint as TlogCheckpoint, Hash};
use zeroize::Zeroize;

use super::KtError;

/// signed-note algorithm byte of an Ed25519 note signature.
const ALG_ED25519: u8 = 0x01;
/// tlog-cosignature algorithm byte of an Ed25519 `cosignature/v1`.
const ALG_COSIGNATURE_V1: u8 = 0x04;
/// Length of a `cosignature/v1` signature: `u64` time ‖ Ed25519 signature.
const COSIGNATURE_LEN: usize = 8 + 64;
/// signed-note's own limit on signature lines per note.
const MAX_SIGNATURES: usize = 100;

/// A note signing key: the log's key (signatures of algorithm `0x01`) or a
/// witness's or auditor's key (`cosignature/v1`, algorithm `0x04`). The
/// Ed25519 secret is zeroized on drop and never printed.
pub struct NoteKey {
    name: String,
    signing: SigningKey,
}

impl core::fmt::Debug for NoteKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NoteKey")
            .field("name", &self.name)
            .field("public_key", &data_encoding::HEXLOWER.encode(&self.public_key()))
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

impl NoteKey {
    /// A key from its name and 32-byte Ed25519 seed. The name must be a
    /// valid signed-note key name: non-empty, no Unicode space, no `+`.
    pub fn from_seed(name: &str, mut seed: [u8; 32]) -> Result<Self, KtError> {
        let checked = check_key_name(name);
        let signing = SigningKey::from_bytes(&seed);
        seed.zeroize();
        checked?;
        Ok(NoteKey { name: name.to_owned(), signing })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The verifier key of this key as a log key: `name+<key id hex>+<base64(0x01 ‖ pk)>`.
    pub fn log_vkey(&self) -> String {
        self.vkey(ALG_ED25519)
    }

    /// The verifier key of this key as a cosigner (witness or auditor):
    /// `name+<key id hex>+<base64(0x04 ‖ pk)>`.
    pub fn cosigner_vkey(&self) -> String {
        self.vkey(ALG_COSIGNATURE_V1)
    }

    fn encoded_public(&self, alg: u8) -> Vec<u8> {
        let mut k = Vec::with_capacity(33);
        k.push(alg);
        k.extend_from_slice(&self.public_key());
        k
    }

    fn key_id(&self, alg: u8) -> u32 {
        key_id(&self.name, &self.encoded_public(alg))
    }

    fn vkey(&self, alg: u8) -> String {
        format!("{}+{:08x}+{}", self.name, self.key_id(alg), data_encoding::BASE64.encode(&self.encoded_public(alg)))
    }
}

fn check_key_name(name: &str) -> Result<(), KtError> {
    if is_key_name_valid(name) { Ok(()) } else { Err(KtError::Malformed("signed-note key name")) }
}

/// Signs note text as the log (algorithm 0x01).
struct LogSigner<'a>(&'a NoteKey);

impl NoteSigner for LogSigner<'_> {
    fn name(&self) -> &str {
        &self.0.name
    }
    fn key_id(&self) -> u32 {
        self.0.key_id(ALG_ED25519)
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.0.signing.sign(msg).to_bytes().to_vec())
    }
}

/// Signs note text as a `cosignature/v1` cosigner at a given time.
struct CosignatureSigner<'a> {
    key: &'a NoteKey,
    time_secs: u64,
}

impl NoteSigner for CosignatureSigner<'_> {
    fn name(&self) -> &str {
        &self.key.name
    }
    fn key_id(&self) -> u32 {
        self.key.key_id(ALG_COSIGNATURE_V1)
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let sig = self.key.signing.sign(&cosignature_message(self.time_secs, msg));
        let mut out = Vec::with_capacity(COSIGNATURE_LEN);
        out.extend_from_slice(&self.time_secs.to_be_bytes());
        out.extend_from_slice(&sig.to_bytes());
        Ok(out)
    }
}

/// The message a `cosignature/v1` signs: a two-line header, then the
/// checkpoint (the note text).
fn cosignature_message(time_secs: u64, text: &[u8]) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {time_secs}\n").into_bytes();
    m.extend_from_slice(text);
    m
}

/// Verifies `cosignature/v1` signatures (tlog-cosignature, Ed25519,
/// algorithm 0x04) of one witness or auditor key, as a signed-note
/// [`signed_note::Verifier`]. The signature bytes are `u64` time ‖ 64-byte
/// Ed25519 signature; verification is strict (no small-order keys, canonical
/// `S`).
#[derive(Clone)]
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl core::fmt::Debug for CosignatureVerifier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "CosignatureVerifier({}+{:08x})", self.name, self.id)
    }
}

impl CosignatureVerifier {
    /// Parses a cosigner verifier key `name+<8 hex key id>+<base64(0x04 ‖ pk)>`.
    pub fn new(vkey: &str) -> Result<Self, KtError> {
        let (name, id, key) = parse_vkey(vkey)?;
        let (alg, pk) = key.split_first().ok_or(KtError::BadPolicy("verifier key"))?;
        if *alg != ALG_COSIGNATURE_V1 {
            return Err(KtError::BadPolicy("cosigner key is not of algorithm 0x04 (cosignature/v1)"));
        }
        let pk: [u8; 32] = pk.try_into().map_err(|_| KtError::BadPolicy("cosigner public key length"))?;
        let key = VerifyingKey::from_bytes(&pk).map_err(|_| KtError::BadPolicy("cosigner public key"))?;
        Ok(CosignatureVerifier { name: name.to_owned(), id, key })
    }

    /// The key's Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The time in a valid cosignature by this key over `text`, or `None`.
    pub fn verify_time(&self, text: &[u8], sig: &[u8]) -> Option<u64> {
        let sig: &[u8; COSIGNATURE_LEN] = sig.try_into().ok()?;
        let (time, ed) = sig.split_first_chunk::<8>()?;
        let ed: &[u8; 64] = ed.try_into().ok()?;
        let time = u64::from_be_bytes(*time);
        self.key.verify_strict(&cosignature_message(time, text), &EdSignature::from_bytes(ed)).ok()?;
        Some(time)
    }
}

impl NoteVerifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.verify_time(msg, sig).is_some()
    }
}

/// Splits a verifier key `name+id+base64` and checks the id (the signed-note
/// rules, as `StandardVerifier::new` applies them).
fn parse_vkey(vkey: &str) -> Result<(&str, u32, Vec<u8>), KtError> {
    let bad = KtError::BadPolicy("verifier key");
    let (name, rest) = vkey.split_once('+').ok_or(bad.clone())?;
    let (id_hex, key_b64) = rest.split_once('+').ok_or(bad.clone())?;
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) || !is_key_name_valid(name) {
        return Err(bad);
    }
    let id = u32::from_str_radix(id_hex, 16).map_err(|_| bad.clone())?;
    let key = data_encoding::BASE64.decode(key_b64.as_bytes()).map_err(|_| bad.clone())?;
    if key.is_empty() || key_id(name, &key) != id {
        return Err(KtError::BadPolicy("verifier key id does not match its name and key"));
    }
    Ok((name, id, key))
}

/// A checkpoint of the epoch-root log (tlog-checkpoint), without extension
/// lines: Keyhold's log never writes any and its clients refuse them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// The number of entries in the tree.
    pub size: u64,
    /// The RFC 6962 root hash of the tree.
    pub root: [u8; 32],
}

impl Checkpoint {
    /// The checkpoint body (the note text): origin, decimal size, base64
    /// root, each followed by a newline.
    pub fn to_body(&self) -> Result<Vec<u8>, KtError> {
        check_origin(&self.origin)?;
        let cp = TlogCheckpoint::new(&self.origin, self.size, Hash(self.root), "")
            .map_err(|_| KtError::Malformed("checkpoint origin"))?;
        Ok(cp.to_bytes())
    }

    /// Parses a checkpoint body; extension lines are refused.
    pub fn from_body(text: &[u8]) -> Result<Self, KtError> {
        let cp = TlogCheckpoint::from_bytes(text).map_err(|_| KtError::Malformed("checkpoint"))?;
        if !cp.extension().is_empty() {
            return Err(KtError::Malformed("checkpoint extension lines"));
        }
        check_origin(cp.origin())?;
        Ok(Checkpoint { origin: cp.origin().to_owned(), size: cp.size(), root: cp.hash().0 })
    }

    /// Parses the checkpoint of a signed note *without verifying anything*:
    /// for logs and witnesses that verify separately, and for evidence.
    pub fn from_note(note: &[u8]) -> Result<Self, KtError> {
        let n = Note::from_bytes(note).map_err(|_| KtError::Malformed("signed note"))?;
        Checkpoint::from_body(n.text())
    }
}

/// An origin is non-empty and holds no control character (so that it is one
/// line of a note).
fn check_origin(origin: &str) -> Result<(), KtError> {
    if origin.is_empty() || origin.chars().any(char::is_control) {
        return Err(KtError::Malformed("checkpoint origin"));
    }
    Ok(())
}

/// Signs a checkpoint with the log key: the signed note's bytes (body, empty
/// line, one signature line).
pub fn sign_checkpoint(cp: &Checkpoint, log: &NoteKey) -> Result<Vec<u8>, KtError> {
    let body = cp.to_body()?;
    let mut note = Note::new(&body, &[]).map_err(|_| KtError::Malformed("checkpoint"))?;
    note.add_sigs(&[&LogSigner(log)]).map_err(|_| KtError::Malformed("signed-note key name"))?;
    Ok(note.to_bytes())
}

/// A witness's or auditor's `cosignature/v1` over the checkpoint in `note`
/// at `time_secs` (seconds since the Unix epoch): the one signature line
/// (`"— name base64\n"`) to append with [`add_signature_lines`]. Checks that
/// the note holds a checkpoint, not that the log signed it.
pub fn cosign(note: &[u8], cosigner: &NoteKey, time_secs: u64) -> Result<Vec<u8>, KtError> {
    let n = Note::from_bytes(note).map_err(|_| KtError::Malformed("signed note"))?;
    Checkpoint::from_body(n.text())?;
    let signer = CosignatureSigner { key: cosigner, time_secs };
    let sig = signer.sign(n.text()).map_err(|_| KtError::Malformed("cosignature"))?;
    let line = NoteSignature::new(cosigner.name.clone(), signer.key_id(), sig)
        .map_err(|_| KtError::Malformed("signed-note key name"))?;
    Ok(line.to_bytes())
}

/// The note's text and its signature lines, parsed by signed-note.
fn split_note(note: &[u8]) -> Result<(Vec<u8>, Vec<NoteSignature>), KtError> {
    let parsed = Note::from_bytes(note).map_err(|_| KtError::Malformed("signed note"))?;
    // `Note` does not expose its signatures: re-split the (now validated)
    // note where `Note::from_bytes` splits it and parse each line with
    // signed-note's own line parser.
    let text = core::str::from_utf8(note).map_err(|_| KtError::Malformed("signed note"))?;
    let (_, block) = text.rsplit_once("\n\n").ok_or(KtError::Malformed("signed note"))?;
    let block = block.strip_suffix('\n').ok_or(KtError::Malformed("signed note"))?;
    let sigs = block
        .split('\n')
        .map(|line| NoteSignature::from_bytes(line.as_bytes()).map_err(|_| KtError::Malformed("signature line")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((parsed.text().to_vec(), sigs))
}

/// The note with `lines` (signature lines as [`cosign`] returns them, with or
/// without their final newline) appended. A line by a key (name and key id)
/// that already signed replaces that key's earlier line, so one key appears
/// once. At most 100 signature lines in all.
pub fn add_signature_lines(note: &[u8], lines: &[Vec<u8>]) -> Result<Vec<u8>, KtError> {
    let (text, mut sigs) = split_note(note)?;
    for line in lines {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let sig = NoteSignature::from_bytes(line).map_err(|_| KtError::Malformed("signature line"))?;
        sigs.retain(|s| !(s.name() == sig.name() && s.id() == sig.id()));
        sigs.push(sig);
    }
    if sigs.len() > MAX_SIGNATURES {
        return Err(KtError::Malformed("more than 100 signature lines"));
    }
    let note = Note::new(&text, &sigs).map_err(|_| KtError::Malformed("signed note"))?;
    Ok(note.to_bytes())
}

/// The pinned key transparency policy of a client (`TRANSPARENCY.md` S1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The log's origin line.
    pub origin: String,
    /// The log's verifier key (algorithm 0x01).
    pub log_vkey: String,
    /// Witness verifier keys (algorithm 0x04).
    pub witnesses: Vec<String>,
    /// How many distinct witnesses must cosign (K2).
    pub quorum: usize,
    /// Auditor verifier keys (algorithm 0x04).
    pub auditors: Vec<String>,
    /// Maximum age of the newest witness cosignature (K4).
    pub max_age_secs: u64,
    /// Maximum time without an auditor cosignature (K6).
    pub max_audit_lag_secs: u64,
}

struct ParsedPolicy {
    log: StandardVerifier,
    witnesses: Vec<CosignatureVerifier>,
    auditors: Vec<CosignatureVerifier>,
}

impl Policy {
    /// A majority of `n` witnesses: `n / 2 + 1`.
    pub fn majority(n: usize) -> usize {
        n / 2 + 1
    }

    /// Checks the policy: every key parses (log key algorithm 0x01, cosigner
    /// keys 0x04), no key (name and key id, or public key) appears twice in
    /// or across the lists, the origin is a valid origin line, and
    /// `1 <= quorum <= witnesses.len()`.
    pub fn validate(&self) -> Result<(), KtError> {
        self.parse().map(|_| ())
    }

    fn parse(&self) -> Result<ParsedPolicy, KtError> {
        check_origin(&self.origin).map_err(|_| KtError::BadPolicy("origin"))?;
        let log = StandardVerifier::new(&self.log_vkey).map_err(|_| KtError::BadPolicy("log verifier key"))?;
        let witnesses = self.witnesses.iter().map(|k| CosignatureVerifier::new(k)).collect::<Result<Vec<_>, _>>()?;
        let auditors = self.auditors.iter().map(|k| CosignatureVerifier::new(k)).collect::<Result<Vec<_>, _>>()?;
        if self.quorum == 0 || self.quorum > witnesses.len() {
            return Err(KtError::BadPolicy("quorum must be between 1 and the number of witnesses"));
        }
        let mut ids = BTreeSet::new();
        let mut keys = BTreeSet::new();
        ids.insert((log.name().to_owned(), log.key_id()));
        for v in witnesses.iter().chain(&auditors) {
            if !ids.insert((v.name.clone(), v.id)) || !keys.insert(v.public_key()) {
                return Err(KtError::BadPolicy("a key appears twice"));
            }
        }
        Ok(ParsedPolicy { log, witnesses, auditors })
    }
}

/// K1 alone: the note is a checkpoint (without extension lines) of the log
/// `origin` (`UnknownOrigin`) signed by `log_vkey` (`BadLogSignature`; an
/// unparsable key is `BadPolicy`). Cosignatures are not looked at: for
/// auditors and monitors that check the log itself, not for clients (they
/// use [`verify_checkpoint`]).
pub fn verify_log_signature(origin: &str, log_vkey: &str, note: &[u8]) -> Result<Checkpoint, KtError> {
    let log = StandardVerifier::new(log_vkey).map_err(|_| KtError::BadPolicy("log verifier key"))?;
    verify_log_note(origin, log, note).map(|(_, cp)| cp)
}

fn verify_log_note(origin: &str, log: StandardVerifier, note: &[u8]) -> Result<(Note, Checkpoint), KtError> {
    let n = Note::from_bytes(note).map_err(|_| KtError::Malformed("signed note"))?;
    let checkpoint = Checkpoint::from_body(n.text())?;
    if checkpoint.origin != origin {
        return Err(KtError::UnknownOrigin { found: checkpoint.origin });
    }
    n.verify(&VerifierList::new(vec![Box::new(log)])).map_err(|_| KtError::BadLogSignature)?;
    Ok((n, checkpoint))
}

/// The key name of `line` (one signature line, with or without its final
/// newline) if it is a valid `cosignature/v1` over the checkpoint in `note`
/// by one of the cosigner verifier keys `vkeys` (unparsable keys are
/// skipped); `None` otherwise. For a log that accepts cosignatures one at a
/// time (an auditor's).
pub fn verify_cosignature_line(note: &[u8], line: &[u8], vkeys: &[String]) -> Option<String> {
    let n = Note::from_bytes(note).ok()?;
    Checkpoint::from_body(n.text()).ok()?;
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let sig = NoteSignature::from_bytes(line).ok()?;
    vkeys
        .iter()
        .filter_map(|k| CosignatureVerifier::new(k).ok())
        .find(|v| v.name == sig.name() && v.id == sig.id())
        .and_then(|v| v.verify_time(n.text(), sig.signature()))
        .map(|_| sig.name().to_owned())
}

/// A checkpoint that passed K1 and K2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The signed note, verbatim (keep it: it is evidence if another
    /// checkpoint contradicts it).
    pub note: Vec<u8>,
    /// `(key name, time)` of each pinned witness with a valid cosignature.
    pub witness_times: Vec<(String, u64)>,
    /// The newest of the witness times (K4 checks it).
    pub newest_witness_time: u64,
    /// The time by which a quorum of witnesses had cosigned: the
    /// `quorum`-th newest witness time (`<= newest_witness_time`).
    pub quorum_witness_time: u64,
    /// `(key name, time)` of each pinned auditor with a valid cosignature.
    pub auditor_times: Vec<(String, u64)>,
}

/// K1 and K2: the note parses as a checkpoint without extension lines for
/// the pinned origin (`UnknownOrigin`), is signed by the pinned log key
/// (`BadLogSignature`), and carries valid `cosignature/v1` lines from at
/// least `quorum` distinct pinned witnesses (`NoQuorum`). Lines by unknown
/// keys are ignored; a line by a pinned witness or auditor key whose
/// signature does not verify fails the whole note (`BadCosignature`);
/// repeated lines of one key count once. Auditor cosignatures are collected,
/// not required (see [`check_audited`]). Freshness is [`check_fresh`].
pub fn verify_checkpoint(policy: &Policy, note: &[u8]) -> Result<VerifiedCheckpoint, KtError> {
    let parsed = policy.parse()?;
    let (n, checkpoint) = verify_log_note(&policy.origin, parsed.log, note)?;

    let cosigners: Vec<Box<dyn NoteVerifier>> =
        parsed.witnesses.iter().chain(&parsed.auditors).map(|v| -> Box<dyn NoteVerifier> { Box::new(v.clone()) }).collect();
    let verified = match n.verify(&VerifierList::new(cosigners)) {
        Ok((verified, _unknown)) => verified,
        Err(NoteError::UnverifiedNote) => Vec::new(),
        Err(NoteError::InvalidSignature { name, .. }) => return Err(KtError::BadCosignature { name }),
        Err(_) => return Err(KtError::Malformed("signed note")),
    };
    let mut witness_times = Vec::new();
    let mut auditor_times = Vec::new();
    for sig in &verified {
        let time = sig.signature().first_chunk::<8>().map(|t| u64::from_be_bytes(*t)).ok_or(KtError::Malformed("cosignature"))?;
        let is = |v: &CosignatureVerifier| v.name == sig.name() && v.id == sig.id();
        if parsed.witnesses.iter().any(is) {
            witness_times.push((sig.name().to_owned(), time));
        } else if parsed.auditors.iter().any(is) {
            auditor_times.push((sig.name().to_owned(), time));
        }
    }
    let need = policy.quorum;
    if witness_times.len() < need {
        return Err(KtError::NoQuorum { have: witness_times.len(), need });
    }
    let mut times: Vec<u64> = witness_times.iter().map(|(_, t)| *t).collect();
    times.sort_unstable_by(|a, b| b.cmp(a));
    let newest_witness_time = times.first().copied().unwrap_or(0);
    let quorum_witness_time = need.checked_sub(1).and_then(|i| times.get(i)).copied().unwrap_or(0);
    Ok(VerifiedCheckpoint {
        checkpoint,
        note: note.to_vec(),
        witness_times,
        newest_witness_time,
        quorum_witness_time,
        auditor_times,
    })
}

/// K4: the newest witness time is at most `max_age_secs` old (`Stale`) and
/// at most `max_skew_secs` in the future (`FromFuture`). Both bounds are
/// inclusive.
pub fn check_fresh(cp: &VerifiedCheckpoint, now_secs: u64, max_age_secs: u64, max_skew_secs: u64) -> Result<(), KtError> {
    let newest = cp.newest_witness_time;
    if newest > now_secs.saturating_add(max_skew_secs) {
        return Err(KtError::FromFuture);
    }
    let age_secs = now_secs.saturating_sub(newest);
    if age_secs > max_age_secs {
        return Err(KtError::Stale { age_secs });
    }
    Ok(())
}

/// K6: the log entry at `entry_index` is covered by auditors. `audited` is
/// the newest verified checkpoint the client holds that carries at least
/// one pinned auditor cosignature (consistent with the client's latest
/// checkpoint: check that separately). The entry is covered if it lies in
/// `audited`'s tree; an entry beyond it is accepted only while the newest
/// auditor time on `audited` is at most `max_audit_lag_secs` old. Otherwise,
/// or without any auditor cosignature: `NotAudited`.
pub fn check_audited(
    audited: &VerifiedCheckpoint,
    entry_index: u64,
    now_secs: u64,
    max_audit_lag_secs: u64,
) -> Result<(), KtError> {
    let newest = audited.auditor_times.iter().map(|(_, t)| *t).max().ok_or(KtError::NotAudited)?;
    if entry_index < audited.checkpoint.size || now_secs.saturating_sub(newest) <= max_audit_lag_secs {
        Ok(())
    } else {
        Err(KtError::NotAudited)
    }
}
