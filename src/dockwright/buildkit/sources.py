"""A build's sources through the client's session: the Dockerfile (``[internal] load build definition from
Dockerfile``), ``.dockerignore`` (``[internal] load .dockerignore``), the context (``[internal] load build
context``, only when a step needs it) and secrets. The context is kept per client context (the session's shared
key) between builds, so that the file sync transfers only what changed since the last build."""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

from ..builder.dockerignore import DockerIgnore
from ..builder.paths import scoped_resolve
from ..dockerfile import MAX_DOCKERFILE_SIZE
from ..errors import InvalidArgument, NotFound
from ..metadata.bkcache import BKCacheStore
from .checksum import ContentHasher
from .progress import Recorder
from .sshforward import AgentStream, OpenAgent

__all__ = ["ClientSession", "SessionSources", "LOCAL_SOURCE_KIND", "read_scoped"]

LOCAL_SOURCE_KIND = "source.local"


class ClientSession(Protocol):
    """The client's session as a build uses it (:class:`.session.Session`)."""

    @property
    def shared_key(self) -> str:
        """The client's key of its context (the same directory gives the same key)."""

    async def sync_dir(self, name: str, dest: Path, *, include: list[str] | None = None,
                       exclude: list[str] | None = None, follow_paths: list[str] | None = None,
                       progress: Any = None) -> Any:
        """Bring the client's directory ``name`` into ``dest`` (only what changed); stats with ``received``."""

    async def get_secret(self, id: str) -> bytes:
        """The secret ``id``; raises ``NotFound``."""

    async def credentials(self, host: str) -> tuple[str, str]:
        """(user name, secret) for the registry ``host``; ("", "") when the client has none."""

    async def check_agent(self, agent_id: str) -> None:
        """That the client forwards the SSH agent ``agent_id``; raises ``NotFound`` or the client's error."""

    def agent(self, agent_id: str) -> AbstractAsyncContextManager[AgentStream]:
        """A connection to the client's SSH agent ``agent_id``."""

    async def send_tar(self, chunks: AsyncIterator[bytes]) -> None:
        """Send a tar stream to the client (``--output type=tar``)."""

    async def send_dir(self, src: Path) -> None:
        """Send a directory to the client (``--output type=local``)."""


def read_scoped(root: Path, rel: str, what: str) -> bytes | None:
    """The file at ``rel`` in a synced directory (its symlinks resolved inside it: the client chose them), or None;
    longer than BuildKit allows is an error."""
    try:
        full = scoped_resolve(root, rel)
    except ValueError:
        raise InvalidArgument(f"forbidden path outside the build context: {rel} ()") from None
    try:
        with open(full, "rb") as f:
            data = f.read(MAX_DOCKERFILE_SIZE + 1)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    if len(data) > MAX_DOCKERFILE_SIZE:
        raise InvalidArgument(f"{what} exceeds maximum allowed size of {MAX_DOCKERFILE_SIZE} bytes")
    return data


