"""Content digests: validation, streaming hashers and ChainIDs."""

from __future__ import annotations

import hashlib
import re

from ..errors import InvalidArgument

__all__ = ["DIGEST_RE", "validate_digest", "sha256_digest", "Hasher", "chain_ids", "short_id", "hex_of"]

DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}\Z")


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a well-formed sha256 digest, else raise InvalidArgument."""
    if not DIGEST_RE.match(digest):
        raise InvalidArgument(f"invalid digest: {digest!r}")
    return digest


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(digest: str) -> str:
    """``sha256:abc…`` → ``abc…``."""
    return digest.split(":", 1)[1] if ":" in digest else digest


def short_id(digest: str) -> str:
    """The 12-hex short form docker prints."""
    return hex_of(digest)[:12]


class Hasher:
    """A sha256 that also counts bytes."""

    __slots__ = ("_h", "size")

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        """Hash ``data`` and add its length to ``size``."""
        self._h.update(data)
        self.size += len(data)

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of everything hashed so far."""
        return "sha256:" + self._h.hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append(sha256_digest(f"{out[-1]} {d}".encode()))
    return out
