"""BuildKit's image archive exporters, ``--output type=docker`` and ``type=oci``, as buildx asks for them.

The docker CLI 20.10 hands only ``local`` and ``tar`` outputs a file to write (it serves FileSend for those
alone), and buildx cannot be installed here; so the client here is built from BuildKit's protocol as buildx
speaks it: a session (``POST /session``, h2c) serving FileSync (the context and the Dockerfile, with fsutil's
sender) and FileSend (the tarball, written to a file), then ``Control.Solve`` over ``POST /grpc`` with the
``dockerfile.v0`` frontend and the exporter. What comes back is checked with real tools: skopeo reads both
archives, umoci unpacks the OCI one, and the docker CLI loads the docker one into the daemon.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from grpclib import GRPCError
from grpclib.const import Status
from grpclib.server import Stream

from dockwright.buildkit.filesync import ServerPackets, send
from dockwright.buildkit.h2c import ClientChannel, TakenConnection, serve
from dockwright.buildkit.pb import control_grpc, control_pb2, filesync_grpc, filesync_pb2
from dockwright.buildkit.pb.wire_pb2 import Packet

from conftest import FIXTURES, Daemon

SESSION = "exp-session-1"


class FileSync(filesync_grpc.FileSyncBase):
    """The client's directories (``dir-name``: ``context`` or ``dockerfile``), sent whole."""

    def __init__(self, dirs: dict[str, Path]) -> None:
        self.dirs = dirs

    async def DiffCopy(self, stream: Stream[Packet, Packet]) -> None:  # noqa: N802
        name = dict(stream.metadata or {}).get("dir-name", "")
        await send(ServerPackets(stream), self.dirs[str(name)])

    async def TarStream(self, stream: Stream[Packet, Packet]) -> None:  # noqa: N802
        raise GRPCError(Status.UNIMPLEMENTED, "no TarStream")


