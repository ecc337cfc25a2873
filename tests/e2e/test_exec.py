"""docker exec: create, start (detached, attached through the HTTP hijack, with and without a tty), inspect, resize,
events and the life of exec records, through the docker CLI (28 and 20.10), docker-py, testcontainers-python and raw
HTTP, held to dockerd's answers; the last tests run the same requests against a real dockerd 20.10 and compare."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import socket
import struct
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon, busybox_path, make_rootfs_tar
from dockerd import Dockerd, dockerd_unavailable

APPLETS = ("sh", "ls", "cat", "echo", "true", "false", "sleep", "id", "env", "pwd", "hostname", "tty", "stty", "head",
           "wc", "test", "kill", "ps", "[")
IMAGE = "ex:1"
CLIS = [p for p in ("/usr/local/bin/docker", "/usr/bin/docker") if os.access(p, os.X_OK)]  # CLI 28, CLI 20.10

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None or busybox_path() is None,
    reason="containers need root, runc and busybox-static (apt-get install runc busybox-static)")

NOT_FOUND_MSG = (b'OCI runtime exec failed: exec failed: unable to start container process: exec: "nosuchcmd": '
                 b"executable file not found in $PATH: unknown\r\n")


# ---- helpers ----------------------------------------------------------------------------------------------------
def _rootfs() -> bytes:
    return make_rootfs_tar({"etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
                            "etc/group": b"root:x:0:\nnogroup:x:65534:\n"}, applets=APPLETS)


def _import(engine: Daemon | Dockerd) -> None:
    engine.out("import", "-c", 'CMD ["sh"]', "-c", "ENV PATH=/bin", "-", IMAGE, input=_rootfs())


@pytest.fixture(scope="module")
def d(shared_daemon: Daemon) -> Daemon:
    _import(shared_daemon)
    return shared_daemon


@pytest.fixture
def ctr(d: Daemon) -> Iterator[str]:
    """A running container (sleeping), removed afterwards."""
    cid = d.out("run", "-d", IMAGE, "sleep", "1000")
    try:
        yield cid
    finally:
        d.docker("rm", "-f", cid, check=False)


def _sock_path(engine: Daemon | Dockerd) -> str:
    return str(engine.sock)


def _request(sock_path: str, method: str, path: str, body: Any = None, *, upgrade: bool = False,
             version: str = "v1.41", raw: bytes | None = None) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(sock_path)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    head = (f"{method} /{version}{path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n")
    if upgrade:
        head += "Connection: Upgrade\r\nUpgrade: tcp\r\n"
    s.sendall(head.encode() + b"\r\n" + data)
    return s


def _read_response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """A plain (Content-Length) response."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = s.recv(65536)
        assert chunk
        rest += chunk
    s.close()
    return int(lines[0].split()[1]), headers, rest[:length]


