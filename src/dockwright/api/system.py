"""Handlers of the system endpoints: ``/_ping``, ``/version``, ``/info``, ``/events``, ``/system/df``, and
``GET /plugins`` (always empty: this engine has no managed plugins)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .. import reference as refs
from ..distribution.auth import AuthConfig, decode_registry_auth
from ..engine.engine import Engine
from ..engine.events import Event
from ..engine.types import DiskUsage, SystemInfo, VersionInfo
from ..errors import InvalidArgument
from ..filters import Filters
from ..oci.gojson import go_line
from ..timestamps import get_timestamp
from . import params
from .container_json import summary_json as container_summary_json
from .errors import json_body
from .image_json import summary_json
from .versions import Version
from .volumes import volume_json

__all__ = ["routes", "version_json", "info_json", "df_json"]

_PING_HEADERS = {"Builder-Version": "2", "Swarm": "inactive",  # BuildKit answers version=2 builds
                 "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}


def _engine(request: web.Request) -> Engine:
    return request.app["engine"]  # type: ignore[no-any-return]


async def ping(request: web.Request) -> web.Response:
    """``GET`` and ``HEAD /_ping``."""
    if request.method == "HEAD":
        return web.Response(status=200, headers={**_PING_HEADERS, "Content-Type": "text/plain; charset=utf-8",
                                                 "Content-Length": "0"})
    return web.Response(status=200, text="OK", headers=_PING_HEADERS, content_type="text/plain")


def version_json(vi: VersionInfo) -> dict[str, Any]:
    """``GET /version``."""
    details = {
        "ApiVersion": vi.api_version,
        "Arch": vi.arch,
        "BuildTime": vi.build_time,
        "Experimental": "true" if vi.experimental else "false",
        "GitCommit": vi.git_commit,
        "GoVersion": f"python{vi.python_version}",
        "KernelVersion": vi.kernel_version,
        "MinAPIVersion": vi.min_api_version,
        "Os": vi.os,
    }
    return {
        "Platform": {"Name": f"dockwright {vi.dockwright_version} (Docker Engine API {vi.api_version})"},
        "Components": [
            {"Name": "Engine", "Version": vi.version, "Details": details},
            {"Name": "dockwright", "Version": vi.dockwright_version, "Details": {"Python": vi.python_version}},
        ],
        "Version": vi.version,
        "ApiVersion": vi.api_version,
        "MinAPIVersion": vi.min_api_version,
        "GitCommit": vi.git_commit,
        "GoVersion": f"python{vi.python_version}",
        "Os": vi.os,
        "Arch": vi.arch,
        "KernelVersion": vi.kernel_version,
        "BuildTime": vi.build_time,
        **({"Experimental": True} if vi.experimental else {}),
    }


def info_json(i: SystemInfo, v: Version) -> dict[str, Any]:
    """``GET /info``: dockerd's ``system.Info`` with what this engine always answers, per API version."""
    d: dict[str, Any] = {
        "ID": i.id,
        "Containers": i.containers,
        "ContainersRunning": i.containers_running,
        "ContainersPaused": i.containers_paused,
        "ContainersStopped": i.containers_stopped,
        "Images": i.images,
        "Driver": i.driver,
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"],
                         ["Using metacopy", "false"], ["Native Overlay Diff", "true"],
                         ["userxattr", "false"]],
        "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Authorization": None,
                    "Log": ["json-file"]},
        "MemoryLimit": True,
        "SwapLimit": True,
        "KernelMemoryTCP": False,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "OomKillDisable": False,
        "IPv4Forwarding": True,
        "Debug": i.debug,
        "NFd": i.nfd,
        "NGoroutines": 0,
        "SystemTime": i.system_time,
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": i.cgroup_version,
        "NEventsListener": i.n_events_listener,
        "KernelVersion": i.kernel_version,
        "OperatingSystem": i.operating_system,
        "OSVersion": i.os_version,
        "OSType": "linux",
        "Architecture": i.architecture,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": None,
            "AllowNondistributableArtifactsHostnames": None,
            "InsecureRegistryCIDRs": i.insecure_registry_cidrs,
            "IndexConfigs": {name: {"Name": ic.name, "Mirrors": ic.mirrors, "Secure": ic.secure,
                                    "Official": ic.official} for name, ic in i.index_configs.items()},
            "Mirrors": i.mirrors,
        },
        "NCPU": i.ncpu,
        "MemTotal": i.mem_total,
        "GenericResources": None,
        "DockerRootDir": i.docker_root_dir,
        "HttpProxy": i.http_proxy,
        "HttpsProxy": i.https_proxy,
        "NoProxy": i.no_proxy,
        "Name": i.name,
        "Labels": i.labels,
        "ExperimentalBuild": i.experimental,
        "ServerVersion": i.server_version,
        "Runtimes": {"runc": {"path": i.runtime_path}},
        "DefaultRuntime": "runc",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": False,
        "Isolation": "",
        "InitBinary": "docker-init",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=cgroupns"],
        "ProductLicense": "",
        "DefaultAddressPools": None,
        "FirewallBackend": None,
        "DiscoveredDevices": None,
        "Warnings": None,
        "CDISpecDirs": [],
        "Containerd": None,
    }
    if v < (1, 44):
        d.pop("CDISpecDirs", None)
        d.update({"ClusterStore": "", "ClusterAdvertise": "", "KernelMemory": False})
    if v < (1, 46):
        d.pop("Containerd", None)
    if v < (1, 49):
        d.pop("FirewallBackend", None)
    if v < (1, 50):
        d.pop("DiscoveredDevices", None)
        d.update({"BridgeNfIptables": False, "BridgeNfIp6tables": False})
    return d


