"""The garbage collector: the one place that deletes blobs, snapshots, ingests and temporary directories.

containerd's design (``core/metadata/gc.go``, ``pkg/gc``): mark from the roots, sweep what is not marked.

Roots:
- images: every blob of ``image_blobs`` (index, manifests, config, layers) and every layer ChainID (its snapshot);
- containers: their image's config blob and their rootfs snapshot (key = container id);
- live leases (``metadata/leases``): the blobs, ingests, snapshots and temporary directories of operations in
  flight;
- while the daemon runs, every active or view snapshot (an operation made it and removes it itself);
- an ingest ``pull-<digest>`` no lease holds any more is kept for :data:`RESUMABLE_TTL` so that the next pull
  resumes it; ``tmp-<pid>-…`` ingests of this process belong to a writer still open.

A snapshot's parent is marked with it. Everything else is swept: blobs (and their ``layers`` rows), committed
snapshots children first, ingests, and — at start-up, when every lease is dead — the whole temporary area, the
active snapshots no container owns and the mounts under the data and exec roots no container owns.

Delete and prune remove metadata only and then run :meth:`GarbageCollector.run`; operations release their lease
and run (or schedule) a collection when something may have become garbage meanwhile. Mark and sweep run under
:class:`~dockwright.metadata.leases.GCLock`, exclusively, so they never race a lease being extended.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..content.store import TMP_INGEST_PREFIX, ContentStore
from ..metadata.containers import ContainerRoot
from ..metadata.gc import GCMetadata
from ..metadata.leases import LeaseManager
from ..snapshots import Kind, OverlaySnapshotter, mounts_under, unmount

__all__ = ["GarbageCollector", "GCReport", "RESUMABLE_PREFIX", "RESUMABLE_TTL"]

log = logging.getLogger("dockwright.gc")

RESUMABLE_PREFIX = "pull-"
RESUMABLE_TTL = 24 * 3600.0  # an interrupted download waits this long for a pull to resume it

_ID_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(slots=True)
class GCReport:
    """What one collection reclaimed (``bytes``: blobs, ingests, snapshots and directories together)."""

    bytes: int = 0
    blobs: int = 0
    snapshots: int = 0
    ingests: int = 0
    dirs: int = 0
    mounts: int = 0
    leases: int = 0
    removed_blobs: list[str] = field(default_factory=list)
    removed_ingests: list[str] = field(default_factory=list)
    missing_blobs: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Whether the collection removed nothing."""
        return not (self.blobs or self.snapshots or self.ingests or self.dirs or self.mounts or self.leases)

    def line(self) -> str:
        """The report as one log line."""
        return (f"reclaimed {self.bytes} bytes: {self.blobs} unreferenced blob(s), {self.snapshots} snapshot(s), "
                f"{self.ingests} unfinished ingest(s), {self.dirs} temporary dir(s), {self.mounts} stale mount(s), "
                f"{self.leases} dead lease(s)")

    def as_dict(self) -> dict[str, list[str]]:
        """The shape ``dockwright fsck`` and the old start-up check report."""
        return {"orphan_blobs": list(self.removed_blobs), "ingests": list(self.removed_ingests),
                "missing_blobs": list(self.missing_blobs)}


def _du(path: Path) -> int:
    """Bytes allocated below ``path`` (not following symlinks, not crossing mounts)."""
    total = 0
    try:
        dev = os.lstat(path).st_dev
    except OSError:
        return 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if st.st_dev == dev:
                total += st.st_blocks * 512
    return total


