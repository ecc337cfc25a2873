"""BuildKit sessions: a SessionManager running a session whose client (the other end of a socketpair) serves
FileSync, Secrets, Auth and FileSend as the docker CLI does."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.health.service import Health
from grpclib.server import Stream

from dockwright.buildkit.filesync import ServerPackets, receive, send
from dockwright.buildkit.h2c import TakenConnection, serve
from dockwright.buildkit.pb import auth_grpc, auth_pb2, filesync_grpc, filesync_pb2, secrets_grpc, secrets_pb2
from dockwright.buildkit.pb.wire_pb2 import Packet
from dockwright.buildkit.session import (
    AUTH_CREDENTIALS,
    FILESEND_DIFFCOPY,
    FILESYNC_DIFFCOPY,
    HEALTH_CHECK,
    NoActiveSession,
    SecretNotFound,
    Session,
    SessionManager,
)
from dockwright.errors import InvalidArgument, NotFound, NotSupported, Unavailable

CLI_METHODS = [FILESYNC_DIFFCOPY, "/moby.filesync.v1.FileSync/TarStream", AUTH_CREDENTIALS,
               "/moby.filesync.v1.Auth/FetchToken", "/grpc.health.v1.Health/Check", FILESEND_DIFFCOPY,
               "/moby.buildkit.secrets.v1.Secrets/GetSecret"]


class Client:
    """The services of a docker CLI's session: its directories, secrets, credentials and output targets."""

    def __init__(self, dirs: dict[str, Path], secrets: dict[str, bytes], out: Path) -> None:
        self.dirs, self.secrets, self.out = dirs, secrets, out
        self.metadata: list[dict[str, list[str]]] = []
        self.tar = bytearray()
        self.tar_messages: list[int] = []

    def __mapping__(self) -> dict[str, Handler]:
        return {FILESYNC_DIFFCOPY: Handler(self.diffcopy, Cardinality.STREAM_STREAM, Packet, Packet)}

    def record(self, stream: Stream[Any, Any]) -> dict[str, list[str]]:
        md: dict[str, list[str]] = {}
        for k, v in stream.metadata.items():  # type: ignore[union-attr]
            md.setdefault(k, []).append(v)
        self.metadata.append(md)
        return md

    async def diffcopy(self, stream: Stream[Packet, Packet]) -> None:
        md = self.record(stream)
        name = md.get("dir-name", [""])[0]
        if name not in self.dirs:
            raise GRPCError(Status.NOT_FOUND, f'no access allowed to dir "{name}"')
        await send(ServerPackets(stream), self.dirs[name])


class Secrets(secrets_grpc.SecretsBase):
    def __init__(self, secrets: dict[str, bytes]) -> None:
        self.secrets = secrets

    async def GetSecret(self, stream: Stream[secrets_pb2.GetSecretRequest, secrets_pb2.GetSecretResponse]) -> None:
        req = await stream.recv_message()
        assert req is not None
        if req.ID not in self.secrets:
            raise GRPCError(Status.NOT_FOUND, "secret not found")
        await stream.send_message(secrets_pb2.GetSecretResponse(data=self.secrets[req.ID]))


class Auth(auth_grpc.AuthBase):
    async def Credentials(self, stream: Stream[auth_pb2.CredentialsRequest, auth_pb2.CredentialsResponse]) -> None:
        req = await stream.recv_message()
        assert req is not None
        if req.Host == "registry.example":
            await stream.send_message(auth_pb2.CredentialsResponse(Username="me", Secret="pw"))
        else:
            await stream.send_message(auth_pb2.CredentialsResponse())

    async def FetchToken(self, stream: Any) -> None:
        raise GRPCError(Status.UNIMPLEMENTED)

    async def GetTokenAuthority(self, stream: Any) -> None:
        raise GRPCError(Status.UNIMPLEMENTED)

    async def VerifyTokenAuthority(self, stream: Any) -> None:
        raise GRPCError(Status.UNIMPLEMENTED)


