"""The kernel side of the default bridge network, through iproute2's ``ip`` (``ip -j`` for what is read back).

This module owns:

* the **bridge device** (``ensure_bridge``, ``delete_bridge``, ``bridge_addresses``): a Linux bridge with a
  name, an IPv4 address (the gateway, with the subnet's prefix) and an MTU, up. Like dockerd's
  ``setupBridgeIPv4``, a daemon-managed bridge carries exactly the configured IPv4 address: others are removed;
* the **container's interface** (``attach``, ``detach``, ``interface_info``): a veth pair, the host end
  (``veth`` + 7 hex characters, as dockerd names them) enslaved to the bridge and up, the other end moved into
  a network namespace given by path (``/proc/<pid>/ns/net``, ``/run/netns/<name>``), renamed ``eth0`` there
  with its MAC, MTU and address, up with ``lo``, and a default route through the gateway.

Commands inside a namespace run as ``nsenter --net=<path> ip …`` (util-linux), so any namespace file works, not
only the names ``ip netns`` knows. Every failure is an ``IPCommandError`` naming the command and ``ip``'s own
message; what an ``attach`` created is removed again when a later step fails.

It knows nothing of containers, IPAM state, NAT or ports.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from dockwright.errors import Conflict, InvalidArgument, SystemError_, Unavailable

__all__ = [
    "IPCommandError",
    "IPNotInstalled",
    "ip_binary",
    "run_ip",
    "run_batch",
    "validate_ifname",
    "link_exists",
    "link_info",
    "ensure_bridge",
    "bridge_addresses",
    "delete_bridge",
    "Endpoint",
    "attach",
    "detach",
    "interface_info",
]

IFNAMSIZ = 16  # the kernel's limit, with the NUL: names are at most 15 bytes


class IPNotInstalled(Unavailable):
    """``ip`` (iproute2) or ``nsenter`` (util-linux) is missing: networking is unavailable (503), the message names
    the package to install."""

    def __init__(self, what: str = "ip") -> None:
        package = "iproute2" if what == "ip" else "util-linux"
        super().__init__(f"the {what} command is not installed (apt-get install {package}); networking needs it")


class IPCommandError(SystemError_):
    """``ip`` failed: ``argv``, ``returncode`` and ``stderr`` are kept for callers that look at them."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"{' '.join(argv)}: exit status {returncode}: {self.stderr or 'no message'}")


def ip_binary() -> str:
    """The path of iproute2's ``ip`` on ``PATH``; IPNotInstalled when there is none."""
    ip = shutil.which("ip")
    if not ip:
        raise IPNotInstalled("ip")
    return ip


def _nsenter() -> str:
    nsenter = shutil.which("nsenter")
    if not nsenter:
        raise IPNotInstalled("nsenter")
    return nsenter


def _check_netns(netns: str) -> str:
    if not os.path.exists(netns):
        raise InvalidArgument(f"network namespace {netns} does not exist")
    return netns


def run_ip(*args: str, netns: str | None = None, json_out: bool = False, check: bool = True) -> Any:
    """Runs ``ip [-j] ARGS`` (inside the namespace file ``netns`` if given). Returns the parsed JSON with
    ``json_out``, else the completed process. Raises ``IPCommandError`` when ``check`` and it fails."""
    argv = [ip_binary()] + (["-j"] if json_out else []) + list(args)
    if netns is not None:
        argv = [_nsenter(), f"--net={_check_netns(netns)}", "--"] + argv
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise IPCommandError(argv, proc.returncode, proc.stderr)
    if json_out:
        if proc.returncode != 0:
            return None
        return json.loads(proc.stdout or "[]")
    return proc


def run_batch(commands: list[str], *, netns: str | None = None) -> None:
    """Runs ``commands`` (``ip`` command lines without the ``ip``) as one ``ip -batch -`` process, stopping at
    the first that fails (``IPCommandError`` with ``ip``'s message, which names the line)."""
    argv = [ip_binary(), "-batch", "-"]
    if netns is not None:
        argv = [_nsenter(), f"--net={_check_netns(netns)}", "--"] + argv
    proc = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise IPCommandError(argv, proc.returncode, proc.stderr)


