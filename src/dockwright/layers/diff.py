"""Make a layer from an overlay upper directory, and list a container's changes.

This module owns :func:`write_layer_from_upper`, which turns the upper directory of a stopped container
(or build step) into a gzip-compressed Docker layer in one pass, hashing both the tar (the DiffID) and the
compressed blob, and :func:`changes`, the list behind ``GET /containers/{id}/changes``.

The tar is what dockerd's overlay2 driver writes for ``Diff`` (moby ``archive.TarWithOptions`` with the
overlay whiteout converter), made deterministic:

* entries in depth-first order, each directory's names sorted bytewise, relative names without ``./``,
  directories with a trailing ``/``; the root itself is not an entry;
* an overlay whiteout (a 0/0 character device) becomes an empty regular file ``.wh.<name>`` (mode 0600,
  the device's owner and mtime); an opaque directory (``trusted.overlay.opaque`` or
  ``user.overlay.opaque`` = ``y``) is followed by ``<dir>/.wh..wh..opq`` (an empty regular file with the
  directory's permission bits and owner, mtime 0, as dockerd writes it);
* a second name of an inode becomes a hardlink to the first name written;
* headers as Go's ``archive/tar`` writes them for dockerd: USTAR (a long name split into prefix and name
  when it can be), PAX records only when needed (long or non-ASCII names and link targets, large numbers,
  extended attributes, sorted by key), the mode with its file-type bits, numeric owners with empty user and
  group names, mtimes truncated to seconds (and clamped to ``mtime_clamp`` when given, for
  ``SOURCE_DATE_EPOCH`` builds), no atime/ctime, two zero blocks at the end;
* extended attributes as ``SCHILY.xattr.*`` records, except overlayfs' own (``trusted.overlay.*``,
  ``user.overlay.*``) and ``security.selinux`` (a host label, not part of an image);
* sockets are skipped (tar cannot hold them).

The directory is read through descriptors without following symlinks.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import InvalidArgument, SystemError_
from ..tar.writer import BLOCK_SIZE, end, entry_header, padding
from .compression import gzip_compressor

__all__ = [
    "DiffResult",
    "LayerSink",
    "write_layer_from_upper",
    "changes",
    "CHANGE_MODIFY",
    "CHANGE_ADD",
    "CHANGE_DELETE",
]

CHANGE_MODIFY = 0
CHANGE_ADD = 1
CHANGE_DELETE = 2

_SMALL_FILE = 64 << 10  # files up to this size are read at once and written with their header
_READ_SIZE = 1 << 20
_WHITEOUT_PREFIX = b".wh."
_WHITEOUT_OPAQUE = b".wh..wh..opq"
_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_SKIPPED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_SKIPPED_XATTRS = frozenset(("security.selinux",))

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK



class LayerSink(Protocol):
    """Where the compressed layer goes (a content-store ``Writer`` will do)."""

    def write(self, data: bytes) -> object:
        """Take the next compressed bytes."""
        ...


@dataclass(frozen=True, slots=True)
class DiffResult:
    """The layer written: the compressed blob (``digest``, ``size``) and the tar inside it
    (``diff_id``, ``tar_size``), dockerd's ``diff_size`` and the number of ``entries``."""

    digest: str
    size: int
    diff_id: str
    diff_size: int
    tar_size: int
    entries: int


# --------------------------------------------------------------------------------------------------
# the output side


