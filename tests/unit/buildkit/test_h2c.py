"""gRPC over taken connections: a ClientChannel and serve() on the two ends of a socketpair, as the daemon and the
client of /session or /grpc are after the 101."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.server import Stream

from dockwright.buildkit.h2c import ClientChannel, ConnectionClosed, TakenConnection, serve
from dockwright.buildkit.pb import filesync_grpc, filesync_pb2, secrets_grpc, secrets_pb2, wire_pb2


class Recorder(asyncio.Protocol):
    """The HTTP server's protocol before the takeover: it keeps what it reads and hears its connection's end."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lost: list[Exception | None] = []
        self.got_data = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.got_data.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


class Secrets(secrets_grpc.SecretsBase):
    async def GetSecret(self, stream: Stream[secrets_pb2.GetSecretRequest, secrets_pb2.GetSecretResponse]) -> None:
        req = await stream.recv_message()
        assert req is not None
        if req.ID == "missing":
            raise GRPCError(Status.NOT_FOUND, "secret not found")
        await stream.send_message(secrets_pb2.GetSecretResponse(data=b"value of " + req.ID.encode()))


class Echo(filesync_grpc.FileSendBase):
    """FileSend.DiffCopy answering every message with its bytes reversed, until the caller ends its side."""

    async def DiffCopy(self, stream: Stream[filesync_pb2.BytesMessage, filesync_pb2.BytesMessage]) -> None:
        async for msg in stream:
            await stream.send_message(filesync_pb2.BytesMessage(data=msg.data[::-1]))


async def transports() -> tuple[tuple[asyncio.Transport, Recorder], tuple[asyncio.Transport, Recorder]]:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    out = []
    for s in (a, b):
        rec = Recorder()
        transport, _ = await loop.create_unix_connection(lambda rec=rec: rec, sock=s)  # type: ignore[misc]
        out.append((transport, rec))
    return out[0], out[1]


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_unary_and_streaming_calls_over_a_socketpair() -> None:
    async def main() -> None:
        (ta, ra), (tb, rb) = await transports()
        server_conn = TakenConnection(tb, on_lost=rb.connection_lost)
        serving = asyncio.create_task(serve(server_conn, [Secrets(), Echo()]))
        channel = ClientChannel(TakenConnection(ta, on_lost=ra.connection_lost))
        secrets = secrets_grpc.SecretsStub(channel)
        reply = await secrets.GetSecret(secrets_pb2.GetSecretRequest(ID="db"))
        assert reply.data == b"value of db"
        with pytest.raises(GRPCError) as err:
            await secrets.GetSecret(secrets_pb2.GetSecretRequest(ID="missing"))
        assert err.value.status is Status.NOT_FOUND and err.value.message == "secret not found"
        # several streams at once, messages larger than HTTP/2's windows and frames
        big = bytes(range(256)) * (5 << 12)  # 5 MiB

        async def echo(payload: bytes) -> bytes:
            async with filesync_grpc.FileSendStub(channel).DiffCopy.open() as stream:
                await stream.send_message(filesync_pb2.BytesMessage(data=payload))
                got = await stream.recv_message()
                await stream.end()
                assert await stream.recv_message() is None
                assert got is not None
                return got.data

        results = await asyncio.gather(echo(big), echo(b"abc"), echo(big[:100000]))
        assert results == [big[::-1], b"cba", big[:100000][::-1]]
        channel.close()
        await asyncio.wait_for(serving, 5)
        assert ra.lost and rb.lost  # both HTTP servers heard of the end of their connection
        with pytest.raises(ConnectionClosed):
            await secrets.GetSecret(secrets_pb2.GetSecretRequest(ID="db"))

    run(main())


def test_bytes_read_before_the_takeover_and_before_attach_are_kept() -> None:
    async def main() -> None:
        (ta, ra), (tb, rb) = await transports()
        channel = ClientChannel(TakenConnection(ta))
        call = asyncio.create_task(secrets_grpc.SecretsStub(channel).GetSecret(
            secrets_pb2.GetSecretRequest(ID="early")))
        await rb.got_data.wait()  # the client's preface and request reached the HTTP server's protocol
        await asyncio.sleep(0.05)
        conn = TakenConnection(tb, buffered=bytes(rb.data), on_lost=rb.connection_lost)
        await asyncio.sleep(0.05)  # more may come while nothing is attached yet
        serving = asyncio.create_task(serve(conn, [Secrets()]))
        reply = await asyncio.wait_for(call, 5)
        assert reply.data == b"value of early"
        channel.close()
        await asyncio.wait_for(serving, 5)

    run(main())


def test_the_peer_going_away_ends_serve_and_fails_calls_in_flight() -> None:
    async def main() -> None:
        (ta, ra), (tb, rb) = await transports()
        started = asyncio.Event()

        class Hang(secrets_grpc.SecretsBase):
            async def GetSecret(self, stream: Any) -> None:
                await stream.recv_message()
                started.set()
                await asyncio.sleep(3600)

        conn = TakenConnection(tb, on_lost=rb.connection_lost)
        serving = asyncio.create_task(serve(conn, [Hang()]))
        client_conn = TakenConnection(ta, on_lost=ra.connection_lost)
        channel = ClientChannel(client_conn)
        call = asyncio.create_task(secrets_grpc.SecretsStub(channel).GetSecret(secrets_pb2.GetSecretRequest(ID="x")))
        await started.wait()
        tb.abort()  # the server side's socket is gone
        await asyncio.wait_for(serving, 5)
        assert rb.lost
        with pytest.raises((StreamTerminatedError, ConnectionError)):
            await asyncio.wait_for(call, 5)
        await asyncio.wait_for(client_conn.wait_closed(), 5)
        assert client_conn.closed and ra.lost

    run(main())


def test_a_connection_closing_when_taken_over_is_closed_at_once() -> None:
    async def main() -> None:
        (ta, ra), (tb, rb) = await transports()
        ta.close()
        conn = TakenConnection(ta, on_lost=ra.connection_lost)
        assert conn.closed
        await conn.wait_closed()
        channel = ClientChannel(conn)
        with pytest.raises(ConnectionClosed):
            await secrets_grpc.SecretsStub(channel).GetSecret(secrets_pb2.GetSecretRequest(ID="x"))
        tb.close()

    run(main())


def test_cancelling_serve_closes_the_connection() -> None:
    async def main() -> None:
        (ta, ra), (tb, rb) = await transports()
        conn = TakenConnection(tb)
        serving = asyncio.create_task(serve(conn, [Secrets()]))
        client = TakenConnection(ta)
        ClientChannel(client)
        await asyncio.sleep(0.05)
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        await asyncio.wait_for(client.wait_closed(), 5)
        assert conn.closed

    run(main())


def test_packets_keep_fsutils_wire_format() -> None:
    # the field numbers of fsutil's Packet and Stat, as the Go code marshals them
    p = wire_pb2.Packet(type=wire_pb2.Packet.PACKET_DATA, ID=7, data=b"xy")
    assert p.SerializeToString() == b"\x08\x02\x18\x07\x22\x02xy"
    s = wire_pb2.Packet(type=wire_pb2.Packet.PACKET_STAT)
    s.stat.path, s.stat.mode, s.stat.modTime, s.stat.linkname = "a", 0o644, 5, "b"
    assert s.SerializeToString() == b"\x12\x0b\n\x01a\x10\xa4\x030\x05:\x01b"
