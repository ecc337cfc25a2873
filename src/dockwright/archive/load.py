"""``docker load``: read an image archive in one streaming pass, storing its layers as it goes.

This module owns reading every archive format ``docker load`` accepts and turning it into
:class:`LoadedImage` records over committed layer blobs. It is handed a content store for the layer ingests;
it knows no metadata database, no names resolution beyond parsing, and no HTTP.

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
import hashlib
import json
import random
import re
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import reference as refs
from ..content.store import ContentStore, Writer
from ..errors import DataCorrupted, DockwrightError, InvalidReference
from ..layers import compression as comp
from ..layers.compression import Compression, decompressor, detect
from ..layers.ingest import LayerIngester
from ..layers.verify import LayerVerifier
from ..oci import mediatypes as mt
from ..oci.config import ImageConfig
from ..oci.descriptor import Descriptor
from ..oci.digest import DIGEST_RE, hex_of, sha256_digest
from ..oci.gojson import go_dumps, parse_rfc3339
from ..oci.platform import Platform, host_platform

__all__ = [
    "ArchiveError",
    "LoadedLayer",
    "LoadedImage",
    "LoadResult",
    "read_archive",
    "JSON_LIMIT",
]

#: Largest JSON file (manifest.json, index.json, a config…) accepted, as containerd's 20 MiB-ish limit.
JSON_LIMIT = 16 << 20
_MEMORY_BUDGET = 64 << 20  # small files kept in memory, in total; beyond this they spill to tmp_dir
_SPILL_OVER = 1 << 20  # a small file bigger than this always spills
_FEED_SIZE = 1 << 20  # input handed to the worker thread at a time
_OUT_CHUNK = 256 << 10  # decompressed output of the outer stream produced at a time
_INGEST_PIECE = 256 << 10  # layer bytes handed to the ingester at a time
_PROGRESS_EVERY = 512 << 10
_MAX_META = 1 << 20  # PAX / GNU long-name headers
_MAX_LINK_HOPS = 40
_MAX_INDEX_DEPTH = 8
_MAX_ENTRIES = 1 << 20  # bounds the bookkeeping of hostile archives made of millions of tiny entries

_METADATA_FILES = frozenset({"manifest.json", "index.json", "oci-layout", "repositories"})
_BLOB_RE = re.compile(r"blobs/sha256/([a-f0-9]{64})\Z")
_ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
_ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
_ANNOTATION_REFERENCE_TYPE = "vnd.docker.reference.type"


class ArchiveError(DataCorrupted):
    """An archive that cannot be loaded. ``blobs``: the blobs committed before the failure (to collect).

    ``dockerd_message``, when set, is what dockerd answers for the same archive (its untar's words, e.g.
    ``Error processing tar file(exit status 1): unexpected EOF``), while the message says more precisely what
    is wrong: the service answers with the former and logs the latter."""

    def __init__(self, message: str, blobs: set[str] | None = None, *, dockerd_message: str | None = None) -> None:
        super().__init__(message)
        self.blobs: set[str] = set(blobs or ())
        self.dockerd_message = dockerd_message


# what dockerd's chrootarchive.Untar says of an outer tar Go's archive/tar refuses (20.10: the error of the
# "docker-untar" child process, then the child's stderr)
_UNTAR_ERROR = "Error processing tar file(exit status 1): "
_GO_TAR_HEADER = _UNTAR_ERROR + "archive/tar: invalid tar header"
_GO_TAR_FIELD_TOO_LONG = _UNTAR_ERROR + "archive/tar: header field too long"
_GO_UNEXPECTED_EOF = _UNTAR_ERROR + "unexpected EOF"


@dataclass
class LoadedLayer:
    """A layer blob committed to the store, with what the load learned about it."""

    digest: str
    media_type: str
    size: int
    diff_id: str
    diff_size: int
    tar_size: int


@dataclass
class LoadedImage:
    """One image of the archive. ``repo_tags``: full normalised references (``docker.io/library/bb:1``).
    ``parent``: the parent image ID when the archive declares one that it also holds, else ""."""

    config_raw: bytes
    config_digest: str
    layers: list[LoadedLayer]
    repo_tags: list[str]
    manifest_raw: bytes | None
    manifest_media_type: str | None
    parent: str = ""


@dataclass
class LoadResult:
    images: list[LoadedImage]
    blobs: set[str]
    unused: set[str] = field(default_factory=set)


ProgressFn = Callable[[str, str, int, int | None], None]


# ==================================================================================================== entries
class _Layer:
    """A file that is a valid layer and whose blob is committed."""

    __slots__ = ("digest", "stored_size", "media_type", "diff_id", "diff_size", "tar_size", "recompressed", "size")

    def __init__(self, digest: str, stored_size: int, media_type: str, diff_id: str, diff_size: int,
                 tar_size: int, recompressed: bool, size: int) -> None:
        self.digest = digest
        self.stored_size = stored_size  # of the stored blob
        self.size = size  # of the file in the archive
        self.media_type = media_type
        self.diff_id = diff_id
        self.diff_size = diff_size
        self.tar_size = tar_size
        self.recompressed = recompressed


class _Small:
    """A small file kept in memory or in a spill file."""

    __slots__ = ("data", "path", "size", "digest")

    def __init__(self, data: bytes | None, path: Path | None, size: int, digest: str) -> None:
        self.data = data
        self.path = path
        self.size = size
        self.digest = digest

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


class _Unusable:
    """A file that is not a layer and too big to be anything else we read."""

    __slots__ = ("reason", "size")

    def __init__(self, reason: str, size: int) -> None:
        self.reason = reason
        self.size = size


_Entry = _Layer | _Small | _Unusable


def _clean(name: str) -> list[str] | None:
    """Components of a relative path cleaned lexically; None if it climbs above the root."""
    out: list[str] = []
    for part in name.split("/"):
        if not part or part == ".":
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
            continue
        out.append(part)
    return out


def _short(name: str, expected: str | None) -> str:
    if expected:
        return hex_of(expected)[:12]
    return name.split("/", 1)[0][:12]


# ==================================================================================================== sinks
class _Sink:
    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        pass


class _MetaSink(_Sink):
    """manifest.json and friends: always in memory, capped."""

    def __init__(self, loader: _Loader, name: str) -> None:
        self._loader = loader
        self._name = name
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        self._buf += data

    def close(self) -> None:
        data = bytes(self._buf)
        self._loader.files[self._name] = _Small(data, None, len(data), sha256_digest(data))


class _FileSink(_Sink):
    """Any other file: classified by its first bytes, then stored as a layer, kept small, or skipped."""

    def __init__(self, loader: _Loader, name: str, size: int, expected: str | None) -> None:
        self._loader = loader
        self._name = name
        self._size = size
        self._expected = expected
        self._head = bytearray()
        self._mode = ""  # "", keep, ingest, small, skip
        self._writer: Writer | None = None
        self._verifier: LayerVerifier | None = None
        self._ingester: LayerIngester | None = None
        self._kind = Compression.NONE
        self._invalid = ""
        self._hash: Any = None
        self._buf: bytearray | None = None
        self._pending = bytearray()
        self._spill: Any = None
        self._spill_path: Path | None = None
        self._done = 0
        self._reported = 0
        self._short = _short(name, expected)

    # -- routing
    def _start(self) -> None:
        head = bytes(self._head)
        kind = detect(head)
        self._kind = kind
        loader = self._loader
        if kind in (Compression.GZIP, Compression.ZSTD):
            self._mode = "keep"
            self._writer = loader.store.writer()
            self._verifier = LayerVerifier()
        elif kind in (Compression.BZIP2, Compression.XZ) or _looks_like_tar(head):
            self._mode = "ingest"
            self._ingester = LayerIngester(loader.store, level=loader.level, fsync=loader.fsync,
                                           keep_uncompressed=True)
            if self._expected and kind is not Compression.NONE:
                # (an uncompressed file's digest is the DiffID the ingester computes anyway)
                self._hash = hashlib.sha256()
        elif self._size <= JSON_LIMIT:
            self._mode = "small"
            self._hash = hashlib.sha256()
            if self._size > _SPILL_OVER or loader.memory_used + self._size > _MEMORY_BUDGET:
                self._spill_path = loader.spill_path()
                self._spill = open(self._spill_path, "wb")
            else:
                loader.memory_used += self._size
                self._buf = bytearray()
        else:
            self._mode = "skip"
            if self._expected:
                self._hash = hashlib.sha256()
        self._head = bytearray()
        self._route(head)

    def _route(self, data: bytes) -> None:
        if not data:
            return
        mode = self._mode
        if self._hash is not None:
            self._hash.update(data)
        if mode == "keep":
            assert self._writer is not None
            self._writer.write(data)
            if self._verifier is not None:
                try:
                    self._verifier.feed(data)  # its decompressor yields bounded pieces
                except DataCorrupted as exc:
                    self._invalid = str(exc)
                    self._verifier = None
            self._progress(len(data))
        elif mode == "ingest":
            if self._ingester is not None:
                self._pending += data
                piece = _INGEST_PIECE
                if len(self._pending) >= piece:
                    n = len(self._pending) // piece * piece
                    ready = bytes(self._pending[:n])
                    del self._pending[:n]
                    self._feed_ingester(ready, piece)
            self._progress(len(data))
        elif mode == "small":
            if self._buf is not None:
                self._buf += data
            else:
                self._spill.write(data)

    def _feed_ingester(self, data: bytes, piece: int) -> None:
        """Feed the ingester in pieces of a fixed size counted from the start of the file: ISA-L's gzip output
        depends on how its input is cut, so this makes the recompressed blob (and its digest) a function of the
        layer alone — the same layer loaded twice, or from two archives, is stored once."""
        assert self._ingester is not None
        try:
            for i in range(0, len(data), piece):
                self._ingester.feed(data[i : i + piece])
        except DataCorrupted as exc:
            self._invalid = str(exc)
            self._ingester.abort()
            self._ingester = None
            self._pending = bytearray()

    def _progress(self, n: int) -> None:
        self._done += n
        if self._done - self._reported >= _PROGRESS_EVERY:
            self._reported = self._done
            self._loader.events.append(("Loading layer", self._short, self._done, self._size))

    # -- sink interface
    def write(self, data: bytes) -> None:
        if self._mode:
            self._route(data)
            return
        self._head += data
        if len(self._head) >= min(self._size, 512):
            self._start()

    def close(self) -> None:
        if not self._mode:
            self._start()
        loader = self._loader
        name = self._name
        mode = self._mode
        if mode == "keep":
            self._close_keep()
        elif mode == "ingest":
            self._close_ingest()
        elif mode == "small":
            digest = "sha256:" + self._hash.hexdigest()
            self._check_digest(digest)
            if self._buf is not None:
                loader.files[name] = _Small(bytes(self._buf), None, self._size, digest)
            else:
                self._spill.close()
                self._spill = None
                loader.files[name] = _Small(None, self._spill_path, self._size, digest)
        else:
            if self._hash is not None:
                self._check_digest("sha256:" + self._hash.hexdigest())
            loader.files[name] = _Unusable(f"{self._size} bytes that are neither a tar nor a compressed tar",
                                           self._size)

    def _check_digest(self, digest: str) -> None:
        if self._expected and digest != self._expected:
            raise ArchiveError(f"invalid archive: {self._name} has digest {digest}: the file is corrupt")

    def _close_keep(self) -> None:
        writer = self._writer
        assert writer is not None
        digest = writer.digest
        self._check_digest(digest)  # on a mismatch, abort() drops the ingest
        summary = None
        diff_id = ""
        if self._verifier is not None:
            try:
                diff_id, summary = self._verifier.finish()
            except DataCorrupted as exc:
                self._invalid = str(exc)
        self._verifier = None
        if summary is None:
            self.abort()
            self._loader.files[self._name] = _Unusable(f"not a valid layer: {self._invalid}", self._size)
            return
        size = writer.offset
        writer.commit(digest, size, sync=self._loader.fsync)
        self._writer = None
        self._loader.committed.add(digest)
        media = comp.DOCKER_LAYER_GZIP if self._kind is Compression.GZIP else comp.OCI_LAYER_ZSTD
        self._loader.files[self._name] = _Layer(digest, size, media, diff_id, summary.diff_size, summary.tar_size,
                                                recompressed=False, size=size)
        self._final_progress()

    def _close_ingest(self) -> None:
        if self._ingester is not None and self._pending:
            rest = bytes(self._pending)
            self._pending = bytearray()
            self._feed_ingester(rest, _INGEST_PIECE)
        ing = self._ingester
        self._ingester = None
        layer = None
        if ing is not None:
            try:
                layer = ing.finish()
            except DataCorrupted as exc:
                self._invalid = str(exc)
        if layer is not None:
            self._loader.committed.add(layer.digest)
        if self._hash is not None:
            self._check_digest("sha256:" + self._hash.hexdigest())
        elif layer is not None:
            self._check_digest(layer.diff_id)
        if layer is None:
            self._loader.files[self._name] = _Unusable(f"not a valid layer: {self._invalid}", self._size)
            return
        self._loader.files[self._name] = _Layer(layer.digest, layer.size, layer.media_type, layer.diff_id,
                                                layer.diff_size, layer.tar_size, recompressed=True,
                                                size=self._size)
        self._final_progress()

    def _final_progress(self) -> None:
        if self._done != self._reported or not self._size:
            self._loader.events.append(("Loading layer", self._short, self._done, self._size))

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        if self._ingester is not None:
            self._ingester.abort()
            self._ingester = None
        if self._spill is not None:
            self._spill.close()
            self._spill = None


def _looks_like_tar(head: bytes) -> bool:
    """The first block of a tar: all zeros (an empty archive) or a header with a valid checksum."""
    if len(head) < 512:
        return False
    blk = head[:512]
    if not any(blk):
        return True
    field = blk[148:156].strip(b" \0")
    if not field or field.translate(None, b"01234567"):
        return False
    stored = int(field, 8)
    unsigned = sum(blk) - sum(blk[148:156]) + 8 * 32
    if stored == unsigned:
        return True
    signed = sum(b - 256 if b > 127 else b for b in blk) - sum(b - 256 if b > 127 else b for b in blk[148:156]) + 256
    return stored == signed


# ==================================================================================================== outer stream
class _Inflater:
    """Decompresses the outer stream, handing each piece of output (256 KiB at most) to ``sink``."""

    def __init__(self, kind: Compression, sink: Callable[[bytes], None]) -> None:
        self.kind = kind
        self._sink = sink
        self._dec = decompressor(kind, max_piece=_OUT_CHUNK)

    def feed(self, data: bytes) -> None:
        pieces = self._dec.feed(data)
        while True:
            try:  # only the decompressor's errors are about the compressed stream (the sink has its own)
                piece = next(pieces, None)
            except DataCorrupted as exc:
                raise _inflate_error(exc) from exc
            if piece is None:
                return
            self._sink(piece)

    def finish(self) -> None:
        try:
            self._dec.finish()
        except DataCorrupted as exc:
            raise _inflate_error(exc) from exc


def _inflate_error(exc: DataCorrupted) -> ArchiveError:
    truncated = "unexpected EOF" in str(exc)
    return ArchiveError(f"invalid archive: {exc}", dockerd_message=_GO_UNEXPECTED_EOF if truncated else None)


# ==================================================================================================== tar reader
_T_HEADER, _T_META, _T_BODY, _T_PAD, _T_ZERO, _T_END = range(6)
_ZERO_BLOCK = bytes(512)


def _num(field: bytes, what: str, offset: int) -> int:
    """Go's parseNumeric: octal or base-256."""
    if field and field[0] & 0x80:
        body = bytes([field[0] & 0x7F]) + field[1:]
        if field[0] & 0x40:
            raise ArchiveError(f"invalid archive: negative {what} in the tar header at offset {offset}",
                               dockerd_message=_GO_TAR_HEADER)
        return int.from_bytes(body, "big")
    digits = field.strip(b" \0")
    nul = digits.find(b"\0")
    if nul >= 0:
        digits = digits[:nul]
    if not digits:
        return 0
    if digits.translate(None, b"01234567"):
        raise ArchiveError(f"invalid archive: bad {what} field in the tar header at offset {offset}",
                           dockerd_message=_GO_TAR_HEADER)
    return int(digits, 8)


