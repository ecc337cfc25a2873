"""A step's file systems: a writable snapshot of the stage's image changed in place and written as a layer
(WORKDIR, COPY/ADD), read-only views of an image (``COPY --from``, a RUN's volumes), and the image's snapshot
chain; and WORKDIR's directory as dockerd makes it."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ..content.store import ContentStore
from ..errors import InvalidArgument
from ..layers.apply import adopt_snapshot, ensure_chain
from ..layers.diff import write_layer_from_upper
from ..metadata.db import LayerRecord, MetadataDB
from ..oci import mediatypes as mt
from ..oci.digest import sha256_digest
from ..snapshots import OverlaySnapshotter, mount_all, unmount
from .deps import BuildImages
from .options import BuildOptions
from .paths import follow_in_scope
from .stages import Stage

__all__ = ["RootfsLayers", "EMPTY_LAYER_DIFF_ID", "make_workdir", "source_date_epoch"]

#: The DiffID of an empty layer (a tar of two zero blocks): a step that changed nothing (the same constant as the
#: containers service's, for ``docker commit``).
EMPTY_LAYER_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


def source_date_epoch(opts: BuildOptions) -> float | None:
    """The ``SOURCE_DATE_EPOCH`` build arg the layers' mtimes are clamped to, if given."""
    return float(opts.buildargs["SOURCE_DATE_EPOCH"] or 0) if opts.buildargs.get("SOURCE_DATE_EPOCH") else None


class RootfsLayers:
    """Snapshots of a build's images (``snapshotter``), mounted under ``<root>/tmp``, and the layers written from
    them into ``content``."""

    def __init__(self, root: Path, db: MetadataDB, content: ContentStore, snapshotter: OverlaySnapshotter,
                 images: BuildImages) -> None:
        self.root = root
        self.db = db
        self.content = content
        self.snapshotter = snapshotter
        self.images = images

    async def layer_from_rootfs(self, stage: Stage, change: Callable[[Path], None], opts: BuildOptions, *,
                                keep_empty: bool = False) -> LayerRecord | None:
        """Run ``change(rootfs)`` (blocking, in a thread) on a writable snapshot of the stage's image and write
        what it changed as a layer; None if it changed nothing (unless ``keep_empty``).

        The snapshot's upper directory is exactly what the layer unpacks to, so it becomes the snapshot of the
        layer's ChainID (unless ``SOURCE_DATE_EPOCH`` clamps the layer's mtimes): the next RUN mounts it instead
        of unpacking the layer again."""
        key = f"extract-step-{os.urandom(8).hex()}"  # "extract-": removed at start-up if left by a crash
        parent_chain = await self.chain(stage.image_id)
        await asyncio.to_thread(self.snapshotter.prepare, key, parent_chain)
        target = self.root / "tmp" / key
        target.mkdir(parents=True)
        adopted = False
        try:
            mounts = await asyncio.to_thread(self.snapshotter.mounts, key)
            await asyncio.to_thread(mount_all, mounts, target)
            try:
                await asyncio.to_thread(change, target)
            finally:
                await asyncio.to_thread(unmount, target)
            writer = self.content.writer()
            try:
                clamp = source_date_epoch(opts)
                res_l = await asyncio.to_thread(write_layer_from_upper, self.snapshotter.upper_dir(key), writer,
                                                mtime_clamp=clamp, level=None)
                digest = await asyncio.to_thread(writer.commit, res_l.digest, res_l.size)
            except BaseException:
                writer.abort()
                raise
            if clamp is None and (keep_empty or res_l.diff_id != EMPTY_LAYER_DIFF_ID):
                chain = (res_l.diff_id if parent_chain is None
                         else sha256_digest(f"{parent_chain} {res_l.diff_id}".encode()))
                adopted = await asyncio.to_thread(adopt_snapshot, self.snapshotter, key, chain)
        finally:
            shutil.rmtree(target, ignore_errors=True)
            if not adopted:
                await asyncio.to_thread(self.snapshotter.remove, key)
        if res_l.diff_id == EMPTY_LAYER_DIFF_ID and not keep_empty:
            await self.images.collect({digest})
            return None
        return LayerRecord(digest, res_l.diff_id, mt.OCI_LAYER, res_l.size, res_l.diff_size, res_l.tar_size)

    async def chain(self, image_id: str | None) -> str | None:
        """The ChainID of an image's snapshot, unpacked if it is not there yet (None: scratch, or no layers)."""
        if image_id is None:
            return None
        rec = self.db.get_image(image_id, with_layers=True)
        if rec is None or not rec.layers:
            return None
        content = self.content

        def opener(d: str) -> Callable[[], BinaryIO]:
            return lambda: content.open(d)

        layers = [(chain, opener(digest)) for _, chain, digest in rec.layers]
        return await asyncio.to_thread(ensure_chain, self.snapshotter, layers, sync=False)

    async def mount_image(self, image_id: str) -> tuple[str, Path]:
        """A read-only view of an image, mounted: (its snapshot key, the directory)."""
        return await self.mount_chain(await self.chain(image_id))

    async def mount_chain(self, chain: str | None, *, prefix: str = "build-view") -> tuple[str, Path]:
        """A read-only view of the snapshot ``chain`` (None: an empty directory), mounted under ``<root>/tmp``:
        (its snapshot key, ``<prefix>-…``, and the directory); see :meth:`unmount_image`."""
        key = f"{prefix}-{os.urandom(8).hex()}"
        target = self.root / "tmp" / key
        target.mkdir(parents=True)
        if chain is None:
            return key, target
        mounts = await asyncio.to_thread(self.snapshotter.view, key, chain)
        await asyncio.to_thread(mount_all, mounts, target)
        return key, target

    async def unmount_image(self, key: str, target: Path | None) -> None:
        """Unmount and drop a view of :meth:`mount_image` or :meth:`mount_chain` (errors ignored)."""
        if target is not None:
            try:
                await asyncio.to_thread(unmount, target)
            except Exception:  # noqa: BLE001
                pass
            shutil.rmtree(target, ignore_errors=True)
        try:
            await asyncio.to_thread(self.snapshotter.remove, key)
        except Exception:  # noqa: BLE001
            pass


def make_workdir(rootfs: Path, workdir: str) -> None:
    """``SetupWorkingDirectory``: make ``workdir`` (symlinks resolved inside the rootfs) and its missing parents,
    0755 and owned by root; an existing non-directory fails as dockerd fails."""
    real = follow_in_scope(rootfs, workdir)
    if real == ".":
        return
    path = rootfs / real
    if os.path.isdir(path):
        return
    if os.path.lexists(path):
        raise InvalidArgument(f"Cannot mkdir: {workdir} is not a directory")
    missing = []
    p = path
    while not os.path.lexists(p) and p != rootfs:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o755)
        except NotADirectoryError:
            raise InvalidArgument(f"Cannot mkdir: {workdir} is not a directory") from None
        os.chmod(d, 0o755)
        os.lchown(d, 0, 0)
