"""Blobs, chunking, files, manifests, listings and names (format.md)."""

from dataclasses import dataclass

from .codec import BLOB_TYPES, ObjectType, Reader, envelope, i64, short, u8, u32, u64
from .errors import KeyholdError
from .keys import CollectionKeys
from .primitives import (
    AEAD_TAG_LEN,
    AVG_CHUNK,
    MAX_BLOB_PLAINTEXT,
    MAX_CHUNK,
    MAX_NAME_LEN,
    MIN_CHUNK,
    aead_open,
    aead_seal,
)

BLOB_NONCE = bytes(12)
MAX_MODE = 0o7777
_U64_MAX = (1 << 64) - 1

# --- blobs (format.md, "Blobs") ------------------------------------------------------------------


def blob_aad(keys: CollectionKeys, blob_type: int, blob_id: bytes) -> bytes:
    """59 bytes naming the blob alone (not its pack), so ciphertexts can move between packs."""
    return envelope(blob_type) + keys.collection_id + u32(keys.epoch) + blob_id


def seal_blob(keys: CollectionKeys, blob_type: int, plaintext: bytes) -> tuple[bytes, bytes]:
    """Returns (blob id, sealed blob). Deterministic: equal plaintexts deduplicate."""
    if blob_type not in BLOB_TYPES:
        raise KeyholdError("Malformed", f"0x{blob_type:02x} is not a blob type")
    if len(plaintext) > MAX_BLOB_PLAINTEXT:
        raise KeyholdError("LimitExceeded", "blob plaintext too long")
    blob_id = keys.blob_id(blob_type, plaintext)
    key = keys.blob_key(blob_type, blob_id)
    return blob_id, aead_seal(key, BLOB_NONCE, blob_aad(keys, blob_type, blob_id), plaintext)


def open_blob(keys: CollectionKeys, blob_type: int, blob_id: bytes, sealed: bytes) -> bytes:
    """"Opening" steps 1-4: keys and aad from the *expected* type and id, then the id check."""
    if blob_type not in BLOB_TYPES:
        raise KeyholdError("Malformed", f"0x{blob_type:02x} is not a blob type")
    if len(sealed) > MAX_BLOB_PLAINTEXT + AEAD_TAG_LEN:
        raise KeyholdError("LimitExceeded", "sealed blob too long")
    key = keys.blob_key(blob_type, blob_id)
    plaintext = aead_open(key, BLOB_NONCE, blob_aad(keys, blob_type, blob_id), sealed)
    if keys.blob_id(blob_type, plaintext) != blob_id:
        raise KeyholdError("ContentMismatch", "plaintext does not hash to its id")
    return plaintext


# --- names (format.md, "Names") ------------------------------------------------------------------


def check_name(name: bytes) -> str:
    """Non-UTF-8 is `Malformed`; empty, `.`, `..`, `/`, `\\` or NUL is `InvalidName`."""
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyholdError("Malformed", "name is not UTF-8") from None
    if not 1 <= len(name) <= MAX_NAME_LEN or name in (b".", b"..") or any(c in name for c in b"/\\\0"):
        raise KeyholdError("InvalidName", repr(text))
    return text


def read_name(reader: Reader) -> str:
    """A `short(255)` name: length (`Malformed`), bytes (`Truncated`), UTF-8, then the rules."""
    return check_name(reader.short(MAX_NAME_LEN))


def encode_name(name: str) -> bytes:
    raw = name.encode("utf-8")
    check_name(raw)
    return short(raw, MAX_NAME_LEN)


def check_mode(mode: int) -> None:
    if mode > MAX_MODE:
        raise KeyholdError("Malformed", f"mode 0o{mode:o} has bits above 0o7777")


# --- chunking (format.md, "Chunking") ------------------------------------------------------------

MASK_S = 0x0000D91767537000
MASK_L = 0x0000D91707537000
MASK_S_LS = MASK_S << 1
MASK_L_LS = MASK_L << 1
_U64_MASK = (1 << 64) - 1


