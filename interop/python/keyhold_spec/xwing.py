"""X-Wing (X25519 + ML-KEM-768) and the HPKE base mode that device wraps use (README,
"Primitives", "HPKE").

ML-KEM-768 itself comes from `cryptography` (OpenSSL): key generation from the FIPS 203 seed
(d || z) and decapsulation. It offers no encapsulation with injected randomness, so the
generation direction of device wraps is checked another way (see `mlkem_shared_secret_for`).
X25519 is written out (see `x25519`) because OpenSSL refuses an all-zero result and Keyhold does not.
"""

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from .codec import u16
from .errors import KeyholdError
from .primitives import aead_open, aead_seal

MLKEM_EK_LEN = 1184
MLKEM_CT_LEN = 1088
X25519_LEN = 32
XWING_PUBLIC_KEY_LEN = MLKEM_EK_LEN + X25519_LEN  # 1216
XWING_CIPHERTEXT_LEN = MLKEM_CT_LEN + X25519_LEN  # 1120
XWING_LABEL = b"\\.//^\\"  # the 6 bytes 5c 2e 2f 2f 5e 5c
_MLKEM_Q = 3329

_X25519_P = 2**255 - 19
_X25519_A24 = 121665
_X25519_BASE = (9).to_bytes(32, "little")


def _raw_public(key) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def x25519(scalar: bytes, u_coordinate: bytes) -> bytes:
    """RFC 7748 §5 X25519, written out because library versions (OpenSSL's among them) take
    RFC 7748 §6.1's option to refuse an all-zero result, and Keyhold does not: a ct_X of small
    order gives ss_X = zero(32), which enters the combiner like any other value (README,
    "Primitives"). Not constant time; test code."""
    k = int.from_bytes(scalar, "little")
    k = (k & ~7 & ((1 << 255) - 1)) | (1 << 254)  # clamp
    u = (int.from_bytes(u_coordinate, "little") & ((1 << 255) - 1)) % _X25519_P  # mask bit 255
    p = _X25519_P
    x2, z2, x3, z3, swap = 1, 0, u, 1, 0
    for t in reversed(range(255)):  # the Montgomery ladder of RFC 7748 §5
        bit = (k >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % p, (x2 - z2) % p
        aa, bb = a * a % p, b * b % p
        e = (aa - bb) % p
        c, d = (x3 + z3) % p, (x3 - z3) % p
        da, cb = d * a % p, c * b % p
        x3, z3 = (da + cb) ** 2 % p, u * (da - cb) ** 2 % p
        x2, z2 = aa * bb % p, e * (aa + _X25519_A24 * e) % p
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, p - 2, p) % p).to_bytes(32, "little")


def x25519_base(scalar: bytes) -> bytes:
    return x25519(scalar, _X25519_BASE)


def check_mlkem_encapsulation_key(ek: bytes) -> None:
    """FIPS 203 §7.2 encapsulation key check: the right length, and every 12-bit coefficient of
    the encoded vector t̂ below q (ByteEncode12(ByteDecode12(x)) == x). `Malformed` otherwise."""
    if len(ek) != MLKEM_EK_LEN:
        raise KeyholdError("Malformed", "ML-KEM-768 encapsulation key has the wrong length")
    encoded_vector = ek[: MLKEM_EK_LEN - 32]  # the last 32 bytes are the seed rho
    for i in range(0, len(encoded_vector), 3):
        b0, b1, b2 = encoded_vector[i : i + 3]
        if b0 | ((b1 & 0x0F) << 8) >= _MLKEM_Q or (b1 >> 4) | (b2 << 4) >= _MLKEM_Q:
            raise KeyholdError("Malformed", "ML-KEM-768 encapsulation key fails the modulus check")


def combiner(ss_m: bytes, ss_x: bytes, ct_x: bytes, pk_x: bytes) -> bytes:
    return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + XWING_LABEL).digest()


def mlkem_shared_secret_for(ek_m: bytes, m: bytes) -> bytes:
    """The shared secret ML-KEM.Encaps_internal(ek, m) returns: K of (K, r) = G(m || H(ek))
    (FIPS 203, Algorithm 17). Decapsulation re-encrypts and returns this K only for the exact
    ciphertext Encaps_internal(ek, m) produces (anything else gives the implicit-rejection
    value), so comparing it with the decapsulated secret checks the ciphertext against `m`
    without a deterministic encapsulation."""
    return hashlib.sha3_512(m + hashlib.sha3_256(ek_m).digest()).digest()[:32]


class XWingKey:
    """An X-Wing decapsulation key from its 32-byte seed: expanded = SHAKE256(seed, 96)."""

    def __init__(self, seed: bytes):
        expanded = hashlib.shake_256(seed).digest(96)
        # cryptography's 64-byte ML-KEM seed is FIPS 203's (d || z) for KeyGen_internal(d, z).
        self._mlkem = MLKEM768PrivateKey.from_seed_bytes(expanded[0:64])
        self._sk_x = expanded[64:96]
        self.ek_m = _raw_public(self._mlkem.public_key())
        self.pk_x = x25519_base(self._sk_x)
        self.public_key = self.ek_m + self.pk_x

    def decapsulate(self, enc: bytes) -> bytes:
        ct_m, ct_x = enc[:MLKEM_CT_LEN], enc[MLKEM_CT_LEN:]
        ss_m = self.decapsulate_mlkem(ct_m)
        return combiner(ss_m, x25519(self._sk_x, ct_x), ct_x, self.pk_x)

    def decapsulate_mlkem(self, ct_m: bytes) -> bytes:
        return self._mlkem.decapsulate(ct_m)


# --- HPKE (RFC 9180) base mode, single shot, KEM 0x647a / HKDF-SHA256 / AES-256-GCM ----------------

HPKE_SUITE_ID = b"HPKE" + u16(0x647A) + u16(0x0001) + u16(0x0002)
_HPKE_VERSION = b"HPKE-v1"
_MODE_BASE = b"\x00"


def _labeled_extract(salt: bytes, label: bytes, ikm: bytes) -> bytes:
    # HKDF-Extract is HMAC(salt, ikm); an empty salt equals HashLen zero bytes as an HMAC key.
    return hmac.new(salt, _HPKE_VERSION + HPKE_SUITE_ID + label + ikm, hashlib.sha256).digest()


def _labeled_expand(prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled_info = u16(length) + _HPKE_VERSION + HPKE_SUITE_ID + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled_info).derive(prk)


def hpke_key_schedule(shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
    """KeySchedule(mode_base, shared_secret, info, psk = "", psk_id = "") -> (key, base_nonce).
    X-Wing's shared secret enters directly: there is no DHKEM ExtractAndExpand."""
    psk_id_hash = _labeled_extract(b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(b"", b"info_hash", info)
    context = _MODE_BASE + psk_id_hash + info_hash
    secret = _labeled_extract(shared_secret, b"secret", b"")
    return _labeled_expand(secret, b"key", context, 32), _labeled_expand(secret, b"base_nonce", context, 12)


def hpke_open_base(recipient: XWingKey, enc: bytes, info: bytes, aad: bytes, ct: bytes) -> bytes:
    key, base_nonce = hpke_key_schedule(recipient.decapsulate(enc), info)
    return aead_open(key, base_nonce, aad, ct)  # sequence number 0: the nonce is base_nonce


def hpke_seal_with_shared_secret(shared_secret: bytes, info: bytes, aad: bytes, pt: bytes) -> bytes:
    """The AEAD half of SealBase, for a shared secret already encapsulated."""
    key, base_nonce = hpke_key_schedule(shared_secret, info)
    return aead_seal(key, base_nonce, aad, pt)
