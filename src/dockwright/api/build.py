"""Handlers of ``POST /build`` (the classic builder) and ``POST /build/prune``."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from .. import reference as refs
from ..builder.context import extract_context
from ..builder.options import BuildError, BuildOptions
from ..builder.remote import fetch_remote
from ..distribution.auth import decode_registry_config
from ..engine.engine import Engine
from ..errors import InvalidArgument
from ..timestamps import go_quote
from . import params
from .buildkit import build_v2
from .errors import json_body, message_of
from .streams import JSONStream, cancel_on_disconnect

__all__ = ["routes"]

log = logging.getLogger("dockwright.api.build")


def _engine(request: web.Request) -> Engine:
    return request.app["engine"]  # type: ignore[no-any-return]


def _shm_size(request: web.Request) -> int:
    """``shmsize``: ``strconv.ParseInt``, whose error dockerd returns as it is (a 500 there; a 400 here)."""
    raw = request.query.get("shmsize", "")
    if not raw:
        return 0
    if not re.fullmatch(r"[+-]?[0-9]+", raw):
        raise InvalidArgument(f'strconv.ParseInt: parsing {go_quote(raw)}: invalid syntax')
    v = int(raw)
    if not -(1 << 63) <= v < (1 << 63):
        raise InvalidArgument(f'strconv.ParseInt: parsing {go_quote(raw)}: value out of range')
    return v


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(1 << 20):
        yield chunk


async def build(request: web.Request) -> web.StreamResponse:
    eng = _engine(request)
    q = request.query
    if q.get("version", "1") == "2":
        return await build_v2(request)
    # newImageBuildOptions, in its order: these errors come before the context is read
    if params.strings(request, "securityopt"):
        raise InvalidArgument("The daemon on this platform does not support setting security options on build")
    shmsize = _shm_size(request)
    isolation = q.get("isolation", "")
    if isolation and isolation.lower() != "default":
        raise InvalidArgument(f"Unsupported isolation: {go_quote(isolation)}")
    ulimits = params.json_value(request, "ulimits", [], "[]*units.Ulimit", "error reading ulimit settings: ")
    buildargs = params.json_value(request, "buildargs", {}, "map[string]*string", "error reading build args: ")
    labels = params.json_value(request, "labels", {}, "map[string]string", "error reading labels: ")
    cachefrom = params.json_value(request, "cachefrom", [], "[]string")
    if params.bool_value(request, "squash"):
        raise InvalidArgument("squash is only supported with experimental mode")  # dockerd without --experimental
    # memory, memswap, cpushares, cpuperiod, cpuquota: dockerd reads a value that is not a number as 0; refused
    # here. The values themselves are checked where dockerd checks them: when a RUN step creates its container.
    opts = BuildOptions(
        dockerfile=q.get("dockerfile") or "Dockerfile", tags=params.strings(request, "t"),
        quiet=params.bool_value(request, "q"), nocache=params.bool_value(request, "nocache"),
        pull=params.bool_value(request, "pull"), rm=params.bool_default(request, "rm", True),
        forcerm=params.bool_value(request, "forcerm"), cachefrom=cachefrom, buildargs=buildargs, labels=labels,
        target=q.get("target", ""), platform=q.get("platform", "") if params.api_version(request) >= (1, 32) else "",
        networkmode=q.get("networkmode", ""), extrahosts=params.strings(request, "extrahosts"),
        remote=q.get("remote", ""),
        memory=params.int_value(request, "memory", 0), memswap=params.int_value(request, "memswap", 0),
        cpushares=params.int_value(request, "cpushares", 0), cpuperiod=params.int_value(request, "cpuperiod", 0),
        cpuquota=params.int_value(request, "cpuquota", 0), cpusetcpus=q.get("cpusetcpus", ""),
        cpusetmems=q.get("cpusetmems", ""), cgroupparent=q.get("cgroupparent", ""), shmsize=shmsize,
        ulimits=ulimits, aux=params.api_version(request) >= (1, 30))  # dockerd sends no aux before 1.30
    for t in opts.tags:
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
        if opts.platform:  # dockerd's newBuilder, once the context is read: a 400 before anything streams
            params.check_platform_specifier(opts.platform)
        # syntax errors, a Dockerfile past its size limit, a bad platform: HTTP 400
        events = await eng.build.build_stream(ctx.root, ctx.dockerfile, opts, ctx.ignore,
                                             dockerfile_name=ctx.dockerfile_path)
        stream = JSONStream(request, bare_aux=True)  # the image ID as dockerd's AuxFormatter writes it: {"aux":…}

        async def pump() -> None:
            try:
                async for ev in events:
                    await stream.send_event(ev)
            finally:  # a client gone mid-build: the steps' clean-up runs now, in this task, not in a finalizer
                await events.aclose()

        try:
            await stream.start()
            task = asyncio.ensure_future(pump())
            watcher = asyncio.ensure_future(cancel_on_disconnect(request, task))
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
            detail: dict[str, Any] = {}  # jsonmessage.JSONError: code then message, both omitempty
            if isinstance(exc, BuildError) and exc.code:
                detail["code"] = exc.code
            if msg:
                detail["message"] = msg
            await stream.send({"errorDetail": detail, "error": msg} if msg else {"errorDetail": detail})
        return await stream.finish()
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


async def build_prune(request: web.Request) -> web.Response:
    eng = _engine(request)
    v = params.api_version(request)
    keep = params.int_value(request, "keep-storage", 0)  # deprecated name of reserved-space
    max_used = min_free = 0
    if v >= (1, 48):
        keep = params.int_value(request, "reserved-space", keep)
        max_used = params.int_value(request, "max-used-space", 0)
        min_free = params.int_value(request, "min-free-space", 0)
    flt = params.filters(request)
    deleted, reclaimed = await eng.build.prune(all=params.bool_value(request, "all"), filters=flt,
                                              keep=keep, max_used=max_used, min_free=min_free)
    bk_deleted, bk_reclaimed = await eng.buildkit.prune(all=params.bool_value(request, "all"), filters=flt, keep=keep,
                                                        max_used=max_used, min_free=min_free)
    deleted, reclaimed = deleted + bk_deleted, reclaimed + bk_reclaimed
    return json_body({"CachesDeleted": deleted or None, "SpaceReclaimed": reclaimed})


async def on_shutdown(app: web.Application) -> None:
    """The daemon is stopping: Dockerfiles still being parsed stop now (see ``BuildService.shutdown``)."""
    app["engine"].build.shutdown()


def routes() -> list[tuple[str, str, Any]]:
    """The build endpoints: (method, path, handler)."""
    return [("POST", "/build", build), ("POST", "/build/prune", build_prune)]
