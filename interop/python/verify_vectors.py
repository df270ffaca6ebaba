#!/usr/bin/env python3
"""Runs Keyhold's shared test vectors (docs/spec/vectors/*.json) against keyhold_spec, the Python
implementation written from docs/spec alone (SECURITY.md G9).

For each file it performs the check docs/spec/vectors.md gives for the file's `kind`, stopping at
the first failure, and compares the outcome with `expect`: "ok", or the name of the error the check
must fail with. A vector passes only if the outcome is exactly that; a computed value that differs
from a recorded one is a failure of its own ("mismatch"), whatever the vector expects.

Usage: verify_vectors.py [VECTOR.json ...]    (default: every file in docs/spec/vectors; a bare
       file name is looked up there)
Exit status: 0 if no supported vector failed, 1 otherwise.
"""

import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from keyhold_spec.chain import ChainEntry, Cutoff, DeviceChain, EntryKind, SignerKind, parse_chain_entry
from keyhold_spec.codec import ObjectType
from keyhold_spec.content import (
    FileAttributes,
    FileDecryptor,
    Manifest,
    chunk_lengths,
    decode_listing,
    encode_listing,
    encrypt_file,
    open_blob,
    seal_blob,
)
from keyhold_spec.ed25519 import SigningKey
from keyhold_spec.errors import KeyholdError
from keyhold_spec.keys import (
    CollectionKeys,
    DeviceKeys,
    collection_wrap_kek,
    named_collection_id,
    open_collection_wrap,
    open_device_wrap,
    open_previous_root_wrap,
    open_recovery_wrap,
    parse_device_public_keys,
    parse_device_wrap,
    parse_recovery_key,
    previous_root_wrap_kek,
    recovery_auth_seed,
    recovery_device,
    recovery_key_display,
    recovery_kem_seed,
    recovery_locator,
    root_commitment,
    seal_collection_wrap,
    seal_previous_root_wrap,
    seal_recovery_wrap,
)
from keyhold_spec.packs import PackWriter, blob_bytes, open_pack
from keyhold_spec.pairing import (
    SIDE_INVITER,
    SIDE_JOINER,
    TO_INVITER,
    TO_JOINER,
    JoinerHello,
    PairingKeys,
    Spake2Side,
    Welcome,
    check_confirmation,
    display_code,
    draw_code,
    open_pairing_message,
    parse_code,
    seal_pairing_message,
    slot_of,
    spake2_password,
)
from keyhold_spec.primitives import H, H_xof, Label, padme
from keyhold_spec.revisions import Head, History, open_revision, seal_revision
from keyhold_spec.xwing import (
    MLKEM_CT_LEN,
    combiner,
    hpke_seal_with_shared_secret,
    mlkem_shared_secret_for,
    x25519,
    x25519_base,
)

VECTORS_DIR = Path(__file__).resolve().parents[2] / "docs" / "spec" / "vectors"

# Kinds this implementation cannot check, each with its reason. Every kind in vectors.md is
# supported today; a kind missing from both CHECKS and here is reported as unknown.
UNSUPPORTED_KINDS: dict[str, str] = {}


class VectorMismatch(Exception):
    """A value this implementation computed differs from the one the vector records."""


def same(what: str, computed, recorded) -> None:
    if computed != recorded:
        raise VectorMismatch(f"{what}: computed {_show(computed)}, vector has {_show(recorded)}")