class TarTarget(filesync_grpc.FileSendBase):
    def __init__(self, client: Client) -> None:
        self.client = client

    async def DiffCopy(self, stream: Stream[filesync_pb2.BytesMessage, filesync_pb2.BytesMessage]) -> None:
        self.client.record(stream)
        async for msg in stream:
            self.client.tar += msg.data
            self.client.tar_messages.append(len(msg.data))


class DirTarget:
    """The CLI's FileSend for ``--output type=local``: fsutil's receiver on the FileSend stream."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __mapping__(self) -> dict[str, Handler]:
        return {FILESEND_DIFFCOPY: Handler(self.diffcopy, Cardinality.STREAM_STREAM, Packet, Packet)}

    async def diffcopy(self, stream: Stream[Packet, Packet]) -> None:
        self.client.record(stream)
        await receive(ServerPackets(stream), self.client.out)


async def open_session(manager: SessionManager, services: list[Any], *, session_id: str = "sid1",
                       methods: list[str] = CLI_METHODS) -> tuple[asyncio.Task[None], asyncio.Task[None]]:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    ta, _ = await loop.create_unix_connection(asyncio.Protocol, sock=a)
    tb, _ = await loop.create_unix_connection(asyncio.Protocol, sock=b)
    client = asyncio.create_task(serve(TakenConnection(tb), services))
    daemon = asyncio.create_task(manager.attach(TakenConnection(ta), session_id=session_id, name="ctx",
                                                shared_key="key", methods=methods))
    return daemon, client


def run(tmp_path: Path, body: Callable[[Session, Client], Awaitable[None]], *, with_tar: bool = True,
        methods: list[str] = CLI_METHODS) -> Client:
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / "a.txt").write_text("a")
    (ctx / "sub" / "b.txt").write_text("b")
    (ctx / "é.txt").write_text("accent")
    client = Client({"context": ctx}, {"tok": b"s3cr3t"}, tmp_path / "out")

    async def main() -> None:
        manager = SessionManager()
        target = TarTarget(client) if with_tar else DirTarget(client)
        daemon, served = await open_session(manager, [client, Secrets(client.secrets), Auth(), target],
                                            methods=methods)
        session = await manager.get("prefix:sid1", timeout=5)
        assert (session.id, session.name, session.shared_key) == ("sid1", "ctx", "key")
        try:
            await body(session, client)
        finally:
            session.close()
            await asyncio.wait_for(daemon, 5)
            await asyncio.wait_for(served, 5)
        assert "sid1" not in manager and session.closed.is_set()

    asyncio.run(asyncio.wait_for(main(), 60))
    return client


def test_sync_dir_sends_buildkits_metadata_and_syncs(tmp_path: Path) -> None:
    async def body(session: Session, client: Client) -> None:
        dest = tmp_path / "dest"
        stats = await session.sync_dir("context", dest, exclude=["sub", "é*"], follow_paths=["Dockerfile"])
        assert stats.entries == 5 and sorted(os.listdir(dest)) == ["Dockerfile", "a.txt", "sub", "é.txt"]
        assert client.metadata[-1]["dir-name"] == ["context"]
        # a value HTTP/2 cannot carry as it is: every value of its key URL-escaped, and "-encoded" says so
        assert client.metadata[-1]["exclude-patterns"] == ["sub", "%C3%A9%2A"]
        assert client.metadata[-1]["exclude-patterns-encoded"] == ["1"]
        assert client.metadata[-1]["followpaths"] == ["Dockerfile"]
        assert "include-patterns" not in client.metadata[-1]
        again = await session.sync_dir("context", dest, include=["*.txt"])
        assert again.requested == 0 and client.metadata[-1]["include-patterns"] == ["*.txt"]
        with pytest.raises(NotFound, match='rpc error: code = NotFound desc = no access allowed to dir "nope"'):
            await session.sync_dir("nope", tmp_path / "nope")

    run(tmp_path, body)


def test_secrets_and_credentials(tmp_path: Path) -> None:
    async def body(session: Session, client: Client) -> None:
        assert await session.get_secret("tok") == b"s3cr3t"
        with pytest.raises(SecretNotFound, match="^secret nope not found: not found$"):
            await session.get_secret("nope")
        assert await session.credentials("registry.example") == ("me", "pw")
        assert await session.credentials("other.example") == ("", "")

    run(tmp_path, body)


def test_a_client_without_those_services(tmp_path: Path) -> None:
    async def body(session: Session, client: Client) -> None:
        assert not session.supports(FILESYNC_DIFFCOPY)
        with pytest.raises(NotSupported, match="no local sources enabled"):
            await session.sync_dir("context", tmp_path / "d")
        assert await session.credentials("registry.example") == ("", "")  # not listed: not asked
        with pytest.raises(NotSupported, match="FileSend/diffcopy not supported by the client"):
            await session.send_dir(tmp_path)

    run(tmp_path, body, methods=["/grpc.health.v1.Health/Check"])


def test_send_tar_in_messages_of_at_most_3_mib(tmp_path: Path) -> None:
    payload = os.urandom(7 << 20)

    async def chunks() -> AsyncIterator[bytes]:
        yield payload[:10]
        yield payload[10:]

    async def body(session: Session, client: Client) -> None:
        await session.send_tar(chunks())
        assert bytes(client.tar) == payload
        assert max(client.tar_messages) == 3 << 20
        assert client.metadata[-1]["buildkit-attachable-exporter-id"] == ["0"]

    run(tmp_path, body)


def test_send_dir_as_fsutils_sender(tmp_path: Path) -> None:
    src = tmp_path / "result"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("out")
    (src / "l").symlink_to("d/f")

    async def body(session: Session, client: Client) -> None:
        await session.send_dir(src)
        assert (client.out / "d" / "f").read_text() == "out" and os.readlink(client.out / "l") == "d/f"
        assert client.metadata[-1]["buildkit-attachable-exporter-id"] == ["0"]

    run(tmp_path, body, with_tar=False)


def test_get_waits_for_the_session_and_gives_up_as_buildkit(tmp_path: Path) -> None:
    async def main() -> None:
        manager = SessionManager()
        with pytest.raises(NoActiveSession, match="^no active session for nope: context deadline exceeded$"):
            await manager.get("nope", timeout=0.1)
        getting = asyncio.create_task(manager.get("late", timeout=5))
        await asyncio.sleep(0.05)
        daemon, served = await open_session(manager, [], session_id="late")
        session = await getting
        assert session.id == "late" and "late" in manager and len(manager) == 1
        # a second session of the same ID is refused, its connection closed
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        ta, _ = await loop.create_unix_connection(asyncio.Protocol, sock=a)
        conn = TakenConnection(ta)
        with pytest.raises(InvalidArgument, match="^session late already exists$"):
            await manager.attach(conn, session_id="late")
        await asyncio.wait_for(conn.wait_closed(), 5)
        b.close()
        manager.close_all()
        await asyncio.wait_for(daemon, 5)
        await asyncio.wait_for(served, 5)
        assert len(manager) == 0
        with pytest.raises(Unavailable):
            await session.get_secret("x")

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_session_failing_its_health_checks_is_closed() -> None:
    async def main() -> None:
        manager = SessionManager(health_interval=0.05, health_timeout=1, health_failures=2)
        # listed, not served: every check fails (as with a docker CLI whose session server stopped)
        daemon, served = await open_session(manager, [], session_id="sick", methods=[HEALTH_CHECK])
        session = await manager.get("sick")
        await asyncio.wait_for(session.wait_closed(), 5)
        await asyncio.wait_for(daemon, 5)
        await asyncio.wait_for(served, 5)
        assert "sick" not in manager

        daemon, served = await open_session(manager, [Health()], session_id="well", methods=[HEALTH_CHECK])
        session = await manager.get("well")
        await asyncio.sleep(0.4)  # several checks, all answered
        assert not session.closed.is_set()
        session.close()
        await asyncio.wait_for(daemon, 5)
        await asyncio.wait_for(served, 5)

    asyncio.run(asyncio.wait_for(main(), 30))
