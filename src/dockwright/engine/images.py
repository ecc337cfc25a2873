"""The images service: resolve, import, list, inspect, history, tag, remove and prune — dockerd's semantics.

It composes the content store, the metadata database and the layer ingester, and owns the final metadata
transaction of every operation. Inspect unpacks an image's layers into snapshots when they are not yet (dockerd
has them unpacked from the pull or load on), so that ``GraphDriver`` names real directories. It knows no HTTP and
no API versions: handlers shape its results per version.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

from .. import reference as refs
from ..dockerfile import apply_changes
from ..content.store import ContentStore, current_lease
from ..errors import Conflict, ImageNotFound, InvalidArgument, NotFound
from ..filters import Filters
from ..layers.apply import ensure_chain
from ..layers.ingest import IngestedLayer, LayerIngester
from ..metadata.db import ImageRecord, LayerRecord, MetadataDB
from ..metadata.leases import Lease, LeaseManager
from ..oci import mediatypes as mt
from ..oci.config import ImageConfig, import_config_bytes
from ..oci.digest import chain_ids, hex_of, short_id
from ..oci.gojson import rfc3339_nano
from ..oci.platform import Platform, host_platform
from ..timestamps import parse_timestamp
from .events import EventBus
from .gc import RESUMABLE_PREFIX, RESUMABLE_TTL  # noqa: F401 - re-exported (were defined here)

if TYPE_CHECKING:
    from .gc import GarbageCollector

__all__ = ["ImagesService", "ImageSummary", "DeleteItem", "PruneReport", "HistoryItem", "ContainerUsage"]

log = logging.getLogger("dockwright")

_OCI_LAYER_TYPES = {mt.DOCKER_LAYER: mt.OCI_LAYER_GZIP, "application/vnd.docker.image.rootfs.diff.tar": mt.OCI_LAYER}

LIST_FILTERS = ("before", "dangling", "label", "reference", "since", "until")
PRUNE_FILTERS = ("dangling", "label", "label!", "until")

# (container id, running) of the containers that use an image
ContainerUsage = Callable[[str], list[tuple[str, bool]]]


def _no_containers(image_id: str) -> list[tuple[str, bool]]:
    return []


@dataclass(slots=True)
class ImageSummary:
    id: str
    parent_id: str
    repo_tags: list[str]
    repo_digests: list[str]
    created: int
    size: int
    shared_size: int
    labels: dict[str, str] | None
    containers: int
    descriptor: dict[str, Any]
    created_f: float = 0.0
    seq: int = 0


@dataclass(frozen=True, slots=True)
class DeleteItem:
    untagged: str | None = None
    deleted: str | None = None

    def to_json(self) -> dict[str, str]:
        return {"Untagged": self.untagged} if self.untagged is not None else {"Deleted": self.deleted or ""}


@dataclass(slots=True)
class PruneReport:
    deleted: list[DeleteItem] = field(default_factory=list)
    space_reclaimed: int = 0


@dataclass(frozen=True, slots=True)
class HistoryItem:
    id: str
    created: int
    created_by: str
    tags: list[str] | None
    size: int
    comment: str


def _sort_key_familiar(name: str) -> str:
    return refs.familiarize(name)


def _is_digest_ref(name: str) -> bool:
    return "@" in name


class ImagesService:
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
        self._mu = asyncio.Lock()
        self._compat: Lease | None = None
        self._compat_refs: dict[str, int] = {}
        self._prune_running = False
        self._list_cache: tuple[int, list[ImageSummary]] | None = None
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

    def _changed(self) -> None:
        self._generation += 1
        self._list_cache = None

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
        image_id = self.db.get_ref(str(lookup))
        if image_id is not None:
            rec = self.db.get_image(image_id)
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
        return ImageConfig(self.content.read(rec.id))

    def names_of(self, image_id: str) -> tuple[list[str], list[str]]:
        """(RepoTags, RepoDigests) in familiar form, sorted as dockerd's reference store sorts them."""
        tags: list[str] = []
        digests: list[str] = []
        for name, kind in self.db.refs_of(image_id):
            (digests if kind == "digest" else tags).append(refs.familiarize(name))
        return sorted(tags), sorted(digests)

    # ---- import -----------------------------------------------------------------------------------------------
    def import_target(self, repo: str, tag: str) -> refs.Reference | None:
        """dockerd's RepoTagReference for import/commit: the tag to apply, or None for an untagged image."""
        if not repo:
            return None
        return refs.split_repo_tag(repo, tag or None)

    async def import_image(self, chunks: AsyncIterator[bytes], *, repo: str = "", tag: str = "",
                           message: str = "", changes: list[str] | None = None, platform: str = "",
                           src: str = "-") -> str:
        """``docker import``: one layer from a (compressed) tar stream. Returns the new image ID."""
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
        buf: list[bytes] = []
        pending = 0
        try:
            async for chunk in chunks:
                buf.append(chunk)
                pending += len(chunk)
                if pending >= 1 << 20:
                    data = b"".join(buf)
                    buf.clear()
                    pending = 0
                    await asyncio.to_thread(ing.feed, data)
            if buf:
                await asyncio.to_thread(ing.feed, b"".join(buf))
            layer = await asyncio.to_thread(ing.finish)
        except BaseException:
            ing.abort()
            raise
        return layer

    async def commit_image(self, config_raw: bytes, layers: "list[IngestedLayer] | list[LayerRecord]", *,
                           parent: str = "", manifest_media_type: str = mt.DOCKER_MANIFEST,
                           manifest_raw: bytes | None = None, extra_blobs: set[str] | None = None,
                           tags: "list[refs.Reference] | None" = None, digests: "list[refs.Reference] | None" = None,
                           sources: list[tuple[str, str, str]] | None = None) -> tuple[str, list[str]]:
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
            if any(lay.media_type != mt.DOCKER_LAYER for lay in layers):
                manifest_media_type = mt.OCI_MANIFEST  # uncompressed or zstd layers: an OCI manifest
            oci = manifest_media_type == mt.OCI_MANIFEST
            manifest = {
                "schemaVersion": 2,
                "mediaType": manifest_media_type,
                "config": {"mediaType": mt.OCI_CONFIG if oci else mt.DOCKER_CONFIG,
                           "size": len(config_raw), "digest": config_digest},
                "layers": [{"mediaType": _OCI_LAYER_TYPES.get(lay.media_type, lay.media_type) if oci
                            else lay.media_type, "size": lay.size, "digest": lay.digest} for lay in layers],
            }
            manifest_raw = json.dumps(manifest, indent=3).encode()
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
            layers=[(lay.diff_id, ch, lay.digest) for lay, ch in zip(layers, chains)],
        )
        blobs = {config_digest, manifest_digest, *(lay.digest for lay in layers), *(extra_blobs or set())}
        for b in sorted(blobs):  # leased above: what exists now stays until the image references it
            if not await asyncio.to_thread(self.content.exists, b):
                raise NotFound(f"content digest {b}: not found")
        moved: list[str] = []
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

    async def tag(self, image: str, target: refs.Reference) -> None:
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
        async with self._mu:
            if self.db.get_image(image_id) is None:
                return  # removed meanwhile (e.g. during its push): no name for a gone image
            with self.db.tx() as c:
                self.db.set_ref(c, str(ref), image_id, "digest", time.time())
            self._changed()

    # ---- list -------------------------------------------------------------------------------------------------
    def _all_summaries(self) -> list[ImageSummary]:
        cached = self._list_cache
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        tags: dict[str, list[str]] = {}
        digests: dict[str, list[str]] = {}
        for name, image_id, kind in self.db.all_refs():
            (digests if kind == "digest" else tags).setdefault(image_id, []).append(refs.familiarize(name))
        out = []
        for rec in self.db.all_images():
            out.append(ImageSummary(
                id=rec.id, parent_id=rec.parent, repo_tags=sorted(tags.get(rec.id, [])),
                repo_digests=sorted(digests.get(rec.id, [])), created=int(rec.created or 0), size=rec.size,
                shared_size=-1, labels=rec.labels, containers=-1,
                descriptor={"mediaType": rec.target_media_type, "digest": rec.target_digest,
                            "size": rec.target_size},
                created_f=rec.created or 0.0, seq=rec.seq))
        self._list_cache = (self._generation, out)
        return out

    def list(self, *, all: bool = False, filters: Filters | None = None, shared_size: bool = False,
             container_count: bool = True) -> list[ImageSummary]:
        f = filters or Filters()
        f.validate(LIST_FILTERS)
        dangling_only = f.get_bool_or_default("dangling", False)
        before: float | None = None
        since: float | None = None
        for v in f.get("before"):
            rec = self.resolve(v)
            if rec.created is not None and (before is None or before > rec.created):
                before = rec.created
        for v in f.get("until"):
            ts = parse_timestamp(v, time.time())
            if before is None or before > ts:
                before = ts
        for v in f.get("since"):
            rec = self.resolve(v)
            if rec.created is not None and (since is None or since < rec.created):
                since = rec.created
        ref_patterns = f.get("reference")
        summaries = self._all_summaries()
        parents = {s.parent_id for s in summaries if s.parent_id}
        out: list[ImageSummary] = []
        for s in summaries:
            if dangling_only and s.id in parents:
                continue
            if before is not None and (not s.created_f or not s.created_f < before):
                continue
            if since is not None and (not s.created_f or not s.created_f > since):
                continue
            if f.contains("label") and not f.match_kv_list("label", s.labels or {}):
                continue
            repo_tags, repo_digests = s.repo_tags, s.repo_digests
            if ref_patterns:
                repo_tags = [t for t in repo_tags if any(refs.familiar_match(p, t) for p in ref_patterns)]
                repo_digests = [d for d in repo_digests if any(refs.familiar_match(p, d) for p in ref_patterns)]
            if not repo_tags and not repo_digests:
                if all or s.id not in parents:
                    if f.contains("dangling") and not dangling_only:
                        continue
                    if ref_patterns:
                        continue
                else:
                    continue
            elif dangling_only and repo_tags:
                continue
            item = ImageSummary(s.id, s.parent_id, list(repo_tags), list(repo_digests), s.created, s.size, -1,
                                s.labels, -1, s.descriptor, s.created_f, s.seq)
            if container_count:
                item.containers = len(self.container_usage(s.id))
            out.append(item)
        if shared_size and out:
            # dockerd's Images(): a layer is shared when more than one of the images *listed* uses it (the
            # intermediate images a build leaves, hidden without ``all``, do not count), so a built image's own
            # layers are its unique size; ``Size - SharedSize`` is the CLI's UNIQUE SIZE
            listed = {item.id for item in out}
            counts: dict[str, int] = {}
            sizes: dict[str, int] = {}
            per_image: dict[str, list[str]] = {}
            for image_id, chain, size in self.db.image_layer_rows():
                if image_id not in listed:
                    continue
                counts[chain] = counts.get(chain, 0) + 1
                sizes[chain] = size
                per_image.setdefault(image_id, []).append(chain)
            for item in out:
                item.shared_size = sum(sizes[ch] for ch in per_image.get(item.id, []) if counts[ch] > 1)
        out.sort(key=lambda s: (s.created_f, s.seq), reverse=True)
        return out

    # ---- inspect / history ------------------------------------------------------------------------------------
    def inspect(self, name: str, platform: Platform | None = None) -> dict[str, Any]:
        """The version-independent inspect data; the API layer shapes it per version."""
        rec = self.resolve(name)
        if platform is not None and not platform.matches(Platform(rec.os, rec.architecture, rec.variant)):
            raise NotFound(f"image with reference {name} was found but does not provide the specified platform "
                           f"({platform})")
        cfg = self.config_of(rec)
        tags, digests = self.names_of(rec.id)
        d = cfg.data
        comment = d.get("comment") or ""
        history = cfg.history
        if not comment and history:
            comment = history[-1].get("comment") or ""
        return {
            "Id": rec.id,
            "RepoTags": tags,
            "RepoDigests": digests,
            "Parent": rec.parent,
            "Comment": comment,
            "Created": d.get("created") or None,
            "Container": d.get("container") or "",
            "ContainerConfig": d.get("container_config"),
            "DockerVersion": d.get("docker_version") or "",
            "Author": d.get("author") or "",
            "Config": d.get("config"),
            "Architecture": cfg.architecture,
            "Variant": cfg.variant or None,
            "Os": cfg.os,
            "OsVersion": d.get("os.version") or None,
            "Size": rec.size,
            "GraphDriver": self.graph_driver(rec.id),
            "RootFS": {"Type": "layers", "Layers": cfg.diff_ids},
            "Metadata": {"LastTagTime": rec.last_tag_time or "0001-01-01T00:00:00Z"},
            "Descriptor": {"mediaType": rec.target_media_type, "digest": rec.target_digest,
                           "size": rec.target_size},
        }

    async def ainspect(self, name: str, platform: Platform | None = None) -> dict[str, Any]:
        """:meth:`inspect` with the image's layers unpacked first, so that ``GraphDriver.Data`` names real
        directories, as dockerd's always do (it unpacks at pull and load; here a layer is unpacked when something
        first needs it: a container, a build step or this). An unpack that fails (a layer the store cannot
        unpack) leaves ``Data`` null rather than failing the inspect."""
        d = self.inspect(name, platform)
        if d["GraphDriver"]["Data"] is None:
            try:
                if await self.unpack(d["Id"]):
                    d["GraphDriver"] = self.graph_driver(d["Id"])
            except Exception as exc:  # noqa: BLE001 - inspect answers anyway
                log.warning("image %s: cannot unpack its layers for inspect: %s", d["Id"], exc)
        return d

    def _snapshots(self) -> Any:
        """The layer snapshotter (the collector's: the Engine hands it over there), or None."""
        return getattr(self.gc, "snapshotter", None) if self.gc is not None else None

    def graph_driver(self, image_id: str) -> dict[str, Any]:
        """dockerd's overlay2 ``GraphDriver`` of an image: its top layer's directory as ``UpperDir``, the layers
        below as ``LowerDir`` (nearest first, ``:``-separated; absent for a single layer), and ``MergedDir`` and
        ``WorkDir`` beside ``UpperDir`` (overlay2's ``merged`` and ``work``, which a layer never has mounted or in
        use). ``Data`` is null while the top layer is not unpacked, and for an image without layers."""
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
        return {"Data": data, "Name": "overlay2"}

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

    def history(self, name: str, platform: Platform | None = None) -> list[HistoryItem]:
        rec = self.resolve(name)
        if platform is not None and not platform.matches(Platform(rec.os, rec.architecture, rec.variant)):
            raise NotFound(f"image with reference {name} was found but does not provide the specified platform "
                           f"({platform})")
        cfg = self.config_of(rec)
        diff_ids = cfg.diff_ids
        layer_rows = self.db.get_image(rec.id, with_layers=True)
        layer_digests = [lay[2] for lay in (layer_rows.layers if layer_rows else [])]
        items: list[dict[str, Any]] = []
        counter = 0
        for h in cfg.history:
            size = 0
            if not h.get("empty_layer"):
                if len(diff_ids) <= counter:
                    raise InvalidArgument("too many non-empty layers in History section")
                if counter < len(layer_digests):
                    lr = self.db.get_layer(layer_digests[counter])
                    size = lr.diff_size if lr else 0
                counter += 1
            from ..oci.gojson import parse_rfc3339
            created = h.get("created")
            ts = parse_rfc3339(created) if isinstance(created, str) else None
            items.insert(0, {"id": "<missing>", "created": int(ts) if ts else 0,
                             "created_by": h.get("created_by") or "", "comment": h.get("comment") or "",
                             "size": size, "tags": None})
        image_id: str | None = rec.id
        for it in items:
            if image_id is None:
                break
            it["id"] = image_id
            tags, _ = self.names_of(image_id)
            it["tags"] = tags or None
            parent = self.db.get_image(image_id)
            image_id = parent.parent if parent and parent.parent else None
            if image_id is not None and self.db.get_image(image_id) is None:
                image_id = None
        return [HistoryItem(it["id"], it["created"], it["created_by"], it["tags"], it["size"], it["comment"])
                for it in items]

    # ---- delete -----------------------------------------------------------------------------------------------
    async def remove(self, name: str, *, force: bool = False, prune: bool = True) -> list[DeleteItem]:
        async with self._mu:
            records = self._remove_locked(name, force=force, prune=prune)
        if any(r.deleted for r in records):
            await self._run_gc()
        return records

    async def _run_gc(self) -> None:
        if self.gc is not None:
            await self.gc.run()

    def _remove_locked(self, name: str, *, force: bool, prune: bool) -> list[DeleteItem]:
        rec = self.resolve(name)
        image_id = rec.id
        records: list[DeleteItem] = []
        repo_refs = self._refs(image_id)
        removed_repository_ref = False
        if not _is_image_id_prefix(image_id, name):
            if not force and _is_single_reference(repo_refs):
                users = self.container_usage(image_id)
                if users:
                    raise Conflict(f'conflict: unable to remove repository reference "{name}" (must force) - '
                                   f"container {users[0][0][:12]} is using its referenced image {short_id(image_id)}")
            parsed = refs.parse_normalized_named(name)
            if parsed.digest and parsed.tag:
                parsed = refs.Reference(parsed.domain, parsed.path, None, parsed.digest)
            parsed = refs.tag_name_only(parsed)
            with self.db.tx() as c:
                self.db.delete_ref(c, str(parsed))
            self._changed()
            self._log(image_id, image_id, "untag")
            records.append(DeleteItem(untagged=parsed.familiar()))
            repo_refs = self._refs(image_id)
            if not parsed.digest:
                found_tag = any(not _is_digest_ref(r) and _repo_name(r) == parsed.name for r in repo_refs)
                if not found_tag:
                    remaining = []
                    for r in repo_refs:
                        if _is_digest_ref(r) and _repo_name(r) == parsed.name:
                            with self.db.tx() as c:
                                self.db.delete_ref(c, r)
                            self._changed()
                            records.append(DeleteItem(untagged=refs.familiarize(r)))
                        else:
                            remaining.append(r)
                    repo_refs = remaining
            if repo_refs:
                return records
            removed_repository_ref = True
        else:
            if _is_single_reference(repo_refs):
                conflict = self._check_conflict(image_id, hard=True, soft=not force, active_reference=False)
                if conflict is not None:
                    raise conflict
                for r in repo_refs:
                    with self.db.tx() as c:
                        self.db.delete_ref(c, r)
                    self._changed()
                    self._log(image_id, image_id, "untag")
                    records.append(DeleteItem(untagged=refs.familiarize(r)))
        self._delete_helper(image_id, records, force=force, prune=prune, quiet=removed_repository_ref)
        return records

    def _refs(self, image_id: str) -> list[str]:
        return sorted((n for n, _ in self.db.refs_of(image_id)), key=_sort_key_familiar)

    def _check_conflict(self, image_id: str, *, hard: bool, soft: bool,
                        active_reference: bool = True) -> "_DeleteConflict | None":
        if hard and self.db.children(image_id):
            return _DeleteConflict(image_id, "image has dependent child images", hard=True)
        users = self.container_usage(image_id)
        if hard:
            for cid, running in users:
                if running:
                    return _DeleteConflict(image_id, f"image is being used by running container {cid[:12]}",
                                           hard=True, used=True)
        if soft and active_reference and self.db.refs_of(image_id):
            return _DeleteConflict(image_id, "image is referenced in multiple repositories")
        if soft:
            for cid, running in users:
                if not running:
                    return _DeleteConflict(image_id, f"image is being used by stopped container {cid[:12]}",
                                           used=True)
        return None

    def _delete_helper(self, image_id: str, records: list[DeleteItem], *, force: bool, prune: bool,
                       quiet: bool) -> None:
        conflict = self._check_conflict(image_id, hard=True, soft=not force)
        if conflict is not None:
            # dockerd's imageIsDangling: no reference and no child image. After a name was removed (quiet), a
            # conflict is only reported for an image that became dangling and that no container uses: an image
            # with children stays (untagged), as dockerd leaves it
            dangling = not self.db.refs_of(image_id) and not self.db.children(image_id)
            if quiet and (not dangling or conflict.used):
                return
            raise conflict
        rec = self.db.get_image(image_id, with_layers=True)
        if rec is None:
            return
        parent = rec.parent
        for r in self._refs(image_id):
            with self.db.tx() as c:
                self.db.delete_ref(c, r)
            self._log(image_id, image_id, "untag")
            records.append(DeleteItem(untagged=refs.familiarize(r)))
        removed_layers = self._delete_image_record(rec)
        self._log(image_id, image_id, "delete")
        records.append(DeleteItem(deleted=image_id))
        records.extend(DeleteItem(deleted=ch) for ch in removed_layers)
        if not prune or not parent:
            return
        if self.db.get_image(parent) is None:
            return
        self._delete_helper(parent, records, force=False, prune=True, quiet=True)

    def _delete_image_record(self, rec: ImageRecord) -> list[str]:
        """Delete the image rows — metadata only: the collector, run afterwards, removes what nothing reaches any
        more. Returns the layer ChainIDs no image uses any more, top first (dockerd's "Deleted:" lines)."""
        with self.db.tx() as c:
            self.db.delete_image(c, rec.id)
            used_chains = {r[0] for r in c.execute(
                "SELECT DISTINCT chain_id FROM image_layers WHERE chain_id IN (%s)"
                % ",".join("?" * len(rec.layers)), tuple(ch for _, ch, _ in rec.layers))} if rec.layers else set()
        if self.gc is not None:
            self.gc.note_deletion()
        self._changed()
        removed: list[str] = []
        for _, ch, _ in reversed(rec.layers):
            if ch in used_chains:
                break
            if ch not in removed:
                removed.append(ch)
        return removed

    # ---- prune ------------------------------------------------------------------------------------------------
    async def prune(self, filters: Filters | None = None) -> PruneReport:
        f = filters or Filters()
        f.validate(PRUNE_FILTERS)
        if self._prune_running:
            raise Conflict("a prune operation is already running")
        self._prune_running = True
        try:
            dangling_only = f.get_bool_or_default("dangling", True)
            until: float | None = None
            if f.contains("until"):
                vals = f.get("until")
                if len(vals) > 1:
                    raise InvalidArgument("more than one until filter specified")
                until = parse_timestamp(vals[0], time.time())
            report = PruneReport()
            async with self._mu:
                chain_sizes = {ch: size for _, ch, size in self.db.image_layer_rows()}
                images = self.db.all_images()
                parents = {r.parent for r in images if r.parent}
                top: list[ImageRecord] = []
                for rec in images:
                    if dangling_only and rec.id in parents:
                        continue
                    if not self.db.refs_of(rec.id) and rec.id in parents:
                        continue
                    if until is not None and (rec.created is None or rec.created > until):
                        continue
                    labels = rec.labels or {}
                    if not f.match_kv_list("label", labels):
                        continue
                    if f.contains("label!") and f.match_kv_list("label!", labels):
                        continue
                    top.append(rec)
                for rec in top:
                    if self.db.get_image(rec.id) is None:
                        continue
                    names = self._refs(rec.id)
                    deleted: list[DeleteItem] = []
                    if names:
                        should = not dangling_only or not any(not _is_digest_ref(n) for n in names)
                        if should:
                            for n in names:
                                try:
                                    deleted.extend(self._remove_locked(n, force=False, prune=True))
                                except (Conflict, NotFound):
                                    continue
                    else:
                        try:
                            deleted.extend(self._remove_locked(hex_of(rec.id), force=False, prune=True))
                        except (Conflict, NotFound):
                            continue
                    report.deleted.extend(deleted)
            for d in report.deleted:
                if d.deleted and d.deleted in chain_sizes:
                    report.space_reclaimed += chain_sizes[d.deleted]
            if report.deleted:
                await self._run_gc()
            self.events.publish("image", "prune", "", {"reclaimed": str(report.space_reclaimed)})
            return report
        finally:
            self._prune_running = False

    async def collect(self, blobs: set[str] | None = None) -> None:
        """Run the collector (older callers name the blobs they made; it finds them itself)."""
        await self._run_gc()

    # ---- fsck -------------------------------------------------------------------------------------------------
    def fsck(self, *, remove: bool = True) -> dict[str, list[str]]:
        """What a check of the store finds: with ``remove``, a start-up collection (everything no root reaches
        goes); without, only the blobs images reference that are missing."""
        if remove and self.gc is not None:
            return self.gc.collect(startup=True).as_dict()
        referenced = self.db.referenced_blobs()
        return {"orphan_blobs": [], "ingests": [],
                "missing_blobs": sorted(d for d in referenced if not self.content.exists(d))}

    def layers_size(self) -> int:
        rows = self.db.query("SELECT COALESCE(SUM(diff_size), 0) FROM (SELECT DISTINCT chain_id, l.diff_size "
                             "FROM image_layers il JOIN layers l ON l.digest = il.digest)")
        return int(rows[0][0])

    # ---- events -----------------------------------------------------------------------------------------------
    def _log(self, image_id: str, name: str, action: str) -> None:
        attrs: dict[str, str] = {}
        rec = self.db.get_image(image_id)
        if rec is not None and rec.labels:
            attrs.update(rec.labels)
        attrs["name"] = name
        self.events.publish("image", action, image_id, attrs)


class _DeleteConflict(Conflict):
    def __init__(self, image_id: str, message: str, *, hard: bool = False, used: bool = False) -> None:
        self.hard = hard
        self.used = used
        force = "cannot be forced" if hard else "must be forced"
        super().__init__(f"conflict: unable to delete {short_id(image_id)} ({force}) - {message}")


def _is_image_id_prefix(image_id: str, possible: str) -> bool:
    if image_id.startswith(possible):
        return True
    return image_id.split(":", 1)[-1].startswith(possible)


def _repo_name(full: str) -> str:
    """The repository part of a full reference string."""
    if "@" in full:
        return full.split("@", 1)[0]
    slash = full.rfind("/")
    colon = full.rfind(":")
    return full[:colon] if colon > slash else full


def _is_single_reference(names: list[str]) -> bool:
    if len(names) <= 1:
        return len(names) == 1
    single: str | None = None
    canonical: set[str] = set()
    for n in names:
        if _is_digest_ref(n):
            canonical.add(_repo_name(n))
        elif single is None:
            single = n
        else:
            return False
    if single is None:
        single = names[0]
    return len(canonical) == 1 and _repo_name(single) in canonical

