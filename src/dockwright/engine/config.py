"""EngineConfig: everything the engine needs to know, independent of how it was given (flags, daemon.json)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EngineConfig", "NetworkConfig", "DEFAULT_BRIDGE"]

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


@dataclass
class EngineConfig:
    """The engine's configuration: its data root (and exec root), registries, transfer concurrency, compression
    level, OCI runtime, fsync and the default network. ``Engine.open(data_root, **fields)`` takes the fields."""

    data_root: Path
    exec_root: Path = Path("/run/dockwright")
    registry_mirrors: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    # beyond dockerd: mirrors for any registry, {"registry.example.com": ["https://mirror.local"]}
    registry_mirrors_by_host: dict[str, list[str]] = field(default_factory=dict)
    # certs.d directories (<dir>/<host:port>/ca.crt, client.cert, client.key), first match wins
    certs_dirs: list[Path] = field(default_factory=lambda: [Path("/etc/docker/certs.d"),
                                                            Path("/etc/dockwright/certs.d")])
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 5
    labels: list[str] = field(default_factory=list)
    debug: bool = False
    experimental: bool = False
    # gzip level used when dockwright compresses a layer itself (ISA-L levels 0..3)
    compression_level: int = 1
    runtime: str = "runc"
    fsync: bool = True
    network: NetworkConfig = field(default_factory=NetworkConfig)
