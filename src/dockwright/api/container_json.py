"""The container views of the API: inspect (``GET /containers/{id}/json``), the summary of ``GET /containers/json``,
and their parts (``Config``, ``HostConfig``, ``Mounts``) in dockerd's shapes and field order per API version.

Inspect shows every key dockerd's does: ``Config`` (container.Config, omitempty keys left out when empty),
``HostConfig`` (every field of container.HostConfig with its zero value, as dockerd 20.10 at API <= 1.41; from 1.42
``KernelMemory`` and ``KernelMemoryTCP`` only when set), ``Mounts`` (the mount points) and ``GraphDriver`` (the
overlay directories of the container's snapshot).
"""

from __future__ import annotations

import time
from typing import Any

from ..engine.containers.config import host_config_defaults
from ..engine.containers.record import Container, list_command
from ..engine.engine import Engine
from ..oci.gojson import parse_rfc3339
from ..timestamps import human_duration
from .networks import network_mode_json, network_settings_json, summary_network_settings_json, summary_ports_json

__all__ = ["config_json", "host_config_json", "inspect_json", "mount_point_json", "summary_json"]


def _status_text(c: Container) -> str:
    st = c.state
    now = time.time()
    if st.get("Running"):
        started = parse_rfc3339(st.get("StartedAt", "")) or now
        text = f"Up {human_duration(now - started)}"
        return text + " (Paused)" if st.get("Paused") else text
    if st.get("Status") == "exited":
        fin = parse_rfc3339(st.get("FinishedAt", "")) or now
        return f"Exited ({st.get('ExitCode', 0)}) {human_duration(now - fin)} ago"
    return "Created"


def _mode(c: Container) -> str:
    return str(c.host_config.get("NetworkMode") or "default")


def mount_point_json(mp: dict[str, Any]) -> dict[str, Any]:
    """A stored mount point as dockerd's ``MountPoint`` (``Name`` and ``Driver`` only for volumes)."""
    out: dict[str, Any] = {"Type": mp.get("Type", "bind")}
    if mp.get("Type") == "volume":
        out["Name"] = mp.get("Name", "")
    out["Source"] = mp.get("Source", "")
    out["Destination"] = mp.get("Destination", "")
    if mp.get("Type") == "volume":
        out["Driver"] = mp.get("Driver", "")
    out.update({"Mode": mp.get("Mode", ""), "RW": bool(mp.get("RW", True)), "Propagation": mp.get("Propagation", "")})
    return out


_OMIT = object()
# container.Config in dockerd's field order: (key, zero value or _OMIT for the omitempty ones)
_CONFIG_FIELDS: tuple[tuple[str, Any], ...] = (
    ("Hostname", ""), ("Domainname", ""), ("User", ""), ("AttachStdin", False), ("AttachStdout", False),
    ("AttachStderr", False), ("ExposedPorts", _OMIT), ("Tty", False), ("OpenStdin", False), ("StdinOnce", False),
    ("Env", None), ("Cmd", None), ("Healthcheck", _OMIT), ("ArgsEscaped", _OMIT), ("Image", ""), ("Volumes", None),
    ("WorkingDir", ""), ("Entrypoint", None), ("NetworkDisabled", _OMIT), ("MacAddress", _OMIT), ("OnBuild", None),
    ("Labels", {}), ("StopSignal", _OMIT), ("StopTimeout", _OMIT), ("Shell", _OMIT),
)
# container.HostConfig (with Resources inline) in dockerd's field order
_HOST_CONFIG_FIELDS: tuple[tuple[str, Any], ...] = (
    ("Binds", None), ("ContainerIDFile", ""), ("LogConfig", {"Type": "", "Config": None}), ("NetworkMode", ""),
    ("PortBindings", None), ("RestartPolicy", {"Name": "", "MaximumRetryCount": 0}), ("AutoRemove", False),
    ("VolumeDriver", ""), ("VolumesFrom", None), ("ConsoleSize", [0, 0]), ("Annotations", _OMIT), ("CapAdd", None),
    ("CapDrop", None), ("CgroupnsMode", ""), ("Dns", None), ("DnsOptions", None), ("DnsSearch", None),
    ("ExtraHosts", None), ("GroupAdd", None), ("IpcMode", ""), ("Cgroup", ""), ("Links", None), ("OomScoreAdj", 0),
    ("PidMode", ""), ("Privileged", False), ("PublishAllPorts", False), ("ReadonlyRootfs", False),
    ("SecurityOpt", None), ("StorageOpt", _OMIT), ("Tmpfs", _OMIT), ("UTSMode", ""), ("UsernsMode", ""),
    ("ShmSize", 0), ("Sysctls", _OMIT), ("Runtime", _OMIT), ("Isolation", ""), ("CpuShares", 0), ("Memory", 0),
    ("NanoCpus", 0), ("CgroupParent", ""), ("BlkioWeight", 0), ("BlkioWeightDevice", None),
    ("BlkioDeviceReadBps", None), ("BlkioDeviceWriteBps", None), ("BlkioDeviceReadIOps", None),
    ("BlkioDeviceWriteIOps", None), ("CpuPeriod", 0), ("CpuQuota", 0), ("CpuRealtimePeriod", 0),
    ("CpuRealtimeRuntime", 0), ("CpusetCpus", ""), ("CpusetMems", ""), ("Devices", None), ("DeviceCgroupRules", None),
    ("DeviceRequests", None), ("KernelMemory", 0), ("KernelMemoryTCP", 0), ("MemoryReservation", 0),
    ("MemorySwap", 0), ("MemorySwappiness", None), ("OomKillDisable", None), ("PidsLimit", None), ("Ulimits", None),
    ("CpuCount", 0), ("CpuPercent", 0), ("IOMaximumIOps", 0), ("IOMaximumBandwidth", 0), ("Mounts", _OMIT),
    ("MaskedPaths", None), ("ReadonlyPaths", None), ("Init", _OMIT),
)


