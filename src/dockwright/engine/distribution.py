"""The distribution service: pull with dockerd's progress lines, login, search, distribution inspect.

Pull: resolve (errors before the first event become HTTP statuses), choose the platform manifest; an image whose
configuration is already here is not pulled again (dockerd prints no layer line then). Otherwise fetch and verify
the config, then download layers concurrently (bounded by max-concurrent-downloads) into resumable ingests keyed
by the blob digest, hashing the compressed bytes and verifying the DiffID on a decompressing stream that is never
stored. Two pulls that need the same blob share one download; a download nobody waits for any more is cancelled,
its partial blob kept for a later resume. Blobs first, then one metadata transaction (image, tag, repo digest: a
pull by tag leaves a repo digest that names another image where it is, as dockerd). ``pull -a`` takes the tags
in the registry's order. The pull event is dockerd's: ID the reference pulled, ``name`` the repository.
Push is :mod:`.push`; the SQL of what pull and push remember is :mod:`..metadata.distribution`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from .. import reference as refs
from ..content.store import ContentStore, Writer
from ..distribution import AuthConfig, RegistryClient
from ..distribution.errors import pull_error, registry_info
from ..errors import (
    DataCorrupted,
    DockwrightError,
    Forbidden,
    InvalidArgument,
    NotFound,
    SystemError_,
    Unauthorized,
    Unavailable,
)
from ..filters import Filters
from ..layers.streams import ChunkBatcher
from ..layers.verify import LayerVerifier
from ..metadata.db import LayerRecord, MetadataDB
from ..metadata.distribution import compressed_layer, ensure_schema
from ..oci import mediatypes as mt
from ..oci.digest import DIGEST_RE, hex_of, sha256_digest, short_id
from ..oci.jsonobject import json_object
from ..oci.platform import Platform, host_platform
from ..progress import Aux, Emit, Progress, ProgressEvent, Status, begin, detail, run_with_events, update_every
from .events import EventBus
from .images.service import ImagesService
from .push import PushService
from .registry_service import RegistryService
from .types import DistributionInspect, PullResult, PushResult, SearchResult

__all__ = ["DistributionService"]

log = logging.getLogger("dockwright.distribution")

SCHEMA1_ERROR = ("Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed. "
                 "Suggest the author of {ref} to upgrade the image to the OCI Format or Docker Image manifest v2, "
                 "schema 2. More information at https://docs.docker.com/go/deprecated-image-specs/")

RETRIES = 5

@dataclass
class _Download:
    """One blob download shared by every pull that needs it."""
    task: asyncio.Task[LayerRecord]
    listeners: list[Callable[[ProgressEvent], None]]
    waiters: int = 0


class DistributionService(RegistryService):
    """The registry side of the engine: pull (and push, through :class:`.push.PushService`), login, search."""

    def __init__(self, images: ImagesService, content: ContentStore, db: MetadataDB, events: EventBus,
                 client: RegistryClient, *, max_downloads: int = 3, max_uploads: int = 5) -> None:
        super().__init__(images, content, db, events, client)
        self._down_sem = asyncio.Semaphore(max(1, max_downloads))
        self._inflight: dict[str, _Download] = {}
        ensure_schema(db)
        self.pusher = PushService(images, content, db, events, client, max_uploads=max_uploads)

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
            # resolve now: an unknown image is an HTTP error, not a stream line
            return await begin(_events_only(self._pull_ref(repo, ref, plat)))
        # no tag: every tag of the repository (dockerd's quirk)
        try:
            tags = await repo.list_tags()
        except DockwrightError as exc:
            raise pull_error(ref, exc) from exc
        if not tags:
            raise NotFound(f"manifest for {ref.familiar()} not found: no tags")
        return self._pull_all(repo, ref, tags, plat)

    async def pull_image(self, name: str, *, platform: str = "", auth: AuthConfig | None = None,
                         progress: Emit | None = None) -> PullResult:
        """Pull ``name`` (``repo[:tag]``, ``latest`` when it has no tag, or ``repo@digest``) and return the image
        it names now; ``progress`` gets the events the HTTP stream would carry."""
        ref = refs.tag_name_only(refs.parse_pull_reference(name))
        if ref.familiar_name == "scratch":
            raise Forbidden("'scratch' is a reserved name")
        plat = Platform.parse_specifier(platform) if platform else None
        repo = self.client.repository(ref, auth)
        pulled: _Pulled | None = None
        async for ev in self._pull_ref(repo, ref, plat):
            if isinstance(ev, _Pulled):
                pulled = ev
            elif progress is not None:
                progress(ev)
        if pulled is None:
            raise NotFound(f"manifest for {ref.familiar()} not found")
        return PullResult(pulled.reference, self.images.get(pulled.image_id), pulled.digest, pulled.updated)

    async def push(self, name: str, tag: str = "", *, auth: AuthConfig | None = None,
                   platform: Platform | None = None) -> AsyncIterator[ProgressEvent]:
        """``POST /images/{name}/push``: the progress stream (see :meth:`.push.PushService.push`)."""
        return await self.pusher.push(name, tag, auth=auth, platform=platform)

    async def push_image(self, name: str, *, auth: AuthConfig | None = None, platform: Platform | None = None,
                         progress: Emit | None = None) -> list[PushResult]:
        """Push ``name`` (one tag, or every tag of a repository given without one) and return what each tag's
        manifest is in the registry now; ``progress`` gets the events the HTTP stream would carry."""
        pushed: list[PushResult] = []
        async for ev in await self.push(name, auth=auth, platform=platform):
            if isinstance(ev, Aux) and ev.id is None and isinstance(ev.data, dict):
                pushed.append(PushResult(str(ev.data["Tag"]), str(ev.data["Digest"]), int(ev.data["Size"])))
            if progress is not None:
                progress(ev)
        return pushed

    async def _pull_all(self, repo: Any, ref: refs.Reference, tags: list[str],
                        plat: Platform | None) -> AsyncIterator[ProgressEvent]:
        """``pull -a``: every tag in the order the registry lists them (as dockerd), one event for the whole
        repository at the end."""
        updated = False
        for t in tags:
            tref = ref.with_tag(t)
            async for ev in self._pull_ref(repo, tref, plat, final=False):
                if isinstance(ev, _Pulled):
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
                        final: bool = True) -> AsyncGenerator[ProgressEvent | _Pulled, None]:
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
                             desc: Any, raw: bytes, lease: Any) -> AsyncIterator[ProgressEvent | _Pulled]:
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
            # (a registry manifest may list more or fewer layers than the image here has: only the pairs count)
            sources = [(lay["digest"], ref.domain, ref.path) for lay, r in zip(layers, recs, strict=False)
                       if lay["digest"] in (r.digest, (compressed_layer(self.db, r.diff_id) or ("",))[0])]
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
        yield _Pulled(ref.familiar(), image_id, target_digest, updated)
        if final:
            yield Status(("Status: Downloaded newer image for " if updated else "Status: Image is up to date for ")
                         + ref.familiar())

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
                yield detail("Already exists", short_id(digest))
            else:
                todo.append(i)
                yield detail("Pulling fs layer", short_id(digest))

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
                    yield detail("Pull complete", short_id(layers[next_complete]["digest"]))
                next_complete += 1
        while next_complete < len(layers):
            if next_complete in todo:
                yield detail("Pull complete", short_id(layers[next_complete]["digest"]))
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
            task.add_done_callback(functools.partial(self._forget_download, digest))
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

    def _forget_download(self, digest: str, task: asyncio.Future[LayerRecord]) -> None:
        self._inflight.pop(digest, None)

    async def _download(self, repo: Any, ref: refs.Reference, digest: str, size: int, media_type: str,
                        emit: Callable[[ProgressEvent], None], expected_diff_id: str = "") -> LayerRecord:
        short = short_id(digest)
        if self._down_sem.locked():
            emit(detail("Waiting", short))
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
                every = update_every(size)
                while True:
                    last = writer.offset
                    try:
                        batch = ChunkBatcher()
                        async for chunk in repo.fetch_blob(digest, offset=writer.offset, size=size or None):
                            if (data := batch.add(chunk)) is not None:
                                await asyncio.to_thread(_write_verify, writer, verifier, data)
                            if writer.offset + batch.pending - last >= every:
                                last = writer.offset + batch.pending
                                emit(Progress("Downloading", short, writer.offset + batch.pending, size or None))
                        if (data := batch.rest()) is not None:
                            await asyncio.to_thread(_write_verify, writer, verifier, data)
                        break
                    except (TimeoutError, Unavailable, OSError) as exc:
                        attempt += 1
                        if attempt > RETRIES:
                            raise Unavailable(f"failed to download {digest} after {RETRIES} retries: {exc}") from exc
                        delay = min(5, 0.5 * 2 ** (attempt - 1))
                        emit(detail(f"Retrying in {int(delay) if delay >= 1 else 1} second"
                                     f"{'s' if delay > 1 else ''}", short))
                        log.warning("download of %s interrupted at %d bytes (%s); retrying", digest, writer.offset,
                                    exc)
                        await asyncio.sleep(delay)
                emit(Progress("Downloading", short, writer.offset, size or None))
                emit(detail("Verifying Checksum", short))
                diff_id, summary = await asyncio.to_thread(verifier.finish)
                if expected_diff_id and diff_id != expected_diff_id:
                    writer.abort()  # never committed: a blob whose content is not what the image says
                    raise _Mismatch(f"layers from manifest don't match image configuration: layer {digest} has "
                                    f"diff ID {diff_id}, the configuration says {expected_diff_id}")
                await asyncio.to_thread(writer.commit, digest, size or None)
            except _Mismatch as exc:
                raise DataCorrupted(str(exc)) from None
            except (TimeoutError, asyncio.CancelledError, Unavailable, OSError):
                writer.close()  # interrupted: keep the partial blob, the next pull resumes it
                raise
            except DataCorrupted as exc:
                writer.abort()
                raise DataCorrupted(f"filesystem layer verification failed for digest {digest}: {exc}") from exc
            except BaseException:
                writer.abort()  # failed (a redirect loop, a refusal…): nothing to resume
                raise
            emit(detail("Download complete", short))
            return LayerRecord(digest, diff_id, media_type, size or writer.offset, summary.diff_size,
                               summary.tar_size)

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
                     auth: AuthConfig | None = None) -> list[SearchResult]:
        """``GET /images/search``: Docker Hub search results, filtered (``stars``, ``is-official``) and limited."""
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
            out.append(SearchResult(name=r.get("name", ""), description=r.get("description", ""),
                                    star_count=int(r.get("star_count", 0)), is_official=bool(r.get("is_official"))))
        return out[: limit or 25]

    async def inspect(self, name: str, auth: AuthConfig | None = None) -> DistributionInspect:
        """``GET /distribution/{name}/json``: the descriptor a name resolves to in its registry, and its platforms."""
        ref = refs.parse_normalized_named(name)
        ref = refs.tag_name_only(ref)
        repo = self.client.repository(ref, auth)
        try:
            desc, raw = await repo.resolve(ref.digest or ref.tag or "latest")
        except DockwrightError as exc:
            raise pull_error(ref, exc) from exc
        platforms: list[Platform] = []
        data = json.loads(raw)
        if mt.is_index(desc.media_type) or "manifests" in data:
            for m in data.get("manifests") or []:
                if m.get("platform"):
                    platforms.append(Platform.from_json(m["platform"]))
        else:
            cfg = data.get("config") or {}
            blob = b"".join([c async for c in repo.fetch_blob(cfg["digest"], size=cfg.get("size"))])
            c = json.loads(blob)
            platforms.append(Platform(c.get("os", ""), c.get("architecture", ""), c.get("variant", ""),
                                      c.get("os.version", "")))
        return DistributionInspect(desc, platforms)


@dataclass(frozen=True)
class _Pulled:
    """The end of one reference's pull (not a progress event: :meth:`DistributionService.pull` drops it)."""
    reference: str
    image_id: str
    digest: str
    updated: bool


async def _events_only(events: AsyncGenerator[ProgressEvent | _Pulled, None]) -> AsyncIterator[ProgressEvent]:
    try:
        async for ev in events:
            if not isinstance(ev, _Pulled):
                yield ev
    finally:  # left early: the pull's clean-up runs now, as when its stream is closed
        await events.aclose()


class _Mismatch(Exception):
    """A downloaded layer whose DiffID is not the configuration's (raised before its blob is committed)."""


def _parse_manifest(raw: bytes, digest: str) -> dict[str, Any]:
    """An image manifest's JSON, checked enough that no raw KeyError or TypeError reaches a client."""
    m = json_object(raw, InvalidArgument, f"invalid manifest {digest}")
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
