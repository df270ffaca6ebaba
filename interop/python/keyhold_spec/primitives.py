"""Suite 0x01's symmetric primitives, frozen context strings and constants (README, "Primitives",
"Frozen context strings", "Constants").
"""

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import KeyholdError


class Context:
    """BLAKE3 `derive_key` contexts. Each is used by exactly one derivation."""

    COLLECTION_WRAP_KEK = "keyhold v1 2026-11 collection key wrap"
    RECOVERY_WRAP_KEK = "keyhold v1 2026-11 recovery key wrap"
    RECOVERY_CHECKSUM = "keyhold v1 2026-11 recovery key checksum"
    BLOB_ID_KEY = "keyhold v1 2026-11 blob id"
    BLOB_KEY_ROOT = "keyhold v1 2026-11 blob key root"
    BLOB_KEY = "keyhold v1 2026-11 blob key"
    CHUNKER_GEAR_TABLE = "keyhold v1 2026-11 chunker gear table"
    PACK_KEY_ROOT = "keyhold v1 2026-11 pack key root"
    PACK_KEY = "keyhold v1 2026-11 pack key"
    REVISION_KEY = "keyhold v1 2026-11 revision key"
    DEVICE_ID = "keyhold v1 2026-11 device id"
    RECOVERY_AUTH_SEED = "keyhold v1 2026-11 recovery auth key"
    RECOVERY_LOCATOR = "keyhold v1 2026-11 recovery locator"
    NAMED_COLLECTION_ID = "keyhold v1 2026-11 named collection id"
    ROOT_KEY_COMMITMENT = "keyhold v1 2026-11 root key commitment"
    RECOVERY_KEM_SEED = "keyhold v1 2026-11 recovery kem key"
    PREVIOUS_ROOT_WRAP_KEK = "keyhold v1 2026-11 previous root key wrap"
    PAIRING_INVITER_CONFIRMATION = "keyhold v1 2026-11 pairing inviter confirmation"
    PAIRING_JOINER_CONFIRMATION = "keyhold v1 2026-11 pairing joiner confirmation"
    PAIRING_KEY_TO_INVITER = "keyhold v1 2026-11 pairing key to inviter"
    PAIRING_KEY_TO_JOINER = "keyhold v1 2026-11 pairing key to joiner"
    PAIRING_SAFETY_STRING = "keyhold v1 2026-11 pairing safety string"


class Label:
    """The other frozen byte strings. The three signature contexts end with their only NUL."""

    DEVICE_WRAP_INFO = b"keyhold v1 2026-11 device key wrap"
    REVISION_SIGNATURE = b"keyhold v1 2026-11 revision signature\0"
    DEVICE_AUTHENTICATION = b"keyhold v1 2026-11 device authentication\0"
    CHAIN_ENTRY_SIGNATURE = b"keyhold v1 2026-11 device chain entry\0"
    SPAKE2_IDENTITY_INVITER = b"keyhold v1 2026-11 pairing inviter"
    SPAKE2_IDENTITY_JOINER = b"keyhold v1 2026-11 pairing joiner"
    SPAKE2_PASSWORD_PREFIX = b"keyhold v1 2026-11 pairing code\0"


# README, "Constants" (and format.md where they are used).
MIN_CHUNK = 524_288
AVG_CHUNK = 1_048_576
MAX_CHUNK = 4_194_304
MAX_BLOB_PLAINTEXT = 16_777_216
MAX_NAME_LEN = 255
MAX_PACK_LEN = 67_108_864
MAX_DEVICE_NAME = 64
MAX_CUTOFFS = 100_000
MAX_CHAIN_ENTRY_LEN = 2_402_752
GENESIS_PREV = bytes(32)
CHAIN_GENESIS_PREV = bytes(32)

AEAD_TAG_LEN = 16
AEAD_NONCE_LEN = 12


# --- BLAKE3 modes --------------------------------------------------------------------------------


def H(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def H_xof(data: bytes, length: int) -> bytes:
    """`XOF(H(data), length)`."""
    return blake3.blake3(data).digest(length=length)


def KH(key: bytes, data: bytes) -> bytes:
    return blake3.blake3(data, key=key).digest()


def DK(context: str, material: bytes) -> bytes:
    return blake3.blake3(material, derive_key_context=context).digest()


def DK_xof(context: str, material: bytes, length: int) -> bytes:
    """`XOF(DK(context, material), length)`."""
    return blake3.blake3(material, derive_key_context=context).digest(length=length)


# --- AES-256-GCM ---------------------------------------------------------------------------------


def nonce_from_int(value: int) -> bytes:
    """"Where a nonce is written as a number, it is the 12-byte big-endian encoding"."""
    return value.to_bytes(AEAD_NONCE_LEN, "big")


def aead_seal(key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
    return AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_open(key: bytes, nonce: bytes, aad: bytes, sealed: bytes, error: str = "DecryptionFailed") -> bytes:
    """`Open`; `error` is the name this use reports (pairing messages say `PairingFailed`)."""
    if len(sealed) < AEAD_TAG_LEN:
        raise KeyholdError(error, "sealed input shorter than the tag")
    try:
        return AESGCM(key).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise KeyholdError(error, "AES-256-GCM authentication failed") from None


# --- Padmé ---------------------------------------------------------------------------------------


def padme(length: int) -> int:
    """Padmé (README, "Primitives"): round up so that only the top ~log2(log2 L) bits are free."""
    if length < 2:
        return length
    exponent = length.bit_length() - 1  # E = floor(log2 L)
    exponent_bits = exponent.bit_length()  # S = floor(log2 E) + 1
    low_mask = (1 << (exponent - exponent_bits)) - 1  # 2^z - 1
    return (length + low_mask) & ~low_mask
