"""The distribution service: pull and push with dockerd's progress lines, login, search, distribution inspect.

Pull: resolve (errors before the first event become HTTP statuses), choose the platform manifest; an image whose
configuration is already here is not pulled again (dockerd prints no layer line then). Otherwise fetch and verify
the config, then download layers concurrently (bounded by max-concurrent-downloads) into resumable ingests keyed
by the blob digest, hashing the compressed bytes and verifying the DiffID on a decompressing stream that is never
stored. Two pulls that need the same blob share one download; a download nobody waits for any more is cancelled,
its partial blob kept for a later resume. Blobs first, then one metadata transaction (image, tag, repo digest: a
pull by tag leaves a repo digest that names another image where it is, as dockerd). ``pull -a`` takes the tags
in the registry's order. The pull event is dockerd's: ID the reference pulled, ``name`` the repository.

Push: a layer stored compressed is pushed as the stored blob (HEAD first, cross-repository mount from repositories
of the same registry the blob is known in, then upload). A layer stored as a plain tar (built, loaded) is
gzip-compressed (ISA-L, the daemon's level) while it is uploaded (PATCH, then PUT with the digest computed on the
way); the gzip digest is remembered per DiffID (table ``compressed_layers``), so that a later push to any registry
finds the blob (HEAD, mount) before it compresses again. Then the config and the manifest: the image's stored
bytes when it was pulled (a pulled image keeps its manifest digest, its layers go as they were pulled) or when every
layer is stored compressed, else a manifest made for the push with dockerd's media types (Docker schema 2; OCI only
when a zstd layer needs it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

from .. import reference as refs
from ..content.store import ContentStore, Writer
from ..distribution import AuthConfig, RegistryClient
from ..distribution.errors import pull_error, push_error, registry_info
from ..errors import (
    DataCorrupted,
    DockwrightError,
    Forbidden,
    ImageNotFound,
    InvalidArgument,
    NotFound,
    SystemError_,
    Unauthorized,
    Unavailable,
)
from ..filters import Filters
from ..layers import compression as lc
from ..layers.compression import Compression, compression_from_media_type, gzip_compressor
from ..layers.verify import LayerVerifier
from ..metadata.db import LayerRecord, MetadataDB
from ..oci import mediatypes as mt
from ..oci.digest import DIGEST_RE, hex_of, sha256_digest, short_id
from ..oci.platform import Platform, host_platform
from .events import EventBus
from .images import ImagesService
from ..progress import Aux, Emit, Progress, ProgressEvent, Status, run_with_events

__all__ = ["DistributionService"]

log = logging.getLogger("dockwright.distribution")

SCHEMA1_ERROR = ("Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed. "
                 "Suggest the author of {ref} to upgrade the image to the OCI Format or Docker Image manifest v2, "
                 "schema 2. More information at https://docs.docker.com/go/deprecated-image-specs/")

RETRIES = 5

# The gzip digest and size a push gave each layer stored as a plain tar (by DiffID): the next push, to this registry
# or another, finds the blob by it (HEAD, cross-repository mount) instead of compressing again. Metadata only, no
# blob: the compression is deterministic (fixed input blocks, the daemon's level), a row whose layer is gone names
# a blob that is still that layer's gzip form, and a recompression that differs (another ISA-L version or level) is
# uploaded under its own digest, which replaces the row.
SCHEMA = """
CREATE TABLE IF NOT EXISTS compressed_layers (
    diff_id TEXT NOT NULL,
    compression TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (diff_id, compression)
);
"""

_BLOCK = 1 << 20  # compression input is cut in fixed blocks (as layers.ingest): the gzip bytes depend on the layer
_PIECE = 1 << 20  # compressed bytes handed to the upload at a time (at least, but for the last piece)
_MAX_BLOCKS = 8  # input blocks one worker-thread call takes at most (for progress on very compressible layers)


def _detail(status: str, id_: str) -> Progress:
    """A per-item status line with an empty progressDetail, as dockerd's progress output writes it."""
    return Progress(status, id_, 0)


