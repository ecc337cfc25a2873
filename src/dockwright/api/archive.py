"""Handlers of ``/containers/{id}/archive`` (``docker cp``): ``HEAD`` (the path's stat in the
``X-Docker-Container-Path-Stat`` header), ``GET`` (a tar of the path, with that header) and ``PUT`` (a tar extracted
into the path), as dockerd's router answers them; the work is :mod:`dockwright.engine.containers.fs`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..engine.containers import fs as container_fs
from ..engine.engine import Engine
from ..errors import InvalidArgument
from . import params
from .streams import client_gone

__all__ = ["routes"]

log = logging.getLogger("dockwright.api")

_STAT_HEADER = "X-Docker-Container-Path-Stat"


def _engine(request: web.Request) -> Engine:
    return request.app["engine"]  # type: ignore[no-any-return]


def _path(request: web.Request) -> str:
    """httputils.ArchiveFormValues: the ``path`` parameter, which must not be empty (dockerd's words, sic)."""
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("bad parameter: pathcannot be empty")
    return path


async def head_archive(request: web.Request) -> web.Response:
    """``HEAD /containers/{id}/archive``: the stat of ``path`` (base64 JSON) in ``X-Docker-Container-Path-Stat``."""
    path = _path(request)
    st = await container_fs.stat_path(_engine(request).containers, request.match_info["id"], path)
    return web.Response(status=200, headers={_STAT_HEADER: st.header_value()})


async def get_archive(request: web.Request) -> web.StreamResponse:
    """``GET /containers/{id}/archive``: a chunked tar of ``path`` with its stat header; an error once streaming cuts
    the connection (the client sees a short tar, as with dockerd)."""
    path = _path(request)
    st, chunks = await container_fs.archive_path(_engine(request).containers, request.match_info["id"], path)
    try:
        resp = web.StreamResponse(status=200, headers={_STAT_HEADER: st.header_value(),
                                                       "Content-Type": "application/x-tar"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            async for chunk in chunks:
                await resp.write(chunk)
        except Exception as exc:  # noqa: BLE001 - the headers are out: only the connection can tell
            if not client_gone(request, exc):
                log.error("GET %s: the archive stopped: %s", request.path_qs, exc, exc_info=exc)
            if request.transport is not None:
                request.transport.close()  # the client sees a cut tar, as dockerd's
            return resp
        await resp.write_eof()
        return resp
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(1 << 20):
        yield chunk


async def put_archive(request: web.Request) -> web.Response:
    """``PUT /containers/{id}/archive``: extract the request's tar (compressed or not) into ``path``, honouring
    ``noOverwriteDirNonDir`` and ``copyUIDGID``."""
    path = _path(request)
    await container_fs.extract_to_dir(_engine(request).containers, request.match_info["id"], path, _body(request),
                                      no_overwrite_dir_non_dir=params.bool_value(request, "noOverwriteDirNonDir"),
                                      copy_uid_gid=params.bool_value(request, "copyUIDGID"))
    return web.Response(status=200)


def routes() -> list[tuple[str, str, Any]]:
    """The (method, path, handler) rows of ``/containers/{id}/archive`` for :func:`dockwright.api.app.make_app`."""
    return [
        ("HEAD", "/containers/{id}/archive", head_archive),
        ("GET", "/containers/{id}/archive", get_archive),
        ("PUT", "/containers/{id}/archive", put_archive),
    ]
