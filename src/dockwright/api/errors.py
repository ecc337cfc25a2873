"""The one map from dockwright errors to HTTP statuses (moby's httpstatus), and the error body shapes."""

from __future__ import annotations

import json

from aiohttp import web

from ..errors import (AlreadyExists, Conflict, DockwrightError, Forbidden, InvalidArgument, NotFound,
                      NotSupported, Unauthorized, Unavailable)

__all__ = ["status_of", "error_response", "error_line", "unwrap", "json_body", "message_of"]


def json_body(obj: object, status: int = 200) -> web.Response:
    """A JSON response with ``Content-Type: application/json`` exactly: the docker CLI compares the header with
    that string and prints the raw body of an error that carries a charset parameter."""
    return web.Response(status=status, body=(json.dumps(obj) + "\n").encode(), content_type="application/json")


def unwrap(exc: BaseException) -> BaseException:
    """The first real error inside an ExceptionGroup (TaskGroup raises those)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def status_of(exc: BaseException) -> int:
    exc = unwrap(exc)
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, InvalidArgument):
        return 400
    if isinstance(exc, (Conflict, AlreadyExists)):
        return 409
    if isinstance(exc, Unauthorized):
        return 401
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, Unavailable):
        return 503
    if isinstance(exc, NotSupported):
        return 501
    return 500


def message_of(exc: BaseException) -> str:
    exc = unwrap(exc)
    if isinstance(exc, DockwrightError):
        return str(exc)
    return str(exc) or exc.__class__.__name__


def error_response(exc: BaseException, *, head: bool = False) -> web.Response:
    status = status_of(exc)
    if head:
        return web.Response(status=status)
    return json_body({"message": message_of(exc)}, status)


def error_line(exc: BaseException) -> bytes:
    """An in-band error for a stream that already started."""
    msg = message_of(exc)
    return (json.dumps({"errorDetail": {"message": msg}, "error": msg}) + "\r\n").encode()
