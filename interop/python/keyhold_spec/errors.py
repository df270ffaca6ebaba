"""Keyhold's named failures (docs/spec/README.md, "Errors").

The names are the conformance contract: a vector's `expect` field holds one of them, and only the
name is compared. Every check in this package raises `KeyholdError(name)`.
"""

ERROR_NAMES = frozenset(
    {
        "BadMagic",
        "UnsupportedVersion",
        "UnsupportedSuite",
        "WrongObjectType",
        "Truncated",
        "TrailingBytes",
        "Malformed",
        "ContextMismatch",
        "DecryptionFailed",
        "ContentMismatch",
        "BadSignature",
        "UnknownAuthor",
        "UnexpectedChunk",
        "MissingChunks",
        "Rollback",
        "Fork",
        "MissingRevisions",
        "ChainFork",
        "ChainRollback",
        "InvalidPairingCode",
        "PairingFailed",
        "KdfTooWeak",
        "KdfTooCostly",
        "InvalidRecoveryKey",
        "InvalidName",
        "LimitExceeded",
    }
)


class KeyholdError(Exception):
    """A check of the spec failed. `name` is one of ERROR_NAMES; `detail` is for humans only."""

    def __init__(self, name: str, detail: str = ""):
        if name not in ERROR_NAMES:
            # A typo here would silently make a failure vector "fail for another reason".
            raise ValueError(f"unknown Keyhold error name {name!r}")
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name
        self.detail = detail
