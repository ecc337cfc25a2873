"""``POST /build?version=2`` (BuildKit, as dockerd's builder-next): the Dockerfile and context come through the
client's session (``/session``), the progress goes out as ``moby.buildkit.trace`` messages (base64
``StatusResponse`` protobufs), the image as ``moby.image.id``; ``--output`` types ``local``/``tar`` (and
``docker``/``oci`` for clients that receive files for them) go back through the session. ``POST
/build/cancel?id=`` stops a build by its ``buildid``."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

from aiohttp import web

from ..buildkit.export import Output
from ..buildkit.progress import Recorder
from ..buildkit.state import SolveError, SolveOptions
from ..buildkit.trace import encode_batch
from ..engine.engine import Engine
from ..errors import InvalidArgument, NotSupported
from . import params
from .control import ControlService
from .errors import message_of
from .session import serve_grpc, sessions_of
from .streams import JSONStream, cancel_on_disconnect

__all__ = ["build_v2", "cancel_build", "routes"]

log = logging.getLogger("dockwright.api.buildkit")

#: builds in flight by the client's ``buildid`` (``POST /build/cancel``)
_BUILDS: dict[str, asyncio.Task[Any]] = {}


def _output(request: web.Request, tags: list[str]) -> Output:
    """Where the result goes (``outputs``: one ``{Type, Attrs}`` at most; none is the image, named ``tags``)."""
    raw = request.query.get("outputs", "")
    try:
        outs = json.loads(raw) if raw else []
    except ValueError as exc:
        raise InvalidArgument(f"invalid outputs: {exc}") from None
    if not isinstance(outs, list) or not all(isinstance(o, dict) for o in outs):
        raise InvalidArgument("invalid outputs: a list of {Type, Attrs} is expected")
    if len(outs) > 1:
        raise NotSupported("multiple outputs are not supported")  # dockerd 20.10's words
    if not outs:
        return Output.of("image", {}, tags)
    attrs = outs[0].get("Attrs") or {}
    if not isinstance(attrs, dict):
        raise InvalidArgument("invalid outputs: Attrs must be an object")
    return Output.of(str(outs[0].get("Type") or ""), {str(k): str(v) for k, v in attrs.items()}, tags)


async def build_v2(request: web.Request) -> web.StreamResponse:
    """The BuildKit build of ``POST /build?version=2``."""
    eng: Engine = request.app["engine"]
    q = request.query
    session_id = q.get("session", "")
    if not session_id:
        raise InvalidArgument("no session id specified: BuildKit builds need the client's session "
                              "(DOCKER_BUILDKIT=1 docker build)")
    if q.get("remote") and q.get("remote") != "client-session":
        raise NotSupported(f"remote context {q.get('remote')} is not supported with BuildKit by this engine")
    tags = params.strings(request, "t")
    output = _output(request, tags)
    opts = SolveOptions(
        dockerfile_name=q.get("dockerfile") or "Dockerfile", target=q.get("target", ""),
        buildargs=params.json_value(request, "buildargs", {}, "map[string]*string", "error reading build args: "),
        labels=params.json_value(request, "labels", {}, "map[string]string", "error reading labels: "),
        nocache=params.bool_value(request, "nocache"), pull=params.bool_value(request, "pull"),
        network=q.get("networkmode") or "default", extra_hosts=params.strings(request, "extrahosts"),
        platform=q.get("platform", ""), cache_from=params.json_value(request, "cachefrom", [], "[]string"))
    if opts.network not in ("default", "host", "none"):
        raise NotSupported(f"network mode {opts.network!r} not supported by buildkit")
    sessions = sessions_of(request)
    stream = JSONStream(request)
    await stream.start()
    rec = Recorder()
    image_id = ""

    async def run() -> str:
        session = await sessions.get(session_id, timeout=10)
        res = await eng.buildkit.build_with_session(session, opts, rec, output=output)
        return res.image_id

    quiet = params.bool_value(request, "q")

    async def pump(task: asyncio.Task[str]) -> None:
        while True:
            done = task.done()
            batch, _ = rec.drain()
            if batch is not None and not quiet:
                aux = base64.b64encode(encode_batch(batch)).decode()
                await stream.send({"id": "moby.buildkit.trace", "aux": aux})
            if done:
                return
            await asyncio.wait([task], timeout=0.1)

    task = asyncio.ensure_future(run())
    build_id = q.get("buildid", "")
    if build_id:
        _BUILDS[build_id] = task
    watcher = asyncio.ensure_future(cancel_on_disconnect(request, task))
    try:
        try:
            await pump(task)
            image_id = task.result()
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
            log.info("BuildKit build cancelled")
            await stream.send({"errorDetail": {"message": "context canceled"}, "error": "context canceled"})
            return await stream.finish()
        except Exception as exc:  # noqa: BLE001 - in-band, after the progress that led to it
            batch, _ = rec.drain()
            if batch is not None:
                await stream.send({"id": "moby.buildkit.trace",
                                   "aux": base64.b64encode(encode_batch(batch)).decode()})
            msg = _message(exc)
            await stream.send({"errorDetail": {"message": msg}, "error": msg})
            return await stream.finish()
        if quiet:  # the image ID alone, as dockerd's quiet build
            if image_id:
                await stream.send({"stream": image_id + "\n"})
            return await stream.finish()
        if image_id:
            await stream.send({"id": "moby.image.id", "aux": {"ID": image_id}})
            for t in tags:
                await stream.send({"stream": f"Successfully tagged {t}\n"})
        return await stream.finish()
    finally:
        watcher.cancel()
        if build_id:
            _BUILDS.pop(build_id, None)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _message(exc: BaseException) -> str:
    """The error as dockerd's BuildKit reports it."""
    if isinstance(exc, SolveError):
        return str(exc)
    return message_of(exc) or type(exc).__name__


async def cancel_build(request: web.Request) -> web.Response:
    """``POST /build/cancel?id=<buildid>``: stop a BuildKit build (200 whether it ran or not)."""
    task = _BUILDS.get(request.query.get("id", ""))
    if task is not None and not task.done():
        task.cancel()
    return web.Response(status=200)


async def grpc(request: web.Request) -> web.StreamResponse:
    """``POST /grpc``: BuildKit's Control API (:class:`.control.ControlService`, one per daemon) over h2c."""
    control = request.app.get("bk_control")
    if control is None:
        control = request.app["bk_control"] = ControlService(request.app["engine"], sessions_of(request))
    return await serve_grpc(request, [control])


def routes() -> list[tuple[str, str, Any]]:
    """BuildKit's extra endpoints (``POST /build`` itself dispatches ``version=2`` here)."""
    return [("POST", "/build/cancel", cancel_build), ("POST", "/grpc", grpc)]

