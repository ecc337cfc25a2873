"""dockerd's userland proxy (``docker-proxy``), as asyncio tasks inside the daemon.

This module owns:

* ``UserlandProxy``: one published port (a ``PortMapping``) forwarded to a container address. It listens on
  ``host_ip`` (every IPv4 address when empty) and ``host_port``; binding is what reserves the port on the host,
  so ``start`` fails with dockerd's ``Error starting userland proxy: listen tcp4 0.0.0.0:8080: bind: address
  already in use`` when something else has it.

  - **TCP**: every accepted connection gets its own connection to ``container_ip:container_port``; bytes are
    pumped both ways by ``asyncio.Protocol``s, with backpressure (a side whose write buffer passes its high-water
    mark pauses reading on the other side until it drains), half-close (EOF from one side is passed on as
    ``shutdown(SHUT_WR)`` to the other while the other direction keeps flowing, as docker-proxy's ``CloseWrite``),
    and both sockets closed when both directions are done, aborted when either fails. A backend that cannot be
    reached closes the client connection (logged at debug level, as docker-proxy just logs it).
  - **UDP**: as docker-proxy's conntrack table: each client address gets its own socket connected to the backend;
    replies go back to the client from the listening socket, with the address the client sent to as their source
    (``IP_PKTINFO``/``IPV6_PKTINFO`` when listening on every address), and a flow is dropped after
    ``udp_timeout`` seconds (docker-proxy: 90) without a datagram either way.

* ``ProxySet``: the proxies of each owner (a container ID): ``start(owner, [(mapping, container_ip), …])`` all or
  nothing, ``stop(owner)``, ``stop_all()``.

SCTP is not proxied (``NotSupported``). Nothing here decides host ports: ``ports.PortAllocator`` does; a mapping
with host port 0 listens on a port the kernel picks (``UserlandProxy.port`` tells which), which tests use.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
from collections.abc import Iterable
from typing import Any

from dockwright.errors import InvalidArgument, NotSupported, SystemError_
from dockwright.network.endpoint import PortMapping
from dockwright.network.port_allocator import bind_host_port, errno_text
from dockwright.network.ports import format_host_addr

__all__ = [
    "UDP_CONNTRACK_TIMEOUT",
    "ProxyStartError",
    "UserlandProxy",
    "ProxySet",
]

log = logging.getLogger("dockwright.proxy")

WRITE_BUFFER_HIGH = 1024 * 1024
"""A side's write buffer above this pauses reading from the other side (asyncio reads up to 256 KiB at a time)."""
WRITE_BUFFER_LOW = 256 * 1024
"""…and reading resumes when it has drained below this."""

UDP_CONNTRACK_TIMEOUT = 90.0
"""docker-proxy's ``DefaultConnTrackTimeout``: a UDP flow idle this long (seconds) is dropped."""
UDP_MAX_FLOWS = 4096
"""At most this many UDP flows (sockets) per proxy; datagrams of new clients beyond that are dropped."""
UDP_BUF_SIZE = 65507
"""docker-proxy's ``UDPBufSize``: the largest UDP payload over IPv4."""
_UDP_BATCH = 64  # datagrams handled per readiness callback before yielding to the loop

_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux; Python 3.11 does not export it
_IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
_IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
_IN_PKTINFO = struct.Struct("=I4s4s")  # ipi_ifindex, ipi_spec_dst, ipi_addr
_IN6_PKTINFO = struct.Struct("=16sI")  # ipi6_addr, ipi6_ifindex
_CMSG_SPACE = socket.CMSG_SPACE(max(_IN_PKTINFO.size, _IN6_PKTINFO.size))


