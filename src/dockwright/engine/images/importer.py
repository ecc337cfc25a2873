"""The sources of ``docker import``: an archive fetched by URL (dockerd's ``remotecontext.GetWithStatusError``,
its errors in Go's words), a file, or a file's path, each as chunks for the images service."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from typing import IO

import aiohttp

from ...errors import DockwrightError, Forbidden, InvalidArgument, NotFound, SystemError_, Unauthorized

__all__ = ["url_chunks", "source_chunks", "download_error"]

_CHUNK = 1 << 20


@contextlib.asynccontextmanager
async def url_chunks(url: str) -> AsyncIterator[tuple[int | None, AsyncIterator[bytes]]]:
    """GET ``url`` (one session, closed on every path): the answer's length (None when unknown) and its body in
    chunks. Errors before the body are raised on entry."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=60)) as session:
        async with _get_import_source(session, url) as resp:
            yield resp.content_length, resp.content.iter_chunked(_CHUNK)


async def source_chunks(source: str | os.PathLike[str] | IO[bytes] | AsyncIterator[bytes]
                        ) -> AsyncIterator[bytes]:
    """The bytes of a path, a binary file (read off the event loop) or async chunks, as they come."""
    if isinstance(source, (str, os.PathLike)):
        f: IO[bytes] = await asyncio.to_thread(open, source, "rb")
        try:
            async for chunk in _file_chunks(f):
                yield chunk
        finally:
            f.close()
        return
    if isinstance(source, AsyncIterator):
        async for chunk in source:
            yield chunk
        return
    async for chunk in _file_chunks(source):
        yield chunk


async def _file_chunks(f: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(f.read, _CHUNK):
        yield chunk


@contextlib.asynccontextmanager
async def _get_import_source(session: aiohttp.ClientSession, url: str) -> AsyncIterator[aiohttp.ClientResponse]:
    """GET the archive to import, as dockerd's ``remotecontext.GetWithStatusError``: a status of 400 or more is an
    error that carries the answer's body, with the status mapped as dockerd maps it (404 → 404, 400 → 400,
    401 → 401, 403 → 403, anything else → 500); a host that cannot be reached is dockerd's ``Get "<url>": …``."""
    try:
        resp = await session.get(url)
    except aiohttp.InvalidURL as exc:
        raise InvalidArgument(f'parse "{url}": invalid URL: {exc}') from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise download_error(url, exc) from exc
    try:
        if resp.status >= 400:
            try:
                body = (await resp.content.read(64 << 10)).decode("utf-8", "replace").strip()
            except (TimeoutError, aiohttp.ClientError, OSError):
                raise SystemError_(f"failed to GET {url} with status {resp.status} {resp.reason}: error reading "
                                   f"body") from None
            msg = f"failed to GET {url} with status {resp.status} {resp.reason}: {body}"
            raise {404: NotFound, 400: InvalidArgument, 401: Unauthorized, 403: Forbidden}.get(
                resp.status, SystemError_)(msg)
        yield resp
    finally:
        resp.release()


def download_error(url: str, exc: BaseException) -> DockwrightError:
    """Go's words for a GET that found no server: ``Get "<url>": dial tcp <addr>: connect: connection refused``
    (a system error, 500); a name that does not resolve is dockerd's not-found (404)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        addr = f"{exc.host}:{exc.port}"
        os_error = exc.os_error
        if isinstance(os_error, socket.gaierror):
            return NotFound(f'Get "{url}": dial tcp: lookup {exc.host}: no such host')
        if isinstance(os_error, ConnectionRefusedError):
            return SystemError_(f'Get "{url}": dial tcp {addr}: connect: connection refused')
        reason = (os_error.strerror or str(os_error)) if os_error is not None else str(exc)
        return SystemError_(f'Get "{url}": dial tcp {addr}: connect: {reason.lower()}')
    if isinstance(exc, asyncio.TimeoutError):
        return SystemError_(f'Get "{url}": dial tcp: i/o timeout')
    return SystemError_(f'Get "{url}": {exc or exc.__class__.__name__}')
