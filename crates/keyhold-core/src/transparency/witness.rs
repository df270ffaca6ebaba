//! The witness side of C2SP tlog-witness: the `add-checkpoint` request body
//! and the decision to cosign (spec: `transparency.md`, "Witnesses").

use signed_note::{Note, StandardVerifier, VerifierList};

use super::KtError;
use super::note::{Checkpoint, NoteKey, cosign};
use super::tree::{MAX_PROOF_LEN, check_consistency};

/// Largest `add-checkpoint` body accepted (signed-note's own note limit,
/// plus room for the proof).
const MAX_BODY_LEN: usize = 1_000_000 + 8192;

/// The body of a tlog-witness `add-checkpoint` request:
///
/// ```text
/// old <old size>
/// <base64 proof hash>        (zero or more lines)
///
/// <signed checkpoint note>
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the checkpoint the log believes the witness has cosigned last.
    pub old_size: u64,
    /// Consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<[u8; 32]>,
    /// The signed checkpoint note.
    pub note: Vec<u8>,
}

impl AddCheckpoint {
    /// The request body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old_size).into_bytes();
        for h in &self.proof {
            out.extend_from_slice(data_encoding::BASE64.encode(h).as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.note);
        out
    }

    /// Parses a request body: `old` followed by a canonical decimal, at most
    /// 128 proof lines of canonical padded base64 of 32 bytes, an empty
    /// line, then a non-empty note (parsed later).
    pub fn decode(body: &[u8]) -> Result<Self, KtError> {
        if body.len() > MAX_BODY_LEN {
            return Err(KtError::Malformed("add-checkpoint body too large"));
        }
        let mut rest = body;
        let mut next_line = || -> Result<&[u8], KtError> {
            let at = rest.iter().position(|b| *b == b'\n').ok_or(KtError::Malformed("add-checkpoint body"))?;
            let (line, tail) = rest.split_at(at);
            rest = tail.get(1..).unwrap_or_default();
            Ok(line)
        };
        let first = next_line()?;
        let size = first.strip_prefix(b"old ").ok_or(KtError::Malformed("add-checkpoint old line"))?;
        let old_size = parse_decimal(size).ok_or(KtError::Malformed("add-checkpoint old size"))?;
        let mut proof = Vec::new();
        loop {
            let line = next_line()?;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LEN {
                return Err(KtError::Malformed("add-checkpoint proof too long"));
            }
            let h = data_encoding::BASE64.decode(line).map_err(|_| KtError::Malformed("add-checkpoint proof hash"))?;
            // One canonical encoding per body (data-encoding also reads
            // concatenated padded blocks such as `…o=IDL7`).
            if data_encoding::BASE64.encode(&h).as_bytes() != line {
                return Err(KtError::Malformed("add-checkpoint proof hash"));
            }
            proof.push(<[u8; 32]>::try_from(h).map_err(|_| KtError::Malformed("add-checkpoint proof hash"))?);
        }
        if rest.is_empty() {
            return Err(KtError::Malformed("add-checkpoint without a checkpoint"));
        }
        Ok(AddCheckpoint { old_size, proof, note: rest.to_vec() })
    }
}

/// A canonical decimal `u64`: digits only, no leading zero (except "0").
pub(crate) fn parse_decimal(b: &[u8]) -> Option<u64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b.first() == Some(&b'0')) {
        return None;
    }
    core::str::from_utf8(b).ok()?.parse().ok()
}

/// What a witness remembers about one log: the last checkpoint it cosigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessState {
    /// The log's origin.
    pub origin: String,
    /// The size of the last cosigned checkpoint.
    pub size: u64,
    /// Its root.
    pub root: [u8; 32],
}

impl WitnessState {
    /// Encoded as a checkpoint body (origin, size, base64 root, one line each).
    pub fn encode(&self) -> Result<Vec<u8>, KtError> {
        Checkpoint { origin: self.origin.clone(), size: self.size, root: self.root }.to_body()
    }

    /// Parses [`WitnessState::encode`]'s output.
    pub fn decode(b: &[u8]) -> Result<Self, KtError> {
        let cp = Checkpoint::from_body(b)?;
        Ok(WitnessState { origin: cp.origin, size: cp.size, root: cp.root })
    }
}