def _cstr(field: bytes) -> bytes:
    i = field.find(b"\0")
    return field if i < 0 else field[:i]


class _TarReader:
    """A push parser for the outer tar: ``feed`` bytes, ``finish`` at the end of input."""

    def __init__(self, on_entry: Callable[[str, int, int, str], _Sink | None]) -> None:
        self._on_entry = on_entry
        self._state = _T_HEADER
        self._buf = bytearray()
        self._need = 512
        self._offset = 0  # of the next byte to consume
        self._body_left = 0
        self._pad_left = 0
        self._sink: _Sink | None = None
        self._pax: dict[str, str] = {}
        self._long_name: str | None = None
        self._long_link: str | None = None
        self._meta_type = b""
        self._entries = 0

    def feed(self, data: bytes) -> None:
        pos = 0
        n = len(data)
        while pos < n:
            state = self._state
            if state == _T_BODY:
                take = min(self._body_left, n - pos)
                if self._sink is not None:
                    self._sink.write(data[pos : pos + take])
                pos += take
                self._offset += take
                self._body_left -= take
                if not self._body_left:
                    self._end_body()
                continue
            if state == _T_PAD:
                take = min(self._pad_left, n - pos)
                pos += take
                self._offset += take
                self._pad_left -= take
                if not self._pad_left:
                    self._state = _T_HEADER
                    self._need = 512
                continue
            if state == _T_END:
                self._offset += n - pos
                return
            # collect self._need bytes into the buffer (a header block or a meta body)
            take = min(self._need - len(self._buf), n - pos)
            self._buf += data[pos : pos + take]
            pos += take
            self._offset += take
            if len(self._buf) < self._need:
                return
            record = bytes(self._buf)
            self._buf = bytearray()
            if state == _T_HEADER:
                self._on_header(record, self._offset - 512)
            elif state == _T_ZERO:
                if record != _ZERO_BLOCK:
                    # Go: a single zero block followed by data is an invalid header
                    raise ArchiveError(f"invalid archive: invalid tar header at offset {self._offset - 512}",
                                       dockerd_message=_GO_TAR_HEADER)
                self._state = _T_END
            else:  # _T_META
                self._on_meta(record)

    def finish(self) -> None:
        state = self._state
        if state in (_T_END, _T_ZERO, _T_PAD) and not (state == _T_ZERO and self._buf):
            return
        if state == _T_HEADER and not self._buf:
            if self._pax or self._long_name is not None or self._long_link is not None:
                raise ArchiveError("invalid archive: unexpected EOF after an extended tar header",
                                   dockerd_message=_GO_UNEXPECTED_EOF)
            return  # Go: EOF at a block boundary after complete entries is the end
        raise ArchiveError(f"invalid archive: unexpected EOF at offset {self._offset}: the tar stream is truncated",
                           dockerd_message=_GO_UNEXPECTED_EOF)

    def abort(self) -> None:
        if self._sink is not None:
            self._sink.abort()
            self._sink = None

    # ------------------------------------------------------------------
    def _end_body(self) -> None:
        sink = self._sink
        self._sink = None
        if sink is not None:
            try:
                sink.close()
            except BaseException:
                sink.abort()
                raise
        self._state = _T_PAD if self._pad_left else _T_HEADER
        self._need = 512

    def _on_meta(self, body: bytes) -> None:
        kind = self._meta_type
        self._state = _T_PAD if self._pad_left else _T_HEADER
        self._need = 512
        if kind in (b"L", b"K"):
            value = _cstr(body).decode("utf-8", "surrogateescape")
            if kind == b"L":
                self._long_name = value
            else:
                self._long_link = value
            return
        records = self._parse_pax(body)
        if kind == b"x":
            self._pax = records
        # 'g': global headers are validated and otherwise ignored, as by Go's reader

    def _parse_pax(self, body: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        pos = 0
        while pos < len(body):
            if not body[pos:].strip(b"\0"):
                break
            sp = body.find(b" ", pos)
            if sp < 0 or not body[pos:sp].isdigit():
                raise ArchiveError("invalid archive: malformed PAX header", dockerd_message=_GO_TAR_HEADER)
            length = int(body[pos:sp])
            end = pos + length
            if length < 5 or end > len(body) or body[end - 1 : end] != b"\n":
                raise ArchiveError("invalid archive: malformed PAX header", dockerd_message=_GO_TAR_HEADER)
            key, eq, value = body[sp + 1 : end - 1].partition(b"=")
            if not eq or not key:
                raise ArchiveError("invalid archive: malformed PAX header", dockerd_message=_GO_TAR_HEADER)
            out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
            pos = end
        return out

    def _on_header(self, blk: bytes, offset: int) -> None:
        if blk == _ZERO_BLOCK:
            if self._pax or self._long_name is not None or self._long_link is not None:
                raise ArchiveError(f"invalid archive: extended tar header without an entry at offset {offset}",
                                   dockerd_message=_GO_TAR_HEADER)
            self._state = _T_ZERO
            self._need = 512
            return
        stored = _num(blk[148:156], "checksum", offset)
        unsigned = sum(blk) - sum(blk[148:156]) + 8 * 32
        if stored != unsigned:
            signed = unsigned - 256 * sum(1 for b in blk[:148] + blk[156:] if b > 127)
            if stored != signed:
                raise ArchiveError(f"invalid archive: tar header checksum mismatch at offset {offset}",
                                   dockerd_message=_GO_TAR_HEADER)
        typeflag = blk[156:157]
        size = _num(blk[124:136], "size", offset)
        magic = blk[257:263]
        if typeflag in (b"x", b"g", b"L", b"K"):
            if size > _MAX_META:
                raise ArchiveError(f"invalid archive: extended tar header of {size} bytes at offset {offset}",
                                   dockerd_message=_GO_TAR_FIELD_TOO_LONG)
            self._meta_type = typeflag
            self._pad_left = -size % 512
            if size:
                self._state = _T_META
                self._need = size
            else:
                self._on_meta(b"")
            return
        name = _cstr(blk[0:100])
        if magic == b"ustar\0":
            prefix = _cstr(blk[345:500]) if blk[508:512] != b"tar\0" else _cstr(blk[345:476])
            if prefix:
                name = prefix + b"/" + name
        linkname = _cstr(blk[157:257])
        sname = name.decode("utf-8", "surrogateescape")
        slink = linkname.decode("utf-8", "surrogateescape")
        pax = self._pax
        if pax:
            if pax.get("path"):
                sname = pax["path"]
            if pax.get("linkpath"):
                slink = pax["linkpath"]
            if pax.get("size"):
                if not pax["size"].isdigit():
                    raise ArchiveError(f"invalid archive: bad PAX size for {sname!r}", dockerd_message=_GO_TAR_HEADER)
                size = int(pax["size"])
            if any(k.startswith("GNU.sparse.") for k in pax):
                raise ArchiveError(f"invalid archive: sparse file {sname!r} is not supported")
        if self._long_name is not None:
            sname = self._long_name
        if self._long_link is not None:
            slink = self._long_link
        self._pax = {}
        self._long_name = self._long_link = None
        if typeflag == b"S":
            raise ArchiveError(f"invalid archive: sparse file {sname!r} is not supported")
        if typeflag == b"\0":
            typeflag = b"5" if sname.endswith("/") else b"0"
        if typeflag in (b"1", b"2", b"3", b"4", b"5", b"6"):
            size = 0  # header-only types (Go ignores their size)
        self._entries += 1
        sink = self._on_entry(sname, typeflag[0], size, slink)
        self._sink = sink
        self._body_left = size
        self._pad_left = -size % 512
        if size:
            self._state = _T_BODY
        else:
            self._end_body()


# ==================================================================================================== the loader
class _Loader:
    """Holds the state of one load; every method runs in a worker thread, one at a time."""

    def __init__(self, store: ContentStore, tmp_dir: Path, platform: Platform | None, fsync: bool,
                 level: int) -> None:
        self.store = store
        self.tmp_root = Path(tmp_dir)
        self.platform = platform.normalized() if platform is not None else None
        self.fsync = fsync
        self.level = level
        self.files: dict[str, _Entry] = {}
        self.links: dict[str, str] = {}
        self.dirs: set[str] = set()
        self.committed: set[str] = set()
        self.events: list[tuple[str, str, int, int | None]] = []
        self.memory_used = 0
        self._spill_dir: Path | None = None
        self._spills = 0
        self._inflater: _Inflater | None = None
        self._head = b""
        self._reader = _TarReader(self._on_entry)
        self._lock = threading.Lock()
        self._aborted = False
        self._layer_cache: dict[str, LoadedLayer] = {}
        self._entries = 0

    # -- temp files
    def spill_path(self) -> Path:
        if self._spill_dir is None:
            self.tmp_root.mkdir(parents=True, exist_ok=True)
            self._spill_dir = Path(tempfile.mkdtemp(prefix="load-", dir=self.tmp_root))
        self._spills += 1
        return self._spill_dir / f"{self._spills}"

    def cleanup(self) -> None:
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)
            self._spill_dir = None

    # -- the stream
    def feed(self, data: bytes) -> None:
        with self._lock:
            if self._aborted:
                raise ArchiveError("load aborted")
            if self._inflater is None:
                self._head += data
                if len(self._head) < 16:
                    return
                data, self._head = self._head, b""
                self._inflater = _Inflater(detect(data), self._reader.feed)
            self._inflater.feed(data)

    def finish_stream(self) -> None:
        with self._lock:
            if self._inflater is None:
                data, self._head = self._head, b""
                self._inflater = _Inflater(detect(data), self._reader.feed)
                if data:
                    self._inflater.feed(data)
            self._inflater.finish()
            self._reader.finish()

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            self._reader.abort()
            self.cleanup()

    def take_events(self) -> list[tuple[str, str, int, int | None]]:
        events, self.events = self.events, []
        return events

    def _on_entry(self, name: str, typeflag: int, size: int, linkname: str) -> _Sink | None:
        self._entries += 1
        if self._entries > _MAX_ENTRIES:
            raise ArchiveError(f"invalid archive: more than {_MAX_ENTRIES} entries")
        if name.startswith("/"):
            raise ArchiveError(f"invalid archive: entry {name!r} has an absolute path")
        comps = _clean(name)
        if comps is None:
            raise ArchiveError(f"invalid archive: entry {name!r} points outside the archive")
        path = "/".join(comps)
        if not path:
            return None
        if typeflag in (0x32, 0x31):  # symlink, hard link
            what = "symlink" if typeflag == 0x32 else "hard link"
            if path in _METADATA_FILES:
                raise ArchiveError(f"invalid archive: {path} is a {what}")
            if typeflag == 0x32:
                if linkname.startswith("/"):
                    raise ArchiveError(f"invalid archive: symlink {path} points outside the archive ({linkname})")
                target = _clean("/".join(comps[:-1] + [linkname]))
            else:
                target = _clean(linkname.lstrip("/"))
            if target is None or not target:
                raise ArchiveError(f"invalid archive: {what} {path} points outside the archive ({linkname})")
            self.files.pop(path, None)
            self.links[path] = "/".join(target)
            return None
        if typeflag == 0x35:  # directory
            self.dirs.add(path)
            return None
        if typeflag not in (0x30, 0x37):
            return None  # devices, fifos and unknown types: nothing we read
        self.links.pop(path, None)
        if path in _METADATA_FILES:
            if size > JSON_LIMIT:
                raise ArchiveError(f"invalid archive: {path} is too large ({size} bytes; giant JSON is refused)")
            return _MetaSink(self, path)
        m = _BLOB_RE.match(path)
        return _FileSink(self, path, size, "sha256:" + m.group(1) if m else None)

    # -- lookups
    def _resolve(self, path: str, what: str) -> tuple[str, _Entry]:
        if not isinstance(path, str) or not path:
            raise ArchiveError(f"invalid archive: {what}: invalid path {path!r}")
        if path.startswith("/"):
            raise ArchiveError(f"invalid archive: {what}: {path} is an absolute path")
        comps = _clean(path)
        if comps is None:
            raise ArchiveError(f"invalid archive: {what}: {path} points outside the archive")
        hops = 0
        done: list[str] = []
        todo = list(comps)
        while todo:
            part = todo.pop(0)
            cand = "/".join(done + [part])
            target = self.links.get(cand)
            if target is None:
                done.append(part)
                continue
            hops += 1
            if hops > _MAX_LINK_HOPS:
                raise ArchiveError(f"invalid archive: {what}: too many levels of symbolic links in {path}")
            todo = target.split("/") + todo
            done = []
        final = "/".join(done)
        entry = self.files.get(final)
        if entry is None:
            if final != path:
                raise ArchiveError(f"invalid archive: {what}: {path} links to {final}, which is not in the archive")
            raise ArchiveError(f"invalid archive: {what}: {path} is not in the archive")
        return final, entry

    def _read_small(self, path: str, what: str) -> bytes:
        final, entry = self._resolve(path, what)
        if isinstance(entry, _Small):
            return entry.read()
        if isinstance(entry, _Unusable) and entry.size > JSON_LIMIT:
            raise ArchiveError(f"invalid archive: {what}: {path} is too large ({entry.size} bytes)")
        raise ArchiveError(f"invalid archive: {what}: {path} is not a JSON file")

    def _json(self, name: str) -> Any:
        entry = self.files[name]
        assert isinstance(entry, _Small)
        try:
            return json.loads(entry.read())
        except ValueError as exc:
            raise ArchiveError(f"invalid archive: {name}: {exc}") from exc

    def _blob_bytes(self, digest: str, what: str) -> bytes:
        return self._read_small(_blob_name(digest, what), what)

    def _layer(self, path: str, what: str) -> LoadedLayer:
        final, entry = self._resolve(path, what)
        cached = self._layer_cache.get(final)
        if cached is not None:
            return cached
        if isinstance(entry, _Small):
            entry = self._ingest_small(final, entry)
        if isinstance(entry, _Unusable):
            raise ArchiveError(f"invalid archive: {what}: {path} is {entry.reason}")
        assert isinstance(entry, _Layer)
        layer = LoadedLayer(entry.digest, entry.media_type, entry.stored_size, entry.diff_id, entry.diff_size,
                            entry.tar_size)
        self._layer_cache[final] = layer
        return layer

    def _ingest_small(self, path: str, entry: _Small) -> _Entry:
        """A short file referred to as a layer (an empty layer, say): ingest it now."""
        ing = LayerIngester(self.store, level=self.level, fsync=self.fsync)
        try:
            data = entry.read()
            for i in range(0, len(data), _INGEST_PIECE):
                ing.feed(data[i : i + _INGEST_PIECE])
            got = ing.finish()
        except DataCorrupted as exc:
            ing.abort()
            new: _Entry = _Unusable(f"not a valid layer: {exc}", entry.size)
        else:
            self.committed.add(got.digest)
            new = _Layer(got.digest, got.size, got.media_type, got.diff_id, got.diff_size, got.tar_size,
                         recompressed=True, size=entry.size)
        self.files[path] = new
        return new

    # -- assembling images
    def assemble(self) -> LoadResult:
        with self._lock:
            try:
                if "manifest.json" in self.files:
                    images = self._from_manifest_json()
                elif "index.json" in self.files:
                    images = self._from_oci_layout()
                elif "repositories" in self.files:
                    images = self._from_v1_layout()
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

    def _config(self, raw: bytes, what: str) -> ImageConfig:
        try:
            cfg = ImageConfig(raw)
        except DataCorrupted as exc:
            raise ArchiveError(f"invalid archive: {what}: {exc}") from exc
        rootfs = cfg.data.get("rootfs")
        if rootfs is not None and not isinstance(rootfs, dict):
            raise ArchiveError(f"invalid archive: {what}: invalid rootfs")
        ids = cfg.diff_ids
        if not all(isinstance(d, str) and DIGEST_RE.match(d) for d in ids):
            raise ArchiveError(f"invalid archive: {what}: invalid rootfs.diff_ids")
        os_ = cfg.os or "linux"
        if os_ != "linux":
            raise ArchiveError(f"cannot load {os_} image on linux")
        return cfg

    def _platform_ok(self, cfg: ImageConfig) -> bool:
        if self.platform is None:
            return True
        return self.platform.matches(Platform(cfg.os or "linux", cfg.architecture, cfg.variant))

    @staticmethod
    def _check_layers(cfg: ImageConfig, layers: list[LoadedLayer]) -> None:
        diff_ids = cfg.diff_ids
        if len(layers) != len(diff_ids):
            raise ArchiveError(
                f"invalid manifest, layers length mismatch: expected {len(layers)}, got {len(diff_ids)}")
        for i, (lay, want) in enumerate(zip(layers, diff_ids)):
            if lay.diff_id != want:
                raise ArchiveError(f'invalid diffID for layer {i}: expected "{want}", got "{lay.diff_id}"')

    # ---- 1. manifest.json
    def _from_manifest_json(self) -> list[LoadedImage]:
        items = self._json("manifest.json")
        if items is None:
            raise ArchiveError("invalid manifest, manifest cannot be null (but can be [])")
        if not isinstance(items, list):
            raise ArchiveError("invalid archive: manifest.json is not a JSON array")
        known = self._index_manifests()
        images: list[LoadedImage] = []
        parents: list[str] = []
        histories: dict[str, list[Any]] = {}
        for n, item in enumerate(items):
            if not isinstance(item, dict):
                raise ArchiveError(f"invalid archive: manifest.json entry {n} is not an object")
            config_path = item.get("Config")
            layer_paths = item.get("Layers") or []
            repo_tags = item.get("RepoTags") or []
            parent = item.get("Parent") or ""
            if not isinstance(config_path, str) or not isinstance(layer_paths, list) or \
                    not isinstance(repo_tags, list) or not isinstance(parent, str):
                raise ArchiveError(f"invalid archive: manifest.json entry {n} is malformed")
            raw = self._read_small(config_path, "image config")
            cfg = self._config(raw, config_path)
            if not self._platform_ok(cfg):
                continue
            if len(layer_paths) != len(cfg.diff_ids):
                raise ArchiveError(f"invalid manifest, layers length mismatch: expected {len(layer_paths)}, "
                                   f"got {len(cfg.diff_ids)}")
            layers = [self._layer(p, f"layer {i} of {config_path}") for i, p in enumerate(layer_paths)]
            self._check_layers(cfg, layers)
            tags = [_docker_tag(t) for t in repo_tags]
            config_digest = sha256_digest(raw)
            manifest_raw, manifest_type, layers = _match_manifest(known.get(config_digest, []), layers)
            images.append(LoadedImage(raw, config_digest, layers, tags, manifest_raw, manifest_type))
            parents.append(parent)
            histories[config_digest] = cfg.history
        ids = {img.config_digest for img in images}
        for img, parent in zip(images, parents):
            if parent and parent in ids and parent != img.config_digest:
                if not _valid_parent(histories[img.config_digest], histories[parent]):
                    raise ArchiveError(f"image {parent} is not a valid parent for {img.config_digest}")
                img.parent = parent
        return images

    def _index_manifests(self) -> dict[str, list[tuple[bytes, str, list[Descriptor]]]]:
        """Manifests reachable from index.json whose bytes are in the archive, by config digest (best effort)."""
        out: dict[str, list[tuple[bytes, str, list[Descriptor]]]] = {}
        if "index.json" not in self.files:
            return out
        try:
            index = self._json("index.json")
            todo = [(d, 0) for d in index.get("manifests") or []]
            seen: set[str] = set()
            while todo:
                d, depth = todo.pop(0)
                desc = Descriptor.from_json(d)
                if desc.digest in seen or not DIGEST_RE.match(desc.digest):
                    continue
                seen.add(desc.digest)
                entry = self.files.get(_blob_name(desc.digest, "manifest"))
                if not isinstance(entry, _Small):
                    continue
                raw = entry.read()
                doc = json.loads(raw)
                media = doc.get("mediaType") or desc.media_type
                if media in mt.INDEX_TYPES or ("manifests" in doc and "layers" not in doc):
                    if depth < _MAX_INDEX_DEPTH:
                        todo.extend((m, depth + 1) for m in doc.get("manifests") or [])
                    continue
                cfg = Descriptor.from_json(doc["config"])
                layers = [Descriptor.from_json(x) for x in doc.get("layers") or []]
                out.setdefault(cfg.digest, []).append((raw, media, layers))
        except (DockwrightError, ValueError, TypeError, KeyError, AttributeError):
            return out
        return out

    # ---- 2. OCI layout
    def _from_oci_layout(self) -> list[LoadedImage]:
        if "oci-layout" in self.files:
            layout = self._json("oci-layout")
            version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
            if version != "1.0.0":
                raise ArchiveError(f"invalid archive: unsupported OCI layout version {version!r}")
        index = self._json("index.json")
        if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
            raise ArchiveError("invalid archive: index.json is not an image index")
        by_manifest: dict[str, LoadedImage] = {}
        order: list[LoadedImage] = []
        for n, d in enumerate(index.get("manifests") or []):
            desc = _descriptor(d, f"index.json entry {n}")
            name = _oci_name(desc.annotations or {})
            chosen = self._choose(desc, 0, f"index.json entry {n}")
            if chosen is None:
                continue
            mdesc, raw = chosen
            img = by_manifest.get(mdesc.digest)
            if img is None:
                img = self._image_from_manifest(mdesc, raw)
                if img is None:
                    continue
                by_manifest[mdesc.digest] = img
                order.append(img)
            if name and name not in img.repo_tags:
                img.repo_tags.append(name)
        return order

    def _choose(self, desc: Descriptor, depth: int, what: str) -> tuple[Descriptor, bytes] | None:
        """The manifest to load for an index.json entry: itself, or one picked from a (nested) index."""
        media = desc.media_type
        raw = self._blob_bytes(desc.digest, what)
        _check_size(desc, len(raw), what)
        doc = _parse(raw, what)
        media = media or doc.get("mediaType") or ""
        if media not in mt.INDEX_TYPES and not (not media and "manifests" in doc):
            return desc, raw
        if depth >= _MAX_INDEX_DEPTH:
            raise ArchiveError(f"invalid archive: {what}: image indexes nested too deep")
        candidates: list[tuple[Descriptor, bytes]] = []
        for n, m in enumerate(doc.get("manifests") or []):
            sub = _descriptor(m, f"{what}, manifest {n}")
            ann = sub.annotations or {}
            if ann.get(_ANNOTATION_REFERENCE_TYPE) == "attestation-manifest":
                continue
            if sub.platform is not None and sub.platform.os == "unknown":
                continue
            if not isinstance(self.files.get(_blob_name(sub.digest, what)), _Small):
                continue  # not in the archive (a platform that was not exported)
            got = self._choose(sub, depth + 1, f"{what}, manifest {n}")
            if got is not None:
                candidates.append(got)
        if not candidates:
            return None
        want = self.platform or host_platform()
        for cand in candidates:
            if cand[0].platform is not None and want.matches(cand[0].platform) and \
                    (not want.variant or cand[0].platform.normalized().variant == want.variant):
                return cand
        for cand in candidates:
            if cand[0].platform is not None and want.matches(cand[0].platform):
                return cand
        if self.platform is not None:
            # descriptors without a platform: decided by their config in _image_from_manifest
            unknown = [c for c in candidates if c[0].platform is None]
            return unknown[0] if unknown else None
        return candidates[0]

    def _image_from_manifest(self, desc: Descriptor, raw: bytes) -> LoadedImage | None:
        what = f"manifest {desc.digest}"
        doc = _parse(raw, what)
        if doc.get("schemaVersion") == 1:
            raise ArchiveError(f"invalid archive: {what}: schema 1 manifests are not supported")
        media = doc.get("mediaType") or desc.media_type or mt.OCI_MANIFEST
        if media not in mt.MANIFEST_TYPES:
            raise ArchiveError(f"invalid archive: {what}: unsupported media type {media!r}")
        cfg_desc = _descriptor(doc.get("config"), f"{what}: config")
        if cfg_desc.media_type and cfg_desc.media_type not in mt.CONFIG_TYPES:
            return None  # an artifact (attestation, chart, signature…), not an image
        config_raw = self._blob_bytes(cfg_desc.digest, f"config of {what}")
        _check_size(cfg_desc, len(config_raw), f"config of {what}")
        cfg = self._config(config_raw, f"config {cfg_desc.digest}")
        if not self._platform_ok(cfg):
            return None
        layer_descs = [_descriptor(x, f"{what}: layer {i}") for i, x in enumerate(doc.get("layers") or [])]
        layers: list[LoadedLayer] = []
        for i, ld in enumerate(layer_descs):
            lwhat = f"layer {i} of {what}"
            final, entry = self._resolve(_blob_name(ld.digest, lwhat), lwhat)
            _check_size(ld, entry.size, lwhat)
            layers.append(self._layer(final, lwhat))
        self._check_layers(cfg, layers)
        keep = all(lay.digest == ld.digest for lay, ld in zip(layers, layer_descs))
        if keep:
            layers = [_with_media(lay, ld.media_type) for lay, ld in zip(layers, layer_descs)]
            return LoadedImage(config_raw, cfg_desc.digest, layers, [], raw, media)
        return LoadedImage(config_raw, cfg_desc.digest, layers, [], None, None)

    # ---- 3. pre-1.10
    def _from_v1_layout(self) -> list[LoadedImage]:
        repositories = self._json("repositories")
        if not isinstance(repositories, dict) or not all(isinstance(v, dict) for v in repositories.values()):
            raise ArchiveError("invalid archive: repositories is not a map of repositories to tags")
        tops: set[str] = set()
        for p in [*self.files, *self.links, *self.dirs]:
            if "/" in p or p in self.dirs:
                tops.add(p.split("/", 1)[0])
        loaded: dict[str, tuple[LoadedImage, list[str], list[dict[str, Any]]]] = {}
        order: list[LoadedImage] = []

        def load(old_id: str) -> tuple[LoadedImage, list[str], list[dict[str, Any]]]:
            chain: list[str] = []
            cur = old_id
            while cur not in loaded:
                if cur in chain:
                    raise ArchiveError(f"invalid archive: the parent chain of {old_id} loops")
                chain.append(cur)
                v1 = _parse(self._read_small(f"{cur}/json", f"legacy image {cur}"), f"{cur}/json")
                parent = v1.get("parent") or ""
                if not isinstance(parent, str):
                    raise ArchiveError(f"invalid archive: {cur}/json: invalid parent")
                if not parent:
                    break
                cur = parent
            for oid in reversed(chain):
                if oid in loaded:
                    continue
                raw = self._read_small(f"{oid}/json", f"legacy image {oid}")
                v1 = _parse(raw, f"{oid}/json")
                os_ = v1.get("os") or "linux"
                if os_ != "linux":
                    raise ArchiveError(f"cannot load {os_} image on linux")
                parent = v1.get("parent") or ""
                if parent:
                    pimg, pdiff, phist = loaded[parent]
                    layers = list(pimg.layers)
                    diff_ids = list(pdiff)
                    history = list(phist)
                else:
                    pimg = None
                    layers, diff_ids, history = [], [], []
                layer = self._layer(f"{oid}/layer.tar", f"layer of legacy image {oid}")
                layers.append(layer)
                diff_ids.append(layer.diff_id)
                history.append(_v1_history(v1, oid))
                config_raw = _v1_config(raw, diff_ids, history, oid)
                img = LoadedImage(config_raw, sha256_digest(config_raw), layers, [], None, None,
                                  parent=pimg.config_digest if pimg is not None else "")
                loaded[oid] = (img, diff_ids, history)
                order.append(img)
            return loaded[old_id]

        for top in sorted(tops):
            load(top)
        for name, tags in repositories.items():
            for tag, old_id in tags.items():
                if not isinstance(old_id, str) or old_id not in loaded:
                    raise ArchiveError(f"invalid target ID: {old_id}")
                try:
                    ref = refs.parse_normalized_named(name).with_tag(tag)
                except InvalidReference as exc:
                    raise ArchiveError(f"invalid archive: repositories: {name}:{tag}: {exc}") from exc
                img = loaded[old_id][0]
                full = str(refs.Reference(ref.domain, ref.path, ref.tag))
                if full not in img.repo_tags:
                    img.repo_tags.append(full)
        return order


