"""Key hierarchy and key wraps (keys.md; devices.md, "Root key commitments", "The recovery key as
a device", "Previous root key wraps").
"""

from dataclasses import dataclass
from functools import cached_property

from argon2.low_level import Type, hash_secret_raw

from .codec import ObjectType, Reader, envelope, expect_equal, u8, u32
from .ed25519 import SigningKey, parse_public_key
from .errors import KeyholdError
from .primitives import DK, DK_xof, KH, Context, Label, aead_open, aead_seal
from .xwing import (
    XWING_CIPHERTEXT_LEN,
    XWING_PUBLIC_KEY_LEN,
    XWingKey,
    check_mlkem_encapsulation_key,
    hpke_open_base,
)

ED25519_PUBLIC_KEY_LEN = 32
DEVICE_PUBLIC_KEYS_LEN = ED25519_PUBLIC_KEY_LEN + XWING_PUBLIC_KEY_LEN  # 1248
DEVICE_ID_LEN = 16
GEAR_WORDS = 256
_U64_MASK = (1 << 64) - 1


# --- collection epoch keys (keys.md, "Derivations") ----------------------------------------------


@dataclass(frozen=True)
class CollectionKeys:
    """The keys of one collection key epoch, all derived from M = ck || cid || u32(e)."""

    collection_key: bytes
    collection_id: bytes
    epoch: int

    @cached_property
    def material(self) -> bytes:
        return self.collection_key + self.collection_id + u32(self.epoch)

    @cached_property
    def blob_id_key(self) -> bytes:
        return DK(Context.BLOB_ID_KEY, self.material)

    @cached_property
    def blob_key_root(self) -> bytes:
        return DK(Context.BLOB_KEY_ROOT, self.material)

    @cached_property
    def pack_key_root(self) -> bytes:
        return DK(Context.PACK_KEY_ROOT, self.material)

    @cached_property
    def revision_key(self) -> bytes:
        return DK(Context.REVISION_KEY, self.material)

    @cached_property
    def gear(self) -> tuple[int, ...]:
        """keys.md, "Chunker gear table": 256 big-endian u64 words of the XOF output."""
        seed = DK_xof(Context.CHUNKER_GEAR_TABLE, self.material, 8 * GEAR_WORDS)
        return tuple(int.from_bytes(seed[8 * i : 8 * i + 8], "big") for i in range(GEAR_WORDS))

    @cached_property
    def gear_ls(self) -> tuple[int, ...]:
        return tuple((word << 1) & _U64_MASK for word in self.gear)

    def blob_id(self, blob_type: int, plaintext: bytes) -> bytes:
        return KH(self.blob_id_key, u8(blob_type) + plaintext)

    def blob_key(self, blob_type: int, blob_id: bytes) -> bytes:
        return DK(Context.BLOB_KEY, self.blob_key_root + u8(blob_type) + blob_id)

    def pack_key(self, salt: bytes) -> bytes:
        return DK(Context.PACK_KEY, self.pack_key_root + salt)


# --- account root key derivations ----------------------------------------------------------------


def collection_wrap_kek(root_key: bytes) -> bytes:
    return DK(Context.COLLECTION_WRAP_KEK, root_key)


def previous_root_wrap_kek(root_key: bytes) -> bytes:
    return DK(Context.PREVIOUS_ROOT_WRAP_KEK, root_key)


def named_collection_id(root_key: bytes, name: str) -> bytes:
    """keys.md, "Named collections": the name's UTF-8 bytes exactly, placed last."""
    return DK(Context.NAMED_COLLECTION_ID, root_key + name.encode("utf-8"))[:16]


def root_commitment(root_key: bytes, account_id: bytes, account_epoch: int) -> bytes:
    return DK(Context.ROOT_KEY_COMMITMENT, root_key + account_id + u32(account_epoch))


# --- devices (keys.md, "Device keys") ------------------------------------------------------------


def device_id_of(public_keys: bytes) -> bytes:
    return DK(Context.DEVICE_ID, public_keys)[:DEVICE_ID_LEN]


