"""network.proxy: the userland proxy with real sockets on loopback only. The "container" is an asyncio server on
127.0.0.1 (an echo server, or one that answers after EOF); the proxy listens on 127.0.0.1 at a port the kernel
picks (host port 0), except where the listener on every address (and the replies' source address) is the point.

Covered: TCP round trips of several MB both ways with their content checked, backpressure (a backend that does
not read stalls the client instead of filling the daemon's memory), half-close, a backend that is not there,
many concurrent connections, UDP round trips and flows that time out, the bind conflict's message, stop() closing
live connections, ProxySet's all-or-nothing start."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dockwright.errors import NotSupported, SystemError_
from dockwright.network.endpoint import PortMapping
from dockwright.network.proxy import ProxySet, ProxyStartError, UserlandProxy

pytestmark = pytest.mark.timeout(120)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 90))  # type: ignore[arg-type]


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def digest_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads everything up to EOF, then answers with its length and sha256 and closes."""
    h = hashlib.sha256()
    n = 0
    while data := await reader.read(1 << 16):
        h.update(data)
        n += len(data)
    writer.write(f"{n} {h.hexdigest()}\n".encode())
    await writer.drain()
    writer.close()


async def backend(handler: Handler) -> tuple[asyncio.AbstractServer, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def tcp_proxy(container_port: int, **kw: Any) -> UserlandProxy:
    proxy = UserlandProxy(PortMapping(container_port, "tcp", "127.0.0.1", 0), "127.0.0.1", **kw)
    await proxy.start()
    assert proxy.running and proxy.port > 0
    return proxy


async def send_and_receive(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        writer.write(payload)
        await writer.drain()
        writer.write_eof()

    sender = asyncio.create_task(send())
    got = await reader.read(-1)
    await sender
    writer.close()
    return got


def test_tcp_round_trip_of_megabytes_both_ways() -> None:
    async def main() -> None:
        server, port = await backend(echo)
        proxy = await tcp_proxy(port)
        try:
            payload = os.urandom(24 << 20)
            got = await send_and_receive(proxy.port, payload)
            assert len(got) == len(payload)
            assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
            for _ in range(50):  # both sockets of the connection are closed once both directions are done
                if proxy.connections == 0:
                    break
                await asyncio.sleep(0.02)
            assert proxy.connections == 0
        finally:
            await proxy.stop()
            server.close()

    run(main())


def test_tcp_half_close_keeps_the_other_direction() -> None:
    async def main() -> None:
        server, port = await backend(digest_after_eof)
        proxy = await tcp_proxy(port)
        try:
            payload = os.urandom(3 << 20)
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(payload)
            await writer.drain()
            writer.write_eof()  # shutdown(SHUT_WR): the backend sees EOF, we still read its answer
            answer = await reader.read(-1)
            assert answer == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}\n".encode()
            writer.close()
        finally:
            await proxy.stop()
            server.close()

    run(main())


def test_backend_half_close_keeps_the_client_direction() -> None:
    """The backend says hello and shuts its write side; the client keeps sending, the backend keeps reading."""
    received = asyncio.Queue()  # type: ignore[var-annotated]

    async def greeter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello\n")
        writer.write_eof()
        await writer.drain()
        await received.put(await reader.read(-1))
        writer.close()

    async def main() -> None:
        server, port = await backend(greeter)
        proxy = await tcp_proxy(port)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            assert await reader.read(-1) == b"hello\n"  # EOF reached us …
            payload = os.urandom(1 << 20)
            writer.write(payload)  # … and we can still send
            await writer.drain()
            writer.write_eof()
            assert await asyncio.wait_for(received.get(), 10) == payload
            writer.close()
        finally:
            await proxy.stop()
            server.close()

    run(main())


def test_backpressure_bounds_what_the_proxy_buffers() -> None:
    """A backend that does not read: the client's writes stall after the sockets' and the proxy's buffers are
    full (tens of MB at most, never the 256 MB offered); once the backend reads, everything arrives intact."""
    go = asyncio.Event()
    done: asyncio.Future[str] = None  # type: ignore[assignment]

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await go.wait()
        h = hashlib.sha256()
        n = 0
        while data := await reader.read(1 << 20):
            h.update(data)
            n += len(data)
        done.set_result(f"{n} {h.hexdigest()}")
        writer.close()

    async def main() -> None:
        nonlocal done
        done = asyncio.get_running_loop().create_future()
        server, port = await backend(slow)
        proxy = await tcp_proxy(port)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            chunk = os.urandom(1 << 20)
            total = 256 << 20
            sent = 0
            h = hashlib.sha256()

            async def push() -> None:
                nonlocal sent
                while sent < total:
                    writer.write(chunk)
                    h.update(chunk)
                    sent += len(chunk)
                    await writer.drain()

            pusher = asyncio.create_task(push())
            stalled_at = -1
            for _ in range(100):
                before = sent
                await asyncio.sleep(0.1)
                if sent == before and sent > 0:
                    stalled_at = sent
                    break
            assert 0 < stalled_at < 64 << 20, f"the client could write {sent} bytes into a backend that reads nothing"
            go.set()
            await pusher
            writer.write_eof()
            assert await asyncio.wait_for(done, 60) == f"{total} {h.hexdigest()}"
            writer.close()
        finally:
            await proxy.stop()
            server.close()

    run(main())


def test_backend_down_closes_the_client_promptly() -> None:
    async def main() -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
        s.close()  # nothing listens there: connecting is refused
        proxy = await tcp_proxy(dead_port)
        try:
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                writer.write(b"anyone?")
                try:
                    data = await asyncio.wait_for(reader.read(-1), 5)
                except ConnectionResetError:
                    data = b""
                assert data == b""
                writer.close()
            for _ in range(50):
                if proxy.connections == 0:
                    break
                await asyncio.sleep(0.02)
            assert proxy.connections == 0
        finally:
            await proxy.stop()

    run(main())


def test_many_concurrent_connections() -> None:
    async def main() -> None:
        server, port = await backend(echo)
        proxy = await tcp_proxy(port)
        try:
            payloads = [os.urandom(64 * 1024 + i) for i in range(200)]
            results = await asyncio.gather(*(send_and_receive(proxy.port, p) for p in payloads))
            assert results == payloads
        finally:
            await proxy.stop()
            server.close()

    run(main())


def test_stop_closes_live_connections_and_frees_the_port() -> None:
    async def main() -> None:
        server, port = await backend(echo)
        proxy = await tcp_proxy(port)
        host_port = proxy.port
        conns = []
        for _ in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", host_port)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            conns.append((reader, writer))
        assert proxy.connections == 5
        await proxy.stop()
        assert not proxy.running and proxy.connections == 0
        for reader, writer in conns:
            try:
                data = await asyncio.wait_for(reader.read(-1), 5)
            except ConnectionResetError:
                data = b""
            assert data == b""
            writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", host_port)
        s = socket.socket()  # the port is free again (SO_REUSEADDR, as any listener would use)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", host_port))
        s.close()
        await proxy.stop()  # twice is harmless
        server.close()

    run(main())


def test_bind_conflict_gives_dockerd_message() -> None:
    async def main() -> None:
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        try:
            proxy = UserlandProxy(PortMapping(80, "tcp", "127.0.0.1", port), "127.0.0.1")
            with pytest.raises(ProxyStartError) as exc:
                await proxy.start()
            assert str(exc.value) == (
                f"Error starting userland proxy: listen tcp4 127.0.0.1:{port}: bind: address already in use"
            )
            assert isinstance(exc.value, SystemError_)
            assert not proxy.running
        finally:
            busy.close()

        ubusy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ubusy.bind(("127.0.0.1", 0))
        port = ubusy.getsockname()[1]
        try:
            proxy = UserlandProxy(PortMapping(53, "udp", "127.0.0.1", port), "127.0.0.1")
            with pytest.raises(ProxyStartError, match=f"^Error starting userland proxy: listen udp4 127.0.0.1:{port}: "
                                                       "bind: address already in use$"):
                await proxy.start()
        finally:
            ubusy.close()

    run(main())


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_host_address_to_an_ipv4_container() -> None:
    """dockerd proxies host IPv6 to an IPv4-only container with the userland proxy; errors say tcp6."""

    async def main() -> None:
        server, port = await backend(echo)
        proxy = UserlandProxy(PortMapping(port, "tcp", "::1", 0), "127.0.0.1")
        await proxy.start()
        try:
            reader, writer = await asyncio.open_connection("::1", proxy.port)
            writer.write(b"over six")
            assert await reader.readexactly(8) == b"over six"
            writer.close()
            clash = UserlandProxy(PortMapping(port, "tcp", "::1", proxy.port), "127.0.0.1")
            message = f"Error starting userland proxy: listen tcp6 [::1]:{proxy.port}: bind: address already in use"
            with pytest.raises(ProxyStartError) as exc:
                await clash.start()
            assert str(exc.value) == message
        finally:
            await proxy.stop()
            server.close()

    run(main())


def test_unsupported_protocol_and_bad_addresses() -> None:
    with pytest.raises(NotSupported):
        UserlandProxy(PortMapping(132, "sctp", "", 132), "127.0.0.1")
    with pytest.raises(Exception, match="invalid address"):
        UserlandProxy(PortMapping(80, "tcp", "", 80), "not-an-ip")


# ---------------------------------------------------------------------------------------------------- UDP


class _UDPEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.clients: set[Any] = set()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.clients.add(addr)
        self.transport.sendto(data.upper(), addr)  # type: ignore[attr-defined]


async def udp_backend() -> tuple[asyncio.DatagramTransport, _UDPEcho, int]:
    transport, proto = await asyncio.get_running_loop().create_datagram_endpoint(
        _UDPEcho, local_addr=("127.0.0.1", 0)
    )
    return transport, proto, transport.get_extra_info("sockname")[1]


async def udp_exchange(sock: socket.socket, data: bytes, timeout: float = 5) -> bytes:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, data)
    return await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout)


