"""Push with dockerd's progress lines.

A layer stored compressed is pushed as the stored blob (HEAD first, cross-repository mount from repositories of the
same registry the blob is known in, then upload). A layer stored as a plain tar (built, loaded) is gzip-compressed
(ISA-L, the daemon's level) while it is uploaded (PATCH, then PUT with the digest computed on the way); the gzip
digest is remembered per DiffID (``metadata.distribution``), so that a later push to any registry finds the blob
(HEAD, mount) before it compresses again. Then the config and the manifest: the image's stored bytes when it was
pulled (a pulled image keeps its manifest digest, its layers go as they were pulled) or when every layer is stored
compressed, else a manifest made for the push with dockerd's media types (Docker schema 2; OCI only when a zstd
layer needs it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

from .. import reference as refs
from ..content.store import ContentStore
from ..distribution import AuthConfig, RegistryClient
from ..distribution.errors import push_error
from ..errors import DataCorrupted, DockwrightError, ImageNotFound, InvalidArgument
from ..layers import mediatypes as lc
from ..layers.compression import Compression, gzip_compressor
from ..layers.mediatypes import compression_from_media_type
from ..metadata.db import MetadataDB
from ..metadata.distribution import compressed_layer, remember_compressed_layer, was_pulled
from ..oci import mediatypes as mt
from ..oci.digest import short_id
from ..oci.platform import Platform
from ..progress import Aux, Emit, Progress, ProgressEvent, Status, detail, run_with_events, update_every
from .events import EventBus
from .images.service import ImagesService
from .registry_service import RegistryService

__all__ = ["PushService"]

_BLOCK = 1 << 20  # compression input is cut in fixed blocks (as layers.ingest): the gzip bytes depend on the layer
_PIECE = 1 << 20  # compressed bytes handed to the upload at a time (at least, but for the last piece)
_MAX_BLOCKS = 8  # input blocks one worker-thread call takes at most (for progress on very compressible layers)


class PushService(RegistryService):
    """Pushes images to registries (the distribution service's push side)."""

    def __init__(self, images: ImagesService, content: ContentStore, db: MetadataDB, events: EventBus,
                 client: RegistryClient, *, max_uploads: int = 5) -> None:
        super().__init__(images, content, db, events, client)
        self._up_sem = asyncio.Semaphore(max(1, max_uploads))

    async def push(self, name: str, tag: str = "", *, auth: AuthConfig | None = None,
                   platform: Platform | None = None) -> AsyncIterator[ProgressEvent]:
        """``POST /images/{name}/push``: the progress stream of pushing ``name`` (one tag, or every tag of the
        repository). A name with no local tag is refused in-band, as dockerd does."""
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

    async def _push_one(self, repo: Any, repo_name: refs.Reference,
                        ref: refs.Reference) -> AsyncIterator[ProgressEvent]:
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
        remake = Compression.NONE in kinds and not was_pulled(self.db, rec.target_digest)
        if remake and len(rec.layers) != len(layer_descs):
            raise DataCorrupted(f"image {rec.id} has {len(rec.layers)} layers, its manifest {len(layer_descs)}")
        oci = remake and any(k not in (Compression.NONE, Compression.GZIP) for k in kinds)
        order = list(reversed(range(len(layer_descs))))  # top layer first, as dockerd lists them
        ids = {i: short_id(rec.layers[i][0]) if i < len(rec.layers) else short_id(layer_descs[i]["digest"])
               for i in order}
        for i in order:
            yield detail("Preparing", ids[i])
        sources: list[tuple[str, str, str]] = []
        pushed: list[dict[str, Any] | None] = [None] * len(layer_descs)
        shared: dict[str, asyncio.Future[dict[str, Any]]] = {}  # one transfer per blob, however often it is listed

        async def exists_or_mount(digest: str, sid: str, emit: Emit) -> bool:
            if await repo.blob_exists(digest) is not None:
                emit(detail("Layer already exists", sid))
                return True
            for other in self.db.blob_sources(digest, repo_name.domain):
                if other == repo_name.path:
                    continue
                try:
                    if await repo.mount_blob(digest, other):
                        emit(detail(f"Mounted from {other}", sid))
                        return True
                except DockwrightError:
                    continue
            return False

        async def push_stored(i: int, sid: str, emit: Emit) -> dict[str, Any]:
            desc = layer_descs[i]
            digest, size = desc["digest"], int(desc["size"])
            if not await exists_or_mount(digest, sid, emit):
                every = update_every(size)
                state = {"last": 0}

                def progress(n: int) -> None:
                    if n - state["last"] >= every or n == size:
                        state["last"] = n
                        emit(Progress("Pushing", sid, n, size))

                await repo.push_blob(digest, size, self.images.blob_chunks(digest), progress=progress)
                emit(detail("Pushed", sid))
            sources.append((digest, repo_name.domain, repo_name.path))
            return _remade_descriptor(desc, kinds[i], oci) if remake else desc

        async def push_plain(i: int, sid: str, emit: Emit) -> dict[str, Any]:
            desc = layer_descs[i]
            diff_id = rec.layers[i][0]
            known = compressed_layer(self.db, diff_id)
            if known is not None and await exists_or_mount(known[0], sid, emit):
                digest, size = known
            else:
                lay = self.db.get_layer(desc["digest"])
                total = lay.diff_size if lay is not None else int(desc.get("size") or 0)
                digest, size = await self._push_gzip(repo, desc["digest"], sid, total, emit)
                await asyncio.to_thread(remember_compressed_layer, self.db, diff_id, digest, size)
                emit(detail("Pushed", sid))
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
                    emit(detail("Waiting", sid))
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
        every = update_every(total)

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
                    pending.add_done_callback(lambda f: _drop_piece(f, src))
                else:
                    if pending is not None and not pending.cancelled():
                        pending.exception()
                    src.close()

        digest, size = await repo.push_blob_stream(chunks(), src.result)
        return str(digest), int(size)


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


def _drop_piece(piece: asyncio.Future[tuple[bytes, int, bool]], src: _GzipSource) -> None:
    """A piece made for an upload that ended meanwhile: its error retrieved (so not logged), the source closed."""
    if not piece.cancelled():
        piece.exception()
    src.close()


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
