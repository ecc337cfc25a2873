"""Persistent network namespaces, as files: what libnetwork keeps under ``/var/run/docker/netns``.

This module owns creating a new, empty network namespace bound to a file (``create``), so that it can be
configured (veth, addresses, routes) before the container's process exists and given to runc by path, and
removing it again (``delete``). The namespace lives as long as its file is bound or a process is in it: once the
container has exited and the file is unmounted, the kernel destroys it and the container's veth pair with it.

``create`` does it without a subprocess: a short-lived thread calls ``unshare(CLONE_NEWNET)`` (namespaces are per
thread), bind-mounts its ``/proc/thread-self/ns/net`` onto the file and ends; no other thread changes namespace.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from pathlib import Path

from dockwright.errors import SystemError_

__all__ = ["create", "delete", "is_netns", "NetnsError"]

_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]


class NetnsError(SystemError_):
    """Creating (``unshare``, bind mount) or unmounting a namespace file failed: the step, path and errno text."""

    pass


def _fail(what: str, path: str | Path) -> NetnsError:
    err = ctypes.get_errno()
    return NetnsError(f"{what} {path}: {os.strerror(err)}")


def create(path: str | Path) -> Path:
    """A new network namespace bound to ``path`` (its directory is created). Only ``lo`` is in it, down."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    failure: list[NetnsError] = []

    def run() -> None:
        if _libc.unshare(_CLONE_NEWNET) != 0:
            failure.append(_fail("creating a network namespace for", target))
            return
        src = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
        if _libc.mount(src, os.fsencode(target), None, _MS_BIND, None) != 0:
            failure.append(_fail("binding the network namespace to", target))

    thread = threading.Thread(target=run, name="netns-create", daemon=True)
    thread.start()
    thread.join()
    if failure:
        try:
            target.unlink()
        except OSError:
            pass
        raise failure[0]
    return target


def is_netns(path: str | Path) -> bool:
    """Whether ``path`` is a bound namespace (a mount point whose device is nsfs)."""
    try:
        return os.stat(path).st_dev != os.stat(Path(path).parent).st_dev
    except OSError:
        return False


def delete(path: str | Path) -> bool:
    """Unbinds and removes ``path``; False when it was not there. The namespace goes once no process is in it."""
    target = Path(path)
    if not os.path.lexists(target):
        return False
    if _libc.umount2(os.fsencode(target), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point (a half-made file)
            raise NetnsError(f"unmounting the network namespace {target}: {os.strerror(err)}")
    try:
        target.unlink()
    except FileNotFoundError:
        pass
    return True
