"""The one hardened tar extractor: entries written below a root through descriptors, never outside it.

This module owns :class:`TarExtractor`, through which every extraction of dockwright goes (the one exception,
GNU tar for build contexts, runs confined by the kernel: see :mod:`dockwright.builder.extract`); nothing here
uses ``os.path.realpath`` or a path string for a place inside the root.  Its users (in :mod:`.apply` unless said):

* :func:`~.apply.apply_layer`, which extracts a (plain, gzip, bzip2, xz or zstd) layer tar into a directory that will
  serve as an overlay ``lowerdir``/``upperdir`` (:data:`LAYER_RULES`), hashing the uncompressed stream (the
  DiffID) as it goes;
* :func:`~.apply.extract_archive`, which unpacks an archive into a directory, confined to it as moby's
  ``chrootarchive.Untar`` is by its chroot (:data:`ARCHIVE_RULES`: no whiteout conversion, ``.wh.*`` entries
  are ordinary files; owners, modes, devices and extended attributes kept): ADD of a local archive, and
  ``docker cp`` into a container; ``docker cp`` (:mod:`dockwright.engine.containers.fs_untar`);
  :func:`~.apply.is_tar_archive` says whether ADD unpacks a file;
* :func:`~.apply.ensure_chain`, which makes the committed snapshots of an image's layers (named by ChainID) that are
  still missing.

The build context's Python extractor (:mod:`dockwright.builder.extract`) uses :class:`TarExtractor` too, with
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
removes the partial directory (:func:`~.apply.ensure_chain` does).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ..errors import (
    DataCorrupted,
    InvalidArgument,
)
from ..tar.headers import clean_components

__all__ = ["ExtractRules", "LAYER_RULES", "ARCHIVE_RULES", "TarExtractor", "open_dir_in_root", "show_entry",
           "HOST_ERRNOS"]

log = logging.getLogger("dockwright.layers.apply")

_COPY_SIZE = 1 << 20  # file bodies are copied in chunks of this size
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

#: Errors that say something about the host, not the tar being extracted.
HOST_ERRNOS = frozenset(
    (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM, errno.EMFILE, errno.ENFILE)
)


# --------------------------------------------------------------------------------------------------
# confined path resolution


def show_entry(name: bytes | str) -> str:
    """An entry name for a message: quoted, undecodable bytes escaped, cut at 200 characters."""
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
                        f"tar entry {entry}: {show_entry(b'/'.join(self._names + [part]))} is not a directory"
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
        """Close the root's and the walkers' descriptors."""
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
        """Extract ``member`` (its body read from ``tf``) below the root, as the rules say."""
        rules = self.rules
        raw = os.fsencode(member.name)
        entry = show_entry(raw)
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
                raise DataCorrupted(f"unexpected EOF: tar stream truncated in the body of {show_entry(member.name)}")
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
            if exc.errno in HOST_ERRNOS:
                raise
            raise DataCorrupted(
                f"hardlink {entry} -> {show_entry(b'/'.join(target))}: cannot link to the target: {exc.strerror}"
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
            return os.dup(walker.resolve(comps, show_entry(rel)))
        except OSError as exc:
            raise InvalidArgument(f"{rel}: not a directory: {exc.strerror}") from exc
        except DataCorrupted as exc:
            raise InvalidArgument(f"{rel}: {exc}") from exc
    finally:
        walker.close()
        if own:
            os.close(root_fd)
