"""A container's lifecycle through the ``runc`` binary, with a per-container shim holding its stdio.

:meth:`Runc.create` starts the shim (see :mod:`dockwright.runtime.shim`), which runs ``runc create`` with the
container's stdio connected to pipes (or a pty) that the shim owns, writes the json-file log, serves attach
streams on ``<bundle>/shim.sock`` and records the exit status in ``<bundle>/exit.json``. :meth:`Runc.start`
is ``runc start``. The container runs detached from the daemon: a fresh :class:`Runc` (after a daemon
restart) finds the bundle through ``runc state`` and gets the exit status from the shim or its exit file.
:meth:`Runc.exec` starts another process in a running container (``runc exec``) through an exec helper (see
:mod:`dockwright.runtime.exec`).

The bundle directory is the container's runtime directory: ``config.json``, the generated ``hostname``,
``hosts`` and ``resolv.conf``, and the shim's ``shim.sock``, ``shim.lock`` (locked while the shim runs),
``shim.pid``, ``init.pid``, ``exit.json``, ``shim.log`` and ``runc.log``.

runc's failures are translated here: a container runc does not know is :class:`ContainerNotFound`, an
operation that does not fit its state is :class:`Conflict` with dockerd's words, and a failed create is
:class:`InvalidArgument` (the command cannot be run) or :class:`SystemError_`; so is a failed exec.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import signal as _signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Conflict, ContainerNotFound, DockwrightError, InvalidArgument, SystemError_, Unavailable
from . import shim as _shim
from .exec import ExecLauncher, ExecProcess, ExecStartError, start_exec
from .relay import connect_unix
from .shim import EXIT_FILE, LOCK_FILE, PID_FILE, SOCKET_FILE, read_exit_file

__all__ = ["Runc", "ExitStatus", "Attachment", "ExecProcess", "UNKNOWN_EXIT_CODE"]

UNKNOWN_EXIT_CODE = 255  # what dockerd records when a container's exit status is lost
_SHIM_PATH = Path(_shim.__file__).resolve()
_START_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a container's init ended: ``exit_code`` is 128+signal for a signal, 255 when unknown."""

    exit_code: int
    signal: int | None = None
    exited_at: str = ""
    oom_killed: bool = False
    pid: int = 0

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> ExitStatus:
        """The status from a shim's exit record (``exit.json`` or its wait answer); only ``exit_code`` is required."""
        return cls(exit_code=int(rec["exit_code"]), signal=rec.get("signal"), exited_at=str(rec.get("exited_at") or ""),
                   oom_killed=bool(rec.get("oom_killed")), pid=int(rec.get("pid") or 0))


