"""The files of a container (``docker cp``): the stat of a path, a tar of it, a tar extracted into it.

This module owns what dockerd's ``daemon/archive.go`` does for ``/containers/{id}/archive``:

* :func:`stat_path` — ``HEAD``: ``types.ContainerPathStat`` of a path (:class:`PathStat`; the mode as Go's
  ``os.FileMode`` bits, the mtime RFC 3339 with nanoseconds, for a symlink the target fully resolved in the
  container as ``linkTarget``);
* :func:`archive_path` — ``GET``: the stat and a tar of the path as ``archive.TarResourceRebase`` writes it:
  the path's base name as the top entry (``.`` for a path ending in ``/.``, and the entries of the root
  named ``/``, ``/bin/``… for ``/``), a symlink as the last element archived as itself (a path ending in
  ``/`` or ``/.`` follows it), entries depth-first with names sorted bytewise, directories with a trailing
  ``/``, headers as Go's ``archive/tar`` writes them for dockerd (the mode with its file-type bits, mtimes in
  whole seconds, owner names from the container's ``/etc/passwd`` and ``/etc/group``, a second name of an
  inode as a hard link to the first, ``security.capability`` as a ``SCHILY.xattr`` record, sockets left
  out) — streamed, never buffered whole;
* :func:`extract_to_dir` — ``PUT``: a tar (plain or compressed) extracted into an existing directory as
  dockerd's ``chrootarchive.UntarWithRoot`` does (a chroot at the container's root, ``archive.Unpack`` into
  the directory): entries named ``../`` that leave the directory, symlinks whose relative target leaves it
  and hard links to outside it are refused with dockerd's words, absolute names and absolute symlink targets
  are taken inside the container (``/x`` under the directory; a symlink to ``/etc`` followed to the
  container's ``/etc``), ``noOverwriteDirNonDir`` refuses to replace a directory with a non-directory and
  the reverse, ``copyUIDGID`` gives every entry the container user's uid and gid (resolved in the
  container's ``/etc/passwd`` and ``/etc/group``, as the process runs); a read-only rootfs or bind refuses.

Confinement: every path is resolved from a descriptor of the container's root, one component at a time,
with ``O_NOFOLLOW``; a symlink met on the way is followed *inside* the root (moby's
``FollowSymlinkInScope``: an absolute target starts again at the root, ``..`` stops there), so no path of the
host outside the container is ever read or written, whatever the container's symlinks say.  Extraction goes
through the project's one hardened extractor (:class:`~dockwright.layers.apply.TarExtractor`), rooted at the
container's root (or at the bind holding the destination), with the entry names rewritten below the
destination after dockerd's checks.

Mounts: what dockerd mounts over the rootfs for the operation is seen here as a table of mount points
(:func:`_mount_list`): the container's binds and volumes, and the ``/etc/hostname``, ``/etc/hosts`` and
``/etc/resolv.conf`` of its last start.  A path at or below a mount point reads the mount's source; an
extraction whose destination is inside a bind or volume writes into its source (a symlink met there is
followed inside that bind).  Not covered: entries of an extracted archive that go below *another* mount point
nested inside the destination are written to the rootfs under it (dockerd writes through the mount), and
tmpfs mounts are not seen (as with dockerd, whose daemon cannot see them either).

Where this differs from dockerd 20.10 on purpose: ``copyUIDGID`` looks the user up in the container (dockerd
20.10 asks the host's ``getent``, a known bug: a user only the image knows is an error there); an entry below
an archive's symlink to a missing directory makes that directory inside the container (dockerd fails with
``no such file or directory``); a directory entry naming the parent of the destination (``..``) is refused
rather than applied to it; hard links found while archiving are keyed by device and inode, not inode alone.

A stopped container's rootfs is mounted for the operation and unmounted after it
(:meth:`~dockwright.engine.containers.ContainersService.rootfs_for_files`), as dockerd's ``daemon.Mount``.
Errors are dockerd's: ``No such container: x`` and ``Could not find the file /p in container x`` (404),
``extraction point is not a directory``, ``container rootfs is marked read-only``, ``mounted volume is marked
read-only``, ``Error processing tar file(exit status 1): …`` and ``lstat …: not a directory`` (500).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import logging
import os
import stat
import tarfile
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import DockwrightError, NotFound, SystemError_
from ..layers.apply import ARCHIVE_RULES, ExtractRules, TarExtractor
from ..layers.compression import DecompressedReader
from ..oci.gojson import go_dumps, rfc3339_nano
from ..runtime.users import get_exec_user
from ..tar.writer import entry_header, with_owner_names
from ..timestamps import go_quote

if TYPE_CHECKING:
    from .containers import Container, ContainersService

__all__ = ["PathStat", "stat_path", "archive_path", "extract_to_dir", "go_file_mode"]

log = logging.getLogger("dockwright.container_fs")

T = TypeVar("T")

_O_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

_MAX_ITERATIONS = 255  # FollowSymlinkInScope's maxIter (path elements and links together)
_MAX_OPEN_DIRS = 64  # directory descriptors the tar writer keeps open along its path
_CHUNK = 1 << 20  # what the tar writer hands out at a time
_READ_SIZE = 1 << 20
_ETC_FILE_LIMIT = 4 << 20  # /etc/passwd and /etc/group are read up to this size
_CAPABILITY = "security.capability"
_EXIT = "Error processing tar file(exit status 1): "

# Go's os.FileMode bits
_MODE_DIR = 1 << 31
_MODE_SYMLINK = 1 << 27
_MODE_DEVICE = 1 << 26
_MODE_PIPE = 1 << 25
_MODE_SOCKET = 1 << 24
_MODE_SETUID = 1 << 23
_MODE_SETGID = 1 << 22
_MODE_CHAR = 1 << 21
_MODE_STICKY = 1 << 20


def go_file_mode(st_mode: int) -> int:
    """Go's ``os.FileMode`` of a ``stat`` mode (``fillFileStatFromSys``): permission bits, type and set-id bits."""
    mode = st_mode & 0o777
    fmt = stat.S_IFMT(st_mode)
    if fmt == stat.S_IFBLK:
        mode |= _MODE_DEVICE
    elif fmt == stat.S_IFCHR:
        mode |= _MODE_DEVICE | _MODE_CHAR
    elif fmt == stat.S_IFDIR:
        mode |= _MODE_DIR
    elif fmt == stat.S_IFIFO:
        mode |= _MODE_PIPE
    elif fmt == stat.S_IFLNK:
        mode |= _MODE_SYMLINK
    elif fmt == stat.S_IFSOCK:
        mode |= _MODE_SOCKET
    if st_mode & stat.S_ISGID:
        mode |= _MODE_SETGID
    if st_mode & stat.S_ISUID:
        mode |= _MODE_SETUID
    if st_mode & stat.S_ISVTX:
        mode |= _MODE_STICKY
    return mode