def _show(value) -> str:
    text = value.hex() if isinstance(value, bytes) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Vector:
    """One vector file, with typed access to its fields."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text(encoding="utf-8"))

    def __getitem__(self, key: str):
        return self.data[key]

    def get(self, key: str, default=None):
        return self.data.get(key, default)

    def bytes(self, key: str) -> bytes:
        return bytes.fromhex(self.data[key])

    def content(self, key: str) -> bytes:
        """A content field: `xof:<label>:<len>` stands for XOF(H(label), len)."""
        return expand_content(self.data[key])

    def collection_keys(self) -> CollectionKeys:
        return CollectionKeys(self.bytes("collection_key"), self.bytes("collection_id"), self["epoch"])

    def file_attributes(self) -> FileAttributes:
        return FileAttributes(self.bytes("file_id"), self["version"], self["name"], self["mode"], self["mtime_ns"])


def expand_content(spec: str) -> bytes:
    scheme, label, length = spec.split(":", 2)
    if scheme != "xof":
        raise ValueError(f"unknown content scheme {scheme!r}")
    return H_xof(label.encode("utf-8"), int(length))


def hexes(values: list[bytes]) -> list[str]:
    return [v.hex() for v in values]


# --- one check per kind, as vectors.md, "Kinds", describes it -------------------------------------

CHECKS: dict[str, Callable[[Vector], None]] = {}


def check(kind: str):
    def register(function: Callable[[Vector], None]):
        CHECKS[kind] = function
        return function

    return register


@check("derivation")
def check_derivation(v: Vector) -> None:
    keys = v.collection_keys()
    same("blob_id_key", keys.blob_id_key, v.bytes("blob_id_key"))
    same("blob_key_root", keys.blob_key_root, v.bytes("blob_key_root"))
    same("pack_key_root", keys.pack_key_root, v.bytes("pack_key_root"))
    same("revision_key", keys.revision_key, v.bytes("revision_key"))
    same("gear_first_8", [f"{word:016x}" for word in keys.gear[:8]], v["gear_first_8"])
    sample_id = keys.blob_id(ObjectType.CHUNK, v.bytes("sample_chunk_plaintext"))
    same("sample_chunk_id", sample_id, v.bytes("sample_chunk_id"))
    same("sample_chunk_key", keys.blob_key(ObjectType.CHUNK, sample_id), v.bytes("sample_chunk_key"))
    root_key = v.bytes("account_root_key")
    same("collection_wrap_kek", collection_wrap_kek(root_key), v.bytes("collection_wrap_kek"))
    device = DeviceKeys(v.bytes("signing_seed"), v.bytes("kem_seed"))
    same("device_public_keys", device.public.raw, v.bytes("device_public_keys"))
    parse_device_public_keys(device.public.raw)  # what a reader of these keys does
    same("device_id", device.device_id, v.bytes("device_id"))
    secret = v.bytes("recovery_secret")
    recovery_auth = SigningKey(recovery_auth_seed(secret)).public_key
    same("recovery_auth_public_key", recovery_auth, v.bytes("recovery_auth_public_key"))
    same("recovery_locator", recovery_locator(secret), v.bytes("recovery_locator"))
    same("named_collection_id_default", named_collection_id(root_key, "default"), v.bytes("named_collection_id_default"))


@check("device-derivation")
def check_device_derivation(v: Vector) -> None:
    root_key, account_id, secret = v.bytes("account_root_key"), v.bytes("account_id"), v.bytes("recovery_secret")
    same("root_commitment_epoch_0", root_commitment(root_key, account_id, 0), v.bytes("root_commitment_epoch_0"))
    same("root_commitment_epoch_3", root_commitment(root_key, account_id, 3), v.bytes("root_commitment_epoch_3"))
    same("previous_root_wrap_kek", previous_root_wrap_kek(root_key), v.bytes("previous_root_wrap_kek"))
    same("recovery_device_signing_seed", recovery_auth_seed(secret), v.bytes("recovery_device_signing_seed"))
    same("recovery_device_kem_seed", recovery_kem_seed(secret), v.bytes("recovery_device_kem_seed"))
    device = recovery_device(secret)
    same("recovery_device_public_keys", device.public.raw, v.bytes("recovery_device_public_keys"))
    same("recovery_device_id", device.device_id, v.bytes("recovery_device_id"))
    same("recovery_auth_public_key", device.public.signing_key, v.bytes("recovery_auth_public_key"))


@check("chunking")
def check_chunking(v: Vector) -> None:
    keys, content = v.collection_keys(), v.content("content")
    lengths = chunk_lengths(keys, content)
    same("chunk_lengths", lengths, v["chunk_lengths"])
    ids, start = [], 0
    for length in lengths:
        ids.append(keys.blob_id(ObjectType.CHUNK, content[start : start + length]))
        start += length
    same("chunk_ids", hexes(ids), v["chunk_ids"])


@check("device-wrap")
def check_device_wrap(v: Vector) -> None:
    device = DeviceKeys(v.bytes("signing_seed"), v.bytes("kem_seed"))
    account_id, wrap = v.bytes("account_id"), v.bytes("wrap")
    root_key = open_device_wrap(wrap, device, account_id, v["expected_epoch"])
    same("account_root_key", root_key, v.bytes("account_root_key"))

    # Generation direction. `cryptography` has no ML-KEM encapsulation with injected randomness,
    # so ct_M is not re-encrypted; instead the decapsulated ss_M must equal the K that
    # Encaps_internal(ek_M, m = eseed[0..32]) returns, which FIPS 203 decapsulation yields only for
    # exactly that ciphertext. Everything after ct_M (ct_X, the combiner, HPKE) is recomputed.
    eseed = v.bytes("encapsulation_randomness")
    m, ek_x = eseed[:32], eseed[32:]
    parsed = parse_device_wrap(wrap, device.device_id, account_id, v["epoch"])
    ct_m, ct_x = parsed.enc[:MLKEM_CT_LEN], parsed.enc[MLKEM_CT_LEN:]
    same("ct_X", ct_x, x25519_base(ek_x))
    ss_m = device.kem.decapsulate_mlkem(ct_m)
    same("ML-KEM shared secret of eseed[0..32]", ss_m, mlkem_shared_secret_for(device.kem.ek_m, m))
    shared_secret = combiner(ss_m, x25519(ek_x, device.kem.pk_x), ct_x, device.kem.pk_x)
    ct = hpke_seal_with_shared_secret(shared_secret, Label.DEVICE_WRAP_INFO, parsed.aad, root_key)
    same("regenerated wrap", parsed.aad + parsed.enc + ct, wrap)


@check("recovery-wrap")
def check_recovery_wrap(v: Vector) -> None:
    typed = v["recovery_key"]
    secret = parse_recovery_key(typed)
    same("recovery_secret", secret, v.bytes("recovery_secret"))
    sloppy = typed.lower().replace("-", " ").replace("0", "o")
    same("secret parsed from the sloppy spelling", parse_recovery_key(sloppy), secret)
    same("display form", recovery_key_display(secret), typed)
    account_id, epoch, wrap = v.bytes("account_id"), v["epoch"], v.bytes("wrap")
    root_key = open_recovery_wrap(wrap, secret, account_id, epoch)
    same("account_root_key", root_key, v.bytes("account_root_key"))
    randomness = v.bytes("randomness")
    salt, nonce = randomness[:16], randomness[16:]
    same("regenerated wrap", seal_recovery_wrap(secret, account_id, epoch, root_key, salt, nonce), wrap)


@check("collection-wrap")
def check_collection_wrap(v: Vector) -> None:
    context = (
        v.bytes("account_root_key"), v.bytes("account_id"), v.bytes("collection_id"),
        v["collection_epoch"], v["account_epoch"],
    )
    collection_key = open_collection_wrap(v.bytes("wrap"), *context)
    same("collection_key", collection_key, v.bytes("collection_key"))
    same("regenerated wrap", seal_collection_wrap(*context, collection_key, v.bytes("randomness")), v.bytes("wrap"))


@check("previous-root-wrap")
def check_previous_root_wrap(v: Vector) -> None:
    current, account_id, wrap = v.bytes("current_root_key"), v.bytes("account_id"), v.bytes("wrap")
    previous = open_previous_root_wrap(wrap, current, account_id, v["expected_epoch"])
    same("previous_root_key", previous, v.bytes("previous_root_key"))
    regenerated = seal_previous_root_wrap(current, account_id, v["epoch"], previous, v.bytes("randomness"))
    same("regenerated wrap", regenerated, wrap)


def present_chunks(keys: CollectionKeys, sealed_chunks: list[bytes], manifest_sealed: bytes, mutation: str) -> list[bytes]:
    """The chunk ciphertexts a (possibly hostile) server presents, per vectors.md's table."""
    chunks = list(sealed_chunks)
    op, *args = mutation.split()
    index = [int(a) for a in args]
    if op == "none":
        pass
    elif op == "swap":
        a, b = index
        chunks[a], chunks[b] = chunks[b], chunks[a]
    elif op == "flip":
        (i,) = index
        flipped = bytearray(chunks[i])
        flipped[10] ^= 0x01
        chunks[i] = bytes(flipped)
    elif op == "drop-last":
        chunks.pop()
    elif op == "splice":
        (i,) = index
        other = encrypt_file(keys, expand_content("xof:another file:300000"), FileAttributes(bytes(16), 1, "x", 0, 0))
        chunks[i] = other.sealed_chunks[0]
    elif op == "manifest-as-chunk":
        (i,) = index
        chunks[i] = manifest_sealed
    elif op == "append":
        chunks.append(chunks[0])
    else:
        raise ValueError(f"unknown mutation {mutation!r}")
    return chunks


