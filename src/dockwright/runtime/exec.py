"""Processes started in a running container (``docker exec``): their OCI process spec, and the exec helper.

**The process spec.** :func:`exec_process` derives the OCI ``Process`` that ``runc exec --process`` takes from the
container's own (the ``process`` of its bundle's ``config.json``), as dockerd's ``ContainerExecStart`` does: the
container's rlimits, capabilities and other settings are kept; ``args``, ``env``, ``cwd`` (``/`` when empty) and
``terminal`` are the exec's; a user spec replaces the user (resolved against the container's rootfs by the caller,
see :mod:`dockwright.runtime.users`), whose primary group is a supplementary group too (as dockerd 20.10.24 and
containerd 1.6.18 set it); ``privileged`` gives every capability of the daemon's bounding set (dockerd
asks for every capability the kernel knows, which runc cannot apply where the daemon itself lacks some);
``console_size`` is ``consoleSize``. :func:`exec_env` is dockerd's environment of an exec: ``PATH``,
``HOSTNAME``, ``TERM=xterm`` for a tty, the container's variables, then the exec's.

**The exec helper.** :func:`start_exec` (behind :meth:`dockwright.runtime.runc.Runc.exec`) starts this file as
``python -I -S exec.py FD`` (it also runs as ``python -m dockwright.runtime.exec FD``): FD is one end of a unix
socket pair whose other end the daemon keeps. The helper forks once (the daemon reaps its parent at once: the
helper belongs to no daemon and outlives one that dies) and waits for its config; :class:`ExecLauncher` keeps one
helper started ahead of time, so that an exec does not wait for an interpreter to start. With its config, the
helper marks itself a child subreaper, and then:

1. writes the process spec of its config (one frame, see below) to ``process.json`` in a private temporary
   directory;
2. makes the process's stdio: pipes for the streams asked for (``/dev/null`` for the others, so the process never
   blocks on output nobody reads), or, for a tty, a console socket on which runc sends the pty master (the
   shim's receiver, :class:`dockwright.runtime.relay.ConsoleSocket`);
3. runs ``runc exec --process process.json -d --pid-file pid [--console-socket S] ID``; the process is
   re-parented to the helper when runc exits, so the helper collects its exit status;
4. answers ``started {"pid"}`` or ``failed {"error"}`` (runc's message), then relays: output to the daemon,
   stdin, resizes and the close of stdin from it. Output stops being read while the daemon does not take it
   (backpressure up to the process); a daemon that goes away only makes the helper discard the output;
5. when the process has exited and its output reached EOF (or :data:`DRAIN_TIMEOUT` after the exit: processes
   it left behind may hold the pipes), sends ``exit {"exit_code", "signal"}`` (``exit_code`` is 128+signal for a
   signal) and exits, removing its directory.

The helper uses the standard library only (and :mod:`dockwright.runtime.relay`, the runc start-up and stdio relay
it shares with the shim, loaded by its path when run as a script), so it starts quickly.

**The protocol** on the socket pair is Docker's stream framing, ``[kind, 0, 0, 0, size (uint32 BE)]`` then the
payload, with kinds beyond the streams: from the daemon ``config`` (JSON: ``id``, ``runc``, ``root``,
``systemd_cgroup``, ``process``, ``stdin``, ``stdout``, ``stderr``), ``stdin`` (data), ``close_stdin`` and
``resize`` (JSON ``{"height", "width"}``); from the helper ``started``, ``failed``, ``stdout``, ``stderr`` and
``exit``. :class:`ExecProcess` is the daemon's end.

Why one module of ~640 lines: the daemon's end and the helper speak the frame protocol defined here, and the
engine imports the process spec from here; the helper runs this very file as a script (its start-up is what
:class:`ExecLauncher` keeps ahead), while the code it shares with the shim lives in :mod:`dockwright.runtime.relay`.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import socket
import struct
import sys
import tempfile
import termios
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__:
    from . import relay
else:  # run as a script (python -I -S exec.py): relay.py from beside this file, after the standard library
    import importlib

    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    relay = importlib.import_module("relay")

__all__ = [
    "ExecProcess", "ExecLauncher", "ExecStartError", "exec_env", "exec_process", "bounding_capabilities",
    "start_exec", "DRAIN_TIMEOUT", "main",
]

DRAIN_TIMEOUT = 2.0  # dockerd waits this long for an exited exec's streams before it closes them
DEFAULT_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# frame kinds (1 and 2 are the streams, as in Docker's framing)
K_STDIN, K_STDOUT, K_STDERR = 0, 1, 2
K_CONFIG, K_CLOSE_STDIN, K_RESIZE = 16, 17, 18
K_STARTED, K_FAILED, K_EXIT = 32, 33, 34
_DROP = -1  # an output read and dropped (a detached tty)

_HEADER = struct.Struct(">BxxxI")
_HELPER_PATH = Path(__file__).resolve()
_START_TIMEOUT = 60.0
_QUEUE_MAX = 16  # output chunks the daemon's end holds for its reader before it stops reading the helper
_HIGH_WATER = 1 << 20  # bytes the helper queues for the daemon before it stops reading the process's output

# capability numbers as the kernel has them (linux/capability.h), for the bounding set
_CAP_NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)


# --------------------------------------------------------------------------------------------------
# the process spec


def exec_env(hostname: str, container_env: list[str], env: list[str], tty: bool) -> list[str]:
    """dockerd's exec environment: ``CreateDaemonEnvironment(tty)`` (``PATH``, ``HOSTNAME``, ``TERM=xterm`` for a
    tty) with the container's variables over it, then the exec's (``ReplaceOrAppendEnvValues`` both times: a
    ``K=V`` replaces or appends, a bare ``K`` removes)."""
    from .bundle import merge_env  # (not at import: the helper runs without the package)

    base = [f"PATH={DEFAULT_PATH_ENV}", f"HOSTNAME={hostname}"]
    if tty:
        base.append("TERM=xterm")
    return merge_env(merge_env(base, list(container_env)), list(env))


def bounding_capabilities(status: Path = Path("/proc/self/status")) -> list[str]:
    """The capabilities of this process's bounding set (``CapBnd``), as OCI names: what a privileged exec gets."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapBnd:"):
                mask = int(line.split()[1], 16)
                return [f"CAP_{name}" for bit, name in enumerate(_CAP_NAMES) if mask >> bit & 1]
    except (OSError, ValueError, IndexError):
        pass
    return [f"CAP_{name}" for name in _CAP_NAMES]