class FileSend(filesync_grpc.FileSendBase):
    """A tarball output, written to ``dest`` as it comes (BuildKit's ``CopyFileWriter`` on the other end)."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.calls = 0

    async def DiffCopy(self, stream: Stream[filesync_pb2.BytesMessage, filesync_pb2.BytesMessage]) -> None:  # noqa: N802
        self.calls += 1
        with open(self.dest, "wb") as f:
            async for msg in stream:
                f.write(msg.data)


async def _upgrade(sock: Path, path: str, headers: list[tuple[str, str]]) -> TakenConnection:
    reader, writer = await asyncio.open_unix_connection(str(sock))
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: docker\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
                 f"Content-Length: 0\r\n{extra}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    transport: Any = writer.transport
    conn = TakenConnection(transport, buffered=bytes(reader._buffer))  # noqa: SLF001 - HTTP/2 from here
    conn.keep = writer  # type: ignore[attr-defined]  # a StreamWriter closes its transport when collected
    return conn


async def solve(sock: Path, ctx: Path, exporter: str, attrs: dict[str, str], dest: Path | None,
                ) -> control_pb2.SolveResponse:
    """One build as buildx runs it: the session first, then Solve naming it; ``dest`` None: no FileSend."""
    services: list[Any] = [FileSync({"context": ctx, "dockerfile": ctx})]
    methods = ["/moby.filesync.v1.FileSync/DiffCopy"]
    if dest is not None:
        services.append(FileSend(dest))
        methods.append("/moby.filesync.v1.FileSend/DiffCopy")
    session = await _upgrade(sock, "/session", [("X-Docker-Expose-Session-Uuid", SESSION),
                                                ("X-Docker-Expose-Session-Name", "exporters"),
                                                ("X-Docker-Expose-Session-Sharedkey", "k")]
                             + [("X-Docker-Expose-Session-Grpc-Method", m) for m in methods])
    serving = asyncio.create_task(serve(session, services))
    control = await _upgrade(sock, "/grpc", [])
    channel = ClientChannel(control)
    try:
        stub = control_grpc.ControlStub(channel)
        return await stub.Solve(control_pb2.SolveRequest(
            Ref="exp-" + os.urandom(4).hex(), Session=SESSION, Frontend="dockerfile.v0",
            FrontendAttrs={"filename": "Dockerfile"},
            Exporters=[control_pb2.Exporter(Type=exporter, Attrs=attrs)]))
    finally:
        channel.close()
        session.close()
        await asyncio.wait_for(serving, 15)


@pytest.fixture(scope="module")
def ready(shared_daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> tuple[Daemon, Path]:
    shared_daemon.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
    ctx = tmp_path_factory.mktemp("expctx")
    (ctx / "Dockerfile").write_text('FROM bb:1\nCOPY hello.txt /hello.txt\nRUN echo built > /built\n'
                                    'LABEL stage=exporters\nCMD ["cat", "/hello.txt"]\n')
    (ctx / "hello.txt").write_text("hello from the archive\n")
    return shared_daemon, ctx


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: (tf.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
                for m in tf.getmembers()}


def images(d: Daemon) -> set[str]:
    return set(d.out("images", "-a", "-q", "--no-trunc").split())


def test_oci_archive_is_an_oci_layout_that_skopeo_and_umoci_read(ready: tuple[Daemon, Path], tmp_path: Path) -> None:
    d, ctx = ready
    before = images(d)
    dest = tmp_path / "image.oci.tar"
    res = asyncio.run(solve(d.sock, ctx, "oci", {"name": "example.com/exp/oci:v1"}, dest))
    assert images(d) == before  # an archive for the client, not an image in the store
    files = members(dest)
    assert "manifest.json" not in files and json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    [entry] = index["manifests"]
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["annotations"] == {"io.containerd.image.name": "example.com/exp/oci:v1",
                                    "org.opencontainers.image.ref.name": "v1"}
    resp = dict(res.ExporterResponse)
    assert resp["containerimage.digest"] == entry["digest"]
    assert resp["image.name"] == "example.com/exp/oci:v1"
    manifest = json.loads(files["blobs/sha256/" + entry["digest"].split(":")[1]])
    assert manifest["config"]["digest"] == resp["containerimage.config.digest"]
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert config["config"]["Labels"] == {"stage": "exporters"} and config["config"]["Cmd"] == ["cat", "/hello.txt"]
    assert len(manifest["layers"]) == len(config["rootfs"]["diff_ids"])

    if shutil.which("skopeo"):
        p = subprocess.run(["skopeo", "inspect", f"oci-archive:{dest}:v1"], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["Labels"] == {"stage": "exporters"}
    if shutil.which("umoci"):
        layout = tmp_path / "layout"
        layout.mkdir()
        with tarfile.open(dest) as tf:
            tf.extractall(layout, filter="tar")
        bundle = tmp_path / "bundle"
        p = subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{layout}:v1", str(bundle)],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert (bundle / "rootfs" / "hello.txt").read_text() == "hello from the archive\n"
        assert (bundle / "rootfs" / "built").read_text() == "built\n"


def test_docker_archive_loads_with_its_name(ready: tuple[Daemon, Path], tmp_path: Path) -> None:
    d, ctx = ready
    before = images(d)
    dest = tmp_path / "image.docker.tar"
    res = asyncio.run(solve(d.sock, ctx, "docker", {"name": "exp/docker:v2,exp/docker:latest"}, dest))
    assert images(d) == before
    files = members(dest)
    [item] = json.loads(files["manifest.json"])
    assert sorted(item["RepoTags"]) == ["exp/docker:latest", "exp/docker:v2"]
    assert dict(res.ExporterResponse)["image.name"] == "docker.io/exp/docker:v2,docker.io/exp/docker:latest"
    if shutil.which("skopeo"):
        p = subprocess.run(["skopeo", "inspect", f"docker-archive:{dest}"], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["Labels"] == {"stage": "exporters"}
    out = d.out("load", "-i", str(dest))
    assert "Loaded image: exp/docker:v2" in out and "Loaded image: exp/docker:latest" in out
    config_digest = dict(res.ExporterResponse)["containerimage.config.digest"]
    assert d.out("image", "inspect", "-f", "{{.Id}}", "exp/docker:v2").strip() == config_digest
    assert d.out("run", "--rm", "exp/docker:v2").strip() == "hello from the archive"


def test_archive_outputs_need_a_client_that_receives_them(ready: tuple[Daemon, Path], tmp_path: Path) -> None:
    d, ctx = ready
    with pytest.raises(GRPCError) as err:
        asyncio.run(solve(d.sock, ctx, "oci", {}, None))
    assert "FileSend" in (err.value.message or "")
    with pytest.raises(GRPCError) as err:
        asyncio.run(solve(d.sock, ctx, "oci", {"tar": "false"}, tmp_path / "x.tar"))
    assert err.value.status == Status.UNIMPLEMENTED and "tar=false" in (err.value.message or "")
    with pytest.raises(GRPCError) as err:
        asyncio.run(solve(d.sock, ctx, "registry", {}, tmp_path / "x.tar"))
    assert err.value.status == Status.UNIMPLEMENTED and "registry" in (err.value.message or "")
    assert "Traceback" not in d.log()
