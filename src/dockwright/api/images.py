"""Handlers of ``/images/*``: translate HTTP ↔ ImagesService calls and shape responses per API version."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any, AsyncIterator

import aiohttp
from aiohttp import web

from ..engine.engine import Engine
from ..engine.images import ImageSummary
from ..distribution.auth import decode_registry_auth  # noqa: I001
from ..errors import (DockwrightError, Forbidden, InvalidArgument, NotFound, SystemError_, Unauthorized)
from ..oci.config import container_config
from ..oci.gojson import go_dumps
from ..oci.platform import Platform
from . import params
from .errors import json_body
from .streams import JSONStream
from .versions import Version

__all__ = ["routes", "summary_json", "inspect_json"]

# Config keys that only containers have, dropped from inspect from 1.50 (added back as empty before that)
_LEGACY_CONFIG_KEYS = ("Hostname", "Domainname", "AttachStdin", "AttachStdout", "AttachStderr", "Tty",
                       "OpenStdin", "StdinOnce", "Image")
_ALWAYS_CONFIG_KEYS = {"User": "", "Env": None, "Cmd": None, "Volumes": None, "WorkingDir": "",
                       "Entrypoint": None, "OnBuild": None, "Labels": None}


def summary_json(s: ImageSummary, v: Version) -> dict[str, Any]:
    tags, digests = s.repo_tags, s.repo_digests
    if v < (1, 43):
        if not tags and not digests:
            tags, digests = ["<none>:<none>"], ["<none>@<none>"]
    d: dict[str, Any] = {
        "Containers": s.containers if v >= (1, 51) else -1,
        "Created": s.created,
        "Id": s.id,
        "Labels": s.labels,
        "ParentId": s.parent_id,
        "RepoDigests": digests,
        "RepoTags": tags,
        "SharedSize": s.shared_size if v >= (1, 42) else -1,
        "Size": s.size,
    }
    if v < (1, 44):
        d["VirtualSize"] = s.size
    return d


def _config_json(cfg: dict[str, Any] | None, v: Version) -> dict[str, Any]:
    cfg = dict(cfg or {})
    if v < (1, 50):
        return container_config(cfg)
    out: dict[str, Any] = {}
    for key, value in container_config(cfg).items():
        if key in _LEGACY_CONFIG_KEYS or key in ("NetworkDisabled", "MacAddress", "StopTimeout"):
            continue
        out[key] = value
    for key, default in _ALWAYS_CONFIG_KEYS.items():
        out.setdefault(key, default)
    return out


def inspect_json(d: dict[str, Any], v: Version) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Id": d["Id"],
        "RepoTags": d["RepoTags"],
        "RepoDigests": d["RepoDigests"],
        "Parent": d["Parent"],
        "Comment": d["Comment"],
    }
    created = d["Created"]
    if created:
        out["Created"] = created
    elif v < (1, 44):
        out["Created"] = "0001-01-01T00:00:00Z"
    if v < (1, 45):
        out["Container"] = d["Container"]
        out["ContainerConfig"] = container_config(d["ContainerConfig"] or {})
    out["DockerVersion"] = d["DockerVersion"]
    out["Author"] = d["Author"]
    out["Config"] = _config_json(d["Config"], v)
    out["Architecture"] = d["Architecture"]
    if d["Variant"]:
        out["Variant"] = d["Variant"]
    out["Os"] = d["Os"]
    if d["OsVersion"]:
        out["OsVersion"] = d["OsVersion"]
    out["Size"] = d["Size"]
    if v < (1, 44):
        out["VirtualSize"] = d["Size"]
    out["GraphDriver"] = d["GraphDriver"]
    out["RootFS"] = d["RootFS"]
    out["Metadata"] = d["Metadata"]
    if v >= (1, 48):
        out["Descriptor"] = d["Descriptor"]
    return out


def _engine(request: web.Request) -> Engine:
    return request.app["engine"]  # type: ignore[no-any-return]


async def list_images(request: web.Request) -> web.Response:
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
    v = params.api_version(request)
    name = request.match_info["name"]
    manifests = v >= (1, 48) and params.bool_value(request, "manifests")
    platform = params.json_platform(request) if v >= (1, 49) else None
    if manifests and platform is not None:
        raise InvalidArgument("conflicting options: manifests and platform options cannot both be set")
    d = await _engine(request).images.ainspect(name, platform)
    out = inspect_json(d, v)
    if manifests:
        out["Manifests"] = []
    return json_body(out)


async def image_history(request: web.Request) -> web.Response:
    v = params.api_version(request)
    platform = params.json_platform(request) if v >= (1, 48) else None
    items = _engine(request).images.history(request.match_info["name"], platform)
    return json_body([{"Comment": h.comment, "Created": h.created, "CreatedBy": h.created_by,
                       "Id": h.id, "Size": h.size, "Tags": h.tags} for h in items])


async def tag_image(request: web.Request) -> web.Response:
    eng = _engine(request)
    target = eng.images.tag_target(request.query.get("repo", ""), request.query.get("tag", ""))
    if target is None:
        return web.Response(status=200)
    await eng.images.tag(request.match_info["name"], target)
    return web.Response(status=201)


async def delete_image(request: web.Request) -> web.Response:
    eng = _engine(request)
    items = await eng.images.remove(request.match_info["name"], force=params.bool_value(request, "force"),
                                    prune=not params.bool_value(request, "noprune"))
    return json_body([i.to_json() for i in items])


async def prune_images(request: web.Request) -> web.Response:
    rep = await _engine(request).images.prune(params.filters(request))
    return json_body({"ImagesDeleted": [i.to_json() for i in rep.deleted] or None,
                      "SpaceReclaimed": rep.space_reclaimed})


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(1 << 20):
        yield chunk


async def create_image(request: web.Request) -> web.StreamResponse:
    q = request.query
    eng = _engine(request)
    platform = params.platform_specifier(request)  # dockerd checks it first: a 400 before anything streams
    if q.get("fromImage"):
        auth = decode_registry_auth(request.headers.get("X-Registry-Auth", ""))
        events = await eng.distribution.pull(q["fromImage"], q.get("tag", ""), platform=platform, auth=auth)
        return await JSONStream(request).run(events)
    src = q.get("fromSrc", "")
    if not src:
        raise InvalidArgument("fromImage or fromSrc is required")
    changes = params.strings(request, "changes")
    stream = JSONStream(request)
    # validate everything cheap before reading a byte of the body
    eng.images.import_target(q.get("repo", ""), q.get("tag", ""))
    if src == "-":
        image_id = await eng.images.import_image(_body_chunks(request), repo=q.get("repo", ""),
                                                 tag=q.get("tag", ""), message=q.get("message", ""),
                                                 changes=changes, platform=platform, src=src)
        await stream.send({"status": image_id})
        return await stream.finish()
    url = src if "://" in src else "http://" + src
    # one session for the whole download, closed on every path (an error before the stream starts included)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=60)) as session:
        async with _get_import_source(session, url) as resp:
            await stream.send({"status": f"Downloading from {url}"})
            total = resp.content_length

            async def chunks() -> AsyncIterator[bytes]:
                done = 0
                async for chunk in resp.content.iter_chunked(1 << 20):
                    done += len(chunk)
                    bar = {"status": "Importing", "progressDetail": {"current": done, **({"total": total} if total
                                                                                       else {})}}
                    await stream.send(bar)
                    yield chunk

            try:
                image_id = await eng.images.import_image(chunks(), repo=q.get("repo", ""), tag=q.get("tag", ""),
                                                         message=q.get("message", ""), changes=changes,
                                                         platform=platform, src=src)
                await stream.send({"status": image_id})
            except Exception as exc:  # noqa: BLE001 - the stream has started: the error goes in-band
                await stream.send_error(exc)
    return await stream.finish()


@contextlib.asynccontextmanager
async def _get_import_source(session: aiohttp.ClientSession, url: str) -> AsyncIterator[aiohttp.ClientResponse]:
    """GET the archive to import, as dockerd's ``remotecontext.GetWithStatusError``: a status of 400 or more is an
    error that carries the answer's body, with the status mapped as dockerd maps it (404 → 404, 400 → 400,
    401 → 401, 403 → 403, anything else → 500); a host that cannot be reached is dockerd's ``Get "<url>": …``."""
    try:
        resp = await session.get(url)
    except aiohttp.InvalidURL as exc:
        raise InvalidArgument(f'parse "{url}": invalid URL: {exc}') from exc
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        raise _download_error(url, exc) from exc
    try:
        if resp.status >= 400:
            try:
                body = (await resp.content.read(64 << 10)).decode("utf-8", "replace").strip()
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                raise SystemError_(f"failed to GET {url} with status {resp.status} {resp.reason}: error reading "
                                   f"body") from None
            msg = f"failed to GET {url} with status {resp.status} {resp.reason}: {body}"
            raise {404: NotFound, 400: InvalidArgument, 401: Unauthorized, 403: Forbidden}.get(
                resp.status, SystemError_)(msg)
        yield resp
    finally:
        resp.release()


