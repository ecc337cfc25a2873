"""The exec service: processes run in a running container (``docker exec``), as dockerd's exec commands.

An exec is created (:meth:`ExecService.create`: the command, the streams, tty, user, working directory and
environment, with the container's user and working directory when not given), then started once
(:meth:`ExecService.start`): detached, or attached as an :class:`ExecSession` (the process's output, its stdin).
The process runs through the runtime (:meth:`dockwright.runtime.runc.Runc.exec`), which records its exit code
however the client behaves.

As dockerd's, exec records live in memory only: an exec that was created and never started goes when its container
stops; an exec that ran stays inspectable (with its exit code) until the exec garbage collection, which every
5 minutes marks such execs ``CanRemove`` and removes those marked at the sweep before; an exec of a container that
was removed is gone. A start that fails records exit code 126.

Stdin follows dockerd's attach rules: without a tty, the client's EOF closes the process's stdin; with a tty, the
client's EOF or the detach keys (``ctrl-p,ctrl-q`` unless the exec names others) end the attach and the process
goes on, its output dropped. Events (of the container): ``exec_create: <cmd>``, ``exec_start: <cmd>``, ``exec_die``
(``execID``, ``exitCode``) and ``exec_detach``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import Conflict, ContainerNotFound, DockwrightError, InvalidArgument, NotFound, SystemError_
from ..oci.gojson import parse_rfc3339
from ..runtime.exec import ExecProcess, exec_env, exec_process
from ..runtime.users import resolve_user
from ..timestamps import human_duration
from .containers.record import Container
from .containers.service import ContainersService

__all__ = ["ExecService", "ExecOptions", "Exec", "ExecSession", "ExecNotFound", "detach_key_bytes"]

log = logging.getLogger("dockwright.exec")

GC_INTERVAL = 300.0  # dockerd's execCommandGC ticker
RESIZE_WAIT = 10.0  # how long a resize waits for the exec to start (dockerd's)
DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p,ctrl-q

_CTRL_KEYS = ["ctrl-@", *(f"ctrl-{c}" for c in "abcdefghijklmnopqrstuvwxyz"), "ctrl-[", "ctrl-\\", "ctrl-]", "ctrl-^",
              "ctrl-_"]


def _state_string(c: Container) -> str:
    """dockerd's ``State.String()`` of a container that is not running."""
    finished = parse_rfc3339(str(c.state.get("FinishedAt") or ""))
    if c.state.get("Status") == "created" or finished is None:
        return "Created"
    return f"Exited ({c.state.get('ExitCode', 0)}) {human_duration(time.time() - finished)} ago"


class ExecNotFound(NotFound):
    """``No such exec instance: <id>``."""

    def __init__(self, id: str) -> None:
        super().__init__(f"No such exec instance: {id}")


def detach_key_bytes(keys: str) -> bytes:
    """moby's ``term.ToBytes``: ``ctrl-p,ctrl-q`` → ``b"\\x10\\x11"``; a single character is itself, ``DEL`` is
    127. ValueError for anything else."""
    out = bytearray()
    for key in keys.split(","):
        if len(key.encode()) == 1:  # (Go's len: bytes)
            out += key.encode()
        elif key in _CTRL_KEYS:
            out.append(_CTRL_KEYS.index(key))
        elif key == "DEL":
            out.append(127)
        else:
            raise ValueError(f"Unknown character: '{key}'")
    return bytes(out)


@dataclass
class ExecOptions:
    """A create request (dockerd's ``ExecConfig``)."""

    cmd: list[str]
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    tty: bool = False
    env: list[str] = field(default_factory=list)
    user: str = ""
    working_dir: str = ""
    privileged: bool = False
    detach_keys: str = ""
    console_size: tuple[int, int] | None = None


@dataclass(eq=False)
class Exec:
    """An exec command (dockerd's ``exec.Config``): ``exit_code`` is None until it has run."""

    id: str
    container_id: str
    entrypoint: str
    args: list[str]
    env: list[str]
    user: str
    working_dir: str
    tty: bool
    privileged: bool
    open_stdin: bool
    open_stdout: bool
    open_stderr: bool
    detach_keys: bytes
    console_size: tuple[int, int] | None = None
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    can_remove: bool = False
    live: bool = True  # in its container's list (dockerd's container.ExecCommands: not yet exited)
    process: ExecProcess | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)  # the start is over (it ran, or it failed)
    done: asyncio.Event = field(default_factory=asyncio.Event)  # the exit is recorded (or the start failed)

    @property
    def command(self) -> str:
        """As dockerd's events name it: the entrypoint, a space, the arguments."""
        return f"{self.entrypoint} {' '.join(self.args)}"


