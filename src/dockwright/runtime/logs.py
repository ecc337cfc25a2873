"""Reading docker json-file logs (``docker logs``) and framing multiplexed streams.

The shim writes ``<id>-json.log`` one JSON object a line: ``{"log":"…\\n","stream":"stdout"|"stderr",
"time":"2006-01-02T15:04:05.999999999Z"}``. :func:`read_json_log` reads it back as dockerd's json-file reader
does: ``tail`` counts lines of both streams from the end of the file, ``since`` drops earlier lines,
``until`` ends the read at the first later line, and ``follow`` keeps reading what is appended until
``stop`` is set (and everything written before that is read) or ``until`` has passed.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, NamedTuple

from .shim import STDERR, STDOUT, frame

__all__ = ["LogEntry", "read_json_log", "frame", "parse_log_time", "format_timestamp_fixed", "STDOUT", "STDERR"]

_STREAM_IDS = {"stdout": STDOUT, "stderr": STDERR}
_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(Z|z|[+-]\d{2}:\d{2})\Z")


class LogEntry(NamedTuple):
    """One log line: ``stream`` is 1 (stdout) or 2 (stderr), ``line`` the bytes (with their newline, and
    with the timestamp prefix when asked for), ``time`` Unix seconds."""

    stream: int
    line: bytes
    time: float


def parse_log_time(value: str) -> int:
    """An RFC 3339 time (as json-file writes it) as Unix nanoseconds; ValueError when malformed."""
    m = _TIME_RE.match(value)
    if m is None:
        raise ValueError(f"bad log time {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = (m.group(7) or "")[:9].ljust(9, "0")
    zone = m.group(8)
    offset = 0
    if zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    secs = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset
    return secs * 1_000_000_000 + int(frac)


def format_timestamp_fixed(ns: int) -> str:
    """Go's ``RFC3339NanoFixed`` (nine fraction digits, UTC), the prefix of ``docker logs --timestamps``."""
    secs, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{nanos:09d}Z"


def _tail_offset(f: IO[bytes], n: int) -> int:
    """The offset of the ``n``-th complete line from the end (0 when the file has fewer)."""
    size = f.seek(0, os.SEEK_END)
    if n <= 0:
        return size
    pos = size
    skipped_last = False
    found = 0
    while pos > 0:
        start = max(0, pos - 65536)
        f.seek(start)
        data = f.read(pos - start)
        idx = len(data)
        while True:
            idx = data.rfind(b"\n", 0, idx)
            if idx < 0:
                break
            if not skipped_last:  # the newline that ends the last complete line
                skipped_last = True
                continue
            found += 1
            if found == n:
                return start + idx + 1
        pos = start
    return 0


class _Chunks:
    """Reads a json-file log from an offset in chunks and parses the complete lines (in a worker thread)."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.pending = b""
        self._seconds: dict[str, int] = {}

    def _time(self, value: str) -> int:
        # the shim's own form, "2006-01-02T15:04:05[.fraction]Z": one parse per second of log
        if len(value) >= 20 and value[-1] == "Z" and value[19] in ".Z":
            secs = self._seconds.get(value[:19])
            if secs is None:
                if len(self._seconds) > 4096:
                    self._seconds.clear()
                secs = self._seconds[value[:19]] = parse_log_time(value[:19] + "Z") // 1_000_000_000
            frac = value[20:-1]
            if frac.isdigit() and len(frac) <= 9:
                return secs * 1_000_000_000 + int(frac.ljust(9, "0"))
        return parse_log_time(value)

    def read(self) -> list[tuple[int, bytes, int]] | None:
        """The entries of the next chunk (possibly none), or None when there is nothing new."""
        chunk = self.f.read(1 << 20)
        if not chunk:
            return None
        lines = (self.pending + chunk).split(b"\n")
        self.pending = lines.pop()
        out = []
        for raw in lines:
            try:
                rec = json.loads(raw)
                out.append((_STREAM_IDS[rec["stream"]], str(rec["log"]).encode("utf-8", "replace"),
                            self._time(rec["time"])))
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def rewind_if_truncated(self) -> None:
        if os.fstat(self.f.fileno()).st_size < self.f.tell():
            self.f.seek(0)
            self.pending = b""


def _open(path: Path) -> IO[bytes] | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


async def read_json_log(path: Path | IO[bytes], *, stdout: bool = True, stderr: bool = True, since: float | None = None,
                        until: float | None = None, tail: int | None = None, timestamps: bool = False,
                        follow: bool = False, stop: asyncio.Event | None = None,
                        poll_interval: float = 0.05) -> AsyncIterator[LogEntry]:
    """The lines of a json-file log as :class:`LogEntry` tuples ``(stream, line, time)``.

    ``path`` may also be the log already opened (binary; it is closed at the end), so that a caller can hold the
    output before the file is removed. ``since``/``until`` are Unix seconds (None: no bound); ``tail`` None or
    negative means all lines; ``timestamps`` prefixes each line with its RFC3339NanoFixed time and a space. With
    ``follow`` the iterator waits for new lines until ``stop`` is set (then it returns after the last line written
    before) or ``until`` has passed; a caller may also just stop iterating.
    """
    since_ns = None if since is None else int(since * 1_000_000_000)
    until_ns = None if until is None else int(until * 1_000_000_000)
    wanted = {s for s, ok in ((STDOUT, stdout), (STDERR, stderr)) if ok}
    if isinstance(path, (str, os.PathLike)):
        while True:
            # ``stop`` is looked at before the attempt, as before each read below: a file that appeared and
            # was finished while the attempt was under way is opened by the next one
            stopped = stop is not None and stop.is_set()
            opened = await asyncio.to_thread(_open, Path(path))
            if opened is not None:
                break
            if not follow or stopped:
                return
            await asyncio.sleep(poll_interval)
        f = opened
    else:
        f = path
    try:
        if tail is not None and tail >= 0:
            offset = await asyncio.to_thread(_tail_offset, f, tail)
        else:
            offset = 0
        f.seek(offset)
        chunks = _Chunks(f)
        while True:
            stopped = stop is not None and stop.is_set()
            entries = await asyncio.to_thread(chunks.read)
            if entries is not None:
                for stream, line, ns in entries:
                    if since_ns is not None and ns < since_ns:
                        continue
                    if until_ns is not None and ns > until_ns:
                        return
                    if stream not in wanted:
                        continue
                    if timestamps:
                        line = format_timestamp_fixed(ns).encode() + b" " + line
                    yield LogEntry(stream, line, ns / 1e9)
                continue
            if not follow or stopped:
                return
            if until is not None and time.time() > until:
                return
            try:
                chunks.rewind_if_truncated()
            except OSError:
                return
            await asyncio.sleep(poll_interval)
    finally:
        f.close()
