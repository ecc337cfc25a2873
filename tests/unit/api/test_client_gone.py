"""The app's middleware on a real aiohttp server and real sockets (issue 11 item 8): a client that hangs up
mid-response is one INFO line; a handler's own bug is still an ERROR with its traceback and a 500; an error from
another connection (not the client's) is not mistaken for the client going away."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiohttp import web

from dockwright.api import app as app_module
from dockwright.api.streams import JSONStream, client_gone
from dockwright.progress import Status


async def _serve(tmp_path: Path, handler) -> tuple[web.AppRunner, str]:  # noqa: ANN001
    application = web.Application(middlewares=[app_module._middleware])  # noqa: SLF001
    application.router.add_route("*", "/x", handler)
    runner = web.AppRunner(application)
    await runner.setup()
    sock = str(tmp_path / "s.sock")
    await web.UnixSite(runner, sock).start()
    return runner, sock


async def _request(sock: str, read: int | None) -> bytes:
    """GET /x; read ``read`` bytes and hang up (None: read it all)."""
    reader, writer = await asyncio.open_unix_connection(sock)
    writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    await writer.drain()
    data = await (reader.read(-1) if read is None else reader.readexactly(read))
    writer.transport.abort() if read is not None else writer.close()
    return data


def _run(coro):  # noqa: ANN001, ANN202
    return asyncio.run(coro)


async def _answer(tmp_path: Path, handler) -> bytes:  # noqa: ANN001
    """The whole answer ``handler`` gives one request on a real server."""
    runner, sock = await _serve(tmp_path, handler)
    try:
        return await _request(sock, None)
    finally:
        await runner.cleanup()


def test_hangup_mid_stream_is_one_info_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        finished = asyncio.Event()

        async def events():  # noqa: ANN202
            for i in range(200):
                yield Status(f"line {i} " + "x" * 1000)
                await asyncio.sleep(0.01)

        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                return await JSONStream(request).run(events())
            finally:
                finished.set()

        runner, sock = await _serve(tmp_path, handler)
        try:
            await _request(sock, 100)
            await asyncio.wait_for(finished.wait(), 10)
            await asyncio.sleep(0.2)
        finally:
            await runner.cleanup()

    with caplog.at_level(logging.DEBUG):
        _run(main())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    gone = [r for r in caplog.records if "the client went away" in r.getMessage()]
    assert len(gone) == 1 and gone[0].levelno == logging.INFO and gone[0].exc_info is None


def test_handler_bug_is_still_an_error_with_traceback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return {}["missing"]  # type: ignore[no-any-return]  # a bug of ours

    with caplog.at_level(logging.INFO):
        body = _run(_answer(tmp_path, handler))
    assert body.startswith(b"HTTP/1.1 500")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None and isinstance(errors[0].exc_info[1], KeyError)


def test_a_reset_of_another_connection_is_not_the_client_going_away(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise ConnectionResetError("upstream registry reset the connection")

    with caplog.at_level(logging.INFO):
        body = _run(_answer(tmp_path, handler))
    assert body.startswith(b"HTTP/1.1 500") and b"upstream registry reset the connection" in body
    assert not any("the client went away" in r.getMessage() for r in caplog.records)
    assert any(r.levelno >= logging.ERROR for r in caplog.records)


def test_client_gone_needs_a_connection_error() -> None:
    class Req:
        transport = None

    assert client_gone(Req(), ConnectionResetError())  # type: ignore[arg-type]
    assert not client_gone(Req(), RuntimeError())  # type: ignore[arg-type]