class SessionSources:
    """The sources of one build from ``session``, staged under ``work``; the context lives under ``contexts``
    (one directory per shared key, reused by the next build)."""

    _locks: dict[str, asyncio.Lock] = {}

    def __init__(self, session: ClientSession, work: Path, contexts: Path, rec: Recorder, store: BKCacheStore,
                 dockerfile_name: str = "Dockerfile", *, hasher: ContentHasher | None = None) -> None:
        self.session = session
        self.work = Path(work)
        self.contexts = Path(contexts)
        self.rec = rec
        self.store = store
        self.dockerfile_name = dockerfile_name
        self.hasher = hasher  # told what each context sync changed (its directory digests kept between builds)
        self.excludes: list[str] = []
        self._ctx: Path | None = None
        self._ctx_task: asyncio.Future[Path] | None = None

    async def dockerfile(self) -> bytes:
        """The Dockerfile, and the ``.dockerignore`` patterns the context is synced with, as dockerd 20.10's
        BuildKit asks for them: the ``dockerfile`` directory following ``[name, name.dockerignore]`` (and
        ``dockerfile`` for the default name); unless that gave ``<name>.dockerignore``, the context's
        ``.dockerignore`` alone."""
        name = self.dockerfile_name or "Dockerfile"
        v = self.rec.vertex(f"[internal] load build definition from {name}").start()
        key = hashlib.sha256(b"dockerfile:" + self.session.shared_key.encode()).hexdigest()
        dest = self.contexts / key  # kept per client context, as the context: a rebuild transfers the stats alone
        follow = [name, f"{name}.dockerignore"] + (["dockerfile"] if name == "Dockerfile" else [])
        try:
            async with self._locks.setdefault(key, asyncio.Lock()):
                dest.mkdir(parents=True, exist_ok=True)
                stats = await self.session.sync_dir("dockerfile", dest, follow_paths=follow)
                v.status("transferring dockerfile:", name="transferring",
                         current=stats.received, done=True)
                text = read_scoped(dest, name, "Dockerfile")
                if text is None and name == "Dockerfile":
                    text = read_scoped(dest, "dockerfile", "Dockerfile")
                if text is None:
                    raise NotFound(f"failed to solve with frontend dockerfile.v0: failed to read dockerfile: open "
                                   f"{dest / name}: no such file or directory")
                ignore = read_scoped(dest, f"{name}.dockerignore", ".dockerignore")
        except Exception as exc:
            v.done(str(exc))
            raise
        v.done()
        self._record(key, "local source for dockerfile")
        if ignore is None:
            v2 = self.rec.vertex("[internal] load .dockerignore").start()
            ign = self.work / "dockerignore"
            ign.mkdir(parents=True, exist_ok=True)
            try:
                stats = await self.session.sync_dir("context", ign, follow_paths=[".dockerignore"])
                v2.status("transferring context:", name="transferring",
                          current=stats.received, done=True)
                ignore = read_scoped(ign, ".dockerignore", ".dockerignore")
            except Exception as exc:
                v2.done(str(exc))
                raise
            v2.done()
        if ignore is not None:
            self.excludes = DockerIgnore.from_text(ignore).patterns
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
            try:
                stats = await self.session.sync_dir("context", dest, exclude=self.excludes or None)
            except BaseException:
                if self.hasher is not None:
                    self.hasher.track(dest, None)  # changed, but nobody knows what
                raise
            if self.hasher is not None:
                self.hasher.track(dest, getattr(stats, "changed", None))
            v.status("transferring context:", name="transferring",
                     current=stats.received, done=True)
        except Exception as exc:
            v.done(str(exc))
            raise
        v.done()
        self._record(key, "local source for context")
        self._ctx = dest
        return dest

    def _record(self, key: str, description: str) -> None:
        """The build cache's record of a kept source directory (used now; its size is measured when the cache is
        listed, prune removes the directory)."""
        if self.store.get("local:" + key, use=True) is None:
            self.store.put("local:" + key, LOCAL_SOURCE_KIND, description, None)

    def release(self) -> None:
        """The build is over: the context may be synced by the next build."""
        lock = getattr(self, "_lock", None)
        if lock is not None and lock.locked():
            lock.release()

    async def credentials(self, host: str) -> tuple[str, str]:
        """The client's credentials for the registry ``host`` (Auth.Credentials; none if it serves no auth)."""
        return await self.session.credentials(host)

    async def ssh_agent(self, id: str) -> OpenAgent:
        """Connections to the client's SSH agent ``id`` (``docker build --ssh``); raises ``NotFound`` when the
        client forwards none of that ID."""
        await self.session.check_agent(id)
        return functools.partial(self.session.agent, id)

    async def secret(self, id: str) -> bytes | None:
        """The secret ``id`` from the client, None if it has none."""
        try:
            return await self.session.get_secret(id)
        except NotFound:
            return None
