"""What the shim and the exec helper share: running runc for a process, receiving its pty, and relaying its stdio.

Standard library only, and no imports from the package: :mod:`dockwright.runtime.shim` and
:mod:`dockwright.runtime.exec` also run as scripts (``python -I -S shim.py``), and then load this file by its path.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "ConsoleError",
    "ConsoleSocket",
    "StdioRelay",
    "bind_unix",
    "connect_unix",
    "detach",
    "format_log_time",
    "log",
    "read_now",
    "runc_command",
    "runc_error",
    "run_runc",
    "set_subreaper",
    "wait_status",
]

PR_SET_CHILD_SUBREAPER = 36
READ_SIZE = 65536
_SUN_PATH_MAX = 100  # sockaddr_un has 108 bytes; leave some room


def format_log_time(ns: int) -> str:
    """Unix nanoseconds as Go's ``time.RFC3339Nano`` in UTC (trailing zeros of the fraction dropped)."""
    secs, nanos = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def log(who: str, msg: str) -> None:
    """One line ``<time> who[pid]: msg`` on stderr (the process's log file); errors writing it are ignored."""
    try:
        sys.stderr.write(f"{format_log_time(time.time_ns())} {who}[{os.getpid()}]: {msg}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


# --------------------------------------------------------------------------------------------------
# unix sockets


def _unix_address(path: Path) -> tuple[str, int | None]:
    """An address for ``path`` that fits in ``sun_path``: the path, or ``/proc/self/fd/<dirfd>/<name>``."""
    p = os.fspath(path)
    if len(p.encode()) < _SUN_PATH_MAX:
        return p, None
    dfd = os.open(os.path.dirname(p) or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{dfd}/{os.path.basename(p)}", dfd


def _unix_socket(path: Path, call: Callable[[socket.socket, str], None]) -> socket.socket:
    """A unix stream socket on which ``call`` (bind or connect) was made with ``path``'s address; closed on failure."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    address, dfd = _unix_address(path)
    try:
        call(sock, address)
    except BaseException:
        sock.close()
        raise
    finally:
        if dfd is not None:
            os.close(dfd)
    return sock


def bind_unix(path: Path, backlog: int = 64) -> socket.socket:
    """A listening unix stream socket at ``path`` (however long the path is)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = _unix_socket(path, socket.socket.bind)
    os.chmod(path, 0o600)
    sock.listen(backlog)
    return sock


def connect_unix(path: Path) -> socket.socket:
    """A connected (blocking) unix stream socket to ``path`` (however long the path is)."""
    return _unix_socket(path, socket.socket.connect)


# --------------------------------------------------------------------------------------------------
# start-up (blocking)


def detach() -> None:
    """Fork once more (the parent exits at once: the daemon reaps it, and the child is nobody's but init's), move
    to ``/`` and ignore SIGINT and SIGHUP."""
    if os.fork() != 0:
        os._exit(0)
    os.chdir("/")
    for signo in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signo, signal.SIG_IGN)


def set_subreaper() -> None:
    """Mark this process a child subreaper: orphans below it (a process whose runc exited) are re-parented to it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


def runc_command(runc: str, root: str, runc_log: Path, systemd_cgroup: bool) -> list[str]:
    """runc's global arguments: its state ``root``, its JSON log, the systemd cgroup driver when asked for."""
    args = [runc, "--root", root, "--log", str(runc_log), "--log-format", "json"]
    if systemd_cgroup:
        args.append("--systemd-cgroup")
    return args


def run_runc(args: list[str], stdin: int, stdout: int, stderr: int, child_fds: list[int]) -> int:
    """Run runc with that stdio and wait for it; ``child_fds`` (the child's ends) are closed once it is started or
    could not be. OSError when it cannot be run."""
    try:
        proc = subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=stderr, close_fds=True, cwd="/")
    finally:
        for fd in child_fds:
            os.close(fd)
    return proc.wait()