def exec_process(base: dict[str, Any], *, args: list[str], env: list[str], cwd: str, tty: bool,
                 user: Any = None, privileged: bool = False,
                 console_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The OCI process of an exec: the container's process ``base`` with the exec's ``args``, ``env``, ``cwd``
    (``/`` when empty) and ``tty``; ``user`` (an :class:`~dockwright.runtime.users.ExecUser`) replaces the
    container's user (whose primary group is always a supplementary group too), ``privileged`` gives every
    capability of :func:`bounding_capabilities`, ``console_size`` (height, width) is the tty's first size."""
    process: dict[str, Any] = json.loads(json.dumps(base))  # a deep copy of plain JSON
    process["args"] = list(args)
    process["env"] = list(env)
    process["cwd"] = cwd or "/"
    process["terminal"] = bool(tty)
    spec_user: dict[str, Any] = dict(process.get("user") or {"uid": 0, "gid": 0})
    if user is not None:
        spec_user = {"uid": int(user.uid), "gid": int(user.gid), "additionalGids": [int(g) for g in user.sgids]}
    # the primary group is a supplementary group too, as dockerd 20.10.24 and containerd 1.6.18 set it (the fix of
    # CVE-2023-25173): `id` in the exec shows groups=<gid>
    gid = int(spec_user.get("gid") or 0)
    spec_user["additionalGids"] = [gid, *(g for g in dict.fromkeys(spec_user.get("additionalGids") or []) if g != gid)]
    process["user"] = spec_user
    if privileged:
        caps = bounding_capabilities()
        process["capabilities"] = {key: list(caps) for key in ("bounding", "effective", "inheritable", "permitted")}
    process.pop("consoleSize", None)
    if tty and console_size is not None and console_size[0] > 0 and console_size[1] > 0:
        process["consoleSize"] = {"height": int(console_size[0]), "width": int(console_size[1])}
    return process


# --------------------------------------------------------------------------------------------------
# the daemon's end


@dataclass(frozen=True, slots=True)
class ExecExit:
    """How an exec's process ended: ``exit_code`` is 128+signal for a signal, 255 when the helper was lost."""

    exit_code: int
    signal: int | None = None


class ExecStartError(Exception):
    """runc could not start the process; ``message`` is runc's (``exec failed: unable to start container
    process: …``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = await reader.readexactly(_HEADER.size)
    kind, size = _HEADER.unpack(header)
    return kind, await reader.readexactly(size) if size else b""


def _frame(kind: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


class ExecProcess:
    """The daemon's end of a started exec: its output, its stdin, its tty size and its exit.

    :meth:`read` returns ``(stream, data)`` (stream 1 or 2; a tty has only 1) and ``None`` once the output has
    ended — after which :meth:`wait` answers at once — or once :meth:`discard` was called. Someone must read, or
    :meth:`discard`: output not taken stops the process (as a full pipe would).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pid: int, tty: bool) -> None:
        self.pid = pid
        self.tty = tty
        self._reader = reader
        self._writer = writer
        self._queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(_QUEUE_MAX)
        self._discarding = False
        self._ended = False
        self._exit: asyncio.Future[ExecExit] = asyncio.get_running_loop().create_future()
        self._pump_task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        exit_status = ExecExit(255)  # the helper went away without a word: the status is lost
        try:
            while True:
                kind, payload = await _read_frame(self._reader)
                if kind in (K_STDOUT, K_STDERR):
                    if not self._discarding:
                        await self._queue.put((kind, payload))
                elif kind == K_EXIT:
                    rec = json.loads(payload)
                    exit_status = ExecExit(int(rec["exit_code"]), rec.get("signal"))
                    break
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError, KeyError, TypeError):
            pass
        finally:
            if not self._exit.done():
                self._exit.set_result(exit_status)
            self._ended = True
            self._writer.close()
            if not self._discarding:
                await self._queue.put(None)

    async def read(self) -> tuple[int, bytes] | None:
        """The next ``(stream, data)`` of output (stream 1 or 2), waiting for it; None once the output has ended or
        after :meth:`discard` (and on every later call)."""
        if self._discarding:
            return None
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # every later read ends too
        return item

    def discard(self) -> None:
        """Nobody reads from now on: output is dropped (the process goes on), a pending :meth:`read` ends."""
        if self._discarding:
            return
        self._discarding = True
        while not self._queue.empty():  # (a put blocked on the full queue completes, and is never read)
            self._queue.get_nowait()
        self._queue.put_nowait(None)  # wakes a pending read

    def _send(self, kind: int, payload: bytes = b"") -> None:
        if self._ended or self._writer.is_closing():
            return
        self._writer.write(_frame(kind, payload))

    async def write(self, data: bytes) -> None:
        """Feed the process's stdin (when the exec was started with stdin)."""
        while data and not self._ended:
            chunk, data = data[:65536], data[65536:]
            self._send(K_STDIN, chunk)
            try:
                await self._writer.drain()
            except (ConnectionError, OSError):
                return

    async def close_stdin(self) -> None:
        """Close the process's stdin (its next read sees EOF; nothing for a tty)."""
        self._send(K_CLOSE_STDIN)
        try:
            await self._writer.drain()
        except (ConnectionError, OSError):
            pass

    async def resize(self, height: int, width: int) -> None:
        """Set the size of the process's tty (nothing without a tty)."""
        self._send(K_RESIZE, json.dumps({"height": height, "width": width}).encode())
        try:
            await self._writer.drain()
        except (ConnectionError, OSError):
            pass

    @property
    def running(self) -> bool:
        """True until the helper has reported the exit (or gone away: then the exit is 255)."""
        return not self._exit.done()

    async def wait(self) -> ExecExit:
        """The exit of the process, once it has exited and its output is drained."""
        return await asyncio.shield(self._exit)


