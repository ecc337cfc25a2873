"""``RUN --mount=type=cache`` directories: one per cache ID (``id``, default the target), kept across builds
under the data root and recorded in the build cache (``exec.cachemount``), with BuildKit's sharing modes:
``shared`` (used by any number of steps at once), ``locked`` (one step at a time, the others wait) and
``private`` (a step that finds it in use gets a fresh directory of its own, dropped afterwards)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from ..metadata.bkcache import BKCacheStore
from ..snapshots.du import dir_size

__all__ = ["CacheMounts", "CACHE_MOUNT_KIND"]

CACHE_MOUNT_KIND = "exec.cachemount"


class CacheMounts:
    """The cache mounts' directories under ``root`` and their records in ``store``."""

    def __init__(self, root: Path, store: BKCacheStore) -> None:
        self.root = Path(root)
        self.store = store
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @staticmethod
    def key(cache_id: str) -> str:
        """The record key (and directory name) of a cache ID."""
        return "cachemount:" + hashlib.sha256(cache_id.encode()).hexdigest()

    def path(self, cache_id: str) -> Path:
        """The directory of a cache ID (it may not exist yet)."""
        return self.root / self.key(cache_id).split(":", 1)[1]

    def in_use(self, key: str) -> bool:
        """Whether a running step has the cache mount ``key``."""
        return self._users.get(key, 0) > 0

    @asynccontextmanager
    async def use(self, cache_id: str, sharing: str, *, mode: int, uid: int, gid: int, description: str,
                  seed: Callable[[Path], None] | None = None) -> AsyncIterator[Path]:
        """The directory of ``cache_id`` for one step (made on first use with ``mode``, ``uid``, ``gid``, and
        filled by ``seed`` — ``from=`` — when given), held for the step according to ``sharing``."""
        key = self.key(cache_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        path = self.path(cache_id)
        private: Path | None = None
        if sharing == "locked":
            await lock.acquire()
        elif sharing == "private" and self.in_use(key):
            private = self.root / f"private-{os.urandom(8).hex()}"
        try:
            target = private or path
            if not target.exists():
                await asyncio.to_thread(_make, target, mode, uid, gid, seed)
                if private is None:
                    self.store.put(key, CACHE_MOUNT_KIND, description, None)
            elif private is None:
                self.store.touch(key)
            if private is None:
                self._users[key] = self._users.get(key, 0) + 1
            try:
                yield target
            finally:
                if private is None:
                    self._users[key] -= 1
                    size = await asyncio.to_thread(dir_size, target)
                    self.store.set_size(key, size)
        finally:
            if private is not None:
                await asyncio.to_thread(shutil.rmtree, private, True)
            if sharing == "locked":
                lock.release()

    def remove(self, key: str) -> None:
        """Delete a cache mount's directory (its record is the caller's)."""
        shutil.rmtree(self.root / key.split(":", 1)[1], ignore_errors=True)


def _make(path: Path, mode: int, uid: int, gid: int, seed: Callable[[Path], None] | None) -> None:
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}")
    tmp.mkdir(parents=True)
    if seed is not None:
        seed(tmp)
    os.chmod(tmp, mode)
    os.chown(tmp, uid, gid)
    try:
        os.rename(tmp, path)
    except OSError:  # made meanwhile by another step
        shutil.rmtree(tmp, ignore_errors=True)
