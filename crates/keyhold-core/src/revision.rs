//! Collection revisions and the history verifier (spec: `format.md`,
//! "Revisions"). A revision names the root listing of the collection's tree,
//! its sequence number and the id of the revision before it, and is signed by
//! the writing device inside its encryption. The server sees only the
//! collection id, sequence number, key epoch and previous id — enough to
//! compare-and-swap the head — and can neither forge nor reorder revisions.
//!
//! [`HistoryVerifier`] remembers the last head a device accepted and refuses
//! anything that does not extend it (SECURITY C5 rollback, C6 fork).

use rand_core::CryptoRng;

use crate::aead::{self, NONCE_LEN, TAG_LEN};
use crate::collection::CollectionKeys;
use crate::device::{DevicePublicKeys, DeviceSecret, SIGNATURE_LEN};
use crate::encoding::{Reader, Writer};
use crate::envelope::{HEADER_LEN, ObjectType, read_header, write_header};
use crate::error::{Error, Result};
use crate::ids::{CollectionId, DeviceId, ObjectId};
use crate::tree::BlobRef;

/// Signature context. FROZEN.
const SIGNATURE_CONTEXT: &[u8] = b"keyhold v1 2026-11 revision signature\0";
/// Length of a revision's cleartext header (before the nonce).
pub const REVISION_HEADER_LEN: usize = HEADER_LEN + 16 + 8 + 4 + 32;
const BODY_LEN: usize = 36 + 16 + 8;
/// Length of a stored revision.
pub const REVISION_LEN: usize = REVISION_HEADER_LEN + NONCE_LEN + BODY_LEN + SIGNATURE_LEN + TAG_LEN;
/// `prev` of a collection's first revision.
pub const GENESIS_PREV: ObjectId = ObjectId([0u8; 32]);

/// The content of a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The collection.
    pub collection: CollectionId,
    /// 0 for the first revision, then +1 each.
    pub seq: u64,
    /// Id of the previous stored revision ([`GENESIS_PREV`] for seq 0).
    pub prev: ObjectId,
    /// The collection key epoch this revision is sealed under.
    pub epoch: u32,
    /// The root listing of the collection's tree.
    pub root: BlobRef,
    /// The device that wrote and signed it.
    pub author: DeviceId,
    /// When the author wrote it, milliseconds since the Unix epoch (the
    /// author's claim; informational only).
    pub time_ms: i64,
}

/// The cleartext fields of a stored revision, readable without keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevisionHeader {
    /// The collection.
    pub collection: CollectionId,
    /// Sequence number.
    pub seq: u64,
    /// Collection key epoch.
    pub epoch: u32,
    /// Previous revision's id.
    pub prev: ObjectId,
}

impl RevisionHeader {
    /// Parses the cleartext header of a stored revision (what the server
    /// checks for compare-and-swap, and what a client reads to pick keys).
    pub fn parse(stored: &[u8]) -> Result<Self> {
        let mut r = Reader::new(stored);
        read_header(&mut r, ObjectType::Revision)?;
        Ok(RevisionHeader { collection: CollectionId(r.array()?), seq: r.u64()?, epoch: r.u32()?, prev: ObjectId(r.array()?) })
    }

    fn write(&self, w: &mut Writer) {
        write_header(w, ObjectType::Revision);
        w.bytes(self.collection.as_bytes()).u64(self.seq).u32(self.epoch).bytes(self.prev.as_bytes());
    }
}

impl Revision {
    fn header(&self) -> RevisionHeader {
        RevisionHeader { collection: self.collection, seq: self.seq, epoch: self.epoch, prev: self.prev }
    }

    fn body(&self) -> Writer {
        let mut w = Writer::with_capacity(BODY_LEN + SIGNATURE_LEN);
        self.root.write(&mut w);
        w.bytes(self.author.as_bytes()).i64(self.time_ms);
        w
    }

