"""``/networks/*`` and the networking parts of the container JSON, in dockerd's shapes at each API version.

This module owns:

* the **container views** — pure functions that the container handlers call:
  ``network_settings_json`` (inspect's ``NetworkSettings``), ``summary_network_settings_json`` and
  ``summary_ports_json`` (``GET /containers/json``), ``network_mode_json`` (``HostConfig.NetworkMode``);
* the **network views** — ``network_json`` (one network, as ``GET /networks`` and ``GET /networks/{id}`` show it);
* the **handlers** of ``GET /networks``, ``GET /networks/{id}``, ``POST /networks/prune`` and dockerd's errors for
  what dockwright does not do (``POST /networks/create``, ``DELETE /networks/{id}``, ``connect``, ``disconnect``
  on the three predefined networks), listed by ``routes()``.

The shapes were captured from dockerd 20.10 (API 1.41; 1.24 answers the same) — see
``docs/reference/dockerd-20.10-network/`` — and follow moby's types for later versions. A field appears or moves at
the API version of the dockerd release that changed it (the version a client of that release sends):

* < 1.44 (dockerd ≤ 24): 20.10's order: ``NetworkSettings`` has ``HairpinMode``… before ``Ports``/``SandboxKey``;
  an endpoint ends with ``MacAddress, DriverOpts``; ``IPAM.Config`` of host/none is ``[]``;
* 1.44 (dockerd 25): ``SandboxKey, Ports`` follow ``SandboxID``; endpoints get ``MacAddress`` after ``Aliases``
  and ``DNSNames`` (null on the default bridge: no service discovery there); ``IPAM.Config`` of host/none is null;
* 1.45 (dockerd 26.1): ``HostConfig.NetworkMode`` of a default-network container is ``bridge``, not ``default``;
* 1.46 (dockerd 27): an endpoint's ``DriverOpts`` follows ``MacAddress``; a stopped container's ``SandboxID`` and
  ``SandboxKey`` are cleared (20.10 kept the stale ones);
* 1.48 (dockerd 28): endpoints get ``GwPriority`` (0), networks ``EnableIPv4`` (true);
* 1.52: ``NetworkSettings`` keeps only ``SandboxID, SandboxKey, Ports, Networks`` (beyond dockwright's 1.51; here so
  that the renderers are ready).

Below 1.28, ``GET /networks`` lists each network's ``Containers``; from 1.28 only ``GET /networks/{id}`` does.
JSON maps are emitted with their keys sorted, as Go's encoder does (``Ports``, ``Containers``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from ..errors import Forbidden, InvalidArgument, NotFound, NotSupported, SystemError_
from ..filters import Filters
from ..network.endpoint import Attachment, EndpointRef, NetworkInfo
from ..network.ports import port_map, port_summaries
from . import params
from .errors import json_body
from .request_body import read_json
from .versions import Version

__all__ = [
    "PREDEFINED",
    "network_name",
    "network_mode_json",
    "endpoint_settings_json",
    "network_settings_json",
    "summary_network_settings_json",
    "summary_ports_json",
    "network_json",
    "default_bridge_options",
    "filter_networks",
    "routes",
]

PREDEFINED = ("bridge", "host", "none")
"""dockerd's predefined networks (``network.IsPredefined``): never created, never removed."""

_NETWORK_FILTERS = ("dangling", "driver", "id", "label", "name", "scope", "type")

# Messages as moby writes them (runconfig/errors.go, daemon/network.go)
_ERR_CONNECT_HOST = "cannot connect container to host network - container must be created in host network mode"
_ERR_DISCONNECT_HOST = "cannot disconnect container from host network - container was created in host network mode"
_ERR_NONE = "container cannot be connected to multiple networks with one of the networks in private (none) mode"
_ERR_SHARED = "container sharing network namespace with another container or host cannot be connected to any " \
              "other network"


def _v(version: Version | None) -> Version:
    return tuple(version) if version else (1, 51)


# ---------------------------------------------------------------------------------------------------- container views


