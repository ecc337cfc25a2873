"""Handlers of ``/containers/{id}/exec`` and ``/exec/*``: exec create, start (detached, or the HTTP hijack that
``POST /containers/{id}/attach`` uses), inspect and resize, with dockerd's shapes and errors.

Bodies are decoded as dockerd decodes them (a ``json.Decoder`` into ``types.ExecConfig`` and
``types.ExecStartCheck``): unknown fields ignored, field names matched case-insensitively, Go's type errors. An
attached start answers 101 (or 200 without ``Upgrade``) before the process starts; an error after that point is
written into the stream as dockerd writes it: the message and CRLF, as stdout. The start request's ``Tty`` decides
the framing (raw, or multiplexed 8-byte frames from API 1.42 on without it; a raw stream has no stderr), the exec's
``Tty`` the process's terminal.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

from aiohttp import web

from ..engine.engine import Engine
from ..engine.exec import Exec, ExecOptions
from ..errors import InvalidArgument
from ..runtime import frame
from . import bodies, params
from .containers import hijack_stdin  # the hijack of POST /containers/{id}/attach, shared
from .errors import json_body, message_of
from .request_body import json_request_body

__all__ = ["routes", "exec_inspect_json"]

log = logging.getLogger("dockwright.api")

# dockerd 20.10's types.ExecConfig and types.ExecStartCheck, field → Go type (ConsoleSize from API 1.42 on)
_EXEC_CONFIG = {"User": "string", "Privileged": "bool", "Tty": "bool", "ConsoleSize": "*[2]uint",
                "AttachStdin": "bool", "AttachStderr": "bool", "AttachStdout": "bool", "Detach": "bool",
                "DetachKeys": "string", "Env": "[]string", "WorkingDir": "string", "Cmd": "[]string"}
_EXEC_START = {"Detach": "bool", "Tty": "bool", "ConsoleSize": "*[2]uint"}


def _engine(request: web.Request) -> Engine:
    return request.app["engine"]  # type: ignore[no-any-return]


def _decode(raw: bytes, struct: str, go_value: str, fields: dict[str, str]) -> dict[str, Any]:
    """``json.NewDecoder(body).Decode(&v)`` for a flat struct: the fields the body set, Go's errors (the first
    type error, after the whole value was decoded)."""
    try:
        value, _ = bodies.first_value(raw)
    except bodies.GoJSONError as exc:
        if exc.eof:
            raise InvalidArgument("got EOF while reading request body") from None
        raise InvalidArgument(str(exc)) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"json: cannot unmarshal {bodies.go_kind(value)} into Go value of type {go_value}")
    folded = {name.lower(): name for name in fields}
    out: dict[str, Any] = {}
    error: str | None = None

    def fail(what: str, go_type: str, name: str) -> None:
        nonlocal error
        if error is None:
            error = f"json: cannot unmarshal {what} into Go struct field {struct}.{name} of type {go_type}"

    for key, v in value.items():
        name = key if key in fields else folded.get(key.lower())
        if name is None or v is None:
            if name is not None and fields[name] in ("[]string", "*[2]uint"):
                out[name] = None  # null clears a slice or a pointer; other fields keep their value
            continue
        kind = fields[name]
        if kind == "string":
            if isinstance(v, str):
                out[name] = v
            else:
                fail(bodies.go_kind(v), "string", name)
        elif kind == "bool":
            if isinstance(v, bool):
                out[name] = v
            else:
                fail(bodies.go_kind(v), "bool", name)
        elif kind == "[]string":
            if not isinstance(v, list):
                fail(bodies.go_kind(v), "[]string", name)
                continue
            items = []
            for item in v:
                if item is None or isinstance(item, str):
                    items.append(item or "")
                else:
                    fail(bodies.go_kind(item), "string", name)
                    items.append("")
            out[name] = items
        else:  # *[2]uint: Go fills the array and skips what does not fit
            if not isinstance(v, list):
                fail(bodies.go_kind(v), "[2]uint", name)
                continue
            size = [0, 0]
            for i, item in enumerate(v[:2]):
                if isinstance(item, int) and not isinstance(item, bool) and 0 <= item < 1 << 64:
                    size[i] = item
                elif isinstance(item, (int, float)) and not isinstance(item, bool):
                    fail(f"number {item}", "uint", name)
                else:
                    fail(bodies.go_kind(item), "uint", name)
            out[name] = (size[0], size[1])
    if error is not None:
        raise InvalidArgument(error)
    return out


def _atoi(request: web.Request, key: str) -> int:
    """Go's ``strconv.Atoi`` of a query value, with its error."""
    text = request.query.get(key, "")
    body = text[1:] if text[:1] in ("+", "-") else text
    if not body or not body.isascii() or not body.isdigit():
        raise InvalidArgument(f"strconv.Atoi: parsing {_go_quote(text)}: invalid syntax")
    n = int(text)
    if not -(1 << 63) <= n < 1 << 63:
        raise InvalidArgument(f"strconv.Atoi: parsing {_go_quote(text)}: value out of range")
    return n


