"""libnetwork's host port allocator for published ports, with the bind check of its ``OSAllocator``.

A port is held per (protocol, host address, port), by an owner (a container ID); a port held on ``0.0.0.0``
conflicts with the same port on every IPv4 address and the other way round (``Bind for 0.0.0.0:8080 failed: port
is already allocated``). Ephemeral ports come from the kernel's range (/proc/sys/net/ipv4/ip_local_port_range;
49153-65535 when unreadable, as dockerd) minus ip_local_reserved_ports, handed out sequentially after the last one
given; every candidate is bound for a moment to make sure no other process of the host uses it (such ports are
skipped; an explicit one is refused with ``failed to bind host port 0.0.0.0:8080/tcp: address already in use``).
Bindings that differ only in the host address get the same port, as in dockerd. ``allocate`` is all or nothing,
``release`` frees an owner's ports, ``restore`` re-reserves what the metadata recorded before a daemon restart.
What is requested (:class:`~dockwright.network.ports.Binding`) is :mod:`dockwright.network.ports`'.

Allocation failures are ``SystemError_``s (dockerd answers them with 500). The only I/O is reading /proc and
binding (then closing) probe sockets; nothing is persisted here.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from collections.abc import Iterable, Sequence
from ipaddress import IPv6Address
from pathlib import Path

from dockwright.errors import InvalidArgument, NotSupported, SystemError_
from dockwright.network.endpoint import PortMapping
from dockwright.network.ports import (
    ANY4,
    PROTOCOLS,
    SUPPORTED_PROTOCOLS,
    Binding,
    IPAddress,
    format_host_addr,
    host_address,
    parse_port_number,
)

__all__ = [
    "DEFAULT_PORT_RANGE", "PortAlreadyAllocated", "HostPortInUse", "HostPortUnavailable", "PortsExhausted",
    "dynamic_port_range", "parse_reserved_ports", "reserved_ports", "errno_text",
    "bind_host_port", "PortAllocator",
]

log = logging.getLogger("dockwright.ports")

DEFAULT_PORT_RANGE = (49153, 65535)
"""dockerd's ``defaultPortRangeStart``/``End``: used when the kernel's range cannot be read."""

_PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
_RESERVED_PORTS_FILE = "/proc/sys/net/ipv4/ip_local_reserved_ports"
_ANY6 = IPv6Address("::")


# ---------------------------------------------------------------------------------------------------- errors


def errno_text(code: int | None) -> str:
    """Go's spelling of an errno: ``address already in use`` (lower-case first letter)."""
    if code is None:
        return "unknown error"
    text = os.strerror(code)
    return text[:1].lower() + text[1:]


class PortAlreadyAllocated(SystemError_):
    """libnetwork's ``alreadyAllocatedErr``: another container (or this one) holds the port."""

    def __init__(self, host_ip: str, port: int, proto: str = "tcp") -> None:
        self.host_ip = host_ip or "0.0.0.0"
        self.port = port
        self.proto = proto
        super().__init__(f"Bind for {self.host_ip}:{port} failed: port is already allocated")


class HostPortUnavailable(SystemError_):
    """Binding the host port failed: dockerd's ``failed to bind host port 0.0.0.0:8080/tcp: <errno text>``."""

    def __init__(self, host_ip: str, port: int, proto: str, code: int | None) -> None:
        self.host_ip = host_ip or "0.0.0.0"
        self.port = port
        self.proto = proto
        self.errno = code
        super().__init__(f"failed to bind host port {format_host_addr(host_ip, port)}/{proto}: {errno_text(code)}")


class HostPortInUse(HostPortUnavailable):
    """Another process of the host has the port (EADDRINUSE)."""

    def __init__(self, host_ip: str, port: int, proto: str) -> None:
        super().__init__(host_ip, port, proto, errno.EADDRINUSE)


def _bind_error(host_ip: str, port: int, proto: str, err: OSError) -> HostPortUnavailable:
    if err.errno == errno.EADDRINUSE:
        return HostPortInUse(host_ip, port, proto)
    return HostPortUnavailable(host_ip, port, proto, err.errno)


class PortsExhausted(SystemError_):
    """libnetwork's ``errAllPortsAllocated``."""

    def __init__(self) -> None:
        super().__init__("all ports are allocated")


# ---------------------------------------------------------------------------------------------------- host


def dynamic_port_range(path: str | os.PathLike[str] = _PORT_RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range (``32768 60999`` by default), or dockerd's 49153-65535 when unreadable."""
    try:
        fields = Path(path).read_text().split()
        begin, end = int(fields[0]), int(fields[1])
        if not 0 < begin <= end <= 65535:
            raise ValueError(f"bad range {begin}-{end}")
        return begin, end
    except (OSError, ValueError, IndexError) as exc:
        log.info("falling back to default port range %d-%d: %s", *DEFAULT_PORT_RANGE, exc)
        return DEFAULT_PORT_RANGE


def parse_reserved_ports(text: str, begin: int, end: int) -> frozenset[int]:
    """The kernel's ``ip_local_reserved_ports`` format (``8080,9148`` or ``30000-32767``), kept within
    ``begin``-``end``."""
    out: set[int] = set()
    text = text.strip()
    if not text:
        return frozenset()
    for entry in text.split(","):
        first, dash, last = entry.strip().partition("-")
        try:
            lo = parse_port_number(first)
            hi = parse_port_number(last) if dash else lo
        except ValueError:
            raise InvalidArgument(f"invalid port {entry!r} in reserved ports") from None
        if hi < lo:
            raise InvalidArgument(f"invalid port range {entry!r} in reserved ports")
        out.update(range(max(lo, begin), min(hi, end) + 1))
    return frozenset(out)


def reserved_ports(begin: int, end: int, path: str | os.PathLike[str] = _RESERVED_PORTS_FILE) -> frozenset[int]:
    """The ports the kernel keeps out of its own automatic assignment: skipped for ephemeral ports too."""
    try:
        return parse_reserved_ports(Path(path).read_text(), begin, end)
    except (OSError, InvalidArgument) as exc:
        log.info("ignoring system reserved ports: %s", exc)
        return frozenset()


def bind_host_port(proto: str, host_ip: str, port: int, *, backlog: int = socket.SOMAXCONN) -> socket.socket:
    """A socket bound to ``host_ip`` ("" = 0.0.0.0):``port``, listening for TCP, as dockerd's ``bindTCPOrUDP``
    (``SO_REUSEADDR`` for TCP, ``IPV6_V6ONLY`` for IPv6, close-on-exec). Raises ``OSError``."""
    addr = host_address(host_ip)
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    if proto == "tcp":
        kind = socket.SOCK_STREAM
    elif proto == "udp":
        kind = socket.SOCK_DGRAM
    else:
        raise NotSupported(f"protocol {proto} not supported")
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((str(addr), port))
        if kind == socket.SOCK_STREAM:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


# ---------------------------------------------------------------------------------------------------- allocator


def _same_port(a: Binding, b: Binding) -> bool:
    """libnetwork's ``needSamePort``: bindings that differ only in the host address get one port."""
    return (a.container_port, a.proto, a.host_port, a.host_port_end) == (
        b.container_port,
        b.proto,
        b.host_port,
        b.host_port_end,
    )


class PortAllocator:
    """Host ports of published container ports, held per (protocol, host address, port) by an owner.

    ``port_range`` defaults to the kernel's ephemeral range (``dynamic_port_range``), ``reserved`` to its
    ``ip_local_reserved_ports`` (skipped for ephemeral ports only). ``probe`` binds every port before handing it out,
    to skip (ephemeral, ranges) or refuse (exact ports) ports another process of the host uses; tests turn it off.
    Thread-safe. State lives in memory: after a restart the daemon ``restore``s what its metadata recorded."""

    def __init__(
        self,
        port_range: tuple[int, int] | None = None,
        *,
        reserved: Iterable[int] | None = None,
        probe: bool = True,
    ) -> None:
        begin, end = port_range if port_range is not None else dynamic_port_range()
        if not 0 < begin <= end <= 65535:
            raise InvalidArgument(f"invalid port range: {begin}-{end}")
        self.begin = begin
        self.end = end
        self.reserved = frozenset(reserved) if reserved is not None else reserved_ports(begin, end)
        self.probe = probe
        self._lock = threading.Lock()
        # (proto, port) → {host address → owner}: the conflicts of a port are found without scanning everything
        self._held: dict[tuple[str, int], dict[IPAddress, str]] = {}
        # owner → what it holds, with container ports (what ``allocations`` and ``release`` return)
        self._by_owner: dict[str, list[PortMapping]] = {}
        # (proto, host address, range begin, range end) → the last port handed out from that range
        self._last: dict[tuple[str, IPAddress, int, int], int] = {}

    @property
    def port_range(self) -> tuple[int, int]:
        """The (first, last) host port of the ephemeral range this allocator hands out."""
        return self.begin, self.end

    # -- queries

    def owner_of(self, proto: str, host_ip: str, port: int) -> str | None:
        """Who holds ``proto``/``port`` on exactly ``host_ip`` ("", ``0.0.0.0``: all of IPv4); None if nobody."""
        with self._lock:
            return self._held.get((proto, port), {}).get(host_address(host_ip))

    def allocations(self) -> dict[str, list[PortMapping]]:
        """owner → the mappings it holds, in the order they were allocated (or restored)."""
        with self._lock:
            return {owner: list(mappings) for owner, mappings in self._by_owner.items()}

    # -- rules

    def _conflict(self, proto: str, addrs: Sequence[IPAddress], port: int) -> IPAddress | None:
        """The held address that keeps ``port`` from being given on ``addrs``, if any (libnetwork: a specific
        address conflicts with itself and with its family's unspecified address; an unspecified one with every
        address of its family)."""
        holders = self._held.get((proto, port))
        if not holders:
            return None
        for addr in addrs:
            if addr in holders:
                return addr
            if addr.is_unspecified:
                for held in holders:
                    if held.version == addr.version:
                        return held
            else:
                unspec = ANY4 if addr.version == 4 else _ANY6
                if unspec in holders:
                    return unspec
        return None

    def _host_check(self, proto: str, addrs: Sequence[IPAddress], port: int) -> tuple[IPAddress, OSError] | None:
        """None when ``port`` can be bound on every address of ``addrs`` at once (as dockerd's ``OSAllocator``
        holds them all: ``0.0.0.0`` and ``127.0.0.1`` together fail), else the address that failed and why."""
        if not self.probe:
            return None
        socks: list[socket.socket] = []
        try:
            for addr in addrs:
                try:
                    socks.append(bind_host_port(proto, _ip_text(addr), port, backlog=1))
                except OSError as exc:
                    return addr, exc
            return None
        finally:
            for sock in socks:
                sock.close()

    def _take(self, owner: str, proto: str, addrs: Sequence[IPAddress], port: int,
              taken: list[tuple[str, int, IPAddress]]) -> None:
        holders = self._held.setdefault((proto, port), {})
        for addr in addrs:
            holders[addr] = owner
            taken.append((proto, port, addr))

    def _allocate_group(self, owner: str, group: Sequence[Binding], taken: list[tuple[str, int, IPAddress]]) -> int:
        first = group[0]
        proto = first.proto
        addrs = [host_address(b.host_ip) for b in group]
        if not first.is_range:
            port = first.host_port
            held = self._conflict(proto, addrs, port)
            if held is not None:
                raise PortAlreadyAllocated(_ip_text(held) or "0.0.0.0", port, proto)
            failed = self._host_check(proto, addrs, port)
            if failed is not None:
                addr, err = failed
                raise _bind_error(_ip_text(addr), port, proto, err)
            self._take(owner, proto, addrs, port, taken)
            return port

        if first.ephemeral:
            begin, end, skip = self.begin, self.end, self.reserved
        else:
            begin, end, skip = first.host_port, first.host_port_end, frozenset()
        key = (proto, addrs[0], begin, end)
        port = self._last.get(key, end)
        for _ in range(end - begin + 1):
            port = port + 1 if port < end else begin
            if port in skip or self._conflict(proto, addrs, port) is not None:
                continue
            failed = self._host_check(proto, addrs, port)
            if failed is not None:
                addr, err = failed
                if err.errno == errno.EADDRINUSE:
                    log.debug("host port %s/%s is in use on the host: skipped", format_host_addr(
                        _ip_text(addr), port), proto)
                    self._last[key] = port
                    continue
                raise _bind_error(_ip_text(addr), port, proto, err)
            self._take(owner, proto, addrs, port, taken)
            for addr in addrs:
                self._last[(proto, addr, begin, end)] = port
            return port
        raise PortsExhausted()

    # -- API

    def allocate(self, owner: str, bindings: Iterable[Binding]) -> list[PortMapping]:
        """Host ports for ``bindings`` (best in ``requested_ports``' order), held by ``owner``: one
        ``PortMapping`` per binding, in the order given. All or nothing: when one binding fails, the ports this
        call took are freed again and the error is raised (``PortAlreadyAllocated``, ``HostPortUnavailable``/
        ``HostPortInUse``, ``PortsExhausted``, ``NotSupported`` for SCTP). Consecutive bindings that differ only
        in the host address get the same port."""
        items = list(bindings)
        for b in items:
            if b.proto not in SUPPORTED_PROTOCOLS:
                raise NotSupported(f"publishing {b.proto} ports is not supported: {b.key}")
        result: list[PortMapping] = []
        taken: list[tuple[str, int, IPAddress]] = []
        with self._lock:
            try:
                i = 0
                while i < len(items):
                    j = i + 1
                    while j < len(items) and _same_port(items[i], items[j]) and all(
                        host_address(items[j].host_ip) != host_address(items[k].host_ip) for k in range(i, j)
                    ):
                        j += 1
                    group = items[i:j]
                    port = self._allocate_group(owner, group, taken)
                    result.extend(PortMapping(b.container_port, b.proto, b.host_ip, port) for b in group)
                    i = j
            except BaseException:
                self._untake(taken)
                raise
            if result:
                self._by_owner.setdefault(owner, []).extend(result)
        return result

    def _untake(self, taken: Iterable[tuple[str, int, IPAddress]]) -> None:
        for proto, port, addr in taken:
            holders = self._held.get((proto, port))
            if holders is not None:
                holders.pop(addr, None)
                if not holders:
                    del self._held[(proto, port)]

    def release(self, owner: str) -> list[PortMapping]:
        """Frees every port ``owner`` holds and returns its mappings. Releasing twice is harmless."""
        with self._lock:
            mappings = self._by_owner.pop(owner, [])
            for (proto, port), holders in list(self._held.items()):
                for addr, held_by in list(holders.items()):
                    if held_by == owner:
                        del holders[addr]
                if not holders:
                    del self._held[(proto, port)]
        return mappings

    def restore(self, owner: str, mappings: Iterable[PortMapping]) -> None:
        """Holds ``mappings`` (recorded by an earlier ``allocate``) for ``owner`` again, without probing the host:
        after a daemon restart, before anything new is allocated. Mappings ``owner`` holds already are skipped; a
        port another owner holds raises ``PortAlreadyAllocated`` and nothing is restored."""
        wanted: list[tuple[PortMapping, IPAddress]] = []
        for m in mappings:
            if m.proto not in PROTOCOLS or not 0 < m.host_port <= 65535:
                raise InvalidArgument(f"invalid port mapping to restore: {m}")
            try:
                wanted.append((m, host_address(m.host_ip)))
            except ValueError:
                raise InvalidArgument(f"invalid port mapping to restore: {m}") from None
        with self._lock:
            held_now = self._by_owner.get(owner, [])
            for m, addr in wanted:
                holders = self._held.get((m.proto, m.host_port), {})
                if holders.get(addr) == owner:
                    continue
                held = self._conflict(m.proto, [addr], m.host_port)
                if held is not None and holders.get(held) != owner:
                    raise PortAlreadyAllocated(_ip_text(held) or "0.0.0.0", m.host_port, m.proto)
            added: list[PortMapping] = []
            for m, addr in wanted:
                self._held.setdefault((m.proto, m.host_port), {})[addr] = owner
                if m not in held_now and m not in added:
                    added.append(m)
            if added:
                self._by_owner.setdefault(owner, []).extend(added)


def _ip_text(addr: IPAddress) -> str:
    return "" if addr == ANY4 else str(addr)
