"""NetworkConfig: the default bridge network's settings by dockerd's flag names, however they were given."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_BRIDGE", "NetworkConfig"]

DEFAULT_BRIDGE = "dockwright0"  # not docker0: a dockerd on the same host keeps its own


@dataclass
class NetworkConfig:
    """The default bridge network, by dockerd's flag names (``--bridge``, ``--bip``, …). ``bridge="none"``
    turns it off: containers on the default network then get a loopback-only namespace."""

    bridge: str = DEFAULT_BRIDGE
    bip: str = ""
    fixed_cidr: str = ""
    mtu: int = 1500
    default_address_pools: list[dict[str, object]] = field(default_factory=list)
    iptables: bool = True
    ip_masq: bool = True
    ip_forward: bool = True
    icc: bool = True
    userland_proxy: bool = True
    ip: str = ""  # --ip: the default host address of published ports ("" = every address, 0.0.0.0)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_opts: list[str] = field(default_factory=list)
    host_gateway_ip: str = ""  # --host-gateway-ip; "" = the bridge's gateway