class GarbageCollector:
    """Marks from the roots and sweeps blobs, layer records, snapshots, ingests and temporary directories."""

    def __init__(self, content: ContentStore, meta: GCMetadata, leases: LeaseManager,
                 snapshotter: OverlaySnapshotter, *, tmp_dir: Path) -> None:
        self.content = content
        self.meta = meta
        self.leases = leases
        self.snapshotter = snapshotter
        self.tmp_dir = Path(tmp_dir)
        self.pid = os.getpid()
        #: bumped whenever metadata that roots something is deleted: a lease released after it asks for a run
        self.deletions = 0
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self.last: GCReport | None = None

    def note_deletion(self) -> None:
        """Metadata that roots something was deleted: a lease released after this asks for a collection."""
        self.deletions += 1

    # ---- roots ------------------------------------------------------------------------------------------------
    def _live_containers(self, containers: list[ContainerRoot]) -> set[str]:
        """Containers whose process still runs (they survive a daemon restart, and their rootfs stays mounted)."""
        live: set[str] = set()
        for c in containers:
            try:
                if c.running and c.pid > 0:
                    os.kill(c.pid, 0)
                    live.add(c.id)
            except ProcessLookupError:
                continue
            except PermissionError:
                live.add(c.id)
        return live

    # ---- collection -------------------------------------------------------------------------------------------
    def collect(self, *, startup: bool = False) -> GCReport:
        """Mark and sweep (blocking: call it from a worker thread)."""
        with self.leases.lock.exclusive():
            rep = self._collect(startup)
        self.last = rep
        if not rep.empty:
            log.info("garbage collection %s", rep.line())
        return rep

    def _collect(self, startup: bool) -> GCReport:
        rep = GCReport()
        now = time.time()
        live = self.leases.live_resources(now)
        containers = self.meta.containers()
        referenced = self.meta.referenced_blobs()
        # -- blobs
        marked = referenced | {c.image_id for c in containers} | live.get("content", set())
        stored = set(self.content.walk())  # one directory read: no stat per referenced blob below
        for digest in stored:
            if digest in marked:
                continue
            try:
                size = self.content.size(digest)
            except Exception:  # noqa: BLE001 - gone meanwhile
                size = 0
            if self.content.delete(digest):
                rep.blobs += 1
                rep.bytes += size
                rep.removed_blobs.append(digest)
        # layer records of blobs that are neither referenced nor stored (none of them will be used again)
        self.meta.drop_layer_records(lambda d: d not in marked or d not in stored)
        rep.missing_blobs = sorted(referenced - stored)
        # -- snapshots
        rep.snapshots, freed = self._sweep_snapshots(containers, live.get("snapshot", set()), startup)
        rep.bytes += freed
        # -- ingests
        own_tmp = f"{TMP_INGEST_PREFIX}{self.pid}-"
        leased_ingests = live.get("ingest", set())
        for ref, mtime in list(self.content.ingests()):
            if ref in leased_ingests:
                continue
            if not startup and ref.startswith(own_tmp):
                continue  # a writer of this process, still open (it aborts or commits itself)
            if ref.startswith(RESUMABLE_PREFIX) and now - mtime < RESUMABLE_TTL:
                continue  # an interrupted download, for the next pull to resume
            size = self.content.ingest_size(ref)
            self.content.remove_ingest(ref)
            rep.ingests += 1
            rep.bytes += size
            rep.removed_ingests.append(ref)
        # -- temporary directories: all of them once every lease is dead (start-up)
        if startup and self.tmp_dir.is_dir():
            for entry in list(os.scandir(self.tmp_dir)):
                p = Path(entry.path)
                rep.bytes += _du(p) if entry.is_dir(follow_symlinks=False) else p.lstat().st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                rep.dirs += 1
        return rep

    def _sweep_snapshots(self, containers: list[ContainerRoot], leased: set[str],
                         startup: bool) -> tuple[int, int]:
        sn = self.snapshotter
        infos = list(sn.walk())  # parents before children
        by_name = {i.name: i for i in infos}
        roots = self.meta.layer_chain_ids()
        roots |= {c.id for c in containers} | leased
        if not startup:
            roots |= {i.name for i in infos if i.kind is not Kind.COMMITTED}
        keep: set[str] = set()
        stack = [r for r in roots if r in by_name]
        while stack:
            name = stack.pop()
            if name in keep:
                continue
            keep.add(name)
            parent = by_name[name].parent
            if parent is not None and parent in by_name:
                stack.append(parent)
        removed = freed = 0
        for info in reversed(infos):  # children first
            if info.name in keep:
                continue
            try:
                size = sn.usage(info.name).size
            except Exception:  # noqa: BLE001
                size = 0
            try:
                sn.remove(info.name)
            except Exception as exc:  # noqa: BLE001 - a child appeared meanwhile
                log.info("snapshot %s kept: %s", info.name, exc)
                continue
            removed += 1
            freed += size
        return removed, freed

    # ---- start-up recovery ------------------------------------------------------------------------------------
    def recover(self, data_root: Path, exec_root: Path) -> GCReport:
        """What a daemon that starts does before serving: unmount what no container owns under the data and exec
        roots, drop every lease of a previous process, then collect with the temporary area emptied."""
        owners = self._live_containers(self.meta.containers())
        mounts = 0
        for mp in mounts_under(data_root, exec_root):
            if Path(mp).is_relative_to(exec_root / "netns"):
                continue  # network namespaces: the network service keeps the running containers' and drops the rest
            if Path(mp).is_relative_to(data_root / "volumes") and owners:
                continue  # a volume's own mount (tmpfs) that a running container may use: the volumes service's
            if any(part in owners for part in Path(mp).parts if _ID_RE.match(part)):
                continue  # a running container's rootfs (or what its runtime mounted): containers survive restarts
            try:
                unmount(mp, detach=True)
                mounts += 1
            except Exception as exc:  # noqa: BLE001
                log.warning("cannot unmount %s: %s", mp, exc)
        dead = self.leases.drop_dead()
        rep = self.collect(startup=True)
        rep.mounts = mounts
        rep.leases = dead
        return rep

    # ---- from the event loop ----------------------------------------------------------------------------------
    async def run(self) -> GCReport:
        """Collect now, off the event loop."""
        return await asyncio.to_thread(self.collect)

    def schedule(self) -> None:
        """Collect soon, in the background (one collection pending at most)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.collect()
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.ensure_future(self._background())

    async def _background(self) -> None:
        while True:
            self._again = False
            try:
                await self.run()
            except Exception:  # noqa: BLE001
                log.exception("garbage collection failed")
            if not self._again:
                return

    async def idle(self) -> None:
        """Wait for a scheduled collection (tests, shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
