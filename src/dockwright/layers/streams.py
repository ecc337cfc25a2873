"""Layer streams pushed in chunks: :class:`DetectingFeed`, the base of the ingester and the verifier, which detects
the compression from the first bytes (the pull side is :class:`~.compression.DecompressedReader`), and
:class:`ChunkBatcher`, which gathers a stream's small chunks into the batches handed to them in a worker thread."""

from __future__ import annotations

from .compression import DETECT_BYTES

__all__ = ["BATCH_BYTES", "ChunkBatcher", "DetectingFeed"]

BATCH_BYTES = 1 << 20


class DetectingFeed:
    """Push-side base: the first bytes are held back until :data:`DETECT_BYTES` have come (or the input ends), then
    ``_start(head)`` chooses the decompression and ``_process`` takes the head and every chunk after it."""

    def __init__(self) -> None:
        self._head = bytearray()
        self._detected = False

    def _start(self, head: bytes) -> None:
        """Set up for the compression ``head`` (the first bytes) shows."""
        raise NotImplementedError

    def _process(self, data: bytes) -> None:
        """Take the next bytes of the (compressed) input."""
        raise NotImplementedError

    def _take(self, data: bytes | bytearray | memoryview) -> None:
        """The next chunk of the input: held back while the compression is not known yet."""
        if not self._detected:
            self._head += data
            if len(self._head) < DETECT_BYTES:
                return
            head = bytes(self._head)
            self._head = bytearray()
            self._begin(head)
            return
        self._process(bytes(data) if not isinstance(data, bytes) else data)

    def _take_end(self) -> None:
        """The input ended: a head shorter than :data:`DETECT_BYTES` (an empty one too) is started and processed."""
        if not self._detected:
            self._begin(bytes(self._head))

    def _begin(self, head: bytes) -> None:
        self._start(head)
        self._detected = True
        self._process(head)


class ChunkBatcher:
    """Chunks gathered until they make :data:`BATCH_BYTES` (a worker-thread call per chunk would cost more than the
    work). ``pending``: the bytes gathered and not handed out yet."""

    def __init__(self) -> None:
        self._buf: list[bytes] = []
        self.pending = 0

    def add(self, chunk: bytes) -> bytes | None:
        """Gather ``chunk``: the batch (and the batcher empty again) once it reaches :data:`BATCH_BYTES`, else None."""
        self._buf.append(chunk)
        self.pending += len(chunk)
        if self.pending < BATCH_BYTES:
            return None
        data = b"".join(self._buf)
        self._buf.clear()
        self.pending = 0
        return data

    def rest(self) -> bytes | None:
        """What is gathered at the end of the stream (the batcher then empty), or None when nothing is."""
        if not self._buf:
            return None
        data = b"".join(self._buf)
        self._buf.clear()
        self.pending = 0
        return data