@check("file")
def check_file(v: Vector) -> None:
    keys, content = v.collection_keys(), v.content("content")
    encrypted = encrypt_file(keys, content, v.file_attributes())  # generation direction first
    same("chunk_ids", hexes([c.blob_id for c in encrypted.manifest.chunks]), v["chunk_ids"])
    same("chunk_lengths", [c.length for c in encrypted.manifest.chunks], v["chunk_lengths"])
    same("chunk_ciphertext_blake3", hexes([H(c) for c in encrypted.sealed_chunks]), v["chunk_ciphertext_blake3"])
    same("manifest", encrypted.manifest_plaintext, v.bytes("manifest"))
    same("manifest_id", encrypted.manifest_id, v.bytes("manifest_id"))
    same("manifest_ciphertext", encrypted.manifest_sealed, v.bytes("manifest_ciphertext"))

    manifest_sealed = v.bytes("manifest_ciphertext")  # parse direction
    manifest = Manifest.decode(open_blob(keys, ObjectType.MANIFEST, v.bytes("manifest_id"), manifest_sealed))
    decryptor = FileDecryptor(keys, manifest)
    presented = present_chunks(keys, list(encrypted.sealed_chunks), manifest_sealed, v["mutation"])
    output = b"".join(decryptor.push(chunk) for chunk in presented)
    decryptor.finish()
    same("decrypted content", output, content)


