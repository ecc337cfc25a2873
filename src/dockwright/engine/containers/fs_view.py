"""The container's tree for ``docker cp`` (:mod:`.fs`): confined path resolution and the stat of a path.

This module owns :class:`ContainerView` (the container's root and the mounts over it, every path resolved one
component at a time with ``O_NOFOLLOW``, symlinks followed inside the root as moby's ``FollowSymlinkInScope``),
:func:`locate` (dockerd's ``ResolvePath`` and ``StatPath``), :class:`PathStat` and Go's path and file mode
helpers on byte strings.
"""

from __future__ import annotations

import base64
import errno
import logging
import os
import stat
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ...errors import DockwrightError, NotFound, SystemError_
from ...oci.gojson import go_dumps, rfc3339_nano

__all__ = ["go_file_mode", "PathStat", "clean_path", "base_name", "split_path", "container_abs_path", "path_comps",
           "go_text", "show_comps", "Mount", "Node", "NotADirectory", "Resolved", "ContainerView", "open_view",
           "Target", "locate"]

log = logging.getLogger("dockwright.container_fs")

_O_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_MAX_ITERATIONS = 255  # FollowSymlinkInScope's maxIter (path elements and links together)
_ETC_FILE_LIMIT = 4 << 20  # /etc/passwd and /etc/group are read up to this size

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
        """The JSON dockerd writes for it."""
        return {"name": self.name, "size": self.size, "mode": self.mode, "mtime": self.mtime,
                "linkTarget": self.link_target}

    def header_value(self) -> str:
        """The ``X-Docker-Container-Path-Stat`` header: base64 of the JSON as Go's encoder writes it."""
        return base64.b64encode(go_dumps(self.to_json())).decode("ascii")


# --------------------------------------------------------------------------------------------------
# Go's path/filepath on byte strings


def clean_path(p: bytes) -> bytes:
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


def base_name(p: bytes) -> bytes:
    """``filepath.Base``."""
    if not p:
        return b"."
    p = p.rstrip(b"/")
    if not p:
        return b"/"
    return p.rsplit(b"/", 1)[-1]


def split_path(p: bytes) -> tuple[bytes, bytes]:
    """``filepath.Split``: everything up to the last ``/`` (included), and the rest."""
    i = p.rfind(b"/")
    return p[: i + 1], p[i + 1 :]


def _preserve(cleaned: bytes, original: bytes) -> bytes:
    """``archive.PreserveTrailingDotOrSeparator``."""
    if base_name(cleaned) != b"." and base_name(original) == b".":
        if not cleaned.endswith(b"/"):
            cleaned += b"/"
        cleaned += b"."
    if not cleaned.endswith(b"/") and original.endswith(b"/"):
        cleaned += b"/"
    return cleaned


def container_abs_path(path: str) -> bytes:
    """The path as dockerd takes it in the container: absolute, cleaned, a trailing ``/`` or ``/.`` kept."""
    raw = os.fsencode(path)
    return _preserve(clean_path(b"/" + raw), raw)


def path_comps(p: bytes) -> list[bytes]:
    """The components of a cleaned path (absolute or relative; ``/`` and ``.`` have none)."""
    return [c for c in p.split(b"/") if c and c != b"."]


def go_text(b: bytes) -> str:
    """Bytes as Go puts a string into JSON: invalid UTF-8 becomes U+FFFD."""
    return b.decode("utf-8", "replace")


def show_comps(comps: list[bytes] | tuple[bytes, ...]) -> str:
    """Path components as an absolute path, for messages."""
    return os.fsdecode(b"/" + b"/".join(comps))


# --------------------------------------------------------------------------------------------------
# the container's tree, as its processes see it


@dataclass(slots=True)
class Mount:
    """A mount over the container's rootfs: the O_PATH descriptor of its source and its options."""

    fd: int  # O_PATH descriptor of the source (a directory or a file)
    st: os.stat_result
    read_only: bool
    volume: bool  # a bind of the container (the etc files of a start are not)