def network_name(mode: str) -> str:
    """The key under ``NetworkSettings.Networks`` for a ``HostConfig.NetworkMode``: ``default`` (or empty) is
    ``bridge``; ``container:<id>`` has no network of its own (``""``)."""
    if not mode or mode == "default":
        return "bridge"
    if mode.startswith("container:"):
        return ""
    return mode


def network_mode_json(mode: str, version: Version | None = None) -> str:
    """``HostConfig.NetworkMode`` as reported: a container created without ``--network`` (``""``/``default``) shows
    ``default`` below API 1.45 (dockerd ≤ 25 stored it so) and ``bridge`` from 1.45 (dockerd 26.1 normalises it at
    create); any other mode as given."""
    if not mode or mode == "default":
        return "default" if _v(version) < (1, 45) else "bridge"
    return mode


def endpoint_settings_json(att: Attachment | None, version: Version | None = None) -> dict[str, Any]:
    """One entry of ``NetworkSettings.Networks``. ``att`` None: the empty entry of a container never started;
    an attachment without ``endpoint_id``: a stopped container (its network's ID, nothing operational).
    ``GET /containers/json`` shows the same entry (it nulls ``Links``, ``Aliases``, ``DriverOpts`` and ``DNSNames``,
    which are null on the predefined networks anyway)."""
    v = _v(version)
    live = att if att is not None and att.connected else None
    network_id = att.network_id if att is not None else ""
    op = {
        "NetworkID": network_id,
        "EndpointID": live.endpoint_id if live else "",
        "Gateway": live.gateway if live else "",
        "IPAddress": live.ip_address if live else "",
        "IPPrefixLen": live.prefix_len if live else 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
    }
    mac = live.mac if live else ""
    out: dict[str, Any] = {"IPAMConfig": None, "Links": None, "Aliases": None}
    if v < (1, 44):
        out.update(op)
        out["MacAddress"] = mac
        out["DriverOpts"] = None
        return out
    out["MacAddress"] = mac
    if v >= (1, 46):
        out["DriverOpts"] = None
        if v >= (1, 48):
            out["GwPriority"] = 0
        out.update(op)
    else:
        out.update(op)
        out["DriverOpts"] = None
    out["DNSNames"] = None
    return out


def _ports_json(att: Attachment | None, exposed: Mapping[str, Any] | Iterable[str] | None) -> dict[str, Any]:
    """``NetworkSettings.Ports``: only a container with a live endpoint on the bridge has any — its exposed ports
    (null when not published) and its publications, ``HostIp`` ``0.0.0.0`` for an empty address. Keys sorted as Go
    sorts a map's keys (as strings: ``5000/tcp`` before ``80/tcp``)."""
    if att is None or not att.connected or att.network != "bridge":
        return {}
    pm = port_map(exposed, None, att.ports)
    return {k: pm[k] for k in sorted(pm)}


