"""Layers applied to snapshot directories, archives unpacked into a directory, an image's layer chain unpacked into
snapshots — all through the one hardened extractor, :class:`~.extract.TarExtractor`.

This module owns :func:`apply_layer` (a plain or compressed layer tar extracted into a directory that will serve
as an overlay ``lowerdir``/``upperdir`` with :data:`~.extract.LAYER_RULES`, hashing the uncompressed stream, the
DiffID, as it goes, and feeding it to :class:`~dockwright.tar.reader.TarInspector` so that a layer is held to the
rules of ingest), :func:`extract_archive` (moby's ``chrootarchive.Untar``, which ADD of a local archive uses) and
:func:`is_tar_archive`, and :func:`ensure_chain` / :func:`adopt_snapshot` / :func:`remove_stale_extractions`
(the committed snapshots of an image's layers, named by ChainID).  Semantics and confinement: see
:mod:`.extract`.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import logging
import os
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from ..content.store import current_lease
from ..errors import (
    AlreadyExists,
    DataCorrupted,
    DockwrightError,
    Forbidden,
    InvalidArgument,
    SystemError_,
)
from ..oci.digest import sha256_digest
from ..snapshots import Kind, LayerSnapshotter
from ..tar.members import MEMBER_ERRORS, open_members
from ..tar.reader import TarInspector
from .compression import DecompressedReader
from .extract import ARCHIVE_RULES, HOST_ERRNOS, LAYER_RULES, ExtractRules, TarExtractor, open_dir_in_root, show_entry

__all__ = ["ApplyResult", "apply_layer", "extract_archive", "is_tar_archive", "ensure_chain", "adopt_snapshot",
           "remove_stale_extractions", "LayerOpener"]

log = logging.getLogger("dockwright.layers.apply")

_READ_SIZE = 64 * 1024  # what tarfile asks of the stream at a time (small: tarfile copies its buffer)
_BLOB_READ_SIZE = 64 * 1024  # reads from a layer blob opened by ensure_chain


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What :func:`apply_layer` unpacked.

    ``diff_id``: sha256 of the uncompressed tar stream.  ``size``: its length in bytes (the uncompressed
    size containerd's ``Apply`` reports).  ``diff_size``: the size dockerd reports for the layer (see
    :class:`~dockwright.tar.reader.TarSummary`).  ``entries``: the number of tar entries.
    """

    diff_id: str
    size: int
    diff_size: int
    entries: int


# --------------------------------------------------------------------------------------------------
# the input side: chunks → decompressed, hashed, inspected bytes


class _LayerStream(DecompressedReader):
    """A read-only file object over the decompressed layer, for :mod:`tarfile`'s stream mode.

    Every decompressed byte is hashed and fed to a :class:`TarInspector` as soon as it is produced, so
    the inspector checks headers a little ahead of the extraction.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__(chunks)
        self.hash = hashlib.sha256()
        self.inspector = TarInspector()
        self.size = 0

    def _plain(self, data: bytes) -> None:
        if data:
            self.hash.update(data)
            self.inspector.feed(data)
            self.size += len(data)


def _unpack(stream: _LayerStream, ext: TarExtractor) -> Any:
    """Extract the members ``stream`` holds with ``ext``; the inspector's summary.  Errors as
    :func:`apply_layer` says (the partial tree is left to the caller)."""
    rules = ext.rules
    member: tarfile.TarInfo | None = None
    try:
        tf = open_members(stream, bufsize=_READ_SIZE)  # None: no tar at all, the inspector decides below
        if tf is not None:
            while True:
                member = tf.next()
                if member is None:
                    break
                tf.members.clear()  # type: ignore[attr-defined]  # stream mode would keep every header
                ext.entry(tf, member)
            member = None
        ext.finish_dirs()
        stream.drain()
        return stream.inspector.close()
    except DataCorrupted as exc:
        if rules.root != LAYER_RULES.root and LAYER_RULES.root in str(exc):  # the inspector's words
            raise DataCorrupted(str(exc).replace(LAYER_RULES.root, rules.root)) from exc
        raise
    except DockwrightError:
        raise
    except MEMBER_ERRORS as exc:
        where = f" at tar entry {show_entry(member.name)}" if member is not None else ""
        raise DataCorrupted(f"invalid {rules.kind} tar{where}: {exc}") from exc
    except OSError as exc:
        where = f"tar entry {show_entry(member.name)}" if member is not None else rules.kind
        if exc.errno in HOST_ERRNOS:
            raise SystemError_(f"failed to extract {where}: {exc}") from exc
        if exc.errno in (errno.EPERM, errno.EACCES) and not ext.is_root:
            raise Forbidden(f"failed to extract {where}: {exc.strerror} ({rules.kind}s are unpacked as root)") from exc
        raise DataCorrupted(f"failed to extract {where}: {exc.strerror or exc}") from exc


def apply_layer(stream_chunks: Iterable[bytes], target: Path | str, *,
                expected_diff_id: str | None = None) -> ApplyResult:
    """Extract a layer into ``target`` (an existing directory, normally empty) with overlay whiteouts.

    ``stream_chunks`` are the bytes of the layer blob; its compression is detected.  Blocking: call it
    from a worker thread.  Raises :class:`~dockwright.errors.DataCorrupted` for a broken, truncated or
    hostile layer (naming the entry) or when ``expected_diff_id`` does not match; ``target`` is then left
    partially written for the caller to remove.
    """
    stream = _LayerStream(stream_chunks)
    stream.inspector = TarInspector(links_in_archive=True)  # the rules of ingest: hard links name this layer's entries
    ext = TarExtractor(Path(target), LAYER_RULES)
    try:
        summary = _unpack(stream, ext)
    finally:
        ext.close()
    diff_id = "sha256:" + stream.hash.hexdigest()
    if expected_diff_id is not None and diff_id != expected_diff_id:
        raise DataCorrupted(f"layer diff ID mismatch: got {diff_id}, expected {expected_diff_id}")
    return ApplyResult(diff_id=diff_id, size=stream.size, diff_size=summary.diff_size, entries=summary.entries)


_PROBE_LIMIT = 2 << 20  # decompressed bytes is_tar_archive reads at most


class _ProbeStream(_LayerStream):
    """The decompressed start of a file for :func:`is_tar_archive`: neither hashed nor inspected, and no
    more than ``_PROBE_LIMIT`` bytes of it (a huge PAX header in a small compressed file stays small)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__(chunks)
        self._left = _PROBE_LIMIT

    def _plain(self, data: bytes) -> None:
        self._left -= len(data)
        if self._left < 0:
            raise tarfile.ReadError("no tar header in the first bytes")