def df_json(du: DiskUsage, eng: Engine, v: Version) -> dict[str, Any]:
    """``GET /system/df``."""
    out: dict[str, Any] = {"LayersSize": du.layers_size}
    if du.images is not None:
        out["Images"] = []
        for s in du.images:  # the list's version rules, but df always counts containers and shared sizes
            img = summary_json(s, v)
            img["Containers"] = s.containers
            img["SharedSize"] = s.shared_size
            out["Images"].append(img)
    else:
        out["Images"] = None
    out["Containers"] = None
    if du.containers is not None:
        out["Containers"] = []
        for cu in du.containers:
            item = container_summary_json(cu.container, eng, v)
            item.pop("SizeRw", None)
            item.pop("SizeRootFs", None)
            if cu.size_rw:  # both omitempty, as dockerd's
                item["SizeRw"] = cu.size_rw
            if cu.size_root_fs:
                item["SizeRootFs"] = cu.size_root_fs
            out["Containers"].append(item)
    out["Volumes"] = None if du.volumes is None else [
        volume_json(vu.volume, {"RefCount": vu.ref_count, "Size": vu.size}) for vu in du.volumes]
    out["BuildCache"] = du.build_cache
    if v < (1, 42):
        out["BuilderSize"] = 0
    return out


async def version(request: web.Request) -> web.Response:
    """``GET /version``."""
    return json_body(version_json(_engine(request).system.version()))


async def info(request: web.Request) -> web.Response:
    """``GET /info``."""
    return json_body(info_json(_engine(request).system.info(), params.api_version(request)))


async def df(request: web.Request) -> web.Response:
    """``GET /system/df``."""
    v = params.api_version(request)
    types = params.strings(request, "type") if v >= (1, 42) else []
    for t in types:
        if t not in ("container", "image", "volume", "build-cache"):
            raise InvalidArgument(f"unknown object type: {t}")
    eng = _engine(request)
    return json_body(df_json(eng.system.df(types), eng, v))


def _event_time(value: str, now: float) -> int | None:
    if not value:
        return None
    ts = get_timestamp(value, now)
    sec, _, frac = ts.partition(".")
    nanos = int((frac + "000000000")[:9]) if frac else 0
    return int(sec) * 1_000_000_000 + nanos


def _strip_tag(name: str) -> str:
    """dockerd's events ``stripTag``: the familiar repository name of anything that parses as a reference (a tag
    or digest dropped; ``sha256:<hex>`` is repository ``sha256``), else the string itself."""
    try:
        return refs.parse_normalized_named(name).familiar_name
    except Exception:  # noqa: BLE001
        return name


