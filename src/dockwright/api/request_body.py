"""A request's JSON body as dockerd's ``httputils`` reads it: the ``Content-Type`` check (``CheckForJSON``), then
the body's first JSON value with dockerd's messages (``ReadJSON``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import InvalidArgument
from . import bodies

__all__ = ["check_content_type", "json_request_body", "read_json"]


def check_content_type(content_type: str, has_body: bool) -> None:
    """httputils.CheckForJSON: a request with a body must say ``Content-Type: application/json``."""
    if not content_type and not has_body:
        return
    if content_type.split(";", 1)[0].strip().lower() == "application/json":
        return
    raise InvalidArgument(f"Content-Type specified ({content_type}) must be 'application/json'")


async def json_request_body(request: web.Request) -> bytes:
    """The body of a request that must be JSON (:func:`check_content_type` first, as dockerd); b"" without one."""
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    check_content_type(request.headers.get("Content-Type", ""), has_body=chunked or (request.content_length or 0) > 0)
    return await request.read() if request.can_read_body else b""


async def read_json(request: web.Request) -> Any:
    """httputils.ReadJSON up to the type: the first JSON value of a body that must be JSON (None for an empty body);
    400 ``invalid JSON: …`` (Go's syntax error, or ``got EOF while reading request body``) or ``unexpected content
    after JSON``."""
    raw = await json_request_body(request)
    if not raw:
        return None
    try:
        value, more = bodies.first_value(raw)
    except bodies.GoJSONError as exc:
        if exc.eof:
            raise InvalidArgument("invalid JSON: got EOF while reading request body") from None
        raise InvalidArgument(f"invalid JSON: {exc}") from None
    if more:
        raise InvalidArgument("unexpected content after JSON")
    return value