async def _spawn_helper() -> socket.socket:
    """A new helper, waiting for its config on the returned socket."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", str(_HELPER_PATH), str(theirs.fileno()), pass_fds=(theirs.fileno(),),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, start_new_session=True)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    await proc.wait()  # the helper forks at once: this is its parent's exit
    return ours


class ExecLauncher:
    """Starts exec helpers, keeping one started ahead of time (its interpreter start-up off the next exec's
    path), as :class:`~dockwright.runtime.runc.Runc` keeps a spare shim."""

    def __init__(self) -> None:
        self._spare: socket.socket | None = None
        self._spare_loop: asyncio.AbstractEventLoop | None = None
        self._refill: asyncio.Task[None] | None = None

    async def take(self) -> socket.socket:
        """A socket to a helper waiting for its config: the spare when it is alive and of this event loop, else a new
        helper; a new spare is started behind it."""
        loop = asyncio.get_running_loop()
        if self._spare is None and self._refill is not None and not self._refill.done() \
                and self._refill.get_loop() is loop:
            await asyncio.shield(self._refill)  # the spare on its way is ready sooner than a new helper
        sock, self._spare = self._spare, None
        if sock is not None and (self._spare_loop is not loop or not _waiting(sock)):
            sock.close()  # made under another event loop, or its helper is gone
            sock = None
        if sock is None:
            sock = await _spawn_helper()
        if self._refill is None or self._refill.done():
            self._refill = asyncio.ensure_future(self._spawn_spare())
        return sock

    async def _spawn_spare(self) -> None:
        try:
            sock = await _spawn_helper()
        except OSError:
            return
        if self._spare is not None:
            self._spare.close()
        self._spare, self._spare_loop = sock, asyncio.get_running_loop()

    def close(self) -> None:
        """Let the spare helper go (it exits when its socket closes)."""
        if self._refill is not None:
            self._refill.cancel()
        if self._spare is not None:
            self._spare.close()
            self._spare = None


def _waiting(sock: socket.socket) -> bool:
    """Whether the helper at the other end of ``sock`` still waits (no EOF, nothing said)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


