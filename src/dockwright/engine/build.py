"""The engine's build service: the classic builder (:mod:`..builder`) wired to the engine's image store,
containers, snapshots, content store, registry and events, with what ``POST /build``, ``POST /build/prune`` and
``system df`` call, and the library's typed ``build`` (a context directory or tar in, an ``Image`` out)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tarfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from .. import reference as refs
from ..builder.context import CHUNK, extract_context
from ..builder.dockerignore import IgnoreRules
from ..builder.executor import Builder
from ..builder.options import BuildError, BuildOptions
from ..content.store import ContentStore
from ..dockerfile import Node
from ..filters import Filters
from ..metadata.buildcache import BuildCacheStore
from ..metadata.db import MetadataDB
from ..progress import Aux, ProgressCallback, ProgressEvent
from ..snapshots import OverlaySnapshotter
from .containers.service import ContainersService
from .events import EventBus
from .images.service import ImagesService
from .resources import verify_extra_hosts, verify_resources
from .types import Image

__all__ = ["BuildService"]


class BuildService:
    """Builds for the engine: one :class:`~..builder.executor.Builder` given the engine's services."""

    def __init__(self, root: Path, *, db: MetadataDB, content: ContentStore, snapshotter: OverlaySnapshotter,
                 images: ImagesService, containers: ContainersService, events: EventBus,
                 pull: Callable[[str, str, str], Awaitable[AsyncIterator[ProgressEvent]]]) -> None:
        self.root = Path(root)
        self.images = images
        self.builder = Builder(root=self.root, db=db, content=content, snapshotter=snapshotter, images=images,
                               containers=containers, pull=pull, events=events, cache_store=BuildCacheStore(db),
                               verify_extra_hosts=verify_extra_hosts, verify_resources=verify_resources)

    def shutdown(self) -> None:
        """The daemon is stopping: Dockerfile parses still running stop now (see :meth:`Builder.shutdown`)."""
        self.builder.shutdown()

    def cache_records(self) -> list[dict[str, Any]]:
        """The build cache's records, as ``system df`` lists them."""
        return self.builder.cache.records()

    async def prune(self, *, all: bool = False, filters: Filters | None = None, keep: int = 0, max_used: int = 0,
                    min_free: int = 0) -> tuple[list[str], int]:
        """``POST /build/prune``: the IDs of the records dropped and the bytes reclaimed."""
        return await self.builder.cache.prune(all=all, filters=filters, keep=keep, max_used=max_used,
                                              min_free=min_free)

    async def parse(self, dockerfile_text: bytes, name: str = "Dockerfile") -> tuple[list[Node], str]:
        """The Dockerfile's instructions, checked, parsed off the event loop (:meth:`Builder.parse`)."""
        return await self.builder.parse(dockerfile_text, name)

    async def build_stream(self, root: Path, dockerfile_text: bytes, opts: BuildOptions,
                           ignore: IgnoreRules | None = None,
                           dockerfile_name: str = "Dockerfile") -> AsyncGenerator[ProgressEvent, None]:
        """``POST /build``'s event stream for an extracted context, after the checks that fail it with HTTP 400
        (:meth:`Builder.build`)."""
        return await self.builder.build(root, dockerfile_text, opts, ignore, dockerfile_name)

    async def build(self, context: str | os.PathLike[str] | IO[bytes], *, tag: str | Sequence[str] | None = None,
                    dockerfile: str = "Dockerfile", buildargs: Mapping[str, str | None] | None = None,
                    labels: Mapping[str, str] | None = None, target: str = "", nocache: bool = False,
                    pull: bool = False, rm: bool = True, forcerm: bool = False, network_mode: str = "",
                    platform: str = "", progress: ProgressCallback | None = None) -> Image:
        """``docker build``: the image built from ``context`` — a directory, or a tar of one (plain or
        compressed) as a path or a binary file — tagged ``tag`` (one name or several). The build's output goes to
        ``progress`` as events (``StreamText`` lines, the pulls' ``Status``…); a failed step raises
        :class:`~..builder.options.BuildError` (``code``: a RUN's exit code) with dockerd's message."""
        tags = [tag] if isinstance(tag, str) else list(tag or [])
        for t in tags:
            refs.tag_name_only(refs.parse_normalized_named(t))
        opts = BuildOptions(dockerfile=dockerfile, tags=tags, nocache=nocache, pull=pull, rm=rm, forcerm=forcerm,
                            buildargs=dict(buildargs or {}), labels=dict(labels or {}), target=target,
                            platform=platform, networkmode=network_mode)
        work = self.root / "tmp" / f"build-{os.urandom(8).hex()}"
        work.mkdir(parents=True)
        try:
            if isinstance(context, (str, os.PathLike)) and Path(context).is_dir():
                tar = work / "context.tar"
                await asyncio.to_thread(tar_directory, Path(context), tar)
                context = tar
            if isinstance(context, (str, os.PathLike)):
                with open(context, "rb") as f:
                    ctx = await extract_context(file_chunks(f), work / "ctx", dockerfile_name=opts.dockerfile)
            else:
                ctx = await extract_context(file_chunks(context), work / "ctx", dockerfile_name=opts.dockerfile)
            opts.context_tarsums = ctx.tarsums
            events = await self.build_stream(ctx.root, ctx.dockerfile, opts, ctx.ignore,
                                             dockerfile_name=ctx.dockerfile_path)
            image_id = ""
            try:
                async for ev in events:
                    if isinstance(ev, Aux) and isinstance(ev.data, dict) and ev.data.get("ID"):
                        image_id = str(ev.data["ID"])
                    if progress is not None:
                        progress(ev)
            finally:
                await events.aclose()
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
        if not image_id:
            raise BuildError("the build produced no image")
        return self.images.get(image_id)

    async def __call__(self, context: str | os.PathLike[str] | IO[bytes], *,
                       tag: str | Sequence[str] | None = None, dockerfile: str = "Dockerfile",
                       buildargs: Mapping[str, str | None] | None = None, labels: Mapping[str, str] | None = None,
                       target: str = "", nocache: bool = False, pull: bool = False, rm: bool = True,
                       forcerm: bool = False, network_mode: str = "", platform: str = "",
                       progress: ProgressCallback | None = None) -> Image:
        """``await engine.build(context, …)``: :meth:`build`."""
        return await self.build(context, tag=tag, dockerfile=dockerfile, buildargs=buildargs, labels=labels,
                                target=target, nocache=nocache, pull=pull, rm=rm, forcerm=forcerm,
                                network_mode=network_mode, platform=platform, progress=progress)


def tar_directory(directory: Path, out: Path) -> None:
    """Write ``directory``'s tree to the tar ``out`` as the docker CLI sends a build context: paths relative to
    it, symlinks as links, owned by 0:0."""
    def owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        for name in sorted(os.listdir(directory)):
            tf.add(directory / name, arcname=name, filter=owner)


async def file_chunks(f: IO[bytes]) -> AsyncIterator[bytes]:
    """The bytes of a binary file, read off the event loop in chunks."""
    while chunk := await asyncio.to_thread(f.read, CHUNK):
        yield chunk
