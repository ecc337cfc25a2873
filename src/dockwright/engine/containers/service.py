"""The containers service: create/start/wait/stop/restart/kill/pause/rename/remove/prune, top, logs, changes, export
and commit.

A container is a writable overlay snapshot on top of its image's layer chain (snapshots made lazily from the
stored compressed blobs), plus an OCI bundle run detached by runc through a small shim that keeps the logs and
the exit code, so containers survive a daemon restart. Records live in the metadata database.

Its mounts are dockerd's mount points, decided at create and stored with the container: ``Binds`` and ``Mounts``
(bind mounts and named or anonymous volumes of the volumes service), then an anonymous volume for each path of
the image's (and the request's) ``Volumes`` that nothing else mounts; a new (empty) volume gets the image's files
at its path, as dockerd copies them. Volumes are bind mounted at start (``mount`` / ``unmount`` events) and the
anonymous ones go with the container on ``rm -v`` and auto-removal.

:class:`ContainersService` is the one service; it is built in stages, one module each: ``base`` (the
dependencies, the records in memory, paths and the rootfs mount), ``create``, ``lifecycle``
(start, exit, wait, kill, stop, pause, restart) and ``removal`` (rm, prune). This module adds rename,
top, logs, attach, changes, export, commit and the rootfs for file operations. ``record`` holds the
:class:`Container` value and its stored row, ``config`` the create-time config rules.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ...dockerfile import apply_changes
from ...errors import Conflict, ImageNotFound, InvalidArgument, SystemError_
from ...layers.diff import changes as diff_changes
from ...layers.diff import write_layer_from_upper
from ...metadata.db import LayerRecord
from ...oci import mediatypes as mt
from ...oci.config import container_config
from ...oci.gojson import go_dumps, rfc3339_nano
from ...runtime import read_json_log
from ...snapshots import is_mountpoint
from .. import types
from .config import NAME_RE, create_body, merge_missing
from .record import Container, container_info, container_summary
from .removal import ContainerRemoval
from .top import cgroup_pids, parse_ps_output

__all__ = ["ContainersService", "Container", "EMPTY_LAYER_DIFF_ID"]

log = logging.getLogger("dockwright.containers")

EMPTY_LAYER_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


class ContainersService(ContainerRemoval):
    """The one containers service: create, run, remove (its stages) and rename, top, logs, attach, changes,
    export, commit and the rootfs for file operations; and the library's typed calls (``run``, ``inspect``…)."""

    # ---- the library's typed calls ----------------------------------------------------------------------------
    async def run(self, image: str, cmd: str | Sequence[str] | None = None, *, name: str | None = None,
                  env: Mapping[str, str] | Sequence[str] | None = None, workdir: str | None = None,
                  user: str | None = None, entrypoint: str | Sequence[str] | None = None,
                  labels: Mapping[str, str] | None = None, hostname: str | None = None, tty: bool = False,
                  network_mode: str = "default", binds: Sequence[str] | None = None, auto_remove: bool = False,
                  privileged: bool = False, platform: str = "", detach: bool = False) -> types.RunResult:
        """``docker run``: create and start a container of ``image``. Detached, the result has the container
        just started (``auto_remove``: the engine removes it when it exits). Otherwise the call waits for its
        exit and returns its exit code and its output too (``auto_remove``: removed, anonymous volumes with it,
        once its output is read)."""
        container = await self.create_container(
            image, cmd, name=name, env=env, workdir=workdir, user=user, entrypoint=entrypoint, labels=labels,
            hostname=hostname, tty=tty, network_mode=network_mode, binds=binds,
            auto_remove=auto_remove and detach, privileged=privileged, platform=platform)
        await self.start(container.id)
        if detach:
            return types.RunResult(self.inspect(container.id), None, b"")
        code = await self.wait_exit(container.id)
        logs = await self.read_logs(container.id)
        done = self.inspect(container.id)
        if auto_remove:
            await self.remove(container.id, volumes=True)
        return types.RunResult(done, code, logs)

    async def create_container(self, image: str, cmd: str | Sequence[str] | None = None, *, name: str | None = None,
                               env: Mapping[str, str] | Sequence[str] | None = None, workdir: str | None = None,
                               user: str | None = None, entrypoint: str | Sequence[str] | None = None,
                               labels: Mapping[str, str] | None = None, hostname: str | None = None,
                               tty: bool = False, network_mode: str = "default",
                               binds: Sequence[str] | None = None, auto_remove: bool = False,
                               privileged: bool = False, platform: str = "") -> types.Container:
        """``docker create``: a container of ``image`` (a name, ID or ``name@digest``), not started; what is None
        is the image's (see :func:`~.config.create_body`). ``create`` takes the API's body."""
        body = create_body(image, cmd, env=env, workdir=workdir, user=user, entrypoint=entrypoint, labels=labels,
                           hostname=hostname, tty=tty, network_mode=network_mode, binds=binds,
                           auto_remove=auto_remove, privileged=privileged)
        cid, _ = await self.create(body, name or "", platform)
        return self.inspect(cid)

    def inspect(self, ref: str) -> types.Container:
        """The container ``ref`` (ID, name or unique ID prefix) as it is now; ``ContainerNotFound`` otherwise."""
        return container_info(self.get(ref))

    async def wait_exit(self, ref: str) -> int:
        """Wait until the container is not running (at once when it is not); its exit code."""
        return int((await self.wait(ref, "not-running"))["StatusCode"])

    async def read_logs(self, ref: str, *, stdout: bool = True, stderr: bool = True) -> bytes:
        """Everything the container has written so far (stdout and stderr as written), as ``docker logs``."""
        return b"".join([line async for _, line in self.logs(ref, stdout=stdout, stderr=stderr)])

    def rename(self, ref: str, new_name: str) -> None:
        """dockerd's ContainerRename, with its errors; ``rename`` event with ``oldName``."""
        if not ref or not new_name:
            raise InvalidArgument("Neither old nor new names may be empty")
        if not new_name.startswith("/"):
            new_name = "/" + new_name
        c = self.get(ref)
        old = "/" + c.name
        if old == new_name:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        bare = new_name[1:]
        if not NAME_RE.match(bare):
            raise InvalidArgument(f"Error when allocating new name: Invalid container name ({new_name}), only "
                                  f"[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        holder = next((o.id for o in self._cache.values() if o.name == bare), None) or self._names_in_use.get(bare)
        if holder is not None:
            raise Conflict(f'Error when allocating new name: Conflict. The container name "{new_name}" is already '
                           f'in use by container "{holder}". You have to remove (or rename) that container to be '
                           f"able to reuse that name.")
        c.name = bare
        try:
            self._save(c)
        except BaseException:
            c.name = old[1:]
            raise
        self.images._changed()  # noqa: SLF001
        self.network.rename(c.id, bare)
        self._event(c, "rename", {"oldName": old})

    async def top(self, ref: str, ps_args: str = "") -> dict[str, Any]:
        """dockerd's ContainerTop: the host's ``ps`` (``-ef`` by default) restricted to the processes of the
        container's cgroup; ``Titles`` and ``Processes`` parsed as dockerd parses them. ``top`` event."""
        ps_args = ps_args or "-ef"
        for k, v in re.findall(r"\s+([^\s]*)=\s*(PID[^\s]*)", ps_args):
            if k != "pid":
                raise SystemError_(f'specifying "{k}={v}" is not allowed')
        c = self.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        pids = await self._pids(c)
        args = ps_args.split(" ")
        proc = await asyncio.create_subprocess_exec("ps", *args, "-q", ",".join(str(p) for p in pids),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:  # some ps options (f) cannot go with -q: again without it
            proc = await asyncio.create_subprocess_exec("ps", *args, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            if proc.returncode != 0:
                line = err.decode(errors="replace").split("\n", 1)[0]
                raise SystemError_(f"ps: {line or f'exit status {proc.returncode}'}")
        result = parse_ps_output(out.decode(errors="replace"), pids)
        self._event(c, "top")
        return result

    async def _pids(self, c: Container) -> list[int]:
        """The processes of the container's cgroup (its ``cgroup.procs``, found from its init's
        ``/proc/<pid>/cgroup``); what ``runc ps`` says when that cannot be read."""
        pid = int(c.state.get("Pid") or 0)
        pids = await asyncio.to_thread(cgroup_pids, pid) if pid else None
        if pids is None:
            code, out, err = await self.runc._run("ps", "--format", "json", c.id)  # noqa: SLF001
            if code != 0:
                raise SystemError_(f"listing the processes of {c.id}: {err.strip()}")
            pids = [int(p) for p in json.loads(out or b"[]") or []]
        return pids


    def graph_driver(self, c: Container) -> dict[str, Any]:
        """dockerd's overlay2 ``GraphDriver``: the container's real snapshot directories (the lower layers, top
        first; the rootfs mount; its own upper and work directories)."""
        try:
            upper = self.snapshotter.upper_dir(c.id)
            lowers = self.snapshotter.lower_dirs(c.id)
        except Exception:  # noqa: BLE001 - no snapshot (removed meanwhile)
            return {"Data": None, "Name": "overlay2"}
        data: dict[str, str] = {}
        if lowers:
            data["LowerDir"] = ":".join(str(p) for p in lowers)
        data["MergedDir"] = str(self._rootfs(c))
        data["UpperDir"] = str(upper)
        data["WorkDir"] = str(upper.parent / "work")
        return {"Data": data, "Name": "overlay2"}

    # ---- the rootfs for file operations (docker cp: engine.containers.fs) ------------------------------------
    @contextlib.asynccontextmanager
    async def rootfs_for_files(self, ref: str) -> AsyncIterator[tuple[Container, Path]]:
        """The container and its root file system mounted, for a file operation (``docker cp``), as dockerd's
        ``daemon.Mount`` for one: a stopped container's is mounted for the operation and unmounted after the last
        one ends (unless it was started meanwhile); while one runs, an exit leaves the rootfs mounted and a
        removal waits for it."""
        c = self.get(ref)
        if c.id in self._removing:
            raise Conflict(f"removal of container {ref} is already in progress")
        self._file_ops[c.id] = self._file_ops.get(c.id, 0) + 1
        try:
            if c.running:
                rootfs = self._rootfs(c)
            else:
                async with self._lock:  # not while a start mounts it
                    rootfs = await self._mount(c)
            yield c, rootfs
        finally:
            left = self._file_ops[c.id] - 1
            if left:
                self._file_ops[c.id] = left
            else:
                del self._file_ops[c.id]
                try:
                    async with self._lock:
                        if not c.running and c.id not in self._file_ops:
                            await self._unmount(c)
                except Exception as exc:  # noqa: BLE001
                    log.warning("unmounting the rootfs of %s after a file operation: %s", c.id, exc)
                finally:
                    over = self._file_ops_over.pop(c.id, None)
                    if over is not None:
                        over.set()

    # ---- logs / attach / changes / export ---------------------------------------------------------------------
    def logs(self, ref: str, *, stdout: bool = True, stderr: bool = True, since: float | None = None,
             until: float | None = None, tail: int | None = None, timestamps: bool = False,
             follow: bool = False) -> AsyncIterator[tuple[int, bytes]]:
        """The container's log lines as ``(stream, line)``. Everything is settled by this call, before the
        iteration starts: the log file is opened (a removal that follows cannot take the output away) and, with
        ``follow``, the stream is tied to this run's exit event, so it ends once the container has stopped (or
        is removed) and all it wrote has been read, as dockerd's."""
        c = self.get(ref)
        if follow and c.running:
            stop = self._exit_events.setdefault(c.id, asyncio.Event())  # set by this run's exit, with no gap
        else:
            stop = asyncio.Event()
            stop.set()
        path = self._log_path(c)
        try:
            source: Path | IO[bytes] = open(path, "rb")  # noqa: SIM115 - read_json_log closes it
        except FileNotFoundError:
            source = path  # never started: nothing yet (follow waits for the file until the exit event)
        return _log_lines(read_json_log(source, stdout=stdout, stderr=stderr, since=since, until=until, tail=tail,
                                        timestamps=timestamps, follow=follow, stop=stop))

    def reserve_attach(self, ref: str) -> asyncio.Event | None:
        """Called before the hijack is answered: a start that follows waits for this attach to connect."""
        c = self.get(ref)
        if c.running:
            return None
        if c.state.get("Status") not in ("created", "exited"):
            raise Conflict("You cannot attach to a stopped container, start it first")
        connected = asyncio.Event()
        self._pending_attach.setdefault(c.id, []).append(connected)
        return connected

    async def attach(self, ref: str, *, stdin: bool, stdout: bool, stderr: bool,
                     ticket: asyncio.Event | None = None) -> Any:
        """An attachment to the container's streams; before start it waits for the start (as `docker run`)."""
        c = self.get(ref)
        if ticket is None and not c.running:
            ticket = self.reserve_attach(ref)
        try:
            if ticket is not None:
                created = self._created.setdefault(c.id, asyncio.Event())
                await created.wait()
            return await self.runc.attach(c.id, stdin=stdin, stdout=stdout, stderr=stderr,
                                          stdin_once=bool(c.config.get("StdinOnce")))
        finally:
            if ticket is not None:
                ticket.set()
                lst = self._pending_attach.get(c.id, [])
                if ticket in lst:
                    lst.remove(ticket)

    async def changes(self, ref: str) -> list[tuple[int, str]]:
        """The container's changes to its image's files, as (kind, path)."""
        c = self.get(ref)
        upper = self.snapshotter.upper_dir(c.id)
        lowers = self.snapshotter.lower_dirs(c.id)
        return await asyncio.to_thread(diff_changes, upper, lowers)

    async def export(self, ref: str) -> AsyncIterator[bytes]:
        """The container's root file system as a tar stream (``export`` event at its end)."""
        c = self.get(ref)
        was_mounted = is_mountpoint(self._rootfs(c))
        rootfs = await self._mount(c)
        # names as dockerd's export writes them: "bin/sh", not "./bin/sh" (hard link targets too)
        top = sorted(await asyncio.to_thread(os.listdir, rootfs))
        proc = await asyncio.create_subprocess_exec("tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf",
                                                    "-", *(["--", *top] if top else ["-T", "/dev/null"]),
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL)

        async def gen() -> AsyncIterator[bytes]:
            try:
                assert proc.stdout is not None
                while True:
                    chunk = await proc.stdout.read(1 << 20)
                    if not chunk:
                        break
                    yield chunk
                await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                if not was_mounted and not c.running:
                    await self._unmount(c)
            self._event(c, "export")
        return gen()

    # ---- commit -----------------------------------------------------------------------------------------------
    async def commit(self, ref: str, *, repo: str = "", tag: str = "", comment: str = "", author: str = "",
                     pause: bool = True, changes: list[str] | None = None,
                     config: dict[str, Any] | None = None) -> str:
        """A new image from the container's writable layer (paused meanwhile unless ``pause`` is False); its ID."""
        c = self.get(ref)
        if c.id in self._removing:
            raise Conflict(f"You cannot commit container {c.id} which is being removed")
        held = asyncio.Event()  # a removal (an auto-remove after the exit too) waits until the commit is done
        self._committing.setdefault(c.id, []).append(held)
        try:
            async with self.images.operation("commit"):  # leases its layer blob and the parent's until the image exists
                return await self._commit(c.id, repo=repo, tag=tag, comment=comment, author=author, pause=pause,
                                          changes=changes, config=config)
        finally:
            held.set()
            holders = self._committing.get(c.id, [])
            if held in holders:
                holders.remove(held)
            if not holders:
                self._committing.pop(c.id, None)

    async def _commit(self, ref: str, *, repo: str = "", tag: str = "", comment: str = "", author: str = "",
                      pause: bool = True, changes: list[str] | None = None,
                      config: dict[str, Any] | None = None) -> str:
        c = self.get(ref)
        target = self.images.import_target(repo, tag)
        base_cfg = config if config else c.config
        new_cfg = apply_changes(dict(base_cfg), list(changes or []))
        new_cfg = merge_missing(new_cfg, c.config)
        paused_here = False
        if c.running and pause and not c.state.get("Paused"):
            try:  # as dockerd: a pause that fails (the container stopped meanwhile) is ignored
                await self.runc.pause(c.id)
                paused_here = True
            except Exception as exc:  # noqa: BLE001
                log.debug("commit of %s without pausing it: %s", c.id, exc)
        writer = self.content.writer()
        try:
            upper = self.snapshotter.upper_dir(c.id)
            res = await asyncio.to_thread(write_layer_from_upper, upper, writer)
            digest = await asyncio.to_thread(writer.commit, res.digest, res.size)
        except BaseException:
            writer.abort()
            raise
        finally:
            if paused_here:
                try:
                    await self.runc.resume(c.id)
                except Exception as exc:  # noqa: BLE001 - killed while paused: nothing to resume
                    log.debug("resuming %s after its commit: %s", c.id, exc)
        self.images.lease(digest)
        try:
            parent = self.db.get_image(c.image_id, with_layers=True)
            if parent is None:
                raise ImageNotFound(c.image_id)
            parent_cfg = self.images.config_of(parent).data
            empty = res.diff_id == EMPTY_LAYER_DIFF_ID
            now = rfc3339_nano()
            diff_ids = list((parent_cfg.get("rootfs") or {}).get("diff_ids") or [])
            if not empty:
                diff_ids.append(res.diff_id)
            hist = list(parent_cfg.get("history") or [])
            h: dict[str, Any] = {"created": now}
            if author:
                h["author"] = author
            h["created_by"] = " ".join(c.config.get("Cmd") or [])
            if comment:
                h["comment"] = comment
            if empty:
                h["empty_layer"] = True
            hist.append(h)
            top: dict[str, Any] = {
                "architecture": parent_cfg.get("architecture", ""), "config": container_config(new_cfg),
                "container": c.id, "container_config": container_config(c.config), "created": now,
                "docker_version": self.images.engine_version, "history": hist, "os": parent_cfg.get("os", "linux"),
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
            if author:
                top["author"] = author
            if comment:
                top["comment"] = comment
            if parent_cfg.get("variant"):
                top["variant"] = parent_cfg["variant"]
            raw = go_dumps(dict(sorted(top.items())))
            layers = []
            for _, _, dg in parent.layers:
                lr = self.db.get_layer(dg)
                if lr is None:
                    raise ImageNotFound(c.image_id, f"layer {dg} of image {c.image_id} is missing")
                layers.append(lr)
            if not empty:
                layers.append(LayerRecord(digest, res.diff_id, mt.DOCKER_LAYER, res.size, res.diff_size,
                                          res.tar_size))
            image_id, _ = await self.images.commit_image(raw, layers, parent=parent.id,
                                                         tags=[target] if target else [])
        finally:
            self.images.release(digest)
        if empty:
            await self.images.collect({digest})
        self._event(c, "commit", {"comment": comment})
        if target is not None:
            self.images._log(image_id, target.familiar(), "tag")  # noqa: SLF001
        return image_id

    # last in the class: a method named ``list`` shadows the builtin in the annotations that follow it
    def list(self, *, all: bool = False) -> builtins.list[types.ContainerSummary]:
        """The running containers (every one with ``all``), newest first (typed: ``all()`` gives the records)."""
        return [container_summary(c) for c in self.all() if all or c.running]



async def _log_lines(entries: AsyncIterator[Any]) -> AsyncIterator[tuple[int, bytes]]:
    async for entry in entries:
        yield entry.stream, entry.line