def _api(engine: Daemon | Dockerd, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    status, _, data = _read_response(_request(_sock_path(engine), method, path, body, **kw))
    try:
        return status, json.loads(data) if data else None
    except ValueError:
        return status, data


def _hijack(engine: Daemon | Dockerd, eid: str, start: dict[str, Any], *, upgrade: bool = True,
            version: str = "v1.41") -> tuple[str, dict[str, str], socket.socket, bytes]:
    """POST /exec/{id}/start attached: (status line, headers, the socket, what came after the headers)."""
    s = _request(_sock_path(engine), "POST", f"/exec/{eid}/start", start, upgrade=upgrade, version=version)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return lines[0], headers, s, rest


def _read_to_eof(s: socket.socket, first: bytes = b"", timeout: float = 60) -> bytes:
    s.settimeout(timeout)
    out = first
    while chunk := s.recv(65536):
        out += chunk
    s.close()
    return out


def _demux(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    while data:
        stream, size = struct.unpack(">BxxxI", data[:8])
        frames.append((stream, data[8:8 + size]))
        data = data[8 + size:]
    return frames


def _create(engine: Daemon | Dockerd, container: str, **config: Any) -> str:
    status, body = _api(engine, "POST", f"/containers/{container}/exec", config)
    assert status == 201, body
    assert list(body) == ["Id"] and re.fullmatch(r"[0-9a-f]{64}", body["Id"])
    return str(body["Id"])


def _inspect(engine: Daemon | Dockerd, eid: str) -> dict[str, Any]:
    status, body = _api(engine, "GET", f"/exec/{eid}/json")
    assert status == 200, body
    return dict(body)


def _until(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def _exited(engine: Daemon | Dockerd, eid: str) -> dict[str, Any]:
    _until(lambda: not _inspect(engine, eid)["Running"])
    return _inspect(engine, eid)


# ---- the docker CLI ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cli", CLIS)
def test_cli_exec_streams_exit_codes_and_failures(d: Daemon, ctr: str, cli: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("conftest.DOCKER", cli)
    p = d.docker("exec", ctr, "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (p.returncode, p.stdout, p.stderr) == (3, b"out\n", b"err\n")
    p = d.docker("exec", ctr, "nosuchcmd", check=False)  # dockerd 20.10: 126, runc's words on stdout
    assert (p.returncode, p.stdout) == (126, NOT_FOUND_MSG)
    p = d.docker("exec", ctr, "/etc/passwd", check=False)
    assert p.returncode == 126
    assert p.stdout == (b'OCI runtime exec failed: exec failed: unable to start container process: exec: '
                        b'"/etc/passwd": permission denied: unknown\r\n')
    p = d.docker("exec", "-u", "nouser", ctr, "id", check=False)
    assert (p.returncode, p.stdout) == (126, b"unable to find user nouser: no matching entries in passwd file\r\n")
    p = d.docker("exec", "-w", "/nonexist", ctr, "pwd", check=False)
    assert p.returncode == 126
    assert p.stdout == (b'OCI runtime exec failed: exec failed: unable to start container process: chdir to cwd '
                        b'("/nonexist") set in config.json failed: no such file or directory: unknown\r\n')
    p = d.docker("exec", "-u", "nobody", "-w", "/etc", "-e", "FOO=bar", ctr, "sh", "-c", "id; pwd; echo $FOO")
    assert p.stdout == b"uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n/etc\nbar\n"
    assert d.out("exec", ctr, "id") == "uid=0(root) gid=0(root) groups=0(root)"
    assert d.out("exec", "-u", "1234:5678", ctr, "id") == "uid=1234 gid=5678 groups=5678"
    env = d.out("exec", ctr, "env").splitlines()
    assert "PATH=/bin" in env and f"HOSTNAME={ctr[:12]}" in env and not any(e.startswith("TERM=") for e in env)
    env_tty = d.docker("exec", "-t", "-e", "PATH=/x:/bin", ctr, "env").stdout
    assert b"TERM=xterm\r\n" in env_tty and b"PATH=/x:/bin\r\n" in env_tty
    p = d.docker("exec", "-t", ctr, "tty")
    assert re.fullmatch(rb"/dev/pts/\d+\r\n", p.stdout), p.stdout
    # --privileged: every capability of the daemon's bounding set (dockerd asks for all the kernel has)
    bounding = next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("CapBnd:"))
    assert d.out("exec", "--privileged", ctr, "sh", "-c", "grep CapEff /proc/self/status") == f"CapEff:\t{bounding}"
    assert d.out("exec", ctr, "sh", "-c", "grep CapEff /proc/self/status") == "CapEff:\t00000000a80425fb"
    p = d.docker("exec", "nope", "true", check=False)
    assert p.returncode == 1 and p.stderr.endswith(b"No such container: nope\n")  # (each CLI its own prefix)


@pytest.mark.parametrize("cli", CLIS)
def test_cli_exec_stdin_and_detach(d: Daemon, ctr: str, cli: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("conftest.DOCKER", cli)
    data = os.urandom(3 << 20)
    p = d.docker("exec", "-i", ctr, "cat", input=data)
    assert p.returncode == 0 and p.stdout == data  # streamed both ways; the client's EOF closes cat's stdin
    p = d.docker("exec", "-i", ctr, "sh", "-c", "wc -c; echo after-eof", input=b"12345")
    assert p.stdout.split() == [b"5", b"after-eof"]
    p = d.docker("exec", ctr, "sh", "-c", "cat; echo no-stdin", input=b"ignored")  # no -i: /dev/null
    assert p.stdout == b"no-stdin\n"
    p = d.docker("exec", "-d", ctr, "sh", "-c", "sleep 0.5; echo done > /marker")
    assert (p.returncode, p.stdout) == (0, b"")
    _until(lambda: d.docker("exec", ctr, "cat", "/marker", check=False).stdout == b"done\n")


def test_cli_exec_interactive_tty_resizes(d: Daemon, ctr: str) -> None:
    """``docker exec -it`` from a terminal: the CLI sends ConsoleSize and resizes; keystrokes go raw to the pty."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI with a terminal
        os.environ.update(DOCKER_HOST=d.host, DOCKER_CONFIG=str(d.docker_config))
        os.execv(CLIS[0], [CLIS[0], "exec", "-it", ctr, "sh"])
    out = bytearray()

    def read_until(pattern: bytes, start: int, timeout: float = 60) -> bytes:
        """What the terminal shows from ``start`` on, once it matches ``pattern`` (a regular expression)."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, out[start:]):
            assert time.monotonic() < deadline, bytes(out)
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    out.extend(os.read(fd, 4096))
                except OSError:
                    break
        return bytes(out[start:])

    def stty_size() -> bytes:
        mark = len(out)
        os.write(fd, b"stty size\n")
        return read_until(rb"\d+ \d+\r\n", mark)

    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        read_until(rb"# ", 0)
        assert b"33 101\r\n" in stty_size()  # the size the CLI sent at the start
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.kill(pid, 28)  # SIGWINCH: the CLI sends POST /exec/{id}/resize
        deadline = time.monotonic() + 60
        while b"40 120\r\n" not in stty_size():
            assert time.monotonic() < deadline, bytes(out)
            time.sleep(0.3)
        os.write(fd, b"exit 5\n")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 5
    finally:
        os.close(fd)
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


# ---- the API: records, errors, states ---------------------------------------------------------------------------
def test_exec_inspect_and_lifecycle(d: Daemon, ctr: str) -> None:
    eid = _create(d, ctr, AttachStdout=True, AttachStderr=True, Cmd=["sh", "-c", "echo hi; exit 4"],
                  User="nobody", DetachKeys="ctrl-p,ctrl-q")
    assert _inspect(d, eid) == {
        "ID": eid, "Running": False, "ExitCode": None,
        "ProcessConfig": {"tty": False, "entrypoint": "sh", "arguments": ["-c", "echo hi; exit 4"],
                          "privileged": False, "user": "nobody"},
        "OpenStdin": False, "OpenStderr": True, "OpenStdout": True, "CanRemove": False, "ContainerID": ctr,
        "DetachKeys": "EBE=", "Pid": 0}
    status, headers, body = _read_response(_request(str(d.sock), "POST", f"/exec/{eid}/start", {"Detach": True}))
    assert (status, body, headers["content-length"]) == (200, b"", "0")
    info = _exited(d, eid)
    assert info["ExitCode"] == 4 and info["Pid"] > 0 and info["CanRemove"] is False
    status, body = _api(d, "POST", f"/exec/{eid}/start", {"Detach": True})
    assert (status, body) == (409, {"message": f"Error: Exec command {eid} has already run"})
    line, headers, s, first = _hijack(d, eid, {"Detach": False, "Tty": False})  # after the hijack: in the stream
    assert line.startswith("HTTP/1.1 101 ") and headers["content-type"] == "application/vnd.docker.raw-stream"
    assert _demux(_read_to_eof(s, first)) == [(1, f"Error: Exec command {eid} has already run\r\n".encode())]
    status, body = _api(d, "POST", f"/exec/{eid}/resize?h=10&w=20")
    assert (status, body) == (404, {"message": "no such exec"})

    # a command that cannot run: 126, no exec_die; the stream says why
    bad = _create(d, ctr, AttachStdout=True, Cmd=["nosuchcmd"])
    status, body = _api(d, "POST", f"/exec/{bad}/start", {"Detach": True})
    assert status == 400 and body["message"] == NOT_FOUND_MSG.decode().rstrip("\r\n")
    info = _inspect(d, bad)
    assert (info["Running"], info["ExitCode"], info["Pid"]) == (False, 126, 0)
    bad = _create(d, ctr, AttachStdout=True, Cmd=["id"], User="nouser")
    status, body = _api(d, "POST", f"/exec/{bad}/start", {"Detach": True})
    assert (status, body) == (500, {"message": "unable to find user nouser: no matching entries in passwd file"})

    # when the container stops: execs never started go, those that ran stay (a killed one with 137)
    created = _create(d, ctr, Cmd=["true"])
    running = _create(d, ctr, Cmd=["sleep", "300"])
    assert _api(d, "POST", f"/exec/{running}/start", {"Detach": True})[0] == 200
    _until(lambda: _inspect(d, running)["Running"])
    d.docker("stop", "-t", "1", ctr)
    assert _api(d, "GET", f"/exec/{created}/json") == (404, {"message": f"No such exec instance: {created}"})
    assert _api(d, "POST", f"/exec/{created}/start", {"Detach": True})[0] == 404
    info = _exited(d, running)
    assert (info["Running"], info["ExitCode"]) == (False, 137)
    assert _inspect(d, eid)["ExitCode"] == 4
    status, body = _api(d, "POST", f"/exec/{eid}/start", {"Detach": True})
    assert status == 500 and body["message"].startswith(f"Container {ctr} is not running: Exited (")
    status, body = _api(d, "POST", f"/containers/{ctr}/exec", {"Cmd": ["true"]})
    assert (status, body) == (409, {"message": f"Container {ctr} is not running"})
    d.docker("rm", ctr)
    assert _api(d, "GET", f"/exec/{eid}/json") == (404, {"message": f"No such exec instance: {eid}"})


def test_exec_request_errors(d: Daemon, ctr: str) -> None:
    name = d.out("inspect", "-f", "{{.Name}}", ctr).lstrip("/")
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/containers/nope/exec", {"Cmd": ["true"]}, 404, "No such container: nope"),
        ("POST", f"/containers/{ctr}/exec", {"AttachStdout": True}, 400, "No exec command specified"),
        ("POST", f"/containers/{ctr}/exec", {"Cmd": "id"}, 400,
         "json: cannot unmarshal string into Go struct field ExecConfig.Cmd of type []string"),
        ("POST", f"/containers/{ctr}/exec", {"Cmd": ["id", 1]}, 400,
         "json: cannot unmarshal number into Go struct field ExecConfig.Cmd of type string"),
        ("POST", f"/containers/{ctr}/exec", {"Cmd": ["id"], "tty": "x"}, 400,
         "json: cannot unmarshal string into Go struct field ExecConfig.Tty of type bool"),
        ("POST", f"/containers/{ctr}/exec", [1], 400, "json: cannot unmarshal array into Go value of type "
                                                      "types.ExecConfig"),
        ("POST", f"/containers/{ctr}/exec", {"Cmd": ["id"], "DetachKeys": "ctrl-"}, 500,
         "Invalid escape keys (ctrl-) provided"),
        ("GET", "/exec/nope/json", None, 404, "No such exec instance: nope"),
        ("POST", "/exec/nope/start", {"Detach": True}, 404, "No such exec instance: nope"),
        ("POST", "/exec/nope/resize?h=1&w=1", None, 404, "No such exec instance: nope"),
    ]
    for method, path, body, status, message in cases:
        assert _api(d, method, path, body) == (status, {"message": message}), path
    assert _api(d, "POST", f"/containers/{ctr}/exec", raw=b"") == \
        (400, {"message": "got EOF while reading request body"})
    eid = _create(d, ctr, Cmd=["sleep", "300"], Tty=True)
    assert _api(d, "POST", f"/exec/{eid}/start", raw=b"") == (400, {"message": "got EOF while reading request body"})
    assert _api(d, "POST", f"/exec/{eid}/start", "x") == \
        (400, {"message": "json: cannot unmarshal string into Go value of type types.ExecStartCheck"})
    assert _api(d, "POST", f"/exec/{eid}/start", {"Detach": True}) == (200, None)
    _until(lambda: _inspect(d, eid)["Pid"] > 0)
    assert _api(d, "POST", f"/exec/{eid}/resize?h=x&w=20") == \
        (400, {"message": 'strconv.Atoi: parsing "x": invalid syntax'})
    assert _api(d, "POST", f"/exec/{eid}/resize") == (400, {"message": 'strconv.Atoi: parsing "": invalid syntax'})
    assert _api(d, "POST", f"/exec/{eid}/resize?h=10&w=20") == (200, None)
    plain = _create(d, ctr, Cmd=["sleep", "300"])
    assert _api(d, "POST", f"/exec/{plain}/start", {"Detach": True}) == (200, None)
    assert _api(d, "POST", f"/exec/{plain}/resize?h=10&w=20") == (200, None)  # no tty: nothing to do
    waiting = _create(d, ctr, Cmd=["true"])
    d.docker("pause", ctr)
    try:
        assert _api(d, "POST", f"/containers/{name}/exec", {"Cmd": ["true"]}) == \
            (409, {"message": f"Container {name} is paused, unpause the container before exec"})
        paused = {"message": f"Container {ctr} is paused, unpause the container before exec"}
        assert _api(d, "POST", f"/exec/{waiting}/start", {"Detach": True}) == (409, paused)
        assert _api(d, "POST", f"/exec/{waiting}/start", {"Detach": False}, upgrade=True) == (409, paused)
        assert _inspect(d, eid)["Running"] is True
    finally:
        d.docker("unpause", ctr)


def test_exec_events(d: Daemon, ctr: str) -> None:
    """moby's TestEventsExecDie, and exec_create/exec_start named after the command."""
    since = time.time()
    eid = _create(d, ctr, Cmd=["sh", "-c", "exit 3"])
    assert _api(d, "POST", f"/exec/{eid}/start", {"Detach": True})[0] == 200
    _exited(d, eid)
    bad = _create(d, ctr, Cmd=["nosuchcmd"])
    assert _api(d, "POST", f"/exec/{bad}/start", {"Detach": True})[0] == 400
    out = d.out("events", "--since", f"{since:.6f}", "--until", f"{time.time() + 0.5:.6f}", "--filter",
                f"container={ctr}", "--format", "{{json .}}")
    events = [json.loads(line) for line in out.splitlines()]
    base = {"image": IMAGE, "name": d.out("inspect", "-f", "{{.Name}}", ctr).lstrip("/")}
    assert [(e["Type"], e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"]) for e in events] == [
        ("container", "exec_create: sh -c exit 3", ctr, {**base, "execID": eid}),
        ("container", "exec_start: sh -c exit 3", ctr, {**base, "execID": eid}),
        ("container", "exec_die", ctr, {**base, "execID": eid, "exitCode": "3"}),
        ("container", "exec_create: nosuchcmd ", ctr, {**base, "execID": bad}),
        ("container", "exec_start: nosuchcmd ", ctr, {**base, "execID": bad}),
    ]


def test_exec_attached_streams_over_the_hijack(d: Daemon, ctr: str) -> None:
    # without a tty: multiplexed frames (the content type says so from API 1.42), stdin forwarded, half-close
    eid = _create(d, ctr, AttachStdin=True, AttachStdout=True, AttachStderr=True,
                  Cmd=["sh", "-c", "cat; echo err >&2; exit 2"])
    line, headers, s, first = _hijack(d, eid, {"Detach": False, "Tty": False}, version="v1.44")
    assert line == "HTTP/1.1 101 UPGRADED"
    assert headers["content-type"] == "application/vnd.docker.multiplexed-stream"
    assert headers["connection"] == "Upgrade" and headers["upgrade"] == "tcp"
    s.sendall(b"line one\n")
    s.shutdown(socket.SHUT_WR)
    assert _demux(_read_to_eof(s, first)) == [(1, b"line one\n"), (2, b"err\n")]
    assert _inspect(d, eid)["ExitCode"] == 2  # recorded before the stream ended

    # the start's Tty decides the framing: raw, and no stderr
    eid = _create(d, ctr, AttachStdout=True, AttachStderr=True, Cmd=["sh", "-c", "echo o; echo e >&2"])
    _, headers, s, first = _hijack(d, eid, {"Detach": False, "Tty": True}, version="v1.44")
    assert headers["content-type"] == "application/vnd.docker.raw-stream"
    assert _read_to_eof(s, first) == b"o\n"

    # with a tty: one raw stream, CRLF from the pty; the client's EOF ends the attach, the process goes on
    eid = _create(d, ctr, AttachStdin=True, AttachStdout=True, AttachStderr=True, Tty=True, Cmd=["cat"])
    _, headers, s, first = _hijack(d, eid, {"Detach": False, "Tty": True})
    assert headers["content-type"] == "application/vnd.docker.raw-stream"
    s.sendall(b"abc\n")
    out = first
    while out.count(b"abc\r\n") < 2:  # the echo, and cat's copy
        chunk = s.recv(65536)
        assert chunk, out
        out += chunk
    s.shutdown(socket.SHUT_WR)
    assert _read_to_eof(s, out) == b"abc\r\nabc\r\n"
    info = _inspect(d, eid)
    assert (info["Running"], info["ExitCode"]) == (True, None)

    # an exec without stdin: the client's bytes are dropped and its EOF changes nothing
    eid = _create(d, ctr, AttachStdout=True, Cmd=["sh", "-c", "cat; echo done"])
    _, _, s, first = _hijack(d, eid, {"Detach": False})
    s.sendall(b"dropped\n")
    s.shutdown(socket.SHUT_WR)
    assert _demux(_read_to_eof(s, first)) == [(1, b"done\n")]

    # a client that hangs up: the process goes on and its exit is still recorded
    eid = _create(d, ctr, AttachStdout=True, Cmd=["sh", "-c", "sleep 1; echo late; exit 6"])
    _, _, s, _ = _hijack(d, eid, {"Detach": False})
    s.close()
    assert _exited(d, eid)["ExitCode"] == 6


def test_exec_detach_keys(d: Daemon, ctr: str) -> None:
    """A tty exec's attach ends at the detach keys (ctrl-p,ctrl-q, or the exec's own), each key a read of its own;
    held keys that do not complete the sequence go through. The process goes on; the event is exec_detach."""
    since = time.time()
    for keys, sequence in (("", b"\x10\x11"), ("a,b", b"ab")):
        eid = _create(d, ctr, AttachStdin=True, AttachStdout=True, Tty=True, Cmd=["cat"], DetachKeys=keys)
        _, _, s, out = _hijack(d, eid, {"Detach": False, "Tty": True})
        for attempt in range(1, 6):  # each key must arrive as a read of its own: pauses between them
            s.sendall(sequence[:1])
            time.sleep(0.3 * attempt)
            s.sendall(sequence[1:])
            s.settimeout(3 * attempt)
            try:
                while chunk := s.recv(65536):
                    out += chunk
                break  # the daemon closed the stream: detached
            except TimeoutError:
                continue  # the two keys were read together (as data): again
        else:
            pytest.fail(f"no detach: {out!r}")
        s.close()
        info = _inspect(d, eid)
        assert (info["Running"], info["ExitCode"]) == (True, None)
    actions = d.out("events", "--since", f"{since:.6f}", "--until", f"{time.time() + 0.5:.6f}", "--filter",
                    f"container={ctr}", "--format", "{{.Action}}").splitlines()
    assert actions.count("exec_detach") == 2 and "exec_die" not in actions


# ---- docker-py and testcontainers -------------------------------------------------------------------------------
def test_docker_py_exec_run(d: Daemon, ctr: str) -> None:
    client = d.client()
    c = client.containers.get(ctr)
    assert tuple(c.exec_run(["sh", "-c", "echo a; sleep 0.3; echo b >&2; exit 2"])) == (2, b"a\nb\n")
    assert tuple(c.exec_run("sh -c 'echo a; echo b >&2'", demux=True)) == (0, (b"a\n", b"b\n"))
    r = c.exec_run("sh -c 'echo a; sleep 0.3; echo b >&2'", stream=True)
    assert r.exit_code is None and b"".join(r.output) == b"a\nb\n"
    r = c.exec_run("sh -c 'echo a; sleep 0.3; echo b >&2'", stream=True, demux=True)
    assert list(r.output) == [(b"a\n", None), (None, b"b\n")]
    assert tuple(c.exec_run("env", environment={"X": "y"}, user="nobody", workdir="/etc")) == \
        (0, f"PATH=/bin\nHOSTNAME={ctr[:12]}\nX=y\nHOME=/\n".encode())
    code, out = c.exec_run("tty", tty=True)
    assert code == 0 and re.fullmatch(rb"/dev/pts/\d+\r\n", out)
    code, out = c.exec_run("nosuchcmd")
    assert (code, out) == (126, NOT_FOUND_MSG)
    assert c.exec_run("sleep 100", detach=True).exit_code is None

    api = client.api  # the low level: a tty resized before it reads its size
    eid = api.exec_create(ctr, ["sh", "-c", "read x; stty size"], stdin=True, tty=True)["Id"]
    sock = api.exec_start(eid, tty=True, socket=True)
    raw = getattr(sock, "_sock", sock)
    api.exec_resize(eid, height=33, width=77)
    raw.sendall(b"\n")
    assert _read_to_eof(raw).endswith(b"33 77\r\n")
    assert api.exec_inspect(eid)["ExitCode"] == 0
    client.close()


def test_testcontainers_exec(d: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    from testcontainers.core.container import DockerContainer

    monkeypatch.setenv("DOCKER_HOST", d.host)
    monkeypatch.setenv("DOCKER_CONFIG", str(d.docker_config))
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    with DockerContainer(IMAGE).with_command("sleep 1000") as container:
        result = container.exec("sh -c 'echo hello; exit 4'")
        assert (result.exit_code, result.output) == (4, b"hello\n")
        result = container.exec(["sh", "-c", "echo $HOSTNAME"])
        assert result.exit_code == 0 and result.output.strip() == container.get_wrapped_container().id[:12].encode()


# ---- side by side with dockerd 20.10 ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dockerd(d: Daemon) -> Iterator[Dockerd]:
    why = dockerd_unavailable()
    if why is not None:
        pytest.skip(why)
    real = Dockerd(d.docker_config)
    try:
        why = real.start()
        if why is not None:
            pytest.skip(f"dockerd did not start here: {why}")
        _import(real)
        yield real
    finally:
        real.stop()


def _scenario(engine: Daemon | Dockerd) -> list[Any]:
    """Requests whose answers must be dockerd's, IDs replaced by placeholders."""
    cid = engine.out("run", "-d", IMAGE, "sleep", "1000")
    name = engine.out("inspect", "-f", "{{.Name}}", cid).lstrip("/")
    ids: dict[str, str] = {cid: "CID", name: "NAME", cid[:12]: "SHORT"}

    def norm(value: Any) -> Any:
        text = json.dumps(value, default=lambda b: b.decode("latin-1"))  # (bytes as text)
        for real_id, placeholder in ids.items():
            text = text.replace(real_id, placeholder)
        text = re.sub(r'"Pid": [1-9][0-9]*', '"Pid": "PID"', text)
        return text

    out: list[Any] = []

    def note(label: str, value: Any) -> None:
        out.append((norm(label), norm(value)))

    def exec_id(**config: Any) -> str:
        eid = _create(engine, cid, **config)
        ids[eid] = f"EXEC{len(ids)}"
        return eid

    try:
        for config in ({"AttachStdout": True, "Cmd": ["sh", "-c", "echo out; echo err >&2; exit 3"]},
                       {"AttachStdout": True, "AttachStderr": True, "Cmd": ["nosuchcmd"]},
                       {"AttachStdin": True, "AttachStdout": True, "Tty": True, "Cmd": ["id"], "User": "nobody",
                        "Env": ["A=1"], "WorkingDir": "/etc", "Privileged": False, "DetachKeys": "ctrl-x,y"}):
            eid = exec_id(**config)
            note("created", _inspect(engine, eid))
            line, headers, s, first = _hijack(engine, eid, {"Detach": False, "Tty": bool(config.get("Tty"))})
            note("start", (line.split(" ")[:2], headers.get("content-type"), _read_to_eof(s, first).decode("latin-1")))
            note("ran", _exited(engine, eid))
        for cli_args in (["sh", "-c", "echo out; echo err >&2; exit 3"], ["-u", "nobody:root", "id"],
                         ["-t", "-e", "TERM=dumb", "sh", "-c", "echo $TERM; env | wc -l"], ["nosuchcmd"],
                         ["-w", "/nonexist", "pwd"], ["-u", "nouser", "id"], ["-d", "true"]):
            p = engine.docker("exec", *_split(cli_args, cid), check=False)
            note(f"cli {cli_args}", (p.returncode, p.stdout, p.stderr))
        for method, path, body in (("POST", "/containers/nope/exec", {"Cmd": ["x"]}),
                                   ("POST", f"/containers/{cid}/exec", {"Cmd": []}),
                                   ("POST", f"/containers/{cid}/exec", {"Cmd": "x"}),
                                   ("POST", f"/containers/{cid}/exec", {"Cmd": ["x"], "Env": [1]}),
                                   ("POST", f"/containers/{cid}/exec", {"Cmd": ["x"], "DetachKeys": "ctl-p"}),
                                   ("GET", "/exec/nope/json", None),
                                   ("POST", "/exec/nope/start", {"Detach": True}),
                                   ("POST", "/exec/nope/resize?h=1&w=1", None)):
            note(f"{method} {path} {body}", _api(engine, method, path, body))
        eid = exec_id(Cmd=["sleep", "300"], Tty=True, AttachStdout=True)
        note("detached", _api(engine, "POST", f"/exec/{eid}/start", {"Detach": True}))
        _until(lambda: _inspect(engine, eid)["Pid"] > 0)
        note("running", _inspect(engine, eid))
        note("resize", _api(engine, "POST", f"/exec/{eid}/resize?h=10&w=20"))
        note("resize bad", _api(engine, "POST", f"/exec/{eid}/resize?h=10&w=-"))
        note("again", _api(engine, "POST", f"/exec/{eid}/start", {"Detach": True}))
        created = exec_id(Cmd=["true"])
        engine.docker("pause", cid)
        note("paused create", _api(engine, "POST", f"/containers/{name}/exec", {"Cmd": ["true"]}))
        note("paused start", _api(engine, "POST", f"/exec/{created}/start", {"Detach": True}))
        engine.docker("unpause", cid)
        engine.docker("stop", "-t", "1", cid)
        note("stopped created", _api(engine, "GET", f"/exec/{created}/json"))
        note("stopped killed", _exited(engine, eid))
        note("stopped create", _api(engine, "POST", f"/containers/{cid}/exec", {"Cmd": ["true"]}))
    finally:
        engine.docker("rm", "-f", cid, check=False)
    return out


def _split(args: list[str], cid: str) -> list[str]:
    """``docker exec`` options, the container, the command."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in ("-u", "-e", "-w") else 1
    return [*args[:i], cid, *args[i:]]


def test_exec_like_dockerd(d: Daemon, dockerd: Dockerd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_API_VERSION", "1.41")  # dockerd 20.10's: the same version against both
    ours, theirs = _scenario(d), _scenario(dockerd)
    assert [label for label, _ in ours] == [label for label, _ in theirs]
    for (label, mine), (_, real) in zip(ours, theirs, strict=True):
        assert mine == real, label


def test_docker_py_exec_like_dockerd(d: Daemon, dockerd: Dockerd) -> None:
    def run(engine: Daemon | Dockerd) -> list[Any]:
        import docker

        client = docker.DockerClient(base_url=engine.host, version="1.41", timeout=120)
        c = client.containers.run(IMAGE, "sleep 1000", detach=True)
        try:
            return [tuple(c.exec_run(cmd, **kw)) for cmd, kw in (
                # (stdout and stderr are copied apart in dockerd: apart in time, so that their order is certain)
                ("sh -c 'echo a; sleep 0.3; echo b >&2; exit 2'", {}), ("sh -c 'echo a; echo b >&2'", {"demux": True}),
                ("nosuchcmd", {}), ("tty", {"tty": True}), ("id", {"user": "nobody"}),
                ("sh -c 'echo $X; pwd'", {"environment": ["X=1"], "workdir": "/bin"}),
                ("sleep 1", {"detach": True}))]
        finally:
            c.remove(force=True)
            client.close()

    assert run(d) == run(dockerd)
