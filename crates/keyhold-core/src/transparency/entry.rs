//! Log entries (one per akd epoch, plus heartbeats), akd directory labels and
//! values, and the akd configuration (spec: `transparency.md`, "Log entries",
//! "Directory").

use super::KtError;
use crate::ids::{AccountId, CollectionId};

/// The domain separator of Keyhold's akd directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyholdDomain;

impl akd_core::configuration::DomainLabel for KeyholdDomain {
    fn domain_label() -> &'static [u8] {
        b"keyhold-kt-v1"
    }
}

/// The akd configuration of Keyhold's directory: akd's experimental
/// configuration (BLAKE3) with the domain label `keyhold-kt-v1`.
pub type KtConfig = akd_core::ExperimentalConfiguration<KeyholdDomain>;

/// The first 7 bytes of every log entry: the envelope `"KHLD" 01 01 09`.
/// Type `0x09` is the key transparency log entry; it is never a stored
/// object of its own.
pub const ENTRY_HEADER: [u8; 7] = *b"KHLD\x01\x01\x09";
/// Length of an epoch entry.
pub const EPOCH_ENTRY_LEN: usize = 7 + 1 + 8 + 8 + 32;
/// Length of a heartbeat entry.
pub const HEARTBEAT_ENTRY_LEN: usize = 7 + 1 + 8;

const KIND_EPOCH: u8 = 0x01;
const KIND_HEARTBEAT: u8 = 0x02;

/// One entry of the epoch-root log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogEntry {
    /// An akd epoch was published with this root.
    Epoch {
        /// The akd epoch number.
        epoch: u64,
        /// The akd root hash at that epoch.
        root: [u8; 32],
        /// The publisher's clock, milliseconds since the Unix epoch (a claim).
        time_ms: i64,
    },
    /// Nothing changed; appended so that checkpoints keep moving and witness
    /// times stay fresh.
    Heartbeat {
        /// The publisher's clock, milliseconds since the Unix epoch (a claim).
        time_ms: i64,
    },
}

impl LogEntry {
    /// The entry's bytes (the log's leaf data).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(EPOCH_ENTRY_LEN);
        out.extend_from_slice(&ENTRY_HEADER);
        match self {
            LogEntry::Epoch { epoch, root, time_ms } => {
                out.push(KIND_EPOCH);
                out.extend_from_slice(&time_ms.to_be_bytes());
                out.extend_from_slice(&epoch.to_be_bytes());
                out.extend_from_slice(root);
            }
            LogEntry::Heartbeat { time_ms } => {
                out.push(KIND_HEARTBEAT);
                out.extend_from_slice(&time_ms.to_be_bytes());
            }
        }
        out
    }

    /// Parses an entry; exactly [`EPOCH_ENTRY_LEN`] or [`HEARTBEAT_ENTRY_LEN`]
    /// bytes, anything else is [`KtError::Malformed`].
    pub fn decode(b: &[u8]) -> Result<Self, KtError> {
        let (header, rest) = b.split_first_chunk::<7>().ok_or(KtError::Malformed("log entry header"))?;
        if *header != ENTRY_HEADER {
            return Err(KtError::Malformed("log entry header"));
        }
        let (kind, rest) = rest.split_first().ok_or(KtError::Malformed("log entry kind"))?;
        let (time, rest) = rest.split_first_chunk::<8>().ok_or(KtError::Malformed("log entry length"))?;
        let time_ms = i64::from_be_bytes(*time);
        match *kind {
            KIND_EPOCH => {
                let (epoch, rest) = rest.split_first_chunk::<8>().ok_or(KtError::Malformed("log entry length"))?;
                let root: [u8; 32] = rest.try_into().map_err(|_| KtError::Malformed("log entry length"))?;
                Ok(LogEntry::Epoch { epoch: u64::from_be_bytes(*epoch), root, time_ms })
            }
            KIND_HEARTBEAT if rest.is_empty() => Ok(LogEntry::Heartbeat { time_ms }),
            KIND_HEARTBEAT => Err(KtError::Malformed("log entry length")),
            _ => Err(KtError::Malformed("log entry kind")),
        }
    }

    /// The publisher's claimed time.
    pub fn time_ms(&self) -> i64 {
        match self {
            LogEntry::Epoch { time_ms, .. } | LogEntry::Heartbeat { time_ms } => *time_ms,
        }
    }
}