def _udp_client(host: str, port: int) -> socket.socket:
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.setblocking(False)
    c.connect((host, port))  # a connected socket only accepts replies from exactly that address
    return c


def test_udp_round_trip_and_flows() -> None:
    async def main() -> None:
        transport, echo_proto, port = await udp_backend()
        proxy = UserlandProxy(PortMapping(port, "udp", "127.0.0.1", 0), "127.0.0.1", udp_timeout=0.5)
        await proxy.start()
        clients = [_udp_client("127.0.0.1", proxy.port) for _ in range(3)]
        try:
            for i, c in enumerate(clients):
                for j in range(20):
                    msg = f"client {i} datagram {j}".encode()
                    assert await udp_exchange(c, msg) == msg.upper()
            big = os.urandom(60000)
            assert await udp_exchange(clients[0], big) == big.upper()
            assert proxy.connections == 3  # one flow per client address …
            assert len(echo_proto.clients) == 3  # … each with its own socket to the backend
            for _ in range(100):  # idle flows are dropped after udp_timeout
                if proxy.connections == 0:
                    break
                await asyncio.sleep(0.05)
            assert proxy.connections == 0
            assert await udp_exchange(clients[1], b"again") == b"AGAIN"  # a new flow
            assert proxy.connections == 1
        finally:
            for c in clients:
                c.close()
            await proxy.stop()
            transport.close()
        assert proxy.connections == 0

    run(main())