@check("listing")
def check_listing(v: Vector) -> None:
    keys, listing_id, sealed = v.collection_keys(), v.bytes("listing_id"), v.bytes("listing_ciphertext")
    if v.get("open_as") == "manifest":
        Manifest.decode(open_blob(keys, ObjectType.MANIFEST, listing_id, sealed))
        return
    entries = decode_listing(open_blob(keys, ObjectType.LISTING, listing_id, sealed))
    encoded = encode_listing(entries)
    same("re-encoded listing", encoded, v.bytes("listing"))
    same("re-sealed listing", seal_blob(keys, ObjectType.LISTING, encoded), (listing_id, sealed))


@check("pack")
def check_pack(v: Vector) -> None:
    keys, pack = v.collection_keys(), v.bytes("pack")
    entries = open_pack(keys, pack)
    same("pack_id", H(pack), v.bytes("pack_id"))
    same("Padmé length", padme(len(pack)), len(pack))
    same(
        "entries",
        [{"id": e.blob_id.hex(), "len": e.length, "offset": e.offset, "type": e.blob_type} for e in entries],
        v["entries"],
    )
    for entry in entries:
        open_blob(keys, entry.blob_type, entry.blob_id, blob_bytes(pack, entry))

    encrypted = encrypt_file(keys, v.content("content"), v.file_attributes())  # generation direction
    writer = PackWriter(keys, salt=v.bytes("randomness"))
    for ref, sealed in zip(encrypted.manifest.chunks, encrypted.sealed_chunks):
        writer.add(ObjectType.CHUNK, ref.blob_id, sealed)
    writer.add(ObjectType.MANIFEST, encrypted.manifest_id, encrypted.manifest_sealed)
    same("regenerated pack", writer.finish(), pack)


