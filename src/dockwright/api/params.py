"""Query and header parsing with dockerd's rules (booleans, ints, filters, platforms, auth headers)."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from ..errors import InvalidArgument
from ..filters import Filters
from ..oci.platform import Platform
from . import bodies
from .versions import Version

__all__ = ["bool_value", "bool_default", "int_value", "filters", "json_platform", "api_version",
           "registry_auth", "strings"]


def api_version(request: web.Request) -> Version:
    return request["api_version"]  # type: ignore[no-any-return]


def bool_value(request: web.Request, key: str) -> bool:
    """httputils.BoolValue: "", 0, no, false, none are false; anything else true."""
    v = request.query.get(key, "").strip().lower()
    return v not in ("", "0", "no", "false", "none")


def bool_default(request: web.Request, key: str, default: bool) -> bool:
    if key not in request.query:
        return default
    return bool_value(request, key)


def int_value(request: web.Request, key: str, default: int = 0) -> int:
    v = request.query.get(key, "")
    if v == "":
        return default
    try:
        return int(v)
    except ValueError as exc:
        raise InvalidArgument(f"invalid value for {key}: {v}") from exc


def strings(request: web.Request, key: str) -> list[str]:
    return list(request.query.getall(key, []))


def filters(request: web.Request) -> Filters:
    return Filters.parse(request.query.get("filters", ""))


def json_platform(request: web.Request, key: str = "platform") -> Platform | None:
    raw = request.query.getall(key, [])
    if not raw or raw[0] == "":
        return None
    try:  # Go's syntax errors and depth limit first: no nesting makes this a RecursionError
        value = bodies.loads(raw[0])
    except bodies.GoJSONError as exc:
        raise InvalidArgument(f"failed to parse platform: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidArgument("failed to parse platform: not a JSON object")
    try:
        return Platform.parse_json_param(raw[0])
    except RecursionError:  # an object nested deep in a field Go would ignore
        raise InvalidArgument("failed to parse platform: nested too deeply") from None


def registry_auth(request: web.Request) -> dict[str, Any]:
    """X-Registry-Auth: base64url JSON (padding optional); empty or ``e30=`` → {}."""
    raw = request.headers.get("X-Registry-Auth", "")
    if not raw:
        return {}
    try:
        padded = raw + "=" * (-len(raw) % 4)
        data = bodies.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError):  # GoJSONError is a ValueError: never RecursionError, whatever the nesting
        try:
            data = bodies.loads(base64.b64decode(raw + "=" * (-len(raw) % 4)))
        except (ValueError, TypeError):
            return {}
    return data if isinstance(data, dict) else {}
