"""The per-container shim: a small process that owns a container's stdio, logs and exit status.

It is started by :meth:`dockwright.runtime.runc.Runc.create` as ``python -I shim.py CONFIG`` (it also runs as
``python -m dockwright.runtime.shim CONFIG``) in a new session, and it forks once more so that it belongs to
no daemon: a daemon restart, or a ``kill -9`` of the daemon, leaves the shim and its container running.
It uses the standard library only (and :mod:`dockwright.runtime.relay`, which it shares with the exec helper and
loads by its path when run as a script), so it starts quickly and does not depend on the rest of dockwright.

What it does, in order:

1. Marks itself a child subreaper (``PR_SET_CHILD_SUBREAPER``), so that the container's init, whose
   parent ``runc create`` exits, is re-parented to the shim and its exit status can be collected with
   ``waitpid``.
2. Makes the container's stdio: pipes for stdout and stderr (and stdin when asked) passed through
   ``runc create``, or, for a tty, a console socket on which runc sends the pty master.
3. Takes an exclusive ``flock`` on ``shim.lock`` in the state directory (the bundle directory), held until it
   exits (the daemon's liveness test, robust across daemon restarts and pid reuse), writes ``shim.pid``,
   opens (creates) the json-file log, binds ``shim.sock`` in the state directory, then runs ``runc create
   --pid-file init.pid --bundle B ID`` and reports ``{"pid": N}`` or ``{"error": msg}`` as one JSON line on
   its stdout (a pipe the daemon reads), then closes that stdout. The log exists before the report, as
   dockerd starts a container's logger before its task: the daemon may start the container as soon as it has
   the pid, and a ``logs`` request after that start must find (and hold open) the file even when this shim
   has not been scheduled since its report.
4. Serves, until the container has exited and its output is drained:

   * every chunk of output goes to ``<id>-json.log`` as docker json-file lines
     (``{"log":"…\\n","stream":"stdout","time":"RFC3339Nano"}``, lines longer than 16 KiB split) and to
     every attached client, framed like Docker's multiplexed streams (8-byte header ``[stream,0,0,0,size]``);
   * requests on ``shim.sock``, one JSON line each: ``{"op":"attach","stdin":b,"stdout":b,"stderr":b,
     "stdin_once":b}`` (answered with ``{"ok":true,"tty":b}``, then frames; the client's bytes after the
     request line go to the container's stdin, and with ``stdin_once`` its EOF closes that stdin),
     ``{"op":"wait"}`` (answered with the exit record once there is one), ``{"op":"resize","height":h,
     "width":w}``, ``{"op":"close_stdin"}`` and ``{"op":"status"}``.
5. When the init has exited and stdout/stderr reached EOF (or 5 s passed: then what the pipes hold already is
   still logged, only later writes of processes that kept them open are lost), writes ``exit.json``
   (``exit_code`` with 128+signal for a signal, ``signal``, ``exited_at``, ``oom_killed``, ``pid``)
   atomically, answers the waiters, closes the clients, removes the socket and exits.

The container is started later by ``runc start`` (from the daemon); output written before anyone attaches is
in the log file.

``DOCKWRIGHT_TEST_SHIM_STALL`` (seconds, in the daemon's environment; tests only) makes the shim sleep right
after its pid report, before it serves: a shim that a loaded host does not run for a while.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import socket
import struct
import sys
import tempfile
import termios
import time
from pathlib import Path
from typing import Any

if __package__:
    from . import relay
else:  # run as a script (python -I -S shim.py): relay.py from beside this file, after the standard library
    import importlib

    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    relay = importlib.import_module("relay")

__all__ = [
    "STDIN", "STDOUT", "STDERR", "STREAM_NAMES", "SOCKET_FILE", "EXIT_FILE", "PID_FILE", "LOCK_FILE",
    "INIT_PID_FILE", "LOG_LINE_MAX", "frame", "encode_log_line", "read_exit_file", "main",
]

STDIN, STDOUT, STDERR = 0, 1, 2
STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr"}

SOCKET_FILE = "shim.sock"
EXIT_FILE = "exit.json"
PID_FILE = "shim.pid"
LOCK_FILE = "shim.lock"  # flock'ed (exclusive) by the shim for its whole life: how a daemon tells it runs
INIT_PID_FILE = "init.pid"
LOG_LINE_MAX = 16 * 1024  # dockerd's json-file splits longer lines (as partial messages)
DRAIN_TIMEOUT = 5.0
DRAIN_LAST_MAX = 1 << 20  # after the drain timeout: what the pipes hold (at most pipe-max-size) is still logged
STALL_ENV = "DOCKWRIGHT_TEST_SHIM_STALL"
CLIENT_BUFFER_MAX = 8 * 1024 * 1024


def frame(stream_id: int, data: bytes) -> bytes:
    """Docker's multiplexed-stream framing: ``[stream, 0, 0, 0, size (uint32 BE)]`` then the payload."""
    return struct.pack(">BxxxI", stream_id, len(data)) + data