async def start_exec(id: str, process: dict[str, Any], *, runc: str, root: Path, systemd_cgroup: bool = False,
                     stdin: bool = False, stdout: bool = True, stderr: bool = True,
                     launcher: ExecLauncher | None = None) -> ExecProcess:
    """Start ``process`` (an OCI process; ``terminal`` asks for a tty) in the running container ``id`` through an
    exec helper (from ``launcher``, else a new one); ``stdin``/``stdout``/``stderr`` say which streams are
    connected (a tty carries all three). Raises :class:`ExecStartError` with runc's message when the process
    cannot be started, OSError when the helper cannot be started."""
    ours = await launcher.take() if launcher is not None else await _spawn_helper()
    ours.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=ours)
    tty = bool(process.get("terminal"))
    cfg = {"id": id, "runc": runc, "root": str(Path(root).absolute()), "systemd_cgroup": systemd_cgroup,
           "process": process, "stdin": bool(stdin), "stdout": bool(stdout), "stderr": bool(stderr)}
    try:
        writer.write(_frame(K_CONFIG, json.dumps(cfg).encode()))
        await writer.drain()
        kind, payload = await asyncio.wait_for(_read_frame(reader), _START_TIMEOUT)
    except (asyncio.IncompleteReadError, ConnectionError, OSError, TimeoutError) as exc:
        writer.close()
        raise OSError(f"the exec helper failed: {exc or exc.__class__.__name__}") from exc
    except BaseException:
        writer.close()
        raise
    if kind == K_FAILED:
        writer.close()
        try:
            message = str(json.loads(payload).get("error") or "")
        except (ValueError, AttributeError):
            message = ""
        raise ExecStartError(message or "runc exec failed")
    if kind != K_STARTED:
        writer.close()
        raise OSError(f"the exec helper answered {kind}")
    pid = int(json.loads(payload).get("pid") or 0)
    return ExecProcess(reader, writer, pid, tty)


# --------------------------------------------------------------------------------------------------
# the helper


def _log(msg: str) -> None:
    relay.log("exec", msg)


def _recv_frame(sock: socket.socket) -> tuple[int, bytes] | None:
    """One frame, blocking; None at EOF."""
    def exactly(n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)
    header = exactly(_HEADER.size)
    if header is None:
        return None
    kind, size = _HEADER.unpack(header)
    payload = exactly(size) if size else b""
    return None if payload is None else (kind, payload)