def _download_error(url: str, exc: BaseException) -> DockwrightError:
    """Go's words for a GET that found no server: ``Get "<url>": dial tcp <addr>: connect: connection refused``
    (a system error, 500); a name that does not resolve is dockerd's not-found (404)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        addr = f"{exc.host}:{exc.port}"
        os_error = exc.os_error
        if isinstance(os_error, socket.gaierror):
            return NotFound(f'Get "{url}": dial tcp: lookup {exc.host}: no such host')
        if isinstance(os_error, ConnectionRefusedError):
            return SystemError_(f'Get "{url}": dial tcp {addr}: connect: connection refused')
        reason = (os_error.strerror or str(os_error)) if os_error is not None else str(exc)
        return SystemError_(f'Get "{url}": dial tcp {addr}: connect: {reason.lower()}')
    if isinstance(exc, asyncio.TimeoutError):
        return SystemError_(f'Get "{url}": dial tcp: i/o timeout')
    return SystemError_(f'Get "{url}": {exc or exc.__class__.__name__}')


async def push_image(request: web.Request) -> web.StreamResponse:
    v = params.api_version(request)
    eng = _engine(request)
    auth = decode_registry_auth(request.headers.get("X-Registry-Auth", ""))
    platform = params.json_platform(request) if v >= (1, 46) else None
    events = await eng.distribution.push(request.match_info["name"], request.query.get("tag", ""), auth=auth,
                                         platform=platform)
    return await JSONStream(request).run(events)


async def search_images(request: web.Request) -> web.Response:
    eng = _engine(request)
    term = request.query.get("term", "")
    limit = params.int_value(request, "limit", 0)
    auth = decode_registry_auth(request.headers.get("X-Registry-Auth", ""))
    results = await eng.distribution.search(term, limit=limit, filters=params.filters(request), auth=auth)
    return json_body(results)


def _save_platform(request: web.Request) -> Platform | None:
    if params.api_version(request) < (1, 48):
        return None
    if len(request.query.getall("platform", [])) > 1:
        raise InvalidArgument("multiple platform parameters not supported")
    return params.json_platform(request)


async def _send_tar(request: web.Request, names: list[str]) -> web.StreamResponse:
    eng = _engine(request)
    chunks = await eng.archive.save(names, platform=_save_platform(request))
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    async for chunk in chunks:  # an error now can only abort the tar stream, as with dockerd
        await resp.write(chunk)
    await resp.write_eof()
    return resp


async def get_image(request: web.Request) -> web.StreamResponse:
    return await _send_tar(request, [request.match_info["name"]])


async def get_images(request: web.Request) -> web.StreamResponse:
    return await _send_tar(request, params.strings(request, "names"))


async def load_images(request: web.Request) -> web.StreamResponse:
    eng = _engine(request)
    stream = JSONStream(request)
    await stream.start()  # dockerd reports every load error in-band (HTTP 200 + errorDetail)
    try:
        platform = _save_platform(request)
        # httputils.BoolValueOrDefault(r, "quiet", true): quiet unless the parameter is given and false ("", 0…)
        events = eng.archive.load(_body_chunks(request), quiet=params.bool_default(request, "quiet", True),
                                  platform=platform)
    except Exception as exc:  # noqa: BLE001
        await stream.send_error(exc)
        return await stream.finish()
    return await stream.run(events)


def routes() -> list[tuple[str, str, Any]]:
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