    fn signed_message(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(SIGNATURE_CONTEXT.len() + REVISION_HEADER_LEN + BODY_LEN);
        w.bytes(SIGNATURE_CONTEXT);
        self.header().write(&mut w);
        w.bytes(self.body().as_slice());
        w.into_vec()
    }
}

/// A revision whose signature, context and encryption were verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRevision {
    /// The stored revision's object id.
    pub id: ObjectId,
    /// Its content.
    pub revision: Revision,
}

impl VerifiedRevision {
    /// Its place in the history.
    pub fn head(&self) -> Head {
        Head { seq: self.revision.seq, id: self.id }
    }
}

fn revision_key(keys: &CollectionKeys) -> &[u8; 32] {
    keys.revision.expose_secret()
}

/// Signs and seals a revision. The author must be `author`, and the keys
/// those of the revision's collection and epoch.
pub fn seal_revision(
    keys: &CollectionKeys,
    revision: &Revision,
    author: &DeviceSecret,
    rng: &mut impl CryptoRng,
) -> Result<(ObjectId, Vec<u8>)> {
    if revision.collection != keys.collection || revision.epoch != keys.epoch {
        return Err(Error::ContextMismatch("revision keys"));
    }
    if revision.author != author.id() {
        return Err(Error::ContextMismatch("revision author"));
    }
    if (revision.seq == 0) != (revision.prev == GENESIS_PREV) {
        return Err(Error::Malformed("only the first revision has no predecessor"));
    }
    let signature = author.sign(&revision.signed_message());
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let mut w = Writer::with_capacity(REVISION_LEN);
    revision.header().write(&mut w);
    w.bytes(&nonce);
    let mut body = revision.body().into_vec();
    body.extend_from_slice(&signature);
    aead::seal(revision_key(keys), nonce, w.as_slice(), &mut body)?;
    w.bytes(&body);
    let stored = w.into_vec();
    Ok((ObjectId::of(&stored), stored))
}

/// Opens a stored revision of `keys`' collection and epoch, and verifies its
/// signature with the author's key as returned by `device_keys` — which must
/// answer only for devices the caller has verified as enrolled.
pub fn open_revision<'d>(
    keys: &CollectionKeys,
    stored: &[u8],
    device_keys: impl Fn(&DeviceId) -> Option<&'d DevicePublicKeys>,
) -> Result<VerifiedRevision> {
    let header = RevisionHeader::parse(stored)?;
    if header.collection != keys.collection {
        return Err(Error::ContextMismatch("collection"));
    }
    if header.epoch != keys.epoch {
        return Err(Error::ContextMismatch("epoch"));
    }
    if (header.seq == 0) != (header.prev == GENESIS_PREV) {
        return Err(Error::Malformed("only the first revision has no predecessor"));
    }
    let aad = stored.get(..REVISION_HEADER_LEN + NONCE_LEN).ok_or(Error::Truncated)?;
    let mut r = Reader::new(stored.get(REVISION_HEADER_LEN..).ok_or(Error::Truncated)?);
    let nonce = r.array::<NONCE_LEN>()?;
    let mut body = r.take(BODY_LEN + SIGNATURE_LEN + TAG_LEN)?.to_vec();
    r.finish()?;
    let plain = aead::open(revision_key(keys), nonce, aad, &mut body)?;
    let mut r = Reader::new(plain);
    let root = BlobRef::read(&mut r)?;
    let author = DeviceId(r.array()?);
    let time_ms = r.i64()?;
    let signature = r.array::<SIGNATURE_LEN>()?;
    r.finish()?;
    let revision = Revision {
        collection: header.collection,
        seq: header.seq,
        prev: header.prev,
        epoch: header.epoch,
        root,
        author,
        time_ms,
    };
    let key = device_keys(&author).ok_or(Error::UnknownAuthor)?;
    key.verify(&revision.signed_message(), &signature)?;
    Ok(VerifiedRevision { id: ObjectId::of(stored), revision })
}

/// A point in a collection's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Sequence number.
    pub seq: u64,
    /// Stored revision id.
    pub id: ObjectId,
}