# ==================================================================================================== helpers
def _blob_name(digest: Any, what: str) -> str:
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise ArchiveError(f"invalid archive: {what}: unsupported or invalid digest {digest!r}")
    return "blobs/sha256/" + hex_of(digest)


def _parse(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ArchiveError(f"invalid archive: {what}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ArchiveError(f"invalid archive: {what}: not a JSON object")
    return doc


def _descriptor(d: Any, what: str) -> Descriptor:
    if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
        raise ArchiveError(f"invalid archive: {what}: invalid descriptor")
    try:
        desc = Descriptor.from_json(d)
    except (TypeError, ValueError, KeyError) as exc:
        raise ArchiveError(f"invalid archive: {what}: invalid descriptor") from exc
    if not DIGEST_RE.match(desc.digest):
        raise ArchiveError(f"invalid archive: {what}: unsupported or invalid digest {desc.digest!r}")
    if desc.annotations is not None and not isinstance(desc.annotations, dict):
        raise ArchiveError(f"invalid archive: {what}: invalid annotations")
    return desc


def _check_size(desc: Descriptor, size: int, what: str) -> None:
    if desc.size != size:
        raise ArchiveError(f"invalid archive: {what}: {desc.digest} has {size} bytes, the descriptor says {desc.size}")


def _with_media(layer: LoadedLayer, media_type: str) -> LoadedLayer:
    if not media_type or media_type == layer.media_type:
        return layer
    return LoadedLayer(layer.digest, media_type, layer.size, layer.diff_id, layer.diff_size, layer.tar_size)


def _match_manifest(candidates: list[tuple[bytes, str, list[Descriptor]]],
                    layers: list[LoadedLayer]) -> tuple[bytes | None, str | None, list[LoadedLayer]]:
    """The archive's manifest for exactly these layer blobs, if there is one."""
    for raw, media, descs in candidates:
        if media not in mt.MANIFEST_TYPES or len(descs) != len(layers):
            continue
        if all(d.digest == lay.digest and d.size == lay.size for d, lay in zip(descs, layers)):
            return raw, media, [_with_media(lay, d.media_type) for lay, d in zip(layers, descs)]
    return None, None, layers


def _docker_tag(repo_tag: Any) -> str:
    """A manifest.json RepoTags value as dockerd accepts it: a normalised, tagged reference."""
    if not isinstance(repo_tag, str):
        raise ArchiveError(f"invalid tag {json.dumps(repo_tag)}")
    try:
        ref = refs.parse_normalized_named(repo_tag)
    except InvalidReference as exc:
        raise ArchiveError(f"invalid archive: RepoTags {repo_tag!r}: {exc}") from exc
    if not ref.tag:
        raise ArchiveError(f"invalid tag {json.dumps(repo_tag)}")
    return str(refs.Reference(ref.domain, ref.path, ref.tag))


def _oci_name(annotations: dict[str, str]) -> str | None:
    """The image name of an index.json entry (see the module docstring)."""
    name = annotations.get(_ANNOTATION_IMAGE_NAME)
    if not name:
        ref_name = annotations.get(_ANNOTATION_REF_NAME) or ""
        if "/" not in ref_name and ":" not in ref_name:
            return None  # a bare tag: no repository to put it in
        name = ref_name
    if not isinstance(name, str):
        return None
    try:
        ref = refs.parse_normalized_named(name)
    except InvalidReference:
        return None  # dockerd (containerd store) loads such an image untagged
    if not ref.tag:
        if ref.digest:
            return None
        ref = refs.tag_name_only(ref)
    return str(refs.Reference(ref.domain, ref.path, ref.tag))


def _history_key(h: Any) -> tuple[Any, ...]:
    if not isinstance(h, dict):
        return (None,)
    return (h.get("author") or "", h.get("created_by") or "", h.get("comment") or "", bool(h.get("empty_layer")))


def _valid_parent(child: list[Any], parent: list[Any]) -> bool:
    """moby's checkValidParent: the parent's history is the child's minus its last entry."""
    if not child and not parent:
        return True
    if len(child) - len(parent) != 1:
        return False
    for hp, hc in zip(parent, child):
        cp = hp.get("created") if isinstance(hp, dict) else None
        cc = hc.get("created") if isinstance(hc, dict) else None
        if (cp is None) != (cc is None):
            return False
        if cp is not None and parse_rfc3339(str(cp)) != parse_rfc3339(str(cc)):
            return False
        if _history_key(hp) != _history_key(hc):
            return False
    return True


# ---- pre-1.10 configs (moby image/v1: HistoryFromConfig, MakeConfigFromV1Config)
_TIME_RE = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z")


def _go_time(value: Any, what: str) -> str:
    """A JSON time re-marshalled as Go does (RFC 3339 with nanoseconds, zeros trimmed, 'Z' for UTC)."""
    m = _TIME_RE.match(value) if isinstance(value, str) else None
    if m is None:
        raise ArchiveError(f"invalid archive: {what}: invalid time {value!r}")
    frac = (m.group(2) or "")[:10].rstrip("0")
    if frac == ".":
        frac = ""
    tz = m.group(3)
    if tz in ("+00:00", "-00:00"):
        tz = "Z"
    return m.group(1) + frac + tz


def _v1_history(v1: dict[str, Any], old_id: str) -> dict[str, Any]:
    what = f"{old_id}/json"
    h: dict[str, Any] = {}
    created = v1.get("created")
    if created is not None:
        h["created"] = _go_time(created, what)
    cc = v1.get("container_config") or {}
    cmd = cc.get("Cmd") if isinstance(cc, dict) else None
    if isinstance(cmd, str):
        cmd = [cmd]
    if cmd is not None and not (isinstance(cmd, list) and all(isinstance(c, str) for c in cmd)):
        raise ArchiveError(f"invalid archive: {what}: invalid container_config.Cmd")
    for key, value in (("author", v1.get("author")), ("created_by", " ".join(cmd or [])),
                       ("comment", v1.get("comment"))):
        if value is not None and not isinstance(value, str):
            raise ArchiveError(f"invalid archive: {what}: invalid {key}")
        if value:
            h[key] = value
    return h


def _raw_members(raw: bytes, what: str) -> dict[str, str]:
    """The members of a JSON object as (decoded key → raw value text)."""
    text = raw.decode("utf-8", "surrogateescape")
    dec = json.JSONDecoder()
    ws = " \t\n\r"
    i = 0
    n = len(text)

    def skip(j: int) -> int:
        while j < n and text[j] in ws:
            j += 1
        return j

    try:
        i = skip(i)
        if i >= n or text[i] != "{":
            raise ValueError("not a JSON object")
        i = skip(i + 1)
        out: dict[str, str] = {}
        if i < n and text[i] == "}":
            return out
        while True:
            key, i = dec.raw_decode(text, i)
            if not isinstance(key, str):
                raise ValueError("object key is not a string")
            i = skip(i)
            if i >= n or text[i] != ":":
                raise ValueError("expected ':'")
            i = skip(i + 1)
            _, end = dec.raw_decode(text, i)
            out[key] = text[i:end]
            i = skip(end)
            if i < n and text[i] == ",":
                i = skip(i + 1)
                continue
            if i < n and text[i] == "}":
                break
            raise ValueError("expected ',' or '}'")
        if skip(i + 1) != n:
            raise ValueError("trailing data")
        return out
    except ValueError as exc:
        raise ArchiveError(f"invalid archive: {what}: {exc}") from exc


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _go_compact(value: str) -> str:
    """encoding/json's compact with HTML escaping, as json.Marshal applies it to a RawMessage."""
    out: list[str] = []
    in_str = False
    esc = False
    for ch in value:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            elif ch in _GO_ESCAPES:
                out.append(_GO_ESCAPES[ch])
                continue
            out.append(ch)
        elif ch in " \t\n\r":
            continue
        else:
            if ch == '"':
                in_str = True
            out.append(ch)
    return "".join(out)


def _v1_config(raw: bytes, diff_ids: list[str], history: list[dict[str, Any]], old_id: str) -> bytes:
    members = _raw_members(raw, f"{old_id}/json")
    for key in ("id", "parent", "Size", "parent_id", "layer_id", "throwaway"):
        members.pop(key, None)
    members["rootfs"] = go_dumps({"type": "layers", "diff_ids": diff_ids}).decode()
    members["history"] = go_dumps(history).decode()
    parts = [go_dumps(k).decode() + ":" + _go_compact(v) for k, v in sorted(members.items())]
    return ("{" + ",".join(parts) + "}").encode("utf-8", "surrogateescape")


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


async def _in_thread(fn: Callable[[], Any] | Callable[[bytes], Any], *args: Any) -> Any:
    """Run ``fn`` in a worker thread; if cancelled, still wait for it so that cleanup never races it."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise
