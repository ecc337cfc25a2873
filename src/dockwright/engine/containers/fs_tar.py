"""The tar of a path in a container (``GET /containers/{id}/archive``), written as dockerd's ``TarResourceRebase``.

This module owns :class:`ContainerTarWriter` (depth-first, names sorted bytewise, headers from
:mod:`dockwright.tar.writer` with the container's user and group names, hard links, ``security.capability``) and
:class:`ArchiveStream`, its chunks made in a worker thread for the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ...errors import SystemError_
from ...tar.writer import entry_header, with_owner_names
from .fs_view import ContainerView, Node, Target

__all__ = ["ContainerTarWriter", "ArchiveStream"]

log = logging.getLogger("dockwright.container_fs")

_MAX_OPEN_DIRS = 64  # directory descriptors the tar writer keeps open along its path
_CHUNK = 1 << 20  # what the tar writer hands out at a time
_READ_SIZE = 1 << 20
_CAPABILITY = "security.capability"


# --------------------------------------------------------------------------------------------------
# the tar (GET)


class _Owners:
    """User and group names for the headers, from the container's ``/etc/passwd`` and ``/etc/group`` (root
    and nobody when those files do not name them, as the host's name service does for dockerd)."""

    _USERS = {0: "root", 65534: "nobody"}
    _GROUPS = {0: "root", 65534: "nogroup"}

    def __init__(self, view: ContainerView) -> None:
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

    node: Node
    prefix: bytes  # the name of its entries so far, with a trailing "/"
    names: list[bytes]  # children still to write, last first
    fd: int | None


class ContainerTarWriter:
    """Writes the tar of a target, depth-first, in chunks of about ``_CHUNK`` bytes."""

    def __init__(self, view: ContainerView, target: Target) -> None:
        self.view = view
        self.target = target
        self.owners = _Owners(view)
        self.seen: dict[tuple[int, int], bytes] = {}
        self.buf = bytearray()
        self.levels: list[_Level] = []

    def close(self) -> None:
        """Close the directory descriptors still open."""
        for level in self.levels:
            if level.fd is not None:
                os.close(level.fd)
        self.levels.clear()

    def _header(self, node: Node, name: bytes, typeflag: bytes, size: int = 0, linkname: bytes = b"",
                xattrs: list[tuple[bytes, bytes]] | None = None) -> bytes:
        st = node.st
        dev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if typeflag in (b"3", b"4") else (0, 0)
        head = entry_header(name, typeflag, st.st_mode, st.st_uid, st.st_gid, size, st.st_mtime_ns // 1_000_000_000,
                       linkname=linkname, devmajor=dev[0], devminor=dev[1], xattrs=xattrs or ())
        return with_owner_names(head, self.owners.user(st.st_uid), self.owners.group(st.st_gid))

    def _entry(self, node: Node, name: bytes) -> Iterator[bytes]:
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

    def _file(self, node: Node, name: bytes) -> Iterator[bytes]:
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

    def _push(self, node: Node, prefix: bytes) -> None:
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
        """The tar, in chunks of about ``_CHUNK`` bytes; closes the writer at the end."""
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
                        node = Node(key, mount.st, mount=mount)
                    else:
                        node = Node(key, os.stat(child, dir_fd=parent_fd, follow_symlinks=False), parent_fd, child)
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



class ArchiveStream:
    """The chunks of a tar being written in a worker thread; :meth:`aclose` (also at the end, and safe to
    call at any time, even before the first chunk) closes the descriptors and lets the rootfs go."""

    def __init__(self, view: ContainerView, target: Target, hold: Any) -> None:
        self._view = view
        self._target = target
        self._hold = hold
        self._it = ContainerTarWriter(view, target).chunks()
        self._closed = False
        self._pending: asyncio.Future[bytes | None] | None = None  # the chunk the thread is making

    def __aiter__(self) -> ArchiveStream:
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
        """Stop: wait for the chunk being made, close the descriptors, let the rootfs go (idempotent)."""
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