/// Remembers the last head this device accepted for one collection and
/// accepts only histories that extend it.
#[derive(Debug, Clone)]
pub struct HistoryVerifier {
    collection: CollectionId,
    last: Option<Head>,
}

impl HistoryVerifier {
    /// A verifier that resumes from `last` (the persisted last-seen head), or
    /// one that has seen nothing yet.
    pub fn new(collection: CollectionId, last: Option<Head>) -> Self {
        HistoryVerifier { collection, last }
    }

    /// The last accepted head, to persist.
    pub fn last(&self) -> Option<Head> {
        self.last
    }

    /// Compares a head offered by the server (or another device) with the
    /// last accepted one. `Ok(true)`: it is newer, fetch and [`extend`] with
    /// the revisions after ours; `Ok(false)`: it is ours. A lower sequence
    /// number is a rollback; the same number with another id is a fork.
    ///
    /// [`extend`]: HistoryVerifier::extend
    pub fn check_offered(&self, offered: Head) -> Result<bool> {
        let Some(last) = self.last else { return Ok(true) };
        if offered.seq < last.seq {
            return Err(Error::Rollback { seen: last.seq, served: offered.seq });
        }
        if offered.seq == last.seq {
            return if offered.id == last.id { Ok(false) } else { Err(Error::Fork { seq: offered.seq }) };
        }
        Ok(true)
    }

    /// Accepts `revisions`, which must be the verified revisions immediately
    /// following the last accepted head, in order. All or nothing: on error
    /// the verifier is unchanged.
    pub fn extend(&mut self, revisions: &[VerifiedRevision]) -> Result<Head> {
        let mut cursor = self.last;
        for rev in revisions {
            let r = &rev.revision;
            if r.collection != self.collection {
                return Err(Error::ContextMismatch("collection"));
            }
            let (expected_seq, expected_prev) = match cursor {
                Some(head) => (head.seq + 1, head.id),
                None => (0, GENESIS_PREV),
            };
            if r.seq < expected_seq {
                if let Some(head) = cursor.filter(|h| h.seq == r.seq) {
                    if head.id != rev.id {
                        return Err(Error::Fork { seq: r.seq });
                    }
                }
                return Err(Error::Rollback { seen: expected_seq.saturating_sub(1), served: r.seq });
            }
            if r.seq > expected_seq {
                return Err(Error::MissingRevisions { after: expected_seq.checked_sub(1) });
            }
            if r.prev != expected_prev {
                return Err(Error::Fork { seq: r.seq });
            }
            cursor = Some(rev.head());
        }
        let head = cursor.ok_or(Error::MissingRevisions { after: None })?;
        self.last = Some(head);
        Ok(head)
    }
}

/// Lets test vectors build revisions no honest device would write.
#[cfg(test)]
pub(crate) mod tests_support {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::{NONCE_LEN, REVISION_HEADER_LEN, revision_key};
    use crate::aead;
    use crate::collection::CollectionKeys;

    pub(crate) fn open_body(keys: &CollectionKeys, stored: &[u8]) -> Vec<u8> {
        let at = REVISION_HEADER_LEN + NONCE_LEN;
        let nonce: [u8; NONCE_LEN] = stored[REVISION_HEADER_LEN..at].try_into().unwrap();
        let mut body = stored[at..].to_vec();
        let len = aead::open(revision_key(keys), nonce, &stored[..at], &mut body).unwrap().len();
        body.truncate(len);
        body
    }

    pub(crate) fn reseal_body(keys: &CollectionKeys, stored: &[u8], body: &[u8]) -> Vec<u8> {
        let at = REVISION_HEADER_LEN + NONCE_LEN;
        let nonce: [u8; NONCE_LEN] = stored[REVISION_HEADER_LEN..at].try_into().unwrap();
        let mut sealed = body.to_vec();
        aead::seal(revision_key(keys), nonce, &stored[..at], &mut sealed).unwrap();
        let mut out = stored[..at].to_vec();
        out.extend_from_slice(&sealed);
        out
    }
}
