"""IPv4 address management of the default bridge network, as dockerd's libnetwork does it.

This module owns:

* the **pools**: dockerd's default local-scope address pools (moby ``libnetwork/ipamutils``: 172.17.0.0/16,
  172.18.0.0/16, 172.19.0.0/16, then 172.20.0.0/14, 172.24.0.0/14 and 172.28.0.0/14 split into /16s, then
  192.168.0.0/16 split into /20s), replaced as a whole by ``--default-address-pool base=…,size=…`` /
  daemon.json ``default-address-pools`` (``parse_address_pools``);
* the **reserved networks**: what the host already uses, as moby's ``netutils.InferReservedNetworks``: its IPv4
  on-link routes (scope link, not the default route) and the nameservers of /etc/resolv.conf (``host_routes``,
  ``reserved_networks``);
* the **subnet choice** (``choose_subnet``): the first subnet of the pools, in order, that overlaps nothing
  reserved or already allocated, as ``defaultipam.allocatePredefinedPool``;
* the **default bridge's configuration** (``default_bridge_ipam``): dockerd's ``getDefaultBridgeIPAMConf`` and
  ``selectBIP``: ``--bip`` gives subnet and gateway; else an IPv4 address already on the bridge; else
  ``--fixed-cidr``; else a pool. ``--fixed-cidr`` is the sub-pool containers' addresses come from;
* the **address allocator** (``AddressAllocator``): container addresses within the subnet (or the sub-pool), the
  lowest free one first (dockerd's non-serial allocation), never the network, broadcast or gateway address,
  kept in a small JSON file replaced atomically so that it survives restarts;
* **MAC addresses**: ``mac_from_ip`` (02:42 + the four bytes of the IPv4 address: 02:42:ac:11:00:02 for
  172.17.0.2, what dockerd gave containers up to 25.0) and ``random_mac`` (what dockerd ≥ 26's bridge driver does).

It runs nothing but ``ip -j route`` (or reads /proc/net/route) in ``host_routes``; everything else is pure.

Why one module of ~600 lines: each part above is a step of the one choice dockerd makes for the default bridge
(pools, then what the host reserves, then the subnet, then the addresses within it), sharing its network helpers.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from dockwright.errors import Conflict, Forbidden, InvalidArgument, Unavailable

__all__ = [
    "DEFAULT_BRIDGE_NAME",
    "DEFAULT_MTU",
    "AddressPool",
    "DEFAULT_ADDRESS_POOLS",
    "parse_address_pools",
    "Route",
    "parse_ip_route_json",
    "parse_proc_net_route",
    "host_routes",
    "nameserver_networks",
    "reserved_networks",
    "NoMoreSubnets",
    "choose_subnet",
    "BridgeIPAM",
    "default_bridge_ipam",
    "AddressesExhausted",
    "AddressInUse",
    "AddressOutOfRange",
    "AddressAllocator",
    "mac_from_ip",
    "random_mac",
]

DEFAULT_BRIDGE_NAME = "dockwright0"
"""The default bridge's name: not ``docker0``, so that a dockerd on the same host keeps its own."""

DEFAULT_MTU = 1500


# ---------------------------------------------------------------------------------------------------- pools


@dataclass(frozen=True)
class AddressPool:
    """moby's ``NetworkToSplit``: ``base`` split into subnets of prefix length ``size``."""

    base: IPv4Network
    size: int

    def __post_init__(self) -> None:
        if not isinstance(self.base, IPv4Network):
            raise InvalidArgument(f"invalid address pool base: {self.base!r}")
        if not self.base.prefixlen <= self.size <= 32:
            raise InvalidArgument(
                f"invalid pool size {self.size} for base {self.base}: it must be between "
                f"{self.base.prefixlen} and 32"
            )

    def first(self) -> IPv4Network:
        """The pool's first subnet: ``base``'s network address with prefix length ``size``."""
        return IPv4Network((self.base.network_address, self.size))


DEFAULT_ADDRESS_POOLS: tuple[AddressPool, ...] = (
    AddressPool(IPv4Network("172.17.0.0/16"), 16),
    AddressPool(IPv4Network("172.18.0.0/16"), 16),
    AddressPool(IPv4Network("172.19.0.0/16"), 16),
    AddressPool(IPv4Network("172.20.0.0/14"), 16),
    AddressPool(IPv4Network("172.24.0.0/14"), 16),
    AddressPool(IPv4Network("172.28.0.0/14"), 16),
    AddressPool(IPv4Network("192.168.0.0/16"), 20),
)


def _network(value: str, what: str) -> IPv4Network:
    try:
        return IPv4Network(value, strict=False)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"invalid {what} {value!r}: {exc}") from exc