_POINTERS = ("Healthcheck", "StopTimeout", "Init")  # omitempty pointers: left out only when unset


def _empty(key: str, v: Any) -> bool:
    if key in _POINTERS:
        return v is None
    return v is None or v is False or (isinstance(v, (str, int, list, dict)) and not v)


def config_json(cfg: dict[str, Any]) -> dict[str, Any]:
    """``Config`` of inspect: every key of container.Config, the omitempty ones only when set; an empty ``Env``,
    ``Cmd``, ``Entrypoint``, ``Volumes`` or ``OnBuild`` is null and ``Labels`` at least ``{}``, as dockerd's."""
    out: dict[str, Any] = {}
    for key, zero in _CONFIG_FIELDS:
        v = cfg.get(key)
        if zero is _OMIT:
            if not _empty(key, v):
                out[key] = v
            continue
        if key == "Labels":
            out[key] = dict(v or {})
        elif zero is None:
            out[key] = v if v else None
        else:
            out[key] = zero if v is None else v
    return out


def host_config_json(hc: dict[str, Any], version: Any = None) -> dict[str, Any]:
    """``HostConfig`` of inspect: the stored fields over their zero values (dockerd's create-time defaults applied
    to records made before they were stored). ``KernelMemory``/``KernelMemoryTCP``: always up to API 1.41 (dockerd
    20.10), only when set from 1.42 (omitempty)."""
    hc = host_config_defaults(dict(hc))
    old = version is not None and tuple(version) < (1, 42)
    out: dict[str, Any] = {}
    for key, zero in _HOST_CONFIG_FIELDS:
        v = hc.get(key)
        if zero is _OMIT or (key in ("KernelMemory", "KernelMemoryTCP") and not old):
            if not _empty(key, v):
                out[key] = v
            continue
        if isinstance(zero, dict):
            merged = dict(zero)
            merged.update(v if isinstance(v, dict) else {})
            out[key] = merged
        else:
            out[key] = zero if v is None and zero is not None else v
    return out


def summary_json(c: Container, eng: Engine, version: Any = None) -> dict[str, Any]:
    """One entry of ``GET /containers/json`` (dockerd's ``container.Summary``) for ``c``, shaped for API ``version``."""
    mode = _mode(c)
    return {
        "Id": c.id, "Names": ["/" + c.name], "Image": c.image_ref, "ImageID": c.image_id,
        "Command": list_command(c), "Created": int(parse_rfc3339(c.created) or 0),
        "Ports": summary_ports_json(c.network if c.running else None, c.config.get("ExposedPorts")),
        "Labels": c.config.get("Labels") or {}, "State": c.state.get("Status", "created"),
        "Status": _status_text(c), "HostConfig": {"NetworkMode": network_mode_json(mode, version)},
        "NetworkSettings": summary_network_settings_json(mode, c.network, version), "Mounts": _mounts(c),
    }


def _mounts(c: Container) -> list[dict[str, Any]]:
    return [mount_point_json(mp) for mp in c.mounts]


def inspect_json(c: Container, eng: Engine, version: Any = None, *, size: bool = False) -> dict[str, Any]:
    """``GET /containers/{id}/json``'s body for ``c`` in API ``version``'s shape; ``size`` adds ``SizeRw`` and
    ``SizeRootFs`` (apparent sizes of the container's layer, and of it plus the image)."""
    d = eng.containers._dir(c.id)  # noqa: SLF001
    args = list(c.config.get("Entrypoint") or []) + list(c.config.get("Cmd") or [])
    hc = host_config_json(c.host_config, version)
    hc["NetworkMode"] = network_mode_json(_mode(c), version)
    sizes: dict[str, Any] = {}
    if size:  # the container's own files (apparent sizes, as dockerd's), and those plus the image's
        try:
            size_rw = eng.snapshotter.usage(c.id).apparent_size
        except Exception:  # noqa: BLE001 - no snapshot (removed meanwhile)
            size_rw = 0
        rec = eng.db.get_image(c.image_id)
        sizes = {"SizeRw": size_rw, "SizeRootFs": size_rw + (rec.size if rec is not None else 0)}
    return {
        "Id": c.id, "Created": c.created, "Path": args[0] if args else "", "Args": args[1:],
        "State": dict(c.state), "Image": c.image_id,
        "ResolvConfPath": str(d / "bundle" / "resolv.conf"), "HostnamePath": str(d / "bundle" / "hostname"),
        "HostsPath": str(d / "bundle" / "hosts"), "LogPath": str(d / f"{c.id}-json.log"),
        "Name": "/" + c.name, "RestartCount": 0, "Driver": "overlay2", "Platform": "linux", "MountLabel": "",
        "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": eng.exec.ids_of(c.id), "HostConfig": hc,
        "GraphDriver": eng.containers.graph_driver(c), **sizes, "Mounts": _mounts(c),
        "Config": config_json(c.config),
        "NetworkSettings": network_settings_json(_mode(c), c.network, running=c.running,
                                                 exposed=c.config.get("ExposedPorts"), version=version),
    }
