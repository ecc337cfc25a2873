"""``docker load``'s pass over the archive: the outer stream walked, every file routed and spooled as it streams in.

This module owns :class:`ArchiveSpool`: the outer stream decompressed and walked
(:class:`~dockwright.tar.walker.TarWalker`), layers stored as they go by, small files kept in memory or spilled to
disk, links recorded, and the lookups the format readers use afterwards (paths resolved through the archive's
links, JSON files, layers).  See :mod:`dockwright.archive.load` for the rules.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..content.store import ContentStore, Writer
from ..errors import DataCorrupted
from ..layers import mediatypes as lmt
from ..layers.compression import Compression, decompressor, detect
from ..layers.ingest import LayerIngester
from ..layers.verify import LayerVerifier
from ..oci.digest import hex_of, sha256_digest
from ..oci.platform import Platform
from ..tar.headers import looks_like_tar
from ..tar.walker import TarWalker
from .paths import blob_name, clean_path, components
from .results import JSON_LIMIT, ArchiveError, LoadedLayer

__all__ = ["ArchiveSpool", "SmallFile"]

_MEMORY_BUDGET = 64 << 20  # small files kept in memory, in total; beyond this they spill to tmp_dir
_SPILL_OVER = 1 << 20  # a small file bigger than this always spills
_OUT_CHUNK = 256 << 10  # decompressed output of the outer stream produced at a time
_INGEST_PIECE = 256 << 10  # layer bytes handed to the ingester at a time
_PROGRESS_EVERY = 512 << 10
_MAX_LINK_HOPS = 40
_MAX_ENTRIES = 1 << 20  # bounds the bookkeeping of hostile archives made of millions of tiny entries
_METADATA_FILES = frozenset({"manifest.json", "index.json", "oci-layout", "repositories"})
_BLOB_RE = re.compile(r"blobs/sha256/([a-f0-9]{64})\Z")


# what dockerd's chrootarchive.Untar says of an outer tar Go's archive/tar refuses (20.10: the error of the
# "docker-untar" child process, then the child's stderr)
_UNTAR_ERROR = "Error processing tar file(exit status 1): "
_GO_UNEXPECTED_EOF = _UNTAR_ERROR + "unexpected EOF"


def _walker_error(message: str, go_error: str | None) -> ArchiveError:
    """The walker's refusal of the outer tar, in this module's words and dockerd's."""
    return ArchiveError("invalid archive: " + message, dockerd_message=_UNTAR_ERROR + go_error if go_error else None)


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


class SmallFile:
    """A small file kept in memory or in a spill file."""

    __slots__ = ("data", "path", "size", "digest")

    def __init__(self, data: bytes | None, path: Path | None, size: int, digest: str) -> None:
        self.data = data
        self.path = path
        self.size = size
        self.digest = digest

    def read(self) -> bytes:
        """The file's bytes."""
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


_Entry = _Layer | SmallFile | _Unusable


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

    def __init__(self, loader: ArchiveSpool, name: str) -> None:
        self._loader = loader
        self._name = name
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        self._buf += data

    def close(self) -> None:
        data = bytes(self._buf)
        self._loader.files[self._name] = SmallFile(data, None, len(data), sha256_digest(data))


class _FileSink(_Sink):
    """Any other file: classified by its first bytes, then stored as a layer, kept small, or skipped."""

    def __init__(self, loader: ArchiveSpool, name: str, size: int, expected: str | None) -> None:
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
        elif kind in (Compression.BZIP2, Compression.XZ) or looks_like_tar(head):
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
                loader.files[name] = SmallFile(bytes(self._buf), None, self._size, digest)
            else:
                self._spill.close()
                self._spill = None
                loader.files[name] = SmallFile(None, self._spill_path, self._size, digest)
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
        media = lmt.DOCKER_LAYER_GZIP if self._kind is Compression.GZIP else lmt.OCI_LAYER_ZSTD
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


