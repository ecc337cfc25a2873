"""The stores a BuildKit build works on (:class:`Workspace`): the engine's images, content and snapshots, the step
runner, the cache records and cache mounts; and its file-system primitives: a :class:`~.state.Ref` unpacked,
mounted read-only, or changed in a writable snapshot whose difference becomes a layer."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

from .. import reference as refs
from ..builder.deps import BuildImages
from ..builder.rootfs import EMPTY_LAYER_DIFF_ID, RootfsLayers
from ..content.store import ContentStore
from ..errors import ImageNotFound
from ..layers.apply import adopt_snapshot, ensure_chain
from ..layers.diff import write_layer_from_upper
from ..metadata.bkcache import BKCacheRecord, BKCacheStore
from ..metadata.db import LayerRecord, MetadataDB
from ..oci import mediatypes as mt
from ..progress import ProgressEvent
from ..snapshots import OverlaySnapshotter, mount_all, unmount
from .checksum import ContentHasher
from .exec import ExecRunner
from .mounts import CacheMounts
from .state import Ref, Sources, registry_host

__all__ = ["Workspace", "Pull"]

#: ``pull(name, tag, platform, credentials)``: a base image that is not stored, or ``--pull``; ``credentials`` are
#: the client's (user name, secret) for the image's registry, from its session ("" and "": none)
Pull = Callable[[str, str, str, tuple[str, str]], Awaitable[AsyncIterator[ProgressEvent]]]


class Workspace:
    """The engine's stores for builds: ``images`` (base images, the result), ``content`` and ``snapshotter`` (layers
    and the file systems steps run on), ``runner`` (RUN), ``cache`` (results by key), ``cache_mounts``."""

    def __init__(self, *, root: Path, db: MetadataDB, content: ContentStore, snapshotter: OverlaySnapshotter,
                 images: BuildImages, pull: Pull, runner: ExecRunner, cache: BKCacheStore,
                 cache_mounts: CacheMounts, secrets_dir: Path) -> None:
        self.root = Path(root)
        self.db = db
        self.content = content
        self.snapshotter = snapshotter
        self.images = images
        self.pull = pull
        self.runner = runner
        self.cache = cache
        self.cache_mounts = cache_mounts
        self.secrets_dir = Path(secrets_dir)
        self.hasher = ContentHasher()  # COPY sources' digests, kept between builds
        self.rootfs = RootfsLayers(self.root, db, content, snapshotter, images)  # read-only views

    async def image(self, name: str, *, platform: str, sources: Sources, pull: bool = False) -> str:
        """The ID of the image ``name``: the stored one (unless ``pull``), else pulled with the client's credentials
        for its registry."""
        if not pull:
            try:
                return self.images.resolve(name).id
            except ImageNotFound:
                pass
        ref = refs.tag_name_only(refs.parse_normalized_named(name))
        events = await self.pull(ref.familiar_name if ref.domain == "docker.io" else ref.name, ref.tag or "",
                                 platform, await sources.credentials(registry_host(ref.domain)))
        async for _ in events:
            pass
        return self.images.resolve(str(ref)).id

    # ---- file systems ---------------------------------------------------------------------------------------------
    async def ensure(self, ref: Ref) -> str | None:
        """The snapshot of ``ref`` (its layers unpacked where missing): its top ChainID, None for scratch."""
        if not ref.layers:
            return None
        content = self.content

        def opener(d: str) -> Callable[[], BinaryIO]:
            return lambda: content.open(d)

        pairs = [(c, opener(lay.digest)) for c, lay in zip(ref.chain_ids(), ref.layers, strict=True)]
        return await asyncio.to_thread(ensure_chain, self.snapshotter, pairs, sync=False)

    async def view(self, ref: Ref) -> tuple[str, Path]:
        """A read-only view of ``ref`` mounted: (its snapshot key, the directory); see :meth:`drop_view`."""
        return await self.rootfs.mount_chain(await self.ensure(ref), prefix="extract-bkview")

    async def drop_view(self, key: str, target: Path) -> None:
        """Unmount and drop a view."""
        await self.rootfs.unmount_image(key, target)

    async def change(self, ref: Ref, fn: Callable[[Path], Awaitable[None]], *, clamp: float | None = None,
                     direct: Callable[[Path, Path], bool] | None = None) -> LayerRecord | None:
        """Run ``fn(rootfs)`` on a writable snapshot of ``ref`` and write what it changed as a layer (None: it
        changed nothing). The snapshot becomes the new layer's, so the next step does not unpack it. ``direct``,
        when given, is tried first: ``direct(upper, below)`` writes the change straight into the snapshot's upper
        directory (``below``: ``ref`` mounted read-only) and answers whether it did (:mod:`.fastcopy`)."""
        key = f"extract-bkstep-{os.urandom(8).hex()}"  # "extract-": removed at start-up if a crash left it
        parent = await self.ensure(ref)
        await asyncio.to_thread(self.snapshotter.prepare, key, parent)
        target = self.root / "tmp" / key
        target.mkdir(parents=True)
        adopted = False
        try:
            done = False
            if direct is not None:
                vkey, vdir = await self.view(ref)
                try:
                    done = await asyncio.to_thread(direct, self.snapshotter.upper_dir(key), vdir)
                finally:
                    await self.drop_view(vkey, vdir)
            if not done:
                mounts = await asyncio.to_thread(self.snapshotter.mounts, key)
                await asyncio.to_thread(mount_all, mounts, target)
                try:
                    await fn(target)
                finally:
                    await asyncio.to_thread(unmount, target)
            writer = self.content.writer()
            try:
                res = await asyncio.to_thread(write_layer_from_upper, self.snapshotter.upper_dir(key), writer,
                                              mtime_clamp=clamp, level=None)
                digest = await asyncio.to_thread(writer.commit, res.digest, res.size)
            except BaseException:
                writer.abort()
                raise
            if res.diff_id == EMPTY_LAYER_DIFF_ID:
                await self.images.collect({digest})
                return None
            layer = LayerRecord(digest, res.diff_id, mt.OCI_LAYER, res.size, res.diff_size, res.tar_size)
            if clamp is None:
                chain = ref.plus(layer).chain_ids()[-1]
                adopted = await asyncio.to_thread(adopt_snapshot, self.snapshotter, key, chain)
            return layer
        finally:
            shutil.rmtree(target, ignore_errors=True)
            if not adopted:
                await asyncio.to_thread(self.snapshotter.remove, key)

    def cached(self, key: str) -> BKCacheRecord | None:
        """The cached result of ``key`` (None: a miss, or its layer is gone)."""
        rec = self.cache.get(key)
        if rec is None or (rec.layer is not None and not self.content.exists(rec.layer.digest)):
            return None
        return rec