def network_settings_json(mode: str, att: Attachment | None, *, running: bool,
                          exposed: Mapping[str, Any] | None, version: Version | None = None) -> dict[str, Any]:
    """``NetworkSettings`` of ``GET /containers/{id}/json``.

    ``mode``: ``HostConfig.NetworkMode`` (``default``/``bridge``, ``host``, ``none``, ``container:<id>``).
    ``att``: the container's endpoint; None for a container never started (dockerd shows the network's entry with
    every field empty, even ``NetworkID``); an attachment with an empty ``endpoint_id`` for a stopped one (its
    ``network_id``; ``sandbox_id``/``sandbox_key`` shown below 1.46 as 20.10 kept them). For host and none, dockerd
    reports an ``EndpointID`` and ``SandboxID`` while running (``SandboxKey`` ``<exec-root>/netns/default`` for
    host), but no address: give an attachment with those fields to match it.
    ``running``: whether the container runs now. ``exposed``: ``Config.ExposedPorts``.
    ``container:<id>``: everything empty and ``Networks`` ``{}`` (the namespace belongs to the other container)."""
    v = _v(version)
    name = network_name(mode)
    shares = not name
    if shares:
        att = None
    keep_sandbox = att is not None and (running or v < (1, 46))
    sandbox_id = att.sandbox_id if keep_sandbox and att is not None else ""
    sandbox_key = att.sandbox_key if keep_sandbox and att is not None else ""
    ports = _ports_json(att, exposed)
    networks = {} if shares else {name: endpoint_settings_json(att, v)}
    if v >= (1, 52):
        return {"SandboxID": sandbox_id, "SandboxKey": sandbox_key, "Ports": ports, "Networks": networks}
    deprecated = {"HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0}
    secondary = {"SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None}
    out: dict[str, Any] = {"Bridge": "", "SandboxID": sandbox_id}
    if v < (1, 44):
        out.update(deprecated)
        out["Ports"] = ports
        out["SandboxKey"] = sandbox_key
    else:
        out["SandboxKey"] = sandbox_key
        out["Ports"] = ports
        out.update(deprecated)
    out.update(secondary)
    bridge = att if name == "bridge" and att is not None and att.connected else None
    out.update({
        "EndpointID": bridge.endpoint_id if bridge else "",
        "Gateway": bridge.gateway if bridge else "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": bridge.ip_address if bridge else "",
        "IPPrefixLen": bridge.prefix_len if bridge else 0,
        "IPv6Gateway": "",
        "MacAddress": bridge.mac if bridge else "",
    })
    out["Networks"] = networks
    return out


def summary_network_settings_json(mode: str, att: Attachment | None, version: Version | None = None) -> dict[str, Any]:
    """``NetworkSettings`` of one ``GET /containers/json`` entry: ``{"Networks": {name: endpoint}}`` (``{}`` for
    ``container:<id>``); the endpoint as inspect shows it."""
    name = network_name(mode)
    if not name:
        return {"Networks": {}}
    return {"Networks": {name: endpoint_settings_json(att, version)}}


def summary_ports_json(att: Attachment | None, exposed: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """``Ports`` of one ``GET /containers/json`` entry: from ``NetworkSettings.Ports`` — ``{"PrivatePort": 90,
    "Type": "tcp"}`` for an exposed port that is not published, ``{"IP", "PrivatePort", "PublicPort", "Type"}``
    per publication; ``[]`` unless the container runs with an endpoint on the bridge (created, stopped, host and
    none containers list nothing, even with ``ExposedPorts``). dockerd's order is its map's (random); sorted here by
    port, protocol, public port, address."""
    return port_summaries(_ports_json(att, exposed))


# ---------------------------------------------------------------------------------------------------- network views


def default_bridge_options(bridge: str = "docker0", *, mtu: int = 1500, icc: bool = True, ip_masq: bool = True,
                           host_binding_ipv4: str = "0.0.0.0") -> dict[str, str]:
    """The ``Options`` dockerd gives its default ``bridge`` network (daemon_unix.go ``initBridgeDriver``)."""
    return {
        "com.docker.network.bridge.default_bridge": "true",
        "com.docker.network.bridge.enable_icc": str(icc).lower(),
        "com.docker.network.bridge.enable_ip_masquerade": str(ip_masq).lower(),
        "com.docker.network.bridge.host_binding_ipv4": host_binding_ipv4 or "0.0.0.0",
        "com.docker.network.bridge.name": bridge,
        "com.docker.network.driver.mtu": str(mtu),
    }


def _endpoint_resource(ref: EndpointRef) -> dict[str, str]:
    return {"Name": ref.name, "EndpointID": ref.endpoint_id, "MacAddress": ref.mac, "IPv4Address": ref.ipv4,
            "IPv6Address": ""}


def network_json(info: NetworkInfo, version: Version | None = None, *, containers: bool = True) -> dict[str, Any]:
    """One network as ``GET /networks/{id}`` (``containers=True``) or ``GET /networks`` (``containers`` only below
    API 1.28: pass ``version < (1, 28)``) shows it."""
    v = _v(version)
    config: list[dict[str, str]] | None
    if info.subnet:
        entry = {"Subnet": info.subnet}
        if info.gateway:
            entry["Gateway"] = info.gateway
        config = [entry]
    else:
        config = [] if v < (1, 44) else None
    out: dict[str, Any] = {"Name": info.name, "Id": info.id, "Created": info.created, "Scope": info.scope or "local",
                           "Driver": info.driver}
    if v >= (1, 48):
        out["EnableIPv4"] = True
    out.update({
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": config},
        "Internal": bool(info.internal),
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": ({ref.container_id: _endpoint_resource(ref)
                        for ref in sorted(info.containers, key=lambda r: r.container_id)} if containers else {}),
        "Options": dict(sorted((info.options or {}).items())),
        "Labels": {},
    })
    return out


def filter_networks(nets: Iterable[NetworkInfo], f: Filters) -> list[NetworkInfo]:
    """moby's ``FilterNetworks`` (daemon/network/filter.go) for the predefined networks: ``driver`` and ``scope``
    exact, ``name`` and ``id`` as ``Match`` (exact or regular expression), ``label`` (none have labels),
    ``dangling`` (a predefined network is never dangling), ``type`` (``builtin``/``custom``). Validate the keys
    first (``f.validate``)."""
    out = []
    for n in nets:
        if f.contains("driver") and not f.exact_match("driver", n.driver):
            continue
        if f.contains("name") and not f.match("name", n.name):
            continue
        if f.contains("id") and not f.match("id", n.id):
            continue
        if f.contains("label") and not f.match_kv_list("label", {}):
            continue
        if f.contains("scope") and not f.exact_match("scope", n.scope or "local"):
            continue
        out.append(n)
    dangling = f.get("dangling")
    if dangling:
        if len(dangling) > 1:
            raise InvalidArgument('got more than one value for filter key "dangling"')
        if dangling[0] in ("1", "true"):
            only_dangling = True
        elif dangling[0] in ("0", "false"):
            only_dangling = False
        else:
            raise InvalidArgument('invalid value for filter \'dangling\', must be "true" (or "1"), or "false" '
                                  '(or "0")')
        out = [n for n in out if _dangling(n) == only_dangling]
    if f.contains("type"):
        typed: list[NetworkInfo] = []
        for value in f.get("type"):
            if value == "builtin":
                typed.extend(n for n in out if n.name in PREDEFINED)
            elif value == "custom":
                typed.extend(n for n in out if n.name not in PREDEFINED)
            else:  # a plain error in moby: 500
                raise SystemError_(f"invalid filter: 'type'='{value}'")
        out = typed
    return out


def _dangling(n: NetworkInfo) -> bool:
    return n.name not in PREDEFINED and not n.containers


# ---------------------------------------------------------------------------------------------------- handlers


def _network_service(request: web.Request) -> Any:
    return request.app["engine"].network


def _parse_go_bool(value: str) -> bool:
    """strconv.ParseBool."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise InvalidArgument(f'invalid value for verbose: {value}: strconv.ParseBool: parsing "{value}": invalid syntax')


def _lookup(request: web.Request, ref: str) -> NetworkInfo:
    """``eng.network.get`` (name, full ID or unique ID prefix); raises dockerd's ``network <ref> not found``."""
    info: NetworkInfo = _network_service(request).get(ref)
    return info


async def list_networks(request: web.Request) -> web.Response:
    """``GET /networks``: the predefined networks matching ``filters`` (with their ``Containers`` before API 1.28)."""
    f = params.filters(request)
    f.validate(_NETWORK_FILTERS)
    version = params.api_version(request)
    nets = filter_networks(_network_service(request).networks(), f)
    return json_body([network_json(n, version, containers=version < (1, 28)) for n in nets])


async def inspect_network(request: web.Request) -> web.Response:
    """``GET /networks/{id}`` (name, ID or ID prefix; ``scope`` must match): the network with its ``Containers``."""
    ref = request.match_info["id"]
    verbose = request.query.get("verbose", "")
    if verbose:
        _parse_go_bool(verbose)  # verbose adds swarm services only: nothing here
    scope = request.query.get("scope", "")
    try:
        info = _lookup(request, ref)
    except NotFound:
        raise NotFound(f"network {ref} not found") from None
    if scope and scope != (info.scope or "local"):
        raise NotFound(f"network {ref} not found")
    return json_body(network_json(info, params.api_version(request), containers=True))


async def prune_networks(request: web.Request) -> web.Response:
    """Nothing to prune: the predefined networks are never pruned. dockerd's filters are checked."""
    f = params.filters(request)
    f.validate(("until", "label", "label!"))
    return json_body({"NetworksDeleted": None})


async def _body(request: web.Request) -> dict[str, Any]:
    """httputils.ReadJSON: a JSON object (an empty body is an empty one), dockerd's messages for the rest."""
    value = await read_json(request)
    return value if isinstance(value, dict) else {}


async def create_network(request: web.Request) -> web.Response:
    """``POST /networks/create``: always refused: 403 for a predefined name, else 501 (no user-defined networks)."""
    body = await _body(request)
    name = body.get("Name")
    if isinstance(name, str) and name in PREDEFINED:
        raise Forbidden(f"operation is not permitted on predefined {name} network ")
    raise NotSupported("dockwright has only the predefined networks (bridge, host, none): user-defined networks "
                       "cannot be created")


async def delete_network(request: web.Request) -> web.Response:
    """``DELETE /networks/{id}``: always refused: 403 for a predefined network (dockerd's words), 501 otherwise."""
    info = _lookup(request, request.match_info["id"])
    if info.name in PREDEFINED:
        raise Forbidden(f"{info.name} is a pre-defined network and cannot be removed")
    raise NotSupported(f"network {info.name} cannot be removed by dockwright")


def _container(request: web.Request, ref: Any) -> Any:
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument('invalid name or ID supplied: ""')
    return request.app["engine"].containers.get(ref)  # ContainerNotFound: "No such container: <ref>"


def _mode_of(c: Any) -> str:
    return str((c.host_config or {}).get("NetworkMode") or "default")


async def connect_network(request: web.Request) -> web.Response:
    """dockerd's checks (daemon ``ConnectToNetwork``/``updateNetworkSettings``) for a container that has exactly
    one predefined network: every connection to another network is refused as dockerd refuses it; the one to its
    own network is a no-op for a stopped container and a 403 for a running one (libnetwork's endpoint exists)."""
    body = await _body(request)
    c = _container(request, body.get("Container"))
    info = _lookup(request, request.match_info["id"])
    mode = _mode_of(c)
    current = network_name(mode)
    if not current:
        raise InvalidArgument(_ERR_SHARED)
    if info.name == "host" and current != "host":
        raise InvalidArgument(_ERR_CONNECT_HOST)
    if info.name == current:
        if c.running:
            raise Forbidden(f"endpoint with name {c.name} already exists in network {info.name}")
        return web.Response(status=200)
    if current == "host":
        raise InvalidArgument(_ERR_SHARED)
    if "none" in (current, info.name):
        raise InvalidArgument(_ERR_NONE)
    raise NotSupported(f"dockwright cannot connect a container to network {info.name}: a container has the one "
                       "network it was created with (--network)")


async def disconnect_network(request: web.Request) -> web.Response:
    """``POST /networks/{id}/disconnect``: dockerd's errors for a container not on that network or on ``host``; a
    container always keeps its network, so the rest is a 501."""
    body = await _body(request)
    c = _container(request, body.get("Container"))
    info = _lookup(request, request.match_info["id"])
    current = network_name(_mode_of(c))
    if c.running and info.name == "host" and current == "host":
        raise InvalidArgument(_ERR_DISCONNECT_HOST)
    if info.name != current:
        the = "" if c.running else "the "
        raise SystemError_(f"container {c.id} is not connected to {the}network {info.name}")
    raise NotSupported(f"dockwright cannot disconnect a container from network {info.name}: a container keeps the "
                       "network it was created with (--network)")


def routes() -> list[tuple[str, str, Any]]:
    """The (method, path, handler) rows of the network endpoints for :func:`dockwright.api.app.make_app`."""
    return [
        ("GET", "/networks", list_networks),
        ("GET", "/networks/", list_networks),
        ("POST", "/networks/create", create_network),
        ("POST", "/networks/prune", prune_networks),
        ("GET", "/networks/{id}", inspect_network),
        ("DELETE", "/networks/{id}", delete_network),
        ("POST", "/networks/{id}/connect", connect_network),
        ("POST", "/networks/{id}/disconnect", disconnect_network),
    ]