class ProxyStartError(SystemError_):
    """The proxy could not listen: ``Error starting userland proxy: listen tcp4 0.0.0.0:8080: bind: address
    already in use`` (Go's ``net.Listen`` error, which is what dockerd reports)."""

    def __init__(self, proto: str, host_ip: str, port: int, code: int | None) -> None:
        self.proto = proto
        self.host_ip = host_ip or "0.0.0.0"
        self.port = port
        self.errno = code
        family = "6" if ":" in self.host_ip else "4"
        super().__init__(
            f"Error starting userland proxy: listen {proto}{family} {format_host_addr(host_ip, port)}: "
            f"bind: {errno_text(code)}"
        )


# ---------------------------------------------------------------------------------------------------- TCP


class _Half(asyncio.Protocol):
    """One socket of a proxied TCP connection: what it reads is written to its peer's transport."""

    def __init__(self, conn: _TCPConnection, name: str) -> None:
        self.conn = conn
        self.name = name
        self.peer: _Half | None = None
        self.transport: asyncio.Transport | None = None
        self.eof = False  # EOF was read from this socket
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH, low=WRITE_BUFFER_LOW)
        self.conn.made(self)

    def data_received(self, data: bytes) -> None:
        peer = self.peer.transport if self.peer is not None else None
        if peer is not None and not peer.is_closing():
            peer.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        self.conn.eof(self)
        return True  # keep the socket: the other direction may still be going

    def pause_writing(self) -> None:
        peer = self.peer.transport if self.peer is not None else None
        if peer is not None:
            peer.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer.transport if self.peer is not None else None
        if peer is not None:
            peer.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.conn.lost(self, exc)


class _TCPConnection:
    """A client connection and its connection to the backend."""

    def __init__(self, proxy: UserlandProxy) -> None:
        self.proxy = proxy
        self.client = _Half(self, "client")
        self.backend = _Half(self, "backend")
        self.client.peer = self.backend
        self.backend.peer = self.client
        self.connect_task: asyncio.Task[Any] | None = None
        self.closed = False

    # -- events

    def made(self, half: _Half) -> None:
        if half is self.client:
            assert half.transport is not None
            half.transport.pause_reading()  # nothing is read until the backend is there to take it
            self.proxy._conns.add(self)
            self.connect_task = asyncio.get_running_loop().create_task(self._connect())
        elif self.closed:
            assert half.transport is not None
            half.transport.abort()

    async def _connect(self) -> None:
        host, port = self.proxy.backend
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: self.backend, host, port)
        except OSError as exc:
            log.debug("userland proxy %s: cannot reach the backend %s:%d: %s", self.proxy, host, port, exc)
            self.close()
            return
        if self.closed:
            self.abort()
            return
        assert self.client.transport is not None
        self.client.transport.resume_reading()

    def eof(self, half: _Half) -> None:
        peer = half.peer
        assert peer is not None
        transport = peer.transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            try:
                transport.write_eof()  # sent once what is buffered has gone out
            except OSError as exc:
                log.debug("userland proxy %s: shutting down the %s's write side: %s", self.proxy, peer.name, exc)
                self.abort()
                return
        if half.eof and peer.eof:
            self.close()

    def lost(self, half: _Half, exc: Exception | None) -> None:
        if exc is not None:
            log.debug("userland proxy %s: %s connection failed: %s", self.proxy, half.name, exc)
            self.abort()
        else:
            self.close()
        if self.client.lost and (self.backend.lost or self.backend.transport is None):
            self.proxy._conns.discard(self)

    # -- actions

    def _stop_connecting(self) -> None:
        task = self.connect_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def close(self) -> None:
        """Closes both sockets once their buffered data is sent."""
        self.closed = True
        self._stop_connecting()
        for half in (self.client, self.backend):
            if half.transport is not None and not half.transport.is_closing():
                half.transport.close()
        self._forget_if_done()

    def abort(self) -> None:
        """Closes both sockets now, dropping buffered data."""
        self.closed = True
        self._stop_connecting()
        for half in (self.client, self.backend):
            if half.transport is not None and not half.lost:
                half.transport.abort()
        self._forget_if_done()

    def _forget_if_done(self) -> None:
        if self.client.lost and self.backend.transport is None:
            self.proxy._conns.discard(self)


