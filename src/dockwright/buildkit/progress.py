"""A BuildKit build's progress as BuildKit reports it (``SolveStatus``): vertexes (one per step, with its inputs,
``cached``, start and completion times, the error), their statuses (``transferring context: 2B``, ``writing image
sha256:…``) and their logs (a RUN's output), as batches a consumer turns into ``moby.buildkit.trace`` messages
or ``Control.Status`` answers."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field

__all__ = ["Vertex", "VertexStatus", "VertexLog", "StatusBatch", "Recorder", "VertexHandle", "now_ns"]


def now_ns() -> int:
    """The wall clock in nanoseconds (BuildKit's timestamps)."""
    return time.time_ns()


@dataclass
class Vertex:
    """One step of the build graph as the client shows it."""

    digest: str
    name: str
    inputs: list[str] = field(default_factory=list)
    cached: bool = False
    started: int | None = None
    completed: int | None = None
    error: str = ""


@dataclass
class VertexStatus:
    """A progress line of a vertex (``transferring context``, ``exporting layers``)."""

    id: str
    vertex: str
    name: str = ""
    current: int = 0
    total: int = 0
    timestamp: int = 0
    started: int | None = None
    completed: int | None = None


@dataclass
class VertexLog:
    """Output of a vertex: ``stream`` 1 (stdout) or 2 (stderr)."""

    vertex: str
    stream: int
    data: bytes
    timestamp: int


@dataclass
class StatusBatch:
    """What changed since the last batch."""

    vertexes: list[Vertex] = field(default_factory=list)
    statuses: list[VertexStatus] = field(default_factory=list)
    logs: list[VertexLog] = field(default_factory=list)


class VertexHandle:
    """One vertex of a :class:`Recorder`: start it, log to it, give it statuses, finish it."""

    def __init__(self, recorder: Recorder, vertex: Vertex) -> None:
        self.recorder = recorder
        self.vertex = vertex
        self._statuses: dict[str, VertexStatus] = {}

    @property
    def digest(self) -> str:
        """The vertex's digest (what other vertexes name as an input)."""
        return self.vertex.digest

    def start(self) -> VertexHandle:
        """Mark the vertex started."""
        if self.vertex.started is None:
            self.vertex.started = now_ns()
            self.recorder.send(StatusBatch(vertexes=[_copy(self.vertex)]))
        return self

    def cached(self) -> None:
        """Mark the vertex a cache hit (``CACHED``) and complete."""
        t = now_ns()
        self.vertex.cached = True
        self.vertex.started = self.vertex.started or t
        self.vertex.completed = t
        self.recorder.send(StatusBatch(vertexes=[_copy(self.vertex)]))

    def done(self, error: str = "") -> None:
        """Complete the vertex (with ``error`` when it failed)."""
        if self.vertex.completed is not None:
            return
        t = now_ns()
        self.vertex.started = self.vertex.started or t
        self.vertex.completed = t
        self.vertex.error = error
        self.recorder.send(StatusBatch(vertexes=[_copy(self.vertex)]))

    def log(self, stream: int, data: bytes) -> None:
        """Output of the vertex."""
        if data:
            self.recorder.send(StatusBatch(logs=[VertexLog(self.vertex.digest, stream, data, now_ns())]))

    def status(self, id: str, *, name: str = "", current: int = 0, total: int = 0, done: bool = False) -> None:
        """Create or update the status ``id`` of the vertex (``done``: it completed)."""
        t = now_ns()
        st = self._statuses.get(id)
        if st is None:
            st = self._statuses[id] = VertexStatus(id=id, vertex=self.vertex.digest, name=name, started=t)
        st.current, st.total, st.timestamp = current, total, t
        if name:
            st.name = name
        if done:
            st.completed = t
        self.recorder.send(StatusBatch(statuses=[VertexStatus(**st.__dict__)]))


class Recorder:
    """The progress of one build: vertexes made through :meth:`vertex`, every change queued as a
    :class:`StatusBatch` for :meth:`batches` (ended by :meth:`close`)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[StatusBatch | None] = asyncio.Queue()
        self.vertexes: list[Vertex] = []
        self._by_key: dict[str, VertexHandle] = {}
        self.closed = False

    def vertex(self, name: str, inputs: list[str] | None = None, *, key: str = "") -> VertexHandle:
        """A new vertex named ``name`` (its digest derived from ``key``, or unique), not yet started."""
        seed = key or f"{name}\0{len(self.vertexes)}\0{now_ns()}"
        digest = "sha256:" + hashlib.sha256(seed.encode()).hexdigest()
        if key:  # the same operation in two stages is one vertex, named by the first (BuildKit merges them)
            same = self._by_key.get(digest)
            if same is not None:
                return same
        v = Vertex(digest=digest, name=name, inputs=list(inputs or []))
        self.vertexes.append(v)
        self.send(StatusBatch(vertexes=[_copy(v)]))
        handle = VertexHandle(self, v)
        if key:
            self._by_key[digest] = handle
        return handle

    def send(self, batch: StatusBatch) -> None:
        """Queue a batch (dropped once closed)."""
        if not self.closed:
            self.queue.put_nowait(batch)

    def close(self) -> None:
        """No more batches: :meth:`batches` ends."""
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)

    def drain(self) -> tuple[StatusBatch | None, bool]:
        """Every batch queued now merged into one (None if none), and whether the recorder is closed."""
        merged = StatusBatch()
        got = False
        ended = False
        while not self.queue.empty():
            b = self.queue.get_nowait()
            if b is None:
                ended = True
                break
            got = True
            merged.vertexes += b.vertexes
            merged.statuses += b.statuses
            merged.logs += b.logs
        return (merged if got else None), ended


def _copy(v: Vertex) -> Vertex:
    return Vertex(v.digest, v.name, list(v.inputs), v.cached, v.started, v.completed, v.error)
