"""The one hardened tar extractor, and what uses it: layers applied to snapshot directories, archives unpacked
into a directory, an image's layer chain unpacked into snapshots.

This module owns :class:`TarExtractor`, through which every extraction of dockwright goes (the one exception,
GNU tar for build contexts, runs confined by the kernel: see :mod:`dockwright.build.extract`); nothing here
uses ``os.path.realpath`` or a path string for a place inside the root.  Its users:

* :func:`apply_layer`, which extracts a (plain, gzip, bzip2, xz or zstd) layer tar into a directory that will
  serve as an overlay ``lowerdir``/``upperdir`` (:data:`LAYER_RULES`), hashing the uncompressed stream (the
  DiffID) as it goes;
* :func:`extract_archive`, which unpacks an archive into a directory, confined to it as moby's
  ``chrootarchive.Untar`` is by its chroot (:data:`ARCHIVE_RULES`: no whiteout conversion, ``.wh.*`` entries
  are ordinary files; owners, modes, devices and extended attributes kept): ADD of a local archive, and
  ``docker cp`` into a container; :func:`is_tar_archive` says whether ADD unpacks a file;
* :func:`ensure_chain`, which makes the committed snapshots of an image's layers (named by ChainID) that are
  still missing.

The build context's Python extractor (:mod:`dockwright.build.extract`) uses :class:`TarExtractor` too, with
its own :class:`ExtractRules`.  Semantics (with :data:`LAYER_RULES`) are those of moby's ``archive.Unpack``
with the overlay whiteout converter (what dockerd's overlay2 driver does in ``ApplyDiff``), which is also
containerd's ``archive.Apply`` with the overlay converter:

* names are cleaned like Go's ``filepath.Clean``; absolute names are made relative; a name or hardlink
  target that climbs above the root (``../``) is refused;
* ``.wh.<name>`` becomes a 0/0 character device ``<name>`` (an overlay whiteout; whatever this layer put
  there before is removed first), ``.wh..wh..opq`` sets ``trusted.overlay.opaque=y`` on its directory
  (entries of this layer stay; the lower layers are hidden by overlayfs);
* a later entry replaces an earlier one, except that a directory entry over a directory merges (its
  metadata is applied again); the root entry (``./``) is ignored;
* missing parent directories are made ``0755 root:root``;
* directories, regular files, symlinks, hardlinks, fifos, and character/block devices (only when running as
  root; skipped otherwise, as dockerd does in a user namespace), with ownership, mode (set-id and sticky
  bits too, set after the owner), PAX ``SCHILY.xattr.*`` extended attributes (``trusted.overlay.*`` and
  ``user.overlay.*`` are dropped: overlayfs' own attributes are not taken from a layer) and times
  (nanoseconds from PAX records; directories after their children; times before 1970 become 1970);
* entry types dockerd cannot extract (volume labels, …) are skipped.

Confinement: nothing is written outside the target, whatever the rules.  Every parent directory is resolved
from the target's file descriptor one component at a time with ``O_NOFOLLOW`` (no path is ever handed to the
kernel to resolve, so no ``PATH_MAX`` trick — CVE-2025-4517 against ``tarfile``'s ``data`` filter — applies);
a symlink met on the way is followed *inside* the target, as it would resolve in the container (an absolute
target starts again at the target, ``..`` stops at it, at most 40 links), the way dockerd's chroot
extraction and containerd's ``fs.RootPath`` do.  The last component is never followed: an existing entry
there is removed (recursively, without following symlinks) before the new one is made with ``O_EXCL``.
Hardlink targets are resolved the same way, and the link is made to the entry itself, never to what a
symlink points at.

The stream is also fed to :class:`~dockwright.tar.reader.TarInspector`, so a layer is held to the same
rules as at ingest (checksums, truncation, hostile paths) and the result carries dockerd's diff size.  On a
hostile or broken layer :class:`~dockwright.errors.DataCorrupted` is raised naming the entry; the caller
removes the partial directory (:func:`ensure_chain` does).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
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
from ..tar.headers import clean_components
from ..tar.members import MEMBER_ERRORS, open_members
from ..tar.reader import TarInspector
from .compression import DecompressedReader

__all__ = ["ApplyResult", "ExtractRules", "LAYER_RULES", "ARCHIVE_RULES", "TarExtractor", "apply_layer",
           "extract_archive", "is_tar_archive", "open_dir_in_root", "ensure_chain", "adopt_snapshot",
           "remove_stale_extractions", "LayerOpener"]

log = logging.getLogger("dockwright.layers.apply")

_READ_SIZE = 64 * 1024  # what tarfile asks of the stream at a time (small: tarfile copies its buffer)
_COPY_SIZE = 1 << 20  # file bodies are copied in chunks of this size
_BLOB_READ_SIZE = 64 * 1024  # reads from a layer blob opened by ensure_chain
_MAX_SYMLINKS = 40  # as the kernel's MAXSYMLINKS
_MAX_OPEN_DIRS = 64  # directory descriptors kept open along the current path

_WHITEOUT_PREFIX = b".wh."
_WHITEOUT_OPAQUE = b".wh..wh..opq"
_OPAQUE_XATTR = "trusted.overlay.opaque"
_DROPPED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_PAX_XATTR = "SCHILY.xattr."

_MAX_TIME_NS = (1 << 63) - 1

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_NEWFILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

# errors that say something about the host, not the layer
_HOST_ERRNOS = frozenset(
    (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM, errno.EMFILE, errno.ENFILE)
)


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


# --------------------------------------------------------------------------------------------------
# confined path resolution


def _show(name: bytes | str) -> str:
    text = os.fsdecode(name) if isinstance(name, bytes) else name
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > 200:
        text = text[:200] + "…"
    return repr(text)


def _clean(name: bytes, entry: str, what: str = "tar entry", root: str = "the layer root") -> list[bytes]:
    """Components of ``name`` cleaned like Go's ``filepath.Clean`` below the root; refuses ``../`` escapes."""
    out = clean_components(name)
    if out is None:
        raise DataCorrupted(f"{what} {entry} escapes {root}")
    return out