class _Out:
    """Tar bytes in: hashed (DiffID), compressed, hashed again and passed on."""

    def __init__(self, sink: LayerSink, level: int | None) -> None:
        self._sink = sink
        self._comp = gzip_compressor(level) if level is not None else None  # None: the tar as it is
        # A plain tar into a fresh content-store writer: the writer's own hash is the DiffID (one sha256
        # pass over the layer instead of two)
        self._sink_hash = level is None and getattr(sink, "offset", None) == 0 and hasattr(sink, "digest")
        self._tar = hashlib.sha256()
        self._blob = hashlib.sha256()
        self.tar_size = 0
        self.size = 0
        self._pending: list[bytes] = []
        self._pending_size = 0

    def write(self, data: bytes) -> None:
        # Small pieces (headers) are gathered so the compressor and hashes see large chunks.
        if len(data) < 65536:
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size >= 65536:
                self._flush_pending()
            return
        self._flush_pending()
        self._put(data)

    def _flush_pending(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
            self._put(data)

    def _put(self, data: bytes | memoryview) -> None:
        if not self._sink_hash:
            self._tar.update(data)
        self.tar_size += len(data)
        if self._comp is None:
            self.size += len(data)
            self._sink.write(bytes(data))
            return
        out = self._comp.compress(data)
        if out:
            self._emit(out)

    def _emit(self, out: bytes) -> None:
        self._blob.update(out)
        self.size += len(out)
        self._sink.write(out)

    def close(self) -> tuple[str, str]:
        self._flush_pending()
        if self._comp is None:
            digest = str(self._sink.digest) if self._sink_hash else "sha256:" + self._tar.hexdigest()  # type: ignore[attr-defined]
            return digest, digest
        out = self._comp.flush()
        if out:
            self._emit(out)
        return "sha256:" + self._tar.hexdigest(), "sha256:" + self._blob.hexdigest()


# --------------------------------------------------------------------------------------------------
# walking the upper directory


def _proc(dir_fd: int, name: bytes) -> bytes:
    return b"/proc/self/fd/%d/%s" % (dir_fd, name)


def _read_xattrs(target: int | bytes) -> list[tuple[bytes, bytes]]:
    """The extended attributes to keep of an open file (int) or of a path whose last part is not followed."""
    try:
        if isinstance(target, int):
            names = os.listxattr(target)
        else:
            names = os.listxattr(target, follow_symlinks=False)
    except OSError:
        return []
    out = []
    for name in sorted(names):
        if name.startswith(_SKIPPED_XATTR_PREFIXES) or name in _SKIPPED_XATTRS:
            continue
        try:
            if isinstance(target, int):
                value = os.getxattr(target, name)
            else:
                value = os.getxattr(target, name, follow_symlinks=False)
        except OSError:
            continue
        out.append((os.fsencode(name), value))
    return out


def _is_opaque(fd: int) -> bool:
    for name in _OPAQUE_XATTRS:
        try:
            if os.getxattr(fd, name) == b"y":
                return True
        except OSError:
            continue
    return False


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _walk(root_fd: int) -> Iterator[tuple[int, bytes, bytes, os.stat_result]]:
    """(parent fd, name, relative path, lstat) depth-first with sorted names; parents before children.

    Each directory is yielded before its descriptor is opened, and its children right after it.
    """
    stack: list[tuple[int, bytes, list[bytes]]] = []  # (dir fd, relative path with "/", names left, reversed)

    def push(fd: int, rel: bytes) -> None:
        names = sorted(os.fsencode(e.name) for e in os.scandir(fd))
        names.reverse()
        stack.append((fd, rel, names))

    push(os.dup(root_fd), b"")
    try:
        while stack:
            fd, rel, names = stack[-1]
            if not names:
                stack.pop()
                os.close(fd)
                continue
            name = names.pop()
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            path = rel + name
            yield fd, name, path, st
            if stat.S_ISDIR(st.st_mode):
                push(os.open(name, _O_DIR, dir_fd=fd), path + b"/")
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def write_layer_from_upper(upper: Path | str, out: LayerSink, *, mtime_clamp: float | None = None,
                           level: int | None = 1) -> DiffResult:
    """Write the layer for the overlay upper directory ``upper`` to ``out`` as gzip (``level``), or as the plain
    tar with ``level=None`` (then the blob digest is the DiffID).

    ``mtime_clamp``: no mtime in the layer is later than this (Unix seconds), for reproducible builds.
    The directory must not change meanwhile (stop or pause the container).  Blocking: call it from a
    worker thread.
    """
    clamp = None if mtime_clamp is None else int(mtime_clamp // 1)
    sink = _Out(out, level)
    try:
        root_fd = os.open(upper, _O_DIR)
    except OSError as exc:
        raise InvalidArgument(f"cannot read upper directory {upper}: {exc.strerror}") from exc
    seen: dict[tuple[int, int], bytes] = {}
    counted: set[tuple[int, int]] = set()
    diff_size = 0
    entries = 0

    def mtime_of(st: os.stat_result) -> int:
        t = st.st_mtime_ns // 1_000_000_000
        return t if clamp is None or t <= clamp else clamp

    try:
        for parent, name, path, st in _walk(root_fd):
            mode = st.st_mode
            uid, gid = st.st_uid, st.st_gid
            perm = stat.S_IMODE(mode)
            if _is_whiteout(st):
                head, _, base = path.rpartition(b"/")
                wh = (head + b"/" if head else b"") + _WHITEOUT_PREFIX + base
                sink.write(entry_header(wh, b"0", 0o600, uid, gid, 0, mtime_of(st)))
                entries += 1
                continue
            if stat.S_ISSOCK(mode):
                continue
            ident = (st.st_dev, st.st_ino)
            if stat.S_ISDIR(mode):
                fd = os.open(name, _O_DIR, dir_fd=parent)
                try:
                    xattrs = _read_xattrs(fd)
                    opaque = _is_opaque(fd)
                finally:
                    os.close(fd)
                sink.write(entry_header(path + b"/", b"5", mode, uid, gid, 0, mtime_of(st),
                                   xattrs=xattrs))
                entries += 1
                if opaque:
                    sink.write(entry_header(path + b"/" + _WHITEOUT_OPAQUE, b"0", perm & 0o777, uid, gid, 0, 0))
                    entries += 1
                continue

            if st.st_nlink > 1:
                first = seen.get(ident)
                if first is not None:
                    xattrs = _read_xattrs(_proc(parent, name))
                    sink.write(entry_header(path, b"1", mode, uid, gid, 0, mtime_of(st), linkname=first, xattrs=xattrs))
                    entries += 1
                    continue
                seen[ident] = path

            if stat.S_ISREG(mode):
                fd = os.open(name, _O_FILE, dir_fd=parent)
                try:
                    fst = os.fstat(fd)
                    if (fst.st_dev, fst.st_ino) != ident:
                        raise SystemError_(f"{os.fsdecode(path)} changed while the layer was written")
                    size = st.st_size
                    xattrs = _read_xattrs(fd)
                    header = entry_header(path, b"0", mode, uid, gid, size, mtime_of(st), xattrs=xattrs)
                    left = size
                    if size <= _SMALL_FILE:  # header, contents and padding in one piece (most files)
                        parts = [header]
                        while left > 0:
                            chunk = os.read(fd, left)
                            if not chunk:
                                raise SystemError_(f"{os.fsdecode(path)} shrank while the layer was written")
                            parts.append(chunk)
                            left -= len(chunk)
                        parts.append(padding(size))
                        sink.write(b"".join(parts))
                    else:
                        sink.write(header)
                        while left > 0:
                            chunk = os.read(fd, min(_READ_SIZE, left))
                            if not chunk:
                                raise SystemError_(f"{os.fsdecode(path)} shrank while the layer was written")
                            sink.write(chunk)
                            left -= len(chunk)
                        if size % BLOCK_SIZE:
                            sink.write(padding(size))
                finally:
                    os.close(fd)
                if ident not in counted and size:
                    counted.add(ident)
                    diff_size += size
            elif stat.S_ISLNK(mode):
                target = os.readlink(name, dir_fd=parent)
                xattrs = _read_xattrs(_proc(parent, name))
                sink.write(entry_header(path, b"2", mode, uid, gid, 0, mtime_of(st),
                                   linkname=target, xattrs=xattrs))
                if ident not in counted and st.st_size:
                    counted.add(ident)
                    diff_size += st.st_size
            else:  # fifo, character or block device
                if stat.S_ISFIFO(mode):
                    flag = b"6"
                elif stat.S_ISCHR(mode):
                    flag = b"3"
                else:
                    flag = b"4"
                xattrs = _read_xattrs(_proc(parent, name))
                sink.write(entry_header(path, flag, mode, uid, gid, 0, mtime_of(st),
                                   devmajor=os.major(st.st_rdev), devminor=os.minor(st.st_rdev), xattrs=xattrs))
            entries += 1
        sink.write(end())
        diff_id, digest = sink.close()
    except OSError as exc:
        raise SystemError_(f"cannot write a layer from {upper}: {exc}") from exc
    finally:
        os.close(root_fd)
    return DiffResult(digest=digest, size=sink.size, diff_id=diff_id, diff_size=diff_size,
                      tar_size=sink.tar_size, entries=entries)


# --------------------------------------------------------------------------------------------------
# changes


def _same_time(a: int, b: int) -> bool:
    """moby's ``sameFsTime``: equal, or equal seconds when one side has no nanoseconds."""
    if a == b:
        return True
    return a // 1_000_000_000 == b // 1_000_000_000 and (a % 1_000_000_000 == 0 or b % 1_000_000_000 == 0)


def changes(upper: Path | str, lowers: Sequence[Path | str]) -> list[tuple[int, str]]:
    """The changes a container made, as ``(kind, path)``: kind 0 modified, 1 added, 2 deleted.

    ``upper`` is the container's upper directory and ``lowers`` the image's layer directories.  As
    dockerd's overlay2 driver (moby ``archive.OverlayChanges``): a whiteout is a deletion, an opaque
    directory is reported deleted (and what it now holds added); anything else is a modification when a
    lower layer has that path and an addition otherwise, except that a directory equal in size, mode and
    mtime to the lower one is not reported unless something was added or deleted in it; the parent of an
    added or deleted path is reported modified.  Paths are absolute, in walk order.
    """
    lower_paths = [os.fsencode(os.fspath(p)) for p in lowers]
    try:
        root_fd = os.open(upper, _O_DIR)
    except OSError as exc:
        raise InvalidArgument(f"cannot read upper directory {upper}: {exc.strerror}") from exc
    out: list[tuple[int, str]] = []
    changed_dirs: set[bytes] = set()
    try:
        for parent, name, rel, st in _walk(root_fd):
            path = b"/" + rel
            is_dir = stat.S_ISDIR(st.st_mode)
            kind: int | None = None
            if _is_whiteout(st):
                kind = CHANGE_DELETE
            elif is_dir:
                fd = os.open(name, _O_DIR, dir_fd=parent)
                try:
                    if _is_opaque(fd):
                        kind = CHANGE_DELETE
                finally:
                    os.close(fd)
            skip = False
            if kind is None:
                kind = CHANGE_ADD
                for lower in lower_paths:
                    try:
                        lst = os.lstat(lower + path)
                    except (FileNotFoundError, NotADirectoryError):
                        continue
                    if (is_dir and stat.S_ISDIR(lst.st_mode) and lst.st_size == st.st_size
                            and lst.st_mode == st.st_mode and _same_time(lst.st_mtime_ns, st.st_mtime_ns)):
                        skip = True  # the same directory: only there as the parent of a change
                        break
                    kind = CHANGE_MODIFY
                    break
            if skip:
                continue
            if is_dir:
                changed_dirs.add(path)
            if kind in (CHANGE_ADD, CHANGE_DELETE):
                parent_path = path.rpartition(b"/")[0]
                if parent_path and parent_path not in changed_dirs:
                    out.append((CHANGE_MODIFY, os.fsdecode(parent_path)))
                    changed_dirs.add(parent_path)
            out.append((kind, os.fsdecode(path)))
    except OSError as exc:
        raise SystemError_(f"cannot list the changes in {upper}: {exc}") from exc
    finally:
        os.close(root_fd)
    return out