def _update_every(size: int) -> int:
    every = 512 * 1024
    if size > 0:
        every = min(every, max(1, size // 100))
    return every


@dataclass
class _Download:
    """One blob download shared by every pull that needs it."""
    task: "asyncio.Task[LayerRecord]"
    listeners: list[Callable[[ProgressEvent], None]]
    waiters: int = 0


class DistributionService:
    def __init__(self, images: ImagesService, content: ContentStore, db: MetadataDB, events: EventBus,
                 client: RegistryClient, *, max_downloads: int = 3, max_uploads: int = 5) -> None:
        self.images = images
        self.content = content
        self.db = db
        self.events = events
        self.client = client
        self._down_sem = asyncio.Semaphore(max(1, max_downloads))
        self._up_sem = asyncio.Semaphore(max(1, max_uploads))
        self._inflight: dict[str, _Download] = {}
        db.executescript(SCHEMA)

    # ================================================================================================ pull ===
    async def pull(self, from_image: str, tag: str = "", *, platform: str = "",
                   auth: AuthConfig | None = None) -> AsyncIterator[ProgressEvent]:
        """``POST /images/create?fromImage=``. Raises before the first event for a bad name or an unknown image."""
        ref = refs.parse_pull_reference(from_image, tag)
        if ref.familiar_name == "scratch":
            raise Forbidden("'scratch' is a reserved name")
        plat = Platform.parse_specifier(platform) if platform else None
        repo = self.client.repository(ref, auth)
        if ref.tag or ref.digest:
            gen = self._pull_ref(repo, ref, plat)
            first = await _first(gen)  # resolve now: an unknown image is an HTTP error, not a stream line
            return _chain(first, gen)
        # no tag: every tag of the repository (dockerd's quirk)
        try:
            tags = await repo.list_tags()
        except DockwrightError as exc:
            raise pull_error(ref, exc) from exc
        if not tags:
            raise NotFound(f"manifest for {ref.familiar()} not found: no tags")
        return self._pull_all(repo, ref, tags, plat)

    async def _pull_all(self, repo: Any, ref: refs.Reference, tags: list[str],
                        plat: Platform | None) -> AsyncIterator[ProgressEvent]:
        """``pull -a``: every tag in the order the registry lists them (as dockerd), one event for the whole
        repository at the end."""
        updated = False
        for t in tags:
            tref = ref.with_tag(t)
            async for ev in self._pull_ref(repo, tref, plat, final=False):
                if isinstance(ev, _Updated):
                    updated = updated or ev.updated
                    continue
                yield ev
        self._pull_event(ref)
        yield Status(("Status: Downloaded newer image for " if updated else "Status: Image is up to date for ")
                     + ref.familiar_name)

    def _pull_event(self, ref: refs.Reference) -> None:
        """dockerd's pull event: the ID is the reference pulled (``busybox:latest``, ``busybox@sha256:…``, or the
        repository for ``pull -a``), ``name`` the repository (``busybox``), with the labels of the image that
        reference names now."""
        attrs: dict[str, str] = {}
        try:
            rec = self.images.resolve(ref.familiar())
        except DockwrightError:
            rec = None
        if rec is not None and rec.labels:
            attrs.update(rec.labels)
        attrs["name"] = ref.familiar_name
        self.events.publish("image", "pull", ref.familiar(), attrs)

    async def _pull_ref(self, repo: Any, ref: refs.Reference, plat: Platform | None,
                        final: bool = True) -> AsyncIterator[ProgressEvent]:
        reference = ref.digest or ref.tag or "latest"
        try:
            desc, raw = await repo.resolve(reference)
        except DockwrightError as exc:
            raise pull_error(ref, exc) from exc
        # dockerd: "latest: Pulling from library/busybox", "docker.io/library/busybox@sha256:…: Pulling from …"
        yield Status(f"Pulling from {ref.path}", id=str(ref) if ref.digest else reference)
        # the pull's lease: from before its first blob until its image is written (or it fails)
        async with self.images.operation("pull") as lease:
            async for ev in self._pull_resolved(repo, ref, plat, final, desc, raw, lease):
                yield ev

    async def _pull_resolved(self, repo: Any, ref: refs.Reference, plat: Platform | None, final: bool,
                             desc: Any, raw: bytes, lease: Any) -> AsyncIterator[ProgressEvent]:
        index_raw: bytes | None = None
        index_digest: str | None = None
        manifest_raw, manifest_digest, media_type = raw, desc.digest, desc.media_type
        if media_type in (mt.DOCKER_MANIFEST_V1, mt.DOCKER_MANIFEST_V1_SIGNED) or _schema_version(raw) == 1:
            raise InvalidArgument(SCHEMA1_ERROR.format(ref=ref.familiar()))
        if mt.is_index(media_type) or (not media_type and b'"manifests"' in raw):
            index_raw, index_digest = raw, desc.digest
            want = plat or host_platform()
            chosen = _choose_manifest(json.loads(raw), want)
            if chosen is None:
                raise NotFound(f"no matching manifest for {want} in the manifest list entries")
            manifest_digest = chosen.get("digest") if isinstance(chosen, dict) else None
            if not isinstance(manifest_digest, str):
                raise InvalidArgument(f"invalid manifest list {desc.digest}: an entry has no digest")
            manifest_raw = await repo.fetch_manifest(manifest_digest)
            media_type = chosen.get("mediaType") or _parse_manifest(manifest_raw, manifest_digest).get(
                "mediaType", mt.OCI_MANIFEST)
        manifest = _parse_manifest(manifest_raw, manifest_digest)
        if manifest.get("schemaVersion") == 1:
            raise InvalidArgument(SCHEMA1_ERROR.format(ref=ref.familiar()))
        if not media_type:
            media_type = manifest.get("mediaType") or mt.OCI_MANIFEST
        config_desc = manifest["config"]
        layers = manifest.get("layers") or []
        config_digest = config_desc["digest"]
        # dockerd: an image whose configuration is already here is not pulled again, not a layer line printed
        local = await self._local_image(config_digest, lease, [manifest_digest, *([index_digest] if index_digest
                                                                                 else [])])
        if local is None:
            # every blob of the image is leased before the first is fetched or found "Already exists"
            await asyncio.to_thread(lease.add_many, "content", [manifest_digest, config_digest,
                                                                *(lay["digest"] for lay in layers),
                                                                *([index_digest] if index_digest else [])])
            await asyncio.to_thread(lease.add_many, "ingest", ["pull-" + hex_of(lay["digest"]) for lay in layers])
            config_raw = b"".join([c async for c in repo.fetch_blob(config_digest, size=config_desc.get("size"))])
            if sha256_digest(config_raw) != config_digest:
                raise DataCorrupted(f"image config verification failed for digest {config_digest}")
        else:
            config_raw = local[0]
        config = json.loads(config_raw)
        if plat is not None and index_raw is None:
            actual = Platform(config.get("os", ""), config.get("architecture", ""), config.get("variant", ""))
            if not plat.matches(actual):
                raise NotFound(f"image with reference {ref.familiar()} was found but does not match the specified "
                               f"platform: wanted {plat}, actual: {actual}")
        repo_name = refs.Reference(ref.domain, ref.path)
        if local is not None:
            recs = local[1]
            # the registry's blobs that are this image's own (or the gzip form a push of it made): mountable
            sources = [(lay["digest"], ref.domain, ref.path) for lay, r in zip(layers, recs)
                       if lay["digest"] in (r.digest, (self._compressed(r.diff_id) or ("",))[0])]
        else:
            recs = []
            async for ev in self._pull_layers(repo, ref, config, layers, recs):
                yield ev
            sources = [(r.digest, ref.domain, ref.path) for r in recs]
        # the manifest too: a pulled image is pushed with its manifest as it is, blobs as the registry has them
        sources.append((manifest_digest, ref.domain, ref.path))
        target_digest = index_digest or manifest_digest
        digest_ref = repo_name.with_digest(target_digest)
        previous = self.db.get_ref(str(ref)) if ref.tag and not ref.digest else self.db.get_ref(str(digest_ref))
        digests = [digest_ref]
        if not ref.digest:
            # dockerd's addDigestReference: a pull by tag never takes a repository digest from another image (the
            # image of another platform of the same index keeps it); a pull by digest does (AddDigest, forced)
            holder = self.db.get_ref(str(digest_ref))
            if holder is not None and holder != config_digest and self.db.get_image(holder) is not None:
                digests = []
        extra = {index_digest} if index_digest else set()
        if index_raw is not None:
            await asyncio.to_thread(self.content.put, index_raw, index_digest)
        image_id, _ = await self.images.commit_image(
            config_raw, recs, manifest_media_type=media_type, manifest_raw=manifest_raw, extra_blobs=extra,
            tags=[ref] if ref.tag and not ref.digest else [], digests=digests, sources=sources)
        updated = previous != image_id
        if final:
            self._pull_event(ref)
        yield Status(f"Digest: {target_digest}")
        if final:
            yield Status(("Status: Downloaded newer image for " if updated else "Status: Image is up to date for ")
                         + ref.familiar())
        else:
            yield _Updated(updated)

    async def _local_image(self, config_digest: str, lease: Any,
                           blobs: list[str]) -> tuple[bytes, list[LayerRecord]] | None:
        """The configuration and layer records of the image ``config_digest`` when it is here, whole, leased (with
        ``blobs``, the pulled manifest and index) so that it stays until the pull has written its names."""
        rec = self.db.get_image(config_digest, with_layers=True)
        if rec is None:
            return None
        await asyncio.to_thread(lease.add_many, "content", [config_digest, *(d for _, _, d in rec.layers), *blobs])
        recs: list[LayerRecord] = []
        for _, _, digest in rec.layers:
            lay = self.db.get_layer(digest)
            if lay is None or not self.content.exists(digest):
                return None
            recs.append(lay)
        if self.db.get_image(config_digest) is None or not self.content.exists(config_digest):
            return None  # removed meanwhile: pulled as any other image
        return await asyncio.to_thread(self.content.read, config_digest), recs

    async def _pull_layers(self, repo: Any, ref: refs.Reference, config: dict[str, Any],
                           layers: list[dict[str, Any]], out: list[LayerRecord]) -> AsyncIterator[ProgressEvent]:
        """Download the layers the store does not have (concurrently), with dockerd's per-layer lines; ``out``
        receives every layer's record, in order."""
        rootfs = config.get("rootfs") if isinstance(config, dict) else None
        diff_ids: list[str] = list((rootfs if isinstance(rootfs, dict) else {}).get("diff_ids") or [])
        if len(diff_ids) != len(layers):
            raise DataCorrupted(f"layers from manifest don't match image configuration: {len(layers)} layers, "
                                f"{len(diff_ids)} diff IDs")
        results: list[LayerRecord | None] = [None] * len(layers)
        todo: list[int] = []
        for i, lay in enumerate(layers):
            digest = lay["digest"]
            known = self.db.get_layer(digest)
            if known is not None and self.content.exists(digest) and known.diff_id == diff_ids[i]:
                results[i] = known
                yield _detail("Already exists", short_id(digest))
            else:
                todo.append(i)
                yield _detail("Pulling fs layer", short_id(digest))

        completed = [r is not None for r in results]
        next_complete = 0

        async def one(i: int, emit: Emit) -> None:
            lay = layers[i]
            rec = await self._shared_download(repo, ref, lay["digest"], int(lay.get("size") or 0),
                                              lay.get("mediaType") or mt.DOCKER_LAYER, emit, diff_ids[i])
            if rec.diff_id != diff_ids[i]:
                raise DataCorrupted(f"layers from manifest don't match image configuration: layer {lay['digest']} "
                                    f"has diff ID {rec.diff_id}, the configuration says {diff_ids[i]}")
            results[i] = rec
            completed[i] = True

        async def run_all(emit: Emit) -> None:
            async with asyncio.TaskGroup() as tg:
                for i in todo:
                    tg.create_task(one(i, emit))

        async for ev in run_with_events(run_all):
            yield ev
            while next_complete < len(layers) and completed[next_complete]:
                if next_complete in todo:
                    yield _detail("Pull complete", short_id(layers[next_complete]["digest"]))
                next_complete += 1
        while next_complete < len(layers):
            if next_complete in todo:
                yield _detail("Pull complete", short_id(layers[next_complete]["digest"]))
            next_complete += 1
        out.extend(r for r in results if r is not None)

    async def _shared_download(self, repo: Any, ref: refs.Reference, digest: str, size: int, media_type: str,
                               emit: Callable[[ProgressEvent], None], diff_id: str = "") -> LayerRecord:
        d = self._inflight.get(digest)
        if d is None:
            listeners: list[Callable[[ProgressEvent], None]] = []

            def broadcast(ev: ProgressEvent) -> None:
                for fn in list(listeners):
                    fn(ev)

            task = asyncio.ensure_future(self._download(repo, ref, digest, size, media_type, broadcast, diff_id))
            d = _Download(task, listeners)
            self._inflight[digest] = d
            task.add_done_callback(lambda _t, dg=digest: self._inflight.pop(dg, None))
        d.listeners.append(emit)
        d.waiters += 1
        try:
            return await asyncio.shield(d.task)
        except asyncio.CancelledError:
            d.waiters -= 1
            if d.waiters <= 0 and not d.task.done():
                d.task.cancel()
            raise
        finally:
            if emit in d.listeners:
                d.listeners.remove(emit)

    async def _download(self, repo: Any, ref: refs.Reference, digest: str, size: int, media_type: str,
                        emit: Callable[[ProgressEvent], None], expected_diff_id: str = "") -> LayerRecord:
        short = short_id(digest)
        if self._down_sem.locked():
            emit(_detail("Waiting", short))
        async with self._down_sem:
            writer: Writer = await asyncio.to_thread(self.content.writer, "pull-" + hex_of(digest), resume=True)
            verifier = LayerVerifier()
            try:
                if size and writer.offset > size:
                    await asyncio.to_thread(writer.truncate, 0)
                if writer.offset:
                    await asyncio.to_thread(_replay_prefix, self.content, writer, verifier)
                    log.info("resuming download of %s at %d of %d bytes", digest, writer.offset, size)
                attempt = 0
                every = _update_every(size)
                while True:
                    last = writer.offset
                    try:
                        buf: list[bytes] = []
                        pending = 0
                        async for chunk in repo.fetch_blob(digest, offset=writer.offset, size=size or None):
                            buf.append(chunk)
                            pending += len(chunk)
                            if pending >= 1 << 20:
                                data = b"".join(buf)
                                buf.clear()
                                pending = 0
                                await asyncio.to_thread(_write_verify, writer, verifier, data)
                            if writer.offset + pending - last >= every:
                                last = writer.offset + pending
                                emit(Progress("Downloading", short, writer.offset + pending, size or None))
                        if buf:
                            await asyncio.to_thread(_write_verify, writer, verifier, b"".join(buf))
                        break
                    except (Unavailable, OSError, asyncio.TimeoutError) as exc:
                        attempt += 1
                        if attempt > RETRIES:
                            raise Unavailable(f"failed to download {digest} after {RETRIES} retries: {exc}") from exc
                        delay = min(5, 0.5 * 2 ** (attempt - 1))
                        emit(_detail(f"Retrying in {int(delay) if delay >= 1 else 1} second"
                                     f"{'s' if delay > 1 else ''}", short))
                        log.warning("download of %s interrupted at %d bytes (%s); retrying", digest, writer.offset,
                                    exc)
                        await asyncio.sleep(delay)
                emit(Progress("Downloading", short, writer.offset, size or None))
                emit(_detail("Verifying Checksum", short))
                diff_id, summary = await asyncio.to_thread(verifier.finish)
                if expected_diff_id and diff_id != expected_diff_id:
                    writer.abort()  # never committed: a blob whose content is not what the image says
                    raise _Mismatch(f"layers from manifest don't match image configuration: layer {digest} has "
                                    f"diff ID {diff_id}, the configuration says {expected_diff_id}")
                await asyncio.to_thread(writer.commit, digest, size or None)
            except _Mismatch as exc:
                raise DataCorrupted(str(exc)) from None
            except (asyncio.CancelledError, Unavailable, OSError, asyncio.TimeoutError):
                writer.close()  # interrupted: keep the partial blob, the next pull resumes it
                raise
            except DataCorrupted as exc:
                writer.abort()
                raise DataCorrupted(f"filesystem layer verification failed for digest {digest}: {exc}") from exc
            except BaseException:
                writer.abort()  # failed (a redirect loop, a refusal…): nothing to resume
                raise
            emit(_detail("Download complete", short))
            return LayerRecord(digest, diff_id, media_type, size or writer.offset, summary.diff_size,
                               summary.tar_size)

    # ================================================================================================ push ===
    async def push(self, name: str, tag: str = "", *, auth: AuthConfig | None = None,
                   platform: Platform | None = None) -> AsyncIterator[ProgressEvent]:
        ref = refs.parse_normalized_named(name)
        if ref.digest:
            raise InvalidArgument("cannot push a digest reference")
        if tag:
            ref = ref.with_tag(tag)
        repo_name = refs.Reference(ref.domain, ref.path)
        prefix = repo_name.name + ":"
        tagged = [refs.parse_normalized_named(n) for n, _, kind in self.db.refs_with_prefix(prefix)
                  if kind == "tag" and n[len(prefix):].find("/") < 0]
        # as dockerd: the stream starts ("The push refers to repository […]"), then the error comes in-band
        if not tagged:  # no name of this repository at all
            return self._push_refused(repo_name, ImageNotFound(
                ref.familiar(), f"An image does not exist locally with the tag: {repo_name.familiar_name}"))
        targets = [ref] if ref.tag else tagged
        if ref.tag and self.db.get_ref(str(ref)) is None:  # other tags of it exist, not this one
            return self._push_refused(repo_name, ImageNotFound(ref.familiar(),
                                                               f"tag does not exist: {ref.familiar()}"))
        repo = self.client.repository(repo_name, auth, push=True)
        return self._push_all(repo, repo_name, targets)

    async def _push_refused(self, repo_name: refs.Reference, error: Exception) -> AsyncIterator[ProgressEvent]:
        yield Status(f"The push refers to repository [{repo_name.name}]")
        raise error

    async def _push_all(self, repo: Any, repo_name: refs.Reference,
                        targets: list[refs.Reference]) -> AsyncIterator[ProgressEvent]:
        yield Status(f"The push refers to repository [{repo_name.name}]")
        for t in targets:
            async for ev in self._push_one(repo, repo_name, t):
                yield ev

    async def _push_one(self, repo: Any, repo_name: refs.Reference, ref: refs.Reference) -> AsyncIterator[ProgressEvent]:
        async with self.images.operation("push") as lease:
            async for ev in self._push_leased(repo, repo_name, ref, lease):
                yield ev

    async def _push_leased(self, repo: Any, repo_name: refs.Reference, ref: refs.Reference,
                           lease: Any) -> AsyncIterator[ProgressEvent]:
        image_id = self.db.get_ref(str(ref))
        rec = self.db.get_image(image_id or "", with_layers=True)
        if rec is None:
            raise ImageNotFound(ref.familiar())
        # the image's blobs are leased before they are read: a removal meanwhile leaves them until the push ends
        await asyncio.to_thread(lease.add_many, "content",
                                [rec.id, rec.target_digest, *(digest for _, _, digest in rec.layers)])
        if self.db.get_image(rec.id) is None or not all(
                self.content.exists(d) for d in [rec.id, rec.target_digest, *(d for _, _, d in rec.layers)]):
            raise ImageNotFound(ref.familiar(), f"An image does not exist locally with the tag: {ref.familiar()}")
        manifest_raw = await asyncio.to_thread(self.content.read, rec.target_digest)
        manifest = json.loads(manifest_raw)
        layer_descs: list[dict[str, Any]] = manifest.get("layers") or []
        kinds = [_layer_compression(str(d.get("mediaType") or "")) for d in layer_descs]
        # a layer stored as a plain tar (built, loaded) is sent gzip-compressed, under a manifest made for the push
        # (dockerd's: Docker schema 2, unless a zstd layer needs OCI's); the stored manifest goes byte for byte when
        # every layer is stored compressed, or when it was pulled (its blobs as they are in the registry)
        remake = Compression.NONE in kinds and not self._was_pulled(rec.target_digest)
        if remake and len(rec.layers) != len(layer_descs):
            raise DataCorrupted(f"image {rec.id} has {len(rec.layers)} layers, its manifest {len(layer_descs)}")
        oci = remake and any(k not in (Compression.NONE, Compression.GZIP) for k in kinds)
        order = list(reversed(range(len(layer_descs))))  # top layer first, as dockerd lists them
        ids = {i: short_id(rec.layers[i][0]) if i < len(rec.layers) else short_id(layer_descs[i]["digest"])
               for i in order}
        for i in order:
            yield _detail("Preparing", ids[i])
        sources: list[tuple[str, str, str]] = []
        pushed: list[dict[str, Any] | None] = [None] * len(layer_descs)
        shared: dict[str, asyncio.Future[dict[str, Any]]] = {}  # one transfer per blob, however often it is listed

        async def exists_or_mount(digest: str, sid: str, emit: Emit) -> bool:
            if await repo.blob_exists(digest) is not None:
                emit(_detail("Layer already exists", sid))
                return True
            for other in self.db.blob_sources(digest, repo_name.domain):
                if other == repo_name.path:
                    continue
                try:
                    if await repo.mount_blob(digest, other):
                        emit(_detail(f"Mounted from {other}", sid))
                        return True
                except DockwrightError:
                    continue
            return False

        async def push_stored(i: int, sid: str, emit: Emit) -> dict[str, Any]:
            desc = layer_descs[i]
            digest, size = desc["digest"], int(desc["size"])
            if not await exists_or_mount(digest, sid, emit):
                every = _update_every(size)
                state = {"last": 0}

                def progress(n: int) -> None:
                    if n - state["last"] >= every or n == size:
                        state["last"] = n
                        emit(Progress("Pushing", sid, n, size))

                await repo.push_blob(digest, size, self.images.blob_chunks(digest), progress=progress)
                emit(_detail("Pushed", sid))
            sources.append((digest, repo_name.domain, repo_name.path))
            return _remade_descriptor(desc, kinds[i], oci) if remake else desc

        async def push_plain(i: int, sid: str, emit: Emit) -> dict[str, Any]:
            desc = layer_descs[i]
            diff_id = rec.layers[i][0]
            known = self._compressed(diff_id)
            if known is not None and await exists_or_mount(known[0], sid, emit):
                digest, size = known
            else:
                lay = self.db.get_layer(desc["digest"])
                total = lay.diff_size if lay is not None else int(desc.get("size") or 0)
                digest, size = await self._push_gzip(repo, desc["digest"], sid, total, emit)
                await asyncio.to_thread(self._remember_compressed, diff_id, digest, size)
                emit(_detail("Pushed", sid))
            sources.append((digest, repo_name.domain, repo_name.path))
            return {"mediaType": lc.OCI_LAYER_GZIP if oci else lc.DOCKER_LAYER_GZIP, "size": size, "digest": digest}

        async def one(i: int, emit: Emit) -> None:
            sid = ids[i]
            key = layer_descs[i]["digest"]
            fut = shared.get(key)
            if fut is not None:
                pushed[i] = await asyncio.shield(fut)
                return
            fut = shared[key] = asyncio.get_running_loop().create_future()
            try:
                if self._up_sem.locked():
                    emit(_detail("Waiting", sid))
                async with self._up_sem:
                    if remake and kinds[i] is Compression.NONE:
                        pushed[i] = await push_plain(i, sid, emit)
                    else:
                        pushed[i] = await push_stored(i, sid, emit)
            except asyncio.CancelledError:
                fut.cancel()
                raise
            except Exception as exc:
                fut.set_exception(exc)
                fut.exception()  # retrieved here: a twin that waits raises it too
                raise
            fut.set_result(pushed[i])  # type: ignore[arg-type]

        async def run_all(emit: Emit) -> None:
            async with asyncio.TaskGroup() as tg:
                for i in order:
                    tg.create_task(one(i, emit))

        try:
            try:
                async for ev in run_with_events(run_all):
                    yield ev
            except (DockwrightError, BaseExceptionGroup) as exc:
                first = _first_error(exc)
                if isinstance(first, DockwrightError):
                    raise push_error(ref, first) from first
                raise
            cfg = manifest["config"]
            if await repo.blob_exists(cfg["digest"]) is None:
                await repo.push_blob(cfg["digest"], int(cfg["size"]), self.images.blob_chunks(cfg["digest"]))
            if remake:
                media_type = mt.OCI_MANIFEST if oci else mt.DOCKER_MANIFEST
                push_raw = json.dumps({
                    "schemaVersion": 2,
                    "mediaType": media_type,
                    "config": {"mediaType": mt.OCI_CONFIG if oci else mt.DOCKER_CONFIG, "size": int(cfg["size"]),
                               "digest": cfg["digest"]},
                    "layers": pushed,
                }, indent=3).encode()  # Go's json.MarshalIndent(m, "", "   "), as dockerd writes it
            else:
                media_type = manifest.get("mediaType") or rec.target_media_type
                push_raw = manifest_raw
            digest = await repo.put_manifest(ref.tag or "latest", media_type, push_raw)
        finally:
            if sources:
                with self.db.tx() as c:
                    for s in sources:
                        self.db.add_blob_source(c, *s)
        await self.images.add_digest_ref(rec.id, refs.Reference(ref.domain, ref.path).with_digest(digest))
        yield Status(f"{ref.tag}: digest: {digest} size: {len(push_raw)}")
        yield Aux({"Tag": ref.tag, "Digest": digest, "Size": len(push_raw)})
        attrs = dict(rec.labels or {})
        attrs["name"] = ref.familiar()
        self.events.publish("image", "push", rec.id, attrs)

    async def _push_gzip(self, repo: Any, blob: str, sid: str, total: int, emit: Emit) -> tuple[str, int]:
        """Upload the gzip form of the stored plain layer ``blob``, compressed (ISA-L, the daemon's level) while it
        is sent: the next piece is made in a worker thread while the last one is on the wire. Nothing is written
        to disk; the digest is known at the end, for the upload's closing PUT. ``Pushing`` counts the tar's bytes
        read against ``total`` (the layer's size), as dockerd's progress does."""
        src = await asyncio.to_thread(_GzipSource, self.content, blob, self.images.compression_level)
        every = _update_every(total)

        async def chunks() -> AsyncIterator[bytes]:
            pending: asyncio.Future[tuple[bytes, int, bool]] | None = asyncio.ensure_future(
                asyncio.to_thread(src.next))
            last = 0
            try:
                while pending is not None:
                    data, read, done = await pending
                    pending = None if done else asyncio.ensure_future(asyncio.to_thread(src.next))
                    if read - last >= every or (done and read != last):
                        last = read
                        emit(Progress("Pushing", sid, read, total))
                    if data:
                        yield data
            finally:  # left early (a failed upload): the piece being made is dropped once made, then the file closed
                if pending is not None and not pending.done():
                    pending.add_done_callback(lambda f: (f.cancelled() or f.exception(), src.close()))
                else:
                    if pending is not None and not pending.cancelled():
                        pending.exception()
                    src.close()

        return await repo.push_blob_stream(chunks(), src.result)

    def _was_pulled(self, manifest_digest: str) -> bool:
        """Whether a pull brought this manifest (it is then known in a repository of some registry)."""
        return bool(self.db.query("SELECT 1 FROM blob_sources WHERE digest=? LIMIT 1", (manifest_digest,)))

    def _compressed(self, diff_id: str) -> tuple[str, int] | None:
        """The digest and size of the gzip blob a push made of the plain layer ``diff_id``, if one did."""
        rows = self.db.query("SELECT digest, size FROM compressed_layers WHERE diff_id=? AND compression='gzip'",
                             (diff_id,))
        return (str(rows[0][0]), int(rows[0][1])) if rows else None

    def _remember_compressed(self, diff_id: str, digest: str, size: int) -> None:
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO compressed_layers(diff_id, compression, digest, size) "
                      "VALUES (?, 'gzip', ?, ?)", (diff_id, digest, size))

    # ====================================================================================== other endpoints ===
    async def login(self, auth: AuthConfig) -> tuple[str, str]:
        """``POST /auth``. Refused credentials are a 401 (dockerd answers a basic-auth refusal with a 500; the
        message is the same)."""
        try:
            return await self.client.login(auth)
        except SystemError_ as exc:
            info = registry_info(exc)
            if info is not None and info.status == 401:
                raise Unauthorized(str(exc)) from exc
            raise

    async def search(self, term: str, *, limit: int = 25, filters: Filters | None = None,
                     auth: AuthConfig | None = None) -> list[dict[str, Any]]:
        f = filters or Filters()
        f.validate(("is-automated", "is-official", "stars"))
        stars = 0
        for v in f.get("stars"):
            try:
                stars = max(stars, int(v))
            except ValueError as exc:
                raise InvalidArgument(f"invalid filter 'stars={v}'") from exc
        official: bool | None = None
        if f.contains("is-official"):
            official = f.get_bool_or_default("is-official", False)
        automated: bool | None = None
        if f.contains("is-automated"):
            automated = f.get_bool_or_default("is-automated", False)
        if limit and not 1 <= limit <= 100:
            raise InvalidArgument(f"limit {limit} is outside the range of [1, 100]")
        results = await self.client.search(term, limit or 25, auth)
        out = []
        for r in results:
            if r.get("star_count", 0) < stars:
                continue
            if official is not None and bool(r.get("is_official")) != official:
                continue
            if automated is not None and (automated or False) != False:  # noqa: E712 - deprecated: true matches nothing
                continue
            out.append({"star_count": int(r.get("star_count", 0)), "is_official": bool(r.get("is_official")),
                        "name": r.get("name", ""), "is_automated": False,
                        "description": r.get("description", "")})
        return out[: limit or 25]

    async def inspect(self, name: str, auth: AuthConfig | None = None) -> dict[str, Any]:
        ref = refs.parse_normalized_named(name)
        ref = refs.tag_name_only(ref)
        repo = self.client.repository(ref, auth)
        try:
            desc, raw = await repo.resolve(ref.digest or ref.tag or "latest")
        except DockwrightError as exc:
            raise pull_error(ref, exc) from exc
        platforms: list[dict[str, Any]] = []
        data = json.loads(raw)
        if mt.is_index(desc.media_type) or "manifests" in data:
            for m in data.get("manifests") or []:
                if m.get("platform"):
                    platforms.append(Platform.from_json(m["platform"]).to_json())
        else:
            cfg = data.get("config") or {}
            blob = b"".join([c async for c in repo.fetch_blob(cfg["digest"], size=cfg.get("size"))])
            c = json.loads(blob)
            platforms.append(Platform(c.get("os", ""), c.get("architecture", ""), c.get("variant", ""),
                                      c.get("os.version", "")).to_json())
        return {"Descriptor": desc.to_json(), "Platforms": platforms}


@dataclass(frozen=True)
class _Updated:
    updated: bool


class _GzipSource:
    """The gzip form of a stored plain-tar layer, made piece by piece (blocking: each :meth:`next` runs in a
    worker thread, one at a time). The plain bytes are checked against the blob's digest on the way: a damaged
    blob fails the upload before its closing PUT."""

    def __init__(self, content: ContentStore, blob: str, level: int) -> None:
        self.blob = blob
        self._f = content.open(blob)
        self._comp = gzip_compressor(level)
        self._plain = hashlib.sha256()
        self._hash = hashlib.sha256()
        self._lock = threading.Lock()
        self.size = 0  # compressed bytes made
        self.read = 0  # plain bytes read
        self._done = False
        self._closed = False

    def next(self) -> tuple[bytes, int, bool]:
        """The next compressed piece, the plain bytes read so far, and whether the stream has ended."""
        with self._lock:
            if self._closed or self._done:
                return b"", self.read, True
            out: list[bytes] = []
            n = 0
            for _ in range(_MAX_BLOCKS):
                block = self._f.read(_BLOCK)  # a whole block but at the end (a buffered regular file)
                if not block:
                    tail = self._comp.flush()
                    if tail:
                        out.append(tail)
                    self._done = True
                    break
                self.read += len(block)
                self._plain.update(block)
                piece = self._comp.compress(block)
                if piece:
                    out.append(piece)
                    n += len(piece)
                    if n >= _PIECE:
                        break
            data = b"".join(out)
            if self._done and "sha256:" + self._plain.hexdigest() != self.blob:
                raise DataCorrupted(f"layer {self.blob} does not match its digest: the stored blob is damaged")
            self._hash.update(data)
            self.size += len(data)
            return data, self.read, self._done

    def result(self) -> tuple[str, int]:
        """The compressed blob's digest and size (once :meth:`next` said the end)."""
        if not self._done:
            raise DataCorrupted(f"the upload of layer {self.blob} ended before the layer")
        return "sha256:" + self._hash.hexdigest(), self.size

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._f.close()


def _layer_compression(media_type: str) -> Compression | None:
    """The compression a layer media type says (None: not a layer type this daemon knows)."""
    try:
        return compression_from_media_type(media_type)
    except InvalidArgument:
        return None


def _remade_descriptor(desc: dict[str, Any], kind: Compression | None, oci: bool) -> dict[str, Any]:
    """A stored compressed layer's descriptor in a manifest made for a push: dockerd's media types (Docker's, or
    OCI's when the manifest is OCI), its digest, size, URLs and annotations unchanged."""
    media_type = str(desc.get("mediaType") or "")
    foreign = "foreign" in media_type or "nondistributable" in media_type
    if kind is Compression.GZIP:
        if oci:
            media_type = lc.OCI_LAYER_NONDISTRIBUTABLE_GZIP if foreign else lc.OCI_LAYER_GZIP
        else:
            media_type = lc.DOCKER_LAYER_FOREIGN_GZIP if foreign else lc.DOCKER_LAYER_GZIP
    elif kind is Compression.ZSTD:
        media_type = lc.OCI_LAYER_NONDISTRIBUTABLE_ZSTD if foreign else lc.OCI_LAYER_ZSTD
    out: dict[str, Any] = {"mediaType": media_type, "size": int(desc["size"]), "digest": desc["digest"]}
    for key in ("urls", "annotations"):
        if desc.get(key):
            out[key] = desc[key]
    return out


def _first_error(exc: BaseException) -> BaseException:
    """The first error inside an ExceptionGroup (what a TaskGroup raises), or ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class _Mismatch(Exception):
    """A downloaded layer whose DiffID is not the configuration's (raised before its blob is committed)."""


def _parse_manifest(raw: bytes, digest: str) -> dict[str, Any]:
    """An image manifest's JSON, checked enough that no raw KeyError or TypeError reaches a client."""
    try:
        m = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid manifest {digest}: {exc}") from None
    if not isinstance(m, dict):
        raise InvalidArgument(f"invalid manifest {digest}: not a JSON object")
    if m.get("schemaVersion") == 1:
        return m
    cfg = m.get("config")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("digest"), str):
        raise InvalidArgument(f"invalid manifest {digest}: no config descriptor")
    layers = m.get("layers")
    if layers is not None and (not isinstance(layers, list)
                               or not all(isinstance(x, dict) and isinstance(x.get("digest"), str) for x in layers)):
        raise InvalidArgument(f"invalid manifest {digest}: bad layer descriptors")
    for d in [cfg["digest"], *(x["digest"] for x in layers or [])]:
        if not DIGEST_RE.match(d):
            raise InvalidArgument(f"invalid manifest {digest}: invalid digest {d!r}")
    return m


