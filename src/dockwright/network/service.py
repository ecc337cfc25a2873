"""The network service: dockerd's built-in networks (``bridge``, ``host``, ``none``) for the engine.

This module owns, for one daemon:

* **setting up** the default bridge at start (``start``): the subnet and gateway (``ipam``), the bridge device
  (``bridge``; created unless ``--bridge`` names one the user manages), the persistent address allocator, IP
  forwarding and the packet filter (``firewall``). Whatever of it fails — no bridge module, no ``ip``, no
  nftables/iptables, no permission — is logged once, and the service runs without it: containers on the default
  network then get a loopback-only namespace, and a request that needs the bridge (``--network bridge``,
  published ports) gets a clear error (``unavailable``);
* **connecting** a container (``connect``): a network namespace of its own (``netns``), an address, a veth pair
  on the bridge, published ports (DNAT in the packet filter, the userland proxy for loopback), all of it undone
  again when a later step fails; **disconnecting** it (``disconnect``) when it exits or is removed;
* **recovering** after a restart, a kill -9 included (``recover``): the rules and proxies of the containers still
  running are installed again; addresses, namespaces, veths and ports of the others are released;
* the **networks** as ``GET /networks`` lists them (``networks``, ``get``), with IDs kept in
  ``<data-root>/network/networks.json`` so that they stay the same across restarts;
* stopping (``close``): proxies closed and the packet-filter rules removed; the bridge stays, as docker0 does.

The kernel work is blocking (``ip``, ``nft`` processes): it runs in worker threads; containers connect in parallel
(the address and port allocators and the packet filter each serialize what they share).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
from dataclasses import replace
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument, NotFound, Unavailable
from ..oci.gojson import rfc3339_nano
from . import netns
from .bridge import attach, bridge_addresses, ensure_bridge, link_exists, link_info, run_ip
from .config import DEFAULT_BRIDGE, NetworkConfig
from .endpoint import Attachment, EndpointRef, NetworkInfo
from .firewall import Firewall, detect_backend, set_ip_forward
from .ipam import AddressAllocator, BridgeIPAM, default_bridge_ipam, mac_from_ip, parse_address_pools
from .port_allocator import PortAllocator
from .ports import requested_ports
from .proxy import ProxySet

__all__ = ["NetworkService", "NetworkNotFound", "BRIDGE_MODES"]

log = logging.getLogger("dockwright.network")

BRIDGE_MODES = ("default", "bridge")
BUILTIN = ("bridge", "host", "none")
_DRIVERS = {"bridge": "bridge", "host": "host", "none": "null"}


class NetworkNotFound(NotFound):
    """dockerd's ``network <ref> not found`` (404)."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"network {ref} not found")


def _host_has_ipv6() -> bool:
    """Whether the host has IPv6 (dockerd then publishes ports on ``[::]`` too)."""
    try:
        return bool(Path("/proc/net/if_inet6").read_text().strip())
    except OSError:
        return False


def network_name(mode: str) -> str:
    """The network a ``NetworkMode`` joins: ``default`` is ``bridge``."""
    return "bridge" if mode in BRIDGE_MODES or not mode else mode


