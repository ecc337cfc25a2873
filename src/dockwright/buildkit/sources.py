"""A build's sources through the client's session: the Dockerfile (``[internal] load build definition from
Dockerfile``), ``.dockerignore`` (``[internal] load .dockerignore``), the context (``[internal] load build
context``, only when a step needs it) and secrets. The context is kept per client context (the session's shared
key) between builds, so that the file sync transfers only what changed since the last build."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from ..builder.dockerignore import DockerIgnore
from ..errors import NotFound
from ..metadata.bkcache import BKCacheStore
from .mounts import disk_usage
from .progress import Recorder

__all__ = ["ClientSession", "SessionSources", "LOCAL_SOURCE_KIND", "units"]

LOCAL_SOURCE_KIND = "source.local"


class ClientSession(Protocol):
    """The client's session as a build uses it (:class:`.session.Session`)."""

    @property
    def shared_key(self) -> str:
        """The client's key of its context (the same directory gives the same key)."""

    async def sync_dir(self, name: str, dest: Path, *, include: list[str] | None = None,
                       exclude: list[str] | None = None, follow_paths: list[str] | None = None) -> Any:
        """Bring the client's directory ``name`` into ``dest`` (only what changed); stats with ``bytes``."""

    async def get_secret(self, id: str) -> bytes:
        """The secret ``id``; raises ``NotFound``."""

    async def send_tar(self, chunks: AsyncIterator[bytes]) -> None:
        """Send a tar stream to the client (``--output type=tar``)."""

    async def send_dir(self, src: Path) -> None:
        """Send a directory to the client (``--output type=local``)."""


def units(n: int) -> str:
    """``go-units.HumanSize`` as BuildKit's progress prints sizes (``2B``, ``1.23kB``, ``4.56MB``)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(size)}B"
            return f"{size:.4g}{unit}"
        size /= 1000
    return f"{n}B"


class SessionSources:
    """The sources of one build from ``session``, staged under ``work``; the context lives under ``contexts``
    (one directory per shared key, reused by the next build)."""

    _locks: dict[str, asyncio.Lock] = {}

    def __init__(self, session: ClientSession, work: Path, contexts: Path, rec: Recorder, store: BKCacheStore,
                 dockerfile_name: str = "Dockerfile") -> None:
        self.session = session
        self.work = Path(work)
        self.contexts = Path(contexts)
        self.rec = rec
        self.store = store
        self.dockerfile_name = dockerfile_name
        self.excludes: list[str] = []
        self._ctx: Path | None = None
        self._ctx_task: asyncio.Future[Path] | None = None

    async def dockerfile(self) -> bytes:
        """The Dockerfile, and the ``.dockerignore`` patterns the context is synced with."""
        name = self.dockerfile_name
        v = self.rec.vertex(f"[internal] load build definition from {name}").start()
        dest = self.work / "dockerfile"
        dest.mkdir(parents=True, exist_ok=True)
        try:
            stats = await self.session.sync_dir("dockerfile", dest, include=[name])
            v.status("transferring dockerfile:", name="transferring",
                     current=int(getattr(stats, "bytes", 0)), done=True)
            path = dest / name
            if not path.is_file():
                raise NotFound(f"failed to solve with frontend dockerfile.v0: failed to read dockerfile: open "
                               f"{path}: no such file or directory")
            text = path.read_bytes()
        except Exception as exc:
            v.done(str(exc))
            raise
        v.done()
        v2 = self.rec.vertex("[internal] load .dockerignore").start()
        ign = self.work / "dockerignore"
        ign.mkdir(parents=True, exist_ok=True)
        try:
            stats = await self.session.sync_dir("context", ign, include=[".dockerignore"])
            v2.status("transferring context:", name="transferring",
                      current=int(getattr(stats, "bytes", 0)), done=True)
            f = ign / ".dockerignore"
            if f.is_file():
                lines = f.read_text(errors="replace").splitlines()
                DockerIgnore(lines)  # checks the patterns
                self.excludes = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        except Exception as exc:
            v2.done(str(exc))
            raise
        v2.done()
        return text

    async def context(self) -> Path:
        """The context (synced on first use; later calls wait for the same sync)."""
        if self._ctx_task is None:
            self._ctx_task = asyncio.ensure_future(self._sync_context())
        return await asyncio.shield(self._ctx_task)

    async def _sync_context(self) -> Path:
        key = hashlib.sha256(self.session.shared_key.encode()).hexdigest()
        dest = self.contexts / key
        lock = self._locks.setdefault(key, asyncio.Lock())
        v = self.rec.vertex("[internal] load build context").start()
        try:
            await lock.acquire()  # held until the build ends (release): another build may not change it meanwhile
            self._lock = lock
            dest.mkdir(parents=True, exist_ok=True)
            stats = await self.session.sync_dir("context", dest, exclude=self.excludes or None)
            v.status("transferring context:", name="transferring",
                     current=int(getattr(stats, "bytes", 0)), done=True)
        except Exception as exc:
            v.done(str(exc))
            raise
        v.done()
        rec_key = "local:" + key
        size = await asyncio.to_thread(disk_usage, dest)
        if self.store.get(rec_key, use=True) is None:
            self.store.put(rec_key, LOCAL_SOURCE_KIND, "local source for context", None, size=size)
        else:
            self.store.set_size(rec_key, size)
        self._ctx = dest
        return dest

    def release(self) -> None:
        """The build is over: the context may be synced by the next build."""
        lock = getattr(self, "_lock", None)
        if lock is not None and lock.locked():
            lock.release()

    async def secret(self, id: str) -> bytes | None:
        """The secret ``id`` from the client, None if it has none."""
        try:
            return await self.session.get_secret(id)
        except NotFound:
            return None
