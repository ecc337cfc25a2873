"""Handlers of ``/containers/*`` and ``/commit``: the subset the docker CLI and docker-py use, dockerd's shapes.

Inspect shows every key dockerd's does: ``Config`` (container.Config, omitempty keys left out when empty),
``HostConfig`` (every field of container.HostConfig with its zero value, as dockerd 20.10 at API <= 1.41; from 1.42
``KernelMemory`` and ``KernelMemoryTCP`` only when set), ``Mounts`` (the mount points) and ``GraphDriver`` (the
overlay directories of the container's snapshot).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from ..engine.container_config import host_config_defaults
from ..engine.container_record import Container
from ..engine.engine import Engine
from ..errors import InvalidArgument, SystemError_
from ..filters import Filters
from ..oci.gojson import go_line, parse_rfc3339
from ..runtime import frame
from ..timestamps import human_duration, parse_timestamp
from . import bodies, params
from .errors import json_body
from .networks import network_mode_json, network_settings_json, summary_network_settings_json, summary_ports_json
from .request_body import json_request_body

__all__ = ["routes", "summary_json", "hijack_stdin"]

log = logging.getLogger("dockwright.api")


def _engine(request: web.Request) -> Engine:
    return request.app["engine"]  # type: ignore[no-any-return]


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


def _command(c: Container) -> str:
    """dockerd's list ``Command``: the path, then the arguments, each with a space quoted in ''."""
    args = list(c.config.get("Entrypoint") or []) + list(c.config.get("Cmd") or [])
    if not args:
        return ""
    return " ".join([args[0], *(f"'{a}'" if " " in a else a for a in args[1:])])


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
        "Command": _command(c), "Created": int(parse_rfc3339(c.created) or 0),
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


_LIST_FILTERS = ("ancestor", "before", "expose", "exited", "health", "id", "isolation", "is-task", "label", "name",
                 "network", "publish", "since", "status", "volume")


def _matches(c: Container, f: Filters, eng: Engine) -> bool:
    if f.contains("id") and not any(c.id.startswith(v) for v in f.get("id")):
        return False
    if f.contains("name") and not any(f.match("name", "/" + c.name) for _ in [0]):
        return False
    if f.contains("status"):
        for v in f.get("status"):
            if v not in ("created", "restarting", "running", "removing", "paused", "exited", "dead"):
                raise InvalidArgument(f"invalid filter 'status={v}'")
        if c.state.get("Status", "created") not in f.get("status"):
            return False
    if f.contains("exited"):
        if c.state.get("Status") != "exited" or str(c.state.get("ExitCode")) not in f.get("exited"):
            return False
    if f.contains("label") and not f.match_kv_list("label", c.config.get("Labels") or {}):
        return False
    if f.contains("volume"):  # a volume's name (a bind's source) or a mount's destination
        known = {m.get("Destination") for m in c.mounts} | {m.get("Name") or m.get("Source") for m in c.mounts}
        if not any(v in known for v in f.get("volume")):
            return False
    if f.contains("ancestor"):
        ok = False
        for v in f.get("ancestor"):
            try:
                rec = eng.images.resolve(v)
            except Exception:  # noqa: BLE001
                continue
            if rec.id == c.image_id:
                ok = True
        if not ok:
            return False
    return True


async def list_containers(request: web.Request) -> web.Response:
    """``GET /containers/json``: running containers (every one with ``all``, a ``limit``, a ``status`` or
    ``exited`` filter), filtered as dockerd filters; a record too damaged to render is logged and left out."""
    eng = _engine(request)
    f = params.filters(request)
    f.validate(_LIST_FILTERS)
    all_ = params.bool_value(request, "all")
    limit = params.int_value(request, "limit", -1)
    out = []
    for c in eng.containers.all():
        if not all_ and not c.running and limit <= 0 and not f.contains("status") and not f.contains("exited"):
            continue
        try:
            if not _matches(c, f, eng):
                continue
            out.append(summary_json(c, eng, request.get("api_version")))
        except (TypeError, AttributeError, ValueError, KeyError) as exc:
            # a record the engine could not repair must not take the list away from every client
            log.warning("container %s left out of the list: its record is unusable: %s", c.id, exc)
    if limit > 0:
        out = out[:limit]
    return json_body(out)


async def create_container(request: web.Request) -> web.Response:
    """Decoded into dockerd's typed structs first: a body that does not fit them is a 400 and creates nothing."""
    eng = _engine(request)
    req = bodies.decode_create(await json_request_body(request))
    if req.config is None:
        raise InvalidArgument("config cannot be empty in order to create a container")
    body: dict[str, Any] = dict(req.config)
    if req.host_config is not None:
        body["HostConfig"] = req.host_config
    if req.networking_config is not None:
        body["NetworkingConfig"] = req.networking_config
    cid, warnings = await eng.containers.create(body, request.query.get("name", ""))
    return json_body({"Id": cid, "Warnings": warnings}, 201)