def is_tar_archive(path: Path | str) -> bool:
    """Whether the file at ``path`` is a tar archive, plain or compressed as :func:`extract_archive` reads it
    (moby's ``IsArchivePath``: the compression undone, the first header reads).  Reads the start of the file
    only; never extracts anything."""
    try:
        with open(path, "rb") as f:
            stream = _ProbeStream(iter(lambda: f.read(_BLOB_READ_SIZE), b""))
            tf = open_members(stream, bufsize=_READ_SIZE)
            return tf is not None and tf.next() is not None
    except (tarfile.TarError, DockwrightError, OSError, EOFError, ValueError, UnicodeError):
        return False


def extract_archive(stream_chunks: Iterable[bytes], root: Path | str | int, subdir: str = "", *,
                    rules: ExtractRules = ARCHIVE_RULES) -> ApplyResult:
    """Unpack a tar archive (plain, gzip, bzip2, xz or zstd) into the existing directory ``subdir`` of
    ``root`` — moby's ``chrootarchive.Untar``, which ADD of a local archive uses.

    ``subdir`` is resolved inside ``root`` (:func:`open_dir_in_root`) and is the root of the extraction, as
    the chroot of ``Untar`` is its destination: a symlink of the archive (or already there) is followed
    with that directory as ``/``, a ``..`` name or hardlink target is refused, and nothing is written
    outside it.  ``rules`` (default :data:`ARCHIVE_RULES`: owners, modes, devices and extended attributes
    kept, ``.wh.*`` entries ordinary files) say what is kept.  Blocking.  Raises
    :class:`~dockwright.errors.DataCorrupted` naming the entry for a broken or hostile archive (what was
    unpacked before it stays).
    """
    fd = open_dir_in_root(root, subdir)
    try:
        ext = TarExtractor(fd, rules)
    finally:
        os.close(fd)
    stream = _LayerStream(stream_chunks)
    try:
        summary = _unpack(stream, ext)
    finally:
        ext.close()
    return ApplyResult(diff_id="sha256:" + stream.hash.hexdigest(), size=stream.size, diff_size=summary.diff_size,
                       entries=summary.entries)


# --------------------------------------------------------------------------------------------------
# unpacking a chain into snapshots


class LayerOpener(Protocol):
    """Opens a layer blob: a binary file object (closed after use) or an iterable of byte chunks."""

    def __call__(self) -> IO[bytes] | Iterable[bytes]:
        """Open the blob."""
        ...


def _chunks(source: Any) -> Iterator[bytes]:
    # Modest reads: a compressed chunk can expand a thousandfold in memory before tar takes it.
    if hasattr(source, "read"):
        try:
            while chunk := source.read(_BLOB_READ_SIZE):
                yield chunk
        finally:
            source.close()
    else:
        yield from source


_EXTRACT_PREFIX = "extract-"