class _EscapeProxy:
    """moby's ``term.EscapeProxy``: a read of exactly one byte that continues the key sequence is held back; the
    whole sequence detaches; anything else lets the held bytes through."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.pos = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        if len(data) != 1 or data[0] != self.keys[self.pos]:
            out = self.keys[:self.pos] + data
            self.pos = 0
            return out, False
        if self.pos == len(self.keys) - 1:
            return b"", True
        self.pos += 1
        return b"", False

    def flush(self) -> bytes:
        out = self.keys[:self.pos]
        self.pos = 0
        return out


class ExecSession:
    """An attached exec: iterate it for the output (``(stream, data)``, stream 1 or 2; a tty has only 1), feed it
    the client's stdin with :meth:`write` and :meth:`close_stdin`, :meth:`close` it when the client is gone. The
    iteration ends when the process has exited and its exit is recorded (an inspect after the stream's end sees
    the exit code), or when the attach ended (a tty's stdin closed, the detach keys)."""

    def __init__(self, service: ExecService, rec: Exec, proc: ExecProcess) -> None:
        self._service = service
        self._rec = rec
        self._proc = proc
        self.tty = rec.tty
        self.open_stdin = rec.open_stdin
        self._escape = _EscapeProxy(rec.detach_keys or DEFAULT_DETACH_KEYS) if rec.tty else None
        self._ended = False

    def __aiter__(self) -> AsyncIterator[tuple[int, bytes]]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[tuple[int, bytes]]:
        while (item := await self._proc.read()) is not None:
            yield item
        if not self._ended:
            await self._rec.done.wait()

    def _end(self) -> None:
        """The attach is over; the process goes on, its output dropped."""
        self._ended = True
        self._proc.discard()

    async def write(self, data: bytes) -> None:
        """The client's stdin (dropped unless the exec was created with ``AttachStdin``)."""
        if not self.open_stdin or self._ended:
            return
        if self._escape is not None:
            data, detach = self._escape.feed(data)
            if detach:
                self._end()
                self._service._detached(self._rec)  # noqa: SLF001
                return
        if data:
            await self._proc.write(data)

    async def close_stdin(self) -> None:
        """The client's stdin ended: the process's stdin is closed, or, with a tty, the attach ends."""
        if not self.open_stdin or self._ended:
            return
        if self._escape is not None:
            held = self._escape.flush()
            if held:
                await self._proc.write(held)
            self._end()
            return
        await self._proc.close_stdin()

    async def close(self) -> None:
        """The client is gone (or the output ended): nothing is read for it any more."""
        self._ended = True
        self._proc.discard()


class ExecService:
    """The execs of the running containers, in memory, as dockerd's exec store."""

    def __init__(self, containers: ContainersService) -> None:
        self.containers = containers
        self._execs: dict[str, Exec] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_sweep = time.monotonic() + GC_INTERVAL
        containers.exit_hooks.append(self._container_exited)

    # ---- records ----------------------------------------------------------------------------------------------
    def _container_of(self, rec: Exec) -> Container | None:
        try:
            return self.containers.get(rec.container_id)
        except (ContainerNotFound, InvalidArgument):
            return None

    def _gc(self) -> None:
        """dockerd's exec GC, run for the ticks that passed since the last call: an exec that is no longer its
        container's (it exited, or its start failed) is marked CanRemove at one tick and removed at the next;
        an exec of a removed container is removed."""
        now = time.monotonic()
        ticks = 0
        while now >= self._next_sweep:
            self._next_sweep += GC_INTERVAL
            ticks += 1
        for _ in range(min(ticks, 2)):
            for eid, rec in list(self._execs.items()):
                if rec.can_remove or self._container_of(rec) is None:
                    del self._execs[eid]
                elif not rec.live:
                    rec.can_remove = True

    def get(self, eid: str) -> Exec:
        """An exec by its full ID (inspect): NotFound ("No such exec instance") when unknown or its container is
        gone."""
        self._gc()
        rec = self._execs.get(eid)
        if rec is None or self._container_of(rec) is None:
            raise ExecNotFound(eid)
        return rec

    def check(self, eid: str) -> Exec:
        """An exec that may be started or resized (dockerd's ``getExecConfig``): its container must be running
        and not paused (409)."""
        self._gc()
        rec = self._execs.get(eid)
        if rec is None:
            raise ExecNotFound(eid)
        c = self._container_of(rec)
        if c is None:
            raise ContainerNotFound(eid)
        if not c.running:  # an exec that ran, of a container that stopped since (a plain error in dockerd 20.10)
            raise SystemError_(f"Container {c.id} is not running: {_state_string(c)}")
        if c.state.get("Paused"):
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        return rec

    def ids_of(self, container_id: str) -> list[str] | None:
        """The container's exec IDs (created or running, not exited) as inspect's ``ExecIDs``: None for none."""
        ids = [rec.id for rec in self._execs.values() if rec.container_id == container_id and rec.live]
        return ids or None

    def _container_exited(self, c: Container) -> None:
        """Its execs that never started go with it (dockerd's Cleanup); running ones are recorded when their
        process, which dies with the container, has exited."""
        for eid, rec in list(self._execs.items()):
            if rec.container_id == c.id and rec.live and not rec.running:
                del self._execs[eid]

    def _event(self, rec: Exec, action: str, extra: dict[str, str] | None = None) -> None:
        c = self._container_of(rec)
        if c is not None:
            self.containers._event(c, action, {"execID": rec.id, **(extra or {})})  # noqa: SLF001

    def _detached(self, rec: Exec) -> None:
        self._event(rec, "exec_detach")

    # ---- create / start / resize ------------------------------------------------------------------------------
    def create(self, ref: str, opts: ExecOptions) -> str:
        """Register an exec in the running container ``ref`` (dockerd's ``ContainerExecCreate``)."""
        if not opts.cmd:
            raise InvalidArgument("No exec command specified")
        c = self.containers.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state.get("Paused"):
            raise Conflict(f"Container {ref} is paused, unpause the container before exec")
        keys = b""
        if opts.detach_keys:
            try:
                keys = detach_key_bytes(opts.detach_keys)
            except ValueError:
                raise SystemError_(f"Invalid escape keys ({opts.detach_keys}) provided") from None
        self._gc()
        eid = os.urandom(32).hex()
        cfg = c.config
        rec = Exec(
            id=eid, container_id=c.id, entrypoint=opts.cmd[0], args=list(opts.cmd[1:]),
            env=exec_env(str(cfg.get("Hostname") or ""), list(cfg.get("Env") or []), list(opts.env), opts.tty),
            user=opts.user or str(cfg.get("User") or ""),
            working_dir=opts.working_dir or str(cfg.get("WorkingDir") or ""),
            tty=opts.tty, privileged=opts.privileged, open_stdin=opts.attach_stdin, open_stdout=opts.attach_stdout,
            open_stderr=opts.attach_stderr, detach_keys=keys, console_size=opts.console_size)
        self._execs[eid] = rec
        self._event(rec, f"exec_create: {rec.command}")
        return eid

    async def start(self, eid: str, *, detach: bool, console_size: tuple[int, int] | None = None) -> ExecSession | None:
        """Run the exec (dockerd's ``ContainerExecStart``): None once a detached exec runs, else the attached
        session. Errors: an exec that ran or runs already (409), a process that cannot be started (the exec's exit
        code is then 126)."""
        rec = self.check(eid)
        if rec.exit_code is not None:
            raise Conflict(f"Error: Exec command {eid} has already run")
        if rec.running:
            raise Conflict(f"Error: Exec command {eid} is already running")
        rec.running = True
        c = self._container_of(rec)
        assert c is not None
        self._event(rec, f"exec_start: {rec.command}")
        try:
            process = await self._process(c, rec, console_size or rec.console_size)
            attach = not detach
            proc = await self.containers.runc.exec(c.id, process, stdin=attach and rec.open_stdin,
                                                   stdout=attach and rec.open_stdout,
                                                   stderr=attach and rec.open_stderr)
        except BaseException:
            rec.running = False
            rec.exit_code = 126
            rec.live = False
            rec.started.set()
            rec.done.set()
            raise
        rec.process = proc
        rec.pid = proc.pid
        rec.started.set()
        task = asyncio.ensure_future(self._watch(rec, proc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if detach:
            proc.discard()
            return None
        return ExecSession(self, rec, proc)

    async def _process(self, c: Container, rec: Exec, console_size: tuple[int, int] | None) -> dict[str, Any]:
        """The OCI process: the container's, with the exec's command, environment, directory, tty and user."""
        bundle = self.containers._bundle(c)  # noqa: SLF001
        try:
            config = json.loads(await asyncio.to_thread((bundle / "config.json").read_bytes))
            base = config["process"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemError_(f"cannot read the process of container {c.id}: {exc}") from exc
        user = None
        if rec.user:
            try:
                user = await asyncio.to_thread(resolve_user, self.containers._rootfs(c), rec.user)  # noqa: SLF001
            except DockwrightError as exc:  # dockerd's getUser error is a plain (500) error
                raise SystemError_(str(exc)) from None
        return exec_process(base, args=[rec.entrypoint, *rec.args], env=rec.env, cwd=rec.working_dir or "/",
                            tty=rec.tty, user=user, privileged=rec.privileged, console_size=console_size)

    async def _watch(self, rec: Exec, proc: ExecProcess) -> None:
        status = await proc.wait()
        rec.exit_code = status.exit_code
        rec.running = False
        rec.live = False
        rec.process = None
        self._event(rec, "exec_die", {"exitCode": str(status.exit_code)})
        rec.done.set()

    async def resize(self, eid: str, height: int, width: int) -> None:
        """Set the size of the exec's tty (nothing without one); waits for a start in progress (10 s)."""
        rec = self.check(eid)
        try:
            await asyncio.wait_for(rec.started.wait(), RESIZE_WAIT)
        except TimeoutError:
            raise SystemError_("timeout waiting for exec session ready") from None
        proc = rec.process
        if proc is None or not proc.running:
            raise NotFound("no such exec")
        await proc.resize(height, width)
