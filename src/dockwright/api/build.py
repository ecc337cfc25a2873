"""Handlers of ``POST /build`` (the classic builder) and ``POST /build/prune``."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from typing import Any, AsyncIterator

from aiohttp import web

from ..distribution.auth import decode_registry_config
from ..engine.build import BuildError, BuildOptions
from ..engine.engine import Engine
from ..errors import InvalidArgument, NotSupported
from . import params
from .errors import json_body, message_of
from .streams import JSONStream

__all__ = ["routes"]

log = logging.getLogger("dockwright.api.build")


def _engine(request: web.Request) -> Engine:
    return request.app["engine"]  # type: ignore[no-any-return]


def _json_param(request: web.Request, key: str, default: Any) -> Any:
    raw = request.query.get(key, "")
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid {key} value: {exc}") from exc


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(1 << 20):
        yield chunk


async def build(request: web.Request) -> web.StreamResponse:
    from ..build.context import extract_context, fetch_remote
    eng = _engine(request)
    q = request.query
    if q.get("version", "1") == "2":
        raise NotSupported("BuildKit (version=2) is not supported by this engine: use the classic builder "
                           "(DOCKER_BUILDKIT=0)")
    if params.bool_value(request, "squash"):
        raise InvalidArgument("squash is only supported with experimental mode")  # dockerd without --experimental
    opts = BuildOptions(
        dockerfile=q.get("dockerfile") or "Dockerfile", tags=params.strings(request, "t"),
        quiet=params.bool_value(request, "q"), nocache=params.bool_value(request, "nocache"),
        pull=params.bool_value(request, "pull"), rm=params.bool_default(request, "rm", True),
        forcerm=params.bool_value(request, "forcerm"), cachefrom=_json_param(request, "cachefrom", []) or [],
        buildargs=_json_param(request, "buildargs", {}) or {}, labels=_json_param(request, "labels", {}) or {},
        target=q.get("target", ""), platform=q.get("platform", ""), networkmode=q.get("networkmode", ""),
        extrahosts=[h for h in q.get("extrahosts", "").split(",") if h], remote=q.get("remote", ""),
        memory=params.int_value(request, "memory", 0), cpushares=params.int_value(request, "cpushares", 0),
        shmsize=params.int_value(request, "shmsize", 0))
    for t in opts.tags:
        from .. import reference as refs
        refs.tag_name_only(refs.parse_normalized_named(t))
    decode_registry_config(request.headers.get("X-Registry-Config", ""))
    work = eng.root / "tmp" / f"build-{id(request):x}-{__import__('os').urandom(4).hex()}"
    work.mkdir(parents=True)
    try:
        if opts.remote:
            ctx = await fetch_remote(opts.remote, work / "ctx", dockerfile_name=opts.dockerfile)
        else:
            ctx = await extract_context(_body(request), work / "ctx", dockerfile_name=opts.dockerfile)
        opts.context_tarsums = ctx.tarsums  # hashed while extracting (empty: computed when needed)
        events = await eng.build.build(ctx.root, ctx.dockerfile, opts, ctx.ignore)  # syntax errors: HTTP 400
        stream = JSONStream(request)

        async def pump() -> None:
            async for ev in events:
                await stream.send_event(ev)

        try:
            await stream.start()
            task = asyncio.ensure_future(pump())
            watcher = asyncio.ensure_future(_cancel_on_disconnect(request, task))
            try:
                await task
            except asyncio.CancelledError:
                if not watcher.done():
                    raise
                log.info("build cancelled: the client went away")  # its RUN container was killed on the way out
                return stream.response
            finally:
                watcher.cancel()
        except Exception as exc:  # noqa: BLE001 - in-band, with the RUN exit code
            msg = message_of(exc)
            detail: dict[str, Any] = {"message": msg}
            if isinstance(exc, BuildError):
                detail["code"] = exc.code
            await stream.send({"errorDetail": detail, "error": msg})
        return await stream.finish()
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


async def _cancel_on_disconnect(request: web.Request, task: asyncio.Future[None]) -> None:
    """Cancel ``task`` (the build, killing a running RUN container on the way out) when the client hangs up,
    as dockerd cancels a build with its request context; aiohttp does not cancel handlers itself."""
    while not task.done():
        await asyncio.sleep(0.25)
        transport = request.transport
        if transport is None or transport.is_closing():
            task.cancel()
            return


async def build_prune(request: web.Request) -> web.Response:
    eng = _engine(request)
    v = params.api_version(request)
    keep = params.int_value(request, "keep-storage", 0)  # deprecated name of reserved-space
    max_used = min_free = 0
    if v >= (1, 48):
        keep = params.int_value(request, "reserved-space", keep)
        max_used = params.int_value(request, "max-used-space", 0)
        min_free = params.int_value(request, "min-free-space", 0)
    deleted, reclaimed = await eng.build.prune(all=params.bool_value(request, "all"), filters=params.filters(request),
                                              keep=keep, max_used=max_used, min_free=min_free)
    return json_body({"CachesDeleted": deleted or None, "SpaceReclaimed": reclaimed})


def routes() -> list[tuple[str, str, Any]]:
    return [("POST", "/build", build), ("POST", "/build/prune", build_prune)]