def test_udp_backend_down_then_up() -> None:
    async def main() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        proxy = UserlandProxy(PortMapping(port, "udp", "127.0.0.1", 0), "127.0.0.1")
        await proxy.start()
        c = _udp_client("127.0.0.1", proxy.port)
        try:
            with pytest.raises(asyncio.TimeoutError):
                await udp_exchange(c, b"nobody", timeout=0.3)  # refused by the kernel: dropped, the flow stays
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                _UDPEcho, local_addr=("127.0.0.1", port)
            )
            try:
                assert await udp_exchange(c, b"now") == b"NOW"
            finally:
                transport.close()
        finally:
            c.close()
            await proxy.stop()

    run(main())


def test_udp_replies_come_from_the_address_the_client_used() -> None:
    """Listening on every address, a datagram to 127.0.0.2 is answered from 127.0.0.2 (IP_PKTINFO, as
    docker-proxy): a connected client socket would not see a reply from 127.0.0.1. Loopback traffic only."""

    async def main() -> None:
        transport, _, port = await udp_backend()
        proxy = UserlandProxy(PortMapping(port, "udp", "", 0), "127.0.0.1")
        await proxy.start()
        try:
            for addr in ("127.0.0.2", "127.0.0.1"):
                c = _udp_client(addr, proxy.port)
                try:
                    assert await udp_exchange(c, b"who") == b"WHO"
                finally:
                    c.close()
        finally:
            await proxy.stop()
            transport.close()

    run(main())


# ---------------------------------------------------------------------------------------------------- ProxySet


def test_proxy_set_start_is_all_or_nothing() -> None:
    async def main() -> None:
        server, port = await backend(echo)
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        free_port = free.getsockname()[1]
        free.close()
        proxies = ProxySet()
        try:
            with pytest.raises(ProxyStartError, match="address already in use"):
                await proxies.start("c1", [
                    (PortMapping(port, "tcp", "127.0.0.1", free_port), "127.0.0.1"),
                    (PortMapping(port, "tcp", "127.0.0.1", busy_port), "127.0.0.1"),
                ])
            assert proxies.owners() == []
            s = socket.socket()  # the first one was stopped again: its port is free
            s.bind(("127.0.0.1", free_port))
            s.close()

            started = await proxies.start("c1", [(PortMapping(port, "tcp", "127.0.0.1", free_port), "127.0.0.1")])
            started += await proxies.start("c1", [(PortMapping(port, "udp", "127.0.0.1", 0), "127.0.0.1")])
            other = await proxies.start("c2", [(PortMapping(port, "tcp", "127.0.0.1", 0), "127.0.0.1")])
            assert proxies.proxies("c1") == started and len(started) == 2
            assert await send_and_receive(free_port, b"x" * 100000) == b"x" * 100000
            assert await proxies.stop("c1") == 2
            assert not any(p.running for p in started) and other[0].running
            assert await proxies.stop("c1") == 0
            await proxies.stop_all()
            assert not other[0].running and proxies.owners() == []
        finally:
            busy.close()
            await proxies.stop_all()
            server.close()

    run(main())
