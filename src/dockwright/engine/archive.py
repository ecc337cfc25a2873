"""The archive service: ``docker save`` and ``docker load`` over the store, all-or-nothing and streamed.

Save resolves the names first (an unknown name is an HTTP error), then streams the tar straight from the blob
store (``archive.save``, :meth:`ArchiveService.save_stream`): nothing is written to disk and the first bytes
leave before the last blob is read.

Load (:meth:`ArchiveService.load_stream`) streams the request body through ``archive.load``, which commits layer
blobs as they arrive; the images, their tags and their manifests are then written in one metadata transaction per
image. A failed load leaves no tag and no image, and the blobs it had committed are collected again unless an image
already uses them. An archive Go's tar reader would refuse is answered in dockerd's words (``Error processing tar
file(exit status 1): unexpected EOF``), the precise reason going to the log. Events are tarexport's: one ``load`` or
``save`` per image, named by the image ID, and no ``tag`` event for the names a load sets.
:meth:`ArchiveService.save_to` and :meth:`ArchiveService.load_from` are the same with a file, for library callers.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import IO, Any

from .. import reference as refs
from ..archive.load import read_archive
from ..archive.results import ArchiveError, LoadResult
from ..archive.save import SaveImage, SaveLayer, write_save
from ..content.store import ContentStore
from ..errors import ImageNotFound, InvalidArgument
from ..metadata.db import LayerRecord, MetadataDB
from ..oci import mediatypes as mt
from ..oci.platform import Platform
from ..progress import Emit, Progress, ProgressEvent, StreamText, run_with_events
from .events import EventBus
from .images.importer import source_chunks
from .images.service import ImagesService
from .types import Image

__all__ = ["ArchiveService"]

log = logging.getLogger("dockwright")

_HEX = re.compile(r"[a-f0-9]+")


class ArchiveService:
    """``docker save`` and ``docker load`` over the engine's stores."""

    def __init__(self, images: ImagesService, content: ContentStore, db: MetadataDB, events: EventBus, *,
                 tmp_dir: Any, fsync: bool = True, level: int = 1) -> None:
        self.images = images
        self.content = content
        self.db = db
        self.events = events
        self.tmp_dir = tmp_dir
        self.fsync = fsync
        self.level = level

    # ================================================================================================ save ===
    def _select(self, names: list[str], platform: Platform | None) -> list[SaveImage]:
        """dockerd's tarexport parseNames: by tag → that tag; a bare repository → all its tags; an ID → no name."""
        order: list[str] = []
        tags: dict[str, list[refs.Reference]] = {}
        for name in names:
            image_id: str | None = None
            named: refs.Reference | None = None
            if not refs.is_full_id(name):
                try:
                    named = refs.parse_normalized_named(name)
                except InvalidArgument:
                    named = None
            if named is not None and not named.tag and not named.digest:
                prefix = named.name + ":"
                found = [(n, i) for n, i, kind in self.db.refs_with_prefix(prefix)
                         if kind == "tag" and "/" not in n[len(prefix):]]
                if found:
                    for n, i in found:
                        if i not in tags:
                            order.append(i)
                            tags[i] = []
                        tags[i].append(refs.parse_normalized_named(n))
                    continue
            image_id = self._lookup(name, named)
            if image_id not in tags:
                order.append(image_id)
                tags[image_id] = []
            if named is not None and not _is_id_like(name, image_id):
                t = refs.tag_name_only(named)
                if t.tag and not t.digest and t not in tags[image_id]:
                    tags[image_id].append(t)
        out = []
        for image_id in order:
            rec = self.db.get_image(image_id, with_layers=True)
            if rec is None:
                raise ImageNotFound(image_id)
            if platform is not None and not platform.matches(Platform(rec.os, rec.architecture, rec.variant)):
                raise ImageNotFound(image_id, f"image {image_id} does not provide the specified platform "
                                              f"({platform})")
            layers = []
            for diff_id, _, digest in rec.layers:
                lay = self.db.get_layer(digest)
                if lay is None:
                    raise ImageNotFound(image_id, f"layer {digest} of image {image_id} is missing")
                layers.append(SaveLayer(lay.digest, lay.size, lay.media_type, diff_id))
            names_ = tags[image_id]
            out.append(SaveImage(
                config_digest=rec.id, config_raw=self.content.read(rec.id),
                manifest_digest=rec.target_digest, manifest_raw=self.content.read(rec.target_digest),
                manifest_media_type=rec.target_media_type, layers=layers,
                repo_tags=[t.familiar() for t in names_], full_names=[str(t) for t in names_],
                parent=rec.parent))
        return out

    def _lookup(self, name: str, named: refs.Reference | None) -> str:
        """The image a save name that is not a repository with tags stands for, with tarexport's errors: a name
        with a tag or digest is looked up in the reference store (``reference does not exist``); a bare name (no
        tag, no repository of that name) or ``sha256:<prefix>`` only as an ID prefix (``No such image: <name>``,
        as given); a full ID as itself."""
        if named is None or refs.is_full_id(name):
            return self.images.resolve(name).id
        if named.tag or named.digest:
            if named.tag and named.digest:  # the digest takes precedence (reference store's Get)
                named = refs.Reference(named.domain, named.path, None, named.digest)
            image_id = self.db.get_ref(str(named))
            if image_id is None or self.db.get_image(image_id) is None:
                raise ImageNotFound(name, "reference does not exist")
            return image_id
        prefix = name.split(":", 1)[1] if name.startswith("sha256:") else name
        ids = self.db.image_ids_with_prefix(prefix) if _HEX.fullmatch(prefix) else []
        if len(ids) > 1:  # the image store's digest set
            raise ImageNotFound(name, "ambiguous digest string")
        if not ids:
            raise ImageNotFound(name, f"No such image: {name}")
        return ids[0]

    async def save_to(self, names: list[str], file: IO[bytes], *, platform: Platform | None = None) -> None:
        """Write the images ``names`` to ``file`` as one tar archive (written off the event loop)."""
        async for chunk in await self.save_stream(names, platform=platform):
            await asyncio.to_thread(file.write, chunk)

    async def save_stream(self, names: list[str], *, platform: Platform | None = None) -> AsyncIterator[bytes]:
        """``GET /images/get``: resolve now (errors before the first byte), then return the streaming tar."""
        if not names:
            raise InvalidArgument("no images specified")
        images = await asyncio.to_thread(self._select, names, platform)
        # the save's lease holds every blob it sends from now until the last byte; an image removed between the
        # look-up and the lease is "No such image", as if removed before
        lease = await self.images.start_operation("save")
        try:
            blobs = [d for img in images
                     for d in (img.config_digest, img.manifest_digest, *(lay.digest for lay in img.layers))]
            await asyncio.to_thread(lease.add_many, "content", blobs)
            for img in images:
                if self.db.get_image(img.config_digest) is None:
                    raise ImageNotFound(img.repo_tags[0] if img.repo_tags else img.config_digest)
            for d in blobs:
                if not self.content.exists(d):
                    raise ImageNotFound(d, f"content digest {d}: not found")
        except BaseException:
            await self.images.end_operation(lease)
            raise
        return self._stream(images, lease)

    async def _stream(self, images: list[SaveImage], lease: Any) -> AsyncIterator[bytes]:
        try:
            async for chunk in write_save(images, self.images.blob_chunks):
                yield chunk
            for img in images:
                attrs = dict((self.db.get_image(img.config_digest) or _NoRec()).labels or {})
                attrs["name"] = img.config_digest  # dockerd's tarexport names the image by its ID
                self.events.publish("image", "save", img.config_digest, attrs)
        finally:
            await self.images.end_operation(lease)

    # ================================================================================================ load ===
    async def load_from(self, file: IO[bytes], *, platform: Platform | None = None,
                        progress: Emit | None = None) -> list[Image]:
        """Load the images of the tar archive ``file``, all or nothing; ``progress`` gets the stream's events.
        Returns the images in the archive's order."""
        ids: list[str] = []
        async for ev in self._load_leased(source_chunks(file), quiet=progress is None, platform=platform):
            if isinstance(ev, _Loaded):
                ids.append(ev.image_id)
            elif progress is not None:
                progress(ev)
        return [self.images.get(i) for i in ids]

    async def load_stream(self, chunks: AsyncIterator[bytes], *, quiet: bool = False,
                          platform: Platform | None = None) -> AsyncIterator[ProgressEvent]:
        """``POST /images/load``: the load's progress (unless ``quiet``) and ``Loaded image: …`` lines."""
        inner = self._load_leased(chunks, quiet=quiet, platform=platform)
        try:
            async for ev in inner:
                if not isinstance(ev, _Loaded):
                    yield ev
        finally:  # left early (the client went away): the load's lease is released now
            await inner.aclose()

    async def _load_leased(self, chunks: AsyncIterator[bytes], *, quiet: bool,
                           platform: Platform | None) -> AsyncGenerator[ProgressEvent | _Loaded, None]:
        # the load's lease: every blob the archive writes or finds is leased before it is visible; a failed load
        # releases it and collects, so nothing it wrote stays
        unused = False
        async with self.images.operation("load"):
            async for ev in self._load(chunks, quiet=quiet, platform=platform):
                if isinstance(ev, _Unused):
                    unused = True
                    continue
                yield ev
        if unused:
            await self.images.collect()

    async def _load(self, chunks: AsyncIterator[bytes], *, quiet: bool,
                    platform: Platform | None) -> AsyncIterator[Any]:
        committed: set[str] = set()
        result_box: list[LoadResult] = []

        async def run(emit: Emit) -> None:
            def progress(status: str, id_: str, current: int, total: int | None) -> None:
                if not quiet:
                    emit(Progress(status, id_, current, total))

            try:
                result_box.append(await read_archive(chunks, self.content, tmp_dir=self.tmp_dir, platform=platform,
                                                     progress=progress, fsync=self.fsync, level=self.level,
                                                     committed=committed))
            except ArchiveError as exc:
                if exc.dockerd_message is None:
                    raise
                # dockerd's words to the client (its untar's), ours, more precise, to the log
                log.info("load refused: %s", exc)
                raise ArchiveError(exc.dockerd_message, exc.blobs) from exc

        async for ev in run_with_events(run):
            yield ev
        result = result_box[0]
        if not result.images:
            raise InvalidArgument("no images found in the archive") if not result.blobs else \
                InvalidArgument("no images for the requested platform in the archive")
        for img in result.images:
            async for done in self._commit_loaded(img):
                yield done
        if result.unused:
            yield _Unused()

    async def _commit_loaded(self, img: Any) -> AsyncIterator[ProgressEvent | _Loaded]:
        layers = [LayerRecord(lay.digest, lay.diff_id, lay.media_type, lay.size, lay.diff_size, lay.tar_size)
                  for lay in img.layers]
        tags = [refs.parse_normalized_named(t) for t in img.repo_tags]
        tags = [refs.tag_name_only(t) for t in tags]
        moved_from: dict[str, str] = {}
        for t in tags:
            old = self.db.get_ref(str(t))
            if old is not None and old != img.config_digest:
                moved_from[str(t)] = old
        parent = img.parent if img.parent and self.db.get_image(img.parent) is not None else ""
        kwargs: dict[str, Any] = {}
        if img.manifest_raw is not None:
            kwargs["manifest_raw"] = img.manifest_raw
            kwargs["manifest_media_type"] = img.manifest_media_type or mt.OCI_MANIFEST
        image_id, _ = await self.images.commit_image(img.config_raw, layers, parent=parent, tags=tags, **kwargs)
        for t in tags:
            if str(t) in moved_from:
                yield StreamText(f"The image {t.familiar()} already exists, renaming the old one with ID "
                                 f"{moved_from[str(t)]} to empty string\n")
        rec = self.db.get_image(image_id)
        attrs = dict((rec.labels if rec else None) or {})
        # dockerd's tarexport: one "load" event named by the image ID, and no "tag" event for the names it sets
        attrs["name"] = image_id
        self.events.publish("image", "load", image_id, attrs)
        if tags:
            for t in tags:
                yield StreamText(f"Loaded image: {t.familiar()}\n")
        else:
            yield StreamText(f"Loaded image ID: {image_id}\n")
        yield _Loaded(image_id)

class _Loaded:
    """An image the load committed (for :meth:`ArchiveService.load_from`; the stream does not carry it)."""

    def __init__(self, image_id: str) -> None:
        self.image_id = image_id


class _Unused:
    """Marks a load that wrote blobs no loaded image uses (a collection follows)."""


class _NoRec:
    labels = None


def _is_id_like(name: str, image_id: str) -> bool:
    hex_ = image_id.split(":", 1)[1]
    n = name.split(":", 1)[1] if name.startswith("sha256:") else name
    return hex_.startswith(n)

