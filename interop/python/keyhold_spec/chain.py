"""The device chain: entries, signatures, verification, root key commitments and `may_author`
(devices.md, "Chain entries" through "Revisions by revoked devices").
"""

import hmac
from dataclasses import dataclass, field
from enum import IntEnum

from .codec import ObjectType, Reader, envelope, i64, short, u8, u32, u64
from .ed25519 import verify_strict
from .errors import KeyholdError
from .keys import (
    DEVICE_ID_LEN,
    DEVICE_PUBLIC_KEYS_LEN,
    DeviceKeys,
    DevicePublicKeys,
    parse_device_public_keys,
    root_commitment,
)
from .primitives import CHAIN_GENESIS_PREV, MAX_CHAIN_ENTRY_LEN, MAX_CUTOFFS, MAX_DEVICE_NAME, H, Label
from .revisions import Head

RECOVERY_SIGNER_ID = bytes(DEVICE_ID_LEN)
SIGNATURE_LEN = 64
CUTOFF_LEN = 24  # collection id (16) || u64 seq


class EntryKind(IntEnum):
    CREATE = 0x01
    ADD_DEVICE = 0x02
    REVOKE_DEVICE = 0x03
    ROTATE_RECOVERY = 0x04


class SignerKind(IntEnum):
    DEVICE = 0x01
    RECOVERY = 0x02


# --- device names (devices.md, "Device names") ---------------------------------------------------


def _is_control(char: str) -> bool:
    """Unicode general category Cc, which the spec spells out as two ranges."""
    return ord(char) <= 0x1F or 0x7F <= ord(char) <= 0x9F


def check_device_name(raw: bytes) -> str:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyholdError("Malformed", "device name is not UTF-8") from None
    if not name or any(_is_control(c) for c in name):
        raise KeyholdError("Malformed", "device name empty or with a control character")
    return name


def read_device_name(reader: Reader) -> str:
    """`short(64)`: length (`Malformed`), bytes (`Truncated`), then content (`Malformed`)."""
    return check_device_name(reader.short(MAX_DEVICE_NAME))


def encode_device_name(name: str) -> bytes:
    raw = name.encode("utf-8")
    if len(raw) > MAX_DEVICE_NAME:
        raise KeyholdError("Malformed", "device name too long")
    check_device_name(raw)
    return short(raw, MAX_DEVICE_NAME)


def read_device_public_keys(reader: Reader) -> DevicePublicKeys:
    """All 1248 bytes first (`Truncated`), then the key checks (`Malformed`)."""
    return parse_device_public_keys(reader.take(DEVICE_PUBLIC_KEYS_LEN))


# --- entries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cutoff:
    collection_id: bytes
    seq: int


@dataclass(frozen=True)
class ChainEntry:
    """An entry's fields. Which body fields are set depends on `kind`."""

    account_id: bytes
    seq: int
    prev: bytes
    time_ms: int
    account_epoch: int
    kind: int
    signer_kind: int
    signer_id: bytes
    device: DevicePublicKeys | None = None  # create, add device
    name: str | None = None  # create, add device
    recovery: DevicePublicKeys | None = None  # create, rotate recovery
    revoked_device: bytes | None = None  # revoke device
    root_commitment: bytes | None = None  # create, revoke device, rotate recovery
    cutoffs: tuple[Cutoff, ...] = ()  # revoke device

    def encode_unsigned(self) -> bytes:
        header = (
            envelope(ObjectType.CHAIN_ENTRY) + self.account_id + u64(self.seq) + self.prev + i64(self.time_ms)
            + u32(self.account_epoch) + u8(self.kind) + u8(self.signer_kind) + self.signer_id
        )
        if self.kind == EntryKind.CREATE:
            body = self.device.raw + encode_device_name(self.name) + self.recovery.raw + self.root_commitment
        elif self.kind == EntryKind.ADD_DEVICE:
            body = self.device.raw + encode_device_name(self.name)
        elif self.kind == EntryKind.REVOKE_DEVICE:
            if len(self.cutoffs) > MAX_CUTOFFS:
                raise KeyholdError("LimitExceeded", "too many cutoffs")
            body = self.revoked_device + self.root_commitment + u32(len(self.cutoffs))
            body += b"".join(c.collection_id + u64(c.seq) for c in self.cutoffs)
        elif self.kind == EntryKind.ROTATE_RECOVERY:
            body = self.recovery.raw + self.root_commitment
        else:
            raise KeyholdError("Malformed", f"entry kind 0x{self.kind:02x}")
        return header + body

    def sign(self, key: DeviceKeys) -> bytes:
        """The stored entry. A writer refuses a key other than the one the signer names."""
        if self.signer_kind == SignerKind.DEVICE and key.device_id != self.signer_id:
            raise KeyholdError("ContextMismatch", "signing key is not the named signer's")
        unsigned = self.encode_unsigned()
        return unsigned + key.sign(Label.CHAIN_ENTRY_SIGNATURE + unsigned)