# ==================================================================================================== the spool
class ArchiveSpool:
    """The files of one load as they stream in, and lookups over them; every method runs in a worker thread, one
    at a time (the format readers and :func:`~dockwright.archive.load.read_archive` build on it)."""

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
        self._reader = TarWalker(self._on_entry, _walker_error)
        self._lock = threading.Lock()
        self._aborted = False
        self._layer_cache: dict[str, LoadedLayer] = {}
        self._entries = 0

    # -- temp files
    def spill_path(self) -> Path:
        """A new spill file path under ``tmp_dir`` (its directory made on first use)."""
        if self._spill_dir is None:
            self.tmp_root.mkdir(parents=True, exist_ok=True)
            self._spill_dir = Path(tempfile.mkdtemp(prefix="load-", dir=self.tmp_root))
        self._spills += 1
        return self._spill_dir / f"{self._spills}"

    def cleanup(self) -> None:
        """Remove the spill files."""
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)
            self._spill_dir = None

    # -- the stream
    def feed(self, data: bytes) -> None:
        """The next bytes of the archive (compressed or not: detected from the first 16 bytes)."""
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
        """End of the archive: the decompressor and the walker are checked for truncation."""
        with self._lock:
            if self._inflater is None:
                data, self._head = self._head, b""
                self._inflater = _Inflater(detect(data), self._reader.feed)
                if data:
                    self._inflater.feed(data)
            self._inflater.finish()
            self._reader.finish()

    def abort(self) -> None:
        """Stop: later feeds fail, the entry being written is aborted, spill files are removed."""
        with self._lock:
            self._aborted = True
            self._reader.abort()
            self.cleanup()

    def take_events(self) -> list[tuple[str, str, int, int | None]]:
        """The progress events since the last call."""
        events, self.events = self.events, []
        return events

    def _on_entry(self, name: str, typeflag: int, size: int, linkname: str) -> _Sink | None:
        self._entries += 1
        if self._entries > _MAX_ENTRIES:
            raise ArchiveError(f"invalid archive: more than {_MAX_ENTRIES} entries")
        comps = components(name, f"invalid archive: entry {name!r} has an absolute path",
                           f"invalid archive: entry {name!r} points outside the archive")
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
                target = clean_path("/".join(comps[:-1] + [linkname]))
            else:
                target = clean_path(linkname.lstrip("/"))
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
    def resolve(self, path: str, what: str) -> tuple[str, _Entry]:
        """``path`` resolved through the archive's links, and its file; :class:`ArchiveError` naming ``what``."""
        if not isinstance(path, str) or not path:
            raise ArchiveError(f"invalid archive: {what}: invalid path {path!r}")
        comps = components(path, f"invalid archive: {what}: {path} is an absolute path",
                           f"invalid archive: {what}: {path} points outside the archive")
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

    def read_small(self, path: str, what: str) -> bytes:
        """The bytes of a small file (a JSON file, say) of the archive."""
        final, entry = self.resolve(path, what)
        if isinstance(entry, SmallFile):
            return entry.read()
        if isinstance(entry, _Unusable) and entry.size > JSON_LIMIT:
            raise ArchiveError(f"invalid archive: {what}: {path} is too large ({entry.size} bytes)")
        raise ArchiveError(f"invalid archive: {what}: {path} is not a JSON file")

    def read_json(self, name: str) -> Any:
        """One of the metadata files (``manifest.json``…), parsed."""
        entry = self.files[name]
        assert isinstance(entry, SmallFile)
        try:
            return json.loads(entry.read())
        except ValueError as exc:
            raise ArchiveError(f"invalid archive: {name}: {exc}") from exc

    def blob_bytes(self, digest: str, what: str) -> bytes:
        """The bytes of a small blob (``blobs/sha256/<hex>``)."""
        return self.read_small(blob_name(digest, what), what)

    def layer(self, path: str, what: str) -> LoadedLayer:
        """The layer stored for the file at ``path`` (a small file is ingested now); :class:`ArchiveError` if not
        one."""
        final, entry = self.resolve(path, what)
        cached = self._layer_cache.get(final)
        if cached is not None:
            return cached
        if isinstance(entry, SmallFile):
            entry = self._ingest_small(final, entry)
        if isinstance(entry, _Unusable):
            raise ArchiveError(f"invalid archive: {what}: {path} is {entry.reason}")
        assert isinstance(entry, _Layer)
        layer = LoadedLayer(entry.digest, entry.media_type, entry.stored_size, entry.diff_id, entry.diff_size,
                            entry.tar_size)
        self._layer_cache[final] = layer
        return layer

    def _ingest_small(self, path: str, entry: SmallFile) -> _Entry:
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
