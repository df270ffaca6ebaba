"""A second implementation of Keyhold's formats, written from docs/spec/*.md alone.

Modules follow the spec's documents:

- errors, codec, primitives: README.md ("Conventions", "Errors", "Primitives") and format.md's
  envelope;
- ed25519, xwing: the public-key primitives (strict Ed25519, X-Wing, HPKE);
- keys: keys.md (derivations, device keys, wraps, the recovery key);
- content, packs, revisions: format.md (blobs, chunking, files, manifests, listings, packs,
  revisions and history verification);
- chain, pairing: devices.md (the device chain and pairing).

It exists to prove the spec complete (SECURITY.md G9): `verify_vectors.py` runs it against
docs/spec/vectors/*.json.
"""

from .errors import ERROR_NAMES, KeyholdError

__all__ = ["ERROR_NAMES", "KeyholdError"]
