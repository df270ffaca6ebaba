"""Pairing a new device: codes, SPAKE2 over Ed25519, the key schedule and sealed messages
(devices.md, "Pairing").
"""

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .chain import encode_device_name, read_device_name
from .codec import ObjectType, Reader, envelope, u32, u64
from .ed25519 import BASE, L, Point, decode_point, encode_point, point_add, point_neg, scalar_mult
from .errors import KeyholdError
from .keys import CROCKFORD_ALPHABET, DEVICE_PUBLIC_KEYS_LEN, DevicePublicKeys, crockford_symbol_value, parse_device_public_keys
from .primitives import DK, Context, Label, aead_open, aead_seal

# --- pairing codes -------------------------------------------------------------------------------

CODE_LEN = 10
SLOT_LEN = 4
_CODE_IGNORED = "- \t"


def draw_code(randomness: bytes) -> str:
    """Each of the 10 random bytes names the symbol at position `b mod 32`."""
    if len(randomness) != CODE_LEN:
        raise ValueError("a pairing code draws 10 bytes")
    return "".join(CROCKFORD_ALPHABET[b % 32] for b in randomness)


def display_code(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


def parse_code(text: str) -> str:
    """The normalized code: 10 upper-case symbols, or `InvalidPairingCode`."""
    symbols = []
    for char in text:
        if char in _CODE_IGNORED:
            continue
        value = crockford_symbol_value(char)
        if value is None:
            raise KeyholdError("InvalidPairingCode", f"character {char!r} is not in the alphabet")
        symbols.append(CROCKFORD_ALPHABET[value])
    if len(symbols) != CODE_LEN:
        raise KeyholdError("InvalidPairingCode", f"{len(symbols)} symbols, expected 10")
    return "".join(symbols)


def slot_of(code: str) -> str:
    return code[:SLOT_LEN]


# --- SPAKE2 (the `spake2` crate 0.5.0-pre.0 / python-spake2 construction) -------------------------

SPAKE2_M = decode_point(bytes.fromhex("15cfd18e385952982b6a8f8c7854963b58e34388c8e6dae891db756481a02312"))
SPAKE2_N = decode_point(bytes.fromhex("f04f2e7eb734b2a8f8b472eaf9c3c632576ac64aea650b496a8a20ff00e583c3"))
SIDE_INVITER = 0x41  # 'A'
SIDE_JOINER = 0x42  # 'B'
SPAKE2_MESSAGE_LEN = 33


def spake2_password(code: str) -> bytes:
    return Label.SPAKE2_PASSWORD_PREFIX + code.encode("ascii")


def password_scalar(password: bytes) -> int:
    okm = HKDF(hashes.SHA256(), 48, salt=None, info=b"SPAKE2 pw").derive(password)
    return int.from_bytes(okm, "big") % L


class Spake2Side:
    """One side of SPAKE2. The inviter is side A (blinding point M), the joiner side B (N)."""

    def __init__(self, side: int, code: str, randomness: bytes):
        if side not in (SIDE_INVITER, SIDE_JOINER):
            raise ValueError("side is 'A' or 'B'")
        self.side = side
        self.password = spake2_password(code)
        self._w = password_scalar(self.password)
        self._secret = int.from_bytes(randomness, "little") % L
        own_blind, self._peer_blind = (SPAKE2_M, SPAKE2_N) if side == SIDE_INVITER else (SPAKE2_N, SPAKE2_M)
        self._element = encode_point(point_add(scalar_mult(self._secret, BASE), scalar_mult(self._w, own_blind)))
        self.message = bytes([side]) + self._element

    def finish(self, received: bytes) -> bytes:
        """Returns the 32-byte SPAKE2 key, or fails `PairingFailed`."""
        peer_side = SIDE_JOINER if self.side == SIDE_INVITER else SIDE_INVITER
        if len(received) != SPAKE2_MESSAGE_LEN or received[0] != peer_side:
            raise KeyholdError("PairingFailed", "SPAKE2 message of the wrong length or side")
        peer_point: Point | None = decode_point(received[1:])
        if peer_point is None:
            raise KeyholdError("PairingFailed", "SPAKE2 element is not a curve point")
        unblinded = point_add(peer_point, point_neg(scalar_mult(self._w, self._peer_blind)))
        k = encode_point(scalar_mult(self._secret, unblinded))
        x_element, y_element = (
            (self._element, received[1:]) if self.side == SIDE_INVITER else (received[1:], self._element)
        )
        transcript = (
            hashlib.sha256(self.password).digest()
            + hashlib.sha256(Label.SPAKE2_IDENTITY_INVITER).digest()
            + hashlib.sha256(Label.SPAKE2_IDENTITY_JOINER).digest()
            + x_element + y_element + k
        )
        return hashlib.sha256(transcript).digest()


# --- key schedule --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairingKeys:
    inviter_confirmation: bytes
    joiner_confirmation: bytes
    to_inviter: bytes
    to_joiner: bytes
    safety_key: bytes

    @classmethod
    def derive(cls, shared: bytes, inviter_message: bytes, joiner_message: bytes) -> "PairingKeys":
        transcript = shared + inviter_message + joiner_message
        return cls(
            DK(Context.PAIRING_INVITER_CONFIRMATION, transcript),
            DK(Context.PAIRING_JOINER_CONFIRMATION, transcript),
            DK(Context.PAIRING_KEY_TO_INVITER, transcript),
            DK(Context.PAIRING_KEY_TO_JOINER, transcript),
            DK(Context.PAIRING_SAFETY_STRING, transcript),
        )

    @property
    def safety_string(self) -> str:
        digits = f"{int.from_bytes(self.safety_key[:8], 'big') % 100_000_000:08d}"
        return f"{digits[:4]}-{digits[4:]}"

    def key_for(self, direction: int) -> bytes:
        return self.to_inviter if direction == TO_INVITER else self.to_joiner


def check_confirmation(received: bytes, expected: bytes) -> None:
    """Constant-time; a confirmation of another length fails too."""
    if len(received) != len(expected) or not hmac.compare_digest(received, expected):
        raise KeyholdError("PairingFailed", "confirmation mismatch")


# --- sealed messages -----------------------------------------------------------------------------

TO_INVITER = 0x01  # a joiner hello
TO_JOINER = 0x02  # a welcome
_PAIRING_NONCE = bytes(12)


def seal_pairing_message(keys: PairingKeys, direction: int, plaintext: bytes) -> bytes:
    aad = envelope(ObjectType.PAIRING_MESSAGE) + bytes([direction])
    return aad + aead_seal(keys.key_for(direction), _PAIRING_NONCE, aad, plaintext)


def open_pairing_message(keys: PairingKeys, stored: bytes, direction: int) -> bytes:
    reader = Reader(stored)
    reader.envelope(ObjectType.PAIRING_MESSAGE)
    if reader.u8() != direction:
        raise KeyholdError("ContextMismatch", "pairing message of the other direction")
    sealed = reader.take(reader.remaining)
    if len(sealed) < 16:
        raise KeyholdError("Truncated", "sealed pairing message shorter than its tag")
    return aead_open(keys.key_for(direction), _PAIRING_NONCE, stored[:8], sealed, error="PairingFailed")


@dataclass(frozen=True)
class JoinerHello:
    public_keys: DevicePublicKeys
    name: str

    def encode(self) -> bytes:
        return self.public_keys.raw + encode_device_name(self.name)

    @staticmethod
    def decode(plaintext: bytes) -> "JoinerHello":
        reader = Reader(plaintext)
        public_keys = parse_device_public_keys(reader.take(DEVICE_PUBLIC_KEYS_LEN))
        name = read_device_name(reader)
        reader.finish()
        return JoinerHello(public_keys, name)


@dataclass(frozen=True)
class Welcome:
    account_id: bytes
    epoch: int
    root_key: bytes
    head_seq: int
    head_id: bytes

    def encode(self) -> bytes:
        return self.account_id + u32(self.epoch) + self.root_key + u64(self.head_seq) + self.head_id

    @staticmethod
    def decode(plaintext: bytes) -> "Welcome":
        reader = Reader(plaintext)
        welcome = Welcome(reader.take(16), reader.u32(), reader.take(32), reader.u64(), reader.take(32))
        reader.finish()
        return welcome
