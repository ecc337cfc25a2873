"""The engine's BuildKit service: the solver (:mod:`..buildkit.solver`) wired to the engine's images, content,
snapshots and network, with its cache records (``system df``'s ``BuildCache``, ``build prune``), the start-up
clean-up of what a crash left (running steps, secrets), and the library's ``buildkit.build`` of a local
context directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..builder.deps import BuildImages, Pull
from ..builder.dockerignore import DockerIgnore
from ..buildkit.exec import ExecNetwork, ExecRunner
from ..buildkit.export import export_image
from ..buildkit.frontend import BuildPlan
from ..buildkit.mounts import CACHE_MOUNT_KIND, CacheMounts
from ..buildkit.progress import Recorder
from ..buildkit.solver import FRONTEND_ERROR, SolveOptions, Solver, Sources, State
from ..content.store import ContentStore
from ..errors import DockwrightError
from ..filters import Filters
from ..metadata.bkcache import BKCacheRecord, BKCacheStore
from ..metadata.db import MetadataDB
from ..snapshots import OverlaySnapshotter

__all__ = ["BuildKitService", "LocalSources", "BuildResult"]


@dataclass
class BuildResult:
    """A finished BuildKit build: the image (``""`` when the result was only exported to the client) and the
    result's state."""

    image_id: str
    state: State


@dataclass
class LocalSources:
    """A build's sources on this machine: a context directory (``.dockerignore`` applied while it is copied
    into the build's work area) and secrets by ID."""

    directory: Path
    work: Path
    secrets: Mapping[str, bytes] = field(default_factory=dict)
    _ctx: Path | None = None

    async def context(self) -> Path:
        """The context, filtered by its ``.dockerignore``."""
        if self._ctx is None:
            dest = self.work / "context"
            await asyncio.to_thread(_copy_filtered, Path(self.directory), dest)
            self._ctx = dest
        return self._ctx

    async def secret(self, id: str) -> bytes | None:
        """The secret ``id``."""
        return self.secrets.get(id)


def _copy_filtered(src: Path, dest: Path) -> None:
    ignore_file = src / ".dockerignore"
    rules = DockerIgnore(ignore_file.read_text().splitlines()) if ignore_file.is_file() else None

    def ignore(d: str, names: list[str]) -> list[str]:
        if rules is None:
            return []
        rel = os.path.relpath(d, src)
        return [n for n in names if rules.matches(n if rel == "." else f"{rel}/{n}")]

    shutil.copytree(src, dest, symlinks=True, ignore=ignore)


