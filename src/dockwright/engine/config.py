"""EngineConfig: everything the engine needs to know, independent of how it was given (flags, daemon.json)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..network.config import DEFAULT_BRIDGE, NetworkConfig

__all__ = ["EngineConfig", "NetworkConfig", "DEFAULT_BRIDGE"]

@dataclass
class EngineConfig:
    """The daemon's settings (``--data-root``, ``--exec-root``, registries, concurrency, compression, runtime,
    network), whatever parsed them: the CLI's flags and daemon.json both end up here."""

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
