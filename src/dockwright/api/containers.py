"""Handlers of ``/containers/*`` and ``/commit``: the subset the docker CLI and docker-py use, dockerd's shapes
(rendered by :mod:`dockwright.api.container_json`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from ..engine.containers.record import Container
from ..engine.engine import Engine
from ..errors import InvalidArgument, SystemError_
from ..filters import Filters
from ..oci.gojson import go_line
from ..runtime import frame
from ..timestamps import parse_timestamp
from . import bodies, params
from .container_json import inspect_json, summary_json
from .errors import json_body
from .request_body import json_request_body

__all__ = ["routes", "hijack_stdin"]

log = logging.getLogger("dockwright.api")


def _engine(request: web.Request) -> Engine:
    return request.app["engine"]  # type: ignore[no-any-return]


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