async def inspect_container(request: web.Request) -> web.Response:
    """``GET /containers/{id}/json`` (by name, ID or ID prefix); ``size=1`` adds the sizes."""
    eng = _engine(request)
    c = eng.containers.get(request.match_info["id"])
    return json_body(inspect_json(c, eng, request.get("api_version"), size=params.bool_value(request, "size")))


def _timeout(request: web.Request) -> int | None:
    """The ``t`` of stop and restart: strconv.Atoi's, and its error (a 500 in dockerd)."""
    t = request.query.get("t", "")
    if t == "":
        return None
    try:
        if not t.lstrip("+-").isdigit():
            raise ValueError(t)
        return int(t)
    except ValueError:
        raise SystemError_(f'strconv.Atoi: parsing "{t}": invalid syntax') from None


def _stop_signal(request: web.Request) -> str | None:
    """``signal`` of stop and restart: honoured from API 1.42 (dockerd 20.10 ignores it)."""
    if params.api_version(request) < (1, 42):
        return None
    return request.query.get("signal") or None


async def restart_container(request: web.Request) -> web.Response:
    """``POST /containers/{id}/restart``: stop (``t`` seconds of grace, ``signal`` from API 1.42) then start; 204."""
    await _engine(request).containers.restart(request.match_info["id"], _timeout(request), _stop_signal(request))
    return web.Response(status=204)


async def rename_container(request: web.Request) -> web.Response:
    """``POST /containers/{id}/rename?name=``: 204, or the engine's conflict or invalid-name error."""
    _engine(request).containers.rename(request.match_info["id"], request.query.get("name", ""))
    return web.Response(status=204)


async def top_container(request: web.Request) -> web.Response:
    """``GET /containers/{id}/top``: ``{"Titles", "Processes"}`` from ``ps`` run with ``ps_args`` (default ``-ef``)."""
    result = await _engine(request).containers.top(request.match_info["id"], request.query.get("ps_args", ""))
    return json_body(result)


async def prune_containers(request: web.Request) -> web.Response:
    """``POST /containers/prune``: remove the stopped containers matching ``filters``; what went and the space freed."""
    return json_body(await _engine(request).containers.prune(params.filters(request)))


async def start_container(request: web.Request) -> web.Response:
    """``POST /containers/{id}/start``: 204, or 304 when it was already running."""
    started = await _engine(request).containers.start(request.match_info["id"])
    return web.Response(status=204 if started else 304)


async def stop_container(request: web.Request) -> web.Response:
    """``POST /containers/{id}/stop``: the stop signal, ``t`` seconds, then SIGKILL; 204, or 304 if not running."""
    stopped = await _engine(request).containers.stop(request.match_info["id"], _timeout(request),
                                                     _stop_signal(request))
    return web.Response(status=204 if stopped else 304)


async def kill_container(request: web.Request) -> web.Response:
    """``POST /containers/{id}/kill``: send ``signal`` (name or number; SIGKILL by default); 204."""
    await _engine(request).containers.kill(request.match_info["id"], request.query.get("signal") or None)
    return web.Response(status=204)


async def pause_container(request: web.Request) -> web.Response:
    """``POST /containers/{id}/pause``: freeze the container's processes (cgroup freezer, through runc); 204."""
    await _engine(request).containers.pause(request.match_info["id"])
    return web.Response(status=204)


async def unpause_container(request: web.Request) -> web.Response:
    """``POST /containers/{id}/unpause``: thaw a paused container; 204."""
    await _engine(request).containers.unpause(request.match_info["id"])
    return web.Response(status=204)


async def delete_container(request: web.Request) -> web.Response:
    """``DELETE /containers/{id}``: 204; ``force`` kills a running one first, ``v`` removes its anonymous volumes."""
    await _engine(request).containers.remove(request.match_info["id"], force=params.bool_value(request, "force"),
                                             volumes=params.bool_value(request, "v"))
    return web.Response(status=204)