/// Why a witness refuses to cosign, with the HTTP status of tlog-witness.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessRefusal {
    /// The checkpoint's origin is not the log this witness serves (404).
    #[error("unknown log")]
    UnknownLog,
    /// No valid signature by the log's key (403).
    #[error("checkpoint not signed by the log")]
    BadSignature,
    /// `old` is not the size the witness last cosigned, or the checkpoint
    /// has that size with another root (409, body: the known size).
    #[error("conflict: the witness knows size {known_size}")]
    Conflict {
        /// The size of the last checkpoint the witness cosigned (0 if none).
        known_size: u64,
    },
    /// The consistency proof does not verify (422).
    #[error("consistency proof does not verify")]
    BadProof,
    /// The request does not parse, or `old` is larger than the checkpoint (400).
    #[error("malformed request")]
    Malformed,
}

impl WitnessRefusal {
    /// The HTTP status code tlog-witness gives this refusal.
    pub fn http_status(&self) -> u16 {
        match self {
            WitnessRefusal::UnknownLog => 404,
            WitnessRefusal::BadSignature => 403,
            WitnessRefusal::Conflict { .. } => 409,
            WitnessRefusal::BadProof => 422,
            WitnessRefusal::Malformed => 400,
        }
    }
}

/// A witness's decision on an `add-checkpoint` request for the log
/// `log_origin` with key `log_vkey`, given the state it holds for that log
/// (`None` if it never cosigned for it). In order:
///
/// 1. the note and its checkpoint parse, without extension lines (`Malformed`);
/// 2. the origin is `log_origin` (`UnknownLog`);
/// 3. the log key signed it (`BadSignature`);
/// 4. `old_size <= size` (`Malformed`);
/// 5. `old_size` is the size of the state (0 without one) (`Conflict`);
/// 6. if `old_size == size`: the proof is empty and the root is the state's
///    (`Conflict`: a second tree of the same size); otherwise, from a state,
///    the consistency proof from the state's checkpoint verifies
///    (`BadProof`); from no state (`old_size` 0), the proof is empty.
///
/// On success returns the new state (the checkpoint) and the cosignature
/// line at `now_secs` to return to the log (200).
pub fn witness_add_checkpoint(
    log_origin: &str,
    log_vkey: &str,
    state: Option<&WitnessState>,
    req: &AddCheckpoint,
    me: &NoteKey,
    now_secs: u64,
) -> Result<(WitnessState, Vec<u8>), WitnessRefusal> {
    let note = Note::from_bytes(&req.note).map_err(|_| WitnessRefusal::Malformed)?;
    let cp = Checkpoint::from_body(note.text()).map_err(|_| WitnessRefusal::Malformed)?;
    if cp.origin != log_origin {
        return Err(WitnessRefusal::UnknownLog);
    }
    if state.is_some_and(|s| s.origin != log_origin) {
        return Err(WitnessRefusal::UnknownLog);
    }
    let verifier = StandardVerifier::new(log_vkey).map_err(|_| WitnessRefusal::UnknownLog)?;
    note.verify(&VerifierList::new(vec![Box::new(verifier)])).map_err(|_| WitnessRefusal::BadSignature)?;
    if req.old_size > cp.size || req.proof.len() > MAX_PROOF_LEN {
        return Err(WitnessRefusal::Malformed);
    }
    let known_size = state.map_or(0, |s| s.size);
    if req.old_size != known_size {
        return Err(WitnessRefusal::Conflict { known_size });
    }
    match state {
        Some(s) if s.size == cp.size => {
            if s.root != cp.root || !req.proof.is_empty() {
                return Err(WitnessRefusal::Conflict { known_size });
            }
        }
        Some(s) => {
            let old = Checkpoint { origin: s.origin.clone(), size: s.size, root: s.root };
            check_consistency(&old, &cp, &req.proof).map_err(|_| WitnessRefusal::BadProof)?;
        }
        None => {
            if !req.proof.is_empty() {
                return Err(WitnessRefusal::BadProof);
            }
        }
    }
    let line = cosign(&req.note, me, now_secs).map_err(|_| WitnessRefusal::Malformed)?;
    Ok((WitnessState { origin: cp.origin, size: cp.size, root: cp.root }, line))
}
