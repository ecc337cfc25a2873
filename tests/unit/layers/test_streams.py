"""DetectingFeed: the head is held back until the compression can be detected, then everything is processed once."""

from __future__ import annotations

from dockwright.layers.compression import DETECT_BYTES
from dockwright.layers.streams import BATCH_BYTES, ChunkBatcher, DetectingFeed


class _Recorder(DetectingFeed):
    def __init__(self) -> None:
        super().__init__()
        self.heads: list[bytes] = []
        self.data = b""

    def _start(self, head: bytes) -> None:
        self.heads.append(head)

    def _process(self, data: bytes) -> None:
        self.data += data


def test_head_held_back_then_processed() -> None:
    r = _Recorder()
    r._take(b"a" * (DETECT_BYTES - 1))
    assert r.heads == [] and r.data == b""
    r._take(memoryview(b"bc"))
    r._take(b"d")
    r._take_end()
    assert r.heads == [b"a" * (DETECT_BYTES - 1) + b"bc"]
    assert r.data == b"a" * (DETECT_BYTES - 1) + b"bcd"


def test_short_input_started_at_the_end() -> None:
    r = _Recorder()
    r._take(b"xy")
    r._take_end()
    r._take_end()
    assert r.heads == [b"xy"] and r.data == b"xy"


def test_chunk_batcher() -> None:
    b = ChunkBatcher()
    assert b.rest() is None
    assert b.add(b"x" * (BATCH_BYTES - 1)) is None and b.pending == BATCH_BYTES - 1
    assert b.add(b"yz") == b"x" * (BATCH_BYTES - 1) + b"yz" and b.pending == 0
    assert b.add(b"") is None
    assert b.rest() == b"" and b.rest() is None
