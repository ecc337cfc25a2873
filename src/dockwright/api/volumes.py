"""Handlers of ``/volumes``: list, create, inspect, remove and prune, with dockerd's shapes and errors."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..engine.engine import Engine
from ..engine.volumes import Volume, created_at
from ..errors import InvalidArgument
from . import params
from .errors import json_body
from .request_body import read_json

__all__ = ["routes", "volume_json"]


def _engine(request: web.Request) -> Engine:
    return request.app["engine"]  # type: ignore[no-any-return]


def volume_json(v: Volume, usage: dict[str, int] | None = None) -> dict[str, Any]:
    """dockerd's ``Volume``; ``UsageData`` (``RefCount``, ``Size``) only for ``/system/df``."""
    out: dict[str, Any] = {
        "CreatedAt": created_at(v.created), "Driver": v.driver,
        "Labels": dict(sorted(v.labels.items())) if v.labels else None,  # Go writes a map's keys sorted
        "Mountpoint": str(v.mountpoint), "Name": v.name,
        "Options": dict(sorted(v.options.items())) if v.options else None,
        "Scope": "local",
    }
    if usage is not None:
        out["UsageData"] = usage
    return out


def _go_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "string"


async def _create_body(request: web.Request) -> dict[str, Any]:
    """httputils.ReadJSON into volume.CreateOptions: an empty body is an empty request (an anonymous volume);
    dockerd's messages for a body that is not JSON or does not fit the struct."""
    value = await read_json(request)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"invalid JSON: json: cannot unmarshal {_go_type(value)} into Go value of type "
                              f"volume.CreateOptions")
    out: dict[str, Any] = {}
    for key, want in (("Name", "string"), ("Driver", "string"), ("DriverOpts", "map"), ("Labels", "map")):
        found = next((k for k in value if k == key), None) or next((k for k in value if k.lower() == key.lower()),
                                                                    None)
        if found is None or value[found] is None:
            continue
        v = value[found]
        if want == "string" and not isinstance(v, str):
            raise InvalidArgument(f"invalid JSON: json: cannot unmarshal {_go_type(v)} into Go struct field "
                                  f"CreateOptions.{key} of type string")
        if want == "map":
            if not isinstance(v, dict):
                raise InvalidArgument(f"invalid JSON: json: cannot unmarshal {_go_type(v)} into Go struct field "
                                      f"CreateOptions.{key} of type map[string]string")
            for item in v.values():
                if item is not None and not isinstance(item, str):
                    raise InvalidArgument(f"invalid JSON: json: cannot unmarshal {_go_type(item)} into Go struct "
                                          f"field CreateOptions.{key} of type string")
            v = {str(k): (x or "") for k, x in v.items()}
        out[key] = v
    return out


async def list_volumes(request: web.Request) -> web.Response:
    """``GET /volumes``: ``{"Volumes", "Warnings": null}`` of the volumes matching ``filters``."""
    vols = _engine(request).containers.volumes.list(params.filters(request))
    return json_body({"Volumes": [volume_json(v) for v in vols], "Warnings": None})


async def create_volume(request: web.Request) -> web.Response:
    """``POST /volumes/create``: create (or return the existing) named or anonymous local volume; its JSON, 201."""
    body = await _create_body(request)
    v = _engine(request).containers.volumes.create(body.get("Name", ""), body.get("Driver", ""),
                                                   body.get("DriverOpts"), body.get("Labels"))
    return json_body(volume_json(v), 201)


async def inspect_volume(request: web.Request) -> web.Response:
    """``GET /volumes/{name}``: the volume's JSON (name, driver, mountpoint, labels, options, scope)."""
    return json_body(volume_json(_engine(request).containers.volumes.get(request.match_info["name"])))


async def delete_volume(request: web.Request) -> web.Response:
    """``DELETE /volumes/{name}``: remove it (``force`` ignores a missing one; in use is a conflict); 204."""
    await _engine(request).containers.volumes.remove(request.match_info["name"],
                                                     force=params.bool_value(request, "force"))
    return web.Response(status=204)


async def prune_volumes(request: web.Request) -> web.Response:
    """From API 1.42 only anonymous volumes, unless the ``all`` filter; before, every unused one (and no ``all``
    filter, as dockerd 20.10)."""
    f = params.filters(request)
    old = params.api_version(request) < (1, 42)
    if old:
        f.validate(("label", "label!"))
    deleted, reclaimed = await _engine(request).containers.volumes.prune(f, all_volumes=old)
    return json_body({"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed})


def routes() -> list[tuple[str, str, Any]]:
    """The (method, path, handler) rows of the volume endpoints for :func:`dockwright.api.app.make_app`."""
    return [
        ("GET", "/volumes", list_volumes),
        ("POST", "/volumes/create", create_volume),
        ("POST", "/volumes/prune", prune_volumes),
        ("GET", "/volumes/{name}", inspect_volume),
        ("DELETE", "/volumes/{name}", delete_volume),
    ]
