"""The one map from dockwright errors to HTTP statuses (moby's httpstatus), the error body shapes, and the plain
JSON answer (``json_body``: Go's bytes, as ``httputils.WriteJSON`` writes them)."""

from __future__ import annotations

from aiohttp import web

from ..errors import (
    AlreadyExists,
    Conflict,
    DockwrightError,
    Forbidden,
    InvalidArgument,
    NotFound,
    NotSupported,
    Unauthorized,
    Unavailable,
)
from ..oci.gojson import go_dumps, go_line

__all__ = ["status_of", "error_response", "error_line", "unwrap", "json_body", "message_of"]


def json_body(obj: object, status: int = 200) -> web.Response:
    """A JSON response with ``Content-Type: application/json`` exactly: the docker CLI compares the header with
    that string and prints the raw body of an error that carries a charset parameter. The body is what dockerd's
    ``httputils.WriteJSON`` writes: Go's compact JSON with ``SetEscapeHTML(false)`` (``<``, ``>``, ``&`` as they
    are, non-ASCII as UTF-8) and a newline."""
    return web.Response(status=status, body=go_dumps(obj, escape_html=False) + b"\n", content_type="application/json")


def unwrap(exc: BaseException) -> BaseException:
    """The first real error inside an ExceptionGroup (TaskGroup raises those)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def status_of(exc: BaseException) -> int:
    """The HTTP status dockerd's ``httpstatus`` gives the error's kind (404, 400, 409, 401, 403, 503, 501; 500 for
    anything else), for the first error of an ExceptionGroup."""
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
    """The error's text for ``{"message"}``: ``str(exc)``, or the class name of a foreign error with no text."""
    exc = unwrap(exc)
    if isinstance(exc, DockwrightError):
        return str(exc)
    return str(exc) or exc.__class__.__name__


def error_response(exc: BaseException, *, head: bool = False) -> web.Response:
    """dockerd's error answer: ``{"message"}`` with :func:`status_of`'s status, or the status alone for a ``HEAD``."""
    status = status_of(exc)
    if head:
        return web.Response(status=status)
    return json_body({"message": message_of(exc)}, status)


def error_line(exc: BaseException) -> bytes:
    """An in-band error for a stream that already started (streamformatter.FormatError: ``json.Marshal``, CRLF)."""
    msg = message_of(exc)  # Go's omitempty: an empty message is {"errorDetail":{}}
    return go_line({"errorDetail": {"message": msg}, "error": msg} if msg else {"errorDetail": {}}, b"\r\n")