class Attachment:
    """A live attach stream from a container's shim.

    :meth:`read` returns ``(stream, data)`` with stream 1 (stdout) or 2 (stderr; a tty has only stdout),
    and ``None`` once the container's output has ended. :meth:`write` feeds the container's stdin (when the
    attach asked for stdin), :meth:`close_stdin` half-closes it (which closes the container's stdin when the
    attach was made with ``stdin_once``).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tty: bool) -> None:
        self._reader = reader
        self._writer = writer
        self.tty = tty

    async def read(self) -> tuple[int, bytes] | None:
        """The next frame as ``(stream, data)``; None once the shim closes the stream (the output has ended)."""
        try:
            header = await self._reader.readexactly(8)
            size = int.from_bytes(header[4:], "big")
            data = await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return header[0], data

    def __aiter__(self) -> AsyncIterator[tuple[int, bytes]]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[tuple[int, bytes]]:
        while (item := await self.read()) is not None:
            yield item

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the container's stdin through the shim, waiting while the socket is full."""
        self._writer.write(data)
        await self._writer.drain()

    async def close_stdin(self) -> None:
        """Half-close the socket (EOF to the shim), which closes the container's stdin for a ``stdin_once`` attach."""
        if self._writer.can_write_eof():
            try:
                self._writer.write_eof()
            except OSError:
                pass

    async def close(self) -> None:
        """Close the connection to the shim (the container goes on); errors of an already broken socket are ignored."""
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def __aenter__(self) -> Attachment:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _open_connection(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = connect_unix(path)  # a local connect does not block
    sock.setblocking(False)
    return await asyncio.open_unix_connection(sock=sock)


def _shim_alive(bundle: Path, id: str) -> bool:
    """Whether a shim still runs for ``bundle``: it holds an exclusive ``flock`` on ``<bundle>/shim.lock``
    from its start until it exits, so a non-blocking shared lock attempt fails exactly while it lives. This
    needs nothing but the state directory (a daemon restarted after the shim started recognises it), is not
    fooled by a stale ``shim.pid`` whose pid was reused, and works for a spare shim (command line
    ``shim.py -``, which names no container)."""
    try:
        fd = os.open(bundle / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return _legacy_shim_alive(bundle, id)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True  # the shim holds it
    except OSError:
        return False
    finally:
        os.close(fd)  # (releases our lock, if we got it)
    return False


def _legacy_shim_alive(bundle: Path, id: str) -> bool:
    """A shim started before shims took ``shim.lock`` (by an earlier dockwright, still running across the
    upgrade): the pid in ``shim.pid`` is a shim (``shim`` in its command line) of this container (the id in
    its command line, or, for a spare shim, its stderr is ``<bundle>/shim.log``)."""
    try:
        pid = int((bundle / PID_FILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    if b"shim" not in cmdline:
        return False
    if json.dumps(id).encode() in cmdline:
        return True
    try:
        return os.readlink(f"/proc/{pid}/fd/2") == os.path.realpath(bundle / "shim.log")
    except OSError:
        return False


_RUNC_MSG_RE = re.compile(r'level=(?:error|fatal) msg="((?:[^"\\]|\\.)*)"')


def _runc_message(err: str) -> str:
    """The message of runc's last logrus error line (``time=… level=error msg="…"``), else the text."""
    found = _RUNC_MSG_RE.findall(err)
    if not found:
        return err.strip()
    try:
        return str(json.loads(f'"{found[-1]}"'))
    except ValueError:
        return str(found[-1])


def _signal_number(sig: int | str) -> int:
    """A signal as dockerd accepts it: a number, ``KILL`` or ``SIGKILL``."""
    if isinstance(sig, int):
        number = sig
    else:
        text = sig.strip().upper()
        if text.isdigit():
            number = int(text)
        else:
            name = text if text.startswith("SIG") else "SIG" + text
            try:
                number = int(_signal.Signals[name])
            except KeyError:
                raise InvalidArgument(f"Invalid signal: {sig}") from None
    if not 0 < number < 65:
        raise InvalidArgument(f"Invalid signal: {sig}")
    return number


class Runc:
    """runc with state under ``root`` (its ``--root``); ``log_dir`` holds runc's create logs
    (``<log_dir>/<id>-runc.log``) instead of ``<bundle>/runc.log``."""

    def __init__(self, binary: str = "runc", root: Path = Path("/run/dockwright/runc"),
                 log_dir: Path | None = None, *, systemd_cgroup: bool = False) -> None:
        self.binary = binary
        self.root = Path(root)
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.systemd_cgroup = systemd_cgroup
        self._bundles: dict[str, Path] = {}
        self._spare: asyncio.subprocess.Process | None = None  # the next shim, started ahead (see _spawn_spare)
        self._spare_loop: asyncio.AbstractEventLoop | None = None  # the event loop it belongs to
        self._spare_task: asyncio.Future[None] | None = None

    # -- plumbing --------------------------------------------------------------------------------------
    async def _run(self, *args: str) -> tuple[int, bytes, str]:
        cmd = [self.binary, "--root", str(self.root)]
        if self.systemd_cgroup:
            cmd.append("--systemd-cgroup")
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise Unavailable(f"cannot run {self.binary}: {exc}") from exc
        out, err = await proc.communicate()
        return proc.returncode or 0, out, _runc_message(err.decode(errors="replace"))

    @staticmethod
    def _not_found(err: str) -> bool:
        return "does not exist" in err or "container not found" in err

    async def _bundle_of(self, id: str, bundle: Path | None) -> Path:
        if bundle is not None:
            return Path(bundle)
        if id in self._bundles:
            return self._bundles[id]
        st = await self.state(id)
        if st is None or not st.get("bundle"):
            raise ContainerNotFound(id)
        self._bundles[id] = Path(st["bundle"])
        return self._bundles[id]

    # -- lifecycle -------------------------------------------------------------------------------------
    async def create(self, id: str, bundle: Path, *, log_path: Path, stdin: bool = False) -> int:
        """Start the shim, which runs ``runc create``; return the init's pid (not yet running the command).

        ``log_path`` is the json-file log (dockerd's ``<container dir>/<id>-json.log``); ``stdin`` keeps the
        container's stdin open for attach clients (``OpenStdin``). Whether there is a tty comes from the
        bundle's ``process.terminal``.
        """
        bundle = Path(bundle).absolute()
        if _shim_alive(bundle, id):  # (cheaper than `runc state`; a live shim owns this bundle's files)
            # a shim whose container has exited lingers a moment for its last clients: let it finish
            for _ in range(100):
                if read_exit_file(bundle) is None or not _shim_alive(bundle, id):
                    break
                await asyncio.sleep(0.05)
            if _shim_alive(bundle, id):
                raise Conflict(f"container {id} already exists in the runtime; delete it first")
        try:
            config = json.loads((bundle / "config.json").read_bytes())
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"bundle {bundle} has no valid config.json: {exc}") from exc
        tty = bool(config.get("process", {}).get("terminal"))
        self.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the exec root: 0700, as dockerd's
        self.root.mkdir(mode=0o700, exist_ok=True)
        runc_log = (self.log_dir / f"{id}-runc.log") if self.log_dir is not None else bundle / "runc.log"
        if self.log_dir is not None:
            self.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        cfg = {
            "id": id,
            "bundle": str(bundle),
            "runc": self.binary,
            "root": str(self.root.absolute()),
            "log_path": str(Path(log_path).absolute()),
            "runc_log": str(runc_log),
            "stdin": bool(stdin),
            "tty": tty,
            "systemd_cgroup": self.systemd_cgroup,
        }
        for name in (EXIT_FILE, SOCKET_FILE):
            try:
                (bundle / name).unlink()
            except FileNotFoundError:
                pass
        proc = self._take_spare()
        if proc is not None:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(cfg).encode() + b"\n")
            await proc.stdin.drain()
            proc.stdin.close()
        else:
            shim_log_fd = os.open(bundle / "shim.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            with open(shim_log_fd, "ab") as shim_log:
                try:
                    proc = await asyncio.create_subprocess_exec(
                        sys.executable, "-I", "-S", str(_SHIM_PATH), json.dumps(cfg),
                        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=shim_log,
                        start_new_session=True)
                except OSError as exc:
                    raise SystemError_(f"cannot start the shim for {id}: {exc}") from exc
        self._spare_task = asyncio.ensure_future(self._spawn_spare())
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), _START_TIMEOUT)
            await asyncio.wait_for(proc.stdout.read(), _START_TIMEOUT)  # the shim closes it after the report
        except TimeoutError:
            raise SystemError_(f"the shim for {id} did not report within {_START_TIMEOUT:.0f}s") from None
        finally:
            await proc.wait()
        try:
            report = json.loads(line)
        except ValueError:
            report = {"error": f"the shim for {id} failed (see {bundle / 'shim.log'})"}
        if "pid" not in report:
            message = str(report.get("error") or "unknown error")
            if "container with id exists" in message or "already exists" in message:
                raise Conflict(f"container {id} already exists in the runtime; delete it first")
            text = f"OCI runtime create failed: {message}"
            if any(s in message for s in ("executable file not found", "no such file or directory",
                                           "permission denied", "not a directory")):
                raise InvalidArgument(text)
            raise SystemError_(text)
        self._bundles[id] = bundle
        return int(report["pid"])

    def _take_spare(self) -> asyncio.subprocess.Process | None:
        """The shim started ahead of time, if it is still waiting for its config."""
        proc, loop = self._spare, self._spare_loop
        self._spare = None
        if proc is None or proc.returncode is not None or loop is not asyncio.get_running_loop():
            return None  # (one made under another event loop cannot be driven from this one)
        return proc

    async def _spawn_spare(self) -> None:
        """Start the next shim now (interpreter start-up and imports off the next `docker run`'s path)."""
        self._spare_loop = asyncio.get_running_loop()
        try:
            self._spare = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", str(_SHIM_PATH), "-", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        except OSError:
            self._spare = None

    async def close(self) -> None:
        """Let the spare shim go (it exits when its stdin closes), and the spare exec helper."""
        launcher = getattr(self, "_exec_launcher", None)
        if launcher is not None:
            launcher.close()
        proc = getattr(self, "_spare", None)
        self._spare = None
        if proc is not None and proc.returncode is None and proc.stdin is not None \
                and getattr(self, "_spare_loop", None) is asyncio.get_running_loop():
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()

    async def start(self, id: str) -> None:
        """``runc start``: run the command of a created container."""
        rc, _, err = await self._run("start", id)
        if rc != 0:
            if self._not_found(err):
                raise ContainerNotFound(id)
            if "cannot start" in err or "not in created state" in err:
                raise Conflict(f"Container {id} is not in created state: {err}")
            raise SystemError_(f"runc start {id}: {err}")

    async def create_and_start(self, id: str, bundle: Path, *, log_path: Path, stdin: bool = False) -> int:
        """:meth:`create` then :meth:`start`; returns the pid of the container's init. The container outlives
        this process (and this daemon)."""
        pid = await self.create(id, bundle, log_path=log_path, stdin=stdin)
        try:
            await self.start(id)
        except BaseException:
            try:
                await self.delete(id, force=True)
            except DockwrightError:
                pass
            raise
        return pid

    async def state(self, id: str) -> dict[str, Any] | None:
        """``runc state`` (``status`` is created, running, paused or stopped; ``pid``, ``bundle``, …), or
        None when runc does not know the container."""
        rc, out, err = await self._run("state", id)
        if rc != 0:
            if self._not_found(err) or not err:
                return None
            raise SystemError_(f"runc state {id}: {err}")
        try:
            result: dict[str, Any] = json.loads(out)
        except ValueError as exc:
            raise SystemError_(f"runc state {id}: bad output") from exc
        return result

    async def list(self) -> list[dict[str, Any]]:
        """``runc list``: the state of every container under ``root``."""
        rc, out, err = await self._run("list", "--format", "json")
        if rc != 0:
            raise SystemError_(f"runc list: {err}")
        try:
            return json.loads(out) or []
        except ValueError as exc:
            raise SystemError_("runc list: bad output") from exc

    async def kill(self, id: str, signal: int | str = _signal.SIGTERM, all: bool = False) -> None:
        """Send ``signal`` (a number, ``"KILL"`` or ``"SIGKILL"``) to the init or, with ``all``, to every
        process of the container."""
        number = _signal_number(signal)
        args = ["kill"]
        if all:
            args.append("--all")
        rc, _, err = await self._run(*args, id, str(number))
        if rc != 0:
            if self._not_found(err):
                raise ContainerNotFound(id)
            if "not running" in err or "process already finished" in err or "no such process" in err:
                raise Conflict(f"Container {id} is not running")
            # another kill (or the exit itself) got there first: with --all, runc can fail on a cgroup or process
            # that goes away while it signals; a container that is gone or stopped by now is simply not running
            st = await self.state(id)
            if st is None:
                raise ContainerNotFound(id)
            if st.get("status") == "stopped":
                raise Conflict(f"Container {id} is not running")
            raise SystemError_(f"runc kill {id}: {err}")

    async def pause(self, id: str) -> None:
        """``runc pause``: freeze a running container; ContainerNotFound, Conflict (already paused, not running) or
        dockerd's ``Cannot pause container`` error."""
        st = await self.state(id)
        if st is None:
            raise ContainerNotFound(id)
        if st.get("status") == "paused":
            raise Conflict(f"Container {id} is already paused")
        if st.get("status") != "running":
            raise Conflict(f"Container {id} is not running")
        rc, _, err = await self._run("pause", id)
        if rc != 0:
            raise SystemError_(f"Cannot pause container {id}: {err}")

    async def resume(self, id: str) -> None:
        """``runc resume``: thaw a paused container; ContainerNotFound, Conflict (not paused) or dockerd's ``Cannot
        unpause container`` error."""
        st = await self.state(id)
        if st is None:
            raise ContainerNotFound(id)
        if st.get("status") != "paused":
            raise Conflict(f"Container {id} is not paused")
        rc, _, err = await self._run("resume", id)
        if rc != 0:
            raise SystemError_(f"Cannot unpause container {id}: {err}")

    async def delete(self, id: str, force: bool = False) -> None:
        """``runc delete``; ``force`` kills a running container first. The bundle directory is left alone."""
        args = ["delete"]
        if force:
            args.append("--force")
        rc, _, err = await self._run(*args, id)
        if rc != 0:
            if self._not_found(err):
                raise ContainerNotFound(id)
            if "not stopped" in err or "is running" in err or "is paused" in err:
                raise Conflict(f"cannot delete container {id}: it is running, stop it first or use force")
            raise SystemError_(f"runc delete {id}: {err}")
        if force:
            # the shim records the exit once the init is gone; give it the moment it needs
            bundle = self._bundles.get(id)
            if bundle is not None:
                for _ in range(50):
                    if read_exit_file(bundle) is not None or not _shim_alive(bundle, id):
                        break
                    await asyncio.sleep(0.02)
        self._bundles.pop(id, None)

    # -- exit status -----------------------------------------------------------------------------------
    async def wait_exit(self, id: str, *, bundle: Path | None = None) -> ExitStatus:
        """Wait until the container's init has exited and its output is in the log; works for a container
        this object started and for one found after a daemon restart (pass ``bundle`` when runc may no longer
        know the container)."""
        b = await self._bundle_of(id, bundle)
        while True:
            rec = read_exit_file(b)
            if rec is not None:
                return ExitStatus.from_record(rec)
            try:
                reader, writer = await _open_connection(b / SOCKET_FILE)
            except (FileNotFoundError, ConnectionRefusedError):
                if (rec := read_exit_file(b)) is not None:
                    return ExitStatus.from_record(rec)
                if not _shim_alive(b, id):
                    st = await self.state(id)
                    if st is None or st.get("status") == "stopped":
                        # the shim died before its container: the status is lost
                        if (rec := read_exit_file(b)) is not None:
                            return ExitStatus.from_record(rec)
                        return ExitStatus(exit_code=UNKNOWN_EXIT_CODE)
                await asyncio.sleep(0.1)
                continue
            try:
                writer.write(b'{"op":"wait"}\n')
                await writer.drain()
                line = await reader.readline()
            except (ConnectionError, OSError):
                line = b""
            finally:
                writer.close()
            if line:
                try:
                    return ExitStatus.from_record(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    pass
            await asyncio.sleep(0.05)

    async def wait(self, id: str, *, bundle: Path | None = None) -> int:
        """The container's exit code (128+signal when a signal ended it) once it has exited."""
        return (await self.wait_exit(id, bundle=bundle)).exit_code

    def exit_status(self, bundle: Path) -> ExitStatus | None:
        """The recorded exit status in ``bundle``, without waiting (None while running or never started)."""
        rec = read_exit_file(Path(bundle))
        return ExitStatus.from_record(rec) if rec is not None else None

    # -- attach ----------------------------------------------------------------------------------------
    async def _request(self, id: str, bundle: Path | None, req: dict[str, Any]) -> tuple[
            asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]]:
        b = await self._bundle_of(id, bundle)
        try:
            reader, writer = await _open_connection(b / SOCKET_FILE)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise Conflict(f"Container {id} is not running") from exc
        try:
            writer.write(json.dumps(req).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
            reply = json.loads(line) if line else {}
        except (ConnectionError, OSError, ValueError) as exc:
            writer.close()
            raise Conflict(f"Container {id} is not running") from exc
        if not reply.get("ok"):
            writer.close()
            raise Conflict(f"Container {id}: {reply.get('error') or 'the shim refused the request'}")
        return reader, writer, reply

    async def attach(self, id: str, *, stdin: bool = False, stdout: bool = True, stderr: bool = True,
                     stdin_once: bool = False, bundle: Path | None = None) -> Attachment:
        """A live stream of the container's output (from now on; earlier output is in the log) and, with
        ``stdin``, a way to write to its stdin."""
        try:
            reader, writer, reply = await self._request(
                id, bundle, {"op": "attach", "stdin": stdin, "stdout": stdout, "stderr": stderr,
                             "stdin_once": stdin_once})
        except Conflict as exc:
            raise Conflict("You cannot attach to a stopped container, start it first") from exc
        return Attachment(reader, writer, bool(reply.get("tty")))

    async def resize(self, id: str, height: int, width: int, *, bundle: Path | None = None) -> None:
        """Set the size of the container's tty (nothing without a tty)."""
        _, writer, _ = await self._request(id, bundle, {"op": "resize", "height": height, "width": width})
        writer.close()

    async def close_stdin(self, id: str, *, bundle: Path | None = None) -> None:
        """Close the container's stdin (its next read sees EOF)."""
        _, writer, _ = await self._request(id, bundle, {"op": "close_stdin"})
        writer.close()

    # -- exec ------------------------------------------------------------------------------------------
    async def exec(self, id: str, process: dict[str, Any], *, stdin: bool = False, stdout: bool = True,
                   stderr: bool = True) -> ExecProcess:
        """Start ``process`` (an OCI process, see :func:`dockwright.runtime.exec.exec_process`) in the running
        container ``id`` with ``runc exec``, through an exec helper that owns its stdio and collects its exit
        status (see :mod:`dockwright.runtime.exec`). A process runc cannot start is :class:`InvalidArgument` (the
        command cannot be run, as dockerd's ``translateContainerdStartErr``) or :class:`SystemError_`, with
        dockerd's words: ``OCI runtime exec failed: <runc's message>: unknown``."""
        launcher = getattr(self, "_exec_launcher", None)
        if launcher is None:
            launcher = self._exec_launcher = ExecLauncher()  # keeps a helper started ahead of time
        try:
            return await start_exec(id, process, runc=self.binary, root=self.root,
                                    systemd_cgroup=self.systemd_cgroup, stdin=stdin, stdout=stdout, stderr=stderr,
                                    launcher=launcher)
        except ExecStartError as exc:
            if self._not_found(exc.message):
                raise ContainerNotFound(id) from None
            text = f"OCI runtime exec failed: {exc.message}: unknown"
            if any(s in exc.message.lower() for s in ("executable file not found", "no such file or directory",
                                                       "permission denied", "not a directory")):
                raise InvalidArgument(text) from None
            raise SystemError_(text) from None
        except OSError as exc:
            raise SystemError_(f"cannot exec in container {id}: {exc}") from exc