def parse_address_pools(value: Iterable[str | Mapping[str, object]]) -> list[AddressPool]:
    """Pools from ``--default-address-pool`` flags (``base=10.10.0.0/16,size=24``) or daemon.json's
    ``default-address-pools`` (``[{"base": "10.10.0.0/16", "size": 24}]``). IPv6 bases are skipped: this slice is
    IPv4 only. An empty result means "keep the defaults" to callers."""
    pools: list[AddressPool] = []
    for item in value:
        if isinstance(item, str):
            fields: dict[str, object] = {}
            for part in item.split(","):
                key, sep, val = part.partition("=")
                key = key.strip().lower()
                if not sep or key not in ("base", "size"):
                    raise InvalidArgument(f"invalid field {part!r} in default-address-pool {item!r}")
                fields[key] = val.strip()
        elif isinstance(item, Mapping):
            fields = {str(k).lower(): v for k, v in item.items()}
        else:
            raise InvalidArgument(f"invalid default-address-pool {item!r}")
        if "base" not in fields or "size" not in fields:
            raise InvalidArgument(f"default-address-pool {item!r} needs both base and size")
        base_text = str(fields["base"])
        if ":" in base_text:
            continue
        try:
            size = int(str(fields["size"]))
        except ValueError as exc:
            raise InvalidArgument(f"invalid size in default-address-pool {item!r}") from exc
        pools.append(AddressPool(_network(base_text, "default-address-pool base"), size))
    return pools


# ---------------------------------------------------------------------------------------------------- host


@dataclass(frozen=True)
class Route:
    """An IPv4 route of the host: ``dst`` (None for the default route), its scope (``link`` for on-link routes,
    ``global`` for routes through a gateway, ``host``) and device."""

    dst: IPv4Network | None
    scope: str = "global"
    dev: str | None = None


def parse_ip_route_json(text: str) -> list[Route]:
    """Routes from ``ip -j -4 route show`` (iproute2 leaves ``scope`` out when it is ``global``)."""
    routes: list[Route] = []
    for entry in json.loads(text or "[]"):
        dst = entry.get("dst", "default")
        if dst == "default":
            net = None
        else:
            try:
                net = IPv4Network(dst, strict=False)
            except ValueError:
                continue  # IPv6 or a type we do not model (e.g. "unreachable" without a dst)
        routes.append(Route(net, str(entry.get("scope", "global")), entry.get("dev")))
    return routes


_RTF_GATEWAY = 0x2
_RTF_HOST = 0x4


def parse_proc_net_route(text: str) -> list[Route]:
    """Routes from /proc/net/route (little-endian hex addresses); a route without RTF_GATEWAY is on-link."""
    routes: list[Route] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        dev, dst_hex, _gw, flags_hex, mask_hex = fields[0], fields[1], fields[2], fields[3], fields[7]
        dst = IPv4Address(int.from_bytes(bytes.fromhex(dst_hex), "little"))
        mask = IPv4Address(int.from_bytes(bytes.fromhex(mask_hex), "little"))
        flags = int(flags_hex, 16)
        net = None if int(mask) == 0 and int(dst) == 0 else IPv4Network(f"{dst}/{mask}", strict=False)
        scope = "global" if flags & _RTF_GATEWAY else ("host" if flags & _RTF_HOST and net is None else "link")
        routes.append(Route(net, scope, dev))
    return routes