def _go_quote(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) > 0xFF else f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def exec_inspect_json(rec: Exec) -> dict[str, Any]:
    """``GET /exec/{id}/json``, dockerd's ``ExecInspect`` (``DetachKeys`` is Go's base64 of the key bytes)."""
    process: dict[str, Any] = {"tty": rec.tty, "entrypoint": rec.entrypoint, "arguments": list(rec.args),
                               "privileged": rec.privileged}
    if rec.user:
        process["user"] = rec.user
    return {
        "ID": rec.id, "Running": rec.running, "ExitCode": rec.exit_code, "ProcessConfig": process,
        "OpenStdin": rec.open_stdin, "OpenStderr": rec.open_stderr, "OpenStdout": rec.open_stdout,
        "CanRemove": rec.can_remove, "ContainerID": rec.container_id,
        "DetachKeys": base64.b64encode(rec.detach_keys).decode(), "Pid": rec.pid,
    }


async def create_exec(request: web.Request) -> web.Response:
    """``POST /containers/{id}/exec``: decode ``ExecConfig`` as dockerd does (``ConsoleSize`` from API 1.42) and
    register the exec; ``{"Id"}``, 201."""
    raw = await json_request_body(request)
    fields = dict(_EXEC_CONFIG)
    if params.api_version(request) < (1, 42):
        del fields["ConsoleSize"]
    body = _decode(raw, "ExecConfig", "types.ExecConfig", fields)
    opts = ExecOptions(
        cmd=list(body.get("Cmd") or []), attach_stdin=body.get("AttachStdin", False),
        attach_stdout=body.get("AttachStdout", False), attach_stderr=body.get("AttachStderr", False),
        tty=body.get("Tty", False), env=list(body.get("Env") or []), user=body.get("User", ""),
        working_dir=body.get("WorkingDir", ""), privileged=body.get("Privileged", False),
        detach_keys=body.get("DetachKeys", ""), console_size=body.get("ConsoleSize"))
    eid = _engine(request).exec.create(request.match_info["id"], opts)
    return json_body({"Id": eid}, 201)


async def inspect_exec(request: web.Request) -> web.Response:
    """``GET /exec/{id}/json``: the exec's ``ExecInspect`` (running, exit code, process config, PID)."""
    return json_body(exec_inspect_json(_engine(request).exec.get(request.match_info["id"])))


async def resize_exec(request: web.Request) -> web.Response:
    """``POST /exec/{id}/resize?h=&w=``: resize the exec's TTY (``h``, ``w`` as Go's ``strconv.Atoi`` reads them)."""
    height, width = _atoi(request, "h"), _atoi(request, "w")
    await _engine(request).exec.resize(request.match_info["id"], height, width)
    return web.Response(status=200)


async def start_exec(request: web.Request) -> web.StreamResponse:
    """Detached: 200 once the process runs. Attached: the hijack, then the process's streams both ways."""
    eng = _engine(request)
    eid = request.match_info["id"]
    version = params.api_version(request)
    fields = dict(_EXEC_START)
    if version < (1, 42):
        del fields["ConsoleSize"]
    body = _decode(await request.read(), "ExecStartCheck", "types.ExecStartCheck", fields)
    console_size = body.get("ConsoleSize")
    eng.exec.check(eid)  # dockerd's ExecExists: a missing exec, a stopped or paused container are HTTP errors
    if body.get("Detach"):
        await eng.exec.start(eid, detach=True, console_size=console_size)
        return web.Response(status=200)

    tty = bool(body.get("Tty"))
    multiplexed = not tty and version >= (1, 42)
    headers = {"Content-Type": "application/vnd.docker.multiplexed-stream" if multiplexed
               else "application/vnd.docker.raw-stream"}
    upgrade = "Upgrade" in request.headers
    if upgrade:
        headers.update({"Connection": "Upgrade", "Upgrade": "tcp"})
    stdin_reader = hijack_stdin(request)
    resp = web.StreamResponse(status=101 if upgrade else 200, reason="UPGRADED" if upgrade else None, headers=headers)
    resp.force_close()  # a hijacked connection ends with the streams
    await resp.prepare(request)

    def out(stream: int, data: bytes) -> bytes:
        return data if tty else frame(stream, data)

    try:
        session = await eng.exec.start(eid, detach=False, console_size=console_size)
    except Exception as exc:  # noqa: BLE001 - the stream has started: the error goes into it, as dockerd's
        log.error("Error running exec %s in container: %s", eid, exc)
        try:
            await resp.write(out(1, (message_of(exc) + "\r\n").encode()))
            await resp.write_eof()
        except ConnectionError:
            pass
        return resp
    assert session is not None, "an attached exec start gives a session"

    pump_in: asyncio.Task[None] | None = None
    if session.open_stdin:
        async def forward_stdin() -> None:
            try:
                while data := await stdin_reader.read(65536):
                    await session.write(data)
            except Exception:  # noqa: BLE001 - the client went away: as the end of its stdin
                pass
            await session.close_stdin()
        pump_in = asyncio.ensure_future(forward_stdin())
    try:
        async for stream, data in session:
            if tty and stream == 2:
                continue  # a raw stream carries no stderr: dockerd attaches none to a start with Tty
            await resp.write(out(stream, data))
        await resp.write_eof()
    except ConnectionError:
        pass  # the client went away: the process goes on, its exit is recorded all the same
    finally:
        if pump_in is not None:
            pump_in.cancel()
        await session.close()
    return resp


def routes() -> list[tuple[str, str, Any]]:
    """The (method, path, handler) rows of the exec endpoints for :func:`dockwright.api.app.make_app`."""
    return [
        ("POST", "/containers/{id}/exec", create_exec),
        ("POST", "/exec/{id}/start", start_exec),
        ("POST", "/exec/{id}/resize", resize_exec),
        ("GET", "/exec/{id}/json", inspect_exec),
    ]