class KnownDevices:
    """The reader's enrolled devices when there is no chain: the vector's one device, unrevoked."""

    def __init__(self, *devices: DeviceKeys):
        self._keys = {d.device_id: d.public.signing_key for d in devices}

    def enrolled_signing_key(self, device_id: bytes) -> bytes | None:
        return self._keys.get(device_id)

    def may_author(self, device_id: bytes, collection_id: bytes, seq: int) -> bool:
        return device_id in self._keys


@check("revision-chain")
def check_revision_chain(v: Vector) -> None:
    keys = v.collection_keys()
    device = DeviceKeys(v.bytes("signing_seed"), v.bytes("kem_seed"))
    revisions = []
    for link in v["chain"]:
        stored = bytes.fromhex(link["stored"])
        revision = open_revision(keys, stored, KnownDevices(device))
        same("link id", H(stored), bytes.fromhex(link["id"]))
        if link["randomness"]:
            resealed = seal_revision(
                keys, device, revision.seq, revision.prev, revision.root_epoch, revision.root_id,
                revision.time_ms, bytes.fromhex(link["randomness"]),
            )
            same("re-sealed revision", resealed, stored)
        revisions.append(revision)
    last_seen = v["last_seen"]
    history = History(keys.collection_id, Head(last_seen["seq"], bytes.fromhex(last_seen["id"])) if last_seen else None)
    if revisions:
        history.check_offered_head(Head(revisions[-1].seq, revisions[-1].id))
    history.extend(revisions)


_ENTRY_KINDS = {
    "create": EntryKind.CREATE,
    "add-device": EntryKind.ADD_DEVICE,
    "revoke-device": EntryKind.REVOKE_DEVICE,
    "rotate-recovery": EntryKind.ROTATE_RECOVERY,
}
_SIGNER_KINDS = {"device": SignerKind.DEVICE, "recovery": SignerKind.RECOVERY}


def entry_from_fields(account_id: bytes, fields: dict, holders: dict[bytes, DeviceKeys]) -> ChainEntry:
    """A chain entry from a vector link's `fields`; device ids name the holders' public keys."""
    kind = _ENTRY_KINDS[fields["kind"]]
    body = {}
    if kind in (EntryKind.CREATE, EntryKind.ADD_DEVICE):
        body.update(device=holders[bytes.fromhex(fields["device"])].public, name=fields["name"])
    if kind in (EntryKind.CREATE, EntryKind.ROTATE_RECOVERY):
        body.update(recovery=holders[bytes.fromhex(fields["recovery"])].public)
    if kind != EntryKind.ADD_DEVICE:
        body.update(root_commitment=bytes.fromhex(fields["root_commitment"]))
    if kind == EntryKind.REVOKE_DEVICE:
        body.update(
            revoked_device=bytes.fromhex(fields["device"]),
            cutoffs=tuple(Cutoff(bytes.fromhex(c["collection_id"]), c["seq"]) for c in fields["cutoffs"]),
        )
    return ChainEntry(
        account_id=account_id, seq=fields["seq"], prev=bytes.fromhex(fields["prev"]), time_ms=fields["time_ms"],
        account_epoch=fields["account_epoch"], kind=kind, signer_kind=_SIGNER_KINDS[fields["signer"]],
        signer_id=bytes.fromhex(fields["signer_id"]), **body,
    )


def key_holders(v: Vector) -> dict[bytes, DeviceKeys]:
    """Devices A-D and recovery keys R0, R1, by device id, each id checked against its seeds."""
    holders = {}
    for d in v["devices"]:
        keys = DeviceKeys(bytes.fromhex(d["signing_seed"]), bytes.fromhex(d["kem_seed"]))
        same("device_id", keys.device_id.hex(), d["device_id"])
        holders[keys.device_id] = keys
    for r in v["recovery_keys"]:
        secret = bytes.fromhex(r["recovery_secret"])
        same("recovery signing_seed", recovery_auth_seed(secret).hex(), r["signing_seed"])
        same("recovery kem_seed", recovery_kem_seed(secret).hex(), r["kem_seed"])
        keys = recovery_device(secret)
        same("recovery device_id", keys.device_id.hex(), r["device_id"])
        holders[keys.device_id] = keys
    return holders