async def wait_container(request: web.Request) -> web.StreamResponse:
    """``POST /containers/{id}/wait``: headers at once (the wait is registered), then one JSON line ``{"StatusCode",
    "Error"}`` when ``condition`` (not-running, next-exit, removed) is met."""
    eng = _engine(request)
    # registered before the headers go out (as dockerd): a client that starts the container once it has them
    # cannot have the exit happen before the wait; a missing container or a bad condition is an HTTP error
    waiting = eng.containers.wait(request.match_info["id"], request.query.get("condition", "not-running"))
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    try:
        await resp.prepare(request)  # the client learns at once that the wait is registered
    except BaseException:
        waiting.close()
        raise
    try:
        result = await waiting
    except Exception as exc:  # noqa: BLE001
        result = {"StatusCode": -1, "Error": {"Message": str(exc)}}
    await resp.write(go_line(result))
    await resp.write_eof()
    return resp


def _since(v: str) -> float | None:
    if not v or v == "0":
        return None
    return parse_timestamp(v, time.time())


async def container_logs(request: web.Request) -> web.StreamResponse:
    """``GET /containers/{id}/logs``: the json-file log filtered by ``stdout``/``stderr``, ``since``/``until``,
    ``tail`` and ``timestamps``, raw for a TTY, else multiplexed; ``follow`` streams until the run exits."""
    eng = _engine(request)
    c = eng.containers.get(request.match_info["id"])
    stdout, stderr = params.bool_value(request, "stdout"), params.bool_value(request, "stderr")
    if not stdout and not stderr:
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    tail_raw = request.query.get("tail", "all")
    tail = None if tail_raw in ("", "all") else int(tail_raw) if tail_raw.lstrip("-").isdigit() else None
    tty = bool(c.config.get("Tty"))
    # before the headers go out: the log is opened and a follow is tied to this run's exit (see logs())
    lines = eng.containers.logs(
        c.id, stdout=stdout, stderr=stderr, since=_since(request.query.get("since", "")),
        until=_since(request.query.get("until", "")), tail=tail,
        timestamps=params.bool_value(request, "timestamps"), follow=params.bool_value(request, "follow"))
    resp = web.StreamResponse(status=200, headers={
        "Content-Type": "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"})
    await resp.prepare(request)
    async for stream, line in lines:
        await resp.write(line if tty else frame(stream, line))
    await resp.write_eof()
    return resp


async def attach_container(request: web.Request) -> web.StreamResponse:
    """HTTP hijack: 101 Upgrade (or 200 for old clients), then raw or multiplexed streams both ways."""
    eng = _engine(request)
    c = eng.containers.get(request.match_info["id"])
    stream = params.bool_value(request, "stream")
    want_stdin = params.bool_value(request, "stdin")
    want_out = params.bool_value(request, "stdout")
    want_err = params.bool_value(request, "stderr")
    tty = bool(c.config.get("Tty"))
    v = params.api_version(request)
    ctype = "application/vnd.docker.raw-stream" if tty or v < (1, 42) else "application/vnd.docker.multiplexed-stream"
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
    headers = {"Content-Type": ctype}
    if upgrade:
        headers.update({"Connection": "Upgrade", "Upgrade": "tcp"})
    resp = web.StreamResponse(status=101 if upgrade else 200, headers=headers)
    resp.force_close()  # a hijacked connection ends with the streams
    if params.bool_value(request, "logs"):
        await resp.prepare(request)
        async for s, line in eng.containers.logs(c.id, stdout=want_out, stderr=want_err):
            await resp.write(line if tty else frame(s, line))
    if not stream:
        await resp.prepare(request)
        await resp.write_eof()
        return resp
    stdin_reader = hijack_stdin(request)
    ticket = eng.containers.reserve_attach(c.id)  # before the answer: the client then starts the container
    if not resp.prepared:
        await resp.prepare(request)
    try:
        att = await eng.containers.attach(c.id, stdin=want_stdin, stdout=want_out, stderr=want_err, ticket=ticket)
    except Exception as exc:  # noqa: BLE001 - the stream already started
        await resp.write(f"Error attaching: {exc}\n".encode())
        await resp.write_eof()
        return resp
    pump_in: asyncio.Task[None] | None = None
    if want_stdin:
        async def forward_stdin() -> None:
            try:
                while True:
                    data = await stdin_reader.read(65536)
                    if not data:
                        break
                    await att.write(data)
            except Exception:  # noqa: BLE001 - client went away
                pass
            finally:
                try:
                    await att.close_stdin()
                except Exception:  # noqa: BLE001
                    pass
        pump_in = asyncio.ensure_future(forward_stdin())
    try:
        async for s, data in att:
            await resp.write(data if tty else frame(s, data))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        if pump_in is not None:
            pump_in.cancel()
        await att.close()
    try:
        await resp.write_eof()
    except ConnectionResetError:
        pass
    return resp