/// Checks the order of epoch entries in the log: each akd epoch appears once
/// and in consecutive order. `prev` is the epoch of the last epoch entry
/// before this one (`None` if there is none); the first epoch entry may carry
/// any epoch (akd's first published epoch is 1). A repeated or older epoch
/// is [`KtError::EpochRollback`], a skipped one [`KtError::EpochGap`].
pub fn check_epoch_order(prev: Option<u64>, next: u64) -> Result<(), KtError> {
    match prev {
        None => Ok(()),
        Some(p) if p.checked_add(1) == Some(next) => Ok(()),
        Some(p) if next > p => Err(KtError::EpochGap { expected: p.saturating_add(1), found: next }),
        Some(_) => Err(KtError::EpochRollback),
    }
}

/// K5's monotonicity: the akd epoch a client checks proofs against must not
/// be below the highest one it already verified (`EpochRollback`).
pub fn check_epoch(last_verified: Option<u64>, served: u64) -> Result<(), KtError> {
    match last_verified {
        Some(e) if served < e => Err(KtError::EpochRollback),
        _ => Ok(()),
    }
}

/// K7's monotonicity: a label's version must not go below the highest one
/// already verified for it.
pub fn check_version(last_seen: Option<u64>, served: u64) -> Result<(), KtError> {
    match last_seen {
        Some(v) if served < v => Err(KtError::VersionRollback),
        _ => Ok(()),
    }
}

/// A label of the akd directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DirectoryLabel {
    /// An account's device chain: `0x01 ‖ account id` (17 bytes).
    Account(AccountId),
    /// A collection's committed head: `0x02 ‖ account id ‖ collection id`
    /// (33 bytes). The account is part of the label because collection ids
    /// are chosen by clients: another account reusing an id must neither
    /// overwrite this collection's entry nor collide with it.
    Collection(AccountId, CollectionId),
    /// A handle's claim: `0x03 ‖ handle` (4 to 33 bytes; the handle as
    /// [`crate::share::validate_handle`] accepts it). Its value is
    /// `(0, id of the stored claim)`.
    Handle(String),
}

impl DirectoryLabel {
    /// Length of an encoded account label.
    pub const ACCOUNT_LEN: usize = 17;
    /// Length of an encoded collection label.
    pub const COLLECTION_LEN: usize = 33;

    /// The label's bytes (akd label).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::COLLECTION_LEN);
        match self {
            DirectoryLabel::Account(a) => {
                out.push(0x01);
                out.extend_from_slice(&a.0);
            }
            DirectoryLabel::Collection(a, c) => {
                out.push(0x02);
                out.extend_from_slice(&a.0);
                out.extend_from_slice(&c.0);
            }
            DirectoryLabel::Handle(h) => {
                out.push(0x03);
                out.extend_from_slice(h.as_bytes());
            }
        }
        out
    }

    /// Parses a label: exactly 17 bytes for an account, 33 for a
    /// collection, `0x03` and a valid handle for a handle.
    pub fn from_bytes(b: &[u8]) -> Result<Self, KtError> {
        let malformed = || KtError::Malformed("directory label");
        let (tag, rest) = b.split_first().ok_or_else(malformed)?;
        match tag {
            0x01 => Ok(DirectoryLabel::Account(AccountId(rest.try_into().map_err(|_| malformed())?))),
            0x02 => {
                let (account, collection) = rest.split_first_chunk::<16>().ok_or_else(malformed)?;
                Ok(DirectoryLabel::Collection(AccountId(*account), CollectionId(collection.try_into().map_err(|_| malformed())?)))
            }
            0x03 => {
                let handle = core::str::from_utf8(rest).map_err(|_| malformed())?;
                crate::share::validate_handle(handle).map_err(|_| malformed())?;
                Ok(DirectoryLabel::Handle(handle.to_owned()))
            }
            _ => Err(malformed()),
        }
    }
}

