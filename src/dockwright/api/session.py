"""``POST /session`` (a BuildKit client session: after the ``101`` the connection speaks HTTP/2, this daemon the
gRPC client of the services the client serves), the takeover ``POST /grpc`` needs (this daemon the gRPC server:
:func:`serve_grpc`).

The takeover (:func:`take_over`): aiohttp does not treat ``Upgrade: h2c`` as an upgrade, so after the request it
would read the connection as HTTP/1. The handler takes the transport from aiohttp's protocol *before* it answers
``101``: a :class:`~dockwright.buildkit.h2c.TakenConnection` becomes the transport's protocol (the HTTP/2 bytes
the client sends right after the ``101`` wait there), gets what aiohttp had read beyond the request (its parser's
tail after an upgrade, handed over by ``set_parser`` as websockets are) and aiohttp's ``connection_lost``, which it
calls when the connection ends, so that aiohttp forgets the connection. The handler returns only then. (Bytes a
client sent before the ``101`` would have been read by aiohttp as HTTP/1 already; none does: the docker CLI and
buildx wait for the ``101``.)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection
from typing import Any

from aiohttp import web

from ..buildkit.h2c import Servable, TakenConnection, serve
from ..buildkit.session import SessionManager
from ..errors import InvalidArgument, SystemError_

__all__ = ["routes", "setup", "sessions_of", "take_over", "start_session", "serve_grpc",
           "SESSIONS_KEY"]

log = logging.getLogger("dockwright.api.session")

SESSIONS_KEY = web.AppKey("bk_sessions", SessionManager)

H_SESSION_ID = "X-Docker-Expose-Session-Uuid"
H_SESSION_NAME = "X-Docker-Expose-Session-Name"
H_SHARED_KEY = "X-Docker-Expose-Session-Sharedkey"
H_METHOD = "X-Docker-Expose-Session-Grpc-Method"

DEFAULT_DOCKERFILE = "Dockerfile"


def setup(app: web.Application) -> None:
    """Give ``app`` its :class:`SessionManager` (``app[SESSIONS_KEY]``, an ``AppKey`` named ``bk_sessions``), whose
    sessions close when the app shuts down."""
    app[SESSIONS_KEY] = SessionManager()

    async def close_sessions(app: web.Application) -> None:
        sessions_of(app).close_all()

    app.on_shutdown.append(close_sessions)


def sessions_of(where: web.Request | web.Application) -> SessionManager:
    """The daemon's :class:`SessionManager` (of a request's app, or of the app)."""
    app = where.app if isinstance(where, web.Request) else where
    return app[SESSIONS_KEY]


class _Tail:
    """Stands in for aiohttp's payload parser for a moment: what aiohttp read beyond the request."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.data += data
        return False, b""

    def feed_eof(self) -> None:
        pass


def take_over(request: web.Request) -> TakenConnection:
    """Take ``request``'s connection from aiohttp (see the module's docstring); call it before answering ``101``.
    A client gone already is a ``ConnectionResetError`` (the API's middleware drops such a request)."""
    proto: Any = request.protocol
    transport = request.transport
    if proto is None or transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away")
    tail = _Tail()
    with contextlib.suppress(Exception):  # aiohttp refuses when a body is still being read: there is no tail then
        proto.set_parser(tail)
    return TakenConnection(transport, buffered=bytes(tail.data), on_lost=proto.connection_lost)


async def _switch(request: web.Request) -> tuple[web.StreamResponse, TakenConnection]:
    """``101 Switching Protocols`` to ``h2c``, the connection taken over first."""
    conn = take_over(request)
    resp = web.StreamResponse(status=101, headers={"Connection": "Upgrade", "Upgrade": "h2c"})
    resp.force_close()
    try:
        await resp.prepare(request)
    except BaseException:
        conn.close()
        raise
    return resp, conn


async def start_session(request: web.Request) -> web.StreamResponse:
    """``POST /session``: BuildKit's ``HandleHTTPRequest``. A session ID open already, no ``Upgrade`` or one other
    than ``h2c`` are 400s with BuildKit's words; else ``101``, and the session runs until its connection ends."""
    sessions = sessions_of(request)
    h = request.headers
    session_id = h.get(H_SESSION_ID, "")
    if session_id in sessions:
        raise InvalidArgument(f"session {session_id} already exists")
    proto = h.get("Upgrade", "")
    if not proto:
        raise InvalidArgument("no upgrade proto in request")
    if proto != "h2c":
        raise InvalidArgument(f"protocol {proto} not supported")
    resp, conn = await _switch(request)
    try:
        await sessions.attach(conn, session_id=session_id, name=h.get(H_SESSION_NAME, ""),
                              shared_key=h.get(H_SHARED_KEY, ""), methods=h.getall(H_METHOD, []))
    except InvalidArgument as exc:  # opened by another request meanwhile: the 101 is out, the connection closed
        log.info("POST /session: %s", exc)
    return resp


async def serve_grpc(request: web.Request, handlers: Collection[Servable]) -> web.StreamResponse:
    """``POST /grpc`` (BuildKit's Control API, as buildx calls it): ``101``, then answer the client's gRPC calls
    with grpclib ``handlers`` until the connection ends. No ``Upgrade``, or one other than ``h2c``, is dockerd's
    500 with BuildKit's words."""
    proto = request.headers.get("Upgrade", "")
    if not proto:
        raise SystemError_("no upgrade proto in request")
    if proto != "h2c":
        raise SystemError_(f"protocol {proto} not supported")
    resp, conn = await _switch(request)
    await serve(conn, handlers)
    return resp


def routes() -> list[tuple[str, str, Any]]:
    """The (method, path, handler) rows of ``/session`` for :func:`dockwright.api.app.make_app`."""
    return [("POST", "/session", start_session)]
