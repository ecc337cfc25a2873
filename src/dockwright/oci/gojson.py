"""JSON bytes as Go's encoding/json writes them: image configs that hash like dockerd's, and every API response.

Go writes compact JSON (no spaces after ``:`` and ``,``), non-ASCII UTF-8 as it is (never ``\\uXXXX``), U+2028 and
U+2029 as ``\\u2028``/``\\u2029``, and a byte that is not UTF-8 as ``\\ufffd`` (here: a lone surrogate of
``surrogateescape``, ``\\udc80``–``\\udcff``; any other lone surrogate, which Go's decoder would have read as
U+FFFD, is written as that character). ``json.Marshal`` and a default ``json.Encoder`` also escape ``<``, ``>`` and
``&`` as ``\\u003c``, ``\\u003e``, ``\\u0026`` (``escape_html``): dockerd's streams (jsonmessage: pull, push, load,
import, build), its events and a wait's answer; its plain answers (``httputils.WriteJSON``: every ``200 {…}`` and
every ``{"message": …}`` error) use an encoder with ``SetEscapeHTML(false)``, so those characters stay as they are.

Speed: the C encoder of :mod:`json` (one instance, made once) and then only the replacements the text needs (``in``
scans of the text; ``str.isascii`` is O(1)), so this costs what ``json.dumps`` costs (docs/benchmarks.md, list_1000).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

__all__ = ["go_dumps", "go_line", "rfc3339_nano", "parse_rfc3339"]

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate(m: re.Match[str]) -> str:
    return "\\ufffd" if "\udc80" <= m.group() <= "\udcff" else "\ufffd"


def go_dumps(obj: Any, *, escape_html: bool = True) -> bytes:
    """Compact JSON, UTF-8, as Go's ``json.Marshal`` (``escape_html``, the default) or an encoder with
    ``SetEscapeHTML(false)`` writes ``obj``; no newline."""
    s = _encode(obj)
    if escape_html:
        if "<" in s:
            s = s.replace("<", "\\u003c")
        if ">" in s:
            s = s.replace(">", "\\u003e")
        if "&" in s:
            s = s.replace("&", "\\u0026")
    if s.isascii():
        return s.encode()
    if "\u2028" in s:
        s = s.replace("\u2028", "\\u2028")
    if "\u2029" in s:
        s = s.replace("\u2029", "\\u2029")
    try:
        return s.encode()
    except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8
        return _SURROGATE.sub(_surrogate, s).encode()


def go_line(obj: Any, end: bytes = b"\n", *, escape_html: bool = True) -> bytes:
    """One JSON value and its line end: ``b"\\n"`` as a Go ``json.Encoder`` writes (events, a wait's answer),
    ``b"\\r\\n"`` as dockerd's streamformatter ends each progress message."""
    return go_dumps(obj, escape_html=escape_html) + end


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
        dt = _dt.datetime(y, mo, d, h, mi, se, tzinfo=_dt.UTC)
    except ValueError:
        return None
    return dt.timestamp() - offset + frac
