"""What ``docker load`` returns: the loaded images and layers, and :class:`ArchiveError` for an archive refused.

This module owns the result types of :func:`~dockwright.archive.load.read_archive` and its error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import DataCorrupted

__all__ = ["ArchiveError", "LoadedLayer", "LoadedImage", "LoadResult", "ProgressFn", "JSON_LIMIT"]

#: Largest JSON file (manifest.json, index.json, a config…) accepted, as containerd's 20 MiB-ish limit.
JSON_LIMIT = 16 << 20


class ArchiveError(DataCorrupted):
    """An archive that cannot be loaded. ``blobs``: the blobs committed before the failure (to collect).

    ``dockerd_message``, when set, is what dockerd answers for the same archive (its untar's words, e.g.
    ``Error processing tar file(exit status 1): unexpected EOF``), while the message says more precisely what
    is wrong: the service answers with the former and logs the latter."""

    def __init__(self, message: str, blobs: set[str] | None = None, *, dockerd_message: str | None = None) -> None:
        super().__init__(message)
        self.blobs: set[str] = set(blobs or ())
        self.dockerd_message = dockerd_message


@dataclass
class LoadedLayer:
    """A layer blob committed to the store, with what the load learned about it."""

    digest: str
    media_type: str
    size: int
    diff_id: str
    diff_size: int
    tar_size: int


@dataclass
class LoadedImage:
    """One image of the archive. ``repo_tags``: full normalised references (``docker.io/library/bb:1``).
    ``parent``: the parent image ID when the archive declares one that it also holds, else ""."""

    config_raw: bytes
    config_digest: str
    layers: list[LoadedLayer]
    repo_tags: list[str]
    manifest_raw: bytes | None
    manifest_media_type: str | None
    parent: str = ""


@dataclass
class LoadResult:
    """The images of a load, every blob it committed, and those of them no returned image uses."""

    images: list[LoadedImage]
    blobs: set[str]
    unused: set[str] = field(default_factory=set)


#: ``progress(status, short_id, current, total)``.
ProgressFn = Callable[[str, str, int, int | None], None]
