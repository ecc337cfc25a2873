"""BuildKit's session transport with the real docker CLI 20.10 (``DOCKER_BUILDKIT=1 /usr/bin/docker build``).

Three views: ``POST /session`` of the real daemon, raw (BuildKit's errors, the ``101``, one session per ID, the ID
free again once its connection ends); the real CLI's builds, which fetch the Dockerfile and context through the
session (only what changed, the second time) and send outputs back (``-o type=local``, ``-o type=tar``); and
``serve_grpc``'s takeover with a gRPC client on the other end.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from dockwright.api import session as api_session
from dockwright.buildkit.h2c import ClientChannel, TakenConnection
from dockwright.buildkit.pb import secrets_grpc, secrets_pb2

from conftest import Daemon

CLI = "/usr/bin/docker"


def cli_or_skip() -> str:
    if not os.access(CLI, os.X_OK):
        pytest.skip(f"no docker CLI at {CLI} (Debian's docker.io 20.10)")
    out = subprocess.run([CLI, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True,
                         env={**os.environ, "DOCKER_HOST": "unix:///nonexistent"})
    if not out.stdout.startswith("20.10"):
        pytest.skip(f"{CLI} is not the docker CLI 20.10 (it says {out.stdout.strip()!r}): newer ones need buildx")
    return CLI


def buildkit_build(host: str, *args: str, config: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "1", "DOCKER_CONFIG": str(config),
           "DOCKER_CLI_HINTS": "false", "BUILDKIT_PROGRESS": "plain"}
    env.pop("DOCKER_CONTEXT", None)
    return subprocess.run([cli_or_skip(), "build", *args], capture_output=True, text=True, env=env, timeout=timeout)


def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (ctx / "a.txt").write_text("hello\n")
    (ctx / "sub" / "b.txt").write_text("world\n")
    (ctx / "link").symlink_to("a.txt")
    (ctx / "ignored.log").write_text("not sent\n")
    (ctx / ".dockerignore").write_text("*.log\n")
    return ctx


# -- the real daemon's POST /session ---------------------------------------------------------------------------


def raw_session(sock: Path, headers: str) -> tuple[socket.socket, bytes]:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(sock))
    s.sendall(f"POST /session HTTP/1.1\r\nHost: \r\nContent-Length: 0\r\n{headers}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while not head.startswith(b"HTTP/1.1 101") and len(body) < length:
        body += s.recv(65536)
    return s, head + b"\r\n\r\n" + body


def test_session_endpoint_of_the_daemon(daemon: Daemon) -> None:
    status, _, body = daemon.api("POST", "/session")
    assert (status, json.loads(body)) == (400, {"message": "no upgrade proto in request"})
    status, _, body = daemon.api("POST", "/v1.41/session", headers={"Upgrade": "foo", "Connection": "Upgrade"})
    assert (status, json.loads(body)) == (400, {"message": "protocol foo not supported"})

    upgrade = "Connection: Upgrade\r\nUpgrade: h2c\r\nX-Docker-Expose-Session-Uuid: sess1\r\n"
    first, head = raw_session(daemon.sock, upgrade)
    status_line, _, rest = head.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 101 Switching Protocols"
    assert b"\r\nConnection: Upgrade\r\n" in b"\r\n" + rest and b"\r\nUpgrade: h2c\r\n" in b"\r\n" + rest
    # the daemon is the HTTP/2 client: its connection preface follows the 101
    preface = head.partition(b"\r\n\r\n")[2]
    while len(preface) < 24:
        preface += first.recv(65536)
    assert preface.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

    second, head = raw_session(daemon.sock, upgrade)
    assert head.startswith(b"HTTP/1.1 400 ") and head.endswith(b'\r\n\r\n{"message":"session sess1 already exists"}\n')
    second.close()

    first.close()  # the session ends with its connection, and its ID is free again
    deadline = time.time() + 10
    while True:
        third, head = raw_session(daemon.sock, upgrade)
        if head.startswith(b"HTTP/1.1 101") or time.time() > deadline:
            break
        third.close()
        time.sleep(0.1)
    assert head.startswith(b"HTTP/1.1 101")
    third.close()
    status, _, _ = daemon.api("GET", "/_ping")
    assert status == 200
    assert "Traceback" not in daemon.log() and "Error handling request" not in daemon.log(), daemon.log()


# -- the real CLI against the daemon: what goes through the session ---------------------------------------------


def transferred(out: str) -> int:
    """The bytes of the last ``transferring context:`` of ``[internal] load build context``, from plain progress."""
    number = ""
    got = -1
    for line in out.splitlines():
        if line.endswith("[internal] load build context"):
            number = line.split()[0]
        elif number and line.startswith(number + " transferring context:"):
            size = line.split("transferring context:")[1].split()[0]
            got = int(float(size.rstrip("kMGB"))) * (1000 if size.endswith("kB") else 1)
    return got


def test_the_cli_session_end_to_end(daemon: Daemon, tmp_path: Path) -> None:
    ctx = context(tmp_path)
    out = tmp_path / "out"
    p = buildkit_build(daemon.host, "-o", f"type=local,dest={out}", str(ctx), config=daemon.docker_config)
    assert p.returncode == 0, p.stderr
    # the context came through FileSync (.dockerignore applied), the output went back through FileSend
    assert sorted(os.listdir(out)) == [".dockerignore", "Dockerfile", "a.txt", "link", "sub"]
    assert (out / "sub" / "b.txt").read_text() == "world\n" and os.readlink(out / "link") == "a.txt"

    # the second build of the same context fetches only what changed
    (ctx / "sub" / "b.txt").write_text("world, edited\n")
    tarball = tmp_path / "out.tar"
    p = buildkit_build(daemon.host, "-o", f"type=tar,dest={tarball}", str(ctx), config=daemon.docker_config)
    assert p.returncode == 0, p.stderr
    assert transferred(p.stderr) < 1000
    with tarfile.open(tarball) as tar:
        names = sorted(n.removeprefix("./") for n in tar.getnames())
        edited = tar.extractfile("sub/b.txt")
        assert edited is not None and edited.read() == b"world, edited\n"
    assert "a.txt" in names and "ignored.log" not in names

    # a Dockerfile elsewhere, with its own ignore file (the context's .dockerignore is then not used)
    (tmp_path / "df").mkdir()
    (tmp_path / "df" / "My.Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (tmp_path / "df" / "My.Dockerfile.dockerignore").write_text("sub\n")
    p = buildkit_build(daemon.host, "-f", str(tmp_path / "df" / "My.Dockerfile"), "-o", f"type=local,dest={out}-2",
                       str(ctx), config=daemon.docker_config)
    assert p.returncode == 0, p.stderr
    assert "sub" not in os.listdir(f"{out}-2") and "ignored.log" in os.listdir(f"{out}-2")
    assert "Traceback" not in daemon.log()


def test_the_cli_sees_a_missing_dockerfile(daemon: Daemon, tmp_path: Path) -> None:
    ctx = tmp_path / "empty"
    ctx.mkdir()
    p = buildkit_build(daemon.host, str(ctx), config=daemon.docker_config)
    assert p.returncode == 1
    assert "failed to solve with frontend dockerfile.v0: failed to read dockerfile: open" in p.stderr
    assert "Dockerfile: no such file or directory" in p.stderr


def test_serve_grpc_answers_on_the_taken_connection(tmp_path: Path) -> None:
    """``/grpc``'s takeover with a grpclib client on the other end (buildx's role)."""

    class Secrets(secrets_grpc.SecretsBase):
        async def GetSecret(self, stream: Any) -> None:
            req = await stream.recv_message()
            await stream.send_message(secrets_pb2.GetSecretResponse(data=req.ID.encode()))

    async def grpc(request: web.Request) -> web.StreamResponse:
        return await api_session.serve_grpc(request, [Secrets()])

    async def main() -> None:
        app = web.Application()
        app.router.add_route("POST", "/grpc", grpc)
        runner = web.AppRunner(app)
        await runner.setup()
        sock = tmp_path / "g.sock"
        await web.UnixSite(runner, str(sock)).start()
        try:
            reader, writer = await asyncio.open_unix_connection(str(sock))
            writer.write(b"POST /grpc HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: Upgrade\r\n"
                         b"Upgrade: h2c\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101")
            transport: Any = writer.transport
            conn = TakenConnection(transport, buffered=bytes(reader._buffer))  # noqa: SLF001 - the server's SETTINGS
            channel = ClientChannel(conn)
            reply = await secrets_grpc.SecretsStub(channel).GetSecret(secrets_pb2.GetSecretRequest(ID="via grpc"))
            assert reply.data == b"via grpc"
            channel.close()
        finally:
            await runner.cleanup()

    asyncio.run(asyncio.wait_for(main(), 30))


# -- the real daemon, whole builds -----------------------------------------------------------------------------

def test_buildkit_build_through_the_daemon(daemon: Daemon, tmp_path: Path) -> None:
    ctx = context(tmp_path)
    out = tmp_path / "out"
    p = buildkit_build(daemon.host, "-o", f"type=local,dest={out}", str(ctx), config=daemon.docker_config)
    assert p.returncode == 0, p.stdout + p.stderr + daemon.log()[-3000:]
    assert sorted(os.listdir(out)) == [".dockerignore", "Dockerfile", "a.txt", "link", "sub"]
    assert (out / "sub" / "b.txt").read_text() == "world\n"