def read_now(fd: int) -> str:
    """What the pipe ``fd`` holds now (up to 64 KiB, without waiting), as text; "" when nothing can be read."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, READ_SIZE).decode(errors="replace")
    except OSError:
        return ""


def runc_error(runc_log: Path, stderr_text: str) -> str:
    """The last error runc logged (``--log-format json``), else what it printed."""
    message = ""
    try:
        for line in runc_log.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("level") in ("error", "fatal") and rec.get("msg"):
                message = str(rec["msg"])
    except OSError:
        pass
    return message or stderr_text.strip() or "runc create failed"


class ConsoleError(Exception):
    """runc did not send the pty master on the console socket."""


class ConsoleSocket:
    """The socket runc sends a tty process's pty master on (``--console-socket PATH``), received by a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = bind_unix(path, 1)
        self._result: dict[str, Any] = {}
        self._receiver = threading.Thread(target=self._receive, daemon=True)
        self._receiver.start()

    def _receive(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
            if fds:
                self._result["fd"] = fds[0]
        except OSError as exc:
            self._result["error"] = exc

    def close(self) -> None:
        """Stop listening (runc failed: nothing will come)."""
        self.listener.close()

    def master(self) -> int:
        """The pty master runc sent (not inheritable), waiting 10 s at most; ConsoleError when none came."""
        self._receiver.join(10)
        self.listener.close()
        master: int | None = self._result.get("fd")
        if master is None:
            raise ConsoleError(f"runc did not send the console: {self._result.get('error', 'timeout')}")
        os.set_inheritable(master, False)
        return master


# --------------------------------------------------------------------------------------------------
# relaying (asyncio)


def wait_status(status: int | None) -> tuple[int, int | None]:
    """``(exit_code, signal)`` of a ``waitpid`` status: 128+signal for a signal, 255 when the status was lost."""
    if status is None:
        return 255, None
    if os.WIFSIGNALED(status):
        signo = os.WTERMSIG(status)
        return 128 + signo, signo
    return os.WEXITSTATUS(status), None


class StdioRelay:
    """A process's stdio under asyncio, as the shim and the exec helper both relay it: its outputs (``outputs``, fd
    -> stream, pipes or a pty master) read as they become readable and handed to :meth:`output`; its stdin (the
    ``stdin_fd`` pipe or the pty master) fed through :attr:`stdin_writer`; its exit collected by a reaper thread.

    A subclass sets ``outputs``, ``stdin_fd``, ``master_fd`` and ``tty``, then calls :meth:`start_relay`.
    """

    outputs: dict[int, int]
    stdin_fd: int | None
    master_fd: int | None
    tty: bool
    stdin_writer: asyncio.StreamWriter | None
    loop: asyncio.AbstractEventLoop
    exited: asyncio.Future[int | None]
    drained: asyncio.Event

    def output(self, stream: int, data: bytes) -> None:
        """What the process wrote on ``stream`` (the subclass passes it on)."""
        raise NotImplementedError

    async def start_relay(self) -> None:
        """Start reading the outputs (``drained`` is set once all reached EOF) and open the stdin writer."""
        self.loop = asyncio.get_running_loop()
        self.exited = self.loop.create_future()
        self.drained = asyncio.Event()
        for fd in self.outputs:
            os.set_blocking(fd, False)
        self.watch_outputs()
        if not self.outputs:
            self.drained.set()
        await self._open_stdin()

    def watch_outputs(self) -> None:
        """Read the outputs whenever they are readable."""
        for fd, stream in self.outputs.items():
            self.loop.add_reader(fd, self._on_readable, fd, stream)

    def _on_readable(self, fd: int, stream: int) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: the pty's last slave is closed
            data = b""
        if not data:
            self._close_output(fd)
            return
        self.output(stream, data)

    def _close_output(self, fd: int) -> None:
        self.loop.remove_reader(fd)
        os.close(fd)
        del self.outputs[fd]
        if not self.outputs:
            self.drained.set()

    def flush_outputs(self, limit: int | None) -> None:
        """After the drain timeout: pass on what the outputs hold already (at most ``limit`` bytes of each, None: all
        of it) without waiting for more, and close them."""
        for fd, stream in list(self.outputs.items()):
            self.loop.remove_reader(fd)
            left = limit
            while left is None or left > 0:
                try:
                    data = os.read(fd, READ_SIZE if left is None else min(READ_SIZE, left))
                except OSError:
                    break
                if not data:
                    break
                self.output(stream, data)
                if left is not None:
                    left -= len(data)
            self._close_output(fd)

    async def _open_stdin(self) -> None:
        fd = self.master_fd if self.tty else self.stdin_fd
        if fd is None:
            return
        pipe = os.fdopen(os.dup(fd), "wb", buffering=0)
        transport, protocol = await self.loop.connect_write_pipe(asyncio.streams.FlowControlMixin, pipe)
        self.stdin_writer = asyncio.StreamWriter(transport, protocol, None, self.loop)
        if not self.tty and self.stdin_fd is not None:
            os.close(self.stdin_fd)
            self.stdin_fd = None

    def close_stdin(self) -> None:
        """Close the process's stdin pipe (it reads EOF); nothing for a tty, whose stdin is the pty master."""
        if self.stdin_writer is not None and not self.tty:
            self.stdin_writer.close()
            self.stdin_writer = None

    def start_reaper(self, pid: int) -> None:
        """Set :attr:`exited` to the ``waitpid`` status of ``pid`` (re-parented to us) once it exits (None when it
        was not our child after all: its status is lost), reaping anything else on the way, from a thread."""
        threading.Thread(target=self._reap, args=(pid,), name="reaper", daemon=True).start()

    def _reap(self, pid: int) -> None:
        status: int | None = None
        while True:
            try:
                reaped, st = os.waitpid(-1, 0)
            except ChildProcessError:
                while os.path.exists(f"/proc/{pid}"):  # not our child after all: its status is lost
                    time.sleep(0.1)
                break
            except InterruptedError:
                continue
            if reaped == pid:
                status = st
                break
        self.loop.call_soon_threadsafe(self.exited.set_result, status)