@dataclass(frozen=True, slots=True)
class PathStat:
    """dockerd's ``types.ContainerPathStat``: ``mode`` as Go's ``os.FileMode``, ``mtime`` RFC 3339 (UTC)."""

    name: str
    size: int
    mode: int
    mtime: str
    link_target: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "mode": self.mode, "mtime": self.mtime,
                "linkTarget": self.link_target}

    def header_value(self) -> str:
        """The ``X-Docker-Container-Path-Stat`` header: base64 of the JSON as Go's encoder writes it."""
        return base64.b64encode(go_dumps(self.to_json())).decode("ascii")


# --------------------------------------------------------------------------------------------------
# Go's path/filepath on byte strings


def _clean(p: bytes) -> bytes:
    """``filepath.Clean``."""
    if not p:
        return b"."
    rooted = p.startswith(b"/")
    out: list[bytes] = []
    for part in p.split(b"/"):
        if part in (b"", b"."):
            continue
        if part == b"..":
            if out and out[-1] != b"..":
                out.pop()
            elif not rooted:
                out.append(b"..")
            continue
        out.append(part)
    joined = b"/".join(out)
    if rooted:
        return b"/" + joined
    return joined or b"."


def _base(p: bytes) -> bytes:
    """``filepath.Base``."""
    if not p:
        return b"."
    p = p.rstrip(b"/")
    if not p:
        return b"/"
    return p.rsplit(b"/", 1)[-1]


def _split(p: bytes) -> tuple[bytes, bytes]:
    """``filepath.Split``: everything up to the last ``/`` (included), and the rest."""
    i = p.rfind(b"/")
    return p[: i + 1], p[i + 1 :]


def _preserve(cleaned: bytes, original: bytes) -> bytes:
    """``archive.PreserveTrailingDotOrSeparator``."""
    if _base(cleaned) != b"." and _base(original) == b".":
        if not cleaned.endswith(b"/"):
            cleaned += b"/"
        cleaned += b"."
    if not cleaned.endswith(b"/") and original.endswith(b"/"):
        cleaned += b"/"
    return cleaned


def _abs_path(path: str) -> bytes:
    """The path as dockerd takes it in the container: absolute, cleaned, a trailing ``/`` or ``/.`` kept."""
    raw = os.fsencode(path)
    return _preserve(_clean(b"/" + raw), raw)


def _comps(p: bytes) -> list[bytes]:
    """The components of a cleaned path (absolute or relative; ``/`` and ``.`` have none)."""
    return [c for c in p.split(b"/") if c and c != b"."]


def _text(b: bytes) -> str:
    """Bytes as Go puts a string into JSON: invalid UTF-8 becomes U+FFFD."""
    return b.decode("utf-8", "replace")


def _show(comps: list[bytes] | tuple[bytes, ...]) -> str:
    return os.fsdecode(b"/" + b"/".join(comps))


# --------------------------------------------------------------------------------------------------
# the container's tree, as its processes see it


@dataclass(slots=True)
class _Mount:
    fd: int  # O_PATH descriptor of the source (a directory or a file)
    st: os.stat_result
    read_only: bool
    volume: bool  # a bind of the container (the etc files of a start are not)