@dataclass(frozen=True)
class StoredEntry:
    entry: ChainEntry
    stored: bytes
    signature: bytes

    @property
    def id(self) -> bytes:
        return H(self.stored)

    def verify_signature(self, public_key: bytes) -> None:
        unsigned = self.stored[: len(self.stored) - SIGNATURE_LEN]
        verify_strict(public_key, Label.CHAIN_ENTRY_SIGNATURE + unsigned, self.signature)


def _read_cutoffs(reader: Reader) -> tuple[Cutoff, ...]:
    count = reader.u32()
    if count > MAX_CUTOFFS or CUTOFF_LEN * count > reader.remaining:  # signature still included
        raise KeyholdError("Truncated", f"{count} cutoffs cannot fit")
    cutoffs: list[Cutoff] = []
    for _ in range(count):
        collection_id = reader.take(16)
        if cutoffs and collection_id <= cutoffs[-1].collection_id:
            raise KeyholdError("Malformed", "cutoff collection ids not strictly ascending")
        cutoffs.append(Cutoff(collection_id, reader.u64()))
    return tuple(cutoffs)


def parse_chain_entry(stored: bytes) -> StoredEntry:
    """"Parsing" steps 1-7: no signature check, no place in a chain."""
    if len(stored) > MAX_CHAIN_ENTRY_LEN:  # 1
        raise KeyholdError("LimitExceeded", "chain entry too long")
    reader = Reader(stored)
    reader.envelope(ObjectType.CHAIN_ENTRY)  # 2
    account_id, seq, prev, time_ms = reader.take(16), reader.u64(), reader.take(32), reader.i64()  # 3
    account_epoch, kind, signer_kind, signer_id = reader.u32(), reader.u8(), reader.u8(), reader.take(16)
    if not (  # 4
        signer_kind == SignerKind.DEVICE
        or (signer_kind == SignerKind.RECOVERY and signer_id == RECOVERY_SIGNER_ID)
    ):
        raise KeyholdError("Malformed", "bad signer")
    fields = dict(
        account_id=account_id, seq=seq, prev=prev, time_ms=time_ms, account_epoch=account_epoch,
        kind=kind, signer_kind=signer_kind, signer_id=signer_id,
    )
    if kind == EntryKind.CREATE:  # 5
        fields.update(device=read_device_public_keys(reader), name=read_device_name(reader))
        fields.update(recovery=read_device_public_keys(reader), root_commitment=reader.take(32))
    elif kind == EntryKind.ADD_DEVICE:
        fields.update(device=read_device_public_keys(reader), name=read_device_name(reader))
    elif kind == EntryKind.REVOKE_DEVICE:
        fields.update(revoked_device=reader.take(16), root_commitment=reader.take(32))
        fields.update(cutoffs=_read_cutoffs(reader))
    elif kind == EntryKind.ROTATE_RECOVERY:
        fields.update(recovery=read_device_public_keys(reader), root_commitment=reader.take(32))
    else:
        raise KeyholdError("Malformed", f"entry kind 0x{kind:02x}")
    signature = reader.take(SIGNATURE_LEN)  # 6
    reader.finish()  # 7
    return StoredEntry(ChainEntry(**fields), bytes(stored), signature)


# --- verification (devices.md, "Verifying a chain") ----------------------------------------------


@dataclass(frozen=True)
class Revocation:
    seq: int
    time_ms: int
    signer_id: bytes
    first_epoch_not_held: int
    cutoffs: dict[bytes, int]


@dataclass
class EnrolledDevice:
    public_keys: DevicePublicKeys
    name: str
    added_seq: int
    added_by: bytes
    revocation: Revocation | None = None


