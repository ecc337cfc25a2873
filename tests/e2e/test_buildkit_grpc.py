"""BuildKit's Control API over ``POST /grpc`` (what buildx's docker driver speaks; buildx itself cannot be
installed here): a gRPC client over the h2c upgrade of a connection to the daemon's socket calls ``Info``,
``ListWorkers``, ``DiskUsage`` and ``Prune`` after a BuildKit build, and a ``Solve`` with a raw LLB definition or
another frontend is ``Unimplemented`` with a message that names what is supported."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from grpclib import GRPCError
from grpclib.const import Status

from dockwright.buildkit.h2c import ClientChannel, TakenConnection
from dockwright.buildkit.pb import control_grpc, control_pb2, ops_pb2

from conftest import FIXTURES, Daemon

CLI = "/usr/bin/docker"


async def _control(sock: Path) -> tuple[control_grpc.ControlStub, ClientChannel]:
    reader, writer = await asyncio.open_unix_connection(str(sock))
    writer.write(b"POST /grpc HTTP/1.1\r\nHost: docker\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
                 b"Content-Length: 0\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"upgrade: h2c" in head.lower()
    leftover = bytes(reader._buffer)  # noqa: SLF001 - what came after the 101 belongs to HTTP/2
    transport = writer.transport
    assert isinstance(transport, asyncio.Transport)
    channel = ClientChannel(TakenConnection(transport, buffered=leftover))
    channel.keep = writer  # type: ignore[attr-defined]  # a StreamWriter closes its transport when collected
    return control_grpc.ControlStub(channel), channel


@pytest.fixture(scope="module")
def built(shared_daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Daemon:
    if not os.path.exists(CLI):
        pytest.skip(f"no docker 20.10 CLI at {CLI} (Debian's docker.io)")
    shared_daemon.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
    ctx = tmp_path_factory.mktemp("grpcctx")
    (ctx / "Dockerfile").write_text("FROM bb:1\nCOPY Dockerfile /df\n"
                                    "RUN --mount=type=cache,target=/c echo x > /c/x && echo y > /y\n")
    env = {**os.environ, "DOCKER_HOST": shared_daemon.host, "DOCKER_CONFIG": str(shared_daemon.docker_config),
           "DOCKER_BUILDKIT": "1"}
    p = subprocess.run([CLI, "build", "-t", "bk/grpc:1", str(ctx)], env=env, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return shared_daemon


def test_info_workers_and_disk_usage(built: Daemon) -> None:
    async def go() -> None:
        stub, channel = await _control(built.sock)
        try:
            info = await stub.Info(control_pb2.InfoRequest())
            assert info.buildkitVersion.package == "github.com/moby/buildkit"
            workers = await stub.ListWorkers(control_pb2.ListWorkersRequest())
            assert len(workers.record) == 1
            assert workers.record[0].Labels["org.mobyproject.buildkit.worker.executor"] == "runc"
            assert workers.record[0].platforms[0].OS == "linux"
            du = await stub.DiskUsage(control_pb2.DiskUsageRequest())
            kinds = {r.RecordType for r in du.record}
            assert {"regular", "exec.cachemount", "source.local"} <= kinds
            assert all(len(r.ID) == 25 for r in du.record)
        finally:
            channel.close()

    asyncio.run(go())


def test_prune_answers_each_record_removed(built: Daemon) -> None:
    async def go() -> None:
        stub, channel = await _control(built.sock)
        try:
            before = await stub.DiskUsage(control_pb2.DiskUsageRequest())
            mounts = {r.ID for r in before.record if r.RecordType == "exec.cachemount"}
            assert mounts
            removed = await stub.Prune(control_pb2.PruneRequest(filter=["type==exec.cachemount"]))
            assert {r.ID for r in removed} == mounts
            after = await stub.DiskUsage(control_pb2.DiskUsageRequest())
            assert not any(r.RecordType == "exec.cachemount" for r in after.record)
        finally:
            channel.close()

    asyncio.run(go())


def test_solve_of_raw_llb_or_another_frontend_is_unimplemented(built: Daemon) -> None:
    async def go() -> None:
        stub, channel = await _control(built.sock)
        try:
            definition = ops_pb2.Definition()
            getattr(definition, "def").append(b"\x00")
            with pytest.raises(GRPCError) as e:
                await stub.Solve(control_pb2.SolveRequest(Ref="r1", Definition=definition))
            assert e.value.status == Status.UNIMPLEMENTED
            assert "dockerfile.v0" in (e.value.message or "")
            with pytest.raises(GRPCError) as e:
                await stub.Solve(control_pb2.SolveRequest(Ref="r2", Frontend="other.v0"))
            assert e.value.status == Status.UNIMPLEMENTED and "other.v0" in (e.value.message or "")
        finally:
            channel.close()

    asyncio.run(go())