/// A value of the akd directory: a sequence number and a hash. For an
/// account: the seq and entry id of the last device chain entry; for a
/// collection: the seq and object id of the committed head revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DirectoryValue {
    /// The sequence number.
    pub seq: u64,
    /// The id of the entry or revision at that sequence number.
    pub hash: [u8; 32],
}

impl DirectoryValue {
    /// Length of an encoded value.
    pub const LEN: usize = 40;

    /// The value's bytes: `u64 seq ‖ hash`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.hash);
        out
    }

    /// Parses exactly 40 bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, KtError> {
        let (seq, hash) = b.split_first_chunk::<8>().ok_or(KtError::Malformed("directory value"))?;
        let hash: [u8; 32] = hash.try_into().map_err(|_| KtError::Malformed("directory value"))?;
        Ok(DirectoryValue { seq: u64::from_be_bytes(*seq), hash })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn entries_round_trip_and_reject_every_other_length() {
        let e = LogEntry::Epoch { epoch: 7, root: [9; 32], time_ms: -5 };
        let h = LogEntry::Heartbeat { time_ms: 1_700_000_000_000 };
        for entry in [e, h] {
            let bytes = entry.encode();
            assert_eq!(LogEntry::decode(&bytes).unwrap(), entry);
            for len in 0..bytes.len() {
                assert!(LogEntry::decode(&bytes[..len]).is_err(), "prefix {len}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(LogEntry::decode(&longer).is_err());
        }
        assert_eq!(e.encode().len(), EPOCH_ENTRY_LEN);
        assert_eq!(h.encode().len(), HEARTBEAT_ENTRY_LEN);
        let mut bad = h.encode();
        bad[7] = 3;
        assert_eq!(LogEntry::decode(&bad), Err(KtError::Malformed("log entry kind")));
        let mut bad = h.encode();
        bad[6] = 8;
        assert!(LogEntry::decode(&bad).is_err());
    }

    #[test]
    fn labels_and_values_round_trip() {
        for (l, len) in [
            (DirectoryLabel::Account(AccountId([1; 16])), DirectoryLabel::ACCOUNT_LEN),
            (DirectoryLabel::Collection(AccountId([1; 16]), CollectionId([2; 16])), DirectoryLabel::COLLECTION_LEN),
        ] {
            let b = l.to_bytes();
            assert_eq!(b.len(), len);
            assert_eq!(DirectoryLabel::from_bytes(&b).unwrap(), l);
            assert!(DirectoryLabel::from_bytes(&b[..16]).is_err());
            assert!(DirectoryLabel::from_bytes(&[b.as_slice(), &[0]].concat()).is_err());
        }
        assert!(DirectoryLabel::from_bytes(&[3; 17]).is_err());
        assert!(DirectoryLabel::from_bytes(&[2; 17]).is_err());
        let v = DirectoryValue { seq: u64::MAX, hash: [7; 32] };
        assert_eq!(DirectoryValue::from_bytes(&v.to_bytes()).unwrap(), v);
        assert!(DirectoryValue::from_bytes(&[0; 41]).is_err());
    }

    #[test]
    fn epoch_order_and_versions() {
        assert!(check_epoch_order(None, 5).is_ok());
        assert!(check_epoch_order(Some(5), 6).is_ok());
        assert_eq!(check_epoch_order(Some(5), 5), Err(KtError::EpochRollback));
        assert_eq!(check_epoch_order(Some(5), 7), Err(KtError::EpochGap { expected: 6, found: 7 }));
        assert_eq!(check_epoch_order(Some(u64::MAX), 0), Err(KtError::EpochRollback));
        assert!(check_epoch(None, 0).is_ok());
        assert!(check_epoch(Some(4), 4).is_ok());
        assert_eq!(check_epoch(Some(4), 3), Err(KtError::EpochRollback));
        assert!(check_version(None, 0).is_ok());
        assert!(check_version(Some(3), 3).is_ok());
        assert_eq!(check_version(Some(3), 2), Err(KtError::VersionRollback));
    }
}
