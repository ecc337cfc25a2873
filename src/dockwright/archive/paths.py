"""Names inside an image archive: relative paths cleaned and checked, blob paths, and its JSON documents."""

from __future__ import annotations

from typing import Any

from ..oci.digest import DIGEST_RE, hex_of
from ..oci.jsonobject import json_object
from .results import ArchiveError

__all__ = ["blob_name", "clean_path", "components", "parse_object"]


def clean_path(name: str) -> list[str] | None:
    """Components of a relative path cleaned lexically; None if it climbs above the root."""
    out: list[str] = []
    for part in name.split("/"):
        if not part or part == ".":
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
            continue
        out.append(part)
    return out


def components(path: str, absolute: str, outside: str) -> list[str]:
    """``path``'s cleaned components; :class:`ArchiveError` ``absolute`` for an absolute path, ``outside`` for one
    that climbs above the archive's root."""
    if path.startswith("/"):
        raise ArchiveError(absolute)
    comps = clean_path(path)
    if comps is None:
        raise ArchiveError(outside)
    return comps


def blob_name(digest: Any, what: str) -> str:
    """The archive path of a blob (``blobs/sha256/<hex>``); :class:`ArchiveError` for a malformed digest."""
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise ArchiveError(f"invalid archive: {what}: unsupported or invalid digest {digest!r}")
    return "blobs/sha256/" + hex_of(digest)


def parse_object(raw: bytes, what: str) -> dict[str, Any]:
    """A JSON object from ``raw``; :class:`ArchiveError` (naming ``what``) for anything else."""
    return json_object(raw, ArchiveError, f"invalid archive: {what}")