class BuildKitService:
    """BuildKit builds for the engine."""

    def __init__(self, root: Path, exec_root: Path, *, db: MetadataDB, content: ContentStore,
                 snapshotter: OverlaySnapshotter, images: BuildImages, pull: Pull, network: ExecNetwork | None,
                 runtime: str = "runc", dns: tuple[list[str], list[str], list[str]] = ([], [], [])) -> None:
        self.root = Path(root)
        self.exec_root = Path(exec_root)
        self.images = images
        self.cache = BKCacheStore(db)
        self.cache_mounts = CacheMounts(self.root / "buildkit" / "cachemounts", self.cache)
        self.runner = ExecRunner(runtime, self.exec_root / "buildkit" / "runc", self.exec_root / "buildkit" / "bundles",
                                 network, dns)
        self.solver = Solver(root=self.root, db=db, content=content, snapshotter=snapshotter, images=images,
                             pull=pull, runner=self.runner, cache=self.cache, cache_mounts=self.cache_mounts,
                             secrets_dir=self.exec_root / "buildkit" / "secrets")
        self._prune_lock = asyncio.Lock()

    async def recover(self) -> None:
        """Start-up: kill the steps a crashed daemon left running, drop its secrets and bundles."""
        await self.runner.recover()
        shutil.rmtree(self.exec_root / "buildkit" / "secrets", ignore_errors=True)

    async def plan(self, dockerfile: bytes, opts: SolveOptions) -> BuildPlan:
        """Parse and check a Dockerfile: an error is the frontend's (``failed to solve with frontend
        dockerfile.v0: failed to create LLB definition: dockerfile parse error line 2: …``)."""
        try:
            return await self.solver.plan(dockerfile, opts)
        except DockwrightError as exc:
            raise type(exc)(FRONTEND_ERROR + "failed to create LLB definition: " + str(exc)) from exc

    async def solve(self, plan: BuildPlan, opts: SolveOptions, sources: Sources, rec: Recorder, *,
                    tags: Sequence[str] = (), export: bool = True) -> BuildResult:
        """Build ``plan`` under a lease; with ``export`` the result becomes an image named ``tags``."""
        async with self.images.operation("build"):
            state = await self.solver.solve(plan, opts, sources, rec)
            image_id = await export_image(self.images, state, list(tags), rec) if export else ""
        return BuildResult(image_id, state)

    async def build(self, context: str | os.PathLike[str], *, tag: str | Sequence[str] | None = None,
                    dockerfile: str = "Dockerfile", buildargs: Mapping[str, str | None] | None = None,
                    labels: Mapping[str, str] | None = None, target: str = "", nocache: bool = False,
                    pull: bool = False, network: str = "default", secrets: Mapping[str, bytes] | None = None,
                    recorder: Recorder | None = None) -> BuildResult:
        """A BuildKit build of the local directory ``context``, its image named ``tag``."""
        tags = [tag] if isinstance(tag, str) else list(tag or [])
        rec = recorder or Recorder()
        text = (Path(context) / dockerfile).read_bytes()
        opts = SolveOptions(dockerfile_name=dockerfile, target=target, buildargs=dict(buildargs or {}),
                            labels=dict(labels or {}), nocache=nocache, pull=pull, network=network)
        work = self.root / "tmp" / f"bk-build-{os.urandom(8).hex()}"
        work.mkdir(parents=True)
        try:
            plan = await self.plan(text, opts)
            sources = LocalSources(Path(context), work, dict(secrets or {}))
            return await self.solve(plan, opts, sources, rec, tags=tags)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    # ---- the cache -------------------------------------------------------------------------------------------
    def records(self) -> list[BKCacheRecord]:
        """Every cache record."""
        return self.cache.records()

    def disk_usage(self) -> list[dict[str, Any]]:
        """The records as ``system df``'s ``BuildCache`` entries (moby's ``BuildCache`` fields)."""
        out = []
        for r in self.cache.records():
            out.append({"ID": r.key.split(":", 1)[1][:25], "Parent": r.parent.split(":", 1)[-1][:25] if r.parent
                        else "", "Type": r.kind, "Description": r.description,
                        "InUse": self.cache_mounts.in_use(r.key), "Shared": r.shared, "Size": r.size,
                        "CreatedAt": r.created, "LastUsedAt": r.last_used, "UsageCount": r.usage_count})
        return out

    async def prune(self, *, all: bool = False, filters: Filters | None = None, keep: int = 0,
                    max_used: int = 0, min_free: int = 0) -> tuple[list[str], int]:
        """Drop cache records (their layers then go with the next collection): without ``all`` only those no
        image uses and not used in the last 48 hours… as BuildKit's default policy, unless ``keep``/``max_used``
        bound what stays. Returns (IDs, bytes reclaimed)."""
        async with self._prune_lock:
            recs = self.cache.records()
            now = time.time()
            chosen: list[BKCacheRecord] = []
            for r in recs:
                if self.cache_mounts.in_use(r.key):
                    continue
                if filters is not None and not _matches(r, filters, now):
                    continue
                chosen.append(r)
            if keep or max_used:
                limit = keep or max_used
                total = sum(r.size for r in recs)
                chosen.sort(key=lambda r: r.last_used)
                picked = []
                for r in chosen:
                    if total <= limit:
                        break
                    picked.append(r)
                    total -= r.size
                chosen = picked
            self.cache.delete(r.key for r in chosen)
            for r in chosen:
                if r.kind == CACHE_MOUNT_KIND:
                    await asyncio.to_thread(self.cache_mounts.remove, r.key)
            await self.images.collect()
            return [r.key.split(":", 1)[1][:25] for r in chosen], sum(r.size for r in chosen)


def _matches(r: BKCacheRecord, f: Filters, now: float) -> bool:
    """moby's build-cache prune filters: ``type``, ``description``, ``id``, ``until``, ``inuse``, ``shared``,
    ``private``."""
    for t in f.get("type"):
        if r.kind != t:
            return False
    for d in f.get("description"):
        if d not in r.description:
            return False
    for i in f.get("id"):
        if not r.key.split(":", 1)[-1].startswith(i):
            return False
    return True
