"""The aiohttp application: routes (with and without the ``/vX.Y`` prefix), version check, headers, errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..engine.engine import Engine
from ..engine.system import API_VERSION, ENGINE_VERSION, MIN_API_VERSION
from ..errors import InvalidArgument
from . import build, containers, images, networks, session, system, volumes
from .archive import routes as archive_routes
from .errors import error_response, json_body, status_of
from .exec import routes as exec_routes
from .streams import client_gone
from .versions import DEFAULT, MINIMUM, parse_version

__all__ = ["make_app"]

log = logging.getLogger("dockwright.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    raw = request.match_info.get("version", "")
    version = parse_version(raw) if raw else DEFAULT
    head = request.method == "HEAD"
    log.debug("%s %s", request.method, request.path_qs)
    try:
        if version < MINIMUM:
            raise InvalidArgument(f"client version {raw} is too old. Minimum supported API version is "
                                  f"{MIN_API_VERSION}, please upgrade your client to a newer version")
        if version > DEFAULT:
            raise InvalidArgument(f"client version {raw} is too new. Maximum supported API version is {API_VERSION}")
        request["api_version"] = version
        if ";" in request.query_string:  # Go's url.ParseQuery since Go 1.17, through dockerd's ParseForm
            raise InvalidArgument("invalid semicolon separator in query")
        return await handler(request)
    except web.HTTPNotFound:
        return json_body({"message": "page not found"}, 404)
    except web.HTTPMethodNotAllowed:
        return json_body({"message": "page not found"}, 404)
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - every error becomes dockerd's {"message"}
        if client_gone(request, exc):
            # the client hung up (a `docker run -d`'s wait, a ^C during a build or pull): one line, as dockerd
            log.info("%s %s: the client went away: %s", request.method, request.path,
                     str(exc) or exc.__class__.__name__)
            return web.Response(status=499)  # never sent: aiohttp finds the connection gone and drops it
        status = status_of(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.path, exc, exc_info=exc)
        else:
            log.info("%s %s: %d %s", request.method, request.path, status, exc)
        return error_response(exc, head=head)


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Api-Version"] = API_VERSION
    response.headers["Server"] = f"Docker/{ENGINE_VERSION} (linux)"
    response.headers["Ostype"] = "linux"
    exp = request.app["engine"].config.experimental
    response.headers["Docker-Experimental"] = "true" if exp else "false"


def make_app(engine: Engine) -> web.Application:
    """The daemon's aiohttp application for ``engine``: every route bare and under ``/vX.Y``, behind a middleware
    that checks the API version and turns errors into dockerd's ``{"message"}``; dockerd's response headers."""
    app = web.Application(middlewares=[_middleware], client_max_size=1 << 40)
    app["engine"] = engine
    app.on_response_prepare.append(_headers)
    app.on_shutdown.append(build.on_shutdown)  # Dockerfile parses stop at once when the daemon stops
    session.setup(app)  # BuildKit's sessions (POST /session), closed when the daemon stops
    table: list[tuple[str, str, Any]] = [*system.routes(), *images.routes(), *containers.routes(), *build.routes(),
                                         *networks.routes(), *exec_routes(), *volumes.routes(), *session.routes()]
    table += archive_routes()  # /containers/{id}/archive (docker cp)
    for method, path, handler in table:
        app.router.add_route(method, "/v{version:[0-9.]+}" + path, handler)
        app.router.add_route(method, path, handler)
    return app
