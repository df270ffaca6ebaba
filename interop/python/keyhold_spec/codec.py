"""Byte-level encoding shared by every structure (README, "Conventions"; format.md, "Encoding",
"Envelope").

All integers are big-endian and fixed-width; `short(max)` is a u16 length then the bytes; every
structure consumes its input exactly.
"""

from enum import IntEnum

from .errors import KeyholdError

MAGIC = b"KHLD"
FORMAT_VERSION = 1
CIPHER_SUITE = 0x01


class ObjectType(IntEnum):
    """format.md, "Envelope", object types."""

    PACK = 0x01
    REVISION = 0x02
    DEVICE_WRAP = 0x03
    RECOVERY_WRAP = 0x04
    COLLECTION_WRAP = 0x05
    CHAIN_ENTRY = 0x06
    PREVIOUS_ROOT_WRAP = 0x07
    PAIRING_MESSAGE = 0x08
    CHUNK = 0x10
    MANIFEST = 0x11
    LISTING = 0x12


BLOB_TYPES = frozenset({ObjectType.CHUNK, ObjectType.MANIFEST, ObjectType.LISTING})


# --- writing -------------------------------------------------------------------------------------


def u8(value: int) -> bytes:
    return value.to_bytes(1, "big")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def i64(value: int) -> bytes:
    return value.to_bytes(8, "big", signed=True)


def short(value: bytes, max_len: int) -> bytes:
    if len(value) > max_len:
        raise KeyholdError("LimitExceeded", f"short string of {len(value)} bytes > {max_len}")
    return u16(len(value)) + value


def envelope(object_type: int) -> bytes:
    """The 7-byte header every stored object starts with."""
    return MAGIC + bytes([FORMAT_VERSION, CIPHER_SUITE, object_type])


# --- reading -------------------------------------------------------------------------------------


class Reader:
    """Reads a structure front to back; fails `Truncated` as soon as a field runs past the end."""

    def __init__(self, data: bytes):
        self.data = bytes(data)
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n > self.remaining:
            raise KeyholdError("Truncated", f"need {n} bytes at offset {self.pos}, have {self.remaining}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def _uint(self, width: int, signed: bool = False) -> int:
        return int.from_bytes(self.take(width), "big", signed=signed)

    def u8(self) -> int:
        return self._uint(1)

    def u16(self) -> int:
        return self._uint(2)

    def u32(self) -> int:
        return self._uint(4)

    def u64(self) -> int:
        return self._uint(8)

    def i64(self) -> int:
        return self._uint(8, signed=True)

    def short(self, max_len: int) -> bytes:
        """`short(max)`: the length is refused (`Malformed`) before the bytes are read."""
        length = self.u16()
        if length > max_len:
            raise KeyholdError("Malformed", f"short string length {length} > {max_len}")
        return self.take(length)

    def count(self, min_element_len: int) -> int:
        """A u32 count, checked against what the remaining bytes can hold before anything is
        allocated (README, "Parsing rules")."""
        n = self.u32()
        if n > self.remaining // min_element_len:
            raise KeyholdError("Truncated", f"count {n} cannot fit in {self.remaining} bytes")
        return n

    def finish(self) -> None:
        if self.remaining:
            raise KeyholdError("TrailingBytes", f"{self.remaining} bytes after the structure")

    def envelope(self, expected_type: int) -> None:
        """Checks the header in the order format.md, "Envelope", fixes: magic, version, suite,
        type, each field `Truncated` if cut short."""
        if self.take(4) != MAGIC:
            raise KeyholdError("BadMagic")
        if self.u8() != FORMAT_VERSION:
            raise KeyholdError("UnsupportedVersion")
        if self.u8() != CIPHER_SUITE:
            raise KeyholdError("UnsupportedSuite")
        found = self.u8()
        if found != expected_type:
            raise KeyholdError("WrongObjectType", f"type 0x{found:02x}, expected 0x{expected_type:02x}")


def expect_equal(name: str, found: bytes | int, expected: bytes | int) -> None:
    """A cleartext context field compared with what the caller expects (`ContextMismatch`)."""
    if found != expected:
        raise KeyholdError("ContextMismatch", f"{name} differs from the expected one")
