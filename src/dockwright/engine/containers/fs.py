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
through the project's one hardened extractor (:class:`~dockwright.layers.extract.TarExtractor`), rooted at the
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

The work is split: :mod:`.fs_view` resolves paths in the container and stats them,
:mod:`.fs_tar` writes the tar of a path, :mod:`.fs_untar` extracts one; this module holds the
container's rootfs and its mounts for them and runs them in worker threads.

A stopped container's rootfs is mounted for the operation and unmounted after it
(:meth:`~dockwright.engine.containers.service.ContainersService.rootfs_for_files`), as dockerd's ``daemon.Mount``.
Errors are dockerd's: ``No such container: x`` and ``Could not find the file /p in container x`` (404),
``extraction point is not a directory``, ``container rootfs is marked read-only``, ``mounted volume is marked
read-only``, ``Error processing tar file(exit status 1): …`` and ``lstat …: not a directory`` (500).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from ...threads import thread_future
from .fs_tar import ArchiveStream
from .fs_untar import extract_sync
from .fs_view import ContainerView, PathStat, Target, clean_path, locate, open_view
from .service import Container, ContainersService

__all__ = ["stat_path", "archive_path", "extract_to_dir"]

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# the service side: the rootfs held, blocking work in threads


async def _in_thread(fn: Callable[[], T], on_cancel: Callable[[], None]) -> T:
    """Run ``fn`` in a thread of its own (not the shared pool: an upload may keep it for long); if the
    caller is cancelled, ``on_cancel`` stops it and the thread's end is awaited before the cancellation goes
    on (the rootfs it writes to stays mounted until then)."""
    fut = thread_future(fn, "container-fs")
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
    out.sort(key=lambda m: clean_path(os.fsencode(m[0])).count(b"/"))
    dests = {clean_path(os.fsencode(m[0])) for m in out}
    bundle = containers._bundle(c)  # noqa: SLF001 - where the etc files of its start are
    for name, dest in (("resolv.conf", "/etc/resolv.conf"), ("hostname", "/etc/hostname"), ("hosts", "/etc/hosts")):
        if os.fsencode(dest) not in dests and (bundle / name).is_file():
            out.append((dest, str(bundle / name), False, False))
    return out


async def stat_path(containers: ContainersService, ref: str, path: str) -> PathStat:
    """``HEAD /containers/{ref}/archive?path=``: the stat of ``path`` in the container."""
    async with containers.rootfs_for_files(ref) as (c, rootfs):

        def work() -> PathStat:
            view = open_view(str(rootfs), _mount_list(containers, c))
            try:
                target = locate(view, path, ref)
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

        def start() -> tuple[ContainerView, Target]:
            view = open_view(str(rootfs), _mount_list(containers, c))
            try:
                return view, locate(view, path, ref)
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
    return target.stat, ArchiveStream(view, target, hold)


def _close_started(work: asyncio.Future[tuple[ContainerView, Target]]) -> None:
    if work.cancelled() or work.exception() is not None:
        return
    view, target = work.result()
    target.close()
    view.close()


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
            view = open_view(str(rootfs), _mount_list(containers, c))
            try:
                extract_sync(view, c, ref, path, chunks(), no_overwrite=no_overwrite_dir_non_dir,
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
