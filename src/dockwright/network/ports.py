"""Published ports as dockerd publishes them: which host ports a container asks for, and how they are shown.

This module owns:

* the **requests** (``requested_ports``): from the container's ``Config.ExposedPorts`` (``{"80/tcp": {}}``) and
  ``HostConfig.PortBindings`` (``{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}``) and ``PublishAllPorts``
  (``-P``), the list of ``Binding``s dockerd's daemon (``buildPortsRelatedCreateEndpointOptions``) and libnetwork's
  bridge driver (``sortAndNormPBs``) would hand to the port mapper: one per binding entry (an empty ``HostPort``
  asks for an ephemeral port, ``"8000-8010"`` for the first free port of that range), one ephemeral binding per
  exposed-but-unbound port under ``-P``, validated with dockerd's messages (``invalid port specification: "x"``)
  and sorted as libnetwork sorts them (exact host ports first, then by container port, protocol, host port, host
  address);
* the **API views** (``port_map``, ``port_summaries``): ``NetworkSettings.Ports`` and the ``Ports`` list of
  ``GET /containers/json``.

The host ports themselves are handed out by :mod:`dockwright.network.port_allocator`. IPv4 first: an empty host
address means ``0.0.0.0`` only (dockerd adds ``[::]`` when the host has IPv6); explicit IPv6 host addresses are
accepted. SCTP is refused (``NotSupported``): the userland proxy does TCP and UDP.

Bad requests are ``InvalidArgument``. Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from dockwright.errors import InvalidArgument, NotSupported
from dockwright.network.endpoint import PortMapping

__all__ = [
    "PROTOCOLS", "SUPPORTED_PROTOCOLS", "IPAddress", "ANY4", "Binding", "host_address", "format_host_addr",
    "parse_port_number", "parse_port_key", "parse_host_port", "requested_ports", "port_map", "port_summaries",
]

PROTOCOLS = ("tcp", "udp", "sctp")
"""What dockerd accepts, in libnetwork's order (tcp < udp < sctp)."""

SUPPORTED_PROTOCOLS = ("tcp", "udp")

IPAddress = IPv4Address | IPv6Address
ANY4 = IPv4Address("0.0.0.0")
"""The unspecified IPv4 address: a binding on every IPv4 address of the host."""


def host_address(host_ip: str) -> IPAddress:
    """The address of a binding's ``HostIp`` ("" and ``0.0.0.0`` are :data:`ANY4`)."""
    return ANY4 if host_ip in ("", "0.0.0.0") else ipaddress.ip_address(host_ip)


def _bracket(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def format_host_addr(host_ip: str, port: int) -> str:
    """``0.0.0.0:8080``, ``127.0.0.1:8080``, ``[::1]:8080``: Go's ``netip.AddrPort`` text ("" = 0.0.0.0)."""
    return f"{_bracket(host_ip or '0.0.0.0')}:{port}"


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


def parse_port_number(text: str) -> int:
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
        port = parse_port_number(port_text)
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
        start = parse_port_number(start_text)
        end = parse_port_number(end_text) if dash and end_text != start_text else start
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
    if addr == ANY4:
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
    addr = host_address(host_ip)
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