class _Helper(relay.StdioRelay):
    def __init__(self, sock: socket.socket, cfg: dict[str, Any]) -> None:
        self.sock = sock
        self.cfg = cfg
        self.tty = bool(cfg["process"].get("terminal"))
        self.dir = Path(tempfile.mkdtemp(prefix="dw-exec-"))
        self.outputs: dict[int, int] = {}  # fd -> stream
        self.stdin_fd: int | None = None
        self.master_fd: int | None = None
        self.pid = 0
        self.writer: asyncio.StreamWriter | None = None  # to the daemon, once serving
        self.stdin_writer: asyncio.StreamWriter | None = None  # to the process's stdin (or its tty)
        self.paused = False  # the daemon reads slower than the process writes: outputs are not read

    # -- start-up (blocking) ---------------------------------------------------------------------------------
    def start(self) -> str | None:
        """Run ``runc exec``; None when the process runs, else runc's error."""
        cfg = self.cfg
        process_path = self.dir / "process.json"
        fd = os.open(process_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as f:
            f.write(json.dumps(cfg["process"]).encode())
        runc_log = self.dir / "runc.log"
        pid_file = self.dir / "pid"
        args = relay.runc_command(cfg.get("runc") or "runc", str(cfg["root"]), runc_log,
                                  bool(cfg.get("systemd_cgroup")))
        args += ["exec", "--process", str(process_path), "-d", "--pid-file", str(pid_file)]
        child_fds: list[int] = []
        console: relay.ConsoleSocket | None = None
        err_r = None

        def devnull(flags: int) -> int:
            fd = os.open(os.devnull, flags | os.O_CLOEXEC)
            child_fds.append(fd)
            return fd

        def pipe(stream: int) -> int:
            r, w = os.pipe()
            self.outputs[r] = stream
            child_fds.append(w)
            return w

        if self.tty:
            console = relay.ConsoleSocket(self.dir / "c.sock")
            args += ["--console-socket", str(console.path)]
            stdin_child, stdout_child = devnull(os.O_RDONLY), devnull(os.O_WRONLY)
            err_r, stderr_child = os.pipe()  # runc's own words, should it fail
            child_fds.append(stderr_child)
        else:
            if cfg.get("stdin"):
                stdin_child, self.stdin_fd = os.pipe()
                child_fds.append(stdin_child)
            else:
                stdin_child = devnull(os.O_RDONLY)
            stdout_child = pipe(K_STDOUT) if cfg.get("stdout") else devnull(os.O_WRONLY)
            stderr_child = pipe(K_STDERR) if cfg.get("stderr") else devnull(os.O_WRONLY)
        args.append(str(cfg["id"]))
        try:
            rc = relay.run_runc(args, stdin_child, stdout_child, stderr_child, child_fds)
        except OSError as exc:
            return f"cannot run runc: {exc}"
        if rc != 0:
            stderr_text = relay.read_now(err_r) if err_r is not None else ""
            if console is not None:
                console.close()
            # what the pipes hold is runc's message, not the process's output: the process never ran
            message = relay.runc_error(runc_log, stderr_text)
            return "runc exec failed" if message == "runc create failed" else message
        if err_r is not None:
            os.close(err_r)
        try:
            self.pid = int(pid_file.read_text().strip())
        except (OSError, ValueError) as exc:
            return f"runc exec left no pid file: {exc}"
        if console is not None:
            try:
                master = console.master()
            except relay.ConsoleError as exc:
                return str(exc)
            self.master_fd = master
            # reading and writing through two descriptions; a tty nobody reads (detached) is read all the same
            self.outputs = {os.dup(master): K_STDOUT if cfg.get("stdout") else _DROP}
        return None

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- relaying (asyncio) ----------------------------------------------------------------------------------
    def _send(self, kind: int, payload: bytes = b"") -> None:
        if self.writer is None:
            return
        if self.writer.transport.is_closing():
            self.writer = None  # the daemon is gone: output is dropped from now on
            return
        self.writer.write(_frame(kind, payload))
        if self.writer.transport.get_write_buffer_size() > _HIGH_WATER and not self.paused:
            self.paused = True
            for fd in self.outputs:
                self.loop.remove_reader(fd)
            asyncio.ensure_future(self._resume())

    async def _resume(self) -> None:
        try:
            if self.writer is not None:
                await self.writer.drain()
        except (ConnectionError, OSError):
            self.writer = None
        self.paused = False
        self.watch_outputs()

    def output(self, stream: int, data: bytes) -> None:
        """Send a chunk of output to the daemon (nothing of a tty nobody reads)."""
        if stream != _DROP:
            self._send(stream, data)

    async def _control(self, reader: asyncio.StreamReader) -> None:
        """Frames from the daemon: stdin, its close, resizes. The daemon's EOF closes the process's stdin."""
        try:
            while True:
                kind, payload = await _read_frame(reader)
                if kind == K_STDIN:
                    if self.stdin_writer is not None:
                        try:
                            self.stdin_writer.write(payload)
                            await self.stdin_writer.drain()
                        except (ConnectionError, OSError):
                            self.stdin_writer = None
                elif kind == K_CLOSE_STDIN:
                    self.close_stdin()
                elif kind == K_RESIZE:
                    size = json.loads(payload)
                    self._resize(int(size.get("height", 0)), int(size.get("width", 0)))
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError, TypeError, AttributeError):
            pass
        self.close_stdin()

    def _resize(self, height: int, width: int) -> None:
        if self.master_fd is None:
            return
        try:
            fcntl.ioctl(self.master_fd, termios.TIOCSWINSZ,
                        struct.pack("HHHH", max(height, 0) & 0xFFFF, max(width, 0) & 0xFFFF, 0, 0))
        except OSError as exc:
            _log(f"resize: {exc}")

    async def serve(self) -> None:
        self.paused = False
        self.stdin_writer = None
        self.sock.setblocking(False)
        reader, self.writer = await asyncio.open_connection(sock=self.sock)
        self._send(K_STARTED, json.dumps({"pid": self.pid}).encode())
        await self.start_relay()
        control = asyncio.ensure_future(self._control(reader))
        self.start_reaper(self.pid)

        status = await self.exited
        try:
            await asyncio.wait_for(self.drained.wait(), DRAIN_TIMEOUT)
        except TimeoutError:
            # processes it left behind hold the output open: what is there already still goes out
            self.flush_outputs(None)
        code, signo = relay.wait_status(status)
        self._send(K_EXIT, json.dumps({"exit_code": code, "signal": signo}).encode())
        control.cancel()
        if self.stdin_writer is not None:
            self.stdin_writer.close()
        if self.master_fd is not None:
            os.close(self.master_fd)
        if self.writer is not None:  # the daemon takes the rest at its client's pace, or goes away
            try:
                await self.writer.drain()
            except (ConnectionError, OSError):
                pass
            self.writer.close()


