"""Revisions and history verification (format.md, "Revisions", "History verification")."""

from dataclasses import dataclass
from typing import Protocol

from .codec import ObjectType, Reader, envelope, expect_equal, i64, u32, u64
from .ed25519 import verify_strict
from .errors import KeyholdError
from .keys import CollectionKeys, DeviceKeys
from .primitives import GENESIS_PREV, H, Label, aead_open, aead_seal

REVISION_HEADER_LEN = 67
REVISION_AAD_LEN = 79  # header || nonce
SEALED_BODY_LEN = 140
SIGNED_BODY_LEN = 60  # root epoch, root id, author, time


class AuthorDirectory(Protocol):
    """What opening a revision needs to know about devices: a verified device chain, or a test
    stand-in for one."""

    def enrolled_signing_key(self, device_id: bytes) -> bytes | None:
        """The Ed25519 key of a device the chain enrolled (revoked ones included), else None."""

    def may_author(self, device_id: bytes, collection_id: bytes, seq: int) -> bool:
        """devices.md, "Revisions by revoked devices"."""


@dataclass(frozen=True)
class Revision:
    collection_id: bytes
    seq: int
    epoch: int
    prev: bytes
    nonce: bytes
    root_epoch: int
    root_id: bytes
    author: bytes
    time_ms: int
    signature: bytes
    id: bytes


def _header(collection_id: bytes, seq: int, epoch: int, prev: bytes) -> bytes:
    return envelope(ObjectType.REVISION) + collection_id + u64(seq) + u32(epoch) + prev


def _signed_body(root_epoch: int, root_id: bytes, author: bytes, time_ms: int) -> bytes:
    return u32(root_epoch) + root_id + author + i64(time_ms)


def seal_revision(
    keys: CollectionKeys, author: DeviceKeys, seq: int, prev: bytes, root_epoch: int, root_id: bytes,
    time_ms: int, nonce: bytes,
) -> bytes:
    """The writer names itself as author and signs; `nonce` is its 12 random bytes."""
    if (seq == 0) != (prev == GENESIS_PREV):
        raise KeyholdError("Malformed", "seq 0 if and only if prev is GENESIS_PREV")
    header = _header(keys.collection_id, seq, keys.epoch, prev)
    body = _signed_body(root_epoch, root_id, author.device_id, time_ms)
    signature = author.sign(Label.REVISION_SIGNATURE + header + body)
    aad = header + nonce
    return aad + aead_seal(keys.revision_key, nonce, aad, body + signature)


def open_revision(keys: CollectionKeys, stored: bytes, authors: AuthorDirectory) -> Revision:
    """"Opening" steps 1-9."""
    reader = Reader(stored)
    reader.envelope(ObjectType.REVISION)  # 1
    collection_id, seq, epoch, prev = reader.take(16), reader.u64(), reader.u32(), reader.take(32)
    expect_equal("collection id", collection_id, keys.collection_id)  # 2
    expect_equal("epoch", epoch, keys.epoch)
    if (seq == 0) != (prev == GENESIS_PREV):  # 3
        raise KeyholdError("Malformed", "seq 0 if and only if prev is GENESIS_PREV")
    nonce = reader.take(12)  # 4
    sealed_body = reader.take(SEALED_BODY_LEN)
    reader.finish()
    body = Reader(aead_open(keys.revision_key, nonce, stored[:REVISION_AAD_LEN], sealed_body))  # 5
    root_epoch, root_id, author, time_ms = body.u32(), body.take(32), body.take(16), body.i64()  # 6
    signature = body.take(64)
    signing_key = authors.enrolled_signing_key(author)  # 7
    if signing_key is None:
        raise KeyholdError("UnknownAuthor", "author is not an enrolled device")
    message = Label.REVISION_SIGNATURE + stored[:REVISION_HEADER_LEN] + _signed_body(root_epoch, root_id, author, time_ms)
    verify_strict(signing_key, message, signature)  # 8
    if not authors.may_author(author, collection_id, seq):  # 9
        raise KeyholdError("UnknownAuthor", "revoked author beyond its cutoff")
    return Revision(collection_id, seq, epoch, prev, nonce, root_epoch, root_id, author, time_ms, signature, H(stored))


@dataclass(frozen=True)
class Head:
    seq: int
    id: bytes


class History:
    """A device's view of one collection's history: the last head it accepted."""

    def __init__(self, collection_id: bytes, last: Head | None = None):
        self.collection_id = collection_id
        self.last = last

    def check_offered_head(self, offered: Head) -> bool:
        """"Offered head". True if it is new (fetch and extend), False if it is the same head."""
        if self.last is None:
            return True
        if offered.seq < self.last.seq:
            raise KeyholdError("Rollback", f"offered seq {offered.seq} < accepted {self.last.seq}")
        if offered.seq == self.last.seq:
            if offered.id != self.last.id:
                raise KeyholdError("Fork", "another revision at the accepted seq")
            return False
        return True

    def extend(self, revisions: list[Revision]) -> None:
        """"Extend": all or nothing; on any error the last head is unchanged."""
        cursor = self.last
        for r in revisions:
            if r.collection_id != self.collection_id:
                raise KeyholdError("ContextMismatch", "revision of another collection")
            expected_seq, expected_prev = (cursor.seq + 1, cursor.id) if cursor else (0, GENESIS_PREV)
            if r.seq < expected_seq:
                if cursor is not None and cursor.seq == r.seq and cursor.id != r.id:
                    raise KeyholdError("Fork", f"another revision {r.seq}")
                raise KeyholdError("Rollback", f"revision {r.seq} is not after the head")
            if r.seq > expected_seq:
                raise KeyholdError("MissingRevisions", f"expected seq {expected_seq}, got {r.seq}")
            if r.prev != expected_prev:
                raise KeyholdError("Fork", f"revision {r.seq} does not extend the head")
            cursor = Head(r.seq, r.id)
        if cursor is None:
            raise KeyholdError("MissingRevisions", "no revision")
        self.last = cursor
