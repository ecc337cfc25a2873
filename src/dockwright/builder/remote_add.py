"""ADD of an http(s) URL, as dockerd's classic builder does it (moby ``builder/dockerfile/copy.go``
``downloadSource`` and ``remotecontext.GetWithStatusError``).

* The body is streamed to a file of its own temporary directory (created ``0600``, as dockerd's
  ``os.OpenFile(…, 0600)``) and hashed while it streams: the hash is the lazy-source tarsum of
  :mod:`.srchash` (header first, so the size must be known: ``Content-Length``; without it, or if the body
  is not that long, the file is hashed again once written).
* The file's name is the last element of the URL's path; a path ending in ``/`` (or empty) gives no name, and
  the caller must then have a destination that names the file (dockerd's ``__unnamed__``).
* Its mtime is the ``Last-Modified`` header when that parses as an HTTP date (``http.ParseTime``: RFC 1123,
  RFC 850, ANSI C), else the Unix epoch (``system.Chtimes`` of Go's zero time).
* An HTTP status ≥ 400 fails with ``failed to GET <url> with status <code> <reason>: <body>``; a refused
  connection with Go's ``Get "<url>": dial tcp <host>:<port>: connect: connection refused``.

The download is never extracted by ADD (the caller's business); progress is reported through a callback at
most every 100 ms and on completion, as moby's ``progress.NewProgressReader``.
"""

from __future__ import annotations

import asyncio
import calendar
import os
import posixpath
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from ..distribution.http import client_session
from ..errors import DockwrightError, InvalidArgument, NotFound, SystemError_, Unavailable
from .srchash import entry_hash, lazy_file_hasher

__all__ = ["RemoteFile", "is_url", "url_filename", "download", "UNNAMED"]

UNNAMED = "__unnamed__"
_CHUNK = 1 << 16
_HTTP_DATES = ("%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %d %H:%M:%S %Y")


@dataclass
class RemoteFile:
    """A downloaded ADD source: ``path`` is the file (in a directory of its own), ``name`` the name taken from
    the URL (``""`` if it has none), ``hash`` dockerd's checksum for the step's history."""

    url: str
    path: Path
    name: str
    hash: str
    size: int


def is_url(src: str) -> bool:
    """moby's ``urlutil.IsURL``: an ADD source starting with ``http://`` or ``https://``."""
    return src.startswith(("http://", "https://"))


def url_filename(url: str) -> str:
    """The file name dockerd takes from ``url``: ``filepath.Base`` of its path, ``""`` when the path ends in ``/``."""
    path = urlsplit(url).path
    if path == "" or path.endswith("/"):
        return ""
    return posixpath.basename(path)


def parse_http_date(value: str) -> float | None:
    """Go's ``http.ParseTime`` (a UTC timestamp), ``None`` if ``value`` is not an HTTP date."""
    for fmt in _HTTP_DATES:
        try:
            return float(calendar.timegm(time.strptime(value.strip(), fmt)))
        except ValueError:
            continue
    return None


def _connect_error(url: str, exc: BaseException) -> DockwrightError:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return Unavailable(f'Get "{url}": dial tcp {host}:{port}: connect: connection refused')
        cause = cause.__cause__ or getattr(cause, "os_error", None)
    return Unavailable(f'Get "{url}": {exc}')


async def download(url: str, tmp_root: Path, progress: Callable[[int, int | None], None] | None = None) -> RemoteFile:
    """Download ``url`` into a new directory under ``tmp_root`` (see the module docstring); ``progress(current,
    total)`` is called as bytes arrive (``total`` is ``None`` without a ``Content-Length``)."""
    name = url_filename(url)
    tmp_root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="remote-", dir=tmp_root))
    path = workdir / (name or UNNAMED)
    try:
        async with client_session(timeout=aiohttp.ClientTimeout(total=None, sock_connect=60),
                                  trust_env=True) as session:
            async with session.get(url) as resp:
                if resp.status >= 400:
                    body = (await resp.read()).decode("utf-8", "replace").strip()
                    msg = f"failed to GET {url} with status {resp.status} {resp.reason or ''}".rstrip() + f": {body}"
                    raise (NotFound if resp.status == 404 else InvalidArgument)(msg)
                total = resp.content_length
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                os.fchmod(fd, 0o600)
                hasher = lazy_file_hasher(path, path.name, total) if total is not None else None
                size = 0
                last_sent, last_at = 0, 0.0
                every = min(512 * 1024, max(1, int(total * 0.01))) if total else 512 * 1024
                try:
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view):]
                        if hasher is not None:
                            hasher.update(chunk)
                        size += len(chunk)
                        now = time.monotonic()
                        if progress is not None and size - last_sent > every and now - last_at >= 0.1:
                            progress(size, total)
                            last_sent, last_at = size, now
                finally:
                    os.close(fd)
                if progress is not None and (last_sent != size or size == 0):
                    progress(size, total)
                mtime = parse_http_date(resp.headers.get("Last-Modified", "")) or 0.0
    except DockwrightError:
        raise
    except (aiohttp.ClientConnectorError, ConnectionRefusedError) as exc:
        raise _connect_error(url, exc) from exc
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        raise SystemError_(f'Get "{url}": {exc}') from exc
    os.utime(path, (mtime, mtime))
    if hasher is not None and size == total:
        digest = hasher.hexdigest()
    else:
        digest = await asyncio.to_thread(entry_hash, workdir, path.name, lazy=True)
    return RemoteFile(url=url, path=path, name=name, hash=digest, size=size)