# ---------------------------------------------------------------------------------------------------- UDP


class _UDPFlow:
    """One UDP client of the proxy: its socket connected to the backend, and its idle timer."""

    def __init__(self, relay: _UDPRelay, client: Any, sock: socket.socket) -> None:
        self.relay = relay
        self.client = client
        self.sock = sock
        self.local: tuple[bytes, int] | None = None  # the address the client sent to (packed), and its ifindex
        self.last = relay.loop.time()
        self.timer: asyncio.TimerHandle | None = relay.loop.call_later(relay.timeout, self._check_idle)
        relay.loop.add_reader(sock.fileno(), self._from_backend)

    def _check_idle(self) -> None:
        idle = self.relay.loop.time() - self.last
        if idle >= self.relay.timeout:
            log.debug("userland proxy %s: UDP flow of %s idle for %.0fs: dropped", self.relay.proxy, self.client, idle)
            self.close()
        else:
            self.timer = self.relay.loop.call_later(self.relay.timeout - idle, self._check_idle)

    def send(self, data: bytes) -> None:
        self.last = self.relay.loop.time()
        for _attempt in range(2):
            try:
                self.sock.send(data)
                return
            except ConnectionRefusedError:
                # an ICMP port-unreachable answered an earlier datagram: the error is reported once, try again
                continue
            except BlockingIOError:
                break
            except OSError as exc:
                log.debug("userland proxy %s: can't proxy a datagram to %s: %s", self.relay.proxy, self.relay.backend,
                          exc)
                break

    def _from_backend(self) -> None:
        for _ in range(_UDP_BATCH):
            try:
                data = self.sock.recv(UDP_BUF_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:
                continue  # nothing listens in the container (yet): keep the flow until it times out
            except OSError as exc:
                log.debug("userland proxy %s: UDP flow of %s: %s", self.relay.proxy, self.client, exc)
                self.close()
                return
            self.last = self.relay.loop.time()
            self.relay.reply(data, self)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.sock.fileno() >= 0:
            self.relay.loop.remove_reader(self.sock.fileno())
            self.sock.close()
        if self.relay.flows.get(self.client) is self:
            del self.relay.flows[self.client]


class _UDPRelay:
    """The listening UDP socket of a proxy and its flows."""

    def __init__(self, proxy: UserlandProxy, sock: socket.socket, timeout: float, max_flows: int) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.sock = sock
        self.backend = proxy.backend
        self.backend_family = socket.AF_INET6 if ":" in proxy.backend[0] else socket.AF_INET
        self.timeout = timeout
        self.max_flows = max_flows
        self.flows: dict[Any, _UDPFlow] = {}
        self.v6 = sock.family == socket.AF_INET6
        self.pktinfo = proxy.listen_address in ("0.0.0.0", "::")
        if self.pktinfo:
            try:
                if self.v6:
                    sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVPKTINFO, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
            except OSError as exc:
                log.debug("userland proxy %s: no packet info (%s): replies' source is the kernel's choice", proxy, exc)
                self.pktinfo = False
        self.loop.add_reader(sock.fileno(), self._from_clients)

    def _local_address(self, ancdata: list[tuple[int, int, bytes]]) -> tuple[bytes, int] | None:
        for level, kind, data in ancdata:
            if not self.v6 and level == socket.IPPROTO_IP and kind == _IP_PKTINFO and len(data) >= _IN_PKTINFO.size:
                ifindex, _spec_dst, addr = _IN_PKTINFO.unpack_from(data)
                return addr, ifindex
            if self.v6 and level == socket.IPPROTO_IPV6 and kind == _IPV6_PKTINFO and len(data) >= _IN6_PKTINFO.size:
                addr, ifindex = _IN6_PKTINFO.unpack_from(data)
                return addr, ifindex
        return None

    def _from_clients(self) -> None:
        for _ in range(_UDP_BATCH):
            try:
                data, ancdata, _flags, client = self.sock.recvmsg(UDP_BUF_SIZE, _CMSG_SPACE if self.pktinfo else 0)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("userland proxy %s: receiving: %s", self.proxy, exc)
                continue
            flow = self.flows.get(client)
            if flow is None:
                flow = self._new_flow(client)
                if flow is None:
                    continue
                if self.pktinfo:
                    flow.local = self._local_address(ancdata)
            flow.send(data)

    def _new_flow(self, client: Any) -> _UDPFlow | None:
        if len(self.flows) >= self.max_flows:
            log.debug("userland proxy %s: %d UDP flows already: datagram of %s dropped", self.proxy, len(self.flows),
                      client)
            return None
        sock = socket.socket(self.backend_family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(self.backend)
        except OSError as exc:
            sock.close()
            log.debug("userland proxy %s: can't proxy a datagram to %s: %s", self.proxy, self.backend, exc)
            return None
        flow = _UDPFlow(self, client, sock)
        self.flows[client] = flow
        return flow

    def reply(self, data: bytes, flow: _UDPFlow) -> None:
        anc: list[tuple[int, int, bytes]] = []
        if flow.local is not None:
            addr, ifindex = flow.local
            if self.v6:
                anc = [(socket.IPPROTO_IPV6, _IPV6_PKTINFO, _IN6_PKTINFO.pack(addr, ifindex))]
            else:
                anc = [(socket.IPPROTO_IP, _IP_PKTINFO, _IN_PKTINFO.pack(0, addr, b"\0\0\0\0"))]
        try:
            self.sock.sendmsg([data], anc, 0, flow.client)
        except (BlockingIOError, InterruptedError):
            pass  # the socket's buffer is full: UDP drops
        except OSError as exc:
            log.debug("userland proxy %s: replying to %s: %s", self.proxy, flow.client, exc)

    def close(self) -> None:
        for flow in list(self.flows.values()):
            flow.close()
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


# ---------------------------------------------------------------------------------------------------- proxy


class UserlandProxy:
    """Forwards ``mapping.host_ip``:``mapping.host_port`` (``mapping.proto``) to ``container_ip``:
    ``mapping.container_port``. ``start`` binds and starts serving; ``stop`` closes the listener and every live
    connection (or UDP flow). Lives on the event loop that ran ``start``."""

    def __init__(
        self,
        mapping: PortMapping,
        container_ip: str,
        *,
        udp_timeout: float = UDP_CONNTRACK_TIMEOUT,
        udp_max_flows: int = UDP_MAX_FLOWS,
    ) -> None:
        if mapping.proto not in ("tcp", "udp"):
            raise NotSupported(f"the userland proxy does not support {mapping.proto}: {mapping.key}")
        try:
            backend_ip = ipaddress.ip_address(container_ip)
            listen_ip = ipaddress.ip_address(mapping.host_ip or "0.0.0.0")
        except ValueError as exc:
            raise InvalidArgument(f"invalid address for the userland proxy of {mapping.key}: {exc}") from None
        if not 0 < mapping.container_port <= 65535 or not 0 <= mapping.host_port <= 65535:
            raise InvalidArgument(f"invalid port mapping for the userland proxy: {mapping}")
        self.mapping = mapping
        self.container_ip = str(backend_ip)
        self.backend: tuple[str, int] = (self.container_ip, mapping.container_port)
        self.listen_address = str(listen_ip)
        self.udp_timeout = udp_timeout
        self.udp_max_flows = udp_max_flows
        self.port = mapping.host_port  # the bound port once started (the kernel's choice when the mapping says 0)
        self._server: asyncio.AbstractServer | None = None
        self._udp: _UDPRelay | None = None
        self._conns: set[_TCPConnection] = set()

    def __repr__(self) -> str:
        return f"<UserlandProxy {self}>"

    def __str__(self) -> str:
        return (f"{self.mapping.proto}/{format_host_addr(self.mapping.host_ip, self.port)}"
                f"->{format_host_addr(self.container_ip, self.mapping.container_port)}")

    @property
    def running(self) -> bool:
        """Whether the proxy is serving: a TCP server or a UDP relay is open."""
        return self._server is not None or self._udp is not None

    @property
    def connections(self) -> int:
        """Live TCP connections, or UDP flows."""
        if self._udp is not None:
            return len(self._udp.flows)
        return len(self._conns)

    async def start(self) -> None:
        """Binds the host port and serves. Raises ``ProxyStartError`` when the bind fails."""
        if self.running:
            return
        proto = self.mapping.proto
        try:
            sock = bind_host_port(proto, self.mapping.host_ip, self.mapping.host_port)
        except OSError as exc:
            raise ProxyStartError(proto, self.mapping.host_ip, self.mapping.host_port, exc.errno) from exc
        try:
            sock.setblocking(False)
            self.port = sock.getsockname()[1]
            if proto == "tcp":
                self._server = await asyncio.get_running_loop().create_server(
                    lambda: _TCPConnection(self).client, sock=sock, backlog=socket.SOMAXCONN
                )
            else:
                self._udp = _UDPRelay(self, sock, self.udp_timeout, self.udp_max_flows)
        except BaseException:
            sock.close()
            raise
        log.debug("userland proxy %s started", self)

    async def stop(self) -> None:
        """Stops listening and closes every live connection at once. Stopping twice is harmless."""
        server, self._server = self._server, None
        udp, self._udp = self._udp, None
        if server is not None:
            server.close()
        for conn in list(self._conns):
            conn.abort()
        self._conns.clear()
        if udp is not None:
            udp.close()
        if server is not None:
            await server.wait_closed()
            await asyncio.sleep(0)  # let the aborted transports' connection_lost run
            log.debug("userland proxy %s stopped", self)


class ProxySet:
    """The userland proxies of the daemon, by owner (a container ID). ``options`` go to every
    ``UserlandProxy``."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._by_owner: dict[str, list[UserlandProxy]] = {}

    def owners(self) -> list[str]:
        """The owners (container IDs) that have proxies, in the order they got them."""
        return list(self._by_owner)

    def proxies(self, owner: str) -> list[UserlandProxy]:
        """A copy of ``owner``'s list of proxies (empty when it has none)."""
        return list(self._by_owner.get(owner, ()))

    async def start(self, owner: str, targets: Iterable[tuple[PortMapping, str]]) -> list[UserlandProxy]:
        """Starts a proxy per (mapping, container IP) for ``owner`` (added to what it has already). All or
        nothing: when one fails, those this call started are stopped and the error is raised."""
        started: list[UserlandProxy] = []
        try:
            for mapping, container_ip in targets:
                proxy = UserlandProxy(mapping, container_ip, **self._options)
                await proxy.start()
                started.append(proxy)
        except BaseException:
            for proxy in reversed(started):
                try:
                    await proxy.stop()
                except Exception as exc:  # noqa: BLE001 - the first error is the one to report
                    log.warning("stopping userland proxy %s after a failed start: %s", proxy, exc)
            raise
        if started:
            self._by_owner.setdefault(owner, []).extend(started)
        return started

    async def stop(self, owner: str) -> int:
        """Stops ``owner``'s proxies; returns how many there were."""
        proxies = self._by_owner.pop(owner, [])
        for proxy in proxies:
            try:
                await proxy.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others anyway
                log.warning("stopping userland proxy %s: %s", proxy, exc)
        return len(proxies)

    async def stop_all(self) -> None:
        """Stop every owner's proxies (the daemon's shutdown); a failing stop is logged and the others still stop."""
        for owner in list(self._by_owner):
            await self.stop(owner)