def encode_log_line(stream_id: int, data: bytes, ns: int) -> bytes:
    """One docker json-file line (with its newline) for ``data`` read from ``stream_id`` at ``ns``."""
    return _encode(STREAM_NAMES[stream_id], data, relay.format_log_time(ns))


def _encode(stream: str, data: bytes, when: str) -> bytes:
    record = {"log": data.decode("utf-8", "replace"), "stream": stream, "time": when}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def read_exit_file(state_dir: Path) -> dict[str, Any] | None:
    """The exit record the shim wrote to ``<state_dir>/exit.json`` (``exit_code``, ``signal``, ``exited_at``,
    ``oom_killed``, ``pid``), or None when it is missing or unreadable."""
    try:
        data = json.loads((state_dir / EXIT_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("exit_code"), int) else None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _log(msg: str) -> None:
    relay.log("shim", msg)


# --------------------------------------------------------------------------------------------------
# json-file writer


class JsonLogWriter:
    """Appends docker json-file lines; a line is written as soon as its newline arrives."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._pending = {STDOUT: bytearray(), STDERR: bytearray()}

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except OSError as exc:  # a full disk must not stop the container's output
                _log(f"cannot write the log: {exc}")
                return
            view = view[n:]

    def write(self, stream_id: int, data: bytes) -> None:
        """Add ``data`` of ``stream_id`` (1 or 2): its complete lines and 16 KiB pieces of longer ones are appended
        at once, with one timestamp; the rest of an unfinished line waits."""
        buf = self._pending[stream_id]
        buf += data
        when = relay.format_log_time(time.time_ns())  # one read, one time, as dockerd's copier stamps it
        name = STREAM_NAMES[stream_id]
        out = []
        start = 0
        while True:
            i = buf.find(b"\n", start)
            if i < 0:
                break
            while i + 1 - start > LOG_LINE_MAX:
                out.append(_encode(name, bytes(buf[start:start + LOG_LINE_MAX]), when))
                start += LOG_LINE_MAX
            out.append(_encode(name, bytes(buf[start:i + 1]), when))
            start = i + 1
        while len(buf) - start >= LOG_LINE_MAX:
            out.append(_encode(name, bytes(buf[start:start + LOG_LINE_MAX]), when))
            start += LOG_LINE_MAX
        del buf[:start]
        if out:
            self._write(b"".join(out))

    def flush(self) -> None:
        """Write the unfinished line of each stream as it is (no newline), at the current time."""
        now = time.time_ns()
        for stream_id, buf in self._pending.items():
            if buf:
                self._write(encode_log_line(stream_id, bytes(buf), now))
                buf.clear()

    def close(self) -> None:
        """Flush the unfinished lines and close the log file."""
        self.flush()
        os.close(self._fd)


# --------------------------------------------------------------------------------------------------
# the running shim


class _Client:
    def __init__(self, writer: asyncio.StreamWriter, streams: set[int]) -> None:
        self.writer = writer
        self.streams = streams


class Shim(relay.StdioRelay):
    """The running shim of one container: its stdio fds, json-file log, attach clients and exit record, served on
    ``shim.sock`` (see the module docstring)."""

    def __init__(self, cfg: dict[str, Any], state_dir: Path, server_sock: socket.socket, init_pid: int,
                 outputs: dict[int, int], stdin_fd: int | None, master_fd: int | None,
                 log: JsonLogWriter) -> None:
        self.cfg = cfg
        self.state_dir = state_dir
        self.server_sock = server_sock
        self.init_pid = init_pid
        self.outputs = outputs  # fd -> stream id
        self.stdin_fd = stdin_fd
        self.master_fd = master_fd
        self.tty = master_fd is not None
        self.log = log
        self.clients: set[_Client] = set()
        self.exit_record: dict[str, Any] | None = None
        self.stdin_writer: asyncio.StreamWriter | None = None

    # -- output --------------------------------------------------------------------------------------
    def output(self, stream_id: int, data: bytes) -> None:
        """Log a chunk of output and send it to the attached clients that asked for its stream."""
        self.log.write(stream_id, data)
        payload = frame(stream_id, data)
        for client in list(self.clients):
            if stream_id not in client.streams:
                continue
            transport = client.writer.transport
            if transport.is_closing():
                self.clients.discard(client)
                continue
            client.writer.write(payload)
            if transport.get_write_buffer_size() > CLIENT_BUFFER_MAX:
                _log("dropping an attach client that does not read")
                transport.abort()
                self.clients.discard(client)

    # -- requests ------------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                req = json.loads(line) if line else {}
            except ValueError:
                req = {}
            op = req.get("op")
            if op == "wait":
                await self.finished.wait()
                writer.write(json.dumps(self.exit_record).encode() + b"\n")
                await writer.drain()
            elif op == "attach":
                await self._attach(req, reader, writer)
            elif op == "resize":
                self._resize(int(req.get("height", 0)), int(req.get("width", 0)))
                writer.write(b'{"ok":true}\n')
                await writer.drain()
            elif op == "close_stdin":
                self.close_stdin()
                writer.write(b'{"ok":true}\n')
                await writer.drain()
            elif op == "status":
                status = {"ok": True, "pid": self.init_pid, "tty": self.tty, "exit": self.exit_record}
                writer.write(json.dumps(status).encode() + b"\n")
                await writer.drain()
            else:
                writer.write(json.dumps({"error": f"unknown request {op!r}"}).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError, TypeError):
            pass
        finally:
            writer.close()

    async def _attach(self, req: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        streams = {s for s, flag in ((STDOUT, "stdout"), (STDERR, "stderr")) if req.get(flag)}
        writer.write(json.dumps({"ok": True, "tty": self.tty}).encode() + b"\n")
        if self.finished.is_set() or not self.outputs:
            await writer.drain()
            return
        client = _Client(writer, streams)
        self.clients.add(client)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if req.get("stdin") and self.stdin_writer is not None:
                    try:
                        self.stdin_writer.write(data)
                        await self.stdin_writer.drain()
                    except (ConnectionError, OSError):
                        self.stdin_writer = None
            # the client closed its side: with stdin_once that closes the container's stdin
            if req.get("stdin") and req.get("stdin_once"):
                self.close_stdin()
            if streams:
                # a half-closed client still receives output until the container exits
                done = asyncio.ensure_future(self.finished.wait())
                lost = asyncio.ensure_future(writer.wait_closed())
                lost.add_done_callback(lambda f: f.cancelled() or f.exception())
                try:
                    await asyncio.wait({done, lost}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    done.cancel()
                    lost.cancel()
        finally:
            self.clients.discard(client)

    def _resize(self, height: int, width: int) -> None:
        if self.master_fd is None or height <= 0 or width <= 0:
            return
        fcntl.ioctl(self.master_fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    # -- exit ----------------------------------------------------------------------------------------
    def _oom_killed(self) -> bool:
        try:
            config = json.loads((Path(self.cfg["bundle"]) / "config.json").read_bytes())
            cgroup = str(config.get("linux", {}).get("cgroupsPath", "")).lstrip("/")
        except (OSError, ValueError):
            return False
        if not cgroup or ":" in cgroup:
            return False
        for path, key in ((f"/sys/fs/cgroup/memory/{cgroup}/memory.oom_control", "oom_kill"),
                          (f"/sys/fs/cgroup/{cgroup}/memory.events", "oom_kill")):
            try:
                for line in Path(path).read_text().splitlines():
                    k, _, v = line.partition(" ")
                    if k == key:
                        return int(v) > 0
            except (OSError, ValueError):
                continue
        return False

    async def run(self) -> None:
        """Serve until the init has exited and its output is drained (5 s at most), then write ``exit.json``, answer
        the waiters and close the socket."""
        self.finished = asyncio.Event()
        await self.start_relay()
        self.server_sock.setblocking(False)
        server = await asyncio.start_unix_server(self._handle, sock=self.server_sock)
        self.start_reaper(self.init_pid)

        status = await self.exited
        try:
            await asyncio.wait_for(self.drained.wait(), DRAIN_TIMEOUT)
        except TimeoutError:
            _log("output did not reach EOF after the container exited")
            self.flush_outputs(DRAIN_LAST_MAX)
        self.log.close()
        code, signo = relay.wait_status(status)
        self.exit_record = {
            "exit_code": code,
            "signal": signo,
            "exited_at": relay.format_log_time(time.time_ns()),
            "oom_killed": self._oom_killed(),
            "pid": self.init_pid,
        }
        _write_atomic(self.state_dir / EXIT_FILE, json.dumps(self.exit_record).encode() + b"\n")
        self.finished.set()
        server.close()
        try:
            os.unlink(self.state_dir / SOCKET_FILE)
        except OSError:
            pass
        if self.stdin_writer is not None:
            self.stdin_writer.close()
        if self.master_fd is not None:
            try:
                os.close(self.master_fd)
            except OSError:
                pass
        # let the waiters and attach clients receive their last bytes
        for client in list(self.clients):
            client.writer.close()
        await asyncio.sleep(0)
        deadline = self.loop.time() + 2.0
        while self.loop.time() < deadline and any(
                not t.done() for t in asyncio.all_tasks() if t is not asyncio.current_task()):
            await asyncio.sleep(0.02)


# --------------------------------------------------------------------------------------------------
# start-up


def _report(obj: dict[str, Any]) -> None:
    try:
        os.write(1, json.dumps(obj).encode() + b"\n")
    except OSError:
        pass
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    os.close(devnull)


_lock_fd: int | None = None


def _start(cfg: dict[str, Any]) -> Shim | None:
    state_dir = Path(cfg["bundle"])
    cid = cfg["id"]
    tty = bool(cfg.get("tty"))
    with_stdin = bool(cfg.get("stdin"))
    runc_log = Path(cfg.get("runc_log") or state_dir / "runc.log")
    # held until this process exits (never inherited: O_CLOEXEC, and runc is started with close_fds); a
    # daemon tests it with a non-blocking lock attempt, which a reused pid or a stale pid file cannot fool
    global _lock_fd
    _lock_fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(_lock_fd, fcntl.LOCK_EX)  # (blocking: a daemon's test holds it only for a moment)
    for name in (EXIT_FILE, INIT_PID_FILE):
        try:
            os.unlink(state_dir / name)
        except FileNotFoundError:
            pass
    (state_dir / PID_FILE).write_text(f"{os.getpid()}\n")
    relay.set_subreaper()
    # the log exists before the daemon has the pid and can start the container (see 3. above); a failed
    # create leaves it empty, as dockerd's (its logger starts when the task's stdio is made, before the task)
    log = JsonLogWriter(Path(cfg["log_path"]))
    server_sock = relay.bind_unix(state_dir / SOCKET_FILE)

    args = relay.runc_command(cfg.get("runc", "runc"), str(cfg["root"]), runc_log, bool(cfg.get("systemd_cgroup")))
    args += ["create", "--pid-file", str(state_dir / INIT_PID_FILE), "--bundle", str(state_dir)]

    outputs: dict[int, int] = {}
    stdin_fd: int | None = None
    console: relay.ConsoleSocket | None = None
    runc_stderr_path = state_dir / "runc.stderr"
    if tty:
        console = relay.ConsoleSocket(Path(tempfile.mkdtemp(prefix="dw-console-"), "c.sock"))
        args += ["--console-socket", str(console.path)]
        stdin_child = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        stdout_child = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        stderr_child = os.open(runc_stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    else:
        out_r, stdout_child = os.pipe()
        err_r, stderr_child = os.pipe()
        outputs = {out_r: STDOUT, err_r: STDERR}
        if with_stdin:
            stdin_child, stdin_fd = os.pipe()
        else:
            stdin_child = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    args.append(cid)

    try:
        rc = relay.run_runc(args, stdin_child, stdout_child, stderr_child, [stdin_child, stdout_child, stderr_child])
    except OSError as exc:
        _report({"error": f"cannot run runc: {exc}"})
        return None

    if rc != 0:
        stderr_text = ""
        if tty:
            try:
                stderr_text = runc_stderr_path.read_text(errors="replace")
            except OSError:
                pass
        else:
            for fd, stream_id in outputs.items():
                if stream_id == STDERR:
                    stderr_text = relay.read_now(fd)
        if console is not None:
            console.close()
        _report({"error": relay.runc_error(runc_log, stderr_text)})
        return None

    try:
        init_pid = int((state_dir / INIT_PID_FILE).read_text().strip())
    except (OSError, ValueError) as exc:
        _report({"error": f"runc create left no pid file: {exc}"})
        return None

    master_fd = None
    if console is not None:
        try:
            master_fd = console.master()
        except relay.ConsoleError as exc:
            _report({"error": str(exc)})
            return None
        finally:
            try:
                os.unlink(console.path)
                os.rmdir(console.path.parent)
            except OSError:
                pass
        # reading and writing share the master, through two descriptions of the same fd
        outputs = {os.dup(master_fd): STDOUT}

    _report({"pid": init_pid})
    stall = os.environ.get(STALL_ENV)
    if stall:
        time.sleep(float(stall))
    return Shim(cfg, state_dir, server_sock, init_pid, outputs, stdin_fd, master_fd, log)


def main(argv: list[str] | None = None) -> int:
    """The shim's entry point (``shim.py CONFIG-JSON``, or ``-`` for a spare that reads it on stdin): fork away from
    the daemon, create the container and serve it; 2 on bad arguments, 1 on a failure, else 0."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: shim.py CONFIG-JSON|-\n")
        return 2
    if argv[0] == "-":
        # a spare shim started ahead of time (its imports done): the config arrives on stdin
        line = sys.stdin.readline()
        if not line.strip():
            return 0  # the daemon went away without using us
        cfg = json.loads(line)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        log_fd = os.open(Path(cfg["bundle"]) / "shim.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log_fd, 2)
        os.close(log_fd)
    else:
        cfg = json.loads(argv[0])
    relay.detach()  # the daemon reaps our parent at once and the shim is nobody's child but init's
    try:
        shim = _start(cfg)
    except Exception as exc:  # report anything unexpected to the daemon rather than dying silently
        _log(f"start failed: {exc!r}")
        _report({"error": f"shim: {exc}"})
        return 1
    if shim is None:
        try:
            os.unlink(Path(cfg["bundle"]) / SOCKET_FILE)
        except OSError:
            pass
        return 1
    try:
        asyncio.run(shim.run())
    except Exception as exc:
        _log(f"failed: {exc!r}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