@dataclass(frozen=True)
class DevicePublicKeys:
    """1248 bytes: Ed25519 public key || X-Wing public key (ek_M || pk_X), already checked."""

    raw: bytes

    @property
    def signing_key(self) -> bytes:
        return self.raw[:ED25519_PUBLIC_KEY_LEN]

    @cached_property
    def device_id(self) -> bytes:
        return device_id_of(self.raw)


def parse_device_public_keys(data: bytes) -> DevicePublicKeys:
    """keys.md, "Device keys", the reader's four steps in order."""
    reader = Reader(data)
    parse_public_key(reader.take(ED25519_PUBLIC_KEY_LEN))  # steps 1-2
    xwing_public_key = reader.take(XWING_PUBLIC_KEY_LEN)  # step 3
    check_mlkem_encapsulation_key(xwing_public_key[: XWING_PUBLIC_KEY_LEN - 32])
    reader.finish()  # step 4
    return DevicePublicKeys(bytes(data))


class DeviceKeys:
    """A device's secret keys, from its signing seed and KEM seed."""

    def __init__(self, signing_seed: bytes, kem_seed: bytes):
        self.signing = SigningKey(signing_seed)
        self.kem = XWingKey(kem_seed)
        self.public = DevicePublicKeys(self.signing.public_key + self.kem.public_key)

    @property
    def device_id(self) -> bytes:
        return self.public.device_id

    def sign(self, message: bytes) -> bytes:
        return self.signing.sign(message)


# --- device wraps (keys.md, "Device wraps") ------------------------------------------------------

ROOT_KEY_PURPOSE = 0x01
DEVICE_WRAP_AAD_LEN = 44
DEVICE_WRAP_CT_LEN = 48


@dataclass(frozen=True)
class DeviceWrap:
    account_id: bytes
    device_id: bytes
    epoch: int
    enc: bytes
    ct: bytes

    @property
    def aad(self) -> bytes:
        return (
            envelope(ObjectType.DEVICE_WRAP)
            + self.account_id
            + self.device_id
            + u8(ROOT_KEY_PURPOSE)
            + u32(self.epoch)
        )


def parse_device_wrap(stored: bytes, device_id: bytes, account_id: bytes, epoch: int) -> DeviceWrap:
    """Opening steps 1-7: everything that needs no secret key."""
    reader = Reader(stored)
    reader.envelope(ObjectType.DEVICE_WRAP)
    expect_equal("account id", reader.take(16), account_id)
    expect_equal("device id", reader.take(16), device_id)
    expect_equal("purpose", reader.u8(), ROOT_KEY_PURPOSE)
    expect_equal("account key epoch", reader.u32(), epoch)
    enc = reader.take(XWING_CIPHERTEXT_LEN)
    ct = reader.take(DEVICE_WRAP_CT_LEN)
    reader.finish()
    return DeviceWrap(account_id, device_id, epoch, enc, ct)


def open_device_wrap(stored: bytes, device: DeviceKeys, account_id: bytes, epoch: int) -> bytes:
    wrap = parse_device_wrap(stored, device.device_id, account_id, epoch)
    return hpke_open_base(device.kem, wrap.enc, Label.DEVICE_WRAP_INFO, wrap.aad, wrap.ct)  # step 8


# --- collection key wraps (keys.md, "Collection key wraps") --------------------------------------


def _collection_wrap_header(account_id: bytes, collection_id: bytes, collection_epoch: int, account_epoch: int) -> bytes:
    return (
        envelope(ObjectType.COLLECTION_WRAP)
        + account_id
        + collection_id
        + u32(collection_epoch)
        + u32(account_epoch)
    )


def seal_collection_wrap(
    root_key: bytes, account_id: bytes, collection_id: bytes, collection_epoch: int, account_epoch: int,
    collection_key: bytes, nonce: bytes,
) -> bytes:
    aad = _collection_wrap_header(account_id, collection_id, collection_epoch, account_epoch) + nonce
    return aad + aead_seal(collection_wrap_kek(root_key), nonce, aad, collection_key)


def open_collection_wrap(
    stored: bytes, root_key: bytes, account_id: bytes, collection_id: bytes, collection_epoch: int, account_epoch: int,
) -> bytes:
    reader = Reader(stored)
    reader.envelope(ObjectType.COLLECTION_WRAP)
    expect_equal("account id", reader.take(16), account_id)
    expect_equal("collection id", reader.take(16), collection_id)
    expect_equal("collection epoch", reader.u32(), collection_epoch)
    expect_equal("account epoch", reader.u32(), account_epoch)
    nonce = reader.take(12)
    ct = reader.take(48)
    reader.finish()
    return aead_open(collection_wrap_kek(root_key), nonce, stored[:59], ct)


