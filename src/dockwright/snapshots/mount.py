"""Mounts as values, and mounting them.

This module owns :class:`Mount` (containerd's ``mount.Mount``: a type, a source and options, the way
``Prepare`` and ``View`` describe a snapshot without mounting it), :func:`mount_all` and :func:`unmount`.

Mounting uses ``mount(2)`` through libc.  Option words that are mount flags (``ro``, ``bind``, ``rbind``,
``nosuid``, …) become flags and the rest is the file system's data string.  A bind mount with ``ro`` is
made read-only with a remount, as the kernel requires.  When an overlay's data string is longer than the
kernel accepts (one page: about a hundred layers with absolute paths), the directories are given relative
to their common parent and the mount is done by ``mount(8)`` running in that directory, as dockerd's
overlay2 driver does; a ``Mount`` value itself always holds absolute paths.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import Conflict, InvalidArgument, SystemError_

__all__ = ["Mount", "mount_all", "unmount", "is_mountpoint", "mounts_under", "PAGE_SIZE"]

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 0x2

# word → (flags to clear, flags to set)
_FLAGS: dict[str, tuple[int, int]] = {
    "ro": (0, MS_RDONLY),
    "rw": (MS_RDONLY, 0),
    "nosuid": (0, MS_NOSUID),
    "suid": (MS_NOSUID, 0),
    "nodev": (0, MS_NODEV),
    "dev": (MS_NODEV, 0),
    "noexec": (0, MS_NOEXEC),
    "exec": (MS_NOEXEC, 0),
    "sync": (0, MS_SYNCHRONOUS),
    "async": (MS_SYNCHRONOUS, 0),
    "dirsync": (0, MS_DIRSYNC),
    "noatime": (0, MS_NOATIME),
    "atime": (MS_NOATIME, 0),
    "nodiratime": (0, MS_NODIRATIME),
    "diratime": (MS_NODIRATIME, 0),
    "relatime": (0, MS_RELATIME),
    "norelatime": (MS_RELATIME, 0),
    "strictatime": (0, MS_STRICTATIME),
    "remount": (0, MS_REMOUNT),
    "bind": (0, MS_BIND),
    "rbind": (0, MS_BIND | MS_REC),
    "defaults": (0, 0),
}

_PATH_OPTIONS = ("lowerdir=", "upperdir=", "workdir=")


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount: ``type`` (``overlay``, ``bind``), ``source`` and ``options`` as ``mount -o`` words."""

    type: str
    source: str
    options: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """The containerd / OCI runtime-spec shape: ``{"type", "source", "options"}``."""
        return {"type": self.type, "source": self.source, "options": list(self.options)}

    def parse(self) -> tuple[int, str]:
        """(mount flags, data string) for ``mount(2)``."""
        flags = 0
        data: list[str] = []
        for word in self.options:
            if word in _FLAGS:
                clear, set_ = _FLAGS[word]
                flags = (flags & ~clear) | set_
            else:
                data.append(word)
        if self.type == "bind":
            flags |= MS_BIND
        return flags, ",".join(data)


_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc = lib
    return _libc


def _sys_mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    rc = _lib().mount(
        os.fsencode(source) if source is not None else None,
        os.fsencode(target),
        fstype.encode() if fstype is not None else None,
        flags,
        os.fsencode(data) if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def _relative_overlay(data: str) -> tuple[str, str]:
    """The data string with its directories relative to their common parent, and that parent."""
    words = data.split(",")
    paths: list[str] = []
    for word in words:
        for key in _PATH_OPTIONS:
            if word.startswith(key):
                paths.extend(word[len(key) :].split(":"))
    if not paths or not all(p.startswith("/") for p in paths):
        raise InvalidArgument("overlay mount options are too long and not made of absolute paths")
    base = os.path.commonpath(paths)
    if base in paths:
        base = os.path.dirname(base)
    out = []
    for word in words:
        for key in _PATH_OPTIONS:
            if word.startswith(key):
                word = key + ":".join(os.path.relpath(p, base) for p in word[len(key) :].split(":"))
                break
        out.append(word)
    return ",".join(out), base


def _mount_one(m: Mount, target: str) -> None:
    flags, data = m.parse()
    if m.type == "bind" or flags & MS_BIND:
        _sys_mount(m.source, target, None, flags & (MS_BIND | MS_REC), None)
        rest = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
        if rest:
            _sys_mount(None, target, None, MS_REMOUNT | MS_BIND | rest, None)
        return
    if len(data) < PAGE_SIZE:
        _sys_mount(m.source, target, m.type, flags, data)
        return
    rel, base = _relative_overlay(data)
    if len(rel) >= PAGE_SIZE:
        raise InvalidArgument(f"mount options too long ({len(rel)} bytes even with relative paths)")
    words = [w for w in m.options if w in _FLAGS]
    opts = ",".join(words + [rel])
    proc = subprocess.run(
        ["mount", "-i", "-t", m.type, m.source, "-o", opts, target],
        cwd=base, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise OSError(errno.EINVAL, f"mount(8) failed: {proc.stderr.strip()}", target)


def mount_all(mounts: Iterable[Mount], target: str | os.PathLike[str]) -> None:
    """Mount ``mounts`` in order onto ``target`` (an existing directory).

    On failure the mounts already made are undone and :class:`~dockwright.errors.SystemError_` is raised.
    """
    tgt = os.fspath(target)
    done = 0
    try:
        for m in mounts:
            _mount_one(m, tgt)
            done += 1
    except OSError as exc:
        for _ in range(done):
            _lib().umount2(os.fsencode(tgt), MNT_DETACH)  # undo; its own failure changes nothing
        raise SystemError_(f"failed to mount {tgt}: {exc}") from exc


def unmount(target: str | os.PathLike[str], *, detach: bool = False, retries: int = 50) -> None:
    """Unmount everything mounted on ``target`` (stacked mounts too); nothing mounted is not an error.

    A busy mount is retried for a while, then :class:`~dockwright.errors.Conflict` is raised, unless
    ``detach`` asks for a lazy unmount.
    """
    tgt = os.fsencode(os.fspath(target))
    lib = _lib()
    busy = 0
    while True:
        if lib.umount2(tgt, MNT_DETACH if detach else 0) == 0:
            continue  # maybe another mount below
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return  # not a mount point (any more)
        if err == errno.EBUSY and busy < retries:
            busy += 1
            time.sleep(0.02)
            continue
        if err == errno.EBUSY:
            raise Conflict(f"cannot unmount {os.fsdecode(tgt)}: device or resource busy")
        raise SystemError_(f"cannot unmount {os.fsdecode(tgt)}: {os.strerror(err)}")


def is_mountpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a mount point (from /proc/self/mountinfo)."""
    p = os.path.realpath(os.fspath(path))
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split(" ", 5)
                if len(fields) > 4 and _unescape(fields[4]) == p:
                    return True
    except OSError:
        return os.path.ismount(p)
    return False


def mounts_under(*roots: str | os.PathLike[str]) -> list[str]:
    """Mount points strictly below any of ``roots`` (from /proc/self/mountinfo), deepest first (the unmount order)."""
    bases = [os.path.realpath(os.fspath(r)) for r in roots]
    found: set[str] = set()
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split(" ", 5)
                if len(fields) <= 4:
                    continue
                mp = _unescape(fields[4])
                if any(mp.startswith(b.rstrip("/") + "/") for b in bases):
                    found.add(mp)
    except OSError:
        return []
    return sorted(found, key=lambda m: (-m.count("/"), m))


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    out = []
    i = 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and s[i + 1 : i + 4].isdigit():
            out.append(chr(int(s[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)