@dataclass(slots=True)
class _Node:
    """An entry of the container's tree, never followed: ``name`` in the directory ``parent`` (a descriptor
    owned by whoever made the node), or the source of a mount (``mount``)."""

    key: tuple[bytes, ...]  # its path in the container, every symlink before the last component resolved
    st: os.stat_result
    parent: int | None = None
    name: bytes = b""
    mount: _Mount | None = None

    def open_dir(self) -> int:
        if self.mount is not None:
            return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.mount.fd)
        assert self.parent is not None
        fd = os.open(self.name, _O_READ_DIR, dir_fd=self.parent)
        return _same_or_close(fd, self.st)

    def open_file(self) -> int:
        if self.mount is not None:
            fd = os.open(f"/proc/self/fd/{self.mount.fd}", os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
        else:
            assert self.parent is not None
            fd = os.open(self.name, _O_READ_FILE, dir_fd=self.parent)
        return _same_or_close(fd, self.st)

    def readlink(self) -> bytes:
        assert self.parent is not None  # a mount is never a symlink (its source was followed)
        return os.readlink(self.name, dir_fd=self.parent)


def _same_or_close(fd: int, st: os.stat_result) -> int:
    """``fd`` if it is the entry ``st`` describes (not something put there since); closed otherwise."""
    got = os.fstat(fd)
    if (got.st_dev, got.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise FileNotFoundError(errno.ENOENT, "replaced while being read")
    return fd


class _NotADirectory(Exception):
    """``lstat <host path>: not a directory``, as dockerd's error reads (the host path of the entry)."""


@dataclass(slots=True)
class _Resolved:
    """A path resolved in the container: its components, and what is there (``kind`` ``dir`` with an O_PATH
    descriptor owned by the holder, ``missing``, or ``other`` for an existing non-directory)."""

    comps: list[bytes]
    kind: str
    fd: int | None
    mount: _Mount | None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _View:
    """The container's tree from a descriptor of its root, with mount points over it.  Blocking."""

    def __init__(self, rootfs: str) -> None:
        self.shown = rootfs.rstrip("/")  # the rootfs' host path, for dockerd's messages
        self.root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.mounts: dict[tuple[bytes, ...], _Mount] = {}

    def close(self) -> None:
        for m in self.mounts.values():
            os.close(m.fd)
        self.mounts.clear()
        os.close(self.root_fd)

    def add_mount(self, dest: str, source: str, read_only: bool, volume: bool) -> None:
        """Mount ``source`` (a host path, followed as mount(2) follows it) at ``dest``, resolved in the tree as
        it is so far (dockerd resolves each destination in scope, after the mounts before it)."""
        try:
            fd = os.open(source, os.O_PATH | os.O_CLOEXEC)
        except OSError as exc:
            log.debug("mount source %s: %s", source, exc)
            return
        try:
            res = self.resolve(os.fsencode(dest))
            res.close()
        except (OSError, _NotADirectory, DockwrightError) as exc:
            log.debug("mount point %s: %s", dest, exc)
            os.close(fd)
            return
        old = self.mounts.pop(tuple(res.comps), None)
        if old is not None:
            os.close(old.fd)
        self.mounts[tuple(res.comps)] = _Mount(fd, os.fstat(fd), read_only, volume)

    def _lookup(self, parent_fd: int | None, parent_kind: str,
                key: tuple[bytes, ...]) -> tuple[str, os.stat_result | None, _Mount | None]:
        """What is at ``key`` below a directory (kind ``dir``, ``link``, ``other`` or ``missing``)."""
        m = self.mounts.get(key)
        if m is not None:
            return ("dir" if stat.S_ISDIR(m.st.st_mode) else "other"), m.st, m
        if parent_kind == "missing":
            return "missing", None, None
        if parent_kind != "dir":
            raise _NotADirectory(f"lstat {self.shown}{_show(key)}: not a directory")
        assert parent_fd is not None
        try:
            st = os.stat(key[-1], dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return "missing", None, None
        except NotADirectoryError:
            raise _NotADirectory(f"lstat {self.shown}{_show(key)}: not a directory") from None
        if stat.S_ISDIR(st.st_mode):
            return "dir", st, None
        if stat.S_ISLNK(st.st_mode):
            return "link", st, None
        return "other", st, None

    def resolve(self, path: bytes) -> _Resolved:
        """``FollowSymlinkInScope``: ``path`` with every symlink followed inside the root (missing components
        are kept as they are).  The caller closes the result."""
        parts = deque(_clean(b"/" + path).split(b"/"))
        chain: list[tuple[bytes, str, int | None, _Mount | None]] = []  # (name, kind, O_PATH fd, mount)
        n = 0
        try:
            while parts:
                n += 1
                if n > _MAX_ITERATIONS:
                    shown = os.fsdecode(_clean(b"/" + path))
                    raise SystemError_(f"evalSymlinksInScope: too many links in {self.shown}{shown}")
                p = parts.popleft()
                if p in (b"", b"."):
                    continue
                if p == b"..":
                    if chain:
                        fd = chain.pop()[2]
                        if fd is not None:
                            os.close(fd)
                    continue
                parent_kind = chain[-1][1] if chain else "dir"
                parent_fd = chain[-1][2] if chain else self.root_fd
                key = tuple(c[0] for c in chain) + (p,)
                kind, _st, mount = self._lookup(parent_fd, parent_kind, key)
                if kind == "link":
                    assert parent_fd is not None
                    target = os.readlink(p, dir_fd=parent_fd)
                    if target.startswith(b"/"):
                        for _, _, fd, _ in chain:
                            if fd is not None:
                                os.close(fd)
                        chain = []
                    parts.extendleft(reversed([*target.split(b"/"), b""]))
                    continue
                fd = None
                if kind == "dir":
                    if mount is not None:
                        fd = os.open(".", _O_PATH_DIR, dir_fd=mount.fd)
                    else:
                        assert parent_fd is not None
                        fd = os.open(p, _O_PATH_DIR, dir_fd=parent_fd)
                chain.append((p, kind, fd, mount))
            if chain:
                name, kind, fd, mount = chain.pop()
                return _Resolved([c[0] for c in chain] + [name], kind, fd, mount)
            return _Resolved([], "dir", os.dup(self.root_fd), None)
        finally:
            for _, _, fd, _ in chain:
                if fd is not None:
                    os.close(fd)

    def child(self, parent: _Resolved, name: bytes) -> _Node | None:
        """The entry ``name`` of the resolved directory ``parent``, not followed; None if there is none."""
        key = tuple(parent.comps) + (name,)
        kind, st, mount = self._lookup(parent.fd, parent.kind, key)
        if kind == "missing":
            return None
        assert st is not None
        return _Node(key, st, parent.fd, name, mount)

    def node_of(self, res: _Resolved) -> _Node:
        """The resolved directory ``res`` itself as a node (``res`` stays open while the node is used)."""
        assert res.fd is not None
        if res.mount is not None:
            return _Node(tuple(res.comps), res.mount.st, mount=res.mount)
        return _Node(tuple(res.comps), os.fstat(res.fd), res.fd, b".")

    def read_small(self, path: bytes) -> str | None:
        """The text of a regular file of the container (``/etc/passwd``), symlinks followed inside; None if
        there is no such file."""
        try:
            res = self.resolve(path)
        except (OSError, _NotADirectory, DockwrightError):
            return None
        try:
            if not res.comps:
                return None
            parent = self.resolve(b"/" + b"/".join(res.comps[:-1]))
            try:
                node = self.child(parent, res.comps[-1])
                if node is None or not stat.S_ISREG(node.st.st_mode):
                    return None
                fd = node.open_file()
                try:
                    data = os.read(fd, _ETC_FILE_LIMIT)
                finally:
                    os.close(fd)
            finally:
                parent.close()
        except (OSError, _NotADirectory, DockwrightError):
            return None
        finally:
            res.close()
        return data.decode("utf-8", "replace")


def _open_view(rootfs: str, mounts: Iterable[tuple[str, str, bool, bool]]) -> _View:
    view = _View(rootfs)
    try:
        for dest, source, read_only, volume in mounts:
            view.add_mount(dest, source, read_only, volume)
    except BaseException:
        view.close()
        raise
    return view


# --------------------------------------------------------------------------------------------------
# stat (HEAD) and the path an archive starts at


@dataclass(slots=True)
class _Target:
    stat: PathStat
    node: _Node
    top_name: bytes  # the name of the top entry in the tar ("" for the root: its entries are "/", "/bin/"…)
    held: list[_Resolved]  # what the node's parent descriptor belongs to

    def close(self) -> None:
        for r in self.held:
            r.close()


def _locate(view: _View, path: str, ref: str) -> _Target:
    """dockerd's ``ResolvePath`` and ``StatPath``: the directory part resolved in scope, the last element not
    followed (a trailing ``/`` or ``/.`` makes it part of the directory)."""
    abs_path = _abs_path(path)
    dir_part, base = _split(abs_path)
    try:
        parent = view.resolve(dir_part)
    except _NotADirectory as exc:
        raise SystemError_(str(exc)) from None
    try:
        shown = f"{view.shown}{_show(parent.comps) if parent.comps else ''}/{os.fsdecode(base)}"
        if parent.kind == "missing":
            raise NotFound(f"Could not find the file {path} in container {ref}")
        if base in (b"", b"."):
            if parent.kind != "dir":
                raise SystemError_(f"lstat {shown}: not a directory")
            node = view.node_of(parent)
        else:
            try:
                found = view.child(parent, base)
            except _NotADirectory:
                raise SystemError_(f"lstat {shown}: not a directory") from None
            if found is None:
                raise NotFound(f"Could not find the file {path} in container {ref}")
            node = found
        st = node.st
        link_target = ""
        if stat.S_ISLNK(st.st_mode):
            try:
                full = view.resolve(abs_path)
            except _NotADirectory as exc:
                raise SystemError_(str(exc)) from None
            full.close()
            link_target = _show(full.comps)
        name = _base(abs_path)
        pstat = PathStat(name=_text(name), size=st.st_size, mode=go_file_mode(st.st_mode),
                         mtime=rfc3339_nano(st.st_mtime_ns), link_target=link_target)
        return _Target(pstat, node, b"" if name == b"/" else name, [parent])
    except BaseException:
        parent.close()
        raise


# --------------------------------------------------------------------------------------------------
# the tar (GET)


class _Owners:
    """User and group names for the headers, from the container's ``/etc/passwd`` and ``/etc/group`` (root
    and nobody when those files do not name them, as the host's name service does for dockerd)."""

    _USERS = {0: "root", 65534: "nobody"}
    _GROUPS = {0: "root", 65534: "nogroup"}

    def __init__(self, view: _View) -> None:
        self._view = view
        self._users: dict[int, str] | None = None
        self._groups: dict[int, str] | None = None

    @staticmethod
    def _parse(text: str | None, fallback: dict[int, str]) -> dict[int, str]:
        out: dict[int, str] = {}
        for line in (text or "").splitlines():
            parts = line.split(":")
            if len(parts) < 3 or not parts[0]:
                continue
            try:
                ident = int(parts[2])
            except ValueError:
                continue
            out.setdefault(ident, parts[0])
        for ident, name in fallback.items():
            out.setdefault(ident, name)
        return out

    def user(self, uid: int) -> str:
        if self._users is None:
            self._users = self._parse(self._view.read_small(b"/etc/passwd"), self._USERS)
        return self._users.get(uid, "")

    def group(self, gid: int) -> str:
        if self._groups is None:
            self._groups = self._parse(self._view.read_small(b"/etc/group"), self._GROUPS)
        return self._groups.get(gid, "")


def _capability(fd: int) -> list[tuple[bytes, bytes]]:
    """``security.capability`` as moby's ``ReadSecurityXattrToTarHeader`` keeps it (v3 written as v2)."""
    try:
        value = bytearray(os.getxattr(fd, _CAPABILITY))
    except OSError:
        return []
    if len(value) > 3 and value[3] == 3:
        value[3] = 2
        value = value[:20]
    return [(_CAPABILITY.encode(), bytes(value))]


@dataclass(slots=True)
class _Level:
    """A directory being archived: where it is, its remaining children, and how to reopen it."""

    node: _Node
    prefix: bytes  # the name of its entries so far, with a trailing "/"
    names: list[bytes]  # children still to write, last first
    fd: int | None


class _TarWriter:
    """Writes the tar of a target, depth-first, in chunks of about ``_CHUNK`` bytes."""

    def __init__(self, view: _View, target: _Target) -> None:
        self.view = view
        self.target = target
        self.owners = _Owners(view)
        self.seen: dict[tuple[int, int], bytes] = {}
        self.buf = bytearray()
        self.levels: list[_Level] = []

    def close(self) -> None:
        for level in self.levels:
            if level.fd is not None:
                os.close(level.fd)
        self.levels.clear()

    def _header(self, node: _Node, name: bytes, typeflag: bytes, size: int = 0, linkname: bytes = b"",
                xattrs: list[tuple[bytes, bytes]] | None = None) -> bytes:
        st = node.st
        dev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if typeflag in (b"3", b"4") else (0, 0)
        head = entry_header(name, typeflag, st.st_mode, st.st_uid, st.st_gid, size, st.st_mtime_ns // 1_000_000_000,
                       linkname=linkname, devmajor=dev[0], devminor=dev[1], xattrs=xattrs or ())
        return with_owner_names(head, self.owners.user(st.st_uid), self.owners.group(st.st_gid))

    def _entry(self, node: _Node, name: bytes) -> Iterator[bytes]:
        """The entry of ``node`` (not a directory's children); nothing for what tar cannot hold."""
        st = node.st
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            self.buf += self._header(node, name + b"/", b"5")
            return
        if stat.S_ISSOCK(mode):
            log.debug("%s: a socket is left out of the archive", os.fsdecode(name))
            return
        if st.st_nlink > 1:
            ident = (st.st_dev, st.st_ino)
            first = self.seen.get(ident)
            if first is not None:
                self.buf += self._header(node, name, b"1", linkname=first)
                return
            self.seen[ident] = name
        if stat.S_ISREG(mode):
            yield from self._file(node, name)
        elif stat.S_ISLNK(mode):
            self.buf += self._header(node, name, b"2", linkname=node.readlink())
        elif stat.S_ISFIFO(mode):
            self.buf += self._header(node, name, b"6")
        elif stat.S_ISCHR(mode):
            self.buf += self._header(node, name, b"3")
        elif stat.S_ISBLK(mode):
            self.buf += self._header(node, name, b"4")

    def _file(self, node: _Node, name: bytes) -> Iterator[bytes]:
        fd = node.open_file()  # (an OSError here: nothing of the entry is written yet)
        try:
            size = node.st.st_size
            self.buf += self._header(node, name, b"0", size=size, xattrs=_capability(fd))
            left = size
            while left > 0:
                if len(self.buf) >= _CHUNK:
                    yield bytes(self.buf)
                    self.buf.clear()
                try:
                    chunk = os.read(fd, min(_READ_SIZE, left))
                except OSError as exc:  # the header is out: the archive cannot go on
                    raise SystemError_(f"reading {os.fsdecode(name)}: {exc.strerror or exc}") from exc
                if not chunk:  # it shrank meanwhile: the header's size is kept, the rest is zeros
                    log.warning("%s shrank while it was archived", os.fsdecode(name))
                    self.buf += bytes(left)
                    break
                self.buf += chunk
                left -= len(chunk)
            if size % 512:
                self.buf += bytes(512 - size % 512)
        finally:
            os.close(fd)

    def _fd(self, i: int) -> int:
        """The descriptor of level ``i``, reopened (from the nearest open level above) if it was closed."""
        levels = self.levels
        if levels[i].fd is not None:
            return levels[i].fd  # type: ignore[return-value]
        j = i
        while levels[j].fd is None:
            j -= 1
        for k in range(j + 1, i + 1):
            node = levels[k].node
            if node.mount is None:
                node.parent = levels[k - 1].fd
            levels[k].fd = node.open_dir()
        self._trim()
        return levels[i].fd  # type: ignore[return-value]

    def _trim(self) -> None:
        open_levels = [lv for lv in self.levels[1:] if lv.fd is not None]
        for lv in open_levels[: max(0, len(open_levels) - _MAX_OPEN_DIRS)]:
            os.close(lv.fd)  # type: ignore[arg-type]
            lv.fd = None

    def _push(self, node: _Node, prefix: bytes) -> None:
        fd = node.open_dir()
        try:
            names = sorted(os.fsencode(n) for n in os.listdir(fd))
        except BaseException:
            os.close(fd)
            raise
        names.reverse()
        self.levels.append(_Level(node, prefix, names, fd))
        self._trim()

    def chunks(self) -> Iterator[bytes]:
        top = self.target.node
        name = self.target.top_name
        try:
            try:
                yield from self._entry(top, name)
                if stat.S_ISDIR(top.st.st_mode):
                    self._push(top, name + b"/")
            except OSError as exc:  # gone since it was found: an empty archive, as dockerd's walk skips it
                log.warning("cannot add %s to the archive: %s", os.fsdecode(name or b"/"), exc)
            while self.levels:
                i = len(self.levels) - 1
                level = self.levels[i]
                if not level.names:
                    self.levels.pop()
                    if level.fd is not None:
                        os.close(level.fd)
                    continue
                child = level.names.pop()
                parent_fd = self._fd(i)
                key = level.node.key + (child,)
                mount = self.view.mounts.get(key)
                try:
                    if mount is not None:
                        node = _Node(key, mount.st, mount=mount)
                    else:
                        node = _Node(key, os.stat(child, dir_fd=parent_fd, follow_symlinks=False), parent_fd, child)
                    entry_name = level.prefix + child
                    yield from self._entry(node, entry_name)
                    if stat.S_ISDIR(node.st.st_mode):
                        self._push(node, entry_name + b"/")
                except OSError as exc:  # gone or unreadable meanwhile: left out, as dockerd's archiver does
                    log.warning("cannot add %s to the archive: %s", os.fsdecode(level.prefix + child), exc)
                if len(self.buf) >= _CHUNK:
                    yield bytes(self.buf)
                    self.buf.clear()
            self.buf += bytes(1024)
            yield bytes(self.buf)
            self.buf.clear()
        finally:
            self.close()


# --------------------------------------------------------------------------------------------------
# extraction (PUT)


class _GoTarInfo(tarfile.TarInfo):
    """A member as Go's ``archive/tar`` reads it: a PAX global header is an entry of its own (which
    ``archive.Unpack`` skips), never applied to the entries after it as :mod:`tarfile` would."""

    def _proc_pax(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        if self.type == tarfile.XGLTYPE:
            tarfile_.fileobj.read(self._block(self.size))  # type: ignore[attr-defined,union-attr]
            return self.fromtarfile(tarfile_)
        return super()._proc_pax(tarfile_)  # type: ignore[misc,no-any-return]


def _within(comps: list[bytes], base: list[bytes]) -> bool:
    return comps[: len(base)] == base


def _join(base: list[bytes], name: bytes) -> list[bytes]:
    """``filepath.Join(base, name)`` in components (``..`` stops at the root)."""
    return _comps(_clean(b"/" + b"/".join(base) + b"/" + name))


# a hard link whose mode and times are left as the file's (see _CopyExtractor.entry)
_LINKS_UNCHANGED = ExtractRules(link_modes=False)


class _CopyExtractor(TarExtractor):
    """dockerd's ``archive.Unpack`` into ``dest`` (container path components) with the confined extractor:
    its checks and words first, then the entry renamed into the extractor's root (``fs_dest`` there)."""

    def __init__(self, root_fd: int, dest: list[bytes], fs_dest: list[bytes], *, no_overwrite: bool,
                 owner: tuple[int, int] | None) -> None:
        super().__init__(root_fd, ARCHIVE_RULES)
        self.dest = dest
        self.fs_dest = fs_dest
        self.no_overwrite = no_overwrite
        self.owner = owner
        self.dest_shown = _show(dest)

    def _fs_name(self, comps: list[bytes]) -> str:
        return os.fsdecode(b"/".join(self.fs_dest + comps[len(self.dest) :]))

    def entry(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = _clean(os.fsencode(member.name))
        full = _join(self.dest, name)
        if not _within(full, self.dest):  # ("/" takes everything: "../x" is "/x" there, as for dockerd)
            raise _Refused(f"{go_quote(os.fsdecode(name))} is outside of {go_quote(self.dest_shown)}")
        path_shown = _show(full)
        if member.issym():
            target = _join(full[:-1], os.fsencode(member.linkname))
            if not _within(target, self.dest):
                raise _Refused(f"invalid symlink {go_quote(path_shown)} -> {go_quote(member.linkname)}")
        elif member.islnk():
            target = _join(self.dest, os.fsencode(member.linkname))
            if not _within(target, self.dest) or target == self.dest:
                raise _Refused(f"invalid hardlink {go_quote(_show(target))} -> {go_quote(member.linkname)}")
            # moby's handleLChmod and the Chtimes after it look at the link's target by its name as written, from
            # the chroot's working directory (the container's root), not from the destination: the header's mode
            # and times are applied only when that names an existing non-symlink
            self.rules = ARCHIVE_RULES if self._plain_at_root(os.fsencode(member.linkname)) else _LINKS_UNCHANGED
            member.linkname = self._fs_name(target)
        fs_name = self._fs_name(full)
        fs_comps = _comps(os.fsencode(fs_name))
        if fs_comps and (self.no_overwrite or name == b"."):
            parent = self.walker.resolve(fs_comps[:-1], go_quote(path_shown))
            old = self._lstat(parent, fs_comps[-1])
            if old is not None:
                is_dir = stat.S_ISDIR(old.st_mode)
                if self.no_overwrite and is_dir and not member.isdir():
                    raise _Refused(f"cannot overwrite directory {go_quote(path_shown)} with non-directory "
                                   f"{go_quote(self.dest_shown)}")
                if self.no_overwrite and not is_dir and member.isdir():
                    raise _Refused(f"cannot overwrite non-directory {go_quote(path_shown)} with directory "
                                   f"{go_quote(self.dest_shown)}")
                if is_dir and name == b".":
                    return  # the destination itself: left as it is
        if self.owner is not None:
            member.uid, member.gid = self.owner
        member.name = fs_name
        try:
            super().entry(tf, member)
        finally:
            self.rules = ARCHIVE_RULES

    def _plain_at_root(self, name: bytes) -> bool:
        """Whether ``name``, taken from the extraction's root, is there and not a symlink (``os.Lstat``)."""
        comps = _comps(_clean(b"/" + name))
        if not comps:
            return True
        try:
            parent = self.links.resolve(comps[:-1], "")
            st = self._lstat(parent, comps[-1])
        except (OSError, DockwrightError):
            return False
        return st is not None and not stat.S_ISLNK(st.st_mode)


class _Refused(Exception):
    """One of ``archive.Unpack``'s own errors (its words)."""


def _tar_error(exc: BaseException) -> str:
    """Go's ``archive/tar`` words for what :mod:`tarfile` says."""
    text = str(exc)
    if isinstance(exc, EOFError) or any(w in text for w in ("unexpected end", "truncated", "EOF")):
        return "unexpected EOF"
    if any(w in text for w in ("bad checksum", "invalid header", "invalid")):
        return "archive/tar: invalid tar header"
    return text


def _unpack(ext: _CopyExtractor, body: DecompressedReader) -> None:
    try:
        try:
            tf = tarfile.open(fileobj=body, mode="r|", bufsize=64 * 1024,  # type: ignore[call-overload]
                              tarinfo=_GoTarInfo, encoding="utf-8", errors="surrogateescape")
        except tarfile.ReadError as exc:
            if "empty file" not in str(exc):
                raise
            return  # no entry at all: nothing to do, as for Go's reader
        data_end = 0  # where the last body ends
        while True:
            try:
                member = tf.next()
            except tarfile.ReadError as exc:
                if str(exc) == "unexpected end of data" and tf.fileobj.pos >= data_end:  # type: ignore[attr-defined]
                    break  # the stream ends in the padding of the last body: the end, for Go's reader
                raise
            if member is None:
                break
            tf.members.clear()  # stream mode would keep every header
            data_end = member.offset_data + (member.size if member.isreg() else 0)
            ext.entry(tf, member)
        # tarfile takes a header cut short by the end of the stream for the end of the archive; Go does not
        if 0 < tf.fileobj.pos - tf.offset < tarfile.BLOCKSIZE:  # type: ignore[attr-defined]
            raise EOFError("unexpected EOF")
        ext.finish_dirs()
        body.drain()
    except _Refused as exc:
        raise SystemError_(_EXIT + str(exc)) from None
    except DockwrightError as exc:
        text = str(exc)
        raise SystemError_(_EXIT + ("unexpected EOF" if text.startswith("unexpected EOF") else text)) from exc
    except (tarfile.TarError, EOFError, UnicodeError) as exc:
        raise SystemError_(_EXIT + _tar_error(exc)) from exc
    except OSError as exc:  # Go's words for an errno are in lower case
        text = exc.strerror[:1].lower() + exc.strerror[1:] if exc.strerror else str(exc)
        raise SystemError_(_EXIT + text) from exc


def _extract_sync(view: _View, c: Container, ref: str, path: str, body: Iterable[bytes], *,
                  no_overwrite: bool, copy_uid_gid: bool, read_only_rootfs: bool) -> None:
    abs_path = _abs_path(path)
    try:
        res = view.resolve(abs_path)  # the last element followed too: a symlink to a directory will do
    except _NotADirectory as exc:
        raise SystemError_(str(exc)) from None
    try:
        if res.kind == "missing":
            raise NotFound(f"Could not find the file {path} in container {ref}")
        if res.kind != "dir":
            raise SystemError_("extraction point is not a directory")
        # the mount holding the destination (the deepest mount point above it)
        holder: tuple[bytes, ...] | None = None
        for key in view.mounts:
            if _within(res.comps, list(key)) and (holder is None or len(key) > len(holder)):
                holder = key
        volume = view.mounts[holder] if holder is not None else None
        if volume is not None and volume.volume and volume.read_only:
            raise SystemError_("mounted volume is marked read-only")
        if (volume is None or not volume.volume) and read_only_rootfs:
            raise SystemError_("container rootfs is marked read-only")
        owner = None
        user = str(c.config.get("User") or "")
        if copy_uid_gid and user:
            eu = get_exec_user(user, view.read_small(b"/etc/passwd"), view.read_small(b"/etc/group"))
            owner = (eu.uid, eu.gid)
        if volume is not None:  # written into the bind's source, the bind's root as the extraction's root
            fs_dest = res.comps[len(holder or ()) :]
            root_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=volume.fd)
        else:
            root_fd, fs_dest = os.dup(view.root_fd), list(res.comps)
        try:
            ext = _CopyExtractor(root_fd, list(res.comps), list(fs_dest), no_overwrite=no_overwrite, owner=owner)
        finally:
            os.close(root_fd)
        try:
            _unpack(ext, DecompressedReader(body))
        finally:
            ext.close()
    finally:
        res.close()


# --------------------------------------------------------------------------------------------------
# the service side: the rootfs held, blocking work in threads


async def _in_thread(fn: Callable[[], T], on_cancel: Callable[[], None]) -> T:
    """Run ``fn`` in a thread of its own (not the shared pool: an upload may keep it for long); if the
    caller is cancelled, ``on_cancel`` stops it and the thread's end is awaited before the cancellation goes
    on (the rootfs it writes to stays mounted until then)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def done(result: Any, exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            loop.call_soon_threadsafe(done, None, exc)
        else:
            loop.call_soon_threadsafe(done, result, None)

    threading.Thread(target=run, name="container-fs", daemon=True).start()
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        if not fut.done():
            on_cancel()
            await asyncio.wait([fut])
            if not fut.cancelled():
                fut.exception()  # retrieved: not logged as never retrieved
        raise


def _mount_list(containers: ContainersService, c: Container) -> list[tuple[str, str, bool, bool]]:
    """What dockerd's ``setupMounts`` mounts over the rootfs for a file operation, in order, as ``(destination,
    host source, read-only, is a volume)``: the container's binds and volumes (parents first, as ``sortMounts``),
    then the ``/etc/resolv.conf``, ``/etc/hostname`` and ``/etc/hosts`` of its last start that no bind covers.
    Blocking (it looks at the bundle)."""
    out: list[tuple[str, str, bool, bool]] = []
    records = getattr(c, "mounts", None)
    if records:  # the container's mount points (binds and volumes, with each volume's host path)
        for mp in records:
            dest, source = str(mp.get("Destination") or ""), str(mp.get("Source") or "")
            if mp.get("Type") in ("bind", "volume") and dest and source:
                out.append((dest, source, not mp.get("RW", True), True))
    else:  # a record of binds only
        hc = c.host_config
        for b in hc.get("Binds") or []:
            parts = str(b).split(":")
            if len(parts) >= 2 and parts[0].startswith("/"):
                out.append((parts[1], parts[0], len(parts) > 2 and "ro" in parts[2].split(","), True))
        for m in hc.get("Mounts") or []:
            if isinstance(m, dict) and (m.get("Type") or "bind") == "bind" and m.get("Source") and m.get("Target"):
                out.append((str(m["Target"]), str(m["Source"]), bool(m.get("ReadOnly")), True))
    out.sort(key=lambda m: _clean(os.fsencode(m[0])).count(b"/"))
    dests = {_clean(os.fsencode(m[0])) for m in out}
    bundle = containers._bundle(c)  # noqa: SLF001 - where the etc files of its start are
    for name, dest in (("resolv.conf", "/etc/resolv.conf"), ("hostname", "/etc/hostname"), ("hosts", "/etc/hosts")):
        if os.fsencode(dest) not in dests and (bundle / name).is_file():
            out.append((dest, str(bundle / name), False, False))
    return out


async def stat_path(containers: ContainersService, ref: str, path: str) -> PathStat:
    """``HEAD /containers/{ref}/archive?path=``: the stat of ``path`` in the container."""
    async with containers.rootfs_for_files(ref) as (c, rootfs):

        def work() -> PathStat:
            view = _open_view(str(rootfs), _mount_list(containers, c))
            try:
                target = _locate(view, path, ref)
                target.close()
                return target.stat
            finally:
                view.close()

        return await asyncio.to_thread(work)


async def archive_path(containers: ContainersService, ref: str, path: str) -> tuple[PathStat, AsyncIterator[bytes]]:
    """``GET /containers/{ref}/archive?path=``: the stat of ``path`` and its tar, as chunks.  Errors (no such
    container or path) raise here; the container's rootfs stays mounted (and its removal waits) until the
    chunks are all read or the iterator is closed."""
    hold = containers.rootfs_for_files(ref)
    c, rootfs = await hold.__aenter__()
    try:

        def start() -> tuple[_View, _Target]:
            view = _open_view(str(rootfs), _mount_list(containers, c))
            try:
                return view, _locate(view, path, ref)
            except BaseException:
                view.close()
                raise

        work = asyncio.ensure_future(asyncio.to_thread(start))
        try:
            view, target = await asyncio.shield(work)
        except asyncio.CancelledError:  # what the thread opens is closed once it is done
            work.add_done_callback(_close_started)
            raise
    except BaseException as exc:
        await hold.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    containers._event(c, "archive-path")  # noqa: SLF001 - dockerd logs it once the archive is set up
    return target.stat, _ArchiveStream(view, target, hold)


def _close_started(work: asyncio.Future[tuple[_View, _Target]]) -> None:
    if work.cancelled() or work.exception() is not None:
        return
    view, target = work.result()
    target.close()
    view.close()


class _ArchiveStream:
    """The chunks of a tar being written in a worker thread; :meth:`aclose` (also at the end, and safe to
    call at any time, even before the first chunk) closes the descriptors and lets the rootfs go."""

    def __init__(self, view: _View, target: _Target, hold: Any) -> None:
        self._view = view
        self._target = target
        self._hold = hold
        self._it = _TarWriter(view, target).chunks()
        self._closed = False
        self._pending: asyncio.Future[bytes | None] | None = None  # the chunk the thread is making

    def __aiter__(self) -> _ArchiveStream:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        self._pending = asyncio.ensure_future(asyncio.to_thread(next, self._it, None))
        try:
            chunk = await asyncio.shield(self._pending)
        except BaseException:
            await self.aclose()
            raise
        if chunk is None:
            await self.aclose()
            raise StopAsyncIteration
        return chunk

    def _close_sync(self) -> None:
        try:
            self._it.close()  # type: ignore[attr-defined]
        finally:
            self._target.close()
            self._view.close()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            pending = self._pending
            if pending is not None and not pending.done():
                # the thread finishes its chunk before its descriptors are closed (never under its feet)
                await asyncio.wait([pending])
            if pending is not None and not pending.cancelled():
                pending.exception()  # retrieved: an error after the client left is nobody's to see
            await asyncio.shield(asyncio.to_thread(self._close_sync))
        finally:
            await self._hold.__aexit__(None, None, None)


async def extract_to_dir(containers: ContainersService, ref: str, path: str, body: AsyncIterator[bytes], *,
                         no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False) -> None:
    """``PUT /containers/{ref}/archive?path=``: extract the tar ``body`` into the directory ``path``."""
    async with containers.rootfs_for_files(ref) as (c, rootfs):
        loop = asyncio.get_running_loop()
        pulling: list[Any] = []

        def chunks() -> Iterator[bytes]:
            while True:
                fut = asyncio.run_coroutine_threadsafe(_next_chunk(body), loop)
                pulling[:] = [fut]
                chunk = fut.result()
                if chunk is None:
                    return
                yield chunk

        def work() -> None:
            view = _open_view(str(rootfs), _mount_list(containers, c))
            try:
                _extract_sync(view, c, ref, path, chunks(), no_overwrite=no_overwrite_dir_non_dir,
                              copy_uid_gid=copy_uid_gid,
                              read_only_rootfs=bool(c.host_config.get("ReadonlyRootfs")))
            finally:
                view.close()

        def stop() -> None:
            for fut in pulling:
                fut.cancel()

        await _in_thread(work, stop)
        containers._event(c, "extract-to-dir")  # noqa: SLF001


async def _next_chunk(body: AsyncIterator[bytes]) -> bytes | None:
    async for chunk in body:
        if chunk:
            return chunk
    return None

