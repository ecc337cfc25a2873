"""``docker load``: read an image archive in one streaming pass, storing its layers as it goes.

This module owns :func:`read_archive`, which reads every archive format ``docker load`` accepts and turns it into
:class:`~.results.LoadedImage` records over committed layer blobs: the stream is walked and spooled by
:mod:`.spool`, then read by :mod:`.manifests` (formats 1 and 2) or :mod:`.legacy` (format 3). It is handed a
content store for the layer ingests; it knows no metadata database, no names resolution beyond parsing, and no
HTTP.

**Reading.** The body may be a plain tar or a gzip, bzip2, xz or zstd compressed one (detected from the first
bytes). The outer tar is read by a push parser of our own (USTAR, GNU, PAX; checksums verified), fed from the
event loop in 1 MiB pieces that are processed in a worker thread; decompression output comes in bounded pieces
(256 KiB at a time for the outer stream, 1 MiB for a layer's, whatever the compression ratio), so memory stays
flat however big the archive is and however far it inflates. Every regular file is routed as it streams in, before
the archive's metadata is known (``manifest.json`` and ``index.json`` may come first or last):

* ``manifest.json``, ``index.json``, ``oci-layout``, ``repositories``: kept in memory (16 MiB cap,
  "giant JSON" → :class:`ArchiveError`). Symlinked or hard-linked ones are refused.
* Every other file is classified by its first bytes:

  - **gzip or zstd** → written unchanged into a store ingest while a :class:`~dockwright.layers.verify.LayerVerifier`
    runs over it speculatively, so a layer's DiffID, diff size and tar size are known without a second read;
    the blob is committed if it turns out to be a valid layer (a blob that is not is dropped and remembered as
    "not a valid layer");
  - **a tar** (uncompressed) → :class:`~dockwright.layers.ingest.LayerIngester` with ``keep_uncompressed``: stored
    as it is (as containerd stores a docker-archive's layers), so its digest is its DiffID — one hash, no
    deflate; the archive's own manifest, if any, then still names the stored blob. **bzip2/xz** files are
    recompressed with gzip, fed in fixed pieces counted from the start of the file, so the gzip blob depends on
    the layer only and a layer loaded again (or from another archive) is the same blob;
  - anything else up to 16 MiB (configs, manifests, ``<id>/json``, ``VERSION``…) → kept, in memory while the
    total stays under 64 MiB and in a spill file under ``tmp_dir`` beyond that;
  - larger files that are neither → skipped (an error only if something refers to them).

  A ``blobs/sha256/<hex>`` file is checked against its name whatever its kind: a mismatch is an
  :class:`ArchiveError` naming the file. (The one exception: an uncompressed file whose tar turns out to be
  invalid is not hashed separately — its DiffID, which the ingester computes anyway, is its digest; such a file
  can only be a layer, and using it as one is an error anyway.)
* Symlinks (the legacy format repeats layers as ``../<id>/layer.tar`` links) and hard links are recorded and
  resolved component by component when a path is looked up; absolute targets and targets above the archive root
  are refused as they are read, missing targets when they are used.
* ``../`` and absolute entry names, truncated tars, bad checksums and truncated compressed streams are errors.

**Formats** (chosen once the stream has ended):

1. ``manifest.json`` present — Docker 25+ (OCI layout + manifest.json) and legacy 1.10–24 archives, and any
   other manifest.json writer (go-containerregistry's ``sha256:<hex>`` config names and ``<hex>.tar.gz`` layers
   work too). Read as dockerd's classic loader reads it: ``"null"`` is refused, ``[]`` accepted; the layer count
   must equal the config's DiffIDs and every layer's DiffID must match ("invalid diffID for layer N"); RepoTags
   must be tagged references; ``Parent`` is kept when that image is in the same archive and its history is a
   prefix of the child's; with ``platform`` set, images of other platforms are skipped. If ``index.json``
   holds a manifest for exactly these config and layer blobs (kept unchanged), its bytes are returned so the
   image keeps its manifest digest.
2. ``index.json`` without ``manifest.json`` — a pure OCI layout (skopeo ``oci-archive:``, buildx
   ``type=oci``, containerd). Each index entry is an image; nested indexes are walked (up to 8 deep) and one
   manifest is chosen per entry: the requested ``platform``, else the host's, else the first whose blobs are in
   the archive (attestation manifests are never chosen). Names come from ``io.containerd.image.name``, else
   from ``org.opencontainers.image.ref.name`` when that is a reference with a repository (``fixture/whiteouts:1``,
   as skopeo writes it); a bare ref.name such as ``1`` or ``latest`` is only a tag, so the image is untagged.
   Entries for the same manifest are merged into one image with several names; manifests whose config is not
   an image config (artifacts) are skipped.
3. Only ``repositories`` and ``<id>/json`` + ``<id>/layer.tar`` directories — the pre-1.10 format. As dockerd:
   every top-level directory is an image, chained by ``parent``; its config is made from the v1 JSON as moby's
   ``MakeConfigFromV1Config`` does (keys sorted, ``id``/``parent``/``Size``/``parent_id``/``layer_id``/``throwaway``
   dropped, ``rootfs`` and ``history`` added, values kept as raw JSON), which should give dockerd's IDs for
   archives written by Docker ≥ 1.8.3 (older ones went through a struct round trip that is not reproduced; no
   pre-1.10 archive loaded by a real dockerd was at hand to compare). Tags come from ``repositories``.
4. Anything else: "invalid archive: does not contain a manifest.json".

**Results.** ``LoadedImage.repo_tags`` are normalised full references (``docker.io/library/busybox:1``).
``manifest_raw`` is set when the archive had a manifest for exactly the stored layer blobs, else None (the caller
builds one). Configs and manifests are *not* written to the store (the caller stores ``config_raw`` and the
manifest with the image); only layer blobs are. ``LoadResult.blobs`` is every blob this load committed (some may
have existed before) and ``LoadResult.unused`` those of them no returned image uses (blobs of images skipped for
their platform, stray blobs). On failure an :class:`ArchiveError` (a :class:`~dockwright.errors.DataCorrupted`)
carries the committed blobs in ``.blobs``; open ingests are always aborted, so nothing uncommitted is left.
Other failures (I/O, cancellation) propagate as they are; pass ``committed=set()`` to learn the blobs then too.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from ..content.store import ContentStore
from ..errors import DataCorrupted, DockwrightError
from ..oci.platform import Platform
from .legacy import LegacyImages
from .manifests import ManifestImages
from .results import ArchiveError, LoadResult, ProgressFn

__all__ = ["read_archive"]

_FEED_SIZE = 1 << 20  # input handed to the worker thread at a time

_R = TypeVar("_R")


class _Loader(ManifestImages, LegacyImages):
    """One load: the spooled archive and its format readers."""

    def assemble(self) -> LoadResult:
        """The images of the archive, read by the format its metadata files say (see the module docstring)."""
        with self._lock:
            try:
                if "manifest.json" in self.files:
                    images = self.images_from_manifest_json()
                elif "index.json" in self.files:
                    images = self.images_from_oci_layout()
                elif "repositories" in self.files:
                    images = self.images_from_v1_layout()
                else:
                    # dockerd: no manifest.json, so the pre-1.10 loader, which opens "repositories" in the
                    # directory the archive was unpacked to (os.MkdirTemp's name: a random uint32)
                    where = self.tmp_root / f"docker-import-{random.getrandbits(32)}" / "repositories"
                    raise ArchiveError("invalid archive: does not contain a manifest.json",
                                       dockerd_message=f"open {where}: no such file or directory")
            except (TypeError, KeyError, AttributeError, IndexError, ValueError) as exc:
                if isinstance(exc, DockwrightError):
                    raise
                raise ArchiveError(f"invalid archive: malformed metadata: {exc!r}") from exc
            used = {lay.digest for img in images for lay in img.layers}
            return LoadResult(images=images, blobs=set(self.committed), unused=self.committed - used)


# ==================================================================================================== entry point
async def read_archive(chunks: AsyncIterator[bytes], store: ContentStore, *, tmp_dir: Path,
                       platform: Platform | None = None,
                       progress: ProgressFn | None = None,
                       fsync: bool = True, level: int = 1,
                       committed: set[str] | None = None) -> LoadResult:
    """Read a ``docker load`` body (see the module docstring) and commit its layers to ``store``.

    ``tmp_dir``: where small files spill when there are too many to keep in memory. ``platform``: load only
    images of this platform (manifest.json archives), or pick this platform's manifest from indexes (default:
    the host's). ``progress(status, short_id, current, total)`` is called from the event loop while layer
    files stream in. ``fsync``/``level``: the blob commit's fsync and the gzip level of recompressed layers.
    ``committed``, if given, receives every committed blob also when the load fails for a reason other than
    the archive (I/O, cancellation).
    """
    loader = _Loader(store, tmp_dir, platform, fsync, level)

    def flush() -> None:
        events = loader.take_events()
        if progress is not None:
            for ev in events:
                progress(*ev)

    try:
        buf: list[bytes] = []
        pending = 0
        async for chunk in chunks:
            if not chunk:
                continue
            buf.append(chunk)
            pending += len(chunk)
            if pending >= _FEED_SIZE:
                data = b"".join(buf)
                buf.clear()
                pending = 0
                await _in_thread(loader.feed, data)
                flush()
        if buf:
            await _in_thread(loader.feed, b"".join(buf))
            buf.clear()
        await _in_thread(loader.finish_stream)
        flush()
        result = await _in_thread(loader.assemble)
    except BaseException as exc:
        loader.abort()  # waits for a worker still busy with this loader, then drops open ingests
        if committed is not None:
            committed |= loader.committed
        if isinstance(exc, ArchiveError):
            exc.blobs |= loader.committed
            raise
        if isinstance(exc, DataCorrupted):
            raise ArchiveError(str(exc), loader.committed) from exc
        raise
    finally:
        loader.cleanup()
    if committed is not None:
        committed |= result.blobs
    return result


async def _in_thread(fn: Callable[..., _R], *args: Any) -> _R:
    """Run ``fn`` in a worker thread; if cancelled, still wait for it so that cleanup never races it."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise
