"""Published ports as dockerd publishes them: which host ports a container asks for, and which it gets.

This module owns:

* the **requests** (``requested_ports``): from the container's ``Config.ExposedPorts`` (``{"80/tcp": {}}``) and
  ``HostConfig.PortBindings`` (``{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}``) and ``PublishAllPorts``
  (``-P``), the list of ``Binding``s dockerd's daemon (``buildPortsRelatedCreateEndpointOptions``) and libnetwork's
  bridge driver (``sortAndNormPBs``) would hand to the port mapper: one per binding entry (an empty ``HostPort``
  asks for an ephemeral port, ``"8000-8010"`` for the first free port of that range), one ephemeral binding per
  exposed-but-unbound port under ``-P``, validated with dockerd's messages (``invalid port specification: "x"``)
  and sorted as libnetwork sorts them (exact host ports first, then by container port, protocol, host port, host
  address);
* the **host port allocator** (``PortAllocator``): libnetwork's ``portallocator`` with the bind check of its
  ``OSAllocator``. A port is held per (protocol, host address, port), by an owner (a container ID); a port held on
  ``0.0.0.0`` conflicts with the same port on every IPv4 address and the other way round (``Bind for
  0.0.0.0:8080 failed: port is already allocated``). Ephemeral ports come from the kernel's range
  (/proc/sys/net/ipv4/ip_local_port_range; 49153-65535 when unreadable, as dockerd) minus
  ip_local_reserved_ports, handed out sequentially after the last one given; every candidate is bound for a
  moment to make sure no other process of the host uses it (such ports are skipped; an explicit one is refused
  with ``failed to bind host port 0.0.0.0:8080/tcp: address already in use``). Bindings that differ only in the
  host address get the same port, as in dockerd. ``allocate`` is all or nothing, ``release`` frees an owner's
  ports, ``restore`` re-reserves what the metadata recorded before a daemon restart;
* the **API views** (``port_map``, ``port_summaries``): ``NetworkSettings.Ports`` and the ``Ports`` list of
  ``GET /containers/json``.

IPv4 first: an empty host address means ``0.0.0.0`` only (dockerd adds ``[::]`` when the host has IPv6); explicit
IPv6 host addresses are accepted. SCTP is refused (``NotSupported``): the userland proxy does TCP and UDP.

Allocation failures are ``SystemError_``s (dockerd answers them with 500); bad requests are ``InvalidArgument``.
The only I/O is reading /proc and binding (then closing) probe sockets; nothing is persisted here.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from dockwright.errors import InvalidArgument, NotSupported, SystemError_
from dockwright.network.endpoint import PortMapping

__all__ = [
    "DEFAULT_PORT_RANGE",
    "PROTOCOLS",
    "Binding",
    "parse_port_key",
    "parse_host_port",
    "requested_ports",
    "PortAlreadyAllocated",
    "HostPortInUse",
    "HostPortUnavailable",
    "PortsExhausted",
    "dynamic_port_range",
    "parse_reserved_ports",
    "reserved_ports",
    "format_host_addr",
    "errno_text",
    "bind_host_port",
    "PortAllocator",
    "port_map",
    "port_summaries",
]

log = logging.getLogger("dockwright.ports")

DEFAULT_PORT_RANGE = (49153, 65535)
"""dockerd's ``defaultPortRangeStart``/``End``: used when the kernel's range cannot be read."""

PROTOCOLS = ("tcp", "udp", "sctp")
"""What dockerd accepts, in libnetwork's order (tcp < udp < sctp)."""

SUPPORTED_PROTOCOLS = ("tcp", "udp")

_PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
_RESERVED_PORTS_FILE = "/proc/sys/net/ipv4/ip_local_reserved_ports"

IPAddress = IPv4Address | IPv6Address
_ANY4 = IPv4Address("0.0.0.0")
_ANY6 = IPv6Address("::")


# ---------------------------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Binding:
    """One requested publication of ``container_port``/``proto``: on ``host_ip`` ("" = every IPv4 address) at
    ``host_port`` when ``host_port == host_port_end > 0``, at the first free port of ``host_port``-``host_port_end``
    when they differ, at an ephemeral port when both are 0."""

    container_port: int
    proto: str
    host_ip: str = ""
    host_port: int = 0
    host_port_end: int = 0

    @property
    def ephemeral(self) -> bool:
        """True when no host port was asked for (``-p 80``): the allocator picks one from the ephemeral range."""
        return self.host_port == 0

    @property
    def is_range(self) -> bool:
        """True unless one exact host port is asked for (libnetwork: ephemeral counts as a range)."""
        return self.host_port == 0 or self.host_port != self.host_port_end

    @property
    def key(self) -> str:
        """``80/tcp``: the container port and protocol, the key of ``NetworkSettings.Ports``."""
        return f"{self.container_port}/{self.proto}"

    def __str__(self) -> str:
        if self.ephemeral:
            host = ""
        elif self.host_port == self.host_port_end:
            host = str(self.host_port)
        else:
            host = f"{self.host_port}-{self.host_port_end}"
        ip = _bracket(self.host_ip or "0.0.0.0")
        return f"{ip}:{host}:{self.container_port}/{self.proto}"


def _parse_port_number(text: str) -> int:
    """Go's ``strconv.ParseUint(s, 10, 16)``: decimal digits only, 0-65535."""
    if not text or not text.isascii() or not text.isdigit():
        raise ValueError(text)
    value = int(text)
    if value > 65535:
        raise ValueError(text)
    return value


def _normalize_proto(proto: str) -> str:
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid proto: {proto}")
    return proto


def parse_port_key(key: object) -> tuple[int, str]:
    """``"80/tcp"``, ``"80/UDP"``, ``"80"`` (tcp) → (80, proto): a key of ``ExposedPorts``/``PortBindings``.
    Port 0, ranges and anything else are dockerd's ``invalid port specification: "…"``."""
    if not isinstance(key, str):
        raise InvalidArgument(f"invalid port specification: {_quote(str(key))}")
    port_text, _, proto = key.partition("/")
    proto = _normalize_proto(proto)
    try:
        port = _parse_port_number(port_text)
    except ValueError:
        raise InvalidArgument(f"invalid port specification: {_quote(key)}") from None
    if port == 0:
        raise InvalidArgument(f"invalid port specification: {_quote(f'0/{proto}')}")
    return port, proto


def parse_host_port(value: object) -> tuple[int, int]:
    """A binding's ``HostPort`` → (start, end): ``""``/``"0"``/None → (0, 0) (ephemeral), ``"8080"`` →
    (8080, 8080), ``"8000-8010"`` → (8000, 8010). A ``/proto`` suffix is ignored, as dockerd's ``ParsePortRange``
    does."""
    if value is None:
        return 0, 0
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidArgument(f"invalid port specification: {_quote(str(value))}")
    text = str(value).strip()
    if text == "":
        return 0, 0
    rng = text.partition("/")[0]
    start_text, dash, end_text = rng.partition("-")
    try:
        start = _parse_port_number(start_text)
        end = _parse_port_number(end_text) if dash and end_text != start_text else start
    except ValueError:
        raise InvalidArgument(f"invalid port specification: {_quote(text)}") from None
    if end < start:
        raise InvalidArgument(f"invalid port specification: {_quote(text)}")
    if start == 0 and end == 0:
        return 0, 0
    if start == 0:
        raise InvalidArgument(f"invalid port range: {start}-{end}")
    return start, end


def _parse_host_ip(value: object) -> str:
    """``HostIp`` → "" (every IPv4 address: ``""``, None or ``0.0.0.0``) or the address's canonical text (IPv6
    brackets stripped, IPv4-mapped IPv6 unmapped)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"invalid IP address: {value}")
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text == "":
        return ""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid IP address: {value}") from None
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr == _ANY4:
        return ""
    return str(addr)


def _quote(text: str) -> str:
    """Go's ``%q`` for the strings we quote (printable ASCII in the common case)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04x}")
    out.append('"')
    return "".join(out)


_PROTO_ORDER = {p: i for i, p in enumerate(PROTOCOLS)}


def _ip_sort_key(host_ip: str) -> tuple[int, int]:
    addr = _addr(host_ip)
    return addr.version, int(addr)


def _sort_key(b: Binding) -> tuple[Any, ...]:
    """libnetwork's ``PortBindingReq.Compare``: exact host ports before ranges (ephemeral counts as a range), then
    container port, protocol, host port, host port end, host address."""
    return (b.is_range, b.container_port, _PROTO_ORDER[b.proto], b.host_port, b.host_port_end, _ip_sort_key(b.host_ip))


def requested_ports(
    exposed_ports: Mapping[str, Any] | Iterable[str] | None,
    port_bindings: Mapping[str, Any] | None,
    publish_all: bool,
    *,
    default_host_ip: str = "",
) -> list[Binding]:
    """The host ports a container asks for, as dockerd derives them from ``Config.ExposedPorts``,
    ``HostConfig.PortBindings`` and ``HostConfig.PublishAllPorts``.

    Every entry of ``PortBindings[port]`` is one binding; a port of ``PortBindings`` with no entry (null or ``[]``)
    publishes nothing unless ``publish_all``, which also gives every exposed port without binding an ephemeral host
    port. ``default_host_ip`` is dockerd's ``--ip`` (the address of bindings without ``HostIp``). Duplicates are
    dropped; the result is in libnetwork's allocation order. Raises ``InvalidArgument`` (dockerd's messages) for
    bad keys, host ports and addresses, ``NotSupported`` for an SCTP binding."""
    default_ip = _parse_host_ip(default_host_ip)
    exposed: list[tuple[int, str]] = []
    for key in exposed_ports or ():
        exposed.append(parse_port_key(key))

    requested: dict[tuple[int, str], list[Binding]] = {}
    if port_bindings is not None and not isinstance(port_bindings, Mapping):
        raise InvalidArgument("invalid PortBindings: expected an object of port to bindings")
    for key, entries in (port_bindings or {}).items():
        port, proto = parse_port_key(key)
        out = requested.setdefault((port, proto), [])
        if entries is None:
            continue
        if not isinstance(entries, (list, tuple)):
            raise InvalidArgument(f"invalid port bindings for {key}: expected a list")
        for entry in entries:
            if entry is None:
                entry = {}
            if not isinstance(entry, Mapping):
                raise InvalidArgument(f"invalid port binding for {key}: {entry!r}")
            host_ip = _parse_host_ip(entry.get("HostIp")) or default_ip
            start, end = parse_host_port(entry.get("HostPort"))
            out.append(Binding(port, proto, host_ip, start, end))

    result: list[Binding] = []
    for (port, proto), bindings in requested.items():
        if bindings:
            result.extend(bindings)
        elif publish_all:
            result.append(Binding(port, proto, default_ip, 0, 0))
    if publish_all:
        for port, proto in exposed:
            if (port, proto) not in requested:
                result.append(Binding(port, proto, default_ip, 0, 0))

    unique = sorted(set(result), key=_sort_key)
    for b in unique:
        if b.proto not in SUPPORTED_PROTOCOLS:
            raise NotSupported(f"publishing {b.proto} ports is not supported: {b.key}")
    return unique


# ---------------------------------------------------------------------------------------------------- errors


def _addr(host_ip: str) -> IPAddress:
    return _ANY4 if host_ip in ("", "0.0.0.0") else ipaddress.ip_address(host_ip)


def _bracket(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def format_host_addr(host_ip: str, port: int) -> str:
    """``0.0.0.0:8080``, ``127.0.0.1:8080``, ``[::1]:8080``: Go's ``netip.AddrPort`` text ("" = 0.0.0.0)."""
    return f"{_bracket(host_ip or '0.0.0.0')}:{port}"


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
            lo = _parse_port_number(first)
            hi = _parse_port_number(last) if dash else lo
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
    addr = _addr(host_ip)
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
            return self._held.get((proto, port), {}).get(_addr(host_ip))

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
                unspec = _ANY4 if addr.version == 4 else _ANY6
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
        addrs = [_addr(b.host_ip) for b in group]
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
                        _addr(items[j].host_ip) != _addr(items[k].host_ip) for k in range(i, j)
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
                wanted.append((m, _addr(m.host_ip)))
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
    return "" if addr == _ANY4 else str(addr)


# ---------------------------------------------------------------------------------------------------- API views


def port_map(
    exposed_ports: Mapping[str, Any] | Iterable[str] | None,
    port_bindings: Mapping[str, Any] | None,
    mappings: Iterable[PortMapping],
) -> dict[str, list[dict[str, str]] | None]:
    """``NetworkSettings.Ports`` of a running container, as dockerd's ``getPortMapInfo``: every exposed port
    (``ExposedPorts`` and the keys of ``PortBindings``) → None, published ones → ``[{"HostIp": "0.0.0.0",
    "HostPort": "8080"}, …]``. Keys that do not parse are left out."""
    out: dict[str, list[dict[str, str]] | None] = {}
    for key in [*(exposed_ports or ()), *((port_bindings or {}).keys())]:
        try:
            port, proto = parse_port_key(key)
        except InvalidArgument:
            continue
        out.setdefault(f"{port}/{proto}", None)
    for m in mappings:
        entries = out.get(m.key) or []
        entries.append({"HostIp": m.host_ip or "0.0.0.0", "HostPort": str(m.host_port)})
        out[m.key] = entries
    return out


def port_summaries(ports: Mapping[str, list[Mapping[str, str]] | None] | None) -> list[dict[str, Any]]:
    """The ``Ports`` list of ``GET /containers/json`` from ``NetworkSettings.Ports``: ``{"PrivatePort": 80,
    "Type": "tcp"}`` for an unpublished port, ``{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080,
    "Type": "tcp"}`` per publication; sorted by port, protocol, public port, address."""
    out: list[dict[str, Any]] = []
    for key, bindings in (ports or {}).items():
        try:
            port, proto = parse_port_key(key)
        except InvalidArgument:
            continue
        if not bindings:
            out.append({"PrivatePort": port, "Type": proto})
            continue
        for b in bindings:
            try:
                public, _ = parse_host_port(b.get("HostPort"))
            except InvalidArgument:
                continue
            out.append({"IP": b.get("HostIp") or "", "PrivatePort": port, "PublicPort": public, "Type": proto})
    out.sort(key=lambda p: (p["PrivatePort"], p["Type"], p.get("PublicPort", 0), p.get("IP", "")))
    return out