# --- previous root key wraps (devices.md, "Previous root key wraps") -----------------------------


def seal_previous_root_wrap(current_root_key: bytes, account_id: bytes, epoch: int, previous_root_key: bytes, nonce: bytes) -> bytes:
    if epoch == 0:
        raise KeyholdError("ContextMismatch", "epoch 0 has no previous root key")
    aad = envelope(ObjectType.PREVIOUS_ROOT_WRAP) + account_id + u32(epoch) + nonce
    return aad + aead_seal(previous_root_wrap_kek(current_root_key), nonce, aad, previous_root_key)


def open_previous_root_wrap(stored: bytes, current_root_key: bytes, account_id: bytes, epoch: int) -> bytes:
    """Returns the root key of `epoch - 1`; the caller still owes it `check_root_key`."""
    reader = Reader(stored)
    reader.envelope(ObjectType.PREVIOUS_ROOT_WRAP)
    expect_equal("account id", reader.take(16), account_id)
    expect_equal("epoch", reader.u32(), epoch)
    nonce = reader.take(12)
    ct = reader.take(48)
    reader.finish()
    return aead_open(previous_root_wrap_kek(current_root_key), nonce, stored[:39], ct)


# --- the recovery key (keys.md, "Recovery key") --------------------------------------------------

CROCKFORD_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_ALIASES = {"O": "0", "I": "1", "L": "1"}
RECOVERY_SECRET_LEN = 32
RECOVERY_CHECKSUM_LEN = 3
_RECOVERY_IGNORED = "- \t\r\n"
# The Unicode White_Space property (what Rust's `str::trim` strips). Python's `str.strip()` differs:
# it also strips U+001C..U+001F, which are not white space.
UNICODE_WHITE_SPACE = (
    "\u0009\u000a\u000b\u000c\u000d\u0020\u0085\u00a0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)
_ALLOWED_SYMBOL_COUNTS_MOD_8 = {0, 2, 4, 5, 7}  # the counts unpadded base32 can produce


def recovery_checksum(secret: bytes) -> bytes:
    return DK(Context.RECOVERY_CHECKSUM, secret)[:RECOVERY_CHECKSUM_LEN]


def recovery_key_display(secret: bytes) -> str:
    raw = secret + recovery_checksum(secret)
    bits = int.from_bytes(raw, "big")
    symbol_count = len(raw) * 8 // 5  # 280 bits = 56 symbols exactly
    symbols = "".join(
        CROCKFORD_ALPHABET[(bits >> (5 * (symbol_count - 1 - i))) & 31] for i in range(symbol_count)
    )
    return "-".join(symbols[i : i + 4] for i in range(0, len(symbols), 4))


def crockford_symbol_value(char: str) -> int | None:
    """A character read case-insensitively, with O read as 0 and I, L as 1; None if outside the
    alphabet. Only ASCII letters are case-folded: Python's `str.upper()` would turn U+0131 (ı)
    into I and U+017F (ſ) into S, which the spec refuses."""
    if not char.isascii():
        return None
    upper = char.upper()
    upper = _CROCKFORD_ALIASES.get(upper, upper)
    index = CROCKFORD_ALPHABET.find(upper)
    return index if index >= 0 else None


def parse_recovery_key(text: str) -> bytes:
    """keys.md, "Recovery key", parsing steps 1-6; every failure is `InvalidRecoveryKey`."""
    symbols = []
    for char in text.strip(UNICODE_WHITE_SPACE):  # step 1
        if char in _RECOVERY_IGNORED:  # step 2
            continue
        value = crockford_symbol_value(char)  # step 3
        if value is None:
            raise KeyholdError("InvalidRecoveryKey", f"character {char!r} is not in the alphabet")
        symbols.append(value)
    if len(symbols) % 8 not in _ALLOWED_SYMBOL_COUNTS_MOD_8:  # step 4
        raise KeyholdError("InvalidRecoveryKey", f"{len(symbols)} symbols is no base32 length")
    bits = 0
    for value in symbols:
        bits = (bits << 5) | value
    spare_bits = len(symbols) * 5 % 8
    if bits & ((1 << spare_bits) - 1):
        raise KeyholdError("InvalidRecoveryKey", "bits beyond the last whole byte are not zero")
    raw = (bits >> spare_bits).to_bytes(len(symbols) * 5 // 8, "big")
    if len(raw) != RECOVERY_SECRET_LEN + RECOVERY_CHECKSUM_LEN:  # step 5
        raise KeyholdError("InvalidRecoveryKey", f"{len(raw)} bytes, expected 35")
    secret = raw[:RECOVERY_SECRET_LEN]
    if recovery_checksum(secret) != raw[RECOVERY_SECRET_LEN:]:  # step 6
        raise KeyholdError("InvalidRecoveryKey", "checksum mismatch")
    return secret


def recovery_auth_seed(secret: bytes) -> bytes:
    return DK(Context.RECOVERY_AUTH_SEED, secret)


def recovery_kem_seed(secret: bytes) -> bytes:
    return DK(Context.RECOVERY_KEM_SEED, secret)


def recovery_locator(secret: bytes) -> bytes:
    return DK(Context.RECOVERY_LOCATOR, secret)


def recovery_device(secret: bytes) -> DeviceKeys:
    """devices.md, "The recovery key as a device"."""
    return DeviceKeys(recovery_auth_seed(secret), recovery_kem_seed(secret))


# --- recovery wraps (keys.md, "Recovery wraps") --------------------------------------------------


@dataclass(frozen=True)
class Argon2Params:
    memory_kib: int
    passes: int
    lanes: int


ARGON2_DEFAULT = Argon2Params(65_536, 3, 1)
ARGON2_FLOOR = Argon2Params(65_536, 2, 1)
ARGON2_CEILING = Argon2Params(524_288, 8, 4)


def check_argon2_params(params: Argon2Params) -> None:
    """Below the floor in any parameter is `KdfTooWeak`; only then, above the ceiling in any is
    `KdfTooCostly`. Done before Argon2id runs, so a server cannot make a client spend."""
    fields = ("memory_kib", "passes", "lanes")
    if any(getattr(params, f) < getattr(ARGON2_FLOOR, f) for f in fields):
        raise KeyholdError("KdfTooWeak", str(params))
    if any(getattr(params, f) > getattr(ARGON2_CEILING, f) for f in fields):
        raise KeyholdError("KdfTooCostly", str(params))


def recovery_wrap_kek(secret: bytes, salt: bytes, params: Argon2Params) -> bytes:
    stretched = hash_secret_raw(
        secret=secret,  # Argon2's "password" input (P); its secret K and data X stay empty
        salt=salt,
        time_cost=params.passes,
        memory_cost=params.memory_kib,
        parallelism=params.lanes,
        hash_len=32,
        type=Type.ID,
        version=0x13,
    )
    return DK(Context.RECOVERY_WRAP_KEK, stretched)


def seal_recovery_wrap(
    secret: bytes, account_id: bytes, epoch: int, root_key: bytes, salt: bytes, nonce: bytes,
    params: Argon2Params = ARGON2_DEFAULT,
) -> bytes:
    check_argon2_params(params)
    aad = (
        envelope(ObjectType.RECOVERY_WRAP) + account_id + u32(epoch)
        + u32(params.memory_kib) + u32(params.passes) + u32(params.lanes) + salt + nonce
    )
    return aad + aead_seal(recovery_wrap_kek(secret, salt, params), nonce, aad, root_key)


def open_recovery_wrap(stored: bytes, secret: bytes, account_id: bytes, epoch: int) -> bytes:
    reader = Reader(stored)
    reader.envelope(ObjectType.RECOVERY_WRAP)
    expect_equal("account id", reader.take(16), account_id)
    expect_equal("epoch", reader.u32(), epoch)
    params = Argon2Params(reader.u32(), reader.u32(), reader.u32())
    salt = reader.take(16)
    nonce = reader.take(12)
    ct = reader.take(48)
    reader.finish()
    check_argon2_params(params)
    return aead_open(recovery_wrap_kek(secret, salt, params), nonce, stored[:67], ct)