@dataclass
class DeviceChain:
    """A verified chain's state. Built only by `genesis` and grown only by `append`."""

    account_id: bytes
    head: Head
    devices: dict[bytes, EnrolledDevice]
    recovery: DevicePublicKeys
    commitments: list[bytes] = field(default_factory=list)

    @property
    def epoch(self) -> int:
        return len(self.commitments) - 1

    @classmethod
    def genesis(cls, account_id: bytes, stored: bytes) -> "DeviceChain":
        parsed = parse_chain_entry(stored)  # 1
        entry = parsed.entry
        if entry.account_id != account_id:  # 2
            raise KeyholdError("ContextMismatch", "creation entry of another account")
        if entry.kind != EntryKind.CREATE:  # 3
            raise KeyholdError("Malformed", "first entry is not a creation")
        if entry.seq != 0 or entry.prev != CHAIN_GENESIS_PREV or entry.account_epoch != 0:  # 4
            raise KeyholdError("Malformed", "creation entry not at seq 0, genesis prev, epoch 0")
        if entry.signer_kind != SignerKind.DEVICE or entry.signer_id != entry.device.device_id:  # 5
            raise KeyholdError("Malformed", "the first device must sign its own creation")
        parsed.verify_signature(entry.device.signing_key)  # 6
        device_id = entry.device.device_id
        return cls(
            account_id=account_id,
            head=Head(0, parsed.id),
            devices={device_id: EnrolledDevice(entry.device, entry.name, 0, device_id)},
            recovery=entry.recovery,
            commitments=[entry.root_commitment],
        )

    def _expected_epoch(self, kind: int) -> int:
        if kind == EntryKind.ADD_DEVICE:
            return self.epoch
        if kind in (EntryKind.REVOKE_DEVICE, EntryKind.ROTATE_RECOVERY):
            return self.epoch + 1
        raise KeyholdError("Malformed", "an account is created once")

    def append(self, stored: bytes) -> None:
        """Verifies one later entry; all checks run before any state changes."""
        parsed = parse_chain_entry(stored)  # 1
        entry = parsed.entry
        if entry.account_id != self.account_id:  # 2
            raise KeyholdError("ContextMismatch", "entry of another account")
        if entry.seq != self.head.seq + 1 or entry.prev != self.head.id:  # 3
            raise KeyholdError("ChainFork", "entry does not extend the verified head")
        if entry.signer_kind == SignerKind.RECOVERY:  # 4
            signer_key = self.recovery.signing_key
        else:
            signer = self.devices.get(entry.signer_id)
            if signer is None or signer.revocation is not None:
                raise KeyholdError("UnknownAuthor", "signer not enrolled or revoked")
            signer_key = signer.public_keys.signing_key
        parsed.verify_signature(signer_key)  # 5
        if entry.account_epoch != self._expected_epoch(entry.kind):  # 6
            raise KeyholdError("Malformed", f"entry claims account epoch {entry.account_epoch}")
        if entry.kind == EntryKind.ADD_DEVICE:  # 7
            if entry.device.device_id in self.devices:
                raise KeyholdError("Malformed", "device already in the chain")
        elif entry.kind == EntryKind.REVOKE_DEVICE:
            target = self.devices.get(entry.revoked_device)
            if entry.signer_kind == SignerKind.DEVICE and entry.signer_id == entry.revoked_device:
                raise KeyholdError("Malformed", "a device cannot revoke itself")
            if target is None or target.revocation is not None:
                raise KeyholdError("Malformed", "revoked device not enrolled")
        self._apply(entry, Head(entry.seq, parsed.id))

    def _apply(self, entry: ChainEntry, head: Head) -> None:
        if entry.kind == EntryKind.ADD_DEVICE:
            self.devices[entry.device.device_id] = EnrolledDevice(entry.device, entry.name, entry.seq, entry.signer_id)
        elif entry.kind == EntryKind.REVOKE_DEVICE:
            self.devices[entry.revoked_device].revocation = Revocation(
                entry.seq, entry.time_ms, entry.signer_id, entry.account_epoch,
                {c.collection_id: c.seq for c in entry.cutoffs},
            )
            self.commitments.append(entry.root_commitment)
        elif entry.kind == EntryKind.ROTATE_RECOVERY:
            self.recovery = entry.recovery
            self.commitments.append(entry.root_commitment)
        self.head = head

    @classmethod
    def verify(cls, account_id: bytes, stored_entries: list[bytes]) -> "DeviceChain":
        chain = cls.genesis(account_id, stored_entries[0])
        for stored in stored_entries[1:]:
            chain.append(stored)
        return chain

    # --- queries ---

    def active_devices(self) -> list[bytes]:
        return sorted(i for i, d in self.devices.items() if d.revocation is None)

    def check_root_key(self, account_epoch: int, root_key: bytes) -> None:
        """devices.md, "Root key commitments": `ContextMismatch` on any failure."""
        if account_epoch > self.epoch:
            raise KeyholdError("ContextMismatch", f"epoch {account_epoch} not in the chain")
        commitment = root_commitment(root_key, self.account_id, account_epoch)
        if not hmac.compare_digest(commitment, self.commitments[account_epoch]):
            raise KeyholdError("ContextMismatch", "root key does not match the commitment")

    def enrolled_signing_key(self, device_id: bytes) -> bytes | None:
        device = self.devices.get(device_id)
        return device.public_keys.signing_key if device else None

    def may_author(self, device_id: bytes, collection_id: bytes, seq: int) -> bool:
        device = self.devices.get(device_id)
        if device is None:
            return False
        if device.revocation is None:
            return True
        cutoff = device.revocation.cutoffs.get(collection_id)
        return cutoff is not None and seq <= cutoff
