"""The typed records of container networking that the engine stores and the API renders.

This module owns:

* ``PortMapping``: one published port (``-p [HOSTIP:][HOSTPORT:]CONTAINERPORT[/PROTO]`` once resolved: the host
  port is a number, chosen from the ephemeral range when the request left it empty);
* ``Attachment``: a container's endpoint on a network — what dockerd reports under ``NetworkSettings`` (network
  and endpoint IDs, address, prefix, gateway, MAC, the sandbox's key) and what the daemon needs to release it
  (host veth name, ports);
* ``NetworkInfo``: a network as ``GET /networks`` lists it (``bridge``, ``host``, ``none``).

Plain data with ``to_json``/``from_json`` for the metadata database; no behaviour, no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["PortMapping", "Attachment", "NetworkInfo", "EndpointRef"]


@dataclass(frozen=True)
class PortMapping:
    """``container_port``/``proto`` published on ``host_ip``:``host_port`` (``host_ip`` "" = every address, shown
    as dockerd shows it: ``0.0.0.0``)."""

    container_port: int
    proto: str  # "tcp" | "udp" | "sctp"
    host_ip: str
    host_port: int

    @property
    def key(self) -> str:
        """``80/tcp``: the key of ``NetworkSettings.Ports``."""
        return f"{self.container_port}/{self.proto}"

    def to_json(self) -> dict[str, Any]:
        """The mapping as a plain dict (its field names) for the metadata database."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PortMapping:
        """A mapping from :meth:`to_json`'s dict (``host_ip`` may be missing: every address)."""
        return cls(int(d["container_port"]), str(d["proto"]), str(d.get("host_ip", "")), int(d["host_port"]))


@dataclass
class Attachment:
    """A container's endpoint on ``network`` (its name: ``bridge``). Empty operational fields (``endpoint_id``
    "", ``ip_address`` "") describe a container that is not running: dockerd keeps the network's entry with the
    network ID and clears the rest."""

    network: str = "bridge"
    network_id: str = ""
    endpoint_id: str = ""
    sandbox_id: str = ""
    sandbox_key: str = ""  # the network namespace's path
    ip_address: str = ""
    prefix_len: int = 0
    gateway: str = ""
    mac: str = ""
    host_ifname: str = ""  # the veth end on the bridge
    ports: list[PortMapping] = field(default_factory=list)

    @property
    def connected(self) -> bool:
        """Whether the container has a live endpoint (an endpoint ID), i.e. it is running on the network."""
        return bool(self.endpoint_id)

    def to_json(self) -> dict[str, Any]:
        """The attachment as a plain dict (field names; ports as :meth:`PortMapping.to_json`) for the database."""
        d = asdict(self)
        d["ports"] = [p.to_json() for p in self.ports]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Attachment:
        """An attachment from :meth:`to_json`'s dict; unknown keys are ignored, missing ones default."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "ports"}
        return cls(**known, ports=[PortMapping.from_json(p) for p in d.get("ports") or []])


@dataclass(frozen=True)
class EndpointRef:
    """A container on a network, as ``GET /networks/{id}`` lists it under ``Containers``."""

    container_id: str
    name: str
    endpoint_id: str
    mac: str
    ipv4: str  # "172.17.0.2/16"


@dataclass
class NetworkInfo:
    """One network: ``bridge`` (driver ``bridge``), ``host`` (driver ``host``) or ``none`` (driver ``null``)."""

    name: str
    id: str  # 64 hex, stable across restarts
    driver: str
    created: str  # RFC 3339 with nanoseconds
    scope: str = "local"
    subnet: str = ""  # "" for host and none
    gateway: str = ""
    options: dict[str, str] = field(default_factory=dict)
    internal: bool = False
    containers: list[EndpointRef] = field(default_factory=list)