@check("device-chain")
def check_device_chain(v: Vector) -> None:
    account_id = v.bytes("account_id")
    holders = key_holders(v)
    stored_entries = []
    for link in v["entries"]:
        stored = bytes.fromhex(link["stored"])
        same("entry id", H(stored), bytes.fromhex(link["id"]))
        if link["fields"] is not None:
            entry = entry_from_fields(account_id, link["fields"], holders)
            same(f"signed entry {entry.seq}", entry.sign(holders[bytes.fromhex(link["signed_with"])]), stored)
            same(f"parsed entry {entry.seq}", parse_chain_entry(stored).entry, entry)
        stored_entries.append(stored)

    chain = DeviceChain.verify(account_id, stored_entries)
    same("head", chain.head, Head(v["head"]["seq"], bytes.fromhex(v["head"]["id"])))
    same("epoch", chain.epoch, v["epoch"])
    same("active_devices", hexes(chain.active_devices()), v["active_devices"])
    same("recovery", chain.recovery.device_id.hex(), v["recovery"])
    same("root key count", len(v["root_keys"]), chain.epoch + 1)
    for epoch, root_key in enumerate(v["root_keys"]):
        chain.check_root_key(epoch, bytes.fromhex(root_key))
        try:
            chain.check_root_key(epoch + 1, bytes.fromhex(root_key))
        except KeyholdError as error:
            same(f"check_root_key({epoch + 1}) with epoch {epoch}'s key", error.name, "ContextMismatch")
        else:
            raise VectorMismatch(f"root key of epoch {epoch} also passed for epoch {epoch + 1}")
    for query in v["may_author"]:
        allowed = chain.may_author(bytes.fromhex(query["device"]), bytes.fromhex(query["collection_id"]), query["seq"])
        same(f"may_author {query}", allowed, query["allowed"])


@check("pairing")
def check_pairing(v: Vector) -> None:
    code = parse_code(v["code"])  # 1
    same("display form", display_code(code), v["code"])
    same("slot", slot_of(code), v["slot"])
    same("code drawn from code_randomness", draw_code(v.bytes("code_randomness")), code)
    joiner_code = parse_code(v["joiner_code"])
    joiner_message, inviter_message = v.bytes("joiner_message"), v.bytes("inviter_message")

    joiner = Spake2Side(SIDE_JOINER, joiner_code, v.bytes("joiner_randomness"))  # 2
    inviter = Spake2Side(SIDE_INVITER, code, v.bytes("inviter_randomness"))  # 3
    inviter_shared = inviter.finish(joiner_message)
    inviter_keys = PairingKeys.derive(inviter_shared, inviter.message, joiner_message)
    joiner_shared = joiner.finish(inviter_message)  # 4
    joiner_keys = PairingKeys.derive(joiner_shared, inviter_message, joiner.message)
    check_confirmation(v.bytes("inviter_confirmation"), joiner_keys.inviter_confirmation)
    check_confirmation(v.bytes("joiner_confirmation"), inviter_keys.joiner_confirmation)  # 5

    hello_plaintext = open_pairing_message(inviter_keys, v.bytes("sealed_joiner_hello"), TO_INVITER)  # 6
    welcome_plaintext = open_pairing_message(joiner_keys, v.bytes("sealed_welcome"), TO_JOINER)
    hello = JoinerHello.decode(hello_plaintext)
    joiner_device = DeviceKeys(v.bytes("hello_signing_seed"), v.bytes("hello_kem_seed"))
    same("hello", hello, JoinerHello(joiner_device.public, v["hello_name"]))
    welcome = Welcome.decode(welcome_plaintext)
    expected_welcome = Welcome(
        v.bytes("welcome_account_id"), v["welcome_epoch"], v.bytes("welcome_root_key"),
        v["welcome_head_seq"], v.bytes("welcome_head_id"),
    )
    same("welcome", welcome, expected_welcome)

    # 7: generation direction.
    same("spake2_inviter_identity", Label.SPAKE2_IDENTITY_INVITER, v.bytes("spake2_inviter_identity"))
    same("spake2_joiner_identity", Label.SPAKE2_IDENTITY_JOINER, v.bytes("spake2_joiner_identity"))
    same("spake2_password", spake2_password(code), v.bytes("spake2_password"))
    same("joiner_message", joiner.message, joiner_message)
    same("inviter_message", inviter.message, inviter_message)
    for side, shared, keys in (("inviter", inviter_shared, inviter_keys), ("joiner", joiner_shared, joiner_keys)):
        same(f"shared_key ({side})", shared, v.bytes("shared_key"))
        same(f"inviter_confirmation ({side})", keys.inviter_confirmation, v.bytes("inviter_confirmation"))
        same(f"joiner_confirmation ({side})", keys.joiner_confirmation, v.bytes("joiner_confirmation"))
        same(f"to_inviter_key ({side})", keys.to_inviter, v.bytes("to_inviter_key"))
        same(f"to_joiner_key ({side})", keys.to_joiner, v.bytes("to_joiner_key"))
        same(f"safety_key ({side})", keys.safety_key, v.bytes("safety_key"))
        same(f"safety_string ({side})", keys.safety_string, v["safety_string"])
    same("hello_plaintext", hello_plaintext, v.bytes("hello_plaintext"))
    same("encoded hello", hello.encode(), hello_plaintext)
    same("welcome_plaintext", welcome_plaintext, v.bytes("welcome_plaintext"))
    same("encoded welcome", welcome.encode(), welcome_plaintext)
    same("re-sealed hello", seal_pairing_message(joiner_keys, TO_INVITER, hello_plaintext), v.bytes("sealed_joiner_hello"))
    same("re-sealed welcome", seal_pairing_message(inviter_keys, TO_JOINER, welcome_plaintext), v.bytes("sealed_welcome"))


