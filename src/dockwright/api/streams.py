"""JSON-lines streams as dockerd writes them (jsonmessage.JSONMessage), including the drawn progress bar.

Each message is Go's ``json.Marshal`` of a JSONMessage (:func:`..oci.gojson.go_line`: compact, ``<``/``>``/``&``
escaped, non-ASCII as UTF-8) ended by CRLF, its keys in the struct's order: ``stream``, ``status``,
``progressDetail``, ``progress``, ``id``, ``errorDetail``, ``error``, ``aux``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..oci.gojson import go_line
from ..progress import Aux, Progress, ProgressEvent, Status, StreamText
from .errors import error_line

__all__ = ["cancel_on_disconnect", "human_size", "progress_bar", "render", "JSONStream", "client_gone"]


def client_gone(request: web.Request, exc: BaseException) -> bool:
    """Whether ``exc`` is this request's client having hung up (a write to its closed or closing connection:
    ``ConnectionResetError``, aiohttp's ``ClientConnectionResetError`` "Cannot write to closing transport",
    ``BrokenPipeError``…). A client going away is normal, not a failure of ours; the same errors from another
    connection (a registry's, say) are not this, since the client's connection is still open then."""
    if not isinstance(exc, ConnectionError):
        return False
    transport = request.transport
    return transport is None or transport.is_closing()

_UNITS = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]


def human_size(size: float) -> str:
    """go-units HumanSize: decimal units, 4 significant digits."""
    i = 0
    while size >= 1000.0 and i < len(_UNITS) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.4g}{_UNITS[i]}"


def progress_bar(current: int, total: int | None, units: str | None = None) -> str:
    """jsonmessage's drawn progress bar (``[====>   ] 1.2MB/3.4MB``), or a bare count without a total."""
    if current <= 0 and (total or 0) <= 0:
        return ""
    if not total or total <= 0:
        return f"{human_size(current):>8}" if not units else f"{current} {units}"
    pct = min(int(current / total * 100) // 2, 50)
    box = "[" + "=" * pct + ">" + " " * max(0, 50 - pct) + "] "
    if units:
        nums = f"{current}/{total} {units}"
    elif current > total:
        nums = f"{human_size(current):>8}"
    else:
        nums = f"{human_size(current):>8}/{human_size(total)}"
    return box + nums


def render(ev: ProgressEvent, *, bare_aux: bool = False) -> dict[str, Any]:
    """The JSONMessage of ``ev``. An :class:`Aux` without an ID is a progress message carrying it
    (``{"progressDetail":{},"aux":…}``, a push's result), or with ``bare_aux`` what dockerd's AuxFormatter writes
    (``{"aux":…}``, a build's image ID)."""
    if isinstance(ev, Status):
        d: dict[str, Any] = {"status": ev.status}
        if ev.id:
            d["id"] = ev.id
        return d
    if isinstance(ev, Progress):
        detail: dict[str, Any] = {}
        if ev.current:
            detail["current"] = ev.current
        if ev.total:
            detail["total"] = ev.total
        if ev.units:
            detail["units"] = ev.units
        d = {"status": ev.status, "progressDetail": detail}
        bar = progress_bar(ev.current, ev.total, ev.units) if ev.bar else ""
        if bar:
            d["progress"] = bar
        if ev.id:
            d["id"] = ev.id
        return d
    if isinstance(ev, StreamText):
        return {"stream": ev.text}
    if isinstance(ev, Aux):
        if ev.id is not None:
            return {"id": ev.id, "aux": ev.data}
        return {"aux": ev.data} if bare_aux else {"progressDetail": {}, "aux": ev.data}
    raise TypeError(ev)


class JSONStream:
    """A 200 application/json stream of objects each ended by CRLF; errors after the start go in-band.
    ``bare_aux``: auxiliary data without an ID as dockerd's build writes it (see :func:`render`)."""

    def __init__(self, request: web.Request, *, bare_aux: bool = False) -> None:
        self.request = request
        self.bare_aux = bare_aux
        self.response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        self.started = False

    async def start(self) -> None:
        """Send the 200 status and headers (once)."""
        if not self.started:
            self.response.enable_chunked_encoding()
            await self.response.prepare(self.request)
            self.started = True

    async def send(self, obj: dict[str, Any]) -> None:
        """Send one JSON message."""
        await self.start()
        await self.response.write(go_line(obj, b"\r\n"))

    async def send_event(self, ev: ProgressEvent) -> None:
        """Send one progress event, rendered."""
        await self.send(render(ev, bare_aux=self.bare_aux))

    async def send_error(self, exc: BaseException) -> None:
        """Send an error in-band (``errorDetail``/``error``)."""
        await self.start()
        await self.response.write(error_line(exc))

    async def run(self, events: AsyncIterator[ProgressEvent], *, quiet: bool = False) -> web.StreamResponse:
        """Send every event; an error before the first byte propagates (→ HTTP status), after it goes in-band."""
        try:
            async for ev in events:
                if quiet and isinstance(ev, (Progress, Status)):
                    continue
                await self.send_event(ev)
        except Exception as exc:  # noqa: BLE001 - rendered to the client
            if not self.started or client_gone(self.request, exc):
                raise  # before the first byte: an HTTP status; the client gone: nobody to tell (app's middleware)
            await self.send_error(exc)
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:  # stopped early (the client went away): the operation's clean-up runs now
                await aclose()
        await self.finish()
        return self.response

    async def finish(self) -> web.StreamResponse:
        """End the stream."""
        await self.start()
        await self.response.write_eof()
        return self.response


async def cancel_on_disconnect(request: web.Request, task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` (the build, killing a running RUN container on the way out) when the client hangs up,
    as dockerd cancels a build with its request context; aiohttp does not cancel handlers itself."""
    while not task.done():
        await asyncio.sleep(0.25)
        transport = request.transport
        if transport is None or transport.is_closing():
            task.cancel()
            return