def _schema_version(raw: bytes) -> int | None:
    try:
        v = json.loads(raw).get("schemaVersion")
    except (ValueError, AttributeError):
        return None
    return v if isinstance(v, int) else None


def _choose_manifest(index: dict[str, Any], want: Platform) -> dict[str, Any] | None:
    best = None
    for m in index.get("manifests") or []:
        p = m.get("platform")
        if not p:
            continue
        plat = Platform.from_json(p)
        if want.matches(plat):
            if want.variant and plat.variant == want.variant:
                return m  # type: ignore[no-any-return]
            if best is None:
                best = m
    return best


def _write_verify(writer: Writer, verifier: LayerVerifier, data: bytes) -> None:
    writer.write(data)
    verifier.feed(data)


def _replay_prefix(content: ContentStore, writer: Writer, verifier: LayerVerifier) -> None:
    """Feed the already-downloaded prefix of a resumed blob through the verifier (the writer re-hashed it)."""
    path = content.ingest_dir / writer.ref / "data"
    remaining = writer.offset
    with open(path, "rb") as f:
        while remaining > 0:
            chunk = f.read(min(1 << 20, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            verifier.feed(chunk)




async def _first(gen: AsyncIterator[ProgressEvent]) -> ProgressEvent | None:
    try:
        return await gen.__anext__()
    except StopAsyncIteration:
        return None


async def _chain(first: ProgressEvent | None, gen: AsyncIterator[ProgressEvent]) -> AsyncIterator[ProgressEvent]:
    if first is not None:
        yield first
    async for ev in gen:
        yield ev