class _Walker:
    """Resolves directories below a root descriptor without ever leaving it.

    Keeps the chain of directories last resolved (names and descriptors) so that consecutive entries of a
    tar, which are usually close in the tree, cost one ``openat`` or none.  Every element of the chain is a
    real directory below the root (opened with ``O_NOFOLLOW``), named by its real path.
    """

    def __init__(self, root_fd: int, *, create: bool, is_root: bool) -> None:
        self._root_fd = root_fd
        self._create = create
        self._is_root = is_root
        self._names: list[bytes] = []
        self._fds: list[int | None] = []

    def reset(self) -> None:
        self._truncate(0)

    def _truncate(self, depth: int) -> None:
        fds = self._fds
        while len(fds) > depth:
            fd = fds.pop()
            self._names.pop()
            if fd is not None:
                os.close(fd)

    def _top(self) -> int:
        """The descriptor of the last directory of the chain, reopening it if it was closed."""
        fds = self._fds
        if not fds:
            return self._root_fd
        if fds[-1] is not None:
            return fds[-1]
        i = len(fds) - 1
        while i >= 0 and fds[i] is None:
            i -= 1
        cur = self._root_fd if i < 0 else fds[i]
        for j in range(i + 1, len(fds)):
            fd = os.open(self._names[j], _O_DIR, dir_fd=cur)
            fds[j] = fd
            cur = fd
        self._trim()
        return cur  # type: ignore[return-value]

    def _trim(self) -> None:
        fds = self._fds
        if len(fds) > _MAX_OPEN_DIRS:
            for j in range(len(fds) - _MAX_OPEN_DIRS):
                fd = fds[j]
                if fd is not None:
                    os.close(fd)
                    fds[j] = None

    def _push(self, name: bytes, fd: int) -> None:
        self._names.append(name)
        self._fds.append(fd)
        self._trim()

    def _mkdir(self, cur: int, part: bytes) -> int:
        os.mkdir(part, 0o755, dir_fd=cur)
        fd = os.open(part, _O_DIR, dir_fd=cur)
        if self._is_root:
            os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o755)
        return fd

    def resolve(self, dirs: list[bytes], entry: str) -> int:
        """The descriptor of the directory ``dirs`` (components below the root), made if missing.

        The descriptor stays owned by the walker: valid until the next call.
        """
        names = self._names
        k = 0
        n = min(len(names), len(dirs))
        while k < n and names[k] == dirs[k]:
            k += 1
        self._truncate(k)
        if k == len(dirs):
            return self._top()
        queue = list(reversed(dirs[k:]))
        links = 0
        cur = self._top()
        while queue:
            part = queue.pop()
            if not part or part == b".":
                continue
            if part == b"..":
                if self._fds:
                    self._truncate(len(self._fds) - 1)
                    cur = self._top()
                continue
            try:
                fd = os.open(part, _O_DIR, dir_fd=cur)
            except FileNotFoundError:
                if not self._create:
                    raise
                fd = self._mkdir(cur, part)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.stat(part, dir_fd=cur, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise DataCorrupted(
                        f"tar entry {entry}: {_show(b'/'.join(self._names + [part]))} is not a directory"
                    ) from exc
                links += 1
                if links > _MAX_SYMLINKS:
                    raise DataCorrupted(f"tar entry {entry}: too many levels of symbolic links") from exc
                target = os.readlink(part, dir_fd=cur)
                if target.startswith(b"/"):
                    self._truncate(0)
                    cur = self._root_fd
                queue.extend(reversed(target.split(b"/")))
                continue
            self._push(part, fd)
            cur = fd
        return cur

    def close(self) -> None:
        self._truncate(0)


# --------------------------------------------------------------------------------------------------
# the extraction


def _pax_time_ns(member: tarfile.TarInfo, key: str) -> int | None:
    value = member.pax_headers.get(key)
    if value is None:
        return None
    try:
        return int(Decimal(value).scaleb(9).to_integral_value(rounding="ROUND_FLOOR"))
    except (InvalidOperation, ValueError, OverflowError):
        return None


def _bound(ns: int) -> int:
    return ns if 0 <= ns <= _MAX_TIME_NS else 0


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    """(atime, mtime) in ns as moby sets them: atime is the later of atime and mtime; bounded."""
    mtime = _pax_time_ns(member, "mtime")
    if mtime is None:
        mtime = int(member.mtime) * 1_000_000_000
    atime = _pax_time_ns(member, "atime")
    if atime is None or atime < mtime:
        atime = mtime
    return _bound(atime), _bound(mtime)


def _xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    out = []
    for key, value in member.pax_headers.items():
        if not key.startswith(_PAX_XATTR):
            continue
        name = key[len(_PAX_XATTR) :]
        if not name or name.startswith(_DROPPED_XATTR_PREFIXES):
            log.debug("layer entry %s: extended attribute %s ignored", member.name, name)
            continue
        out.append((name, value.encode("utf-8", "surrogateescape")))
    return out


def _proc_path(dir_fd: int, name: bytes) -> bytes:
    return b"/proc/self/fd/%d/%s" % (dir_fd, name)


@dataclass(frozen=True, slots=True)
class ExtractRules:
    """What an extraction keeps of an archive.  The confinement (nothing written outside the root) is the
    same whatever the rules.

    ``whiteouts``: the overlay whiteout conversion (layers: moby's ``Unpack`` with the overlay converter);
    without it ``.wh.*`` entries are ordinary files, as moby's ``Untar`` (ADD, ``docker cp``) writes them.
    ``owners``: ownership from the headers (when running as root).  ``specials``: device nodes and fifos
    (skipped otherwise).  ``xattrs``: ``SCHILY.xattr.*`` records.  ``dir_modes``: directory modes from the
    headers (otherwise new directories are ``0755`` and the caller sets their modes).  ``link_modes``: a hard
    link's mode and times applied to the file it links (moby does; GNU tar does not).  ``kind`` and ``root``
    name the archive and its root in messages.
    """

    whiteouts: bool = False
    owners: bool = True
    specials: bool = True
    xattrs: bool = True
    dir_modes: bool = True
    link_modes: bool = True
    kind: str = "archive"
    root: str = "the destination"


#: a layer unpacked into a snapshot (overlay whiteouts)
LAYER_RULES = ExtractRules(whiteouts=True, kind="layer", root="the layer root")
#: an archive unpacked into a directory (ADD of a local archive, ``docker cp``): moby's ``Untar``
ARCHIVE_RULES = ExtractRules()


class TarExtractor:
    """Unpacks :mod:`tarfile` members below a root directory, one :meth:`entry` at a time, never writing
    outside it (see the module docstring).  ``root`` is a path or a directory descriptor (duplicated: the
    caller keeps its own).  :meth:`finish_dirs` sets directory times at the end; :meth:`close` always."""

    def __init__(self, root: Path | str | int, rules: ExtractRules = ARCHIVE_RULES) -> None:
        self.rules = rules
        self.is_root = os.geteuid() == 0
        if isinstance(root, int):
            self.root_fd = os.dup(root)
        else:
            self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.walker = _Walker(self.root_fd, create=True, is_root=self.is_root)
        self.links = _Walker(self.root_fd, create=False, is_root=self.is_root)
        self.dirs: list[tuple[list[bytes], int, int]] = []

    def close(self) -> None:
        self.walker.close()
        self.links.close()
        os.close(self.root_fd)

    # ------------------------------------------------------------ helpers

    def _remove(self, parent: int, name: bytes, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=parent)  # fd-based: never follows symlinks
        else:
            os.unlink(name, dir_fd=parent)
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
            self.links.reset()  # its chain may have gone through what was removed

    def _lstat(self, parent: int, name: bytes) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _chown(self, parent: int, name: bytes, uid: int, gid: int) -> None:
        if not self.rules.owners:
            return
        try:
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
        except PermissionError:
            if self.is_root:
                raise
            # Not root: ownership cannot be kept (dockerd in a user namespace maps it instead).

    def _fchown(self, fd: int, uid: int, gid: int) -> None:
        if not self.rules.owners:
            return
        try:
            os.fchown(fd, uid, gid)
        except PermissionError:
            if self.is_root:
                raise

    def _set_xattrs(self, target: int | bytes, xattrs: list[tuple[str, bytes]], entry: str) -> None:
        for name, value in xattrs:
            try:
                if isinstance(target, int):
                    os.setxattr(target, name, value)
                else:
                    os.setxattr(target, name, value, follow_symlinks=False)
            except OSError as exc:
                if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EACCES):
                    log.debug("tar entry %s: cannot set extended attribute %s: %s", entry, name, exc)
                    continue
                raise

    # ------------------------------------------------------------ one entry

    def entry(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        rules = self.rules
        raw = os.fsencode(member.name)
        entry = _show(raw)
        comps = _clean(raw, entry, root=rules.root)
        if not comps:
            if member.isdir():
                return  # moby skips the root entry when the target exists
            raise DataCorrupted(f"tar entry {entry} would replace {rules.root}")

        if not (member.isreg() or member.isdir() or member.issym() or member.islnk() or member.isdev()):
            log.debug("tar entry %s of type %r skipped", entry, member.type)
            return
        if member.isdev() and not rules.specials:
            log.debug("tar entry %s: device node or fifo skipped", entry)
            return
        if member.islnk():  # checked before anything is made, as TarInspector does
            link_comps = _clean(os.fsencode(member.linkname).lstrip(b"/"), entry, "hardlink target of", rules.root)
            if not link_comps:
                raise DataCorrupted(f"hardlink {entry} points at {rules.root}")

        base = comps[-1]
        parent = self.walker.resolve(comps[:-1], entry)

        if rules.whiteouts and base.startswith(_WHITEOUT_PREFIX):
            self._whiteout(parent, base, member, entry)
            return

        old = self._lstat(parent, base)
        if old is not None and not (stat.S_ISDIR(old.st_mode) and member.isdir()):
            self._remove(parent, base, old)
            old = None

        mode = member.mode & 0o7777
        uid, gid = member.uid, member.gid
        xattrs = _xattrs(member) if rules.xattrs else []
        atime, mtime = _times(member)

        if member.isdir():
            if old is None:
                os.mkdir(base, 0o700 if rules.dir_modes else 0o755, dir_fd=parent)
            fd = os.open(base, _O_DIR, dir_fd=parent)
            try:
                self._fchown(fd, uid, gid)
                self._set_xattrs(fd, xattrs, entry)
                if rules.dir_modes:
                    os.fchmod(fd, mode)
                elif old is None:
                    os.fchmod(fd, 0o755)  # whatever the umask
            finally:
                os.close(fd)
            self.dirs.append((comps, atime, mtime))
            return

        if member.isreg():
            fd = os.open(base, _O_NEWFILE, 0o600, dir_fd=parent)
            try:
                self._copy_body(tf, member, fd)
                self._fchown(fd, uid, gid)
                self._set_xattrs(fd, xattrs, entry)
                os.fchmod(fd, mode)
                os.utime(fd, ns=(atime, mtime))
            finally:
                os.close(fd)
            return

        if member.issym():
            os.symlink(os.fsencode(member.linkname), base, dir_fd=parent)
            self._chown(parent, base, uid, gid)
            self._set_xattrs(_proc_path(parent, base), xattrs, entry)
            os.utime(base, ns=(atime, mtime), dir_fd=parent, follow_symlinks=False)
            return

        if member.islnk():
            self._hardlink(parent, base, link_comps, entry)
            self._chown(parent, base, uid, gid)
            self._set_xattrs(_proc_path(parent, base), xattrs, entry)
            st = os.stat(base, dir_fd=parent, follow_symlinks=False)
            if rules.link_modes and not stat.S_ISLNK(st.st_mode):
                os.chmod(base, mode, dir_fd=parent)
                os.utime(base, ns=(atime, mtime), dir_fd=parent, follow_symlinks=False)
            return

        # fifo, character or block device
        if member.isfifo():
            os.mkfifo(base, 0o600, dir_fd=parent)
        else:
            if not self.is_root:
                log.debug("tar entry %s: device node skipped (not running as root)", entry)
                return
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=parent)
        self._chown(parent, base, uid, gid)
        self._set_xattrs(_proc_path(parent, base), xattrs, entry)
        os.chmod(base, mode, dir_fd=parent)  # the node was just made: not a symlink
        os.utime(base, ns=(atime, mtime), dir_fd=parent, follow_symlinks=False)

    def _copy_body(self, tf: tarfile.TarFile, member: tarfile.TarInfo, fd: int) -> None:
        remaining = member.size
        if not remaining:
            return
        src = tf.extractfile(member)
        assert src is not None
        reader = getattr(src, "raw", src)  # skip the BufferedReader's extra copy
        while remaining > 0:
            chunk = reader.read(min(_COPY_SIZE, remaining))
            if not chunk:
                raise DataCorrupted(f"unexpected EOF: tar stream truncated in the body of {_show(member.name)}")
            remaining -= len(chunk)
            view = memoryview(chunk)
            while view:
                written = os.write(fd, view)
                view = view[written:]

    def _hardlink(self, parent: int, base: bytes, target: list[bytes], entry: str) -> None:
        try:
            tdir = self.links.resolve(target[:-1], entry)
            os.link(target[-1], base, src_dir_fd=tdir, dst_dir_fd=parent, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in _HOST_ERRNOS:
                raise
            raise DataCorrupted(
                f"hardlink {entry} -> {_show(b'/'.join(target))}: cannot link to the target: {exc.strerror}"
            ) from exc

    def _whiteout(self, parent: int, base: bytes, member: tarfile.TarInfo, entry: str) -> None:
        if base == _WHITEOUT_OPAQUE:
            os.setxattr(parent, _OPAQUE_XATTR, b"y")
            return
        hidden = base[len(_WHITEOUT_PREFIX) :]
        if not hidden:
            return
        for name in (base, hidden):
            old = self._lstat(parent, name)
            if old is not None:
                self._remove(parent, name, old)
        os.mknod(hidden, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
        self._chown(parent, hidden, member.uid, member.gid)

    # ------------------------------------------------------------ the end

    def finish_dirs(self) -> None:
        """Directory times, set after everything below them was made (as moby does)."""
        walker = _Walker(self.root_fd, create=False, is_root=self.is_root)
        try:
            for comps, atime, mtime in self.dirs:
                try:
                    parent = walker.resolve(comps[:-1], "")
                    os.utime(comps[-1], ns=(atime, mtime), dir_fd=parent, follow_symlinks=False)
                except (FileNotFoundError, NotADirectoryError, DataCorrupted):
                    continue  # removed or replaced later in the archive
        finally:
            walker.close()


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
        where = f" at tar entry {_show(member.name)}" if member is not None else ""
        raise DataCorrupted(f"invalid {rules.kind} tar{where}: {exc}") from exc
    except OSError as exc:
        where = f"tar entry {_show(member.name)}" if member is not None else rules.kind
        if exc.errno in _HOST_ERRNOS:
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


def open_dir_in_root(root: Path | str | int, rel: str) -> int:
    """A descriptor of the existing directory ``rel`` below ``root`` (a path or a descriptor), resolved with
    ``root`` as ``/``: symlinks on the way are followed *inside* ``root`` (``FollowSymlinkInScope``, without
    a window between resolving and using the result).  The caller closes it.  Raises
    :class:`~dockwright.errors.InvalidArgument` if ``rel`` is not a directory there."""
    own = not isinstance(root, int)
    root_fd = root if isinstance(root, int) else os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    walker = _Walker(root_fd, create=False, is_root=os.geteuid() == 0)
    try:
        comps = clean_components(os.fsencode(rel).lstrip(b"/")) or []
        try:
            return os.dup(walker.resolve(comps, _show(rel)))
        except OSError as exc:
            raise InvalidArgument(f"{rel}: not a directory: {exc.strerror}") from exc
        except DataCorrupted as exc:
            raise InvalidArgument(f"{rel}: {exc}") from exc
    finally:
        walker.close()
        if own:
            os.close(root_fd)


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

    def __call__(self) -> IO[bytes] | Iterable[bytes]: ...


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
    import ctypes

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