def cut(keys: CollectionKeys, data: bytes, start: int) -> int:
    """The normative `cut(src)` with src = data[start:], without copying the rest of the file.
    Returns the length of the chunk starting at `start`."""
    n = len(data) - start
    if n <= MIN_CHUNK:
        return n
    center = AVG_CHUNK
    if n > MAX_CHUNK:
        n = MAX_CHUNK
    elif n < center:
        center = n
    gear, gear_ls = keys.gear, keys.gear_ls
    h = 0
    i = MIN_CHUNK // 2
    # Two bytes per iteration, strict mask before `center`, loose mask after.
    for limit, mask, mask_ls in ((center // 2, MASK_S, MASK_S_LS), (n // 2, MASK_L, MASK_L_LS)):
        while i < limit:
            a = start + 2 * i
            h = ((h << 2) + gear_ls[data[a]]) & _U64_MASK
            if h & mask_ls == 0:
                return 2 * i
            h = (h + gear[data[a + 1]]) & _U64_MASK
            if h & mask == 0:
                return 2 * i + 1
            i += 1
    return n


def chunk_lengths(keys: CollectionKeys, content: bytes) -> list[int]:
    """Cut the whole file. Cutting the complete buffer gives the same boundaries as the streaming
    encryptor, since `cut` never reads past MAX_CHUNK bytes from a chunk's start."""
    lengths = []
    start = 0
    while start < len(content):
        length = cut(keys, content, start)
        lengths.append(length)
        start += length
    return lengths


# --- manifests (format.md, "Manifests") ----------------------------------------------------------

CHUNK_REF_LEN = 36


@dataclass(frozen=True)
class ChunkRef:
    blob_id: bytes
    length: int


@dataclass(frozen=True)
class Manifest:
    file_id: bytes
    version: int
    name: str
    mode: int
    mtime_ns: int
    size: int
    chunks: tuple[ChunkRef, ...]

    def encode(self) -> bytes:
        check_mode(self.mode)
        out = [self.file_id, u64(self.version), encode_name(self.name), u32(self.mode)]
        out += [i64(self.mtime_ns), u64(self.size), u32(len(self.chunks))]
        out += [c.blob_id + u32(c.length) for c in self.chunks]
        encoded = b"".join(out)
        if len(encoded) > MAX_BLOB_PLAINTEXT:
            raise KeyholdError("LimitExceeded", "manifest too long")
        return encoded

    @staticmethod
    def decode(plaintext: bytes) -> "Manifest":
        reader = Reader(plaintext)
        file_id = reader.take(16)  # 1
        version = reader.u64()
        name = read_name(reader)  # 2
        mode = reader.u32()  # 3
        check_mode(mode)
        mtime_ns = reader.i64()  # 4
        size = reader.u64()
        count = reader.count(CHUNK_REF_LEN)
        chunks = []
        total = 0
        for _ in range(count):  # 5
            chunk_id = reader.take(32)
            length = reader.u32()
            if length == 0 or length > MAX_CHUNK:
                raise KeyholdError("Malformed", f"chunk length {length}")
            total += length
            if total > _U64_MAX:
                raise KeyholdError("Malformed", "chunk lengths overflow u64")
            chunks.append(ChunkRef(chunk_id, length))
        reader.finish()  # 6
        if total != size:  # 7
            raise KeyholdError("Malformed", f"chunk lengths sum to {total}, size says {size}")
        return Manifest(file_id, version, name, mode, mtime_ns, size, tuple(chunks))


# --- files (format.md, "Files") ------------------------------------------------------------------


@dataclass(frozen=True)
class FileAttributes:
    file_id: bytes
    version: int
    name: str
    mode: int
    mtime_ns: int


@dataclass(frozen=True)
class EncryptedFile:
    sealed_chunks: tuple[bytes, ...]
    manifest: Manifest
    manifest_plaintext: bytes
    manifest_id: bytes
    manifest_sealed: bytes


def encrypt_file(keys: CollectionKeys, content: bytes, attributes: FileAttributes) -> EncryptedFile:
    chunk_refs, sealed_chunks = [], []
    start = 0
    for length in chunk_lengths(keys, content):
        chunk_id, sealed = seal_blob(keys, ObjectType.CHUNK, content[start : start + length])
        chunk_refs.append(ChunkRef(chunk_id, length))
        sealed_chunks.append(sealed)
        start += length
    manifest = Manifest(
        attributes.file_id, attributes.version, attributes.name, attributes.mode,
        attributes.mtime_ns, len(content), tuple(chunk_refs),
    )
    plaintext = manifest.encode()
    manifest_id, manifest_sealed = seal_blob(keys, ObjectType.MANIFEST, plaintext)
    return EncryptedFile(tuple(sealed_chunks), manifest, plaintext, manifest_id, manifest_sealed)


class FileDecryptor:
    """Releases a file chunk by chunk, each only after it authenticated at its position."""

    def __init__(self, keys: CollectionKeys, manifest: Manifest):
        self.keys = keys
        self.manifest = manifest
        self.position = 0

    def push(self, sealed_chunk: bytes) -> bytes:
        chunks = self.manifest.chunks
        if self.position == len(chunks):  # 1
            raise KeyholdError("UnexpectedChunk")
        expected = chunks[self.position]
        plaintext = open_blob(self.keys, ObjectType.CHUNK, expected.blob_id, sealed_chunk)  # 2
        if len(plaintext) != expected.length:  # 3
            raise KeyholdError("ContentMismatch", "chunk length differs from the manifest's")
        self.position += 1  # 4; a failed step above leaves the position unchanged
        return plaintext

    def finish(self) -> None:
        if self.position != len(self.manifest.chunks):
            raise KeyholdError("MissingChunks", f"{self.position} of {len(self.manifest.chunks)} chunks read")


# --- listings (format.md, "Listings") ------------------------------------------------------------

ENTRY_FILE = 0x01
ENTRY_FOLDER = 0x02
MIN_LISTING_ENTRY_LEN = 60  # 59 + a one-byte name


@dataclass(frozen=True)
class ListingEntry:
    kind: int
    name: str
    mode: int
    mtime_ns: int
    size: int
    target_epoch: int
    target_id: bytes

    def check(self) -> None:
        """The writer's per-entry checks, in order."""
        check_name(self.name.encode("utf-8"))
        check_mode(self.mode)
        if self.kind == ENTRY_FOLDER and self.size != 0:
            raise KeyholdError("Malformed", "folder with a size")

    def encode(self) -> bytes:
        return (
            u8(self.kind) + short(self.name.encode("utf-8"), MAX_NAME_LEN) + u32(self.mode)
            + i64(self.mtime_ns) + u64(self.size) + u32(self.target_epoch) + self.target_id
        )


def encode_listing(entries: list[ListingEntry]) -> bytes:
    """The writer: sort by name bytes, refuse duplicates, then check each entry."""
    ordered = sorted(entries, key=lambda e: e.name.encode("utf-8"))
    names = [e.name.encode("utf-8") for e in ordered]
    if len(set(names)) != len(names):
        raise KeyholdError("Malformed", "two entries with the same name")
    for entry in ordered:
        entry.check()
    return u32(len(ordered)) + b"".join(e.encode() for e in ordered)


def decode_listing(plaintext: bytes) -> list[ListingEntry]:
    reader = Reader(plaintext)
    count = reader.count(MIN_LISTING_ENTRY_LEN)
    entries: list[ListingEntry] = []
    previous_name: bytes | None = None
    for _ in range(count):
        kind = reader.u8()
        if kind not in (ENTRY_FILE, ENTRY_FOLDER):
            raise KeyholdError("Malformed", f"entry kind 0x{kind:02x}")
        name = read_name(reader)
        mode = reader.u32()
        check_mode(mode)
        mtime_ns = reader.i64()
        size = reader.u64()
        if kind == ENTRY_FOLDER and size != 0:
            raise KeyholdError("Malformed", "folder with a size")
        target_epoch = reader.u32()
        target_id = reader.take(32)
        name_bytes = name.encode("utf-8")
        if previous_name is not None and name_bytes <= previous_name:
            raise KeyholdError("Malformed", "entries unsorted or duplicated")
        previous_name = name_bytes
        entries.append(ListingEntry(kind, name, mode, mtime_ns, size, target_epoch, target_id))
    reader.finish()
    return entries


def check_entry_matches_manifest(entry: ListingEntry, manifest: Manifest) -> None:
    """"Entry and manifest agreement" (SECURITY.md C3)."""
    if entry.kind != ENTRY_FILE or (entry.name, entry.mode, entry.mtime_ns, entry.size) != (
        manifest.name, manifest.mode, manifest.mtime_ns, manifest.size,
    ):
        raise KeyholdError("Malformed", "listing entry disagrees with its manifest")

