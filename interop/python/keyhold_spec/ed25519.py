"""Edwards25519 arithmetic, Ed25519 strict verification and public key parsing (README,
"Primitives"; keys.md, "Device keys").

Verification and point decoding are written out here rather than taken from a library because the
spec pins behaviour that libraries differ on: curve25519-dalek's lenient decoding (y >= p reduced,
x = 0 with the sign bit accepted), small-order refusals and the cofactorless equation compared on
encodings. The same arithmetic serves SPAKE2 (pairing.py). Signing and key generation are
RFC 8032's deterministic algorithms, so a library (cryptography) is used for them.

This is test code: nothing here is constant time.
"""

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import KeyholdError

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # the prime group order
_D = (-121665 * pow(121666, P - 2, P)) % P
_SQRT_M1 = pow(2, (P - 1) // 4, P)

# A point is (X, Y, Z, T) in extended twisted Edwards coordinates, x = X/Z, y = Y/Z, xy = T/Z.
Point = tuple[int, int, int, int]
IDENTITY: Point = (0, 1, 1, 0)


def point_add(p: Point, q: Point) -> Point:
    # RFC 8032 §5.1.4 (complete addition for a = -1).
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * t1 * t2 * _D % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def point_neg(p: Point) -> Point:
    x, y, z, t = p
    return (-x % P, y, z, -t % P)


def scalar_mult(scalar: int, p: Point) -> Point:
    result = IDENTITY
    addend = p
    while scalar:
        if scalar & 1:
            result = point_add(result, addend)
        addend = point_add(addend, addend)
        scalar >>= 1
    return result


def point_equal(p: Point, q: Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % P == 0 and (p[1] * q[2] - q[1] * p[2]) % P == 0


def is_small_order(p: Point) -> bool:
    """Small order <=> [8]P is the identity (the cofactor is 8)."""
    return point_equal(scalar_mult(8, p), IDENTITY)


def encode_point(p: Point) -> bytes:
    x, y, z, _ = p
    z_inv = pow(z, P - 2, P)
    x, y = x * z_inv % P, y * z_inv % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def decode_point(data: bytes) -> Point | None:
    """RFC 8032 §5.1.3 with curve25519-dalek's two leniencies (README, "Primitives"): a y of p or
    more is reduced mod p, and x = 0 with the sign bit set is accepted. None if not on the curve."""
    if len(data) != 32:
        return None
    encoded = int.from_bytes(data, "little")
    sign = encoded >> 255
    y = (encoded & ((1 << 255) - 1)) % P
    u = (y * y - 1) % P
    v = (_D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if (v * x * x - u) % P != 0:
        x = x * _SQRT_M1 % P
        if (v * x * x - u) % P != 0:
            return None
    if (x & 1) != sign:
        x = -x % P  # for x = 0 this leaves 0: the accepted "negative zero"
    return (x, y, 1, x * y % P)


BASE: Point = decode_point(bytes.fromhex("5866666666666666666666666666666666666666666666666666666666666666"))


def parse_public_key(data: bytes) -> Point:
    """keys.md, "Device keys", steps 1-2: decode (`Malformed`), then refuse a small-order point or
    a non-canonical encoding (`Malformed`, one check for both)."""
    point = decode_point(data)
    if point is None:
        raise KeyholdError("Malformed", "Ed25519 key is not a curve point")
    if is_small_order(point) or encode_point(point) != data:
        raise KeyholdError("Malformed", "Ed25519 key is of small order or not canonically encoded")
    return point


def verify_strict(public_key: bytes, message: bytes, signature: bytes) -> None:
    """`verify_strict` as the README lists it; any failure is `BadSignature`."""
    if len(signature) != 64:
        raise KeyholdError("BadSignature", "signature is not 64 bytes")
    r_bytes, s = signature[:32], int.from_bytes(signature[32:], "little")
    if s >= L:
        raise KeyholdError("BadSignature", "S is not canonical")
    r_point = decode_point(r_bytes)
    if r_point is None or is_small_order(r_point):
        raise KeyholdError("BadSignature", "R does not decode or is of small order")
    a_point = decode_point(public_key)
    if a_point is None or is_small_order(a_point):
        raise KeyholdError("BadSignature", "public key does not decode or is of small order")
    k = int.from_bytes(hashlib.sha512(r_bytes + public_key + message).digest(), "little") % L
    check = point_add(scalar_mult(s, BASE), point_neg(scalar_mult(k, a_point)))
    if encode_point(check) != r_bytes:
        raise KeyholdError("BadSignature", "signature equation does not hold")


class SigningKey:
    """An Ed25519 key pair from its 32-byte RFC 8032 private key ("seed")."""

    def __init__(self, seed: bytes):
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)