@dataclass(slots=True)
class Node:
    """An entry of the container's tree, never followed: ``name`` in the directory ``parent`` (a descriptor
    owned by whoever made the node), or the source of a mount (``mount``)."""

    key: tuple[bytes, ...]  # its path in the container, every symlink before the last component resolved
    st: os.stat_result
    parent: int | None = None
    name: bytes = b""
    mount: Mount | None = None

    def open_dir(self) -> int:
        """A descriptor of this directory (checked to be the entry that was looked up)."""
        if self.mount is not None:
            return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.mount.fd)
        assert self.parent is not None
        fd = os.open(self.name, _O_READ_DIR, dir_fd=self.parent)
        return _same_or_close(fd, self.st)

    def open_file(self) -> int:
        """A descriptor of this file, read-only (checked to be the entry that was looked up)."""
        if self.mount is not None:
            fd = os.open(f"/proc/self/fd/{self.mount.fd}", os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
        else:
            assert self.parent is not None
            fd = os.open(self.name, _O_READ_FILE, dir_fd=self.parent)
        return _same_or_close(fd, self.st)

    def readlink(self) -> bytes:
        """The target of this symlink."""
        assert self.parent is not None  # a mount is never a symlink (its source was followed)
        return os.readlink(self.name, dir_fd=self.parent)


def _same_or_close(fd: int, st: os.stat_result) -> int:
    """``fd`` if it is the entry ``st`` describes (not something put there since); closed otherwise."""
    got = os.fstat(fd)
    if (got.st_dev, got.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise FileNotFoundError(errno.ENOENT, "replaced while being read")
    return fd


class NotADirectory(Exception):
    """``lstat <host path>: not a directory``, as dockerd's error reads (the host path of the entry)."""


@dataclass(slots=True)
class Resolved:
    """A path resolved in the container: its components, and what is there (``kind`` ``dir`` with an O_PATH
    descriptor owned by the holder, ``missing``, or ``other`` for an existing non-directory)."""

    comps: list[bytes]
    kind: str
    fd: int | None
    mount: Mount | None

    def close(self) -> None:
        """Close the directory descriptor, if any."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class ContainerView:
    """The container's tree from a descriptor of its root, with mount points over it.  Blocking."""

    def __init__(self, rootfs: str) -> None:
        self.shown = rootfs.rstrip("/")  # the rootfs' host path, for dockerd's messages
        self.root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.mounts: dict[tuple[bytes, ...], Mount] = {}

    def close(self) -> None:
        """Close the mounts' and the root's descriptors."""
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
        except (OSError, NotADirectory, DockwrightError) as exc:
            log.debug("mount point %s: %s", dest, exc)
            os.close(fd)
            return
        old = self.mounts.pop(tuple(res.comps), None)
        if old is not None:
            os.close(old.fd)
        self.mounts[tuple(res.comps)] = Mount(fd, os.fstat(fd), read_only, volume)

    def _lookup(self, parent_fd: int | None, parent_kind: str,
                key: tuple[bytes, ...]) -> tuple[str, os.stat_result | None, Mount | None]:
        """What is at ``key`` below a directory (kind ``dir``, ``link``, ``other`` or ``missing``)."""
        m = self.mounts.get(key)
        if m is not None:
            return ("dir" if stat.S_ISDIR(m.st.st_mode) else "other"), m.st, m
        if parent_kind == "missing":
            return "missing", None, None
        if parent_kind != "dir":
            raise NotADirectory(f"lstat {self.shown}{show_comps(key)}: not a directory")
        assert parent_fd is not None
        try:
            st = os.stat(key[-1], dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return "missing", None, None
        except NotADirectoryError:
            raise NotADirectory(f"lstat {self.shown}{show_comps(key)}: not a directory") from None
        if stat.S_ISDIR(st.st_mode):
            return "dir", st, None
        if stat.S_ISLNK(st.st_mode):
            return "link", st, None
        return "other", st, None

    def resolve(self, path: bytes) -> Resolved:
        """``FollowSymlinkInScope``: ``path`` with every symlink followed inside the root (missing components
        are kept as they are).  The caller closes the result."""
        parts = deque(clean_path(b"/" + path).split(b"/"))
        chain: list[tuple[bytes, str, int | None, Mount | None]] = []  # (name, kind, O_PATH fd, mount)
        n = 0
        try:
            while parts:
                n += 1
                if n > _MAX_ITERATIONS:
                    shown = os.fsdecode(clean_path(b"/" + path))
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
                return Resolved([c[0] for c in chain] + [name], kind, fd, mount)
            return Resolved([], "dir", os.dup(self.root_fd), None)
        finally:
            for _, _, fd, _ in chain:
                if fd is not None:
                    os.close(fd)

    def child(self, parent: Resolved, name: bytes) -> Node | None:
        """The entry ``name`` of the resolved directory ``parent``, not followed; None if there is none."""
        key = tuple(parent.comps) + (name,)
        kind, st, mount = self._lookup(parent.fd, parent.kind, key)
        if kind == "missing":
            return None
        assert st is not None
        return Node(key, st, parent.fd, name, mount)

    def node_of(self, res: Resolved) -> Node:
        """The resolved directory ``res`` itself as a node (``res`` stays open while the node is used)."""
        assert res.fd is not None
        if res.mount is not None:
            return Node(tuple(res.comps), res.mount.st, mount=res.mount)
        return Node(tuple(res.comps), os.fstat(res.fd), res.fd, b".")

    def read_small(self, path: bytes) -> str | None:
        """The text of a regular file of the container (``/etc/passwd``), symlinks followed inside; None if
        there is no such file."""
        try:
            res = self.resolve(path)
        except (OSError, NotADirectory, DockwrightError):
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
        except (OSError, NotADirectory, DockwrightError):
            return None
        finally:
            res.close()
        return data.decode("utf-8", "replace")


def open_view(rootfs: str, mounts: Iterable[tuple[str, str, bool, bool]]) -> ContainerView:
    """A view of the rootfs at ``rootfs`` with ``mounts`` (destination, source, read-only, is a volume) over it."""
    view = ContainerView(rootfs)
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
class Target:
    """The path an archive starts at: its stat, its node, the top entry's name, and what holds its parent open."""

    stat: PathStat
    node: Node
    top_name: bytes  # the name of the top entry in the tar ("" for the root: its entries are "/", "/bin/"…)
    held: list[Resolved]  # what the node's parent descriptor belongs to

    def close(self) -> None:
        """Close what holds the node's parent open."""
        for r in self.held:
            r.close()


def locate(view: ContainerView, path: str, ref: str) -> Target:
    """dockerd's ``ResolvePath`` and ``StatPath``: the directory part resolved in scope, the last element not
    followed (a trailing ``/`` or ``/.`` makes it part of the directory)."""
    abs_path = container_abs_path(path)
    dir_part, base = split_path(abs_path)
    try:
        parent = view.resolve(dir_part)
    except NotADirectory as exc:
        raise SystemError_(str(exc)) from None
    try:
        shown = f"{view.shown}{show_comps(parent.comps) if parent.comps else ''}/{os.fsdecode(base)}"
        if parent.kind == "missing":
            raise NotFound(f"Could not find the file {path} in container {ref}")
        if base in (b"", b"."):
            if parent.kind != "dir":
                raise SystemError_(f"lstat {shown}: not a directory")
            node = view.node_of(parent)
        else:
            try:
                found = view.child(parent, base)
            except NotADirectory:
                raise SystemError_(f"lstat {shown}: not a directory") from None
            if found is None:
                raise NotFound(f"Could not find the file {path} in container {ref}")
            node = found
        st = node.st
        link_target = ""
        if stat.S_ISLNK(st.st_mode):
            try:
                full = view.resolve(abs_path)
            except NotADirectory as exc:
                raise SystemError_(str(exc)) from None
            full.close()
            link_target = show_comps(full.comps)
        name = base_name(abs_path)
        pstat = PathStat(name=go_text(name), size=st.st_size, mode=go_file_mode(st.st_mode),
                         mtime=rfc3339_nano(st.st_mtime_ns), link_target=link_target)
        return Target(pstat, node, b"" if name == b"/" else name, [parent])
    except BaseException:
        parent.close()
        raise