class NetworkService:
    """One daemon's networking: the default bridge and its allocators, firewall and proxies, the containers'
    attachments, and the IDs of ``bridge``/``host``/``none`` (see the module docstring)."""

    def __init__(self, config: NetworkConfig, data_root: Path, exec_root: Path) -> None:
        self.config = config
        self.state_dir = Path(data_root) / "network"
        self.netns_dir = Path(exec_root) / "netns"
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._ids = self._load_ids()
        self.ipam: BridgeIPAM | None = None
        self.allocator: AddressAllocator | None = None
        self.firewall: Firewall | None = None  # when the packet filter is on
        self.ports: Any = None  # ports.PortAllocator
        self.proxies: Any = None  # proxy.ProxySet
        self.unavailable = ""  # why the bridge cannot be used ("" = it can)
        self.bridge = config.bridge
        self._attached: dict[str, tuple[str, Attachment]] = {}  # container id → (name, attachment)

    # ---- identity -----------------------------------------------------------------------------------------------
    def _load_ids(self) -> dict[str, dict[str, str]]:
        path = self.state_dir / "networks.json"
        try:
            ids = json.loads(path.read_text())
            if not isinstance(ids, dict):
                ids = {}
        except (OSError, ValueError):
            ids = {}
        changed = False
        for name in BUILTIN:
            entry = ids.get(name)
            if not (isinstance(entry, dict) and len(str(entry.get("id", ""))) == 64):
                ids[name] = {"id": secrets.token_hex(32), "created": rfc3339_nano()}
                changed = True
        if changed:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(ids, indent=1))
            os.replace(tmp, path)
        return ids

    @property
    def enabled(self) -> bool:
        """Whether the default bridge was set up (its IPAM is known); False runs containers loopback-only."""
        return self.ipam is not None

    @property
    def gateway(self) -> str:
        """The bridge's gateway address (``172.17.0.1``), "" when the bridge is not set up."""
        return str(self.ipam.gateway) if self.ipam is not None else ""

    @property
    def host_gateway_ip(self) -> str:
        """What ``host-gateway`` in ``--add-host`` means: ``--host-gateway-ip`` if set, else the bridge's gateway."""
        return self.config.host_gateway_ip or self.gateway

    # ---- start / stop -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Set up the default bridge in a worker thread: IPAM, device, allocators, IP forwarding, packet filter; what
        the host lacks is logged and leaves the bridge unavailable, a bad configuration raises InvalidArgument."""
        await asyncio.to_thread(self._setup)

    def _setup(self) -> None:
        cfg = self.config
        if cfg.bridge == "none":
            self.unavailable = "the default bridge network is disabled (--bridge=none)"
            log.info("networking: %s; containers get a loopback-only network namespace", self.unavailable)
            return
        user_managed = cfg.bridge != DEFAULT_BRIDGE
        try:
            if user_managed and not link_exists(cfg.bridge):
                raise Unavailable(f"bridge device {cfg.bridge} not found: --bridge names a bridge that you "
                                  f"create (the daemon only creates {DEFAULT_BRIDGE})")
            ipam = default_bridge_ipam(
                bip=cfg.bip or None, fixed_cidr=cfg.fixed_cidr or None, bridge=cfg.bridge if user_managed else None,
                pools=parse_address_pools(cfg.default_address_pools) or None,
                bridge_addresses=bridge_addresses(cfg.bridge))
            if not user_managed:
                ensure_bridge(cfg.bridge, ipam.bridge_address, cfg.mtu)
            elif not bridge_addresses(cfg.bridge):
                run_ip("addr", "add", str(ipam.bridge_address), "dev", cfg.bridge)
            self.allocator = AddressAllocator(self.state_dir / "bridge-ipam.json", ipam)
            for addr, owner in self.allocator.dropped.items():
                log.warning("networking: address %s of %s is outside the new subnet %s: released", addr, owner,
                            ipam.subnet)
        except InvalidArgument:
            raise  # a configuration dockerd refuses to start with (--bip with -b, a bad --bip or --fixed-cidr)
        except Exception as exc:  # noqa: BLE001 - what the host lacks: the daemon runs on without the bridge
            self.unavailable = f"the default bridge network is not available: {exc}"
            log.warning("networking: %s; containers on the default network get a loopback-only namespace",
                        self.unavailable)
            return
        self.ports = PortAllocator()
        self.proxies = ProxySet()
        if cfg.ip_forward:
            try:
                set_ip_forward()
            except Exception as exc:  # noqa: BLE001
                log.warning("networking: cannot enable IP forwarding (%s): containers cannot reach other "
                            "networks", exc)
        if cfg.iptables:
            try:
                backend, reason = detect_backend()
                if backend is None:
                    raise Unavailable(reason)
                fw = Firewall(cfg.bridge, ipam.subnet, backend=backend, ip_masq=cfg.ip_masq, icc=cfg.icc,
                              userland_proxy=cfg.userland_proxy)
                fw.install()
                self.firewall = fw
            except Exception as exc:  # noqa: BLE001
                log.warning("networking: no packet filter rules (%s): containers have no NAT to other "
                            "networks and published ports are reached through the userland proxy only", exc)
        self.ipam = ipam
        log.info("networking: bridge %s, subnet %s, gateway %s%s", cfg.bridge, ipam.subnet, ipam.gateway,
                 f", packet filter {self.firewall.backend}" if self.firewall is not None else "")

    async def close(self) -> None:
        """A clean stop: the proxies close, the packet-filter rules go (containers keep their addresses)."""
        if self.proxies is not None:
            await self.proxies.stop_all()
        if self.firewall is not None:
            try:
                await asyncio.to_thread(self.firewall.remove)
            except Exception as exc:  # noqa: BLE001
                log.warning("networking: removing the packet filter rules: %s", exc)

    # ---- connect / disconnect -----------------------------------------------------------------------------------
    def check(self, mode: str, *, ports: bool) -> None:
        """Whether a container with this network mode (and published ports) can start: ``Unavailable`` when it
        needs the bridge and there is none."""
        if self.enabled or mode not in BRIDGE_MODES:
            return
        if mode == "bridge" or ports:
            raise Unavailable(f"{self.unavailable or 'the default bridge network is not available'}: a container "
                              f"with {'published ports' if ports else '--network bridge'} cannot start")

    def detached(self, mode: str, previous: Attachment | None = None) -> Attachment | None:
        """The attachment a stopped container shows: its network's ID and (as dockerd keeps them) the sandbox
        ID and key of its last run; nothing operational."""
        name = network_name(mode)
        if name not in self._ids or (name == "bridge" and not self.enabled):
            return None
        return Attachment(network=name, network_id=self._ids[name]["id"],
                          sandbox_id=previous.sandbox_id if previous else "",
                          sandbox_key=previous.sandbox_key if previous else "")

    async def connect(self, cid: str, name: str, mode: str, *, exposed: dict[str, Any] | None = None,
                      port_bindings: dict[str, Any] | None = None, publish_all: bool = False) -> Attachment | None:
        """Connects container ``cid`` to the network its mode names; None when the mode has no endpoint of its
        own (host, none, or the bridge being off). On failure nothing it made is left."""
        bindings: list[Any] = []
        if mode in BRIDGE_MODES and (port_bindings or publish_all):
            default_ip = self.config.ip if self.config.ip not in ("", "0.0.0.0") else ""
            bindings = requested_ports(exposed, port_bindings, publish_all, default_host_ip=default_ip)
            if _host_has_ipv6():
                # as dockerd, a port published on every address is also published on [::] (through the userland
                # proxy: the bridge itself is IPv4), with the same host port: its twin follows it
                bindings = [twin for b in bindings
                            for twin in ((b, replace(b, host_ip="::")) if not b.host_ip else (b,))]
        self.check(mode, ports=bool(bindings))
        if mode in ("host", "none"):  # an endpoint without an address, as dockerd reports one
            token = secrets.token_hex(32)
            att = Attachment(network=mode, network_id=self._ids[mode]["id"], endpoint_id=secrets.token_hex(32),
                             sandbox_id=token, sandbox_key=str(self.netns_dir / "default") if mode == "host" else "")
            self._attached[cid] = (name, att)
            return att
        if mode not in BRIDGE_MODES or not self.enabled:
            return None
        # no lock: the allocators and the packet filter serialize what they share, so containers start in parallel
        att = await asyncio.to_thread(self._connect, cid, bindings)
        try:
            if att.ports:
                await self._publish(cid, att)
        except BaseException:
            if self.proxies is not None:
                await self.proxies.stop(cid)
            await asyncio.to_thread(self._release, cid, att)
            raise
        self._attached[cid] = (name, att)
        return att

    def _connect(self, cid: str, bindings: list[Any]) -> Attachment:
        assert self.ipam is not None and self.allocator is not None
        sandbox = secrets.token_hex(32)
        key = self.netns_dir / sandbox[:12]
        att = Attachment(network="bridge", network_id=self._ids["bridge"]["id"], sandbox_id=sandbox,
                         sandbox_key=str(key))
        netns.create(key)
        try:
            address = self.allocator.allocate(cid)
            mac = mac_from_ip(address)
            ep = attach(self.bridge, str(key), address=IPv4Interface((address, self.ipam.subnet.prefixlen)),
                        gateway=self.ipam.gateway, mac=mac, mtu=self.config.mtu, check_bridge=False,
                        hairpin=not self.config.userland_proxy)
            att = replace(att, endpoint_id=secrets.token_hex(32), ip_address=str(address),
                          prefix_len=self.ipam.subnet.prefixlen, gateway=str(self.ipam.gateway), mac=ep.mac,
                          host_ifname=ep.host_ifname)
            if bindings:
                att.ports = list(self.ports.allocate(cid, bindings))
        except BaseException:
            self._release(cid, att)
            raise
        return att

    async def _publish(self, cid: str, att: Attachment) -> None:
        pairs = [(p, att.ip_address) for p in att.ports]
        if self.config.userland_proxy:
            await self.proxies.start(cid, pairs)
        if self.firewall is not None:
            await asyncio.to_thread(self.firewall.set_ports, cid, pairs)

    async def disconnect(self, cid: str, att: Attachment | None) -> None:
        """Releases what ``connect`` made for ``cid`` (the container has exited): safe to call twice."""
        self._attached.pop(cid, None)
        if att is None or not att.connected or att.network != "bridge":
            return
        if self.proxies is not None:
            await self.proxies.stop(cid)
        await asyncio.to_thread(self._release, cid, att)

    def _release(self, cid: str, att: Attachment) -> None:
        if self.firewall is not None and att.ports:
            try:
                self.firewall.remove_ports(cid)
            except Exception as exc:  # noqa: BLE001
                log.warning("networking: removing the port rules of %s: %s", cid[:12], exc)
        if self.ports is not None:
            self.ports.release(cid)
        if att.sandbox_key:
            try:
                netns.delete(att.sandbox_key)  # the veth pair goes with the namespace
            except Exception as exc:  # noqa: BLE001
                log.warning("networking: removing the namespace of %s: %s", cid[:12], exc)
        if att.host_ifname and link_info(att.host_ifname) is not None:
            run_ip("link", "del", "dev", att.host_ifname, check=False)
        if self.allocator is not None:
            self.allocator.release_owner(cid)

    # ---- recovery -----------------------------------------------------------------------------------------------
    async def recover(self, running: dict[str, tuple[str, Attachment]]) -> None:
        """After a (re)start: ``running`` maps the containers still running with an endpoint to (name,
        attachment). Their ports are published again; every other address, namespace and veth is released."""
        live = {cid: v for cid, v in running.items() if v[1].connected}
        await asyncio.to_thread(self._sweep, live)
        for cid, (name, att) in live.items():
            if att.network != "bridge" or self.enabled:
                self._attached[cid] = (name, att)
        if not self.enabled:
            return
        for cid, (_name, att) in live.items():
            if not att.ports:
                continue
            try:
                self.ports.restore(cid, att.ports)
                await self._publish(cid, att)
            except Exception as exc:  # noqa: BLE001
                log.warning("networking: publishing the ports of %s again: %s", cid[:12], exc)

    def _sweep(self, live: dict[str, tuple[str, Attachment]]) -> None:
        keys = {Path(att.sandbox_key).name for _, att in live.values()}
        try:
            entries = list(os.scandir(self.netns_dir))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if entry.name not in keys:
                try:
                    netns.delete(entry.path)
                except Exception as exc:  # noqa: BLE001
                    log.warning("networking: removing the stale namespace %s: %s", entry.path, exc)
        if self.allocator is not None:
            for addr, owner in self.allocator.allocations().items():
                if owner not in live:
                    self.allocator.release(addr)
        if self.enabled and self.config.bridge == DEFAULT_BRIDGE:  # only on its own bridge, only its own names
            veths = {att.host_ifname for _, att in live.values()}
            links = run_ip("link", "show", "master", self.bridge, json_out=True, check=False) or []
            for link in links:
                name = link.get("ifname", "")
                if (re.fullmatch(r"veth[0-9a-f]{7}", name) and name not in veths
                        and (link_info(name) or {}).get("linkinfo", {}).get("info_kind") == "veth"):
                    run_ip("link", "del", "dev", name, check=False)

    # ---- networks -----------------------------------------------------------------------------------------------
    def _info(self, name: str) -> NetworkInfo:
        entry = self._ids[name]
        info = NetworkInfo(name=name, id=entry["id"], driver=_DRIVERS[name], created=entry["created"])
        if name == "bridge" and self.ipam is not None:
            cfg = self.config
            info.subnet = str(self.ipam.subnet)
            info.gateway = str(self.ipam.gateway)
            info.options = {
                "com.docker.network.bridge.default_bridge": "true",
                "com.docker.network.bridge.enable_icc": str(cfg.icc).lower(),
                "com.docker.network.bridge.enable_ip_masquerade": str(cfg.ip_masq).lower(),
                "com.docker.network.bridge.host_binding_ipv4": cfg.ip or "0.0.0.0",
                "com.docker.network.bridge.name": cfg.bridge,
                "com.docker.network.driver.mtu": str(cfg.mtu),
            }
        info.containers = [
            EndpointRef(cid, cname, att.endpoint_id, att.mac,
                        f"{att.ip_address}/{att.prefix_len}" if att.ip_address else "")
            for cid, (cname, att) in sorted(self._attached.items()) if att.network == name]
        return info

    def networks(self) -> list[NetworkInfo]:
        """``bridge`` (when the default bridge is up), ``host`` and ``none``."""
        names = [n for n in BUILTIN if n != "bridge" or self.enabled]
        return [self._info(n) for n in names]

    def get(self, ref: str) -> NetworkInfo:
        """A network by name, full ID or unique ID prefix; ``NetworkNotFound`` otherwise."""
        nets = self.networks()
        for n in nets:
            if ref in (n.name, n.id):
                return n
        matches = [n for n in nets if ref and n.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        raise NetworkNotFound(ref)

    def rename(self, cid: str, name: str) -> None:
        """A connected container's new name, for ``GET /networks/{id}``'s ``Containers``."""
        if cid in self._attached:
            self._attached[cid] = (name, self._attached[cid][1])