def validate_ifname(name: str) -> str:
    """The kernel's rules for interface names: 1–15 bytes, no '/', ':' or white space, not '.' or '..'."""
    if (
        not name
        or len(name.encode()) >= IFNAMSIZ
        or name in (".", "..")
        or any(c in name for c in "/:") or any(c.isspace() for c in name)
    ):
        raise InvalidArgument(f"invalid interface name {name!r}: 1 to 15 characters, no '/', ':' or spaces")
    return name


def link_info(name: str, netns: str | None = None) -> dict[str, Any] | None:
    """``ip -j -d link show dev NAME``'s object, or None when there is no such link."""
    validate_ifname(name)
    out = run_ip("-d", "link", "show", "dev", name, netns=netns, json_out=True, check=False)
    return out[0] if out else None


def link_exists(name: str, netns: str | None = None) -> bool:
    """Whether a link named ``name`` exists (in the network namespace at path ``netns``, else the daemon's)."""
    return link_info(name, netns) is not None


def _link_kind(info: dict[str, Any]) -> str | None:
    return (info.get("linkinfo") or {}).get("info_kind")


def _ipv4_addresses(name: str, netns: str | None = None) -> list[IPv4Interface]:
    out = run_ip("-4", "addr", "show", "dev", name, netns=netns, json_out=True, check=False) or []
    addrs: list[IPv4Interface] = []
    for link in out:
        for a in link.get("addr_info", []):
            if a.get("family") == "inet":
                addrs.append(IPv4Interface(f"{a['local']}/{a['prefixlen']}"))
    return addrs


def bridge_addresses(name: str) -> list[IPv4Interface]:
    """The IPv4 addresses on the bridge ``name`` (empty when it does not exist): what dockerd's ``selectBIP``
    looks at (``ipam.default_bridge_ipam(bridge_addresses=…)``)."""
    if not link_exists(name):
        return []
    return _ipv4_addresses(name)


def ensure_bridge(name: str, address: IPv4Interface | str, mtu: int = 1500, *, exclusive: bool = True) -> None:
    """Creates the bridge ``name`` unless it exists, sets its MTU, gives it ``address`` (``172.17.0.1/16``) and
    brings it up. With ``exclusive`` (a daemon-managed bridge), other IPv4 addresses on it are removed.
    Raises ``Conflict`` when a link of that name exists and is not a bridge."""
    validate_ifname(name)
    addr = IPv4Interface(address)
    if not 68 <= mtu <= 65535:
        raise InvalidArgument(f"invalid MTU {mtu}: it must be between 68 and 65535")
    info = link_info(name)
    if info is None:
        proc = run_ip("link", "add", "name", name, "mtu", str(mtu), "type", "bridge", check=False)
        if proc.returncode != 0:
            info = link_info(name)  # created by someone else in between?
            if info is None:
                raise IPCommandError(proc.args, proc.returncode, proc.stderr)
        else:
            info = link_info(name)
    if info is not None and _link_kind(info) != "bridge":
        raise Conflict(f"interface {name} exists and is not a bridge (it is {_link_kind(info) or 'a device'})")
    run_ip("link", "set", "dev", name, "mtu", str(mtu))
    current = _ipv4_addresses(name)
    if exclusive:
        for other in current:
            if other != addr:
                run_ip("addr", "del", str(other), "dev", name)
    if addr not in current:
        run_ip("addr", "add", str(addr), "broadcast", str(addr.network.broadcast_address), "dev", name)
    run_ip("link", "set", "dev", name, "up")


def delete_bridge(name: str) -> bool:
    """Deletes the bridge ``name``; False when there was none. Refuses (``Conflict``) to delete another kind."""
    info = link_info(name)
    if info is None:
        return False
    if _link_kind(info) != "bridge":
        raise Conflict(f"interface {name} is not a bridge; not deleting it")
    proc = run_ip("link", "del", "dev", name, check=False)
    if proc.returncode != 0 and link_exists(name):
        raise IPCommandError(proc.args, proc.returncode, proc.stderr)
    return True


