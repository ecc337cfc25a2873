"""A container's record: the :class:`Container` value the service keeps in memory, its fresh state, and its
conversion to and from the stored row (repairing, with what was changed, a record an older version stored with
values of the wrong type)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ...metadata.containers import ContainerRow
from ...network.endpoint import Attachment
from ...oci.gojson import parse_rfc3339
from .. import types as typed
from ..mounts import parse_bind, parse_mount

__all__ = ["Container", "new_state", "container_from_row", "container_row", "legacy_mounts", "repair_record",
           "RECORD_TYPES", "list_command", "container_info", "container_summary"]

log = logging.getLogger("dockwright.containers")


@dataclass
class Container:
    """A container as the service keeps it: its ids, config, host config, state, endpoint and mount points."""

    id: str
    name: str
    image_id: str
    image_ref: str
    created: str
    config: dict[str, Any]
    host_config: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    network: Attachment | None = None  # its endpoint (operational fields empty while it is not running)
    mounts: list[dict[str, Any]] = field(default_factory=list)  # mount points (engine.volumes' records)

    @property
    def running(self) -> bool:
        """Whether its process runs (paused included)."""
        return bool(self.state.get("Running"))

    @property
    def status(self) -> str:
        """dockerd's status word (``created``, ``running``, ``paused``, ``exited``)."""
        return str(self.state.get("Status", "created"))


def list_command(c: Container) -> str:
    """dockerd's list ``Command``: the path, then the arguments, each with a space quoted in ''."""
    args = list(c.config.get("Entrypoint") or []) + list(c.config.get("Cmd") or [])
    if not args:
        return ""
    return " ".join([args[0], *(f"'{a}'" if " " in a else a for a in args[1:])])


def container_info(c: Container) -> typed.Container:
    """The library's typed view of ``c`` now (copies: later changes to ``c`` do not show in it)."""
    st = c.state
    return typed.Container(
        id=c.id, name=c.name, image=c.image_ref, image_id=c.image_id,
        command=list(c.config.get("Entrypoint") or []) + list(c.config.get("Cmd") or []), created=c.created,
        state=typed.ContainerState(
            status=c.status, running=c.running, paused=bool(st.get("Paused")), exit_code=int(st.get("ExitCode") or 0),
            pid=int(st.get("Pid") or 0), error=str(st.get("Error") or ""), oom_killed=bool(st.get("OOMKilled")),
            started_at=str(st.get("StartedAt") or ""), finished_at=str(st.get("FinishedAt") or "")),
        labels=dict(c.config.get("Labels") or {}), config=json.loads(json.dumps(c.config)),
        host_config=json.loads(json.dumps(c.host_config)), mounts=json.loads(json.dumps(c.mounts)))


def container_summary(c: Container) -> typed.ContainerSummary:
    """The entry of ``c`` in the library's container list."""
    return typed.ContainerSummary(id=c.id, name=c.name, image=c.image_ref, image_id=c.image_id,
                                  command=list_command(c), created=int(parse_rfc3339(c.created) or 0),
                                  status=c.status, labels=dict(c.config.get("Labels") or {}))


def new_state() -> dict[str, Any]:
    """The state of a container that was never started."""
    return {"Status": "created", "Running": False, "Paused": False, "Restarting": False, "OOMKilled": False,
            "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "", "StartedAt": "0001-01-01T00:00:00Z",
            "FinishedAt": "0001-01-01T00:00:00Z"}



def container_from_row(r: ContainerRow) -> tuple[Container, list[str]]:
    """The container of a stored row, and what had to be repaired in it (empty when nothing)."""
    cols: list[dict[str, Any]] = []
    problems: list[str] = []
    for label, text in (("config", r.config), ("host config", r.host_config), ("state", r.state)):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            value = None
        if not isinstance(value, dict):
            problems.append(f"its {label} is not a JSON object")
            value = {}
        cols.append(value)
    c = Container(r.id, r.name, r.image_id, r.image_ref, r.created, cols[0], cols[1], cols[2] or new_state())
    try:
        c.network = Attachment.from_json(json.loads(r.network)) if r.network else None
    except (ValueError, TypeError, KeyError, AttributeError):
        problems.append("its network attachment is unreadable")
    try:
        mounts = json.loads(r.mounts) if r.mounts else []
        c.mounts = [m for m in mounts if isinstance(m, dict)] if isinstance(mounts, list) else []
    except ValueError:
        problems.append("its mounts are unreadable")
    if not c.mounts and (c.host_config.get("Binds") or c.host_config.get("Mounts")):
        c.mounts = legacy_mounts(c)  # a record of a version before volumes: its bind mounts
        problems.append("its mount points derived from its Binds and Mounts")
    problems += repair_record(c)
    return c, problems


