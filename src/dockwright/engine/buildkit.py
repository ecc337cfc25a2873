"""The engine's BuildKit service: the solver (:mod:`..buildkit.solver`) wired to the engine's images, content,
snapshots and network, builds through a client's session (what ``/build?version=2`` and ``Control.Solve`` run),
with its cache records (``system df``'s ``BuildCache``, ``build prune``), the start-up
clean-up of what a crash left (running steps, secrets), and the library's ``buildkit.build`` of a local
context directory."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..builder.cache import prune_candidates
from ..builder.deps import BuildImages
from ..builder.dockerignore import DockerIgnore
from ..buildkit.exec import ExecNetwork, ExecRunner
from ..buildkit.export import Output, export_archive, export_image, tar_stream
from ..buildkit.frontend import BuildPlan
from ..buildkit.mounts import CACHE_MOUNT_KIND, CacheMounts
from ..buildkit.progress import Recorder
from ..buildkit.solver import Solver
from ..buildkit.sources import LOCAL_SOURCE_KIND, ClientSession, SessionSources
from ..buildkit.sshforward import OpenAgent
from ..buildkit.state import FRONTEND_ERROR, SolveOptions, Sources, State
from ..buildkit.workspace import Pull
from ..content.store import ContentStore
from ..errors import DockwrightError, NotFound
from ..filters import Filters
from ..metadata.bkcache import BKCacheRecord, BKCacheStore
from ..metadata.db import MetadataDB
from ..oci.gojson import rfc3339_nano
from ..snapshots import OverlaySnapshotter
from ..snapshots.du import dir_size
from ..timestamps import go_quote

__all__ = ["BuildKitService", "LocalSources", "BuildResult", "record_id"]


@dataclass
class BuildResult:
    """A finished BuildKit build: the image (``""`` when the result was only exported to the client), the
    result's state and what the exporter reports (BuildKit's ``ExporterResponse``)."""

    image_id: str
    state: State
    exporter: dict[str, str] = field(default_factory=dict)


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

    async def credentials(self, host: str) -> tuple[str, str]:
        """None: pulls use the engine's own (a library caller logs in through ``engine.system``)."""
        return "", ""

    async def ssh_agent(self, id: str) -> OpenAgent:
        """None forwarded: a library build has no client with an agent."""
        raise NotFound(f"no SSH key {go_quote(id)} forwarded from the client")


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
        self.db = db
        self.content = content
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
            image_id = (await export_image(self.images, state, list(tags), rec, inline=opts.inline_cache)
                        if export else "")
        exporter = {"containerimage.digest": image_id} if image_id else {}
        if image_id and tags:
            exporter["image.name"] = ",".join(tags)
        return BuildResult(image_id, state, exporter)

    async def build_with_session(self, session: ClientSession, opts: SolveOptions, rec: Recorder, *,
                                 output: Output | None = None) -> BuildResult:
        """A build whose Dockerfile, context and secrets come through the client's ``session`` (the context kept
        for the next build of the same client context); ``output`` is where the result goes: the image (named
        :attr:`Output.names`), or back through the session: the files (``local``, ``tar``: ``exporting to
        client``) or an image archive (``docker``, ``oci``)."""
        output = output or Output()
        work = self.root / "tmp" / f"bk-{os.urandom(8).hex()}"
        work.mkdir(parents=True)
        sources = SessionSources(session, work, self.root / "buildkit" / "contexts", rec, self.cache,
                                 opts.dockerfile_name, hasher=self.solver.hasher)
        try:
            plan = await self.plan(await sources.dockerfile(), opts)
            res = await self.solve(plan, opts, sources, rec, tags=output.names, export=output.kind == "image")
            if output.kind in ("docker", "oci"):
                res.exporter.update(await export_archive(self.images, self.content, res.state, output, rec,
                                                         session.send_tar))
            elif output.kind != "image":
                v = rec.vertex("exporting to client").start()
                if output.kind == "local":
                    key, view = await self.solver.view(res.state.ref)
                    try:
                        v.status("copying files", name="copying files")
                        await session.send_dir(view)
                        v.status("copying files", name="copying files", done=True)
                    finally:
                        await self.solver.drop_view(key, view)
                else:
                    v.status("sending tarball", name="sending tarball")
                    await session.send_tar(tar_stream(self.solver, res.state))
                    v.status("sending tarball", name="sending tarball", done=True)
                v.done()
            return res
        finally:
            sources.release()
            await asyncio.to_thread(shutil.rmtree, work, True)

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
    def disk_usage(self) -> list[dict[str, Any]]:
        """The records as ``system df``'s ``BuildCache`` entries (``_``-prefixed keys are the service's own)."""
        recs = self.cache.records()
        known = {r.key for r in recs}
        out = []
        for r in recs:
            if r.kind == LOCAL_SOURCE_KIND:  # a kept context: its size now (syncs change it)
                r = replace(r, size=dir_size(self.root / "buildkit" / "contexts" / r.key.split(":", 1)[1]))
            parent = record_id(r.parent) if r.parent in known else ""
            out.append({"ID": record_id(r.key), "Parents": [parent] if parent else None, "Type": r.kind,
                        "Description": r.description, "InUse": self.cache_mounts.in_use(r.key),
                        "Shared": r.layer is not None and self._shared(r), "Size": r.size,
                        "CreatedAt": rfc3339_nano(int(r.created * 1e9)),
                        "LastUsedAt": rfc3339_nano(int(r.last_used * 1e9)), "UsageCount": r.usage_count,
                        "_key": r.key, "_created": r.created})
        return out

    def _shared(self, r: BKCacheRecord) -> bool:
        """Whether an image uses the record's layer too."""
        assert r.layer is not None
        return bool(self.db.query("SELECT 1 FROM image_blobs WHERE digest=? LIMIT 1", (r.layer.digest,)))

    async def prune(self, *, all: bool = False, filters: Filters | None = None, keep: int = 0,
                    max_used: int = 0, min_free: int = 0) -> tuple[list[str], int]:
        """Drop cache records, oldest first (their layers and snapshots go with the next collection, unless an
        image holds them): every matching record, or with limits until the cache uses at most ``keep`` and
        ``max_used`` bytes and the data root has ``min_free`` bytes free. Records in use (a cache mount of a
        running step) stay. Returns (IDs, bytes reclaimed)."""
        async with self._prune_lock:
            records = sorted(self.disk_usage(), key=lambda r: r["_created"])
            chosen = list(prune_candidates(records, filters, keep=keep, max_used=max_used, min_free=min_free,
                                           root=self.root))
            self.cache.delete(r["_key"] for r in chosen)
            for r in chosen:
                if r["Type"] == CACHE_MOUNT_KIND:
                    await asyncio.to_thread(self.cache_mounts.remove, r["_key"])
                elif r["Type"] == LOCAL_SOURCE_KIND:
                    await asyncio.to_thread(shutil.rmtree, self.root / "buildkit" / "contexts" /
                                            r["_key"].split(":", 1)[1], True)
            if chosen:
                await self.images.collect()
            return [r["ID"] for r in chosen], sum(r["Size"] for r in chosen)


def record_id(key: str) -> str:
    """A cache record's ID as BuildKit shows them: 25 lower-case base-36 characters (derived from its key)."""
    n = int(hashlib.sha256(key.encode()).hexdigest(), 16)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = []
    for _ in range(25):
        n, r = divmod(n, 36)
        out.append(digits[r])
    return "".join(out)