class _HalfClose(asyncio.Protocol):
    """Wraps aiohttp's protocol on a hijacked connection: the client's EOF ends stdin, not the connection."""

    def __init__(self, inner: Any, on_eof: Any) -> None:
        self._inner = inner
        self._on_eof = on_eof

    def connection_made(self, transport: Any) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool:
        self._on_eof()
        return True  # keep the transport open for our writes

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _RawParser:
    """Takes over the connection after the upgrade: raw bytes (the client's stdin) into a StreamReader."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.reader.feed_eof()


def hijack_stdin(request: web.Request) -> asyncio.StreamReader:
    """Make the connection a raw duplex stream, as dockerd's hijack: the client's bytes go to a reader, and a
    client that half-closes (the docker CLI shuts its write side when there is no stdin) keeps receiving."""
    reader = asyncio.StreamReader()
    proto: Any = request.protocol
    if proto is None:
        reader.feed_eof()
        return reader

    transport = request.transport
    if transport is not None and hasattr(transport, "set_protocol"):
        transport.set_protocol(_HalfClose(proto, reader.feed_eof))
    try:
        proto.set_parser(_RawParser(reader))
    except Exception:  # noqa: BLE001 - not an upgraded connection (old clients): no stdin
        reader.feed_eof()
    return reader


async def resize_container(request: web.Request) -> web.Response:
    """``POST /containers/{id}/resize?h=&w=``: resize a running TTY container's console (a no-op otherwise); 200."""
    eng = _engine(request)
    c = eng.containers.get(request.match_info["id"])
    h, w = params.int_value(request, "h", 0), params.int_value(request, "w", 0)
    if c.running and c.config.get("Tty"):
        await eng.containers.runc.resize(c.id, h, w, bundle=eng.containers._bundle(c))  # noqa: SLF001
    return web.Response(status=200)


async def container_changes(request: web.Request) -> web.Response:
    """``GET /containers/{id}/changes``: ``[{"Kind", "Path"}]`` of the container's layer (``null`` when none)."""
    items = await _engine(request).containers.changes(request.match_info["id"])
    return json_body([{"Kind": k, "Path": p} for k, p in items] or None)


async def export_container(request: web.Request) -> web.StreamResponse:
    """``GET /containers/{id}/export``: the container's root filesystem as a chunked tar stream."""
    chunks = await _engine(request).containers.export(request.match_info["id"])
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    async for chunk in chunks:
        await resp.write(chunk)
    await resp.write_eof()
    return resp


async def commit(request: web.Request) -> web.Response:
    """``POST /commit?container=``: a new image from the container's layer (``repo``/``tag``, ``comment``,
    ``author``, ``pause``, Dockerfile ``changes``, the body's config); ``{"Id"}``, 201."""
    eng = _engine(request)
    q = request.query
    body = bodies.decode_commit(await json_request_body(request))  # the image's config; None for an empty body
    cont = q.get("container", "")
    if not cont:
        raise InvalidArgument("No container specified")  # dockerd: "No such container: " for ""
    image_id = await eng.containers.commit(
        cont, repo=q.get("repo", ""), tag=q.get("tag", ""), comment=q.get("comment", ""),
        author=q.get("author", ""), pause=params.bool_default(request, "pause", True),
        changes=params.strings(request, "changes"), config=body or None)
    return json_body({"Id": image_id}, 201)


def routes() -> list[tuple[str, str, Any]]:
    """The (method, path, handler) rows of the container endpoints and ``/commit`` for
    :func:`dockwright.api.app.make_app`."""
    return [
        ("GET", "/containers/json", list_containers),
        ("POST", "/containers/create", create_container),
        ("POST", "/containers/prune", prune_containers),
        ("GET", "/containers/{id}/json", inspect_container),
        ("POST", "/containers/{id}/start", start_container),
        ("POST", "/containers/{id}/stop", stop_container),
        ("POST", "/containers/{id}/restart", restart_container),
        ("POST", "/containers/{id}/rename", rename_container),
        ("GET", "/containers/{id}/top", top_container),
        ("POST", "/containers/{id}/kill", kill_container),
        ("POST", "/containers/{id}/pause", pause_container),
        ("POST", "/containers/{id}/unpause", unpause_container),
        ("POST", "/containers/{id}/wait", wait_container),
        ("POST", "/containers/{id}/attach", attach_container),
        ("GET", "/containers/{id}/logs", container_logs),
        ("GET", "/containers/{id}/changes", container_changes),
        ("POST", "/containers/{id}/resize", resize_container),
        ("GET", "/containers/{id}/export", export_container),
        ("DELETE", "/containers/{id}", delete_container),
        ("POST", "/commit", commit),
    ]
