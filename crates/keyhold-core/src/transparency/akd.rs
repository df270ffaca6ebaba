//! akd proofs on the wire (akd's protobuf messages) and their verification,
//! K7 and K10 (spec: `transparency.md`, "Directory proofs").

use akd_core::proto::specs::types as pb;
use akd_core::verify::{HistoryVerificationParams, key_history_verify, lookup_verify};
use akd_core::{AkdLabel, HistoryProof, LookupProof};
use protobuf::Message;

use super::KtError;
use super::entry::{DirectoryLabel, DirectoryValue, KtConfig};

/// A lookup proof as akd's protobuf `LookupProof` message.
pub fn encode_lookup_proof(p: &akd_core::LookupProof) -> Vec<u8> {
    // proto2 with every field optional: serialising cannot fail short of a
    // message over 2 GiB, which akd never builds. An empty answer would
    // fail verification.
    pb::LookupProof::from(p).write_to_bytes().unwrap_or_default()
}

/// A history proof as akd's protobuf `HistoryProof` message.
pub fn encode_history_proof(p: &akd_core::HistoryProof) -> Vec<u8> {
    pb::HistoryProof::from(p).write_to_bytes().unwrap_or_default()
}

/// One step of akd's append-only proof (epoch `e - 1` to `e`) as akd's
/// protobuf `SingleAppendOnlyProof` message, for auditors.
pub fn encode_audit_proof(p: &akd_core::SingleAppendOnlyProof) -> Vec<u8> {
    pb::SingleAppendOnlyProof::from(p).write_to_bytes().unwrap_or_default()
}

/// Parses [`encode_audit_proof`]'s output (`BadAuditProof`). The auditor
/// then runs akd's `audit_verify` on it.
pub fn decode_audit_proof(b: &[u8]) -> Result<akd_core::SingleAppendOnlyProof, KtError> {
    let msg = pb::SingleAppendOnlyProof::parse_from_bytes(b).map_err(|e| KtError::BadAuditProof(e.to_string()))?;
    akd_core::SingleAppendOnlyProof::try_from(&msg).map_err(|e| KtError::BadAuditProof(e.to_string()))
}

/// K7: `proof` (an encoded akd `LookupProof`) proves that `label` has a
/// value in the directory whose root at `epoch` is `root`, under the pinned
/// VRF public key, and that it is the label's newest version. Returns the
/// version and the value. The caller must have checked that `(epoch, root)`
/// is an epoch entry of a verified checkpoint (K5), and compares the version
/// with the last it saw ([`super::check_version`]).
pub fn verify_lookup(
    vrf_public_key: &[u8],
    root: [u8; 32],
    epoch: u64,
    label: &DirectoryLabel,
    proof: &[u8],
) -> Result<(u64, DirectoryValue), KtError> {
    let msg = pb::LookupProof::parse_from_bytes(proof).map_err(|e| KtError::BadLookupProof(e.to_string()))?;
    let proof = LookupProof::try_from(&msg).map_err(|e| KtError::BadLookupProof(e.to_string()))?;
    // akd versions start at 1; akd_core 0.13.0's lookup_verify asserts on
    // version 0 once the existence proof verifies, which a server holding
    // the VRF key can arrange.
    if proof.version == 0 {
        return Err(KtError::BadLookupProof("version 0".into()));
    }
    let result = lookup_verify::<KtConfig>(vrf_public_key, root, epoch, AkdLabel(label.to_bytes()), proof)
        .map_err(|e| KtError::BadLookupProof(e.to_string()))?;
    if result.epoch > epoch {
        return Err(KtError::BadLookupProof("value published after the epoch of the proof".into()));
    }
    let value = DirectoryValue::from_bytes(&result.value.0)
        .map_err(|_| KtError::BadLookupProof("the directory holds a malformed value".into()))?;
    Ok((result.version, value))
}

/// K10: `proof` (an encoded akd `HistoryProof`, complete history) proves
/// every version `label` ever had in the directory whose root at `epoch` is
/// `root`. Returns `(epoch published, version, value)` per version, newest
/// first, as akd orders them.
pub fn verify_history(
    vrf_public_key: &[u8],
    root: [u8; 32],
    epoch: u64,
    label: &DirectoryLabel,
    proof: &[u8],
) -> Result<Vec<(u64, u64, DirectoryValue)>, KtError> {
    let msg = pb::HistoryProof::parse_from_bytes(proof).map_err(|e| KtError::BadHistoryProof(e.to_string()))?;
    let proof = HistoryProof::try_from(&msg).map_err(|e| KtError::BadHistoryProof(e.to_string()))?;
    // akd_core 0.13.0 adds 1 to every update's version but the first before
    // checking anything else: u64::MAX overflows (a panic with overflow
    // checks on). Versions start at 1 and never come near u64::MAX.
    if proof.update_proofs.iter().any(|u| u.version == u64::MAX) {
        return Err(KtError::BadHistoryProof("version out of range".into()));
    }
    let results = key_history_verify::<KtConfig>(
        vrf_public_key,
        root,
        epoch,
        AkdLabel(label.to_bytes()),
        proof,
        HistoryVerificationParams::default(),
    )
    .map_err(|e| KtError::BadHistoryProof(e.to_string()))?;
    results
        .into_iter()
        .map(|r| {
            if r.epoch > epoch {
                return Err(KtError::BadHistoryProof("value published after the epoch of the proof".into()));
            }
            let value = DirectoryValue::from_bytes(&r.value.0)
                .map_err(|_| KtError::BadHistoryProof("the directory holds a malformed value".into()))?;
            Ok((r.epoch, r.version, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ids::AccountId;

    #[test]
    fn garbage_proofs_are_refused_not_panicked_on() {
        let label = DirectoryLabel::Account(AccountId([1; 16]));
        for bytes in [&b""[..], b"\x0a\x01", b"\xff\xff\xff", &[0u8; 64]] {
            assert!(matches!(decode_audit_proof(bytes), Err(KtError::BadAuditProof(_))) || bytes.is_empty());
            assert!(matches!(verify_lookup(&[0; 32], [0; 32], 1, &label, bytes), Err(KtError::BadLookupProof(_))));
            assert!(matches!(verify_history(&[0; 32], [0; 32], 1, &label, bytes), Err(KtError::BadHistoryProof(_))));
        }
    }
}