_locks_guard = threading.Lock()
_locks: dict[tuple[str, str], list[Any]] = {}  # (root, chain id) → [lock, users]


class _ChainLock:
    def __init__(self, root: str, chain_id: str) -> None:
        self._key = (root, chain_id)

    def __enter__(self) -> None:
        with _locks_guard:
            slot = _locks.setdefault(self._key, [threading.Lock(), 0])
            slot[1] += 1
        slot[0].acquire()

    def __exit__(self, *exc: object) -> None:
        with _locks_guard:
            slot = _locks[self._key]
            slot[0].release()
            slot[1] -= 1
            if not slot[1]:
                del _locks[self._key]


def _syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def ensure_chain(snapshotter: LayerSnapshotter, layers: Sequence[tuple[str, LayerOpener | Callable[[], Any]]], *,
                 sync: bool = True) -> str:
    """Make sure a committed snapshot exists for every layer of a chain; returns the top ChainID.

    ``layers`` are ``(chain_id, open_blob)`` from the bottom layer up.  Only missing snapshots are made,
    bottom-up: ``prepare`` on the parent, :func:`apply_layer` into the new snapshot's directory, a check
    that the layer's DiffID gives the expected ChainID, ``commit`` under the ChainID.  Idempotent and safe
    to call concurrently (one unpack per ChainID at a time in this process; a snapshot committed meanwhile
    by someone else wins).  A partially unpacked snapshot is removed on failure.  ``sync`` flushes the
    file system before each commit.  Blocking: call it from a worker thread.
    """
    if not layers:
        raise InvalidArgument("no layers to unpack")
    chain = [cid for cid, _ in layers]
    lease = current_lease.get()
    if lease is not None:  # leased before they are looked for or made: the collector keeps them for the caller
        for cid in chain:
            lease.add("snapshot", cid)
    # the highest layer already there (a committed snapshot implies its parents)
    start = len(chain)
    while start > 0 and not snapshotter.exists(chain[start - 1]):
        start -= 1
    root = str(getattr(snapshotter, "root", id(snapshotter)))
    for i in range(start, len(chain)):
        chain_id, opener = layers[i]
        parent = chain[i - 1] if i else None
        with _ChainLock(root, chain_id):
            if snapshotter.exists(chain_id):
                continue
            key = f"{_EXTRACT_PREFIX}{os.getpid()}-{threading.get_ident()}-{os.urandom(6).hex()} {chain_id}"
            snapshotter.prepare(key, parent)
            try:
                upper = snapshotter.upper_dir(key)
                result = apply_layer(_chunks(opener()), upper)
                got = result.diff_id if parent is None else sha256_digest(f"{parent} {result.diff_id}".encode())
                if got != chain_id:
                    raise DataCorrupted(
                        f"layer {i} has diff ID {result.diff_id}, which does not give chain ID {chain_id}"
                    )
                if sync:
                    _syncfs(upper)
                try:
                    snapshotter.commit(chain_id, key)
                except AlreadyExists:
                    snapshotter.remove(key)  # committed by another process meanwhile
            except BaseException:
                try:
                    snapshotter.remove(key)
                except Exception:  # pragma: no cover - best effort
                    log.exception("cannot remove the partial snapshot %s", key)
                raise
    return chain[-1]


def adopt_snapshot(snapshotter: LayerSnapshotter, key: str, chain_id: str) -> bool:
    """Commit the active snapshot ``key`` as the snapshot of ``chain_id`` (its upper directory holds
    exactly what the layer of that ChainID unpacks to: e.g. the directory a COPY step wrote and then
    diffed), so that :func:`ensure_chain` need not unpack the layer again.  Returns False (and leaves
    ``key`` alone) if a snapshot of ``chain_id`` exists already.  Blocking."""
    root = str(getattr(snapshotter, "root", id(snapshotter)))
    lease = current_lease.get()
    if lease is not None:
        lease.add("snapshot", chain_id)
    with _ChainLock(root, chain_id):
        if snapshotter.exists(chain_id):
            return False
        try:
            snapshotter.commit(chain_id, key)
        except AlreadyExists:
            return False
        return True


def remove_stale_extractions(snapshotter: Any) -> int:
    """Remove the active snapshots an interrupted :func:`ensure_chain` left behind; returns how many.

    Call it when the engine starts, before anything unpacks (it needs ``walk`` and ``remove``).
    """
    removed = 0
    for info in list(snapshotter.walk()):
        if info.kind is Kind.ACTIVE and info.name.startswith(_EXTRACT_PREFIX):
            try:
                snapshotter.remove(info.name)
                removed += 1
            except DockwrightError as exc:
                log.warning("cannot remove the stale snapshot %s: %s", info.name, exc)
    return removed