# --- running ---------------------------------------------------------------------------------------


def run_vector(vector: Vector) -> tuple[str, str]:
    """Returns (PASS | FAIL | UNSUPPORTED, detail)."""
    kind, expected = vector["kind"], vector["expect"]
    checker = CHECKS.get(kind)
    if checker is None:
        return "UNSUPPORTED", UNSUPPORTED_KINDS.get(kind, f"unknown kind {kind!r}")
    try:
        checker(vector)
        outcome, detail = "ok", ""
    except KeyholdError as error:
        outcome, detail = error.name, error.detail
    except VectorMismatch as mismatch:
        return "FAIL", f"mismatch: {mismatch}"
    except Exception:  # a bug here, or a vector this code misreads: report it, keep going
        return "FAIL", "exception: " + traceback.format_exc(limit=3).strip().replace("\n", " | ")
    if outcome == expected:
        return "PASS", expected
    return "FAIL", f"expected {expected}, got {outcome}" + (f" ({detail})" if detail else "")


def main(argv: list[str]) -> int:
    # A bare name such as `pack.json` means the file in docs/spec/vectors.
    paths = [Path(a) if Path(a).exists() else VECTORS_DIR / a for a in argv] or sorted(VECTORS_DIR.glob("*.json"))
    if not paths:
        print(f"no vectors found in {VECTORS_DIR}", file=sys.stderr)
        return 1
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"no such vector file: {', '.join(missing)}", file=sys.stderr)
        return 2
    counts = {"PASS": 0, "FAIL": 0, "UNSUPPORTED": 0}
    unsupported_reasons: dict[str, list[str]] = {}
    width = max(len(p.name) for p in paths)
    print(f"{'vector file':<{width}}  {'result':<11}  {'time':>6}  detail")
    for path in paths:
        started = time.monotonic()
        status, detail = run_vector(Vector(path))
        counts[status] += 1
        if status == "UNSUPPORTED":
            unsupported_reasons.setdefault(detail, []).append(path.name)
        print(f"{path.name:<{width}}  {status:<11}  {time.monotonic() - started:5.1f}s  {detail}", flush=True)
    summary = f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['UNSUPPORTED']} unsupported"
    if unsupported_reasons:
        summary += " (" + "; ".join(f"{reason}: {', '.join(files)}" for reason, files in unsupported_reasons.items()) + ")"
    print(summary)
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