def host_routes() -> list[Route]:
    """The host's IPv4 routes of the main table: ``ip -j -4 route show``, else /proc/net/route."""
    ip = shutil.which("ip")
    if ip:
        proc = subprocess.run([ip, "-j", "-4", "route", "show"], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            try:
                return parse_ip_route_json(proc.stdout)
            except (ValueError, AttributeError):
                pass
    try:
        return parse_proc_net_route(Path("/proc/net/route").read_text())
    except OSError:
        return []


def nameserver_networks(resolv_conf: str) -> list[IPv4Network]:
    """The IPv4 ``nameserver`` lines of a resolv.conf, as /32s."""
    out: list[IPv4Network] = []
    for line in resolv_conf.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                out.append(IPv4Network(ipaddress.IPv4Address(fields[1].split("%")[0])))
            except ValueError:
                continue
    return out


def reserved_networks(
    routes: Iterable[Route] | None = None, nameservers: Iterable[IPv4Network] | None = None
) -> list[IPv4Network]:
    """moby's ``InferReservedNetworks(false)``: on-link IPv4 routes (not the default one) and nameservers, sorted.
    With no arguments, reads the host (``host_routes()`` and /etc/resolv.conf)."""
    if routes is None:
        routes = host_routes()
    if nameservers is None:
        try:
            nameservers = nameserver_networks(Path("/etc/resolv.conf").read_text())
        except OSError:
            nameservers = []
    reserved = {r.dst for r in routes if r.scope == "link" and r.dst is not None and int(r.dst.network_address) != 0}
    reserved.update(nameservers)
    return sorted(reserved, key=lambda n: (int(n.network_address), n.prefixlen))


# ---------------------------------------------------------------------------------------------------- subnet


class NoMoreSubnets(InvalidArgument):
    """moby's ``ErrNoMoreSubnets``."""

    def __init__(self) -> None:
        super().__init__("all predefined address pools have been fully subnetted")


def choose_subnet(
    pools: Sequence[AddressPool] | None = None,
    reserved: Iterable[IPv4Network] = (),
    allocated: Iterable[IPv4Network] = (),
) -> IPv4Network:
    """The first subnet of ``pools`` (default: dockerd's), pool by pool in their order and low to high within each,
    that overlaps no ``reserved`` or ``allocated`` network. Skips whole blocks at a time, so a /8 split into /30s
    costs no more than a /16."""
    pools = DEFAULT_ADDRESS_POOLS if not pools else pools
    taken = sorted({*reserved, *allocated}, key=lambda n: int(n.network_address))
    for pool in pools:
        step = 1 << (32 - pool.size)
        start = int(pool.base.network_address)
        end = int(pool.base.broadcast_address)
        cand = start
        while cand + step - 1 <= end:
            cand_last = cand + step - 1
            blockers = [
                t for t in taken if int(t.network_address) <= cand_last and int(t.broadcast_address) >= cand
            ]
            if not blockers:
                return IPv4Network((cand, pool.size))
            last = max(int(t.broadcast_address) for t in blockers)
            cand = ((last + 1 + step - 1) // step) * step  # the next aligned subnet after every blocker
    raise NoMoreSubnets()


# ---------------------------------------------------------------------------------------------------- bridge conf


@dataclass(frozen=True)
class BridgeIPAM:
    """The default bridge network's IPv4 configuration: ``subnet``, ``gateway`` (the bridge's own address) and
    ``sub_pool`` (``--fixed-cidr``: where containers' addresses come from; None = the whole subnet)."""

    subnet: IPv4Network
    gateway: IPv4Address
    sub_pool: IPv4Network | None = None

    @property
    def bridge_address(self) -> IPv4Interface:
        """What the bridge device carries: ``172.17.0.1/16``."""
        return IPv4Interface((self.gateway, self.subnet.prefixlen))

    @property
    def allocation_range(self) -> IPv4Network:
        """Where container addresses are allocated: ``sub_pool`` (``--fixed-cidr``) if set, else the whole subnet."""
        return self.sub_pool if self.sub_pool is not None else self.subnet


def _interface(value: str, what: str) -> IPv4Interface:
    if "/" not in value:
        raise InvalidArgument(f"parse {what} failed: invalid CIDR address: {value}")
    try:
        return IPv4Interface(value)
    except ValueError as exc:
        raise InvalidArgument(f"parse {what} failed: invalid CIDR address: {value}") from exc


def _select_bip(
    addresses: Sequence[IPv4Interface], user_managed: bool, fixed: IPv4Interface | None
) -> IPv4Interface | None:
    """moby's ``selectBIP`` over the IPv4 addresses already on the bridge."""
    if not addresses:
        return None
    nw = addresses[0]
    if len(addresses) > 1 and fixed is not None:
        for entry in addresses:
            if fixed.ip in entry.network:
                nw = entry
                break
            if entry.ip in fixed.network and nw.ip not in fixed.network:
                nw = entry
    if not user_managed and fixed is not None:
        if fixed.ip not in nw.network:
            return None  # fixed-cidr changed: the bridge's old address is not used
        if fixed.network.prefixlen < nw.network.prefixlen:
            return IPv4Interface((nw.ip, fixed.network.prefixlen))  # keep the address, widen the subnet
    return nw


def default_bridge_ipam(
    *,
    bip: str | None = None,
    fixed_cidr: str | None = None,
    bridge: str | None = None,
    pools: Sequence[AddressPool] | None = None,
    bridge_addresses: Sequence[IPv4Interface] = (),
    reserved: Iterable[IPv4Network] | None = None,
    allocated: Iterable[IPv4Network] = (),
) -> BridgeIPAM:
    """The default bridge's subnet, gateway and sub-pool, as dockerd's ``getDefaultBridgeIPAMConf``.

    ``bridge`` is ``--bridge`` (a user-managed bridge: the daemon neither creates it nor gives it an address;
    ``--bip`` is refused with it). ``bridge_addresses`` are the IPv4 addresses already on the bridge (see
    ``bridge.bridge_addresses``): reused, as dockerd does, when they agree with ``--fixed-cidr``. ``reserved``
    defaults to the host's (``reserved_networks()``); it is only read when a pool has to be chosen."""
    user_managed = bool(bridge)
    if user_managed and bip:
        raise InvalidArgument("You specified -b & --bip, mutually exclusive options. Please specify only one")
    fixed = _interface(fixed_cidr, "fixed-cidr") if fixed_cidr else None
    if bip:
        chosen: IPv4Interface | None = _interface(bip, "bip")
    else:
        chosen = _select_bip(list(bridge_addresses), user_managed, fixed)

    subnet: IPv4Network | None = None
    gateway: IPv4Address | None = None
    if chosen is not None:
        subnet, gateway = chosen.network, chosen.ip
    sub_pool: IPv4Network | None = None
    if fixed is not None:
        sub_pool = fixed.network
        if subnet is None:
            subnet = fixed.network
        elif not sub_pool.subnet_of(subnet):
            if user_managed:
                sub_pool = None  # dockerd logs a warning and allocates from the whole subnet
            else:
                raise InvalidArgument(f"fixed-cidr={fixed_cidr} is not within the bridge's subnet {subnet}")
    if subnet is None:
        subnet = choose_subnet(pools, reserved_networks() if reserved is None else reserved, allocated)
    if gateway is None:
        gateway = _first_host(subnet)
    if subnet.prefixlen < 31 and gateway in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"invalid bridge address {gateway}/{subnet.prefixlen}: it is the network's "
                              f"{'network' if gateway == subnet.network_address else 'broadcast'} address")
    return BridgeIPAM(subnet=subnet, gateway=gateway, sub_pool=sub_pool)


def _first_host(subnet: IPv4Network) -> IPv4Address:
    if subnet.prefixlen >= 31:
        return subnet.network_address
    return subnet.network_address + 1


# ---------------------------------------------------------------------------------------------------- allocator


class AddressesExhausted(Unavailable):
    """moby's ``ErrNoAvailableIPs``."""

    def __init__(self, network: str = "") -> None:
        where = f" ({network})" if network else ""
        super().__init__(f"no available addresses on this pool{where}")


class AddressInUse(Forbidden):
    """moby's ``ErrIPAlreadyAllocated``."""

    def __init__(self, address: IPv4Address) -> None:
        super().__init__(f"Address already in use: {address}")


class AddressOutOfRange(InvalidArgument):
    """moby's ``ErrIPOutOfRange``."""

    def __init__(self, address: IPv4Address) -> None:
        super().__init__(f"requested address is out of range: {address}")


_STATE_VERSION = 1


class AddressAllocator:
    """Container addresses of one network, persisted in a JSON file at ``path`` (written to a temporary file in
    the same directory, fsynced, renamed over the old one: a crash leaves the old state or the new, never half).

    The lowest free address of ``ipam.allocation_range`` is handed out first; the subnet's network and broadcast
    addresses (for prefixes shorter than /31) and the gateway are never handed out. Each address has an owner
    (an endpoint or container ID); ``allocate`` for an owner that holds one returns it again, so a caller that
    crashed between allocating and recording can simply ask again.

    When the file was written for another subnet (the configuration changed), the allocations that still fit are
    kept and the others dropped (``dropped`` lists them). Thread-safe within a process; one process per file
    (the daemon's data-root lock ensures that)."""

    def __init__(self, path: str | os.PathLike[str], ipam: BridgeIPAM, *, name: str = "bridge") -> None:
        self.path = Path(path)
        self.ipam = ipam
        self.name = name
        self._lock = threading.Lock()
        self._by_address: dict[IPv4Address, str] = {}
        self.dropped: dict[IPv4Address, str] = {}
        self._load()

    # -- persistence

    def _load(self) -> None:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return
        try:
            state = json.loads(raw)
            allocations = state["allocations"]
            if not isinstance(allocations, dict):
                raise TypeError("allocations is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            raise Conflict(f"address allocations in {self.path} are unreadable: {exc}") from exc
        changed = state.get("subnet") != str(self.ipam.subnet) or state.get("gateway") != str(self.ipam.gateway)
        for addr_text, owner in allocations.items():
            try:
                addr = IPv4Address(addr_text)
            except ValueError:
                continue
            if self._allocatable(addr, sub_pool=False):
                self._by_address[addr] = str(owner)
            else:
                self.dropped[addr] = str(owner)
        if changed or self.dropped:
            self._save()

    def _save(self) -> None:
        state = {
            "version": _STATE_VERSION,
            "subnet": str(self.ipam.subnet),
            "gateway": str(self.ipam.gateway),
            "sub_pool": str(self.ipam.sub_pool) if self.ipam.sub_pool else None,
            "allocations": {str(a): o for a, o in sorted(self._by_address.items())},
        }
        data = json.dumps(state, indent=1, sort_keys=True).encode() + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # -- rules

    def _reserved(self) -> set[IPv4Address]:
        subnet = self.ipam.subnet
        out = {self.ipam.gateway}
        if subnet.prefixlen < 31:
            out |= {subnet.network_address, subnet.broadcast_address}
        return out

    def _allocatable(self, addr: IPv4Address, *, sub_pool: bool) -> bool:
        rng = self.ipam.allocation_range if sub_pool else self.ipam.subnet
        return addr in rng and addr not in self._reserved()

    @property
    def capacity(self) -> int:
        """How many addresses the allocation range can hand out: its size less the reserved addresses (gateway,
        network, broadcast) inside it."""
        rng = self.ipam.allocation_range
        return rng.num_addresses - sum(1 for a in self._reserved() if a in rng)

    # -- API

    def allocate(self, owner: str, preferred: IPv4Address | str | None = None) -> IPv4Address:
        """An address for ``owner``: ``preferred`` (anywhere in the subnet but a reserved address) or the lowest
        free one of the allocation range. Raises ``AddressInUse``, ``AddressOutOfRange``, ``AddressesExhausted``."""
        want = IPv4Address(preferred) if preferred is not None else None
        with self._lock:
            held = self.address_of(owner)
            if held is not None and (want is None or want == held):
                return held
            if held is not None:
                raise Conflict(f"{owner} already holds {held} on network {self.name}")
            if want is not None:
                if want in self._reserved() and want in self.ipam.subnet:
                    raise AddressInUse(want)
                if not self._allocatable(want, sub_pool=False):
                    raise AddressOutOfRange(want)
                if want in self._by_address:
                    raise AddressInUse(want)
                addr = want
            else:
                addr = self._lowest_free()
            self._by_address[addr] = owner
            try:
                self._save()
            except BaseException:
                del self._by_address[addr]
                raise
            return addr

    def _lowest_free(self) -> IPv4Address:
        rng = self.ipam.allocation_range
        used_in_range = sum(1 for a in self._by_address if a in rng)
        if used_in_range >= self.capacity:
            raise AddressesExhausted(self.name)
        reserved = self._reserved()
        cand = int(rng.network_address)
        last = int(rng.broadcast_address)
        while cand <= last:  # at most len(used) + len(reserved) + 1 steps
            a = IPv4Address(cand)
            if a not in reserved and a not in self._by_address:
                return a
            cand += 1
        raise AddressesExhausted(self.name)

    def release(self, address: IPv4Address | str) -> str | None:
        """Frees ``address``; returns its owner (None when it was not allocated: releasing twice is harmless)."""
        addr = IPv4Address(address)
        with self._lock:
            owner = self._by_address.pop(addr, None)
            if owner is not None:
                try:
                    self._save()
                except BaseException:
                    self._by_address[addr] = owner
                    raise
            return owner

    def release_owner(self, owner: str) -> IPv4Address | None:
        """Frees the address ``owner`` holds, if any, and returns it."""
        with self._lock:
            addr = self.address_of(owner)
        if addr is None:
            return None
        self.release(addr)
        return addr

    def address_of(self, owner: str) -> IPv4Address | None:
        """The address ``owner`` holds, or None; it does not take the lock (callers in this class hold it)."""
        for a, o in self._by_address.items():
            if o == owner:
                return a
        return None

    def allocations(self) -> dict[IPv4Address, str]:
        """address → owner, lowest address first."""
        with self._lock:
            return dict(sorted(self._by_address.items()))


# ---------------------------------------------------------------------------------------------------- MAC


def mac_from_ip(address: IPv4Address | str) -> str:
    """moby's ``GenerateMACFromIP``: 02:42 followed by the address's four bytes (02:42:ac:11:00:02 for
    172.17.0.2): locally administered, unicast."""
    b = bytes([0x02, 0x42]) + IPv4Address(address).packed
    return ":".join(f"{x:02x}" for x in b)


def random_mac() -> str:
    """moby's ``GenerateRandomMAC``: six random bytes, the multicast bit cleared, the local bit set."""
    b = bytearray(secrets.token_bytes(6))
    b[0] = (b[0] & 0xFE) | 0x02
    return ":".join(f"{x:02x}" for x in b)
