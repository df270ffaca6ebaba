"""Packs: many sealed blobs, an encrypted index and Padmé padding (format.md, "Packs")."""

from dataclasses import dataclass

from .codec import BLOB_TYPES, ObjectType, Reader, envelope, expect_equal, u8, u32
from .errors import KeyholdError
from .keys import CollectionKeys
from .primitives import AEAD_TAG_LEN, MAX_PACK_LEN, aead_open, aead_seal, nonce_from_int, padme

PREFIX_LEN = 59  # envelope (7) || collection id (16) || epoch (4) || salt (32)
SALT_LEN = 32
INDEX_ENTRY_LEN = 41  # type (1) || blob id (32) || offset (4) || length (4)
TRAILER_PLAINTEXT_LEN = 8
SEALED_TRAILER_LEN = TRAILER_PLAINTEXT_LEN + AEAD_TAG_LEN  # 24
INDEX_NONCE = nonce_from_int(0)
TRAILER_NONCE = nonce_from_int(1)
MAX_UNPADDED_PACK_LEN = MAX_PACK_LEN * 7 // 8  # keeps the padded pack within MAX_PACK_LEN


@dataclass(frozen=True)
class PackEntry:
    blob_type: int
    blob_id: bytes
    offset: int
    length: int

    def encode(self) -> bytes:
        return u8(self.blob_type) + self.blob_id + u32(self.offset) + u32(self.length)


def _prefix(keys: CollectionKeys, salt: bytes) -> bytes:
    return envelope(ObjectType.PACK) + keys.collection_id + u32(keys.epoch) + salt


class PackWriter:
    """Appends sealed blobs of one collection epoch, then seals index and trailer."""

    def __init__(self, keys: CollectionKeys, salt: bytes):
        if len(salt) != SALT_LEN:
            raise ValueError("a pack salt is 32 bytes")
        self.keys = keys
        self.prefix = _prefix(keys, salt)
        self.pack_key = keys.pack_key(salt)
        self.blobs: list[bytes] = []
        self.entries: list[PackEntry] = []
        self.end = PREFIX_LEN  # X: where the blob area ends so far

    def _unpadded_len(self, blob_area_end: int, entry_count: int) -> int:
        """U = X + 4 + 41E + 16 + 24."""
        return blob_area_end + 4 + INDEX_ENTRY_LEN * entry_count + AEAD_TAG_LEN + SEALED_TRAILER_LEN

    def add(self, blob_type: int, blob_id: bytes, sealed: bytes) -> None:
        if blob_type not in BLOB_TYPES:
            raise KeyholdError("Malformed", "only blobs go into packs")
        if self._unpadded_len(self.end + len(sealed), len(self.entries) + 1) > MAX_UNPADDED_PACK_LEN:
            raise KeyholdError("LimitExceeded", "pack full")
        self.entries.append(PackEntry(blob_type, blob_id, self.end, len(sealed)))
        self.blobs.append(sealed)
        self.end += len(sealed)

    def finish(self) -> bytes:
        unpadded = self._unpadded_len(self.end, len(self.entries))
        padding = bytes(padme(unpadded) - unpadded)
        index = u32(len(self.entries)) + b"".join(e.encode() for e in self.entries) + padding
        sealed_index = aead_seal(self.pack_key, INDEX_NONCE, self.prefix, index)
        trailer = u32(self.end) + u32(len(sealed_index))
        sealed_trailer = aead_seal(self.pack_key, TRAILER_NONCE, self.prefix, trailer)
        return self.prefix + b"".join(self.blobs) + sealed_index + sealed_trailer


def open_pack(keys: CollectionKeys, pack: bytes) -> list[PackEntry]:
    """"Opening a whole pack", steps 1-10. The caller has checked the bytes against the pack id."""
    total = len(pack)
    if total > MAX_PACK_LEN:  # 1
        raise KeyholdError("LimitExceeded", "pack too long")
    if total < PREFIX_LEN or total - SEALED_TRAILER_LEN < PREFIX_LEN:  # 2
        raise KeyholdError("Truncated", "pack shorter than its prefix and trailer")
    reader = Reader(pack[:PREFIX_LEN])  # 3
    reader.envelope(ObjectType.PACK)
    expect_equal("collection id", reader.take(16), keys.collection_id)
    expect_equal("epoch", reader.u32(), keys.epoch)
    salt = reader.take(SALT_LEN)
    prefix = pack[:PREFIX_LEN]
    pack_key = keys.pack_key(salt)

    trailer = Reader(aead_open(pack_key, TRAILER_NONCE, prefix, pack[-SEALED_TRAILER_LEN:]))  # 4
    index_offset, sealed_index_len = trailer.u32(), trailer.u32()
    if index_offset < PREFIX_LEN or index_offset + sealed_index_len + SEALED_TRAILER_LEN != total:  # 5
        raise KeyholdError("Malformed", "trailer does not locate the index")
    index = Reader(aead_open(pack_key, INDEX_NONCE, prefix, pack[index_offset : index_offset + sealed_index_len]))  # 6

    count = index.count(INDEX_ENTRY_LEN)  # 7
    entries = []
    expected_offset = PREFIX_LEN
    for _ in range(count):  # 8
        entry = PackEntry(index.u8(), index.take(32), index.u32(), index.u32())
        if entry.blob_type not in BLOB_TYPES:
            raise KeyholdError("Malformed", f"index entry of type 0x{entry.blob_type:02x}")
        if entry.offset != expected_offset or entry.length < AEAD_TAG_LEN:
            raise KeyholdError("Malformed", "index entries do not tile the blob area")
        entries.append(entry)
        expected_offset = entry.offset + entry.length
    if expected_offset != index_offset:  # 9
        raise KeyholdError("Malformed", "blob area does not end at the index")
    if any(index.take(index.remaining)):  # 10
        raise KeyholdError("Malformed", "index padding is not zero")
    return entries


def blob_bytes(pack: bytes, entry: PackEntry) -> bytes:
    return pack[entry.offset : entry.offset + entry.length]
