"""The images service: resolve, import, list, inspect, history, tag, remove and prune — dockerd's semantics.

It composes the content store, the metadata database and the layer ingester, and owns the final metadata
transaction of every operation. Inspect unpacks an image's layers into snapshots when they are not yet (dockerd
has them unpacked from the pull or load on), so that ``GraphDriver`` names real directories. It knows no HTTP and
no API versions: handlers shape its results per version.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import IO, TYPE_CHECKING, Any, Protocol, Union

from ... import reference as refs
from ...content.store import ContentStore, current_lease
from ...distribution.auth import AuthConfig
from ...dockerfile import apply_changes
from ...errors import ImageNotFound, InvalidArgument, NotFound
from ...layers.apply import ensure_chain
from ...layers.ingest import IngestedLayer, LayerIngester
from ...layers.streams import ChunkBatcher
from ...metadata.db import ImageRecord, LayerRecord, MetadataDB
from ...metadata.leases import Lease, LeaseManager
from ...oci import mediatypes as mt
from ...oci.config import ImageConfig, import_config_bytes
from ...oci.descriptor import Descriptor
from ...oci.digest import chain_ids
from ...oci.gojson import rfc3339_nano
from ...oci.manifest import image_manifest
from ...oci.platform import Platform, host_platform
from ...progress import Emit, Progress, ProgressEvent, Status, begin, run_with_events
from ..events import EventBus
from ..prune import PruneLock
from ..types import Image, ImageSummary, PullResult, PushResult
from .importer import source_chunks, url_chunks
from .listing import ImageListing, PlatformArg, as_platform
from .removal import ContainerUsage, ImageRemoval

if TYPE_CHECKING:
    from ..gc import GarbageCollector

__all__ = ["ImagesService", "ImportSource", "Registry", "Archives"]

log = logging.getLogger("dockwright")

# what ``import_image`` reads: a URL (``http://…``), a file's path, a binary file, or the bytes as they come
ImportSource = Union[str, "os.PathLike[str]", IO[bytes], AsyncIterator[bytes]]


class Registry(Protocol):
    """The registry side the images service pulls through (the engine's distribution service)."""

    async def pull(self, from_image: str, tag: str = "", *, platform: str = "",
                   auth: AuthConfig | None = None) -> AsyncIterator[ProgressEvent]:
        """The pull's progress stream (raises before the first event for a bad name or an unknown image)."""

    async def pull_image(self, name: str, *, platform: str = "", auth: AuthConfig | None = None,
                         progress: Emit | None = None) -> PullResult:
        """Pull ``name`` and return what it names now."""

    async def push_image(self, name: str, *, auth: AuthConfig | None = None, platform: Platform | None = None,
                         progress: Emit | None = None) -> builtins.list[PushResult]:
        """Push ``name`` and return the manifest each tag has in the registry now."""


class Archives(Protocol):
    """``docker save`` and ``docker load`` (the engine's archive service)."""

    async def save_to(self, names: builtins.list[str], file: IO[bytes], *,
                      platform: Platform | None = None) -> None:
        """Write the images ``names`` to ``file`` as a tar archive."""

    async def load_from(self, file: IO[bytes], *, platform: Platform | None = None,
                        progress: Emit | None = None) -> builtins.list[Image]:
        """Load the images of the tar archive ``file``."""


def _no_containers(image_id: str) -> builtins.list[tuple[str, bool]]:
    return []


class _Imported:
    """The end of an import: the new image's ID (``import_stream`` sends it as the last status line)."""

    def __init__(self, image_id: str) -> None:
        self.image_id = image_id


class ImagesService(ImageListing, ImageRemoval):
    """The images of a data root: find, list, inspect, import, tag, remove, prune; pull, save and load through
    the services the engine hands over (:attr:`registry`, :attr:`archives`)."""

    def __init__(self, content: ContentStore, db: MetadataDB, events: EventBus, *, engine_version: str,
                 compression_level: int = 1, fsync: bool = True) -> None:
        self.content = content
        self.db = db
        self.events = events
        self.engine_version = engine_version
        self.compression_level = compression_level
        self.fsync = fsync
        self.container_usage: ContainerUsage = _no_containers
        self.leases = LeaseManager(db)
        self.gc: GarbageCollector | None = None  # set by the Engine (it needs the snapshotter)
        self.registry: Callable[[], Registry] | None = None  # set by the Engine (created on first use)
        self.archives: Archives | None = None  # set by the Engine
        self._mu = asyncio.Lock()
        self._compat: Lease | None = None
        self._compat_refs: dict[str, int] = {}
        self._prune = PruneLock()
        self._list_cache: tuple[int, builtins.list[ImageSummary]] | None = None
        self._generation = 0

    # ---- leases: what operations in flight hold, so that the collector keeps it ------------------------------
    @asynccontextmanager
    async def operation(self, kind: str) -> AsyncIterator[Lease]:
        """Hold a lease for an operation: taken before its first blob, set as the context's
        :data:`~dockwright.content.store.current_lease` (its writers, commits and worker threads add to it),
        released at the end. A failed operation, or one during which metadata was deleted, then collects."""
        lease = await self.start_operation(kind)
        token = current_lease.set(lease)
        failed = False
        try:
            yield lease
        except BaseException:
            failed = True
            raise
        finally:
            try:
                current_lease.reset(token)
            except ValueError:  # left from another context (an abandoned stream): that context ends anyway
                pass
            await self.end_operation(lease, failed=failed)

    async def start_operation(self, kind: str) -> Lease:
        """A lease for an operation whose end is not a ``with`` block (a stream): release it with
        :meth:`end_operation`."""
        return await asyncio.to_thread(self.leases.create, kind, mark=self.gc.deletions if self.gc else 0)

    async def end_operation(self, lease: Lease, *, failed: bool = False) -> None:
        """Release an operation's lease; a collection follows when it failed or metadata was deleted meanwhile."""
        if lease.released:
            return
        try:
            await asyncio.shield(asyncio.to_thread(lease.release))
        except asyncio.CancelledError:
            lease.released = True
            self._schedule_gc()
            raise
        if self.gc is not None and (failed or self.gc.deletions != lease.mark):
            try:
                await self.gc.run()
            except asyncio.CancelledError:
                self._schedule_gc()
                raise

    def _schedule_gc(self) -> None:
        if self.gc is not None:
            self.gc.schedule()

    def lease(self, digest: str) -> None:
        """Keep a blob (older callers): added to the context's lease, or to the process's own one."""
        cur = current_lease.get()
        if cur is not None:
            cur.add("content", digest)
            return
        if self._compat is None or self._compat.released:
            self._compat = self.leases.create("process", ttl=10 * 365 * 24 * 3600.0)
        self._compat_refs[digest] = self._compat_refs.get(digest, 0) + 1
        self._compat.add("content", digest)

    def release(self, digest: str) -> None:
        """Drop a keep of :meth:`lease` (the process's own lease) on ``digest``."""
        n = self._compat_refs.get(digest, 0) - 1
        if n > 0:
            self._compat_refs[digest] = n
            return
        if self._compat_refs.pop(digest, None) is not None and self._compat is not None:
            self.leases.remove_resource(self._compat.id, "content", digest)

    @property
    def generation(self) -> int:
        """Bumped by every change of images, references or containers' use of them."""
        return self._generation

    # ---- resolution -------------------------------------------------------------------------------------------
    def resolve(self, ref_or_id: str) -> ImageRecord:
        """dockerd's GetImage: full ID, name[:tag], name@digest, or a unique ID prefix."""
        s = ref_or_id
        if refs.is_full_id(s):
            image_id = "sha256:" + s.split(":", 1)[-1]
            rec = self.db.get_image(image_id)
            if rec is None:
                raise ImageNotFound(image_id)
            return rec
        named = refs.parse_normalized_named(s)  # InvalidReference → 400
        if named.digest and named.tag:
            named = refs.Reference(named.domain, named.path, None, named.digest)
        lookup = refs.tag_name_only(named)
        found = self.db.get_ref(str(lookup))
        if found is not None:
            rec = self.db.get_image(found)
            if rec is not None:
                return rec
        if refs.is_id_prefix(s):
            ids = self.db.image_ids_with_prefix(s.split(":", 1)[-1].lower())
            if len(ids) == 1:
                rec = self.db.get_image(ids[0])
                if rec is not None:
                    return rec
        raise ImageNotFound(lookup.familiar())

    async def blob_chunks(self, digest: str) -> AsyncIterator[bytes]:
        """A stored blob as it is, in 1 MiB chunks read off the event loop (what push and save send)."""
        f = await asyncio.to_thread(self.content.open, digest)
        try:
            while True:
                chunk = await asyncio.to_thread(f.read, 1 << 20)
                if not chunk:
                    return
                yield chunk
        finally:
            f.close()

    def config_of(self, rec: ImageRecord) -> ImageConfig:
        """The stored configuration of an image."""
        return ImageConfig(self.content.read(rec.id))

    def names_of(self, image_id: str) -> tuple[builtins.list[str], builtins.list[str]]:
        """(RepoTags, RepoDigests) in familiar form, sorted as dockerd's reference store sorts them."""
        tags: builtins.list[str] = []
        digests: builtins.list[str] = []
        for name, kind in self.db.refs_of(image_id):
            (digests if kind == "digest" else tags).append(refs.familiarize(name))
        return sorted(tags), sorted(digests)

    # ---- import -----------------------------------------------------------------------------------------------
    def import_target(self, repo: str, tag: str) -> refs.Reference | None:
        """dockerd's RepoTagReference for import/commit: the tag to apply, or None for an untagged image."""
        if not repo:
            return None
        return refs.split_repo_tag(repo, tag or None)

    async def import_image(self, source: ImportSource, *, repo: str = "", tag: str = "", message: str = "",
                           changes: builtins.list[str] | None = None, platform: str = "",
                           progress: Emit | None = None) -> Image:
        """``docker import``: an image of one layer from ``source`` (a URL, a path, a binary file or async chunks
        of a tar, compressed or not), tagged ``repo:tag`` when ``repo`` is given. ``progress`` gets the events."""
        image_id = ""
        async for ev in self._import_events(source, repo=repo, tag=tag, message=message, changes=changes,
                                            platform=platform, src=None):
            if isinstance(ev, _Imported):
                image_id = ev.image_id
            elif progress is not None:
                progress(ev)
        return self.get(image_id)

    async def import_stream(self, source: ImportSource, *, repo: str = "", tag: str = "", message: str = "",
                            changes: builtins.list[str] | None = None, platform: str = "",
                            src: str | None = None) -> AsyncIterator[ProgressEvent]:
        """The import as ``POST /images/create?fromSrc=`` streams it: for a URL, ``Downloading from <url>`` once
        the server answered (an error before is raised here) and ``Importing`` progress; last, the image ID as a
        status. ``src`` is what the comment names (``Imported from <src>``)."""
        return await begin(self._import_progress(source, repo=repo, tag=tag, message=message, changes=changes,
                                                 platform=platform, src=src))

    async def _import_progress(self, source: ImportSource, *, repo: str, tag: str, message: str,
                               changes: builtins.list[str] | None, platform: str,
                               src: str | None) -> AsyncIterator[ProgressEvent]:
        inner = self._import_events(source, repo=repo, tag=tag, message=message, changes=changes,
                                    platform=platform, src=src)
        try:
            async for ev in inner:
                yield Status(ev.image_id) if isinstance(ev, _Imported) else ev
        finally:  # left early: the download and the import stop now
            await inner.aclose()

    async def _import_events(self, source: ImportSource, *, repo: str, tag: str, message: str,
                             changes: builtins.list[str] | None, platform: str,
                             src: str | None) -> AsyncGenerator[ProgressEvent | _Imported, None]:
        self.import_target(repo, tag)  # everything cheap is checked before a byte is read
        if isinstance(source, str) and "://" in source:
            url = source
            box: builtins.list[str] = []
            async with url_chunks(url) as (total, body):
                yield Status(f"Downloading from {url}")

                async def run(emit: Emit) -> None:
                    async def chunks() -> AsyncIterator[bytes]:
                        done = 0
                        async for chunk in body:
                            done += len(chunk)
                            emit(Progress("Importing", None, done, total, bar=False))
                            yield chunk

                    box.append(await self._import_chunks(chunks(), repo=repo, tag=tag, message=message,
                                                         changes=changes, platform=platform, src=src or url))

                async for ev in run_with_events(run):
                    yield ev
            yield _Imported(box[0])
            return
        if isinstance(source, (str, os.PathLike)):
            src = src or os.fspath(source)
        image_id = await self._import_chunks(source_chunks(source), repo=repo, tag=tag, message=message,
                                             changes=changes, platform=platform, src=src or "-")
        yield _Imported(image_id)

    async def _import_chunks(self, chunks: AsyncIterator[bytes], *, repo: str, tag: str, message: str,
                             changes: builtins.list[str] | None, platform: str, src: str) -> str:
        """One layer from a (compressed) tar stream, its image committed and tagged. Returns the new image ID."""
        target = self.import_target(repo, tag)
        plat = Platform.parse_specifier(platform) if platform else host_platform()
        config = apply_changes({}, list(changes or []), plat.os)
        comment = message or f"Imported from {src}"
        async with self.operation("import"):
            layer = await self._ingest_layer(chunks)
            created = rfc3339_nano()
            raw = import_config_bytes(diff_ids=[layer.diff_id], os=plat.os, architecture=plat.architecture,
                                      variant=plat.variant, comment=comment, created=created,
                                      docker_version=self.engine_version, config=config)
            image_id, _ = await self.commit_image(raw, [layer])
        if target is not None:
            await self.tag(image_id, target)
        self._log(image_id, image_id, "import")
        return image_id

    async def _ingest_layer(self, chunks: AsyncIterator[bytes]) -> IngestedLayer:
        ing = LayerIngester(self.content, level=self.compression_level, fsync=self.fsync)
        batch = ChunkBatcher()
        try:
            async for chunk in chunks:
                if (data := batch.add(chunk)) is not None:
                    await asyncio.to_thread(ing.feed, data)
            if (data := batch.rest()) is not None:
                await asyncio.to_thread(ing.feed, data)
            layer = await asyncio.to_thread(ing.finish)
        except BaseException:
            ing.abort()
            raise
        return layer

    async def commit_image(self, config_raw: bytes, layers: Sequence[IngestedLayer | LayerRecord], *,
                           parent: str = "", manifest_media_type: str = mt.DOCKER_MANIFEST,
                           manifest_raw: bytes | None = None, extra_blobs: set[str] | None = None,
                           tags: builtins.list[refs.Reference] | None = None,
                           digests: builtins.list[refs.Reference] | None = None,
                           sources: builtins.list[tuple[str, str, str]] | None = None
                           ) -> tuple[str, builtins.list[str]]:
        """Store config + manifest for committed layer blobs and write the image, its names and the layer
        records in one transaction. Without ``manifest_raw`` a Docker schema2 manifest is made (once) for the
        stored compressed layers. Returns (image ID, the tags that moved here from another image).

        Runs under the context's lease (or a lease of its own): every blob the image will reference is leased
        before it is written or found, and must exist before the transaction."""
        if current_lease.get() is None:
            async with self.operation("commit"):
                return await self.commit_image(
                    config_raw, layers, parent=parent, manifest_media_type=manifest_media_type,
                    manifest_raw=manifest_raw, extra_blobs=extra_blobs, tags=tags, digests=digests, sources=sources)
        lease = current_lease.get()
        assert lease is not None
        await asyncio.to_thread(lease.add_many, "content",  # type: ignore[attr-defined]
                                [lay.digest for lay in layers] + sorted(extra_blobs or ()))
        cfg = ImageConfig(config_raw)
        config_digest = await asyncio.to_thread(self.content.put, config_raw)
        if manifest_raw is None:
            manifest_raw, manifest_media_type = image_manifest(config_raw, config_digest, layers,
                                                               media_type=manifest_media_type)
        manifest_digest = await asyncio.to_thread(self.content.put, manifest_raw)
        diff_ids = [lay.diff_id for lay in layers]
        chains = chain_ids(diff_ids)
        now = time.time()
        rec = ImageRecord(
            id=config_digest, target_media_type=manifest_media_type, target_digest=manifest_digest,
            target_size=len(manifest_raw), created=cfg.created, created_raw=cfg.created_raw,
            size=sum(lay.diff_size for lay in layers), parent=parent, labels=cfg.labels, os=cfg.os,
            architecture=cfg.architecture, variant=cfg.variant,
            last_tag_time=rfc3339_nano() if tags else None, added=now,
            layers=[(lay.diff_id, ch, lay.digest) for lay, ch in zip(layers, chains, strict=True)],
        )
        blobs = {config_digest, manifest_digest, *(lay.digest for lay in layers), *(extra_blobs or set())}
        for b in sorted(blobs):  # leased above: what exists now stays until the image references it
            if not await asyncio.to_thread(self.content.exists, b):
                raise NotFound(f"content digest {b}: not found")
        moved: builtins.list[str] = []
        async with self._mu:
            with self.db.tx() as c:
                for lay in layers:
                    self.db.put_layer(c, LayerRecord(lay.digest, lay.diff_id, lay.media_type, lay.size,
                                                     lay.diff_size, lay.tar_size))
                if not self.db.put_image(c, rec, blobs) and tags:
                    self.db.set_last_tag_time(c, rec.id, rfc3339_nano())
                for t in tags or []:
                    old = self.db.set_ref(c, str(t), rec.id, "tag", now)
                    if old is not None:
                        moved.append(str(t))
                for d in digests or []:
                    self.db.set_ref(c, str(d), rec.id, "digest", now)
                for digest, domain, repo in sources or []:
                    self.db.add_blob_source(c, digest, domain, repo)
            self._changed()
        return config_digest, moved

    # ---- tag --------------------------------------------------------------------------------------------------
    def tag_target(self, repo: str, tag: str) -> refs.Reference | None:
        """Validate ``POST /images/{name}/tag``'s repo and tag as dockerd does (None: empty repo, a no-op)."""
        if not repo:
            return None
        return refs.split_repo_tag(repo, tag or None)

    async def tag(self, image: str, target: refs.Reference | str) -> None:
        """Give ``image`` the name ``target`` (``repo[:tag]``; the tag defaults to ``latest``)."""
        if isinstance(target, str):
            target = refs.tag_name_only(refs.parse_normalized_named(target))
        if target.digest and not target.tag:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        rec = self.resolve(image)
        now = time.time()
        async with self._mu:
            if self.db.get_image(rec.id) is None:
                raise ImageNotFound(image)  # removed meanwhile: never a tag for a gone image
            with self.db.tx() as c:
                self.db.set_ref(c, str(target), rec.id, "tag", now)
                self.db.set_last_tag_time(c, rec.id, rfc3339_nano())
            self._changed()
        self._log(rec.id, target.familiar(), "tag")

    async def add_digest_ref(self, image_id: str, ref: refs.Reference) -> None:
        """Name ``image_id`` by ``ref`` (``repo@digest``: what a push leaves), unless it was removed meanwhile."""
        async with self._mu:
            if self.db.get_image(image_id) is None:
                return  # removed meanwhile (e.g. during its push): no name for a gone image
            with self.db.tx() as c:
                self.db.set_ref(c, str(ref), image_id, "digest", time.time())
            self._changed()

    # ---- inspect ----------------------------------------------------------------------------------------
    def get(self, name: str, platform: PlatformArg = None) -> Image:
        """The image ``name`` (an ID, a unique ID prefix, ``name[:tag]`` or ``name@digest``): ImageNotFound
        when there is none, NotFound when it does not provide ``platform``."""
        rec = self.resolve(name)
        platform = as_platform(platform)
        if platform is not None and not platform.matches(Platform(rec.os, rec.architecture, rec.variant)):
            raise NotFound(f"image with reference {name} was found but does not provide the specified platform "
                           f"({platform})")
        return self._image(rec)

    def _image(self, rec: ImageRecord) -> Image:
        cfg = self.config_of(rec)
        tags, digests = self.names_of(rec.id)
        d = cfg.data
        comment = d.get("comment") or ""
        history = cfg.history
        if not comment and history:
            comment = history[-1].get("comment") or ""
        return Image(
            id=rec.id, repo_tags=tags, repo_digests=digests, parent=rec.parent, comment=comment,
            created=d.get("created") or None, docker_version=d.get("docker_version") or "",
            author=d.get("author") or "", architecture=cfg.architecture, variant=cfg.variant or None, os=cfg.os,
            os_version=d.get("os.version") or None, size=rec.size, config=d.get("config"), layers=cfg.diff_ids,
            last_tag_time=rec.last_tag_time,
            descriptor=Descriptor(rec.target_media_type, rec.target_digest, rec.target_size),
            graph_driver=self.graph_driver(rec.id), container=d.get("container") or "",
            container_config=d.get("container_config"), raw=d)

    async def get_unpacked(self, name: str, platform: PlatformArg = None) -> Image:
        """:meth:`get` with the image's layers unpacked first, so that ``graph_driver`` names real directories, as
        dockerd's always do (it unpacks at pull and load; here a layer is unpacked when something first needs it:
        a container, a build step or this). An unpack that fails leaves ``graph_driver`` None rather than failing."""
        image = self.get(name, platform)
        if image.graph_driver is None:
            try:
                if await self.unpack(image.id):
                    image = dataclasses.replace(image, graph_driver=self.graph_driver(image.id))
            except Exception as exc:  # noqa: BLE001 - inspect answers anyway
                log.warning("image %s: cannot unpack its layers for inspect: %s", image.id, exc)
        return image

    def _snapshots(self) -> Any:
        """The layer snapshotter (the collector's: the Engine hands it over there), or None."""
        return getattr(self.gc, "snapshotter", None) if self.gc is not None else None

    def graph_driver(self, image_id: str) -> dict[str, str] | None:
        """The ``Data`` of dockerd's overlay2 ``GraphDriver`` of an image: its top layer's directory as
        ``UpperDir``, the layers below as ``LowerDir`` (nearest first, ``:``-separated; absent for a single
        layer), and ``MergedDir`` and ``WorkDir`` beside ``UpperDir`` (overlay2's ``merged`` and ``work``, which a
        layer never has mounted or in use). None while the top layer is not unpacked, and for an image without
        layers."""
        data: dict[str, str] | None = None
        sn = self._snapshots()
        rec = self.db.get_image(image_id, with_layers=True)
        if sn is not None and rec is not None and rec.layers:
            top = rec.layers[-1][1]
            try:
                if sn.exists(top):
                    upper = sn.upper_dir(top)
                    lower = [str(p) for p in sn.lower_dirs(top)]
                    data = {**({"LowerDir": ":".join(lower)} if lower else {}),
                            "MergedDir": str(upper.parent / "merged"), "UpperDir": str(upper),
                            "WorkDir": str(upper.parent / "work")}
            except NotFound:  # removed meanwhile (the image with it)
                data = None
        return data

    async def unpack(self, image_id: str) -> bool:
        """Unpack the image's layers into snapshots (those missing), under a lease. False: nothing to unpack
        into (no snapshotter, no layers, the image gone)."""
        sn = self._snapshots()
        rec = self.db.get_image(image_id, with_layers=True)
        if sn is None or rec is None or not rec.layers:
            return False
        if await asyncio.to_thread(sn.exists, rec.layers[-1][1]):
            return True
        layers = [(chain, (lambda d=digest: self.content.open(d))) for _, chain, digest in rec.layers]
        async with self.operation("unpack"):
            # the unpack runs in a thread: a cancelled request lets it finish (the snapshots stay for later use)
            task = asyncio.ensure_future(asyncio.to_thread(ensure_chain, sn, layers, sync=False))
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                await asyncio.wait([task])
                raise
        return True

    async def collect(self, blobs: set[str] | None = None) -> None:
        """Run the collector (older callers name the blobs they made; it finds them itself)."""
        await self._run_gc()

    # ---- pull / save / load (through the engine's distribution and archive services) ---------------------------
    def _registry(self) -> Registry:
        if self.registry is None:
            raise InvalidArgument("this images service has no registry access")
        return self.registry()

    async def pull(self, name: str, *, platform: PlatformArg = None, auth: AuthConfig | None = None,
                   progress: Emit | None = None) -> PullResult:
        """``docker pull name``: the image ``name`` (``repo[:tag]`` or ``repo@digest``; the tag defaults to
        ``latest``) from its registry. ``progress`` gets dockerd's progress events."""
        return await self._registry().pull_image(name, platform=str(platform or ""), auth=auth, progress=progress)

    async def pull_stream(self, from_image: str, tag: str = "", *, platform: str = "",
                          auth: AuthConfig | None = None) -> AsyncIterator[ProgressEvent]:
        """The pull as ``POST /images/create?fromImage=`` streams it (no tag: every tag of the repository). A bad
        name or an unknown image is raised here, before the first event."""
        return await self._registry().pull(from_image, tag, platform=platform, auth=auth)

    async def push(self, name: str, *, auth: AuthConfig | None = None, platform: PlatformArg = None,
                   progress: Emit | None = None) -> builtins.list[PushResult]:
        """``docker push name``: the tag ``name`` (every tag of the repository when it has none) to its
        registry. Returns each tag's ``PushResult``; ``progress`` gets dockerd's progress events."""
        return await self._registry().push_image(name, auth=auth, platform=as_platform(platform), progress=progress)

    def _archives(self) -> Archives:
        if self.archives is None:
            raise InvalidArgument("this images service has no archive service")
        return self.archives

    async def save(self, names: builtins.list[str], file: IO[bytes], *, platform: PlatformArg = None) -> None:
        """``docker save``: write the images ``names`` (names, IDs, or repositories: all their tags) to ``file``
        as one tar archive."""
        await self._archives().save_to(names, file, platform=as_platform(platform))

    async def load(self, file: IO[bytes], *, platform: PlatformArg = None,
                   progress: Emit | None = None) -> builtins.list[Image]:
        """``docker load``: the images of the tar archive ``file`` (``docker save``'s or an OCI layout), all or
        nothing. Returns them in the archive's order."""
        return await self._archives().load_from(file, platform=as_platform(platform), progress=progress)

    # ---- fsck -------------------------------------------------------------------------------------------------
    def fsck(self, *, remove: bool = True) -> dict[str, builtins.list[str]]:
        """What a check of the store finds: with ``remove``, a start-up collection (everything no root reaches
        goes); without, only the blobs images reference that are missing."""
        if remove and self.gc is not None:
            return self.gc.collect(startup=True).as_dict()
        referenced = self.db.referenced_blobs()
        return {"orphan_blobs": [], "ingests": [],
                "missing_blobs": sorted(d for d in referenced if not self.content.exists(d))}

    def layers_size(self) -> int:
        """The bytes of layer data images use, each layer once (``docker system df``'s)."""
        rows = self.db.query("SELECT COALESCE(SUM(diff_size), 0) FROM (SELECT DISTINCT chain_id, l.diff_size "
                             "FROM image_layers il JOIN layers l ON l.digest = il.digest)")
        return int(rows[0][0])
