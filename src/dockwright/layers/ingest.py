"""Turn a layer byte stream (plain, gzip, bzip2, xz or zstd tar) into a stored compressed layer blob.

One pass over the input: the uncompressed tar is hashed (DiffID) and inspected (structure, hostile paths,
dockerd's diff size) while the compressed form goes into a content-store ingest. A gzip input is kept as it is
(no recompression); any other input is recompressed with ISA-L gzip. Nothing is unpacked to disk.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..content.store import ContentStore, Writer
from ..oci import mediatypes as mt
from ..tar.reader import TarInspector
from .compression import Compression, Compressor, Decompressor, decompressor, detect, gzip_compressor
from .streams import DetectingFeed

__all__ = ["IngestedLayer", "LayerIngester"]

_BLOCK = 1 << 20  # compression input is cut in fixed blocks: the gzip bytes then depend on the layer only


@dataclass(frozen=True, slots=True)
class IngestedLayer:
    """A committed layer blob: its digest, media type and compressed size, and the uncompressed tar's DiffID, size,
    entry count and dockerd's diff size."""

    digest: str          # the compressed blob
    media_type: str
    size: int            # compressed size
    diff_id: str         # sha256 of the uncompressed tar
    diff_size: int       # dockerd's layer size (bytes of files once unpacked)
    tar_size: int        # uncompressed tar size
    entries: int


class LayerIngester(DetectingFeed):
    """Feed chunks with ``feed``; ``finish`` verifies and commits the blob. Blocking: call from a worker thread."""

    def __init__(self, store: ContentStore, *, level: int = 1, keep_compressed: bool = True,
                 keep_uncompressed: bool = False, media_type: str = mt.DOCKER_LAYER, ref: str | None = None,
                 fsync: bool = True) -> None:
        self._store = store
        self._level = level
        self._keep = keep_compressed
        self._keep_plain = keep_uncompressed
        self._media_type = media_type
        self._ref = ref
        super().__init__()
        self._fsync = fsync
        self._mode: Compression | None = None
        self._decomp: Decompressor | None = None
        self._comp: Compressor | None = None
        self._writer: Writer | None = None
        self._diff = hashlib.sha256()
        self._tar = TarInspector(links_in_archive=True)  # a layer: its hard links name its own entries
        self._pending = bytearray()
        self.bytes_in = 0

    @property
    def _plain_stored(self) -> bool:
        return self._keep_plain and self._mode is Compression.NONE

    def _start(self, head: bytes) -> None:
        self._mode = detect(head)
        self._writer = self._store.writer(self._ref)
        if self._mode is not Compression.NONE:
            self._decomp = decompressor(self._mode)
        if self._mode is Compression.NONE and self._keep_plain:
            # stored as it is (containerd keeps a docker-archive's uncompressed layers): one hash, no deflate
            self._media_type = mt.OCI_LAYER
        elif not (self._mode is Compression.GZIP and self._keep):
            self._comp = gzip_compressor(self._level)

    def _uncompressed(self, data: bytes) -> None:
        if not data:
            return
        if self._plain_stored:
            self._writer.write(data)  # type: ignore[union-attr]  # the writer's hash is the DiffID
        else:
            self._diff.update(data)
        self._tar.feed(data)
        if self._comp is not None:
            self._pending += data
            while len(self._pending) >= _BLOCK:
                self._compress(bytes(self._pending[:_BLOCK]))
                del self._pending[:_BLOCK]

    def _compress(self, block: bytes) -> None:
        assert self._comp is not None and self._writer is not None
        out = self._comp.compress(block)
        if out:
            self._writer.write(out)

    def _process(self, data: bytes) -> None:
        if self._mode is Compression.GZIP and self._keep:
            assert self._writer is not None
            self._writer.write(data)
        if self._decomp is not None:
            for piece in self._decomp.feed(data):  # bounded pieces, however far the data inflates
                self._uncompressed(piece)
        else:
            self._uncompressed(data)

    def feed(self, data: bytes) -> None:
        """Take the next chunk of the input: the compression is detected from the first 16 bytes, then each chunk is
        stored, hashed and inspected as it comes."""
        self.bytes_in += len(data)
        self._take(data)

    def finish(self) -> IngestedLayer:
        """End the input: check the tar's end (a truncated or hostile stream raises), flush the compression and
        commit the blob; any failure aborts the ingest."""
        try:
            self._take_end()
            if self._decomp is not None:
                self._decomp.finish()
            summary = self._tar.close()
            assert self._writer is not None
            if self._comp is not None:
                if self._pending:
                    self._compress(bytes(self._pending))
                    self._pending.clear()
                tail = self._comp.flush()
                if tail:
                    self._writer.write(tail)
            size = self._writer.offset
            digest = self._writer.commit(sync=self._fsync)
        except BaseException:
            self.abort()
            raise
        diff_id = digest if self._plain_stored else "sha256:" + self._diff.hexdigest()
        return IngestedLayer(digest=digest, media_type=self._media_type, size=size,
                             diff_id=diff_id, diff_size=summary.diff_size,
                             tar_size=summary.tar_size, entries=summary.entries)

    def abort(self) -> None:
        """Throw the ingest's partial data away; the blob of a finished ingest stays."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