def container_row(c: Container) -> ContainerRow:
    """The row that stores ``c``."""
    return ContainerRow(c.id, c.name, c.image_id, c.image_ref, c.created, json.dumps(c.config),
                        json.dumps(c.host_config), json.dumps(c.state),
                        json.dumps(c.network.to_json()) if c.network is not None else "",
                        json.dumps(c.mounts) if c.mounts else "")


def legacy_mounts(c: Container) -> list[dict[str, Any]]:
    """The bind mounts of a container stored before mount points were (older versions only ran bind mounts)."""
    out = []
    for raw in c.host_config.get("Binds") or []:
        try:
            mp = parse_bind(str(raw))
        except Exception as exc:  # noqa: BLE001
            log.warning("container %s: bind %r dropped: %s", c.id, raw, exc)
            continue
        if mp["Type"] == "bind":
            out.append(mp)
    for m in c.host_config.get("Mounts") or []:
        if isinstance(m, dict) and (m.get("Type") or "bind") == "bind":
            try:
                out.append(parse_mount({**m, "Type": "bind"}))
            except Exception as exc:  # noqa: BLE001
                log.warning("container %s: mount %r dropped: %s", c.id, m, exc)
    return out


# The types the engine (and the list/inspect shapes) rely on in a stored record: what the API's typed decoding
# guarantees for every new one. A value of another type in an old record is dropped (a string where a StrSlice
# is expected becomes a one-element list, as dockerd decodes it).
RECORD_TYPES: dict[str, dict[str, str]] = {
    "config": {
        "Cmd": "strslice", "Entrypoint": "strslice", "Shell": "strslice", "Env": "strings", "OnBuild": "strings",
        "Labels": "labels", "ExposedPorts": "object", "Volumes": "object", "Healthcheck": "object",
        "User": "str", "WorkingDir": "str", "Hostname": "str", "Domainname": "str", "Image": "str",
        "StopSignal": "str", "MacAddress": "str", "Tty": "bool", "OpenStdin": "bool", "StdinOnce": "bool",
        "AttachStdin": "bool", "AttachStdout": "bool", "AttachStderr": "bool", "ArgsEscaped": "bool",
        "NetworkDisabled": "bool", "StopTimeout": "int",
    },
    "host_config": {
        "Binds": "strings", "ExtraHosts": "strings", "Dns": "strings", "DnsSearch": "strings",
        "DnsOptions": "strings", "VolumesFrom": "strings", "Links": "strings", "GroupAdd": "strings",
        "SecurityOpt": "strings", "CapAdd": "strslice", "CapDrop": "strslice", "Mounts": "objects",
        "Memory": "int", "MemorySwap": "int", "CpuShares": "int", "ShmSize": "int", "NanoCpus": "int",
        "NetworkMode": "str", "AutoRemove": "bool", "ReadonlyRootfs": "bool", "Privileged": "bool",
        "RestartPolicy": "object", "LogConfig": "object", "PortBindings": "object", "Sysctls": "labels",
        "Tmpfs": "labels",
    },
}


def _fits(kind: str, v: Any) -> bool:
    if v is None:
        return True
    if kind in ("strings", "strslice"):
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if kind == "labels":
        return isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
    if kind == "object":
        return isinstance(v, dict)
    if kind == "objects":
        return isinstance(v, list) and all(isinstance(x, dict) for x in v)
    if kind == "str":
        return isinstance(v, str)
    if kind == "bool":
        return isinstance(v, bool)
    return isinstance(v, int) and not isinstance(v, bool)  # int


def repair_record(c: Container) -> list[str]:
    """Make a stored record fit :data:`RECORD_TYPES`; what was changed, for the log."""
    problems = []
    for part, types in RECORD_TYPES.items():
        d: dict[str, Any] = getattr(c, part)
        for key, kind in types.items():
            v = d.get(key)
            if _fits(kind, v):
                continue
            if kind == "strslice" and isinstance(v, str):
                d[key] = [v]
                problems.append(f"{part}.{key} {v!r} made a list")
            else:
                del d[key]
                problems.append(f"{part}.{key} {_short(v)} dropped (not {kind})")
    if not isinstance(c.state.get("Status", ""), str) or not isinstance(c.state.get("ExitCode", 0), int):
        c.state = {**new_state(), "Status": "exited", "ExitCode": 255}
        problems.append("its state was unreadable: recorded as exited (255)")
    return problems


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."