def main(argv: list[str] | None = None) -> int:
    """The exec helper's entry point (``exec.py FD``): fork away from the daemon, read the config frame on FD, run
    the exec and relay it; 2 on bad arguments, 1 when the exec failed to start or to run, else 0."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not argv[0].isdigit():
        sys.stderr.write("usage: exec.py FD\n")
        return 2
    sock = socket.socket(fileno=int(argv[0]))
    relay.detach()  # the daemon reaps our parent at once and the helper is nobody's child but init's
    try:
        first = _recv_frame(sock)
    except OSError:
        first = None
    if first is None or first[0] != K_CONFIG:
        return 0  # the daemon went away without using us
    try:
        cfg = json.loads(first[1])
        relay.set_subreaper()
        helper = _Helper(sock, cfg)
    except Exception as exc:  # noqa: BLE001 - tell the daemon rather than die silently
        _log(f"start failed: {exc!r}")
        sock.sendall(_frame(K_FAILED, json.dumps({"error": f"exec helper: {exc}"}).encode()))
        return 1
    try:
        error = helper.start()
        if error is not None:
            try:
                sock.sendall(_frame(K_FAILED, json.dumps({"error": error}).encode()))
            except OSError:
                pass
            return 1
        asyncio.run(helper.serve())
    except Exception as exc:  # noqa: BLE001
        _log(f"failed: {exc!r}")
        return 1
    finally:
        helper.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
