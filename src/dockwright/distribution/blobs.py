"""Blob reads of a repository: HEAD for existence and size, and ranged GETs that follow redirects, retry with
backoff on failed connections and 5xx, and resume a broken stream from where it stopped.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import AsyncIterator

import aiohttp

from ..errors import DataCorrupted, DockwrightError, SystemError_
from .errors import registry_info, transport_error
from .hosts import Endpoint
from .repository import RepositoryCore
from .transport import READ_SIZE

__all__ = ["BlobReads"]

_YIELD_MIN = 256 << 10
_FETCH_ATTEMPTS = 5
_BACKOFF_BASE = 0.25
_BACKOFF_MAX = 4.0


def _backoff(failures: int) -> float:
    delay = min(_BACKOFF_MAX, _BACKOFF_BASE * float(2 ** max(0, failures - 1)))
    return delay * (0.75 + random.random() * 0.5)


def _transient(exc: BaseException) -> bool:
    """Worth retrying the same request: no answer, or a 5xx / 408 answer (but not 429: dockerd does not retry)."""
    info = registry_info(exc)
    if info is None:
        return False
    if info.transport:
        return True
    if info.wrapped and isinstance(exc.__cause__, DockwrightError):
        return _transient(exc.__cause__)  # the token server, not the registry, failed
    if info.errors and info.errors[0].code in ("TOOMANYREQUESTS", "UNAUTHORIZED", "DENIED", "UNSUPPORTED",
                                               "NAME_UNKNOWN", "BLOB_UNKNOWN"):
        return False
    return info.status is not None and (info.status >= 500 or info.status == 408)


class BlobReads(RepositoryCore):
    """The blob reads of a :class:`~dockwright.distribution.client.Repository`."""

    async def blob_exists(self, digest: str) -> int | None:
        """HEAD the blob: its size, or None when the registry does not have it."""
        async def op(ep: Endpoint) -> int | None:
            url = self._url(ep, f"blobs/{digest}")
            resp = await self._send(ep, "HEAD", url)
            if resp.status == 404:
                resp.release()
                return None
            if not 200 <= resp.status < 300:
                raise await self._error(resp, "HEAD", url)
            length = resp.headers.get("Content-Length")
            resp.release()
            return int(length) if length and length.isdigit() else 0
        return await self._run(op)

    async def _open_blob(self, ep: Endpoint, digest: str, position: int) -> tuple[aiohttp.ClientResponse, int, str]:
        url = self._url(ep, f"blobs/{digest}")
        headers = {"Accept-Encoding": "identity"}
        if position > 0:
            headers["Range"] = f"bytes={position}-"
        resp = await self._send(ep, "GET", url, headers=headers, decompress=False)
        if resp.status == 206:
            crange = resp.headers.get("Content-Range", "")
            start = position
            try:
                start = int(crange.split(" ", 1)[1].split("-", 1)[0]) if crange else position
            except (IndexError, ValueError):
                pass
            if start > position:
                resp.release()
                raise SystemError_(f"registry answered range {crange!r} to a request for bytes={position}-")
            return resp, position - start, url
        if resp.status == 200:
            return resp, position, url  # no range support: skip what we have
        raise await self._error(resp, "GET", url)

    async def fetch_blob(self, digest: str, *, offset: int = 0, size: int | None = None) -> AsyncIterator[bytes]:
        """The blob's bytes from ``offset``, in chunks of 256 KiB to 1 MiB (the digest is not checked here).

        Uses ``Range: bytes=offset-`` (a 200 answer to it is skipped client-side), follows redirects without the
        registry's Authorization on another host, retries with backoff on failed connections and 5xx, and
        resumes from where it was when the stream breaks. With ``size``, a short stream is resumed and a longer
        one is DataCorrupted. Gives up with Unavailable.
        """
        if size is not None and offset >= size:
            return
        position = offset
        failures = 0
        while True:
            try:
                resp, skip, url = await self._run(functools.partial(self._open_blob, digest=digest,
                                                                    position=position))
            except DockwrightError as exc:
                if _transient(exc) and failures + 1 < _FETCH_ATTEMPTS:
                    failures += 1
                    await asyncio.sleep(_backoff(failures))
                    continue
                raise
            expected_len = resp.headers.get("Content-Length")
            expected_end = None
            if expected_len is not None and expected_len.isdigit():
                expected_end = position - skip + int(expected_len) if resp.status == 206 \
                    else int(expected_len)
            progressed = False
            try:
                buf = bytearray()
                while True:
                    data = await resp.content.read(READ_SIZE)
                    if not data:
                        break
                    if skip:
                        if len(data) <= skip:
                            skip -= len(data)
                            continue
                        data = data[skip:]
                        skip = 0
                    buf += data
                    if len(buf) >= _YIELD_MIN:
                        chunk = bytes(buf)
                        buf.clear()
                        if size is not None and position + len(chunk) > size:
                            raise DataCorrupted(f"blob {digest} is larger than its size {size}")
                        position += len(chunk)
                        progressed = True
                        yield chunk
                if buf:
                    chunk = bytes(buf)
                    if size is not None and position + len(chunk) > size:
                        raise DataCorrupted(f"blob {digest} is larger than its size {size}")
                    position += len(chunk)
                    progressed = True
                    yield chunk
                short = (size is not None and position < size) or (
                    size is None and expected_end is not None and position < expected_end)
                if not short:
                    return
                failure: BaseException = aiohttp.ClientPayloadError("stream ended early")
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                failure = exc
            finally:
                resp.release()
            if progressed:
                failures = 0
            failures += 1
            if failures >= _FETCH_ATTEMPTS:
                raise transport_error("GET", url, failure) from failure
            await asyncio.sleep(_backoff(failures))
