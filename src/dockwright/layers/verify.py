"""Verify a compressed layer stream without storing its uncompressed form: DiffID, tar checks, diff size."""

from __future__ import annotations

import hashlib

from ..tar.reader import TarInspector, TarSummary
from .compression import Compression, Decompressor, decompressor, detect
from .streams import DetectingFeed

__all__ = ["LayerVerifier"]


class LayerVerifier(DetectingFeed):
    """Feed the (compressed) layer bytes as they arrive; ``finish`` returns (diff_id, TarSummary).

    Compression is detected from the first bytes (gzip, zstd, bzip2, xz or none). Blocking: use a worker thread.
    """

    def __init__(self) -> None:
        super().__init__()
        self._decomp: Decompressor | None = None
        self._diff = hashlib.sha256()
        self._tar = TarInspector(links_in_archive=True)  # a layer: its hard links name its own entries

    def _start(self, head: bytes) -> None:
        kind = detect(head)
        if kind is not Compression.NONE:
            self._decomp = decompressor(kind)

    def _plain(self, data: bytes) -> None:
        if data:
            self._diff.update(data)
            self._tar.feed(data)

    def _process(self, data: bytes) -> None:
        if self._decomp is None:
            self._plain(data)
            return
        for piece in self._decomp.feed(data):  # bounded pieces, however far the data inflates
            self._plain(piece)

    def feed(self, data: bytes | memoryview) -> None:
        """Take the next bytes of the compressed stream (held back until the compression can be detected)."""
        self._take(data)

    def finish(self) -> tuple[str, TarSummary]:
        """End of the stream: the layer's DiffID and the summary of its tar (raises if the tar is invalid)."""
        self._take_end()
        if self._decomp is not None:
            self._decomp.finish()
        summary = self._tar.close()
        return "sha256:" + self._diff.hexdigest(), summary