@dataclass(frozen=True)
class Endpoint:
    """A container's interface on a bridge: what a later slice records on the container (NetworkSettings)."""

    bridge: str
    host_ifname: str
    netns: str
    ifname: str
    address: IPv4Interface
    gateway: IPv4Address | None
    mac: str
    mtu: int


def _random_ifname(prefix: str) -> str:
    return prefix + secrets.token_hex(4)[:7]


def attach(
    bridge: str,
    netns: str,
    *,
    address: IPv4Interface | str,
    gateway: IPv4Address | str | None,
    mac: str,
    mtu: int = 1500,
    ifname: str = "eth0",
    host_ifname: str | None = None,
    check_bridge: bool = True,
    hairpin: bool = False,
) -> Endpoint:
    """Connects the network namespace at path ``netns`` to ``bridge``: a veth pair whose host end is enslaved to
    the bridge and up, and whose other end becomes ``ifname`` inside with ``mac``, ``mtu`` and ``address``
    (``172.17.0.2/16``), up, with ``lo`` up and a default route via ``gateway`` (none when it is None).
    On failure, nothing it created is left behind."""
    validate_ifname(bridge)
    validate_ifname(ifname)
    _check_netns(netns)
    addr = IPv4Interface(address)
    gw = IPv4Address(gateway) if gateway is not None else None
    if check_bridge:
        info = link_info(bridge)
        if info is None or _link_kind(info) != "bridge":
            raise InvalidArgument(f"bridge {bridge} does not exist")
    host = validate_ifname(host_ifname) if host_ifname else _random_ifname("veth")
    peer = _random_ifname("dwp")  # a temporary name on the host; renamed ifname inside the namespace
    # two `ip -batch` runs (host side, then inside the namespace) instead of one process a step
    run_batch([
        f"link add name {host} mtu {mtu} type veth peer name {peer} mtu {mtu}",
        f"link set dev {host} master {bridge}",
        f"link set dev {peer} netns \"{netns}\"",
        f"link set dev {host} up",
        # a container reaching itself through a published port without the userland proxy (dockerd's hairpin)
        *([f"link set dev {host} type bridge_slave hairpin on"] if hairpin else []),
    ])
    try:
        inside = [
            f"link set dev {peer} name {ifname} address {mac} mtu {mtu}",
            f"addr add {addr} broadcast {addr.network.broadcast_address} dev {ifname}",
            "link set dev lo up",
            f"link set dev {ifname} up",
        ]
        if gw is not None:
            inside.append(f"route replace default via {gw} dev {ifname}")
        run_batch(inside, netns=netns)
    except BaseException:
        run_ip("link", "del", "dev", host, check=False)  # takes the peer with it, wherever it is
        raise
    return Endpoint(bridge=bridge, host_ifname=host, netns=netns, ifname=ifname, address=addr, gateway=gw,
                    mac=mac.lower(), mtu=mtu)


def detach(endpoint: Endpoint | str) -> bool:
    """Removes a container's veth pair by its host end (an ``Endpoint`` or the host interface's name); False when
    it was gone already (the namespace went away with its end)."""
    host = endpoint.host_ifname if isinstance(endpoint, Endpoint) else endpoint
    validate_ifname(host)
    if not link_exists(host):
        return False
    proc = run_ip("link", "del", "dev", host, check=False)
    if proc.returncode != 0 and link_exists(host):
        raise IPCommandError(proc.args, proc.returncode, proc.stderr)
    return True


def interface_info(netns: str, ifname: str = "eth0") -> dict[str, Any]:
    """What is inside the namespace, read back: ``mac``, ``mtu``, ``up``, ``addresses`` (IPv4Interface list) and
    ``gateway`` (the default route's, or None)."""
    info = link_info(ifname, netns)
    if info is None:
        raise InvalidArgument(f"no interface {ifname} in {netns}")
    routes = run_ip("-4", "route", "show", "default", netns=netns, json_out=True, check=False) or []
    gw = next((IPv4Address(r["gateway"]) for r in routes if r.get("gateway")), None)
    return {
        "mac": info.get("address"),
        "mtu": info.get("mtu"),
        "up": "UP" in info.get("flags", []),
        "addresses": _ipv4_addresses(ifname, netns),
        "gateway": gw,
    }
