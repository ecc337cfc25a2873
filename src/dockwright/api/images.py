"""Handlers of ``/images/*``: translate HTTP into calls of the engine's images, distribution and archive services
and render their typed results (``image_json``) per API version."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..distribution.auth import decode_registry_auth
from ..engine.engine import Engine
from ..errors import InvalidArgument
from ..oci.gojson import go_dumps
from ..oci.platform import Platform
from . import params
from .errors import json_body
from .image_json import delete_json, history_json, inspect_json, prune_json, search_json, summary_json
from .streams import JSONStream
from .versions import Version

__all__ = ["routes"]


def _engine(request: web.Request) -> Engine:
    return request.app["engine"]  # type: ignore[no-any-return]


async def list_images(request: web.Request) -> web.Response:
    """``GET /images/json`` (the rendered body reused while the store is unchanged)."""
    v = params.api_version(request)
    eng = _engine(request)
    # `docker images` is called over and over on an unchanged store: reuse the rendered body
    cache: dict[tuple[Any, ...], bytes] = request.app.setdefault("list_cache", {})
    key = (eng.images.generation, v, request.query_string)
    if "until" in request.query.get("filters", ""):
        return web.Response(body=await _render_list(request, v, eng), content_type="application/json")
    body = cache.get(key)
    if body is None:
        body = await _render_list(request, v, eng)
        if len(cache) > 16 or any(k[0] != key[0] for k in cache):
            cache.clear()
        cache[key] = body
    return web.Response(body=body, content_type="application/json")


async def _render_list(request: web.Request, v: Version, eng: Engine) -> bytes:
    f = params.filters(request)
    shared = params.bool_value(request, "shared-size") and v >= (1, 42)
    items = eng.images.list(all=params.bool_value(request, "all"), filters=f, shared_size=shared,
                            container_count=v >= (1, 51))
    return go_dumps([summary_json(s, v) for s in items], escape_html=False) + b"\n"  # as httputils.WriteJSON


async def inspect_image(request: web.Request) -> web.Response:
    """``GET /images/{name}/json``."""
    v = params.api_version(request)
    name = request.match_info["name"]
    manifests = v >= (1, 48) and params.bool_value(request, "manifests")
    platform = params.json_platform(request) if v >= (1, 49) else None
    if manifests and platform is not None:
        raise InvalidArgument("conflicting options: manifests and platform options cannot both be set")
    out = inspect_json(await _engine(request).images.get_unpacked(name, platform), v)
    if manifests:
        out["Manifests"] = []
    return json_body(out)


async def image_history(request: web.Request) -> web.Response:
    """``GET /images/{name}/history``."""
    v = params.api_version(request)
    platform = params.json_platform(request) if v >= (1, 48) else None
    return json_body(history_json(_engine(request).images.history(request.match_info["name"], platform)))


async def tag_image(request: web.Request) -> web.Response:
    """``POST /images/{name}/tag``."""
    eng = _engine(request)
    target = eng.images.tag_target(request.query.get("repo", ""), request.query.get("tag", ""))
    if target is None:
        return web.Response(status=200)
    await eng.images.tag(request.match_info["name"], target)
    return web.Response(status=201)


async def delete_image(request: web.Request) -> web.Response:
    """``DELETE /images/{name}``."""
    eng = _engine(request)
    items = await eng.images.remove(request.match_info["name"], force=params.bool_value(request, "force"),
                                    prune=not params.bool_value(request, "noprune"))
    return json_body([delete_json(i) for i in items])


async def prune_images(request: web.Request) -> web.Response:
    """``POST /images/prune``."""
    rep = await _engine(request).images.prune(params.filters(request))
    return json_body(prune_json(rep))


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(1 << 20):
        yield chunk


async def create_image(request: web.Request) -> web.StreamResponse:
    """``POST /images/create``: a pull (``fromImage``) or an import (``fromSrc``: a URL, or ``-`` for the body)."""
    q = request.query
    eng = _engine(request)
    platform = params.platform_specifier(request)  # dockerd checks it first: a 400 before anything streams
    if q.get("fromImage"):
        auth = decode_registry_auth(request.headers.get("X-Registry-Auth", ""))
        events = await eng.images.pull_stream(q["fromImage"], q.get("tag", ""), platform=platform, auth=auth)
        return await JSONStream(request).run(events)
    src = q.get("fromSrc", "")
    if not src:
        raise InvalidArgument("fromImage or fromSrc is required")
    changes = params.strings(request, "changes")
    source: str | AsyncIterator[bytes] = _body_chunks(request) if src == "-" else (
        src if "://" in src else "http://" + src)
    events = await eng.images.import_stream(source, repo=q.get("repo", ""), tag=q.get("tag", ""),
                                            message=q.get("message", ""), changes=changes, platform=platform,
                                            src=src)
    return await JSONStream(request).run(events)


async def push_image(request: web.Request) -> web.StreamResponse:
    """``POST /images/{name}/push``."""
    v = params.api_version(request)
    eng = _engine(request)
    auth = decode_registry_auth(request.headers.get("X-Registry-Auth", ""))
    platform = params.json_platform(request) if v >= (1, 46) else None
    events = await eng.distribution.push(request.match_info["name"], request.query.get("tag", ""), auth=auth,
                                         platform=platform)
    return await JSONStream(request).run(events)


async def search_images(request: web.Request) -> web.Response:
    """``GET /images/search``."""
    eng = _engine(request)
    term = request.query.get("term", "")
    limit = params.int_value(request, "limit", 0)
    auth = decode_registry_auth(request.headers.get("X-Registry-Auth", ""))
    results = await eng.distribution.search(term, limit=limit, filters=params.filters(request), auth=auth)
    return json_body([search_json(r) for r in results])


def _save_platform(request: web.Request) -> Platform | None:
    if params.api_version(request) < (1, 48):
        return None
    if len(request.query.getall("platform", [])) > 1:
        raise InvalidArgument("multiple platform parameters not supported")
    return params.json_platform(request)


async def _send_tar(request: web.Request, names: list[str]) -> web.StreamResponse:
    eng = _engine(request)
    chunks = await eng.archive.save_stream(names, platform=_save_platform(request))
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    async for chunk in chunks:  # an error now can only abort the tar stream, as with dockerd
        await resp.write(chunk)
    await resp.write_eof()
    return resp


async def get_image(request: web.Request) -> web.StreamResponse:
    """``GET /images/{name}/get``: one image as a tar archive."""
    return await _send_tar(request, [request.match_info["name"]])


async def get_images(request: web.Request) -> web.StreamResponse:
    """``GET /images/get``: the images ``names`` as one tar archive."""
    return await _send_tar(request, params.strings(request, "names"))


async def load_images(request: web.Request) -> web.StreamResponse:
    """``POST /images/load``."""
    eng = _engine(request)
    stream = JSONStream(request)
    await stream.start()  # dockerd reports every load error in-band (HTTP 200 + errorDetail)
    try:
        platform = _save_platform(request)
        # httputils.BoolValueOrDefault(r, "quiet", true): quiet unless the parameter is given and false ("", 0…)
        events = eng.archive.load_stream(_body_chunks(request), quiet=params.bool_default(request, "quiet", True),
                                  platform=platform)
    except Exception as exc:  # noqa: BLE001
        await stream.send_error(exc)
        return await stream.finish()
    return await stream.run(events)


def routes() -> list[tuple[str, str, Any]]:
    """The image endpoints: (method, path, handler)."""
    return [
        ("GET", "/images/get", get_images),
        ("POST", "/images/load", load_images),
        ("GET", "/images/{name:.+}/get", get_image),
        ("GET", "/images/search", search_images),
        ("POST", "/images/{name:.+}/push", push_image),
        ("GET", "/images/json", list_images),
        ("POST", "/images/create", create_image),
        ("POST", "/images/prune", prune_images),
        ("GET", "/images/{name:.+}/json", inspect_image),
        ("GET", "/images/{name:.+}/history", image_history),
        ("POST", "/images/{name:.+}/tag", tag_image),
        ("DELETE", "/images/{name:.+}", delete_image),
    ]