# the filters dockerd's events.Filter matches by Actor ID or ``name`` attribute, each by prefix (FuzzyMatch) and
# whatever the event's type: ``--filter network=x`` also matches a container named x…
_NAME_FILTERS = ("daemon", "container", "plugin", "volume", "network", "node", "service", "secret", "config")
_FUZZY_EVENTS = {"health_status", "exec_create", "exec_start"}


def _event_matches(f: Filters, ev: Event) -> bool:
    """dockerd's ``events.Filter.Include``: every filter must match; unknown filter keys are ignored."""
    if any(v in _FUZZY_EVENTS for v in f.get("event")):
        if not f.fuzzy_match("event", ev.action):
            return False
    elif not f.exact_match("event", ev.action):
        return False
    if not f.exact_match("type", ev.type):
        return False
    if not f.exact_match("scope", ev.scope):
        return False
    name = ev.attributes.get("name", "")
    for key in _NAME_FILTERS:
        if f.contains(key) and not (f.fuzzy_match(key, ev.actor_id) or f.fuzzy_match(key, name)):
            return False
    if f.contains("image"):
        image = ev.attributes.get("name" if ev.type == "image" else "image", "")
        if not (f.exact_match("image", ev.actor_id) or f.exact_match("image", image)
                or f.exact_match("image", _strip_tag(ev.actor_id)) or f.exact_match("image", _strip_tag(image))):
            return False
    if f.contains("label") and not f.match_kv_list("label", ev.attributes):
        return False
    return True


def _event_line(ev: Event, v: Version) -> bytes:
    """One event as dockerd's events stream writes it: a Go ``json.Encoder`` (HTML escaped, ``\n``), and the
    ``Actor.Attributes`` map in Go's order for maps, its keys sorted."""
    d = ev.to_json(legacy=v < (1, 52))
    actor = d.get("Actor")
    if isinstance(actor, dict) and isinstance(actor.get("Attributes"), dict):
        d["Actor"] = {**actor, "Attributes": dict(sorted(actor["Attributes"].items()))}
    return go_line(d)


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /events``: the events since ``since`` and, unless ``until`` is given, those to come."""
    v = params.api_version(request)
    now = time.time()
    since = _event_time(request.query.get("since", ""), now)
    until = _event_time(request.query.get("until", ""), now)
    if since is not None and until is not None and since > until:
        raise InvalidArgument(f"`since` time ({request.query['since']}) cannot be after `until` time "
                              f"({request.query['until']})")
    f = params.filters(request)
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    bus = _engine(request).events
    async for ev in bus.subscribe(since, until):
        if not _event_matches(f, ev):
            continue
        await resp.write(_event_line(ev, v))
    await resp.write_eof()
    return resp


async def auth(request: web.Request) -> web.Response:
    """``POST /auth``: check credentials with a registry."""
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError as exc:
        raise InvalidArgument(f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidArgument("invalid auth configuration")
    status, token = await _engine(request).distribution.login(AuthConfig.from_dict(body))
    return json_body({"IdentityToken": token, "Status": status})


async def distribution_inspect(request: web.Request) -> web.Response:
    """``GET /distribution/{name}/json``."""
    auth_cfg = decode_registry_auth(request.headers.get("X-Registry-Auth", ""))
    found = await _engine(request).distribution.inspect(request.match_info["name"], auth_cfg)
    return json_body({"Descriptor": found.descriptor.to_json(), "Platforms": [p.to_json() for p in found.platforms]})


async def list_plugins(request: web.Request) -> web.Response:
    """``GET /plugins``: ``[]``, the ``filters`` checked as dockerd's plugin manager checks them (only
    ``capability`` and ``enabled``, ``enabled`` a boolean: 400 ``invalid filter …`` otherwise)."""
    f = params.filters(request)
    f.validate(("capability", "enabled"))
    if f.contains("enabled"):
        f.get_bool_or_default("enabled", False)
    return json_body([])


def routes() -> list[tuple[str, str, Any]]:
    """The system endpoints: (method, path, handler)."""
    return [
        ("GET", "/plugins", list_plugins),
        ("POST", "/auth", auth),
        ("GET", "/distribution/{name:.+}/json", distribution_inspect),
        ("GET", "/_ping", ping),
        ("HEAD", "/_ping", ping),
        ("GET", "/version", version),
        ("GET", "/info", info),
        ("GET", "/events", events),
        ("GET", "/system/df", df),
    ]
