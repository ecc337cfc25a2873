"""JSON bytes as Go's encoding/json writes them, so generated configs hash like dockerd's."""

from __future__ import annotations

import json
import time
from typing import Any

__all__ = ["go_dumps", "rfc3339_nano", "parse_rfc3339"]


def go_dumps(obj: Any) -> bytes:
    """Compact JSON, UTF-8, with Go's HTML-safe escapes (<, >, & and U+2028/9)."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    s = (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
         .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return s.encode()


def rfc3339_nano(ns: int | None = None) -> str:
    """Go's time.RFC3339Nano in UTC: fraction with trailing zeros trimmed."""
    if ns is None:
        ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        base += "." + f"{frac:09d}".rstrip("0")
    return base + "Z"


def parse_rfc3339(s: str) -> float | None:
    """RFC 3339 (with any fraction and offset) → Unix seconds (float); None if unparsable or zero time."""
    import datetime as _dt
    import re

    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})?$", s.strip())
    if not m:
        return None
    y, mo, d, h, mi, se = (int(m.group(i)) for i in range(1, 7))
    if y <= 1:
        return None
    frac = float(m.group(7)) if m.group(7) else 0.0
    tz = m.group(8)
    offset = 0
    if tz and tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    try:
        dt = _dt.datetime(y, mo, d, h, mi, se, tzinfo=_dt.timezone.utc)
    except ValueError:
        return None
    return dt.timestamp() - offset + frac
